"""The API's models, named by role (STYLE, full-stack-fastapi-template): ``…In`` what a client sends,
``…Public`` what it reads, ``…Detail`` one item with everything, `Page` a slice of a list.

Request models forbid unknown fields (a typo is a 422 naming the field, not a silently lost value)
and carry an example each. The event fields are the Parcours 3 column names (brief §3). Only the two
that make the event's key (``code_ml``, ``id_evenement``) are required by the schema: without a key
there is no event to answer about. The others are *optional* in the schema on purpose: a missing or
malformed value is a pre-flight reject of that one event (``E09`` naming the field), exactly as for a
line of an export, not a refusal of the request. Their lengths are bounded generously, to protect the
server; the business limits are pre-flight's.

A JSON body is read without pydantic's lax conversions where they turn a mistake into a meaning: a
boolean as a number (``{"run_id": true}`` was run 1, and a bulk resend really resent its events), a
number as a date (``{"date_from": 0}`` was 1970-01-01, ``20261101`` a Unix timestamp), ``1`` as
``true``. Numbers and booleans there are strict (`JsonInt`, `StrictBool`), days and instants are
ISO 8601 text only (`IsoDate`, `IsoInstant`, on query strings too: "20261101" is no more a day there).
Query strings stay lax for numbers: they are text by nature. A ``null`` for a required field is told
as the field missing ("champ obligatoire"), which is what it is, not as a wrong type.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StringConstraints,
)
from pydantic_core import PydanticCustomError

from gateway.codes import EnvelopeState, EventState, EventType, RejectCode

T = TypeVar("T")

Code = Annotated[str, StringConstraints(max_length=32)]
Text = Annotated[str, StringConstraints(max_length=1000)]
DateText = Annotated[str, StringConstraints(max_length=32)]
CODE_ML_PATTERN = r"^[0-9]{5}$"
ID_EVENEMENT_PATTERN = r"^[0-9]{1,20}$"
CURSOR_PATTERN = r"^[A-Za-z0-9_-]*$"
#: A text that is not blank (after its spaces are stripped): a close comment.
NOT_BLANK_PATTERN = r"\S"
CodeMl = Annotated[str, StringConstraints(pattern=CODE_ML_PATTERN)]
IdEvenement = Annotated[str, StringConstraints(pattern=ID_EVENEMENT_PATTERN)]
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ISO_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ].*", re.DOTALL)


def _iso_day(value: Any) -> Any:
    """Only "AAAA-MM-JJ" goes on to pydantic's date parsing, which would also take a number, or digits,
    as a Unix timestamp. A `date` is let through for Python callers. The error's type is pydantic's own
    for a value that is not a date, so that its French message is `gateway.api.problems`' one."""
    if (isinstance(value, str) and _ISO_DAY.fullmatch(value)) or (type(value) is date):
        return value
    raise PydanticCustomError("date_type", "Input should be a date in the format YYYY-MM-DD")


def _iso_instant(value: Any) -> Any:
    """Only ISO 8601 text (a day, then ``T`` and a time) goes on to pydantic's datetime parsing, which would
    also take a number as a Unix timestamp."""
    if (isinstance(value, str) and _ISO_INSTANT.fullmatch(value)) or isinstance(value, datetime):
        return value
    raise PydanticCustomError("datetime_type", "Input should be an ISO 8601 timestamp")


