"""A realistic Parcours 3 night, generated: exports, the DUDE emulator's registry, and a manifest.

Why: the brief (§1, §4) sizes a night at about 20,000 events and asks that a generated night
produce business rejects as well as acceptances. Tests, the demo and benchmarks need such nights,
reproducible by seed, at any size: `generate_night` streams every line to disk and derives each
young person from their index alone (a generator seeded with ``seed * 1_000_003 + i``), so a million events
take bounded memory.

What a night holds (brief §3, §4):

* one export per mission locale, ``P3_<code_ml>_<AAAAMMJJ>.csv``: Windows-1252, CRLF, ``;``, a
  header whose column order varies between files, an unknown column in some, a ``nir`` column of
  fake numbers in most, comments with accents and the odd control character, quoted fields with
  ``;`` or a line break inside;
* events of every type (interviews first), mostly creations, a few ``M``/``A`` of an event created
  earlier in the same file (same key, changed content: a new version);
* about 3% defective lines, over every pre-flight code: ``E09`` (field missing or malformed, or a
  broken line), ``E10``, ``E08``, ``E07``, ``E04`` (future date), ``E06`` (``M``/``A`` of a key
  never created, found against the store);
* ``registre-dude.csv``: the jobseekers DUDE knows, in the brief's format, with a few percent of
  unknown people (``E01``), people delegated elsewhere (``E02``), identity mismatches (``E03``),
  harmless case/accent differences (accepted), and events dated before the delegation (``E04``);
* ``manifest.json``: what was generated and injected, so tests can reconcile outcomes. Its counts
  assume pre-flight runs on ``today`` (the day after the night) against an empty store.

Defects and business rejects never overlap: a line has at most one reason to fail.
"""

from __future__ import annotations

import csv
import json
import random
import unicodedata
from bisect import bisect
from operator import itemgetter
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from gateway.preflight import siret_is_valid

REGISTRY_NAME = "registre-dude.csv"
MANIFEST_NAME = "manifest.json"
REGISTRY_HEADER = ("identifiant_pe", "nom", "prenom", "date_naissance", "code_ml",
                   "date_debut_cotraitance", "date_fin_cotraitance")
COLUMNS = (
    "id_evenement", "code_ml", "num_dossier", "identifiant_pe", "nom", "prenom", "date_naissance",
    "conseiller", "type_evenement", "operation", "date_evenement", "date_debut", "date_fin",
    "modalite", "premier_entretien", "formacode", "organisme", "code_prestation", "num_offre",
    "siret", "code_rome", "type_contrat", "resultat", "parcours", "motif", "commentaire", "saisi_le",
)
_DROPPABLE = ("num_dossier", "saisi_le", "commentaire")
_UNKNOWN_COLUMNS = ("libelle_ml", "date_export", "code_structure", "antenne")

# Shares (brief §3 mix; percentages of persons / lines)
_TYPES = ("ENT", "MER", "PFO", "PPR", "EPR", "EFO", "PEM", "CPA", "MAN", "SOR")
_TYPE_WEIGHTS = (45, 12, 9, 8, 6, 5, 5, 4, 3, 3)
_EVENT_COUNT_WEIGHTS = (60, 30, 10)  # 1, 2 or 3 events a person: 1.5 on average
#: What DUDE's registry says of a person: unknown, delegated elsewhere, another identity, delegated
#: after their first event, same identity up to case and accents, or all well.
_CATEGORIES = ("E01", "E02", "E03", "E04", "harmless", "clean")
_CATEGORY_SHARES = (0.025, 0.015, 0.015, 0.008, 0.03)
_P_DEFECT = 0.032  # of the lines of people DUDE knows well: about 3% of all lines
_DEFECT_CODES = ("E09", "E10", "E08", "E07", "E04", "E06")
_DEFECT_WEIGHTS = (40, 12, 12, 12, 12, 12)
_E09_VARIANTS = ("absent", "code", "date", "identifiant", "type", "champs_en_trop", "guillemet",
                 "octet_illisible")
_P_MODIFY, _P_CANCEL = 0.03, 0.01
_BLANK_ROW = dict.fromkeys(COLUMNS + ("nir",) + _UNKNOWN_COLUMNS, "")
_RECENT_MAX = 64  # events an M/A may refer to, per mission locale

