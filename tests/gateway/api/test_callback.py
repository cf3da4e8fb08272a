"""DUDE's callback: a genuine report is applied, a second copy is harmless, and anything forged, tampered
with, signed by an unknown key, for another envelope or not a report at all is refused with its code
and leaves every state as it was (brief §4, §6)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from lxml import etree

from adapters.dude.emulator.app import mock_transport
from adapters.dude.emulator.config import EmulatorConfig
from adapters.dude.emulator.core import Emulator
from adapters.dude.events_xml import q
from adapters.dude.messages import EventResult, Receipt, Report, build_receipt, build_report
from adapters.dude.signing import Signer, serialize
from gateway.api.main import create_app
from gateway.codes import RejectCode
from gateway.keys import make_self_signed
from gateway.pipeline.run import run_batch
from tests.backends import BACKENDS
from tests.gateway.api.conftest import person
from tests.gateway.api.test_openapi_truth import codes
from tests.gateway.test_reconcile import Clock, gateway_for, only_envelope, snapshot
from tests.factories import p3_line, write_export

CALLBACK = "/api/v1/dude/comptes-rendus"
XML = {"Content-Type": "application/xml"}


@pytest.fixture
def awaiting(settings, dev_keys, registry_file, tmp_path):
    """A gateway whose only envelope awaits its report (DUDE takes an hour), and the API over it."""
    clock = Clock()
    config = EmulatorConfig.for_settings(settings, registry_file=registry_file, ledger_path=None,
                                         report_delay_seconds=3600, clock=clock)
    with Emulator(config) as emu:
        gw = gateway_for(settings, mock_transport(emu), report_wait_seconds=0)
        lines = [p3_line(id_evenement=str(i), **person("69001")) for i in range(3)]
        lines.append(p3_line(id_evenement="9", **{**person("69001"), "identifiant_pe": "9999999Z"}))
        run_batch(gw, [write_export(tmp_path / "P3_69001_20261128.csv", lines)])
        with TestClient(create_app(gw)) as client:
            yield gw, emu, clock, client
        gw.close()


def signed(signer: Signer, envelope_id: str, results: tuple[EventResult, ...], *, extra: bool = False) -> bytes:
    root = build_report(Report(envelope_id, datetime.now(UTC), results))
    if extra:  # a construct the XSD does not allow, signed all the same
        etree.SubElement(root, q("Intrus")).text = "x"
    return serialize(signer.sign(root))


def test_a_genuine_report_is_applied_and_a_second_copy_is_harmless(awaiting) -> None:
    gw, emu, clock, client = awaiting
    envelope_id = only_envelope(gw)
    clock.now += timedelta(hours=2)
    report = emu.report(envelope_id).body

    applied = client.post(CALLBACK, content=report, headers=XML)
    assert applied.status_code == 200
    assert applied.json() == {"envelope_id": envelope_id, "outcome": "APPLIED", "accepted": 3, "rejected": 1,
                              "message": "compte rendu appliqué"}
    events, envelopes, _ = snapshot(gw)
    assert envelopes == [(envelope_id, "TRAITE")]
    assert sorted({(state, code) for _, _, state, code in events}) == [("ACCEPTE", None), ("REJETE", "E01")]

    after = snapshot(gw)
    again = client.post(CALLBACK, content=report, headers=XML)
    assert again.status_code == 200 and again.json()["outcome"] == "DUPLICATE"
    assert snapshot(gw) == after


def test_a_report_not_labelled_xml_is_refused_before_it_is_read(awaiting) -> None:
    """No token guards this door, only the signature: a ``text/plain`` body, which a page in a browser may post
    across sites without asking, was read and applied all the same."""
    gw, emu, clock, client = awaiting
    envelope_id = only_envelope(gw)
    clock.now += timedelta(hours=2)
    report = emu.report(envelope_id).body
    before = snapshot(gw)
    for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}):
        refused = client.post(CALLBACK, content=report, headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE"), headers
        assert "Content-Type: application/xml" in refused.json()["detail"]
    assert snapshot(gw) == before
    for label in ("text/xml", "application/xml; charset=utf-8"):  # what a DUDE may send
        assert client.post(CALLBACK, content=report, headers={"Content-Type": label}).status_code == 200


def refusals(dev_keys, envelope_id: str) -> dict[str, tuple[bytes, int, str]]:
    dude = Signer.from_files(dev_keys.emulator.key_file, dev_keys.emulator.cert_file)
    stranger_key, stranger_cert = make_self_signed("faux DUDE")
    stranger = Signer(key_pem=stranger_key, cert_pem=stranger_cert)
    accept_all = tuple(EventResult(f"69001-{i}", 1, True) for i in (0, 1, 2, 9))
    genuine_shape = signed(dude, envelope_id, accept_all[:-1] + (
        EventResult("69001-9", 1, False, RejectCode.E01, "inconnu"),))
    value = genuine_shape.index(b"SignatureValue>") + len(b"SignatureValue>")
    return {
        "cle-inconnue": (signed(stranger, envelope_id, accept_all), 400, "L02"),
        "verdict-altere": (genuine_shape.replace(b'statut="REJETE"', b'statut="ACCEPTE"'), 400, "L01"),
        "signature-alteree": (genuine_shape[:value] + bytes([genuine_shape[value] ^ 1]) + genuine_shape[value + 1:],
                              400, "L01"),
        "sans-signature": (etree.tostring(build_report(Report(envelope_id, datetime.now(UTC), accept_all))),
                           400, "L01"),
        "hors-schema": (signed(dude, envelope_id, accept_all, extra=True), 400, "L04"),
        "pas-du-xml": (b"{\"IdLot\": 1}", 400, "L03"),
        "entite-externe": (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                           b'<CompteRendu>&e;</CompteRendu>', 400, "L03"),
        "vide": (b"", 400, "L03"),
        # A well-signed document that is not a report: the request is wrong (400), not the gateway's state.
        "accuse-de-reception": (serialize(dude.sign(build_receipt(Receipt(envelope_id, datetime.now(UTC), "RECU",
                                                                          4)))), 400, "DOC_MISMATCH"),
        "racine-etrangere": (b'<CompteRendu xmlns="urn:autre"><IdLot>x</IdLot></CompteRendu>', 400, "DOC_MISMATCH"),
        "autre-lot": (signed(dude, str(uuid.uuid4()), accept_all), 409, "DOC_MISMATCH"),
        "evenement-etranger": (signed(dude, envelope_id, accept_all + (EventResult("69001-12345", 1, True),)),
                               409, "DOC_MISMATCH"),
    }


CASES = ["cle-inconnue", "verdict-altere", "signature-alteree", "sans-signature", "hors-schema", "pas-du-xml",
         "entite-externe", "vide", "accuse-de-reception", "racine-etrangere", "autre-lot", "evenement-etranger"]

#: Words of the English the reconciliation writes in its log, which a refusal once carried as its detail.
ENGLISH = ("report", "envelope", "expected", "which", "got ", " for ", "failed", "mismatch", "check")


@pytest.mark.parametrize("case", CASES)
def test_anything_but_a_genuine_report_is_refused_and_changes_nothing(awaiting, dev_keys, case) -> None:
    gw, _, _, client = awaiting
    envelope_id = only_envelope(gw)
    before = snapshot(gw)
    body, status, code = refusals(dev_keys, envelope_id)[case]
    refused = client.post(CALLBACK, content=body, headers=XML)
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["code"] == code and problem["status"] == status
    assert problem["detail"].startswith(("compte rendu ", "document refusé")), problem
    assert not any(word in problem["detail"].replace(CALLBACK_NS, "") for word in ENGLISH), problem
    assert snapshot(gw) == before


CALLBACK_NS = "urn:fr:spe:dude:echanges:v1"


def test_a_document_that_is_not_a_report_is_told_which_root_was_expected(awaiting, dev_keys) -> None:
    """DUDE (or whoever) posted its receipt where reports go: a 400 naming what is awaited and what came, in French."""
    gw, _, _, client = awaiting
    body = refusals(dev_keys, only_envelope(gw))["accuse-de-reception"][0]
    problem = client.post(CALLBACK, content=body, headers=XML).json()
    assert problem["detail"] == (f"document refusé : un CompteRendu de l'espace de noms {CALLBACK_NS} est attendu ici, "
                                 "reçu « AccuseReception »")
    stranger = client.post(CALLBACK, content=refusals(dev_keys, "x")["racine-etrangere"][0], headers=XML).json()
    assert stranger["detail"].endswith("reçu « CompteRendu » de l'espace de noms urn:autre")
    # unsigned, so anyone's: its names are said, but cut (a namespace has no length limit)
    long = f'<CompteRendu xmlns="urn:{"x" * 5000}"><IdLot>x</IdLot></CompteRendu>'.encode()
    cut = client.post(CALLBACK, content=long, headers=XML).json()
    assert cut["status"] == 400 and len(cut["detail"]) < 300 and cut["detail"].endswith("x…")


def test_the_callback_needs_no_token_but_a_report_over_the_size_limit_is_refused(awaiting) -> None:
    gw, _, _, _ = awaiting
    gw.settings = gw.settings.model_copy(update={"max_document_bytes": 1000})
    before = snapshot(gw)
    with TestClient(create_app(gw)) as small:
        refused = small.post(CALLBACK, content=b"<CompteRendu>" + b" " * 2000 + b"</CompteRendu>", headers=XML)
    assert refused.status_code == 413 and refused.json()["code"] == "TOO_LARGE"
    assert snapshot(gw) == before



@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_a_report_whose_counts_contradict_its_results_is_a_422_naming_both(awaiting, dev_keys) -> None:
    """Well signed, for the awaited envelope, but announcing 4 accepted where its results accept 3: the document
    contradicts itself, which is DUDE's to fix (422), not a conflict with our state (the 409 it used to share)."""
    gw, _, _, client = awaiting
    envelope_id = only_envelope(gw)
    results = tuple(EventResult(f"69001-{i}", 1, True) for i in (0, 1, 2)) + (
        EventResult("69001-9", 1, False, RejectCode.E01, "inconnu"),)
    root = build_report(Report(envelope_id, datetime.now(UTC), results))
    root.find(q("NombreAcceptes")).text = "4"  # then signed: the signature is good, the counts are not
    dude = Signer.from_files(dev_keys.emulator.key_file, dev_keys.emulator.cert_file)
    before = snapshot(gw)

    refused = client.post(CALLBACK, content=serialize(dude.sign(root)), headers=XML)
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["code"] == "REPORT_INCONSISTENT" and problem["status"] == 422
    assert problem["detail"] == ("compte rendu incohérent : comptes annoncés 4 acceptés / 1 rejetés, résultats 3 / 1 "
                                 "; rien n'a changé")
    documented = client.get("/openapi.json").json()["paths"][CALLBACK]["post"]["responses"]["422"]
    assert codes(documented) == ["REPORT_INCONSISTENT"]
    assert snapshot(gw) == before  # every event and the envelope as they were: still awaiting a report
    assert client.post(CALLBACK, content=serialize(dude.sign(build_report(Report(
        envelope_id, datetime.now(UTC), results)))), headers=XML).status_code == 200  # the true one still applies
