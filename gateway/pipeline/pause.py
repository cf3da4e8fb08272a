"""The switch that pauses all sending to DUDE, and resumes it (brief §5: "an operator can pause all sending").

Why a row of the store (``controls``, name ``envoi_suspendu``) and not a setting: a pause decided on one
instance (``gateway sending pause``, ``POST /api/v1/sending/pause``, the console) must hold at once for
every instance sharing the store, for the scheduler's next round as for a run already going on, and
survive restarts. Each change is also written to the audit log (brief §6: "every support action is in
an audit log"), with who and why.

What "paused" means, everywhere the gateway would post an envelope (`gateway.pipeline.dispatch.transmit`
checks before each attempt, `gateway.pipeline.run` before starting to send):

* nothing is POSTed to DUDE; envelopes already sealed stay ``SIGNE``/``ENVOYE`` and are sent, with their
  ``IdLot``, by the first run (or scheduler round) after the switch is turned back;
* a run still reads the exports, runs pre-flight and seals envelopes (the outbox fills up), says in its
  summary and its log that sending is paused, since when, by whom and why;
* reports of envelopes DUDE already has are still polled and applied: fetching an answer sends nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from gateway.errors import FieldError, RequestRejected
from gateway.store.models import audit_t, controls_t

log = logging.getLogger("gateway.pause")

#: The ``controls`` row of the switch (its name is in the model's docstring too).
CONTROL = "envoi_suspendu"
REASON_MAX = 500


@dataclass(frozen=True, slots=True)
class SendingState:
    """Whether sending is paused, and since when, by whom, why (the last change either way)."""

    paused: bool
    changed_at: datetime | None = None
    changed_by: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"paused": self.paused, "changed_at": self.changed_at.isoformat() if self.changed_at else None,
                "changed_by": self.changed_by, "reason": self.reason}

    def describe(self, tz: tzinfo | None = None) -> str:
        """One line for logs and summaries (French, like every message for operators); its time in ``tz`` (the
        gateway's zone, as the console and the other commands say times), else UTC (the log)."""
        if not self.paused:
            return "envoi actif"
        when = ""
        if self.changed_at is not None:
            when = (f" depuis le {self.changed_at.astimezone(tz):%d/%m/%Y %H:%M %Z}" if tz is not None
                    else f" depuis le {self.changed_at:%d/%m/%Y %H:%M} UTC")
        who = f" par {self.changed_by}" if self.changed_by else ""
        why = f" : {self.reason}" if self.reason else ""
        return f"envoi suspendu{when}{who}{why}"


def current(source: Engine | Connection) -> SendingState:
    """The switch as the store has it now (no row: never paused)."""
    query = sa.select(controls_t.c.value, controls_t.c.updated_at, controls_t.c.updated_by,
                      controls_t.c.reason).where(controls_t.c.name == CONTROL)
    if isinstance(source, Engine):
        with source.connect() as conn:
            row = conn.execute(query).first()
    else:
        row = source.execute(query).first()
    if row is None:
        return SendingState(paused=False)
    try:
        paused = bool(json.loads(row.value or "{}").get("paused"))
    except (ValueError, AttributeError):  # a row someone wrote by hand: fail safe, i.e. paused
        log.error("controls row %s holds unreadable JSON: sending treated as paused", CONTROL)
        paused = True
    return SendingState(paused, row.updated_at, row.updated_by, row.reason)


def is_paused(engine: Engine) -> bool:
    return current(engine).paused


def pause(engine: Engine, *, by: str, reason: str, now: datetime, client_id: int | None = None,
          only_if_flipped: bool = False) -> SendingState | None:
    """Pause all sending (a reason is required: whoever finds it paused must know why). ``only_if_flipped``:
    only if sending is active, in the same statement as the change; else nothing is written, and None returned
    (the console's press: two admins pressing at once both paused, the second reason replacing the first; the
    CLI and the API may pause again, to give a new reason)."""
    reason = (reason or "").strip()
    if not reason:
        raise RequestRejected("un motif est obligatoire pour suspendre l'envoi",
                              errors=[FieldError("reason", "motif obligatoire", "missing")])
    return _switch(engine, paused=True, by=by, reason=reason, now=now, client_id=client_id,
                   only_if_flipped=only_if_flipped)


def resume(engine: Engine, *, by: str, now: datetime, reason: str | None = None,
           client_id: int | None = None, only_if_flipped: bool = False) -> SendingState | None:
    """Resume sending: the next run, or the scheduler's next round, sends what waited. ``only_if_flipped``: as
    for `pause`."""
    return _switch(engine, paused=False, by=by, reason=(reason or "").strip() or None, now=now, client_id=client_id,
                   only_if_flipped=only_if_flipped)


def _switch(engine: Engine, *, paused: bool, by: str, reason: str | None, now: datetime,
            client_id: int | None, only_if_flipped: bool = False) -> SendingState | None:
    if reason is not None and len(reason) > REASON_MAX:
        raise RequestRejected(f"motif trop long (au plus {REASON_MAX} caractères)",
                              errors=[FieldError("reason", f"au plus {REASON_MAX} caractères", "string_too_long")])
    wanted = json.dumps({"paused": paused})
    values = {"value": wanted, "updated_at": now, "updated_by": by[:120], "reason": reason}
    try:
        before = _write(engine, values, paused=paused, only_if_flipped=only_if_flipped, audit={
            "at": now, "actor": by[:120], "client_id": client_id, "comment": reason,
            "action": "SENDING_PAUSE" if paused else "SENDING_RESUME"})
    except IntegrityError:  # the row made at the same instant by another press: it flipped the switch
        if not only_if_flipped:
            raise
        return None
    if before is None:
        return None
    state = SendingState(paused, now, by[:120], reason)
    if paused:
        log.warning("SENDING_PAUSED by %s: %s (nothing is posted to DUDE until it is resumed)", by, reason)
    else:
        log.warning("sending resumed by %s%s", by, f": {reason}" if reason else "")
    return state


def _write(engine: Engine, values: dict, *, paused: bool, only_if_flipped: bool, audit: dict) -> SendingState | None:
    """The switch's row and its audit row, in one transaction; returns the switch as it was, or None when
    ``only_if_flipped`` found it already as asked (nothing written)."""
    with engine.begin() as conn:
        if only_if_flipped:  # the write first: it waits for a concurrent one, then sees what that one wrote
            flip = controls_t.update().where(controls_t.c.name == CONTROL, controls_t.c.value != values["value"])
            if conn.execute(flip.values(**values)).rowcount:
                before = SendingState(not paused)
            elif paused and conn.execute(sa.select(controls_t.c.name).where(controls_t.c.name == CONTROL)).first() \
                    is None:  # never paused yet: the row is made
                before = SendingState(False)
                conn.execute(controls_t.insert().values(name=CONTROL, **values))
            else:
                return None  # already as asked (resuming a switch never paused: nothing to resume)
        else:
            before = current(conn)
            moved = conn.execute(controls_t.update().where(controls_t.c.name == CONTROL).values(**values)).rowcount
            if not moved:
                conn.execute(controls_t.insert().values(name=CONTROL, **values))
        conn.execute(audit_t.insert().values(**audit, target=CONTROL, count=1,
                                             detail=json.dumps({"was_paused": before.paused}, ensure_ascii=False)))
    return before
