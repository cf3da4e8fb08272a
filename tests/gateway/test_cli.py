"""The command line as an integrator uses it: the demo from nothing, then looking at what happened."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends import BACKENDS
from tests.tools import xmllint_validates, xmlsec1_verifies

COMMANDS = [["demo"], ["run"], ["rejects"], ["envelopes", "list"], ["envelopes", "show"], ["keys", "init"],
            ["keys", "show-cert"], ["fixtures", "generate"], ["emulator", "serve"], ["serve"], ["clients", "create"],
            ["clients", "list"], ["clients", "revoke"]]


def gateway(*args: str, data_dir: Path | None = None, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    command = [sys.executable, "-m", "gateway", *args]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    proc = subprocess.run(command, capture_output=True, timeout=timeout, env=env,
                          cwd=data_dir.parent if data_dir else None)
    if check:
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    proc = gateway("demo", "--events", "1500", "--json", data_dir=data_dir)
    return data_dir, json.loads(proc.stdout)


def test_demo_ends_every_line_in_one_final_state(demo) -> None:
    _, summary = demo
    states = summary["states"]
    assert sum(states.values()) == summary["ingest"]["lines"] == 1500
    assert set(states) == {"ACCEPTE", "REJETE", "INVALIDE"}
    assert {r["code"] for r in summary["top_rejects"]} >= {"E01", "E03", "E09"}
    assert all(r["label"] for r in summary["top_rejects"])
    ledger = summary["emulator_ledger"]
    assert ledger["events_applied_more_than_once"] == [] and ledger["lots_processed_more_than_once"] == []
    assert ledger["events"] == states["ACCEPTE"] + states["REJETE"]


def test_every_envelope_as_sent_passes_xmllint_and_xmlsec1(demo, tmp_path: Path) -> None:
    data_dir, _ = demo
    envelopes = json.loads(gateway("envelopes", "list", "--json", data_dir=data_dir).stdout)["envelopes"]
    assert envelopes and all(e["state"] == "TRAITE" for e in envelopes)
    cert = tmp_path / "gateway.pem"
    cert.write_bytes(gateway("keys", "show-cert", data_dir=data_dir).stdout)
    for envelope in envelopes:
        path = tmp_path / f"{envelope['id']}.xml"
        path.write_bytes(gateway("envelopes", "show", envelope["id"], data_dir=data_dir).stdout)
        assert xmllint_validates(path)[0]
        ok, err = xmlsec1_verifies(path, cert)
        assert ok, err


def test_rejects_name_their_code_label_file_and_line(demo) -> None:
    data_dir, summary = demo
    listed = json.loads(gateway("rejects", "--code", "E08", "--json", data_dir=data_dir).stdout)["rejects"]
    expected = next(r["count"] for r in summary["top_rejects"] if r["code"] == "E08")
    assert len(listed) == expected
    for reject in listed:
        assert reject["code"] == "E08" and reject["label"] == "SIRET invalide" and reject["hint"]
        assert reject["source_file"].startswith("P3_") and reject["source_line"] >= 2
    # "Rejets (N+)" only when there are more than N: it said "200+" of exactly 200
    exactly = gateway("rejects", "--code", "E08", "--limit", str(expected), data_dir=data_dir).stdout.decode()
    assert f"Rejets ({expected})" in exactly and f"Rejets ({expected}+)" not in exactly
    fewer = json.loads(gateway("rejects", "--code", "E08", "--limit", str(expected - 1), "--json",
                               data_dir=data_dir).stdout)
    assert fewer["count"] == expected - 1 and fewer["more"] is True


def test_a_table_piped_to_a_file_or_a_mail_keeps_each_row_on_one_line(demo, monkeypatch) -> None:
    """Rich laid the tables out in 80 columns when the output was no terminal: in cron's mail each reject
    took four lines, its key on one, its file on another."""
    monkeypatch.delenv("COLUMNS", raising=False)
    data_dir, _ = demo
    lines = gateway("rejects", "--code", "E08", data_dir=data_dir).stdout.decode().splitlines()
    rows = [line for line in lines if re.search(r"\b\d{5}-\d+\b", line)]
    assert rows and all(re.search(r"E08 .* P3_\d{5}_\d{8}\.csv", row) for row in rows), "\n".join(lines[:12])


def test_rerunning_the_night_would_send_nothing(demo) -> None:
    data_dir, summary = demo
    exports = sorted((data_dir / "nuit").glob("P3_*.csv"))
    args = [a for p in exports for a in ("--input", str(p))]
    dry = json.loads(gateway("run", *args, "--dry-run", "--json", data_dir=data_dir).stdout)
    assert dry["would_send"] == 0
    assert dry["ingest"]["new_events"] == dry["ingest"]["new_versions"] == dry["ingest"]["invalid"] == 0
    assert dry["ingest"]["duplicates"] == 1500


def test_unknown_reject_code_is_a_clear_error(demo) -> None:
    data_dir, _ = demo
    proc = gateway("rejects", "--code", "X99", data_dir=data_dir, check=False)
    assert proc.returncode == 2 and b"X99" in proc.stdout + proc.stderr


def test_unknown_envelope_is_a_clear_error(demo) -> None:
    data_dir, _ = demo
    proc = gateway("envelopes", "show", "00000000-0000-4000-8000-000000000000", data_dir=data_dir, check=False)
    assert proc.returncode == 2 and proc.stdout == b""
    assert "Erreur NOT_FOUND : aucun lot 00000000-0000-4000-8000-000000000000" in proc.stderr.decode()


LOOKING = [["rejects"], ["envelopes", "list"], ["envelopes", "show", "00000000-0000-4000-8000-000000000000"],
           ["sending", "status"], ["sending", "resume"], ["clients", "list"], ["clients", "revoke", "1"],
           ["schedule", "show"], ["db", "current"]]


@pytest.mark.parametrize("command", LOOKING, ids=lambda c: " ".join(c[:2]))
def test_a_mistyped_data_dir_is_said_rather_than_shown_as_an_empty_store(command, demo, tmp_path: Path) -> None:
    """At 2 a.m., `--data-dir /var/lib/gatway` must not answer "0 rejects" from a store made on the spot."""
    from typer.testing import CliRunner

    from gateway.cli import app

    real, _ = demo
    mistyped = tmp_path / real.name
    result = CliRunner(env={"GATEWAY_DATA_DIR": None, "GATEWAY_DATABASE_URL": None}).invoke(
        app, [*command, "--data-dir", str(mistyped)])
    said = " ".join(result.stderr.split())  # rich wraps long lines
    assert result.exit_code == 2 and "STORE_MISSING" in said and str(mistyped / "gateway.db") in said
    assert not mistyped.exists()


#: A URL that is not even one ("pas une URL secret") is now refused with the settings (``Erreur CONFIG``:
#: tests/gateway/test_settings.py), before a command tries to open it.
UNREACHABLE = {"server-down": "postgresql+psycopg://gateway:secret@127.0.0.1:9/gateway",
               "postgres-scheme-login-refused": "postgres://gateway:secret@127.0.0.1/gateway",
               "driver-not-installed": "postgresql+psycopg2://gateway:secret@127.0.0.1:9/gateway"}


@pytest.mark.parametrize("url", UNREACHABLE.values(), ids=UNREACHABLE.keys())
@pytest.mark.parametrize("command", [*LOOKING, ["db", "upgrade"]], ids=lambda c: " ".join(c[:2]))
def test_a_store_that_cannot_be_opened_is_said_not_a_traceback(command, url, tmp_path: Path) -> None:
    """A PostgreSQL server down, one that refuses the login, a driver that is not installed: ``Erreur STORE``,
    exit code 2, the password never shown; four of these commands printed a traceback (exit code 1)."""
    from typer.testing import CliRunner

    from gateway.cli import app

    result = CliRunner(env={"GATEWAY_DATABASE_URL": url}).invoke(app, [*command, "--data-dir", str(tmp_path)])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "Erreur STORE" in said, (result.exception, said)
    assert "secret" not in said and "Traceback" not in said


@pytest.mark.postgres
def test_the_commands_that_only_look_leave_an_empty_postgresql_database_empty(tmp_path: Path) -> None:
    """The README says they never make a store: on PostgreSQL, ``rejects`` laid the whole schema in an empty
    database (a mistyped database name) and answered "Rejets (0)"."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool
    from typer.testing import CliRunner

    from gateway.cli import app
    from tests.backends import fresh_postgres_database

    with fresh_postgres_database() as url:
        for command in (["rejects"], ["envelopes", "list"], ["sending", "status"], ["clients", "list"]):
            result = CliRunner(env={"GATEWAY_DATABASE_URL": url}).invoke(app, [*command, "--data-dir", str(tmp_path)])
            said = " ".join(result.stderr.split())
            assert result.exit_code == 2 and "STORE_MISSING" in said and "gateway db upgrade" in said, command
        engine = sa.create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
        engine.dispose()


