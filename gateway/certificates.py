"""When the certificates expire (issue 5: "a daily check of certificate expiry"; brief §6).

Two kinds matter: the gateway's own, which signs every envelope (DUDE refuses an envelope signed with an
expired certificate, ``L02``), and DUDE's, in the trust store, against which receipts and reports are
checked (an expired one and nothing newer: nothing DUDE says is trusted any more). Rotating either takes
days of coordination with the agency, hence a warning ``certificate_warning_days`` ahead: logged daily by
the scheduler, shown by ``/readyz`` (``warnings``) and ``/metrics`` (``gateway_certificate_expiry_days``).
Read from the files each time: a rotated certificate is seen without a restart. A certificate not valid
yet (its validity starts later) is as unusable as an expired one: `adapters.dude.signing` refuses a
signature outside the validity window.

This module is the one judge of a certificate's dates (`CertificateStatus.state`: valid, expiring within
``certificate_warning_days``, expired, not valid yet) and the one wording of it (`CertificateStatus.describe`
for operators, `CertificateStatus.log_line` for the log): ``gateway run`` (`gateway.keys.check_key_material`)
uses it too, where it once had its own twin of both.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gateway.context import Gateway
from gateway.settings import Settings

if TYPE_CHECKING:
    from adapters.dude.signing import TrustStore

log = logging.getLogger("gateway.certificates")

GATEWAY, DUDE = "passerelle", "dude"
#: What `CertificateStatus.state` decides: the one judgement of a certificate's dates.
VALID, EXPIRING, EXPIRED, NOT_YET_VALID = "valid", "expiring", "expired", "not_yet_valid"


def _until(days: float) -> tuple[int, str]:
    """How long until a moment ``days`` ahead, rounded up, in days, or in hours under one day: (count, unit)."""
    hours = math.ceil(days * 24)
    return (max(hours, 1), "hours") if hours < 24 else (math.ceil(days), "days")


def _in(days: float) -> str:
    """In French: "dans 10 jour(s)" right after ``gateway keys init --days 10`` (truncated, it said 9), "dans 23
    heure(s)" under one day (it said "dans 0 jour(s)")."""
    count, unit = _until(days)
    return f"dans {count} {'heure(s)' if unit == 'hours' else 'jour(s)'}"


def _in_english(days: float) -> str:
    count, unit = _until(days)
    return f"in {count} {'hour(s)' if unit == 'hours' else 'day(s)'}"


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
    source: str = ""  # the file it was read from

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

    @property
    def state(self) -> str:
        """`NOT_YET_VALID`, `EXPIRED`, `EXPIRING` (within ``certificate_warning_days``) or `VALID`."""
        if self.not_yet_valid:
            return NOT_YET_VALID
        if self.expired:
            return EXPIRED
        return EXPIRING if self.warning else VALID

    def _named(self) -> str:
        where = f" {self.source}" if self.source else ""
        return f"{where} ({self.subject}, {self.fingerprint[:16]})"

    def describe(self) -> str:
        """What an operator reads (``/readyz``, ``gateway check``, ``Erreur KEYS`` of ``gateway run``): which
        certificate, what is wrong with its dates, what it means for the exchange, what to do."""
        ours = self.role == GATEWAY
        who = f"certificat {'de la passerelle' if ours else 'du DUDE'}{self._named()}"
        state = self.state
        if state == NOT_YET_VALID:
            effect = ("le DUDE refuse ce qu'elle signe d'ici là (L02) ; y remettre le certificat en cours" if ours
                      else "ce qu'il signe n'est reconnu qu'à partir de là ; garder à côté le certificat en cours "
                           "du DUDE")
            return (f"{who} valide seulement à partir du {self.not_before:%Y-%m-%d}, {_in(self.days_to_start)} : "
                    f"{effect}, ou vérifier l'horloge de la machine")
        renew = ("à renouveler, puis à enregistrer auprès de l'agence (gateway keys show-cert)" if ours
                 else "à renouveler : le nouveau certificat du DUDE va dans le dossier de confiance")
        if state == EXPIRED:
            effect = "le DUDE refuse ce qu'elle signe (L02)" if ours else "ce qu'il signe n'est plus reconnu"
            return f"{who} expiré depuis le {self.not_after:%Y-%m-%d} : {effect} ; {renew}"
        ends = f"{who} expire le {self.not_after:%Y-%m-%d}, {_in(self.days_left)}"
        return f"{ends} : {renew}" if state == EXPIRING else ends  # far off: nothing to do yet

    def log_line(self) -> str:
        """The same judgement for the log, in English as every log line."""
        who = "the gateway's certificate" if self.role == GATEWAY else "a DUDE certificate"
        state = self.state
        if state == NOT_YET_VALID:
            said = (f"{who} is valid only from {self.not_before:%Y-%m-%d}, {_in_english(self.days_to_start)}: "
                    "signatures with it are refused until then")
        elif state == EXPIRED:
            said = f"{who} expired on {self.not_after:%Y-%m-%d}: renew it"
        else:
            said = f"{who} expires on {self.not_after:%Y-%m-%d}, {_in_english(self.days_left)}: renew it before then"
        return f"{said}{self._named()}"


