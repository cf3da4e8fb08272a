"""Settings checked when they load (`gateway.settings`): a wrong value stops every command up front with
``Erreur CONFIG`` naming the variable, instead of failing later somewhere that blames something else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import Settings


@pytest.mark.parametrize("zone", ["Europe/Pariss", "europe/paris", "Europe", "", "/etc/localtime", "../Paris"])
def test_an_unknown_time_zone_is_refused_naming_the_setting(zone: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, timezone=zone)
    assert [error["loc"] for error in refused.value.errors()] == [("timezone",)]
    assert "time zone" in str(refused.value)


@pytest.mark.parametrize(("zone", "near_miss"), [("Europe/Paris", "europe/paris"), ("UTC", "utc"),
                                                  ("Pacific/Kiritimati", "Pacific/Kiritimat"),
                                                  ("America/Cayenne", "America/Cayenne ")])
def test_iana_time_zones_are_accepted_and_their_near_misses_refused(zone: str, near_miss: str) -> None:
    assert Settings(_env_file=None, timezone=zone).timezone == zone
    with pytest.raises(ValidationError, match="unknown time zone"):
        Settings(_env_file=None, timezone=near_miss)


@pytest.mark.parametrize("url", ["notaurl", "127.0.0.1:8790/dude/v1", "localhost:8790/dude/v1", "ftp://dude.test/v1",
                                 "http://", "http:///dude/v1", "http://:8790/dude/v1", "//dude.test/dude/v1",
                                 "http://dude.test:abc/v1", "http://dude.test:0/v1", "http://dude.test:70000/v1",
                                 "http://dude .test/v1", "http://[::1/dude/v1"])
def test_a_dude_url_that_is_not_absolute_http_with_a_host_is_refused(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, dude_url=url)
    assert [error["loc"] for error in refused.value.errors()] == [("dude_url",)]
    assert "absolute http:// or https:// URL with a host" in str(refused.value)


@pytest.mark.parametrize(("url", "near_miss"), [
    ("http://127.0.0.1:8790/dude/v1", "127.0.0.1:8790/dude/v1"),  # the default; tests' emulators and the demo
    ("http://dude.test/dude/v1", "dude.test/dude/v1"),  # the tests' mock transport
    ("http://127.0.0.1:9/dude/v1", "http://127.0.0.1:0/dude/v1"),  # the tests' "DUDE is down"
    ("https://dude.example.fr/dude/v1/", "ftp://dude.example.fr/dude/v1/"),
    ("HTTPS://DUDE.example.fr", "HTTPS:///DUDE.example.fr"),
    ("http://[::1]:8790/dude/v1", "http://[::1:8790/dude/v1"),
    ("https://passerelle:secret@dude.example.fr:8443/dude/v1", "https://passerelle:secret@:8443/dude/v1"),
])
def test_the_dude_urls_in_use_are_accepted_unchanged_and_their_near_misses_refused(url: str, near_miss: str) -> None:
    assert Settings(_env_file=None, dude_url=url).dude_url == url
    with pytest.raises(ValidationError, match="absolute http:// or https:// URL with a host"):
        Settings(_env_file=None, dude_url=near_miss)


def gateway_command(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    """The command as an operator runs it: from an empty folder, only the given ``GATEWAY_*`` variables."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
           "GATEWAY_DATA_DIR": str(tmp_path / "data"), **variables}
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)


@pytest.mark.parametrize("command", [["schedule", "show"], ["run", "--now"]], ids=" ".join)
def test_a_misspelt_time_zone_stops_the_command_naming_gateway_timezone(tmp_path: Path, command: list[str]) -> None:
    """It used to be a ZoneInfoNotFoundError traceback mid-run (exit 1, the run left EN_COURS), or
    "invalid schedule '0 2 * * *'", which sends the operator to the cron setting."""
    proc = gateway_command(tmp_path, *command, GATEWAY_TIMEZONE="Europe/Pariss")
    said = " ".join(proc.stderr.split())  # rich wraps long lines
    assert proc.returncode == 2, proc.stderr
    assert "Erreur CONFIG" in said and "GATEWAY_TIMEZONE" in said and "unknown time zone" in said
    assert "Traceback" not in said and "schedule" not in said
    assert not (tmp_path / "data" / "gateway.db").exists()  # no run started, none left EN_COURS


