"""Receipts and reports: built, signed, then read back through the one way in (`open_signed`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.dude.messages import (
    EventResult, Receipt, Report, build_receipt, build_report, open_signed, parse_receipt, parse_report,
)
from adapters.dude.signing import Signer, TrustStore, serialize
from gateway.codes import RejectCode
from gateway.errors import ReportInconsistent, SchemaViolation, SignatureInvalid, UnexpectedDocument
from tests.tools import xmllint_validates, xmlsec1_verifies

NOW = datetime(2026, 11, 29, 2, 5, tzinfo=UTC)


@pytest.fixture
def dude_signer(dev_keys) -> Signer:
    return Signer.from_files(dev_keys.emulator.key_file, dev_keys.emulator.cert_file)


@pytest.fixture
def gateway_trust(dev_keys) -> TrustStore:
    return TrustStore.from_dir(dev_keys.gateway.trust_dir)


def test_receipt_round_trip(dude_signer, gateway_trust, dev_keys, tmp_path: Path) -> None:
    receipt = Receipt(id_lot=str(uuid.uuid4()), received_at=NOW, status="REJETE", events_received=0,
                      reject_code=RejectCode.L05, reject_message="5 annoncés, 4 présents")
    data = serialize(dude_signer.sign(build_receipt(receipt)))
    (tmp_path / "ar.xml").write_bytes(data)
    assert xmllint_validates(tmp_path / "ar.xml")[0]
    assert xmlsec1_verifies(tmp_path / "ar.xml", dev_keys.emulator.cert_file)[0]
    back = parse_receipt(open_signed(data, trust=gateway_trust, expected="AccuseReception").root)
    assert back == receipt
    assert not back.accepted


def test_report_round_trip(dude_signer, gateway_trust, tmp_path: Path) -> None:
    report = Report(id_lot=str(uuid.uuid4()), processed_at=NOW, results=(
        EventResult("69001-1", 1, True), EventResult("69001-2", 3, False, RejectCode.E03, "identité différente")))
    data = serialize(dude_signer.sign(build_report(report)))
    (tmp_path / "cr.xml").write_bytes(data)
    assert xmllint_validates(tmp_path / "cr.xml")[0]
    back = parse_report(open_signed(data, trust=gateway_trust, expected="CompteRendu").root)
    assert back == report
    assert (back.accepted_count, back.rejected_count) == (1, 1)


def test_a_receipt_is_not_a_report(dude_signer, gateway_trust) -> None:
    data = serialize(dude_signer.sign(build_receipt(Receipt(str(uuid.uuid4()), NOW, "RECU", 3))))
    with pytest.raises(UnexpectedDocument):
        open_signed(data, trust=gateway_trust, expected="CompteRendu")


def test_report_signed_by_the_gateway_itself_is_refused(dev_keys, gateway_trust) -> None:
    """The gateway trusts DUDE's certificate for reports, not its own."""
    own = Signer.from_files(dev_keys.gateway.key_file, dev_keys.gateway.cert_file)
    data = serialize(own.sign(build_report(Report(str(uuid.uuid4()), NOW, ()))))
    with pytest.raises(Exception) as caught:
        open_signed(data, trust=gateway_trust, expected="CompteRendu")
    assert caught.value.code == "L02"


def test_signed_but_schema_invalid_is_l04(dude_signer, gateway_trust) -> None:
    root = build_receipt(Receipt(str(uuid.uuid4()), NOW, "RECU", 3))
    root[2].text = "PEUT-ETRE"  # Statut outside its enumeration, then signed
    with pytest.raises(SchemaViolation):
        open_signed(serialize(dude_signer.sign(root)), trust=gateway_trust, expected="AccuseReception")


def test_altered_report_is_l01(dude_signer, gateway_trust) -> None:
    report = Report(str(uuid.uuid4()), NOW, (EventResult("69001-2", 1, False, RejectCode.E01, "inconnu"),))
    data = serialize(dude_signer.sign(build_report(report)))
    forged = data.replace(b'statut="REJETE"', b'statut="ACCEPTE"')
    with pytest.raises(SignatureInvalid):
        open_signed(forged, trust=gateway_trust, expected="CompteRendu")


def test_report_whose_counts_lie_is_refused(dude_signer, gateway_trust) -> None:
    root = build_report(Report(str(uuid.uuid4()), NOW, (EventResult("69001-1", 1, True),)))
    root[2].text = "7"  # NombreAcceptes
    verified = open_signed(serialize(dude_signer.sign(root)), trust=gateway_trust, expected="CompteRendu")
    with pytest.raises(ReportInconsistent, match="counts") as raised:  # an UnexpectedDocument, refused alike
        parse_report(verified.root)
    assert (raised.value.announced, raised.value.found) == ((7, 0), (1, 0))
