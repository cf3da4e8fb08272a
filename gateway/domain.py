"""The domain event: one Parcours 3 record, parsed and checked, as the gateway keeps and sends it.

An `Event` is a frozen value. It never holds the social security number (`nir`): the adapter drops
that column before an `Event` exists (brief §3, §6). The free-text comment is present only when the
data-minimisation setting lets it through.

Identity of an event across nights is its *key*, ``code_ml-id_evenement`` (brief §4). Its *content
hash* covers exactly what is sent to DUDE, so that "same key, same content" means "nothing new to
send" and a changed content means a new version (brief §3).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, fields, replace
from operator import attrgetter
from datetime import date, datetime
from typing import Any

import orjson

from gateway.codes import EventType, Operation

#: An export named for one mission locale (brief §3: ``P3_<code_ml>_<AAAAMMJJ>.csv``).
_EXPORT_NAME_ML = re.compile(r"P3_([0-9]{5})_")


def export_prefix(code_ml: str) -> str:
    """How the name of an export for ``code_ml`` begins (brief §3)."""
    return f"P3_{code_ml}_"


def export_code_ml(name: str) -> str | None:
    """The mission locale an export's file name is for (``P3_69001_20261128.csv``: 69001), or None (a national
    file). Whose a line is when its own ``code_ml`` cannot be read (ingest), and who is told of a refused export
    (the console's run notes, the runs a scoped caller sees)."""
    found = _EXPORT_NAME_ML.match(name)
    return found.group(1) if found else None


#: Fields that travel to DUDE (with the identity and event type), in the order they are hashed.
WIRE_FIELDS = (
    "code_ml", "id_evenement", "identifiant_pe", "nom", "prenom", "date_naissance", "conseiller",
    "type_evenement", "date_evenement", "date_debut", "date_fin", "modalite", "premier_entretien",
    "formacode", "organisme", "code_prestation", "num_offre", "siret", "code_rome", "type_contrat",
    "resultat", "parcours", "motif", "commentaire",
)

#: Optional typed fields, the Parcours 3 column names (brief §3).
DETAIL_FIELDS = (
    "date_debut", "date_fin", "modalite", "premier_entretien", "formacode", "organisme",
    "code_prestation", "num_offre", "siret", "code_rome", "type_contrat", "resultat", "parcours",
    "motif",
)


@dataclass(frozen=True, slots=True)
class Event:
    """One event as recorded in Parcours 3, parsed and pre-flight checked."""

    code_ml: str
    id_evenement: str
    identifiant_pe: str
    nom: str
    prenom: str
    date_naissance: date
    conseiller: str
    type_evenement: EventType
    date_evenement: date
    operation: Operation = Operation.CREATE
    num_dossier: str | None = None
    date_debut: date | None = None
    date_fin: date | None = None
    modalite: str | None = None
    premier_entretien: bool | None = None
    formacode: str | None = None
    organisme: str | None = None
    code_prestation: str | None = None
    num_offre: str | None = None
    siret: str | None = None
    code_rome: str | None = None
    type_contrat: str | None = None
    resultat: str | None = None
    parcours: str | None = None
    motif: str | None = None
    commentaire: str | None = None
    saisi_le: datetime | None = None

    @property
    def key(self) -> str:
        """The stable key DUDE knows the event by: ``code_ml-id_evenement`` (brief §4)."""
        return f"{self.code_ml}-{self.id_evenement}"

    @property
    def is_cancellation(self) -> bool:
        return self.operation is Operation.CANCEL

    def content_hash(self) -> str:
        """SHA-256 of what DUDE receives (plus whether it cancels), stable across runs and machines."""
        return record_hash(to_record(self))

    def with_changes(self, **changes: Any) -> Event:
        return replace(self, **changes)


_DATE_FIELDS = {"date_naissance", "date_evenement", "date_debut", "date_fin"}


_FIELD_NAMES = tuple(f.name for f in fields(Event))
# Every field in one C call (`attrgetter` of several names returns a tuple): ingest reads all the
# fields of each of the night's events.
_ALL_FIELDS = attrgetter(*_FIELD_NAMES)
_CANCEL = Operation.CANCEL.value


def to_record(event: Event) -> dict[str, Any]:
    """A JSON-ready dict (ISO dates, codes as strings, ``None`` fields left out) for the store.

    Written for speed (ingest calls it for every line of every export): one read of all fields, the
    type tested inline (a helper function per value cost more than the conversion itself).
    """
    record: dict[str, Any] = {}
    for name, value in zip(_FIELD_NAMES, _ALL_FIELDS(event), strict=True):
        if value is None:
            continue
        kind = value.__class__
        if kind is str or kind is bool:
            record[name] = value
        elif kind is date or kind is datetime:
            record[name] = value.isoformat()
        else:  # EventType, Operation: their wire code
            record[name] = value.value
    return record


def json_digest(value: Any, *, sort_keys: bool = False) -> str:
    """SHA-256 (hex) of ``value``'s compact JSON: the content hashes of the store (`record_hash`, the
    hash of a rejected line in `gateway.pipeline.ingest`) and of the emulator's ledger.

    Both keep these digests across versions, so the bytes hashed must never change: for text, booleans
    and nulls, ``orjson.dumps`` writes byte for byte what ``json.dumps(..., ensure_ascii=False,
    separators=(",", ":"))`` wrote before it (checked on every Unicode code point; with ASCII keys,
    ``sort_keys`` orders them alike), ten times faster. Tests pin digests made by the stdlib encoder.
    """
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)).hexdigest()


