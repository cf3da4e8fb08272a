"""The night: the drop folder read once per export, a night served once whoever fires it, a night whose
instance died finished by another (issue 5). On SQLite and PostgreSQL, the emulator in-process."""

from __future__ import annotations

import os
import time
import logging
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from gateway import lease
from gateway.nightly import RUN_LEASE, pending_exports, run_night, take_over_abandoned
from gateway.store.models import imported_files_t, runs_t, utcnow
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export

database_url = on_both_backends()

NIGHT_1 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 02:00 in Paris
NIGHT_2 = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)


def drop(gw, name: str, first_id: int, count: int = 3):
    folder = gw.settings.runs_input_dir
    folder.mkdir(parents=True, exist_ok=True)
    return write_export(folder / name, [p3_line(id_evenement=str(first_id + i)) for i in range(count)])


def runs(gw) -> list[tuple]:
    with gw.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(runs_t.c.trigger, runs_t.c.inputs, runs_t.c.outcome)
                                               .order_by(runs_t.c.id))]


def test_each_export_of_the_drop_folder_is_read_by_one_night(gw) -> None:
    drop(gw, "P3_69001_20261127.csv", 1)
    drop(gw, "P3_69001_20261128.csv", 10)
    (gw.settings.runs_input_dir / "P3_69001_20261128.csv.part").write_text("being copied")
    (gw.settings.runs_input_dir / ".P3_69001_20261129.csv").write_text("being copied")

    first = run_night(gw, night=NIGHT_1)

    assert first.status == "RUN" and first.summary.inputs == ["P3_69001_20261127.csv", "P3_69001_20261128.csv"]
    assert first.summary.states == {"ACCEPTE": 6}
    drop(gw, "P3_69001_20261129.csv", 20)
    drop(gw, "P3_69001_20261128.csv", 10, count=4)  # Parcours 3 sent yesterday's file again, one line longer
    second = run_night(gw, night=NIGHT_2)
    assert second.summary.inputs == ["P3_69001_20261128.csv", "P3_69001_20261129.csv"]
    assert second.summary.states == {"ACCEPTE": 4}  # 3 new lines, 1 more in the resent file, its 3 others known
    assert [o for _, _, o in runs(gw)] == ["TERMINE", "TERMINE"]
    with gw.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(imported_files_t)).scalar_one() == 4
    assert pending_exports(gw) == []


def test_a_night_already_served_is_not_run_again(gw) -> None:
    drop(gw, "P3_69001_20261128.csv", 1)
    assert run_night(gw, night=NIGHT_1).status == "RUN"
    again = run_night(gw, night=NIGHT_1)  # another instance's scheduler, or a restart, firing the same night
    assert again.status == "DONE" and again.summary is None
    assert len(runs(gw)) == 1


def test_a_night_noted_served_by_a_clock_that_was_ahead_skips_no_night_after_it(gw, caplog) -> None:
    """A run made with the clock 8 h ahead (a machine started before NTP set it; faketime in the drill that found
    it) noted nights served up to then: every night until then was skipped with one INFO line, and
    ``gateway run --now`` refused as RUN_IN_PROGRESS. Now such a mark is not believed, and is set back."""
    drop(gw, "P3_69001_20261128.csv", 1)
    true_clock = gw.clock
    gw.clock = lambda: true_clock() + timedelta(hours=8)
    assert run_night(gw).status == "RUN"  # gateway run --now, 8 h ahead
    gw.clock = true_clock
    drop(gw, "P3_69001_20261129.csv", 10)
    tonight = true_clock()
    with caplog.at_level(logging.WARNING, logger="gateway.nightly"):
        served = run_night(gw, night=tonight)  # the scheduled night, on the true clock
    assert served.status == "RUN" and served.summary.states == {"ACCEPTE": 3}
    assert "later than this clock" in caplog.text and "check NTP" in caplog.text
    assert lease.read(gw.engine, RUN_LEASE).done_until == tonight  # set back to the night just served
    assert run_night(gw, night=tonight).status == "DONE"  # and a night is still served once


