"""The emulator's configuration: one frozen value, built once and passed to `Emulator`.

Following the project's habit (STYLE.md 1, 5: "a small frozen config", "settings loaded once, passed
down"), nothing in the emulator reads the environment or the gateway's settings on its own:
`EmulatorConfig.for_settings` is the one place where the gateway's data-folder layout
(`gateway.keys.emulator_identity`) is turned into the emulator's paths, for the demo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from adapters.dude.signing import KeyNames
from gateway.errors import ConfigurationError
from gateway.keys import emulator_identity
from gateway.settings import Settings

#: DUDE is a French system: "today" (rule E04) and the timestamps it writes are Paris time.
PARIS = ZoneInfo("Europe/Paris")

#: The registry file name the demo and the fixture generator agree on (brief §4).
REGISTRY_FILE_NAME = "registre-dude.csv"
LEDGER_FILE_NAME = "ledger.db"


#: How an emulator built from `EmulatorConfig`'s fields names its key material in an error (`KeyNames`): its
#: own fields, never the gateway's ``GATEWAY_KEY_FILE``…, which it does not read.
CONFIG_KEY_NAMES = KeyNames(whose=" de l'émulateur", key_file="EmulatorConfig.key_file",
                            cert_file="EmulatorConfig.cert_file", password="EmulatorConfig.key_password",
                            trust_dir="EmulatorConfig.trust_dir")


def paris_now() -> datetime:
    """The default clock: now, timezone-aware, in Paris time (the XSD requires an offset)."""
    return datetime.now(PARIS)


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How one emulated DUDE is set up.

    ``EmulatorConfig(key_file=…, cert_file=…, trust_dir=…, registry_file=…)`` is enough; every other
    field has the behaviour of a well-behaved DUDE. Build a variant with ``config.replace(...)``.
    """

    #: DUDE's private key and certificate: receipts and reports are signed with them (brief §4).
    key_file: Path
    cert_file: Path
    #: Certificates whose envelopes are accepted (the gateway's), each within its validity window.
    trust_dir: Path
    key_password: bytes | None = None
    #: The jobseeker registry CSV (brief §4, "The emulator's jobseeker file"); None: an empty
    #: registry, so every event is rejected E01.
    registry_file: Path | None = None
    #: SQLite file of the ledger; None: in memory (tests), gone when the emulator is closed.
    ledger_path: Path | None = None
    #: Seconds between the receipt and the report becoming available (brief §4: "seconds to hours").
    report_delay_seconds: float = 1.0
    #: Where reports are pushed (the gateway's callback); None: reports are only polled.
    callback_url: str | None = None
    callback_timeout_seconds: float = 10.0
    #: ``Emetteur`` codes allowed to send (L06).
    authorized_senders: frozenset[str] = frozenset({"PARCOURS3"})
    #: Most events in one envelope (L07), and most bytes in one request body (L07, before parsing).
    max_events: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    #: "Today" for rule E04; None: the clock's date in Paris.
    today: date | None = None
    #: Timezone-aware "now": receipt and report times, report availability, certificate validity.
    clock: Callable[[], datetime] = field(default=paris_now, compare=False)
    #: How the key material's errors name where it comes from (`for_settings`: ``--data-dir``).
    key_names: KeyNames = CONFIG_KEY_NAMES

    def __post_init__(self) -> None:
        if self.report_delay_seconds < 0:
            raise ConfigurationError("report_delay_seconds must be >= 0")
        if self.max_events < 1 or self.max_bytes < 1:
            raise ConfigurationError("max_events and max_bytes must be positive")
        if self.callback_timeout_seconds <= 0:
            raise ConfigurationError("callback_timeout_seconds must be > 0")
        if not isinstance(self.authorized_senders, frozenset):
            object.__setattr__(self, "authorized_senders", frozenset(self.authorized_senders))

    def now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ConfigurationError("the emulator's clock must return timezone-aware datetimes")
        return now

    def today_at(self, now: datetime) -> date:
        """The date rule E04 calls "today": the fixed one, or ``now`` in Paris."""
        return self.today or now.astimezone(PARIS).date()

    def replace(self, **changes: Any) -> EmulatorConfig:
        return replace(self, **changes)

    @classmethod
    def for_settings(cls, settings: Settings, **overrides: Any) -> EmulatorConfig:
        """The demo's emulator: keys where `gateway.keys.init_dev_keys` puts them, registry and ledger
        in ``settings.emulator_dir``, the gateway's sender code authorised, its size limit applied. Its key
        material comes from the data folder: ``gateway emulator serve``'s ``--data-dir`` is what its errors name.
        """
        identity = emulator_identity(settings)
        data_dir = "--data-dir de gateway emulator serve (ou GATEWAY_DATA_DIR)"
        values: dict[str, Any] = {
            "key_file": identity.key_file,
            "cert_file": identity.cert_file,
            "trust_dir": identity.trust_dir,
            "registry_file": settings.emulator_dir / REGISTRY_FILE_NAME,
            "ledger_path": settings.emulator_dir / LEDGER_FILE_NAME,
            "authorized_senders": frozenset({settings.sender_code}),
            "max_bytes": settings.max_document_bytes,
            "key_names": KeyNames(whose=" de l'émulateur", key_file=data_dir, cert_file=data_dir,
                                  password="EmulatorConfig.key_password", trust_dir=data_dir),
        }
        values.update(overrides)
        return cls(**values)
