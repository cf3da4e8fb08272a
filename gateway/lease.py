"""Leases: one holder at a time for a named task, across every instance sharing the store (brief §8: "one
scheduler wins the nightly run through a database lock"; issue 5).

A lease is a row of ``leases``: who holds it and until when. It is taken atomically — the row read
``FOR UPDATE`` on PostgreSQL, then a compare-and-set ``UPDATE`` guarded by the holder and expiry just read
(SQLite runs one writer at a time, so the guard alone suffices there); a first ``INSERT`` that loses a race
hits the primary key. Its holder renews it from a `Heartbeat` thread every third of its duration; if
the holder dies the heartbeat stops, the lease expires, and another instance may take it.

Why a lease and not a session-level advisory lock: a lock dies with its *connection*, which a pool may
recycle or a network blip may cut while the process goes on; the lease dies only when its holder stops
renewing it, says who holds it (``gateway schedule show``), and carries what the holder was doing, so
that whoever takes it over knows which night to finish (`gateway.nightly`).

Time is the database server's clock (`gateway.store.db.db_now`): one clock for every instance. A holder
on this machine whose process is gone is known dead at once (its process id), so a restarted service
does not wait for the lease to expire.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.errors import LeaseLost, StoreError
from gateway.store.db import db_now, store_problem
from gateway.store.models import leases_t

#: How far apart two clocks of the gateway may be (instances under NTP; the database server's) before a time one of
#: them wrote is taken for a clock that was ahead: a night noted served (`gateway.nightly.clock_was_ahead`), a next
#: poll or attempt further ahead than any back-off sets (`gateway.pipeline.sending`, `gateway.pipeline.reconcile`).
CLOCK_SLACK = timedelta(minutes=5)


def ahead_of_the_clock(column: sa.ColumnElement, now: datetime, longest: timedelta) -> sa.ColumnElement:
    """``column`` (a next attempt or poll, a claim's end) later than any back-off, spacing or claim sets from ``now``
    (``longest``, plus `CLOCK_SLACK`): written by a clock that was ahead (a run made while it was). Taken as it
    is, it held an envelope, or its report, for as long as the clock had been ahead (8 hours, in a drill),
    without a word; it is taken as past."""
    return column > now + longest + CLOCK_SLACK

log = logging.getLogger("gateway.lease")


def new_holder_id(name: str | None = None) -> str:
    """``host:pid:random``: names the instance in leases and claims; tells a dead local holder apart."""
    return f"{name or socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def is_dead_here(holder: str) -> bool:
    """A holder on this machine (same host name) whose process no longer exists."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, another user's
        return False
    return False


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    name: str
    holder: str
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    released_at: datetime | None
    run_id: int | None
    night: datetime | None
    done_until: datetime | None

    def free_at(self, now: datetime) -> bool:
        return self.released_at is not None or self.expires_at <= now or is_dead_here(self.holder)

    @property
    def abandoned(self) -> bool:
        """Its holder stopped without letting go: it died (or lost the database for longer than the lease)."""
        return self.released_at is None


def read(engine: Engine, name: str) -> LeaseInfo | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(leases_t).where(leases_t.c.name == name)).first()
    return LeaseInfo(**row._mapping) if row is not None else None


def now(engine: Engine) -> datetime:
    with engine.connect() as conn:
        return db_now(conn)


@dataclass(frozen=True, slots=True)
class Acquired:
    """A lease just taken; ``previous`` is the row as it was (None: never held), to know what it takes over."""

    name: str
    holder: str
    previous: LeaseInfo | None

    @property
    def taken_over(self) -> LeaseInfo | None:
        """The previous holding, if its holder died holding it (not us, not released)."""
        p = self.previous
        return p if p is not None and p.abandoned and p.holder != self.holder else None


