"""The emulator over HTTP: one route table, served by a real ASGI app and by ``httpx.MockTransport``.

STYLE.md 7: "the emulator as a plain handler behind the same interface as the real endpoint, so tests
can plug it into httpx.MockTransport and the demo can serve it on a port". Both doors go through
`dispatch`, which owns the route table; neither holds any logic of its own beyond reading the body.

Routes (base ``/dude/v1``, as `gateway.settings.Settings.dude_url` expects)::

    POST /dude/v1/lots                          200 signed AccuseReception (RECU or REJETE)
                                                400 problem (no IdLot readable), 413 problem (L07)
    GET  /dude/v1/lots/{id_lot}/compte-rendu    200 signed CompteRendu, 202 not yet, 404 NO_REPORT
    GET  /dude/v1/ledger                        200 JSON: the ledger summary (tests, demo)
    GET  /dude/v1/ledger/evenements/{key}       200 JSON: every version of one event key
    GET  /dude/v1/pannes                        200 JSON: the faults on (`Faults.as_dict`)
    PUT  /dude/v1/pannes                        200 JSON: the faults now on, from a JSON object (fields
                                                left out are off); 422 problem if one is unknown or wrong
    GET  /healthz                               200 JSON

``/pannes`` is the emulator's own administration (a real DUDE has no such route): it lets a test or the
chaos night change the faults without restarting the emulator. A fault that misdelivers an answer
(`EmulatorAnswer.fault`) is carried out here, by each door: see `create_app` and `mock_transport`.

Any other path is a 404 problem, another method a 405 problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.dude.emulator.config import EmulatorConfig
from adapters.dude.emulator.core import CUT, TIMEOUT, Emulator, EmulatorAnswer, json_answer, problem
from adapters.dude.emulator.faults import Faults
from gateway.api.serving import serve_in_thread as serve_app_in_thread

log = logging.getLogger(__name__)

BASE = "/dude/v1"
PUSH_INTERVAL_SECONDS = 0.2
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

Handler = Callable[[Emulator, dict[str, str], bytes], EmulatorAnswer]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


def _route(method: str, path: str, handler: Handler) -> _Route:
    return _Route(method, re.compile(path), handler)


def set_faults(emulator: Emulator, body: bytes) -> EmulatorAnswer:
    """``PUT /pannes``: replace the faults on, whole (a JSON object; fields left out are off)."""
    try:
        faults = Faults.from_mapping(json.loads(body or b"{}"))
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        return problem(422, "Pannes invalides", code="VALIDATION", detail=str(exc))
    emulator.faults = faults
    log.warning("faults now on: %s", json.dumps(faults.as_dict(), sort_keys=True) if faults.any else "none")
    return json_answer(faults.as_dict())


ROUTES: tuple[_Route, ...] = (
    _route("POST", rf"{BASE}/lots", lambda emu, _, body: emu.receive(body)),
    _route("GET", rf"{BASE}/lots/(?P<id_lot>[^/]+)/compte-rendu", lambda emu, p, _: emu.report(p["id_lot"])),
    _route("GET", rf"{BASE}/ledger", lambda emu, _, __: json_answer(emu.ledger_summary())),
    _route("GET", rf"{BASE}/ledger/evenements/(?P<key>[^/]+)",
           lambda emu, p, _: json_answer(emu.ledger_events(p["key"]))),
    _route("GET", rf"{BASE}/pannes", lambda emu, _, __: json_answer(emu.faults.as_dict())),
    _route("PUT", rf"{BASE}/pannes", lambda emu, _, body: set_faults(emu, body)),
    _route("GET", r"/healthz", lambda emu, _, __: json_answer({"status": "ok"})),
)


def dispatch(emulator: Emulator, method: str, path: str, body: bytes = b"") -> EmulatorAnswer:
    """The one place a request becomes a call on `Emulator` (both the ASGI app and the mock use it)."""
    allowed = []
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match is None:
            continue
        if route.method != method.upper():
            allowed.append(route.method)
            continue
        try:
            return route.handler(emulator, match.groupdict(), body)
        except Exception:  # a bug in the emulator must still answer, and be seen in the logs
            log.exception("emulator failed on %s %s", method, path)
            return problem(500, "Erreur interne de l'émulateur", code="INTERNAL",
                           detail="voir le journal de l'émulateur")
    if allowed:
        return problem(405, "Méthode non admise", code="METHOD_NOT_ALLOWED",
                       detail=f"{method} {path} : {', '.join(allowed)} seulement",
                       headers=(("Allow", ", ".join(allowed)),))
    return problem(404, "Ressource inconnue", code="NOT_FOUND", detail=f"pas de ressource {path}")


# -- the ASGI door ------------------------------------------------------------------------------------

class ReportPusher:
    """Calls `Emulator.deliver_due_reports` every ``interval`` seconds in a daemon thread."""

    def __init__(self, emulator: Emulator, *, interval: float = PUSH_INTERVAL_SECONDS):
        self.emulator, self.interval = emulator, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dude-emulator-push", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.emulator.config.callback_timeout_seconds + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.emulator.deliver_due_reports()
            except Exception:  # keep pushing whatever one round did
                log.exception("report delivery round failed")


async def _read_capped(request: Request, cap: int) -> bytes | int:
    """The body, or its size so far as soon as it exceeds ``cap`` (the rest is never read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        return int(declared)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return size
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(emulator: Emulator) -> Starlette:
    """An ASGI app serving ``emulator``; pushes reports in the background when a callback is set."""

    async def endpoint(request: Request) -> Response:
        body = await _read_capped(request, emulator.config.max_bytes)
        if isinstance(body, int):
            answer = emulator.refuse_too_large(body)
        else:  # receive() is CPU-bound: keep the event loop free for the other requests
            answer = await run_in_threadpool(dispatch, emulator, request.method, request.url.path, body)
        if answer.fault == TIMEOUT:  # the client has given up by the time this answer goes out
            await asyncio.sleep(answer.delay_seconds)
        response_class = _CutResponse if answer.fault == CUT else Response
        return response_class(answer.body, status_code=answer.status_code, media_type=answer.content_type,
                              headers=dict(answer.headers))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pusher = ReportPusher(emulator) if emulator.config.callback_url else None
        if pusher is not None:
            pusher.start()
        try:
            yield
        finally:
            if pusher is not None:
                pusher.stop()

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=_ALL_METHODS)], lifespan=lifespan)
    app.state.emulator = emulator
    return app


