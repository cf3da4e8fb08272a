"""``/api/v1/sending``: read (admin, support) and flip (admin) the switch that pauses all sending to DUDE.

The logic is `gateway.pipeline.pause`'s; these routes only map it to HTTP. While paused, runs still read and
seal, nothing is posted; resuming lets the next run (or the scheduler's next round) send what waited.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from gateway.api import schemas
from gateway.api.deps import AdminDep, GatewayDep, JsonBodyDep, SupportDep
from gateway.api.openapi import error_responses
from gateway.pipeline import pause

router = APIRouter(prefix="/sending", tags=["exploitation"])


def _out(state: pause.SendingState) -> schemas.SendingOut:
    return schemas.SendingOut(**state.as_dict())


@router.get("", response_model=schemas.SendingOut, summary="État de l'envoi", responses=error_responses(401, 403))
async def sending_state(principal: SupportDep, gw: GatewayDep) -> schemas.SendingOut:
    """Suspendu ou actif ; depuis quand, par qui, pourquoi."""
    return _out(await run_in_threadpool(pause.current, gw.engine))


@router.post("/pause", response_model=schemas.SendingOut, summary="Suspendre tout envoi",
             responses=error_responses(401, 403, 413, 415, 422))
async def sending_pause(body: schemas.SendingPauseIn, principal: AdminDep, json_body: JsonBodyDep,
                        gw: GatewayDep) -> schemas.SendingOut:
    """Plus rien n'est envoyé au DUDE, sur toutes les instances, jusqu'à la reprise ; les exécutions lisent et
    scellent toujours. Motif obligatoire, inscrit au journal d'audit."""
    state = await run_in_threadpool(lambda: pause.pause(gw.engine, by=principal.actor, reason=body.reason,
                                                        now=gw.clock(), client_id=principal.client_id))
    return _out(state)


@router.post("/resume", response_model=schemas.SendingOut, summary="Reprendre l'envoi",
             responses=error_responses(401, 403, 413, 415, 422))
async def sending_resume(principal: AdminDep, json_body: JsonBodyDep, gw: GatewayDep,
                         body: schemas.SendingResumeIn | None = None) -> schemas.SendingOut:
    """La prochaine exécution (ou le prochain passage du planificateur) envoie ce qui attendait, avec les mêmes
    IdLot. Le corps est facultatif : sans corps, la reprise est inscrite au journal d'audit sans motif."""
    # Its one field is optional, so is the body: ``curl -X POST …/resume`` was a 422 "body : champ obligatoire"
    # for a request that lacked nothing (``gateway sending resume`` takes no reason either).
    reason = body.reason if body is not None else None
    state = await run_in_threadpool(lambda: pause.resume(gw.engine, by=principal.actor, reason=reason,
                                                         now=gw.clock(), client_id=principal.client_id))
    return _out(state)
