"""Sign-in with an API token of role ``support`` or ``admin``, and sign-out (issue 4; brief §6).

The token is the one `gateway clients create` printed; the console never stores it, only the client's id
and a fingerprint of its hash in the signed session cookie (`gateway.console.session`). A partner's token
is refused: partner systems submit and read through the API, they do not handle rejects. The sign-in form
is protected against CSRF like every other form (its token lives in its own short cookie), and a new
CSRF token is drawn for the session, so nothing set before sign-in carries over. Sign-in and sign-out are
written to the audit log.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.api.auth import Role, authenticate, hash_token
from gateway.console import interrupted
from gateway.console import session as sessions
from gateway.console.deps import (
    CheckedUserDep,
    CodecDep,
    GatewayDep,
    LoginRequired,
    csrf_ok,
    session_user,
)
from gateway.console.templating import render
from gateway.console.trail import console_path
from gateway.context import Gateway
from gateway.errors import Unauthenticated
from gateway.store.models import audit_t

router = APIRouter()


def _safe_next(request: Request, target: str | None) -> str:
    """Where to go after sign-in: a console address only (never another site: no open redirect)."""
    return console_path(request, target) or sessions.base_path(request) + "/"


def _form(request: Request, codec, *, error: str | None = None, notice: str | None = None, status: int = 200,
          next_url: str | None = None) -> Response:
    csrf = codec.new_csrf()
    stopped = interrupted.recall(request, codec)
    response = render(request, "connexion.html", {"csrf": csrf, "error": error, "notice": notice,
                                                 "stopped": stopped.notice() if stopped else None,
                                                 "next_url": next_url, "user": None}, status=status)
    sessions.set_signin(response, request, codec, csrf)
    return response


@router.get("/connexion", name="connexion")
def sign_in_page(request: Request, gw: GatewayDep, codec: CodecDep, suite: str | None = None,
                 fin: str | None = None, sortie: str | None = None) -> Response:
    try:
        if session_user(request, gw, codec) is not None:
            return RedirectResponse(_safe_next(request, suite), status_code=303)
    except LoginRequired:
        pass
    notice = None
    if fin:
        notice = "Votre session a pris fin (durée écoulée ou jeton révoqué) : reconnectez-vous."
    elif sortie:
        notice = "Vous êtes déconnecté de la console."
    return _form(request, codec, notice=notice, next_url=suite)


def _audit(gw: Gateway, action: str, *, actor: str, client_id: int) -> None:
    with gw.engine.begin() as conn:
        conn.execute(audit_t.insert().values(at=gw.clock(), actor=actor, client_id=client_id, action=action,
                                             target=str(client_id), count=1))


@router.post("/connexion")
async def sign_in(request: Request, gw: GatewayDep, codec: CodecDep, jeton: Annotated[str, Form()] = "",
                  csrf: Annotated[str, Form()] = "", suite: Annotated[str, Form()] = "") -> Response:
    expected = codec.signin_csrf(request.cookies.get(sessions.SIGNIN_COOKIE))
    if not csrf_ok(request, csrf, expected):
        return _form(request, codec, status=403, next_url=suite,
                     error="Le formulaire de connexion a expiré ou ne vient pas de la console : recommencez.")
    token = jeton.strip()

    def lookup():
        with gw.engine.connect() as conn:
            return authenticate(conn, token)

    try:
        principal = await run_in_threadpool(lookup)
    except Unauthenticated:
        return _form(request, codec, status=401, next_url=suite,
                     error="Jeton inconnu ou révoqué. Vérifiez-le, ou demandez-en un à l'administrateur "
                           "de la passerelle.")
    if principal.role not in (Role.SUPPORT, Role.ADMIN):
        return _form(request, codec, status=403, next_url=suite,
                     error="Ce jeton est celui d'un système partenaire : la console est réservée aux jetons "
                           "des rôles support et admin.")
    data = sessions.SessionData(principal.client_id, codec.fingerprint(hash_token(token)), codec.new_csrf())
    await run_in_threadpool(_audit, gw, "CONSOLE_SIGN_IN", actor=f"console:{principal.name}",
                            client_id=principal.client_id)
    response = RedirectResponse(_safe_next(request, suite), status_code=303)
    sessions.set_session(response, request, codec, data)
    sessions.clear_signin(response, request)
    stopped = interrupted.recall(request, codec)
    if stopped and stopped.client_id != principal.client_id:  # another person's action: nothing of it to them
        interrupted.forget(response, request)
    return response


@router.post("/deconnexion", name="deconnexion")
def sign_out(request: Request, user: CheckedUserDep, gw: GatewayDep) -> Response:
    _audit(gw, "CONSOLE_SIGN_OUT", actor=user.actor, client_id=user.principal.client_id)
    response = RedirectResponse(sessions.base_path(request) + "/connexion?sortie=1", status_code=303)
    sessions.clear_session(response, request)
    interrupted.forget(response, request)
    return response
