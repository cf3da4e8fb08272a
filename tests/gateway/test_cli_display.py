"""What support staff and integrators read in a terminal: `gateway envelopes` and `gateway rejects`, run as
they run them (a subprocess, an 80- or 120-column terminal), against a store written by hand so that every
IdLot, time and reject below is known."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.codes import EnvelopeState, EventState, RejectCode

TRAITE = "5b593516-0c2e-4d8f-9a41-7e3b2c1d0f98"  # created 2026-11-30 09:32:27 UTC: 10:32 in Paris
TWIN_A = "abcdef01-1111-4111-8111-111111111111"  # two IdLots beginning alike (8 characters)
TWIN_B = "abcdef01-2222-4222-8222-222222222222"
SENT_AT = datetime(2026, 11, 30, 9, 32, 27, tzinfo=UTC)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    import sqlalchemy as sa

    from gateway.settings import Settings
    from gateway.store.db import create_schema, make_engine
    from gateway.store.models import DOC_LOT, documents_t, envelopes_t, events_t

    data_dir = tmp_path_factory.mktemp("affichage") / "data"
    engine = make_engine(Settings(_env_file=None, data_dir=data_dir).db_url)
    create_schema(engine)
    envelope = {"byte_size": 1000, "first_sent_at": None, "receipt_at": None, "report_at": None, "run_id": None,
                "accepted_count": None, "rejected_count": None, "next_attempt_at": None}
    event = {"operation": "C", "event_type": "PEM", "payload": "{}", "content_hash": "0" * 64, "version": 1,
             "created_at": SENT_AT, "updated_at": SENT_AT, "envelope_id": None}
    with engine.begin() as conn:
        conn.execute(sa.insert(envelopes_t), [
            {**envelope, "id": TRAITE, "state": "TRAITE", "event_count": 1952, "attempts": 1,
             "accepted_count": 1840, "rejected_count": 112, "created_at": SENT_AT},
            {**envelope, "id": TWIN_A, "state": "SANS_REPONSE", "event_count": 40, "attempts": 3,
             "created_at": datetime(2026, 11, 29, 1, 5, tzinfo=UTC)},
            {**envelope, "id": TWIN_B, "state": "SIGNE", "event_count": 12, "attempts": 0,
             "created_at": datetime(2026, 11, 28, 1, 5, tzinfo=UTC),  # held back: DUDE was found down
             "next_attempt_at": datetime(2026, 11, 30, 2, 7, tzinfo=UTC)},
        ])
        conn.execute(sa.insert(documents_t), [{"envelope_id": TRAITE, "kind": DOC_LOT, "at": SENT_AT,
                                                "sha256": "0" * 64, "body": b"<LotEvenements>signe</LotEvenements>"}])
        conn.execute(sa.insert(events_t), [
            {**event, "key": "05010-100083", "code_ml": "05010", "state": "INVALIDE", "reject_code": "E08",
             "reject_message": "siret « 36042511229757 » invalide : la clé de contrôle (Luhn) est fausse.",
             "source_file": "P3_05010_20261129.csv", "source_line": 43},
            {**event, "key": "03926-100076", "code_ml": "03926", "state": "REJETE", "reject_code": "E02",
             "reject_message": "Le demandeur d'emploi n'est pas confié à la mission locale 03926.",
             "source_file": "P3_03926_20261129.csv", "source_line": 41, "envelope_id": TRAITE},
        ])
    engine.dispose()
    return data_dir


def gateway(data_dir: Path, *args: str, columns: int = 80, **env: str) -> subprocess.CompletedProcess:
    """The command in a terminal `columns` wide (rich reads COLUMNS), without the caller's GATEWAY_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "FORCE_COLOR"))}
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--data-dir", str(data_dir)],
                          capture_output=True, timeout=120, cwd=data_dir.parent,
                          env={**clean, "COLUMNS": str(columns), **env})


def said(text: bytes) -> str:
    """The words on the screen, whatever rich wrapped where."""
    return " ".join(text.decode().split())


def rows(out: bytes) -> dict[str, list[str]]:
    """A rich table's rows as read on screen, by their first cell: each cell's lines joined by a space (a word
    rich had to cut in two reads as two words)."""
    table: dict[str, list[str]] = {}
    current: list[list[str]] = []
    for line in out.decode().splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if cells[0]:
            current = [[] for _ in cells]
            table.setdefault(cells[0], current)  # a repeated first cell (a code) keeps its first row
        for parts, cell in zip(current, cells, strict=True):
            if cell:
                parts.append(cell)
    return {first: [" ".join(parts) for parts in row] for first, row in table.items()}


# --- gateway envelopes list -------------------------------------------------------------------------------------


def test_envelopes_list_never_cuts_the_idlot_in_80_columns(data_dir: Path) -> None:
    proc = gateway(data_dir, "envelopes", "list", columns=80)
    assert proc.returncode == 0
    assert all(len(line) <= 80 for line in proc.stdout.decode().splitlines())
    assert list(rows(proc.stdout)) == [TRAITE, TWIN_A, TWIN_B]  # whole, on one line: what people copy


def test_envelopes_list_shows_french_states_and_every_count_in_80_columns(data_dir: Path) -> None:
    listed = rows(gateway(data_dir, "envelopes", "list", columns=80).stdout)
    assert listed[TRAITE][1:3] == [EnvelopeState.TRAITE.label, "1952 1840 acceptés 112 rejetés"]
    # DUDE never answered this one: its attempts are what to notice
    assert listed[TWIN_A][1:3] == [f"{EnvelopeState.SANS_REPONSE.label} 3 tentatives", "40"]
    # held back (DUDE down, a back-off): when it goes next, which `gateway envelopes list` did not say
    assert listed[TWIN_B][1:3] == [f"{EnvelopeState.SIGNE.label} prochain essai 30/11/2026 03:07", "12"]
    assert not {row[1].split()[0] for row in listed.values()} & set(EnvelopeState.__members__)  # no raw code