def _fits_utc(value: datetime) -> datetime:
    """An instant the store can hold: it is kept in UTC, and ``9999-12-31T23:59:59-12:00`` is in the year
    10,000 there (``0001-01-01T00:00:00+14:00`` in the year 0): the conversion failed in the query, a 500."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_out_of_range", "Input is out of the calendar once in UTC") from None
    return value


#: An instant whose offset's ``+`` became a space: a ``+`` pasted unencoded into a URL, read back.
_PLUS_AS_SPACE = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}[0-9:.,]*) ([0-9]{2}(?::?[0-9]{2})?)")


def _query_instant(value: Any) -> Any:
    """In a query string a ``+`` stands for a space (form encoding): ``updated_from=2026-11-29T10:00:00+01:00``
    pasted as is into a URL arrives as ``2026-11-29T10:00:00 01:00``, refused as "horodatage ISO 8601 attendu"
    without a word of why. Said here, with the value as it is to be written (``%2B``; or ``Z``)."""
    if isinstance(value, str) and (found := _PLUS_AS_SPACE.fullmatch(value)):
        raise PydanticCustomError("datetime_plus_as_space", "The offset's '+' was read as a space: write %2B",
                                  {"written": f"{found[1]}%2B{found[2]}"})
    return _iso_instant(value)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control_characters(value: Any) -> Any:
    """A close comment, a pause reason, a filter's text: kept in the history and the audit as typed, shown in
    the console. A NUL made PostgreSQL fail the request (500); SQLite stored it, with the other control
    characters, and ``"\\u0000\\u0001"`` passed for a comment that is "not only spaces". Tabs and line
    breaks are text."""
    if isinstance(value, str) and _CONTROL.search(value):
        raise PydanticCustomError("control_character", "Control characters are not accepted")
    return value


#: The same in the published schema, for clients and for generated tests (a field may have its own pattern too).
NO_CONTROL_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


def _printable_schema(schema: dict[str, Any]) -> None:
    schema.setdefault("allOf", []).append({"pattern": NO_CONTROL_PATTERN})


#: Text without control characters (`_no_control_characters`), and said so in the OpenAPI document.
Printable = BeforeValidator(_no_control_characters)
PrintableSchema = Field(json_schema_extra=_printable_schema)


def _json_integer(value: Any) -> Any:
    """A JSON integer: ``12``, or ``12.0``, which JSON Schema calls an integer too (and which generated
    clients may send); never ``true`` (read as 1: it resent run 1's events), ``"12"`` or ``12.5``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise PydanticCustomError("int_type", "Input should be a valid integer")


#: An integer in a JSON body (`_json_integer`).
JsonInt = Annotated[int, BeforeValidator(_json_integer)]


def _present(value: Any) -> Any:
    """``null`` for a required field: told as the field missing, the same error as leaving it out."""
    if value is None:
        raise PydanticCustomError("missing", "Field required")
    return value


def _bool_or_text(value: Any) -> Any:
    """``true``/``false`` or text (O/N), as documented; a number is not read as a boolean. One error naming
    the field, rather than one per member of the union (``premier_entretien.bool``…)."""
    if value is None or isinstance(value, bool | str):
        return value
    raise PydanticCustomError("bool_or_text_type", "Input should be true, false or a string (O/N)")


#: A day, "AAAA-MM-JJ" only.
IsoDate = Annotated[date, BeforeValidator(_iso_day)]
#: An instant with its offset, ISO 8601 text only.
IsoInstant = Annotated[AwareDatetime, BeforeValidator(_iso_instant), AfterValidator(_fits_utc)]
#: The same in a query string, where the offset's ``+`` may have become a space.
QueryInstant = Annotated[AwareDatetime, BeforeValidator(_query_instant), AfterValidator(_fits_utc)]
#: A required field's ``null`` is a missing field.
Present = BeforeValidator(_present)
#: ``true``/``false`` or O/N.
Flag = Annotated[StrictBool | Code, BeforeValidator(_bool_or_text)]

#: An opaque page cursor (`gateway.api.pagination`): base64url text, given back unchanged.
Cursor = Annotated[str, StringConstraints(max_length=200, pattern=CURSOR_PATTERN)]

EXAMPLE_EVENT = {
    "id_evenement": "1001", "code_ml": "69001", "num_dossier": "40001", "identifiant_pe": "1234567A",
    "nom": "Lefèvre", "prenom": "Zoé", "date_naissance": "2004-05-06", "conseiller": "CONS01",
    "type_evenement": "ENT", "operation": "C", "date_evenement": "2026-11-20", "modalite": "IND",
    "premier_entretien": "O", "saisi_le": "2026-11-20T10:15:00+01:00",
}


def _f(description: str, **kw: Any) -> Any:
    return Field(None, description=description, **kw)


#: What a value may not hold (`adapters.parcours3.partner_json`), said in the schema and in both submissions.
CONTROL_CHARACTERS_RULE = (
    "Un caractère de contrôle dans la valeur d'un champ (U+0000 à U+001F sauf la tabulation et les sauts de ligne "
    "LF et CR, U+007F à U+009F, U+FFFE, U+FFFF) n'est jamais retiré en silence : l'événement est enregistré "
    "`INVALIDE`, rejet `E09` nommant le champ (`reject.field`), et n'est pas transmis ; corriger la valeur et "
    "soumettre l'événement de nouveau. Le `commentaire` n'est examiné que s'il est transmis (minimisation des "
    "données).")


class EventIn(BaseModel):
    """One event as a partner sends it: Parcours 3 column names, ISO dates (brief §3). The schema's
    description is French, for the partner's developer."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "description": "Un événement tel qu'un partenaire le soumet : les noms des colonnes de Parcours 3, les "
                       "dates en ISO 8601. Seule la clé (`code_ml`, `id_evenement`) est exigée par le schéma ; un "
                       "autre champ absent, ou dont le texte est mal formé, rend l'événement `INVALIDE` au "
                       "pré-contrôle (`E09` nommant le champ), comme une ligne d'export, sans refuser la requête. "
                       f"{CONTROL_CHARACTERS_RULE}",
        "examples": [EXAMPLE_EVENT]})

    id_evenement: Annotated[IdEvenement, Present] = Field(
        description="Identifiant de l'événement dans Parcours 3 (chiffres). Avec `code_ml`, il fait la clé : sans "
                    "clé lisible, pas d'événement.")
    code_ml: Annotated[CodeMl, Present] = Field(
        description="Code de la mission locale (5 chiffres) ; doit être dans le périmètre du client, sinon "
                    "l'événement est refusé (`FORBIDDEN`).")
    num_dossier: Code | None = _f("Numéro du dossier du jeune dans Parcours 3 (chiffres).")
    identifiant_pe: Code | None = _f("Identifiant France Travail du jeune (7 chiffres et une lettre par "
                                     "défaut). Obligatoire.")
    nom: Text | None = _f("Nom du jeune. Obligatoire.")
    prenom: Text | None = _f("Prénom du jeune. Obligatoire.")
    date_naissance: DateText | None = _f("Date de naissance, AAAA-MM-JJ. Obligatoire.")
    nir: Text | None = _f("Numéro de sécurité sociale : accepté pour compatibilité, aussitôt écarté, "
                          "jamais enregistré ni transmis.", json_schema_extra={"writeOnly": True})
    conseiller: Code | None = _f("Code du conseiller (1 à 10 lettres ou chiffres). Obligatoire.")
    type_evenement: Code | None = _f("Type d'événement : " + ", ".join(t.value for t in EventType) + ". Obligatoire.")
    operation: Code | None = _f("C création (par défaut), M modification, A annulation.")
    date_evenement: DateText | None = _f("Date de l'événement, AAAA-MM-JJ. Obligatoire.")
    date_debut: DateText | None = _f("Début de la période (formation, prestation, emploi), AAAA-MM-JJ.")
    date_fin: DateText | None = _f("Fin de la période, AAAA-MM-JJ.")
    modalite: Code | None = _f("Entretien : IND, COL, TEL ou MEL.")
    premier_entretien: Flag | None = _f("Premier entretien après l'orientation : O/N ou true/false.")
    formacode: Code | None = _f("Formacode (5 chiffres).")
    organisme: Text | None = _f("Organisme de formation ou prestataire (100 caractères au plus).")
    code_prestation: Code | None = _f("Code de prestation (3 lettres et 2 chiffres).")
    num_offre: Code | None = _f("Numéro d'offre (6 chiffres et une lettre).")
    siret: Code | None = _f("SIRET de l'établissement employeur (14 chiffres, clé de Luhn).")
    code_rome: Code | None = _f("Code ROME (une lettre de A à N et 4 chiffres).")
    type_contrat: Code | None = _f("CDD, CTT, CAE, CIE, APP ou PRO.")
    resultat: Code | None = _f("Mise en relation : ATT, RET, NRE ou ABA.")
    parcours: Code | None = _f("Nouveau parcours : ACC, MOB ou ACT.")
    motif: Code | None = _f("Motif de sortie (EMP, FQU, ABA, DEM, AGE, AUT) ou de manquement (ABS, REF, AUT).")
    commentaire: Text | None = _f("Texte libre ; écarté sauf si la passerelle est réglée pour transmettre "
                                  "les commentaires (minimisation des données).")
    saisi_le: DateText | None = _f("Horodatage de saisie, ISO 8601 : avec son fuseau (`2026-11-20T10:15:00+01:00`, "
                                   "`2026-11-20T09:15:00Z`) ou sans (lu alors à l'heure de Paris).")


#: The most events a bulk submission may ever hold: the ceiling of ``api_max_events_per_request``
#: (`gateway.settings`), so that the request model refuses a longer list before validating any item.
API_EVENTS_CEILING = 100_000


class EventBulkIn(BaseModel):
    """Several events in one request (at most `api_max_events_per_request`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"events": [
        EXAMPLE_EVENT, {**EXAMPLE_EVENT, "id_evenement": "1002", "type_evenement": "CPA", "parcours": "ACC",
                        "modalite": None, "premier_entretien": None}]}]})

    #: ``max_length``: pydantic refuses a longer list before validating any item (200,000 invalid items took
    #: ~10 s of CPU to be refused as too many). The configured limit, lower, is checked after (`submit_events`).
    events: Annotated[list[EventIn], Present] = Field(min_length=1, max_length=API_EVENTS_CEILING,
                                                      description="Les événements, traités chacun pour soi.")