def test_gateway_run_now_on_a_night_served_says_so_not_that_a_run_is_going_on(gw, settings, monkeypatch) -> None:
    """Another instance whose clock is a minute or two ahead served the night: ``--now`` here has nothing to do,
    and it said RUN_IN_PROGRESS, though nothing was running."""
    from typer.testing import CliRunner

    from gateway.cli import app

    drop(gw, "P3_69001_20261128.csv", 1)
    assert run_night(gw, night=utcnow() + timedelta(minutes=2)).status == "RUN"
    monkeypatch.setenv("GATEWAY_INPUT_DIR", str(gw.settings.runs_input_dir))
    if settings.database_url:
        monkeypatch.setenv("GATEWAY_DATABASE_URL", settings.database_url)
    asked = CliRunner().invoke(app, ["run", "--now", "--data-dir", str(settings.data_dir)])
    said = " ".join(asked.stderr.split())
    assert asked.exit_code == 2 and "NIGHT_SERVED" in said and "déjà servie : rien à faire" in said, said
    assert "RUN_IN_PROGRESS" not in said


def test_a_refused_export_is_tried_again_each_night_until_it_is_replaced(gw) -> None:
    folder = gw.settings.runs_input_dir
    folder.mkdir(parents=True)
    (folder / "P3_69001_20261128.csv").write_text("id_evenement;code_ml\r\n1;69001\r\n", encoding="cp1252")
    first = run_night(gw, night=NIGHT_1)
    assert first.summary.outcome == "TERMINE_AVEC_ERREURS" and first.summary.file_errors
    assert [e.path.name for e in pending_exports(gw)] == ["P3_69001_20261128.csv"]
    drop(gw, "P3_69001_20261128.csv", 1)  # the corrected export
    assert run_night(gw, night=NIGHT_2).summary.states == {"ACCEPTE": 3}
    assert pending_exports(gw) == []


def test_an_export_whose_name_cannot_be_stored_or_logged_is_refused_and_the_night_goes_on(gw, caplog) -> None:
    """A name with bytes that are not UTF-8 stopped every night with a traceback (the store takes UTF-8 only),
    leaving the lines already stored unsent and the files after it unread; a newline and an escape sequence
    in a name wrote a forged line in the log."""
    folder = gw.settings.runs_input_dir
    folder.mkdir(parents=True)
    drop(gw, "P3_69001_20261127.csv", 1)
    rows = [p3_line(id_evenement=str(10 + i)) for i in range(3)]
    write_export(folder / os.fsdecode(b"P3_69001_\xff\xfe.csv"), rows)
    forged = "P3_69001_\n2026-11-30 03:00:00,000 ERROR gateway.run: FORGED\x1b[31m.csv"
    write_export(folder / forged, rows)
    drop(gw, "P3_69001_20261128.csv", 20)  # after the others in name order

    night = run_night(gw, night=NIGHT_1)

    summary = night.summary
    assert summary.outcome == "TERMINE_AVEC_ERREURS" and summary.states == {"ACCEPTE": 6}
    assert sorted((e["file"], e["code"]) for e in summary.file_errors) == [
        ("P3_69001_\\n2026-11-30 03:00:00,000 ERROR gateway.run: FORGED\\x1b[31m.csv", "P3_FILE_NAME"),
        ("P3_69001_\\xff\\xfe.csv", "P3_FILE_NAME")]
    told = [r.getMessage() for r in caplog.records if "FORGED" in r.getMessage()]
    assert told and not [m for m in told if "\n" in m or "\x1b" in m]  # the name, escaped, on one line
    assert sorted(e.path.name for e in pending_exports(gw)) == sorted([forged, os.fsdecode(b"P3_69001_\xff\xfe.csv")])


def test_a_night_held_by_another_instance_is_left_to_it(gw) -> None:
    drop(gw, "P3_69001_20261128.csv", 1)
    assert lease.acquire(gw.engine, RUN_LEASE, "autre-machine:4242:abcdef", seconds=600, night=NIGHT_1)
    outcome = run_night(gw, night=NIGHT_1)
    assert outcome.status == "HELD" and "autre-machine" in outcome.detail
    assert runs(gw) == []


