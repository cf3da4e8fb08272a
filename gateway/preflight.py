"""Pre-flight: the domain rules an event must pass before it may be sent to DUDE (brief §3, §4).

Pure functions over values, shared by every way an event comes in (the Parcours 3 adapter, the
partner HTTP API): no file, no store, no clock (the day of the run is in `PreflightConfig`). A
failing event becomes ``INVALIDE`` with one reject code and is never sent, never lost, and the rest
of its file goes on (STYLE "record outcomes, don't stop").

Rules needing the store are *not* here: an ``M``/``A`` must refer to an event sent before (``E06``),
an identical event is not sent twice, a changed one goes as a new version. The pipeline applies
them to the `Valid` outcomes.

Messages are in French for support staff. They name the Parcours 3 column at fault and, for codes
that identify nobody (SIRET, dates of a period…), the bad value; they never carry the young
person's name, birth date, jobseeker id or social security number (brief §6: logs name event keys,
never people).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, TypeAlias
from zoneinfo import ZoneInfo

from gateway.codes import CONTRACTS_WITH_END, EventType, Operation, RejectCode
from gateway.domain import TYPE_FIELDS, Event
from gateway.errors import RecordRejected

if TYPE_CHECKING:  # settings pull pydantic in; pre-flight itself only needs three values
    from gateway.settings import Settings

#: Inclusive age bounds of the co-traitance on the event date (brief §1, §3).
AGE_MIN, AGE_MAX = 16, 25

#: Fields that identify the young person: never quoted in a message or a log (brief §6).
PERSONAL_FIELDS = frozenset(
    {"nom", "prenom", "date_naissance", "identifiant_pe", "nir", "num_dossier", "commentaire"}
)

#: Common fields every event carries besides its typed ones (brief §3).
COMMON_REQUIRED = ("code_ml", "id_evenement", "identifiant_pe", "nom", "prenom", "date_naissance",
                   "conseiller", "type_evenement", "date_evenement")

#: The typed fields each type *requires*, derived once from `TYPE_FIELDS`.
REQUIRED_BY_TYPE: dict[EventType, tuple[str, ...]] = {
    etype: tuple(name for name, required in spec if required) for etype, spec in TYPE_FIELDS.items()
}

_LA_POSTE_SIREN = "356000000"
_FOURTEEN_DIGITS = re.compile(r"[0-9]{14}")
#: ASCII digit d -> ASCII digit of Luhn's doubled value (2d, minus 9 past 9).
_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


@dataclass(frozen=True, slots=True)
class PreflightConfig:
    """What pre-flight needs from the settings, plus the day it runs (for "not in the future").

    Usage: ``PreflightConfig.from_settings(settings)`` in the application;
    ``PreflightConfig(identifiant_pe_pattern=r"[0-9]{7}[A-Z]", send_comments=False,
    today=date(2026, 11, 29))`` in tests, so that "today" is fixed.
    """

    identifiant_pe_pattern: str
    send_comments: bool
    today: date
    #: Zone of Parcours 3 timestamps (``saisi_le``), brief §3.
    timezone: str = "Europe/Paris"

    @classmethod
    def from_settings(cls, settings: Settings, today: date | None = None) -> PreflightConfig:
        """Take the three input settings; ``today`` defaults to today in ``settings.timezone``."""
        if today is None:
            today = datetime.now(ZoneInfo(settings.timezone)).date()
        return cls(
            identifiant_pe_pattern=settings.identifiant_pe_pattern,
            send_comments=settings.send_comments,
            today=today,
            timezone=settings.timezone,
        )

    @property
    def identifiant_pe_regex(self) -> re.Pattern[str]:
        """The configured jobseeker-id pattern, compiled once per pattern string."""
        return compiled_pattern(self.identifiant_pe_pattern)


@lru_cache(maxsize=16)
def compiled_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a settings pattern once; callers match it with ``fullmatch``."""
    return re.compile(pattern)


