"""The switch that pauses all sending (brief §5): a paused run reads and seals but posts nothing, says so, and
the next run after the switch is turned back sends what waited, with the same IdLots."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from adapters.dude.emulator.app import mock_transport
from gateway.cli import app
from gateway.pipeline import dispatch, pause, reconcile
from gateway.pipeline.run import run_batch
from gateway.store.db import create_schema, make_engine
from gateway.store.models import audit_t, envelopes_t
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export
from tests.gateway.test_reconcile import snapshot

#: Every test here runs on SQLite and on PostgreSQL (tests/backends.py).
database_url = on_both_backends()


def night(tmp_path: Path, n: int = 120) -> Path:
    return write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement=str(i)) for i in range(n)])


def test_a_paused_run_reads_and_seals_but_sends_nothing_and_says_so(gw, emulator, tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    pause.pause(gw.engine, by="cli:exploitant", reason="maintenance du DUDE", now=gw.clock())

    summary = run_batch(gw, [night(tmp_path)])

    assert emulator.ledger_summary()["lots"] == 0  # nothing posted
    assert summary.states == {"ENVOYE": 120}  # read, checked, sealed in envelopes waiting to go
    assert summary.sending["scelles_non_envoyes"] == 3 and summary.sending.get("envoyes", 0) == 0
    assert summary.sending_paused["paused"] and summary.sending_paused["reason"] == "maintenance du DUDE"
    assert summary.as_dict()["sending_paused"]["changed_by"] == "cli:exploitant"
    with gw.engine.connect() as conn:
        assert set(conn.execute(sa.select(envelopes_t.c.state)).scalars()) == {"SIGNE"}
        sealed = set(conn.execute(sa.select(envelopes_t.c.id)).scalars())
    assert "envoi suspendu" in caplog.text and "nothing is sent" in caplog.text

    pause.resume(gw.engine, by="cli:exploitant", now=gw.clock())
    resumed = run_batch(gw, [night(tmp_path)])  # the same export again: nothing new, the waiting envelopes go
    assert resumed.sending_paused is None and resumed.sending["reprises"] == 3
    assert {state for _, _, state, _ in snapshot(gw)[0]} == {"ACCEPTE"}
    assert {i for i, _ in snapshot(gw)[1]} == sealed  # sent as sealed, same IdLots
    assert emulator.ledger_summary()["lots"] == 3
    from rich.console import Console

    from gateway.cli.report import render_summary

    shown = Console(record=True, width=200)
    render_summary(resumed, shown)  # its events counted in the paused run: the resent envelopes are said
    assert "Lots repris : 3" in shown.export_text()


class PauseOnFirstPost(httpx.BaseTransport):
    """An operator pauses sending while the first envelope is on its way.

    The posts go through one at a time: the pause is written in the store (which may have to wait for
    the run's write lock) before any other post gets through. Without this, on a loaded machine, the
    other sender thread could post its envelope and the next one before the pause was written, and the
    test would be measuring SQLite's lock race rather than what a written pause does."""

    def __init__(self, inner: httpx.BaseTransport, gw) -> None:
        self.inner, self.gw, self.posts = inner, gw, 0
        self._one_at_a_time = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return self.inner.handle_request(request)
        with self._one_at_a_time:
            self.posts += 1
            if self.posts == 1:
                pause.pause(self.gw.engine, by="api:admin", reason="incident", now=self.gw.clock())
            return self.inner.handle_request(request)


def test_a_pause_during_a_run_holds_from_the_next_post_on(gw, emulator, tmp_path) -> None:
    gw.transport, gw._client = PauseOnFirstPost(mock_transport(emulator), gw), None  # before its first use
    summary = run_batch(gw, [night(tmp_path)])
    posted = gw.transport.posts
    assert posted < 3 and summary.sending["suspendus"] == 3 - posted
    assert emulator.ledger_summary()["lots"] == posted
    assert len(dispatch.unanswered_envelopes(gw)) == 3 - posted

    pause.resume(gw.engine, by="api:admin", now=gw.clock())
    run_batch(gw, [])
    assert {state for _, _, state, _ in snapshot(gw)[0]} == {"ACCEPTE"}
    ledger = emulator.ledger_summary()
    assert ledger["lots"] == 3 and ledger["lots_processed_more_than_once"] == []


def test_transmit_posts_nothing_while_paused(gw, emulator, tmp_path) -> None:
    from adapters.parcours3.mapping import parse_export
    from gateway.pipeline.ingest import ingest
    from gateway.preflight import PreflightConfig

    ingest(gw.engine, parse_export(night(tmp_path, 3), PreflightConfig.from_settings(gw.settings)), run_id=None,
           now=gw.clock())
    (envelope_id,) = dispatch.seal_all(gw, run_id=None)
    pause.pause(gw.engine, by="test", reason="essai", now=gw.clock())
    result = dispatch.transmit(gw, envelope_id)
    assert result.paused and result.state == "SIGNE" and result.attempts == 0
    assert "SENDING_PAUSED" in result.error
    assert emulator.ledger_summary()["lots"] == 0


def test_the_switch_is_shared_audited_and_needs_a_reason(gw) -> None:
    assert pause.current(gw.engine) == pause.SendingState(paused=False)
    from gateway.errors import RequestRejected

    with pytest.raises(RequestRejected):
        pause.pause(gw.engine, by="test", reason="  ", now=gw.clock())
    pause.pause(gw.engine, by="cli:a", reason="pourquoi pas", now=gw.clock())
    pause.pause(gw.engine, by="cli:b", reason="encore", now=gw.clock())  # pausing twice is harmless
    state = pause.current(gw.engine)
    assert state.paused and state.changed_by == "cli:b" and state.reason == "encore"
    pause.resume(gw.engine, by="cli:a", now=gw.clock())
    assert not pause.is_paused(gw.engine)
    with gw.engine.connect() as conn:
        actions = conn.execute(sa.select(audit_t.c.action, audit_t.c.actor).order_by(audit_t.c.id)).all()
    assert [tuple(a) for a in actions] == [("SENDING_PAUSE", "cli:a"), ("SENDING_PAUSE", "cli:b"),
                                           ("SENDING_RESUME", "cli:a")]


def test_gateway_sending_pause_resume_status(settings, tmp_path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(settings.data_dir)]
    env = {"GATEWAY_DATABASE_URL": settings.database_url} if settings.database_url else {}
    if not settings.database_url:  # no store in that folder yet: said, and none made on the spot
        missing = runner.invoke(app, ["sending", "status", *data], env=env)
        assert missing.exit_code == 2 and "STORE_MISSING" in missing.stderr
        assert not (settings.data_dir / "gateway.db").exists()
    engine = make_engine(settings.db_url)
    create_schema(engine)  # the store a first night would have made
    engine.dispose()
    status = runner.invoke(app, ["sending", "status", *data, "--json"], env=env)
    assert status.exit_code == 0 and '"paused": false' in status.stdout
    refused = runner.invoke(app, ["sending", "pause", *data], env=env)
    assert refused.exit_code != 0 and "--reason" in refused.output
    paused = runner.invoke(app, ["sending", "pause", "--reason", "bascule de certificat", *data], env=env)
    shown = " ".join(paused.stdout.split())  # rich wraps long lines
    assert paused.exit_code == 0 and "Envoi suspendu" in shown and "bascule de certificat" in shown
    assert '"paused": true' in runner.invoke(app, ["sending", "status", *data, "--json"], env=env).stdout
    resumed = runner.invoke(app, ["sending", "resume", *data], env=env)
    assert resumed.exit_code == 0 and "Envoi actif" in resumed.stdout


MARKUP = "<b>[red]x[/red]</b> [bold]maintenance[/]"


def test_the_reason_is_printed_as_given_not_as_rich_markup(settings) -> None:
    """``gateway sending pause --reason "<b>[red]x[/red]</b>"`` echoed "<b>x</b>" in red: the operator's
    text went through rich's markup. ``sending status`` and the night's summary print it too."""
    from datetime import UTC, datetime

    from rich.console import Console

    from gateway.cli.report import render_summary
    from gateway.pipeline.run import RunSummary

    runner = CliRunner()
    data = ["--data-dir", str(settings.data_dir)]
    env = {"GATEWAY_DATABASE_URL": settings.database_url} if settings.database_url else {}
    paused = runner.invoke(app, ["sending", "pause", "--reason", MARKUP, *data], env=env)
    assert paused.exit_code == 0 and MARKUP in paused.stdout, paused.stdout
    status = runner.invoke(app, ["sending", "status", *data], env=env)
    assert status.exit_code == 0 and MARKUP in status.stdout, status.stdout

    summary = RunSummary(1, "manual", False, [], datetime.now(UTC),
                         sending_paused={"paused": True, "changed_by": "cli:x", "reason": MARKUP})
    shown = Console(record=True, width=300)
    render_summary(summary, shown)
    assert MARKUP in shown.export_text()


@pytest.mark.parametrize("command", ["pause", "resume", "status"])
def test_every_sending_command_has_help(command) -> None:
    result = CliRunner().invoke(app, ["sending", command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_after_a_pause_is_lifted_the_schedule_sends_what_waited(gw, emulator, tmp_path) -> None:
    from gateway.scheduler import reports_job, run_job_now

    pause.pause(gw.engine, by="cli:exploitant", reason="maintenance du DUDE", now=gw.clock())
    run_batch(gw, [night(tmp_path)])
    run_job_now(gw, reports_job)  # a tick while still paused: nothing leaves
    assert emulator.ledger_summary()["lots"] == 0

    pause.resume(gw.engine, by="cli:exploitant", now=gw.clock())
    run_job_now(gw, reports_job)  # the next tick sends the three sealed envelopes (and polls what is due)

    assert emulator.ledger_summary()["lots"] == 3
    assert {state for _, _, state, _ in snapshot(gw)[0]} <= {"TRANSMIS", "ACCEPTE"}
    reconcile.poll_reports(gw, force=True)  # their reports, at a later tick
    assert {state for _, _, state, _ in snapshot(gw)[0]} == {"ACCEPTE"}


def test_when_sending_was_paused_is_said_in_the_gateway_s_zone_as_every_other_time(settings) -> None:
    """``sending status`` said "depuis le 30/11/2026 16:00 UTC" beside commands and a console that say Paris
    time, and the night's summary printed the raw ISO string ("(depuis 2026-11-30T16:00:00+00:00)")."""
    from datetime import UTC, datetime

    from rich.console import Console

    from gateway.cli.report import render_summary
    from gateway.context import Gateway
    from gateway.pipeline.pause import pause
    from gateway.pipeline.run import RunSummary

    gw = Gateway.open(settings)
    state = pause(gw.engine, by="cli:ops", reason="bascule", now=datetime(2026, 11, 30, 16, 0, tzinfo=UTC))
    gw.close()
    env = {"GATEWAY_DATABASE_URL": settings.database_url} if settings.database_url else {}
    status = CliRunner().invoke(app, ["sending", "status", "--data-dir", str(settings.data_dir)], env=env)
    assert status.exit_code == 0, status.output
    assert "depuis le 30/11/2026 17:00 CET par cli:ops : bascule" in " ".join(status.stdout.split()), status.stdout

    summary = RunSummary(1, "manual", False, [], datetime.now(UTC), sending_paused=state.as_dict())
    shown = Console(record=True, width=300)
    render_summary(summary, shown, tz=ZoneInfo("Europe/Paris"))
    text = shown.export_text()
    assert "depuis le 30/11/2026 17:00 CET" in text and "2026-11-30T16:00" not in text, text


@pytest.mark.parametrize("first_ever", [True, False], ids=["no-row-yet", "row-there"])
def test_two_admins_pressing_pause_at_once_pause_once(gw, first_ever) -> None:
    """The console's press (`only_if_flipped`): checked, then paused, in two transactions, two admins at once both
    paused, and the second reason replaced the first. Now one pause, one audit row; the other press is told
    "déjà suspendu" (None)."""
    if not first_ever:
        pause.pause(gw.engine, by="cli:a", reason="essai", now=gw.clock())
        pause.resume(gw.engine, by="cli:a", now=gw.clock())
    start = threading.Barrier(2)
    results: list = []

    def press(who: str) -> None:
        start.wait(10)
        results.append(pause.pause(gw.engine, by=f"console:{who}", reason=f"maintenance ({who})", now=gw.clock(),
                                   only_if_flipped=True))

    threads = [threading.Thread(target=press, args=(who,)) for who in ("alice", "bruno")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 2 and sum(r is not None for r in results) == 1, results
    [done] = [r for r in results if r is not None]
    assert pause.current(gw.engine).reason == done.reason  # the reason kept is the one of the press that paused
    with gw.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_t).where(
            audit_t.c.action == "SENDING_PAUSE", audit_t.c.actor.like("console:%"))).scalar_one() == 1
    assert pause.resume(gw.engine, by="console:alice", now=gw.clock(), only_if_flipped=True) is not None
    assert pause.resume(gw.engine, by="console:bruno", now=gw.clock(), only_if_flipped=True) is None
