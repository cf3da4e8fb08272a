"""Development key pairs and self-signed certificates for both sides of the exchange (brief §6).

`init_dev_keys` gives the gateway and the DUDE emulator each a key and a certificate, and puts each
certificate in the other's trust store, so a night runs with no set-up. In production the gateway's
key comes from the operator's PKI and DUDE's certificate from the agency; the same files are used
(``GATEWAY_KEY_FILE``, ``GATEWAY_CERT_FILE``, ``GATEWAY_TRUST_DIR``).
"""

from __future__ import annotations

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

if TYPE_CHECKING:  # signxml is imported when a key is loaded, not by `gateway keys` commands
    from adapters.dude.signing import KeyNames, Signer


@dataclass(frozen=True, slots=True)
class Identity:
    """Where one side keeps its key, its certificate, and the certificates it trusts."""

    key_file: Path
    cert_file: Path
    trust_dir: Path


def gateway_identity(settings: Settings) -> Identity:
    return Identity(settings.gateway_key_file, settings.gateway_cert_file, settings.gateway_trust_dir)


#: Where the private key's password comes from (`Settings.key_password_bytes`), as an error names it.
PASSWORD_SETTINGS = "GATEWAY_KEY_PASSWORD_FILE (ou GATEWAY_KEY_PASSWORD)"


def development_layout(settings: Settings) -> bool:
    """Key, certificate and trust folder where `init_dev_keys` puts them: ``gateway keys init`` is then the
    advice for a missing one; with ``GATEWAY_KEY_FILE``… set (a PKI's files), the settings are."""
    return settings.key_file is None and settings.cert_file is None and settings.trust_dir is None


def key_names(settings: Settings) -> KeyNames:
    """How the gateway's key material is named in the errors saying a piece of it cannot be used: the
    ``GATEWAY_*`` setting of each file (`adapters.dude.signing.KeyNames`)."""
    from adapters.dude.signing import KeyNames

    return KeyNames(whose=" de la passerelle", key_file="GATEWAY_KEY_FILE", cert_file="GATEWAY_CERT_FILE",
                    password=PASSWORD_SETTINGS, trust_dir="GATEWAY_TRUST_DIR",
                    when_missing="clés de développement : gateway keys init" if development_layout(settings) else "")


def load_signer(settings: Settings) -> Signer:
    """The gateway's key and certificate, its password read (`Settings.key_password_bytes`); `KeyMaterialError`
    (``KEYS``) naming the file and its setting when one cannot be used. What ``gateway run`` checks and what
    `Gateway.signer` reads again: one way of loading, one way of saying what is wrong."""
    from adapters.dude.signing import Signer

    return Signer.from_files(settings.gateway_key_file, settings.gateway_cert_file,
                             password=settings.key_password_bytes(), names=key_names(settings))


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
    target = identity.trust_dir / as_name
    try:
        identity.trust_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cert_file, target)
    except OSError as exc:  # a certificate kept but unreadable (a folder in its place…): said, not a traceback
        from gateway.errors import unreadable

        raise KeyMaterialError(f"certificat {cert_file} à copier dans le dossier de confiance {identity.trust_dir} : "
                               f"{unreadable(exc)}") from exc
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
    the signing key and certificate load, and `gateway.certificates` finds nothing failing (our certificate
    valid now, neither expired nor starting later: `adapters.dude.signing` refuses a signature outside the
    validity window; at least one DUDE certificate of the trust folder valid now). Returns the signer it
    loaded, for the run to sign with (``gateway run``: the key is read, and its password used, once). What
    expires within ``certificate_warning_days`` is logged, as the daily check logs it.

    Called before a run touches the store (``gateway run``: a mistyped ``--data-dir`` made an empty store,
    then failed on the keys) and at its start. An empty trust folder used to pass: DUDE took the envelopes,
    every receipt was refused (``L02``) and the night ended as if DUDE were down (exit code 3). So did an
    expired certificate of ours, which ``/readyz`` told but ``gateway run`` (cron) never did. The judgement
    and its words are `gateway.certificates`' (``/readyz``, ``gateway check``, the daily job): they used to be
    written twice, and said twice differently."""
    from adapters.dude.signing import TrustStore
    from gateway.certificates import certificate_statuses, log_expiring, problems

    signer = load_signer(settings)
    trusted = TrustStore.from_dir(settings.gateway_trust_dir, names=key_names(settings))
    found = certificate_statuses(settings, signer.certificate, trusted, now=now or datetime.now(UTC))
    failing, _ = problems(found, trust_dir=settings.gateway_trust_dir)
    if failing:
        raise KeyMaterialError("; ".join(failing))
    log_expiring(found)
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
    """The gateway's certificate as its file holds it (``gateway keys show-cert``), once it is known to be one."""
    from adapters.dude.signing import KeyNames, read_certificates

    _, pem = read_certificates(path, what="certificat de la passerelle", setting="GATEWAY_CERT_FILE",
                               names=KeyNames(when_missing="clés de développement : gateway keys init"))
    return pem.decode("ascii", errors="replace")
