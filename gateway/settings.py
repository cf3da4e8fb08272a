"""The gateway's settings: one class, loaded once, passed down.

Every setting comes from an environment variable with the ``GATEWAY_`` prefix (or a ``.env`` file in
the working directory, for development): ``GATEWAY_DATABASE_URL``, ``GATEWAY_DUDE_URL``… No other
module reads the environment. The defaults are the embedded ones of the brief (§8): SQLite and keys
in a local data folder, DUDE played by the emulator on a loopback port.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


#: Variables with the settings' prefix that are not settings: the service's own, and the test suite's.
NOT_SETTINGS = frozenset({"GATEWAY_SERVE_VERBOSE"})
_NOT_SETTINGS_PREFIX = "GATEWAY_TEST_"


class Settings(BaseSettings):
    """Settings of one gateway instance. Frozen: build a new one with ``model_copy(update=…)``."""

    # env_ignore_empty: ``GATEWAY_TRUST_DIR=`` (an empty line in the environment file, or in ``.env``: the
    # option covers both) means "not set", the default. It used to mean the working directory: every *.pem
    # there trusted as DUDE's, the working directory as the drop folder, "[Errno 21] Is a directory: '.'"
    # for the key; and an empty GATEWAY_SEND_COMMENTS or GATEWAY_API_PORT a validation error.
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", env_file=".env", env_file_encoding="utf-8", frozen=True,
        extra="ignore", env_ignore_empty=True,
    )

    # Where things are kept
    data_dir: Path = Field(Path("gateway-data"), description="Data folder: database, keys, emulator state.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite in the data folder. "
        "For PostgreSQL: postgresql+psycopg://user:password@host/dbname")

    # The other side
    dude_url: str = Field("http://127.0.0.1:8790/dude/v1", description="Base URL of DUDE's exchange endpoint: "
                          "absolute, http or https, with a host.")
    sender_code: str = Field("PARCOURS3", pattern=r"^[A-Z0-9_-]{1,20}$", description="`Emetteur` of every envelope.")
    recipient_code: str = Field("DUDE", pattern=r"^[A-Z0-9_-]{1,20}$", description="`Destinataire` of every envelope.")
    # 2,000 rather than 5,000: DUDE can start on the first envelope sooner, keeps pace during the night
    # instead of checking a backlog of big envelopes at its end, and the last report comes sooner.
    # Measured on a 20,000 night (bench/HISTORY.md, 2026-11-30): the night over its CPU bound 1.27 -> 1.21,
    # a tenth less wall time; the signatures, receipts and reports of 6 more envelopes cost less than that.
    envelope_max_events: int = Field(2000, ge=1, le=100_000, description="Events per envelope, at most.")

    # Keys (brief §6)
    key_file: Path | None = Field(None, description="Gateway private key (PEM). "
                                  "Default: <data_dir>/keys/gateway.key.pem")
    cert_file: Path | None = Field(None, description="Gateway certificate (PEM). "
                                   "Default: <data_dir>/keys/gateway.cert.pem")
    key_password: SecretStr | None = Field(None, description="Password of the private key, if it has one.")
    key_password_file: Path | None = Field(None, description="File holding the private key's password.")
    trust_dir: Path | None = Field(None, description="Certificates trusted for DUDE's receipts and reports. "
                                   "Default: <data_dir>/keys/trust")

    # Parcours 3 input (brief §3)
    input_encoding: str = Field("auto", description="auto (UTF-8 if detected, else Windows-1252), cp1252 or utf-8.")
    identifiant_pe_pattern: str = Field(r"[0-9]{7}[A-Z]", description="Pattern of the agency's jobseeker id.")
    send_comments: bool = Field(False, description="Data minimisation: free-text comments are dropped unless true.")
    timezone: str = Field("Europe/Paris", description="Time zone of Parcours 3 timestamps and of the nightly run "
                          "(IANA name, as the zoneinfo database spells it).")
    read_in_subprocess: bool = Field(True, description="Read and pre-flight the exports in a child process, on "
                                     "another core than storing and sealing (gateway.pipeline.reading); false "
                                     "reads them in the run's own process.")
    seal_in_subprocess: bool = Field(True, description="Build, check and sign a run's envelopes in a child "
                                     "process, while the run stores the next lines (gateway.pipeline.sealing); "
                                     "false seals them in the run's own thread.")

    # Sending and reconciliation
    http_timeout_seconds: float = Field(60.0, gt=0)
    send_attempts: int = Field(4, ge=1, le=20, description="Attempts per envelope within one run.")
    retry_backoff_seconds: float = Field(0.5, ge=0, description="First back-off; doubled each attempt, with jitter.")
    retry_backoff_max_seconds: float = Field(30.0, ge=0, description="Longest back-off between two attempts.")
    dude_outage_seconds: float = Field(120.0, ge=0, description="When one envelope's every attempt found DUDE "
                                       "unavailable (no answer, 502/503/504), the run posts no other envelope "
                                       "for this long, then one probes (gateway.pipeline.outage); 0: each "
                                       "envelope makes all its attempts.")
    poison_after_failed_runs: int = Field(3, ge=1, le=100, description="Sending rounds answered HTTP 500 at every "
                                          "attempt before an envelope is quarantined and its events re-sealed "
                                          "by halves until the poison event is alone (gateway.pipeline.quarantine).")
    report_wait_seconds: float = Field(60.0, ge=0, description="How long a run waits for reports before leaving "
                                       "them to the next polls.")
    report_poll_interval_seconds: float = Field(0.5, gt=0)
    report_timeout_seconds: float = Field(6 * 3600.0, gt=0, description="Without a report after this, the "
                                          "envelope is polled again, then its events become SANS_REPONSE.")
    report_max_polls: int = Field(3, ge=1, description="Polls after the timeout before SANS_REPONSE.")
    max_document_bytes: int = Field(64 * 1024 * 1024, gt=0, description="Largest XML document accepted.")

    # Partner HTTP API (issue 3)
    api_host: str = Field("127.0.0.1", description="Address `gateway serve` listens on.")
    api_port: int = Field(8780, ge=1, le=65535, description="Port `gateway serve` listens on.")
    api_max_events_per_request: int = Field(5000, ge=1, le=100_000,
                                            description="Events in one bulk submission, at most.")
    api_max_body_bytes: int = Field(16 * 1024 * 1024, gt=0, description="Largest JSON request body; "
                                    "DUDE's callback takes up to max_document_bytes.")
    api_body_stall_seconds: float = Field(30.0, gt=0, description="How long a request body may go silent "
                                          "before the request fails with 408; past it, a body slower than 1 KiB/s "
                                          "on average fails too (gateway.api.middleware).")
    api_page_max: int = Field(1000, ge=1, le=10_000, description="Most items in one page of a list.")
    api_workers: int = Field(1, ge=1, le=64, description="Processes serving the API and the console "
                             "(`gateway serve --workers`): more take in more requests at once, from several "
                             "clients. The schedule runs once, in the supervising process.")
    api_root_path: str = Field("", description="Path prefix under which a reverse proxy serves the API and the "
                               "console, and which it strips before passing requests on (nginx: `location "
                               "/passerelle/ { proxy_pass http://127.0.0.1:8780/; }`): `/passerelle`. The "
                               "addresses the gateway gives (links, redirects, cookies, Location, /docs) carry it. "
                               "Default: none, served at the root.")
    input_dir: Path | None = Field(None, description="Where runs started through the API find their "
                                   "Parcours 3 exports. Default: <data_dir>/entrees")

    # Schedule, several instances, retention (issue 5)
    schedule_enabled: bool = Field(True, description="`gateway serve` runs the scheduled jobs (night, polling, "
                                   "purge, certificates).")
    schedule_night_cron: str = Field("0 2 * * *", description="When the nightly run starts (crontab, 5 fields; "
                                     "6 fields: seconds first), in `timezone`.")
    schedule_misfire_grace_seconds: float = Field(12 * 3600.0, gt=0, description="A night missed while the "
                                                  "service was down is run once on start if it is this late at "
                                                  "most; later, the next night catches up.")
    schedule_poll_seconds: float = Field(300.0, gt=0, description="Interval of the report polling job.")
    schedule_purge_cron: str = Field("30 4 * * *", description="When the retention purge runs (crontab).")
    schedule_certificates_cron: str = Field("0 7 * * *", description="When certificate expiry is checked "
                                            "(crontab).")
    retention_days: int = Field(365, ge=1, description="Raw documents of settled envelopes, and the personal "
                                "fields of settled events, are purged after this many days.")
    certificate_warning_days: int = Field(30, ge=0, description="Warn when a certificate (the gateway's or a "
                                          "trusted DUDE one) expires within this many days.")
    lease_seconds: float = Field(120.0, gt=0, description="How long a run's lease lasts without a heartbeat "
                                 "(renewed every third of it): another instance takes a night over this long "
                                 "after its holder died.")
    send_workers: int = Field(2, ge=1, le=32, description="Envelopes on the wire at once, per instance.")
    send_claim_seconds: float = Field(300.0, gt=0, description="How long a worker's claim on an envelope lasts "
                                      "(renewed at each attempt): a dead worker's envelopes go to another then.")
    instance_name: str | None = Field(None, max_length=80, description="This instance's name in leases and "
                                      "claims. Default: host name and process id.")

    # Support console (issue 4)
    console_secret_key: SecretStr | None = Field(
        None, min_length=32, description="Key signing the console's session cookies (32 characters or more). "
        "Default: generated on first start into <data_dir>/console-secret.key; set it when several instances "
        "serve the console, so that a session opened on one is valid on the others.")
    console_session_hours: float = Field(8.0, gt=0, le=24 * 7, description="A console session ends this many "
                                         "hours after sign-in, whatever happens in between.")
    console_page_size: int = Field(50, ge=5, le=500, description="Events per page of the console's lists.")

    @field_validator("identifiant_pe_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    @field_validator("input_encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        value = value.lower()
        if value not in {"auto", "cp1252", "utf-8", "utf-8-sig"}:
            raise ValueError("expected auto, cp1252, utf-8 or utf-8-sig")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        """Checked here, not where it is first used: a misspelt zone used to surface as a raw traceback in the
        middle of a run (left EN_COURS), or as "invalid schedule" blaming the cron setting, never naming
        GATEWAY_TIMEZONE."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError("unknown time zone: expected an IANA name such as Europe/Paris "
                             "(case and spelling as in the zoneinfo database)") from None
        return value

    @field_validator("api_root_path")
    @classmethod
    def _url_path_prefix(cls, value: str) -> str:
        """A path such as ``/passerelle`` (its final ``/``, as nginx's ``location /passerelle/`` writes it, taken
        off; ``/`` alone is no prefix). Checked here: it goes as it is into every link, redirect, cookie path and
        ``Location`` the gateway gives, and into the path uvicorn would build (ASCII only); ``passerelle``
        without its ``/``, a space or a ``?`` made addresses no browser or partner could follow, said nowhere."""
        value = value.strip().rstrip("/")
        if value and not re.fullmatch(r"(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+", value):
            raise ValueError("expected a URL path such as /passerelle: starting with /, segments of ASCII letters, "
                             "digits, '-', '_', '.' and '~' (no space, '?', '#', '%' or '//', no segment "
                             "starting with '.')")
        return value

    @field_validator("dude_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        """Checked here: anything else used to be accepted, and a night then posted nowhere and ended as
        DUDE_UNREACHABLE (exit code 3, "DUDE is down"), never naming GATEWAY_DUDE_URL. The message never
        repeats the URL: it may carry a password."""
        expected = "expected an absolute http:// or https:// URL with a host, such as http://127.0.0.1:8790/dude/v1"
        if any(char.isspace() or not char.isprintable() for char in value):
            raise ValueError(f"{expected} (no spaces or control characters)")
        try:
            parts = urlsplit(value)
            host, port = parts.hostname, parts.port  # ValueError: a bad [IPv6] or a port not in 0-65535
        except ValueError:
            raise ValueError(f"{expected} (a valid host, and a port from 1 to 65535 if any)") from None
        if parts.scheme not in {"http", "https"} or not host:
            raise ValueError(expected)
        if port == 0:
            raise ValueError(f"{expected} (a port from 1 to 65535 if any)")
        return value

    @field_validator("database_url")
    @classmethod
    def _driver_we_ship(cls, value: str | None) -> str | None:
        """Only SQLite and PostgreSQL: ``sqlite:///…`` and ``postgresql+psycopg://…`` (the driver shipped),
        or another ``+driver`` of the two. Anything else (``mysql://…``, ``not a url``) used to pass, then a
        command ended in a traceback (``ModuleNotFoundError: MySQLdb``). The message never repeats the URL:
        it may carry a password.

        ``postgresql://…`` and ``postgres://…`` (what PostgreSQL's own tools, and most hosting panels,
        write) name SQLAlchemy's default driver, psycopg2, which is not installed: a traceback
        (``ModuleNotFoundError``), or "Can't load plugin". Both mean the psycopg 3 driver the gateway ships.
        An empty value (given as an argument: from the environment it is ignored) is the default."""
        if value is None or not value.strip():
            return None
        for plain in ("postgresql://", "postgres://"):
            if value.startswith(plain):
                return "postgresql+psycopg://" + value[len(plain):]
        scheme, sep, _ = value.partition("://")
        backend = scheme.partition("+")[0]
        if not sep or backend not in {"sqlite", "postgresql"} or not re.fullmatch(r"[a-z]+(\+[a-z0-9_]+)?", scheme):
            raise ValueError("expected a SQLite or PostgreSQL URL: sqlite:///path/to/gateway.db or "
                             "postgresql+psycopg://user:password@host/dbname (or postgresql://…)")
        return value

    # Derived paths -------------------------------------------------------------------------

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'gateway.db').as_posix()}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def gateway_key_file(self) -> Path:
        return self.key_file or self.keys_dir / "gateway.key.pem"

    @property
    def gateway_cert_file(self) -> Path:
        return self.cert_file or self.keys_dir / "gateway.cert.pem"

    @property
    def gateway_trust_dir(self) -> Path:
        return self.trust_dir or self.keys_dir / "trust"

    @property
    def runs_input_dir(self) -> Path:
        """Exports a run started through the API may read (nothing outside it)."""
        return self.input_dir or self.data_dir / "entrees"

    @property
    def emulator_dir(self) -> Path:
        """Keys, registry and ledger of the DUDE emulator run by the demo."""
        return self.data_dir / "emulator"

    @property
    def console_secret_file(self) -> Path:
        """Where the console's signing key is generated when ``console_secret_key`` is unset."""
        return self.data_dir / "console-secret.key"

    def key_password_bytes(self) -> bytes | None:
        """The private key's password: ``key_password``, or what ``key_password_file`` holds (blanks around it
        dropped).

        A password file that cannot be read is a ``KEYS`` error, like the key itself, naming the file and
        ``GATEWAY_KEY_PASSWORD_FILE`` (never what it holds): it was an English ``CONFIG`` error, which
        ``gateway check`` and ``/readyz`` showed as it was."""
        if self.key_password is not None:
            return self.key_password.get_secret_value().encode()
        if self.key_password_file is not None:
            from gateway.errors import KeyMaterialError

            path = self.key_password_file
            try:
                password = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                from gateway.errors import unreadable

                problem = unreadable(exc)
            except UnicodeDecodeError:
                problem = "illisible : pas du texte UTF-8"
            else:
                if password:
                    return password.encode()
                problem = "vide"
            raise KeyMaterialError(f"fichier du mot de passe de la clé {path} {problem} ; vérifier "
                                   "GATEWAY_KEY_PASSWORD_FILE")
        return None


def unknown_variables(environ: Mapping[str, str], env_file: Path | None = Path(".env")) -> list[str]:
    """Each ``GATEWAY_*`` name, in the environment or in ``env_file``, that no setting has, with the one it
    was probably meant to be: ``GATEWAY_INPUT_DIRR (GATEWAY_INPUT_DIR ?)``.

    Unknown names are ignored (``extra="ignore"``: other tools may share the prefix), so a misspelt one
    used to leave its setting at its default in silence; the command line now says so on start."""
    import difflib

    from dotenv import dotenv_values

    known = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields}
    names = {name.upper() for name in environ if name.upper().startswith("GATEWAY_")}
    if env_file is not None and env_file.is_file():
        names |= {name.upper() for name in dotenv_values(env_file) if name.upper().startswith("GATEWAY_")}
    found = []
    for name in sorted(names - known - NOT_SETTINGS):
        if name.startswith(_NOT_SETTINGS_PREFIX):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        found.append(f"{name} ({close[0]} ?)" if close else name)
    return found
