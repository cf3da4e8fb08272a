"""Reports: produced later, polled or pushed, retried when the callback fails (brief §4)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from adapters.dude.emulator import Faults
from adapters.dude.messages import open_signed, parse_report
from gateway.errors import StoreError


def test_a_report_is_202_until_its_delay_then_200(make_emulator, make_event, make_lot, read_receipt, clock,
                                                  gateway_trust) -> None:
    emulator = make_emulator(report_delay_seconds=30)
    id_lot = str(uuid.uuid4())
    received_at = read_receipt(emulator.receive(make_lot([make_event()], id_lot=id_lot))).received_at
    early = emulator.report(id_lot)
    assert (early.status_code, early.body) == (202, b"")
    assert dict(early.headers)["Retry-After"] == "30"
    clock.advance(29)
    assert emulator.report(id_lot).status_code == 202
    assert emulator.ledger_summary()["reports"] == {"available": 0, "pending": 1, "lost": 0, "pushed": 0, "pushes": 0}
    clock.advance(1)
    answer = emulator.report(id_lot)
    assert answer.status_code == 200
    report = parse_report(open_signed(answer.body, trust=gateway_trust, expected="CompteRendu").root)
    assert report.id_lot == id_lot and report.accepted_count == 1
    assert (report.processed_at - received_at).total_seconds() == 30  # DateTraitement: when it became available


def test_the_fault_seam_overrides_the_report_delay(emulator, make_event, make_lot, clock) -> None:
    emulator.faults = Faults(report_delay_seconds=3600)  # "late"
    late = str(uuid.uuid4())
    emulator.receive(make_lot([make_event()], id_lot=late))
    emulator.faults = Faults()
    on_time = str(uuid.uuid4())
    emulator.receive(make_lot([make_event()], id_lot=on_time))
    assert emulator.report(on_time).status_code == 200 and emulator.report(late).status_code == 202
    assert emulator.ledger_summary()["faults_on"] is False
    clock.advance(3600)
    assert emulator.report(late).status_code == 200


def test_no_report_for_an_unknown_or_wholly_rejected_lot(emulator, make_event, make_lot) -> None:
    unknown = emulator.report(str(uuid.uuid4()))
    assert (unknown.status_code, unknown.content_type, unknown.json()["code"]) == (
        404, "application/problem+json", "NO_REPORT")
    refused = str(uuid.uuid4())
    emulator.receive(make_lot([make_event()], id_lot=refused, sender="INTRUS"))
    assert emulator.report(refused).json()["code"] == "NO_REPORT"


class Callback:
    """A gateway callback that fails ``failures`` times, then takes every report."""

    def __init__(self, failures: int = 0, *, down: bool = False):
        self.failures, self.down, self.received = failures, down, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.failures:
            self.failures -= 1
            return httpx.Response(503)
        assert request.headers["content-type"] == "application/xml"
        self.received.append(request.read())
        return httpx.Response(204)


@pytest.fixture
def pushing(make_emulator):
    """``pushing(Callback(…))``: an emulator whose callback is served by ``httpx.MockTransport``."""
    clients = []

    def make(callback: Callback, **changes):
        clients.append(httpx.Client(transport=httpx.MockTransport(callback)))
        emulator = make_emulator(callback_url="http://passerelle.test/dude/compte-rendu", http_client=clients[-1],
                                 **changes)
        return emulator, callback

    yield make
    for client in clients:
        client.close()


def test_due_reports_are_pushed_once_and_failures_retried(pushing, make_event, make_lot) -> None:
    emulator, callback = pushing(Callback(failures=1))
    lots = [str(uuid.uuid4()) for _ in range(2)]
    for id_lot in lots:
        emulator.receive(make_lot([make_event()], id_lot=id_lot))
    assert emulator.deliver_due_reports() == 1          # the first push got a 503
    assert emulator.deliver_due_reports() == 1          # retried
    assert emulator.deliver_due_reports() == 0          # nothing left
    assert sorted(callback.received) == sorted(emulator.report(i).body for i in lots)
    assert emulator.ledger_summary()["reports"]["pushes"] == 2
    assert all(emulator.report(i).status_code == 200 for i in lots)  # polling still works


def test_reports_wait_for_their_delay_before_being_pushed(pushing, make_event, make_lot, clock) -> None:
    emulator, callback = pushing(Callback(), report_delay_seconds=10)
    emulator.receive(make_lot([make_event()]))
    assert emulator.deliver_due_reports() == 0
    clock.advance(10)
    assert emulator.deliver_due_reports() == 1 and len(callback.received) == 1


def test_a_callback_that_is_down_is_retried_later(pushing, make_event, make_lot) -> None:
    emulator, callback = pushing(Callback(down=True))
    emulator.receive(make_lot([make_event()]))
    emulator.receive(make_lot([make_event()]))
    assert emulator.deliver_due_reports() == 0
    callback.down = False
    assert emulator.deliver_due_reports() == 2


def test_without_callback_nothing_is_pushed(emulator, make_event, make_lot) -> None:
    emulator.receive(make_lot([make_event()]))
    assert emulator.deliver_due_reports() == 0


def test_a_crash_while_recording_leaves_nothing_half_done(emulator, make_event, make_lot, monkeypatch,
                                                          read_receipt) -> None:
    """All ledger writes of one envelope are one transaction: a failure leaves the lot unknown."""
    id_lot = str(uuid.uuid4())
    body = make_lot([make_event(), make_event()], id_lot=id_lot)
    real_db = emulator.ledger._db  # noqa: SLF001

    class Failing:
        def __getattr__(self, name):
            return getattr(real_db, name)

        def executemany(self, sql, rows):
            if "receptions" in sql:
                raise __import__("sqlite3").OperationalError("disk I/O error")
            return real_db.executemany(sql, rows)

    monkeypatch.setattr(emulator.ledger, "_db", Failing())
    with pytest.raises(StoreError):
        emulator.receive(body)
    monkeypatch.setattr(emulator.ledger, "_db", real_db)
    summary = emulator.ledger_summary()
    assert (summary["lots"], summary["events"], summary["receptions"]) == (0, 0, 0)
    assert read_receipt(emulator.receive(body)).status == "RECU"  # the resend is processed, once
    assert emulator.ledger_summary()["events_applied"] == 2
