"""Development key pairs and self-signed certificates for both sides of the exchange (brief §6).

`init_dev_keys` gives the gateway and the DUDE emulator each a key and a certificate, and puts each
certificate in the other's trust store, so a night runs with no set-up. In production the gateway's
key comes from the operator's PKI and DUDE's certificate from the agency; the same files are used
(``GATEWAY_KEY_FILE``, ``GATEWAY_CERT_FILE``, ``GATEWAY_TRUST_DIR``).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.errors import KeyMaterialError
from gateway.settings import Settings

log = logging.getLogger("gateway.keys")

if TYPE_CHECKING:  # signxml is imported when a key is loaded, not by `gateway keys` commands
    from adapters.dude.signing import Signer


@dataclass(frozen=True, slots=True)
class Identity:
    """Where one side keeps its key, its certificate, and the certificates it trusts."""

    key_file: Path
    cert_file: Path
    trust_dir: Path


def gateway_identity(settings: Settings) -> Identity:
    return Identity(settings.gateway_key_file, settings.gateway_cert_file, settings.gateway_trust_dir)


def emulator_identity(settings: Settings) -> Identity:
    keys = settings.emulator_dir / "keys"
    return Identity(keys / "dude.key.pem", keys / "dude.cert.pem", keys / "trust")


def make_self_signed(common_name: str, *, days: int = 730, key_size: int = 2048,
                     not_before: datetime | None = None, password: bytes | None = None) -> tuple[bytes, bytes]:
    """A new RSA key (PEM, encrypted if ``password``) and a self-signed certificate (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Passerelle Parcours 3 - DUDE (développement)"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def write_identity(identity: Identity, key_pem: bytes, cert_pem: bytes) -> None:
    """Write a key (mode 0600, created so) and its certificate (0644)."""
    identity.key_file.parent.mkdir(parents=True, exist_ok=True)
    identity.trust_dir.mkdir(parents=True, exist_ok=True)
    tmp = identity.key_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    os.replace(tmp, identity.key_file)
    identity.cert_file.write_bytes(cert_pem)
    identity.cert_file.chmod(0o644)


def trust(identity: Identity, cert_file: Path, *, as_name: str) -> Path:
    """Add a certificate to ``identity``'s trust store."""
    identity.trust_dir.mkdir(parents=True, exist_ok=True)
    target = identity.trust_dir / as_name
    shutil.copyfile(cert_file, target)
    return target


@dataclass(frozen=True, slots=True)
class DevKeys:
    gateway: Identity
    emulator: Identity
    #: The sides whose key and certificate were made by this call ("gateway", "emulator"); the others kept.
    made: tuple[str, ...]

    @property
    def created(self) -> bool:
        return bool(self.made)


SIDES = ("gateway", "emulator")


def init_dev_keys(settings: Settings, *, overwrite: bool = False, days: int = 730,
                  sides: tuple[str, ...] = SIDES) -> DevKeys:
    """Make the keys of ``sides`` that are missing (all of them with ``overwrite``), and cross-trust them.

    Side by side: when one side's key was missing, both used to be made again, so that ``gateway keys init``
    with the emulator's folder gone replaced the gateway's key and the certificate registered with DUDE,
    without ``--force``. ``gateway emulator serve`` passes ``sides=("emulator",)``: the emulator never
    writes the gateway's keys."""
    gw, emu = gateway_identity(settings), emulator_identity(settings)
    if overwrite and "gateway" in sides and gw.key_file.exists() and settings.key_file is not None:
        raise KeyMaterialError(f"clé {gw.key_file} donnée par GATEWAY_KEY_FILE : gateway keys init --force ne la "
                               "remplace pas")
    made = []
    if "gateway" in sides and (overwrite or not gw.key_file.exists()):
        write_identity(gw, *make_self_signed(f"{settings.sender_code} passerelle", days=days,
                                             password=settings.key_password_bytes()))
        made.append("gateway")
    if "emulator" in sides and (overwrite or not emu.key_file.exists()):
        write_identity(emu, *make_self_signed(f"{settings.recipient_code} emulateur", days=days))
        made.append("emulator")
    if made:  # each side trusts the other's certificate, the one just made or the one kept
        if emu.cert_file.exists() and "gateway" in sides:
            trust(gw, emu.cert_file, as_name="dude.cert.pem")
        if gw.cert_file.exists():
            trust(emu, gw.cert_file, as_name="gateway.cert.pem")
    return DevKeys(gw, emu, made=tuple(made))


def check_key_material(settings: Settings, *, now: datetime | None = None) -> Signer:
    """Raise `KeyMaterialError` (``KEYS``) unless a run could sign its envelopes and check DUDE's answers:
    the signing key and certificate load, the certificate is valid now (neither expired nor starting later:
    `adapters.dude.signing` refuses a signature outside the validity window), and the trust folder holds
    at least one DUDE certificate valid now. Returns the signer it loaded, for the run to sign with
    (``gateway run``: the key is read, and its password used, once). A certificate within
    ``certificate_warning_days`` of its end is logged as a warning.

    Called before a run touches the store (``gateway run``: a mistyped ``--data-dir`` made an empty store,
    then failed on the keys) and at its start. An empty trust folder used to pass: DUDE took the envelopes,
    every receipt was refused (``L02``) and the night ended as if DUDE were down (exit code 3). So did an
    expired certificate of ours, which ``/readyz`` told but ``gateway run`` (cron) never did."""
    from adapters.dude.signing import Signer, TrustStore

    now = now or datetime.now(UTC)
    signer = Signer.from_files(settings.gateway_key_file, settings.gateway_cert_file,
                               password=settings.key_password_bytes())
    starts, ends = signer.certificate.not_valid_before_utc, signer.certificate.not_valid_after_utc
    if ends <= now:
        raise KeyMaterialError(f"certificat de la passerelle {settings.gateway_cert_file} expiré le {ends:%Y-%m-%d} : "
                               "le DUDE refuse ce qu'il signe (L02) ; y mettre le certificat renouvelé, et le "
                               "remettre au DUDE (gateway keys show-cert)")
    if starts > now:
        raise KeyMaterialError(f"certificat de la passerelle {settings.gateway_cert_file} valide seulement à partir "
                               f"du {starts:%Y-%m-%d %H:%M} UTC : le DUDE refuse ce qu'il signe d'ici là (L02) ; y "
                               "remettre le certificat en cours, ou vérifier l'horloge de la machine")
    trusted = TrustStore.from_dir(settings.gateway_trust_dir)
    if not len(trusted):
        raise KeyMaterialError(f"aucun certificat du DUDE dans le dossier de confiance {settings.gateway_trust_dir} : "
                               "accusés de réception et comptes rendus ne pourraient pas être vérifiés (y mettre le "
                               "certificat du DUDE, en .pem ; pour l'émulateur : gateway keys init)")
    dude = [t.certificate for t in trusted.certificates]
    valid = [c for c in dude if c.not_valid_before_utc <= now < c.not_valid_after_utc]
    if not valid:
        dude_ends = [c.not_valid_after_utc for c in dude]
        if all(end <= now for end in dude_ends):
            raise KeyMaterialError(f"tous les certificats du DUDE du dossier de confiance {settings.gateway_trust_dir} "
                                   f"ont expiré (le dernier le {max(dude_ends):%Y-%m-%d}) : aucun accusé de réception "
                                   "ni compte rendu ne serait reconnu ; y mettre le certificat en cours du DUDE")
        first = min(c.not_valid_before_utc for c in dude if c.not_valid_before_utc > now)
        raise KeyMaterialError(f"aucun certificat du DUDE du dossier de confiance {settings.gateway_trust_dir} n'est "
                               "valide à cette date : expirés, ou valides seulement à partir du "
                               f"{first:%Y-%m-%d %H:%M} UTC ; aucun accusé de réception ni compte rendu ne serait "
                               "reconnu d'ici là ; y mettre le certificat en cours du DUDE")
    soon = now + timedelta(days=settings.certificate_warning_days)
    for whose, end in [("the gateway's", ends), *(("a DUDE", c.not_valid_after_utc) for c in valid)]:
        if end <= soon:
            log.warning("%s certificate expires on %s, in %d day(s): renew it before then", whose,
                        f"{end:%Y-%m-%d}", math.ceil((end - now).total_seconds() / 86400))
    return signer


def unsafe_key_files(settings: Settings) -> list[str]:
    """Warnings (French, for the operator) about secret files others may read: the gateway's private key and
    its password file, readable or writable by the group or by others (brief §6). Checked on start by
    ``gateway run``, ``gateway serve`` and ``gateway demo``; a warning, not a refusal, so that a
    deployment that manages access otherwise (ACLs, a container's single user) still starts."""
    warnings = []
    candidates = [("la clé privée", settings.gateway_key_file)]
    if settings.key_password_file is not None:
        candidates.append(("le fichier du mot de passe de la clé", settings.key_password_file))
    for what, path in candidates:
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:  # missing: the command's own error says so
            continue
        if mode & 0o077:
            warnings.append(f"{what} {path} est accessible à d'autres que son propriétaire (mode {mode:04o}) : "
                            f"la protéger avec `chmod 600 {path}`.")
    return warnings


def certificate_pem(path: Path) -> str:
    try:
        pem = path.read_bytes()
        x509.load_pem_x509_certificate(pem)
    except FileNotFoundError as exc:
        raise KeyMaterialError(f"certificat introuvable : {path} (clés de développement : gateway keys init)") from exc
    except ValueError as exc:
        raise KeyMaterialError(f"{path} n'est pas un certificat PEM : {exc}") from exc
    return pem.decode("ascii")
