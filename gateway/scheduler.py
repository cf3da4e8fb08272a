"""The schedule inside ``gateway serve`` (APScheduler 3; brief §2: "a scheduler pushes the nightly batch";
issue 5): the night, report polling, taking over a night whose instance died, the retention purge, and
the certificate check.

**Jobs persist in the gateway's own database** (APScheduler's ``SQLAlchemyJobStore`` on the store's
engine, table ``apscheduler_jobs`` made by the migrations), so a restart knows when each job last ran:
a night missed while the service was down is run once on start if it is at most
``schedule_misfire_grace_seconds`` late (``coalesce``: several missed nights make one run), never twice.
``max_instances=1``: a job never overlaps itself within an instance.

**Several instances share the store, and so the jobs.** APScheduler 3 does not coordinate schedulers
sharing a job store; the gateway does not need it to: two instances firing the same night both call
`gateway.nightly.run_night`, whose lease lets one serve it and records it as served, so the other
finds it held or done and does nothing. Each instance merges the jobs it wants into the store on start
(`_sync`): a job already stored with the same definition is kept as it is — keeping its next run time
is what lets a missed night be seen — and one whose definition changed (a new cron in the settings) is
replaced.

**Jobs hold no object.** A stored job names a module-level function (``gateway.scheduler:night_job``)
and no arguments, since another instance may run it; the executor of each scheduler tells the function
which `Gateway` it runs for and at which scheduled time (`_GatewayExecutor`), the night's identity.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import ConflictingIdError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from gateway.codes import EnvelopeState
from gateway.context import Gateway
from gateway.errors import ConfigurationError
from gateway.settings import Settings

log = logging.getLogger("gateway.scheduler")
#: One line per scheduled night, what it did (counts by state, exports refused, envelopes without receipt):
#: logged at INFO and shown by ``gateway serve`` without ``-v`` (`gateway.cli.server`), where everything
#: else below WARNING stays quiet. It names counts and codes, never an event or a person.
night_log = logging.getLogger("gateway.night")

NIGHT, REPORTS, TAKEOVER, PURGE, CERTIFICATES = "nuit", "comptes-rendus", "reprise", "purge", "certificats"


def cron(expression: str, timezone: str) -> CronTrigger:
    """A crontab expression (5 fields), or 6 fields with the seconds first."""
    fields = expression.split()
    try:
        if len(fields) == 5:
            return CronTrigger.from_crontab(expression, timezone=ZoneInfo(timezone))
        if len(fields) == 6:
            second, minute, hour, day, month, dow = fields
            return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=dow,
                               timezone=ZoneInfo(timezone))
    except (ValueError, KeyError) as exc:
        raise ConfigurationError(f"invalid schedule {expression!r}: {exc}") from exc
    raise ConfigurationError(f"invalid schedule {expression!r}: expected 5 fields (crontab) or 6 (seconds first)")


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job as the settings want it; ``name`` holds its definition, so a changed one is seen."""

    id: str
    func: str
    name: str
    trigger: BaseTrigger
    misfire_grace_seconds: int  # APScheduler wants whole seconds
    what: str


def job_specs(settings: Settings) -> list[JobSpec]:
    tz = settings.timezone
    poll = settings.schedule_poll_seconds
    takeover = max(1.0, settings.lease_seconds / 2)
    day = 24 * 3600
    grace = max(1, round(settings.schedule_misfire_grace_seconds))
    return [
        JobSpec(NIGHT, f"{__name__}:night_job", f"{NIGHT} · {settings.schedule_night_cron} ({tz})",
                cron(settings.schedule_night_cron, tz), grace,
                "la nuit : exports du dossier de dépôt, envoi, comptes rendus"),
        JobSpec(REPORTS, f"{__name__}:reports_job", f"{REPORTS} · toutes les {poll:g} s",
                IntervalTrigger(seconds=poll, timezone=ZoneInfo(tz)), max(1, round(poll)),
                "relève des comptes rendus attendus ; SANS_REPONSE après le délai"),
        JobSpec(TAKEOVER, f"{__name__}:takeover_job", f"{TAKEOVER} · toutes les {takeover:g} s",
                IntervalTrigger(seconds=takeover, timezone=ZoneInfo(tz)), max(1, round(takeover)),
                "reprise d'une nuit dont l'instance s'est arrêtée"),
        JobSpec(PURGE, f"{__name__}:purge_job", f"{PURGE} · {settings.schedule_purge_cron} ({tz}), "
                f"{settings.retention_days} j", cron(settings.schedule_purge_cron, tz), day,
                "purge des documents et données personnelles au-delà de la rétention"),
        JobSpec(CERTIFICATES, f"{__name__}:certificates_job", f"{CERTIFICATES} · "
                f"{settings.schedule_certificates_cron} ({tz}), alerte à {settings.certificate_warning_days} j",
                cron(settings.schedule_certificates_cron, tz), day,
                "échéance des certificats (passerelle, DUDE)"),
    ]


