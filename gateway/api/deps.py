"""The API's dependencies, as type aliases (STYLE, full-stack-fastapi-template: ``SessionDep =
Annotated[Session, Depends(get_db)]``): the `Gateway`, a database connection, the authenticated
`Principal`, the role checks, and the check that a body sent as JSON is labelled JSON.

Authentication reads the store on every request (`gateway.api.auth`), so a revoked token is refused
by the very next request; a caller without a valid token is told so before anything of its body
(`authenticate_first`). Role checks answer 403 (the role says nothing about any event); what a
role may *see* is its scope, applied by each query, and an event outside it is a 404.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from gateway.api.auth import Principal, Role, authenticate
from gateway.api.problems import UnsupportedMediaType
from gateway.context import Gateway
from gateway.errors import PermissionDenied

_bearer = HTTPBearer(auto_error=False, scheme_name="jeton",
                     description="Jeton d'accès créé par `gateway clients create` (en-tête "
                                 "`Authorization: Bearer p3g_…`).")


async def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def get_conn(gw: GatewayDep) -> Iterator[Connection]:
    with gw.engine.connect() as conn:
        yield conn


ConnDep = Annotated[Connection, Depends(get_conn)]


def get_principal(gw: GatewayDep,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    # Its own short connection, in one worker-thread hop: the lookup is on the path of every request.
    with gw.engine.connect() as conn:
        return authenticate(conn, credentials.credentials if credentials else None)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _authenticates(dependant: Dependant) -> bool:
    return any(d.call is get_principal or _authenticates(d) for d in dependant.dependencies)


async def authenticate_first(request: Request) -> None:
    """FastAPI reads and parses a JSON body before it runs any dependency, so a body it could not parse
    was answered (422 "JSON invalide", or a body too deep or not UTF-8) before the token was looked at: a
    client without a valid token learnt how its body parsed, not that it was not let in. The problem
    handlers call this before they answer such an error (`gateway.api.problems`): on an operation that
    authenticates its caller, it raises `Unauthenticated` as `get_principal` would have; for a caller it
    lets in, nothing (its answer stays what it was), and nothing either where no token is asked (DUDE's
    callback)."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if isinstance(dependant, Dependant) and _authenticates(dependant):
        await run_in_threadpool(get_principal, await get_gateway(request), await _bearer(request))


def require(*roles: Role) -> Callable[[Principal], Principal]:
    allowed = frozenset(roles)
    names = ", ".join(r.value for r in roles)

    async def check(principal: PrincipalDep) -> Principal:
        if principal.role not in allowed:
            raise PermissionDenied(f"rôle {principal.role.value} : cette opération est réservée à {names}")
        return principal

    return check


AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]
SupportDep = Annotated[Principal, Depends(require(Role.ADMIN, Role.SUPPORT))]
SubmitterDep = Annotated[Principal, Depends(require(Role.ADMIN, Role.PARTNER))]


async def get_request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id") or "-"


RequestIdDep = Annotated[str, Depends(get_request_id)]


def _media_type(content_type: str | None) -> tuple[str, str]:
    """A ``Content-Type``'s type and subtype, lowercase, its parameters dropped (``("", "")`` when absent)."""
    if not content_type:
        return "", ""
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_maintype(), message.get_content_subtype()


def is_json_media_type(content_type: str | None) -> bool:
    """What FastAPI decodes as JSON (`fastapi.routing.get_request_handler`, strict content type):
    ``application/json`` or ``application/…+json``, any case, with any parameters (``charset=utf-8``)."""
    maintype, subtype = _media_type(content_type)
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


async def require_json(request: Request) -> None:
    """A body FastAPI would not decode (``text/plain``, XML, a form, no ``Content-Type``) reached the
    model as bytes and was refused as "doit être un objet JSON", though the JSON in it was right: the
    fault is the label, so say so (415). An empty body is left to the model (a body it requires is a
    422 "champ obligatoire"; one it does not, such as a resume's, is fine). FastAPI has read the body
    already: this reads its copy."""
    if not await request.body():
        return
    content_type = request.headers.get("content-type")
    if not is_json_media_type(content_type):
        sent = f"envoyé en « {content_type[:100]} »" if content_type else "envoyé sans en-tête Content-Type"
        raise UnsupportedMediaType(f"corps {sent} : cette opération lit du JSON, à envoyer avec l'en-tête "
                                   "`Content-Type: application/json`")


def is_xml_media_type(content_type: str | None) -> bool:
    """``application/xml``, ``text/xml`` or ``…/…+xml``, any case, with any parameters."""
    maintype, subtype = _media_type(content_type)
    return (maintype in ("application", "text") and subtype == "xml") or subtype.endswith("+xml")


async def require_xml(request: Request) -> None:
    """DUDE's callback takes a signed XML document, and no token: whatever the body, the signature decides.
    Any label was taken, so a page in a browser could make it post there across sites (a ``text/plain`` form
    needs no preflight): refused first, 415, naming the ``Content-Type`` to send."""
    content_type = request.headers.get("content-type")
    if not is_xml_media_type(content_type):
        sent = f"envoyé en « {content_type[:100]} »" if content_type else "envoyé sans en-tête Content-Type"
        raise UnsupportedMediaType(f"corps {sent} : un compte rendu du DUDE est du XML, à envoyer avec l'en-tête "
                                   "`Content-Type: application/xml`")


#: On an operation that takes a JSON body, after the principal's dependency: who the caller is (401, 403)
#: is said before what it sent is.
JsonBodyDep = Annotated[None, Depends(require_json)]
