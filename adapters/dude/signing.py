"""Enveloped XML signatures (XMLDSig) with signxml, and the trust store that checks them (brief §4, §6).

Signing: RSA-SHA256 (or ECDSA P-256/SHA-256 for an EC key), SHA-256 digests, exclusive
canonicalisation, the signer's X.509 certificate in ``KeyInfo``. ``xmlsec1 --verify --trusted-pem
CERT`` accepts what `Signer` produces (the tests check it).

Verification: the certificate carried in the document must be one of the trust store's, and valid
at the time of the check (a trust store holds several certificates with their validity windows, so
a key can be rotated without a gap: add the new certificate, then switch the key). The signature is
then checked with that *trusted* certificate, never with whatever the document carries, and only
what was signed is returned (signxml's "see what is signed" rule): callers must read the returned
element, not the bytes they received.

signxml's exceptions are translated here: ``L02`` for a certificate that is unknown, not yet valid or
expired, ``L01`` for everything else about the signature. So are the errors of reading the key material
(``OSError``, cryptography's ``ValueError``): `KeyMaterialError` (``KEYS``), in French, naming the file, what
is wrong with it, and the setting that gives it (`KeyNames`: the gateway's and the emulator's differ).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml import (
    CanonicalizationMethod, DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLSigner,
    XMLVerifier,
)
from signxml.exceptions import InvalidCertificate, InvalidInput, InvalidSignature, SignXMLException

from adapters.dude import safe_xml
from adapters.dude.events_xml import DS_NS
from gateway.errors import CertificateRejected, KeyMaterialError, SignatureInvalid, unreadable

# signxml logs every canonicalised document at DEBUG: names and birth dates. Logs name event keys,
# never people (brief §6), so its debug output is never let through, whatever the root level.
logging.getLogger("signxml").setLevel(logging.INFO)

EXC_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0
_ALLOWED_METHODS = frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.ECDSA_SHA256})
_VERIFY_CONFIG = SignatureConfiguration(
    location="./", expect_references=1, signature_methods=_ALLOWED_METHODS,
    digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of a certificate (hex), how logs and the CLI name a certificate."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


class _DocumentSigner(XMLSigner):
    """signxml's `XMLSigner`, copying a whole document with lxml's deep copy instead of a round trip.

    For an enveloped signature signxml takes two private copies of its input (one receives the
    signature, the other is canonicalised and digested) by serialising it and parsing it back, which
    preserves the namespace context of an element taken out of a larger tree. Our input is always
    the root of a document we built, whose namespaces are all declared on it: a C-level deep copy
    gives the same tree (same canonical bytes) in about a third of the time, ~40 ms less per
    5,000-event envelope. Anything else goes through signxml's own path. Signing itself (exclusive
    c14n, digest, RSA/ECDSA) is untouched; xmlsec1 checks the result in the tests.
    """

    def get_root(self, data):
        if isinstance(data, etree._Element) and data.getparent() is None:
            return copy.deepcopy(data)
        return super().get_root(data)


class _InPlaceSigner(_DocumentSigner):
    """For `Signer.sign_in_place`: the first copy signxml asks for (the tree that receives the
    signature, and is returned) is the caller's tree itself; the second (canonicalised for the digest,
    taken before the signature is appended) is a copy. One tree less in memory and one copy less in
    time. Built for one call: the "first" is per instance."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._handed_over = False

    def get_root(self, data):
        if not self._handed_over and isinstance(data, etree._Element) and data.getparent() is None:
            self._handed_over = True
            return data
        return super().get_root(data)


class _Handle:
    """What `_DocumentVerifier._tostring` hands to its ``_fromstring``: the node itself, to be copied."""

    __slots__ = ("node",)

    def __init__(self, node: etree._Element):
        self.node = node


