"""XMLDSig: what the gateway signs, xmlsec1 (a foreign verifier) accepts; what was altered, nobody accepts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from adapters.dude import safe_xml
from adapters.dude.envelope import OutgoingEvent, build_envelope, iter_events
from adapters.dude.events_xml import DS_NS
from adapters.dude.signing import Signer, TrustStore, serialize
from gateway.errors import CertificateRejected, KeyMaterialError, SignatureInvalid
from gateway.keys import make_self_signed
from tests.tools import xmlsec1_verifies
from tests.factories import make_record


def an_envelope(n: int = 3) -> etree._Element:
    return build_envelope([OutgoingEvent(make_record(id_evenement=str(i)), 1, "C") for i in range(n)],
                          id_lot=str(uuid.uuid4()), sender="PARCOURS3", recipient="DUDE",
                          produced_at=datetime.now(UTC))


@pytest.fixture
def signer(dev_keys) -> Signer:
    return Signer.from_files(dev_keys.gateway.key_file, dev_keys.gateway.cert_file)


@pytest.fixture
def dude_side_trust(dev_keys) -> TrustStore:
    """What the emulator trusts: the gateway's certificate."""
    return TrustStore.from_dir(dev_keys.emulator.trust_dir)


def test_signature_is_standard_xmldsig(signer, dev_keys, tmp_path: Path) -> None:
    signed = signer.sign(an_envelope())
    signature = signed[-1]
    assert signature.tag == f"{{{DS_NS}}}Signature"
    info = signature.find(f"{{{DS_NS}}}SignedInfo")
    algorithms = {etree.QName(el).localname: el.get("Algorithm") for el in info.iter() if el.get("Algorithm")}
    assert algorithms["CanonicalizationMethod"] == "http://www.w3.org/2001/10/xml-exc-c14n#"
    assert algorithms["SignatureMethod"] == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    assert algorithms["DigestMethod"] == "http://www.w3.org/2001/04/xmlenc#sha256"
    assert signature.find(f".//{{{DS_NS}}}X509Certificate") is not None
    path = tmp_path / "lot.xml"
    path.write_bytes(serialize(signed))
    ok, err = xmlsec1_verifies(path, dev_keys.gateway.cert_file)
    assert ok, err


def test_round_trip_returns_what_was_signed(signer, dude_side_trust) -> None:
    data = serialize(signer.sign(an_envelope(5)))
    verified = dude_side_trust.verify(safe_xml.parse(data))
    assert len(list(iter_events(verified.root))) == 5
    assert verified.signer.certificate == signer.certificate


def test_tampered_content_is_refused_by_us_and_by_xmlsec1(signer, dude_side_trust, dev_keys, tmp_path) -> None:
    data = serialize(signer.sign(an_envelope()))
    tampered = data.replace(b"<Prenom>Zo\xc3\xa9</Prenom>", b"<Prenom>Zoe</Prenom>", 1)
    assert tampered != data
    with pytest.raises(SignatureInvalid) as caught:
        dude_side_trust.verify(safe_xml.parse(tampered))
    assert caught.value.code == "L01"
    path = tmp_path / "altere.xml"
    path.write_bytes(tampered)
    assert not xmlsec1_verifies(path, dev_keys.gateway.cert_file)[0]


def test_missing_signature_is_l01(dude_side_trust) -> None:
    with pytest.raises(SignatureInvalid):
        dude_side_trust.verify(an_envelope())


def test_unknown_signer_is_l02_naming_the_certificate_and_the_trust_store(dude_side_trust, dev_keys) -> None:
    """After a key rotation, at 2 a.m.: whose certificate was refused, and by which side's trust store (both
    sides said "the signing certificate is not in the trust store")."""
    key, cert = make_self_signed("intrus")
    stranger = Signer(key_pem=key, cert_pem=cert)
    with pytest.raises(CertificateRejected) as caught:
        dude_side_trust.verify(stranger.sign(an_envelope()))
    assert caught.value.code == "L02"
    fingerprint = stranger.certificate.fingerprint(hashes.SHA256()).hex()[:16]
    assert "CN=intrus" in caught.value.message and f"SHA-256 {fingerprint}" in caught.value.message
    assert caught.value.message.endswith(f"is not in the trust store {dev_keys.emulator.trust_dir}")