def test_the_night_of_an_instance_that_died_is_taken_over_and_finished(gw) -> None:
    drop(gw, "P3_69001_20261128.csv", 1)
    with gw.engine.begin() as conn:  # the other instance started the night, then died
        dead_run = conn.execute(runs_t.insert().values(
            trigger="schedule", dry_run=False, inputs="[]", started_at=utcnow(), outcome="EN_COURS", counts="{}")
            .returning(runs_t.c.id)).scalar_one()
    assert lease.acquire(gw.engine, RUN_LEASE, "autre-machine:4242:abcdef", seconds=0.5, night=NIGHT_1)
    lease.note(gw.engine, RUN_LEASE, "autre-machine:4242:abcdef", run_id=dead_run)
    assert take_over_abandoned(gw) is None  # alive for all we know: its lease runs

    deadline = time.monotonic() + 10
    while not lease.read(gw.engine, RUN_LEASE).free_at(lease.now(gw.engine)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    outcome = take_over_abandoned(gw)

    assert outcome.status == "RUN" and outcome.night == NIGHT_1 and outcome.summary.states == {"ACCEPTE": 3}
    assert [(t, o) for t, _, o in runs(gw)] == [("schedule", "INTERROMPU"), ("reprise", "TERMINE")]
    held = lease.read(gw.engine, RUN_LEASE)
    assert held.done_until == NIGHT_1 and held.released_at is not None
    assert take_over_abandoned(gw) is None and run_night(gw, night=NIGHT_1).status == "DONE"


def test_gateway_run_now_is_refused_while_another_instance_runs(gw, settings, monkeypatch) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    if settings.database_url:
        monkeypatch.setenv("GATEWAY_DATABASE_URL", settings.database_url)
    assert lease.acquire(gw.engine, RUN_LEASE, "autre-machine:4242:abcdef", seconds=600)
    result = CliRunner().invoke(app, ["run", "--now", "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 2 and "RUN_IN_PROGRESS" in result.output and "autre-machine" in result.output
    both = CliRunner().invoke(app, ["run", "--now", "--input", __file__, "--data-dir", str(settings.data_dir)])
    assert both.exit_code == 2 and "--now" in both.output


def test_a_night_without_its_drop_folder_says_so_and_still_runs(gw, settings, caplog, monkeypatch,
                                                                tmp_path) -> None:
    """A mistyped GATEWAY_INPUT_DIR must not read nothing night after night in silence."""
    import json

    from typer.testing import CliRunner

    from gateway.cli import app

    assert run_night(gw, night=NIGHT_1).summary.file_warnings == []  # the default folder is the gateway's own
    assert gw.settings.runs_input_dir.is_dir()

    folder = tmp_path / "depot-mal-orthographie"
    gw.settings = gw.settings.model_copy(update={"input_dir": folder})
    outcome = run_night(gw, night=NIGHT_2)  # the scheduler's night: it still runs (what waits is sent)
    assert outcome.status == "RUN" and outcome.summary.outcome == "TERMINE"
    assert [w["code"] for w in outcome.summary.file_warnings] == ["P3_DROP_FOLDER_MISSING"]
    assert str(folder) in caplog.text and not folder.exists()
    with gw.engine.connect() as conn:  # kept with the run, for the API and whoever reads the runs
        counts = json.loads(conn.execute(sa.select(runs_t.c.counts).order_by(runs_t.c.id.desc())).first()[0])
    assert counts["file_warnings"] == [{"file": str(folder), "code": "P3_DROP_FOLDER_MISSING",
                                        "message": outcome.summary.file_warnings[0]["message"]}]

    monkeypatch.setenv("GATEWAY_INPUT_DIR", str(folder))
    if settings.database_url:
        monkeypatch.setenv("GATEWAY_DATABASE_URL", settings.database_url)
    asked = CliRunner().invoke(app, ["run", "--now", "--data-dir", str(settings.data_dir)])  # asked by hand
    said = " ".join(asked.stderr.split())
    assert asked.exit_code == 2 and "CONFIG" in said and str(folder) in said and "introuvable" in said

    folder.write_text("")  # a file where the folder should be: not "introuvable", which sends one looking for it
    asked = CliRunner().invoke(app, ["run", "--now", "--data-dir", str(settings.data_dir)])
    said = " ".join(asked.stderr.split())
    assert asked.exit_code == 2 and "ce n'est pas un dossier mais un fichier" in said and "introuvable" not in said


def test_the_repeated_hour_when_summer_time_ends_is_one_night_not_two(gw) -> None:
    """On 25 October 2026, 02:00 Europe/Paris happens twice and the cron trigger fires at both: one night runs."""
    from datetime import timedelta

    from gateway.scheduler import cron

    trigger = cron(gw.settings.schedule_night_cron, gw.settings.timezone)
    fires, previous = [], None
    now = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    for _ in range(3):
        previous = now = trigger.get_next_fire_time(previous, now)
        fires.append(now)
    first, again, next_night = fires
    assert again.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=1)  # what APScheduler does

    assert run_night(gw, night=first).status == "RUN"
    repeated = run_night(gw, night=again)
    assert repeated.status == "DONE" and repeated.summary is None
    assert run_night(gw, night=next_night).status == "RUN"  # the next night is a night of its own
    assert len(runs(gw)) == 2


def test_gateway_run_now_just_after_the_scheduled_night_runs(gw) -> None:
    """At 02:30 in Paris, after the 02:00 night: a run asked for now is a run, not "night already served"."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    scheduled = datetime(2026, 12, 1, 2, 0, tzinfo=ZoneInfo(gw.settings.timezone))
    gw.clock = lambda: scheduled + timedelta(minutes=1)  # that night's clock: a mark ahead of it is not believed
    assert run_night(gw, night=scheduled).status == "RUN"
    assert run_night(gw, night=scheduled).status == "DONE"  # the scheduler of another instance, firing too
    assert run_night(gw, night=scheduled.astimezone(UTC) + timedelta(minutes=30)).status == "RUN"


def test_an_export_or_a_drop_folder_the_gateway_may_not_read_is_said_not_skipped(gw, settings, monkeypatch,
                                                                                 tmp_path) -> None:
    """An export left unreadable by whatever delivered it was skipped with a log line, and the night looked
    quiet (exit 0) every night; a folder the gateway may not list ended the run with a traceback. Root reads
    everything, so the refusals are the operating system's, played by ``open`` and ``os.scandir``."""
    import builtins
    import os

    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.codes import EventType

    folder = tmp_path / "depot"
    folder.mkdir()
    write_export(folder / "P3_69001_20261128.csv", [p3_line(EventType.ENT, id_evenement="1")])
    locked = write_export(folder / "P3_69001_20261128_bis.csv", [p3_line(EventType.ENT, id_evenement="2")])
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    gw.settings = gw.settings.model_copy(update={"input_dir": folder, "read_in_subprocess": False})
    outcome = run_night(gw, night=NIGHT_1)
    assert [(e["file"], e["code"]) for e in outcome.summary.file_errors] == [(locked.name, "P3_UNREADABLE")]
    said = outcome.summary.file_errors[0]["message"]  # and the exit code of gateway run is 1
    assert said.endswith(f"{locked}: fichier illisible : permission refusée à l'utilisateur du service (droits de ce "
                         "chemin, ou d'un dossier au-dessus)."), said  # in French, as the keys': it was English
    assert outcome.summary.states == {"ACCEPTE": 1}  # the readable export went on
    with gw.engine.connect() as conn:
        imported = conn.execute(sa.select(imported_files_t.c.name)).scalars().all()
    assert imported == ["P3_69001_20261128.csv"]  # the other is tried again the next night
    monkeypatch.setattr(builtins, "open", real_open)
    assert run_night(gw, night=NIGHT_2).summary.states == {"ACCEPTE": 1}  # readable now: read, once

    real_scandir = os.scandir

    def refusing_scandir(path="."):
        if str(path) == str(folder):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    real_iterdir = type(folder).iterdir

    def refusing_iterdir(path):
        if path == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real_iterdir(path)

    monkeypatch.setattr(os, "scandir", refusing_scandir)
    monkeypatch.setattr(type(folder), "iterdir", refusing_iterdir)
    later = run_night(gw, night=NIGHT_2 + (NIGHT_2 - NIGHT_1))
    assert later.status == "RUN" and [w["code"] for w in later.summary.file_warnings] == ["P3_DROP_FOLDER_UNREADABLE"]
    monkeypatch.setenv("GATEWAY_INPUT_DIR", str(folder))
    if settings.database_url:
        monkeypatch.setenv("GATEWAY_DATABASE_URL", settings.database_url)
    asked = CliRunner().invoke(app, ["run", "--now", "--data-dir", str(settings.data_dir)])
    said = " ".join(asked.stderr.split())
    assert asked.exit_code == 2 and "CONFIG" in said and str(folder) in said
    assert "illisible : permission refusée" in said and "Permission denied" not in said