class _CutResponse(Response):
    """Announces the whole body, sends half of it, and stops: uvicorn then closes the connection
    ("ASGI callable returned without completing response"), which the client sees as a connection
    cut in the middle of the answer — the receipt was produced, it just never arrives whole."""

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})


# -- the in-process door ------------------------------------------------------------------------------

def mock_transport(emulator: Emulator) -> httpx.MockTransport:
    """``httpx.Client(transport=mock_transport(emu), base_url="http://dude")``: no server, same routes."""

    def handler(request: httpx.Request) -> httpx.Response:
        answer = dispatch(emulator, request.method, request.url.path, request.read())
        if answer.fault == TIMEOUT:
            raise httpx.ReadTimeout("the DUDE emulator held its answer back (fault)", request=request)
        if answer.fault == CUT:
            raise httpx.RemoteProtocolError("the DUDE emulator cut the connection (fault)", request=request)
        return httpx.Response(answer.status_code, content=answer.body,
                              headers={"Content-Type": answer.content_type, **dict(answer.headers)})

    return httpx.MockTransport(handler)


# -- serving on a port --------------------------------------------------------------------------------

def serve(config: EmulatorConfig, *, host: str = "127.0.0.1", port: int = 8790, faults: Faults | None = None) -> None:
    """Run the emulator until interrupted (the demo's ``DUDE``), quietly: warnings only, no access log."""
    with Emulator(config, faults=faults) as emulator:
        uvicorn.run(create_app(emulator), host=host, port=port, log_level="warning", access_log=False)


@contextlib.contextmanager
def serve_in_thread(emulator: Emulator, *, host: str = "127.0.0.1", port: int = 0,
                    startup_timeout: float = 10.0) -> Iterator[str]:
    """Serve ``emulator`` from a background thread; yields its base URL (``http://host:port``).

    ``port=0`` takes a free port. On exit the server stops (lifespan shutdown included); the
    emulator itself stays open, it belongs to the caller.
    """
    with serve_app_in_thread(create_app(emulator), host=host, port=port, startup_timeout=startup_timeout,
                             name="the emulator", thread_name="dude-emulator-http") as url:
        yield url
