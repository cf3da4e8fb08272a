"""A run: one batch from the exports to the reconciled store, whoever starts it (brief §2, §5).

Order of work, each step safe to repeat after a crash:

1. send again the envelopes a previous run sealed but never got a receipt for (same ``IdLot``);
2. read each export, pre-flight it and store the outcomes (a bad file is reported, the others go on);
   the reading and pre-flight run in a child process, ahead of the storing (`gateway.pipeline.reading`);
3. seal pending events into signed envelopes as soon as a full envelope's worth is stored (while the
   rest of the exports is still being read), then what is left, and send each one as soon as it is
   sealed; the XML, the XSD check and the signature are done in another child process, while the run
   stores the next lines (`gateway.pipeline.sealing`);
4. poll for the reports until every envelope awaiting one is settled (this run's, and those earlier runs left
   owed) or ``report_wait_seconds`` pass (later polls, by the scheduler or the next run, pick up the rest);
5. record the run's counts and outcome.

Why steps 2 to 4 overlap (the night is a pipeline, issue 7): DUDE checks an envelope (signature,
XSD, business rules) in its own process while the gateway reads and seals the next one, and reports
already due are applied between two chunks of the exports. `_Dispatcher` sends with `SENDERS` threads
so that DUDE can check one envelope while it processes the previous one; two envelopes carrying
versions of the same event are still sent one after the other (the second waits for the first's
receipt), so DUDE never sees an ``M`` before its ``C``. Every step keeps the outbox rule: an envelope
is stored, with its events ``ENVOYE``, before it is posted.

``durations`` add up to the run's wall time: ``lecture`` (reading, pre-flight, storing), ``scellement``
(XML, XSD, signature, storing the envelope), ``envoi`` (recording receipts, and reports already due,
as they come back while reading, then waiting for the last receipts), ``comptes_rendus`` (waiting
for the last reports).

A *dry run* does step 2 in a transaction that is rolled back, and says what would be sent, skipped
and rejected.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from gateway.codes import AWAITING_RECEIPT, EnvelopeState, EventState, RejectCode
from gateway.context import Gateway
from gateway.errors import ExportFileError, GatewayError
from gateway.keys import check_key_material
from gateway.pipeline import dispatch, pause, reconcile
from gateway.pipeline.outage import Outage
from gateway.pipeline.sending import release as release_claim
from gateway.pipeline.sending import send_waiting
from gateway.pipeline.ingest import IngestStats, ingest
from gateway.pipeline.reading import ExportStream, Prepared
from gateway.pipeline.sealing import PipelinedSealing, Sealer
from gateway.preflight import PreflightConfig
from gateway.store.models import envelopes_t, events_t, runs_t

log = logging.getLogger("gateway.run")

#: ``progress(stage, done, total)``; total may be None when unknown.
Progress = Callable[[str, int, int | None], None]


def _instant(moment: datetime) -> str:
    """An instant as the API writes every other one (Pydantic: ``Z`` for UTC): the stored summary, which
    ``GET /api/v1/runs/{id}`` gives admins as it is, wrote ``+00:00`` beside the run's own ``Z`` times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class RunSummary:
    run_id: int
    trigger: str
    dry_run: bool
    inputs: list[str]
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str = "EN_COURS"
    ingest: IngestStats = field(default_factory=IngestStats)
    file_errors: list[dict] = field(default_factory=list)
    envelopes: Counter = field(default_factory=Counter)
    sending: Counter = field(default_factory=Counter)
    states: Counter = field(default_factory=Counter)
    rejects: Counter = field(default_factory=Counter)
    durations: dict[str, float] = field(default_factory=dict)
    would_send: int | None = None
    #: The pause switch as the run found it (`gateway.pipeline.pause.SendingState.as_dict`), when paused.
    sending_paused: dict | None = None
    #: Exports read without error but worth a look (``P3_NO_RECORDS``: nothing but the header).
    file_warnings: list[dict] = field(default_factory=list)
    #: The export reader process's peak RSS (MB) and CPU time (s), when the exports were read in one.
    reader: dict[str, float] = field(default_factory=dict)
    #: The same for the sealing process, when the envelopes were sealed in one.
    sealer: dict[str, float] = field(default_factory=dict)
    #: Envelopes of earlier runs this run sent again (step 1), and the states their events ended in: a run
    #: that only resends reads no line, and would otherwise say nothing of what it did.
    resumed_envelopes: list[str] = field(default_factory=list)
    resumed: Counter = field(default_factory=Counter)
    #: Reports this run polled and applied (``lots``: its own envelopes', and those earlier runs left owed), and
    #: what they said of their events (``ACCEPTE``, ``REJETE``): all a catch-up run has to say of last night's
    #: owed reports, which its states (the events it read: none) cannot. ``acces_refuse``: polls DUDE answered by
    #: refusing the gateway itself (HTTP 401/403), each stopping the pass's polling until a probe.
    reports: Counter = field(default_factory=Counter)

    def count_reports(self, results: Sequence[reconcile.AppliedReport]) -> None:
        """Count the reports among ``results`` that this run applied (not a copy already applied, not "not yet"),
        and the polls refused as DUDE refused the gateway itself (``acces_refuse``)."""
        for result in results:
            if result.outcome is reconcile.ReportOutcome.ACCESS_REFUSED:  # said in red (gateway.cli.report)
                self.reports["acces_refuse"] += 1
            if result.outcome is reconcile.ReportOutcome.APPLIED:
                self.reports.update({"lots": 1, EventState.ACCEPTE.value: result.accepted,
                                     EventState.REJETE.value: result.rejected})

    @property
    def undelivered(self) -> int:
        """Envelopes still without DUDE's receipt when the run ends: posted at every attempt in vain
        (``sans_accuse``), or not posted (``non_envoyes``: DUDE found down, `gateway.pipeline.outage`, or held
        behind an unanswered envelope carrying an earlier version of their events). Kept, and sent (same
        IdLot) by the next run or the scheduler. (An envelope in quarantine is not one: its events went on
        in smaller envelopes, `gateway.pipeline.quarantine`.)"""
        return self.sending.get("sans_accuse", 0) + self.sending.get("non_envoyes", 0)

    def top_rejects(self, n: int = 10) -> list[dict]:
        return [{"code": code, "label": RejectCode(code).label, "count": count}
                for code, count in self.rejects.most_common(n)]

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id, "trigger": self.trigger, "dry_run": self.dry_run, "inputs": self.inputs,
            "started_at": _instant(self.started_at),
            "finished_at": _instant(self.finished_at) if self.finished_at else None,
            "outcome": self.outcome, "ingest": self.ingest.as_dict(), "file_errors": self.file_errors,
            "envelopes": dict(sorted(self.envelopes.items())), "sending": dict(sorted(self.sending.items())),
            "states": dict(sorted(self.states.items())),
            "top_rejects": self.top_rejects(), "durations": {k: round(v, 3) for k, v in self.durations.items()},
            "sending_paused": self.sending_paused, "file_warnings": self.file_warnings, "reader": self.reader,
            "sealer": self.sealer, "resumed": dict(sorted(self.resumed.items())),
            "reports": {key: self.reports.get(key, 0)
                        for key in ("lots", EventState.ACCEPTE.value, EventState.REJETE.value)},
            **({"would_send": self.would_send} if self.dry_run else {}),
        }


