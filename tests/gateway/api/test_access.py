"""Roles × missions locales × endpoints: no token reads, counts, resends or closes anything outside its
scope; another mission locale's event is answered exactly as a missing one; a revoked token is
refused at once (brief §6, issue 3)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import sqlalchemy as sa

from gateway.api.auth import revoke_client
from gateway.store.models import api_clients_t, events_t, utcnow
from tests.gateway.api.conftest import SCOPES, bearer

ALL_KEYS = {f"{ml}-{i}" for ml in ("69001", "69002") for i in (1, 2, 3, 4)}
UNREADABLE = "?P3_00000_20261128.csv:10"  # the line whose mission locale cannot be read


def visible(name: str) -> set[str]:
    scope = SCOPES[name]
    keys = {k for k in ALL_KEYS if scope is None or k[:5] in scope}
    return keys | ({UNREADABLE} if scope is None else set())


def states(gw) -> dict[str, str]:
    with gw.engine.connect() as conn:
        return dict(conn.execute(sa.select(events_t.c.key, events_t.c.state)).all())


def path(key: str) -> str:
    return f"/api/v1/events/{quote(key, safe='')}"


def without_ids(body: dict, key: str) -> dict:
    """A 404 body with what names this very request (the key, the path, the request id) blanked."""
    return {k: (v.replace(key, "<key>") if isinstance(v, str) else v) for k, v in body.items()
            if k not in ("instance", "request_id")}


@pytest.mark.parametrize("name", list(SCOPES))
def test_reads_lists_and_counts_stay_in_scope(client, tokens, night, name) -> None:
    auth = bearer(tokens[name])
    listed = client.get("/api/v1/events", params={"limit": 1000}, headers=auth).json()["items"]
    assert {e["key"] for e in listed} == visible(name)

    missing = client.get(path("69003-999"), headers=auth)
    assert missing.status_code == 404
    for key in ALL_KEYS | {UNREADABLE}:
        answer = client.get(path(key), headers=auth)
        if key in visible(name):
            assert answer.status_code == 200 and answer.json()["key"] == key
        else:  # exactly as a missing event: same status, same type, same body but for the key named
            assert answer.status_code == 404
            assert answer.headers["content-type"] == missing.headers["content-type"]
            assert without_ids(answer.json(), key) == without_ids(missing.json(), "69003-999")

    for other in {"69001", "69002"} - (SCOPES[name] or {"69001", "69002"}):
        assert client.get("/api/v1/events", params={"code_ml": other}, headers=auth).json()["items"] == []
    rejected = client.get("/api/v1/events", params={"state": ["REJETE", "INVALIDE"]}, headers=auth).json()["items"]
    assert {e["key"] for e in rejected} == {k for k in visible(name) if k[-1] in "34" or k == UNREADABLE}

    [run] = client.get("/api/v1/runs", headers=auth).json()["items"]
    assert sum(run["states"].values()) == len(visible(name))
    assert run["inputs"] == (["P3_00000_20261128.csv"] if SCOPES[name] is None else [])  # a national file
    detail = client.get(f"/api/v1/runs/{run['id']}", headers=auth).json()
    assert (detail["summary"] is not None) is (SCOPES[name] is None)

    envelopes = client.get("/api/v1/envelopes", headers=auth).json()["items"]
    assert sum(sum(e["states"].values()) for e in envelopes) == len({k for k in visible(name) if k[-1] in "123"})
    for envelope in envelopes:
        assert (envelope["event_count"] is not None) is (SCOPES[name] is None)
        one = client.get(f"/api/v1/envelopes/{envelope['id']}", headers=auth).json()
        assert one["states"] == envelope["states"]


def test_a_scoped_client_sees_no_envelope_or_run_without_its_events(client, gw, tokens, night) -> None:
    from gateway.api.auth import create_client

    _, outsider = create_client(gw.engine, name="ailleurs", role="support", ml_codes=["13001"], now=utcnow())
    auth = bearer(outsider)
    assert client.get("/api/v1/runs", headers=auth).json()["items"] == []
    assert client.get("/api/v1/envelopes", headers=auth).json()["items"] == []
    assert client.get("/api/v1/events", headers=auth).json()["items"] == []
    run_id = night.run_id
    assert client.get(f"/api/v1/runs/{run_id}", headers=auth).status_code == 404


@pytest.mark.parametrize("name", ["admin", "support_69001", "support_69002", "support_both"])
def test_resends_and_closes_stay_in_scope(client, gw, tokens, night, name) -> None:
    auth = bearer(tokens[name])
    before = states(gw)
    answer = client.post("/api/v1/events/resend", json={"states": ["REJETE", "SANS_REPONSE"]}, headers=auth)
    assert answer.status_code == 200
    resent = set(answer.json()["resent_keys"])
    assert resent == {k for k in visible(name) if k.endswith("-3")}
    assert answer.json()["resent"] == len(resent)
    after = states(gw)
    assert {k for k in after if after[k] != before[k]} == resent

    for key in ALL_KEYS - visible(name):
        for action, body in (("resend", None), ("close", {"comment": "hors périmètre"})):
            refused = client.post(f"{path(key)}/{action}", json=body, headers=auth)
            assert refused.status_code == 404 and refused.json()["code"] == "NOT_FOUND"
    assert {k: v for k, v in states(gw).items() if k not in visible(name)} == \
        {k: v for k, v in before.items() if k not in visible(name)}


@pytest.mark.parametrize("name", ["partner_69001", "partner_69002"])
def test_partners_submit_and_read_but_do_not_act(client, tokens, night, name) -> None:
    auth = bearer(tokens[name])
    own = sorted(SCOPES[name])[0]
    for url, body in ((f"{path(own + '-3')}/resend", None), (f"{path(own + '-3')}/close", {"comment": "x"}),
                      ("/api/v1/events/resend", {"code_ml": own}), ("/api/v1/runs", {})):
        refused = client.post(url, json=body, headers=auth)
        assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
    for url in ("/api/v1/audit", "/metrics"):
        assert client.get(url, headers=auth).status_code == 403


@pytest.mark.parametrize("name", ["support_69001", "support_both"])
def test_support_does_not_submit(client, tokens, name) -> None:
    from tests.factories import json_event

    refused = client.post("/api/v1/events", json=json_event(), headers=bearer(tokens[name]))
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"


def test_a_revoked_token_is_refused_at_once(client, gw, tokens, night) -> None:
    auth = bearer(tokens.support_69001)
    assert client.get(path("69001-1"), headers=auth).status_code == 200
    with gw.engine.connect() as conn:
        client_id = conn.execute(sa.select(api_clients_t.c.id).where(api_clients_t.c.name == "support_69001")).scalar()
    assert revoke_client(gw.engine, client_id, now=utcnow())
    refused = client.get(path("69001-1"), headers=auth)
    assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHENTICATED"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert client.post(f"{path('69001-3')}/resend", headers=auth).status_code == 401
    assert client.get(path("69001-1"), headers=bearer(tokens.support_both)).status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer p3g_unknown", "Basic dXNlcjpwdw==", "p3g_sans-bearer"])
def test_no_valid_token_no_access(client, night, header) -> None:
    headers = {"Authorization": header} if header else {}
    for url in ("/api/v1/events", path("69001-1"), "/api/v1/runs", "/api/v1/envelopes"):
        refused = client.get(url, headers=headers)
        assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"


#: Every operation that reads a JSON body.
TAKING_JSON = ("/api/v1/events", "/api/v1/events/bulk", "/api/v1/events/resend", f"{path('69001-3')}/close",
               "/api/v1/runs", "/api/v1/sending/pause", "/api/v1/sending/resume")


@pytest.mark.parametrize("body", [b'{"events": [', b'{"events": "\xff"}'], ids=["json-invalide", "pas-utf-8"])
def test_who_the_caller_is_comes_before_what_its_body_is(client, tokens, night, body) -> None:
    """FastAPI parses a JSON body before it runs any dependency: without a valid token, a malformed body
    was a 422 telling how it failed to parse, and the 401 came only once the body was mended. Now a
    client not let in learns that, and nothing of its body; a client let in keeps its 422, even where its
    role may not act (as before: its body is told first, then its rights)."""
    label = {"Content-Type": "application/json"}
    for header in (None, "Bearer p3g_unknown"):
        for url in TAKING_JSON:
            refused = client.post(url, content=body, headers={**label, **({"Authorization": header} if header else {})})
            assert (refused.status_code, refused.json()["code"]) == (401, "UNAUTHENTICATED"), (url, refused.text)
            assert refused.headers["www-authenticate"].startswith("Bearer") and "errors" not in refused.json()
    for name in ("admin", "partner_69001"):
        for url in TAKING_JSON:
            answer = client.post(url, content=body, headers={**label, **bearer(tokens[name])})
            assert (answer.status_code, answer.json()["code"]) == (422, "VALIDATION"), (name, url, answer.text)
            assert [e["field"] for e in answer.json()["errors"]] == ["body"]
    xml = {"Content-Type": "application/xml"}  # DUDE's callback: no token asked, its own refusal
    assert client.post("/api/v1/dude/comptes-rendus", content=body, headers=xml).json()["code"] == "L03"


def test_a_line_whose_mission_locale_cannot_be_read_is_seen_by_the_mission_locale_its_export_is_named_for(
        client, gw, tokens, tmp_path) -> None:
    """Support staff of 69002 are the only ones who can have it corrected in Parcours 3: a line of
    P3_69002_….csv whose code_ml is unreadable was hidden from them (no code_ml, so outside every scope)."""
    from gateway.codes import EventType
    from gateway.pipeline.run import run_batch
    from tests.factories import p3_line, write_export

    export = write_export(tmp_path / "P3_69002_20261129.csv", [p3_line(EventType.ENT, code_ml="6900X")])
    run_batch(gw, [export])
    key = "?P3_69002_20261129.csv:2"
    assert states(gw) == {key: "INVALIDE"}
    for name, sees in (("support_69002", True), ("partner_69002", True), ("support_69001", False)):
        listed = client.get("/api/v1/events", params={"state": "INVALIDE"}, headers=bearer(tokens[name])).json()
        assert ([e["key"] for e in listed["items"]] == [key]) is sees, name
        assert (client.get(path(key), headers=bearer(tokens[name])).status_code == 200) is sees, name
