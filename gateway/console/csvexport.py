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

The lines are read once, as `record`s (each value with its own type: an identifier a string, the date a
date, the line a number), and written by two writers: `csv_chunks` here, and `gateway.console.xlsxexport`
for the workbook, where a cell can say "this is text" and ``01277`` stays ``01277`` in Excel. One list, the
same columns, whichever the counsellor downloads.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import date

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


#: One line of the export, a value per `HEADER` column: ``str`` for identifiers and words (never a number,
#: so that nothing reads ``01277`` as 1277), ``int`` for the version and the source line, ``date`` for the
#: event's date, ``None`` for nothing.
Record = tuple[str | int | date | None, ...]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def record(row: sa.Row) -> Record:
    fields = json.loads(row.payload or "{}")
    known = reject_info(row.reject_code)
    involved = fields_in_cause(row.reject_code, row.reject_message)
    return (
        row.code_ml, row.key, _text(fields.get("id_evenement")), row.version, _text(fields.get("num_dossier")),
        _text(fields.get("conseiller")), _label(EventType, row.event_type), row.date_evenement,
        _label(EventState, row.state), row.reject_code, known.label if known else "",
        reject_message(row.reject_message, row.state), known.hint if known else "",
        ", ".join(f"{field_label(f)} ({f})" for f in involved), row.source_file, row.source_line)


def records(rows: Iterable[sa.Row]) -> Iterator[Record]:
    """The export's lines, one per event of ``rows`` (`gateway.console.queries.export_rows`), as they come."""
    return map(record, rows)


def line(values: Record) -> list[str]:
    """A record as the CSV's fields: the date JJ/MM/AAAA, every field defused."""
    return [safe_cell(v.strftime("%d/%m/%Y") if isinstance(v, date) else v) for v in values]


def csv_chunks(lines: Iterable[Record], *, every: int = 200) -> Iterator[bytes]:
    """The file, encoded, a few hundred lines at a time (the response streams them)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    buffer.write(BOM)
    writer.writerow(HEADER)
    for count, values in enumerate(lines, start=1):
        writer.writerow(line(values))
        if count % every == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")
