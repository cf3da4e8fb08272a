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
not exist is a mistake the night keeps with its run (``P3_DROP_FOLDER_MISSING``), not a quiet night. An export
there that is a symbolic link is refused as a file (``P3_SYMLINK``), wherever it points: the folder is written by
another system, and a link to the gateway's key or to ``/etc/…`` would be read as an export, its lines shown as
rejects (`adapters.parcours3.reader.open_export`, which refuses it as it opens it). A night lists the folder
once (`list_drop_folder`): the same listing says why it cannot be read, and gives the exports.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from adapters.parcours3.reader import open_export
from gateway import lease
from gateway.context import Gateway
from gateway.errors import ExportFileError, RunInProgress, unreadable
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

    def __init__(self, gw: Gateway, *, night: datetime | None = None, correct_mark: bool = False):
        self.gw, self.night = gw, night
        self.acquired: lease.Acquired | None = None
        self._heartbeat: lease.Heartbeat | None = None
        self._done = False
        self._correct_mark = correct_mark  # the served mark is ahead of the clock: set it back (`clock_was_ahead`)

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
                          done_until=self.night if self._done else None, replace=self._correct_mark)
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
    sha256: str | None  # None: refused (``refused``); the run refuses it too, as it opens it
    byte_size: int | None
    refused: str | None = None  # P3_UNREADABLE, P3_SYMLINK, P3_FILE_NAME (`exports_in`)


@dataclass(frozen=True, slots=True)
class DropFolder:
    """One listing of the drop folder: the entries named like exports that are regular files or symbolic
    links (``paths``, in name order), or why it could not be listed (``problem``: ``file``, ``code``,
    ``message``, as a warning of the run)."""

    folder: Path
    paths: tuple[Path, ...] = ()
    problem: dict[str, str] | None = None


def is_export_name(name: str) -> bool:
    return name.lower().endswith(".csv") and not name.startswith(".")


def list_drop_folder(settings: Settings) -> DropFolder:
    """The drop folder, listed once for a night (``gateway run --now`` lists it before it opens the store, to
    refuse a folder it cannot read, and hands the listing to `run_night`).

    A ``GATEWAY_INPUT_DIR`` that does not exist (a mistyped path) or that the gateway may not list would
    otherwise read nothing, night after night, and look like quiet nights: ``problem`` says which. (The
    default folder, ``<data>/entrees``, is the gateway's own: missing, it is a folder the night makes.) Links
    are listed whatever they point to, nothing or a folder included: the night refuses them (``P3_SYMLINK``),
    where skipping them would leave whoever delivered a link to believe it read. Other entries that are not
    regular files (folders, pipes) are not exports."""
    return _listing(settings, entries=True)


def drop_folder_check(settings: Settings) -> dict[str, str] | None:
    """`list_drop_folder`'s ``problem`` without reading the folder's entries (``/metrics`` asks at every scrape)."""
    return _listing(settings, entries=False).problem


def _listing(settings: Settings, *, entries: bool) -> DropFolder:
    folder = settings.runs_input_dir
    try:
        with os.scandir(folder) as found:
            paths = tuple(sorted(Path(e.path) for e in found if is_export_name(e.name)
                                 and (e.is_symlink() or e.is_file(follow_symlinks=False)))) if entries else ()
    except OSError as exc:
        if settings.input_dir is None and isinstance(exc, FileNotFoundError):
            return DropFolder(folder)
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            code, message = "P3_DROP_FOLDER_MISSING", ("ce n'est pas un dossier mais un fichier"
                                                       if os.path.exists(folder) else "dossier de dépôt introuvable")
        else:
            code, message = "P3_DROP_FOLDER_UNREADABLE", f"dossier de dépôt {unreadable(exc)}"
        return DropFolder(folder, problem={"file": str(folder), "code": code,
                                           "message": f"{message} : aucun export lu (vérifier GATEWAY_INPUT_DIR)"})
    return DropFolder(folder, paths)


def _make_own_folder(settings: Settings) -> None:
    """The default drop folder is the gateway's own: the night makes it. (One that ``GATEWAY_INPUT_DIR`` names
    is the integrator's: never made, its absence is said.)"""
    if settings.input_dir is None:
        try:
            settings.runs_input_dir.mkdir(parents=True, exist_ok=True)
        except OSError:  # a file in its place: the listing says so
            pass


def exports_in(listing: DropFolder) -> list[Export]:
    """Each export of ``listing`` with its SHA-256 and size, or refused with the code the run will give it
    (``P3_FILE_NAME``, ``P3_SYMLINK``, ``P3_UNREADABLE``): opened as the run opens it (`open_export`), so that
    a link put in a file's place is refused by both. The run opens the name again: a file renamed over it in
    between is read whole, and the SHA-256 listed as imported is then the earlier file's, so the next night
    reads the new one again (its lines already stored are not stored twice); one replaced while the run
    reads it is refused (`ExportReader`). An export taken away since the listing is not one any more."""
    found = []
    for path in listing.paths:
        if printable_name(path.name) != path.name:  # refused by the run before it is read (P3_FILE_NAME)
            found.append(Export(path, None, None, "P3_FILE_NAME"))
            continue
        try:
            with open_export(path) as stream:
                sha256, size = _digest(stream)
        except ExportFileError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                continue
            found.append(Export(path, None, None, exc.code))
            continue
        except OSError:  # the file failed while it was read (an I/O error): the run will say it
            found.append(Export(path, None, None, "P3_UNREADABLE"))
            continue
        found.append(Export(path, sha256, size))
    return found


