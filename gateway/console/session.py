"""Console sessions kept in a signed cookie, and the signing key they need (issue 4).

Why a signed cookie and no session table: the console's state per person is three values (which API
client signed in, a fingerprint of its token, a CSRF token), and the store is already read on every
request to check the client (below). A signed cookie adds no table, no migration and no clean-up job,
and works the same with several instances sharing one database as long as they share the key
(`Settings.console_secret_key`).

* **Signed, expiring**: itsdangerous's ``URLSafeTimedSerializer`` (HMAC-SHA256 over a key derived from
  the secret and a per-purpose salt, with the issue time inside the signed value); a cookie older than
  ``console_session_hours`` is refused whatever its ``Max-Age`` said. The clock is the gateway's, so the
  expiry is tested without waiting.
* **Re-checked on every request** (brief §6: a revoked token is refused at once): the cookie names the
  client by id and carries an HMAC of its token's stored hash; the client row must still exist, be
  unrevoked, hold the same token and have a console role. Revoking the token ends every session it
  opened, on every instance, at their next request.
* **Cookie attributes**: ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (never sent on a
  request started by another site: with the CSRF token, a second barrier against cross-site forms;
  the cost is that a link to the console followed from a mail shows the sign-in page, acceptable for a
  back-office), ``Secure`` whenever the request came over https, ``Path`` the console's own, so the
  API never receives it.
* **Sign-in has its own short cookie** holding the sign-in form's CSRF token, scoped to the sign-in
  path: serving the sign-in page never overwrites an open session (with ``SameSite=Strict`` a session
  cookie is not sent on a cross-site link, and the page would otherwise replace it).

What a signed cookie cannot do: sign-out deletes the cookie in the browser but cannot make a copy of
it invalid before it expires. Revoking the token (``gateway clients revoke``) does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import ConfigurationError
from gateway.settings import Settings

COOKIE = "p3g_console"
SIGNIN_COOKIE = "p3g_console_connexion"
#: How long the sign-in form stays valid once shown.
SIGNIN_MAX_AGE = 3600
_MIN_SECRET = 32


def load_secret(settings: Settings) -> bytes:
    """The console's signing key: the setting, else the data folder's key file, generated on first start.

    Never a constant in the code (a published key would let anyone forge a session). The file is
    created with mode 0600 and exclusively, so two instances starting at once on one data folder end
    up with the same key.
    """
    if settings.console_secret_key is not None:
        return settings.console_secret_key.get_secret_value().encode("utf-8")
    path = settings.console_secret_file
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(32) + "\n")
    value = path.read_bytes().strip()
    if len(value) < _MIN_SECRET:
        raise ConfigurationError(f"{path}: la clé de session de la console fait moins de {_MIN_SECRET} caractères")
    return value


@dataclass(frozen=True, slots=True)
class SessionData:
    """What the session cookie says: who (client id), with which token (fingerprint), and its CSRF token."""

    client_id: int
    fingerprint: str
    csrf: str


class _ClockSigner(TimestampSigner):
    """itsdangerous's timestamp signer on the gateway's clock instead of ``time.time``."""

    def __init__(self, *args, clock: Callable[[], datetime], **kwargs):
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock().timestamp())


class SessionCodec:
    """Signs and reads the console's two cookies. ``SessionCodec(secret, max_age_seconds=8 * 3600)``."""

    def __init__(self, secret: bytes, *, max_age_seconds: int, clock: Callable[[], datetime]):
        kwargs = {"signer": _ClockSigner, "signer_kwargs": {"clock": clock, "digest_method": hashlib.sha256}}
        self._session = URLSafeTimedSerializer(secret, salt="p3g-console-session", **kwargs)
        self._signin = URLSafeTimedSerializer(secret, salt="p3g-console-connexion", **kwargs)
        # The stopped action's cookie holds what a person typed about a young person (their comment): encrypted,
        # not only signed (an itsdangerous value is base64 anyone at that browser reads in its cookie store).
        self._stopped = Fernet(base64.urlsafe_b64encode(
            hmac.new(secret, b"p3g-console-action-interrompue", hashlib.sha256).digest()))
        self._clock = clock
        self._secret = secret
        self.max_age = max_age_seconds

    def fingerprint(self, token_hash: str) -> str:
        """Binds a session to the token it was opened with, without putting the token's hash in the cookie."""
        return hmac.new(self._secret, b"client-token:" + token_hash.encode("ascii"), hashlib.sha256).hexdigest()[:32]

    @staticmethod
    def new_csrf() -> str:
        return secrets.token_urlsafe(32)

    # --- the session ---------------------------------------------------------------------------

    def dumps(self, data: SessionData) -> str:
        return self._session.dumps({"c": data.client_id, "f": data.fingerprint, "x": data.csrf})

    def loads(self, value: str | None) -> SessionData | None:
        """The session in ``value``, or ``None`` if absent, forged, tampered with or expired."""
        return self._read(value, self.max_age)

    def ended(self, value: str | None) -> SessionData | None:
        """The session in ``value`` even if its time is up (the cookie outlives it by `COOKIE_GRACE_SECONDS`),
        or ``None`` if absent, forged or tampered with. Never a sign-in: only to tell whose session ended."""
        return self._read(value, self.max_age + COOKIE_GRACE_SECONDS)

    def _read(self, value: str | None, max_age: int) -> SessionData | None:
        raw = _checked(self._session, value, max_age=max_age, max_len=4096, kind=dict)
        if raw is None:
            return None
        client_id, fingerprint, csrf = raw.get("c"), raw.get("f"), raw.get("x")
        if not (isinstance(client_id, int) and isinstance(fingerprint, str) and isinstance(csrf, str)):
            return None
        return SessionData(client_id, fingerprint, csrf)

    # --- an action stopped by the end of its session (`gateway.console.interrupted`) ------------

    def stopped_dumps(self, data: dict) -> str:
        """``data`` encrypted and authenticated (Fernet: AES-CBC and HMAC-SHA256, a key of its own derived from
        the console's secret), timed on the gateway's clock: nothing of it can be read or changed outside."""
        plain = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return self._stopped.encrypt_at_time(plain, int(self._clock().timestamp())).decode("ascii")

    def stopped_loads(self, value: str | None, *, max_age: int) -> dict | None:
        """What `stopped_dumps` wrote in ``value``; ``None`` if absent, too long, forged, altered or older
        than ``max_age`` seconds."""
        if not value or len(value) > 4096 or not value.isascii():
            return None
        try:
            data = json.loads(self._stopped.decrypt_at_time(value.encode("ascii"), max_age,
                                                            int(self._clock().timestamp())))
        except (InvalidToken, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # --- the sign-in form ----------------------------------------------------------------------

    def signin_dumps(self, csrf: str) -> str:
        return self._signin.dumps(csrf)

    def signin_csrf(self, value: str | None) -> str | None:
        return _checked(self._signin, value, max_age=SIGNIN_MAX_AGE, max_len=1024, kind=str)


def _checked(serializer: URLSafeTimedSerializer, value: str | None, *, max_age: int, max_len: int, kind: type):
    """What ``serializer`` signed in ``value`` if it is of ``kind``; ``None`` if absent, too long, forged or old."""
    if not value or len(value) > max_len:
        return None
    try:
        data = serializer.loads(value, max_age=max_age)
    except BadSignature:  # SignatureExpired is a BadSignature
        return None
    return data if isinstance(data, kind) else None


def base_path(request: Request) -> str:
    """Where the console is mounted (``/console``, behind any prefix the server was given)."""
    return request.scope.get("root_path", "").rstrip("/")


def _cookie(response: Response, request: Request, name: str, value: str, *, max_age: int, path: str) -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


#: How long the browser keeps the session cookie after the session itself has ended (its signed time is what
#: ends it): with the same lifetime, the browser dropped the cookie at the very moment the session ended, and
#: the console could not tell "your session ended" from "never signed in".
COOKIE_GRACE_SECONDS = 7 * 24 * 3600


def set_session(response: Response, request: Request, codec: SessionCodec, data: SessionData) -> None:
    _cookie(response, request, COOKIE, codec.dumps(data), max_age=codec.max_age + COOKIE_GRACE_SECONDS,
            path=base_path(request) or "/")


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path=base_path(request) or "/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")


def signin_path(request: Request) -> str:
    return base_path(request) + "/connexion"


def set_signin(response: Response, request: Request, codec: SessionCodec, csrf: str) -> None:
    _cookie(response, request, SIGNIN_COOKIE, codec.signin_dumps(csrf), max_age=SIGNIN_MAX_AGE,
            path=signin_path(request))


def clear_signin(response: Response, request: Request) -> None:
    response.delete_cookie(SIGNIN_COOKIE, path=signin_path(request), httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
