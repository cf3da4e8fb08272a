"""Over real HTTP, as in the demo: the API served by uvicorn, the emulator served on its own port and
pushing its signed reports to the API's callback; a partner submits, an admin starts the run, the
reports come back through the callback, and nothing is processed twice."""

from __future__ import annotations

import select
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

from adapters.dude.emulator.app import serve_in_thread as serve_emulator
from adapters.dude.emulator.config import EmulatorConfig
from adapters.dude.emulator.core import Emulator
from gateway.api.auth import create_client
from gateway.api.main import create_app
from gateway.api.routes.dude import CALLBACK_PATH
from gateway.api.serving import serve_in_thread
from gateway.context import Gateway
from gateway.store.models import DOC_REPORT, documents_t, utcnow
from tests.factories import json_event
from tests.gateway.api.conftest import person

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def live(settings, dev_keys, registry_file):
    """API and emulator, each on its own loopback port; polling set far away, so reports must be pushed."""
    settings = settings.model_copy(update={"report_poll_interval_seconds": 60, "report_wait_seconds": 20,
                                           "api_max_body_bytes": 256 * 1024})
    gw = Gateway.open(settings)
    gw.sleep = lambda seconds: time.sleep(min(seconds, 0.05))  # the run checks often; it never polls (60 s)
    _, admin = create_client(gw.engine, name="admin", role="admin", now=utcnow())
    _, partner = create_client(gw.engine, name="ml-lyon", role="partner", ml_codes=["69001"], now=utcnow())
    with serve_in_thread(create_app(gw)) as api_url:
        config = EmulatorConfig.for_settings(settings, registry_file=registry_file, ledger_path=None,
                                             report_delay_seconds=0.1, callback_url=f"{api_url}{CALLBACK_PATH}")
        with Emulator(config) as emulator, serve_emulator(emulator) as dude_url:
            gw.settings = gw.settings.model_copy(update={"dude_url": f"{dude_url}/dude/v1"})
            yield gw, api_url, emulator, {"admin": admin, "partner": partner}
    gw.close()


def test_reports_come_back_through_the_callback(live) -> None:
    gw, api_url, emulator, tokens = live
    with httpx.Client(base_url=api_url, timeout=30) as http:
        partner = {"Authorization": f"Bearer {tokens['partner']}"}
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        events = [json_event(id_evenement=str(i), **_iso(person("69001"))) for i in range(60)]
        events.append(json_event(id_evenement="99", **{**_iso(person("69001")), "identifiant_pe": "9999999Z"}))
        submitted = http.post("/api/v1/events/bulk", json={"events": events}, headers=partner).json()
        assert submitted["counts"] == {"CREE": 61}

        run_id = http.post("/api/v1/runs", json={}, headers=admin).json()["run_id"]
        deadline = time.monotonic() + 30
        while (run := http.get(f"/api/v1/runs/{run_id}", headers=admin).json())["outcome"] == "EN_COURS":
            assert time.monotonic() < deadline, run
            time.sleep(0.05)
        assert run["outcome"] == "TERMINE" and run["envelopes"] == {"TRAITE": 2}  # 61 events, 50 per envelope

        states = {}
        page = http.get("/api/v1/events", params={"limit": 1000}, headers=partner).json()
        for item in page["items"]:
            states[item["key"]] = (item["state"], (item["reject"] or {}).get("code"))
        assert states.pop("69001-99") == ("REJETE", "E01")
        assert set(states.values()) == {("ACCEPTE", None)} and len(states) == 60

    with gw.engine.connect() as conn:
        notes = conn.execute(sa.select(documents_t.c.note).where(documents_t.c.kind == DOC_REPORT)).scalars().all()
    assert notes == ["callback", "callback"]
    ledger = emulator.ledger_summary()
    assert ledger["events_applied_more_than_once"] == [] and ledger["lots_processed_more_than_once"] == []


def _iso(fields: dict[str, str]) -> dict[str, str]:
    day, month, year = fields["date_naissance"].split("/")
    return {**fields, "date_naissance": f"{year}-{month}-{day}"}


def read_response(sock: socket.socket) -> bytes:
    """One HTTP response, headers and body (by its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_big_body_is_refused_before_it_is_all_sent(live) -> None:
    _, api_url, _, tokens = live
    host, port = urlsplit(api_url).hostname, urlsplit(api_url).port
    limit, total = 256 * 1024, 64 * 1024 * 1024

    with socket.create_connection((host, port), timeout=10) as declared:  # Content-Length over the limit
        declared.sendall(f"POST /api/v1/events/bulk HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
                         f"{tokens['partner']}\r\nContent-Type: application/json\r\nContent-Length: {total}\r\n\r\n"
                         .encode())
        answer = read_response(declared)
    assert answer.startswith(b"HTTP/1.1 413") and b"application/problem+json" in answer and b"TOO_LARGE" in answer

    with socket.create_connection((host, port), timeout=10) as chunked:  # no length: counted as it streams
        chunked.sendall(f"POST /api/v1/events/bulk HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
                        f"{tokens['partner']}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                        .encode())
        chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
        sent, answer = 0, b""
        try:
            while sent < total:
                chunked.sendall(chunk)
                sent += 16384
                if select.select([chunked], [], [], 0)[0]:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_response(chunked)
    assert answer.startswith(b"HTTP/1.1 413") and b"TOO_LARGE" in answer
    assert limit < sent < total / 4  # the server answered long before the body ended
