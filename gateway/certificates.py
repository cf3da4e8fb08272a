"""When the certificates expire (issue 5: "a daily check of certificate expiry"; brief §6).

Two kinds matter: the gateway's own, which signs every envelope (DUDE refuses an envelope signed with an
expired certificate, ``L02``), and DUDE's, in the trust store, against which receipts and reports are
checked (an expired one and nothing newer: nothing DUDE says is trusted any more). Rotating either takes
days of coordination with the agency, hence a warning ``certificate_warning_days`` ahead: logged daily by
the scheduler, shown by ``/readyz`` (``warnings``) and ``/metrics`` (``gateway_certificate_expiry_days``).
Read from the files each time: a rotated certificate is seen without a restart. A certificate not valid
yet (its validity starts later) is as unusable as an expired one: `adapters.dude.signing` refuses a
signature outside the validity window.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gateway.context import Gateway
from gateway.errors import KeyMaterialError

log = logging.getLogger("gateway.certificates")

GATEWAY, DUDE = "passerelle", "dude"


def _in(days: float) -> str:
    """How long until a moment ``days`` ahead, rounded up: "dans 10 jour(s)" right after ``gateway keys init
    --days 10`` (truncated, it said 9), "dans 23 heure(s)" under one day (it said "dans 0 jour(s)")."""
    hours = math.ceil(days * 24)
    if hours < 24:
        return f"dans {max(hours, 1)} heure(s)"
    return f"dans {math.ceil(days)} jour(s)"


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    role: str  # passerelle or dude
    subject: str
    fingerprint: str
    not_after: datetime
    days_left: float
    warning: bool  # expires within certificate_warning_days, has expired, or is not valid yet
    not_before: datetime
    days_to_start: float  # > 0: not valid yet (signing.py refuses a signature outside the validity window)

    @property
    def expired(self) -> bool:
        return self.days_left <= 0

    @property
    def not_yet_valid(self) -> bool:
        return self.days_to_start > 0

    @property
    def unusable(self) -> bool:
        """Expired or not valid yet: DUDE refuses what the gateway's own signs (L02); the gateway refuses what
        a DUDE one signs."""
        return self.expired or self.not_yet_valid

    def describe(self) -> str:
        who = f"certificat {self.role} {self.subject} ({self.fingerprint[:16]})"
        if self.role == GATEWAY:
            action = "à renouveler, puis à enregistrer auprès de l'agence (gateway keys show-cert)"
        else:
            action = "à renouveler : le nouveau certificat du DUDE va dans le dossier de confiance"
        if self.not_yet_valid:
            return f"{who} valide seulement à partir du {self.not_before:%Y-%m-%d}, {_in(self.days_to_start)}"
        if self.expired:
            return f"{who} expiré depuis le {self.not_after:%Y-%m-%d} : {action}"
        ends = f"{who} expire le {self.not_after:%Y-%m-%d}, {_in(self.days_left)}"
        return f"{ends} : {action}" if self.warning else ends  # far off: nothing to do yet


def _status(role: str, cert: x509.Certificate, now: datetime, warn_days: int) -> CertificateStatus:
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    days_left = (not_after - now).total_seconds() / 86400
    days_to_start = (not_before - now).total_seconds() / 86400
    return CertificateStatus(role, cert.subject.rfc4514_string(), cert.fingerprint(hashes.SHA256()).hex(),
                             not_after, days_left, days_left <= warn_days or days_to_start > 0,
                             not_before=not_before, days_to_start=days_to_start)


def check_certificates(gw: Gateway, *, now: datetime | None = None) -> list[CertificateStatus]:
    """Every certificate that matters, gateway's first; raises `KeyMaterialError` if one cannot be read."""
    from adapters.dude.signing import TrustStore

    now = now or gw.clock()
    warn = gw.settings.certificate_warning_days
    path = gw.settings.gateway_cert_file
    try:
        own = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyMaterialError(f"certificat de la passerelle {path} illisible : {exc}") from exc
    found = [_status(GATEWAY, own[0], now, warn)]
    trust = TrustStore.from_dir(gw.settings.gateway_trust_dir)
    found += [_status(DUDE, trusted.certificate, now, warn) for trusted in trust.certificates]
    return found


def problems(statuses: list[CertificateStatus]) -> tuple[list[str], list[str]]:
    """(what stops the gateway working, what will soon): the gateway's certificate expired or not valid yet,
    or no DUDE certificate valid now; then every certificate within the warning period.

    Not valid yet counts as expired: `adapters.dude.signing` refuses a signature outside the certificate's
    validity window, so a DUDE certificate that starts tomorrow, alone in the trust folder, would have every
    receipt refused, and DUDE refuses what ours signs (L02)."""
    failing, warnings = [], []
    own = [s for s in statuses if s.role == GATEWAY]
    dude = [s for s in statuses if s.role == DUDE]
    for s in own:
        if s.unusable:
            failing.append(s.describe())
    if dude and all(s.unusable for s in dude):
        failing.append("aucun certificat du DUDE valide à cette date : " + "; ".join(s.describe() for s in dude))
    warnings = [s.describe() for s in statuses if s.warning and not s.unusable]
    if len(dude) > 1:  # rotation: an expired (or future) DUDE certificate next to a valid one is only a warning
        warnings += [s.describe() for s in dude if s.unusable and not all(x.unusable for x in dude)]
    return failing, warnings


def log_expiring(statuses: list[CertificateStatus]) -> int:
    """The daily check: one warning per certificate expiring soon, expired or not valid yet; returns how many."""
    count = 0
    for s in statuses:
        if s.warning:
            log.warning("%s", s.describe())
            count += 1
    return count
