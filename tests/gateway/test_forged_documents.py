"""Forged and replayed documents (brief §4, §6): a report signed by an unknown key or by an expired certificate,
a report for another envelope, a report or a receipt replayed from an earlier night. Through every door —
report polling, DUDE's callback, the sender's receipt check — each is refused, logged with its code (never
with personal data), and changes nothing in the store."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.dude.emulator import Emulator, EmulatorConfig
from adapters.dude.emulator.app import mock_transport
from adapters.dude.messages import EventResult, Receipt, Report, build_receipt, build_report
from adapters.dude.signing import Signer, serialize
from gateway.api.main import create_app
from gateway.context import Gateway
from gateway.keys import make_self_signed
from gateway.pipeline import dispatch, reconcile
from gateway.pipeline.run import run_batch
from gateway.store.models import DOC_RECEIPT, DOC_REPORT, documents_t, envelopes_t
from tests.factories import p3_line, write_export
from tests.gateway.test_reconcile import Clock, snapshot

CALLBACK = "/api/v1/dude/comptes-rendus"
PERSONAL = ("Lefèvre", "LEFEVRE", "Zoé", "06/05/2004", "2004-05-06", "1234567A")


class Unreachable(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)


class Answering(httpx.BaseTransport):
    def __init__(self, body: bytes) -> None:
        self.body = body

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=self.body, headers={"Content-Type": "application/xml"})


@dataclass
class Nights:
    gw: Gateway
    emulator: Emulator
    last_night: str  # envelope settled last night (TRAITE)
    awaiting: str  # tonight's envelope awaiting its report (RECU)
    unanswered: str  # tonight's envelope still without a receipt (ENVOYE: DUDE was unreachable)
    dude: Signer
    stranger: Signer
    expired: Signer

    def document(self, envelope_id: str, kind: str) -> bytes:
        with self.gw.engine.connect() as conn:
            return conn.execute(sa.select(documents_t.c.body).where(
                documents_t.c.envelope_id == envelope_id, documents_t.c.kind == kind)).scalar_one()

    def with_transport(self, transport: httpx.BaseTransport) -> Gateway:
        return Gateway(settings=self.gw.settings.model_copy(update={"send_attempts": 1}), engine=self.gw.engine,
                       transport=transport, sleep=lambda seconds: None)


@pytest.fixture
def nights(settings, dev_keys, registry_file, tmp_path):
    """Last night settled; tonight one envelope awaits its report (DUDE takes an hour) and one its receipt.
    The gateway also trusts an old DUDE certificate, expired since."""
    old_key, old_cert = make_self_signed("DUDE (ancien certificat)", not_before=datetime.now(UTC) - timedelta(days=400),
                                         days=365)
    (settings.gateway_trust_dir / "dude-ancien.cert.pem").write_bytes(old_cert)
    stranger_key, stranger_cert = make_self_signed("faux DUDE")
    clock = Clock()
    config = EmulatorConfig.for_settings(settings, registry_file=registry_file, ledger_path=None,
                                         report_delay_seconds=3600, clock=clock)
    with Emulator(config) as emu:
        gw = Gateway.open(settings.model_copy(update={"dude_url": "http://dude.test/dude/v1",
                                                      "report_wait_seconds": 0}),
                          transport=mock_transport(emu), sleep=lambda seconds: None)
        run_batch(gw, [write_export(tmp_path / "P3_69001_20261127.csv", [p3_line(id_evenement="1")])])
        clock.now += timedelta(hours=2)
        reconcile.poll_reports(gw, force=True)
        (last_night,) = [e for e, s in snapshot(gw)[1] if s == "TRAITE"]
        run_batch(gw, [write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="2")])])
        (awaiting,) = [e for e, s in snapshot(gw)[1] if s == "RECU"]
        down = Gateway(settings=gw.settings.model_copy(update={"send_attempts": 1}), engine=gw.engine,
                       transport=Unreachable(), sleep=lambda seconds: None)
        run_batch(down, [write_export(tmp_path / "P3_69001_20261129.csv", [p3_line(id_evenement="3")])])
        (unanswered,) = dispatch.unanswered_envelopes(gw)
        yield Nights(gw, emu, last_night, awaiting, unanswered,
                     dude=Signer.from_files(dev_keys.emulator.key_file, dev_keys.emulator.cert_file),
                     stranger=Signer(key_pem=stranger_key, cert_pem=stranger_cert),
                     expired=Signer(key_pem=old_key, cert_pem=old_cert))
        gw.close()


def report(signer: Signer, envelope_id: str, key: str = "69001-2") -> bytes:
    return serialize(signer.sign(build_report(Report(envelope_id, datetime.now(UTC), (EventResult(key, 1, True),)))))


def receipt(signer: Signer, envelope_id: str) -> bytes:
    return serialize(signer.sign(build_receipt(Receipt(envelope_id, datetime.now(UTC), "RECU", 1))))


#: case → (the report, the receipt) it forges; and the code each door must answer with.
REPORTS = {
    "cle-inconnue": lambda n: report(n.stranger, n.awaiting),
    "certificat-expire": lambda n: report(n.expired, n.awaiting),
    "autre-lot": lambda n: report(n.dude, str(uuid.uuid4())),
    "rejoue-nuit-precedente": lambda n: n.document(n.last_night, DOC_REPORT),
}
RECEIPTS = {
    "cle-inconnue": lambda n: receipt(n.stranger, n.unanswered),
    "certificat-expire": lambda n: receipt(n.expired, n.unanswered),
    "autre-lot": lambda n: receipt(n.dude, str(uuid.uuid4())),
    "rejoue-nuit-precedente": lambda n: n.document(n.last_night, DOC_RECEIPT),
}
CODES = {"cle-inconnue": "L02", "certificat-expire": "L02", "autre-lot": "DOC_MISMATCH",
         "rejoue-nuit-precedente": "DOC_MISMATCH"}


def no_personal_data(caplog) -> None:
    assert not [p for p in PERSONAL if p in caplog.text]


@pytest.mark.parametrize("case", sorted(REPORTS))
def test_a_forged_or_replayed_report_fetched_by_polling_is_refused(nights, case, caplog) -> None:
    caplog.set_level(logging.WARNING)
    forged = REPORTS[case](nights)
    before = snapshot(nights.gw)
    (polled,) = reconcile.poll_reports(nights.with_transport(Answering(forged)), envelope_ids=[nights.awaiting],
                                       force=True)
    assert polled.outcome is reconcile.ReportOutcome.NOT_READY  # as if nothing had come: polled again later
    assert snapshot(nights.gw) == before
    assert f"report refused {CODES[case]} (polling, for envelope {nights.awaiting})" in caplog.text
    if case == "certificat-expire":  # known, but out of its validity window: said so, with its dates
        assert "is valid from" in caplog.text
    no_personal_data(caplog)


@pytest.mark.parametrize("case", sorted(REPORTS))
def test_a_forged_or_replayed_report_pushed_to_the_callback_is_refused(nights, case, caplog) -> None:
    caplog.set_level(logging.WARNING)
    forged = REPORTS[case](nights)
    before = snapshot(nights.gw)
    with TestClient(create_app(nights.gw)) as api:
        answer = api.post(CALLBACK, content=forged, headers={"Content-Type": "application/xml"})
    if case == "rejoue-nuit-precedente":  # genuine, already applied: "already applied", nothing changes
        assert answer.status_code == 200 and answer.json()["outcome"] == "DUPLICATE"
    else:
        assert answer.status_code == (409 if CODES[case] == "DOC_MISMATCH" else 400)
        assert answer.json()["code"] == CODES[case]
        assert f"report refused {CODES[case]} (callback)" in caplog.text
    assert snapshot(nights.gw) == before
    no_personal_data(caplog)


@pytest.mark.parametrize("case", sorted(RECEIPTS))
def test_a_forged_or_replayed_receipt_is_refused_by_the_sender(nights, case, caplog) -> None:
    caplog.set_level(logging.WARNING)
    forged = RECEIPTS[case](nights)
    before = snapshot(nights.gw)
    sent = dispatch.transmit(nights.with_transport(Answering(forged)), nights.unanswered)
    assert sent.state == "ENVOYE" and f"[{CODES[case]}]" in sent.error  # to be sent again, same IdLot
    assert snapshot(nights.gw) == before
    with nights.gw.engine.connect() as conn:
        assert conn.execute(sa.select(envelopes_t.c.state).where(envelopes_t.c.id == nights.unanswered)
                            ).scalar_one() == "ENVOYE"
    assert "attempt 1/1 failed" in caplog.text and f"[{CODES[case]}]" in caplog.text
    no_personal_data(caplog)

    dispatch.send_envelope(nights.gw, nights.unanswered)  # the genuine DUDE: received, once
    assert dict(snapshot(nights.gw)[1])[nights.unanswered] == "RECU"
    assert nights.emulator.ledger_summary()["lots_processed_more_than_once"] == []
