"""DUDE's file of jobseekers delegated to missions locales, as the emulator knows it (brief §4).

The brief fixes the format: ``;``-separated UTF-8 (a BOM is tolerated, as spreadsheet tools write
one), a header row, columns
``identifiant_pe;nom;prenom;date_naissance;code_ml;date_debut_cotraitance;date_fin_cotraitance``,
dates ``JJ/MM/AAAA``, the last one empty while the delegation runs. Columns are found by name, as
for Parcours 3 exports (§3); other columns are ignored.

"Names compare without regard to case and accents" (§4): `name_key` is the comparison form, computed
when a jobseeker is looked up (and cached: a night names the same people many times). A malformed line
is logged with its line number (never its content: it holds names and birth dates, §6) and skipped, so
one bad line does not take the registry down (STYLE.md 4). One line per jobseeker: a second line for
the same ``identifiant_pe`` is reported and skipped (the first one wins), rather than silently
replacing it.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from gateway.errors import ConfigurationError

log = logging.getLogger(__name__)

COLUMNS = ("identifiant_pe", "nom", "prenom", "date_naissance", "code_ml", "date_debut_cotraitance",
           "date_fin_cotraitance")
_DATE = re.compile(r"(\d{2})/(\d{2})/(\d{4})")
_IDENTIFIANT = re.compile(r"[0-9A-Z]{8,11}")  # the XSD's IdentifiantDEType
_CODE_ML = re.compile(r"[0-9]{5}")
# Hyphens (ASCII and Unicode dashes), apostrophes (straight, typographic, modifier letter, grave)
# and whitespace: any run of them is one separator.
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212'\u2019\u02bc`]+")
_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae"})


@lru_cache(maxsize=65_536)
def name_key(text: str) -> str:
    """The form in which two names are compared: ``name_key("Lefèvre-D’Hôte") == "lefevre d hote"``.

    NFKD then dropping combining marks removes accents (and unfolds compatibility forms such as
    ligature ``ﬁ``); ``casefold`` is the Unicode caseless match (``ß`` → ``ss``); ``œ``/``æ``, which
    are letters rather than compositions, are spelt out as French typists do; hyphens, apostrophes and
    runs of spaces count as one separator, so "Jean-Éric", "JEAN ERIC" and "jean  éric" are equal.
    Cached: a night's events name the same people many times.
    """
    if text.isascii():
        folded = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
        folded = bare.casefold().translate(_LIGATURES)
    return _SEPARATORS.sub(" ", folded).strip()


@dataclass(frozen=True, slots=True)
class Jobseeker:
    """One registry line. Names and birth date are kept out of ``repr`` so they never reach a log."""

    identifiant_pe: str
    nom: str = field(repr=False)
    prenom: str = field(repr=False)
    date_naissance: date = field(repr=False)
    code_ml: str
    date_debut_cotraitance: date
    date_fin_cotraitance: date | None = None
    nom_key: str = field(init=False, repr=False, compare=False)
    prenom_key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nom_key", name_key(self.nom))
        object.__setattr__(self, "prenom_key", name_key(self.prenom))

    def delegated_on(self, day: date) -> bool:
        """Whether the delegation had begun and not yet ended on ``day``."""
        return self.date_debut_cotraitance <= day and (
            self.date_fin_cotraitance is None or day <= self.date_fin_cotraitance)


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """A registry line that was not loaded: its line number in the file, and why (no content)."""

    line: int
    reason: str


class Registry:
    """The jobseekers DUDE knows, by ``identifiant_pe``. Read once; immutable afterwards.

    Kept in a private temporary SQLite database rather than in Python objects: the agency's file holds
    hundreds of thousands of people (670,000 for a night of a million events: 700 MB as objects, 85 MB
    this way), and the emulator must run beside the gateway in bounded memory (issue 7). The database
    is opened on an empty file name (stdlib ``sqlite3``): in memory while small, then a file of the
    temporary directory that SQLite unlinks as soon as it has opened it, so no copy of names and birth
    dates outlives the process, even a killed one. Loading streams the file in batches; a `Jobseeker`
    is built only when an event names it. `find` looks up a whole envelope's people in a few queries,
    which is what `adapters.dude.emulator.core` does for each envelope. The price: ~10 µs a person at
    that size, against a dictionary's ~0.1 (for a million events, ~10 s of the emulator's CPU, a tenth
    of it).

    One connection, guarded by a lock, serves every thread (``check_same_thread=False``).
    """

    def __init__(self, jobseekers: Iterable[Jobseeker] = (), *, skipped: Iterable[SkippedLine] = (),
                 source: str = "<registre>"):
        self.source = source
        self._lock = threading.Lock()
        self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._count = 0
        self.skipped: tuple[SkippedLine, ...] = ()
        self._fill(((0, _row(person)) for person in jobseekers), list(skipped))

    @classmethod
    def from_csv(cls, path: Path) -> Registry:
        """Load the registry file; a missing or undecodable file is a configuration error."""
        try:
            with path.open("rb") as raw:
                return cls._from_lines(_decoded_lines(raw, path), source=str(path))
        except FileNotFoundError as exc:
            raise ConfigurationError(f"jobseeker registry {path} does not exist") from exc

    @classmethod
    def from_text(cls, text: str, *, source: str = "<registre>") -> Registry:
        return cls._from_lines(io.StringIO(text.removeprefix("\ufeff"), newline=""), source=source)

    @classmethod
    def _from_lines(cls, lines: Iterable[str], *, source: str) -> Registry:
        reader = csv.reader(lines, delimiter=";", quotechar='"')
        header = next(reader, None)
        if header is None:
            raise ConfigurationError(f"jobseeker registry {source} is empty (no header row)")
        names = [h.strip().lower() for h in header]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise ConfigurationError(f"jobseeker registry {source}: missing column(s) {', '.join(missing)}")
        index = [names.index(c) for c in COLUMNS]
        skipped: list[SkippedLine] = []

        def rows() -> Iterator[tuple[int, tuple[str | None, ...]]]:
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                try:
                    yield reader.line_num, _parse_row(row, index, len(names))
                except ValueError as exc:
                    skipped.append(SkippedLine(reader.line_num, str(exc)))

        registry = cls(source=source)
        registry._fill(rows(), skipped)
        for skip in registry.skipped:
            log.warning("registry %s, line %d skipped: %s", source, skip.line, skip.reason)
        log.info("registry %s: %d jobseekers loaded, %d lines skipped", source, len(registry),
                 len(registry.skipped))
        return registry

    def _fill(self, rows: Iterable[tuple[int, tuple[str | None, ...]]], skipped: list[SkippedLine]) -> None:
        """Insert ``(line, row)`` pairs in batches; a second row for an ``identifiant_pe`` is skipped
        (the first one wins) and added to ``skipped``, which becomes `skipped`, in line order."""
        batch: dict[str, tuple[int, tuple[str | None, ...]]] = {}

        def flush() -> None:
            known = self._known(list(batch))
            fresh = []
            for ident, (line, row) in batch.items():
                if ident in known:
                    skipped.append(SkippedLine(line, f"identifiant {ident} déjà présent plus haut"))
                else:
                    fresh.append(row)
            with self._lock:  # one transaction per batch (each row its own would cost ~20 µs)
                self._db.execute("BEGIN")
                self._db.executemany(_INSERT, fresh)
                self._db.execute("COMMIT")
            batch.clear()

        for line, row in rows:
            ident = row[0]
            if ident in batch:
                skipped.append(SkippedLine(line, f"identifiant {ident} déjà présent plus haut"))
                continue
            batch[ident] = (line, row)
            if len(batch) >= _BATCH:
                flush()
        if batch:
            flush()
        with self._lock:
            self._count = self._db.execute("SELECT count(*) FROM jobseekers").fetchone()[0]
        self.skipped = tuple(sorted(skipped, key=lambda skip: skip.line))

    def _known(self, idents: list[str]) -> set[str]:
        return {ident for (ident,) in self._rows("identifiant_pe", idents)}

    def _rows(self, columns: str, idents: list[str]) -> list[tuple]:
        """``columns`` of the people among ``idents`` (distinct), a few hundred identifiers per query."""
        rows: list[tuple] = []
        with self._lock:
            for start in range(0, len(idents), _CHUNK):
                chunk = idents[start:start + _CHUNK]
                rows += self._db.execute(f"SELECT {columns} FROM jobseekers WHERE identifiant_pe IN "
                                         f"({','.join('?' * len(chunk))})", chunk)
        return rows

    def find(self, idents: Iterable[str]) -> dict[str, Jobseeker]:
        """The registry's people among ``idents``, by identifier (unknown ones are absent)."""
        return {row[0]: _person(row) for row in self._rows(_COLUMNS_SQL, list(dict.fromkeys(idents)))}

    def get(self, identifiant_pe: str) -> Jobseeker | None:
        return self.find((identifiant_pe,)).get(identifiant_pe)

    def __contains__(self, identifiant_pe: object) -> bool:
        return isinstance(identifiant_pe, str) and bool(self._known([identifiant_pe]))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Jobseeker]:
        """Everyone, by identifier, a page at a time (the lock is not held between pages)."""
        last = ""
        while True:
            with self._lock:
                page = self._db.execute(f"SELECT {_COLUMNS_SQL} FROM jobseekers WHERE identifiant_pe > ? "
                                        "ORDER BY identifiant_pe LIMIT ?",
                                        (last, _BATCH)).fetchall()
            if not page:
                return
            for row in page:
                yield _person(row)
            last = page[-1][0]

    def close(self) -> None:
        """Close (and so delete) the database; the registry cannot be read afterwards."""
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"Registry({self.source!r}, {len(self)} jobseekers, {len(self.skipped)} lines skipped)"