def _noop(stage: str, done: int, total: int | None) -> None:
    pass


def printable_name(name: str) -> str:
    """A file name as it may be shown, logged and stored: bytes that are not UTF-8 (kept by Python as
    surrogates) as ``\\xff``, control characters as ``\\n``, ``\\x1b``… A name holding either is refused
    (`FILE_NAME_REFUSED`): stored as it was, it stopped every night (the store takes UTF-8 only), and logged
    as it was, a newline and an escape sequence in it wrote a line of its own in the log."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


#: The file error of an export whose name `printable_name` had to change.
FILE_NAME_REFUSED = {"code": "P3_FILE_NAME",
                     "message": "nom de fichier illisible (octets hors UTF-8 ou caractères de contrôle) : "
                                "le fichier n'est pas lu ; le renommer, par exemple P3_69001_20261128.csv"}


def start_run(gw: Gateway, *, trigger: str, inputs: Sequence[Path], dry_run: bool) -> RunSummary:
    now = gw.clock()
    names = [printable_name(Path(p).name) for p in inputs]
    with gw.engine.begin() as conn:
        run_id = conn.execute(runs_t.insert().values(trigger=trigger, dry_run=dry_run, inputs=json.dumps(names),
                                                     started_at=now, outcome="EN_COURS", counts="{}")
                              .returning(runs_t.c.id)).scalar_one()
    return RunSummary(run_id=run_id, trigger=trigger, dry_run=dry_run, inputs=names, started_at=now)


def run_batch(gw: Gateway, inputs: Sequence[Path], *, trigger: str = "cli", dry_run: bool = False,
              progress: Progress = _noop, wait_for_reports: bool = True,
              on_started: Callable[[int], None] | None = None,
              guard: Callable[[], None] | None = None, warnings: Sequence[dict] = ()) -> RunSummary:
    """Run one batch over ``inputs`` and return its summary (also stored on the run row).

    ``on_started(run_id)`` is called once the run row exists (the API answers 202 with that id).
    ``guard()`` is called between steps and may raise a `GatewayError` to stop the run: the run's lease,
    lost to another instance (`gateway.nightly`; issue 5). ``warnings`` (``file``, ``code``, ``message``)
    are the caller's, kept with the run's own (`RunSummary.file_warnings`): the night's missing drop folder."""
    summary = start_run(gw, trigger=trigger, inputs=inputs, dry_run=dry_run)
    summary.file_warnings.extend(warnings)
    readable = []
    for path in inputs:
        if (shown := printable_name(Path(path).name)) == Path(path).name:
            readable.append(path)
        else:  # refused before it is read: the other files and the night go on
            summary.file_errors.append({"file": shown, **FILE_NAME_REFUSED})
            log.error("export %s refused: P3_FILE_NAME", shown)
    inputs = readable
    if on_started is not None:
        on_started(summary.run_id)
    try:
        if dry_run:
            _dry_run(gw, inputs, summary, progress)
        else:
            _real_run(gw, inputs, summary, progress, wait_for_reports=wait_for_reports, guard=guard)
            _count_unsent(gw, summary)
        summary.outcome = ("TERMINE_AVEC_ERREURS" if summary.file_errors
                           else "TERMINE_SANS_ACCUSE" if summary.undelivered else "TERMINE")
    except GatewayError as exc:
        summary.outcome = "ECHEC"
        _finish(gw, summary, error=str(exc))
        raise
    _finish(gw, summary)
    return summary


