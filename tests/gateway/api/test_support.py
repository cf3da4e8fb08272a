"""Support actions: each resend done once and linked to what it replaces, invalid events checked again,
closing needs a comment, everything in the audit log (brief §5, §6)."""

from __future__ import annotations

import json
import threading

import sqlalchemy as sa

from gateway import support
from gateway.pipeline.run import run_batch
from gateway.store.models import events_t, history_t
from gateway.store.queries import EventFilter
from tests.backends import on_both_backends
from tests.factories import json_event, p3_line, write_export
from tests.gateway.api.conftest import bearer

#: Support actions and search hold on SQLite and PostgreSQL alike (tests/backends.py).
database_url = on_both_backends()


def event(gw, key: str):
    with gw.engine.connect() as conn:
        return conn.execute(sa.select(events_t).where(events_t.c.key == key)
                            .order_by(events_t.c.version.desc())).first()


def history(gw, key: str) -> list:
    with gw.engine.connect() as conn:
        return conn.execute(sa.select(history_t).join(events_t, events_t.c.id == history_t.c.event_id)
                            .where(events_t.c.key == key).order_by(history_t.c.id)).all()


def test_a_resend_is_done_once_and_linked_to_what_it_replaces(client, gw, tokens, night) -> None:
    auth = bearer(tokens.support_69001)
    rejected = event(gw, "69001-3")
    assert (rejected.state, rejected.reject_code) == ("REJETE", "E01")

    first = client.post("/api/v1/events/69001-3/resend", headers=auth).json()
    assert (first["resent"], first["state"], first["resent_keys"]) == (1, "EN_ATTENTE", ["69001-3"])
    second = client.post("/api/v1/events/69001-3/resend", headers=auth).json()
    assert (second["resent"], second["state"]) == (0, "EN_ATTENTE") and "EN_ATTENTE" in second["reason"]

    now = event(gw, "69001-3")
    assert (now.id, now.state, now.reject_code, now.reject_message) == (rejected.id, "EN_ATTENTE", None, None)
    link = history(gw, "69001-3")[-1]
    assert (link.state, link.code, link.envelope_id, link.actor) == (
        "EN_ATTENTE", "E01", rejected.envelope_id, "api:support_69001")
    assert "E01" in link.cause and rejected.envelope_id in link.cause

    detail = client.get("/api/v1/events/69001-3", headers=auth).json()
    assert detail["history"][-1]["actor"] == "api:support_69001" and detail["history"][-1]["code"] == "E01"
    assert detail["reject"] is None and detail["envelopes"] == [rejected.envelope_id]

    run_batch(gw, [])  # the next run sends it, in a new envelope; DUDE still does not know the jobseeker
    again = event(gw, "69001-3")
    assert again.state == "REJETE" and again.envelope_id != rejected.envelope_id
    assert [h.state for h in history(gw, "69001-3")][-5:] == ["REJETE", "EN_ATTENTE", "ENVOYE", "TRANSMIS", "REJETE"]


def test_a_resend_by_filter_counts_once_then_zero(client, gw, tokens, night) -> None:
    auth = bearer(tokens.admin)
    first = client.post("/api/v1/events/resend", json={"reject_code": "E01"}, headers=auth).json()
    assert first["resent"] == 2 and sorted(first["resent_keys"]) == ["69001-3", "69002-3"]
    assert client.post("/api/v1/events/resend", json={"reject_code": "E01"}, headers=auth).json()["resent"] == 0
    nothing = client.post("/api/v1/events/resend", json={}, headers=auth)
    assert nothing.status_code == 422 and nothing.json()["errors"][0]["field"] == "body"


def test_two_identical_resends_at_the_same_moment_resend_each_event_once(gw, night) -> None:
    barrier = threading.Barrier(4)
    results = []

    def call() -> None:
        barrier.wait()
        results.append(support.resend_matching(gw, EventFilter(states=("REJETE",)), actor="test"))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.resent for r in results) == [0, 0, 0, 2]
    for key in ("69001-3", "69002-3"):
        assert [h.state for h in history(gw, key)].count("EN_ATTENTE") == 2  # ingest, then one resend


