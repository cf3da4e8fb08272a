"""Faults on demand: each one does what it says, through both doors, and the same seed gives the same faults."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from adapters.dude.emulator import Faults
from adapters.dude.emulator.app import mock_transport, serve_in_thread
from adapters.dude.messages import open_signed
from gateway.errors import SignatureInvalid

XML = {"Content-Type": "application/xml"}


# --- the value ---------------------------------------------------------------------------------------

def test_faults_default_to_a_well_behaved_dude_and_round_trip_through_json() -> None:
    assert not Faults().any and not Faults(seed=42).any
    faults = Faults(seed=7, error_share=0.25, poison_keys=frozenset({"69001-1"}), reports_out_of_order=True)
    assert faults.any
    assert Faults.from_mapping(json.loads(json.dumps(faults.as_dict()))) == faults


@pytest.mark.parametrize(("values", "message"), [
    ({"error_shar": 0.1}, "unknown fault"),
    ({"error_share": 1.5}, "between 0 and 1"),
    ({"timeout_seconds": -1}, "seconds"),
    ({"error_status": 404}, "5xx"),
    ({"poison_keys": "69001-1"}, "list of event keys"),
    ({"reports_out_of_order": "yes"}, "true or false"),
])
def test_wrong_faults_are_refused_naming_what_is_wrong(values, message) -> None:
    with pytest.raises(ValueError, match=message):
        Faults.from_mapping(values)


def test_draws_depend_on_the_seed_and_on_what_they_are_about_only() -> None:
    a, b = Faults(seed=1), Faults(seed=2)
    assert a.draw("error", "x", 1) == Faults(seed=1, cut_share=0.5).draw("error", "x", 1)
    assert a.draw("error", "x", 1) != b.draw("error", "x", 1)
    assert a.draw("error", "x", 1) != a.draw("error", "x", 2)
    share = sum(Faults(seed=3).happens(0.3, "error", i) for i in range(2000)) / 2000
    assert 0.25 < share < 0.35


# --- before the receipt ------------------------------------------------------------------------------

def test_a_share_of_5xx_answers_processes_nothing_and_is_the_same_under_the_same_seed(
        make_emulator, make_event, make_lot) -> None:
    bodies = [make_lot([make_event()]) for _ in range(30)]

    def statuses(seed: int) -> list[int]:
        emu = make_emulator()
        emu.faults = Faults(seed=seed, error_share=0.4)
        return [emu.receive(body).status_code for body in bodies]

    first, again, other = statuses(5), statuses(5), statuses(6)
    assert first == again and first != other
    assert set(first) == {200, 503}
    emu = make_emulator()
    emu.faults = Faults(error_share=1.0, error_status=502)
    answer = emu.receive(bodies[0])
    assert (answer.status_code, answer.json()["code"]) == (502, "DUDE_SERVER_ERROR")
    assert emu.ledger_summary()["lots"] == 0


def test_latency_is_waited_before_answering(emulator, make_event, make_lot, monkeypatch) -> None:
    waited: list[float] = []
    monkeypatch.setattr("adapters.dude.emulator.core.time.sleep", waited.append)
    emulator.faults = Faults(seed=1, latency_seconds=0.2, latency_jitter_seconds=0.1)
    for _ in range(3):
        assert emulator.receive(make_lot([make_event()])).status_code == 200
    assert len(waited) == 3 and all(0.2 <= w <= 0.3 for w in waited) and len(set(waited)) > 1


def test_an_envelope_holding_a_poison_event_is_answered_500_and_the_others_are_not(
        emulator, make_event, make_lot, read_receipt) -> None:
    poison = make_event()
    emulator.faults = Faults(poison_keys=frozenset({f"12345-{poison.record['id_evenement']}"}))
    refused = emulator.receive(make_lot([make_event(), poison, make_event()]))
    assert (refused.status_code, refused.json()["code"]) == (500, "DUDE_SERVER_ERROR")
    assert emulator.ledger_summary()["lots"] == 0
    assert read_receipt(emulator.receive(make_lot([make_event(), make_event()]))).status == "RECU"


# --- after the receipt -------------------------------------------------------------------------------

@pytest.fixture(params=["mock-transport", "uvicorn"])
def door(request, emulator) -> Iterator[httpx.Client]:
    if request.param == "mock-transport":
        with httpx.Client(transport=mock_transport(emulator), base_url="http://dude.test") as http:
            yield http
    else:
        with serve_in_thread(emulator) as url, httpx.Client(base_url=url, timeout=5) as http:
            yield http


@pytest.mark.parametrize(("faults", "raised"), [
    (Faults(cut_share=1.0), httpx.RemoteProtocolError),
    (Faults(timeout_share=1.0, timeout_seconds=1.0), httpx.ReadTimeout),
], ids=["coupure-apres-accuse", "delai-depasse"])
def test_the_envelope_is_processed_but_its_receipt_never_arrives(door, emulator, make_event, make_lot,
                                                                 read_receipt, faults, raised) -> None:
    id_lot = str(uuid.uuid4())
    body = make_lot([make_event(), make_event()], id_lot=id_lot)
    emulator.faults = faults
    with pytest.raises(raised):
        door.post("/dude/v1/lots", content=body, headers=XML, timeout=0.5)
    deadline = time.monotonic() + 10  # over HTTP, a loaded machine may time out before DUDE has recorded it
    while emulator.ledger_summary()["lots"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emulator.ledger_summary()["lots"] == 1  # processed and recorded

    emulator.faults = Faults()  # the sender tries again, same IdLot: the first receipt, nothing processed twice
    receipt = read_receipt(emulator.receive(body))
    assert receipt.status == "RECU" and receipt.events_received == 2
    ledger = emulator.ledger_summary()
    assert ledger["lot_replays"] == 1 and ledger["events_applied"] == 2
    assert ledger["lots_processed_more_than_once"] == [] and ledger["events_applied_more_than_once"] == []


def test_a_receipt_with_a_broken_signature_is_refused_and_a_replay_gets_the_good_one(
        emulator, make_event, make_lot, gateway_trust, read_receipt) -> None:
    body = make_lot([make_event()])
    emulator.faults = Faults(bad_receipt_signature_share=1.0)
    broken = emulator.receive(body)
    assert broken.status_code == 200
    with pytest.raises(SignatureInvalid):
        open_signed(broken.body, trust=gateway_trust, expected="AccuseReception")
    emulator.faults = Faults()
    assert read_receipt(emulator.receive(body)).status == "RECU"
    assert emulator.ledger_summary()["lots_processed_more_than_once"] == []


# --- reports -----------------------------------------------------------------------------------------

def test_a_lost_report_never_comes_and_a_late_one_comes_late(emulator, make_event, make_lot, clock) -> None:
    emulator.faults = Faults(seed=3, report_loss_share=1.0)
    lost = str(uuid.uuid4())
    emulator.receive(make_lot([make_event()], id_lot=lost))
    emulator.faults = Faults(seed=3, report_late_share=1.0, report_late_seconds=600)
    late = str(uuid.uuid4())
    emulator.receive(make_lot([make_event()], id_lot=late))

    clock.advance(599)
    assert emulator.report(late).status_code == 202
    clock.advance(2)
    assert emulator.report(late).status_code == 200
    clock.advance(10 * 365 * 86400)
    assert emulator.report(lost).status_code == 202  # "not yet", for ever
    assert emulator.ledger_summary()["reports"]["lost"] == 1


def test_reports_come_due_in_another_order_than_their_envelopes(make_emulator, make_event, make_lot, clock) -> None:
    emu = make_emulator(report_delay_seconds=10)
    emu.faults = Faults(seed=11, reports_out_of_order=True)
    lots = [str(uuid.UUID(int=100 + i)) for i in range(8)]  # fixed: the draws depend on the IdLot
    for id_lot in lots:
        emu.receive(make_lot([make_event()], id_lot=id_lot))
    due_order = []
    for _ in range(25):
        clock.advance(1)
        due_order += [i for i in lots if i not in due_order and emu.report(i).status_code == 200]
    assert sorted(due_order) == sorted(lots) and due_order != lots


class Recorder(httpx.BaseTransport):
    """The gateway's callback, recording what DUDE pushes to it."""

    def __init__(self) -> None:
        self.pushed: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.pushed.append(request.read())
        return httpx.Response(200, json={"outcome": "APPLIED"})