def _timed(summary: RunSummary, stage: str):
    class _Timer:
        def __enter__(self):
            self.t0 = time.perf_counter()

        def __exit__(self, *exc):
            summary.durations[stage] = summary.durations.get(stage, 0.0) + time.perf_counter() - self.t0
    return _Timer()


def _ingest_files(gw: Gateway, inputs: Sequence[Path], summary: RunSummary, progress: Progress,
                  connection=None, on_chunk: Callable[[IngestStats], None] | None = None,
                  records: dict[str, Prepared] | None = None) -> None:
    config = PreflightConfig.from_settings(gw.settings)
    with ExportStream(inputs, config, encoding=gw.settings.input_encoding,
                      in_child=gw.settings.read_in_subprocess, with_xml=records is not None) as stream:
        for index, (path, items) in enumerate(stream):
            try:
                if isinstance(items, BaseException):
                    raise items
                stats = ingest(gw.engine, items, run_id=summary.run_id, now=gw.clock(), connection=connection,
                               on_chunk=on_chunk, records=records)
            except (ExportFileError, OSError) as exc:
                code = getattr(exc, "code", "P3_FILE")
                summary.file_errors.append({"file": path.name, "code": code, "message": str(exc)})
                log.error("export %s refused: %s", path.name, exc)
                continue
            if stats.lines == 0:  # a header and nothing else: a quiet day, or a broken export; say so
                summary.file_warnings.append({"file": path.name, "code": "P3_NO_RECORDS",
                                              "message": "aucun enregistrement : le fichier ne contient que "
                                                         "l'en-tête"})
                log.warning("export %s: P3_NO_RECORDS, nothing but the header", path.name)
            summary.ingest.add(stats)
            progress("lecture", index + 1, len(inputs))
    summary.reader = stream.reader


