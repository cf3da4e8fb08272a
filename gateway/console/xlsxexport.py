"""The rejects list as an Excel workbook: the CSV's lines, with cells that say what they hold.

Excel reads a CSV's fields as it likes: a mission locale ``01277`` becomes 1277, a long file number goes to
scientific notation, a date may be read another way; a CSV cannot tell it "this column is text". A workbook
can: identifiers (mission locale, key, event number, file number, counsellor, source file) and every word are
string cells, the version and the source line numbers, the event's date a date cell shown JJ/MM/AAAA.

The same `gateway.console.csvexport.record`s as the CSV (same rows, columns, order, scope, and no names or
birth dates), written by openpyxl in write-only mode: rows go to a temporary file as they come, strings are
written inline (no shared-strings table growing in memory), so a large list is never whole in memory.

No formula is ever written: openpyxl makes a string starting with ``=`` a formula (and ``#N/A`` an error), so
each text cell is told it is a string after its value is set; messages and file names come from outside. Text
cells also carry Excel's quote prefix, so that a cell edited in Excel stays text rather than turning into a
formula or a number.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from copy import copy
from datetime import date
from typing import IO

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.styles.fonts import DEFAULT_FONT
from openpyxl.utils import get_column_letter

from gateway.console.csvexport import HEADER, Record

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SHEET = "Rejets"
DATE_FORMAT = "dd/mm/yyyy"  # format codes are stored in English; Excel in French shows JJ/MM/AAAA
#: Widths in characters, one per `HEADER` column: identifiers fit, long texts readable without a huge row.
WIDTHS = (14, 18, 16, 9, 14, 16, 24, 14, 24, 8, 34, 60, 60, 40, 28, 8)
assert len(WIDTHS) == len(HEADER)
BOLD = copy(DEFAULT_FONT)  # the workbook's own font, bold: a font saying only "bold" leaves size and face to guess
BOLD.b = True


def _text_cell(sheet, value: str, *, bold: bool = False) -> Cell:
    # A character XML 1.0 cannot carry (a stray control character in a message) would make openpyxl refuse the
    # whole file: it is shown as U+FFFD instead.
    cell = WriteOnlyCell(sheet, ILLEGAL_CHARACTERS_RE.sub("\ufffd", value))
    cell.data_type = "s"  # after the value: openpyxl has just made "=…" a formula and "#N/A" an error
    cell.quotePrefix = True
    if bold:
        cell.font = BOLD
    return cell


def _cell(sheet, value: object) -> Cell | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        cell = WriteOnlyCell(sheet, value)
        cell.number_format = DATE_FORMAT  # after the value, which sets openpyxl's default format
        return cell
    if isinstance(value, int) and not isinstance(value, bool):
        return WriteOnlyCell(sheet, value)
    return _text_cell(sheet, str(value))


def write_workbook(lines: Iterable[Record], out: IO[bytes]) -> int:
    """Write the workbook of ``lines`` to ``out``: one sheet "Rejets", its header bold, frozen and filtered;
    return how many lines it holds."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet(SHEET)
    for column, width in enumerate(WIDTHS, start=1):  # before the first row: write-only writes them first
        sheet.column_dimensions[get_column_letter(column)].width = width
    sheet.freeze_panes = "A2"
    sheet.append([_text_cell(sheet, title, bold=True) for title in HEADER])
    count = 0
    for values in lines:
        sheet.append([_cell(sheet, v) for v in values])
        count += 1
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(HEADER))}{count + 1}"  # written after the rows
    book.save(out)
    return count


def workbook_file(lines: Iterable[Record]) -> IO[bytes]:
    """The workbook in a temporary file (deleted once closed), rewound: a zip is only complete once written
    whole, so it is written before the answer starts, and an error is a 500 rather than a truncated file."""
    out = tempfile.TemporaryFile()
    try:
        write_workbook(lines, out)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def file_chunks(out: IO[bytes], *, size: int = 64 * 1024) -> Iterator[bytes]:
    """``out``'s bytes, a chunk at a time (the response streams them), then ``out`` closed."""
    try:
        while chunk := out.read(size):
            yield chunk
    finally:
        out.close()
