"""Runs started through the API, runs and envelopes read back, health, readiness and metrics; and every
error of the API as one problem document with its stable code."""

from __future__ import annotations

import base64
import json
import re
import shutil
import time

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.dude.emulator.app import mock_transport
from adapters.dude.emulator.config import EmulatorConfig
from adapters.dude.emulator.core import Emulator
from gateway import lease
from gateway.api.auth import create_client
from gateway.api.main import create_app
from gateway.pipeline import pause
from gateway.pipeline.run import run_batch
from gateway.store.models import runs_t, utcnow
from tests.backends import BACKENDS
from tests.factories import json_event, p3_line, write_export
from tests.gateway.api.conftest import bearer, person
from tests.gateway.test_reconcile import gateway_for


def wait_finished(client, run_id: int, auth: dict, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/v1/runs/{run_id}", headers=auth).json()
        if run["outcome"] != "EN_COURS":
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still going")


def test_an_admin_starts_a_run_that_sends_what_partners_submitted(client, gw, tokens) -> None:
    events = [json_event(id_evenement=str(i)) for i in range(3)]
    client.post("/api/v1/events/bulk", json={"events": events}, headers=bearer(tokens.partner_69001))
    admin = bearer(tokens.admin)
    started = client.post("/api/v1/runs", json={}, headers=admin)
    assert started.status_code == 202
    run_id = started.json()["run_id"]
    assert started.headers["location"] == f"/api/v1/runs/{run_id}" == started.json()["location"]
    run = wait_finished(client, run_id, admin)
    assert run["outcome"] == "TERMINE" and run["trigger"] == "api" and run["envelopes"] == {"TRAITE": 1}
    assert run["summary"]["sending"]["envoyes"] == 1
    # One way of writing an instant in a document: the summary's as the run's own (it said +00:00 beside Z).
    assert run["summary"]["started_at"] == run["started_at"] and run["started_at"].endswith("Z")
    keys = {e["key"]: e["state"] for e in client.get("/api/v1/events", headers=admin).json()["items"]}
    assert keys == {"69001-0": "ACCEPTE", "69001-1": "ACCEPTE", "69001-2": "ACCEPTE"}
    [entry] = [e for e in client.get("/api/v1/audit", headers=admin).json()["items"] if e["action"] == "RUN_START"]
    assert entry["target"] == str(run_id) and entry["actor"] == "api:admin"

    envelope = client.get("/api/v1/envelopes", headers=admin).json()["items"][0]
    detail = client.get(f"/api/v1/envelopes/{envelope['id']}", headers=admin).json()
    assert detail["state"] == "TRAITE" and detail["accepted_count"] == 3 and detail["run_id"] == run_id
    assert [h["state"] for h in detail["history"]] == ["SIGNE", "ENVOYE", "RECU", "TRAITE"]
    partner_view = client.get(f"/api/v1/envelopes/{envelope['id']}", headers=bearer(tokens.partner_69001)).json()
    assert partner_view["states"] == {"ACCEPTE": 3} and partner_view["accepted_count"] is None
    assert partner_view["byte_size"] is None and partner_view["last_error"] is None
    # The whole envelope's figures are admin's: in its history too (they count other missions locales' events).
    assert [h["cause"] for h in detail["history"]] == [
        "3 événements signés", "premier envoi", "accusé de réception : 3 événements reçus",
        "compte rendu rapproché (polling) : 3 acceptés, 0 rejetés"]
    assert [h["cause"] for h in partner_view["history"]] == [
        "lot signé", "premier envoi", "accusé de réception", "compte rendu rapproché (polling)"]


def test_a_run_reads_exports_from_the_input_folder_only(client, gw, tokens, tmp_path) -> None:
    admin = bearer(tokens.admin)
    folder = gw.settings.runs_input_dir
    folder.mkdir(parents=True)
    export = write_export(folder / "P3_69001_20261128.csv", [p3_line(id_evenement="7", **person("69001"))])
    outside = write_export(tmp_path / "P3_69002_20261128.csv", [p3_line(id_evenement="8")])
    for name in ("../P3_69002_20261128.csv", str(outside), "absent.csv", "a\x00b.csv", "x" * 5000):  # NUL: a 500
        refused = client.post("/api/v1/runs", json={"inputs": [name]}, headers=admin)
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "inputs.0"
    started = client.post("/api/v1/runs", json={"inputs": [export.name], "dry_run": True}, headers=admin)
    run = wait_finished(client, started.json()["run_id"], admin)
    assert run["dry_run"] and run["inputs"] == [export.name] and run["summary"]["would_send"] == 1
    shutil.rmtree(folder)


def test_a_run_refuses_a_link_in_the_input_folder_as_the_night_does(client, gw, tokens, tmp_path) -> None:
    """A link given as an input is refused as a file (P3_SYMLINK), wherever it points: before, one to a file of the
    folder was read through its target, and one pointing elsewhere was answered "not found"."""
    admin = bearer(tokens.admin)
    folder = gw.settings.runs_input_dir
    folder.mkdir(parents=True)
    export = write_export(folder / "P3_69001_20261128.csv", [p3_line(id_evenement="7", **person("69001"))])
    outside = write_export(tmp_path / "P3_69002_20261128.csv", [p3_line(id_evenement="8", **person("69002"))])
    (folder / "inside.csv").symlink_to(export)
    (folder / "outside.csv").symlink_to(outside)
    started = client.post("/api/v1/runs", json={"inputs": ["inside.csv", "outside.csv"]}, headers=admin)
    assert started.status_code == 202, started.text
    run = wait_finished(client, started.json()["run_id"], admin)
    assert run["outcome"] == "TERMINE_AVEC_ERREURS"
    assert {(e["file"], e["code"]) for e in run["summary"]["file_errors"]} == {
        ("inside.csv", "P3_SYMLINK"), ("outside.csv", "P3_SYMLINK")}
    assert client.get("/api/v1/events", headers=admin).json()["items"] == []
    shutil.rmtree(folder)


def test_a_second_run_while_one_goes_on_is_a_409(settings, dev_keys, registry_file, tmp_path) -> None:
    config = EmulatorConfig.for_settings(settings, registry_file=registry_file, ledger_path=None,
                                         report_delay_seconds=3600)
    with Emulator(config) as emu:
        gw = gateway_for(settings, mock_transport(emu), report_wait_seconds=1.5, report_poll_interval_seconds=0.05)
        gw.sleep = time.sleep
        _, token = create_client(gw.engine, name="adm", role="admin", now=utcnow())
        admin = bearer(token)
        with TestClient(create_app(gw)) as client:
            client.post("/api/v1/events", json=json_event(), headers=admin)
            first = client.post("/api/v1/runs", json={}, headers=admin)
            assert first.status_code == 202
            second = client.post("/api/v1/runs", json={}, headers=admin)
            assert second.status_code == 409 and second.json()["code"] == "RUN_IN_PROGRESS"
            assert wait_finished(client, first.json()["run_id"], admin)["outcome"] == "TERMINE"

            # A `gateway run` going on on another machine: it holds the run lease (issue 5).
            assert lease.acquire(gw.engine, "run", "autre-machine:4242:abcdef", seconds=1.0)
            with gw.engine.begin() as conn:
                elsewhere = conn.execute(runs_t.insert().values(
                    trigger="cli", dry_run=False, inputs="[]", started_at=utcnow(), outcome="EN_COURS",
                    counts="{}").returning(runs_t.c.id)).scalar_one()
            refused = client.post("/api/v1/runs", json={}, headers=admin)
            assert refused.status_code == 409 and "autre-machine" in refused.json()["detail"]
            deadline = time.monotonic() + 10  # …and that machine dies: its lease expires
            while not lease.read(gw.engine, "run").free_at(lease.now(gw.engine)) and time.monotonic() < deadline:
                time.sleep(0.05)
            third = client.post("/api/v1/runs", json={}, headers=admin)
            assert third.status_code == 202
            wait_finished(client, third.json()["run_id"], admin)
            assert client.get(f"/api/v1/runs/{elsewhere}", headers=admin).json()["outcome"] == "INTERROMPU"
        gw.close()


class Cut(httpx.BaseTransport):
    """The line to DUDE, cut (connection refused) until the test mends it."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.down = inner, True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return self.inner.handle_request(request)


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_a_night_dude_did_not_acknowledge_says_when_its_envelopes_went_since(settings, dev_keys, registry_file,
                                                                             tmp_path) -> None:
    """Its outcome stays ``TERMINE_SANS_ACCUSE`` (what it was when it ended): a partner polling the run could not
    tell it had been caught up, which the console's dashboard says ("lots envoyés depuis")."""
    config = EmulatorConfig.for_settings(settings, registry_file=registry_file, ledger_path=None,
                                         report_delay_seconds=0.0)
    with Emulator(config) as emu:
        line = Cut(mock_transport(emu))
        gw = gateway_for(settings, line, envelope_max_events=2, send_attempts=1, dude_outage_seconds=0)
        lines = [p3_line(id_evenement=str(i), **person(ml)) for ml in ("69001", "69002") for i in range(2)]
        night = run_batch(gw, [write_export(tmp_path / "P3_00000_20261128.csv", lines)])
        assert night.outcome == "TERMINE_SANS_ACCUSE"
        _, admin = create_client(gw.engine, name="adm", role="admin", now=utcnow())
        _, partner = create_client(gw.engine, name="p", role="partner", ml_codes=["69001"], now=utcnow())

        def unacknowledged(token: str) -> tuple[int, int]:
            """The night's count, as the run reads it and as the list of runs does."""
            run = client.get(f"/api/v1/runs/{night.run_id}", headers=bearer(token)).json()
            [listed] = [r for r in client.get("/api/v1/runs", headers=bearer(token)).json()["items"]
                        if r["id"] == night.run_id]
            assert run["outcome"] == listed["outcome"] == "TERMINE_SANS_ACCUSE"
            return run["unacknowledged_envelopes"], listed["unacknowledged_envelopes"]

        with TestClient(create_app(gw)) as client:
            assert unacknowledged(admin) == (2, 2)  # a lot of 69001's events, and one of 69002's
            assert unacknowledged(partner) == (1, 1)  # only the one that holds its events
            line.down = False  # DUDE back: the next run sends them first, same IdLot
            assert run_batch(gw, []).sending["reprises"] == 2
            assert unacknowledged(admin) == (0, 0) and unacknowledged(partner) == (0, 0)
        gw.close()


def test_health_readiness_and_metrics(client, gw, tokens, night) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and set(ready.json()["checks"].values()) == {"ok"}
    client.get("/api/v1/events/69001-1", headers=bearer(tokens.admin))
    metrics = client.get("/metrics", headers=bearer(tokens.admin))
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for line in ('gateway_events{state="ACCEPTE"} 4.0', 'gateway_events{state="REJETE"} 2.0',
                 'gateway_events{state="INVALIDE"} 3.0', 'gateway_envelopes{state="TRAITE"} 1.0',
                 "gateway_envelopes_sent_total 1.0", "gateway_envelope_retries_total 0.0",
                 "gateway_report_latency_seconds_count 1.0", "gateway_run_duration_seconds_count 1.0",
                 'gateway_api_requests_total{method="GET",operation="read_event",status="200"} 1.0'):
        assert line in text, line
    assert client.get("/metrics").status_code == 401

    # What an alert watches: when the last good night ended, and whether sending is paused.
    with gw.engine.connect() as conn:
        finished = conn.execute(sa.select(runs_t.c.finished_at)).scalar_one()
    [last] = re.findall(r'^gateway_last_run_finished_timestamp_seconds\{outcome="TERMINE"\} (\S+)$', text, re.M)
    assert abs(float(last) - finished.timestamp()) < 0.001
    assert "gateway_sending_paused 0.0" in text
    pause.pause(gw.engine, by="test", reason="incident DUDE", now=utcnow())
    assert "gateway_sending_paused 1.0" in client.get("/metrics", headers=bearer(tokens.admin)).text
    # A mistyped GATEWAY_INPUT_DIR: every night would read nothing; the run's warning said it, now /metrics too.
    assert "gateway_drop_folder_ok 1.0" in text
    gw.settings = gw.settings.model_copy(update={"input_dir": gw.settings.data_dir / "depot-mal-nomme"})
    assert "gateway_drop_folder_ok 0.0" in client.get("/metrics", headers=bearer(tokens.admin)).text


def test_not_ready_without_keys(settings) -> None:
    from gateway.context import Gateway

    gw = Gateway.open(settings)  # no `gateway keys init`
    with TestClient(create_app(gw)) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.json()["code"] == "NOT_READY"
    assert answer.headers["content-type"] == "application/problem+json"
    gw.close()


PROBLEMS = [
    ("GET", "/api/v1/events", None, None, 401, "UNAUTHENTICATED"),
    ("GET", "/api/v1/audit", "partner_69001", None, 403, "FORBIDDEN"),
    ("GET", "/api/v1/nulle-part", "admin", None, 404, "NOT_FOUND"),
    ("GET", "/api/v1/events/69001-424242", "admin", None, 404, "NOT_FOUND"),
    ("GET", "/api/v1/runs/999", "admin", None, 404, "NOT_FOUND"),
    ("GET", "/api/v1/envelopes/inconnu", "admin", None, 404, "NOT_FOUND"),
    ("DELETE", "/api/v1/events", "admin", None, 405, "METHOD_NOT_ALLOWED"),
    ("GET", "/api/v1/events?limit=0", "admin", None, 422, "VALIDATION"),
    ("GET", "/api/v1/events?cursor=pas-un-curseur", "admin", None, 422, "INVALID_CURSOR"),
    ("GET", "/api/v1/events?updated_from=2026-11-20T10:00:00", "admin", None, 422, "VALIDATION"),
    ("GET", "/api/v1/runs/abc", "admin", None, 422, "VALIDATION"),
    ("POST", "/api/v1/events/bulk", "admin", {"events": "non"}, 422, "VALIDATION"),
    ("POST", "/api/v1/dude/comptes-rendus", None, None, 415, "UNSUPPORTED_MEDIA_TYPE"),  # L03: test_callback
]


@pytest.mark.parametrize("method, url, who, body, status, code", PROBLEMS,
                         ids=[f"{p[0]} {p[1]} {p[4]}" for p in PROBLEMS])
def test_every_error_is_a_problem_document_with_its_code(client, tokens, method, url, who, body, status, code) -> None:
    answer = client.request(method, url, json=body, headers=bearer(tokens[who]) if who else {})
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == code and problem["status"] == status
    assert problem["type"].endswith(code) and problem["title"] and problem["detail"]
    assert problem["instance"] == url.split("?")[0] and problem["request_id"] == answer.headers["x-request-id"]
    if status == 405:
        assert answer.headers["allow"] == "GET, POST"
    if status == 422:
        assert problem["errors"] and all(e["field"] for e in problem["errors"])


def test_a_wrong_method_on_a_path_beside_an_event_key_is_a_405_naming_the_right_one(client, tokens, night) -> None:
    """``GET /api/v1/events/bulk`` was read as the event "bulk" (404 "événement bulk introuvable"), and a
    ``PUT`` there said ``Allow: GET, POST``. Every literal path beside ``/events/{key}`` (``bulk``,
    ``resend``: no key can be either, a key is ``code_ml-id_evenement`` or ``?file:line``) now answers
    any other method, GET and HEAD included, with a 405 naming its own methods, and only them."""
    paths = client.get("/openapi.json").json()["paths"]
    beside_a_key = {path: sorted(m.upper() for m in paths[path]) for path in paths if "{" not in path
                    and f"{path.rsplit('/', 1)[0]}/{{key}}" in paths}
    assert beside_a_key == {"/api/v1/events/bulk": ["POST"], "/api/v1/events/resend": ["POST"]}
    for path, allowed in beside_a_key.items():
        for method in ("GET", "HEAD", "PUT", "PATCH", "DELETE"):
            answer = client.request(method, path, headers=bearer(tokens.admin))
            named = ", ".join(allowed)
            assert (answer.status_code, answer.headers["allow"]) == (405, named), (method, path, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            if method != "HEAD":
                problem = answer.json()
                assert problem["code"] == "METHOD_NOT_ALLOWED" and problem["instance"] == path
                assert problem["detail"] == f"{method} non admis sur {path} (admis ici : {named})"
    assert client.get("/api/v1/events/69001-1", headers=bearer(tokens.admin)).status_code == 200


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)  # search on both stores
def test_a_cursor_from_another_search_is_refused(client, tokens, night) -> None:
    auth = bearer(tokens.admin)
    page = client.get("/api/v1/events", params={"limit": 2, "code_ml": "69001"}, headers=auth).json()
    other = client.get("/api/v1/events", params={"limit": 2, "code_ml": "69002", "cursor": page["next_cursor"]},
                       headers=auth)
    assert other.status_code == 422 and other.json()["code"] == "INVALID_CURSOR"


def _rewritten(cursor: str, **position) -> str:
    """A cursor as a client could rewrite it: readable base64 JSON, its search's fingerprint kept."""
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    data["p"] = {**data["p"], **position}
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _client_port(response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


def _second_run_and_envelope(client, gw, auth: dict) -> None:
    """Two of everything a list pages through: the night's rejects resent (audited twice) and sent again."""
    from gateway.pipeline.run import run_batch

    assert client.post("/api/v1/events/resend", json={"states": ["REJETE"]}, headers=auth).status_code == 200
    run_batch(gw, [])
    assert client.post("/api/v1/events/resend", json={"states": ["REJETE"]}, headers=auth).status_code == 200


FORGED = {"id-beyond-64-bits": {"id": 2**70}, "id-true": {"id": True}, "id-text": {"id": "12"},
          "id-negative": {"id": -1}, "extra-member": {"x": 1}}


@pytest.mark.parametrize("position", FORGED.values(), ids=FORGED.keys())
def test_a_rewritten_cursor_is_refused_not_a_500(client, gw, tokens, night, position) -> None:
    """An id past the store's integers reached the database (a 500); a text where an id goes restarted the
    list in silence. Every list checks what its cursor holds."""
    auth = bearer(tokens.admin)
    _second_run_and_envelope(client, gw, auth)
    for url in ("/api/v1/events", "/api/v1/audit", "/api/v1/envelopes", "/api/v1/runs"):
        page = client.get(url, params={"limit": 1}, headers=auth).json()
        assert page["next_cursor"], url
        if url == "/api/v1/envelopes" and "id" in position and position["id"] == "12":
            continue  # an envelope's id is a text: "12" is a well-formed one
        answer = client.get(url, params={"limit": 1, "cursor": _rewritten(page["next_cursor"], **position)},
                            headers=auth)
        assert answer.status_code == 422 and answer.json()["code"] == "INVALID_CURSOR", (url, answer.text)
        assert client.get(url, params={"limit": 1, "cursor": page["next_cursor"]}, headers=auth).status_code == 200


def test_an_envelope_cursor_with_a_timestamp_outside_the_calendar_is_refused(client, gw, tokens, night) -> None:
    auth = bearer(tokens.admin)
    _second_run_and_envelope(client, gw, auth)
    page = client.get("/api/v1/envelopes", params={"limit": 1}, headers=auth).json()
    for at in ("0001-01-01T00:00:00+14:00", "2026-11-20T10:00:00", "demain"):
        answer = client.get("/api/v1/envelopes", params={"cursor": _rewritten(page["next_cursor"], at=at)},
                            headers=auth)
        assert answer.status_code == 422 and answer.json()["code"] == "INVALID_CURSOR", at


def test_a_bug_is_a_500_problem_and_the_connection_goes_on(gw, tokens, monkeypatch) -> None:
    """Over real HTTP: Starlette's last-resort handler answered, then re-raised, and uvicorn cut the
    connection, so the next request on it (a partner's next bulk) failed without an answer."""
    import threading

    import httpx
    import uvicorn

    from gateway.api.routes import events as event_routes
    from gateway.demo import free_port

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(event_routes, "list_events", broken)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(gw), host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=bearer(tokens.admin), timeout=10) as http:
            failed = http.get("/api/v1/events")
            assert failed.status_code == 500
            assert failed.headers["content-type"] == "application/problem+json"
            assert failed.json()["code"] == "INTERNAL" and "a bug" not in failed.text
            assert failed.headers.get("connection") != "close"
            after = http.post("/api/v1/events", json=json_event(), headers=bearer(tokens.partner_69001))
            assert after.status_code == 201
            # the same connection (httpx opens another, in silence, when it sees the first one closed)
            assert _client_port(after) == _client_port(failed)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)  # search on both stores