def _dry_run(gw: Gateway, inputs: Sequence[Path], summary: RunSummary, progress: Progress) -> None:
    with _timed(summary, "lecture"), gw.engine.connect() as conn:
        trans = conn.begin()
        try:
            _ingest_files(gw, inputs, summary, progress, connection=conn)
            summary.would_send = conn.execute(sa.select(sa.func.count()).select_from(events_t).where(
                events_t.c.state == EventState.EN_ATTENTE.value)).scalar_one()
        finally:
            trans.rollback()
    summary.rejects.update(summary.ingest.rejects_by_code)
    summary.states[EventState.INVALIDE.value] = summary.ingest.invalid


def _real_run(gw: Gateway, inputs: Sequence[Path], summary: RunSummary, progress: Progress, *,
              wait_for_reports: bool, guard: Callable[[], None] | None = None) -> None:
    check = guard or (lambda: None)
    # The keys before the exports: a run that cannot sign, or could not check DUDE's answers (no trust
    # folder, or an empty one), stops here (KeyMaterialError, KEYS) rather than after storing the night's lines.
    gw.signer  # noqa: B018
    if not len(gw.dude_trust):
        check_key_material(gw.settings)  # raises, saying what is missing
    switch = pause.current(gw.engine)
    if switch.paused:  # read and seal (the outbox fills up), send nothing: gateway.pipeline.pause
        summary.sending_paused = switch.as_dict()
        log.warning("run %d: %s; reading and sealing only, nothing is sent", summary.run_id, switch.describe())
    sealer = _start_sealer(gw, inputs)  # it starts while the run resumes and starts reading
    outage = Outage.of(gw)  # DUDE found down: gateway.pipeline.outage
    try:
        with _timed(summary, "reprise"):  # claimed one by one: another instance may be sending some of them
            if not switch.paused:
                resumed = send_waiting(gw, run_id=summary.run_id, check=check, outage=outage)
                summary.resumed_envelopes = resumed.envelopes
                summary.sending["reprises"] += resumed.sent
                for state, counted in ((EnvelopeState.ENVOYE.value, "sans_accuse"),
                                       (EnvelopeState.QUARANTAINE.value, "quarantaine")):
                    if resumed.states.get(state):  # resent, and still not acknowledged
                        summary.sending[counted] += resumed.states[state]
        # Lines stored by this run, by payload, with their XML written by the reader: sealing takes them
        # from here rather than writing the XML again. Drained as envelopes are sealed (each chunk), so
        # it stays near one envelope's worth; cleared if it ever grows past a few (events claimed by
        # another instance).
        records: dict[str, Prepared] = {}
        with _Dispatcher(gw, summary, poll_reports=wait_for_reports, outage=outage) as dispatcher:
            _read_seal_send(gw, inputs, summary, progress, check, switch, dispatcher, records, sealer)
    finally:
        if sealer is not None:
            sealer.close()
            summary.sealer = sealer.stats
    if wait_for_reports:
        with _timed(summary, "comptes_rendus"):
            _wait_for_reports(gw, summary, progress, outage)


#: Bytes a Parcours 3 event takes at the least in an export (~200 on average, with its empty fields): what
#: tells, before reading them, whether the exports hold two envelopes' worth.
MIN_EVENT_BYTES = 100


def _start_sealer(gw: Gateway, inputs: Sequence[Path]) -> Sealer | None:
    """The sealing process (`gateway.pipeline.sealing`), started now so that it is ready by the first
    envelope; None when sealing stays in the run's thread: ``seal_in_subprocess`` is false, the exports
    hold less than two envelopes' worth (nothing to seal while storing), or it cannot start."""
    settings = gw.settings
    if not settings.seal_in_subprocess or os.name != "posix":
        return None
    size = 0
    for path in inputs:
        try:
            size += Path(path).stat().st_size
        except OSError:  # reported by the reading
            pass
    if size < 2 * settings.envelope_max_events * MIN_EVENT_BYTES:
        return None
    try:
        return Sealer(gw).start()
    except OSError as exc:
        log.warning("sealing process not started, the run seals in its own thread: %s", exc)
        return None