class _DocumentVerifier(XMLVerifier):
    """signxml's `XMLVerifier`, verifying the tree `adapters.dude.safe_xml.parse` made of the received bytes,
    with fewer private copies.

    signxml copies the document it verifies: first the caller's tree (``get_root``), then that copy
    again twice (the document whose signature it removes, the payload it canonicalises), each by
    ``self._fromstring(self._tostring(node))``: serialise, parse again, scan for entities. Here:

    * the first copy is skipped: the caller hands over a tree that nothing else touches while it is
      checked, and verifying never modifies it (signxml removes the signature from a copy);
    * the second is one C-level deep copy of a tree already parsed with the same hardened parser and
      already refused if it held an entity, which gives the same tree;
    * the third, a copy of that private copy's root once its signature is removed (signxml copies the
      payload so that namespaces of its ancestors do not leak into the canonical form: a root has
      none), is that private copy itself.

    Everything else is signxml's own check: canonicalisation, digest, signature, and the signed
    content re-parsed from its canonical bytes (what `verify` returns, and all the caller may read).
    A 5,000-event envelope is checked in ~55 ms instead of ~175 ms from its bytes. Any other use of
    these methods goes to signxml's own code. Built for one call.
    """

    def __init__(self, received: etree._Element):
        super().__init__()
        self._received = received
        self._private: etree._Element | None = None  # the copy of the whole document made here

    def get_root(self, data):
        return data if data is self._received else super().get_root(data)

    def _tostring(self, xml_node, **kwargs):
        return _Handle(xml_node) if not kwargs else super()._tostring(xml_node, **kwargs)

    def _fromstring(self, xml_string, **kwargs):
        if isinstance(xml_string, _Handle):
            node = xml_string.node
            if node is self._private:  # already ours alone, and a root: no second copy
                return node
            copied = copy.deepcopy(node)
            if node is self._received:
                self._private = copied
            return copied
        return super()._fromstring(xml_string, **kwargs)


@dataclass(frozen=True, slots=True)
class KeyNames:
    """How one side names its key material to its operator, in the errors saying a piece of it cannot be used:
    whose it is, the setting that gives each piece, and how missing files are made.

    This module reads the files of both sides of the exchange, the gateway's (``GATEWAY_KEY_FILE``…,
    `gateway.keys.key_names`) and the emulator's (its own configuration, `EmulatorConfig.key_names`): an
    error naming the gateway's variables sent the emulator's operator to settings it never reads. Left
    empty, an error names the file alone."""

    whose: str = ""  # " de la passerelle", " de l'émulateur": after "clé privée", "certificat"
    key_file: str = ""
    cert_file: str = ""
    password: str = ""
    trust_dir: str = ""
    #: Said after a file or folder that does not exist (``gateway keys init`` for development keys), or nothing.
    when_missing: str = ""


def _refused(what: str, path: Path | None, problem: str, setting: str = "", *, hint: str = "") -> KeyMaterialError:
    """``<what> <path> <problem> ; vérifier <setting> (<hint>)``: the file, what is wrong, what to look at."""
    said = f"{what}{f' {path}' if path is not None else ''} {problem}"
    if setting:
        said += f" ; vérifier {setting}"
    return KeyMaterialError(f"{said} ({hint})" if hint else said)


def _read(path: Path, what: str, setting: str, names: KeyNames) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)
        raise _refused(what, path, unreadable(exc), setting, hint=names.when_missing if missing else "") from exc


def _not_pem(data: bytes, kind: str, begin: bytes) -> str:
    """What is wrong with a file cryptography refused (its own message is a FAQ link and "MalformedFraming")."""
    if b"-----BEGIN " not in data:
        return "n'est pas un fichier PEM" + (" (fichier vide)" if not data.strip() else "")
    if begin not in data:
        return f"ne contient pas de {kind} PEM (une autre pièce mise à sa place ?)"
    return f"illisible : {kind} PEM abîmé ou tronqué"


def read_certificates(path: Path, *, what: str = "certificat", setting: str = "",
                      names: KeyNames = KeyNames()) -> tuple[list[x509.Certificate], bytes]:
    """The certificates of a PEM file (one at least) and the file's bytes, or `KeyMaterialError` saying what is
    wrong with it: ``what`` names the file to the operator, ``setting`` what gives it."""
    pem = _read(path, what, setting, names)
    try:
        return x509.load_pem_x509_certificates(pem), pem
    except ValueError as exc:
        raise _refused(what, path, _not_pem(pem, "certificat", b"-----BEGIN CERTIFICATE-----"), setting) from exc


