"""What a partner's HTTP client meets besides the resources: no cache keeps an answer, large answers come
gzipped and read back whole (problems and streamed files too), a trailing slash is a 404 that says so rather
than a redirect to plain HTTP, a body that stalls mid-upload is answered 408, and a number too long for any
field is told as such."""

from __future__ import annotations

import gzip
import json
import socket
import time

from gateway.api.docs import ASSETS
from gateway.api.main import create_app
from gateway.api.serving import serve_in_thread
from tests.factories import json_event
from tests.gateway.api.conftest import bearer

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


def raw_body(client, method: str, path: str, **kwargs) -> tuple[dict, bytes]:
    """The headers and the body as they came over the wire, before the client decodes them."""
    with client.stream(method, path, **kwargs) as answer:
        return dict(answer.headers), b"".join(answer.iter_raw())


def test_every_api_answer_says_no_store_but_the_documentation_files(client, tokens, night) -> None:
    """An event carries a name and a birth date: no proxy or browser cache may keep it, nor an error about it."""
    admin = bearer(tokens.admin)
    for path in ("/api/v1/events/69001-1", "/api/v1/events?state=REJETE", "/api/v1/events/69001-999",
                 "/openapi.json", "/healthz"):
        assert client.get(path, headers=admin).headers["cache-control"] == "no-store", path
    assert client.post("/api/v1/events", json=json_event(), headers=admin).headers["cache-control"] == "no-store"
    assert "cache-control" not in client.get("/docs/assets/swagger-ui.css").headers  # no one's data: cacheable


def test_a_large_answer_is_gzipped_for_a_client_that_asks_and_reads_back_whole(client, tokens) -> None:
    partner = bearer(tokens.partner_69001)
    events = {"events": [json_event(id_evenement=str(i)) for i in range(40)]}
    headers, body = raw_body(client, "POST", "/api/v1/events/bulk", json=events, headers={**partner, **GZIP})
    assert (headers["content-encoding"], headers["vary"]) == ("gzip", "Accept-Encoding")
    answer = json.loads(gzip.decompress(body))
    assert answer["counts"] == {"CREE": 40} and headers["content-type"] == "application/json"

    headers, body = raw_body(client, "POST", "/api/v1/events/bulk", json=events, headers={**partner, **IDENTITY})
    assert "content-encoding" not in headers and json.loads(body)["counts"] == {"DEJA_RECU": 40}
    small, _ = raw_body(client, "GET", "/healthz", headers=GZIP)  # under a kilobyte: as it is
    assert "content-encoding" not in small


def test_a_problem_stays_a_problem_when_gzipped(client, tokens) -> None:
    """A 422 naming a hundred fields is compressed like any large answer: same type, same document."""
    bad = {"events": [{**json_event(id_evenement=str(i)), "nom": 5} for i in range(60)]}
    headers, body = raw_body(client, "POST", "/api/v1/events/bulk", json=bad,
                             headers={**bearer(tokens.partner_69001), **GZIP})
    assert headers["content-encoding"] == "gzip" and headers["content-type"] == "application/problem+json"
    problem = json.loads(gzip.decompress(body))
    assert (problem["status"], problem["code"], len(problem["errors"])) == (422, "VALIDATION", 60)
    assert headers["x-request-id"] == problem["request_id"]


def test_a_file_sent_in_pieces_is_gzipped_whole(client) -> None:
    """Swagger UI's script (1.4 MB) is streamed from disk, piece by piece: compressed, it still reads back
    byte for byte; a HEAD says the same headers, without a body."""
    path = "/docs/assets/swagger-ui-bundle.js"
    headers, body = raw_body(client, "GET", path, headers=GZIP)
    assert headers["content-encoding"] == "gzip" and "content-length" not in headers
    assert gzip.decompress(body) == (ASSETS / "swagger-ui-bundle.js").read_bytes()
    assert len(body) < len(gzip.decompress(body)) / 2
    head, nothing = raw_body(client, "HEAD", path, headers=GZIP)
    assert head["content-encoding"] == "gzip" and nothing == b""


def test_a_trailing_slash_is_a_404_naming_the_address_without_it(client, tokens) -> None:
    """Not a 307 to ``http://testserver/api/v1/events``: behind a TLS proxy that sent partners to plain HTTP,
    and a redirected POST is a second request."""
    admin = bearer(tokens.admin)
    for method, path, kwargs in (("GET", "/api/v1/events/", {}),
                                 ("POST", "/api/v1/events/bulk/", {"json": {"events": [json_event()]}})):
        answer = client.request(method, path, headers=admin, follow_redirects=False, **kwargs)
        assert answer.status_code == 404 and "location" not in answer.headers, path
        problem = answer.json()
        assert problem["code"] == "NOT_FOUND"
        assert problem["detail"].endswith(f"s'écrivent sans « / » final ({path.rstrip('/')})"), problem
    assert client.get("/api/v1/events/69001-1", headers=admin).status_code == 404  # and nothing was stored
    assert client.get("/api/v1/nothing/", headers=admin).json()["detail"] == "pas de ressource /api/v1/nothing/"
    console = client.get("/console", follow_redirects=False)  # a person typing the console's address
    assert (console.status_code, console.headers["location"]) == (308, "console/")