def _read_seal_send(gw: Gateway, inputs: Sequence[Path], summary: RunSummary, progress: Progress,
                    check: Callable[[], None], switch: pause.SendingState, dispatcher: _Dispatcher,
                    records: dict[str, Prepared], sealer: Sealer | None) -> None:
    """Steps 2 and 3: read and store the exports, sealing full envelopes as they fill up and sending
    each one as soon as it is sealed; then seal what is left, and wait for the receipts."""
    full = gw.settings.envelope_max_events
    on_sealed = None if switch.paused else dispatcher.submit
    claimed_by = None if switch.paused else gw.instance_id
    pipelined = (PipelinedSealing(gw, sealer, run_id=summary.run_id, claimed_by=claimed_by, records=records,
                                  on_sealed=on_sealed) if sealer is not None else None)

    def seal(at_least: int, *, reading: bool) -> None:
        check()
        with _timed(summary, "scellement"):
            if pipelined is not None:
                sealed = pipelined.advance(at_least, finish=not reading)
            else:
                sealed = dispatch.seal_pending(gw, run_id=summary.run_id, at_least=at_least,
                                               on_sealed=on_sealed, claimed_by=claimed_by, records=records)
        if len(records) > 4 * full:
            records.clear()
        if switch.paused:
            summary.sending["scelles_non_envoyes"] += len(sealed)
        with _timed(summary, "envoi"):
            dispatcher.catch_up(more_to_seal=reading)

    started = time.perf_counter()
    _ingest_files(gw, inputs, summary, progress, on_chunk=lambda stats: seal(full, reading=True),
                  records=records)
    seal(1, reading=False)
    summary.durations["lecture"] = (time.perf_counter() - started - summary.durations.get("scellement", 0.0)
                                    - summary.durations.get("envoi", 0.0))
    with _timed(summary, "envoi"):
        dispatcher.wait_for_receipts(progress)


#: Envelopes on the wire at once, by default (``send_workers``). Two: DUDE can check the signature and
#: schema of one while it applies its business rules to the previous one (and the gateway seals the next
#: meanwhile); more only queue at a DUDE of one process (bench/night.py --workers measures it).
SENDERS = 2