class Signer:
    """Signs documents with one private key and its certificate. Build once, use for every envelope."""

    def __init__(self, *, key_pem: bytes, cert_pem: bytes, password: bytes | None = None,
                 key_file: Path | None = None, cert_file: Path | None = None, names: KeyNames = KeyNames()):
        """``key_file`` and ``cert_file``: where ``key_pem`` and ``cert_pem`` were read (`from_files`), and
        ``names`` how the operator sets them, only to say which file, and which setting, in an error."""
        key_said, cert_said = f"clé privée{names.whose}", f"certificat{names.whose}"
        try:
            self._key = serialization.load_pem_private_key(key_pem, password=password)
        except TypeError as exc:  # said of the password, never with it (it is not in cryptography's message)
            if password is None:
                raise _refused(key_said, key_file, "chiffrée : donner son mot de passe", names.password) from exc
            raise _refused(key_said, key_file, "n'est pas chiffrée, mais un mot de passe est donné",
                           f"{names.key_file}, ou retirer {names.password}" if names.password else "") from exc
        except ValueError as exc:
            encrypted = b"ENCRYPTED" in key_pem
            if encrypted and password is not None:
                raise _refused(key_said, key_file, ": mauvais mot de passe",
                               f"{names.password}, et que {names.key_file} est la bonne clé"
                               if names.password else "") from exc
            raise _refused(key_said, key_file, _not_pem(key_pem, "clé privée", b"PRIVATE KEY-----"),
                           names.key_file) from exc
        try:
            self.certificate = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as exc:
            raise _refused(cert_said, cert_file, _not_pem(cert_pem, "certificat", b"-----BEGIN CERTIFICATE-----"),
                           names.cert_file) from exc
        if self._key.public_key().public_numbers() != self.certificate.public_key().public_numbers():
            both = names.key_file if names.key_file == names.cert_file else f"{names.key_file} et {names.cert_file}"
            raise _refused(key_said, key_file, f"ne correspond pas au certificat{f' {cert_file}' if cert_file else ''}",
                           both)
        if isinstance(self._key, rsa.RSAPrivateKey):
            if self._key.key_size < 2048:
                raise _refused(key_said, key_file, f"de {self._key.key_size} bits : une clé RSA en demande au moins "
                               "2048", names.key_file)
            method = SignatureMethod.RSA_SHA256
        elif isinstance(self._key, ec.EllipticCurvePrivateKey) and self._key.curve.name == "secp256r1":
            method = SignatureMethod.ECDSA_SHA256
        else:
            raise _refused(key_said, key_file, "non prise en charge : RSA (2048 bits ou plus) ou ECDSA P-256 "
                           "seulement", names.key_file)
        # signxml takes the PEM blocks out of the text; what an export put around them (openssl's "Bag
        # Attributes", a friendlyName with accents) is not ASCII, and stopped the signer with a UnicodeDecodeError.
        self._cert_pem = cert_pem.decode("ascii", errors="replace")
        self._method = method
        self._signer = _DocumentSigner(signature_algorithm=method, digest_algorithm=DigestAlgorithm.SHA256,
                                       c14n_algorithm=EXC_C14N)

    @classmethod
    def from_files(cls, key_file: Path, cert_file: Path, *, password: bytes | None = None,
                   names: KeyNames = KeyNames()) -> Signer:
        key_pem = _read(key_file, f"clé privée{names.whose}", names.key_file, names)
        cert_pem = _read(cert_file, f"certificat{names.whose}", names.cert_file, names)
        return cls(key_pem=key_pem, cert_pem=cert_pem, password=password, key_file=key_file, cert_file=cert_file,
                   names=names)

    def sign(self, root: etree._Element) -> etree._Element:
        """Return a signed copy of ``root`` (an enveloped ``ds:Signature`` as its last child)."""
        try:
            return self._signer.sign(root, key=self._key, cert=self._cert_pem)
        except SignXMLException as exc:
            raise KeyMaterialError(f"échec de la signature : {exc}") from exc

    def sign_in_place(self, root: etree._Element) -> etree._Element:
        """Sign ``root`` itself (the root of a document the caller built and hands over) and return it.

        The sealing path: same signature as `sign`, one deep copy and one tree's worth of memory less
        (a 5,000-event envelope is ~20 MB as a tree)."""
        if root.getparent() is not None:
            raise ValueError("sign_in_place takes the root element of a document")
        signer = _InPlaceSigner(signature_algorithm=self._method, digest_algorithm=DigestAlgorithm.SHA256,
                                c14n_algorithm=EXC_C14N)
        try:
            return signer.sign(root, key=self._key, cert=self._cert_pem)
        except SignXMLException as exc:
            raise KeyMaterialError(f"échec de la signature : {exc}") from exc

    def sign_to_bytes(self, root: etree._Element) -> bytes:
        return serialize(self.sign(root))