def test_an_invalid_event_is_checked_again_and_stays_invalid_with_todays_reason(client, gw, tokens, night) -> None:
    auth = bearer(tokens.support_69001)
    answer = client.post("/api/v1/events/69001-4/resend", headers=auth).json()
    assert answer["resent"] == 0 and answer["state"] == "INVALIDE"
    [still] = answer["still_invalid"]
    assert still["key"] == "69001-4" and still["reject"]["code"] == "E08" and still["reject"]["field"] == "siret"
    assert event(gw, "69001-4").state == "INVALIDE"
    assert history(gw, "69001-4")[-1].actor == "api:support_69001"


def test_an_invalid_event_that_now_passes_goes_back_to_en_attente(client, gw, tokens, tmp_path) -> None:
    """The agency changed its id format: events refused under the old pattern pass under the new one."""
    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1", identifiant_pe="AB123456")])
    run_batch(gw, [export])
    client.post("/api/v1/events", json=json_event(id_evenement="2", identifiant_pe="AB123457"),
                headers=bearer(tokens.partner_69001))
    assert {event(gw, k).reject_code for k in ("69001-1", "69001-2")} == {"E09"}

    gw.settings = gw.settings.model_copy(update={"identifiant_pe_pattern": r"[0-9]{7}[A-Z]|[A-Z]{2}[0-9]{6}"})
    answer = client.post("/api/v1/events/resend", json={"states": ["INVALIDE"]}, headers=bearer(tokens.support_69001))
    assert answer.json()["resent"] == 2, answer.json()
    for key in ("69001-1", "69001-2"):
        row = event(gw, key)
        assert (row.state, row.reject_code, row.operation, row.identifiant_pe) == (
            "EN_ATTENTE", None, "C", row.identifiant_pe)
        assert row.identifiant_pe.startswith("AB") and row.event_type == "ENT"
    run_batch(gw, [])
    assert {event(gw, k).state for k in ("69001-1", "69001-2")} == {"REJETE"}  # sent; DUDE does not know them


def test_a_modification_of_an_unknown_event_stays_e06_when_resent(client, gw, tokens) -> None:
    client.post("/api/v1/events", json=json_event(operation="M", premier_entretien=True),
                headers=bearer(tokens.partner_69001))
    answer = client.post("/api/v1/events/69001-1001/resend", headers=bearer(tokens.support_69001)).json()
    assert answer["resent"] == 0 and answer["still_invalid"][0]["reject"]["code"] == "E06"
    # Its fields as sent: a yes/no kept "True" (str(True)), shown so and refused as malformed (E09) on a resend.
    assert json.loads(event(gw, "69001-1001").payload)["premier_entretien"] == "O"


def test_a_partners_event_still_invalid_after_a_resend_gets_the_partners_hint(client, gw, tokens, night) -> None:
    """As its reading (GET) does: "corriger dans Parcours 3, part avec le prochain export" is an export line's
    hint, which a partner's event never has; an export line keeps it."""
    from gateway.api.views import PARTNER_HINT

    client.post("/api/v1/events", json=json_event(id_evenement="41", date_naissance="1990-01-01"),
                headers=bearer(tokens.partner_69001))
    auth = bearer(tokens.support_69001)
    [still] = client.post("/api/v1/events/69001-41/resend", headers=auth).json()["still_invalid"]
    read = client.get("/api/v1/events/69001-41", headers=auth).json()["reject"]
    assert still["reject"]["code"] == "E07" and still["reject"]["hint"] == PARTNER_HINT == read["hint"]
    [line] = client.post("/api/v1/events/69001-4/resend", headers=auth).json()["still_invalid"]
    assert "Parcours 3" in line["reject"]["hint"]


