"""DUDE down: once one envelope's whole sending round found nobody there, the others wait (brief §5: "retries
are bounded with backoff").

Why. Each envelope is tried ``send_attempts`` times with back-off (`gateway.pipeline.dispatch.transmit`). While
DUDE is down, every envelope of a night did that in turn: 15 envelopes took 26 s and logged 60 warnings, and
at national scale (hundreds of envelopes, each attempt a time-out) it is an hour of posting into the void,
the night's sending threads held the whole time.

What is done. An `Outage` lives for one sending pass (a run, or one `gateway.pipeline.sending.send_waiting`
call: a tick of the scheduler). When a round ends with every attempt *unavailable* (no answer, a time-out, or
502/503/504: "come back later"), the outage opens for ``dude_outage_seconds``: the envelopes that come next are
not posted; they keep their state (``SIGNE`` or ``ENVOYE``: the outbox rule holds, the same ``IdLot`` goes
later) with ``next_attempt_at`` at the outage's end, and one line says so. Once that time is over, the next
envelope's round is the probe: if DUDE answers, sending goes on; if not, the outage opens again.

One probe, not one per sender. Until DUDE has answered in the pass (and again once an outage has opened), one
envelope's round goes at a time (`Outage.take_turn`): the other senders wait for its end. Before, each of the
``send_workers`` threads made its own round when the outage ended (or a tick began) with DUDE still down: up
to eight rounds of attempts, and their warnings, to learn what the first one had. Once DUDE answers (a
receipt, a refusal, even a 500: it is there), they all go. A pass with DUDE up loses only this: its first
envelope's post goes alone.

Not counted as unavailable: an HTTP 500 (DUDE was there and this envelope broke it, which
`gateway.pipeline.quarantine` counts against the envelope), a refusal, a receipt that fails our checks. The
next run, or the next tick of the scheduler, starts with no outage: its first envelope probes.

DUDE refusing the gateway itself (HTTP 401/403 to a post, `gateway.errors.AccessRefused`: its address not
allowed, a proxy wanting credentials) is not an envelope's fault either: that round stops at its first post,
and once two envelopes are refused before DUDE has answered anything in the pass (`Outage.refused_access`), the
outage opens as for DUDE down; after an answer, a refusal is taken for that envelope's alone. Before, each
envelope of the night spent its ``send_attempts`` posts on it.

Report polling has its own probe. Once a poll finds DUDE unavailable (`Outage.poll_failed`), the pass asks no
report for a back-off (``report_poll_interval_seconds``, doubled at each probe that finds DUDE still unavailable,
up to `PROBE_MAX_SECONDS`), then asks one, the probe, and the others only once DUDE answered it
(`gateway.pipeline.reconcile.poll_reports`). Before, the first such poll stopped the pass's polling for good: one
503 from a load balancer and a night ended without its reports; and before that, a run polled a DUDE that was
down every half-second, 205 warnings in 20 s for 5 envelopes. Only a poll's answer resumes polling, not
sending's: when the sender threads' answers resumed it, the number of polls of a night depended on how sending
and polling interleaved.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

log = logging.getLogger("gateway.outage")

#: HTTP statuses that say "unavailable, come back later" rather than "this request broke me".
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})

#: The longest back-off between two report probes (`Outage.poll_failed`): DUDE back is then seen within this
#: long, however long it was away (a run's wait for its reports is 60 s by default).
PROBE_MAX_SECONDS = 30.0


def unavailable(status: int | None) -> bool:
    """Whether a failed attempt says nothing but "DUDE is not there": no HTTP answer (``None``), or 502/503/504."""
    return status is None or status in UNAVAILABLE_STATUSES


class Outage:
    """What one sending pass knows of DUDE's availability. Thread-safe: a run's sender threads share one."""

    @classmethod
    def of(cls, gw) -> Outage:
        """A new pass's, on ``gw``'s clock, ``dude_outage_seconds`` (0: never opens) and
        ``report_poll_interval_seconds`` (the first back-off of report polling, `poll_failed`)."""
        return cls(gw.clock, gw.settings.dude_outage_seconds, poll_interval=gw.settings.report_poll_interval_seconds)

    def __init__(self, clock: Callable[[], datetime], seconds: float, *, poll_interval: float = 0.5) -> None:
        self._clock, self._length = clock, timedelta(seconds=seconds)
        self._lock = threading.Condition()  # the senders waiting for the probe (`take_turn`) wait on it
        self._until: datetime | None = None
        self._poll_interval = poll_interval
        self._poll_backoff = 0.0  # > 0: a report poll found DUDE unavailable, and none has answered since
        self._probe_at: datetime | None = None  # when the report probe may go (`probe_in`)
        self._reached = False  # DUDE answered since the pass began or the outage last opened: no probe needed
        self._probe: str | None = None  # the envelope whose round is the probe, while there is one
        self._refused: set[str] = set()  # envelopes DUDE refused the gateway's access at, since the outage opened
        self._answered_in_pass = False  # DUDE answered something in this pass: a refusal is then one envelope's

    def until(self) -> datetime | None:
        """The end of the outage if it is on now (envelopes are not posted before), else None."""
        with self._lock:
            return self._on()

    def _on(self) -> datetime | None:  # under the lock
        if self._until is not None and self._clock() >= self._until:
            self._until = None  # over: the next round probes
        return self._until

    def take_turn(self, envelope_id: str) -> None:
        """Before each post: until DUDE has answered, one envelope's round at a time, the others wait here for
        its end (DUDE answered: all go; the outage opened: `defer` holds them; some other end: the next probes).
        A pass whose outage length is 0 never waits (each envelope makes all its attempts: the setting's word).
        Returns at once once DUDE has answered, or the outage is on (`defer` then says so)."""
        if not self._length:
            return
        with self._lock:
            while not self._reached and self._on() is None and self._probe not in (None, envelope_id):
                self._lock.wait(1.0)  # also wakes to see the outage's end on the clock
            if not self._reached and self._until is None:
                self._probe = envelope_id

    def probing(self) -> bool:
        """Whether the next round is a probe (DUDE has not answered since the pass began or the outage last
        opened): a pass that claims its envelopes (`gateway.pipeline.sending.send_waiting`) then claims one."""
        with self._lock:
            return bool(self._length) and not self._reached

    def round_over(self, envelope_id: str) -> None:
        """``envelope_id``'s round ended, however (a receipt, a refusal, attempts exhausted, a pause, a crash):
        if it was the probe, the next waiting envelope may probe."""
        with self._lock:
            if self._probe == envelope_id:
                self._probe = None
                self._lock.notify_all()

    def reached(self) -> None:
        """DUDE gave an HTTP answer other than "unavailable" (a 500, a receipt that fails our checks): it is
        there, so the senders waiting for the probe go (`take_turn`); an open outage is left to end by itself."""
        with self._lock:
            self._reached = self._answered_in_pass = True
            self._lock.notify_all()

    def defer(self, envelope_id: str) -> datetime | None:
        """If the outage is on, say that ``envelope_id`` is held back and return when it may go; else None."""
        until = self.until()
        if until is not None:
            log.info("envelope %s not posted: DUDE unreachable until %s (same IdLot then)", envelope_id,
                     until.isoformat(timespec="seconds"))
        return until

    def round_failed(self, error: str | None, *, why: str = "DUDE unreachable") -> datetime | None:
        """A round ended with every attempt finding DUDE unavailable (`unavailable`): the outage opens, or
        goes on from now (a pass whose outage length is 0 never opens one). Returns its end. ``why`` begins
        the warning."""
        if not self._length:
            return None
        with self._lock:
            opening = self._until is None
            self._until = self._clock() + self._length
            until = self._until
            self._reached = False  # when it ends, one envelope probes again
            self._lock.notify_all()  # those waiting for the probe: `defer` now holds them
        if opening:
            log.warning("%s (%s): the envelopes that follow wait until %s, then one probes; "
                        "each keeps its IdLot", why, error, until.isoformat(timespec="seconds"))
        return until

    def refused_access(self, envelope_id: str, error: str | None) -> datetime | None:
        """DUDE refused the gateway itself (HTTP 401/403, `gateway.errors.AccessRefused`) at ``envelope_id``'s
        post. Once a second envelope is refused before DUDE has answered anything in this pass, the refusal is
        the gateway's, not one envelope's: the outage opens as for DUDE down (`round_failed`), and the others are
        not posted (an address DUDE no longer admits used to cost every envelope of the night ``send_attempts``
        posts and as many warnings). Once DUDE has answered in the pass (a receipt, even a 500), a refusal is that
        envelope's (a filter before DUDE refusing it for its content) and opens nothing: holding the night behind
        such envelopes held it for good, as they were the oldest and so the first to probe each pass (envelopes
        refused before are now claimed last, `gateway.pipeline.sending`). Returns the outage's end, or None."""
        with self._lock:
            if self._answered_in_pass:
                return None
            self._refused.add(envelope_id)
            if len(self._refused) < 2:
                return None
        until = self.round_failed(error, why="DUDE refuses the gateway's access")
        with self._lock:
            self._refused.clear()  # the probe, once the outage is over, starts the count again
        return until

    def poll_failed(self) -> float:
        """A report poll found DUDE unavailable: no report is asked before a back-off (`probe_in`), the poll
        interval the first time, doubled at each probe that finds DUDE still unavailable, up to
        `PROBE_MAX_SECONDS`; then one, the probe. Returns the back-off (seconds). Sending is left alone: its own
        rounds tell."""
        with self._lock:
            if self._poll_backoff:
                self._poll_backoff = min(2 * self._poll_backoff, max(PROBE_MAX_SECONDS, self._poll_interval))
            else:
                self._poll_backoff = self._poll_interval
            self._probe_at = self._clock() + timedelta(seconds=self._poll_backoff)
            return self._poll_backoff

    def poll_answered(self) -> None:
        """DUDE answered a report probe (a report, "not yet", even a 500: it is there): every report is polled
        again, and the next failed poll starts the back-off from the poll interval."""
        with self._lock:
            self._poll_backoff, self._probe_at = 0.0, None

    def probe_in(self) -> float | None:
        """None while report polls go as usual; once a poll found DUDE unavailable (and until a probe is
        answered), the seconds left before the probe may go, 0 when it may go now. A run's wait for its reports
        sleeps that long; its polling between two chunks of the exports skips its turn until then."""
        with self._lock:
            if not self._poll_backoff or self._probe_at is None:
                return None
            return max(0.0, (self._probe_at - self._clock()).total_seconds())

    def polling_stopped(self) -> bool:
        """Whether this pass should poll no report at all: sending found DUDE down (the outage is on). A failed
        poll does not stop polling: it makes the next one a probe, after a back-off (`poll_failed`)."""
        with self._lock:
            return self._on() is not None

    def answered(self) -> None:
        """DUDE answered (a receipt, or a refusal): it is there for sending. Report polling held back by a failed
        poll is left to its own probe (`poll_failed`): resuming it at each of the sender threads' answers made
        the number of polls of a night depend on how sending and polling interleaved."""
        with self._lock:
            self._until = None
            self._reached = self._answered_in_pass = True
            self._lock.notify_all()