@pytest.mark.parametrize("command", [["schedule", "show"], ["run", "--now"]], ids=" ".join)
def test_a_dude_url_that_is_not_a_url_stops_the_command_naming_gateway_dude_url(tmp_path: Path,
                                                                                  command: list[str]) -> None:
    """It used to be accepted: a night then posted nowhere and ended DUDE_UNREACHABLE, exit 3, which reads
    "DUDE is down" when the mistake is ours."""
    proc = gateway_command(tmp_path, *command, GATEWAY_DUDE_URL="notaurl")
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr
    assert "Erreur CONFIG" in said and "GATEWAY_DUDE_URL" in said and "absolute http:// or https:// URL" in said
    assert "DUDE_UNREACHABLE" not in said and "Traceback" not in said
    assert not (tmp_path / "data" / "gateway.db").exists()


def test_a_refused_dude_url_is_not_repeated_since_it_may_hold_a_password(tmp_path: Path) -> None:
    proc = gateway_command(tmp_path, "schedule", "show", GATEWAY_DUDE_URL="ftp://passerelle:mot-de-passe@dude.fr/v1")
    assert proc.returncode == 2 and "GATEWAY_DUDE_URL" in proc.stderr, proc.stderr
    assert "mot-de-passe" not in proc.stderr


def test_a_misspelt_variable_is_said_on_start_with_the_setting_it_was_meant_to_be(tmp_path, monkeypatch) -> None:
    """``extra="ignore"`` let GATEWAY_INPUT_DIRR leave the drop folder at its default in silence."""
    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.settings import unknown_variables

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("GATEWAY_DUDE_ULR=http://127.0.0.1:9/dude/v1\n", encoding="utf-8")
    environ = {"GATEWAY_INPUT_DIRR": "/srv/depot", "GATEWAY_DATA_DIR": "x", "GATEWAY_TEST_POSTGRES_URL": "y",
               "GATEWAY_SERVE_VERBOSE": "1", "GATEWAYS": "z"}
    assert unknown_variables(environ, tmp_path / ".env") == [
        "GATEWAY_DUDE_ULR (GATEWAY_DUDE_URL ?)", "GATEWAY_INPUT_DIRR (GATEWAY_INPUT_DIR ?)"]

    result = CliRunner(env={"GATEWAY_INPUT_DIRR": "/srv/depot"}).invoke(
        app, ["schedule", "show", "--data-dir", str(tmp_path / "data")])
    said = " ".join(result.stderr.split())
    assert "variable inconnue, ignorée : GATEWAY_INPUT_DIRR (GATEWAY_INPUT_DIR ?)" in said
    assert "GATEWAY_DUDE_ULR (GATEWAY_DUDE_URL ?)" in said and "/srv/depot" not in said

    data = str(tmp_path / "data")  # a command reads its settings once: each name said once
    made = CliRunner().invoke(app, ["clients", "create", "--name", "x", "--role", "admin", "--data-dir", data])
    assert made.exit_code == 0
    listed = CliRunner(env={"GATEWAY_INPUT_DIRR": "/srv/depot"}).invoke(app, ["clients", "list", "--data-dir", data])
    assert listed.exit_code == 0 and listed.stderr.count("GATEWAY_INPUT_DIRR") == 1


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_the_plain_postgresql_url_forms_mean_the_driver_the_gateway_ships(scheme: str, tmp_path: Path) -> None:
    """``postgresql://…`` gave a traceback (``No module named 'psycopg2'``), ``postgres://…`` "Can't load
    plugin": the forms PostgreSQL's tools and hosting panels write. A command now runs on them."""
    from tests.backends import fresh_postgres_database

    assert Settings(_env_file=None, database_url=f"{scheme}://u:p@db/gw").db_url == "postgresql+psycopg://u:p@db/gw"
    assert Settings(_env_file=None, database_url="sqlite:///x.db").db_url == "sqlite:///x.db"
    with fresh_postgres_database() as url:  # skipped without a test server, unless CI requires one
        plain = url.replace("postgresql+psycopg://", f"{scheme}://")
        env = {**os.environ, "GATEWAY_DATABASE_URL": plain, "GATEWAY_DATA_DIR": str(tmp_path)}
        done = subprocess.run([sys.executable, "-m", "gateway", "db", "upgrade"], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr


def _without_gateway_variables(monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def test_an_empty_variable_means_not_set_for_every_setting(tmp_path: Path, monkeypatch) -> None:
    """``GATEWAY_TRUST_DIR=`` (an empty line in /etc/passerelle/passerelle.env) meant the working directory:
    every *.pem there trusted as DUDE's; ``GATEWAY_INPUT_DIR=`` made it the drop folder. Empty is now
    unset, for every setting: its default, never an error."""
    _without_gateway_variables(monkeypatch)
    monkeypatch.chdir(tmp_path)
    defaults = Settings(_env_file=None).model_dump()
    for name in Settings.model_fields:
        monkeypatch.setenv(f"GATEWAY_{name.upper()}", "")
    emptied = Settings(_env_file=None)
    assert emptied.model_dump() == defaults
    assert emptied.gateway_trust_dir == Path("gateway-data/keys/trust")
    assert emptied.runs_input_dir == Path("gateway-data/entrees")
    assert emptied.gateway_key_file == Path("gateway-data/keys/gateway.key.pem")


def test_an_empty_line_in_the_env_file_means_not_set_too(tmp_path: Path, monkeypatch) -> None:
    _without_gateway_variables(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("GATEWAY_TRUST_DIR=\nGATEWAY_INPUT_DIR=\nGATEWAY_KEY_FILE=\nGATEWAY_API_PORT=\n"
                                   "GATEWAY_SEND_COMMENTS=\nGATEWAY_DATA_DIR=/srv/passerelle\n", encoding="utf-8")
    read = Settings()
    assert read.data_dir == Path("/srv/passerelle")  # the file is read
    assert (read.trust_dir, read.input_dir, read.key_file) == (None, None, None)
    assert read.gateway_trust_dir == Path("/srv/passerelle/keys/trust") and read.api_port == 8780
    assert read.send_comments is False


def test_keys_init_with_empty_key_variables_makes_the_keys_in_the_data_folder(tmp_path: Path, monkeypatch) -> None:
    """``GATEWAY_KEY_FILE=`` gave "[Errno 21] Is a directory: '.'"."""
    from typer.testing import CliRunner

    from gateway.cli import app

    _without_gateway_variables(monkeypatch)
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    result = CliRunner(env={"GATEWAY_KEY_FILE": "", "GATEWAY_CERT_FILE": "", "GATEWAY_TRUST_DIR": ""}).invoke(
        app, ["keys", "init", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert (data / "keys" / "gateway.key.pem").is_file() and (data / "keys" / "trust" / "dude.cert.pem").is_file()
    assert not list(tmp_path.glob("*.pem"))


@pytest.mark.parametrize("url", ["not a url", "mysql://u:p@db/gw", "mysql+pymysql://u:p@db/gw", "oracle://db/gw",
                                 "sqlite:/gateway.db", "sqlitex:///gateway.db", "postgresqlx://db/gw",
                                 "postgres+psycopg://u:p@db/gw", "://db/gw", "/srv/passerelle/gateway.db"])
def test_a_database_url_of_a_kind_the_gateway_cannot_use_is_refused(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, database_url=url)
    assert [error["loc"] for error in refused.value.errors()] == [("database_url",)]
    said = "; ".join(error["msg"] for error in refused.value.errors())
    assert "SQLite or PostgreSQL URL" in said and "sqlite:///" in said and "postgresql+psycopg://" in said


@pytest.mark.parametrize(("url", "read"), [
    ("sqlite:///gateway-data/gateway.db", "sqlite:///gateway-data/gateway.db"),
    ("sqlite:////srv/passerelle/gateway.db", "sqlite:////srv/passerelle/gateway.db"), ("sqlite://", "sqlite://"),
    ("sqlite+pysqlite:///x.db", "sqlite+pysqlite:///x.db"),
    ("postgresql+psycopg://u:p@db:5432/gw", "postgresql+psycopg://u:p@db:5432/gw"),
    ("postgresql://u:p@db/gw", "postgresql+psycopg://u:p@db/gw"),
    ("postgres://u:p@db/gw", "postgresql+psycopg://u:p@db/gw"),
])
def test_sqlite_and_postgresql_urls_are_accepted(url: str, read: str) -> None:
    assert Settings(_env_file=None, database_url=url).db_url == read


@pytest.mark.parametrize("command", [["rejects"], ["db", "upgrade"], ["sending", "pause", "--reason", "x"],
                                     ["schedule", "show"]], ids=" ".join)
@pytest.mark.parametrize("url", ["mysql://passerelle:mot-de-passe@db/gw", "pas une URL mot-de-passe"])
def test_a_database_url_the_gateway_cannot_use_stops_the_command_with_config_never_showing_it(
        tmp_path: Path, command: list[str], url: str) -> None:
    """``mysql://…`` ended in a traceback (``ModuleNotFoundError: MySQLdb``); not a URL at all, in
    ``Erreur STORE`` after the command had started."""
    from typer.testing import CliRunner

    from gateway.cli import app

    result = CliRunner(env={"GATEWAY_DATABASE_URL": url, "GATEWAY_DATA_DIR": None}).invoke(
        app, [*command, "--data-dir", str(tmp_path / "data")])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2, (result.exception, said)
    assert "Erreur CONFIG" in said and "GATEWAY_DATABASE_URL" in said and "SQLite or PostgreSQL URL" in said
    assert "mot-de-passe" not in result.stdout + result.stderr and "Traceback" not in said
    assert not (tmp_path / "data").exists()
