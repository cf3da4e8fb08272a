"""Every error of the API as one document: ``application/problem+json`` (RFC 9457).

The ``code`` member is the stable code of `gateway.errors` (``NOT_FOUND``, ``FORBIDDEN``, ``L01``,
``E09``…), the one the store, the console and the tests use (STYLE "one error tree with stable
codes"); ``title`` and ``detail`` are French, for people. A request the API cannot take (invalid
JSON, a wrong or unknown field) is a 422 whose ``errors`` name each field at fault
(``events.3.date_evenement``, ``state``…).

The handlers here turn our errors (among them a body that is not labelled JSON: 415,
`UnsupportedMediaType`), FastAPI's validation errors and Starlette's HTTP errors (unknown path 404,
wrong method 405, a body stalled 408 or too large 413) into that one shape; `gateway.api.openapi` documents
them on every operation, with the codes each status may carry.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from gateway.api.schemas import PATTERN_WORDS
from gateway.codes import RejectCode
from gateway.errors import (
    Conflict, DocumentRejected, FieldError, GatewayError, MethodNotAllowed, NotFound, NotReady, PayloadTooLarge,
    PermissionDenied, ReportInconsistent, RequestRejected, SendingPaused, StoreError, TransportError, Unauthenticated,
    UnexpectedDocument,
)

log = logging.getLogger("gateway.api")


class UnsupportedMediaType(GatewayError, ValueError):
    """A body the API does not read as JSON (`gateway.api.deps.require_json`): a 415 saying which
    ``Content-Type`` to send, rather than the 422 "doit être un objet JSON" FastAPI's bytes gave, which
    sent a partner looking for a fault in a body that was right. Here, not in `gateway.errors`: only
    HTTP has media types."""

    code = "UNSUPPORTED_MEDIA_TYPE"


class BodyTimeout(GatewayError, TimeoutError):
    """A request body that stopped arriving (`gateway.api.middleware.BodyStalled`): a 408 rather than a worker
    held until the client goes away. Here, not in `gateway.errors`: only HTTP has a body that can stall."""

    code = "BODY_TIMEOUT"


class WrongDocument(UnexpectedDocument):
    """A document of another kind than the operation takes (an `AccuseReception`, or any other root, posted to
    DUDE's report callback): the request is wrong, a 400, where a report of the right kind that nothing awaits
    stays a 409. The same code (``DOC_MISMATCH``); here, not in `gateway.errors`: only the API tells the two
    apart by status."""


PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:p3-dude:probleme:"

#: Status of each kind of error, most specific first.
_STATUS: tuple[tuple[type[GatewayError], int], ...] = (
    (Unauthenticated, 401), (PermissionDenied, 403), (NotFound, 404), (MethodNotAllowed, 405),
    (PayloadTooLarge, 413), (UnsupportedMediaType, 415), (RequestRejected, 422), (Conflict, 409),
    (WrongDocument, 400), (ReportInconsistent, 422), (UnexpectedDocument, 409), (DocumentRejected, 400),
    (NotReady, 503), (StoreError, 503), (SendingPaused, 503), (TransportError, 502),
)
TITLES = {
    400: "Document refusé", 401: "Authentification requise", 403: "Accès refusé", 404: "Ressource introuvable",
    405: "Méthode non admise", 408: "Corps de requête interrompu", 409: "Conflit avec l'état actuel",
    413: "Requête trop volumineuse", 415: "Type de contenu non pris en charge", 422: "Requête invalide",
    500: "Erreur interne", 502: "DUDE injoignable", 503: "Service indisponible",
}
#: Codes of the HTTP errors Starlette and FastAPI raise themselves.
_HTTP_CODES = {400: RequestRejected.code, 401: Unauthenticated.code, 403: PermissionDenied.code,
               404: NotFound.code, 405: MethodNotAllowed.code, 408: BodyTimeout.code, 409: Conflict.code,
               413: PayloadTooLarge.code, 415: UnsupportedMediaType.code, 422: RequestRejected.code}


class ProblemField(BaseModel):
    field: str = Field(description="Où : le champ, avec sa position (`events.3.nom`, `state`, `body`…).")
    message: str = Field(description="Pourquoi, en français.")
    type: str = Field(description="Nature de l'erreur, stable (`missing`, `extra_forbidden`, `string_type`…).")


class Problem(BaseModel):
    """An RFC 9457 problem document, with the gateway's stable ``code``."""

    type: str = Field(description="URI du type de problème (`urn:p3-dude:probleme:<code>`).")
    title: str = Field(description="Résumé en français.")
    status: int = Field(description="Code HTTP.")
    detail: str = Field(description="Explication en français.")
    code: str = Field(description="Code stable de l'arbre d'erreurs : `NOT_FOUND`, `FORBIDDEN`, `L01`…")
    instance: str | None = Field(None, description="Le chemin de la requête.")
    request_id: str | None = Field(None, description="Identifiant de la requête (en-tête `X-Request-ID`).")
    errors: list[ProblemField] | None = Field(None, description="Les champs en cause (422).")

    model_config = {"json_schema_extra": {"examples": [{
        "type": "urn:p3-dude:probleme:NOT_FOUND", "title": "Ressource introuvable", "status": 404,
        "detail": "événement 69001-1001 introuvable", "code": "NOT_FOUND",
        "instance": "/api/v1/events/69001-1001", "request_id": "3f2a9c1d4e5b6a7c"}]}}


def status_of(exc: GatewayError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def problem_body(status: int, code: str, detail: str, *, title: str | None = None, instance: str | None = None,
                 request_id: str | None = None, errors: list[FieldError] | tuple[FieldError, ...] = ()) -> bytes:
    body: dict[str, Any] = {"type": TYPE_PREFIX + code, "title": title or TITLES.get(status, "Erreur"),
                            "status": status, "detail": detail, "code": code}
    if instance is not None:
        body["instance"] = instance
    if request_id is not None:
        body["request_id"] = request_id
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message, "type": e.type} for e in errors]
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def problem_response(request: Request, status: int, code: str, detail: str, *, title: str | None = None,
                     errors=(), headers: dict[str, str] | None = None) -> Response:
    rid = request.scope.get("state", {}).get("request_id")
    body = problem_body(status, code, detail, title=title, instance=request.url.path, request_id=rid,
                        errors=errors)
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