def test_a_body_that_stops_arriving_is_a_408_and_the_connection_is_closed(gw, tokens) -> None:
    """Over real HTTP: the headers announce 1,000 bytes, 20 come, then nothing. The worker is not held for as
    long as the client keeps the connection open: the answer is a 408 problem, and the connection ends."""
    gw.settings = gw.settings.model_copy(update={"api_body_stall_seconds": 0.2})  # GATEWAY_API_BODY_STALL_SECONDS
    with serve_in_thread(create_app(gw)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"POST /api/v1/events/bulk HTTP/1.1\r\nHost: passerelle\r\nContent-Type: application/json\r\n"
                         b"Authorization: Bearer " + tokens.partner_69001.encode() +
                         b"\r\nContent-Length: 1000\r\n\r\n" + b'{"events": [{"code_')
            received = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
    assert lines[0] == "HTTP/1.1 408 Request Timeout"
    assert headers["content-type"] == "application/problem+json" and headers["connection"] == "close"
    problem = json.loads(body)
    assert (problem["code"], problem["status"]) == ("BODY_TIMEOUT", 408)
    assert problem["detail"] == "corps de requête interrompu : rien reçu pendant 0.2 s"


def test_a_body_that_trickles_in_is_cut_too_not_only_one_that_stops(gw, tokens) -> None:
    """A byte every so often, each within the silence limit, held the request for as long as the client liked
    (up to the size limit: days at a byte every 29 s). Past its first ``api_body_stall_seconds``, a body must
    come at 1 KiB/s on average, or the answer is the same 408, and the connection ends."""
    import threading

    gw.settings = gw.settings.model_copy(update={"api_body_stall_seconds": 0.2})
    sent = 0
    with serve_in_thread(create_app(gw)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"POST /api/v1/events/bulk HTTP/1.1\r\nHost: passerelle\r\nContent-Type: application/json\r\n"
                         b"Authorization: Bearer " + tokens.partner_69001.encode() +
                         b"\r\nContent-Length: 400\r\n\r\n")

            def trickle() -> None:  # 20 bytes a second, each piece 0.05 s after the last: never silent 0.2 s
                nonlocal sent
                try:
                    for _ in range(400):
                        sock.sendall(b" ")
                        sent += 1
                        time.sleep(0.05)
                except OSError:  # the server closed the connection
                    pass

            sender = threading.Thread(target=trickle, daemon=True)
            sender.start()
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout") and b"connection: close" in head.lower()
    problem = json.loads(body)
    assert problem["code"] == "BODY_TIMEOUT" and problem["detail"].startswith("corps de requête trop lent : ")
    assert "au moins 1024 octets par seconde attendus" in problem["detail"]
    assert sent < 400  # cut before the end


def test_a_number_too_long_to_read_is_told_so_not_as_an_encoding_fault(client, tokens) -> None:
    """Python reads no integer of more than 4,300 digits: the 422 said "JSON en UTF-8 attendu" of a body that
    was both."""
    body = json.dumps({"events": [json_event()]}).replace('"1001"', "9" * 5000).encode()
    answer = client.post("/api/v1/events/bulk", content=body, headers={**bearer(tokens.partner_69001),
                                                                        "Content-Type": "application/json"})
    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    assert (answer.json()["code"], error["field"], error["type"]) == ("VALIDATION", "body", "json_number_too_long")
    assert error["message"].startswith("nombre trop long (plus de 4300 chiffres)") and "UTF-8" not in error["message"]
    latin1 = client.post("/api/v1/events", content=json.dumps(json_event(nom="Lefèvre"), ensure_ascii=False)
                         .encode("latin-1"), headers={**bearer(tokens.partner_69001),
                                                      "Content-Type": "application/json"})
    assert latin1.json()["errors"][0]["message"] == "corps illisible : JSON en UTF-8 attendu"  # still said


def test_the_rate_counts_from_when_the_application_reads_the_body_not_from_the_request() -> None:
    """A small body read late (the application busy first, a loaded machine) is not a slow upload: the 1 KiB/s
    rule counts from the first read, else a 200-byte body read 0.5 s after a 0.2 s grace was a 408."""
    import asyncio

    from gateway.api.middleware import _guarded

    async def body() -> dict:
        return {"type": "http.request", "body": b"x" * 100, "more_body": True}

    async def read_late() -> dict:
        guarded = _guarded(body, limit=10_000, stall_seconds=0.2)
        await asyncio.sleep(0.5)
        return await guarded()

    assert asyncio.run(read_late())["body"] == b"x" * 100


def test_the_documentation_page_behind_a_path_prefix_loads_its_files_and_document_under_it(app) -> None:
    """A proxy serving the gateway under ``/passerelle`` (uvicorn's ``--root-path``): the page asked for its
    script, its style and the document at the root, which the proxy does not route, and stayed blank."""
    from fastapi.testclient import TestClient

    with TestClient(app, root_path="/passerelle") as client:
        page = client.get("/docs").text
        for url in ("/passerelle/openapi.json", "/passerelle/docs/assets/swagger-ui-bundle.js",
                    "/passerelle/docs/assets/swagger-ui.css"):
            assert f"'{url}'" in page or f'"{url}"' in page, (url, page)
        assert client.get("/openapi.json").json()["servers"] == [{"url": "/passerelle"}]