def serialize(root: etree._Element) -> bytes:
    """The bytes sent on the wire: UTF-8 with an XML declaration, no reformatting after signing."""
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True)


@dataclass(frozen=True, slots=True)
class TrustedCertificate:
    certificate: x509.Certificate
    source: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)

    def valid_at(self, when: datetime) -> bool:
        return self.certificate.not_valid_before_utc <= when <= self.certificate.not_valid_after_utc


@dataclass(frozen=True, slots=True)
class Verified:
    """What a valid signature covers: the signed element, and the trusted certificate that signed it."""

    root: etree._Element
    signer: TrustedCertificate


#: The files of a trust folder that hold certificates.
TRUSTED_SUFFIXES = (".pem", ".crt")


class TrustFolder:
    """A trust folder's certificates, read again whenever the folder changes (a file added, replaced or
    removed): an operator rotating a certificate drops the new one in and it is trusted at once, without a
    restart (brief §6: rotation without a gap). The gateway's (`Gateway.dude_trust`) and the emulator's."""

    def __init__(self, folder: Path, *, names: KeyNames = KeyNames()):
        self.folder = folder
        self.names = names
        self._read: tuple[tuple | None, TrustStore] | None = None

    def _stamp(self) -> tuple | None:
        """What `TrustStore.from_dir` reads, as names, dates and sizes: every ``*.pem``/``*.crt`` entry, whatever it
        is (a folder or a broken link dropped under such a name is what it refuses, and must be seen at once)."""
        try:
            with os.scandir(self.folder) as entries:
                return tuple(sorted((entry.name, *_dated(entry)) for entry in entries
                                    if entry.name.endswith(TRUSTED_SUFFIXES)))
        except OSError:  # missing, not a folder, not listable: `TrustStore.from_dir` says which
            return None

    def current(self) -> TrustStore:
        """The certificates as the folder holds them now (`TrustStore.from_dir`, which says what is wrong)."""
        stamp = self._stamp()
        if self._read is None or self._read[0] != stamp:
            self._read = (stamp, TrustStore.from_dir(self.folder, names=self.names))
        return self._read[1]


def _dated(entry: os.DirEntry) -> tuple[int, int]:
    try:
        found = entry.stat()
    except OSError:  # a broken link
        return -1, -1
    return found.st_mtime_ns, found.st_size


def _described(der: bytes) -> str:
    """A certificate as an operator can recognise it: its subject and the start of its SHA-256 fingerprint."""
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError:
        return "(unreadable)"
    return (f"{certificate.subject.rfc4514_string()[:120]} "
            f"(SHA-256 {certificate.fingerprint(hashes.SHA256()).hex()[:16]}…)")


