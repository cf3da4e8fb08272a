"""``create_app(gw)``: the API assembled, and nothing else (STYLE, full-stack-fastapi-template: ``main.py``
only assembles). Routes live in `gateway.api.routes`, dependencies in `gateway.api.deps`, errors in
`gateway.api.problems`, the OpenAPI document in `gateway.api.openapi`, the request middleware in
`gateway.api.middleware`.

No slash redirects: Starlette answered ``/api/v1/events/`` with a 307 to an absolute ``http://`` address built
from the request, which behind a TLS proxy sent a partner to plain HTTP (and a redirected ``POST`` is a
second request). Such a path is a 404 problem saying the address has no trailing ``/``
(`gateway.api.problems`). Answers of `GZIP_MINIMUM_BYTES` or more are compressed for a client that accepts
gzip (a page of events, a bulk's answer: text that shrinks tenfold), the console's excepted: it is its own
application, with its own headers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api import openapi, problems
from gateway.api.docs import ASSETS_PATH, mount_docs
from gateway.api.metrics import ApiMetrics
from gateway.api.middleware import ApiMiddleware, RootPath, route_path
from gateway.api.routes import dude, envelopes, events, health, runs, sending, support
from gateway.api.runner import RunLauncher
from gateway.console import PREFIX as CONSOLE_PREFIX
from gateway.console import mount_console
from gateway.context import Gateway
from gateway.scheduler import GatewayScheduler

API_PREFIX = "/api/v1"
DESCRIPTION = """\
Passerelle d'échange Parcours 3 → DUDE : soumettre des événements, suivre leur état, agir sur les rejets.

**Authentification** : jeton porteur (`Authorization: Bearer p3g_…`) créé par `gateway clients create`,
lié à un rôle (`admin`, `support`, `partner`) et, pour `support` et `partner`, aux missions locales
qu'il peut voir. Un événement d'une autre mission locale est répondu exactement comme un événement
inexistant (404).

**Erreurs** : toujours `application/problem+json` (RFC 9457) avec un `code` stable ; chaque réponse d'erreur
d'une opération donne les codes qu'elle peut porter, et le tableau ci-dessous les reprend tous.

**Chaque réponse** porte `X-Request-ID` (celui du client, ou un tiré par la passerelle) et
`Cache-Control: no-store` ; elle est compressée (gzip) pour un client qui l'accepte, à partir de 1 Kio. Les
adresses s'écrivent sans « / » final.
"""

#: Smallest answer worth compressing: below a kilobyte, the saving is less than a packet.
GZIP_MINIMUM_BYTES = 1024


class ApiGZip:
    """Starlette's `GZipMiddleware` (level 6: nearly level 9's ratio for a fraction of its time on a 5,000-event
    answer) for every path but the console's (told by `route_path`: behind ``--root-path /passerelle``,
    ``scope["path"]`` is ``/passerelle/console/…``, and the console's pages went out compressed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=GZIP_MINIMUM_BYTES, compresslevel=6)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not route_path(scope).startswith(CONSOLE_PREFIX):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(gw: Gateway, *, scheduler: GatewayScheduler | None = None, close_gateway: bool = False,
               body_stall_seconds: float | None = None, root_path: str | None = None) -> FastAPI:
    """The API over ``gw``, which the caller opened and closes, unless ``close_gateway`` (a worker of
    ``gateway serve --workers``, `gateway.api.worker`) hands it over to be closed at the app's stop;
    ``scheduler`` (``gateway serve``) runs from the app's start to its stop; ``body_stall_seconds``: how long
    a request body may go silent (`gateway.api.middleware`; default ``api_body_stall_seconds``);
    ``root_path``: the prefix a reverse proxy serves it under and strips (`gateway.api.middleware.RootPath`;
    default ``api_root_path``, none)."""
    if body_stall_seconds is None:
        body_stall_seconds = gw.settings.api_body_stall_seconds
    root_path = (gw.settings.api_root_path if root_path is None else root_path).rstrip("/")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if scheduler is not None:
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            app.state.runs.join(timeout=5)
            if close_gateway:
                gw.close()

    app = FastAPI(title="Passerelle Parcours 3 → DUDE", version="1", description=DESCRIPTION, lifespan=lifespan,
                  openapi_url="/openapi.json", docs_url=None, redoc_url=None, redirect_slashes=False)
    app.state.gateway = gw
    app.state.scheduler = scheduler
    app.state.runs = RunLauncher(gw)
    app.state.metrics = ApiMetrics(gw)

    api = APIRouter(prefix=API_PREFIX)
    for module in (events, support, runs, envelopes, dude, sending):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)
    mount_docs(app)  # /docs, Swagger UI served from here, not from a CDN
    mount_console(app, gw)  # the support console, French HTML pages under /console (issue 4)

    @app.get(CONSOLE_PREFIX, include_in_schema=False)
    async def console_entry() -> RedirectResponse:
        """``/console`` typed without its ``/``: the one slash redirect kept, to a relative address (RFC 9110
        §10.2.2), which stays on the scheme, host and prefix the browser used."""
        return RedirectResponse(f"{CONSOLE_PREFIX.rsplit('/', 1)[-1]}/", status_code=308)

    problems.install(app)
    app.add_middleware(ApiGZip)  # inside `ApiMiddleware`, which adds the last answers' headers
    app.add_middleware(ApiMiddleware, max_body_bytes=gw.settings.api_max_body_bytes,
                       large_paths={dude.CALLBACK_PATH: gw.settings.max_document_bytes},
                       observe=app.state.metrics.observe, body_stall_seconds=body_stall_seconds,
                       cache_exempt=(f"{ASSETS_PATH}/", CONSOLE_PREFIX))
    if root_path:  # the outermost: every middleware sees the scope uvicorn's --root-path would give
        app.add_middleware(RootPath, root=root_path)

    def openapi_document() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = openapi.build(app, max_events=gw.settings.api_max_events_per_request)
        return app.openapi_schema

    app.openapi = openapi_document  # type: ignore[method-assign]
    return app
