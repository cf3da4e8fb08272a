"""Partner JSON → the same `Outcome` as a Parcours 3 export line (brief §2: "partner system (HTTP JSON)").

A partner sends one JSON object per event whose field names are the Parcours 3 column names (brief §3),
with two differences that suit JSON: dates are ISO 8601 (``AAAA-MM-JJ``), ``saisi_le`` an ISO 8601
timestamp (Paris time when it has no offset), and ``premier_entretien`` may be ``true``/``false`` as
well as ``O``/``N``. Everything else is the text a Parcours 3 export would hold.

Why it goes through `adapters.parcours3.mapping.parse_record` instead of a parser of its own: the
brief wants the *same* pre-flight rules whichever way an event comes in. So each object is turned
into the text fields of a Parcours 3 record (ISO dates become ``JJ/MM/AAAA``) and handed to the very
function that checks export lines; only a date that is not ISO is refused here, with a message in
ISO terms (``E09``), and the days pre-flight's messages name are written back in ISO (`_iso_days`).

What a partner sent is kept as sent when it is refused: a `Rejection` carries the JSON fields
(never ``nir``; ``commentaire`` only when comments may be passed on), so the console shows the
partner's own values and a resend re-runs this very function on them (`gateway.support`).

A control character in a value that is kept (NUL, ESC, DEL, a C1 control…: `_SILENTLY_DROPPED`) refuses
the event, ``E09`` naming the field. Pre-flight would remove it from a text without a word and a code
with it would be "malformed" anyway; removed, the event was stored and sent to DUDE with a value the
partner never sent, and nobody was told. Tab, LF and CR are text (in a name or a comment they become
spaces, as in an export). The refused event keeps its fields without the characters a database
refuses (`mapping.UNSTORABLE`), as an export line's rejection does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from adapters.parcours3.mapping import CONTROL_CHARACTERS as _SILENTLY_DROPPED  # what `clean_text` removes unsaid
from adapters.parcours3.mapping import UNSTORABLE, parse_record, record_key
from adapters.parcours3.reader import SourceRecord
from gateway.codes import RejectCode
from gateway.preflight import PERSONAL_FIELDS, Outcome, PreflightConfig, Rejection

#: Fields holding a date, ISO in JSON, ``JJ/MM/AAAA`` in Parcours 3.
DATE_FIELDS = ("date_naissance", "date_evenement", "date_debut", "date_fin")
#: Fields never kept, whatever a partner sends (brief §3, §6).
DROPPED_FIELDS = frozenset({"nir"})

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NAIVE_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}")
_zone = lru_cache(maxsize=8)(ZoneInfo)
#: A day in a pre-flight message (``JJ/MM/AAAA``), and a value a message quotes, « … » (`_iso_days`).
_P3_DAY = re.compile(r"\b([0-9]{2})/([0-9]{2})/([0-9]{4})\b")
_QUOTED = re.compile(r"(«[^»]*»)")


class _NotIso(Exception):
    def __init__(self, name: str, value: str, expected: str):
        super().__init__(name)
        self.name, self.value, self.expected = name, value, expected


def json_fields(item: Mapping[str, Any]) -> dict[str, str]:
    """The partner's fields as text, exactly as sent: no ``nir``, no empty value; booleans of
    ``premier_entretien`` as ``O``/``N``. A control character is left for `parse_item` to refuse."""
    fields: dict[str, str] = {}
    for name, value in item.items():
        if value is None:
            continue
        if value.__class__ is not str:  # the usual case is text (an API request holds ~15 per event)
            if isinstance(value, bool):
                value = "O" if value else "N"
            elif not isinstance(value, str):
                value = str(value)
        if name in DROPPED_FIELDS:
            continue
        fields[name] = value
    return fields


def _control_character(fields: Mapping[str, str], config: PreflightConfig) -> tuple[str, str, int] | None:
    """The first kept field holding a control character: (field, character, its place in the value from 1).
    A comment that is not passed on is not looked at: nothing of it is kept or sent."""
    for name, value in fields.items():
        if value.isprintable():  # the usual case, checked in C
            continue
        found = _SILENTLY_DROPPED.search(value)
        if found is not None and (name != "commentaire" or config.send_comments):
            return name, found[0], found.start() + 1
    return None


def _control_rejection(fields: dict[str, str], found: tuple[str, str, int], config: PreflightConfig, *,
                       source_file: str, source_line: int) -> Rejection:
    """``E09`` for a value holding a control character: the field, which character and where — never the
    value, which may be a name."""
    name, character, place = found
    nth = "1er" if place == 1 else f"{place}e"
    storable = {k: UNSTORABLE.sub("", v) for k, v in fields.items()}
    return Rejection(code=RejectCode.E09, field=name, source_file=source_file, source_line=source_line,
                     key=record_key(storable), fields=_shown(storable, config),
                     message=f"Champ mal formé : {name} contient un caractère de contrôle (U+{ord(character):04X}, "
                             f"{nth} caractère) : l'événement est refusé plutôt que transmis avec une valeur "
                             "modifiée ; retirer ce caractère et soumettre l'événement de nouveau.")


@lru_cache(maxsize=8192)  # birth and event dates repeat a lot within a request
def _iso_date_to_p3(value: str) -> str | None:
    """``AAAA-MM-JJ`` → ``JJ/MM/AAAA``; ``None`` if not an ISO date, ``""`` if one that does not exist."""
    if _ISO_DATE.fullmatch(value) is None:
        return None
    try:
        date(int(value[:4]), int(value[5:7]), int(value[8:]))
    except ValueError:
        return ""
    return f"{value[8:]}/{value[5:7]}/{value[:4]}"


def _p3_date(name: str, value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    converted = _iso_date_to_p3(value)
    if converted is None:
        raise _NotIso(name, value, "une date AAAA-MM-JJ")
    if not converted:
        raise _NotIso(name, value, "une date AAAA-MM-JJ qui existe")
    return converted


def _p3_timestamp(value: str, config: PreflightConfig) -> str:
    """An ISO 8601 timestamp → ``JJ/MM/AAAA HH:MM:SS`` in the configured zone. Checked here, so that a
    partner's mistake is told in ISO terms about the value it sent (an hour 25 is not "JJ/MM/AAAA"), and
    so that an instant that exists nowhere in the zone's calendar (``9999-12-31T23:59:59-12:00`` is year
    10000 in Paris) is an ``E09`` for that one event rather than a failure of the whole request."""
    value = value.strip()
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(_zone(config.timezone))
    except ValueError:
        raise _NotIso("saisi_le", value, "un horodatage ISO 8601 (AAAA-MM-JJTHH:MM:SS) qui existe") from None
    except OverflowError:
        raise _NotIso("saisi_le", value, "un horodatage entre les années 0001 et 9999 à l'heure de Paris") from None
    if _NAIVE_TIMESTAMP.fullmatch(value):  # the usual case, Paris time already: the text as it is
        return f"{value[8:10]}/{value[5:7]}/{value[:4]} {value[11:19]}"
    return moment.strftime("%d/%m/%Y %H:%M:%S")


def to_p3_fields(fields: Mapping[str, str], config: PreflightConfig) -> dict[str, str]:
    """The Parcours 3 text of a partner's fields (raises `_NotIso` for a date that is not ISO)."""
    p3 = dict(fields)
    for name in DATE_FIELDS:
        value = p3.get(name)
        if value:
            p3[name] = _p3_date(name, value)
    value = p3.get("saisi_le")
    if value:
        p3["saisi_le"] = _p3_timestamp(value, config)
    return p3


