"""Whether sending to DUDE is paused, as every page of the console says it (brief §5: "an operator can pause
all sending"; `gateway.pipeline.pause`).

A pause is decided by the integrator or an admin (``gateway sending pause``, the API); support staff did not
see it anywhere in the console. Meanwhile every page went on promising what a pause stops: a resend "partira
avec la prochaine exécution", the dashboard's envelopes not handed to DUDE had a "prochain essai le 30/11 à
20:02", and an envelope sealed during the pause "attend le compte rendu du DUDE", which never had it. Support
staff then resent again, or called about events that were only waiting. So a signed-in page carries the
switch as the store has it now (`gateway.console.templating.render` reads it when a route has not), and
the words that depend on it say so.

An admin also flips the switch in the console (`gateway.console.routes.sending`): when DUDE announces a maintenance
window, leaving the console for a terminal or curl was the only way. What the flip did is said on the page it
redirects to, read back from its audit row like the console's other actions (`gateway.console.outcome`).
"""

from __future__ import annotations

import logging
from datetime import tzinfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.console.labels import actor_label
from gateway.console.outcome import Message
from gateway.pipeline.pause import SendingState, current
from gateway.store.models import audit_t

log = logging.getLogger("gateway.console")


def paused_state(source: Engine | Connection) -> SendingState | None:
    """The switch when sending is paused, else ``None``. An error reading it leaves the banner out rather than
    the page: an error page (a database lost) must still render."""
    try:
        state = current(source)
    except SQLAlchemyError as exc:
        log.warning("console: sending switch unreadable: %s", type(exc).__name__)
        return None
    return state if state.paused else None


#: The audit actions `gateway.pipeline.pause` writes for a pause and a resume.
PAUSED, RESUMED = "SENDING_PAUSE", "SENDING_RESUME"
#: What a press that found the switch already where it was asked to go redirects with (``?action=…``): no
#: audit row to read back, since nothing was written.
ALREADY_PAUSED, ALREADY_ACTIVE = "deja-suspendu", "deja-actif"


def last_switch_by(conn: Connection, actor: str, action: str) -> int | None:
    """The audit row of ``actor``'s last pause or resume (``action``), for the page the action redirects to:
    `gateway.pipeline.pause` writes it but does not say its id, and the same person just made it."""
    return conn.execute(sa.select(sa.func.max(audit_t.c.id)).where(
        audit_t.c.actor == actor[:120], audit_t.c.action == action)).scalar()


def switch_message(conn: Connection, action: str | None, actor: str, tz: tzinfo) -> Message | None:
    """What a pause or resume by ``actor`` did, said in French (``action``: its audit row id, or a press that
    changed nothing); ``None`` for anything else, or another person's row (shown only to who acted)."""
    if action == ALREADY_PAUSED:
        return Message("info", "L'envoi au DUDE était déjà suspendu : rien n'a été changé. Depuis quand, par qui "
                               "et pourquoi : voir ci-dessus.")
    if action == ALREADY_ACTIVE:
        return Message("info", "L'envoi au DUDE n'était pas suspendu : rien n'a été changé.")
    if not action or not action.isdigit() or len(action) > 18:
        return None
    row = conn.execute(sa.select(audit_t).where(audit_t.c.id == int(action), audit_t.c.actor == actor[:120],
                                                audit_t.c.action.in_((PAUSED, RESUMED)))).first()
    if row is None:
        return None
    when = f"le {row.at.astimezone(tz):%d/%m/%Y à %H:%M} par {actor_label(row.actor)}"
    if row.action == PAUSED:
        return Message("succes", f"Envoi au DUDE suspendu {when}, motif : « {row.comment} ». Rien ne part plus vers "
                                 "le DUDE, sur toutes les instances, jusqu'à la reprise ; les exécutions lisent et "
                                 "scellent toujours les exports.")
    return Message("succes", f"Envoi au DUDE repris {when}. Les lots qui attendaient partiront avec la prochaine "
                             "exécution (la nuit, ou celle que l'intégrateur lance), avec leurs mêmes IdLot.")