class TrustStore:
    """The certificates whose signatures are accepted, each within its own validity window."""

    def __init__(self, certificates: Iterable[TrustedCertificate], *, source: str = "given"):
        self._by_der: dict[bytes, TrustedCertificate] = {
            c.certificate.public_bytes(serialization.Encoding.DER): c for c in certificates
        }
        #: Where the certificates came from (a folder), named when a signer is not among them.
        self.source = source

    @classmethod
    def from_dir(cls, directory: Path, *, names: KeyNames = KeyNames()) -> TrustStore:
        """Every certificate in every ``*.pem``/``*.crt`` file of ``directory``; `KeyMaterialError` naming the
        folder or the file that cannot be read, and ``names.trust_dir``.

        Listed with ``scandir``, which says why it cannot: ``glob`` took a folder the service may not list for
        an empty one ("aucun certificat du DUDE"), the certificates being there."""
        what = "dossier de confiance"
        try:
            with os.scandir(directory) as entries:
                files = sorted(entry.name for entry in entries if entry.name.endswith(TRUSTED_SUFFIXES))
        except FileNotFoundError as exc:
            raise _refused(what, directory, "introuvable", names.trust_dir, hint=names.when_missing) from exc
        except NotADirectoryError as exc:
            raise _refused(what, directory, "n'est pas un dossier", names.trust_dir) from exc
        except OSError as exc:
            raise _refused(what, directory, unreadable(exc), names.trust_dir) from exc
        found = []
        for name in files:
            certificates, _ = read_certificates(directory / name, what="certificat de confiance",
                                                setting=names.trust_dir)
            found += [TrustedCertificate(c, name) for c in certificates]
        return cls(found, source=str(directory))

    @classmethod
    def from_pem(cls, *pems: bytes, source: str = "pem") -> TrustStore:
        return cls(TrustedCertificate(c, source) for pem in pems for c in x509.load_pem_x509_certificates(pem))

    def __len__(self) -> int:
        return len(self._by_der)

    @property
    def certificates(self) -> list[TrustedCertificate]:
        return list(self._by_der.values())

    def verify(self, root: etree._Element, *, at: datetime | None = None) -> Verified:
        """Check the enveloped signature of ``root`` and return what it signed.

        ``root`` is the document as received, parsed by `adapters.dude.safe_xml.parse`; it is checked as
        it is (not copied first, never modified).

        Raises `SignatureInvalid` (``L01``) when the signature is missing, malformed, uses a
        weak algorithm or does not match; `CertificateRejected` (``L02``) when the certificate
        is not in this store or not valid at ``at`` (default: now).
        """
        at = at or datetime.now(UTC)
        signature = root.find(f"{{{DS_NS}}}Signature")
        if signature is None:
            raise SignatureInvalid("no enveloped ds:Signature")
        cert_el = signature.find(f"{{{DS_NS}}}KeyInfo/{{{DS_NS}}}X509Data/{{{DS_NS}}}X509Certificate")
        if cert_el is None or not (cert_el.text or "").strip():
            raise SignatureInvalid("the signature carries no X.509 certificate in KeyInfo")
        try:
            der = base64.b64decode("".join(cert_el.text.split()), validate=True)
        except ValueError as exc:
            raise SignatureInvalid("the certificate in KeyInfo is not base64") from exc
        trusted = self._by_der.get(der)
        if trusted is None:  # whose certificate, and which store: after a key rotation, each side has one
            raise CertificateRejected(f"the signing certificate {_described(der)} is not in the trust store "
                                      f"{self.source}")
        if not trusted.valid_at(at):
            c = trusted.certificate
            raise CertificateRejected(
                f"certificate {trusted.fingerprint[:16]} is valid from {c.not_valid_before_utc:%Y-%m-%d} "
                f"to {c.not_valid_after_utc:%Y-%m-%d}, not at {at:%Y-%m-%d %H:%M}")
        config = SignatureConfiguration(
            location=_VERIFY_CONFIG.location, expect_references=1,
            signature_methods=_VERIFY_CONFIG.signature_methods,
            digest_algorithms=_VERIFY_CONFIG.digest_algorithms, verification_time=at,
        )
        try:
            result = _DocumentVerifier(root).verify(root, x509_cert=trusted.certificate, expect_config=config,
                                                    parser=safe_xml.hardened_parser())
        except InvalidCertificate as exc:
            raise CertificateRejected(str(exc)) from exc
        except (InvalidSignature, InvalidInput, SignXMLException) as exc:
            raise SignatureInvalid(f"signature check failed: {exc}") from exc
        except (ValueError, etree.LxmlError) as exc:  # malformed ds: elements signxml did not anticipate
            raise SignatureInvalid(f"signature unreadable: {exc}") from exc
        signed = result.signed_xml
        if signed is None or signed.tag != root.tag:
            raise SignatureInvalid("the signature does not cover the whole document")
        return Verified(root=signed, signer=trusted)
