"""``/api/v1/runs``: list and read runs (every role, in its scope), start one (admin).

A scoped client sees the runs that read or sent one of its events, with counts of its own events
only; the stored run summary, which counts every mission locale, is for admin.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from gateway.api import pagination, schemas, views
from gateway.api.deps import AdminDep, ConnDep, GatewayDep, JsonBodyDep, PrincipalDep
from gateway.api.openapi import PAGED_422, RUN_409, error_responses
from gateway.errors import NotFound
from gateway.store.queries import get_run, list_runs, run_counts

router = APIRouter(prefix="/runs", tags=["exécutions"])

RunIdPath = Annotated[int, Path(ge=1, le=2**62, description="Numéro de l'exécution.")]


@router.get("", response_model=schemas.Page[schemas.RunPublic], summary="Lister les exécutions",
            responses=error_responses(401, 422, special={422: PAGED_422}))
def runs_list(page: Annotated[schemas.PageQuery, Query()], principal: PrincipalDep, conn: ConnDep,
              gw: GatewayDep) -> schemas.Page[schemas.RunPublic]:
    """La plus récente d'abord."""
    criteria = {"scope": sorted(principal.scope or [])}
    after = pagination.decode(page.cursor, criteria, shape={"id": int})
    limit = min(page.limit, gw.settings.api_page_max)
    rows = list_runs(conn, principal.scope, limit=limit + 1, before_id=after["id"] if after else None)
    more = len(rows) > limit
    rows = rows[:limit]
    states, envelopes = run_counts(conn, [r.id for r in rows], principal.scope)
    return schemas.Page[schemas.RunPublic](
        items=[views.run_public(r, states[r.id], envelopes[r.id], principal) for r in rows],
        next_cursor=pagination.encode({"id": rows[-1].id}, criteria) if more else None)


@router.get("/{run_id}", response_model=schemas.RunDetail, summary="Lire une exécution",
            responses=error_responses(401, 404, 422))
def run_detail(run_id: RunIdPath, principal: PrincipalDep, conn: ConnDep) -> schemas.RunDetail:
    row = get_run(conn, run_id, principal.scope)
    if row is None:
        raise NotFound(f"exécution {run_id} introuvable")
    states, envelopes = run_counts(conn, [run_id], principal.scope)
    return views.run_public(row, states[run_id], envelopes[run_id], principal, detail=True)


@router.post("", status_code=202, response_model=schemas.RunStarted, summary="Lancer une exécution",
             responses={202: {"description": "Lancée : la suivre à l'adresse donnée.", "headers": {
                 "Location": {"description": "`/api/v1/runs/{id}`", "schema": {"type": "string"}}}},
                 **error_responses(401, 403, 409, 413, 415, 422, special={409: RUN_409})})
def run_start(principal: AdminDep, json_body: JsonBodyDep, request: Request, response: Response,
              body: schemas.RunStartIn | None = None) -> schemas.RunStarted:
    """Lit les exports donnés (par nom, dans le dossier d'entrée), puis envoie tout ce qui est en attente, en
    arrière-plan : la réponse donne le numéro de l'exécution à suivre. 409 si une exécution est en cours.
    Le corps est facultatif : sans corps, comme `{}`, l'exécution envoie ce qui est en attente."""
    # Every field has a default, so the body has one too: without it, a 422 "body : champ obligatoire".
    body = body if body is not None else schemas.RunStartIn()
    launcher = request.app.state.runs
    run_id = launcher.start(body.inputs, dry_run=body.dry_run, wait_for_reports=body.wait_for_reports,
                            actor=principal.actor, client_id=principal.client_id)
    location = f"{request.scope.get('root_path', '')}/api/v1/runs/{run_id}"
    response.headers["Location"] = location
    return schemas.RunStarted(run_id=run_id, location=location)
