"""Sending workers: envelopes waiting to be sent are *claimed* before they are posted, so that several
workers — the sender threads of a run, or instances sharing one PostgreSQL store — send in parallel and
none sends an envelope another is sending (issue 5; brief §8: "envelopes are claimed with SKIP LOCKED").

An envelope waits to be sent while it is ``SIGNE`` or ``ENVOYE`` without a receipt (a crash, DUDE
unreachable). A worker claims one with a single ``UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)
RETURNING id``: on PostgreSQL the row lock makes two workers pick different envelopes without waiting on
each other; on SQLite the statement runs under the one write lock, which serialises the claims. The
claim (``claimed_by``, ``claimed_until``) lasts ``send_claim_seconds`` and is renewed at each attempt
(`gateway.pipeline.dispatch.transmit`): a worker that dies loses its envelopes to the others when its
claims expire, at once if another instance takes its night over (`release_claims_of`).

Order still holds across workers: an envelope is not claimable while an earlier version of one of its
events travels in another envelope still unanswered, so DUDE never gets an ``M`` before its ``C`` (what
the run's dispatcher does in memory for the envelopes it seals itself, `gateway.pipeline.run`).

SQLite keeps its single writer: worker threads only post and check receipts (`dispatch.transmit`); the
calling thread claims and records (`dispatch.apply_answer`), as a run does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from gateway.codes import AWAITING_RECEIPT
from gateway.context import Gateway
from gateway.errors import AccessRefused
from gateway.lease import ahead_of_the_clock, is_dead_here
from gateway.pipeline import dispatch
from gateway.pipeline.outage import Outage
from gateway.settings import Settings
from gateway.store.models import envelopes_t, events_t

log = logging.getLogger("gateway.sending")


def longest_wait(settings: Settings) -> timedelta:
    """The longest an envelope is made to wait before its next attempt: a back-off, or DUDE's outage."""
    return timedelta(seconds=max(settings.retry_backoff_max_seconds, settings.dude_outage_seconds))


def _claimable(now, exclude: set[str], due_only: bool = False, *, settings: Settings):
    e = envelopes_t
    mine, older = events_t.alias("mine"), events_t.alias("older")
    other = envelopes_t.alias("other")
    earlier_version_unanswered = (
        sa.select(sa.literal(1))
        .select_from(mine.join(older, sa.and_(older.c.key == mine.c.key, older.c.id < mine.c.id))
                     .join(other, other.c.id == older.c.envelope_id))
        .where(mine.c.envelope_id == e.c.id, older.c.envelope_id != e.c.id, other.c.state.in_(AWAITING_RECEIPT)))
    # Those DUDE last refused with a 401/403 last (`gateway.pipeline.outage.Outage.refused_access`): a filter
    # refusing two envelopes for their content made them the first to probe each pass, and the pass held.
    refused_before = sa.case((e.c.last_error.like(f"[{AccessRefused.code}]%"), 1), else_=0)
    query = (sa.select(e.c.id)
             .where(e.c.state.in_(AWAITING_RECEIPT), _unclaimed(now, settings), ~earlier_version_unanswered.exists())
             .order_by(refused_before, e.c.created_at, e.c.id).limit(1))
    if exclude:
        query = query.where(e.c.id.not_in(sorted(exclude)))
    if due_only:
        query = query.where(_due(now, settings))
    return query


def _due(now: datetime, settings: Settings) -> sa.ColumnElement:
    """Past its back-off or DUDE's outage (``next_attempt_at``), or held by a clock that was ahead."""
    e = envelopes_t.c
    return sa.or_(e.next_attempt_at.is_(None), e.next_attempt_at <= now,
                  ahead_of_the_clock(e.next_attempt_at, now, longest_wait(settings)))


def _unclaimed(now: datetime, settings: Settings) -> sa.ColumnElement:
    """Nobody holds it: no claim, one run out, or one written by a clock that was ahead."""
    e = envelopes_t.c
    return sa.or_(e.claimed_until.is_(None), e.claimed_until < now,
                  ahead_of_the_clock(e.claimed_until, now, timedelta(seconds=settings.send_claim_seconds)))


def due_for_sending(gw: Gateway) -> bool:
    """Whether some envelope waits to be sent and is past its back-off (for the scheduler's tick)."""
    now = gw.clock()
    e = envelopes_t
    with gw.engine.connect() as conn:
        return conn.execute(sa.select(sa.literal(1)).where(
            e.c.state.in_(AWAITING_RECEIPT), _due(now, gw.settings), _unclaimed(now, gw.settings))
            .limit(1)).first() is not None


