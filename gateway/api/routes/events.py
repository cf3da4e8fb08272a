"""``/api/v1/events``: submit events (partner, admin), search them and read one (every role, in its scope).

Reading one event answers its **latest version** (``?version=N`` for another one), with the list of
all versions and the history of every version, so one call shows what support needs (brief §5).
Another mission locale's event, or one whose mission locale could not be read (admin only), is
answered exactly as a missing one: 404 ``NOT_FOUND``, same body.

A submission's ``X-Request-ID`` is a replay key as well as a trace (`gateway.submission`): a request
names the "file" its events are read from, and ingest never reads the same line of the same file twice.
The operations declare the header and say so, since it changes what a partner gets back.

``/events/bulk`` and ``/events/resend`` are not keys: ``GET /events/bulk`` was read as the event "bulk"
(404 "événement bulk introuvable") while a ``PUT`` there was a 405, so a partner who mistyped the method
was told of a missing event. The read's ``{key}`` never matches them (`KEY_SEGMENT`), so every method
but ``POST`` on them is a 405 with ``Allow: POST``. No event can have either key: a key is
``code_ml-id_evenement`` (5 digits, ``-``, digits), or ``?file:line`` for a line without one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor, register_url_convertor

from gateway.api import pagination, schemas, views
from gateway.api.auth import Principal
from gateway.api.deps import ConnDep, GatewayDep, JsonBodyDep, PrincipalDep, RequestIdDep, SubmitterDep
from gateway.api.openapi import (
    PAGED_422, SUBMIT_403, SUBMIT_409, SUBMIT_BULK_422, SUBMIT_ONE_422, error_responses,
)
from gateway.context import Gateway
from gateway.errors import FieldError, NotFound, PermissionDenied, RequestRejected
from gateway.store.queries import EventFilter, event_history, event_versions, list_events
from gateway.submission import ALREADY, REFUSED, submit

router = APIRouter(prefix="/events", tags=["événements"])

KeyPath = Annotated[str, Path(max_length=300, description="Clé de l'événement, `code_ml-id_evenement`.",
                              examples=["69001-1001"])]

#: The literal paths beside ``/events/{key}``: ``/events/bulk`` (here) and ``/events/resend``
#: (`gateway.api.routes.support`). A new one goes here too (tests/gateway/api/test_operations.py checks).
NOT_KEYS = ("bulk", "resend")


class _KeyConvertor(StringConvertor):
    """A path segment that is not one of `NOT_KEYS`: Starlette takes the first route whose path and
    method match, so without it ``GET /events/bulk`` was ``read_event``'s, and not a 405."""

    regex = f"(?!(?:{'|'.join(NOT_KEYS)})(?:/|$))[^/]+"


register_url_convertor("event_key", _KeyConvertor())
#: ``/{key}`` for the read of an event: the same parameter, which never matches a sibling's literal path.
KEY_SEGMENT = "/{key:event_key}"


F = TypeVar("F", bound=Callable[..., Any])

#: What ``X-Request-ID`` does to a submission, in each submission operation's description: one text for both.
REPLAY = """**Nouvelle tentative (`X-Request-ID`)** : l'en-tête facultatif `X-Request-ID` (1 à 64 caractères parmi
les lettres, les chiffres, `.`, `_` et `-` ; une autre valeur est ignorée et remplacée par un identifiant tiré
par la passerelle) nomme la requête : il est rendu dans la réponse (`request_id`, en-tête `X-Request-ID`) et
sert de clé de rejeu, propre à chaque client. Un événement que cette requête a déjà enregistré (même client,
même `X-Request-ID`, même position dans la requête, même contenu) n'est pas enregistré de nouveau : il est
répondu `DEJA_RECU`, avec la version et l'état de la **dernière** version de l'événement, même si une version
plus récente, d'un autre contenu, a été enregistrée entre-temps (une nouvelle tentative tardive ne défait pas
une correction envoyée depuis). Sans cet en-tête, ou sous un autre identifiant, seul compte le contenu de la
dernière version : renvoyer un contenu antérieur en fait une nouvelle version. Un `X-Request-ID` ne sert donc
qu'à une requête et à ses nouvelles tentatives, jamais à une autre."""