# --- outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Valid:
    """A record that passed pre-flight, with where it came from (for the store and support)."""

    event: Event
    source_file: str
    source_line: int

    @property
    def key(self) -> str:
        return self.event.key


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record refused before sending: it becomes ``INVALIDE`` with this code (brief §3, §5).

    ``key`` is ``code_ml-id_evenement`` when both parse, else ``None`` (the line number still
    locates it). ``fields`` are the raw values as read, for the console: never ``nir``, and
    ``commentaire`` only when comments may be passed on.
    """

    code: RejectCode
    message: str
    field: str | None
    source_file: str
    source_line: int
    key: str | None
    fields: dict[str, str] = dc_field(default_factory=dict)


Outcome: TypeAlias = Valid | Rejection


# --- rules ----------------------------------------------------------------------------------


def siret_is_valid(siret: str) -> bool:
    """14 digits passing the Luhn check, or a La Poste establishment (SIREN 356000000), whose
    numbers are allocated so that the sum of their digits is a multiple of 5 (INSEE rule)."""
    if not _FOURTEEN_DIGITS.fullmatch(siret):
        return False
    digits = siret.encode("ascii")
    # 14 digits: the 1st, 3rd… from the left are doubled (digits of the double summed)
    total = sum(digits[0::2].translate(_DOUBLED)) + sum(digits[1::2]) - 14 * 48
    if total % 10 == 0:
        return True
    return siret.startswith(_LA_POSTE_SIREN) and (sum(digits) - 14 * 48) % 5 == 0


def age_on(birth: date, day: date) -> int:
    """Age in whole years on ``day`` (someone born on 29 February gets a year older on 1 March)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def fr_date(value: date) -> str:
    """A date as Parcours 3 shows it, JJ/MM/AAAA, for messages."""
    return value.strftime("%d/%m/%Y")


def check_event(event: Event, config: PreflightConfig) -> None:
    """Raise `RecordRejected` with the first failing rule, in the order E09, E10, E08, E07, E04.

    The order puts what support staff must complete before what they must correct, so one
    round-trip in Parcours 3 fixes the line. A cancellation (``A``) needs only the event's key and
    the common fields: its typed fields are not required, but when given they must still hold.
    """
    _check_required(event)
    start, end = event.date_debut, event.date_fin
    if start is not None and end is not None and end < start:
        raise RecordRejected(
            RejectCode.E10,
            f"date_fin ({fr_date(end)}) antérieure à la date_debut ({fr_date(start)}).",
            field="date_fin",
        )
    if event.siret is not None and not siret_is_valid(event.siret):
        raise RecordRejected(
            RejectCode.E08,
            f"siret « {event.siret} » invalide : la clé de contrôle (Luhn) est fausse.",
            field="siret",
        )
    age = age_on(event.date_naissance, event.date_evenement)
    if age < AGE_MIN or age > AGE_MAX:
        side = f"moins de {AGE_MIN} ans" if age < AGE_MIN else f"plus de {AGE_MAX} ans"
        raise RecordRejected(
            RejectCode.E07,
            f"Le jeune a {side} à la date de l'événement ({fr_date(event.date_evenement)}) : "
            "vérifier date_naissance et date_evenement.",
            field="date_naissance",
        )
    if event.date_evenement > config.today:
        raise RecordRejected(
            RejectCode.E04,
            f"date_evenement ({fr_date(event.date_evenement)}) postérieure à la date du jour "
            f"({fr_date(config.today)}).",
            field="date_evenement",
        )


def _check_required(event: Event) -> None:
    for name in COMMON_REQUIRED:
        if not getattr(event, name):
            raise RecordRejected(RejectCode.E09, f"Champ obligatoire absent : {name}.", field=name)
    if event.operation is Operation.CANCEL:
        return
    etype = event.type_evenement
    for name in REQUIRED_BY_TYPE[etype]:
        if getattr(event, name) is None:
            raise RecordRejected(
                RejectCode.E09,
                f"Champ obligatoire absent pour un événement {etype.value} ({etype.label}) : {name}.",
                field=name,
            )
    if etype is EventType.PEM and event.date_fin is None and event.type_contrat in CONTRACTS_WITH_END:
        raise RecordRejected(
            RejectCode.E09,
            f"Champ obligatoire absent pour un contrat {event.type_contrat} : date_fin.",
            field="date_fin",
        )