# --- translating FastAPI's validation errors ------------------------------------------------------

_FRENCH = {
    "missing": "champ obligatoire", "extra_forbidden": "champ inconnu",
    "string_type": "doit être une chaîne de caractères",
    "string_too_long": "trop long (au plus {max_length} caractères)",
    "string_too_short": "trop court (au moins {min_length} caractère(s))",
    "string_pattern_mismatch": "format attendu : {pattern}", "int_parsing": "doit être un entier",
    "int_type": "doit être un entier", "bool_parsing": "doit être un booléen", "bool_type": "doit être un booléen",
    "enum": "valeur non admise (attendu : {expected})", "literal_error": "valeur non admise (attendu : {expected})",
    "date_parsing": "date AAAA-MM-JJ attendue", "date_from_datetime_parsing": "date AAAA-MM-JJ attendue",
    "date_type": "date AAAA-MM-JJ attendue", "datetime_parsing": "horodatage ISO 8601 attendu",
    "datetime_from_date_parsing": "horodatage ISO 8601 attendu", "datetime_type": "horodatage ISO 8601 attendu",
    "timezone_aware": "horodatage avec fuseau horaire attendu (par exemple 2026-11-20T10:00:00+01:00)",
    # A query string reads a "+" as a space (`gateway.api.schemas.QueryInstant`).
    "datetime_plus_as_space": "horodatage ISO 8601 attendu : une espace à la place du « + » du fuseau horaire (dans "
                              "une adresse, un « + » non encodé se lit comme une espace) ; écrire %2B ({written}), "
                              "ou l'heure UTC suivie de Z",
    "datetime_out_of_range": "horodatage hors du calendrier une fois ramené en UTC (de l'an 1 à l'an 9999)",
    "control_character": "caractères de contrôle refusés (\\u0000 à \\u001f, sauf tabulation et retour à la ligne)",
    "json_invalid": "JSON invalide", "list_type": "doit être une liste", "dict_type": "doit être un objet JSON",
    "model_attributes_type": "doit être un objet JSON", "model_type": "doit être un objet JSON",
    "too_long": "au plus {max_length} élément(s)", "too_short": "au moins {min_length} élément(s)",
    "greater_than_equal": "doit être supérieur ou égal à {ge}", "less_than_equal": "doit être inférieur ou égal à {le}",
    "greater_than": "doit être supérieur à {gt}", "value_error": "{error}",
    # JSON may carry a lone UTF-16 surrogate (``"\ud800"``): valid JSON, not text any store can hold.
    "string_unicode": "texte illisible : caractère Unicode invalide (demi-paire de substitution isolée)",
    "int_from_float": "doit être un entier, sans partie décimale",
    "date_from_datetime_inexact": "date AAAA-MM-JJ attendue, sans heure",
    "bool_or_text_type": "O, N, true ou false attendu",
}


