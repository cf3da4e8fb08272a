"""The drop folder as a night sees it: a symbolic link there is refused as a file and never read, wherever it
points and whenever it was put there; a night lists the folder once; ``gateway check`` says what tonight would
import and refuse, as the night decides it. On SQLite and PostgreSQL, the emulator in-process."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from adapters.dude.emulator.app import serve_in_thread
from adapters.parcours3.reader import read_export
from gateway.checks import FAILING, OK, installation
from gateway.cli import app
from gateway.errors import ExportFileError
from gateway.nightly import DropFolder, exports_in, pending_exports, run_night
from gateway.store.models import events_t, imported_files_t
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export

database_url = on_both_backends()

NIGHT_1 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 02:00 in Paris
NIGHT_2 = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)


def count_listings(monkeypatch, folder: Path) -> list[str]:
    """Every time ``folder`` is listed (``os.scandir``, or ``os.listdir`` under ``Path.iterdir``)."""
    listed: list[str] = []
    for name in ("scandir", "listdir"):
        real = getattr(os, name)

        def spy(path=".", _real=real, _name=name):
            if Path(path) == folder:
                listed.append(_name)
            return _real(path)

        monkeypatch.setattr(os, name, spy)
    return listed


def detail(checks, name: str) -> str:
    return next(c.detail for c in checks if c.name == name)


def status(checks, name: str) -> str:
    return next(c.status for c in checks if c.name == name)


def test_a_symbolic_link_in_the_drop_folder_is_refused_as_a_file_and_never_read(gw, tmp_path, monkeypatch) -> None:
    """The links point to an export that DUDE would accept: read, its line would be an event. A link inside the
    folder and a link to nothing are refused too (never skipped in silence), and tried again each night."""
    folder = gw.settings.runs_input_dir
    folder.mkdir(parents=True)
    write_export(folder / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    outside = write_export(tmp_path / "ailleurs.csv", [p3_line(id_evenement="666")])
    (folder / "P3_69001_20261129.csv").symlink_to(outside)
    (folder / "P3_69001_20261130.csv").symlink_to(folder / "P3_69001_20261128.csv")
    (folder / "P3_69001_20261201.csv").symlink_to(tmp_path / "nulle-part.csv")
    links = ["P3_69001_20261129.csv", "P3_69001_20261130.csv", "P3_69001_20261201.csv"]
    listed = count_listings(monkeypatch, folder)

    night = run_night(gw, night=NIGHT_1)

    summary = night.summary
    assert summary.outcome == "TERMINE_AVEC_ERREURS" and summary.states == {"ACCEPTE": 1}
    assert sorted((e["file"], e["code"]) for e in summary.file_errors) == [(name, "P3_SYMLINK") for name in links]
    assert all("lien symbolique" in e["message"] for e in summary.file_errors)
    assert len(listed) == 1  # pending exports and the folder's problem, from one listing
    with gw.engine.connect() as conn:
        assert conn.execute(sa.select(events_t.c.key)).scalars().all() == ["69001-1"]
        assert conn.execute(sa.select(imported_files_t.c.name)).scalars().all() == ["P3_69001_20261128.csv"]
    again = run_night(gw, night=NIGHT_2)
    assert sorted(e["file"] for e in again.summary.file_errors) == links and again.summary.states == {}


def test_a_link_put_in_an_export_s_place_after_the_listing_is_refused_by_the_open_itself(tmp_path) -> None:
    """Checking for a link, then opening, leaves a moment in which the export job can swap the file for a link:
    the open refuses it (O_NOFOLLOW), both when the night hashes the export and when the run reads it."""
    folder = tmp_path / "depot"
    folder.mkdir()
    export = write_export(folder / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    listing = DropFolder(folder, (export,))
    [before] = exports_in(listing)
    assert before.refused is None and before.sha256

    key = tmp_path / "gateway.key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n")
    export.unlink()
    export.symlink_to(key)

    [after] = exports_in(listing)
    assert after.refused == "P3_SYMLINK" and after.sha256 is None
    with pytest.raises(ExportFileError) as refused:
        read_export(export)
    assert refused.value.code == "P3_SYMLINK" and "MIIE" not in str(refused.value)


def test_gateway_run_now_lists_the_drop_folder_once_and_exits_1_on_a_link(settings, emulator, monkeypatch,
                                                                          tmp_path) -> None:
    """The command listed the folder to refuse one it cannot read, then the night listed it twice more."""
    folder = tmp_path / "depot"
    folder.mkdir()
    write_export(folder / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    (folder / "P3_69001_20261129.csv").symlink_to(write_export(tmp_path / "ailleurs.csv",
                                                               [p3_line(id_evenement="666")]))
    monkeypatch.setenv("GATEWAY_INPUT_DIR", str(folder))
    if settings.database_url:
        monkeypatch.setenv("GATEWAY_DATABASE_URL", settings.database_url)
    listed = count_listings(monkeypatch, folder)
    with serve_in_thread(emulator) as base:
        monkeypatch.setenv("GATEWAY_DUDE_URL", f"{base}/dude/v1")
        result = CliRunner().invoke(app, ["run", "--now", "--json", "--data-dir", str(settings.data_dir)])

    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert [(e["file"], e["code"]) for e in summary["file_errors"]] == [("P3_69001_20261129.csv", "P3_SYMLINK")]
    assert summary["states"] == {"ACCEPTE": 1} and "1 fichier(s) refusé(s)" in result.stderr
    assert len(listed) == 1


def test_gateway_check_says_what_waits_to_be_imported_and_what_the_night_will_refuse(gw, tmp_path) -> None:
    """It said "2 export(s) *.csv (lus ou non)": not whether tonight had anything to read. What it says now is
    what the night then does."""
    folder = gw.settings.runs_input_dir
    folder.mkdir(parents=True)
    write_export(folder / "P3_69001_20261127.csv", [p3_line(id_evenement="1")])
    run_night(gw, night=NIGHT_1)
    checks = installation(gw, ask_dude=False)
    assert status(checks, "drop_folder") == OK
    assert detail(checks, "drop_folder") == f"{folder} : lisible, 0 export(s) en attente d'import (1 déjà importé(s))"

    write_export(folder / "P3_69001_20261127.csv", [p3_line(id_evenement="1"), p3_line(id_evenement="2")])  # resent
    write_export(folder / "P3_69001_20261128.csv", [p3_line(id_evenement="3")])
    (folder / "P3_69001_20261129.csv").symlink_to(write_export(tmp_path / "ailleurs.csv",
                                                               [p3_line(id_evenement="666")]))
    checks = installation(gw, ask_dude=False)
    assert status(checks, "drop_folder") == FAILING
    assert detail(checks, "drop_folder") == (
        f"{folder} : 2 export(s) en attente d'import, et 1 que la nuit refusera : 1 lien(s) symbolique(s) "
        "(P3_69001_20261129.csv) : la nuit les refuse (P3_SYMLINK) ; déposer les fichiers eux-mêmes, pas des liens")

    night = run_night(gw, night=NIGHT_2).summary
    assert night.inputs == ["P3_69001_20261127.csv", "P3_69001_20261128.csv", "P3_69001_20261129.csv"]
    assert night.states == {"ACCEPTE": 2} and [e["code"] for e in night.file_errors] == ["P3_SYMLINK"]
    assert [e.path.name for e in pending_exports(gw)] == ["P3_69001_20261129.csv"]


def test_gateway_check_before_the_first_night_counts_every_export_as_waiting_and_makes_no_store(settings,
                                                                                               monkeypatch,
                                                                                               tmp_path) -> None:
    folder = tmp_path / "depot"
    folder.mkdir()
    write_export(folder / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    write_export(folder / "P3_69002_20261128.csv", [p3_line(id_evenement="1", code_ml="69002")])
    monkeypatch.setenv("GATEWAY_INPUT_DIR", str(folder))
    if settings.database_url:  # a database without its schema yet
        monkeypatch.setenv("GATEWAY_DATABASE_URL", settings.database_url)
    answer = CliRunner().invoke(app, ["check", "--no-dude", "--json", "--data-dir", str(settings.data_dir)])
    found = {c["name"]: c for c in json.loads(answer.stdout)["checks"]}
    assert found["drop_folder"]["status"] == OK, found["drop_folder"]
    assert found["drop_folder"]["detail"] == f"{folder} : lisible, 2 export(s) en attente d'import"
    assert not (settings.data_dir / "gateway.db").exists()
