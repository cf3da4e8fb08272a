"""One envelope's page (``/lots/{IdLot}``): what support staff otherwise reach only through ``gateway envelopes``
and ``GET /api/v1/envelopes/{id}`` — its state, when it was sealed and sent, DUDE's receipt and report, its
history, and its events by state.

It reads what the API's envelope route reads, with the same helpers and the same rule of scope: a support
user sees an envelope holding one of the events of their missions locales, with those events only counted;
any other is answered exactly as a missing one ("introuvable", 404), like an event. The whole envelope's
counts (its size, DUDE's accepted and rejected totals) count other missions locales' events: admin only,
as in the API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection

from gateway.codes import EnvelopeState, EventState
from gateway.console import labels
from gateway.console.deps import ConsoleUser, GatewayDep, UserDep
from gateway.console.filters import STATE_CHOICES
from gateway.console.session import base_path
from gateway.console.templating import render
from gateway.console.trail import Crumb, back_to
from gateway.errors import NotFound
from gateway.store.queries import EnvelopeStep, envelope_event_states, envelope_history, envelopes_page

router = APIRouter()

#: An IdLot is a UUID: 36 characters (`gateway.store.models.Envelope.id`).
ID_MAX = 36
#: Event states in the order of an envelope's life, for its counts (a state the catalogue does not know last).
_STATE_ORDER = [s.value for s in EventState]


@router.get("/lots/{envelope_id}", name="lot")
def envelope_page(request: Request, envelope_id: str, user: UserDep, gw: GatewayDep) -> Response:
    if len(envelope_id) > ID_MAX:
        raise NotFound(f"lot {envelope_id[:ID_MAX]}… introuvable")
    with gw.engine.connect() as conn:
        rows = envelopes_page(conn, user.scope, limit=1, envelope_id=envelope_id)
        if not rows:
            raise NotFound(f"lot {envelope_id} introuvable")
        states = envelope_event_states(conn, [envelope_id], user.scope)[envelope_id]
        history = envelope_history(conn, envelope_id, whole=user.scope is None)
        successors = _successors(conn, user, envelope_id, history)
    counts = sorted(states.items(), key=lambda kv: (_STATE_ORDER.index(kv[0]) if kv[0] in _STATE_ORDER
                                                    else len(_STATE_ORDER), kv[0]))
    envelope = rows[0]
    return render(request, "lot.html", {
        "user": user, "envelope": envelope, "history": history, "counts": counts,
        "back": back_to(request, Crumb(base_path(request) + "/", "Tableau de bord")),
        "total": sum(states.values()), "whole": user.scope is None,
        "reject": labels.reject_info(envelope.reject_code), "successors": successors,
        # Rejected whole (L01…L07): its events still rejected, resent together once the cause is removed.
        "rejected": states.get(EventState.REJETE.value, 0) if envelope.reject_code else 0,
        "send_error": labels.send_error(envelope.last_error) if envelope.last_error else None,
        "listable": {s.value for s in STATE_CHOICES}})  # the states the rejects list can show: their counts link there


def _successors(conn: Connection, user: ConsoleUser, envelope_id: str, history: list[EnvelopeStep]) -> list[str]:
    """The envelopes a quarantined one's events were sealed again in, those the user may open: its page shows
    none of its events any more (they have moved), and without them support staff lost their trail."""
    quarantined = [step for step in history if step.state == EnvelopeState.QUARANTAINE.value]
    named = [i for step in quarantined for i in labels.envelopes_named(step.cause, besides=envelope_id)]
    return [i for i in named if envelopes_page(conn, user.scope, limit=1, envelope_id=i)]
