"""What support staff do to events (brief §5): resend one event or every event matching a filter, close
one with a comment. Plain store operations taking a `Gateway` and an actor, shared by the API and the
console; every call, even one that changes nothing, leaves one row in the audit log (brief §6).

Rules (the brief, and the lead's decisions on issue 3):

* only the **latest version** of a key in an actionable state (``INVALIDE``, ``REJETE``,
  ``SANS_REPONSE``: `gateway.codes.ACTIONABLE_EVENT_STATES`) is resent or closed: an older
  version is what a newer one replaced;
* a resend puts the **same row** back to ``EN_ATTENTE``, clears its reject code, and records in the
  event's history the reject code and envelope it replaces and who asked (``code`` and
  ``envelope_id`` of that history row are those of the reject replaced); the next run sends it;
* an ``INVALIDE`` event is first checked again by pre-flight on its stored fields, with today's
  date and settings: only one that now passes goes back to ``EN_ATTENTE`` (as ``C``, ``M`` or
  ``A`` by the rules of ingest, its earlier unsettled versions becoming ``CORRIGE``); otherwise it
  stays ``INVALIDE`` with its fresh reason, and the answer says so;
* an ``INVALIDE`` event whose line could not be read (no field kept: a wrong number of fields, a
  broken quote…) is **not** checked again: there is nothing to check, and pre-flight on ``{}`` would
  only find "id_evenement absent" and write that over the real reason. It is left exactly as it was
  (reject, history) and the answer says why: only a corrected line, exported again, can replace it;
* a close comment is written whole in the history (its ``cause`` holds 2,200 characters since revision
  0003; the API takes 2,000): the history is what the event page and the API show support staff, and
  the cut at 255 it had lost what they wrote;
* **done once**: the rows are read under the write lock (SQLite: the audit row is written first,
  which takes the database's write lock; PostgreSQL: ``SELECT … FOR UPDATE``) and each move is a
  guarded ``UPDATE … WHERE state IN (…)``: two identical calls at the same moment resend each event
  once between them, and a second call finds nothing left to do (count 0).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adapters.parcours3.mapping import parse_record
from adapters.parcours3.partner_json import parse_item
from adapters.parcours3.reader import SourceRecord
from gateway.codes import ACTIONABLE_EVENT_STATES, EventState, Operation, RejectCode
from gateway.context import Gateway
from gateway.domain import record_hash, to_record
from gateway.errors import Conflict, FieldError, NotFound, RequestRejected
from gateway.pipeline.ingest import LIVE_STATES, SUPERSEDABLE
from gateway.preflight import PreflightConfig, Rejection
from gateway.store.models import audit_t, events_t, history_t
from gateway.store.queries import EventFilter
from gateway.submission import is_api_source

RESEND, RESEND_FILTER, CLOSE = "RESEND", "RESEND_FILTER", "CLOSE"
ACTIONABLE = tuple(sorted(s.value for s in ACTIONABLE_EVENT_STATES))
_LISTED_MAX = 1000  # keys named in an answer or an audit row, at most
_CAUSE_MAX = history_t.c.cause.type.length  # 2,200: a close comment's cause, whole
#: Why an event whose export line could not be read is not resent (its own reason is kept and shown too).
NOTHING_KEPT = ("La ligne de l'export n'a pas pu être lue et aucun champ n'a été conservé : la passerelle ne "
                "peut pas la renvoyer. La corriger dans Parcours 3, puis l'exporter de nouveau.")


@dataclass(frozen=True, slots=True)
class StillInvalid:
    key: str
    version: int
    code: str
    message: str
    field: str | None = None
    #: Submitted through the API (a partner's event): its hint is the partner's, not "corriger dans Parcours 3".
    submitted: bool = False


@dataclass
class ResendResult:
    audit_id: int
    matched: int = 0
    resent: int = 0
    resent_keys: list[str] = field(default_factory=list)
    still_invalid: list[StillInvalid] = field(default_factory=list)
    state: str | None = None  # one event: its state after the call
    reason: str | None = None  # one event: why nothing was done


@dataclass(frozen=True, slots=True)
class CloseResult:
    audit_id: int
    key: str
    version: int
    closed: int
    state: str
    reason: str | None = None


def filter_as_dict(flt: EventFilter) -> dict[str, Any]:
    """A filter as JSON-ready values, for the audit log."""
    out = {}
    for name, value in asdict(flt).items():
        if value is None:
            continue
        if isinstance(value, (date, datetime)):
            value = value.isoformat()
        elif isinstance(value, (frozenset, set, tuple)):
            value = sorted(value)
        out[name] = value
    return out


def _latest() -> sa.ColumnElement:
    newer = events_t.alias("newer")
    return ~sa.exists().where(newer.c.key == events_t.c.key, newer.c.version > events_t.c.version)


def _locked(conn: Connection, query: sa.Select) -> list[sa.Row]:
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=events_t)
    return conn.execute(query).all()


def _audit(conn: Connection, now: datetime, *, actor: str, client_id: int | None, action: str,
           target: str | None, flt: dict | None = None, comment: str | None = None) -> int:
    return conn.execute(audit_t.insert().values(
        at=now, actor=actor[:120], client_id=client_id, action=action, target=target and target[:255],
        filter=json.dumps(flt, ensure_ascii=False) if flt is not None else None, count=0, comment=comment)
        .returning(audit_t.c.id)).scalar_one()


def _finish_audit(conn: Connection, audit_id: int, count: int, detail: dict) -> None:
    conn.execute(audit_t.update().where(audit_t.c.id == audit_id).values(
        count=count, detail=json.dumps(detail, ensure_ascii=False)))


def _latest_row(conn: Connection, key: str, scope: frozenset[str] | None) -> sa.Row:
    flt = EventFilter(key=key, code_ml_in=scope)
    rows = _locked(conn, sa.select(events_t).where(*flt.where(), _latest()))
    if not rows:
        raise NotFound(f"événement {key} introuvable")
    return rows[0]


# --- resend ---------------------------------------------------------------------------------


def resend_event(gw: Gateway, key: str, *, actor: str, scope: frozenset[str] | None,
                 client_id: int | None = None) -> ResendResult:
    """Resend the latest version of ``key`` (in ``scope``); `NotFound` if the caller cannot see it."""
    now = gw.clock()
    with gw.engine.begin() as conn:
        audit_id = _audit(conn, now, actor=actor, client_id=client_id, action=RESEND, target=key)
        row = _latest_row(conn, key, scope)
        if row.state not in ACTIONABLE:
            result = ResendResult(audit_id, state=row.state, reason=(
                f"état {row.state} ({EventState(row.state).label}) : seuls les états "
                f"{', '.join(ACTIONABLE)} se renvoient"))
        else:
            result = _resend_rows(gw, conn, [row], now=now, actor=actor, audit_id=audit_id)
            result.state = EventState.EN_ATTENTE.value if result.resent else EventState.INVALIDE.value
            if _nothing_kept(row):
                result.reason = NOTHING_KEPT
        _finish_audit(conn, audit_id, result.resent, _detail(result))
    return result


def resend_matching(gw: Gateway, flt: EventFilter, *, actor: str, client_id: int | None = None) -> ResendResult:
    """Resend every latest version matching ``flt`` (which carries the caller's scope) in an actionable state."""
    now = gw.clock()
    with gw.engine.begin() as conn:
        audit_id = _audit(conn, now, actor=actor, client_id=client_id, action=RESEND_FILTER, target=None,
                          flt=filter_as_dict(flt))
        rows = _locked(conn, sa.select(events_t).where(*_resendable(flt)).order_by(events_t.c.id))
        result = _resend_rows(gw, conn, rows, now=now, actor=actor, audit_id=audit_id)
        _finish_audit(conn, audit_id, result.resent, _detail(result))
    return result


def _resendable(flt: EventFilter) -> list[sa.ColumnElement]:
    return [*flt.where(), events_t.c.state.in_(ACTIONABLE), _latest()]


def count_resendable(conn: Connection, flt: EventFilter) -> int:
    """How many events `resend_matching` would put back to be sent now: what the console asks a person to
    confirm. Not the lines the reader kept no field of (`_nothing_kept`): the resend takes them, to say why
    each stays invalid, but counted here they made the console promise "3 événements seront remis en
    attente" for none; only a corrected export replaces them."""
    return sum(resendable_by_state(conn, flt).values())


def resendable_by_state(conn: Connection, flt: EventFilter) -> dict[str, int]:
    """`count_resendable`, by state: a ``REJETE`` or ``SANS_REPONSE`` event goes back to be sent, an
    ``INVALIDE`` one only if pre-flight passes it now. The console's confirmation says which is which: a
    filter of invalid events was confirmed as "17 événements seront remis en attente", and 0 were."""
    e = events_t.c
    nothing_kept = sa.and_(e.state == EventState.INVALIDE.value,
                           sa.or_(e.payload.is_(None), e.payload.in_(_NO_FIELDS)))
    return dict(conn.execute(sa.select(e.state, sa.func.count()).where(*_resendable(flt), sa.not_(nothing_kept))
                             .group_by(e.state)).all())


def _detail(result: ResendResult) -> dict:
    return {"matched": result.matched, "resent_keys": result.resent_keys[:_LISTED_MAX],
            "still_invalid": [asdict(s) for s in result.still_invalid[:_LISTED_MAX]],
            **({"reason": result.reason} if result.reason else {})}


def _resend_rows(gw: Gateway, conn: Connection, rows: list[sa.Row], *, now: datetime, actor: str,
                 audit_id: int) -> ResendResult:
    result = ResendResult(audit_id, matched=len(rows))
    config = PreflightConfig.from_settings(gw.settings)
    plain = [r for r in rows if r.state != EventState.INVALIDE.value]
    history: list[dict] = []
    for start in range(0, len(plain), 500):
        part = plain[start:start + 500]
        moved = conn.execute(events_t.update().where(
            events_t.c.id.in_([r.id for r in part]),
            events_t.c.state.in_([EventState.REJETE.value, EventState.SANS_REPONSE.value]))
            .values(state=EventState.EN_ATTENTE.value, reject_code=None, reject_message=None, reject_field=None,
                    updated_at=now)).rowcount
        if moved != len(part):
            raise Conflict("des événements ont changé d'état pendant le renvoi : recommencer")
        history += [_resend_history(r, now, actor) for r in part]
        result.resent_keys += [r.key for r in part]
    superseded: list[tuple[int, str]] = []
    for row in (r for r in rows if r.state == EventState.INVALIDE.value):
        if _nothing_kept(row):  # left as it is: no update, no history row (the audit row says it was asked)
            message = f"{row.reject_message or ''} {NOTHING_KEPT}".strip()
            result.still_invalid.append(StillInvalid(row.key, row.version, row.reject_code or RejectCode.E09.value,
                                                     message))
            continue
        verdict = _revalidate(conn, row, config)
        if isinstance(verdict, StillInvalid):
            conn.execute(events_t.update().where(events_t.c.id == row.id, events_t.c.state == row.state)
                         .values(reject_code=verdict.code, reject_message=verdict.message[:1000],
                                 reject_field=verdict.field, updated_at=now))
            history.append({"event_id": row.id, "state": EventState.INVALIDE.value, "at": now, "run_id": None,
                            "cause": f"renvoi demandé par {actor} refusé : {verdict.message}"[:255],
                            "code": verdict.code, "envelope_id": row.envelope_id, "actor": actor[:120]})
            result.still_invalid.append(verdict)
            continue
        values, older = verdict
        moved = conn.execute(events_t.update().where(events_t.c.id == row.id, events_t.c.state == row.state)
                             .values(**values, updated_at=now)).rowcount
        if moved != 1:
            raise Conflict("un événement a changé d'état pendant le renvoi : recommencer")
        history.append(_resend_history(row, now, actor))
        result.resent_keys.append(row.key)
        superseded += [(i, f"remplacé par la version {row.version}, renvoyée par {actor}") for i in older]
    result.resent = len(result.resent_keys)
    if superseded:
        ids = [i for i, _ in superseded]
        conn.execute(events_t.update().where(events_t.c.id.in_(ids), events_t.c.state.in_(
            [s.value for s in SUPERSEDABLE])).values(state=EventState.CORRIGE.value, updated_at=now))
        history += [{"event_id": i, "state": EventState.CORRIGE.value, "at": now, "cause": cause[:255], "code": None,
                     "envelope_id": None, "run_id": None, "actor": actor[:120]} for i, cause in superseded]
    if history:
        conn.execute(history_t.insert(), history)
    return result


def _resend_history(row: sa.Row, now: datetime, actor: str) -> dict:
    replaced = f"le rejet {row.reject_code}" if row.reject_code else f"l'état {row.state}"
    where = f" du lot {row.envelope_id}" if row.envelope_id else ""
    return {"event_id": row.id, "state": EventState.EN_ATTENTE.value, "at": now, "run_id": None,
            "cause": f"renvoyé par {actor} : remplace {replaced}{where}"[:255],
            "code": row.reject_code, "envelope_id": row.envelope_id, "actor": actor[:120]}


# --- pre-flight again, for an INVALIDE event ------------------------------------------------------


#: The payload of a line the reader kept no field of: ``{}``, as `gateway.pipeline.reading.payload_json` writes
#: an empty record (and as ``json.dumps`` did before it). One rule for `_nothing_kept` and `count_resendable`'s SQL.
_NO_FIELDS = ("", "{}")


def _nothing_kept(row: sa.Row) -> bool:
    """The reader kept no field of the line (``{}``): nothing the gateway could check again or send."""
    return row.state == EventState.INVALIDE.value and (row.payload or "") in _NO_FIELDS


def _stored_form(row: sa.Row, fields: dict[str, Any]) -> str:
    """``p3`` when the row keeps a Parcours 3 line as read, ``json`` when it keeps JSON-style values:
    a partner's fields, an ``E06`` event's record, or a record that failed the XSD when sealed."""
    if is_api_source(row.source_file) or row.reject_code == RejectCode.E06.value:
        return "json"
    if "operation" not in fields and record_hash({**fields, "operation": row.operation}) == row.content_hash:
        return "json"
    return "p3"


def _revalidate(conn: Connection, row: sa.Row, config: PreflightConfig):
    """`StillInvalid`, or (values making the row ``EN_ATTENTE``, ids of older versions it supersedes)."""
    fields = json.loads(row.payload)

    def still(code: RejectCode, message: str, field: str | None = None) -> StillInvalid:
        return StillInvalid(row.key, row.version, code.value, message, field, is_api_source(row.source_file))

    if _stored_form(row, fields) == "p3":
        text = {k: str(v) for k, v in fields.items()}
        if any("\ufffd" in v for v in text.values()):
            return still(RejectCode.E09, "Caractères illisibles dans la ligne d'origine : corriger le fichier "
                                         "ou la fiche dans Parcours 3, puis l'exporter de nouveau.")
        outcome = parse_record(SourceRecord(row.source_file or "", row.source_line or 0, text), config)
    else:
        item = {k: ({"True": True, "False": False}.get(v, v) if k == "premier_entretien" else v)
                for k, v in fields.items()}
        item.setdefault("operation", row.operation)
        outcome = parse_item(item, config, source_file=row.source_file or "", source_line=row.source_line or 0)
    if isinstance(outcome, Rejection):
        return still(outcome.code, outcome.message, outcome.field)
    event = outcome.event
    if event.key != row.key:
        return still(RejectCode.E09, f"la clé lue ({event.key}) n'est plus celle de l'événement ({row.key})")
    others = conn.execute(sa.select(events_t.c.id, events_t.c.version, events_t.c.state)
                          .where(events_t.c.key == row.key, events_t.c.id != row.id)).all()
    live = any(o.state in LIVE_STATES for o in others)
    if (event.operation is Operation.MODIFY and not others) or (event.operation is Operation.CANCEL and not live):
        what = "modifie" if event.operation is Operation.MODIFY else "annule"
        return still(RejectCode.E06,
                     f"L'événement {row.key} {what} un événement que la passerelle n'a jamais transmis.")
    wire = Operation.CANCEL if event.operation is Operation.CANCEL else (Operation.MODIFY if live else Operation.CREATE)
    record = to_record(event)
    digest = record_hash(record)
    record.pop("operation", None)
    values = {"payload": json.dumps(record, ensure_ascii=False), "content_hash": digest, "operation": wire.value,
              "event_type": event.type_evenement.value, "code_ml": event.code_ml,
              "identifiant_pe": event.identifiant_pe, "date_evenement": event.date_evenement,
              "state": EventState.EN_ATTENTE.value, "reject_code": None, "reject_message": None}
    older = [o.id for o in others if o.version < row.version and o.state in SUPERSEDABLE]
    return values, older


# --- close ----------------------------------------------------------------------------------


def close_event(gw: Gateway, key: str, *, comment: str, actor: str, scope: frozenset[str] | None,
                client_id: int | None = None) -> CloseResult:
    """Close the latest version of ``key`` (``CLOS``) with a mandatory comment."""
    comment = (comment or "").strip()
    if not comment:
        raise RequestRejected("un commentaire est obligatoire pour clore un événement",
                              errors=[FieldError("comment", "commentaire obligatoire", "missing")])
    now = gw.clock()
    with gw.engine.begin() as conn:
        audit_id = _audit(conn, now, actor=actor, client_id=client_id, action=CLOSE, target=key, comment=comment)
        row = _latest_row(conn, key, scope)
        if row.state not in ACTIONABLE:
            result = CloseResult(audit_id, row.key, row.version, 0, row.state, reason=(
                f"état {row.state} ({EventState(row.state).label}) : seuls les états "
                f"{', '.join(ACTIONABLE)} se closent"))
        else:
            moved = conn.execute(events_t.update().where(events_t.c.id == row.id, events_t.c.state == row.state)
                                 .values(state=EventState.CLOS.value, updated_at=now)).rowcount
            if moved:
                conn.execute(history_t.insert().values(
                    event_id=row.id, state=EventState.CLOS.value, at=now,
                    cause=f"clos par {actor} : {comment}"[:_CAUSE_MAX],
                    code=row.reject_code, envelope_id=row.envelope_id, run_id=None, actor=actor[:120]))
            result = CloseResult(audit_id, row.key, row.version, moved,
                                 EventState.CLOS.value if moved else row.state)
        _finish_audit(conn, audit_id, result.closed, {"version": result.version, "state": result.state,
                                                       **({"reason": result.reason} if result.reason else {})})
    return result
