"""API clients: bearer tokens stored only as hashes, each bound to a role and a scope (brief §6).

A token is 32 bytes from `secrets` (256 bits), shown once when it is created and never stored: the
store keeps its SHA-256. A plain, fast hash is enough here, unlike for passwords: slow, salted
hashes (bcrypt, argon2) exist to make guessing *low-entropy* secrets expensive, and nobody can
guess a 256-bit random value whatever the hash speed. A fast, unsalted hash also lets the token be
found by an indexed equality lookup on every request, so nothing compares secrets in Python (no
timing side channel) and a stolen copy of the table gives no usable token.

The store is read on **every request**, so a revoked token is refused at once, by every instance
sharing the database (no cache to invalidate); the lookup is one indexed query.

Roles: ``admin`` sees and does everything; ``support`` reads and acts (resend, close) within its
missions locales; ``partner`` submits and reads within its missions locales. ``support`` and
``partner`` are always bound to at least one mission locale code.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from gateway.errors import ConfigurationError, Conflict, NotFound, Unauthenticated
from gateway.store.models import api_clients_t, audit_t

TOKEN_PREFIX = "p3g_"
_CODE_ML = re.compile(r"[0-9]{5}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,99}")


class Role(str, Enum):
    ADMIN = "admin"
    SUPPORT = "support"
    PARTNER = "partner"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the client's id, name and role, and the missions locales it may see.

    ``scope`` is ``None`` for ``admin`` (everything, including events whose mission locale could not
    be read), else the set of codes; it goes straight into `EventFilter.code_ml_in`.
    """

    client_id: int
    name: str
    role: Role
    scope: frozenset[str] | None

    @property
    def actor(self) -> str:
        """How history rows and the audit log name this client."""
        return f"api:{self.name}"

    def sees(self, code_ml: str | None) -> bool:
        return self.scope is None or (code_ml is not None and code_ml in self.scope)


@dataclass(frozen=True, slots=True)
class ClientInfo:
    id: int
    name: str
    role: str
    ml_codes: list[str]
    created_at: datetime
    revoked_at: datetime | None

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "role": self.role, "ml_codes": self.ml_codes,
                "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _check(name: str, role: Role, ml_codes: Iterable[str]) -> list[str]:
    if _NAME.fullmatch(name) is None:
        raise ConfigurationError("nom du client : 1 à 100 lettres, chiffres, espaces, « . », « _ », « @ » ou « - »")
    codes = sorted(set(ml_codes))
    bad = [c for c in codes if _CODE_ML.fullmatch(c) is None]
    if bad:
        raise ConfigurationError(f"un code de mission locale a 5 chiffres : {', '.join(bad)}")
    if role is Role.ADMIN and codes:
        raise ConfigurationError("un client admin voit toutes les missions locales : ne pas donner de --ml")
    if role is not Role.ADMIN and not codes:
        raise ConfigurationError(f"un client {role.value} doit être lié à au moins une mission locale (--ml)")
    return codes


def create_client(engine: Engine, *, name: str, role: Role | str, ml_codes: Iterable[str] = (),
                  now: datetime, actor: str = "cli") -> tuple[ClientInfo, str]:
    """Create a client; returns it and its token, which exists nowhere else from then on."""
    role = Role(role)
    codes = _check(name, role, ml_codes)
    token = new_token()
    try:
        with engine.begin() as conn:
            client_id = conn.execute(api_clients_t.insert().values(
                name=name, role=role.value, ml_codes=json.dumps(codes), token_hash=hash_token(token),
                created_at=now, revoked_at=None).returning(api_clients_t.c.id)).scalar_one()
            conn.execute(audit_t.insert().values(at=now, actor=actor, action="CLIENT_CREATE",
                                                 target=str(client_id), count=1,
                                                 detail=json.dumps({"name": name, "role": role.value,
                                                                    "ml_codes": codes})))
    except IntegrityError as exc:
        raise Conflict(f"un client nommé « {name} » existe déjà") from exc
    return ClientInfo(client_id, name, role.value, codes, now, None), token


def list_clients(conn: Connection) -> list[ClientInfo]:
    rows = conn.execute(sa.select(api_clients_t).order_by(api_clients_t.c.id)).all()
    return [ClientInfo(r.id, r.name, r.role, json.loads(r.ml_codes), r.created_at, r.revoked_at) for r in rows]


def revoke_client(engine: Engine, client_id: int, *, now: datetime, actor: str = "cli") -> bool:
    """Revoke a client's token; ``False`` if it was already revoked. Takes effect on the next request."""
    with engine.begin() as conn:
        exists = conn.execute(sa.select(api_clients_t.c.id).where(api_clients_t.c.id == client_id)).first()
        if exists is None:
            raise NotFound(f"pas de client n° {client_id}")
        moved = conn.execute(api_clients_t.update().where(api_clients_t.c.id == client_id,
                                                          api_clients_t.c.revoked_at.is_(None))
                             .values(revoked_at=now)).rowcount
        conn.execute(audit_t.insert().values(at=now, actor=actor, action="CLIENT_REVOKE", target=str(client_id),
                                             count=moved))
    return bool(moved)


def authenticate(conn: Connection, token: str | None) -> Principal:
    """The principal of a bearer token, or `Unauthenticated` (missing, unknown or revoked: one answer)."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise Unauthenticated("jeton d'accès absent ou invalide")
    row = conn.execute(sa.select(api_clients_t.c.id, api_clients_t.c.name, api_clients_t.c.role,
                                 api_clients_t.c.ml_codes)
                       .where(api_clients_t.c.token_hash == hash_token(token),
                              api_clients_t.c.revoked_at.is_(None))).first()
    if row is None:
        raise Unauthenticated("jeton d'accès absent ou invalide")
    role = Role(row.role)
    scope = None if role is Role.ADMIN else frozenset(json.loads(row.ml_codes))
    return Principal(row.id, row.name, role, scope)
