"""Streaming reader of Parcours 3 exports (brief §3): bytes in, one `SourceRecord` per CSV record out.

The reader knows the file format, not the business: it finds the columns by name, drops ``nir``
on the spot (brief §3, §6: never sent, never stored, never logged) and hands every other known
column on as text. Parsing values and pre-flight are `adapters.parcours3.mapping`'s job.

Why it reads the way it does:

* **Bounded memory.** A national export can hold hundreds of thousands of lines. The file is read
  one physical line at a time with a length limit (``readline(limit)``), decoded line by line,
  and fed to the stdlib `csv` parser; nothing ever holds more than one record.
* **A bad line costs one line.** A line that does not decode, a record with the wrong number of
  fields or one that runs away (an unbalanced quote swallowing the following lines, a field of
  megabytes) becomes a `SourceRecord` with ``problem`` set, and reading goes on. A runaway
  record is reported at the line where it began and reading resumes at the line after that one,
  so the lines it swallowed are read again on their own (STYLE "record outcomes, don't stop").
* **Whole-file errors are raised at once**, before any record is produced: an empty file, a
  missing required column (`ExportFileError` with codes ``P3_EMPTY``, ``P3_COLUMN_MISSING``…).

Encoding (brief §3): Windows-1252 by default; a UTF-8 BOM means UTF-8; otherwise the first 64 KiB
are sniffed (valid UTF-8 holding non-ASCII bytes means UTF-8). An explicit encoding can be given.

Hostile input (issue 6, ``fixtures/hostile/``):

* a file that is mostly UTF-8 with a few lines in Windows-1252 (two exports pasted together) is read as
  UTF-8 — its non-ASCII bytes are mostly well-formed UTF-8 sequences, which French Windows-1252 text
  practically never makes — and only the foreign lines are rejected, as undecodable; read as
  Windows-1252 instead, every accented name of the file would be silently garbled;
* a NUL byte has no place in a text export: the record holding one is rejected (a corrupt line); a
  file full of them (UTF-16, UTF-32, a binary file) is refused whole (``P3_ENCODING``);
* an export is a regular file, opened as itself: a symbolic link is refused whole (``P3_SYMLINK``), wherever
  it points, and so is a pipe or a device (``P3_UNREADABLE``), by the open itself (`open_export`).
"""

from __future__ import annotations

import codecs
import csv
import errno
import logging
import os
import re
import stat
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO

from gateway.errors import ExportFileError, unreadable

log = logging.getLogger(__name__)