def claim_next(gw: Gateway, *, holder: str | None = None,
               exclude: set[str] | frozenset[str] = frozenset(), due_only: bool = False) -> str | None:
    """Claim the oldest envelope waiting to be sent that nobody holds and that may go now; None if none.
    ``due_only``: only one past its back-off (``next_attempt_at``), as the scheduler's tick wants."""
    holder = holder or gw.instance_id
    now = gw.clock()
    with gw.engine.begin() as conn:
        candidate = _claimable(now, set(exclude), due_only, settings=gw.settings)
        if conn.dialect.name == "postgresql":
            candidate = candidate.with_for_update(skip_locked=True, of=envelopes_t)
        return conn.execute(
            envelopes_t.update().where(envelopes_t.c.id == candidate.scalar_subquery())
            .values(claimed_by=holder, claimed_until=now + timedelta(seconds=gw.settings.send_claim_seconds))
            .returning(envelopes_t.c.id)).scalar()


def release(gw: Gateway, envelope_id: str, *, holder: str | None = None) -> None:
    """Let go of our claim (the envelope was answered, or every attempt of this worker failed)."""
    holder = holder or gw.instance_id
    with gw.engine.begin() as conn:
        conn.execute(envelopes_t.update().where(envelopes_t.c.id == envelope_id, envelopes_t.c.claimed_by == holder)
                     .values(claimed_by=None, claimed_until=None))


def release_claims_of(gw: Gateway, holder: str) -> int:
    """Free every claim of an instance known to be dead (its lease was taken over)."""
    with gw.engine.begin() as conn:
        return conn.execute(envelopes_t.update().where(envelopes_t.c.claimed_by == holder)
                            .values(claimed_by=None, claimed_until=None)).rowcount


def release_dead_claims(gw: Gateway) -> int:
    """Free the claims of processes of this machine that no longer exist (a crash, a kill): a restarted
    run need not wait for their claims to expire."""
    with gw.engine.connect() as conn:
        holders = list(conn.execute(sa.select(envelopes_t.c.claimed_by).distinct().where(
            envelopes_t.c.claimed_by.is_not(None), envelopes_t.c.state.in_(AWAITING_RECEIPT))).scalars())
    return sum(release_claims_of(gw, holder) for holder in holders if is_dead_here(holder))


@dataclass
class SendingStats:
    """What `send_waiting` did: envelopes posted, and how each ended."""

    envelopes: list[str] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    paused: bool = False  # stopped because an operator paused sending (gateway.pipeline.pause)
    deferred: int = 0  # not posted: DUDE was found unreachable (gateway.pipeline.outage)

    @property
    def sent(self) -> int:
        return len(self.envelopes)


def send_waiting(gw: Gateway, *, run_id: int | None = None, workers: int | None = None,
                 holder: str | None = None, check: Callable[[], None] | None = None,
                 outage: Outage | None = None, due_only: bool = False) -> SendingStats:
    """Claim and send every envelope waiting to be sent, ``workers`` at a time (default
    ``send_workers``), each at most once per call; returns what happened. ``check()`` is called between
    two claims (a run's lease check: it raises to stop). Once an envelope's round finds DUDE down, nothing
    more is claimed (``outage``, the caller's pass's, or this call's own: `gateway.pipeline.outage`).
    ``due_only`` (the scheduler's tick): only envelopes past their back-off or DUDE's outage
    (``next_attempt_at``); a run sends every one at once (an operator who starts one wants it tried now)."""
    workers = workers or gw.settings.send_workers
    holder = holder or gw.instance_id
    outage = outage or Outage.of(gw)
    stats = SendingStats()
    release_dead_claims(gw)
    tried: set[str] = set()
    in_flight: dict[Future, str] = {}
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="worker")
    try:
        while True:
            while (len(in_flight) < (1 if outage.probing() else workers) and not stats.paused
                   and outage.until() is None):  # one probe first: gateway.pipeline.outage
                if check is not None:
                    check()
                envelope_id = claim_next(gw, holder=holder, exclude=tried, due_only=due_only)
                if envelope_id is None:
                    break
                tried.add(envelope_id)
                in_flight[pool.submit(dispatch.transmit, gw, envelope_id, run_id=run_id, outage=outage)] = envelope_id
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                envelope_id = in_flight.pop(future)
                try:
                    outcome = future.result()
                    if isinstance(outcome, dispatch.Acknowledged):
                        outcome = dispatch.apply_answer(gw, outcome, run_id=run_id)
                finally:
                    release(gw, envelope_id, holder=holder)
                if getattr(outcome, "paused", False):  # an operator paused sending: claim nothing more
                    stats.paused = True
                    continue
                if getattr(outcome, "deferred", False) and not outcome.attempts:  # DUDE found down meanwhile
                    stats.deferred += 1
                    continue
                stats.envelopes.append(envelope_id)
                stats.states[outcome.state] = stats.states.get(outcome.state, 0) + 1
                stats.attempts += outcome.attempts
                log.info("envelope %s sent by %s: %s", envelope_id, holder, outcome.state)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for envelope_id in in_flight.values():  # stopped early: the others may have them (same IdLot)
            release(gw, envelope_id, holder=holder)
    return stats


def waiting_count(gw: Gateway) -> int:
    with gw.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(envelopes_t).where(
            envelopes_t.c.state.in_(AWAITING_RECEIPT))).scalar_one()

