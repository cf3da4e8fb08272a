"""What every request goes through: a request id, a body size limit and a body stall limit, the caching
rule, and the request metrics.

One plain ASGI middleware (no `BaseHTTPMiddleware`, which would add a task and a copy per request on
the hot path of the bulk submission and of the event reads).

The size limit refuses a body **before it is read whole** (issue 3): a declared ``Content-Length``
over the limit is answered 413 at once, without reading a byte; a body sent without one (chunked) is
counted as it streams in, and the request fails with 413 as soon as the count passes the limit, the
rest never being read. JSON requests have ``api_max_body_bytes``; DUDE's callback, which carries
signed XML reports, has ``max_document_bytes`` like every XML document the gateway takes in.

A body that stops arriving is not waited for forever: a client that sent its headers and part of its body,
then nothing, held a worker (and a database connection, for the routes that take one first) for as long as
it kept the connection open. Each read of the body waits at most ``body_stall_seconds`` (`BODY_STALL_SECONDS`)
for the next piece, then the request fails with a 408 problem (``BODY_TIMEOUT``) and the connection is
closed. Silence alone was not enough: a byte every 29 s held the request as long, up to the size limit (days).
So past its first ``body_stall_seconds`` a body must also come at ``BODY_MIN_RATE`` on average (1 KiB/s, a
dial-up line's speed: a 10 MB bulk may take close to three hours), or fail with the same 408.

Every answer says ``Cache-Control: no-store`` (unless it says otherwise itself): an event carries names and
birth dates, and a shared proxy or a browser's disk cache must not keep it (RFC 9111 §5.2.2.5). The only
answers left out are those of ``cache_exempt`` paths: the documentation's static files, and the support
console, which sets its own (`gateway.console.app.SecurityHeaders`).

Access logs name the method, the path without its query string (which may hold a jobseeker id:
brief §6, "logs carry event keys, never names"), the status and the time.

Behind a reverse proxy serving the gateway under a path (``gateway serve --root-path /passerelle``, the proxy
stripping ``/passerelle`` before passing the request on), ``scope["root_path"]`` is the prefix and, as uvicorn
makes it (``httptools_impl``: ``full_path = self.root_path + path``) and Starlette's router and mounts expect
it (they take ``root_path`` off the front of ``path``), ``scope["path"]`` **starts with it**:
``/passerelle/api/v1/dude/comptes-rendus``. What this middleware decides by path (the callback's larger body
limit, the paths kept out of ``no-store``) is decided on `route_path`, the path without the prefix, as the
router routes it: matched on ``scope["path"]``, the callback took the JSON limit (413 on a large report) and
the documentation's and the console's static files were marked ``no-store``. The prefix is put there by
uvicorn's ``--root-path`` or by `RootPath` (the gateway's setting, `gateway.api.main.create_app`). The access
log and the problems name the whole path, the address the client used, as uvicorn's own access log would.

An unexpected failure (a bug) is answered here, as a 500 problem document, and logged once with its
traceback. Not by an exception handler for ``Exception``: Starlette runs that one in its outermost
middleware, which re-raises after answering, and uvicorn then closes the connection, so that a partner's
next request on the same keep-alive connection failed without an answer (was its bulk stored or not?).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.problems import PROBLEM_MEDIA_TYPE, problem_body
from gateway.errors import FieldError, PayloadTooLarge, RequestRejected

access_log = logging.getLogger("gateway.api.access")
log = logging.getLogger("gateway.api")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

#: How long a request body may go silent before the request fails (408), unless told (the setting
#: ``api_body_stall_seconds``, through `gateway.api.main.create_app`): generous for a partner on a slow line,
#: short beside a worker held for good.
BODY_STALL_SECONDS = 30.0

#: The slowest a body may come on average, in bytes a second, once it has had ``body_stall_seconds`` to start.
BODY_MIN_RATE = 1024

#: ``observe(method, operation, status, seconds)``
Observer = Callable[[str, str, int, float], None]


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; the problem handlers answer 413."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="corps de requête trop volumineux")


class BodyStalled(HTTPException):
    """Raised from ``receive`` when the next piece of a body does not come in time; the problem handlers
    answer 408 (an `HTTPException`, like `BodyTooLarge`, so that FastAPI's body reading lets it through
    instead of making it a 400 "error parsing the body")."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=408, detail=detail)


