"""Receiving envelopes: the receipt, the envelope-level rejects L01–L07, and idempotency (brief §4)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from adapters.dude.events_xml import q
from adapters.dude.schema import SCHEMA_FILE
from adapters.dude.signing import Signer, TrustStore
from gateway.keys import make_self_signed

FIXTURES = Path(__file__).resolve().parents[4] / "fixtures" / "dude"
XMLSEC1, XMLLINT = shutil.which("xmlsec1"), shutil.which("xmllint")


def test_a_valid_envelope_gets_a_signed_recu_receipt(emulator, make_event, make_lot, read_receipt, keys) -> None:
    id_lot = str(uuid.uuid4())
    answer = emulator.receive(make_lot([make_event(), make_event()], id_lot=id_lot))
    receipt = read_receipt(answer)  # signed by DUDE's key, valid against the XSD
    assert (receipt.id_lot, receipt.status, receipt.events_received, receipt.reject_code) == (id_lot, "RECU", 2, None)
    assert TrustStore.from_dir(keys.gateway.trust_dir).verify(etree.fromstring(answer.body)).signer is not None
    summary = emulator.ledger_summary()
    assert summary["lots_by_status"] == {"RECU": 1} and summary["events_applied"] == 2


@pytest.mark.skipif(not (XMLSEC1 and XMLLINT), reason="needs Debian's xmlsec1 and xmllint")
def test_foreign_tools_accept_the_receipt_and_the_report(emulator, make_event, make_lot, keys, tmp_path) -> None:
    id_lot = str(uuid.uuid4())
    receipt = emulator.receive(make_lot([make_event(), make_event(identifiant_pe="9999999Z")], id_lot=id_lot))
    report = emulator.report(id_lot)
    assert report.status_code == 200
    for name, body in (("receipt.xml", receipt.body), ("report.xml", report.body)):
        path = tmp_path / name
        path.write_bytes(body)
        verify = subprocess.run([XMLSEC1, "--verify", "--trusted-pem", str(keys.emulator.cert_file), str(path)],
                                capture_output=True, text=True)
        assert verify.returncode == 0 and "OK" in verify.stderr, verify.stderr
        lint = subprocess.run([XMLLINT, "--noout", "--nonet", "--schema", str(SCHEMA_FILE), str(path)],
                              capture_output=True, text=True)
        assert lint.returncode == 0, lint.stderr


def test_a_tampered_envelope_is_refused_l01_and_not_recorded(emulator, make_event, make_lot, read_receipt) -> None:
    id_lot = str(uuid.uuid4())
    good = make_lot([make_event(nom="Dupont")], id_lot=id_lot)
    tampered = good.replace(b"<Nom>Dupont</Nom>", b"<Nom>Durand</Nom>", 1)
    assert tampered != good
    receipt = read_receipt(emulator.receive(tampered))
    assert (receipt.id_lot, receipt.status, receipt.reject_code, receipt.events_received) == (
        id_lot, "REJETE", "L01", 0)
    assert emulator.ledger_summary()["lots"] == 0
    # nothing was recorded: the sender may post the genuine envelope under the same IdLot
    assert read_receipt(emulator.receive(good)).status == "RECU"


def test_an_unknown_signer_is_refused_l02(emulator, make_event, make_lot, read_receipt) -> None:
    key_pem, cert_pem = make_self_signed("inconnu")
    stranger = Signer(key_pem=key_pem, cert_pem=cert_pem)
    receipt = read_receipt(emulator.receive(make_lot([make_event()], signer=stranger)))
    assert (receipt.status, receipt.reject_code) == ("REJETE", "L02")
    assert emulator.ledger_summary()["lots"] == 0


def test_an_expired_gateway_certificate_is_refused_l02(make_emulator, keys, make_event, make_lot, read_receipt,
                                                       tmp_path) -> None:
    key_pem, cert_pem = make_self_signed("PARCOURS3 ancienne", not_before=datetime.now(UTC) - timedelta(days=400),
                                         days=30)
    trust_dir = tmp_path / "trust"
    shutil.copytree(keys.emulator.trust_dir, trust_dir)
    (trust_dir / "ancienne.cert.pem").write_bytes(cert_pem)  # trusted, but its window has passed
    emulator = make_emulator(trust_dir=trust_dir)
    old_signer = Signer(key_pem=key_pem, cert_pem=cert_pem)
    receipt = read_receipt(emulator.receive(make_lot([make_event()], signer=old_signer)))
    assert (receipt.status, receipt.reject_code) == ("REJETE", "L02")


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("rejet-*.xml")), ids=lambda p: p.stem)
def test_reject_vectors(emulator, read_receipt, path: Path) -> None:
    """Each file is refused with the code its name carries: a signed receipt if its IdLot can be read,
    else a problem document; and none is recorded."""
    expected = path.stem.split("-")[1]
    answer = emulator.receive(path.read_bytes())
    if answer.status_code == 200:
        receipt = read_receipt(answer)
        assert (receipt.status, receipt.reject_code) == ("REJETE", expected)
    else:
        assert (answer.status_code, answer.content_type) == (400, "application/problem+json")
        problem = answer.json()
        assert (problem["status"], problem["code"], problem["type"]) == (400, expected, "about:blank")
        assert problem["title"] and problem["detail"]
    assert emulator.ledger_summary()["lots"] == 0


def test_hostile_documents_without_readable_idlot_get_a_400_problem(emulator) -> None:
    answer = emulator.receive(b"<LotEvenements")
    assert answer.status_code == 400 and answer.json()["code"] == "L03"


def _set(local: str, text: str):
    def change(root: etree._Element) -> None:
        root.find(f".//{q(local)}").text = text
    return change


@pytest.mark.parametrize(("code", "change"), [
    ("L04", _set("Modalite", "XXX")),
    ("L04", _set("VersionSchema", "2.0")),
    ("L05", _set("NombreEvenements", "3")),
], ids=["L04-modalite", "L04-version", "L05-compte"])
def test_signed_but_faulty_envelopes_are_refused_and_recorded(emulator, make_event, make_lot, read_receipt,
                                                              code: str, change) -> None:
    id_lot = str(uuid.uuid4())
    body = make_lot([make_event(), make_event()], id_lot=id_lot, before_signing=change)
    first = emulator.receive(body)
    receipt = read_receipt(first)
    assert (receipt.id_lot, receipt.status, receipt.reject_code, receipt.events_received) == (id_lot, "REJETE", code, 0)
    assert receipt.reject_message
    summary = emulator.ledger_summary()
    assert summary["lots_by_code"] == {code: 1} and summary["events"] == 0
    assert emulator.receive(body).body == first.body  # the first receipt, again
    assert emulator.report(id_lot).status_code == 404 and emulator.report(id_lot).json()["code"] == "NO_REPORT"


def test_schema_reject_message_names_the_event_not_the_value(emulator, make_event, make_lot, read_receipt) -> None:
    event = make_event()
    body = make_lot([event], before_signing=_set("Nom", " Espace-Devant"))
    receipt = read_receipt(emulator.receive(body))
    assert receipt.reject_code == "L04"
    assert f"12345-{event.record['id_evenement']}" in receipt.reject_message
    assert "Espace" not in receipt.reject_message


def test_an_unauthorised_sender_is_refused_l06(emulator, make_event, make_lot, read_receipt) -> None:
    receipt = read_receipt(emulator.receive(make_lot([make_event()], sender="INTRUS")))
    assert (receipt.status, receipt.reject_code) == ("REJETE", "L06")


def test_too_many_events_is_refused_l07(make_emulator, make_event, make_lot, read_receipt) -> None:
    emulator = make_emulator(max_events=3)
    assert read_receipt(emulator.receive(make_lot([make_event() for _ in range(3)]))).status == "RECU"
    receipt = read_receipt(emulator.receive(make_lot([make_event() for _ in range(4)])))
    assert (receipt.status, receipt.reject_code) == ("REJETE", "L07")


def test_a_body_over_the_size_limit_is_refused_before_parsing(make_emulator, make_event, make_lot) -> None:
    emulator = make_emulator(max_bytes=2_000)
    answer = emulator.receive(make_lot([make_event() for _ in range(5)]))
    assert (answer.status_code, answer.json()["code"]) == (413, "L07")
    assert emulator.ledger_summary()["lots"] == 0


def test_posting_the_same_idlot_twice_returns_the_first_receipt_and_processes_nothing(
        emulator, make_event, make_lot, clock) -> None:
    id_lot = str(uuid.uuid4())
    body = make_lot([make_event(), make_event(), make_event(identifiant_pe="9999999Z")], id_lot=id_lot)
    first = emulator.receive(body)
    clock.advance(60)
    again = emulator.receive(body)
    # even a different envelope under the same IdLot is not processed: the IdLot is the identity
    other = emulator.receive(make_lot([make_event()], id_lot=id_lot))
    assert again.body == first.body and other.body == first.body
    summary = emulator.ledger_summary()
    assert summary["lots"] == 1 and summary["lot_replays"] == 2
    assert summary["receptions"] == 3 and summary["events_applied"] == 2
    assert summary["events_applied_more_than_once"] == [] and summary["lots_processed_more_than_once"] == []


def test_concurrent_posts_of_one_lot_are_processed_once(emulator, make_event, make_lot) -> None:
    """Retries racing each other (a gateway timeout then a resend) still process the lot once."""
    body = make_lot([make_event() for _ in range(20)])
    others = [make_lot([make_event()]) for _ in range(3)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(emulator.receive, [body] * 6 + others))
    assert len({a.body for a in answers[:6]}) == 1
    summary = emulator.ledger_summary()
    assert (summary["lots"], summary["lot_replays"], summary["events_applied"]) == (4, 5, 23)
    assert summary["events_applied_more_than_once"] == [] and summary["lots_processed_more_than_once"] == []


def test_a_gateway_certificate_added_to_the_trust_folder_is_trusted_without_a_restart(
        make_emulator, keys, make_event, make_lot, read_receipt, tmp_path) -> None:
    """`gateway emulator serve` on a fresh folder makes its own keys only (never the gateway's); the gateway's
    certificate comes later (`gateway keys init`). Read once at start, the trust folder left every envelope
    refused (L02) until a restart; DUDE takes a new gateway certificate without one too."""
    trust_dir = tmp_path / "trust"
    trust_dir.mkdir()
    (trust_dir / "autre.cert.pem").write_bytes(make_self_signed("PARCOURS3 autre")[1])
    emulator = make_emulator(trust_dir=trust_dir)
    first = read_receipt(emulator.receive(make_lot([make_event()])))
    assert (first.status, first.reject_code) == ("REJETE", "L02")
    shutil.copy(keys.gateway.cert_file, trust_dir / "gateway.cert.pem")
    second = read_receipt(emulator.receive(make_lot([make_event(id_evenement="2")])))
    assert second.status == "RECU", second