class RejectPublic(BaseModel):
    """Why an event is refused: the code of the catalogue (brief §4), its French label and the hint
    telling support staff what to correct in Parcours 3."""

    code: str = Field(description="E01…E10, L01…L07 ; pour un refus de l'API : FORBIDDEN, CONFLICT (la même clé "
                                  "plus haut dans la requête, à la position que donne `message`, comptée à partir "
                                  "de 0 comme `index`).")
    label: str | None = Field(None, description="Libellé français du code.")
    hint: str | None = Field(None, description="Quoi faire : corriger dans Parcours 3 pour une ligne d'export, "
                                               "soumettre de nouveau pour un événement reçu par l'API.")
    message: str | None = Field(None, description="Le détail propre à cet événement.")
    field: str | None = Field(None, description="Le champ en cause, quand il est connu.")


class SubmissionItem(BaseModel):
    index: int = Field(description="Position de l'événement dans la requête, comptée à partir de 0 (le premier "
                                   "événement est 0), comme dans le `field` d'une erreur 422 (`events.3.nom` : le "
                                   "quatrième). L'événement relu (`GET /api/v1/events/{key}`) la donne comptée à "
                                   "partir de 1 : `source_line` = `index` + 1.")
    outcome: Literal["CREE", "NOUVELLE_VERSION", "DEJA_RECU", "REFUSE"] = Field(
        description="CREE : version 1 enregistrée ; NOUVELLE_VERSION ; DEJA_RECU : rien d'enregistré, même clé et "
                    "même contenu que la dernière version, ou nouvelle tentative d'une requête qui avait déjà "
                    "enregistré cet événement (même `X-Request-ID`, même position, même contenu), même si une "
                    "version plus récente a été reçue depuis ; `version` et `state` sont toujours ceux de la "
                    "dernière version ; REFUSE : non enregistré (voir `reject`).")
    key: str | None = Field(None, description="Clé de l'événement, `code_ml-id_evenement`.")
    version: int | None = None
    state: EventState | None = None
    reject: RejectPublic | None = None