def test_envelopes_list_shows_times_in_the_gateway_zone_and_says_which(data_dir: Path) -> None:
    paris = gateway(data_dir, "envelopes", "list", columns=120).stdout
    assert rows(paris)[TRAITE][3] == "30/11/2026 10:32"
    assert said(paris).count("Europe/Paris") == 1
    cayenne = gateway(data_dir, "envelopes", "list", columns=120, GATEWAY_TIMEZONE="America/Cayenne").stdout
    assert rows(cayenne)[TRAITE][3] == "30/11/2026 06:32"
    assert said(cayenne).count("America/Cayenne") == 1
    # scripts keep ISO 8601 with its offset, whatever the zone people read
    listed = json.loads(gateway(data_dir, "envelopes", "list", "--json").stdout)["envelopes"]
    assert {e["id"]: e["created_at"] for e in listed}[TRAITE] == "2026-11-30T09:32:27+00:00"
    assert {e["id"]: e["next_attempt_at"] for e in listed} == {TRAITE: None, TWIN_A: None,
                                                               TWIN_B: "2026-11-30T02:07:00+00:00"}


# --- gateway envelopes show -------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["5b593516…", "5b593516", "5b593516-0c2e", " 5b593516… "])
def test_envelopes_show_finds_an_envelope_from_the_start_of_its_idlot(data_dir: Path, given: str) -> None:
    proc = gateway(data_dir, "envelopes", "show", given)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"<LotEvenements>signe</LotEvenements>"


def test_envelopes_show_refuses_a_start_shared_by_several_envelopes_naming_them(data_dir: Path) -> None:
    proc = gateway(data_dir, "envelopes", "show", "abcdef01…")
    err = said(proc.stderr)
    assert proc.returncode == 2 and proc.stdout == b""
    assert "Erreur AMBIGUOUS" in err and "plusieurs lots commencent par abcdef01" in err
    assert TWIN_A in err and TWIN_B in err


def test_envelopes_show_refuses_a_start_shorter_than_8_characters(data_dir: Path) -> None:
    proc = gateway(data_dir, "envelopes", "show", "5b59351")
    err = said(proc.stderr)
    assert proc.returncode == 2 and "Erreur NOT_FOUND" in err and "au moins 8 caractères" in err


def test_envelopes_show_a_document_not_received_is_a_not_found_error(data_dir: Path) -> None:
    proc = gateway(data_dir, "envelopes", "show", TRAITE, "--document", "compte-rendu")
    err = said(proc.stderr)
    assert proc.returncode == 2 and f"Erreur NOT_FOUND : aucun compte rendu pour le lot {TRAITE}" in err


# --- gateway rejects --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 120])
def test_rejects_say_what_to_correct(data_dir: Path, columns: int) -> None:
    text = said(gateway(data_dir, "rejects", columns=columns).stdout)
    assert f"E08 {RejectCode.E08.label} — {RejectCode.E08.hint}" in text
    assert f"E02 {RejectCode.E02.label} — {RejectCode.E02.hint}" in text
    assert text.count(RejectCode.E08.hint) == 1


def test_rejects_show_states_in_french(data_dir: Path) -> None:
    listed = rows(gateway(data_dir, "rejects", columns=120).stdout)
    assert listed["E08"][3] == EventState.INVALIDE.label != "INVALIDE"
    assert listed["E02"][3] == EventState.REJETE.label != "REJETE"


def test_rejects_show_each_event_whole_on_one_line_in_80_columns(data_dir: Path) -> None:
    """The key and version support staff look up in Parcours 3: neither cut nor split over two lines."""
    lines = gateway(data_dir, "rejects", columns=80).stdout.decode().splitlines()
    for event in ("05010-100083 v1", "03926-100076 v1"):
        assert any(f"│ {event} │" in line for line in lines), event


@pytest.mark.parametrize("ml", ["3926", "039260", "O3926"])
def test_rejects_refuse_a_mission_locale_that_is_not_five_digits(data_dir: Path, ml: str) -> None:
    proc = gateway(data_dir, "rejects", "--ml", ml)
    assert proc.returncode == 2 and proc.stdout == b""
    assert "cinq chiffres attendus" in said(proc.stderr) and ml in said(proc.stderr)


def test_a_run_summary_names_dude_in_capitals_in_its_envelope_states() -> None:
    """"Lots : rejeté en bloc par le dude : 1": the label was lowered whole, DUDE's name with it."""
    from collections import Counter

    from rich.console import Console

    from gateway.cli.report import render_summary
    from gateway.pipeline.run import RunSummary

    summary = RunSummary(run_id=4, trigger="cli", dry_run=False, inputs=[], started_at=SENT_AT,
                         finished_at=SENT_AT, outcome="TERMINE",
                         envelopes=Counter({EnvelopeState.REJETE.value: 1, EnvelopeState.TRAITE.value: 2}),
                         states=Counter({EventState.REJETE.value: 3}))
    out = Console(record=True, width=200)
    render_summary(summary, out)
    text = out.export_text()
    assert "Lots : rejeté en bloc par le DUDE : 1, traité, compte rendu reçu et rapproché : 2" in text, text
