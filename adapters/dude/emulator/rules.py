"""DUDE's business rules for one event (brief §4, reject codes ``E01``…``E10``), as pure functions.

`check` takes one record (as `adapters.dude.events_xml.read_event` reads it from the *signed*
envelope), the jobseeker registry, a view of the ledger and "today", and answers ``None``
(accepted) or ``(RejectCode, message)``. It reads nothing else and writes nothing: the caller decides
what an acceptance changes (see `is_duplicate`).

Order of the checks — one event gets one code, so the order decides which one support staff see:

1. **The ledger** (``E05``, duplicates, ``E06``). A (key, version) already *accepted* with the same
   content is a duplicate, answered accepted whatever today's registry says (§4: "never as an error
   that would start a retry loop"); with other content it is ``E05``. A (key, version) only ever
   *rejected* was never applied and is judged again. ``M``/``A`` of a key with no accepted version is
   ``E06``.
2. **Whether the document can be read** (``E09``): the key must begin with the ``CodeML`` it carries,
   the operation must match the element (``Annulation`` ⇔ ``A``), dates must be real dates. XSD 1.0
   can state none of these.
3. **Who** (``E01``, ``E02``, ``E03``): unknown jobseeker, then not delegated to this mission locale
   (another one, or the delegation ended before the event date), then an identity mismatch. ``E02``
   comes before ``E03`` so that a mission locale cannot use DUDE's answers to probe the identity of
   another mission locale's jobseekers.
4. **When** (``E04``, ``E07``): event date after today or before the delegation began; age outside
   16–25 inclusive on the event date (from DUDE's birth date, equal to the event's once ``E03`` passed).
5. **What** (``E09``, ``E10``, ``E08``): a required field the XSD cannot require (``date_fin`` of a
   ``CDD``/``CTT`` employment period), an end date before the start date, a SIRET failing its check key.

A cancellation (``A``) goes through steps 1–3 only: the dates and details it recalls were checked
when the version it cancels was accepted.

Left alone on purpose (the brief makes none of them an error, and the gateway's store decides the
operation and version): a ``C`` for a key that already has an accepted version, versions arriving out
of order (v3 before v2), an ``M``/``A`` after an accepted ``A``, and an ``Annulation`` whose
``typeEvenement`` differs from the type of the version it cancels.

Messages are French and never carry a name or a birth date (§6): they name the field at fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any, Protocol

from adapters.dude.emulator.registry import Jobseeker, name_key
from gateway.codes import CONTRACTS_WITH_END, EventType, RejectCode
from gateway.domain import TYPE_FIELDS

Verdict = tuple[RejectCode, str] | None

MIN_AGE, MAX_AGE = 16, 25
#: La Poste's SIREN: its establishments' SIRETs have a digit sum divisible by 5 instead of a Luhn key
#: (INSEE); the head office, 356 000 000 00048, passes Luhn.
LA_POSTE_SIREN = "356000000"
_XSD_DATE = re.compile(r"\s*(\d{4})-(\d{2})-(\d{2})(?:Z|[+-]\d{2}:\d{2})?\s*")
_REQUIRED = {t.value: tuple(name for name, required in fields if required) for t, fields in TYPE_FIELDS.items()}
_DETAILS = {t.value: tuple(name for name, _ in fields) for t, fields in TYPE_FIELDS.items()}
_DATED_PERIODS = ("PFO", "EFO", "EPR", "PEM")
_SIRET_TYPES = ("MER", "PEM")
_CONTRACTS_WITH_END = frozenset(c.value for c in CONTRACTS_WITH_END)
_PEM = EventType.PEM.value


class People(Protocol):
    """Who DUDE knows: an `adapters.dude.emulator.registry.Registry`, or the part of it an envelope
    names (`Registry.find`, a plain ``dict``)."""

    def get(self, identifiant_pe: str, /) -> Jobseeker | None:
        """The jobseeker with this identifier, or None."""


class LedgerView(Protocol):
    """What the rules need to know of the past (`adapters.dude.emulator.ledger.LedgerSnapshot`)."""

    def accepted_hash(self, key: str, version: int) -> str | None:
        """Content hash of (key, version) if it was accepted, else None."""

    def has_accepted(self, key: str) -> bool:
        """Whether any version of ``key`` was accepted."""


def is_duplicate(record: Mapping[str, Any], digest: str, ledger: LedgerView) -> bool:
    """Same (key, version) already accepted with the same content: answer accepted, apply nothing."""
    return ledger.accepted_hash(record["key"], record["version"]) == digest


def check(record: Mapping[str, Any], *, content_hash: str, registry: People, ledger: LedgerView,
          today: date) -> Verdict:
    """``None`` if DUDE accepts the event, else its reject code and a French message."""
    key, version, operation = record["key"], record["version"], record["operation"]

    # 1. The ledger
    prior = ledger.accepted_hash(key, version)
    if prior is not None:
        if prior == content_hash:
            return None
        return RejectCode.E05, (f"La version {version} de l'événement {key} a déjà été acceptée avec un "
                                "autre contenu : une modification doit partir en nouvelle version.")
    if operation in ("M", "A") and not ledger.has_accepted(key):
        verb = "Modification" if operation == "M" else "Annulation"
        return RejectCode.E06, (f"{verb} de l'événement {key}, dont aucune version n'a été acceptée par "
                                "le DUDE : l'envoyer en création.")

    # 2. Can it be read?
    get = record.get
    type_code = get("type_evenement")
    code_ml = get("code_ml")
    if key.partition("-")[0] != code_ml:
        return RejectCode.E09, (f"L'identifiant de l'événement {key} ne commence pas par le code de la "
                                f"mission locale émettrice ({code_ml}).")
    has_details = False
    for name in _DETAILS.get(type_code, ()):
        if name in record:
            has_details = True
            break
    if operation == "A" and has_details:
        return RejectCode.E09, "Une annulation (opération A) doit porter l'élément Annulation, sans détail."
    if operation != "A" and not has_details:
        return RejectCode.E09, "L'élément Annulation n'est admis qu'avec l'opération A."
    # Four dates at most, each parsed once; the loop is unrolled because it runs for every event.
    event_day = birth_day = start = end = None
    text = get("date_evenement")
    if text is not None and (event_day := parse_date(text)) is None:
        return RejectCode.E09, f"{_LABELS['date_evenement']} : date illisible."
    text = get("date_naissance")
    if text is not None and (birth_day := parse_date(text)) is None:
        return RejectCode.E09, f"{_LABELS['date_naissance']} : date illisible."
    text = get("date_debut")
    if text is not None and (start := parse_date(text)) is None:
        return RejectCode.E09, f"{_LABELS['date_debut']} : date illisible."
    text = get("date_fin")
    if text is not None and (end := parse_date(text)) is None:
        return RejectCode.E09, f"{_LABELS['date_fin']} : date illisible."
    if event_day is None or birth_day is None:
        return RejectCode.E09, "Date de l'événement ou date de naissance absente."

    # 3. Who
    person = registry.get(get("identifiant_pe") or "")
    if person is None:
        return RejectCode.E01, "Identifiant demandeur d'emploi inconnu du fichier du DUDE."
    if person.code_ml != code_ml:
        return RejectCode.E02, (f"Le demandeur d'emploi n'est pas confié à la mission locale "
                                f"{code_ml}.")
    if person.date_fin_cotraitance is not None and event_day > person.date_fin_cotraitance:
        return RejectCode.E02, (f"La co-traitance avec la mission locale {code_ml} a pris fin le "
                                f"{_fr(person.date_fin_cotraitance)}, avant la date de l'événement "
                                f"({_fr(event_day)}).")
    same_nom = name_key(get("nom") or "") == person.nom_key
    same_prenom = name_key(get("prenom") or "") == person.prenom_key
    same_birth = birth_day == person.date_naissance
    if not (same_nom and same_prenom and same_birth):
        differing = [label for label, same in (("nom", same_nom), ("prénom", same_prenom),
                                               ("date de naissance", same_birth)) if not same]
        return RejectCode.E03, f"Identité différente du dossier du DUDE : {', '.join(differing)}."
    if operation == "A":
        return None

    # 4. When
    if event_day > today:
        return RejectCode.E04, (f"Date de l'événement ({_fr(event_day)}) postérieure à la date du jour "
                                f"({_fr(today)}).")
    if event_day < person.date_debut_cotraitance:
        return RejectCode.E04, (f"Date de l'événement ({_fr(event_day)}) antérieure au début de la "
                                f"co-traitance ({_fr(person.date_debut_cotraitance)}).")
    age = age_on(person.date_naissance, event_day)
    if not MIN_AGE <= age <= MAX_AGE:
        return RejectCode.E07, (f"Le jeune a {age} ans à la date de l'événement ; la co-traitance concerne "
                                f"les {MIN_AGE} à {MAX_AGE} ans inclus.")

    # 5. What
    required = _REQUIRED.get(type_code, ())
    for name in required:
        if get(name) is None:
            missing = [name for name in required if get(name) is None]
            return RejectCode.E09, f"Champ obligatoire absent pour ce type d'événement : {', '.join(missing)}."
    if type_code == _PEM and get("type_contrat") in _CONTRACTS_WITH_END and end is None:
        return RejectCode.E09, (f"Date de fin obligatoire pour une période d'emploi en "
                                f"{record['type_contrat']}.")
    if type_code in _DATED_PERIODS and start is not None and end is not None and end < start:
        return RejectCode.E10, f"Date de fin ({_fr(end)}) antérieure à la date de début ({_fr(start)})."
    if type_code in _SIRET_TYPES:
        siret = get("siret") or ""
        if not siret_is_valid(siret):
            return RejectCode.E08, f"SIRET {siret} invalide : 14 chiffres et une clé de contrôle juste attendus."
    return None


# -- helpers (public: the tests and the console may use them) ---------------------------------------

def siret_is_valid(siret: str) -> bool:
    """14 digits with a valid check key: Luhn, or for La Poste a digit sum divisible by 5.

    DUDE's own implementation, independent from the gateway's pre-flight on purpose: a foreign peer
    must not share the sender's bugs.
    """
    if len(siret) != 14 or not siret.isascii() or not siret.isdigit():
        return False
    if siret.startswith(LA_POSTE_SIREN) and sum(map(int, siret)) % 5 == 0:
        return True
    return luhn_ok(siret)


def luhn_ok(digits: str) -> bool:
    """The Luhn check (ISO/IEC 7812-1): from the right, every second digit doubled, digits summed."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def age_on(birth: date, day: date) -> int:
    """Age in whole years on ``day`` (someone born on 29 February has a birthday on 1 March)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def parse_date(text: str) -> date | None:
    """An ``xs:date`` lexical form (surrounding spaces and a time zone allowed) → date, else None."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    match = _XSD_DATE.fullmatch(text)
    if not match:
        return None
    try:
        return date(*(int(g) for g in match.groups()))
    except ValueError:
        return None


def _fr(day: date) -> str:
    return day.strftime("%d/%m/%Y")


_LABELS = {"date_evenement": "Date de l'événement", "date_naissance": "Date de naissance",
           "date_debut": "Date de début", "date_fin": "Date de fin"}