_BATCH = 5_000  # rows per insert while loading, and per page when iterating
_CHUNK = 500  # identifiers per IN (...) query, well under SQLite's variable limit
_COLUMNS_SQL = ", ".join(COLUMNS)
_INSERT = f"INSERT INTO jobseekers ({_COLUMNS_SQL}) VALUES ({', '.join('?' * len(COLUMNS))})"
# A temporary database, rebuilt at each start: no journal, no sync. Dates are ISO text. The table is
# its primary key's B-tree (WITHOUT ROWID: one descent per lookup, not two). An 8 MB page cache; the
# rest of the file stays on disk, where the OS caches it. Measured with 670,000 people: a random lookup
# costs ~10 µs (~6 in SQLite, ~3 building the `Jobseeker`), a larger cache gained nothing.
_SCHEMA = """
PRAGMA journal_mode=OFF;
PRAGMA synchronous=OFF;
PRAGMA cache_size=-8192;
CREATE TABLE jobseekers (
    identifiant_pe TEXT PRIMARY KEY,
    nom TEXT NOT NULL,
    prenom TEXT NOT NULL,
    date_naissance TEXT NOT NULL,
    code_ml TEXT NOT NULL,
    date_debut_cotraitance TEXT NOT NULL,
    date_fin_cotraitance TEXT
) WITHOUT ROWID;
"""


