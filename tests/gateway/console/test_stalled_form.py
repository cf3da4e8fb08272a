"""A console form whose body stops arriving: a 408 page that says nothing was done, and the connection ends, as
the API's 408 does (`gateway.api.middleware`): left open, the client went on holding it."""

from __future__ import annotations

import asyncio

from gateway.api.main import create_app


def call(app, path: str, first_piece: bytes) -> tuple[dict, bytes]:
    """``POST path`` over ASGI: the headers announce 500 bytes, ``first_piece`` comes, then nothing."""
    sent: list[dict] = []

    async def main() -> None:
        pieces = [first_piece]

        async def receive() -> dict:
            if pieces:
                return {"type": "http.request", "body": pieces.pop(), "more_body": True}
            await asyncio.sleep(3600)  # the client went silent
            raise AssertionError("not reached")

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"testserver"), (b"content-type", b"application/x-www-form-urlencoded"),
                             (b"content-length", b"500")],
                 "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
        await asyncio.wait_for(app(scope, receive, send), 30)

    asyncio.run(main())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return {"status": start["status"], **{k.decode(): v.decode() for k, v in start["headers"]}}, body


def test_a_console_form_that_stops_arriving_is_a_408_that_closes_the_connection(gw) -> None:
    app = create_app(gw, body_stall_seconds=0.2)
    for path, piece in (("/console/actions/clore", b"cle=69001-3&commentaire=jeune"),
                        ("/console/connexion", b"jeton=p3g_")):
        headers, body = call(app, path, piece)
        assert (headers["status"], headers["connection"]) == (408, "close"), path
        assert "rien n'a été fait" in body.decode().replace("&#39;", "'"), path