def route_path(scope: Scope) -> str:
    """The request's path within the application: ``scope["path"]`` without ``scope["root_path"]`` in front.

    The rule of Starlette's router (``starlette._utils.get_route_path``, private, so repeated here), so that
    what is matched here is what is routed: the prefix is taken off only when the path starts with it as a
    whole segment; a path without it (a server that leaves the prefix out of ``path``, as Starlette's
    ``TestClient(root_path=…)`` does) is the route path already."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        if len(path) == len(root):
            return ""
        if path[len(root)] == "/":
            return path[len(root):]
    return path


class RootPath:
    """Serves the application under ``root``, a path prefix a reverse proxy strips (``/passerelle``): the
    scope of every request is the one uvicorn's ``--root-path`` gives (``root_path`` the prefix, ``path`` and
    ``raw_path`` with the prefix in front), from which the API's ``Location`` headers, ``/docs``,
    ``/openapi.json``'s ``servers`` and the console's links, redirects and cookie paths all take the prefix.

    Done here rather than by uvicorn's option because ``gateway serve --workers N`` has its workers' uvicorn
    built elsewhere (`gateway.api.worker`), each worker reading the setting anew: the setting applied by the
    application itself holds for one process and for N alike. A server that already gave a ``root_path``
    (uvicorn run by hand with ``--root-path``) is left as it is: the prefix is never put twice."""

    def __init__(self, app: ASGIApp, *, root: str) -> None:
        self.app = app
        self.root = root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not scope.get("root_path"):
            scope = {**scope, "root_path": self.root, "path": self.root + scope["path"]}
            if scope.get("raw_path") is not None:  # optional in ASGI: left out if the server left it out
                scope["raw_path"] = self.root.encode("ascii") + scope["raw_path"]
        await self.app(scope, receive, send)


class ApiMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, large_paths: dict[str, int],
                 observe: Observer | None = None, body_stall_seconds: float = BODY_STALL_SECONDS,
                 cache_exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.large_paths = large_paths
        self.observe = observe
        self.body_stall_seconds = body_stall_seconds
        self.cache_exempt = cache_exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        route = route_path(scope)  # behind a prefix (``--root-path``), the path as routed, without it
        limit = self.large_paths.get(route, self.max_body_bytes)
        status = 500
        answered = False
        # HEAD is GET without the body (RFC 9110 §9.3.2): FastAPI's routes take GET only, so monitors probing
        # /healthz or an event with HEAD got a 405. Answered as the GET, its body left out here.
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}
        no_store = not route.startswith(self.cache_exempt)

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                headers = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                if no_store and not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                await _too_large(scope, send_with_id, rid, limit)
                return
            if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
                await _nul_refused(scope, send_with_id, rid)
                return
            try:
                await self.app(scope, _guarded(receive, limit, self.body_stall_seconds), send_with_id)
            except Exception:
                if answered:  # too late to say anything else: the connection is cut, as it must be
                    raise
                log.exception("%s %s failed (id=%s)", scope["method"], scope["path"], rid)
                await _internal_error(scope, send_with_id, rid)
        finally:
            elapsed = time.perf_counter() - started
            if self.observe is not None:  # by operation (the endpoint's name): a small, fixed set of labels
                endpoint = scope.get("endpoint")
                self.observe(scope["method"], getattr(endpoint, "__name__", "(inconnue)"), status, elapsed)
            access_log.info('%s %s %d %.1f ms id=%s', "HEAD" if head else scope["method"], scope["path"], status,
                            elapsed * 1000, rid)


def _guarded(receive: Receive, limit: int, stall_seconds: float) -> Receive:
    """``receive``, the body counted against ``limit``, each of its pieces awaited ``stall_seconds`` at most,
    and the whole coming at ``BODY_MIN_RATE`` on average past its first ``stall_seconds``. Once the body is
    complete, reads are passed through untimed: what comes next is the client's disconnection, which a
    streamed answer waits for as long as it streams."""
    size = 0
    complete = False
    started: float | None = None  # when the application first asked for the body (not when the request came)

    async def receive_guarded() -> Message:
        nonlocal size, complete, started
        if complete:
            return await receive()
        if started is None:
            started = time.monotonic()
        try:
            with anyio.fail_after(stall_seconds):
                message = await receive()
        except TimeoutError:
            raise BodyStalled(f"corps de requête interrompu : rien reçu pendant {stall_seconds:g} s") from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            complete = True
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLarge()
            late = time.monotonic() - started - stall_seconds
            if not complete and late > 0 and size < BODY_MIN_RATE * late:
                raise BodyStalled(f"corps de requête trop lent : {size} octets en {late + stall_seconds:.0f} s "
                                  f"(au moins {BODY_MIN_RATE} octets par seconde attendus)")
        return message

    return receive_guarded


async def _send_problem(send: Send, status: int, body: bytes, *, close: bool = False) -> None:
    """A problem answered from here, before (or instead of) the application: its two messages."""
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the body is not read: the connection cannot serve another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _too_large(scope: Scope, send: Send, rid: str, limit: int) -> None:
    body = problem_body(413, PayloadTooLarge.code, f"corps de requête de plus de {limit} octets : refusé sans "
                        "être lu", instance=scope["path"], request_id=rid)
    await _send_problem(send, 413, body, close=True)


async def _nul_refused(scope: Scope, send: Send, rid: str) -> None:
    """A NUL character (``%00``) in the address: no key, code, filter or search holds one, and PostgreSQL
    refuses it in any text (a 500, from deep in a query); said here, once for every route."""
    error = FieldError("query" if "\x00" not in scope["path"] else "path", "caractère NUL (%00) refusé", "nul")
    body = problem_body(422, RequestRejected.code, "adresse refusée : elle contient un caractère NUL (%00)",
                        instance=scope["path"].replace("\x00", "%00"), request_id=rid, errors=[error])
    await _send_problem(send, 422, body)


async def _internal_error(scope: Scope, send: Send, rid: str) -> None:
    body = problem_body(500, "INTERNAL", "erreur interne : voir le journal de la passerelle", instance=scope["path"],
                        request_id=rid)
    await _send_problem(send, 500, body)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
    return uuid.uuid4().hex[:16]