def _row(person: Jobseeker) -> tuple[str | None, ...]:
    end = person.date_fin_cotraitance
    return (person.identifiant_pe, person.nom, person.prenom, person.date_naissance.isoformat(), person.code_ml,
            person.date_debut_cotraitance.isoformat(), None if end is None else end.isoformat())


def _person(row: tuple[Any, ...]) -> Jobseeker:
    ident, nom, prenom, birth, code_ml, start, end = row
    return Jobseeker(identifiant_pe=ident, nom=nom, prenom=prenom, date_naissance=date.fromisoformat(birth),
                     code_ml=code_ml, date_debut_cotraitance=date.fromisoformat(start),
                     date_fin_cotraitance=None if end is None else date.fromisoformat(end))


def _decoded_lines(raw: BinaryIO, path: Path) -> Iterator[str]:
    """The file's lines as text (a leading BOM dropped), read as they come: an undecodable line is a
    configuration error naming its line number."""
    for number, line in enumerate(raw, start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigurationError(f"jobseeker registry {path}: not UTF-8 (line {number})") from exc
        yield text.removeprefix("\ufeff") if number == 1 else text


def _parse_date(value: str, column: str) -> str:
    """``JJ/MM/AAAA`` → ISO ``AAAA-MM-JJ`` (as stored), or ``ValueError`` naming the column."""
    match = _DATE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{column} : date attendue au format JJ/MM/AAAA")
    day, month, year = (int(g) for g in match.groups())
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        raise ValueError(f"{column} : date inexistante") from None


def _parse_row(row: list[str], index: list[int], width: int) -> tuple[str | None, ...]:
    """One data row → the stored row (`COLUMNS`' order, ISO dates); ``ValueError`` names the column at
    fault (never its value, except for the non-personal identifier and codes)."""
    if len(row) > width and any(cell.strip() for cell in row[width:]):
        raise ValueError(f"{len(row)} champs pour {width} colonnes d'en-tête")
    ident, nom, prenom, birth, code_ml, start, end = (row[i].strip() if i < len(row) else "" for i in index)
    if not _IDENTIFIANT.fullmatch(ident):
        raise ValueError("identifiant_pe : 8 à 11 chiffres ou majuscules attendus")
    if not nom:
        raise ValueError("nom : vide")
    if not prenom:
        raise ValueError("prenom : vide")
    if not _CODE_ML.fullmatch(code_ml):
        raise ValueError("code_ml : 5 chiffres attendus")
    start_iso = _parse_date(start, "date_debut_cotraitance")
    end_iso = _parse_date(end, "date_fin_cotraitance") if end else None
    if end_iso is not None and end_iso < start_iso:
        raise ValueError("date_fin_cotraitance antérieure à date_debut_cotraitance")
    return (ident, nom, prenom, _parse_date(birth, "date_naissance"), code_ml, start_iso, end_iso)
