"""Stage 1: pre-flight outcomes → the store, with versions and de-duplication (brief §3, §5).

Each outcome becomes at most one event row, by its key:

* the same key with the same content as its latest version → nothing new; the same line of the same
  file with the same content as any earlier version → nothing new either (rerunning an export whose
  lines modify each other, ``C`` then ``M``, sends nothing);
* a new key → version 1; a changed content under a known key → the next version, sent as ``M``
  when DUDE has (or is getting) an earlier version, as ``C`` when it never got one (an earlier
  version was invalid or rejected), and earlier invalid or rejected versions become ``CORRIGE``;
* ``M`` for a key this gateway never saw, or ``A`` for one DUDE never got → ``INVALIDE`` with
  ``E06``;
* a pre-flight reject → ``INVALIDE`` with its code, file and line; a reject whose key cannot be
  read is kept under a synthetic key ``?<file>:<line>`` so that support staff still see it.

Rows are written in chunks, each chunk in one transaction, with bulk statements: a crash
loses at most the chunk being written, and rereading the export restores it without duplicates.

Hot path (every line of every export): rows are built as tuples and written through
`gateway.store.db.BulkInsert` (the driver's ``executemany``, ``COPY`` on PostgreSQL, values converted
once per distinct value) rather than as dicts through ``conn.execute(insert, dicts)``, which spent as
long converting timestamps row by row as SQLite took to store the rows. The stored record, its content
hash and its JSON text come ready from `gateway.pipeline.reading.prepare` (computed in the reader
process during a run; here, for outcomes given as they are, by the API for instance).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.codes import EventState, Operation, RejectCode
from gateway.domain import export_code_ml, json_digest, stored_form
from gateway.pipeline.reading import Prepared, payload_json, prepare
from gateway.preflight import Outcome, Rejection, Valid
from gateway.store.db import BulkInsert
from gateway.store.models import events_t, history_t

#: States in which DUDE has, or is about to get, a version of the key: a new version is an ``M``.
LIVE_STATES = frozenset({EventState.EN_ATTENTE, EventState.ENVOYE, EventState.TRANSMIS,
                         EventState.ACCEPTE, EventState.SANS_REPONSE})
#: States a newer version supersedes (they become ``CORRIGE``).
SUPERSEDABLE = frozenset({EventState.INVALIDE, EventState.REJETE, EventState.SANS_REPONSE})

CHUNK = 2000

#: The columns ingest writes, in the order of the row tuples below (the others keep their defaults).
_EVENT_COLUMNS = ("key", "version", "operation", "event_type", "code_ml", "identifiant_pe", "date_evenement",
                  "payload", "content_hash", "state", "reject_code", "reject_message", "reject_field", "source_file",
                  "source_line", "run_id", "created_at", "updated_at")
_INSERT_EVENTS = BulkInsert(events_t, _EVENT_COLUMNS)
_PENDING, _INVALID = EventState.EN_ATTENTE.value, EventState.INVALIDE.value
_CREATE, _MODIFY, _CANCEL = Operation.CREATE.value, Operation.MODIFY.value, Operation.CANCEL.value


@dataclass
class IngestStats:
    """What one ingestion did; what the run summary and ``--json`` print."""

    lines: int = 0
    new_events: int = 0
    new_versions: int = 0
    duplicates: int = 0
    invalid: int = 0
    superseded: int = 0
    rejects_by_code: Counter = field(default_factory=Counter)

    def add(self, other: IngestStats) -> None:
        for name in ("lines", "new_events", "new_versions", "duplicates", "invalid", "superseded"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejects_by_code.update(other.rejects_by_code)

    def as_dict(self) -> dict:
        return {"lines": self.lines, "new_events": self.new_events, "new_versions": self.new_versions,
                "duplicates": self.duplicates, "invalid": self.invalid, "superseded": self.superseded,
                "rejects_by_code": dict(sorted(self.rejects_by_code.items()))}


class Answer(NamedTuple):
    """Where a key stands once ingest is done: its latest version, and whether this ingest wrote it.

    What the partner API answers for each event (`gateway.submission`): ingest knows it already, so
    the API need not read every key back (a second query of the whole request's keys)."""

    version: int
    state: str
    reject_code: str | None
    reject_message: str | None
    reject_field: str | None  # the column a pre-flight reject names (`EventRow.reject_field`)
    stored: bool  # False: a duplicate of what the store had, nothing written


@dataclass
class _KeyState:
    version: int
    content_hash: str
    live: bool
    supersedable: list[int]
    seen: set[tuple[str | None, int | None, str]] = field(default_factory=set)  # (file, line, hash)
    latest: Answer | None = None  # the latest version's state (read only when answers are asked for)

    def already_has(self, content_hash: str, source_file: str | None, source_line: int | None) -> bool:
        return content_hash == self.content_hash or (source_file, source_line, content_hash) in self.seen


def _chunks(items: Iterable[Outcome | Prepared], size: int) -> Iterator[list[Outcome | Prepared]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def ingest(engine: Engine, outcomes: Iterable[Outcome | Prepared], *, run_id: int | None, now: datetime,
           chunk_size: int = CHUNK, connection: Connection | None = None,
           on_chunk: Callable[[IngestStats], None] | None = None,
           records: dict[str, Prepared] | None = None, answers: dict[str, Answer] | None = None) -> IngestStats:
    """Write ``outcomes`` to the store; one transaction per chunk (or all in ``connection``'s).

    ``on_chunk(stats)`` is called after each chunk is committed (a run seals full envelopes then,
    while the rest of the export is still being read). ``records``, when given, receives each stored
    payload (its JSON text → the `Prepared` line it was stored from, with its XML), so that sealing the
    envelopes of the same run need not write the XML again (`dispatch.seal_next`). ``answers``, when
    given, receives each key's `Answer`."""
    stats = IngestStats()
    for chunk in _chunks(outcomes, chunk_size):
        if connection is not None:
            done = _ingest_chunk(connection, chunk, run_id=run_id, now=now, records=records, answers=answers)
        else:
            with engine.begin() as conn:
                done = _ingest_chunk(conn, chunk, run_id=run_id, now=now, records=records, answers=answers)
        stats.add(done)
        if on_chunk is not None:
            on_chunk(done)
    return stats


def _key_of(outcome: Outcome | Prepared) -> str:
    if isinstance(outcome, Valid):
        return outcome.event.key
    return outcome.key or f"?{outcome.source_file}:{outcome.source_line}"


def _load_states(conn: Connection, keys: set[str], *, latest: bool = False) -> dict[str, _KeyState]:
    """What the store knows of ``keys``; ``latest``: with each key's latest state and reject (`Answer`)."""
    states: dict[str, _KeyState] = {}
    c = events_t.c
    columns = [c.id, c.key, c.version, c.content_hash, c.state, c.source_file, c.source_line]
    if latest:
        columns += [c.reject_code, c.reject_message, c.reject_field]
    rows = conn.execute(sa.select(*columns).where(c.key.in_(keys)).order_by(c.key, c.version))
    for event_id, key, version, content_hash, state, source_file, source_line, *reject in rows.tuples():  # no Row
        ks = states.get(key)  # attribute lookups: a re-run or a partner's resend reads back every key
        if ks is None:
            ks = states[key] = _KeyState(version, content_hash, False, [])
        ks.version, ks.content_hash = version, content_hash
        if latest:
            ks.latest = Answer(version, state, *reject, False)
        ks.seen.add((source_file, source_line, content_hash))
        if state in LIVE_STATES:
            ks.live = True
        if state in SUPERSEDABLE:
            ks.supersedable.append(event_id)
    return states


def _rejection_hash(rejection: Rejection) -> str:
    """The content hash of a rejected line: its fields as read, sorted by name."""
    return json_digest(sorted(rejection.fields.items()))


def _as_sent(value: Any) -> str:
    """A stored record's value as the fields of a refused event keep it: text, a yes/no as ``O``/``N`` as in an
    export (``str(True)`` kept "True", which the console showed and a resend refused as malformed)."""
    if isinstance(value, bool):
        return "O" if value else "N"
    return str(value)


def _parse_date(value: str | None) -> date | None:
    """Best effort on a raw date, so an invalid event can still be found by date (``date_from``, ``date_to``,
    the console's filters): ``JJ/MM/AAAA`` from an export, ``AAAA-MM-JJ`` from a partner, whose refused event
    keeps its fields as sent (`adapters.parcours3.partner_json`): read as an export's only, every invalid
    partner event had no date, and no search by date found one."""
    text = (value or "").strip()
    try:
        if "-" in text:
            return date.fromisoformat(text) if len(text) == 10 else None
        day, month, year = text.split("/")
        return date(int(year), int(month), int(day))
    except ValueError:
        return None


def _ingest_chunk(conn: Connection, chunk: list[Outcome | Prepared], *, run_id: int | None, now: datetime,
                  records: dict[str, Prepared] | None = None, answers: dict[str, Answer] | None = None) -> IngestStats:
    stats = IngestStats(lines=len(chunk))
    states = _load_states(conn, {_key_of(o) for o in chunk}, latest=answers is not None)
    rows: list[tuple] = []
    superseded: list[int] = []

    def invalid_row(key: str, ks: _KeyState | None, content_hash: str, code: RejectCode, message: str,
                    field: str | None, fields: dict, file: str, line: int, operation: str) -> None:
        version = ks.version + 1 if ks else 1
        code_ml = fields.get("code_ml", "").strip()
        # Unreadable: the export's name may still say whose, so that the mission locale's support staff, the only
        # ones who can have the line corrected, see it (scoped lists and filters go by ``code_ml``).
        if not (code_ml.isdigit() and len(code_ml) == 5):
            code_ml = export_code_ml(Path(file or "").name) or ""
        rows.append((
            key, version, operation if operation in ("C", "M", "A") else "C",
            (fields.get("type_evenement") or "").strip()[:3] or None,
            code_ml if code_ml.isdigit() and len(code_ml) == 5 else None,
            (fields.get("identifiant_pe") or "").strip()[:20] or None,
            _parse_date(fields.get("date_evenement")), payload_json(fields), content_hash,
            _INVALID, code.value, message, field, file, line, run_id, now, now,
        ))
        states[key] = _KeyState(version, content_hash, ks.live if ks else False, ks.supersedable if ks else [],
                                ks.seen if ks else set(), Answer(version, _INVALID, code.value, message, field, True))
        stats.invalid += 1
        stats.rejects_by_code[code.value] += 1

    for item in chunk:
        key = _key_of(item)
        ks = states.get(key)
        if isinstance(item, Rejection):
            h = _rejection_hash(item)
            if ks and ks.already_has(h, item.source_file, item.source_line):
                stats.duplicates += 1
                continue
            invalid_row(key, ks, h, item.code, item.message, item.field, item.fields, item.source_file,
                        item.source_line, (item.fields.get("operation") or "C").strip().upper())
            continue

        # A `Valid` outcome (the API's) is hashed first: a resent event costs no JSON text.
        stored = stored_form(item.event) if isinstance(item, Valid) else None
        h = stored[1] if stored else item.content_hash
        if ks and ks.already_has(h, item.source_file, item.source_line):
            stats.duplicates += 1
            continue
        outcome = prepare(item, stored=stored, with_xml=records is not None)
        operation = outcome.operation
        if (operation == _MODIFY and ks is None) or (operation == _CANCEL and not (ks and ks.live)):
            what = "modifie" if operation == _MODIFY else "annule"
            invalid_row(key, ks, h, RejectCode.E06,
                        f"L'événement {key} {what} un événement que la passerelle n'a jamais transmis.", "operation",
                        {**{k: _as_sent(v) for k, v in outcome.decoded_record().items()}, "operation": operation},
                        outcome.source_file, outcome.source_line, operation)
            continue
        if operation == _CANCEL:
            wire_op = _CANCEL
        else:
            wire_op = _MODIFY if ks and ks.live else _CREATE
        version = ks.version + 1 if ks else 1
        if records is not None:
            records[outcome.payload] = outcome
        rows.append((
            key, version, wire_op, outcome.event_type, outcome.code_ml, outcome.identifiant_pe,
            outcome.date_evenement, outcome.payload, h, _PENDING, None, None, None, outcome.source_file,
            outcome.source_line, run_id, now, now,
        ))
        if ks:
            superseded += ks.supersedable
            stats.new_versions += 1
        else:
            stats.new_events += 1
        states[key] = _KeyState(version, h, True, [], ks.seen if ks else set(),
                                Answer(version, _PENDING, None, None, None, True))

    if answers is not None:
        for key, ks in states.items():
            if ks.latest is not None:
                answers[key] = ks.latest
    if rows:
        after_id = conn.execute(sa.select(sa.func.max(events_t.c.id))).scalar() or 0
        _INSERT_EVENTS.insert(conn, rows)
        _initial_history(conn, after_id, now=now, run_id=run_id)
    if superseded:
        stats.superseded = supersede(conn, superseded, now=now, run_id=run_id)
    return stats


def _initial_history(conn: Connection, after_id: int, *, now: datetime, run_id: int | None) -> None:
    """Write the first two history rows (``RECU``, then ``EN_ATTENTE`` or ``INVALIDE``) of the rows just
    inserted (ids above ``after_id``, read just before), in one set-based statement: the new rows are
    those with no history yet.

    Cheaper by an order of magnitude than fetching the new ids and inserting history row by row; the
    id range is a primary-key range scan (a list of the chunk's keys cost one index probe per key).
    Safe with concurrent writers: uncommitted rows of others are not visible, and a committed row of
    another writer in the range already has its history (every insert of events writes it in the
    same transaction), which the ``NOT EXISTS`` leaves alone.
    """
    e, h = events_t, history_t
    fresh = sa.and_(e.c.id > after_id, ~sa.exists().where(h.c.event_id == e.c.id))
    at = sa.literal(now, type_=h.c.at.type)
    run = sa.literal(run_id, type_=sa.Integer)
    nothing = sa.literal(None, type_=sa.String)
    source = sa.func.coalesce(e.c.source_file + sa.literal(":") + sa.cast(e.c.source_line, sa.String),
                              sa.literal("l'API"))
    received = sa.select(e.c.id, sa.literal(EventState.RECU.value), at,
                         sa.func.substr(sa.literal("lu dans ") + source, 1, 255), nothing, nothing, run,
                         nothing).where(fresh)
    cause = sa.case(
        (e.c.state == EventState.INVALIDE.value,
         sa.literal("contrôle avant envoi : ") + sa.func.coalesce(e.c.reject_message, "")),
        (e.c.version == 1, sa.literal("contrôle avant envoi réussi")),
        else_=sa.literal("nouvelle version (opération ") + e.c.operation + sa.literal(")"),
    )
    checked = sa.select(e.c.id, e.c.state, at, sa.func.substr(cause, 1, 255), e.c.reject_code, nothing, run,
                        nothing).where(fresh)
    conn.execute(h.insert().from_select(
        ["event_id", "state", "at", "cause", "code", "envelope_id", "run_id", "actor"],
        sa.union_all(received, checked)))


def supersede(conn: Connection, ids: list[int], *, now: datetime, run_id: int | None,
              actor: str | None = None) -> int:
    """Mark earlier invalid/rejected/unanswered versions ``CORRIGE``; returns how many moved."""
    moved = 0
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        current = [r.id for r in conn.execute(
            sa.select(events_t.c.id).where(events_t.c.id.in_(part),
                                           events_t.c.state.in_([s.value for s in SUPERSEDABLE])))]
        if not current:
            continue
        conn.execute(events_t.update().where(events_t.c.id.in_(current))
                     .values(state=EventState.CORRIGE.value, updated_at=now))
        conn.execute(history_t.insert(), [
            {"event_id": i, "state": EventState.CORRIGE.value, "at": now, "code": None, "envelope_id": None,
             "cause": "remplacé par une nouvelle version venue de Parcours 3", "run_id": run_id, "actor": actor}
            for i in current])
        moved += len(current)
    return moved
