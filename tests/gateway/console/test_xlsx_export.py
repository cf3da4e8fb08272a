"""The rejects list as an Excel workbook, read back as a counsellor would see it in Excel: identifiers that
look like numbers stay text (``01277``, a 20-digit file number), the date is a date, a message that looks like
a formula stays a message, and it is the very list of the CSV, in the user's scope."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from gateway.api.auth import create_client
from gateway.codes import EventType
from gateway.console.csvexport import HEADER, safe_cell
from gateway.pipeline.run import run_batch
from gateway.store.models import events_t, utcnow
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export
from tests.gateway.console.conftest import Browser

#: The export's queries hold on SQLite and PostgreSQL alike (tests/backends.py).
database_url = on_both_backends()

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FILE_NUMBER = "00012345678901234567"  # leading zeros, and 20 digits Excel would show as 1,23457E+16
FORMULAS = {"01277-0007": '=HYPERLINK("https://exemple.invalid/";"Corriger ici")', "01277-0008": "@SOMME(A1:A9)",
            "01277-0009": "-1+2"}


def workbook(answer):
    """The downloaded workbook's sheet, as openpyxl reads it back (what Excel shows)."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == XLSX
    return load_workbook(io.BytesIO(answer.content))["Rejets"]


def values(sheet) -> list[tuple]:
    return [tuple(c.value for c in row) for row in sheet.iter_rows()]


def as_csv(value) -> str:
    """A workbook cell as the CSV writes the same value."""
    if isinstance(value, datetime):
        value = value.strftime("%d/%m/%Y")
    return safe_cell(value)


def csv_rows(answer) -> list[list[str]]:
    assert answer.status_code == 200
    return list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"), newline=""), delimiter=";"))


@pytest.fixture
def ml_01277(gw, night, tmp_path, console_app):
    """A mission locale whose code starts with 0, its rejects (invalid: SIRET) with numbers Excel would eat,
    three of them with a message that looks like a formula; and its support user, signed in."""
    lines = [p3_line(EventType.MER, id_evenement=f"000{n}", code_ml="01277", num_dossier=FILE_NUMBER,
                     conseiller="0042", siret="73282932000075", date_evenement="03/11/2026") for n in (6, 7, 8, 9)]
    run_batch(gw, [write_export(tmp_path / "P3_01277_20261128.csv", lines)])
    with gw.engine.begin() as conn:
        for key, message in FORMULAS.items():
            conn.execute(events_t.update().where(events_t.c.key == key).values(reject_message=message))
    _, token = create_client(gw.engine, name="accueil-01277", role="support", ml_codes=["01277"], now=utcnow())
    with TestClient(console_app, follow_redirects=False) as http:
        user = Browser(http)
        assert user.sign_in(token).status_code == 303
        yield user


def test_identifiers_stay_text_the_date_is_a_date_and_the_line_a_number(ml_01277) -> None:
    answer = ml_01277.get("/console/rejets.xlsx")
    assert re.fullmatch(r'attachment; filename="rejets-01277-\d{8}\.xlsx"', answer.headers["content-disposition"])
    sheet = workbook(answer)
    rows = values(sheet)
    assert rows[0] == HEADER
    lines = {r[1]: dict(zip(HEADER, r, strict=True)) for r in rows[1:]}
    assert set(lines) == {"01277-0006", "01277-0007", "01277-0008", "01277-0009"}
    line = lines["01277-0006"]
    assert line["Mission locale"] == "01277" and line["N° de l'événement"] == "0006"
    assert line["N° de dossier"] == FILE_NUMBER and line["Conseiller"] == "0042"
    assert line["Date de l'événement"] == datetime(2026, 11, 3) and line["Code"] == "E08"
    assert line["Fichier source"] == "P3_01277_20261128.csv" and isinstance(line["Ligne"], int)
    assert isinstance(line["Version"], int)
    cells = {c.column_letter: c for c in sheet[2]}
    for column in "ABCEFO":  # mission locale, key, event number, file number, counsellor, source file
        assert cells[column].data_type == "s", column
    assert cells["H"].is_date and cells["H"].number_format == "dd/mm/yyyy"
    assert cells["P"].data_type == "n"
    raw = answer.content.decode("latin-1")
    assert "LEFEVRE" not in raw and "Zoe" not in raw  # no names in a file that leaves the console


