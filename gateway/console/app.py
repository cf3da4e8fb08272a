"""``create_console(gw)``: the support console assembled, as an application mounted at ``/console`` by the
API (issue 4). Its own application, so that its errors are French HTML pages rather than the API's
problem documents, and so that it stays out of the API's OpenAPI contract.

Every response carries headers that keep the pages to themselves: a Content-Security-Policy allowing
only the console's own scripts, styles and images (no inline script or style anywhere in the
templates), no framing, no referrer outside the site, no MIME sniffing, and ``Cache-Control: no-store``
on pages (they show personal data: a shared computer's cache must not keep them).
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.console import interrupted
from gateway.console.deps import CsrfRefused, LoginRequired, session_user
from gateway.console.routes import dashboard, envelopes, events, rejects, sending, signin
from gateway.console.session import COOKIE, SessionCodec, base_path, clear_session, load_secret
from gateway.console.templating import STATIC_DIR, make_templates, render
from gateway.context import Gateway
from gateway.errors import GatewayError, NotFound

log = logging.getLogger("gateway.console")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


class SecurityHeaders:
    """Adds the console's security headers to every response (a plain ASGI middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = "/static/" in scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control" or static]
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin")]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_console(gw: Gateway) -> FastAPI:
    """The console over ``gw``; its session key is read (or generated) now, so a bad one fails at start-up."""
    app = FastAPI(title="Console support", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gw
    app.state.sessions = SessionCodec(load_secret(gw.settings), clock=lambda: gw.clock(),
                                      max_age_seconds=int(gw.settings.console_session_hours * 3600))
    app.state.templates = make_templates(ZoneInfo(gw.settings.timezone))
    for module in (signin, dashboard, rejects, events, envelopes, sending):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _install_handlers(app)
    app.add_middleware(SecurityHeaders)
    return app


def _page(request: Request, status: int, title: str, text: str) -> Response:
    """An error page, with the navigation when the request has a valid session."""
    try:
        user = session_user(request, request.app.state.gateway, request.app.state.sessions)
    except LoginRequired:
        user = None
    return render(request, "erreur.html", {"user": user, "title": title, "text": text, "errors": ()}, status=status)


def _install_handlers(app: FastAPI) -> None:
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        stopped = None
        if request.method != "GET":  # an action (resend, close): back to the page it was pressed on
            referer = urlsplit(request.headers.get("referer", ""))
            same_site = referer.netloc == request.url.netloc
            target = referer.path + (f"?{referer.query}" if referer.query else "") if same_site else ""
            # Not done: said on the sign-in page and, once signed in again, on the action's page (with its comment).
            stopped = interrupted.stopped_by_end(request, await request.form(),
                                                 request.app.state.sessions.ended(request.cookies.get(COOKIE)))
            if stopped and stopped.key and not target:
                target = events.event_url(request, stopped.key)
        params = {"suite": target} if target else {}
        if exc.ended:
            params["fin"] = "1"
        response = RedirectResponse(f"{base_path(request)}/connexion?{urlencode(params)}", status_code=303)
        if exc.ended:
            clear_session(response, request)
        if stopped:
            interrupted.remember(response, request, request.app.state.sessions, stopped)
        return response

    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        log.warning("console: %s %s refused, CSRF token missing or wrong", request.method, request.url.path)
        return _page(request, 403, "Action refusée",
                     "Le formulaire a expiré ou ne vient pas de la console : rien n'a été fait. "
                     "Rechargez la page, puis recommencez.")

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(f"{base_path(request)}/lots/"):  # the same words, missing or out of scope
            return _page(request, 404, "Introuvable", "Ce lot est introuvable. Vérifiez son IdLot (36 caractères), "
                                                      "ou ouvrez-le depuis la page d'un de ses événements.")
        return _page(request, 404, "Introuvable",
                     "Cette page ou cet événement est introuvable. Vérifiez la clé de l'événement "
                     "(code de la mission locale, tiret, n° de l'événement), ou cherchez-le dans la liste des rejets.")

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return await not_found(request, exc)
        if exc.status_code == 408:  # a form that stopped arriving (`gateway.api.middleware.BodyStalled`)
            response = _page(request, 408, "Formulaire incomplet", "Le formulaire n'est pas arrivé en entier : rien "
                                                                   "n'a été fait. Rechargez la page, puis recommencez.")
            # RFC 9110 §15.5.9, as the API's 408: the rest of the body will not be read, the connection ends
            # (left open, the client could go on holding it, the very thing the stall limit is there to stop).
            response.headers["connection"] = "close"
            return response
        return _page(request, exc.status_code, "Requête impossible", "Cette adresse ne s'utilise pas ainsi.")

    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return _page(request, 400, "Requête invalide", "Un champ du formulaire est trop long ou manquant : "
                                                       "rien n'a été fait.")

    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        log.warning("console: %s %s: %s", request.method, request.url.path, exc)
        return _page(request, 409, "Action impossible pour l'instant",
                     f"{exc.message}. Rechargez la page, puis recommencez.")

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("console: %s %s failed", request.method, request.url.path)
        return _page(request, 500, "Erreur de la console", "Une erreur imprévue est survenue ; elle est "
                                                           "consignée dans le journal de la passerelle.")

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(CsrfRefused, csrf_refused)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(Exception, unexpected)
