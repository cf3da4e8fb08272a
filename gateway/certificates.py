"""When the certificates expire (issue 5: "a daily check of certificate expiry"; brief §6).

Two kinds matter: the gateway's own, which signs every envelope (DUDE refuses an envelope signed with an
expired certificate, ``L02``), and DUDE's, in the trust store, against which receipts and reports are
checked (an expired one and nothing newer: nothing DUDE says is trusted any more). Rotating either takes
days of coordination with the agency, hence a warning ``certificate_warning_days`` ahead: logged daily by
the scheduler, shown by ``/readyz`` (``warnings``) and ``/metrics`` (``gateway_certificate_expiry_days``).
Read from the files each time: a rotated certificate is seen without a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gateway.context import Gateway
from gateway.errors import KeyMaterialError

log = logging.getLogger("gateway.certificates")

GATEWAY, DUDE = "passerelle", "dude"


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    role: str  # passerelle or dude
    subject: str
    fingerprint: str
    not_after: datetime
    days_left: float
    warning: bool  # expires within certificate_warning_days (or has expired)

    @property
    def expired(self) -> bool:
        return self.days_left <= 0

    def describe(self) -> str:
        when = f"{self.not_after:%Y-%m-%d}"
        if self.expired:
            return f"certificat {self.role} {self.subject} ({self.fingerprint[:16]}) expiré depuis le {when}"
        return (f"certificat {self.role} {self.subject} ({self.fingerprint[:16]}) expire le {when}, "
                f"dans {int(self.days_left)} jour(s)")


def _status(role: str, cert: x509.Certificate, now: datetime, warn_days: int) -> CertificateStatus:
    not_after = cert.not_valid_after_utc
    days_left = (not_after - now).total_seconds() / 86400
    return CertificateStatus(role, cert.subject.rfc4514_string(), cert.fingerprint(hashes.SHA256()).hex(), not_after,
                             days_left, days_left <= warn_days)


def check_certificates(gw: Gateway, *, now: datetime | None = None) -> list[CertificateStatus]:
    """Every certificate that matters, gateway's first; raises `KeyMaterialError` if one cannot be read."""
    from adapters.dude.signing import TrustStore

    now = now or gw.clock()
    warn = gw.settings.certificate_warning_days
    path = gw.settings.gateway_cert_file
    try:
        own = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyMaterialError(f"cannot read the gateway's certificate {path}: {exc}") from exc
    found = [_status(GATEWAY, own[0], now, warn)]
    trust = TrustStore.from_dir(gw.settings.gateway_trust_dir)
    found += [_status(DUDE, trusted.certificate, now, warn) for trusted in trust.certificates]
    return found


def problems(statuses: list[CertificateStatus]) -> tuple[list[str], list[str]]:
    """(what stops the gateway working, what will soon): the gateway's certificate expired, or no DUDE
    certificate valid any more; then every certificate within the warning period."""
    failing, warnings = [], []
    own = [s for s in statuses if s.role == GATEWAY]
    dude = [s for s in statuses if s.role == DUDE]
    for s in own:
        if s.expired:
            failing.append(s.describe())
    if dude and all(s.expired for s in dude):
        failing.append("aucun certificat du DUDE encore valide : " + "; ".join(s.describe() for s in dude))
    warnings = [s.describe() for s in statuses if s.warning and not s.expired]
    if len(dude) > 1:  # rotation: an expired DUDE certificate next to a valid one is only a warning
        warnings += [s.describe() for s in dude if s.expired and not all(x.expired for x in dude)]
    return failing, warnings


def log_expiring(statuses: list[CertificateStatus]) -> int:
    """The daily check: one warning per certificate expiring soon or expired; returns how many."""
    count = 0
    for s in statuses:
        if s.warning:
            log.warning("%s", s.describe())
            count += 1
    return count
