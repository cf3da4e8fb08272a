"""Reports that come twice, late, never, or forged; receipts that lie; sends cut in the middle."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from adapters.dude.emulator.app import mock_transport
from adapters.dude.emulator.config import EmulatorConfig
from adapters.dude.emulator.core import Emulator
from adapters.dude.events_xml import q
from adapters.dude.messages import EventResult, Report, build_report
from adapters.dude.signing import Signer, serialize
from gateway.codes import RejectCode
from gateway.context import Gateway
from gateway.errors import CertificateRejected, SignatureInvalid, UnexpectedDocument
from gateway.keys import make_self_signed
from gateway.pipeline import dispatch, reconcile
from gateway.pipeline.reconcile import AppliedReport, ReportOutcome, apply_report
from gateway.pipeline.run import run_batch
from gateway.store.models import envelopes_t, events_t, history_t
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export

#: Every test here runs on SQLite and on PostgreSQL (tests/backends.py).
database_url = on_both_backends()


def snapshot(gw) -> tuple:
    with gw.engine.connect() as conn:
        events = conn.execute(sa.select(events_t.c.key, events_t.c.version, events_t.c.state,
                                        events_t.c.reject_code).order_by(events_t.c.id)).all()
        envelopes = conn.execute(sa.select(envelopes_t.c.id, envelopes_t.c.state)).all()
        history = conn.execute(sa.select(sa.func.count()).select_from(history_t)).scalar_one()
    return [tuple(e) for e in events], [tuple(e) for e in envelopes], history


def gateway_for(settings, transport: httpx.BaseTransport, *, clock=None, **updates) -> Gateway:
    """A gateway on ``settings`` with some of them changed, talking through ``transport``."""
    extra = {"clock": clock} if clock else {}
    return Gateway.open(settings.model_copy(update={"dude_url": "http://dude.test/dude/v1", **updates}),
                        transport=transport, sleep=lambda seconds: None, **extra)


def only_envelope(gw) -> str:
    with gw.engine.connect() as conn:
        return conn.execute(sa.select(envelopes_t.c.id)).scalar_one()


def night(tmp_path: Path, n: int = 5, name: str = "P3_69001_20261128.csv") -> Path:
    lines = [p3_line(id_evenement=str(i)) for i in range(n)]
    lines.append(p3_line(id_evenement="99", identifiant_pe="7654321Z"))  # E01 at DUDE
    return write_export(tmp_path / name, lines)


def test_a_report_received_twice_changes_nothing_the_second_time(gw, emulator, tmp_path: Path) -> None:
    run_batch(gw, [night(tmp_path)])
    before = snapshot(gw)
    report = emulator.report(only_envelope(gw)).body
    assert apply_report(gw, report, via="callback").outcome is ReportOutcome.DUPLICATE
    assert snapshot(gw) == before


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def slow_dude(settings, dev_keys, registry_file):
    """An emulator whose reports take an hour, on a clock the test moves."""
    clock = Clock()
    config = EmulatorConfig.for_settings(settings, registry_file=registry_file, ledger_path=None,
                                         report_delay_seconds=3600, clock=clock)
    with Emulator(config) as emu:
        yield emu, clock


def test_no_report_in_time_gives_sans_reponse_then_a_late_report_still_settles(settings, slow_dude, tmp_path):
    emu, dude_clock = slow_dude
    clock = Clock()
    gw = gateway_for(settings, mock_transport(emu), clock=clock, report_wait_seconds=0, report_timeout_seconds=600,
                     report_max_polls=2)
    summary = run_batch(gw, [night(tmp_path)])
    assert summary.states == {"TRANSMIS": 6}
    envelope_id = only_envelope(gw)

    clock.now += timedelta(seconds=601)  # past the time-out: polled again, report_max_polls times
    reconcile.poll_reports(gw, force=True)
    assert snapshot(gw)[1] == [(envelope_id, "RECU")]
    reconcile.poll_reports(gw, force=True)
    events, envelopes, _ = snapshot(gw)
    assert envelopes == [(envelope_id, "SANS_REPONSE")]
    assert {state for _, _, state, _ in events} == {"SANS_REPONSE"}

    dude_clock.now += timedelta(hours=2)  # DUDE finally produces it; it is pushed to the callback
    outcome = apply_report(gw, emu.report(envelope_id).body, via="callback")
    assert outcome.outcome is ReportOutcome.APPLIED
    events, envelopes, _ = snapshot(gw)
    assert envelopes == [(envelope_id, "TRAITE")]
    assert sorted({(state, code) for _, _, state, code in events}) == [("ACCEPTE", None), ("REJETE", "E01")]
    gw.close()


def forged_report(signer: Signer, envelope_id: str, results: tuple[EventResult, ...]) -> bytes:
    return serialize(signer.sign(build_report(Report(envelope_id, datetime.now(UTC), results))))


def test_forged_reports_are_refused_and_change_nothing(settings, slow_dude, dev_keys, tmp_path: Path) -> None:
    gw = gateway_for(settings, mock_transport(slow_dude[0]), report_wait_seconds=0)
    run_batch(gw, [night(tmp_path)])  # DUDE's genuine report is an hour away: the envelope awaits it
    envelope_id = only_envelope(gw)
    before = snapshot(gw)
    accept_all = tuple(EventResult(f"69001-{i}", 1, True) for i in (0, 1, 2, 3, 4, 99))
    dude = Signer.from_files(dev_keys.emulator.key_file, dev_keys.emulator.cert_file)
    stranger_key, stranger_cert = make_self_signed("faux DUDE")

    with pytest.raises(CertificateRejected):  # signed by an unknown key
        apply_report(gw, forged_report(Signer(key_pem=stranger_key, cert_pem=stranger_cert), envelope_id, accept_all))
    genuine_shape = forged_report(dude, envelope_id, accept_all[:-1] + (
        EventResult("69001-99", 1, False, RejectCode.E01, "inconnu"),))
    with pytest.raises(SignatureInvalid):  # DUDE's signature, one verdict changed afterwards
        apply_report(gw, genuine_shape.replace(b'statut="REJETE"', b'statut="ACCEPTE"'))
    with pytest.raises(UnexpectedDocument):  # well signed, but for another envelope
        apply_report(gw, forged_report(dude, str(uuid.uuid4()), accept_all))
    with pytest.raises(UnexpectedDocument):  # well signed, right envelope, an event it never held
        apply_report(gw, forged_report(dude, envelope_id, accept_all + (EventResult("69001-12345", 1, True),)))
    assert snapshot(gw) == before
    gw.close()


def test_a_polled_report_whose_counts_contradict_its_results_is_refused_and_polled_again(
        settings, slow_dude, dev_keys, tmp_path: Path, monkeypatch, caplog) -> None:
    """`ReportInconsistent` (the callback's 422) is an `UnexpectedDocument`: polling refuses it as it always
    did (logged with its code, nothing changed, the envelope asked again later), not as a crash of the pass."""
    gw = gateway_for(settings, mock_transport(slow_dude[0]), report_wait_seconds=0)
    run_batch(gw, [night(tmp_path)])
    envelope_id = only_envelope(gw)
    root = build_report(Report(envelope_id, datetime.now(UTC),
                               tuple(EventResult(f"69001-{i}", 1, True) for i in (0, 1, 2, 3, 4, 99))))
    root.find(q("NombreRejetes")).text = "1"  # then signed by DUDE's key: 6 / 1 announced, 6 / 0 in its results
    dude = Signer.from_files(dev_keys.emulator.key_file, dev_keys.emulator.cert_file)
    monkeypatch.setattr(gw.client, "get_report", lambda id_lot: serialize(dude.sign(root)))
    before = snapshot(gw)

    with caplog.at_level(logging.WARNING, logger="gateway.reconcile"):
        polled = reconcile.poll_reports(gw, force=True)
    assert polled == [AppliedReport(envelope_id, ReportOutcome.NOT_READY)]
    assert snapshot(gw) == before
    assert f"report refused REPORT_INCONSISTENT (polling, for envelope {envelope_id})" in caplog.text
    gw.close()


class CutAfterDelivery(httpx.BaseTransport):
    """DUDE gets the envelope and answers, but the answer never comes back (the connection is cut)."""

    def __init__(self, inner: httpx.BaseTransport, cuts: int) -> None:
        self.inner, self.cuts = inner, cuts

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and self.cuts > 0:
            self.cuts -= 1
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


class BrokenReceiptSignature(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, times: int) -> None:
        self.inner, self.times = inner, times

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and self.times > 0:
            self.times -= 1
            body = response.read()
            start = body.index(b"SignatureValue>") + len(b"SignatureValue>")
            body = body[:start] + bytes([body[start] ^ 0x01]) + body[start + 1:]  # one bit of the value flipped
            return httpx.Response(response.status_code, content=body, headers=response.headers)
        return response


@pytest.mark.parametrize("wrapper", [CutAfterDelivery, BrokenReceiptSignature], ids=["coupure", "accuse-altere"])
def test_a_lost_or_untrustworthy_receipt_means_resending_the_same_idlot(settings, emulator, tmp_path, wrapper) -> None:
    flaky = wrapper(mock_transport(emulator), 10)  # more than one run's attempts
    gw = gateway_for(settings, flaky, send_attempts=3)
    first = run_batch(gw, [night(tmp_path)])
    assert first.states == {"ENVOYE": 6} and first.sending["sans_accuse"] == 1
    envelope_id = only_envelope(gw)
    assert emulator.ledger_summary()["lots"] == 1  # DUDE did get it

    flaky.cuts = flaky.times = 0  # the network heals; the next run starts by resending
    second = run_batch(gw, [])
    assert second.sending["reprises"] == 1
    events, envelopes, _ = snapshot(gw)
    assert envelopes == [(envelope_id, "TRAITE")]
    assert sorted({s for _, _, s, _ in events}) == ["ACCEPTE", "REJETE"]
    ledger = emulator.ledger_summary()
    assert ledger["lots"] == 1
    assert ledger["events_applied_more_than_once"] == [] and ledger["lots_processed_more_than_once"] == []
    with gw.engine.connect() as conn:
        attempts = conn.execute(sa.select(envelopes_t.c.attempts)).scalar_one()
    assert attempts == 4
    gw.close()


def test_a_crash_between_sealing_and_sending_is_resumed(gw, emulator, tmp_path: Path) -> None:
    from gateway.pipeline.ingest import ingest
    from adapters.parcours3.mapping import parse_export
    from gateway.preflight import PreflightConfig

    outcomes = parse_export(night(tmp_path), PreflightConfig.from_settings(gw.settings))
    ingest(gw.engine, outcomes, run_id=None, now=gw.clock())
    [sealed] = dispatch.seal_all(gw, run_id=None)  # ...and the process dies here, before any POST
    assert emulator.ledger_summary()["lots"] == 0

    summary = run_batch(gw, [])
    assert summary.sending["reprises"] == 1
    assert snapshot(gw)[1] == [(sealed, "TRAITE")]
    assert emulator.ledger_summary()["lots"] == 1


def test_a_report_naming_only_some_events_moves_exactly_those(settings, slow_dude, dev_keys, tmp_path) -> None:
    gw = gateway_for(settings, mock_transport(slow_dude[0]), report_wait_seconds=0)
    run_batch(gw, [night(tmp_path)])
    envelope_id = only_envelope(gw)
    dude = Signer.from_files(dev_keys.emulator.key_file, dev_keys.emulator.cert_file)
    partial = (EventResult("69001-0", 1, True), EventResult("69001-99", 1, False, RejectCode.E01, "inconnu"))

    assert apply_report(gw, forged_report(dude, envelope_id, partial)).outcome is ReportOutcome.APPLIED

    events, envelopes, _ = snapshot(gw)
    assert envelopes == [(envelope_id, "TRAITE")]
    assert {key: (state, code) for key, _, state, code in events} == {
        "69001-0": ("ACCEPTE", None), "69001-99": ("REJETE", "E01"),
        **{f"69001-{i}": ("TRANSMIS", None) for i in (1, 2, 3, 4)}}
    with gw.engine.connect() as conn:
        last = dict(conn.execute(sa.select(events_t.c.key, history_t.c.state).join_from(
            history_t, events_t, history_t.c.event_id == events_t.c.id).order_by(history_t.c.id)).all())
    assert last["69001-0"] == "ACCEPTE" and last["69001-99"] == "REJETE" and last["69001-1"] == "TRANSMIS"
    gw.close()


class SlowFirstPost(httpx.BaseTransport):
    """The first envelope takes its time on the way to DUDE (a slow link, a busy DUDE)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.posts = inner, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.posts += 1
            if self.posts == 1:
                import time

                time.sleep(0.5)
        return self.inner.handle_request(request)


def test_versions_of_one_event_in_two_envelopes_reach_dude_in_order(settings, emulator, tmp_path) -> None:
    """Envelopes travel two at a time, but one carrying an ``M`` waits for the envelope carrying its
    ``C``: even when the first is slow, DUDE never sees the modification first (no ``E06``)."""
    gw = gateway_for(settings, SlowFirstPost(mock_transport(emulator)))  # envelope_max_events=50
    lines = [p3_line(id_evenement=str(i)) for i in range(60)]
    lines.append({**lines[0], "modalite": "TEL", "operation": "M"})  # version 2 of event 0, in envelope 2
    summary = run_batch(gw, [write_export(tmp_path / "P3_69001_20261128.csv", lines)])
    assert summary.sending["envoyes"] == 2
    assert summary.states == {"ACCEPTE": 61}
    gw.close()


def test_a_receipt_recorded_after_its_report_does_not_undo_it(gw, emulator, tmp_path: Path) -> None:
    """The report was pushed to the callback before the sender recorded the receipt."""
    from adapters.parcours3.mapping import parse_export
    from gateway.pipeline.ingest import ingest
    from gateway.preflight import PreflightConfig

    ingest(gw.engine, parse_export(night(tmp_path), PreflightConfig.from_settings(gw.settings)), run_id=None,
           now=gw.clock())
    [envelope_id] = dispatch.seal_all(gw, run_id=None)
    answer = dispatch.transmit(gw, envelope_id)
    assert apply_report(gw, emulator.report(envelope_id).body, via="callback").outcome is ReportOutcome.APPLIED

    dispatch.apply_answer(gw, answer)

    events, envelopes, _ = snapshot(gw)
    assert envelopes == [(envelope_id, "TRAITE")]
    assert sorted({s for _, _, s, _ in events}) == ["ACCEPTE", "REJETE"]
    assert reconcile.poll_reports(gw, force=True) == []  # nothing left awaiting a report


def test_the_same_report_pushed_and_polled_at_once_is_applied_once(gw, emulator, tmp_path: Path) -> None:
    import threading

    settings = gw.settings.model_copy(update={"report_wait_seconds": 0})
    quiet = Gateway(settings=settings, engine=gw.engine, transport=gw.transport, sleep=gw.sleep)
    run_batch(quiet, [night(tmp_path)])
    envelope_id = only_envelope(gw)
    with gw.engine.begin() as conn:  # as if the report had not come yet
        conn.execute(envelopes_t.update().values(state="RECU"))
        conn.execute(events_t.update().values(state="TRANSMIS"))
    report = emulator.report(envelope_id).body
    count_reports = sa.text("SELECT count(*) FROM documents WHERE kind = 'COMPTE_RENDU'")
    count_moves = sa.text("SELECT count(*) FROM envelope_history WHERE state = 'TRAITE'")
    with gw.engine.connect() as conn:  # the run may have applied it once already, if it came in time
        before, moves_before = conn.execute(count_reports).scalar_one(), conn.execute(count_moves).scalar_one()
    barrier, outcomes = threading.Barrier(4), []

    def apply() -> None:
        barrier.wait()
        outcomes.append(apply_report(gw, report, via="callback").outcome)

    threads = [threading.Thread(target=apply) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == sorted([ReportOutcome.APPLIED] + [ReportOutcome.DUPLICATE] * 3)
    with gw.engine.connect() as conn:
        assert conn.execute(count_reports).scalar_one() == before + 1
        moves = conn.execute(count_moves).scalar_one()
    assert moves == moves_before + 1


def test_dudes_reject_message_stays_in_the_history_after_a_resend(gw, tmp_path: Path) -> None:
    from gateway.support import resend_event

    run_batch(gw, [night(tmp_path)])
    resend_event(gw, "69001-99", actor="support", scope=None)
    with gw.engine.connect() as conn:
        row = conn.execute(sa.select(events_t.c.id, events_t.c.state, events_t.c.reject_message)
                           .where(events_t.c.key == "69001-99")).one()
        causes = list(conn.execute(sa.select(history_t.c.cause).where(
            history_t.c.event_id == row.id, history_t.c.state == "REJETE")).scalars())
    assert row.state == "EN_ATTENTE" and row.reject_message is None
    assert len(causes) == 1 and "inconnu" in causes[0]  # DUDE's own words for E01
