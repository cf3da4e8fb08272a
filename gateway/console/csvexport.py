"""The rejects list as a CSV a counsellor works through in Excel (issue 4).

For Excel in French: UTF-8 with a byte order mark (without it Excel reads the accents as Windows-1252),
``;`` between fields (Excel-FR's list separator), CRLF line ends, dates JJ/MM/AAAA. One line per event:
where to find it in Parcours 3 (mission locale, event number, file number, counsellor, source file and
line), what is wrong (code, French label, message) and what to correct (the catalogue's hint, the
Parcours 3 columns involved). No names or birth dates: the file number finds the young person in
Parcours 3, and a file that leaves the console should carry as little personal data as it can (brief §6).

Cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return) are prefixed with an apostrophe (OWASP "CSV injection"): messages and file names come
from outside.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator

import sqlalchemy as sa

from gateway.codes import EventState, EventType
from gateway.console.labels import field_label, fields_in_cause, reject_info, reject_message

BOM = "\ufeff"
HEADER = ("Mission locale", "Clé de l'événement", "N° de l'événement", "Version", "N° de dossier", "Conseiller",
          "Type d'événement", "Date de l'événement", "État", "Code", "Libellé du rejet", "Message",
          "Ce qu'il faut faire", "Champs Parcours 3 à vérifier", "Fichier source", "Ligne")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _label(enum, value: str | None) -> str:
    try:
        return enum(value).label if value else ""
    except ValueError:
        return value or ""


def line(row: sa.Row) -> list[str]:
    fields = json.loads(row.payload or "{}")
    known = reject_info(row.reject_code)
    involved = fields_in_cause(row.reject_code, row.reject_message)
    return [safe_cell(v) for v in (
        row.code_ml, row.key, fields.get("id_evenement"), row.version, fields.get("num_dossier"),
        fields.get("conseiller"), _label(EventType, row.event_type),
        row.date_evenement.strftime("%d/%m/%Y") if row.date_evenement else "", _label(EventState, row.state),
        row.reject_code, known.label if known else "", reject_message(row.reject_message, row.state),
        known.hint if known else "",
        ", ".join(f"{field_label(f)} ({f})" for f in involved), row.source_file, row.source_line)]


def csv_chunks(rows: Iterable[sa.Row], *, every: int = 200) -> Iterator[bytes]:
    """The file, encoded, a few hundred lines at a time (the response streams them)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    buffer.write(BOM)
    writer.writerow(HEADER)
    for count, row in enumerate(rows, start=1):
        writer.writerow(line(row))
        if count % every == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")
