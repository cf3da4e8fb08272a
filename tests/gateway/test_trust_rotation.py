"""DUDE rotates its key: the new certificate dropped into the trust folder is trusted at once, without a
restart, and the old one keeps working until it is removed (brief §6: rotation without a gap)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from adapters.dude.messages import Receipt, build_receipt, open_signed
from adapters.dude.signing import Signer, serialize
from gateway.errors import CertificateRejected
from gateway.keys import make_self_signed


def receipt_signed_by(signer: Signer) -> bytes:
    return serialize(signer.sign(build_receipt(Receipt(str(uuid.uuid4()), datetime.now(UTC), "RECU", 1))))


def test_a_new_dude_certificate_is_trusted_as_soon_as_it_is_in_the_folder(gw, dev_keys) -> None:
    old = Signer.from_files(dev_keys.emulator.key_file, dev_keys.emulator.cert_file)
    new_key, new_cert = make_self_signed("DUDE 2027")
    new = Signer(key_pem=new_key, cert_pem=new_cert)
    open_signed(receipt_signed_by(old), trust=gw.dude_trust, expected="AccuseReception")
    with pytest.raises(CertificateRejected):
        open_signed(receipt_signed_by(new), trust=gw.dude_trust, expected="AccuseReception")

    (gw.settings.gateway_trust_dir / "dude-2027.cert.pem").write_bytes(new_cert)

    open_signed(receipt_signed_by(new), trust=gw.dude_trust, expected="AccuseReception")
    open_signed(receipt_signed_by(old), trust=gw.dude_trust, expected="AccuseReception")  # no gap

    (gw.settings.gateway_trust_dir / "dude.cert.pem").unlink()  # the old key is retired
    with pytest.raises(CertificateRejected):
        open_signed(receipt_signed_by(old), trust=gw.dude_trust, expected="AccuseReception")


def test_a_folder_dropped_under_a_certificate_s_name_is_seen_by_a_running_gateway(gw, dev_keys) -> None:
    """The folder is read again when what it would read changes: a folder named ``*.pem`` (a mistaken ``cp -r``)
    is what `TrustStore.from_dir` refuses (``KEYS``, naming it), and the running gateway says so at once rather
    than going on with the certificates it read before, which ``gateway check`` would contradict."""
    from gateway.errors import KeyMaterialError

    assert len(gw.dude_trust) == 1
    (gw.settings.gateway_trust_dir / "dude-2027.cert.pem").mkdir()
    with pytest.raises(KeyMaterialError, match="dude-2027.cert.pem illisible : c'est un dossier"):
        len(gw.dude_trust)
