"""What the reconciliation store keeps (brief §5), as SQLModel tables.

The ORM classes describe the model; the hot paths (ingesting a night, moving thousands of events
from one state to the next) use SQLAlchemy Core statements on the same tables, because adding ORM
objects one by one is ~8 times slower (brief §9).

Nothing is overwritten without a trace: every state an event goes through is a row of
`EventHistory` (time, cause, code, envelope, actor). Raw documents (signed envelopes as sent,
receipts and reports as received) are kept in `Document` for audit until the retention purge.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator):
    """Timezone-aware timestamps on every backend: stored in UTC, read back aware.

    SQLite has no time zone type and would hand back naive datetimes; PostgreSQL keeps
    ``timestamptz``. Either way the application only ever sees aware UTC datetimes.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: every timestamp must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


#: An event key (``code_ml-id_evenement``): an identifier, compared character by character. On PostgreSQL its
#: column says so (``COLLATE "C"``) rather than taking the database's collation: under a language's one, such
#: as the ``fr_FR.UTF-8`` a French server is often initialised with, punctuation is ignored when comparing, so
#: the range that finds keys by their beginning (`gateway.store.queries.key_starts_with`) found none: the
#: console's search for ``62899-`` or for a whole key answered nothing. SQLite compares bytes already.
KEY_TYPE = sa.String(120).with_variant(sa.String(120, collation="C"), "postgresql")


class Run(SQLModel, table=True):
    """One batch, whoever started it (schedule, CLI, API, demo): inputs, counts, times, outcome."""

    __tablename__ = "runs"

    id: int | None = Field(default=None, primary_key=True)
    trigger: str = Field(max_length=20)
    dry_run: bool = False
    inputs: str = Field(default="[]", description="JSON list of input file names")
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str = Field(default="EN_COURS", max_length=20, index=True)
    counts: str = Field(default="{}", description="JSON: counts per state and per stage")
    error: str | None = None