def test_pushed_reports_come_twice_and_out_of_order(make_emulator, make_event, make_lot, clock) -> None:
    recorder = Recorder()
    emu = make_emulator(callback_url="http://gateway.test/api/v1/dude/comptes-rendus",
                        http_client=httpx.Client(transport=recorder))
    emu.faults = Faults(seed=4, report_duplicate_share=1.0, reports_out_of_order=True)
    lots = [str(uuid.UUID(int=200 + i)) for i in range(6)]  # fixed: the draws depend on the IdLot
    for id_lot in lots:
        emu.receive(make_lot([make_event()], id_lot=id_lot))
    clock.advance(5)
    assert emu.deliver_due_reports() == 6
    pushed_ids = [next(i for i in lots if i.encode() in body) for body in recorder.pushed]
    assert sorted(pushed_ids) == sorted(lots * 2)  # every report twice
    firsts = list(dict.fromkeys(pushed_ids))
    assert firsts != [i for i, _ in emu.ledger.due_reports(emu.config.now(), unpushed_only=False)]
    assert emu.ledger_summary()["reports"]["pushes"] == 12
    assert emu.deliver_due_reports() == 0  # nothing pushed again once taken


# --- the admin route ---------------------------------------------------------------------------------

def test_faults_are_read_and_changed_over_http_without_a_restart(door, emulator, make_event, make_lot) -> None:
    assert door.get("/dude/v1/pannes").json() == Faults().as_dict()
    put = door.put("/dude/v1/pannes", json={"seed": 9, "error_share": 1, "poison_keys": ["69001-1"]})
    assert put.status_code == 200 and put.json()["error_share"] == 1.0
    assert emulator.faults == Faults(seed=9, error_share=1.0, poison_keys=frozenset({"69001-1"}))
    assert door.post("/dude/v1/lots", content=make_lot([make_event()]), headers=XML).status_code == 503
    assert door.get("/dude/v1/ledger").json()["faults_on"] is True

    wrong = door.put("/dude/v1/pannes", json={"error_share": 2})
    assert (wrong.status_code, wrong.json()["code"]) == (422, "VALIDATION")
    assert emulator.faults.error_share == 1.0  # unchanged
    assert door.put("/dude/v1/pannes", content=b"{}").json() == Faults().as_dict()
    assert door.post("/dude/v1/lots", content=make_lot([make_event()]), headers=XML).status_code == 200


def test_the_command_line_takes_faults_as_json_or_a_file(tmp_path) -> None:
    from gateway.cli.tools import _faults

    assert _faults('{"cut_share": 0.1}', 5) == Faults(seed=5, cut_share=0.1)
    path = tmp_path / "pannes.json"
    path.write_text('{"report_loss_share": 0.02, "reports_out_of_order": true}', encoding="utf-8")
    assert _faults(f"@{path}", None) == Faults(report_loss_share=0.02, reports_out_of_order=True)
    assert _faults(None, None) == Faults()
    import typer

    with pytest.raises(typer.BadParameter):
        _faults('{"nope": 1}', None)
