"""DUDE's file of jobseekers delegated to missions locales, as the emulator knows it (brief §4).

The brief fixes the format: ``;``-separated UTF-8 (a BOM is tolerated, as spreadsheet tools write
one), a header row, columns
``identifiant_pe;nom;prenom;date_naissance;code_ml;date_debut_cotraitance;date_fin_cotraitance``,
dates ``JJ/MM/AAAA``, the last one empty while the delegation runs. Columns are found by name, as
for Parcours 3 exports (§3); other columns are ignored.

"Names compare without regard to case and accents" (§4): `name_key` is the comparison form, computed
once per registry line. A malformed line is logged with its line number (never its content: it holds
names and birth dates, §6) and skipped, so one bad line does not take the registry down (STYLE.md 4).
One line per jobseeker: a second line for the same ``identifiant_pe`` is reported and skipped (the
first one wins), rather than silently replacing it.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import date
from pathlib import Path

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
    """The jobseekers DUDE knows, by ``identifiant_pe``. Read once; immutable afterwards."""

    def __init__(self, jobseekers: Iterable[Jobseeker] = (), *, skipped: Iterable[SkippedLine] = (),
                 source: str = "<registre>"):
        self._by_id: dict[str, Jobseeker] = {}
        skips = list(skipped)
        for person in jobseekers:
            if person.identifiant_pe in self._by_id:
                skips.append(SkippedLine(0, f"identifiant {person.identifiant_pe} en double"))
                continue
            self._by_id[person.identifiant_pe] = person
        self.skipped: tuple[SkippedLine, ...] = tuple(skips)
        self.source = source

    @classmethod
    def from_csv(cls, path: Path) -> Registry:
        """Load the registry file; a missing or undecodable file is a configuration error."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise ConfigurationError(f"jobseeker registry {path} does not exist") from exc
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigurationError(f"jobseeker registry {path}: not UTF-8 (line {line})") from exc
        return cls.from_text(text, source=str(path))

    @classmethod
    def from_text(cls, text: str, *, source: str = "<registre>") -> Registry:
        text = text.removeprefix("\ufeff")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=";", quotechar='"')
        header = next(reader, None)
        if header is None:
            raise ConfigurationError(f"jobseeker registry {source} is empty (no header row)")
        names = [h.strip().lower() for h in header]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise ConfigurationError(f"jobseeker registry {source}: missing column(s) {', '.join(missing)}")
        index = {c: names.index(c) for c in COLUMNS}
        people, skipped, seen = [], [], set()
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            try:
                person = _parse_row(row, index, len(names))
            except ValueError as exc:
                skipped.append(SkippedLine(line, str(exc)))
                continue
            if person.identifiant_pe in seen:
                skipped.append(SkippedLine(line, f"identifiant {person.identifiant_pe} déjà présent plus haut"))
                continue
            seen.add(person.identifiant_pe)
            people.append(person)
        for skip in skipped:
            log.warning("registry %s, line %d skipped: %s", source, skip.line, skip.reason)
        log.info("registry %s: %d jobseekers loaded, %d lines skipped", source, len(people), len(skipped))
        return cls(people, skipped=skipped, source=source)

    def get(self, identifiant_pe: str) -> Jobseeker | None:
        return self._by_id.get(identifiant_pe)

    def __contains__(self, identifiant_pe: object) -> bool:
        return identifiant_pe in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Jobseeker]:
        return iter(self._by_id.values())

    def __repr__(self) -> str:
        return f"Registry({self.source!r}, {len(self)} jobseekers, {len(self.skipped)} lines skipped)"


def _parse_date(value: str, column: str) -> date:
    match = _DATE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{column} : date attendue au format JJ/MM/AAAA")
    day, month, year = (int(g) for g in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        raise ValueError(f"{column} : date inexistante") from None


def _parse_row(row: list[str], index: dict[str, int], width: int) -> Jobseeker:
    """One data row → `Jobseeker`; ``ValueError`` names the column at fault (never its value,
    except for the non-personal identifier and codes)."""
    if len(row) > width and any(cell.strip() for cell in row[width:]):
        raise ValueError(f"{len(row)} champs pour {width} colonnes d'en-tête")
    cells = {c: (row[i].strip() if i < len(row) else "") for c, i in index.items()}
    ident = cells["identifiant_pe"]
    if not _IDENTIFIANT.fullmatch(ident):
        raise ValueError("identifiant_pe : 8 à 11 chiffres ou majuscules attendus")
    for column in ("nom", "prenom"):
        if not cells[column]:
            raise ValueError(f"{column} : vide")
    if not _CODE_ML.fullmatch(cells["code_ml"]):
        raise ValueError("code_ml : 5 chiffres attendus")
    start = _parse_date(cells["date_debut_cotraitance"], "date_debut_cotraitance")
    end = (_parse_date(cells["date_fin_cotraitance"], "date_fin_cotraitance")
           if cells["date_fin_cotraitance"] else None)
    if end is not None and end < start:
        raise ValueError("date_fin_cotraitance antérieure à date_debut_cotraitance")
    return Jobseeker(
        identifiant_pe=ident, nom=cells["nom"], prenom=cells["prenom"],
        date_naissance=_parse_date(cells["date_naissance"], "date_naissance"),
        code_ml=cells["code_ml"], date_debut_cotraitance=start, date_fin_cotraitance=end,
    )