#: Columns every export must have (brief §3); the others are optional.
REQUIRED_COLUMNS = (
    "id_evenement", "code_ml", "identifiant_pe", "nom", "prenom", "date_naissance", "conseiller",
    "type_evenement", "date_evenement",
)
OPTIONAL_COLUMNS = (
    "num_dossier", "operation", "date_debut", "date_fin", "modalite", "premier_entretien",
    "formacode", "organisme", "code_prestation", "num_offre", "siret", "code_rome", "type_contrat",
    "resultat", "parcours", "motif", "commentaire", "saisi_le",
)
KNOWN_COLUMNS = frozenset(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
#: Recognised only to be left out: neither kept in `SourceRecord.fields` nor warned about.
DROPPED_COLUMNS = frozenset({"nir"})

ENCODINGS = ("auto", "cp1252", "utf-8", "utf-8-sig")
SNIFF_BYTES = 64 * 1024
DEFAULT_MAX_RECORD_LINES = 50
DEFAULT_MAX_RECORD_BYTES = 64 * 1024  # under csv.field_size_limit()'s default (128 KiB)

_BOM = codecs.BOM_UTF8
_UTF8_WARNING = ("Des caractères accentués en UTF-8 apparaissent après les 64 premiers Kio alors que "
                 "le fichier a été lu en Windows-1252 : préciser l'encodage du fichier.")


class _Dialect(csv.Dialect):
    """Parcours 3's CSV (brief §3). Lenient like Excel: a stray quote inside a field is text."""

    delimiter = ";"
    quotechar = '"'
    doublequote = True
    skipinitialspace = False
    lineterminator = "\r\n"
    quoting = csv.QUOTE_MINIMAL
    strict = False


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One CSV record of an export, as text, with where it starts.

    ``line`` is the physical line where the record begins, counting the header as line 1, so
    support staff find it in a text editor. ``fields`` holds the known columns present in the
    file (lower-case names), never ``nir``; it is empty when the record could not be split.
    ``problem`` (French) says why the record cannot be trusted; such a record is rejected whole.
    """

    source_file: str
    line: int
    fields: dict[str, str]
    problem: str | None = None


class _RecordTooLong(Exception):
    """Raised from inside the csv parser's line source to cut a runaway record short."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


class _Lines:
    """The physical lines of a binary stream, decoded, as the iterator `csv.reader` pulls from.

    It remembers the lines of the record being parsed (at most ``max_lines``), so that a runaway
    record can be cut (`_RecordTooLong` raised from `__next__`; `csv.reader` resets its state at
    the next record) and its lines after the first one read again (`resync`).
    """

    def __init__(self, stream: BinaryIO, *, encoding: str, first_line: int, max_lines: int,
                 max_bytes: int, watch_for_utf8: bool = False):
        self._readline = stream.readline
        self._encoding = encoding
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._pending: deque[tuple[int, str | None, bool]] = deque()
        self._next_lineno = first_line
        self._watch_for_utf8 = watch_for_utf8
        self.bytes_read = 0
        self.utf8_suspected = False
        # the record being parsed: its lines as (number, text or None if oversized, decoded well)
        self.record: list[tuple[int, str | None, bool]] = []
        self.record_size = 0
        self.record_has_nul = False

    def begin_record(self) -> None:
        self.record = []
        self.record_size = 0
        self.record_has_nul = False

    @property
    def record_start(self) -> int:
        return self.record[0][0] if self.record else self._peek_lineno()

    @property
    def record_decoded_well(self) -> bool:
        record = self.record
        if len(record) == 1:  # the usual one-line record, asked for every record: no generator
            return record[0][2]
        return all(ok for _, _, ok in record)

    def resync(self) -> None:
        """Forget the current record and read its lines again from its second one."""
        self._pending.extendleft(reversed(self.record[1:]))
        self.record = []

    def _peek_lineno(self) -> int:
        return self._pending[0][0] if self._pending else self._next_lineno

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        entry = self._pending.popleft() if self._pending else self._read()
        if entry is None:
            raise StopIteration
        self.record.append(entry)
        lineno, text, _ = entry
        if text is None:
            raise _RecordTooLong(f"Ligne trop longue (plus de {self._max_bytes} octets).")
        self.record_size += len(text)
        if "\x00" in text:
            self.record_has_nul = True
        if len(self.record) > self._max_lines or self.record_size > self._max_bytes:
            raise _RecordTooLong(
                f"Enregistrement trop long (plus de {self._max_lines} lignes ou "
                f"{self._max_bytes} octets) : un guillemet n'est sans doute pas refermé."
            )
        return text

    def _read(self) -> tuple[int, str | None, bool] | None:
        raw = self._readline(self._max_bytes + 1)
        if not raw:
            return None
        lineno = self._next_lineno
        self._next_lineno += 1
        self.bytes_read += len(raw)
        if len(raw) > self._max_bytes and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line, in bounded reads
                raw = self._readline(self._max_bytes)
                self.bytes_read += len(raw)
            return lineno, None, True
        if self._watch_for_utf8 and not raw.isascii():
            self._watch_for_utf8 = False
            try:
                raw.decode("utf-8")
                self.utf8_suspected = True
            except UnicodeDecodeError:
                pass
        try:
            return lineno, raw.decode(self._encoding), True
        except UnicodeDecodeError:
            return lineno, raw.decode(self._encoding, "replace"), False


#: What an unknown column's name may look like to be repeated in a warning or a log line (else its position).
_COLUMN_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
#: Unknown columns told one by one; the rest are counted.
_UNKNOWN_COLUMNS_TOLD = 10


class ExportReader:
    """An opened Parcours 3 export: header checked, records streamed on each iteration.

    ``encoding`` is the one in use (``cp1252``, ``utf-8`` or ``utf-8-sig``), ``columns`` the
    known columns found, ``warnings`` what was tolerated (French, e.g. an unknown column). The file
    is opened again for each iteration and closed at its end, so nothing is left open in between.
    """

    def __init__(self, path: Path, *, encoding: str, max_record_lines: int, max_record_bytes: int):
        self.path = path
        self.source_file = path.name
        self.encoding = encoding
        self.warnings: list[str] = []
        self._max_lines = max_record_lines
        self._max_bytes = max_record_bytes
        self._start = 0  # byte offset of the first data line
        self._first_line = 1
        self._index: tuple[tuple[str, int], ...] = ()
        self._width = 0
        self._sniffed_ascii = False
        self._identity: tuple[int, int, int, int] | None = None  # of the file whose header was read (`_identity`)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._index)

    # -- opening ------------------------------------------------------------------------------

    def _open_header(self, requested: str) -> None:
        with open_export(self.path) as stream:
            self._identity = _identity(stream)
            head = stream.read(SNIFF_BYTES)
            _refuse_binary(head, self.path)
            self.encoding, self._sniffed_ascii = _choose_encoding(head, requested)
            skip = len(_BOM) if head.startswith(_BOM) and self.encoding.startswith("utf-8") else 0
            stream.seek(skip)
            lines = self._lines(stream, first_line=1)
            reader = csv.reader(lines, _Dialect)
            header = None
            while header is None:
                lines.begin_record()
                try:
                    row = next(reader)
                except StopIteration:
                    raise ExportFileError("fichier vide, pas de ligne d'en-tête.", path=str(self.path),
                                          code="P3_EMPTY") from None
                except (_RecordTooLong, csv.Error) as exc:
                    raise ExportFileError(f"ligne d'en-tête illisible ({exc}).", path=str(self.path),
                                          code="P3_HEADER_UNREADABLE") from exc
                if not _is_blank(row):
                    header = row
            self._start = skip + lines.bytes_read
            self._first_line = lines.record_start + len(lines.record)
            self._read_header(header)

    def _read_header(self, header: list[str]) -> None:
        """Index the known columns, refuse a file without the required ones, then tell the unknown ones.

        In that order, and an unknown column named only when it reads like a column name: a file without
        its header line (or any file that is not an export) has a record where the header should be, and
        its "unknown columns" were logged one by one (a name, a birth date, a social security number)
        before the file was refused for the missing columns."""
        index: list[tuple[str, int]] = []
        seen: set[str] = set()
        unknown: list[tuple[int, str]] = []
        for position, raw in enumerate(header, start=1):
            name = raw.replace("\ufeff", "").strip().lower()
            if name in seen and (name in KNOWN_COLUMNS or name in DROPPED_COLUMNS):
                raise ExportFileError(f"colonne « {name} » présente deux fois.", path=str(self.path),
                                      code="P3_COLUMN_DUPLICATE")
            seen.add(name)
            if name in KNOWN_COLUMNS:
                index.append((name, position - 1))
            elif name not in DROPPED_COLUMNS:
                unknown.append((position, name))
        missing = [name for name in REQUIRED_COLUMNS if name not in seen]
        if missing:
            other = next((name for sep, name in ((",", "des virgules"), ("\t", "des tabulations"), ("|", "des barres"))
                          if len(header) == 1 and sep in header[0]), None)
            hint = f" Le séparateur attendu est « ; » : ce fichier semble séparé par {other}." if other else ""
            raise ExportFileError(
                f"colonne(s) obligatoire(s) absente(s) de l'en-tête : {', '.join(missing)}.{hint}",
                path=str(self.path), code="P3_COLUMN_MISSING",
            )
        for position, name in unknown[:_UNKNOWN_COLUMNS_TOLD]:
            label = f"« {name} »" if _COLUMN_NAME.fullmatch(name) else f"en position {position}"
            self.warnings.append(f"Colonne inconnue ignorée : {label}.")
            log.warning("%s: unknown column ignored: %s", self.source_file,
                        repr(name) if _COLUMN_NAME.fullmatch(name) else f"at position {position}")
        if len(unknown) > _UNKNOWN_COLUMNS_TOLD:
            self.warnings.append(f"… et {len(unknown) - _UNKNOWN_COLUMNS_TOLD} autre(s) colonne(s) inconnue(s).")
        self._index = tuple(index)
        self._width = len(header)

    def _lines(self, stream: BinaryIO, *, first_line: int) -> _Lines:
        return _Lines(stream, encoding="utf-8" if self.encoding == "utf-8-sig" else self.encoding,
                      first_line=first_line, max_lines=self._max_lines, max_bytes=self._max_bytes,
                      watch_for_utf8=self._sniffed_ascii)

    # -- records ------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[SourceRecord]:
        with open_export(self.path) as stream:
            if _identity(stream) != self._identity:
                # Another file under the name since the header was read (renamed over it, or rewritten in place):
                # its lines read with this header's columns, encoding and offset would be another file's fields.
                raise ExportFileError("fichier remplacé ou modifié depuis la lecture de son en-tête : rien n'en "
                                      "est lu, la prochaine nuit le relit (déposer les exports sous un autre nom, "
                                      "puis les renommer)", path=str(self.path), code="P3_UNREADABLE")
            stream.seek(self._start)
            lines = self._lines(stream, first_line=self._first_line)
            yield from self._records(lines)
        if lines.utf8_suspected and _UTF8_WARNING not in self.warnings:
            self.warnings.append(_UTF8_WARNING)

    def _records(self, lines: _Lines) -> Iterator[SourceRecord]:
        reader = csv.reader(lines, _Dialect)
        width, source = self._width, self.source_file
        names = tuple(name for name, _ in self._index)
        pick = itemgetter(*(position for _, position in self._index))
        while True:
            lines.begin_record()
            try:
                row = next(reader)
            except StopIteration:
                return
            except (_RecordTooLong, csv.Error) as exc:
                problem = exc.problem if isinstance(exc, _RecordTooLong) else f"CSV mal formé ({exc})."
                start = lines.record_start
                lines.resync()
                yield SourceRecord(source, start, {}, problem)
                continue
            if _is_blank(row):
                continue
            start = lines.record_start
            problem = None
            if len(row) != width:
                problem = (f"Nombre de champs incorrect : {len(row)} au lieu de {width} "
                           "(point-virgule ou guillemet non protégé ?).")
            elif len(lines.record) > 1 and _swallowed(row, width):
                problem = ("Guillemet non refermé : l'enregistrement englobe des lignes entières "
                           "du fichier.")
            if problem is not None:
                if len(lines.record) > 1:
                    lines.resync()  # it may have swallowed good lines: read them again
                yield SourceRecord(source, start, {}, problem)
                continue
            fields = dict(zip(names, pick(row), strict=True))
            if lines.record_has_nul:
                problem = ("Octet nul (0x00) dans l'enregistrement : ligne corrompue (fichier tronqué ou "
                           "mal exporté).")
            elif not lines.record_decoded_well:
                problem = f"Caractères illisibles dans l'encodage {self.encoding}."
            yield SourceRecord(source, start, fields, problem)


def read_export(path: str | os.PathLike[str], *, encoding: str = "auto",
                max_record_lines: int = DEFAULT_MAX_RECORD_LINES,
                max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> ExportReader:
    """Open a Parcours 3 export and check its header; iterate the result for its records.

    ``encoding``: ``auto`` (brief §3 detection), ``cp1252``, ``utf-8`` or ``utf-8-sig``.
    ``max_record_lines`` / ``max_record_bytes`` bound one record (quoted line breaks included):
    beyond them the record is reported as a problem and reading resumes at its next line.
    Raises `ExportFileError` (``P3_UNREADABLE``, ``P3_SYMLINK``, ``P3_EMPTY``, ``P3_HEADER_UNREADABLE``,
    ``P3_COLUMN_MISSING``, ``P3_COLUMN_DUPLICATE``, ``P3_ENCODING``) for a file refused whole.
    """
    path = Path(path)
    requested = encoding.lower().replace("_", "-")
    if requested in {"utf8", "utf-8"}:
        requested = "utf-8"
    elif requested in {"windows-1252", "cp-1252"}:
        requested = "cp1252"
    if requested not in ENCODINGS:
        raise ExportFileError(f"encodage « {encoding} » non pris en charge ({', '.join(ENCODINGS)}).",
                              path=str(path), code="P3_ENCODING")
    if max_record_lines < 1 or max_record_bytes < 1:
        raise ValueError("max_record_lines and max_record_bytes must be positive")
    reader = ExportReader(path, encoding=requested, max_record_lines=max_record_lines,
                          max_record_bytes=max_record_bytes)
    reader._open_header(requested)
    return reader


_UTF16_32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


_HIGH_BYTES = bytes(range(0x80, 0x100))


def _refuse_binary(head: bytes, path: Path) -> None:
    """A file that is not 8-bit text at all: UTF-16/UTF-32 (a BOM, or NUL bytes all over), or binary."""
    if head.startswith(_UTF16_32_BOMS) or head.count(0) > max(16, len(head) // 20):
        raise ExportFileError("fichier en UTF-16, UTF-32 ou binaire (octets nuls) : l'exporter en "
                              "Windows-1252 ou en UTF-8.", path=str(path), code="P3_ENCODING")


def _mostly_utf8(head: bytes) -> bool:
    """Whether most non-ASCII bytes of a sample that is *not* valid UTF-8 still form UTF-8 sequences: a
    UTF-8 file with a few foreign lines. French Windows-1252 text (``é`` = E9 followed by a letter) almost
    never makes a valid sequence."""
    high = len(head) - len(head.translate(None, _HIGH_BYTES))  # bytes ≥ 0x80, counted in C
    in_sequences = sum(len(m) for m in _UTF8_SEQUENCE.findall(head))
    return high > 0 and in_sequences * 3 >= high * 2


def _choose_encoding(head: bytes, requested: str) -> tuple[str, bool]:
    """The encoding to read with, and whether it was chosen on a pure-ASCII sample."""
    if requested == "utf-8" and head.startswith(_BOM):
        return "utf-8-sig", False
    if requested != "auto":
        return requested, False
    if head.startswith(_BOM):
        return "utf-8-sig", False
    if head.isascii():
        return "cp1252", True
    try:  # the sample may end in the middle of a character: decode it incrementally
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return ("utf-8" if _mostly_utf8(head) else "cp1252"), False
    return "utf-8", False


#: The file error of an export that is a symbolic link (`open_export`).
SYMLINK_REFUSED = ("lien symbolique : un export n'est pas lu à travers un lien, qui peut désigner n'importe quel "
                   "fichier de la machine ; déposer le fichier lui-même")


def open_export(path: str | os.PathLike[str]) -> BinaryIO:
    """Open an export to read its bytes, refusing in the same step what is not an export's file: a symbolic
    link, wherever it points (``P3_SYMLINK``), and anything but a regular file (``P3_UNREADABLE``: a pipe
    would hold the run forever, a device would never end). A file that cannot be opened is ``P3_UNREADABLE``,
    with the `OSError` as its cause (`FileNotFoundError`: taken away meanwhile).

    Why every link: the drop folder is written by another system (Parcours 3's export job). A link there to
    the gateway's private key or to ``/etc/…`` was read as an export, and its lines came back as rejects that
    support staff read. Nothing delivers exports as links (the contract is a file written under another name,
    then renamed), and a link to a file of the folder would only read it twice. Why in the open itself: a
    check before it (``is_symlink``, ``resolve``) leaves a moment in which the link can be put in the file's
    place; ``O_NOFOLLOW`` makes the kernel refuse a link as it opens the name, and ``fstat`` speaks of the
    file opened. (``O_NONBLOCK`` so that opening a pipe does not wait for a writer; a regular file ignores it.)
    The folders above the file may be links: a drop folder mounted or linked elsewhere is the integrator's
    choice, not the export job's."""
    try:
        stream = open(path, "rb", opener=_no_follow)  # noqa: SIM115 — closed by the callers' ``with``
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):  # EMLINK: the BSDs' word for it
            raise ExportFileError(SYMLINK_REFUSED, path=str(path), code="P3_SYMLINK") from exc
        raise ExportFileError(f"fichier {unreadable(exc)}.", path=str(path),
                              code="P3_UNREADABLE") from exc
    if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
        stream.close()
        raise ExportFileError("pas un fichier ordinaire (un tube, un périphérique…).", path=str(path),
                              code="P3_UNREADABLE")
    return stream


def _identity(stream: BinaryIO) -> tuple[int, int, int, int]:
    """Which file, and which content of it, ``stream`` is: device, inode, size, modification time. The header and
    the records are read by two opens of the name (`ExportReader`); this tells whether they found the same."""
    found = os.fstat(stream.fileno())
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)


def _swallowed(row: list[str], width: int) -> bool:
    """Whether a multi-line record is really an opening quote never closed that ran over whole
    records until another stray quote closed it, by chance with the right number of fields.

    A quoted field holding line breaks *and* as many separators as a whole record is not a
    comment a counsellor typed: it is the following lines of the file.
    """
    return any("\n" in value and value.count(";") >= max(width - 1, 2) for value in row)


def _is_blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())
