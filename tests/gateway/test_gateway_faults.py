"""The gateway's answers to a DUDE that misbehaves: bounded retries with back-off and jitter, a night through
every fault that still ends with each event settled once, and a poison event isolated without holding up
the others (brief §5)."""

from __future__ import annotations

import logging
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import sqlalchemy as sa

from adapters.dude.emulator import Emulator, EmulatorConfig, Faults
from adapters.dude.emulator.app import mock_transport
from adapters.dude.emulator.faults import LOST_REPORT_AT
from adapters.dude.messages import EventResult, Report, build_report
from adapters.dude.signing import Signer, serialize
from adapters.parcours3.mapping import parse_export
from gateway.context import Gateway
from gateway.errors import UnexpectedDocument
from gateway.pipeline import dispatch, quarantine, reconcile
from gateway.pipeline.ingest import ingest
from gateway.pipeline.run import run_batch
from gateway.preflight import PreflightConfig
from gateway.store.models import envelope_history_t, envelopes_t, events_t
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export
from tests.gateway.test_reconcile import Clock

#: Every test here runs on SQLite and on PostgreSQL (tests/backends.py).
database_url = on_both_backends()


def dude(settings, registry_file, **config) -> Emulator:
    return Emulator(EmulatorConfig.for_settings(settings, registry_file=registry_file, ledger_path=None,
                                                report_delay_seconds=0.0, **config))


def open_gateway(settings, transport, *, clock=None, **updates) -> Gateway:
    return Gateway.open(settings.model_copy(update={"dude_url": "http://dude.test/dude/v1", **updates}),
                        transport=transport, sleep=lambda seconds: None, **({"clock": clock} if clock else {}))


def export(tmp_path: Path, n: int, name: str = "P3_69001_20261128.csv") -> Path:
    return write_export(tmp_path / name, [p3_line(id_evenement=str(i)) for i in range(n)])


def states(gw) -> Counter:
    with gw.engine.connect() as conn:
        return Counter(dict(conn.execute(sa.select(events_t.c.state, sa.func.count()).group_by(events_t.c.state))
                            .all()))


def envelope_states(gw) -> Counter:
    with gw.engine.connect() as conn:
        return Counter(dict(conn.execute(sa.select(envelopes_t.c.state, sa.func.count())
                                         .group_by(envelopes_t.c.state)).all()))


# --- retries -----------------------------------------------------------------------------------------

