"""Who is using the console, and the CSRF check of every action (issue 4; brief §6).

Every page and every action goes through `current_user`: the session cookie is read, then the API
client it names is read from the store, **on every request** (`gateway.console.session` explains why),
so a revoked token ends the session at the next click. The user's scope is the client's, exactly as in
the API (`gateway.api.auth.Principal`): a support user of one mission locale sees that one only, in every
list, count, chart, export, page and action.

Every state-changing request (a POST) depends on `CheckedForm`: the form's hidden ``csrf`` field must
equal the session's token (compared in constant time), and a browser's ``Sec-Fetch-Site: cross-site``
is refused outright. Nothing is read or changed before the check passes.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Form, Request

from gateway.api.auth import Principal, Role
from gateway.console.session import COOKIE, SessionCodec
from gateway.context import Gateway
from gateway.store.models import api_clients_t

CONSOLE_ROLES = frozenset({Role.ADMIN, Role.SUPPORT})


class LoginRequired(Exception):
    """No valid session: the console answers with its sign-in page. ``ended``: there was one, now refused."""

    def __init__(self, *, ended: bool):
        super().__init__("connexion requise")
        self.ended = ended


class CsrfRefused(Exception):
    """A state-changing request without the session's CSRF token: refused, nothing done."""


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    principal: Principal
    csrf: str

    @property
    def actor(self) -> str:
        """How history rows and the audit log name a console user (the API's are ``api:…``)."""
        return f"console:{self.principal.name}"

    @property
    def scope(self) -> frozenset[str] | None:
        return self.principal.scope

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def is_admin(self) -> bool:
        return self.principal.role is Role.ADMIN

    @property
    def scope_label(self) -> str:
        if self.scope is None:
            return "toutes les missions locales"
        codes = sorted(self.scope)
        return ("mission locale " if len(codes) == 1 else "missions locales ") + ", ".join(codes)


def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def get_codec(request: Request) -> SessionCodec:
    return request.app.state.sessions


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
CodecDep = Annotated[SessionCodec, Depends(get_codec)]


def session_user(request: Request, gw: Gateway, codec: SessionCodec) -> ConsoleUser | None:
    """The signed-in user, or ``None``; raises `LoginRequired(ended=True)` for a session now refused."""
    raw = request.cookies.get(COOKIE)
    data = codec.loads(raw)
    if data is None:
        if raw:
            raise LoginRequired(ended=True)
        return None
    c = api_clients_t.c
    with gw.engine.connect() as conn:
        row = conn.execute(sa.select(c.id, c.name, c.role, c.ml_codes, c.token_hash)
                           .where(c.id == data.client_id, c.revoked_at.is_(None))).first()
    if row is None or not hmac.compare_digest(codec.fingerprint(row.token_hash), data.fingerprint):
        raise LoginRequired(ended=True)
    role = Role(row.role)
    if role not in CONSOLE_ROLES:
        raise LoginRequired(ended=True)
    scope = None if role is Role.ADMIN else frozenset(json.loads(row.ml_codes))
    return ConsoleUser(Principal(row.id, row.name, role, scope), data.csrf)


def current_user(request: Request, gw: GatewayDep, codec: CodecDep) -> ConsoleUser:
    user = session_user(request, gw, codec)
    if user is None:
        raise LoginRequired(ended=False)
    return user


UserDep = Annotated[ConsoleUser, Depends(current_user)]


def csrf_ok(request: Request, sent: str | None, expected: str | None) -> bool:
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    if not sent or not expected:
        return False
    return hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8"))


def checked_user(request: Request, user: UserDep, csrf: Annotated[str | None, Form()] = None) -> ConsoleUser:
    """The user of a state-changing request whose CSRF token is the session's."""
    if not csrf_ok(request, csrf, user.csrf):
        raise CsrfRefused()
    return user


CheckedUserDep = Annotated[ConsoleUser, Depends(checked_user)]