_PRENOMS_F = ("Élodie", "Zoé", "Bénédicte", "Maëlle", "Anaïs", "Léa", "Chloé", "Inès", "Camille",
              "Manon", "Océane", "Emma", "Jade", "Louise", "Héloïse", "Noémie", "Clémence", "Aïcha",
              "Fatoumata", "Salomé", "Laëtitia", "Mélissa", "Sarah", "Yasmine", "Célia", "Ophélie",
              "Agathe", "Lina", "Maryam", "Justine")
_PRENOMS_M = ("François", "Noël", "Jérémy", "Kévin", "Théo", "Lucas", "Mathéo", "Hugo", "Enzo",
              "Raphaël", "Gaël", "Joël", "Loïc", "Benoît", "Jérôme", "Anthony", "Mamadou", "Moussa",
              "Youssef", "Rayan", "Nathan", "Clément", "Maxime", "Dylan", "Bastien", "Timothée",
              "Adrien", "Karim", "Stéphane", "Aurélien")
_NOMS = ("Lefèvre", "N'Diaye", "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard",
         "Petit", "Durand", "Leroy", "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia",
         "David", "Bertrand", "Roux", "Vincent", "Fournier", "Morel", "Girard", "André", "Mercier",
         "Dupont", "Lambert", "Bonnet", "François", "Martinez", "Legrand", "Garnier", "Faure",
         "Rousseau", "Blanc", "Guérin", "Müller", "Henry", "Roussel", "Nicolas", "Perrin", "Mathieu",
         "Clément", "Gauthier", "Dumont", "Lopez", "Fontaine", "Chevalier", "Robin", "Lœuillet",
         "Dupré-Noël", "Ferrière", "Le Bihan", "Garçon", "Lê", "Nguyen", "Traoré", "Diallo",
         "Benali", "Da Silva", "Kowalski", "Côté", "Bérenger", "Hébert", "Cissé", "Mbappé",
         "Ben Saïd", "D'Almeida", "Lemaître", "Pérez", "Besançon", "Bouchard", "Ménard", "Brûlé")
_ORGANISMES = ("AFPA Vénissieux", "Greta Lyon Métropole", "CFA des Métiers du goût",
               "École de la 2e chance", "Cnam Hauts-de-France", "Association Éveil Jeunesse",
               "CCI Formation Provence", "Lycée professionnel Jean-Moulin", "IFPA Santé Social",
               "Compagnons du Devoir", "Espace Métiers Aquitaine", "Chantier d'insertion Réémploi")
_ORGANISMES_SEMICOLON = ("Greta; antenne Nord", "AFPA; site de Saint-Étienne")
_FORMACODES = ("42752", "31795", "22454", "21546", "43409", "42056", "15064", "31812", "44054",
               "23684")
_PRESTATIONS = ("ACL01", "PMS02", "ATE03", "BIL04", "PRE05", "CAP06", "REM07", "MOB08")
_ROMES = ("N4101", "G1602", "H2913", "K1302", "D1106", "F1603", "I1203", "N1103", "G1603", "K2204",
          "D1507", "H3302", "J1501", "M1607", "A1203")
_COMMENTS = ("Entretien de suivi, démarches en cours.", "A déposé trois candidatures cette semaine.",
             "Projet : CAP cuisine, à confirmer après l'immersion.",
             "Besoin d'aide au permis de conduire (financement à étudier).",
             "Hébergement précaire, orientation vers le FJT.",
             "Très motivée, prochaine étape : stage en entreprise.",
             "N'a pas pu venir : problème de transport.", "Relance par SMS effectuée.",
             "Orientation vers l'atelier « Réussir son entretien ».",
             "Aide financière de 200 € accordée.", "Dossier complet, reçu à l'accueil.")
