"""Support actions (support, admin): resend one event or every event matching a filter, close one with a
comment; and the audit log they leave (admin). The logic is `gateway.support`'s; these routes only
map it to HTTP, within the caller's scope (an event outside it is a 404, and never matched by a filter).
"""

from __future__ import annotations

import json
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query

from gateway import support
from gateway.api import pagination, schemas, views
from gateway.api.deps import AdminDep, ConnDep, GatewayDep, JsonBodyDep, SupportDep
from gateway.api.openapi import PAGED_422, RESEND_409, error_responses
from gateway.api.routes.events import KeyPath, event_filter
from gateway.errors import FieldError, RequestRejected
from gateway.store.models import audit_t

router = APIRouter(tags=["support"])


def _resend_out(result: support.ResendResult) -> schemas.ResendOut:
    return schemas.ResendOut(
        audit_id=result.audit_id, matched=result.matched, resent=result.resent, resent_keys=result.resent_keys,
        still_invalid=[schemas.StillInvalidOut(key=s.key, version=s.version,
                                               reject=views.reject(s.code, s.message, s.field,
                                                                   submitted=s.submitted))
                       for s in result.still_invalid],
        state=result.state, reason=result.reason)


@router.post("/events/resend", response_model=schemas.ResendOut, summary="Renvoyer les événements d'un filtre",
             responses=error_responses(401, 403, 409, 413, 415, 422, special={409: RESEND_409}))
def resend_matching(body: schemas.EventFilterIn, principal: SupportDep, json_body: JsonBodyDep,
                    gw: GatewayDep) -> schemas.ResendOut:
    """Remet EN_ATTENTE la dernière version de chaque événement du filtre qui est INVALIDE, REJETE ou
    SANS_REPONSE (un INVALIDE seulement s'il passe désormais le contrôle), une seule fois même si l'appel est
    répété ; la prochaine exécution les envoie. Renvoie le nombre d'événements remis en attente."""
    if not body.model_dump(exclude_none=True):
        raise RequestRejected("au moins un critère est nécessaire pour un renvoi en nombre",
                              errors=[FieldError("body", "au moins un critère", "missing")])
    result = support.resend_matching(gw, event_filter(body, principal), actor=principal.actor,
                                     client_id=principal.client_id)
    return _resend_out(result)


@router.post("/events/{key}/resend", response_model=schemas.ResendOut, summary="Renvoyer un événement",
             responses=error_responses(401, 403, 404, 409, 422, special={409: RESEND_409}))
def resend_event(key: KeyPath, principal: SupportDep, gw: GatewayDep) -> schemas.ResendOut:
    """La dernière version de l'événement, si elle est INVALIDE (et passe désormais le contrôle), REJETE ou
    SANS_REPONSE ; sinon rien (`resent` = 0, `reason` dit pourquoi). L'historique garde le rejet et le lot
    remplacés, et qui a renvoyé."""
    return _resend_out(support.resend_event(gw, key, actor=principal.actor, scope=principal.scope,
                                            client_id=principal.client_id))


@router.post("/events/{key}/close", response_model=schemas.CloseOut, summary="Clore un événement",
             responses=error_responses(401, 403, 404, 413, 415, 422))
def close_event(key: KeyPath, body: schemas.CloseIn, principal: SupportDep, json_body: JsonBodyDep,
                gw: GatewayDep) -> schemas.CloseOut:
    """État CLOS, avec un commentaire obligatoire, pour un événement INVALIDE, REJETE ou SANS_REPONSE."""
    result = support.close_event(gw, key, comment=body.comment, actor=principal.actor, scope=principal.scope,
                                 client_id=principal.client_id)
    return schemas.CloseOut(audit_id=result.audit_id, key=result.key, version=result.version, closed=result.closed,
                            state=result.state, reason=result.reason)


@router.get("/audit", response_model=schemas.Page[schemas.AuditEntryPublic], summary="Journal d'audit",
            responses=error_responses(401, 403, 422, special={422: PAGED_422}))
def audit_log(query: Annotated[schemas.AuditQuery, Query()], principal: AdminDep, conn: ConnDep,
              gw: GatewayDep) -> schemas.Page[schemas.AuditEntryPublic]:
    """Toutes les actions, la plus récente d'abord : qui, quoi, quand, quel filtre, combien."""
    criteria = {"action": query.action}
    after = pagination.decode(query.cursor, criteria, shape={"id": int})
    select = sa.select(audit_t)
    if query.action:
        select = select.where(audit_t.c.action == query.action)
    if after:
        select = select.where(audit_t.c.id < after["id"])
    limit = min(query.limit, gw.settings.api_page_max)
    rows = conn.execute(select.order_by(audit_t.c.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [schemas.AuditEntryPublic(id=r.id, at=r.at, actor=r.actor, action=r.action, target=r.target,
                                      filter=json.loads(r.filter) if r.filter else None, count=r.count,
                                      comment=r.comment, detail=json.loads(r.detail) if r.detail else None)
             for r in rows]
    return schemas.Page[schemas.AuditEntryPublic](
        items=items, next_cursor=pagination.encode({"id": rows[-1].id}, criteria) if more else None)