def test_closing_needs_a_comment_and_is_recorded(client, gw, tokens, night) -> None:
    auth = bearer(tokens.support_both)
    for body in ({}, {"comment": ""}, {"comment": "   "}):
        refused = client.post("/api/v1/events/69002-3/close", json=body, headers=auth)
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "comment"
    assert event(gw, "69002-3").state == "REJETE"

    closed = client.post("/api/v1/events/69002-3/close", json={"comment": "Jeune parti dans le Nord"}, headers=auth)
    assert closed.status_code == 200 and closed.json()["closed"] == 1 and closed.json()["state"] == "CLOS"
    last = history(gw, "69002-3")[-1]
    assert (last.state, last.actor, last.code) == ("CLOS", "api:support_both", "E01")
    assert "Jeune parti dans le Nord" in last.cause
    twice = client.post("/api/v1/events/69002-3/close", json={"comment": "encore"}, headers=auth).json()
    assert twice["closed"] == 0 and twice["state"] == "CLOS"
    accepted = client.post("/api/v1/events/69002-1/close", json={"comment": "non"}, headers=auth).json()
    assert accepted["closed"] == 0 and accepted["state"] == "ACCEPTE" and event(gw, "69002-1").state == "ACCEPTE"
    assert client.post("/api/v1/events/69002-3/resend", headers=auth).json()["resent"] == 0


def test_every_support_action_is_in_the_audit_log(client, tokens, night) -> None:
    support_auth = bearer(tokens.support_69001)
    client.post("/api/v1/events/69001-3/resend", headers=support_auth)
    client.post("/api/v1/events/resend", json={"states": ["INVALIDE"], "code_ml": "69001"}, headers=support_auth)
    client.post("/api/v1/events/69001-4/close", json={"comment": "SIRET introuvable"}, headers=support_auth)
    entries = client.get("/api/v1/audit", headers=bearer(tokens.admin)).json()["items"]
    actions = [(e["actor"], e["action"], e["target"], e["count"]) for e in entries if e["actor"].startswith("api:")]
    assert actions == [("api:support_69001", "CLOSE", "69001-4", 1),
                       ("api:support_69001", "RESEND_FILTER", None, 0),
                       ("api:support_69001", "RESEND", "69001-3", 1)]
    by_filter = entries[1]
    assert by_filter["filter"] == {"states": ["INVALIDE"], "code_ml": "69001", "code_ml_in": ["69001"]}
    assert by_filter["detail"]["still_invalid"][0]["key"] == "69001-4"
    assert entries[0]["comment"] == "SIRET introuvable"
    assert client.get("/api/v1/audit", headers=support_auth).status_code == 403
    page = client.get("/api/v1/audit", params={"limit": 2}, headers=bearer(tokens.admin)).json()
    rest = client.get("/api/v1/audit", params={"limit": 2, "cursor": page["next_cursor"]},
                      headers=bearer(tokens.admin)).json()
    assert [e["id"] for e in page["items"] + rest["items"]] == [e["id"] for e in entries[:4]]


def test_a_nul_or_a_control_character_is_a_422_on_either_store(client, gw, tokens, night) -> None:
    """PostgreSQL refuses a NUL in any text: each of these was a 500 there, while SQLite stored the comment's
    control characters as typed (and "\\u0000\\u0001" passed for a comment that is "not only spaces")."""
    admin = bearer(tokens.admin)
    def states() -> list[tuple]:
        with gw.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(events_t.c.key, events_t.c.state)).all()]

    before = states()
    for url in ("/api/v1/events/69001-%00", "/api/v1/events?identifiant_pe=%00", "/api/v1/events?key=a%00b",
                "/api/v1/envelopes/%00", "/console/rejets?recherche=%00"):
        answer = client.get(url, headers=admin)
        assert (answer.status_code, answer.json()["code"]) == (422, "VALIDATION"), url
        assert "caractère NUL" in answer.json()["detail"]
    for url, body, field in (("/api/v1/events/69001-3/close", {"comment": "ok\u0000"}, "comment"),
                             ("/api/v1/events/69001-3/close", {"comment": "\u0000\u0001"}, "comment"),
                             ("/api/v1/events/resend", {"identifiant_pe": "\u0000"}, "identifiant_pe"),
                             ("/api/v1/events/resend", {"envelope_id": "a\u0000"}, "envelope_id"),
                             ("/api/v1/sending/pause", {"reason": "x\u0000"}, "reason")):
        answer = client.post(url, json=body, headers=admin)
        assert answer.status_code == 422, (url, answer.text)
        [error] = answer.json()["errors"]
        assert (error["field"], error["type"]) == (field, "control_character"), (url, error)
    assert states() == before and client.get("/api/v1/sending", headers=admin).json()["paused"] is False