# --- the jobs: module-level functions, found by name in the shared job store ------------------

_running = threading.local()


def _current() -> tuple[Gateway, datetime | None]:
    gw = getattr(_running, "gateway", None)
    if gw is None:
        raise ConfigurationError("a scheduled job ran outside a gateway scheduler")
    return gw, getattr(_running, "scheduled_at", None)


def night_job() -> str:
    from gateway.nightly import run_night

    gw, scheduled_at = _current()
    outcome = run_night(gw, night=scheduled_at, trigger="schedule")
    if outcome.summary is not None:
        summary = outcome.summary
        states = ", ".join(f"{state} {count}" for state, count in sorted(summary.states.items())) or "nothing new"
        said = [f"night {outcome.night}: run {summary.run_id} {summary.outcome}: {states}"]
        if summary.file_errors:
            said.append(f"{len(summary.file_errors)} export(s) refused "
                        f"({', '.join(sorted({e['code'] for e in summary.file_errors}))})")
        if summary.file_warnings:
            said.append(", ".join(sorted({w["code"] for w in summary.file_warnings})))
        if summary.undelivered:
            said.append(f"{summary.undelivered} envelope(s) without DUDE's receipt, kept to go again")
        if summary.sending_paused:  # the night's one line: a pause someone forgot to lift shows every night
            said.append(f"sending paused since {summary.sending_paused.get('changed_at')}: nothing posted, "
                        f"{summary.sending.get('scelles_non_envoyes', 0)} sealed envelope(s) wait for "
                        "`gateway sending resume`")
        (night_log.warning if summary.sending_paused else night_log.info)("; ".join(said))
    else:
        night_log.info("night %s: %s (%s)", outcome.night, outcome.status, outcome.detail)
    return outcome.status


def reports_job() -> int:
    """Send what waits, then poll the reports that are due.

    Sending here is what makes a lifted pause (or DUDE coming back) take effect between two nights:
    envelopes sealed while sending was paused, or left unanswered, go out at the next tick. Claims
    make this safe beside a run or another instance (`gateway.pipeline.sending`); an envelope still
    in its back-off (``next_attempt_at`` ahead) waits for a later tick.
    """
    from gateway.pipeline.outage import Outage
    from gateway.pipeline.pause import is_paused
    from gateway.pipeline.reconcile import poll_reports
    from gateway.pipeline.sending import due_for_sending, send_waiting

    gw, _ = _current()
    outage = Outage.of(gw)  # DUDE found down by sending: no poll either
    if not is_paused(gw.engine) and due_for_sending(gw):
        stats = send_waiting(gw, outage=outage, due_only=True)
        if stats.sent:  # DUDE answered (back after an outage): shown without -v, as the night's line is
            states = ", ".join(f"{state} {count}" for state, count in sorted(stats.states.items()))
            answered = any(state != EnvelopeState.ENVOYE.value for state in stats.states)
            (night_log if answered else log).info(
                "waiting envelope(s) posted by the schedule: %d, now %s%s", stats.sent, states,
                f"; {stats.deferred} not posted, DUDE unreachable" if stats.deferred else "")
    return len(poll_reports(gw, outage=outage))


def takeover_job() -> str | None:
    from gateway.nightly import take_over_abandoned

    gw, _ = _current()
    outcome = take_over_abandoned(gw)
    return outcome.status if outcome else None


def purge_job() -> dict:
    from gateway.purge import purge_with_lease

    gw, _ = _current()
    return purge_with_lease(gw)


def certificates_job() -> int:
    from gateway.certificates import check_certificates, log_expiring

    gw, _ = _current()
    return log_expiring(check_certificates(gw))