_CONTROL_CHARS = ("\t", "\x07", "\x0b", "\x1a", "\x0c")
_MODALITES = ("IND", "TEL", "COL", "MEL")
_MODALITE_CUM = (0.6, 0.8, 0.92)  # bisect over a draw in [0, 1): the last one takes the rest
_CONTRATS = ("CDD", "CTT", "CAE", "CIE", "APP", "PRO")
_RESULTATS = ("ATT", "RET", "NRE", "ABA")
_PARCOURS = ("ACC", "MOB", "ACT")
_MOTIFS = {"SOR": ("EMP", "FQU", "ABA", "DEM", "AGE", "AUT"), "MAN": ("ABS", "REF", "AUT")}
_BAD_CODES = (("MER", "code_rome", "P1234"), ("PFO", "formacode", "4275"),
              ("PPR", "code_prestation", "acl01"), ("MER", "num_offre", "12345K"),
              ("ENT", "modalite", "VIS"), ("SOR", "motif", "ABS"), ("PEM", "type_contrat", "CDI"))


@dataclass(frozen=True, slots=True)
class GeneratedNight:
    """Where a generated night was written, and what it should give (``expected`` = the manifest)."""

    export_files: list[Path]
    registry_file: Path
    manifest_file: Path
    expected: dict[str, Any]


@dataclass(slots=True)
class _Export:
    """One mission locale's export being written."""

    code_ml: str
    path: Path
    columns: tuple[str, ...]
    counsellors: tuple[str, ...]
    handle: Any
    next_id: int
    unknown: str | None
    line: int = 1  # physical lines written so far (the header)
    records: int = 0
    recent: list[dict[str, str]] | None = None
    pick: Any = None  # itemgetter of the columns, in file order
    constant: dict[str, str] | None = None  # what every line of the file holds

    @property
    def has_comments(self) -> bool:
        return "commentaire" in self.columns


class _Rng(random.Random):
    """`random.Random` with the few draws the generator makes, built on the C-level `random()`.

    ``choice``/``randint`` go through Python-level ``randrange`` (about 1 µs each); a million events
    draw tens of millions of times.
    """

    def pick(self, seq: Any) -> Any:
        return seq[int(self.random() * len(seq))]

    def between(self, low: int, high: int) -> int:
        """An integer in [low, high]."""
        return low + int(self.random() * (high - low + 1))

    def below(self, bound: int) -> int:
        return int(self.random() * bound)


class _Sink:
    """Where the one csv writer of the night writes: the export of the line at hand.

    A `csv.writer` keeps a 128 KiB buffer of its own; one per export would cost 60 MB for the
    486 missions locales of a national night.
    """

    def __init__(self) -> None:
        self.target: Any = None

    def write(self, text: str) -> Any:
        return self.target.write(text)


class _Dates:
    """JJ/MM/AAAA strings of event and period dates, memoised: a night formats a few hundred
    distinct ones many times."""

    def __init__(self) -> None:
        self._cache: dict[date, str] = {}

    def __call__(self, day: date) -> str:
        text = self._cache.get(day)
        if text is None:
            text = self._cache[day] = _text(day)
        return text


