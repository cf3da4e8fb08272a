"""From a Parcours 3 record (text) to a checked domain `Event`, or a `Rejection` saying why not.

Brief §3 gives the formats; this module turns each column into its typed value, keeps only the
typed fields the event's type carries (`gateway.domain.TYPE_FIELDS`), applies the data-minimisation
setting to ``commentaire``, then runs the domain rules of `gateway.preflight`. Every parse failure
is an ``E09`` naming the Parcours 3 column, so support staff know what to correct.

What it does not do: rules that need the store (``E06`` for an ``M``/``A`` of an unknown event,
duplicates, versions) belong to the pipeline, which receives the `Valid` outcomes.

Hot path: ~20,000 records a night, so no per-record compilation or allocation that can be
avoided: patterns are compiled once, codes are looked up in sets, dates go through a small cache,
and only the columns the event's type keeps are parsed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from adapters.parcours3.reader import SourceRecord, read_export
from gateway.codes import (
    EventType, Modalite, MotifManquement, MotifSortie, Operation, Parcours, RejectCode, Resultat,
    TypeContrat,
)
from gateway.domain import TYPE_FIELDS, Event
from gateway.errors import RecordRejected
from gateway.preflight import PERSONAL_FIELDS, Outcome, PreflightConfig, Rejection, Valid, check_event

COMMENT_MAX = 255
TEXT_MAX = 100
_SHOWN_MAX = 40  # longest bad value quoted in a message

_BREAKS = re.compile(r"\r\n|[\t\n\r\v\f]")
#: Characters XML 1.0 cannot carry or a reader would not see: C0/C1 controls, DEL, non-characters.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
#: What a database refuses (PostgreSQL: NUL), or a console could not show: out of a refused record's kept fields.
UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_DATE = re.compile(r"[0-9]{2}/[0-9]{2}/[0-9]{4}")
_TIMESTAMP = re.compile(r"[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_CODE_ML = re.compile(r"[0-9]{5}")
_ID_EVENEMENT = re.compile(r"[0-9]{1,20}")  # the XSD key is [0-9]{5}-[0-9]{1,20}
_CONSEILLER = re.compile(r"[A-Za-z0-9]{1,10}")


class _Malformed(Exception):
    """A value does not have its column's format; ``expected`` says what it should look like."""

    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


# --- value parsers: (stripped, non-empty text) -> typed value, or _Malformed -----------------

Parser = Callable[[str], Any]


def _pattern(regex: str, expected: str) -> Parser:
    compiled = re.compile(regex)

    def parse(value: str) -> str:
        if compiled.fullmatch(value) is None:
            raise _Malformed(expected)
        return value

    return parse


def _code(values: frozenset[str], expected: str) -> Parser:
    """An enumerated code; case is forgiven (``ind`` is ``IND``), nothing else is."""

    def parse(value: str) -> str:
        code = value.upper()
        if code not in values:
            raise _Malformed(expected)
        return code

    return parse


def _codes_of(enum: Any) -> frozenset[str]:
    return frozenset(member.value for member in enum)


def _listing(enum: Any) -> str:
    return "un code parmi " + ", ".join(member.value for member in enum)


_DATE_CACHE: dict[str, date] = {}
_DATE_CACHE_MAX = 20_000  # a night holds a few thousand distinct dates (birth dates mostly)


def _date(value: str) -> date:
    parsed = _DATE_CACHE.get(value)
    if parsed is not None:
        return parsed
    if _DATE.fullmatch(value) is None:
        raise _Malformed("une date JJ/MM/AAAA")
    try:
        parsed = date(int(value[6:]), int(value[3:5]), int(value[:2]))
    except ValueError:
        raise _Malformed("une date JJ/MM/AAAA qui existe") from None
    if len(_DATE_CACHE) >= _DATE_CACHE_MAX:
        _DATE_CACHE.clear()
    _DATE_CACHE[value] = parsed
    return parsed


def _flag(value: str) -> bool:
    flag = value.upper()
    if flag == "O":
        return True
    if flag == "N":
        return False
    raise _Malformed("O ou N")


def clean_text(value: str) -> str:
    """Line breaks and tabs become spaces, other control characters go (they cannot go in XML)."""
    if value.isprintable():  # the usual case, checked in C
        return value.strip()
    return CONTROL_CHARACTERS.sub("", _BREAKS.sub(" ", value)).strip()


def _text(limit: int) -> Parser:
    def parse(value: str) -> str:
        text = clean_text(value)
        if not text:
            raise _Malformed("un texte")
        if len(text) > limit:
            raise _Malformed(f"au plus {limit} caractères, {len(text)} trouvés")
        return text

    return parse