class _GatewayExecutor(ThreadPoolExecutor):
    """APScheduler's thread pool, telling each job which gateway it runs for and when it was due."""

    def __init__(self, gw: Gateway, max_workers: int = 4):
        super().__init__(max_workers)
        self._gw = gw

    def _do_submit_job(self, job, run_times):
        gw = self._gw

        def run(*args):
            _running.gateway, _running.scheduled_at = gw, run_times[-1]
            try:
                return run_job(*args)
            finally:
                _running.gateway = _running.scheduled_at = None

        def done(future):
            exc = future.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        self._pool.submit(run, job, job._jobstore_alias, run_times, self._logger.name).add_done_callback(done)


class _QuietOverlap(logging.Filter):
    """APScheduler warns each time a job's tick finds the job still running (``max_instances=1``). For the
    jobs that tick every few seconds or minutes, that is expected whenever one tick's work lasts longer: a
    take-over running a whole night skipped its next ticks with a warning every ``lease_seconds / 2``,
    burying the night's own lines in the journal. Those are dropped (the tick is skipped all the same); a
    night still running when the next one is due stays a warning."""

    QUIET = frozenset({REPORTS, TAKEOVER})

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith('Execution of job "%s" skipped: maximum number of running'):
            return True
        job = record.args[0] if isinstance(record.args, tuple) and record.args else None
        return getattr(job, "id", None) not in self.QUIET


_apscheduler_log = logging.getLogger("apscheduler.scheduler")
_apscheduler_log.addFilter(_QuietOverlap())


class _StoreJobs(SQLAlchemyJobStore):
    """The job store on the gateway's engine, which it must not dispose of when the scheduler stops."""

    def shutdown(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class JobView:
    id: str
    name: str
    what: str
    next_run_at: datetime | None
    stored: bool


class GatewayScheduler:
    """``start()`` in the API's lifespan, ``shutdown()`` at its end (`gateway.api.main`)."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        self.specs = job_specs(gw.settings)
        self.scheduler = BackgroundScheduler(
            jobstores={"default": _StoreJobs(engine=gw.engine)},
            executors={"default": _GatewayExecutor(gw)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=ZoneInfo(gw.settings.timezone), logger=_apscheduler_log)

    def start(self) -> None:
        self.scheduler.start(paused=True)
        self._sync()
        self.scheduler.resume()
        for view in self.jobs():
            log.info("job %s: next run %s", view.name, view.next_run_at)

    def _sync(self) -> None:
        wanted = {spec.id for spec in self.specs}
        for job in self.scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
        for spec in self.specs:
            stored = self.scheduler.get_job(spec.id)
            unchanged = stored is not None and (stored.name, stored.misfire_grace_time) == (
                spec.name, spec.misfire_grace_seconds)
            if unchanged:
                continue  # kept with its next run time: a night missed while down is seen as missed
            try:
                self.scheduler.add_job(spec.func, trigger=spec.trigger, id=spec.id, name=spec.name,
                                       misfire_grace_time=spec.misfire_grace_seconds,
                                       replace_existing=stored is not None)
            except ConflictingIdError:  # another instance stored it at the same moment
                pass

    def jobs(self) -> list[JobView]:
        stored = {job.id: job for job in self.scheduler.get_jobs()}
        views = []
        for spec in self.specs:
            job = stored.get(spec.id)
            if job is not None and job.name == spec.name:
                views.append(JobView(spec.id, spec.name, spec.what, job.next_run_time, True))
            else:
                now = datetime.now(ZoneInfo(self.gw.settings.timezone))
                views.append(JobView(spec.id, spec.name, spec.what, spec.trigger.get_next_fire_time(None, now), False))
        return views

    def shutdown(self, wait: bool = True) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)


def stored_jobs(gw: Gateway) -> list[JobView]:
    """The jobs as the store holds them (or as `gateway serve` would add them), without running any."""
    sched = GatewayScheduler(gw)
    sched.scheduler.start(paused=True)
    try:
        return sched.jobs()
    finally:
        sched.shutdown(wait=False)


def run_job_now(gw: Gateway, job: Callable[[], object], *, scheduled_at: datetime | None = None) -> object:
    """Run a job function as the scheduler would (``gateway run --now`` uses `gateway.nightly` directly)."""
    _running.gateway, _running.scheduled_at = gw, scheduled_at
    try:
        return job()
    finally:
        _running.gateway = _running.scheduled_at = None

