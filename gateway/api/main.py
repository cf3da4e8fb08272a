"""``create_app(gw)``: the API assembled, and nothing else (STYLE, full-stack-fastapi-template: ``main.py``
only assembles). Routes live in `gateway.api.routes`, dependencies in `gateway.api.deps`, errors in
`gateway.api.problems`, the request middleware in `gateway.api.middleware`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.api import problems
from gateway.api.docs import mount_docs
from gateway.api.metrics import ApiMetrics
from gateway.api.middleware import ApiMiddleware
from gateway.api.routes import dude, envelopes, events, health, runs, sending, support
from gateway.api.runner import RunLauncher
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

**Erreurs** : toujours `application/problem+json` (RFC 9457) avec un `code` stable
(`NOT_FOUND`, `FORBIDDEN`, `VALIDATION`, `E09`, `L01`…).
"""


def create_app(gw: Gateway, *, scheduler: GatewayScheduler | None = None, close_gateway: bool = False) -> FastAPI:
    """The API over ``gw``, which the caller opened and closes, unless ``close_gateway`` (a worker of
    ``gateway serve --workers``, `gateway.api.worker`) hands it over to be closed at the app's stop;
    ``scheduler`` (``gateway serve``) runs from the app's start to its stop."""

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
                  openapi_url="/openapi.json", docs_url=None, redoc_url=None)
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

    problems.install(app)
    app.add_middleware(ApiMiddleware, max_body_bytes=gw.settings.api_max_body_bytes,
                       large_paths={dude.CALLBACK_PATH: gw.settings.max_document_bytes},
                       observe=app.state.metrics.observe)

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes, tags=[
                                     {"name": "événements", "description": "Soumettre, rechercher, lire."},
                                     {"name": "support", "description": "Renvoyer, clore ; journal d'audit."},
                                     {"name": "exécutions",
                                      "description": "Les lots d'une nuit, ou lancés à la demande."},
                                     {"name": "lots", "description": "Les enveloppes signées envoyées au DUDE."},
                                     {"name": "DUDE",
                                      "description": "Le rappel par lequel le DUDE livre ses comptes rendus."},
                                     {"name": "exploitation", "description": "Santé et métriques."}])
            schema = problems.finish_openapi(schema)
            bulk = schema["components"]["schemas"].get("EventBulkIn")
            if bulk:
                bulk["properties"]["events"]["maxItems"] = gw.settings.api_max_events_per_request
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