def test_a_night_while_sending_is_paused_exits_4_and_says_what_waits(settings, dev_keys, tmp_path: Path) -> None:
    """A pause someone forgot to lift must not end the night like a good one either: it read and sealed, and
    posted nothing (DUDE's address is nobody's: a post would have made it exit 3)."""
    from typer.testing import CliRunner

    from datetime import UTC, datetime

    from gateway.cli import app
    from gateway.pipeline import pause
    from gateway.store.db import create_schema, make_engine
    from tests.factories import p3_line, write_export

    engine = make_engine(settings.db_url)
    create_schema(engine)
    pause.pause(engine, by="cli:exploitant", reason="maintenance du DUDE", now=datetime.now(UTC))
    engine.dispose()
    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    env = {"GATEWAY_DUDE_URL": "http://127.0.0.1:9/dude/v1", "GATEWAY_DATA_DIR": None, "GATEWAY_DATABASE_URL": None}
    result = CliRunner(env=env).invoke(app, ["run", "--input", str(export), "--data-dir", str(settings.data_dir),
                                             "--no-wait"])
    said = " ".join(result.stdout.split())
    assert result.exit_code == 4, result.output
    assert "maintenance du DUDE" in said and "1 lot(s) scellé(s) partiront à la reprise" in said
    dry = CliRunner(env=env).invoke(app, ["run", "--input", str(export), "--data-dir", str(settings.data_dir),
                                          "--dry-run"])
    assert dry.exit_code == 0, dry.output  # a dry run sends nothing anyway: the pause changes nothing it says