def acquire(engine: Engine, name: str, holder: str, *, seconds: float,
            night: datetime | None = None) -> Acquired | None:
    """Take lease ``name`` for ``seconds`` if it is free (never held, released, expired, or its holder is a
    dead process of this machine), or already ours. Returns None when someone else holds it."""
    try:
        with engine.begin() as conn:
            at = db_now(conn)
            values = dict(holder=holder, acquired_at=at, renewed_at=at, expires_at=at + timedelta(seconds=seconds),
                          released_at=None, run_id=None, night=night)
            query = sa.select(leases_t).where(leases_t.c.name == name)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                conn.execute(leases_t.insert().values(name=name, **values))
                return Acquired(name, holder, None)
            current = LeaseInfo(**row._mapping)
            if current.holder != holder and not current.free_at(at):
                return None
            moved = conn.execute(leases_t.update().where(
                leases_t.c.name == name, leases_t.c.holder == current.holder,
                leases_t.c.expires_at == current.expires_at).values(**values)).rowcount
            return Acquired(name, holder, current) if moved else None
    except IntegrityError:  # another instance inserted the first row at the same moment: it holds it
        return None
    except SQLAlchemyError as exc:
        raise StoreError(f"{store_problem(exc)} (en prenant le bail {name})") from exc


def renew(engine: Engine, name: str, holder: str, *, seconds: float) -> bool:
    """Extend our lease; False if it is no longer ours (it expired and someone took it)."""
    with engine.begin() as conn:
        at = db_now(conn)
        return bool(conn.execute(leases_t.update().where(
            leases_t.c.name == name, leases_t.c.holder == holder, leases_t.c.released_at.is_(None)).values(
            renewed_at=at, expires_at=at + timedelta(seconds=seconds))).rowcount)


def note(engine: Engine, name: str, holder: str, **values) -> None:
    """Record on our lease what we are doing (``run_id``)."""
    with engine.begin() as conn:
        conn.execute(leases_t.update().where(leases_t.c.name == name, leases_t.c.holder == holder).values(**values))


def release(engine: Engine, name: str, holder: str, *, done_until: datetime | None = None,
            replace: bool = False) -> bool:
    """Let go of our lease; ``done_until``: the scheduled time now served to the end (kept if later, unless
    ``replace``: the later one was written by a clock that was ahead, `gateway.nightly.clock_was_ahead`)."""
    with engine.begin() as conn:
        at = db_now(conn)
        values: dict = dict(released_at=at, expires_at=at)
        if done_until is not None:
            c = leases_t.c.done_until
            # Typed as the column: a bare datetime in CASE … THEN would skip `UTCDateTime`, and SQLite would keep
            # a Europe/Paris night's wall time as if it were UTC (02:00+01:00 read back as 02:00+00:00).
            served = sa.literal(done_until, type_=c.type)
            values["done_until"] = served if replace else sa.case((sa.or_(c.is_(None), c < served), served),
                                                                  else_=c)
        return bool(conn.execute(leases_t.update().where(
            leases_t.c.name == name, leases_t.c.holder == holder).values(**values)).rowcount)


class Heartbeat:
    """Renews a held lease every third of its duration from a daemon thread, until `stop`.

    If a renewal finds the lease gone to another holder (this process stalled, or lost the database, for
    longer than the lease), ``lost`` is set and `check` raises `LeaseLost`: the work it guards stops at its
    next check rather than run alongside the new holder's. A database error is logged and retried at
    the next beat; the lease only ends if that lasts longer than the lease itself.
    """

    def __init__(self, engine: Engine, name: str, holder: str, *, seconds: float):
        self.engine, self.name, self.holder, self.seconds = engine, name, holder, seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{name}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                if not renew(self.engine, self.name, self.holder, seconds=self.seconds):
                    log.error("lease %s lost by %s: another instance holds it now", self.name, self.holder)
                    self.lost.set()
                    return
            except SQLAlchemyError as exc:
                log.warning("lease %s not renewed (will retry): %s", self.name, exc.__class__.__name__)

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"lease {self.name} lost: another instance took it over")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