class SubmissionOut(BaseModel):
    request_id: str
    counts: dict[str, int] = Field(description="Nombre d'événements par `outcome`.")
    results: list[SubmissionItem]


class HistoryEntry(BaseModel):
    version: int
    state: EventState
    at: datetime
    cause: str
    code: str | None = Field(None, description="Code du rejet ; pour un renvoi, celui du rejet remplacé.")
    envelope_id: str | None = Field(None, description="Lot ; pour un renvoi, celui du rejet remplacé.")
    run_id: int | None = None
    actor: str | None = Field(None, description="Qui a agi (support), sinon vide.")


class VersionSummary(BaseModel):
    version: int
    operation: str
    state: EventState
    reject_code: str | None = None
    envelope_id: str | None = None
    created_at: datetime
    updated_at: datetime


class EventPublic(BaseModel):
    key: str
    version: int
    operation: str = Field(description="Opération envoyée au DUDE : C, M ou A.")
    event_type: str | None = None
    code_ml: str | None = None
    identifiant_pe: str | None = None
    date_evenement: date | None = None
    state: EventState
    state_label: str
    reject: RejectPublic | None = None
    source_file: str | None = Field(None, description="Fichier Parcours 3, ou `API:<client>:<requête>`.")
    source_line: int | None = Field(None, description="Ligne du fichier, comptée à partir de 1 (l'en-tête est la "
                                                      "ligne 1) ; pour un événement reçu par l'API, sa position dans "
                                                      "la requête comptée à partir de 1 (l'`index` de la réponse + 1).")
    run_id: int | None = None
    envelope_id: str | None = Field(None, description="Le dernier lot dans lequel l'événement a voyagé.")
    created_at: datetime
    updated_at: datetime


