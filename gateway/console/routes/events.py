"""One event's page, and the two actions on it: resend, close with a comment (issue 4; brief §5).

The page shows what support needs to act without another tool: the fields as Parcours 3 knows them (the
ones to correct marked), the XML exactly as DUDE received it (the elements in error marked), the reject
with the catalogue's plain-French explanation and hint, the whole history (every state, every resend and
who did it) and the other versions. An event outside the user's scope is answered exactly as a missing
one ("introuvable", 404), whatever the action.

Actions are `gateway.support`'s (done once under the store's write lock, each with its audit row) and
answer with a redirect to the page, which reads back what was done (`gateway.console.outcome`).
"""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway import support
from gateway.codes import ACTIONABLE_EVENT_STATES, EventState, Level
from gateway.console import interrupted, labels
from gateway.console.deps import CheckedUserDep, CodecDep, GatewayDep, UserDep
from gateway.console.outcome import Message, action_message
from gateway.console.paused import paused_state
from gateway.console.session import base_path
from gateway.console.templating import render
from gateway.console.trail import Crumb, back_to
from gateway.console.xmlview import sent_xml
from gateway.errors import NotFound, RequestRejected
from gateway.store.queries import envelopes_page, event_history, event_versions

router = APIRouter()
_ACTIONABLE = frozenset(s.value for s in ACTIONABLE_EVENT_STATES)
_REJECTED = frozenset({EventState.REJETE.value, EventState.INVALIDE.value})
COMMENT_MAX = 1000


def event_url(request: Request, key: str, **params: str | int) -> str:
    query = "?" + urlencode(params) if params else ""
    return f"{base_path(request)}/evenements/{quote(key, safe='')}{query}"


@router.get("/evenements/{key:path}", name="evenement")
def event_page(request: Request, key: str, user: UserDep, gw: GatewayDep, codec: CodecDep, version: str | None = None,
               action: str | None = None, erreur: str | None = None) -> Response:
    with gw.engine.connect() as conn:
        versions = event_versions(conn, key, user.scope)
        if not versions:
            raise NotFound(f"événement {key} introuvable")
        row = versions[-1]
        if version is not None:
            row = next((v for v in versions if str(v.version) == version), None)
            if row is None:
                raise NotFound(f"événement {key} introuvable en version {version}")
        history = event_history(conn, [v.id for v in versions])
        own = [h for h in history if h.event_id == row.id]
        envelopes = list(dict.fromkeys([*(h.envelope_id for h in own if h.envelope_id),
                                        *([row.envelope_id] if row.envelope_id else [])]))
        fields = json.loads(row.payload or "{}")
        # The last reject of this version: on the row while it is open, in the history once resent or closed
        # (the history row of the reject itself, not those of the resend or close that carry its code).
        last_reject = next((h for h in reversed(own) if h.code and h.state in _REJECTED), None)
        code = row.reject_code or (last_reject.code if last_reject else None)
        message = row.reject_message if row.reject_code else None
        involved = labels.fields_in_cause(code, message or (last_reject.cause if last_reject else None))
        xml = sent_xml(conn, key=row.key, version=row.version, envelope_ids=envelopes, fields=involved)
        # The envelopes of every version's history that the user may open: an event resent since holds to its
        # new envelope, and the old one may hold none of the user's events any more (its page would be 404).
        named = dict.fromkeys([*(h.envelope_id for h in history if h.envelope_id), *envelopes])
        openable = {e for e in named if envelopes_page(conn, user.scope, limit=1, envelope_id=e)}
        paused = paused_state(conn)
        done = action_message(conn, action, user.actor, paused=bool(paused))
    known = labels.reject_info(code)
    latest = row.id == versions[-1].id
    stopped = interrupted.recall_for(request, codec, user.principal.client_id, row.key)
    if stopped and done is None:
        done = Message("erreur", stopped.message())
    response = render(request, "evenement.html", {
        "user": user, "row": row, "versions": versions, "history": history, "fields": fields,
        "back": back_to(request, Crumb(base_path(request) + "/rejets", "Rejets")),
        "ordered": labels.ordered_fields(fields), "value_label": labels.value_label, "involved": involved,
        "code": code, "known": known, "envelope_level": bool(known and known.level is Level.ENVELOPE),
        # Open while the event is still rejected or invalid: closed (or corrected) it keeps its code and message,
        # but "Pourquoi cet événement est rejeté" over a closed event told support staff it was still to handle.
        "open_reject": row.state in _REJECTED, "message": message,
        "rejected_as": row.state if row.state in _REJECTED else (last_reject.state if last_reject else None),
        "xml": xml, "flash": done, "paused": paused,
        "latest": latest, "actionable": latest and row.state in _ACTIONABLE, "comment_max": COMMENT_MAX,
        "openable": openable, "comment_typed": stopped.comment if stopped else "",
        "comment_missing": erreur == "commentaire"})
    if stopped:
        interrupted.forget(response, request)
    return response


@router.post("/actions/renvoyer", name="renvoyer")
async def resend(request: Request, user: CheckedUserDep, gw: GatewayDep,
                 cle: Annotated[str, Form(max_length=300)]) -> Response:
    result = await run_in_threadpool(support.resend_event, gw, cle, actor=user.actor, scope=user.scope,
                                     client_id=user.principal.client_id)
    return RedirectResponse(event_url(request, cle, action=result.audit_id), status_code=303)


@router.post("/actions/clore", name="clore")
async def close(request: Request, user: CheckedUserDep, gw: GatewayDep, cle: Annotated[str, Form(max_length=300)],
                commentaire: Annotated[str, Form(max_length=COMMENT_MAX)] = "") -> Response:
    try:
        result = await run_in_threadpool(support.close_event, gw, cle, comment=commentaire, actor=user.actor,
                                         scope=user.scope, client_id=user.principal.client_id)
    except RequestRejected:  # no comment: back to the page, which says so next to the field
        return RedirectResponse(event_url(request, cle, erreur="commentaire") + "#clore", status_code=303)
    return RedirectResponse(event_url(request, cle, action=result.audit_id), status_code=303)