def _digest(stream: BinaryIO) -> tuple[str, int]:
    """The SHA-256 of what ``stream`` holds, and its size: both of the bytes read, whatever the name says now."""
    digest, size = hashlib.sha256(), 0
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def imported_exports(engine: sa.Engine) -> set[tuple[str, str]]:
    """The exports read to the end by a run: (name, SHA-256)."""
    with engine.connect() as conn:
        return set(conn.execute(sa.select(imported_files_t.c.name, imported_files_t.c.sha256)).tuples())


def pending_among(exports: list[Export], imported: set[tuple[str, str]]) -> list[Export]:
    """``exports`` a night reads: those not imported by name and content, and those refused (never imported,
    so said each night until they are replaced)."""
    return [e for e in exports if e.sha256 is None or (e.path.name, e.sha256) not in imported]


def pending_exports(gw: Gateway, listing: DropFolder | None = None) -> list[Export]:
    """The drop folder's exports not yet imported (by name and content), in name order; ``listing``: the
    night's (`list_drop_folder`), else the folder is listed here.

    An export the gateway may not read, or a symbolic link, is one of them (``refused``): the run then refuses
    it as a file (``P3_UNREADABLE``, ``P3_SYMLINK``; exit code 1 for ``gateway run``), it is not listed as
    imported, and the next night tries it again. Skipping it with a log line made a badly delivered file look
    like a quiet night, every night. A drop folder that cannot be listed reads as no export (its ``problem``
    says why)."""
    if listing is None:
        _make_own_folder(gw.settings)
        listing = list_drop_folder(gw.settings)
    exports = exports_in(listing)
    for export in exports:
        if export.refused:
            log.warning("export %s refused: %s", printable_name(export.path.name), export.refused)
    return pending_among(exports, imported_exports(gw.engine))


def record_imports(gw: Gateway, exports: list[Export], summary: RunSummary) -> int:
    """List the exports ``summary``'s run read to the end (not those it refused)."""
    refused = {error["file"] for error in summary.file_errors}
    rows = [e for e in exports if e.path.name not in refused and e.sha256 is not None]  # refused: tried again
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
              wait_for_reports: bool = True, listing: DropFolder | None = None) -> NightOutcome:
    """Serve the night scheduled at ``night`` (None: now, ``gateway run --now``) unless it is served
    already or another instance is running: take the lease, read the drop folder, run, list the imports.
    ``listing``: the drop folder as the caller listed it (``gateway run --now``), else it is listed here."""
    night = night or gw.clock()
    current = lease.read(gw.engine, RUN_LEASE)
    ahead = current is not None and clock_was_ahead(gw, current.done_until)
    if ahead:
        log.warning("night %s: the run lease notes nights served up to %s, later than this clock: a clock was ahead "
                    "when it was noted (check NTP on every instance); this night will be served, and the mark set back",
                    night.isoformat(), current.done_until.isoformat())
    if current is not None and _served(gw, current.done_until, night):
        return NightOutcome("DONE", night, detail=f"nuit du {night.isoformat()} déjà servie")
    try:
        held = RunLease(gw, night=night, correct_mark=ahead).acquire()
    except RunInProgress as exc:
        log.info("night %s: the run lease is held elsewhere (%s)", night.isoformat(), exc.message)
        return NightOutcome("HELD", night, detail=exc.message)
    with held:
        previous = held.acquired.previous if held.acquired else None
        if previous is not None and _served(gw, previous.done_until, night):
            return NightOutcome("DONE", night, detail=f"nuit du {night.isoformat()} déjà servie")
        _make_own_folder(gw.settings)
        listing = listing if listing is not None else list_drop_folder(gw.settings)
        exports = pending_exports(gw, listing)
        log.info("night %s: %d export(s) to read", night.isoformat(), len(exports))
        warnings = [listing.problem] if listing.problem else []
        if listing.problem:
            log.warning("drop folder %s: %s, no export read (GATEWAY_INPUT_DIR)", listing.problem["file"],
                        listing.problem["code"])
        summary = run_batch(gw, [e.path for e in exports], trigger=trigger, on_started=held.started,
                            guard=held.guard, wait_for_reports=wait_for_reports, warnings=warnings)
        record_imports(gw, exports, summary)
        held.done()
    return NightOutcome("RUN", night, summary)


def clock_was_ahead(gw: Gateway, done_until: datetime | None) -> bool:
    """Whether the run lease notes a night served later than this instance's clock (beyond `lease.CLOCK_SLACK`): only a
    clock that was ahead when it was noted (a machine started before NTP set it, a virtual machine restored, a
    test under faketime) or one set back since writes that. Taken as true, it made every night until then
    "served": skipped, with one INFO line, and ``gateway run --now`` refused, for as long as the clock was ahead.
    A night served twice costs nothing (exports and events de-duplicate); one skipped is a night not sent."""
    return done_until is not None and done_until > gw.clock() + lease.CLOCK_SLACK


def _served(gw: Gateway, done_until: datetime | None, night: datetime) -> bool:
    """Whether the night scheduled at ``night`` is served already: a night up to ``done_until`` is, and so is one
    at the same local time as ``done_until``. The second rule is for the autumn's repeated hour: on the night
    summer time ends, a night at 02:00 Europe/Paris fires at 02:00+02:00 and again, an hour later, at
    02:00+01:00 (APScheduler's cron trigger), and that is one night, not two. A ``done_until`` ahead of the
    clock is not believed (`clock_was_ahead`)."""
    if done_until is None or clock_was_ahead(gw, done_until):
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