def _status(role: str, cert: x509.Certificate, now: datetime, warn_days: int, source: str = "") -> CertificateStatus:
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    days_left = (not_after - now).total_seconds() / 86400
    days_to_start = (not_before - now).total_seconds() / 86400
    return CertificateStatus(role, cert.subject.rfc4514_string(), cert.fingerprint(hashes.SHA256()).hex(),
                             not_after, days_left, days_left <= warn_days or days_to_start > 0,
                             not_before=not_before, days_to_start=days_to_start, source=source)


def certificate_statuses(settings: Settings, own: x509.Certificate, trusted: TrustStore, *,
                         now: datetime) -> list[CertificateStatus]:
    """The gateway's certificate (``own``) and the trust folder's, judged at ``now``: gateway's first."""
    warn = settings.certificate_warning_days
    found = [_status(GATEWAY, own, now, warn, str(settings.gateway_cert_file))]
    return found + [_status(DUDE, t.certificate, now, warn, str(settings.gateway_trust_dir / t.source))
                    for t in trusted.certificates]


def check_certificates(gw: Gateway, *, now: datetime | None = None) -> list[CertificateStatus]:
    """Every certificate that matters, gateway's first; `KeyMaterialError` naming the file, and its setting, if
    one cannot be read (it used to escape as a bare ``PermissionError``: ``/metrics`` answered 500)."""
    from adapters.dude.signing import read_certificates
    from gateway.keys import key_names

    names = key_names(gw.settings)
    own, _ = read_certificates(gw.settings.gateway_cert_file, what=f"certificat{names.whose}",
                               setting=names.cert_file, names=names)
    return certificate_statuses(gw.settings, own[0], gw.dude_trust, now=now or gw.clock())


def no_dude_certificate(trust_dir: Path | None) -> str:
    """An empty trust folder: nothing DUDE answers could be checked."""
    where = f" {trust_dir}" if trust_dir is not None else ""
    return (f"aucun certificat du DUDE dans le dossier de confiance{where} : accusés de réception et comptes rendus "
            "ne pourraient pas être vérifiés (y mettre le certificat du DUDE, en .pem, ou vérifier GATEWAY_TRUST_DIR ; "
            "pour l'émulateur : gateway keys init)")


def problems(statuses: list[CertificateStatus], *,
             trust_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """(what stops the gateway working, what will soon): the gateway's certificate expired or not valid yet,
    or no DUDE certificate valid now (none at all: ``trust_dir`` names the folder); then every certificate within
    the warning period. ``gateway run`` refuses to start on the first (`gateway.keys.check_key_material`),
    ``/readyz`` and ``gateway check`` fail on them, ``/metrics`` says ``gateway_certificates_ok 0``.

    Not valid yet counts as expired: `adapters.dude.signing` refuses a signature outside the certificate's
    validity window, so a DUDE certificate that starts tomorrow, alone in the trust folder, would have every
    receipt refused, and DUDE refuses what ours signs (L02)."""
    own = [s for s in statuses if s.role == GATEWAY]
    dude = [s for s in statuses if s.role == DUDE]
    failing = [s.describe() for s in own if s.unusable]
    if not dude:
        failing.append(no_dude_certificate(trust_dir))
    elif all(s.unusable for s in dude):
        folder = {str(Path(s.source).parent) for s in dude if s.source}
        where = f" dans le dossier de confiance {folder.pop()}" if len(folder) == 1 else ""
        failing.append(f"aucun certificat du DUDE valide à cette date{where} : aucun accusé de réception ni compte "
                       "rendu ne serait reconnu ; " + "; ".join(s.describe() for s in dude))
    warnings = [s.describe() for s in statuses if s.warning and not s.unusable]
    if len(dude) > 1:  # rotation: an expired (or future) DUDE certificate next to a valid one is only a warning
        warnings += [s.describe() for s in dude if s.unusable and not all(x.unusable for x in dude)]
    return failing, warnings


def log_expiring(statuses: list[CertificateStatus]) -> int:
    """The daily check, and ``gateway run`` once its certificates pass: one warning per certificate expiring soon,
    expired or not valid yet; returns how many."""
    count = 0
    for s in statuses:
        if s.warning:
            log.warning("%s", s.log_line())
            count += 1
    return count