def test_a_night_dude_never_acknowledged_exits_3_and_keeps_its_envelope(settings, dev_keys, tmp_path: Path) -> None:
    """cron and systemd read the exit code: a night that never reached DUDE must not end like a good one."""
    import sqlalchemy as sa
    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.store.db import make_engine
    from gateway.store.models import envelopes_t
    from tests.factories import p3_line, write_export

    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1"), p3_line(id_evenement="2")])
    env = {"GATEWAY_DUDE_URL": "http://127.0.0.1:9/dude/v1", "GATEWAY_SEND_ATTEMPTS": "1",
           "GATEWAY_DATA_DIR": None, "GATEWAY_DATABASE_URL": None}
    result = CliRunner(env=env).invoke(
        app, ["run", "--input", str(export), "--data-dir", str(settings.data_dir), "--no-wait", "--json"])

    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "TERMINE_SANS_ACCUSE" and summary["sending"]["sans_accuse"] == 1
    assert "1 lot(s) non acquitté(s) par le DUDE" in result.stderr
    engine = make_engine(settings.db_url)
    with engine.connect() as conn:  # kept, to go again with the same IdLot
        assert conn.execute(sa.select(envelopes_t.c.state)).scalars().all() == ["ENVOYE"]
    engine.dispose()


def test_a_setting_out_of_range_is_a_clear_error_naming_the_variable(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}, "GATEWAY_API_WORKERS": "0",
           "GATEWAY_KEY_PASSWORD": "un-secret-a-ne-pas-afficher"}
    proc = subprocess.run([sys.executable, "-m", "gateway", "serve", "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Erreur CONFIG" in proc.stderr and "GATEWAY_API_WORKERS" in proc.stderr
    assert "Traceback" not in proc.stderr and "un-secret" not in proc.stderr


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
@pytest.mark.parametrize("given", ["5B593516-0C2E-4D8F-9A41-7E3B2C1D0F98", "5B593516…", "5B593516-0c2e"])
def test_envelopes_show_finds_an_uppercased_idlot_on_either_store(settings, given: str) -> None:
    """Some tools print an IdLot in capitals, and that is what gets pasted: SQLite found it (its LIKE ignores
    case) and PostgreSQL said NOT_FOUND; IdLots are lowercase UUIDs, both stores now find it."""
    import sqlalchemy as sa
    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.store.db import create_schema, make_engine
    from gateway.store.models import DOC_LOT, documents_t, envelopes_t, utcnow

    envelope_id = "5b593516-0c2e-4d8f-9a41-7e3b2c1d0f98"
    engine = make_engine(settings.db_url)
    create_schema(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(envelopes_t).values(id=envelope_id, state="TRAITE", event_count=1,
                                                   created_at=utcnow()))
        conn.execute(sa.insert(documents_t).values(envelope_id=envelope_id, kind=DOC_LOT, at=utcnow(),
                                                   sha256="0" * 64, body=b"<LotEvenements>signe</LotEvenements>"))
    engine.dispose()

    result = CliRunner(env={"GATEWAY_DATA_DIR": None, "GATEWAY_DATABASE_URL": settings.database_url}).invoke(
        app, ["envelopes", "show", given, "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "<LotEvenements>signe</LotEvenements>"


def test_gateway_run_reads_the_signing_key_once(settings, dev_keys, tmp_path: Path, monkeypatch) -> None:
    """The key was read, and its password used, twice: once to check it before the store is opened, once
    to sign. The sealing process, in a process of its own, loads its own copy."""
    from typer.testing import CliRunner

    from adapters.dude.signing import Signer
    from gateway.cli import app
    from tests.factories import p3_line, write_export

    loads = []
    original = Signer.from_files.__func__

    def counted(cls, *args, **kwargs):
        loads.append(args)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(Signer, "from_files", classmethod(counted))
    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    env = {"GATEWAY_DUDE_URL": "http://127.0.0.1:9/dude/v1", "GATEWAY_SEND_ATTEMPTS": "1",
           "GATEWAY_DATA_DIR": None, "GATEWAY_DATABASE_URL": None}
    result = CliRunner(env=env).invoke(
        app, ["run", "--input", str(export), "--data-dir", str(settings.data_dir), "--no-wait", "--json"])
    assert result.exit_code == 3, result.output  # nobody at DUDE's address: the envelope was signed, then kept
    assert len(loads) == 1


def test_a_dry_run_says_that_the_night_would_stop_on_the_keys(tmp_path: Path) -> None:
    """A dry run says what tonight would send; with a key that would not load it said "1 to send" and nothing
    else, and the night itself then stopped on the keys (exit code 2)."""
    from typer.testing import CliRunner

    from gateway.cli import app
    from tests.factories import p3_line, write_export

    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    env = {"GATEWAY_DATA_DIR": None, "GATEWAY_DATABASE_URL": None}
    result = CliRunner(env=env).invoke(
        app, ["run", "--input", str(export), "--dry-run", "--json", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["would_send"] == 1
    assert "Attention : la vraie nuit s'arrêterait là, KEYS :" in " ".join(result.stderr.split())


def test_the_database_lost_during_a_run_is_said_not_a_traceback(settings, dev_keys, tmp_path, monkeypatch) -> None:
    """PostgreSQL restarted mid-night: 266 lines of traceback and exit code 1, which the README gives to "an
    export refused whole". Now ``Erreur STORE`` (exit code 2) saying that the next run takes it up again."""
    import sqlalchemy as sa
    from typer.testing import CliRunner

    import gateway.nightly
    from gateway.cli import app
    from tests.factories import p3_line, write_export

    def lost(*args, **kwargs):
        raise sa.exc.OperationalError("UPDATE events …", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(gateway.nightly, "run_exclusive", lost)
    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    env = {"GATEWAY_DATA_DIR": None, "GATEWAY_DATABASE_URL": None}
    result = CliRunner(env=env).invoke(
        app, ["run", "--input", str(export), "--json", "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 2, result.output
    said = " ".join(result.stderr.split())
    assert ("Erreur STORE : base de données en échec pendant l'exécution : connexion coupée par le serveur de base "
            "(arrêté ou redémarré ?) (Exception : server closed the connection") in said
    assert "le prochain lancement reprend" in said and "Traceback" not in result.output
    assert json.loads(result.stdout)["error"]["code"] == "STORE"


def test_the_demo_never_deletes_a_store_that_did_more_than_demos(settings, dev_keys, tmp_path: Path) -> None:
    """``gateway demo`` starts over by deleting the store of its data folder: pointed (``GATEWAY_DATA_DIR``) at
    the real gateway's folder, it deleted every night and API client there. Now it refuses, saying how to do
    it anyway; a store of earlier demos is still started over, and another database is never the demo's."""
    import sqlalchemy as sa
    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.context import Gateway
    from gateway.demo import run_demo
    from gateway.errors import ConfigurationError
    from gateway.pipeline.run import start_run
    from gateway.store.models import runs_t

    gw = Gateway.open(settings)
    start_run(gw, trigger="schedule", inputs=[], dry_run=False)  # a real night
    gw.close()
    store = settings.data_dir / "gateway.db"
    before = store.read_bytes()
    result = CliRunner(env={"GATEWAY_DATA_DIR": None, "GATEWAY_DATABASE_URL": None}).invoke(
        app, ["demo", "--events", "50", "--json", "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"]["code"] == "CONFIG"
    said = " ".join(result.stderr.split())
    assert "1 exécution(s) qui ne viennent pas d'une démonstration" in said and "gateway demo --force" in said
    assert store.read_bytes() == before and not (settings.data_dir / "nuit").exists()  # untouched, nothing made

    with pytest.raises(ConfigurationError, match="GATEWAY_DATABASE_URL"):
        run_demo(settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'ailleurs.db'}"}), events=50)
    assert not (tmp_path / "ailleurs.db").exists()

    demo_settings = settings.model_copy(update={"data_dir": tmp_path / "demo"})
    run_demo(demo_settings, events=50)
    again = run_demo(demo_settings, events=50)  # a store of demos only: started over, as before
    gw = Gateway.open(again.settings)
    with gw.engine.connect() as conn:
        assert conn.execute(sa.select(runs_t.c.trigger)).scalars().all() == ["demo"]
    gw.close()


def test_the_demos_hints_can_be_typed_as_printed(monkeypatch, tmp_path: Path) -> None:
    """After ``scripts/demo`` the venv is not activated: the hints said ``gateway rejects …``, which the shell
    did not find. They name the command as it can be typed here."""
    import shutil

    from gateway.cli import night

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: None)  # not on the PATH
    own = Path(sys.executable).parent / "gateway"
    assert night._typed_command() in (os.path.relpath(own), str(own))
    monkeypatch.setattr(shutil, "which", lambda name: str(own))  # the venv activated
    assert night._typed_command() == "gateway"


def test_fixtures_generated_into_the_drop_folder_warn_of_the_registry(tmp_path: Path) -> None:
    """``registre-dude.csv`` generated beside the exports in the drop folder was read by every night as an
    export, and refused; the generator now says so."""
    from typer.testing import CliRunner

    from gateway.cli import app

    drop = tmp_path / "depot"
    runner = CliRunner(env={"GATEWAY_INPUT_DIR": str(drop), "GATEWAY_DATA_DIR": str(tmp_path / "data")})
    into_drop = runner.invoke(app, ["fixtures", "generate", "--events", "50", "--out", str(drop)])
    assert into_drop.exit_code == 0, into_drop.output
    said = " ".join(into_drop.stderr.split())
    assert f"Attention : {drop / 'registre-dude.csv'} est le registre de l'émulateur, pas un export" in said
    elsewhere = runner.invoke(app, ["fixtures", "generate", "--events", "50", "--out", str(tmp_path / "nuit")])
    assert elsewhere.exit_code == 0 and "registre de l'émulateur" not in elsewhere.stderr


def test_text_from_the_exports_is_printed_as_it_is_never_read_as_markup(gw, tmp_path: Path) -> None:
    """An export's name, and a bad value quoted in a reject's message, are text from outside: with ``[red]`` in
    them, the run's summary and ``gateway rejects`` applied it as rich markup (the text changed, or vanished)."""
    from rich.console import Console
    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.cli.report import render_summary
    from gateway.pipeline.run import run_batch
    from tests.factories import p3_line, write_export

    refused = tmp_path / "P3_69001_[red]20261129.csv"  # no "/" in a name: an opening tag alone
    refused.write_text("id_evenement;code_ml\r\n1;69001\r\n", encoding="utf-8")  # columns missing: refused whole
    bad = write_export(tmp_path / "P3_69001_20261129.csv", [p3_line(id_evenement="7", date_evenement="[b]12[/b]")])
    summary = run_batch(gw, [refused, bad], wait_for_reports=False)
    out = Console(record=True, width=300)
    render_summary(summary, out, title="Exécution")
    assert "P3_69001_[red]20261129.csv" in out.export_text()

    result = CliRunner(env={"GATEWAY_DATABASE_URL": None, "COLUMNS": "300"}).invoke(
        app, ["rejects", "--data-dir", str(gw.settings.data_dir)])
    assert result.exit_code == 0, result.output
    assert "[b]12[/b]" in result.stdout, result.stdout
