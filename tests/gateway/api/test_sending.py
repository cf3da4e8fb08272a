"""``/api/v1/sending``: support staff read the switch, admins flip it (with a reason), every flip is audited,
and a run started through the API while sending is paused seals but posts nothing."""

from __future__ import annotations

import time

from gateway.pipeline import pause
from tests.factories import json_event
from tests.gateway.api.conftest import bearer


def test_admins_pause_and_resume_sending_and_support_staff_see_it(client, gw, tokens) -> None:
    admin, support = bearer(tokens.admin), bearer(tokens.support_69001)
    assert client.get("/api/v1/sending", headers=support).json()["paused"] is False

    paused = client.post("/api/v1/sending/pause", json={"reason": "maintenance du DUDE"}, headers=admin)
    assert paused.status_code == 200
    body = paused.json()
    assert body["paused"] is True and body["reason"] == "maintenance du DUDE" and body["changed_by"] == "api:admin"
    assert pause.is_paused(gw.engine)  # the store's switch: every instance sees it
    assert client.get("/api/v1/sending", headers=support).json()["paused"] is True

    resumed = client.post("/api/v1/sending/resume", json={}, headers=admin)
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    audit = client.get("/api/v1/audit", headers=admin).json()["items"]
    assert [a["action"] for a in audit if a["action"].startswith("SENDING")] in (
        ["SENDING_RESUME", "SENDING_PAUSE"], ["SENDING_PAUSE", "SENDING_RESUME"])


def test_only_admins_flip_the_switch_and_a_reason_is_required(client, tokens) -> None:
    admin = bearer(tokens.admin)
    for who in ("support_69001", "partner_69001"):
        refused = client.post("/api/v1/sending/pause", json={"reason": "x"}, headers=bearer(tokens[who]))
        assert (refused.status_code, refused.json()["code"]) == (403, "FORBIDDEN")
    assert client.get("/api/v1/sending", headers=bearer(tokens.partner_69001)).status_code == 403
    assert client.get("/api/v1/sending").status_code == 401
    # blank by the published schema's rules (ECMAScript: a lone BOM) as well as by Python's and pydantic's
    for body in ({}, {"reason": "   "}, {"reason": "\ufeff"}, {"reason": " \x85\x1c "}, {"reason": "x", "extra": 1}):
        refused = client.post("/api/v1/sending/pause", json=body, headers=admin)
        assert (refused.status_code, refused.json()["code"]) == (422, "VALIDATION"), body


def test_a_run_started_while_paused_seals_and_waits(client, gw, emulator, tokens) -> None:
    admin = bearer(tokens.admin)
    client.post("/api/v1/events/bulk", json={"events": [json_event(id_evenement=str(i)) for i in range(3)]},
                headers=bearer(tokens.partner_69001))
    client.post("/api/v1/sending/pause", json={"reason": "incident réseau"}, headers=admin)
    run_id = client.post("/api/v1/runs", json={}, headers=admin).json()["run_id"]
    deadline = time.monotonic() + 30
    while client.get(f"/api/v1/runs/{run_id}", headers=admin).json()["outcome"] == "EN_COURS":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert emulator.ledger_summary()["lots"] == 0
    states = {e["state"] for e in client.get("/api/v1/events", headers=admin).json()["items"]}
    assert states == {"ENVOYE"}