def record_hash(record: dict[str, Any]) -> str:
    """`Event.content_hash` computed from a stored record (saves rebuilding the `Event`): the wire
    fields' values, in `WIRE_FIELDS` order, and whether it cancels."""
    get = record.get
    payload = [get(name) for name in WIRE_FIELDS]
    payload.append(get("operation") == _CANCEL)
    return json_digest(payload)


def stored_form(event: Event) -> tuple[dict[str, Any], str]:
    """``(to_record(event), record_hash(to_record(event)))``: what ingest stores for an event."""
    record = to_record(event)
    return record, record_hash(record)


def from_record(record: dict[str, Any]) -> Event:
    """The inverse of `to_record`: rebuild an `Event` from what the store kept."""
    values = dict(record)
    for name in _DATE_FIELDS:
        if values.get(name) is not None:
            values[name] = date.fromisoformat(values[name])
    if values.get("saisi_le") is not None:
        values["saisi_le"] = datetime.fromisoformat(values["saisi_le"])
    values["type_evenement"] = EventType(values["type_evenement"])
    values["operation"] = Operation(values.get("operation", "C"))
    return Event(**values)


def event_as_dict(event: Event) -> dict[str, Any]:
    """All fields with native types (for templates and tests)."""
    return asdict(event)


#: The typed fields each event type carries, in XML order, with whether each is required (brief §3).
#: A field not listed for a type is not kept on the event. ``date_fin`` of a PEM is required for
#: CDD/CTT contracts only (`gateway.codes.CONTRACTS_WITH_END`), which `gateway.preflight` checks.
TYPE_FIELDS: dict[EventType, tuple[tuple[str, bool], ...]] = {
    EventType.ENT: (("modalite", True), ("premier_entretien", True)),
    EventType.PFO: (("formacode", True), ("organisme", False), ("date_debut", False), ("date_fin", False)),
    EventType.EFO: (("formacode", True), ("organisme", True), ("date_debut", True), ("date_fin", False)),
    EventType.MER: (("num_offre", True), ("siret", True), ("code_rome", False), ("resultat", True)),
    EventType.PPR: (("code_prestation", True), ("organisme", False)),
    EventType.EPR: (("code_prestation", True), ("organisme", False), ("date_debut", True), ("date_fin", False)),
    EventType.PEM: (("type_contrat", True), ("siret", True), ("code_rome", False), ("date_debut", True),
                    ("date_fin", False)),
    EventType.SOR: (("motif", True),),
    EventType.MAN: (("motif", True),),
    EventType.CPA: (("parcours", True),),
}