class Counting(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.posts = inner, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.posts += request.method == "POST"
        return self.inner.handle_request(request)


def test_retries_are_bounded_and_back_off_exponentially_with_jitter(settings, dev_keys, registry_file,
                                                                     tmp_path) -> None:
    waits: list[float] = []
    with dude(settings, registry_file) as emu:
        emu.faults = Faults(error_share=1.0)  # 503 to everything: DUDE unavailable
        counting = Counting(mock_transport(emu))
        gw = Gateway.open(settings.model_copy(update={"send_attempts": 5, "retry_backoff_seconds": 0.5,
                                                      "retry_backoff_max_seconds": 3.0}),
                          transport=counting, sleep=waits.append)
        ingest(gw.engine, parse_export(export(tmp_path, 3), PreflightConfig.from_settings(gw.settings)),
               run_id=None, now=gw.clock())
        (envelope_id,) = dispatch.seal_all(gw, run_id=None)
        result = dispatch.transmit(gw, envelope_id)
        assert (result.state, result.attempts, counting.posts) == ("ENVOYE", 5, 5)
        assert "DUDE_SERVER_ERROR" in result.error
        assert len(waits) == 4  # between attempts, never after the last
        for attempt, waited in enumerate(waits, start=1):
            ceiling = min(3.0, 0.5 * 2 ** (attempt - 1))
            assert ceiling / 2 <= waited <= ceiling
        with gw.engine.connect() as conn:
            assert conn.execute(sa.select(envelopes_t.c.attempts)).scalar_one() == 5
        gw.close()

    draws = [dispatch._backoff(gw, 6) for _ in range(2000)]  # 0.5 × 2⁵ = 16 s, capped at 3 s
    assert 1.5 <= min(draws) < 1.7 and 2.8 < max(draws) <= 3.0  # equal jitter: spread, floored, capped


# --- a night through every fault ---------------------------------------------------------------------

def seeded_idlots(monkeypatch, seed: int) -> None:
    """The gateway's IdLots drawn from a seed: the emulator's fault draws depend on them, so the same faults
    fire on every run of the test."""
    draws = random.Random(seed)
    monkeypatch.setattr(dispatch, "uuid", SimpleNamespace(uuid4=lambda: uuid.UUID(int=draws.getrandbits(128),
                                                                                    version=4)))


@pytest.mark.parametrize("outage_seconds", [0, 120], ids=["every-attempt", "outage"])
def test_a_night_through_every_fault_ends_with_each_event_settled_once(settings, dev_keys, registry_file,
                                                                         tmp_path, caplog, monkeypatch,
                                                                         outage_seconds) -> None:
    """5xx, time-outs, connections cut after the receipt, broken receipt signatures, reports late, out of
    order or lost: run after run, every event ends ACCEPTE, REJETE, or SANS_REPONSE where its report was lost,
    and DUDE applied nothing twice.

    Twice: with every envelope making all its attempts (``dude_outage_seconds=0``), where the emulator's
    faults, drawn per post of each envelope, are the same at every run of the test, so that each kind is
    checked to have fired; and with the outage on (`gateway.pipeline.outage`), where which envelopes are
    held back depends on which of the two senders' rounds ends first, hence which faults are drawn: there,
    the guarantees only."""
    caplog.set_level(logging.WARNING)
    seeded_idlots(monkeypatch, 7)
    dude_clock, clock = Clock(), Clock()
    faults = Faults(seed=2024, error_share=0.25, timeout_share=0.15, timeout_seconds=60, cut_share=0.15,
                    bad_receipt_signature_share=0.15, report_loss_share=0.2, report_late_share=0.3,
                    report_late_seconds=3600, reports_out_of_order=True)
    with dude(settings, registry_file, clock=dude_clock) as emu:
        emu.faults = faults
        gw = open_gateway(settings, mock_transport(emu), clock=clock, envelope_max_events=10, send_attempts=3,
                          report_wait_seconds=0, report_timeout_seconds=600, report_max_polls=2,
                          dude_outage_seconds=outage_seconds)
        night = export(tmp_path, 120)
        for _ in range(30):  # runs until nothing is left to send (each resends with the same IdLots)
            run_batch(gw, [night], wait_for_reports=False)
            if not dispatch.unanswered_envelopes(gw):
                break
        assert not dispatch.unanswered_envelopes(gw)
        for _ in range(4):  # hours pass: late reports come, lost ones never; polled, then given up
            dude_clock.now += timedelta(hours=2)
            clock.now += timedelta(hours=2)
            reconcile.poll_reports(gw, force=True)
        ledger = emu.ledger_summary()
        lost = {row[0] for row in emu.ledger._db.execute("SELECT id_lot FROM lots WHERE report_available_at = ?",
                                                         (LOST_REPORT_AT,))}

    final = states(gw)
    assert sum(final.values()) == 120 and set(final) <= {"ACCEPTE", "REJETE", "SANS_REPONSE"}, final
    assert ledger["events_applied_more_than_once"] == [] and ledger["lots_processed_more_than_once"] == []
    assert ledger["events"] == 120 and (ledger["lot_replays"] > 0 or outage_seconds)  # resent, never twice
    with gw.engine.connect() as conn:
        silent = set(conn.execute(sa.select(events_t.c.envelope_id).where(events_t.c.state == "SANS_REPONSE"))
                     .scalars())
    assert silent == lost  # SANS_REPONSE exactly where DUDE lost the report
    assert ledger["reports"]["lost"] == len(lost)
    assert envelope_states(gw) == Counter({"TRAITE": 12 - len(lost), **({"SANS_REPONSE": len(lost)} if lost else {})})
    if not outage_seconds:  # the same draws at every run of the test: each kind of fault met
        for fault in ("answered HTTP 503", "held back", "connection cut", "signature broken", "report lost",
                      "report made late"):
            assert fault in caplog.text, fault
    gw.close()


# --- poison ------------------------------------------------------------------------------------------

def test_a_poison_event_is_isolated_and_never_blocks_the_others(settings, dev_keys, registry_file, tmp_path,
                                                                 caplog) -> None:
    caplog.set_level(logging.WARNING)
    with dude(settings, registry_file) as emu:
        emu.faults = Faults(poison_keys=frozenset({"69001-37"}))  # DUDE fails on this event, whatever surrounds it
        gw = open_gateway(settings, mock_transport(emu), send_attempts=2, poison_after_failed_runs=2)
        night = export(tmp_path, 120)  # three envelopes: events 0–49 (37 among them), 50–99, 100–119

        first = run_batch(gw, [night])
        assert first.states == {"ACCEPTE": 70, "ENVOYE": 50}  # the other two envelopes went through
        assert envelope_states(gw) == {"TRAITE": 2, "ENVOYE": 1}

        second = run_batch(gw, [])  # the second failed round: quarantine, then halves until 37 is alone
        assert second.sending["reprises"] > 1
        ledger = emu.ledger_summary()

    final = states(gw)
    assert final == {"ACCEPTE": 119, "SANS_REPONSE": 1}
    with gw.engine.connect() as conn:
        poison = conn.execute(sa.select(events_t.c.key, events_t.c.reject_message)
                              .where(events_t.c.state == "SANS_REPONSE")).one()
        quarantined = conn.execute(sa.select(envelopes_t.c.id, envelopes_t.c.event_count)
                                   .where(envelopes_t.c.state == "QUARANTAINE").order_by(envelopes_t.c.event_count
                                                                                          .desc())).all()
        strikes = conn.execute(sa.select(sa.func.count()).select_from(envelope_history_t).where(
            envelope_history_t.c.cause.like(f"{quarantine.STRIKE}%"))).scalar_one()
    assert poison.key == "69001-37" and poison.reject_message == quarantine.POISON_MESSAGE
    sizes = [n for _, n in quarantined]
    assert sizes[0] == 50 and sizes[-1] == 1 and len(sizes) <= 7  # halves: 50 → 25 → … → 1 (log2)
    assert all(later <= (earlier + 1) // 2 + 1 for earlier, later in zip(sizes, sizes[1:], strict=False))
    assert strikes == 2 + (len(sizes) - 1)  # two for the first envelope, one for each half
    assert ledger["events"] == 119 and ledger["events_applied_more_than_once"] == []
    assert "QUARANTINE envelope" in caplog.text and "POISON event 69001-37 v1" in caplog.text

    # A report DUDE sends late for the first quarantined envelope (its events have since travelled in
    # halves): refused, saying why, and nothing moves.
    late = serialize(Signer.from_files(dev_keys.emulator.key_file, dev_keys.emulator.cert_file).sign(build_report(
        Report(quarantined[0].id, datetime.now(UTC), (EventResult("69001-0", 1, True),)))))
    with pytest.raises(UnexpectedDocument, match="QUARANTAINE: quarantined, its events were sealed again"):
        reconcile.apply_report(gw, late, via="callback")
    assert states(gw) == final
    gw.close()


def test_dude_unavailable_is_never_taken_for_a_poison(settings, dev_keys, registry_file, tmp_path) -> None:
    """502, 503, 504, time-outs: DUDE is down, not broken by this envelope — nothing is quarantined."""
    with dude(settings, registry_file) as emu:
        emu.faults = Faults(error_share=1.0, error_status=503)
        gw = open_gateway(settings, mock_transport(emu), send_attempts=2, poison_after_failed_runs=1)
        for _ in range(3):
            run_batch(gw, [export(tmp_path, 5)])
        assert envelope_states(gw) == {"ENVOYE": 1} and states(gw) == {"ENVOYE": 5}
        (envelope_id,) = dispatch.unanswered_envelopes(gw)
        assert quarantine.after_failed_round(gw, envelope_id, [500, 503], run_id=None) == "ENVOYE"
        with gw.engine.connect() as conn:
            assert quarantine.strikes(conn, envelope_id) == 0

        emu.faults = Faults()  # back up: the same envelope, same IdLot, goes through
        run_batch(gw, [])
        assert states(gw) == {"ACCEPTE": 5}
    gw.close()
