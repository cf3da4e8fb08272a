"""What the emulated DUDE has received and applied: the proof that nothing happened twice.

Brief §4: "Posting the same IdLot again returns the first receipt and processes nothing twice";
"an event received again with identical content is a duplicate, answered as accepted". The ledger
keeps, in SQLite (stdlib ``sqlite3``; WAL for a file, memory for tests):

``lots``
    one row per envelope that passed the signature check: its first receipt (bytes, returned
    unchanged on a replay), its report (bytes) and when it becomes available, how often it was
    pushed, how often it was posted again (``times_received``). A report *lost* on purpose (a fault:
    `adapters.dude.emulator.faults`) is kept, but available only at `LOST_REPORT_AT`, i.e. never.
``events``
    the state of each (key, version): content hash, ``ACCEPTE``/``REJETE`` with code and message,
    first and last lot, ``times_received`` and ``times_applied``.
``receptions``
    one row per event per processed lot (document order): the log the counts are checked against.
``processings``
    one row each time a lot's events were processed.

`Ledger.summary` derives ``events_applied_more_than_once`` and ``lots_processed_more_than_once``
from the logs (not from the counters), so a test can *prove* the emulator applied nothing twice.

Content hash (`content_hash`): SHA-256 of the canonical JSON (sorted keys, UTF-8, no spaces) of the
record `adapters.dude.events_xml.read_event` reads from the *signed* ``Evenement``, without ``key``
and ``version`` (they are the identity the hash is filed under). It is chosen over the exclusive
c14n of the element because it hashes what DUDE applies, not how it was spelt, and because the
record is already in hand (no second serialisation of 20,000 elements).

Every write for one envelope is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``), with bulk
``executemany`` statements: a crash leaves a lot fully recorded or not at all. One connection,
guarded by a lock, serves every thread (``check_same_thread=False``). sqlite3 errors are translated
to `gateway.errors.StoreError` here (STYLE.md 3).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from adapters.dude.emulator.faults import LOST_REPORT_AT
from gateway.domain import json_digest
from gateway.errors import StoreError

RECU, REJETE, ACCEPTE = "RECU", "REJETE", "ACCEPTE"
_CHUNK = 500  # keys per IN (...) query, well under SQLite's variable limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lots (
    id_lot TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    sender TEXT,
    status TEXT NOT NULL,
    reject_code TEXT,
    event_count INTEGER NOT NULL,
    receipt BLOB NOT NULL,
    report BLOB,
    report_available_at TEXT,
    report_pushed INTEGER NOT NULL DEFAULT 0,
    times_received INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS lots_due ON lots (report_pushed, report_available_at);
CREATE TABLE IF NOT EXISTS events (
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    code TEXT,
    message TEXT,
    operation TEXT,
    type_evenement TEXT,
    first_lot TEXT NOT NULL,
    last_lot TEXT NOT NULL,
    first_received_at TEXT NOT NULL,
    applied_at TEXT,
    times_received INTEGER NOT NULL,
    times_applied INTEGER NOT NULL,
    PRIMARY KEY (key, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receptions (
    id_lot TEXT NOT NULL,
    position INTEGER NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    code TEXT,
    applied INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS receptions_key ON receptions (key, version);
CREATE TABLE IF NOT EXISTS processings (
    id_lot TEXT NOT NULL,
    processed_at TEXT NOT NULL
);
"""