#: Parsers of the optional columns (the typed fields of brief §3, and ``num_dossier``).
_PARSERS: dict[str, Parser] = {
    "num_dossier": _pattern(r"[0-9]{1,20}", "des chiffres (20 au plus)"),
    "date_debut": _date,
    "date_fin": _date,
    "modalite": _code(_codes_of(Modalite), _listing(Modalite)),
    "premier_entretien": _flag,
    "formacode": _pattern(r"[0-9]{5}", "5 chiffres"),
    "organisme": _text(TEXT_MAX),
    "code_prestation": _pattern(r"[A-Z]{3}[0-9]{2}", "3 lettres majuscules et 2 chiffres"),
    "num_offre": _pattern(r"[0-9]{6}[A-Z]", "6 chiffres et une lettre majuscule"),
    "siret": _pattern(r"[0-9]{14}", "14 chiffres"),
    "code_rome": _pattern(r"[A-N][0-9]{4}", "une lettre de A à N et 4 chiffres"),
    "type_contrat": _code(_codes_of(TypeContrat), _listing(TypeContrat)),
    "resultat": _code(_codes_of(Resultat), _listing(Resultat)),
    "parcours": _code(_codes_of(Parcours), _listing(Parcours)),
}
_MOTIF_PARSERS: dict[EventType, Parser] = {
    EventType.SOR: _code(_codes_of(MotifSortie), _listing(MotifSortie)),
    EventType.MAN: _code(_codes_of(MotifManquement), _listing(MotifManquement)),
}
_EVENT_TYPES = {member.value: member for member in EventType}
_OPERATIONS = {member.value: member for member in Operation}

#: Per event type, the typed columns it keeps with their parser (others are dropped unread).
_TYPED_PARSERS: dict[EventType, tuple[tuple[str, Parser], ...]] = {
    etype: tuple((name, _MOTIF_PARSERS[etype] if name == "motif" else _PARSERS[name])
                 for name, _ in spec)
    for etype, spec in TYPE_FIELDS.items()
}


def _event_type(value: str) -> EventType:
    etype = _EVENT_TYPES.get(value.upper())
    if etype is None:
        raise _Malformed(_listing(EventType))
    return etype


#: The columns every record needs, in the order they are checked: (name, pattern the text must
#: match and is kept as, or a parser, and what is expected). ``identifiant_pe`` has neither: its
#: pattern is a setting (the agency has changed formats, brief §3).
_COMMON_FIELDS: tuple[tuple[str, re.Pattern[str] | None, Parser | None, str], ...] = (
    ("id_evenement", _ID_EVENEMENT, None, "des chiffres (20 au plus)"),
    ("code_ml", _CODE_ML, None, "5 chiffres"),
    ("identifiant_pe", None, None, ""),  # `identifiant_pe_expected`
    ("nom", None, _text(TEXT_MAX), ""),
    ("prenom", None, _text(TEXT_MAX), ""),
    ("date_naissance", None, _date, ""),
    ("conseiller", _CONSEILLER, None, "1 à 10 lettres ou chiffres"),
    ("type_evenement", None, _event_type, ""),
    ("date_evenement", None, _date, ""),
)
_zone = lru_cache(maxsize=8)(ZoneInfo)


# --- records --------------------------------------------------------------------------------


def parse_record(record: SourceRecord, config: PreflightConfig) -> Outcome:
    """Parse one record and run pre-flight: `Valid` with the event, or `Rejection` with its code."""
    if record.problem is not None:
        return _rejection(record, config, RejectCode.E09, record.problem, None)
    try:
        event = _event(record.fields, config)
        check_event(event, config)
    except RecordRejected as exc:
        return _rejection(record, config, exc.reject, exc.message, exc.field)
    return Valid(event, record.source_file, record.line)


def parse_export(path: str | os.PathLike[str], config: PreflightConfig, *,
                 encoding: str = "auto") -> Iterator[Outcome]:
    """Every outcome of one export, in file order. The header is checked now (raising
    `ExportFileError` for a file refused whole); the records are read as the result is iterated."""
    reader = read_export(path, encoding=encoding)
    return (parse_record(record, config) for record in reader)


#: The agency's jobseeker id, as `Settings.identifiant_pe_pattern` has it by default, in words.
_DEFAULT_PE_WORDS = "7 chiffres puis une lettre majuscule, par exemple 9876543Z"


