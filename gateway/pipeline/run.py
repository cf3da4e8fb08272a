"""A run: one batch from the exports to the reconciled store, whoever starts it (brief §2, §5).

Order of work, each step safe to repeat after a crash:

1. send again the envelopes a previous run sealed but never got a receipt for (same ``IdLot``);
2. read each export, pre-flight it and store the outcomes (a bad file is reported, the others go on);
3. seal pending events into signed envelopes and send each one as soon as it is sealed (sealing the
   next envelope overlaps with sending the previous one);
4. poll for the reports until every envelope of the run is settled or ``report_wait_seconds`` pass
   (later polls, by the scheduler or the next run, pick up the rest);
5. record the run's counts and outcome.

A *dry run* does step 2 in a transaction that is rolled back, and says what would be sent, skipped
and rejected.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from adapters.parcours3.mapping import parse_export
from gateway.codes import EnvelopeState, EventState, RejectCode
from gateway.context import Gateway
from gateway.errors import ExportFileError, GatewayError
from gateway.pipeline import dispatch, reconcile
from gateway.pipeline.ingest import IngestStats, ingest
from gateway.preflight import PreflightConfig
from gateway.store.models import envelopes_t, events_t, runs_t

log = logging.getLogger("gateway.run")

#: ``progress(stage, done, total)``; total may be None when unknown.
Progress = Callable[[str, int, int | None], None]


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

    def top_rejects(self, n: int = 10) -> list[dict]:
        return [{"code": code, "label": RejectCode(code).label, "count": count}
                for code, count in self.rejects.most_common(n)]

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id, "trigger": self.trigger, "dry_run": self.dry_run, "inputs": self.inputs,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "outcome": self.outcome, "ingest": self.ingest.as_dict(), "file_errors": self.file_errors,
            "envelopes": dict(sorted(self.envelopes.items())), "sending": dict(sorted(self.sending.items())),
            "states": dict(sorted(self.states.items())),
            "top_rejects": self.top_rejects(), "durations": {k: round(v, 3) for k, v in self.durations.items()},
            **({"would_send": self.would_send} if self.dry_run else {}),
        }


def _noop(stage: str, done: int, total: int | None) -> None:
    pass


def start_run(gw: Gateway, *, trigger: str, inputs: Sequence[Path], dry_run: bool) -> RunSummary:
    now = gw.clock()
    names = [Path(p).name for p in inputs]
    with gw.engine.begin() as conn:
        run_id = conn.execute(runs_t.insert().values(trigger=trigger, dry_run=dry_run, inputs=json.dumps(names),
                                                     started_at=now, outcome="EN_COURS", counts="{}")
                              .returning(runs_t.c.id)).scalar_one()
    return RunSummary(run_id=run_id, trigger=trigger, dry_run=dry_run, inputs=names, started_at=now)


def run_batch(gw: Gateway, inputs: Sequence[Path], *, trigger: str = "cli", dry_run: bool = False,
              progress: Progress = _noop, wait_for_reports: bool = True) -> RunSummary:
    """Run one batch over ``inputs`` and return its summary (also stored on the run row)."""
    summary = start_run(gw, trigger=trigger, inputs=inputs, dry_run=dry_run)
    try:
        if dry_run:
            _dry_run(gw, inputs, summary, progress)
        else:
            _real_run(gw, inputs, summary, progress, wait_for_reports=wait_for_reports)
        summary.outcome = "TERMINE" if not summary.file_errors else "TERMINE_AVEC_ERREURS"
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
                  connection=None) -> None:
    config = PreflightConfig.from_settings(gw.settings)
    for index, path in enumerate(inputs):
        try:
            outcomes = parse_export(Path(path), config, encoding=gw.settings.input_encoding)
            stats = ingest(gw.engine, outcomes, run_id=summary.run_id, now=gw.clock(), connection=connection)
        except (ExportFileError, OSError) as exc:
            code = getattr(exc, "code", "P3_FILE")
            summary.file_errors.append({"file": Path(path).name, "code": code, "message": str(exc)})
            log.error("export %s refused: %s", Path(path).name, exc)
            continue
        summary.ingest.add(stats)
        progress("lecture", index + 1, len(inputs))


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
              wait_for_reports: bool) -> None:
    with _timed(summary, "reprise"):
        for envelope_id in dispatch.unanswered_envelopes(gw):
            result = dispatch.send_envelope(gw, envelope_id, run_id=summary.run_id)
            summary.sending["reprises"] += 1
            log.info("resumed envelope %s: %s", envelope_id, result.state)
    with _timed(summary, "lecture"):
        _ingest_files(gw, inputs, summary, progress)
    with _timed(summary, "envoi"):
        _seal_and_send(gw, summary, progress)
    if wait_for_reports:
        with _timed(summary, "comptes_rendus"):
            _wait_for_reports(gw, summary, progress)


def _seal_and_send(gw: Gateway, summary: RunSummary, progress: Progress) -> None:
    with gw.engine.connect() as conn:
        pending = conn.execute(sa.select(sa.func.count()).select_from(events_t).where(
            events_t.c.state == EventState.EN_ATTENTE.value)).scalar_one()
    total = -(-pending // gw.settings.envelope_max_events) if pending else 0
    futures: list[Future] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="send") as sender:
        def on_sealed(envelope_id: str) -> None:
            futures.append(sender.submit(dispatch.send_envelope, gw, envelope_id, run_id=summary.run_id))

        dispatch.seal_all(gw, run_id=summary.run_id, on_sealed=on_sealed)
        for done, future in enumerate(futures, start=1):
            result = future.result()
            summary.sending["envoyes"] += 1
            summary.sending["tentatives"] += result.attempts
            if result.state == EnvelopeState.ENVOYE.value:
                summary.sending["sans_accuse"] += 1
            progress("envoi", done, max(total, len(futures)))


def _wait_for_reports(gw: Gateway, summary: RunSummary, progress: Progress) -> None:
    with gw.engine.connect() as conn:
        ours = list(conn.execute(sa.select(envelopes_t.c.id).where(
            envelopes_t.c.state == EnvelopeState.RECU.value)).scalars())
    if not ours:
        return
    deadline = time.monotonic() + gw.settings.report_wait_seconds
    while True:
        reconcile.poll_reports(gw, envelope_ids=ours)
        left = reconcile.awaiting(gw, ours)
        progress("comptes rendus", len(ours) - left, len(ours))
        if left == 0 or time.monotonic() >= deadline:
            break
        gw.sleep(gw.settings.report_poll_interval_seconds)


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
    with gw.engine.begin() as conn:
        conn.execute(runs_t.update().where(runs_t.c.id == summary.run_id).values(
            finished_at=summary.finished_at, outcome=summary.outcome, error=error,
            counts=json.dumps(summary.as_dict(), ensure_ascii=False)))