#: The header in the operations' parameters. No ``pattern`` in its schema: a value outside the format is not
#: refused, only replaced (`gateway.api.middleware`), and a schema's constraint says "refused".
REQUEST_ID_HEADER: dict[str, Any] = {"parameters": [{
    # No "example": Swagger UI fills a parameter's example in, so every submission tried from /docs went under
    # the same replay key, and a later one of a content already sent was DEJA_RECU, not stored.
    "name": "X-Request-ID", "in": "header", "required": False, "schema": {"type": "string"},
    "description": "Identifiant de la requête, choisi par le client (1 à 64 caractères : lettres, chiffres, "
                   "`.`, `_`, `-`, par exemple `p3-20261120-0001`) ; un nouveau par requête, et le même pour "
                   "chaque nouvelle tentative de la même requête : un événement que cette requête a déjà "
                   "enregistré, au même rang et de même contenu, est alors `DEJA_RECU` sans rien enregistrer, "
                   "même si une version plus récente a été reçue depuis."}]}


def _with_shared_text(endpoint: F) -> F:
    """Append the rule on control characters and `REPLAY` to the operation's description (its docstring), so
    both submissions say the same."""
    endpoint.__doc__ = (f"{inspect.cleandoc(endpoint.__doc__ or '')}\n\n{schemas.CONTROL_CHARACTERS_RULE}"
                        f"\n\n{REPLAY}")
    return endpoint


def _item(event: schemas.EventIn) -> dict[str, Any]:
    return event.__dict__  # read only; unset fields are None, which pre-flight treats as absent


def event_filter(q: schemas.EventFilterIn, principal: Principal, *, key: str | None = None) -> EventFilter:
    """The caller's criteria, always within its scope."""
    return EventFilter(
        states=tuple(s.value for s in q.states) if q.states else None,
        reject_code=q.reject_code.value if q.reject_code else None, code_ml=q.code_ml, code_ml_in=principal.scope,
        key=key, identifiant_pe=q.identifiant_pe, envelope_id=q.envelope_id, run_id=q.run_id,
        date_from=q.date_from, date_to=q.date_to, updated_from=q.updated_from, updated_to=q.updated_to)


@router.post("", status_code=201, response_model=schemas.SubmissionItem, summary="Soumettre un événement",
             openapi_extra=REQUEST_ID_HEADER,
             responses={200: {"model": schemas.SubmissionItem,
                              "description": "Déjà reçu (`DEJA_RECU`), rien d'enregistré : même contenu que la "
                                             "dernière version, ou nouvelle tentative sous le même `X-Request-ID` "
                                             "(voir plus haut) ; `version` et `state` sont ceux de la dernière "
                                             "version."},
                        201: {"description": "Enregistré : nouvel événement ou nouvelle version (valide ou "
                                             "INVALIDE avec son code de rejet).",
                              "headers": {"Location": {"description": "L'adresse de l'événement.",
                                                       "schema": {"type": "string"}}}},
                        **error_responses(401, 403, 409, 413, 415, 422,
                                          special={403: SUBMIT_403, 409: SUBMIT_409, 422: SUBMIT_ONE_422})})
@_with_shared_text
def submit_event(event: schemas.EventIn, principal: SubmitterDep, json_body: JsonBodyDep, gw: GatewayDep,
                 request_id: RequestIdDep, request: Request, response: Response) -> schemas.SubmissionItem:
    """Pré-contrôle (les mêmes règles qu'une ligne d'export Parcours 3), puis enregistrement.
    Un événement d'une autre mission locale est refusé (403) ; un événement sans clé lisible, 422."""
    [item] = submit(gw, [_item(event)], client=principal.name, scope=principal.scope,
                    request_id=request_id).results
    if item.outcome == REFUSED:
        if item.code == "FORBIDDEN":
            raise PermissionDenied(item.message)
        raise RequestRejected(item.message, code=item.code,
                              errors=[FieldError(item.field or "body", item.message, item.code)])
    if item.outcome == ALREADY:
        response.status_code = 200
    else:  # 201 Created: where the new event (or version) is
        response.headers["Location"] = (f"{request.scope.get('root_path', '')}/api/v1/events/"
                                        f"{quote(item.key, safe='')}")
    return views.submission_item(item)