class EventDetail(EventPublic):
    fields: dict[str, Any] = Field(description="Les champs enregistrés (jamais le NIR) ; pour un événement "
                                               "invalide, tels que reçus.")
    versions: list[VersionSummary] = Field(description="Toutes les versions de la clé, de la première à la dernière.")
    envelopes: list[str] = Field(description="Les lots dans lesquels cette version a voyagé, dans l'ordre.")
    history: list[HistoryEntry] = Field(description="Tous les états de toutes les versions, dans l'ordre.")


class Page(BaseModel, Generic[T]):
    """A slice of a list; pass ``next_cursor`` back as ``cursor`` for the next one (``null``: the end)."""

    items: list[T]
    next_cursor: str | None = None


#: A run's outcomes, as `gateway.pipeline.run` records them, in the OpenAPI document (a description, not an enum:
#: a client generated from an enum would fail on an outcome added later).
RUN_OUTCOMES_DOC = (
    "Issue de l'exécution : `EN_COURS` ; `TERMINE` ; `TERMINE_AVEC_ERREURS` (un export refusé en entier, les "
    "autres lus) ; `TERMINE_SANS_ACCUSE` (des lots restent sans accusé de réception du DUDE : ils repartent avec le "
    "même IdLot) ; `ECHEC` (arrêtée par une erreur, `error` pour l'administrateur).")
RUN_TRIGGERS_DOC = ("Qui l'a lancée : `schedule` (la nuit planifiée), `cli` (`gateway run`), `api` "
                    "(`POST /api/v1/runs`), `demo` (`gateway demo`), `reprise` (une nuit qu'une instance arrêtée "
                    "n'a pas finie, reprise par une autre).")