def identifiant_pe_expected(pattern: str) -> str:
    """What an ``identifiant_pe`` should look like, for an ``E09``: "le format d'identifiant France Travail
    configuré" told support staff and partners nothing they could check a value against."""
    from gateway.settings import Settings  # only for a refusal: the reader's process does not load settings

    if pattern == Settings.model_fields["identifiant_pe_pattern"].default:
        return _DEFAULT_PE_WORDS
    return f"le format d'identifiant France Travail configuré, {pattern} (GATEWAY_IDENTIFIANT_PE_PATTERN)"


def _event(fields: dict[str, str], config: PreflightConfig) -> Event:
    get = fields.get
    values: dict[str, Any] = {}
    for name, pattern, parser, expected in _COMMON_FIELDS:
        value = (get(name) or "").strip()
        if not value:
            raise RecordRejected(RejectCode.E09, f"Champ obligatoire absent : {name}.", field=name)
        if parser is None:
            if (pattern or config.identifiant_pe_regex).fullmatch(value) is None:
                raise _e09(name, value, expected or identifiant_pe_expected(config.identifiant_pe_pattern))
            values[name] = value
        else:
            try:
                values[name] = parser(value)
            except _Malformed as exc:
                raise _e09(name, value, exc.expected) from None
    etype = values["type_evenement"]

    value = (get("operation") or "").strip()
    if value:
        operation = _OPERATIONS.get(value.upper())
        if operation is None:
            raise _e09("operation", value, "C, M ou A")
        values["operation"] = operation
    value = (get("num_dossier") or "").strip()
    if value:
        values["num_dossier"] = _parse("num_dossier", value)
    value = (get("saisi_le") or "").strip()
    if value:
        values["saisi_le"] = _timestamp(value, config)

    for name, parser in _TYPED_PARSERS[etype]:
        value = (get(name) or "").strip()
        if value:
            try:
                values[name] = parser(value)
            except _Malformed as exc:
                raise _e09(name, value, exc.expected) from None

    if config.send_comments:
        value = get("commentaire")
        if value:
            comment = clean_text(value)[:COMMENT_MAX].rstrip()
            if comment:
                values["commentaire"] = comment
    return Event(**values)


def _parse(name: str, value: str) -> Any:
    try:
        return _PARSERS[name](value)
    except _Malformed as exc:
        raise _e09(name, value, exc.expected) from None


def _timestamp(value: str, config: PreflightConfig) -> datetime:
    """``JJ/MM/AAAA HH:MM:SS`` in the configured zone (brief §3: Europe/Paris), timezone-aware."""
    if _TIMESTAMP.fullmatch(value) is not None:
        try:
            return datetime.combine(_date(value[:10]), time.fromisoformat(value[11:]),
                                    _zone(config.timezone))
        except (_Malformed, ValueError):
            pass
    raise _e09("saisi_le", value, "un horodatage JJ/MM/AAAA HH:MM:SS")


def _e09(name: str, value: str, expected: str) -> RecordRejected:
    """A malformed-field reject; the value is quoted only if it identifies nobody (brief §6)."""
    if name in PERSONAL_FIELDS:
        shown = ""
    else:
        shown = value if len(value) <= _SHOWN_MAX else value[:_SHOWN_MAX] + "…"
        shown = f" « {CONTROL_CHARACTERS.sub('?', _BREAKS.sub(' ', shown))} »"
    return RecordRejected(RejectCode.E09, f"Champ mal formé : {name}{shown} (attendu : {expected}).",
                          field=name)


def _rejection(record: SourceRecord, config: PreflightConfig, code: RejectCode, message: str,
               field: str | None) -> Rejection:
    return Rejection(code=code, message=message, field=field, source_file=record.source_file,
                     source_line=record.line, key=record_key(record.fields),
                     fields=_shown_fields(record.fields, config))


def record_key(fields: dict[str, str]) -> str | None:
    """``code_ml-id_evenement`` when both parse, else ``None`` (brief §4)."""
    code_ml = (fields.get("code_ml") or "").strip()
    id_evenement = (fields.get("id_evenement") or "").strip()
    if _CODE_ML.fullmatch(code_ml) and _ID_EVENEMENT.fullmatch(id_evenement):
        return f"{code_ml}-{id_evenement}"
    return None


def _shown_fields(fields: dict[str, str], config: PreflightConfig) -> dict[str, str]:
    """The raw values kept with a rejection: no ``nir`` (the reader dropped it), no comment
    unless comments may be passed on, and no control character a database would refuse."""
    return {name: UNSTORABLE.sub("", value) for name, value in fields.items()
            if name != "nir" and (name != "commentaire" or config.send_comments)}