def test_pages_stay_right_while_events_arrive(client, gw, tokens, night) -> None:
    auth = bearer(tokens.admin)
    seen, cursor, added = [], None, 0
    while True:
        page = client.get("/api/v1/events", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=auth).json()
        seen += [e["key"] for e in page["items"]]
        if added < 3:  # a partner submits between two pages
            client.post("/api/v1/events", json=json_event(id_evenement=f"50{added}"), headers=auth)
            added += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 9 + 3
    with gw.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from events")).scalar() == 12


def test_head_answers_as_get_without_the_body(client, tokens, night) -> None:
    """Uptime monitors probe with HEAD: every GET route answered 405 ("Allow: GET"), /healthz included."""
    for url, headers in (("/healthz", {}), ("/api/v1/events/69001-1", bearer(tokens.admin)),
                         ("/openapi.json", {})):
        got, head = client.get(url, headers=headers), client.head(url, headers=headers)
        assert (head.status_code, head.content) == (200, b""), url
        assert head.headers["content-type"] == got.headers["content-type"]
        # The GET's own headers (RFC 9110 §9.3.2): its length as sent, gzipped when the answer is large enough.
        assert head.headers["content-length"] == got.headers["content-length"], url
        assert head.headers.get("content-encoding") == got.headers.get("content-encoding"), url
    identity = client.get("/healthz", headers={"Accept-Encoding": "identity"})
    assert client.head("/healthz").headers["content-length"] == str(len(identity.content))
    assert client.head("/api/v1/events/69001-1").status_code == 401  # who asks is still checked