def parse_item(item: Mapping[str, Any], config: PreflightConfig, *, source_file: str,
               source_line: int) -> Outcome:
    """One partner object → `Valid` or `Rejection`, by exactly the rules of a Parcours 3 line.

    ``source_file``/``source_line`` say where it came from (the API names the client and the
    request, and the position in it), as a file name and a line do for an export.
    """
    fields = json_fields(item)
    found = _control_character(fields, config)
    if found is not None:
        return _control_rejection(fields, found, config, source_file=source_file, source_line=source_line)
    try:
        p3 = to_p3_fields(fields, config)
    except _NotIso as exc:
        quoted = "" if exc.name in PERSONAL_FIELDS else f" « {exc.value[:40]} »"
        return Rejection(code=RejectCode.E09, field=exc.name, source_file=source_file,
                         source_line=source_line, key=record_key(fields), fields=_shown(fields, config),
                         message=f"Champ mal formé : {exc.name}{quoted} (attendu : {exc.expected}).")
    outcome = parse_record(SourceRecord(source_file, source_line, p3), config)
    if isinstance(outcome, Rejection):
        return replace(outcome, fields=_shown(fields, config), message=_iso_days(outcome.message))
    return outcome


def _iso_days(message: str) -> str:
    """Pre-flight's message with its days written as the partner writes them, ``AAAA-MM-JJ``: pre-flight
    speaks Parcours 3 (`gateway.preflight.fr_date`), and "date_evenement (01/01/2027) postérieure à la date du
    jour (30/11/2026)" named, to a partner who sent ``2027-01-01``, a day in a format it never used. A value
    quoted « … » is what was sent, and stays as it was sent."""
    if "/" not in message:
        return message
    parts = _QUOTED.split(message)  # odd parts are the quoted values
    return "".join(part if i % 2 else _P3_DAY.sub(r"\3-\2-\1", part) for i, part in enumerate(parts))


def _shown(fields: dict[str, str], config: PreflightConfig) -> dict[str, str]:
    """What a rejection keeps of the partner's fields: the comment only when comments may be passed on."""
    return fields if config.send_comments else {k: v for k, v in fields.items() if k != "commentaire"}
