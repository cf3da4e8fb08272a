"""The rejects list, its CSV export, and resending every event of a filter after a confirmation (issue 4;
brief §5: "resend … every event matching a filter in one action").

The list, the export, the confirmation and the resend read the same `RejectsQuery` from the address or
the form, and the user's scope is added to it here, on the server: a support user cannot widen it by
editing the address. The confirmation shows how many events the resend will take now, the invalid ones
apart, which go only if pre-flight passes them now (`gateway.support.resendable_by_state`, the very
condition the resend applies under its lock); the resend itself is `gateway.support.resend_matching`,
which moves each event once however many times the button is pressed, and writes the audit row the
result page is read from.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from gateway import support
from gateway.codes import EventState, Level, RejectCode
from gateway.console import csvexport, interrupted, queries, xlsxexport
from gateway.console.deps import CheckedUserDep, CodecDep, ConsoleUser, GatewayDep, UserDep
from gateway.console.filters import STATE_CHOICES, RejectsQuery
from gateway.console.outcome import Message, action_message
from gateway.console.paused import paused_state
from gateway.console.session import base_path
from gateway.console.templating import render
from gateway.context import Gateway
from gateway.store.queries import count_events, envelopes_page, get_run, list_runs

router = APIRouter()


def _filter(gw: Gateway, user: ConsoleUser, query: RejectsQuery):
    return query.event_filter(user.scope, identifiant_pe_pattern=gw.settings.identifiant_pe_pattern)


def _read(conn: Connection, params, user: ConsoleUser) -> RejectsQuery:
    """The criteria of ``params``, a mission locale, a night or an envelope the user cannot see named and left
    out like an unreadable criterion."""
    query = RejectsQuery.from_params(params)
    if query.code_ml and user.scope is not None and query.code_ml not in user.scope:
        query = query.without_foreign_ml()
    if query.run_id is not None and get_run(conn, query.run_id, user.scope) is None:
        query = query.without_unknown_run(user.scope)
    if query.envelope_id is not None and not envelopes_page(conn, user.scope, limit=1,
                                                            envelope_id=query.envelope_id):
        query = query.without_unknown_envelope()
    return query


def _read_apart(gw: Gateway, params, user: ConsoleUser) -> RejectsQuery:
    with gw.engine.connect() as conn:
        return _read(conn, params, user)


def _cursor(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 19 else None


@router.get("/rejets", name="rejets")
def rejects(request: Request, user: UserDep, gw: GatewayDep) -> Response:
    params = request.query_params
    with gw.engine.connect() as conn:
        query = _read(conn, params, user)
        flt = _filter(gw, user, query)
        page = queries.rejects_page(conn, flt, limit=gw.settings.console_page_size,
                                    after=_cursor(params.get("apres")), before=_cursor(params.get("avant")))
        total = count_events(conn, flt)
        start = queries.newer_than(conn, flt, page.rows[0].id) + 1 if page.rows else 0
        end = start + len(page.rows) - 1
        total = max(total, end)  # counted apart from the page: a night storing events in between cannot make it less
        resendable = support.count_resendable(conn, flt)
        mls = queries.ml_choices(conn, user.scope)
        runs = list_runs(conn, user.scope, limit=30, before_id=None)
        if query.run_id is not None and all(run.id != query.run_id for run in runs):
            # An older run chosen from its link (the dashboard, an event's page): listed, so that the
            # dropdown shows what the list is filtered on rather than "toutes", and stays on it when resent.
            runs += [run for run in [get_run(conn, query.run_id, user.scope)] if run is not None]
        paused = paused_state(conn)
        message = action_message(conn, params.get("action"), user.actor, paused=bool(paused))
    code_groups = [("Rejets de lot (problème technique)", [c for c in RejectCode if c.level is Level.ENVELOPE]),
                   ("Rejets d'événement (à corriger dans Parcours 3)",
                    [c for c in RejectCode if c.level is Level.EVENT])]
    return render(request, "rejets.html", {
        "user": user, "q": query, "page": page, "total": total, "resendable": resendable, "mls": mls,
        "start": start, "end": end,
        "runs": runs, "code_groups": code_groups, "state_choices": STATE_CHOICES, "flash": message, "paused": paused,
        "first_page": params.get("apres") is None and params.get("avant") is None})


@router.get("/rejets.csv", name="rejets_csv")
def rejects_csv(request: Request, user: UserDep, gw: GatewayDep) -> Response:
    query = _read_apart(gw, request.query_params, user)
    flt = _filter(gw, user, query)

    def chunks():
        with gw.engine.connect() as conn:
            yield from csvexport.csv_chunks(csvexport.records(queries.export_rows(conn, flt)))

    name = query.file_name(gw.clock(), user.scope)
    return StreamingResponse(chunks(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/rejets.xlsx", name="rejets_xlsx")
def rejects_xlsx(request: Request, user: UserDep, gw: GatewayDep) -> Response:
    """The CSV's lines (same filter, same scope, same records) as an Excel workbook, where identifiers stay
    text: written whole to a temporary file first (a zip is not readable until complete), then streamed."""
    query = _read_apart(gw, request.query_params, user)
    flt = _filter(gw, user, query)
    with gw.engine.connect() as conn:
        out = xlsxexport.workbook_file(csvexport.records(queries.export_rows(conn, flt)))
    name = query.file_name(gw.clock(), user.scope).removesuffix(".csv") + ".xlsx"
    return StreamingResponse(xlsxexport.file_chunks(out), media_type=xlsxexport.MEDIA_TYPE,
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/rejets/renvoi", name="confirmer_renvoi")
def confirm_resend(request: Request, user: UserDep, gw: GatewayDep, codec: CodecDep) -> Response:
    with gw.engine.connect() as conn:
        query = _read(conn, request.query_params, user)
        states = support.resendable_by_state(conn, _filter(gw, user, query))
        paused = paused_state(conn)
    stopped = interrupted.recall_for(request, codec, user.principal.client_id, None)
    invalid = states.get(EventState.INVALIDE.value, 0)
    response = render(request, "confirmer_renvoi.html", {
        "user": user, "q": query, "count": sum(states.values()), "invalid": invalid,
        "plain": sum(states.values()) - invalid, "paused": paused,
        "flash": Message("erreur", stopped.message()) if stopped else None})
    if stopped:
        interrupted.forget(response, request)
    return response


@router.post("/actions/renvoyer-filtre", name="renvoyer_filtre")
async def resend_filter(request: Request, user: CheckedUserDep, gw: GatewayDep) -> Response:
    query = await run_in_threadpool(_read_apart, gw, await request.form(), user)
    if query.errors:  # a criterion dropped would widen the resend: refuse instead
        return render(request, "erreur.html", {"user": user, "title": "Filtre illisible", "errors": query.errors,
                                               "text": "Rien n'a été renvoyé. Refaites le filtre depuis la liste "
                                                       "des rejets."}, status=400)
    result = await run_in_threadpool(support.resend_matching, gw, _filter(gw, user, query), actor=user.actor,
                                     client_id=user.principal.client_id)
    return RedirectResponse(f"{base_path(request)}/rejets{query.query(action=result.audit_id)}", status_code=303)
