"""What an action did, said in French on the page the action redirects to (issue 4).

Actions answer with a redirect (POST-redirect-GET: reloading the page never repeats the action) to a page
whose address carries the action's audit row id (``?action=42``). The message is read back from that row,
which `gateway.support` wrote in the same transaction as the action: the page says what the store did,
not what the browser hoped. A row is shown only to the person who acted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway import support
from gateway.codes import EventState
from gateway.console.labels import plural, reject_message
from gateway.store.models import audit_t


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # "succes", "info" or "erreur": a CSS class
    text: str
    details: tuple[str, ...] = ()


def action_message(conn: Connection, audit_id: str | None, actor: str, *, paused: bool = False) -> Message | None:
    """The result of the action ``audit_id`` by ``actor``; ``paused``: sending is paused now, so what was put
    back to be sent leaves when sending resumes, not with the next run (`gateway.console.paused`)."""
    if not audit_id or not audit_id.isdigit() or len(audit_id) > 18:
        return None
    row = conn.execute(sa.select(audit_t).where(audit_t.c.id == int(audit_id), audit_t.c.actor == actor)).first()
    if row is None:
        return None
    detail = json.loads(row.detail or "{}")
    invalid = tuple(f"{s['key']} : {reject_message(s['message'], EventState.INVALIDE.value)}"
                    for s in detail.get("still_invalid", []))
    if row.action == support.RESEND:
        if row.count:
            when = ("à la reprise de l'envoi au DUDE, suspendu pour l'instant" if paused
                    else "avec la prochaine exécution")
            return Message("succes", f"Événement remis en attente d'envoi : il partira {when}.")
        if invalid:
            return Message("erreur", "Renvoi refusé : l'événement ne passe toujours pas le contrôle avant envoi. "
                                     "Le corriger dans Parcours 3.", invalid)
        return Message("info", _nothing_done(detail.get("reason")))
    if row.action == support.RESEND_FILTER:
        matched = detail.get("matched", 0)
        if not matched:
            return Message("info", "Aucun événement à renvoyer : ils ont déjà été renvoyés ou clos.")
        text = f"{plural(row.count, 'événement remis', 'événements remis')} en attente d'envoi sur " \
               f"{plural(matched, 'trouvé', 'trouvés')}."
        if invalid:
            text += f" {plural(len(invalid), 'reste invalide', 'restent invalides')} : à corriger dans Parcours 3."
        return Message("succes" if row.count else "info", text, invalid[:20])
    if row.action == support.CLOSE:
        if row.count:
            return Message("succes", f"Événement clos, avec le commentaire : « {row.comment} ».")
        return Message("info", _nothing_done(detail.get("reason")))
    return None


def _nothing_done(reason: str | None) -> str:
    """Said when a second press found the work done: the first one did it."""
    state = (reason or "").split(" ")[1] if reason and reason.startswith("état ") else None
    if state in (EventState.EN_ATTENTE.value, EventState.ENVOYE.value, EventState.TRANSMIS.value):
        return f"Déjà renvoyé : l'événement est « {EventState(state).label} ». Rien de plus n'a été fait."
    if state == EventState.CLOS.value:
        return "Déjà clos : rien de plus n'a été fait."
    if state in EventState.__members__:
        return f"Rien n'a été fait : l'événement est « {EventState(state).label} »."
    return "Rien n'a été fait."
