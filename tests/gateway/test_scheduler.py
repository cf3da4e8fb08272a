"""The schedule inside `gateway serve`: jobs kept in the store, a night missed while the service was down
run once on start, two schedulers on one store making one run (issue 5). Real time, bounded waits."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adapters.dude.emulator.app import mock_transport
from gateway.context import Gateway
from gateway.errors import ConfigurationError
from gateway.nightly import run_night
from gateway.pipeline import pause
from gateway.scheduler import NIGHT, GatewayScheduler, cron, job_specs
from gateway.store.models import runs_t
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export

database_url = on_both_backends()
PARIS = ZoneInfo("Europe/Paris")


def wait_until(condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not met within {timeout} s"
        time.sleep(0.05)


def night_in(seconds: float, *instances: Gateway) -> datetime:
    """Sets the instances' night to a 6-field cron (seconds first) firing once a day, ``seconds`` from now, and
    gives that time. Called just before the schedulers are made, not before the instances are opened: on a
    loaded CI machine opening them took longer than the lead, and the night went to the next day."""
    at = (datetime.now(PARIS) + timedelta(seconds=seconds)).replace(microsecond=0)
    for gw in instances:
        gw.settings = gw.settings.model_copy(update={"schedule_night_cron": f"{at.second} {at.minute} {at.hour} * * *"})
    return at


def instance(settings, emulator, **updates) -> Gateway:
    """One gateway instance (its own engine and name) on the shared store, DUDE in-process."""
    return Gateway.open(settings.model_copy(update={"dude_url": "http://dude.test/dude/v1", **updates}),
                        transport=mock_transport(emulator), sleep=lambda s: None)


def drop_export(settings) -> None:
    folder = settings.runs_input_dir
    folder.mkdir(parents=True, exist_ok=True)
    write_export(folder / "P3_69001_20261128.csv", [p3_line(id_evenement=str(i)) for i in range(5)])


def runs(gw) -> list[tuple]:
    with gw.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(runs_t.c.trigger, runs_t.c.outcome).order_by(runs_t.c.id))]


def night_events(sched: GatewayScheduler) -> list:
    seen: list = []
    sched.scheduler.add_listener(lambda e: seen.append(e) if e.job_id == NIGHT else None,
                                 EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    return seen


def test_crontab_and_seconds_first_and_nonsense() -> None:
    assert cron("0 2 * * *", "Europe/Paris").get_next_fire_time(None, datetime(2026, 11, 28, 3, tzinfo=PARIS)) \
        == datetime(2026, 11, 29, 2, tzinfo=PARIS)
    assert cron("30 0 2 * * *", "Europe/Paris").get_next_fire_time(None, datetime(2026, 11, 28, 3, tzinfo=PARIS)) \
        == datetime(2026, 11, 29, 2, 0, 30, tzinfo=PARIS)
    with pytest.raises(ConfigurationError):
        cron("every night", "Europe/Paris")
    with pytest.raises(ConfigurationError):
        cron("0 25 * * *", "Europe/Paris")


def test_the_night_missed_while_the_service_was_down_runs_once_on_start(settings, emulator, dev_keys) -> None:
    drop_export(settings)
    first = instance(settings, emulator)
    at = night_in(3, first)
    sched = GatewayScheduler(first)
    sched.start()  # the service runs, the night is stored for `at`…
    assert {j.id: j.next_run_at for j in sched.jobs()}[NIGHT] == at
    sched.shutdown()  # …and stops before it
    first.close()
    wait_until(lambda: datetime.now(PARIS) > at + timedelta(seconds=1), what="the scheduled time passes")

    restarted = instance(settings, emulator, schedule_night_cron=first.settings.schedule_night_cron)
    sched = GatewayScheduler(restarted)
    seen = night_events(sched)
    sched.start()
    wait_until(lambda: any(e.code == EVENT_JOB_EXECUTED for e in seen), what="the missed night runs")
    sched.shutdown()
    assert [e.retval for e in seen] == ["RUN"] and seen[0].scheduled_run_time == at
    assert runs(restarted) == [("schedule", "TERMINE")]

    again = GatewayScheduler(restarted)  # and a second restart does not run it again
    seen = night_events(again)
    again.start()
    assert {j.id: j.next_run_at for j in again.jobs()}[NIGHT] == at + timedelta(days=1)
    again.shutdown()
    assert seen == [] and runs(restarted) == [("schedule", "TERMINE")]
    restarted.close()


def test_two_schedulers_started_together_make_one_run(settings, emulator, dev_keys) -> None:
    drop_export(settings)
    instances = [instance(settings, emulator) for _ in range(2)]
    night_in(2, *instances)
    schedulers = [GatewayScheduler(gw) for gw in instances]
    seen = [night_events(s) for s in schedulers]
    barrier = threading.Barrier(2)
    starters = [threading.Thread(target=lambda s=s: (barrier.wait(), s.start())) for s in schedulers]
    for t in starters:
        t.start()
    for t in starters:
        t.join()

    wait_until(lambda: any(e.code == EVENT_JOB_EXECUTED and e.retval == "RUN" for s in seen for e in s),
               what="the night runs")
    time.sleep(1.0)  # let the other scheduler act on the same time, if it does
    for s in schedulers:
        s.shutdown()
    outcomes = sorted(e.retval for s in seen for e in s)
    assert outcomes in (["RUN"], ["DONE", "RUN"], ["HELD", "RUN"])
    assert runs(instances[0]) == [("schedule", "TERMINE")]
    assert emulator.ledger_summary()["lots_processed_more_than_once"] == []
    for gw in instances:
        gw.close()


def test_instances_firing_the_same_night_at_once_run_it_once(settings, emulator, dev_keys) -> None:
    drop_export(settings)
    instances = [instance(settings, emulator) for _ in range(3)]
    night = datetime(2026, 11, 28, 2, tzinfo=PARIS)
    barrier, outcomes = threading.Barrier(3), []

    def fire(gw) -> None:
        barrier.wait()
        outcomes.append(run_night(gw, night=night).status)

    threads = [threading.Thread(target=fire, args=(gw,)) for gw in instances]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes.count("RUN") == 1 and set(outcomes) <= {"RUN", "HELD", "DONE"}
    assert runs(instances[0]) == [("schedule", "TERMINE")]
    for gw in instances:
        gw.close()


def test_a_stored_job_is_kept_and_a_changed_one_replaced(settings, emulator, dev_keys) -> None:
    gw = instance(settings, emulator)
    sched = GatewayScheduler(gw)
    sched.start()
    stored = {j.id: j for j in sched.jobs()}
    sched.shutdown()
    assert set(stored) == {s.id for s in job_specs(gw.settings)} and all(j.stored for j in stored.values())

    same = GatewayScheduler(gw)
    same.start()
    assert {j.id: j.next_run_at for j in same.jobs()} == {i: j.next_run_at for i, j in stored.items()}
    same.shutdown()

    changed = GatewayScheduler(Gateway(settings=gw.settings.model_copy(update={"schedule_night_cron": "15 3 * * *"}),
                                       engine=gw.engine))
    changed.start()
    night = {j.id: j for j in changed.jobs()}[NIGHT]
    changed.shutdown()
    assert "15 3 * * *" in night.name and (night.next_run_at.hour, night.next_run_at.minute) == (3, 15)
    gw.close()


def test_serve_runs_the_schedule_for_as_long_as_the_api_and_schedule_show_lists_it(settings, emulator, dev_keys,
                                                                                    monkeypatch) -> None:
    from gateway.api.main import create_app
    from gateway.cli import app as cli

    gw = instance(settings, emulator)
    sched = GatewayScheduler(gw)
    with TestClient(create_app(gw, scheduler=sched)) as client:
        assert client.get("/healthz").status_code == 200
        assert sched.scheduler.running
    assert not sched.scheduler.running
    with gw.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM apscheduler_jobs")).scalar_one() == 5
    gw.close()

    if settings.database_url:
        monkeypatch.setenv("GATEWAY_DATABASE_URL", settings.database_url)
    shown = CliRunner().invoke(cli, ["schedule", "show", "--data-dir", str(settings.data_dir), "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"id": "nuit"' in shown.output and '"stored": true' in shown.output and '"stored": false' not in shown.output


@pytest.mark.parametrize("paused", [False, True], ids=["sending", "paused"])
def test_each_scheduled_night_leaves_one_log_line_saying_what_it_did(settings, emulator, dev_keys, caplog,
                                                                     paused) -> None:
    """Run as a service (`gateway serve`, no ``-v``), a night logged nothing at all: no start, no end, no
    counts. Now one line, on its own logger (``gateway.night``, which ``serve`` shows), with counts and codes;
    a warning while sending is paused, so that a pause someone forgot to lift shows every night."""
    drop_export(settings)
    (settings.runs_input_dir / "P3_69002_20261128.csv").write_text("id_evenement;code_ml\r\n1;69002\r\n")
    gw = instance(settings, emulator)
    if paused:
        pause.pause(gw.engine, by="cli:exploitant", reason="maintenance du DUDE", now=gw.clock())
    at = night_in(2, gw)
    sched = GatewayScheduler(gw)
    seen = night_events(sched)
    with caplog.at_level(logging.INFO, logger="gateway.night"):
        sched.start()
        wait_until(lambda: any(e.code == EVENT_JOB_EXECUTED for e in seen), what="the night runs")
        sched.shutdown()
    gw.close()
    [record] = [r for r in caplog.records if r.name == "gateway.night"]
    line = record.getMessage()
    if not paused:
        assert record.levelno == logging.INFO and line.startswith(f"night {at.date()}") and line.endswith(
            ": run 1 TERMINE_AVEC_ERREURS: ACCEPTE 5; 1 export(s) refused (P3_COLUMN_MISSING)"), line
    else:
        assert record.levelno == logging.WARNING and ": run 1 TERMINE_AVEC_ERREURS: ENVOYE 5; " in line, line
        assert line.endswith(": nothing posted, 1 sealed envelope(s) wait for `gateway sending resume`"), line


def test_schedule_show_gives_the_run_lease_in_the_zone_of_the_jobs(settings, emulator, dev_keys, monkeypatch) -> None:
    """The jobs' times were in Europe/Paris and the lease's, on the line below, in UTC."""
    from gateway.cli import app as cli

    drop_export(settings)
    gw = instance(settings, emulator)
    run_night(gw, night=datetime(2026, 11, 28, 1, 0, tzinfo=UTC))  # 02:00 in Paris
    gw.close()
    if settings.database_url:
        monkeypatch.setenv("GATEWAY_DATABASE_URL", settings.database_url)
    shown = CliRunner().invoke(cli, ["schedule", "show", "--data-dir", str(settings.data_dir)])
    said = " ".join(shown.stdout.split())
    assert "nuit servie jusqu'au 2026-11-28 02:00 CET." in said and "UTC" not in said, said


def test_a_take_over_running_long_skips_its_ticks_without_a_warning_each(settings, emulator, dev_keys, caplog,
                                                                         monkeypatch) -> None:
    """A take-over runs a whole night while its job ticks every ``lease_seconds / 2``: each tick is skipped
    (one at a time), and used to log a warning each, burying the night's own lines. The skips are silent now;
    a night still running when the next night is due stays a warning."""
    from apscheduler.events import EVENT_JOB_MAX_INSTANCES

    import gateway.nightly
    from gateway.scheduler import TAKEOVER

    release = threading.Event()
    monkeypatch.setattr(gateway.nightly, "take_over_abandoned", lambda gw: release.wait(20) and None)
    gw = instance(settings, emulator, lease_seconds=2.0)
    sched = GatewayScheduler(gw)
    skipped: list = []
    sched.scheduler.add_listener(lambda e: skipped.append(e) if e.job_id == TAKEOVER else None,
                                 EVENT_JOB_MAX_INSTANCES)
    with caplog.at_level(logging.WARNING, logger="apscheduler"):
        sched.start()
        wait_until(lambda: len(skipped) >= 2, what="two ticks skipped while the take-over runs")
        release.set()
        sched.shutdown()
    gw.close()
    assert not [r for r in caplog.records if "maximum number of running instances" in r.getMessage()]

    night = logging.LogRecord("apscheduler.scheduler", logging.WARNING, __file__, 0,
                              'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
                              (type("Job", (), {"id": NIGHT})(), 1), None)
    assert logging.getLogger("apscheduler.scheduler").filter(night)