def generate_night(out_dir: Path, *, events: int, seed: int = 1, night: date | None = None,
                   missions_locales: int = 30) -> GeneratedNight:
    """Write a night of ``events`` export lines under ``out_dir``; same seed, same bytes."""
    if events < 0 or not 1 <= missions_locales <= 900:
        raise ValueError("events must be >= 0 and missions_locales within 1..900")
    night = night or date.today() - timedelta(days=1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _Night(out_dir, events=events, seed=seed, night=night, n_ml=missions_locales).run()


class _Night:
    def __init__(self, out_dir: Path, *, events: int, seed: int, night: date, n_ml: int):
        self.out_dir, self.events, self.seed, self.night = out_dir, events, seed, night
        self.rng = _Rng(seed)
        self.fmt = _Dates()
        self.codes = sorted(self.rng.sample(range(1001, 95999), n_ml))
        self.codes = [f"{code:05d}" for code in self.codes]
        self.ml_cum = _cumulative(tuple(self.rng.uniform(0.3, 3.0) for _ in self.codes))
        self.type_cum = _cumulative(_TYPE_WEIGHTS)
        self.stamp = night.strftime("%Y%m%d")
        self.night_text = self.fmt(night)
        self.orphan_id = 9_000_000_000
        self.defects: list[dict[str, Any]] = []
        # every code listed, at zero if nothing of it was injected tonight
        business = dict.fromkeys(("E01", "E02", "E03", "E04"), 0)
        self.counts: dict[str, Counter[str]] = {
            "preflight": Counter(dict.fromkeys(("E04", "E07", "E08", "E09", "E10"), 0)),
            "store": Counter({"E06": 0}),
            "business_events": Counter(business),
            "business_persons": Counter(business),
            "harmless": Counter({"persons": 0, "events": 0}),
        }
        self.operations: Counter[str] = Counter({"C": 0, "M": 0, "A": 0})
        self.types: Counter[str] = Counter(dict.fromkeys(_TYPES, 0))
        self.registry_rows = 0
        self.persons = 0
        self.sink = _Sink()
        self.writer = csv.writer(self.sink, delimiter=";", lineterminator="\r\n")

    # -- the whole night --------------------------------------------------------------------

    def run(self) -> GeneratedNight:
        exports = [self._open_export(code) for code in self.codes]
        registry_path = self.out_dir / REGISTRY_NAME
        try:
            with registry_path.open("w", encoding="utf-8", newline="") as registry:
                reg = csv.writer(registry, delimiter=";", lineterminator="\r\n")
                reg.writerow(REGISTRY_HEADER)
                written, index = 0, 0
                while written < self.events:
                    written += self._person(index, exports, reg, self.events - written)
                    index += 1
                self.persons = index
                for extra in range(index, index + max(5, index // 10)):
                    self._registry_only(extra, reg)
        finally:
            for export in exports:
                export.handle.close()
        manifest = self._manifest(exports)
        manifest_path = self.out_dir / MANIFEST_NAME
        manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        return GeneratedNight([e.path for e in exports], registry_path, manifest_path, manifest)

    def _open_export(self, code_ml: str) -> _Export:
        rng = self.rng
        columns = list(COLUMNS)
        if rng.random() < 0.3:
            for name in rng.sample(_DROPPABLE, rng.between(1, 2)):
                columns.remove(name)
        if rng.random() < 0.7:
            columns.insert(rng.between(0, len(columns)), "nir")
        unknown = rng.pick(_UNKNOWN_COLUMNS) if rng.random() < 0.3 else None
        if unknown:
            columns.insert(rng.between(0, len(columns)), unknown)
        if rng.random() < 0.6:
            rng.shuffle(columns)
        constant = {"code_ml": code_ml}
        if unknown:
            constant[unknown] = {"libelle_ml": f"Mission locale {code_ml}",
                                 "date_export": self.fmt(self.night + timedelta(days=1)),
                                 "code_structure": f"ML{code_ml}", "antenne": "Antenne principale"}[unknown]
        path = self.out_dir / f"P3_{code_ml}_{self.stamp}.csv"
        handle = path.open("w", encoding="cp1252", errors="surrogateescape", newline="",
                           buffering=1 << 14)
        self.sink.target = handle
        self.writer.writerow(columns)
        letters = "ABCDEFGHJKLMNPRSTV"
        counsellors = tuple(f"{rng.pick(letters)}{rng.pick(letters)}{rng.pick(letters)}{n:02d}"
                            for n in range(1, rng.between(4, 30)))
        return _Export(code_ml, path, tuple(columns), counsellors, handle,
                       next_id=rng.between(1, 9) * 100_000, unknown=unknown, recent=[],
                       pick=itemgetter(*columns), constant=constant)

    # -- people -----------------------------------------------------------------------------

    def _identity(self, index: int, prng: _Rng) -> dict[str, Any]:
        female = prng.random() < 0.5
        prenom = prng.pick(_PRENOMS_F if female else _PRENOMS_M)
        nom = prng.pick(_NOMS)
        if prng.random() < 0.08:
            nom = f"{nom}-{prng.pick(_NOMS)}"
        # 16 years + 70 days .. 26 years - 130 days old on the night: 16-25 on every event date,
        # including the defects dated up to 120 days ahead.
        age_days = prng.between(16 * 365 + 75, 26 * 365 - 125)
        birth = self.night - timedelta(days=age_days)
        # one number per index below ten million (the factor is prime to 10**7): ids never collide
        number = (index * 3_987_421 + self.seed * 7_654_321 + 1_000_003) % 10_000_000
        identifiant = str(10_000_000 + number)[1:] + prng.pick(_LETTERS)
        sex = "2" if female else "1"
        nir13 = (f"{sex}{_TWO[birth.year % 100]}{_TWO[birth.month]}{_TWO[prng.between(1, 95)]}"
                 f"{_THREE[prng.between(1, 999)]}{_THREE[prng.between(1, 999)]}")
        nir = nir13 + _TWO[97 - int(nir13) % 97]
        born = _text(birth)  # birth dates are many: not kept in the cache of event dates
        return {"identifiant_pe": identifiant, "nom": nom, "prenom": prenom, "birth": birth,
                "born": born, "female": female, "nir": nir,
                "columns": {"num_dossier": str(100_000 + index), "identifiant_pe": identifiant,
                            "nom": nom, "prenom": prenom, "date_naissance": born, "nir": nir}}

    def _person(self, index: int, exports: list[_Export], reg: Any, room: int) -> int:
        prng = _Rng(self.seed * 1_000_003 + index)
        person = self._identity(index, prng)
        export = exports[bisect(self.ml_cum, prng.random() * self.ml_cum[-1])]
        category = _CATEGORIES[bisect(_CATEGORY_CUM, prng.random())]
        count = min(room, 1 + bisect(_EVENT_COUNT_CUM, prng.random() * _EVENT_COUNT_CUM[-1]))
        start = self.night - timedelta(days=prng.between(60, 900))
        dates = sorted((self._event_date(prng) for _ in range(count)), reverse=True)
        if category == "E04":  # delegation began after the first event, before the others
            start = self.night - timedelta(days=prng.between(1, 8))
            dates = [start - timedelta(days=prng.between(1, 20))] + [
                start + timedelta(days=prng.between(0, (self.night - start).days))
                for _ in range(count - 1)]
        if category == "harmless":
            self.counts["harmless"]["persons"] += 1
            self.counts["harmless"]["events"] += count
        elif category != "clean":
            self.counts["business_persons"][category] += 1
        self._register(person, export, category, start, prng, reg)
        for day in dates:
            self._event_line(person, export, prng, day, category)
        if category == "E04":
            self.counts["business_events"]["E04"] += 1
        elif category in ("E01", "E02", "E03"):
            self.counts["business_events"][category] += count
        return count

    def _register(self, person: dict[str, Any], export: _Export, category: str, start: date,
                  prng: _Rng, reg: Any) -> None:
        if category == "E01":
            return
        nom, prenom, birth, code_ml = person["nom"], person["prenom"], person["birth"], export.code_ml
        if category == "E02":
            code_ml = prng.pick([c for c in self.codes if c != code_ml] or ["99999"])
        elif category == "E03":
            if prng.random() < 0.5:
                names = _PRENOMS_F if person["female"] else _PRENOMS_M
                prenom = prng.pick([p for p in names if _fold(p) != _fold(prenom)])
            else:
                birth = birth + timedelta(days=prng.pick((-1, 1)) * prng.between(1, 400))
        elif category == "harmless":
            nom, prenom = ((_fold(nom).upper(), prenom) if prng.random() < 0.5
                           else (nom.upper(), _fold(prenom)))
        born = person["born"] if birth == person["birth"] else _text(birth)
        reg.writerow((person["identifiant_pe"], nom, prenom, born, code_ml,
                      _text(start), ""))
        self.registry_rows += 1

    def _registry_only(self, index: int, reg: Any) -> None:
        """Jobseekers DUDE knows who have no event tonight; some delegations already ended."""
        prng = _Rng(self.seed * 1_000_003 + index)
        person = self._identity(index, prng)
        start = self.night - timedelta(days=prng.between(60, 1500))
        end = ""
        if prng.random() < 0.3:
            end = _text(start + timedelta(days=prng.between(30, (self.night - start).days)))
        reg.writerow((person["identifiant_pe"], person["nom"], person["prenom"],
                      person["born"], prng.pick(self.codes), _text(start), end))
        self.registry_rows += 1

    def _event_date(self, prng: _Rng) -> date:
        back = prng.between(0, 2) if prng.random() < 0.6 else prng.between(3, 41)
        return self.night - timedelta(days=back)

    # -- lines ------------------------------------------------------------------------------

    def _event_line(self, person: dict[str, Any], export: _Export, prng: _Rng,
                    day: date, category: str) -> None:
        rng = self.rng  # night-level choices: references between lines and defects
        eligible = category in ("clean", "harmless")
        if eligible and export.recent and rng.random() < _P_MODIFY + _P_CANCEL:
            self._modify_or_cancel(export, rng)
            return
        if category == "clean" and rng.random() < _P_DEFECT:
            self._defect_line(person, export, prng, day)
            return
        row = self._row(person, export, prng, day, self._type(prng))
        self._write(export, row)
        if eligible:
            recent = export.recent
            if len(recent) < _RECENT_MAX:
                recent.append(row)
            else:
                recent[rng.below(_RECENT_MAX)] = row

    def _type(self, prng: _Rng) -> str:
        return _TYPES[bisect(self.type_cum, prng.random() * self.type_cum[-1])]

    def _row(self, person: dict[str, Any], export: _Export, prng: _Rng, day: date,
             etype: str) -> dict[str, str]:
        fmt = self.fmt
        export.next_id += prng.between(1, 3)
        row = export.constant.copy()  # code_ml, and the unknown column if the file has one
        row.update(person["columns"])
        row["id_evenement"] = str(export.next_id)
        row["conseiller"] = prng.pick(export.counsellors)
        row["type_evenement"] = etype
        row["operation"] = "C" if prng.random() < 0.9 else ""
        row["date_evenement"] = fmt(day)
        row["saisi_le"] = self._timestamp(prng)
        row.update(self._details(etype, prng, day))
        if prng.random() < 0.35:
            row["commentaire"] = self._comment(prng)
        return row

    def _details(self, etype: str, prng: _Rng, day: date) -> dict[str, str]:
        fmt, rnd = self.fmt, prng.random
        if etype == "ENT":
            return {"modalite": _MODALITES[bisect(_MODALITE_CUM, rnd())],
                    "premier_entretien": "O" if rnd() < 0.15 else "N"}
        if etype == "MER":
            out = {"num_offre": str(1_000_000 + prng.below(1_000_000))[1:] + prng.pick(_LETTERS),
                   "siret": _siret(prng), "resultat": prng.pick(_RESULTATS)}
            if rnd() < 0.7:
                out["code_rome"] = prng.pick(_ROMES)
            return out
        if etype == "SOR" or etype == "MAN":
            return {"motif": prng.pick(_MOTIFS[etype])}
        if etype == "CPA":
            return {"parcours": prng.pick(_PARCOURS)}
        if etype in ("PFO", "EFO"):
            out = {"formacode": prng.pick(_FORMACODES)}
            if etype == "EFO" or rnd() < 0.5:
                out["organisme"] = self._organisme(prng)
            if etype == "EFO" or rnd() < 0.3:
                begin = day + timedelta(days=prng.between(-3, 30) if etype == "PFO" else prng.between(0, 3))
                out["date_debut"] = fmt(begin)
                if rnd() < 0.7:
                    out["date_fin"] = fmt(begin + timedelta(days=prng.between(20, 300)))
            return out
        if etype in ("PPR", "EPR"):
            out = {"code_prestation": prng.pick(_PRESTATIONS)}
            if rnd() < 0.5:
                out["organisme"] = self._organisme(prng)
            if etype == "EPR":
                begin = day + timedelta(days=prng.between(0, 5))
                out["date_debut"] = fmt(begin)
                if rnd() < 0.6:
                    out["date_fin"] = fmt(begin + timedelta(days=prng.between(5, 90)))
            return out
        # PEM
        contrat = prng.pick(_CONTRATS)
        begin = day + timedelta(days=prng.between(0, 14))
        out = {"type_contrat": contrat, "siret": _siret(prng), "date_debut": fmt(begin)}
        if contrat in ("CDD", "CTT") or rnd() < 0.5:
            out["date_fin"] = fmt(begin + timedelta(days=prng.between(7, 365)))
        if rnd() < 0.7:
            out["code_rome"] = prng.pick(_ROMES)
        return out

    def _organisme(self, prng: _Rng) -> str:
        if prng.random() < 0.03:
            return prng.pick(_ORGANISMES_SEMICOLON)
        return prng.pick(_ORGANISMES)

    def _comment(self, prng: _Rng) -> str:
        text = prng.pick(_COMMENTS)
        draw = prng.random()
        if draw < 0.03:
            text = f"{text}\r\n{prng.pick(_COMMENTS)}"
        elif draw < 0.06:
            text = f"{text}{prng.pick(_CONTROL_CHARS)}{prng.pick(_COMMENTS)}"
        elif draw < 0.09:
            text = f"{text} ; {prng.pick(_COMMENTS)}"
        return text

    def _timestamp(self, prng: _Rng) -> str:
        return f"{self.night_text} {_TWO[prng.between(8, 18)]}:{_TWO[prng.below(60)]}:{_TWO[prng.below(60)]}"

    def _modify_or_cancel(self, export: _Export, rng: _Rng) -> None:
        """An M or A of an event created earlier in this file: same key, another content."""
        recent = export.recent
        position = rng.below(len(recent))
        row = dict(recent[position])
        if rng.random() < _P_CANCEL / (_P_MODIFY + _P_CANCEL):
            row["operation"] = "A"
            recent[position] = recent[-1]
            recent.pop()
        else:
            row["operation"] = "M"
            others = [c for c in export.counsellors if c != row["conseiller"]] or ["ZZZ99"]
            row["conseiller"] = rng.pick(others)
            if row["type_evenement"] == "MER":
                row["resultat"] = rng.pick([r for r in _RESULTATS if r != row["resultat"]])
            recent[position] = row
        row["saisi_le"] = self._timestamp(rng)
        self._write(export, row)

    # -- defects ----------------------------------------------------------------------------

    def _defect_line(self, person: dict[str, Any], export: _Export, prng: _Rng,
                     day: date) -> None:
        rng, fmt = self.rng, self.fmt
        code = _DEFECT_CODES[bisect(_DEFECT_CUM, rng.random() * _DEFECT_CUM[-1])]
        variant, raw_line = code, None
        if code == "E10":
            row = self._row(person, export, prng, day, rng.pick(("EFO", "EPR", "PEM")))
            begin = day + timedelta(days=2)
            row["date_debut"], row["date_fin"] = fmt(begin), fmt(begin - timedelta(days=rng.between(1, 30)))
        elif code == "E08":
            row = self._row(person, export, prng, day, rng.pick(("MER", "PEM")))
            siret = row["siret"]
            while siret_is_valid(siret):
                siret = siret[:13] + str((int(siret[13]) + rng.between(1, 9)) % 10)
            row["siret"] = siret
        elif code == "E07":
            row = self._row(person, export, prng, day, self._type(prng))
            years = rng.pick((rng.between(27, 34), rng.between(12, 15)))
            row["date_naissance"] = fmt(day - timedelta(days=years * 365 + rng.between(10, 300)))
        elif code == "E04":
            row = self._row(person, export, prng, self.night + timedelta(days=rng.between(20, 120)),
                            self._type(prng))
        elif code == "E06":
            row = self._row(person, export, prng, day, self._type(prng))
            self.orphan_id += rng.between(1, 50)
            row["id_evenement"] = str(self.orphan_id)
            row["operation"] = "M" if rng.random() < 0.7 else "A"
        else:
            variant = rng.pick(_E09_VARIANTS)
            row, raw_line = self._e09(variant, person, export, prng, day)
        line = export.line + 1  # where the record starts (a comment may break it over lines)
        self._write(export, row, raw_line=raw_line)
        bucket = "store" if code == "E06" else "preflight"
        self.counts[bucket][code] += 1
        key = f"{export.code_ml}-{row['id_evenement']}"
        if variant in ("champs_en_trop", "guillemet"):
            key = None  # the line cannot be split: no key
        self.defects.append({"file": export.path.name, "line": line, "code": code, "variant": variant,
                             "key": key})

    def _e09(self, variant: str, person: dict[str, Any], export: _Export, prng: _Rng,
             day: date) -> tuple[dict[str, str], str | None]:
        rng = self.rng
        if variant == "code":
            etype, name, bad = rng.pick(_BAD_CODES)
            row = self._row(person, export, prng, day, etype)
            row[name] = bad
            return row, None
        row = self._row(person, export, prng, day, self._type(prng))
        row.pop("commentaire", None)  # keep the line on one physical line, free of quotes
        if variant == "absent":
            etype = row["type_evenement"]
            required = {"ENT": "modalite", "MER": "resultat", "PFO": "formacode", "EFO": "organisme",
                        "PPR": "code_prestation", "EPR": "date_debut", "PEM": "siret",
                        "SOR": "motif", "MAN": "motif", "CPA": "parcours"}[etype]
            row[required] = ""
        elif variant == "date":
            row["date_evenement"] = day.isoformat()
        elif variant == "identifiant":
            row["identifiant_pe"] = row["identifiant_pe"][1:]
        elif variant == "type":
            row["type_evenement"] = "RDV"
        elif variant == "octet_illisible":
            row["organisme"] = "Greta \udc81 Nord"  # a byte Windows-1252 does not define
        else:
            row["organisme"] = "Greta Nord" if variant == "guillemet" else "Greta; antenne Nord"
            values = [row.get(c, "").replace(";", ",") if c != "organisme" else row["organisme"]
                      for c in export.columns]
            if variant == "guillemet":  # an opening quote never closed
                values[export.columns.index("organisme")] = '"Greta Nord'
            return row, ";".join(values) + "\r\n"
        return row, None

    def _write(self, export: _Export, row: dict[str, str], *, raw_line: str | None = None) -> None:
        if raw_line is not None:
            export.handle.write(raw_line)
            breaks = 0
        else:
            full = _BLANK_ROW.copy()
            full.update(row)
            self.sink.target = export.handle
            self.writer.writerow(export.pick(full))
            breaks = row.get("commentaire", "").count("\n") if export.has_comments else 0
        export.line += 1 + breaks
        export.records += 1
        self.operations[row.get("operation") or "C"] += 1
        self.types[row["type_evenement"]] += 1

    # -- manifest ---------------------------------------------------------------------------

    def _manifest(self, exports: list[_Export]) -> dict[str, Any]:
        counts = self.counts
        rejected = (sum(counts["preflight"].values()) + sum(counts["store"].values())
                    + sum(counts["business_events"].values()))
        return {
            "seed": self.seed,
            "night": self.night.isoformat(),
            "today": (self.night + timedelta(days=1)).isoformat(),
            "missions_locales": len(exports),
            "records": self.events,
            "persons": self.persons,
            "registry_rows": self.registry_rows,
            "files": [{"file": e.path.name, "code_ml": e.code_ml, "records": e.records,
                       "physical_lines": e.line, "has_nir": "nir" in e.columns,
                       "unknown_column": e.unknown} for e in exports],
            "operations": dict(sorted(self.operations.items())),
            "types": dict(sorted(self.types.items())),
            "rejects_preflight": dict(sorted(counts["preflight"].items())),
            "rejects_store": dict(sorted(counts["store"].items())),
            "rejects_business": dict(sorted(counts["business_events"].items())),
            "business_persons": dict(sorted(counts["business_persons"].items())),
            "identity_variants_accepted": dict(sorted(counts["harmless"].items())),
            "accepted": self.events - rejected,
            "defects": self.defects,
        }


def _cumulative(weights: tuple[float, ...]) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


_CATEGORY_CUM = _cumulative(_CATEGORY_SHARES)
_TWO = tuple(f"{n:02d}" for n in range(100))  # format specs are slow in a hot loop
_THREE = tuple(f"{n:03d}" for n in range(1000))
_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")
_DEFECT_CUM = _cumulative(_DEFECT_WEIGHTS)
_EVENT_COUNT_CUM = _cumulative(_EVENT_COUNT_WEIGHTS)


def _siret(prng: _Rng) -> str:
    """A SIRET passing Luhn: 13 random digits and the check digit (not La Poste's SIREN)."""
    body = str(10**13 + prng.below(10**13))[1:].encode("ascii")
    if body.startswith(b"356000000"):
        body = b"1" + body[1:]
    # of 14 digits, the 1st, 3rd… 13th are doubled; the 14th is the check digit
    total = sum(body[0::2].translate(_DOUBLED)) + sum(body[1::2]) - 13 * 48
    return body.decode("ascii") + str(-total % 10)


def _text(day: date) -> str:
    """JJ/MM/AAAA (five times faster than ``strftime``); birth and delegation dates, which a
    person has once, are formatted with it directly, not kept in the `_Dates` cache."""
    return f"{_TWO[day.day]}/{_TWO[day.month]}/{day.year}"


def _fold(text: str) -> str:
    """Without accents (the registry's spelling may drop them; DUDE compares without them)."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