class RunPublic(BaseModel):
    id: int
    trigger: str = Field(description=RUN_TRIGGERS_DOC)
    dry_run: bool
    inputs: list[str]
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str = Field(description=RUN_OUTCOMES_DOC)
    states: dict[str, int] = Field(description="Événements lus par cette exécution, par état (ceux du périmètre).")
    envelopes: dict[str, int] = Field(description="Lots de cette exécution, par état (ceux qui portent des "
                                                  "événements du périmètre).")
    unacknowledged_envelopes: int = Field(
        description="Lots de cette exécution (ceux qui portent des événements du périmètre) que le DUDE n'a pas "
                    "encore accusés, à cet instant : signés ou envoyés sans accusé de réception, ils repartent plus "
                    "tard avec le même IdLot. `outcome` reste ce qu'il était à la fin de l'exécution : "
                    "`TERMINE_SANS_ACCUSE` avec 0 ici, ses lots ont été envoyés depuis.")


class RunDetail(RunPublic):
    error: str | None = Field(None, description="Administrateur seulement.")
    summary: dict[str, Any] | None = Field(None, description="Le résumé complet de l'exécution (administrateur "
                                                             "seulement : il compte toutes les missions locales).")


class RunStartIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"inputs": [], "dry_run": False}, {"inputs": ["P3_69001_20261128.csv"], "dry_run": True}]})

    inputs: list[Annotated[str, StringConstraints(min_length=1, max_length=255)]] = Field(
        default_factory=list, max_length=1000,
        description="Exports Parcours 3 à lire, par nom, dans le dossier d'entrée de la passerelle ; vide : "
                    "envoyer les événements déjà en attente.")
    dry_run: StrictBool = Field(False, description="Dire ce qui serait envoyé, sans rien envoyer.")
    wait_for_reports: StrictBool = Field(True, description="Attendre les comptes rendus avant de terminer.")


class RunStarted(BaseModel):
    run_id: int
    outcome: str = "EN_COURS"
    location: str


class EnvelopeHistoryEntry(BaseModel):
    state: str
    at: datetime
    cause: str


class EnvelopePublic(BaseModel):
    id: str
    run_id: int | None = None
    state: str = Field(description="État du lot : " + " ; ".join(f"`{s.value}` ({s.label})" for s in EnvelopeState)
                       + ".")
    state_label: str
    created_at: datetime
    first_sent_at: datetime | None = None
    receipt_at: datetime | None = None
    report_at: datetime | None = None
    attempts: int
    reject: RejectPublic | None = None
    states: dict[str, int] = Field(description="Événements du périmètre du client dans ce lot, par état.")
    event_count: int | None = Field(None, description="Événements du lot (administrateur seulement).")
    accepted_count: int | None = Field(None, description="Administrateur seulement.")
    rejected_count: int | None = Field(None, description="Administrateur seulement.")


class EnvelopeDetail(EnvelopePublic):
    byte_size: int | None = Field(None, description="Administrateur seulement.")
    last_error: str | None = Field(None, description="Administrateur seulement.")
    history: list[EnvelopeHistoryEntry]


#: What ``run_id`` selects, in the resend filter and the search.
RUN_ID_TEXT = ("Numéro d'exécution (`/api/v1/runs`) : les événements qu'elle a lus ou, en dernier, envoyés (le "
               "`run_id` de l'événement).")