def test_a_message_that_looks_like_a_formula_is_text_and_no_formula_is_written(ml_01277) -> None:
    answer = ml_01277.get("/console/rejets.xlsx")
    sheet = workbook(answer)
    messages = {row[1].value: row[HEADER.index("Message")] for row in sheet.iter_rows(min_row=2)}
    for key, message in FORMULAS.items():
        assert messages[key].value == message and messages[key].data_type == "s", key
    with zipfile.ZipFile(io.BytesIO(answer.content)) as book:
        sheets = [n for n in book.namelist() if n.startswith("xl/worksheets/")]
        assert sheets and not [n for n in sheets if re.search(rb"<(\w+:)?f[ >/]", book.read(n))]


def test_the_sheet_is_named_its_header_bold_frozen_and_filtered(signed_in) -> None:
    answer = signed_in("support_69001").get("/console/rejets.xlsx")
    assert re.fullmatch(r'attachment; filename="rejets-69001-\d{8}\.xlsx"', answer.headers["content-disposition"])
    sheet = workbook(answer)
    assert sheet.parent.sheetnames == ["Rejets"]
    assert all(c.font.b and c.font.sz == 11 for c in sheet[1])
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == f"A1:P{sheet.max_row}" and sheet.max_row == 3
    assert all((sheet.column_dimensions[c].width or 0) >= 8 for c in "ABCDEFGHIJKLMNOP")
    assert sheet.column_dimensions["L"].width > sheet.column_dimensions["A"].width  # the message has room


@pytest.mark.parametrize("filters", ["", "?code=E08", "?code=E01&ml=69002", "?etat=ACCEPTE", "?q=69001-3"])
def test_the_workbook_holds_the_csvs_rows_for_the_same_filter(signed_in, ml_01277, filters) -> None:
    admin = signed_in("admin")
    expected = csv_rows(admin.get(f"/console/rejets.csv{filters}"))
    rows = values(workbook(admin.get(f"/console/rejets.xlsx{filters}")))
    assert [[as_csv(v) for v in row] for row in rows] == expected
    assert len(rows) > 1
    name = admin.get(f"/console/rejets.xlsx{filters}").headers["content-disposition"]
    assert name == admin.get(f"/console/rejets.csv{filters}").headers["content-disposition"].replace(".csv", ".xlsx")


def test_a_support_user_gets_their_mission_locale_only(signed_in, ml_01277) -> None:
    user = signed_in("support_69001")
    mine = values(workbook(user.get("/console/rejets.xlsx")))[1:]
    assert {r[0] for r in mine} == {"69001"} and {r[1] for r in mine} == {"69001-3", "69001-4"}
    # another mission locale asked for is left out, as on the page and in the CSV
    asked = values(workbook(user.get("/console/rejets.xlsx?ml=69002")))[1:]
    assert asked and {r[0] for r in asked} == {"69001"}
    assert {r[0] for r in values(workbook(ml_01277.get("/console/rejets.xlsx?ml=69001")))[1:]} == {"01277"}
    everyone = {r[0] for r in values(workbook(signed_in("admin").get("/console/rejets.xlsx")))[1:]}
    assert {"69001", "69002", "01277"} <= everyone


def test_the_rejects_page_links_the_workbook_with_its_filters(signed_in) -> None:
    page = signed_in("support_69001").get("/console/rejets?code=E08").text
    link = re.search(r'<a [^>]*href="(/console/rejets\.xlsx[^"]*)"[^>]*>([^<]+)</a>', page)
    assert link and "code=E08" in link[1] and link[2] == "Exporter en Excel (.xlsx)"
    assert page.index("rejets.csv") < page.index("rejets.xlsx")  # next to the CSV's


def test_an_empty_list_is_a_workbook_with_its_header(signed_in) -> None:
    sheet = workbook(signed_in("support_69001").get("/console/rejets.xlsx?code=E03"))
    assert values(sheet) == [HEADER] and sheet.auto_filter.ref == "A1:P1"


def test_a_control_character_in_a_message_does_not_break_the_file(signed_in, gw) -> None:
    with gw.engine.begin() as conn:
        conn.execute(events_t.update().where(events_t.c.key == "69001-3").values(reject_message="SOH\x01 ici"))
    sheet = workbook(signed_in("support_69001").get("/console/rejets.xlsx"))
    messages = {row[1]: row[HEADER.index("Message")] for row in values(sheet)[1:]}
    assert messages["69001-3"] == "SOH\ufffd ici"
