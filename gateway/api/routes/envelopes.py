"""``/api/v1/envelopes``: list and read the signed envelopes (every role, in its scope).

A scoped client sees the envelopes holding one of its events, with its own events counted by state;
whole-envelope counts and sizes, which count other missions locales' events, are for admin.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from gateway.api import pagination, schemas, views
from gateway.api.deps import ConnDep, GatewayDep, PrincipalDep
from gateway.api.openapi import PAGED_422, error_responses
from gateway.errors import NotFound
from gateway.store.queries import envelope_event_states, envelope_history, envelopes_page

router = APIRouter(prefix="/envelopes", tags=["lots"])


@router.get("", response_model=schemas.Page[schemas.EnvelopePublic], summary="Lister les lots",
            responses=error_responses(401, 422, special={422: PAGED_422}))
def envelopes_list(page: Annotated[schemas.PageQuery, Query()], principal: PrincipalDep, conn: ConnDep,
                   gw: GatewayDep) -> schemas.Page[schemas.EnvelopePublic]:
    """Le plus récent d'abord."""
    criteria = {"scope": sorted(principal.scope or [])}
    after = pagination.decode(page.cursor, criteria, shape={"at": datetime, "id": str})
    position = (datetime.fromisoformat(after["at"]), after["id"]) if after else None
    limit = min(page.limit, gw.settings.api_page_max)
    rows = envelopes_page(conn, principal.scope, limit=limit + 1, after=position)
    more = len(rows) > limit
    rows = rows[:limit]
    states = envelope_event_states(conn, [r.id for r in rows], principal.scope)
    last = rows[-1] if rows else None
    return schemas.Page[schemas.EnvelopePublic](
        items=[views.envelope_public(r, states[r.id], principal) for r in rows],
        next_cursor=pagination.encode({"at": last.created_at.isoformat(), "id": last.id}, criteria) if more else None)


@router.get("/{envelope_id}", response_model=schemas.EnvelopeDetail, summary="Lire un lot",
            responses=error_responses(401, 404, 422))
def envelope_detail(envelope_id: Annotated[str, Path(max_length=36, description="L'IdLot.")],
                    principal: PrincipalDep, conn: ConnDep) -> schemas.EnvelopeDetail:
    rows = envelopes_page(conn, principal.scope, limit=1, envelope_id=envelope_id)
    if not rows:
        raise NotFound(f"lot {envelope_id} introuvable")
    states = envelope_event_states(conn, [envelope_id], principal.scope)
    history = envelope_history(conn, envelope_id, whole=principal.scope is None)  # figures of others' events: admin
    return views.envelope_public(rows[0], states[envelope_id], principal, history=history)