class EventFilterIn(BaseModel):
    """Which events a bulk resend acts on; at least one criterion. The caller's scope always applies."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1, "examples": [
        {"reject_code": "E03", "code_ml": "69001"}, {"states": ["SANS_REPONSE"], "date_from": "2026-11-01"}]})

    states: list[EventState] = Field(None, min_length=1, max_length=10,  # type: ignore[assignment]
                                     description="États (seuls INVALIDE, REJETE et SANS_REPONSE se renvoient).")
    reject_code: RejectCode = Field(None, examples=["E03"],  # type: ignore[assignment]
                                    description="Code de rejet : `E01`…`E10` (un événement), `L01`…`L07` (son lot).")
    code_ml: CodeMl = Field(None, examples=["69001"],  # type: ignore[assignment]
                            description="Mission locale (5 chiffres), parmi celles du périmètre du client.")
    identifiant_pe: Annotated[Code, Printable, PrintableSchema] = Field(  # type: ignore[assignment]
        None, examples=["1234567A"], description="Identifiant France Travail du jeune.")
    envelope_id: Annotated[str, StringConstraints(max_length=36), Printable, PrintableSchema] = Field(  # type: ignore[assignment]
        None, description="IdLot.", examples=["3f2a9c1d-4e5b-4a7c-9d8e-1f2a3b4c5d6e"])
    run_id: JsonInt = Field(None, ge=1, le=2**62, examples=[12],  # type: ignore[assignment]
                            description=RUN_ID_TEXT)
    date_from: IsoDate = Field(None, description="Date d'événement, à partir de (incluse), AAAA-MM-JJ.")  # type: ignore[assignment]
    date_to: IsoDate = Field(None, description="Date d'événement, jusqu'à (incluse), AAAA-MM-JJ.")  # type: ignore[assignment]
    updated_from: IsoInstant = Field(None, description="Dernier changement d'état, à partir de (ISO 8601, "  # type: ignore[assignment]
                                                       "avec fuseau).")
    updated_to: IsoInstant = Field(None, description="Dernier changement d'état, avant (ISO 8601, avec fuseau).")  # type: ignore[assignment]


class EventQuery(EventFilterIn):
    """Search criteria and paging (query string); ``state`` may be repeated."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={})

    states: list[EventState] = Field(None, alias="state", max_length=10,  # type: ignore[assignment]
                                     description="État (répétable).")
    #: Text by nature in a query string: "12" is the run 12, as it could be nothing else.
    run_id: int = Field(None, ge=1, le=2**62, examples=[12], description=RUN_ID_TEXT)  # type: ignore[assignment]
    key: Annotated[str, StringConstraints(max_length=120)] = Field(  # type: ignore[assignment]
        None, examples=["69001-1001"], description="Clé d'un événement (`code_ml-id_evenement`), entière : ses "
                                                   "versions qui répondent aux autres critères.")
    updated_from: QueryInstant = Field(None, description="Dernier changement d'état, à partir de (ISO 8601, "  # type: ignore[assignment]
                                                         "avec fuseau ; dans une adresse, « + » s'écrit `%2B`).")
    updated_to: QueryInstant = Field(None, description="Dernier changement d'état, avant (ISO 8601, avec fuseau ; "  # type: ignore[assignment]
                                                       "dans une adresse, « + » s'écrit `%2B`).")
    limit: int = Field(100, ge=1, le=1000, description="Taille de la page.")
    cursor: Cursor = Field(None, description="Le `next_cursor` de la page précédente, tel quel.")  # type: ignore[assignment]


