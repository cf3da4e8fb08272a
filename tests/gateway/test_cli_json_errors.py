"""What a script reading ``gateway … --json`` gets when the command fails: the error, as JSON, on stdout (the
same code and message as ``Erreur CODE : …`` on stderr, which people read, and the same exit code)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

NO_STORE = {"GATEWAY_DATA_DIR": None, "GATEWAY_DATABASE_URL": None}

# Every command that only looks and takes --json, pointed at a folder without a store.
LOOKING = [["rejects"], ["envelopes", "list"], ["sending", "status"], ["sending", "resume"], ["clients", "list"],
           ["schedule", "show"], ["db", "current"]]


def invoke(*args: str, env: dict[str, str | None] | None = None):
    from gateway.cli import app

    return CliRunner(env={**NO_STORE, **(env or {})}).invoke(app, list(args))


def said(text: str) -> str:
    """The words on the screen, whatever rich wrapped where."""
    return " ".join(text.split())


def json_error(result) -> dict:
    """The error on stdout, checked against stderr's ``Erreur CODE : message``."""
    error = json.loads(result.stdout)["error"]
    assert set(error) == {"code", "message"}
    assert said(result.stderr).endswith(f"Erreur {error['code']} : {said(error['message'])}")
    return error


@pytest.mark.parametrize("command", LOOKING, ids=" ".join)
def test_a_missing_store_is_said_as_json_on_stdout_too(command: list[str], tmp_path: Path) -> None:
    mistyped = tmp_path / "gatway"
    result = invoke(*command, "--json", "--data-dir", str(mistyped))
    assert result.exit_code == 2
    error = json_error(result)
    assert error["code"] == "STORE_MISSING" and str(mistyped / "gateway.db") in error["message"]


def test_a_setting_out_of_range_is_said_as_json_naming_the_variable(tmp_path: Path) -> None:
    result = invoke("rejects", "--json", "--data-dir", str(tmp_path), env={"GATEWAY_API_WORKERS": "0"})
    assert result.exit_code == 2
    error = json_error(result)
    assert error["code"] == "CONFIG" and "GATEWAY_API_WORKERS" in error["message"]


def test_a_run_without_keys_is_said_as_json(tmp_path: Path) -> None:
    from tests.factories import p3_line, write_export

    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    result = invoke("run", "--input", str(export), "--json", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 2
    assert json_error(result)["code"] == "KEYS"


def test_without_json_an_error_leaves_stdout_empty_even_after_a_json_one(tmp_path: Path) -> None:
    """``--json`` holds for its own command only (tests and embedding programs run several in one process)."""
    invoke("rejects", "--json", "--data-dir", str(tmp_path / "first"))
    result = invoke("rejects", "--data-dir", str(tmp_path / "second"))
    assert result.exit_code == 2 and result.stdout == ""
    assert "Erreur STORE_MISSING" in said(result.stderr)


@pytest.mark.parametrize("command", [["rejects", "--bogus"], ["envelopes", "list", "--state", "NOPE"],
                                     ["envelopes", "list", "--limit", "beaucoup"]], ids=" ".join)
def test_a_usage_error_is_said_as_json_too(command: list[str], tmp_path: Path) -> None:
    """An unknown option or a bad value: Click's usage text on stderr as before, and the error on stdout."""
    result = invoke(*command, "--json", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "USAGE" and error["message"]
    assert error["message"].split(":")[0].split()[-1].strip("'") in result.stderr  # the same complaint
    assert "Usage:" in result.stderr
    assert invoke(*command, "--data-dir", str(tmp_path)).stdout == ""  # without --json, stdout stays empty


def test_a_wrong_document_kind_is_a_usage_error_naming_the_choices(tmp_path: Path) -> None:
    result = invoke("envelopes", "show", "12345678", "--document", "xyz", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert all(choice in said(result.stderr) for choice in ("'lot'", "'accuse'", "'compte-rendu'"))


@pytest.mark.parametrize("command", [["rejects"], ["envelopes", "list"], ["sending", "status"]], ids=" ".join)
def test_the_database_lost_mid_command_is_said_not_a_traceback(command: list[str], settings, monkeypatch) -> None:
    """PostgreSQL restarted while a look-only command queried it: ``Erreur STORE`` (exit code 2) with the
    driver's first line, never the SQL, and the same as JSON; it used to be a traceback."""
    import sqlalchemy as sa

    from gateway.store.db import create_schema, make_engine

    engine = make_engine(settings.db_url)
    create_schema(engine)
    engine.dispose()
    real_execute = sa.engine.Connection.execute

    def execute(conn, statement, *args, **kwargs):  # the store opens and is checked; then the server is gone
        if "alembic_version" in str(statement):
            return real_execute(conn, statement, *args, **kwargs)
        raise sa.exc.OperationalError("SELECT nom, prenom FROM events …", {},
                                      Exception("server closed the connection unexpectedly\nmore"))

    monkeypatch.setattr(sa.engine.Connection, "execute", execute)
    result = invoke(*command, "--json", "--data-dir", str(settings.data_dir))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "SELECT" not in result.output and "more" not in result.output
    error = json_error(result)
    assert error["code"] == "STORE"
    assert error["message"].startswith("base de données en échec pendant la commande : connexion coupée par le "
                                       "serveur de base (arrêté ou redémarré ?) (Exception : server closed")