@pytest.mark.parametrize("start,days", [(-800, 730), (30, 365)], ids=["expire", "pas-encore-valide"])
def test_certificate_outside_its_validity_is_l02(start: int, days: int) -> None:
    key, cert = make_self_signed("passerelle", not_before=datetime.now(UTC) + timedelta(days=start), days=days)
    signer = Signer(key_pem=key, cert_pem=cert)
    trust = TrustStore.from_pem(cert)
    with pytest.raises(CertificateRejected):
        trust.verify(signer.sign(an_envelope()))


def test_rotation_without_a_gap(signer, dev_keys) -> None:
    """Old and new certificates both in the store: documents signed by either are accepted."""
    new_key, new_cert = make_self_signed("passerelle 2027")
    trust = TrustStore.from_pem(dev_keys.gateway.cert_file.read_bytes(), new_cert)
    assert len(trust) == 2
    trust.verify(signer.sign(an_envelope()))
    trust.verify(Signer(key_pem=new_key, cert_pem=new_cert).sign(an_envelope()))


def test_ecdsa_p256_key_signs_and_xmlsec1_agrees(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "passerelle ec")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    signed = Signer(key_pem=key_pem, cert_pem=cert_pem).sign(an_envelope())
    TrustStore.from_pem(cert_pem).verify(signed)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "lot.xml").write_bytes(serialize(signed))
    ok, err = xmlsec1_verifies(tmp_path / "lot.xml", tmp_path / "cert.pem")
    assert ok, err


def test_password_protected_key(tmp_path: Path) -> None:
    key, cert = make_self_signed("passerelle", password=b"s3cret")
    with pytest.raises(KeyMaterialError):
        Signer(key_pem=key, cert_pem=cert)
    with pytest.raises(KeyMaterialError):
        Signer(key_pem=key, cert_pem=cert, password=b"wrong")
    Signer(key_pem=key, cert_pem=cert, password=b"s3cret").sign(an_envelope())


def test_a_certificate_exported_with_accented_attributes_around_it_signs(dude_side_trust, dev_keys) -> None:
    """``openssl pkcs12 -nokeys`` writes "Bag Attributes" before the PEM block, with the friendlyName the PKI gave
    (accents included): the certificate loaded, then the signer stopped on a ``UnicodeDecodeError``."""
    exported = ("Bag Attributes\n    friendlyName: passerelle-été\nsubject=CN=PARCOURS3 passerelle\n".encode()
                + dev_keys.gateway.cert_file.read_bytes())
    signer = Signer(key_pem=dev_keys.gateway.key_file.read_bytes(), cert_pem=exported)
    assert dude_side_trust.verify(safe_xml.parse(serialize(signer.sign(an_envelope())))).root is not None


def test_key_and_certificate_must_match() -> None:
    key, _ = make_self_signed("a")
    _, other_cert = make_self_signed("b")
    with pytest.raises(KeyMaterialError, match="ne correspond pas"):
        Signer(key_pem=key, cert_pem=other_cert)


def test_small_rsa_key_is_refused() -> None:
    key, cert = make_self_signed("faible", key_size=1024)
    with pytest.raises(KeyMaterialError, match="2048"):
        Signer(key_pem=key, cert_pem=cert)


def test_signing_in_place_gives_the_same_standard_signature(signer, dude_side_trust, dev_keys, tmp_path) -> None:
    """The sealing path signs the envelope's own tree (no copy): same bytes as signing a copy, and
    xmlsec1 accepts them."""
    envelope = an_envelope(3)
    expected = serialize(signer.sign(envelope))
    signed = signer.sign_in_place(envelope)
    assert signed is envelope
    assert serialize(signed) == expected  # RSA PKCS#1 v1.5 is deterministic: same document, same bytes
    path = tmp_path / "lot.xml"
    path.write_bytes(expected)
    assert xmlsec1_verifies(path, dev_keys.gateway.cert_file)[0]
    assert len(list(iter_events(dude_side_trust.verify(safe_xml.parse(expected)).root))) == 3


def test_verifying_leaves_the_received_tree_as_it_was(signer, dude_side_trust) -> None:
    """The verifier checks the caller's tree without copying it first: it must not modify it (signxml
    removes the signature to compute the digest, from a copy), and what it returns is another tree."""
    received = serialize(signer.sign(an_envelope(3)))
    root = safe_xml.parse(received)
    verified = dude_side_trust.verify(root)
    assert serialize(root) == received
    assert root.find(f"{{{DS_NS}}}Signature") is not None
    assert verified.root is not root and verified.root.find(f"{{{DS_NS}}}Signature") is None
    assert dude_side_trust.verify(root).root is not None  # and it can be checked again