# A (key, version) already ACCEPTE stays so, with its accepted content: a duplicate or an E05 conflict
# only counts as one more reception. A REJETE one (never applied) takes the new outcome.
_UPSERT_EVENT = """
INSERT INTO events (key, version, content_hash, status, code, message, operation, type_evenement,
                    first_lot, last_lot, first_received_at, applied_at, times_received, times_applied)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (key, version) DO UPDATE SET
    content_hash = CASE WHEN events.status = 'ACCEPTE' THEN events.content_hash ELSE excluded.content_hash END,
    code = CASE WHEN events.status = 'ACCEPTE' THEN events.code ELSE excluded.code END,
    message = CASE WHEN events.status = 'ACCEPTE' THEN events.message ELSE excluded.message END,
    operation = CASE WHEN events.status = 'ACCEPTE' THEN events.operation ELSE excluded.operation END,
    type_evenement = CASE WHEN events.status = 'ACCEPTE' THEN events.type_evenement
                          ELSE excluded.type_evenement END,
    status = CASE WHEN events.status = 'ACCEPTE' THEN 'ACCEPTE' ELSE excluded.status END,
    applied_at = COALESCE(events.applied_at, excluded.applied_at),
    last_lot = excluded.last_lot,
    times_received = events.times_received + 1,
    times_applied = events.times_applied + excluded.times_applied
"""


