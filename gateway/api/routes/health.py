"""``/healthz`` (the process answers), ``/readyz`` (it can do its job: database reachable, keys loaded),
``/metrics`` (Prometheus, admin token). Outside ``/api/v1``, where orchestrators and scrapers look."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway.api import schemas
from gateway.api.deps import AdminDep, GatewayDep
from gateway.api.openapi import error_responses
from gateway.checks import FAILING, readiness
from gateway.context import Gateway
from gateway.errors import NotReady

router = APIRouter(tags=["exploitation"])


@router.get("/healthz", response_model=schemas.Health, summary="Vivant")
async def healthz() -> schemas.Health:
    return schemas.Health(status="ok")


def _checks(gw: Gateway) -> tuple[dict[str, str], list[str]]:
    """`gateway.checks.readiness` as ``/readyz`` has always said it: "ok" or what fails, and the warnings."""
    checks = readiness(gw)
    return ({c.name: c.detail if c.status == FAILING else "ok" for c in checks},
            [w for c in checks for w in c.warnings])


@router.get("/readyz", response_model=schemas.Readiness, summary="Prêt", responses=error_responses(503))
async def readyz(gw: GatewayDep) -> schemas.Readiness:
    checks, warnings = await run_in_threadpool(_checks, gw)
    failing = {k: v for k, v in checks.items() if v != "ok"}
    if failing:
        raise NotReady("; ".join(f"{k} : {v}" for k, v in failing.items()))
    return schemas.Readiness(status="ok", checks=checks, warnings=warnings)


@router.get("/metrics", summary="Métriques Prometheus", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Format texte de Prometheus."}, **error_responses(401, 403)})
async def metrics(request: Request, principal: AdminDep) -> Response:
    registry = request.app.state.metrics.registry
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