class PageQuery(BaseModel):
    """Paging of a list (query string); an unknown parameter is a 422 naming it."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(50, ge=1, le=1000, description="Taille de la page.")
    cursor: Cursor = Field(None, description="Le `next_cursor` de la page précédente, tel quel.")  # type: ignore[assignment]


#: Every action the audit log holds (`gateway.support`, `gateway.api.runner`, `gateway.api.auth`,
#: `gateway.pipeline.pause`): a filter naming another is a 422 listing these, not an empty page.
AUDIT_ACTIONS = ("RESEND", "RESEND_FILTER", "CLOSE", "RUN_START", "CLIENT_CREATE", "CLIENT_REVOKE", "SENDING_PAUSE",
                 "SENDING_RESUME")
AuditAction = Literal[AUDIT_ACTIONS]  # type: ignore[valid-type]


class AuditQuery(PageQuery):
    action: AuditAction = Field(None, description="Une seule sorte d'action.")  # type: ignore[assignment]


class VersionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(None, ge=1, le=1_000_000,  # type: ignore[assignment]
                         description="Une version précise ; par défaut la dernière.")


class StillInvalidOut(BaseModel):
    key: str
    version: int
    reject: RejectPublic


class ResendOut(BaseModel):
    audit_id: int
    matched: int = Field(description="Événements trouvés dans un état à renvoyer.")
    resent: int = Field(description="Événements remis EN_ATTENTE par cet appel (0 s'ils l'étaient déjà).")
    resent_keys: list[str]
    still_invalid: list[StillInvalidOut] = Field(description="Invalides qui échouent encore au contrôle, avec la "
                                                             "raison du jour ; ils restent INVALIDE.")
    state: EventState | None = Field(None, description="Pour un seul événement : son état après l'appel.")
    reason: str | None = None


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"comment": "Jeune confié à une autre structure : événement sans objet."}]})

    comment: Annotated[str, StringConstraints(strip_whitespace=True, pattern=NOT_BLANK_PATTERN, max_length=2000),
                       Present, Printable, PrintableSchema] = Field(
        description="Pourquoi l'événement est clos (obligatoire, pas seulement des espaces).")


class CloseOut(BaseModel):
    audit_id: int
    key: str
    version: int
    closed: int = Field(description="1 si cet appel l'a clos, 0 sinon.")
    state: EventState
    reason: str | None = None


class AuditEntryPublic(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str = Field(description=f"{', '.join(AUDIT_ACTIONS)}.")
    target: str | None = None
    filter: dict[str, Any] | None = None
    count: int
    comment: str | None = None
    detail: dict[str, Any] | None = None


class ReportAck(BaseModel):
    envelope_id: str
    outcome: Literal["APPLIED", "DUPLICATE"]
    accepted: int
    rejected: int
    message: str


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ok"]
    checks: dict[str, str]
    warnings: list[str] = Field(default_factory=list, description="Ce qui demandera bientôt une action "
                                "(un certificat qui expire dans moins de `certificate_warning_days` jours).")


# --- the sending switch (issue 6: gateway.pipeline.pause) ------------------------------------------


#: At least one character that is not blank by any of the three regex dialects involved: the
#: published schema's (ECMAScript: BOM U+FEFF is a space), pydantic's (Rust `regex`: U+0085 is one)
#: and Python's `str.strip` (U+001C–U+001F are). ``\S`` alone let a lone BOM through here while the
#: schema refuses it.
VISIBLE = r"[^\s\ufeff\x85\x1c-\x1f]"


#: Each pattern of these models in words, for the 422 that refuses a value (`gateway.api.problems`): the pattern
#: itself ("format attendu : \S" for a blank close comment, a character class of escapes for a blank pause
#: reason) told the person who typed the value nothing they could act on. A pattern added to a model goes here.
PATTERN_WORDS = {
    CODE_ML_PATTERN: "5 chiffres attendus (par exemple 69001)",
    ID_EVENEMENT_PATTERN: "des chiffres attendus (de 1 à 20)",
    CURSOR_PATTERN: "curseur illisible : redonner tel quel le `next_cursor` de la page précédente",
    NOT_BLANK_PATTERN: "vide ou fait seulement d'espaces : un texte est obligatoire",
    VISIBLE: "vide ou fait seulement d'espaces : un texte est obligatoire",
}


class SendingPauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"reason": "Maintenance du DUDE annoncée de 22 h à 2 h"}]})

    reason: Annotated[str, StringConstraints(strip_whitespace=True, pattern=VISIBLE, max_length=500), Present,
                      Printable, PrintableSchema] = Field(
        description="Pourquoi l'envoi est suspendu (obligatoire) : conservé avec l'interrupteur et au journal d'audit.")


class SendingResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "Maintenance terminée"}]})

    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = Field(
        None, description="Pourquoi l'envoi reprend (facultatif, journal d'audit).")


class SendingOut(BaseModel):
    """The switch: while ``paused``, runs read and seal but post nothing to DUDE, on every instance."""

    paused: bool
    changed_at: datetime | None = Field(None, description="Dernier changement de l'interrupteur.")
    changed_by: str | None = Field(None, description="Qui l'a fait (`api:<client>`, `cli:<utilisateur>`…).")
    reason: str | None = None
