"""Store rows → the API's public models. What a caller may not see is left out here, in one place:
whole-envelope and whole-run figures count every mission locale's events, so only ``admin`` gets them.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from gateway.api import schemas
from gateway.api.auth import Principal
from gateway.codes import EnvelopeState, EventState, Level, RejectCode
from gateway.store.queries import unacknowledged
from gateway.submission import ItemResult, is_api_source


#: The API's own refusals of one event of a submission (`gateway.submission`), labelled like the catalogue's
#: codes: a partner's developer reads ``label`` and ``hint`` whatever the code.
API_REFUSALS: dict[str, tuple[str, str]] = {
    "FORBIDDEN": ("Mission locale hors du périmètre du client",
                  "Le jeton ne couvre pas cette mission locale : soumettre avec un jeton qui la couvre, ou "
                  "demander à l'administrateur d'étendre son périmètre."),
    "CONFLICT": ("Même événement deux fois dans la requête",
                 "Une requête porte une version par événement : garder la dernière, ou envoyer l'autre dans "
                 "une requête suivante."),
}


#: The hint of an event-level code for an event a partner submitted: the catalogue's hints speak to Parcours 3's
#: users ("le corriger dans Parcours 3 ; la version corrigée part avec le prochain export"), which a partner's
#: developer cannot act on.
PARTNER_HINT = ("Corriger l'événement dans le système qui l'a soumis (le message dit quoi), puis le soumettre de "
                "nouveau (POST /api/v1/events) : la nouvelle version remplace celle-ci.")


def _hint(known: RejectCode, submitted: bool) -> str:
    return PARTNER_HINT if submitted and known.level is Level.EVENT else known.hint


def reject(code: str | None, message: str | None = None, field: str | None = None, *,
           submitted: bool = False) -> schemas.RejectPublic | None:
    """``submitted``: the event came through this API (a partner's), not from an export."""
    if code is None:
        return None
    try:
        known = RejectCode(code)
    except ValueError:
        label, hint = API_REFUSALS.get(code, (None, None))
        return schemas.RejectPublic(code=code, label=label, hint=hint, message=message, field=field)
    return schemas.RejectPublic(code=code, label=known.label, hint=_hint(known, submitted), message=message,
                                field=field or (known.fields[0] if known.fields else None))


def _reject_dict(code: str | None, message: str | None, field: str | None) -> dict | None:
    """`reject` of a submission's item, as a plain dict (`submission_dicts`)."""
    if code is None:
        return None
    known = _CODES.get(code)
    if known is None:
        label, hint = API_REFUSALS.get(code, (None, None))
        return {"code": code, "label": label, "hint": hint, "message": message, "field": field}
    return {"code": code, "label": known.label, "hint": _hint(known, True), "message": message,
            "field": field or (known.fields[0] if known.fields else None)}


_CODES = {c.value: c for c in RejectCode}


def submission_dicts(results: list[ItemResult]) -> list[dict]:
    """`schemas.SubmissionItem` as plain dicts: a bulk answer of thousands of items is serialised at once,
    without building and validating a model per item (the bulk path is sized for ≥ 10,000 events/s)."""
    return [{"index": r.index, "outcome": r.outcome, "key": r.key, "version": r.version, "state": r.state,
             "reject": _reject_dict(r.code, r.message, r.field)} for r in results]


def submission_item(result: ItemResult) -> schemas.SubmissionItem:
    return schemas.SubmissionItem(index=result.index, outcome=result.outcome, key=result.key, version=result.version,
                                  state=result.state, reject=reject(result.code, result.message, result.field,
                                                                                   submitted=True))


def event_public(row: sa.Row) -> schemas.EventPublic:
    return schemas.EventPublic(
        key=row.key, version=row.version, operation=row.operation, event_type=row.event_type, code_ml=row.code_ml,
        identifiant_pe=row.identifiant_pe, date_evenement=row.date_evenement, state=row.state,
        state_label=EventState(row.state).label,
        reject=reject(row.reject_code, row.reject_message, row.reject_field, submitted=is_api_source(row.source_file)),
        source_file=row.source_file, source_line=row.source_line, run_id=row.run_id, envelope_id=row.envelope_id,
        created_at=row.created_at, updated_at=row.updated_at)


def event_detail(row: sa.Row, versions: list[sa.Row], history: list[sa.Row]) -> schemas.EventDetail:
    own = [h for h in history if h.event_id == row.id]
    envelopes = list(dict.fromkeys(h.envelope_id for h in own if h.envelope_id))
    return schemas.EventDetail(
        **event_public(row).model_dump(), fields=json.loads(row.payload),
        versions=[schemas.VersionSummary(version=v.version, operation=v.operation, state=v.state,
                                         reject_code=v.reject_code, envelope_id=v.envelope_id,
                                         created_at=v.created_at, updated_at=v.updated_at) for v in versions],
        envelopes=envelopes,
        history=[schemas.HistoryEntry(version=h.version, state=h.state, at=h.at, cause=h.cause, code=h.code,
                                      envelope_id=h.envelope_id, run_id=h.run_id, actor=h.actor) for h in history])


def run_public(row: sa.Row, states: dict, envelopes: dict, principal: Principal, *,
               detail: bool = False) -> schemas.RunPublic:
    inputs = json.loads(row.inputs or "[]")
    if principal.scope is not None:  # export names carry their mission locale (P3_<code_ml>_<date>.csv)
        inputs = [name for name in inputs if any(f"_{code}_" in name for code in principal.scope)]
    values = dict(id=row.id, trigger=row.trigger, dry_run=row.dry_run, inputs=inputs,
                  started_at=row.started_at, finished_at=row.finished_at, outcome=row.outcome, states=states,
                  envelopes=envelopes, unacknowledged_envelopes=unacknowledged(envelopes))
    if not detail:
        return schemas.RunPublic(**values)
    admin = principal.scope is None
    return schemas.RunDetail(**values, error=row.error if admin else None,
                             summary=json.loads(row.counts or "{}") if admin else None)


def envelope_public(row: sa.Row, states: dict, principal: Principal, *, history: list[sa.Row] | None = None):
    admin = principal.scope is None
    values = dict(
        id=row.id, run_id=row.run_id, state=row.state, state_label=EnvelopeState(row.state).label,
        created_at=row.created_at, first_sent_at=row.first_sent_at, receipt_at=row.receipt_at,
        report_at=row.report_at, attempts=row.attempts, reject=reject(row.reject_code, row.reject_message),
        states=states, event_count=row.event_count if admin else None,
        accepted_count=row.accepted_count if admin else None, rejected_count=row.rejected_count if admin else None)
    if history is None:
        return schemas.EnvelopePublic(**values)
    return schemas.EnvelopeDetail(**values, byte_size=row.byte_size if admin else None,
                                  last_error=row.last_error if admin else None,
                                  history=[schemas.EnvelopeHistoryEntry(state=h.state, at=h.at, cause=h.cause)
                                           for h in history])