@router.post("/bulk", response_model=schemas.SubmissionOut, summary="Soumettre des événements en nombre",
             openapi_extra=REQUEST_ID_HEADER,
             responses=error_responses(401, 403, 409, 413, 415, 422,
                                       special={403: SUBMIT_403, 409: SUBMIT_409, 422: SUBMIT_BULK_422}))
@_with_shared_text
def submit_events(body: schemas.EventBulkIn, principal: SubmitterDep, json_body: JsonBodyDep, gw: GatewayDep,
                  request_id: RequestIdDep) -> Response:
    """Chaque événement reçoit sa réponse (clé, version, état ou code de rejet), dans l'ordre de la requête ;
    ceux d'une mission locale hors du périmètre sont refusés un par un (`FORBIDDEN`), les autres enregistrés.
    Renvoyer la même requête sans que rien n'ait changé entre-temps ne crée rien (`DEJA_RECU`)."""
    most = gw.settings.api_max_events_per_request
    if len(body.events) > most:
        raise RequestRejected(f"au plus {most} événements par requête ({len(body.events)} reçus)",
                              errors=[FieldError("events", f"au plus {most} élément(s)", "too_long")])
    result = submit(gw, [_item(e) for e in body.events], client=principal.name, scope=principal.scope,
                    request_id=request_id)
    answer = {"request_id": result.request_id, "counts": result.counts(),
              "results": views.submission_dicts(result.results)}
    return Response(orjson.dumps(answer), media_type="application/json")  # 5,000 items: 1 ms (json.dumps: 15)


@router.get("", response_model=schemas.Page[schemas.EventPublic], summary="Rechercher des événements",
            responses=error_responses(401, 422, special={422: PAGED_422}))
def search_events(query: Annotated[schemas.EventQuery, Query()], principal: PrincipalDep, conn: ConnDep,
                  gw: GatewayDep) -> schemas.Page[schemas.EventPublic]:
    """Par état, code de rejet, mission locale, identifiant France Travail, lot, exécution, date de
    l'événement, date du dernier changement ; par ordre d'arrivée, page par page (`next_cursor`). Les
    événements arrivés pendant le parcours apparaissent à la fin, sans décaler les pages déjà lues."""
    flt = event_filter(query, principal, key=query.key)
    criteria = {**query.model_dump(mode="json", exclude={"cursor", "limit"}), "scope": sorted(principal.scope or [])}
    after = pagination.decode(query.cursor, criteria, shape={"id": int})
    limit = min(query.limit, gw.settings.api_page_max)
    rows = list_events(conn, flt, limit=limit + 1, after_id=after["id"] if after else None)
    more = len(rows) > limit
    rows = rows[:limit]
    return schemas.Page[schemas.EventPublic](
        items=[views.event_public(r) for r in rows],
        next_cursor=pagination.encode({"id": rows[-1].id}, criteria) if more else None)


@router.get(KEY_SEGMENT, response_model=schemas.EventDetail, summary="Lire un événement",
            responses=error_responses(401, 404, 422))
async def read_event(key: KeyPath, query: Annotated[schemas.VersionQuery, Query()], principal: PrincipalDep,
                     gw: GatewayDep) -> schemas.EventDetail:
    """Ses champs, son état, son rejet avec le libellé et l'indication de correction, le lot dans lequel il a
    voyagé, toutes ses versions et tout son historique."""
    # The hottest read: its database work in one worker-thread hop, the answer checked on the event loop.
    return await run_in_threadpool(_read_event, gw, key, query.version, principal.scope)


def _read_event(gw: Gateway, key: str, version: int | None, scope: frozenset[str] | None) -> schemas.EventDetail:
    with gw.engine.connect() as conn:
        versions = event_versions(conn, key, scope)
        if not versions:
            raise NotFound(f"événement {key} introuvable")
        if version is None:
            row = versions[-1]
        else:
            row = next((v for v in versions if v.version == version), None)
            if row is None:
                raise NotFound(f"événement {key} introuvable en version {version}")
        history = event_history(conn, [v.id for v in versions])
    return views.event_detail(row, versions, history)
