"""Whether sending to DUDE is paused, as every page of the console says it (brief §5: "an operator can pause
all sending"; `gateway.pipeline.pause`).

A pause is decided by the integrator or an admin (``gateway sending pause``, the API); support staff did not
see it anywhere in the console. Meanwhile every page went on promising what a pause stops: a resend "partira
avec la prochaine exécution", the dashboard's envelopes not handed to DUDE had a "prochain essai le 30/11 à
20:02", and an envelope sealed during the pause "attend le compte rendu du DUDE", which never had it. Support
staff then resent again, or called about events that were only waiting. So a signed-in page carries the
switch as the store has it now (`gateway.console.templating.render` reads it when a route has not), and
the words that depend on it say so.
"""

from __future__ import annotations

import logging

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.pipeline.pause import SendingState, current

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