class EventRow(SQLModel, table=True):
    """One version of one event (a key may have several rows, one per version)."""

    __tablename__ = "events"
    # Indexes: what support staff and the pipeline search by (brief §5), and no more, because each
    # one is written on every insert and on every state change of a night's events. ``state`` is
    # served by (state, id), which is also the pending queue's order. ``reject_code`` and
    # ``envelope_id`` are partial (only rows that have one): a night's events are inserted without
    # either and most are never rejected, and an equality search implies IS NOT NULL, so both
    # SQLite and PostgreSQL use them.
    __table_args__ = (
        sa.UniqueConstraint("key", "version", name="uq_events_key_version"),
        sa.Index("ix_events_state_id", "state", "id"),
        sa.Index("ix_events_reject_code", "reject_code", sqlite_where=sa.text("reject_code IS NOT NULL"),
                 postgresql_where=sa.text("reject_code IS NOT NULL")),
        sa.Index("ix_events_envelope_id", "envelope_id", sqlite_where=sa.text("envelope_id IS NOT NULL"),
                 postgresql_where=sa.text("envelope_id IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(sa_type=KEY_TYPE, description="code_ml-id_evenement (indexed by uq_events_key_version)")
    version: int
    operation: str = Field(max_length=1, description="Operation on the wire: C, M or A")
    event_type: str | None = Field(default=None, max_length=3)
    code_ml: str | None = Field(default=None, max_length=10, index=True)
    identifiant_pe: str | None = Field(default=None, max_length=20, index=True)
    date_evenement: date | None = Field(default=None, index=True)
    payload: str = Field(description="JSON: the event's fields (never the NIR)")
    content_hash: str = Field(max_length=64)
    state: str = Field(max_length=20, description="indexed by ix_events_state_id")
    reject_code: str | None = Field(default=None, max_length=3, description="indexed by ix_events_reject_code")
    reject_message: str | None = None
    #: The Parcours 3 column a pre-flight reject names (``date_fin``…), as the API answered it at submission:
    #: kept so that reading the event back says it too. None for DUDE's rejects (its report names none).
    reject_field: str | None = Field(default=None, max_length=40)
    source_file: str | None = Field(default=None, max_length=255)
    source_line: int | None = None
    #: The run that read it, then the run that sends it (a resend, a partner's submission): the night it is
    #: counted in, in the run's summary, the console's nights and the API's runs. Each state's run is in the
    #: history.
    run_id: int | None = Field(default=None, foreign_key="runs.id", index=True)
    envelope_id: str | None = Field(default=None, foreign_key="envelopes.id", max_length=36,
                                    description="indexed by ix_events_envelope_id")
    supersedes_id: int | None = Field(default=None, foreign_key="events.id")
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    erased_at: datetime | None = Field(default=None, sa_type=UTCDateTime,
                                       description="when the retention purge blanked its personal fields")


class EventHistory(SQLModel, table=True):
    """One state an event went through, and why."""

    __tablename__ = "event_history"

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="events.id", index=True)
    state: str = Field(max_length=20)
    at: datetime = Field(sa_type=UTCDateTime)
    #: 2,200 since revision 0003 (255 before): a support person's close comment (up to 2,000 characters
    #: through the API) is kept whole here, where the event's page and the API show it.
    cause: str = Field(max_length=2200)
    code: str | None = Field(default=None, max_length=3)
    envelope_id: str | None = Field(default=None, max_length=36)
    run_id: int | None = None
    actor: str | None = Field(default=None, max_length=120)


class Envelope(SQLModel, table=True):
    """One signed ``LotEvenements``; its id is the ``IdLot``, kept across resends."""

    __tablename__ = "envelopes"

    id: str = Field(primary_key=True, max_length=36)
    run_id: int | None = Field(default=None, foreign_key="runs.id", index=True)
    state: str = Field(max_length=20, index=True)
    event_count: int
    byte_size: int = 0
    created_at: datetime = Field(sa_type=UTCDateTime)
    first_sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    receipt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    report_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = None
    reject_code: str | None = Field(default=None, max_length=3)
    reject_message: str | None = None
    polls: int = 0
    next_poll_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    accepted_count: int | None = None
    rejected_count: int | None = None
    claimed_by: str | None = Field(default=None, max_length=120,
                                   description="the instance sending it now (gateway.pipeline.sending)")
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EnvelopeHistory(SQLModel, table=True):
    __tablename__ = "envelope_history"

    id: int | None = Field(default=None, primary_key=True)
    envelope_id: str = Field(foreign_key="envelopes.id", index=True, max_length=36)
    state: str = Field(max_length=20)
    at: datetime = Field(sa_type=UTCDateTime)
    cause: str = Field(max_length=255)


class Document(SQLModel, table=True):
    """A raw document exchanged with DUDE, byte for byte, for audit."""

    __tablename__ = "documents"

    id: int | None = Field(default=None, primary_key=True)
    envelope_id: str | None = Field(default=None, index=True, max_length=36)
    kind: str = Field(max_length=20, description="LOT, ACCUSE_RECEPTION or COMPTE_RENDU")
    at: datetime = Field(sa_type=UTCDateTime)
    sha256: str = Field(max_length=64)
    body: bytes = Field(sa_type=sa.LargeBinary)
    note: str | None = None


DOC_LOT, DOC_RECEIPT, DOC_REPORT = "LOT", "ACCUSE_RECEPTION", "COMPTE_RENDU"

events_t: sa.Table = EventRow.__table__  # type: ignore[assignment]
history_t: sa.Table = EventHistory.__table__  # type: ignore[assignment]
envelopes_t: sa.Table = Envelope.__table__  # type: ignore[assignment]
envelope_history_t: sa.Table = EnvelopeHistory.__table__  # type: ignore[assignment]
documents_t: sa.Table = Document.__table__  # type: ignore[assignment]
runs_t: sa.Table = Run.__table__  # type: ignore[assignment]


# --- the partner API (issue 3) --------------------------------------------------------------


class ApiClient(SQLModel, table=True):
    """One bearer token of the API (brief §6): its role, the missions locales it may see, its hash.

    Only the SHA-256 of the token is kept (`gateway.api.auth` explains why that suffices); the token
    itself is shown once, at creation. ``ml_codes`` is a JSON list, empty for ``admin``.
    """

    __tablename__ = "api_clients"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    role: str = Field(max_length=10)
    ml_codes: str = Field(default="[]", description="JSON list of 5-digit mission locale codes")
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditEntry(SQLModel, table=True):
    """One action of a person or a system on the store (brief §6: "every support action is in an audit
    log"): resends, closings, runs started, clients created or revoked. Kept like the history."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime, index=True)
    actor: str = Field(max_length=120)
    client_id: int | None = None
    action: str = Field(max_length=30)
    target: str | None = Field(default=None, max_length=255, description="event key, run id, client id…")
    filter: str | None = Field(default=None, description="JSON: the filter a bulk action matched")
    count: int = 0
    comment: str | None = None
    detail: str | None = Field(default=None, description="JSON: what the action found or refused")


api_clients_t: sa.Table = ApiClient.__table__  # type: ignore[assignment]
audit_t: sa.Table = AuditEntry.__table__  # type: ignore[assignment]


class Control(SQLModel, table=True):
    """An operator's switch shared by every instance (e.g. ``envoi_suspendu``: all sending paused).

    Kept in the store, not in a setting, so that pausing from one instance (CLI, API, console)
    holds for all of them at once and survives restarts.
    """

    __tablename__ = "controls"

    name: str = Field(primary_key=True, max_length=50)
    value: str = Field(default="", description="JSON")
    updated_at: datetime = Field(sa_type=UTCDateTime)
    updated_by: str | None = Field(default=None, max_length=120)
    reason: str | None = None


controls_t: sa.Table = Control.__table__  # type: ignore[assignment]


# --- the schedule and several instances (issue 5) --------------------------------------------


class Lease(SQLModel, table=True):
    """A named lease (``run``: the one run going on, whichever instance holds it), taken atomically,
    renewed by its holder's heartbeat, and free again once ``expires_at`` passes (`gateway.lease`).

    ``night`` is the scheduled time of the night being served, ``done_until`` the latest one served to
    the end, and ``released_at`` says the holder let go cleanly: a lease expired without it was held by
    an instance that died, whose night another instance takes over (`gateway.nightly`).
    """

    __tablename__ = "leases"

    name: str = Field(primary_key=True, max_length=50)
    holder: str = Field(max_length=120)
    acquired_at: datetime = Field(sa_type=UTCDateTime)
    renewed_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    run_id: int | None = Field(default=None, description="the run its holder is doing (no foreign key: "
                               "a lease outlives the purge of anything)")
    night: datetime | None = Field(default=None, sa_type=UTCDateTime)
    done_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ImportedFile(SQLModel, table=True):
    """A Parcours 3 export of the drop folder that a run ingested to the end (by name and content):
    the nightly run does not read it again (`gateway.nightly`)."""

    __tablename__ = "imported_files"
    __table_args__ = (sa.UniqueConstraint("name", "sha256", name="uq_imported_files_name_sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=255)
    sha256: str = Field(max_length=64)
    byte_size: int
    run_id: int | None = Field(default=None, foreign_key="runs.id")
    imported_at: datetime = Field(sa_type=UTCDateTime)


leases_t: sa.Table = Lease.__table__  # type: ignore[assignment]
imported_files_t: sa.Table = ImportedFile.__table__  # type: ignore[assignment]
