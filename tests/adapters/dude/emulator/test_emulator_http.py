"""The emulator over HTTP: the same routes through ``httpx.MockTransport`` and a real uvicorn server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from adapters.dude.emulator.app import mock_transport, serve_in_thread

XML = {"Content-Type": "application/xml"}


@pytest.fixture(params=["mock-transport", "uvicorn"])
def client(request, emulator) -> Iterator[httpx.Client]:
    """An HTTP client to ``emulator``: in process, or over a real loopback socket."""
    if request.param == "mock-transport":
        with httpx.Client(transport=mock_transport(emulator), base_url="http://dude.test") as http:
            yield http
    else:
        with serve_in_thread(emulator) as url, httpx.Client(base_url=url, timeout=10) as http:
            yield http


def test_a_night_over_http(client: httpx.Client, make_event, make_lot, read_receipt, emulator) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    id_lot = str(uuid.uuid4())
    event = make_event()
    body = make_lot([event, make_event(identifiant_pe="9999999Z")], id_lot=id_lot)
    posted = client.post("/dude/v1/lots", content=body, headers=XML)
    assert posted.status_code == 200 and posted.headers["content-type"].startswith("application/xml")
    assert client.post("/dude/v1/lots", content=body, headers=XML).content == posted.content
    report = client.get(f"/dude/v1/lots/{id_lot}/compte-rendu")
    assert report.status_code == 200 and report.content == emulator.report(id_lot).body
    ledger = client.get("/dude/v1/ledger").json()
    assert (ledger["lots"], ledger["lot_replays"], ledger["events_applied"]) == (1, 1, 1)
    assert ledger["events_applied_more_than_once"] == [] and ledger["lots_processed_more_than_once"] == []
    (entry,) = client.get(f"/dude/v1/ledger/evenements/12345-{event.record['id_evenement']}").json()
    assert entry["status"] == "ACCEPTE" and entry["lots"] == [id_lot]


def test_errors_over_http(client: httpx.Client) -> None:
    hostile = client.post("/dude/v1/lots", content=b'<!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>', headers=XML)
    assert (hostile.status_code, hostile.headers["content-type"], hostile.json()["code"]) == (
        400, "application/problem+json", "L03")
    assert client.get(f"/dude/v1/lots/{uuid.uuid4()}/compte-rendu").json()["code"] == "NO_REPORT"
    assert client.get("/dude/v2/lots").status_code == 404
    wrong_method = client.get("/dude/v1/lots")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"


def test_a_body_over_the_limit_is_refused_413_over_a_real_socket(make_emulator, make_event, make_lot) -> None:
    emulator = make_emulator(max_bytes=2_000)
    with serve_in_thread(emulator) as url:
        answer = httpx.post(f"{url}/dude/v1/lots", content=make_lot([make_event() for _ in range(5)]), headers=XML)
    assert (answer.status_code, answer.json()["code"]) == (413, "L07")


class _Receiver(BaseHTTPRequestHandler):
    """The gateway's callback, reduced to keeping what it is given."""

    received: list[bytes] = []
    arrived = threading.Event()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(body)
        self.send_response(204)
        self.end_headers()
        type(self).arrived.set()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"received": [], "arrived": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/passerelle/compte-rendu", handler
    finally:
        server.shutdown()
        server.server_close()


def test_reports_are_pushed_to_the_callback_by_the_served_app(make_emulator, make_event, make_lot, receiver) -> None:
    url, handler = receiver
    emulator = make_emulator(callback_url=url)
    id_lot = str(uuid.uuid4())
    with serve_in_thread(emulator) as base:
        assert httpx.post(f"{base}/dude/v1/lots", content=make_lot([make_event()], id_lot=id_lot),
                          headers=XML).status_code == 200
        assert handler.arrived.wait(timeout=10), "no report pushed"
        deadline = time.monotonic() + 10  # the push is marked once the callback answered
        while emulator.ledger_summary()["reports"]["pushed"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert handler.received == [emulator.report(id_lot).body]
    assert emulator.ledger_summary()["reports"]["pushes"] == 1