class _Dispatcher:
    """Sends the envelopes of a run as they are sealed; records their receipts and the reports that come
    due, in the run's own thread.

    ``submit(sealed)`` queues an envelope for one of the `SENDERS` threads, which post it and check
    DUDE's receipt (`dispatch.transmit`); an envelope sharing an event key with one still on the wire
    waits for that one's answer first (versions of an event reach DUDE in order). ``catch_up()``,
    called by the run between two chunks of the exports, records the receipts that came back
    (`dispatch.apply_answer`) and applies the reports that are due (``report_poll_interval_seconds``
    after their receipt), so that only the last ones are left to `_wait_for_reports`. Once a poll found
    DUDE unavailable, it polls nothing until the back-off is over, then one report, the probe, and the
    others if DUDE answered it: the run's `Outage` holds that back-off, which `_wait_for_reports` goes on from.

    Why the run's own thread writes the receipts and reports rather than the threads that fetch them:
    a second writer would make one of the two sleep on SQLite's write lock (SQLite retries a blocked
    writer after 1, 2, 5, 10… ms) and compete for the interpreter lock with reading and sealing, for
    no gain: the work is the same, and the sender threads are then free as soon as DUDE has answered.
    """

    def __init__(self, gw: Gateway, summary: RunSummary, *, poll_reports: bool, outage: Outage):
        self.gw, self.summary, self._outage = gw, summary, outage
        self._pool = ThreadPoolExecutor(max_workers=gw.settings.send_workers, thread_name_prefix="send")
        self._futures: list[Future] = []
        self._answered = 0  # futures whose outcome is recorded (in submission order)
        self._on_the_wire: list[tuple[frozenset[str], Future]] = []
        self._acknowledged: list[str] = []
        self._poll_reports = poll_reports

    def __enter__(self) -> _Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)

    def submit(self, sealed: dispatch.SealedEnvelope) -> None:
        self._on_the_wire = [(keys, f) for keys, f in self._on_the_wire if not f.done()]
        before = [f for keys, f in self._on_the_wire if not keys.isdisjoint(sealed.keys)]
        future = self._pool.submit(self._transmit, sealed.envelope_id, before)
        self._on_the_wire.append((sealed.keys, future))
        self._futures.append(future)

    def _transmit(self, envelope_id: str, before: list[Future]) -> dispatch.Acknowledged | dispatch.SendResult:
        wait_for(before)  # earlier tasks only (FIFO pool): they are running or done, no deadlock
        return dispatch.transmit(self.gw, envelope_id, run_id=self.summary.run_id, outage=self._outage)

    def _record(self, future: Future) -> None:
        outcome = future.result()
        if isinstance(outcome, dispatch.Acknowledged):
            outcome = dispatch.apply_answer(self.gw, outcome, run_id=self.summary.run_id)
        release_claim(self.gw, outcome.envelope_id)  # sealed claimed by us (gateway.pipeline.sending)
        sending = self.summary.sending
        if outcome.paused:  # paused by an operator meanwhile: not posted (gateway.pipeline.pause)
            sending["suspendus"] += 1
            return
        if outcome.deferred and not outcome.attempts:  # DUDE found down: not posted (`_count_unsent` says it)
            return
        sending["envoyes"] += 1
        sending["tentatives"] += outcome.attempts
        if outcome.state == EnvelopeState.ENVOYE.value:
            sending["sans_accuse"] += 1
            if outcome.access_refused:  # of them: DUDE refused the gateway itself (gateway.errors.AccessRefused)
                sending["acces_refuse"] += 1
        elif outcome.state == EnvelopeState.QUARANTAINE.value:  # gateway.pipeline.quarantine
            sending["quarantaine"] += 1
        elif outcome.state == EnvelopeState.RECU.value:
            self._acknowledged.append(outcome.envelope_id)

    def catch_up(self, *, more_to_seal: bool = False) -> None:
        """Record the answers already back (in order), then apply the reports already due.

        ``more_to_seal`` (the exports are still being read): if DUDE has nothing left to check (every
        envelope sent has its answer), all this waits, and the run goes back to storing, so that the next
        envelope reaches DUDE sooner; these answers are recorded while DUDE checks it (at the latest by
        `wait_for_receipts`). The same work, in an order that keeps DUDE busy: `bench/timeline.py` showed
        it idle ~0.6 s of a 20,000 night while the run recorded a receipt and a report before storing the
        next envelope's events."""
        if more_to_seal and all(f.done() for f in self._futures[self._answered:]):
            return
        while self._answered < len(self._futures) and self._futures[self._answered].done():
            self._record(self._futures[self._answered])
            self._answered += 1
        if not self._poll_reports or not self._acknowledged:
            return
        if self._outage.probe_in():  # a poll found DUDE unavailable: its probe, not before the back-off's end
            return
        try:
            results = reconcile.poll_reports(self.gw, envelope_ids=self._acknowledged, outage=self._outage)
        except GatewayError as exc:  # left to the final wait, which raises it
            log.warning("report polling during sending stopped: %s", exc)
            self._poll_reports = False
            return
        self.summary.count_reports(results)
        settled = {r.envelope_id for r in results
                   if r.outcome in (reconcile.ReportOutcome.APPLIED, reconcile.ReportOutcome.DUPLICATE)}
        self._acknowledged = [i for i in self._acknowledged if i not in settled]

    def wait_for_receipts(self, progress: Progress) -> None:
        total = len(self._futures)
        if 0 < self._answered < total:
            progress("envoi", self._answered, total)
        while self._answered < total:
            self._record(self._futures[self._answered])
            self._answered += 1
            progress("envoi", self._answered, total)


