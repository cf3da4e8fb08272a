"""The nightly run, and the lease that keeps any two runs from overlapping (issue 5; brief §2, §8).

**One run at a time, whichever instance.** A run that sends (the night, ``gateway run``, a run started
through the API) holds the ``run`` lease (`gateway.lease`) from start to end, renewed by a heartbeat;
another instance asking meanwhile is told ``RUN_IN_PROGRESS``. Taking the lease also settles the past:
a run still ``EN_COURS`` in the store cannot be going on (its holder would hold the lease), so it is
marked ``INTERROMPU``; and if the previous holder died holding it, its envelope claims are freed
(`gateway.pipeline.sending`).

**The night.** Every instance's scheduler fires the night at its scheduled time ``S`` (`run_night`): the
one that takes the lease serves it, the others find it held and stop. When the night ends, the lease
records ``done_until = S``, so an instance firing late (a restart, a misfire) finds the night done and
does nothing: a night runs once. If its holder dies, the lease expires without ``released_at``: every
instance checks for that (`take_over_abandoned`, the scheduler's ``reprise`` job) and the first to take
the lease finishes the night. Nothing is lost or doubled: pending events are sealed, envelopes sealed
but unanswered are resent with their ``IdLot`` (DUDE answers a repeated ``IdLot`` with its first
receipt), and exports are read again where needed (keys and content de-duplicate).

**The drop folder** (``input_dir``): the night reads every ``*.csv`` there (not hidden files, not other
suffixes: Parcours 3, or whatever copies its exports, writes ``x.csv.part`` or ``.x.csv`` and renames it
when complete) that the store does not list as imported with the same name and SHA-256. A file is
listed once a run has read it to the end; a refused file (a missing column…) is not, and is tried again
each night until it is replaced. Files may be archived or deleted from the folder at any time after. The
default folder (``<data>/entrees``) is made by the first night; a folder given in ``GATEWAY_INPUT_DIR`` that does
not exist is a mistake the night keeps with its run (``P3_DROP_FOLDER_MISSING``), not a quiet night.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from gateway import lease
from gateway.context import Gateway
from gateway.errors import RunInProgress
from gateway.pipeline.run import RunSummary, printable_name, run_batch
from gateway.pipeline.sending import release_claims_of
from gateway.settings import Settings
from gateway.store.models import imported_files_t, runs_t

log = logging.getLogger("gateway.nightly")

RUN_LEASE = "run"
INTERRUPTED = "INTERROMPU"


class RunLease:
    """The ``run`` lease, held for one run: ``with RunLease(gw).acquire() as held: run_batch(…, guard=held.guard)``.

    `acquire` raises `RunInProgress` when another holds it. `done` marks the night served (recorded when
    the lease is released, at the end of the ``with``)."""

    def __init__(self, gw: Gateway, *, night: datetime | None = None):
        self.gw, self.night = gw, night
        self.acquired: lease.Acquired | None = None
        self._heartbeat: lease.Heartbeat | None = None
        self._done = False

    def acquire(self) -> RunLease:
        gw, seconds = self.gw, self.gw.settings.lease_seconds
        self.acquired = lease.acquire(gw.engine, RUN_LEASE, gw.instance_id, seconds=seconds, night=self.night)
        if self.acquired is None:
            current = lease.read(gw.engine, RUN_LEASE)
            who = f"{current.holder}, exécution n° {current.run_id}" if current and current.run_id else (
                current.holder if current else "?")
            raise RunInProgress(f"une exécution est en cours ({who})")
        self._heartbeat = lease.Heartbeat(gw.engine, RUN_LEASE, gw.instance_id, seconds=seconds).start()
        self._settle_the_past()
        return self

    def _settle_the_past(self) -> None:
        gw = self.gw
        with gw.engine.begin() as conn:
            stale = conn.execute(runs_t.update().where(runs_t.c.outcome == "EN_COURS", runs_t.c.dry_run.is_(False))
                                 .values(outcome=INTERRUPTED, finished_at=gw.clock(),
                                         error="interrompue : son instance s'est arrêtée en cours de route")).rowcount
        if stale:
            log.warning("%d run(s) left EN_COURS by a stopped instance marked %s", stale, INTERRUPTED)
        dead = self.acquired.taken_over if self.acquired else None
        if dead is not None:
            freed = release_claims_of(gw, dead.holder)
            log.warning("run lease taken over from %s (run %s, night %s); %d envelope claim(s) freed",
                        dead.holder, dead.run_id, dead.night, freed)

    def started(self, run_id: int) -> None:
        lease.note(self.gw.engine, RUN_LEASE, self.gw.instance_id, run_id=run_id)

    def guard(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.check()

    def done(self) -> None:
        self._done = True

    def release(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self.acquired is not None:
            lease.release(self.gw.engine, RUN_LEASE, self.gw.instance_id,
                          done_until=self.night if self._done else None)
            self.acquired = None

    def __enter__(self) -> RunLease:
        if self.acquired is None:
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- the drop folder ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Export:
    path: Path
    sha256: str | None  # None: unreadable, the run refuses it (see pending_exports)
    byte_size: int | None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_export_name(name: str) -> bool:
    return name.lower().endswith(".csv") and not name.startswith(".")


def pending_exports(gw: Gateway) -> list[Export]:
    """The drop folder's exports not yet imported (by name and content), in name order.

    An export the gateway may not read is one of them (``sha256`` None): the run then refuses it as a file
    (``P3_UNREADABLE``, exit code 1 for ``gateway run``), it is not listed as imported, and the next night tries it
    again. Skipping it with a log line made a badly delivered file look like a quiet night, every night. A
    drop folder that cannot be listed reads as no export (`drop_folder_problem` says why)."""
    folder = gw.settings.runs_input_dir
    if gw.settings.input_dir is None:  # the default, inside the data folder: the gateway's own to make
        folder.mkdir(parents=True, exist_ok=True)
    try:
        paths = sorted(p for p in folder.iterdir() if p.is_file() and is_export_name(p.name))
    except OSError:  # missing or unreadable: drop_folder_problem tells the run
        return []
    with gw.engine.connect() as conn:
        done = set(conn.execute(sa.select(imported_files_t.c.name, imported_files_t.c.sha256)).tuples())
    found = []
    for path in paths:
        try:
            export = Export(path, _sha256(path), path.stat().st_size)
        except FileNotFoundError:  # taken away since the folder was listed: not an export any more
            continue
        except OSError as exc:  # there but unreadable: the run refuses it, which says so
            log.warning("export %s not readable: %s", printable_name(path.name), exc.strerror or type(exc).__name__)
            found.append(Export(path, None, None))
            continue
        if (path.name, export.sha256) not in done:
            found.append(export)
    return found


def drop_folder_problem(settings: Settings) -> dict[str, str] | None:
    """Why the drop folder cannot be read, as a warning of the run (``file``, ``code``, ``message``); None when
    it can. A ``GATEWAY_INPUT_DIR`` that does not exist (a mistyped path) or that the gateway may not list
    would otherwise read nothing, night after night, and look like quiet nights. (The default folder,
    ``<data>/entrees``, is the gateway's own: `pending_exports` makes it.) The night keeps the warning with
    its run and still sends what waits; ``gateway run --now`` refuses. Logged; `drop_folder_check` is the
    same, quietly (``/metrics`` asks at every scrape)."""
    problem = drop_folder_check(settings)
    if problem is not None:
        log.warning("drop folder %s: %s, no export read (GATEWAY_INPUT_DIR)", problem["file"], problem["code"])
    return problem


def drop_folder_check(settings: Settings) -> dict[str, str] | None:
    """`drop_folder_problem` without its log line."""
    folder = settings.runs_input_dir
    if not folder.is_dir():
        if settings.input_dir is None:
            return None
        code, message = "P3_DROP_FOLDER_MISSING", ("ce n'est pas un dossier mais un fichier" if folder.exists()
                                                   else "dossier de dépôt introuvable")
    else:
        try:
            with os.scandir(folder):
                return None
        except OSError as exc:
            code, message = "P3_DROP_FOLDER_UNREADABLE", f"dossier de dépôt illisible ({exc.strerror})"
    return {"file": str(folder), "code": code, "message": f"{message} : aucun export lu (vérifier GATEWAY_INPUT_DIR)"}


def record_imports(gw: Gateway, exports: list[Export], summary: RunSummary) -> int:
    """List the exports ``summary``'s run read to the end (not those it refused)."""
    refused = {error["file"] for error in summary.file_errors}
    rows = [e for e in exports if e.path.name not in refused and e.sha256 is not None
            and printable_name(e.path.name) == e.path.name]  # a name refused (P3_FILE_NAME) is tried again
    now = gw.clock()
    with gw.engine.begin() as conn:
        for e in rows:
            known = conn.execute(sa.select(imported_files_t.c.id).where(
                imported_files_t.c.name == e.path.name, imported_files_t.c.sha256 == e.sha256)).first()
            if known is None:
                conn.execute(imported_files_t.insert().values(name=e.path.name, sha256=e.sha256, byte_size=e.byte_size,
                                                              run_id=summary.run_id, imported_at=now))
    return len(rows)


# --- the night --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NightOutcome:
    """What one firing of the night did: ``RUN`` (with its summary), ``DONE`` (this night was already
    served) or ``HELD`` (another instance is running)."""

    status: str
    night: datetime | None
    summary: RunSummary | None = None
    detail: str = ""


def run_night(gw: Gateway, *, night: datetime | None = None, trigger: str = "schedule",
              wait_for_reports: bool = True) -> NightOutcome:
    """Serve the night scheduled at ``night`` (None: now, ``gateway run --now``) unless it is served
    already or another instance is running: take the lease, read the drop folder, run, list the imports."""
    night = night or gw.clock()
    current = lease.read(gw.engine, RUN_LEASE)
    if current is not None and _served(gw, current.done_until, night):
        return NightOutcome("DONE", night, detail=f"nuit du {night.isoformat()} déjà servie")
    try:
        held = RunLease(gw, night=night).acquire()
    except RunInProgress as exc:
        log.info("night %s: the run lease is held elsewhere (%s)", night.isoformat(), exc.message)
        return NightOutcome("HELD", night, detail=exc.message)
    with held:
        previous = held.acquired.previous if held.acquired else None
        if previous is not None and _served(gw, previous.done_until, night):
            return NightOutcome("DONE", night, detail=f"nuit du {night.isoformat()} déjà servie")
        exports = pending_exports(gw)
        log.info("night %s: %d export(s) to read", night.isoformat(), len(exports))
        problem = drop_folder_problem(gw.settings)
        warnings = [problem] if problem else []
        summary = run_batch(gw, [e.path for e in exports], trigger=trigger, on_started=held.started,
                            guard=held.guard, wait_for_reports=wait_for_reports, warnings=warnings)
        record_imports(gw, exports, summary)
        held.done()
    return NightOutcome("RUN", night, summary)


def _served(gw: Gateway, done_until: datetime | None, night: datetime) -> bool:
    """Whether the night scheduled at ``night`` is served already: a night up to ``done_until`` is, and so is one
    at the same local time as ``done_until``. The second rule is for the autumn's repeated hour: on the night
    summer time ends, a night at 02:00 Europe/Paris fires at 02:00+02:00 and again, an hour later, at
    02:00+01:00 (APScheduler's cron trigger), and that is one night, not two."""
    if done_until is None:
        return False
    if done_until >= night:
        return True
    zone = ZoneInfo(gw.settings.timezone)
    return done_until.astimezone(zone).replace(tzinfo=None) == night.astimezone(zone).replace(tzinfo=None)


def take_over_abandoned(gw: Gateway) -> NightOutcome | None:
    """If the instance serving a night died (its lease expired, never released), finish that night."""
    current = lease.read(gw.engine, RUN_LEASE)
    if current is None or not current.abandoned or current.night is None:
        return None
    if current.done_until is not None and current.done_until >= current.night:
        return None
    if not current.free_at(lease.now(gw.engine)):
        return None
    log.warning("night %s abandoned by %s: taking it over", current.night.isoformat(), current.holder)
    return run_night(gw, night=current.night, trigger="reprise")


def run_exclusive(gw: Gateway, inputs: list[Path], *, trigger: str, dry_run: bool = False, **options) -> RunSummary:
    """`run_batch` holding the run lease (a dry run sends nothing and needs none)."""
    if dry_run:
        return run_batch(gw, inputs, trigger=trigger, dry_run=True, **options)
    with RunLease(gw) as held:
        started = options.pop("on_started", None)

        def on_started(run_id: int) -> None:
            held.started(run_id)
            if started is not None:
                started(run_id)

        return run_batch(gw, inputs, trigger=trigger, on_started=on_started, guard=held.guard, **options)