def content_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of an event record's content, identity (``key``, ``version``) left out: its compact
    JSON with sorted keys (`gateway.domain.json_digest`; the ledger file keeps these digests)."""
    payload = dict(record)
    payload.pop("key", None)
    payload.pop("version", None)
    return json_digest(payload, sort_keys=True)


def _utc(when: datetime) -> str:
    """UTC, always with microseconds: such strings sort as the instants they name."""
    if when.tzinfo is None:
        raise ValueError("ledger timestamps must be timezone-aware")
    return when.astimezone(UTC).isoformat(timespec="microseconds")


class EventOutcome(NamedTuple):
    """What happened to one event of a processed lot; ``applied`` is False for a duplicate.

    A named tuple rather than a frozen dataclass: 20,000 are made per night, at a third of the cost.
    """

    key: str
    version: int
    content_hash: str
    operation: str
    type_evenement: str | None
    accepted: bool
    code: str | None = None
    message: str | None = None
    applied: bool = False


@dataclass(frozen=True, slots=True)
class LotEntry:
    id_lot: str
    received_at: str
    sender: str | None
    status: str
    reject_code: str | None
    event_count: int
    receipt: bytes
    report: bytes | None
    report_available_at: str | None
    report_pushed: int
    times_received: int

    def report_available(self, now: datetime) -> bool:
        return self.report is not None and self.report_available_at is not None and (
            self.report_available_at <= _utc(now))


class LedgerSnapshot:
    """The ledger as seen by the rules (`adapters.dude.emulator.rules.LedgerView`) for one envelope.

    Loaded once for the envelope's keys, then updated as its events are accepted in document order,
    so that a ``C`` v1 followed by an ``M`` v2 of the same key in one envelope sees v1 accepted.
    """

    __slots__ = ("_accepted", "_keys")

    def __init__(self, accepted: dict[tuple[str, int], str] | None = None):
        self._accepted = accepted or {}
        self._keys = {key for key, _ in self._accepted}

    def accepted_hash(self, key: str, version: int) -> str | None:
        return self._accepted.get((key, version))

    def has_accepted(self, key: str) -> bool:
        return key in self._keys

    def accept(self, key: str, version: int, digest: str) -> None:
        self._accepted.setdefault((key, version), digest)
        self._keys.add(key)


class Ledger:
    """The emulator's persistent memory. ``Ledger()`` is in memory; ``Ledger(path)`` a SQLite file."""

    def __init__(self, path: Path | None = None):
        self.path = path
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(":memory:" if path is None else str(path), check_same_thread=False,
                                       isolation_level=None)
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                # A night of a million events makes indexes of tens of MB: with SQLite's default 2 MB
                # page cache every upsert would read its pages back from the OS. 16 MB, not more: the
                # emulator's peak memory holds this cache whole (each report, ~1.5 MB, goes through it),
                # and at 64 MB the emulator peaked at 281-283 MB for 200,000 events, 292-304 MB for a
                # million; at 16 MB, 247-251 MB for 200,000, and its CPU no higher (19.0-19.5 s at 64 MB,
                # 17.5-17.6 s at 16: bench/night.py --events 200000, alternated).
                self._db.execute("PRAGMA cache_size=-16384")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the emulator ledger {path or ':memory:'}: {exc}") from exc
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- plumbing ---------------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(f"emulator ledger: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"emulator ledger: {exc}") from exc

    # -- lots -------------------------------------------------------------------------------------

    def find_lot(self, id_lot: str) -> LotEntry | None:
        with self._read() as db:
            row = db.execute(
                "SELECT id_lot, received_at, sender, status, reject_code, event_count, receipt, report, "
                "report_available_at, report_pushed, times_received FROM lots WHERE id_lot = ?",
                (id_lot,)).fetchone()
        return LotEntry(*row) if row else None

    def note_replay(self, id_lot: str) -> None:
        """Count one more post of a known lot (answered with its first receipt, nothing processed)."""
        with self._transaction() as db:
            db.execute("UPDATE lots SET times_received = times_received + 1 WHERE id_lot = ?", (id_lot,))

    def record_rejected_lot(self, *, id_lot: str, received_at: datetime, sender: str | None, code: str,
                            event_count: int, receipt: bytes) -> None:
        """A signed envelope refused as a whole (L04…L07): its receipt is kept for replays."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO lots (id_lot, received_at, sender, status, reject_code, event_count, receipt) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (id_lot, _utc(received_at), sender, REJETE, code, event_count, receipt))

    def record_processed_lot(self, *, id_lot: str, received_at: datetime, sender: str, receipt: bytes,
                             report: bytes, report_available_at: datetime,
                             outcomes: Sequence[EventOutcome], report_lost: bool = False) -> None:
        """A received envelope, its events' outcomes and its report, in one transaction.

        ``report_lost`` (a fault): the report is kept, for the record, but never becomes available."""
        at = _utc(received_at)
        available = LOST_REPORT_AT if report_lost else _utc(report_available_at)
        # Generators, not lists: sqlite3 takes the rows as they are made (5,000 an envelope).
        event_rows = (
            (o.key, o.version, o.content_hash, ACCEPTE if o.accepted else REJETE, o.code, o.message,
             o.operation, o.type_evenement, id_lot, id_lot, at, at if o.applied else None, int(o.applied))
            for o in outcomes
        )
        reception_rows = (
            (id_lot, i, o.key, o.version, o.content_hash, ACCEPTE if o.accepted else REJETE, o.code,
             int(o.applied))
            for i, o in enumerate(outcomes, start=1)
        )
        with self._transaction() as db:
            db.execute(
                "INSERT INTO lots (id_lot, received_at, sender, status, event_count, receipt, report, "
                "report_available_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (id_lot, at, sender, RECU, len(outcomes), receipt, report, available))
            db.executemany(_UPSERT_EVENT, event_rows)
            db.executemany("INSERT INTO receptions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", reception_rows)
            db.execute("INSERT INTO processings VALUES (?, ?)", (id_lot, at))

    def due_reports(self, now: datetime, *, unpushed_only: bool = True) -> list[tuple[str, bytes]]:
        """(id_lot, report bytes) of reports available at ``now``, oldest first."""
        sql = ("SELECT id_lot, report FROM lots WHERE report IS NOT NULL AND report_available_at <= ?"
               + (" AND report_pushed = 0" if unpushed_only else "") + " ORDER BY report_available_at, id_lot")
        with self._read() as db:
            return [(row[0], row[1]) for row in db.execute(sql, (_utc(now),))]

    def mark_pushed(self, id_lot: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE lots SET report_pushed = report_pushed + 1 WHERE id_lot = ?", (id_lot,))

    # -- events -----------------------------------------------------------------------------------

    def snapshot(self, keys: Iterable[str]) -> LedgerSnapshot:
        """The accepted (key, version) → content hash of ``keys``, for one envelope's rules."""
        wanted = list(dict.fromkeys(keys))
        accepted: dict[tuple[str, int], str] = {}
        with self._read() as db:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start:start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for key, version, digest in db.execute(
                        f"SELECT key, version, content_hash FROM events WHERE status = 'ACCEPTE' "
                        f"AND key IN ({marks})", chunk):
                    accepted[(key, version)] = digest
        return LedgerSnapshot(accepted)

    def events_for(self, key: str) -> list[dict[str, Any]]:
        """Every version of one event key, with the lots that carried it (per-key lookup)."""
        with self._read() as db:
            cursor = db.execute("SELECT * FROM events WHERE key = ? ORDER BY version", (key,))
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor]
            for row in rows:
                row["lots"] = [lot for (lot,) in db.execute(
                    "SELECT id_lot FROM receptions WHERE key = ? AND version = ? ORDER BY rowid",
                    (key, row["version"]))]
        return rows

    # -- the proof --------------------------------------------------------------------------------

    def summary(self, now: datetime | None = None) -> dict[str, Any]:
        """Counts and the two lists that must stay empty, as JSON-ready values."""
        now_text = _utc(now or datetime.now(UTC))
        with self._read() as db:
            def counts(sql: str, *args: Any) -> dict[str, int]:
                return {str(k): n for k, n in db.execute(sql, args)}

            def scalar(sql: str, *args: Any) -> int:
                return db.execute(sql, args).fetchone()[0] or 0

            return {
                "lots": scalar("SELECT COUNT(*) FROM lots"),
                "lots_by_status": counts("SELECT status, COUNT(*) FROM lots GROUP BY status ORDER BY status"),
                "lots_by_code": counts("SELECT reject_code, COUNT(*) FROM lots WHERE reject_code IS NOT NULL "
                                       "GROUP BY reject_code ORDER BY reject_code"),
                "lot_replays": scalar("SELECT SUM(times_received - 1) FROM lots"),
                "events": scalar("SELECT COUNT(*) FROM events"),
                "events_by_status": counts("SELECT status, COUNT(*) FROM events GROUP BY status ORDER BY status"),
                "events_by_code": counts("SELECT code, COUNT(*) FROM events WHERE code IS NOT NULL "
                                         "GROUP BY code ORDER BY code"),
                "events_applied": scalar("SELECT SUM(applied) FROM receptions"),
                "receptions": scalar("SELECT COUNT(*) FROM receptions"),
                "receptions_by_status": counts("SELECT status, COUNT(*) FROM receptions GROUP BY status "
                                               "ORDER BY status"),
                "receptions_by_code": counts("SELECT code, COUNT(*) FROM receptions WHERE code IS NOT NULL "
                                             "GROUP BY code ORDER BY code"),
                "reports": {
                    "available": scalar("SELECT COUNT(*) FROM lots WHERE report IS NOT NULL "
                                        "AND report_available_at <= ?", now_text),
                    "pending": scalar("SELECT COUNT(*) FROM lots WHERE report IS NOT NULL "
                                      "AND report_available_at > ? AND report_available_at < ?", now_text,
                                      LOST_REPORT_AT),
                    "lost": scalar("SELECT COUNT(*) FROM lots WHERE report_available_at = ?", LOST_REPORT_AT),
                    "pushed": scalar("SELECT COUNT(*) FROM lots WHERE report_pushed > 0"),
                    "pushes": scalar("SELECT SUM(report_pushed) FROM lots"),
                },
                "events_applied_more_than_once": [
                    {"key": k, "version": v, "times_applied": n} for k, v, n in db.execute(
                        "SELECT key, version, SUM(applied) FROM receptions GROUP BY key, version "
                        "HAVING SUM(applied) > 1 ORDER BY key, version")],
                "lots_processed_more_than_once": [
                    {"id_lot": i, "times_processed": n} for i, n in db.execute(
                        "SELECT id_lot, COUNT(*) FROM processings GROUP BY id_lot HAVING COUNT(*) > 1 "
                        "ORDER BY id_lot")],
            }