#: Fields named in one 422, at most: a request of 100,000 bad items, or one object of 300,000 unknown
#: members, answered with every error made a response of 25–70 MB. The summary counts them all.
MAX_FIELD_ERRORS = 100


def _french_choices(expected: Any) -> str:
    """pydantic's list of the values admitted, ``'A', 'B' or 'C'``, with its last word in French."""
    head, sep, last = str(expected).rpartition(" or ")
    return f"{head} ou {last}" if sep else str(expected)


def _message(err: Mapping[str, Any]) -> str:
    """One validation error in French: a pattern of our models in words (`schemas.PATTERN_WORDS`), never the
    regular expression when the words are known; a list of admitted values ending in "ou", not "or"."""
    kind = err.get("type", "")
    ctx = dict(err.get("ctx") or {})
    if kind == "string_pattern_mismatch" and (words := PATTERN_WORDS.get(ctx.get("pattern", ""))):
        return words
    if "expected" in ctx:
        ctx["expected"] = _french_choices(ctx["expected"])
    template = _FRENCH.get(kind)
    try:
        return template.format(**ctx) if template else err.get("msg", "invalide")
    except (KeyError, IndexError):
        return err.get("msg", "invalide")


def field_errors(exc: RequestValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors()[:MAX_FIELD_ERRORS]:
        loc = [str(p) for p in err.get("loc", ())]
        name = ".".join(loc[1:]) if len(loc) > 1 else (loc[0] if loc else "body")
        if err.get("type") == "json_invalid":
            name = "body"
        out.append(FieldError(name, _message(err), err.get("type", "invalid")))
    return out


def _summary(errors: list[FieldError], *, total: int | None = None) -> str:
    """The first three errors; the count of the others (``total``: all of them, when ``errors`` is cut)."""
    total = len(errors) if total is None else total
    shown = "; ".join(f"{e.field} : {e.message}" for e in errors[:3])
    more = f" (et {total - 3} autre(s))" if total > 3 else ""
    return f"Requête invalide — {shown}{more}"


# --- handlers --------------------------------------------------------------------------------------

def _allowed_methods(request: Request, path: str | None = None) -> list[str]:
    """The methods the OpenAPI document gives for ``path`` (the request's by default), whatever the routers'
    nesting.

    Of the paths that match, those with the fewest parameters: a literal path wins over a parameter, as
    in the routes (`gateway.api.routes.events.NOT_KEYS`), so ``/events/bulk`` is ``POST`` only, not also
    the ``GET`` of ``/events/{key}``."""
    table = getattr(request.app.state, "allowed_methods", None)
    if table is None:
        table = []
        for template, operations in request.app.openapi().get("paths", {}).items():
            pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")
            table.append((pattern, template.count("{"), sorted(m.upper() for m in operations)))
        request.app.state.allowed_methods = table
    path = request.url.path if path is None else path
    matching = [(parameters, methods) for pattern, parameters, methods in table if pattern.match(path)]
    fewest = min((parameters for parameters, _ in matching), default=0)
    return sorted({m for parameters, methods in matching if parameters == fewest for m in methods})


def _not_found(request: Request) -> str:
    """No route for the path. With a trailing ``/`` the path without it may well exist: said so, rather than
    redirected (Starlette's 307 to ``http://…`` pointed a client behind a TLS proxy to plain HTTP, and
    turned a ``POST`` into a second request)."""
    path = request.url.path
    if len(path) > 1 and path.endswith("/") and _allowed_methods(request, path.rstrip("/")):
        return f"pas de ressource {path} : les adresses de cette API s'écrivent sans « / » final ({path.rstrip('/')})"
    return f"pas de ressource {path}"


def _unreadable_body(cause: BaseException | None) -> FieldError:
    """Why `json.loads` could not read a body FastAPI took for JSON (its 400 "error parsing the body")."""
    if isinstance(cause, RecursionError):  # valid UTF-8, but nested past what `json.loads` reads
        return FieldError("body", "JSON trop profondément imbriqué (des centaines d'objets ou de listes les uns "
                          "dans les autres) : les corps de cette API n'ont que quelques niveaux", "json_too_deep")
    if isinstance(cause, ValueError) and not isinstance(cause, UnicodeDecodeError):
        # Python reads no integer of more than `sys.get_int_max_str_digits()` digits (4,300; CVE-2020-10735):
        # the only `ValueError` left once FastAPI has taken `JSONDecodeError` and the text is UTF-8.
        return FieldError("body", f"nombre trop long (plus de {sys.get_int_max_str_digits()} chiffres) : aucun "
                          "champ de cette API n'en prend autant, les identifiants s'envoient en texte",
                          "json_number_too_long")
    return FieldError("body", "corps illisible : JSON en UTF-8 attendu", "json_invalid")


def _unparsed(exc: RequestValidationError) -> bool:
    """FastAPI's error for a body it could not parse as JSON, raised before any dependency ran."""
    return [e.get("type") for e in exc.errors()] == ["json_invalid"]


def install(app: FastAPI) -> None:
    """Register the handlers that make every error a problem document."""

    async def on_gateway_error(request: Request, exc: GatewayError) -> Response:
        status = status_of(exc)
        title = RejectCode(exc.code).label if isinstance(exc, DocumentRejected) and exc.code in RejectCode.__members__ \
            else None
        headers = {"WWW-Authenticate": 'Bearer realm="passerelle"'} if status == 401 else None
        if status == 415:  # RFC 9110 §15.5.16: what would have been taken
            headers = {"Accept": "application/json"}
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return problem_response(request, status, exc.code, exc.message, title=title,
                                errors=getattr(exc, "errors", ()) if isinstance(exc, RequestRejected) else (),
                                headers=headers)

    async def caller_first(request: Request) -> Response | None:
        """The 401 of a caller without a valid token, where FastAPI failed to parse the body before it
        authenticated anyone (`gateway.api.deps.authenticate_first`); else ``None``."""
        from gateway.api.deps import authenticate_first  # here: deps imports this module

        try:
            await authenticate_first(request)
        except GatewayError as exc:
            return await on_gateway_error(request, exc)
        return None

    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        if _unparsed(exc) and (refused := await caller_first(request)) is not None:
            return refused
        errors = field_errors(exc)
        return problem_response(request, 422, RequestRejected.code, _summary(errors, total=len(exc.errors())),
                                errors=errors)

    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        status = exc.status_code
        if status == 400 and (refused := await caller_first(request)) is not None:
            return refused
        if status == 400:  # FastAPI could not even decode the body (not UTF-8, not JSON): the issue wants a 422
            error = _unreadable_body(exc.__cause__)
            return problem_response(request, 422, RequestRejected.code, _summary([error]), errors=[error])
        headers = dict(exc.headers or {})
        allowed = ""
        if status == 405:  # Starlette names the methods of the first route matching the path only
            headers["Allow"] = ", ".join(_allowed_methods(request))
            allowed = f" (admis ici : {headers['Allow']})" if headers["Allow"] else ""
        if status == 408:  # RFC 9110 §15.5.9: the rest of the body will not be read, the connection ends
            headers["Connection"] = "close"
        code = _HTTP_CODES.get(status, GatewayError.code)
        detail = {404: _not_found(request),
                  405: f"{request.method} non admis sur {request.url.path}{allowed}",
                  413: "corps de requête trop volumineux"}.get(status, str(exc.detail))
        return problem_response(request, status, code, detail, headers=headers or None)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        """Only for a failure of the request middleware itself: a bug below it is answered there, without
        the connection being cut (`gateway.api.middleware`)."""
        log.exception("%s %s failed", request.method, request.url.path)
        return problem_response(request, 500, "INTERNAL", "erreur interne : voir le journal de la passerelle")

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