def _wait_for_reports(gw: Gateway, summary: RunSummary, progress: Progress, outage: Outage) -> None:
    """Poll the awaited reports until they are all in or ``report_wait_seconds`` have passed.

    Once a poll finds DUDE unavailable, the wait backs off and then probes (`Outage.poll_failed`: one report
    asked after the poll interval, then after twice as long at each probe that fails, the others once DUDE
    answers one). Polling every half-second a DUDE that was down logged 205 warnings in 20 s; stopping at the
    first failed poll ended a night without its reports for one 503 from a load balancer. It ends before the
    deadline only when the next probe would come after it, and says so: the reports are then polled by the
    scheduler, or the next run. It ends at once, and says so, while sending found DUDE down
    (`Outage.polling_stopped`: a whole round of attempts failed, not a blip)."""
    with gw.engine.connect() as conn:
        ours = list(conn.execute(sa.select(envelopes_t.c.id).where(
            envelopes_t.c.state == EnvelopeState.RECU.value)).scalars())
    if not ours:
        return
    deadline = time.monotonic() + gw.settings.report_wait_seconds
    slept_to = 0.0  # where the back-offs slept so far reach: a `gw.sleep` that returns early (a test's) counts whole
    while True:
        summary.count_reports(reconcile.poll_reports(gw, envelope_ids=ours, outage=outage))
        left = reconcile.awaiting(gw, ours)
        progress("comptes rendus", len(ours) - left, len(ours))
        if left == 0:
            break
        backoff = outage.probe_in()
        now = max(time.monotonic(), slept_to)
        if outage.polling_stopped() or (backoff is not None and now + backoff > deadline):
            log.warning("run %d: DUDE unavailable or refusing the gateway: %d envelope(s) received by DUDE still "
                        "without their report, not awaited; polled later by the scheduler or the next run",
                        summary.run_id, left)
            break
        if backoff is not None:
            slept_to = now + backoff
            gw.sleep(backoff)
            continue
        if time.monotonic() >= deadline:
            break
        gw.sleep(gw.settings.report_poll_interval_seconds)


def _count_unsent(gw: Gateway, summary: RunSummary) -> None:
    """Count, as ``non_envoyes``, the envelopes still waiting for DUDE that this run did not post: those DUDE
    was found down for, and those held behind an unanswered earlier version of their events. Without them a
    run after an outage said "8 lots sans accusé" while 15 waited. Not counted: a paused run's (said as
    such), and those another live instance holds right now (it is sending them)."""
    if summary.sending_paused:
        return
    now = gw.clock()
    e = envelopes_t.c
    with gw.engine.connect() as conn:
        waiting = conn.execute(sa.select(sa.func.count()).select_from(envelopes_t).where(
            e.state.in_(AWAITING_RECEIPT),
            sa.or_(e.claimed_by.is_(None), e.claimed_by == gw.instance_id, e.claimed_until < now))).scalar_one()
    said = summary.sending.get("sans_accuse", 0) + summary.sending.get("suspendus", 0)
    if waiting > said:
        summary.sending["non_envoyes"] = waiting - said


def _finish(gw: Gateway, summary: RunSummary, *, error: str | None = None) -> None:
    summary.finished_at = gw.clock()
    if not summary.dry_run:
        with gw.engine.connect() as conn:
            summary.states = Counter(dict(conn.execute(
                sa.select(events_t.c.state, sa.func.count()).where(events_t.c.run_id == summary.run_id)
                .group_by(events_t.c.state)).all()))
            summary.rejects = Counter(dict(conn.execute(
                sa.select(events_t.c.reject_code, sa.func.count())
                .where(events_t.c.run_id == summary.run_id, events_t.c.reject_code.is_not(None),
                       events_t.c.state.in_([EventState.INVALIDE.value, EventState.REJETE.value]))
                .group_by(events_t.c.reject_code)).all()))
            summary.envelopes.update(dict(conn.execute(
                sa.select(envelopes_t.c.state, sa.func.count()).where(envelopes_t.c.run_id == summary.run_id)
                .group_by(envelopes_t.c.state)).all()))
            for start in range(0, len(summary.resumed_envelopes), 500):
                summary.resumed.update(dict(conn.execute(
                    sa.select(events_t.c.state, sa.func.count())
                    .where(events_t.c.envelope_id.in_(summary.resumed_envelopes[start:start + 500]))
                    .group_by(events_t.c.state)).all()))
    with gw.engine.begin() as conn:
        conn.execute(runs_t.update().where(runs_t.c.id == summary.run_id).values(
            finished_at=summary.finished_at, outcome=summary.outcome, error=error,
            counts=json.dumps(summary.as_dict(), ensure_ascii=False)))
