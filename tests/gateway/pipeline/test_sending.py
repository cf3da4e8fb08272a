"""Several sending workers, one store: every envelope waiting to be sent is posted exactly once (the
emulator's ledger and the transport's count prove it), in order per event (issue 5). On both backends."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import sqlalchemy as sa

from adapters.dude.emulator.app import mock_transport
from adapters.parcours3.mapping import parse_export
from gateway.context import Gateway
from gateway.lease import new_holder_id
from gateway.pipeline import dispatch, sending
from gateway.pipeline.ingest import ingest
from gateway.preflight import PreflightConfig
from gateway.store.models import envelopes_t
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export

database_url = on_both_backends()


class CountingPosts(httpx.BaseTransport):
    """DUDE behind a link that takes a little time, counting what is posted."""

    def __init__(self, inner: httpx.BaseTransport, delay: float = 0.03) -> None:
        self.inner, self.delay, self.posts, self._lock = inner, delay, 0, threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            with self._lock:
                self.posts += 1
            time.sleep(self.delay)
        return self.inner.handle_request(request)


def store_events(gw, tmp_path, lines, name="P3_69001_20261128.csv") -> None:
    export = write_export(tmp_path / name, lines)
    ingest(gw.engine, parse_export(export, PreflightConfig.from_settings(gw.settings)), run_id=None, now=gw.clock())


def instance(settings, transport) -> Gateway:
    """Another gateway instance on the same store: its own engine, its own name."""
    return Gateway.open(settings.model_copy(update={"dude_url": "http://dude.test/dude/v1"}), transport=transport,
                        sleep=lambda s: None, create=False)


def test_two_instances_with_two_workers_each_send_every_envelope_once(gw, settings, emulator, tmp_path) -> None:
    store_events(gw, tmp_path, [p3_line(id_evenement=str(i)) for i in range(400)])
    sealed = dispatch.seal_all(gw, run_id=None)  # 8 envelopes of 50, sealed, none sent (a crash, a pause…)
    assert len(sealed) == 8
    link = CountingPosts(mock_transport(emulator))
    instances = [instance(settings, link) for _ in range(2)]
    barrier, done = threading.Barrier(2), {}

    def work(gw_i: Gateway) -> None:
        barrier.wait()
        done[gw_i.instance_id] = sending.send_waiting(gw_i, workers=2)

    threads = [threading.Thread(target=work, args=(g,)) for g in instances]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    by_worker = [set(stats.envelopes) for stats in done.values()]
    assert by_worker[0].isdisjoint(by_worker[1]) and by_worker[0] | by_worker[1] == set(sealed)
    assert link.posts == 8  # posted once each: no worker posted another's envelope
    ledger = emulator.ledger_summary()
    assert ledger["lots"] == 8
    assert ledger["lots_processed_more_than_once"] == [] and ledger["events_applied_more_than_once"] == []
    with gw.engine.connect() as conn:
        rows = conn.execute(sa.select(envelopes_t.c.state, envelopes_t.c.attempts, envelopes_t.c.claimed_by)).all()
    assert Counter(r.state for r in rows) == {"RECU": 8} or {r.state for r in rows} <= {"RECU", "TRAITE"}
    assert {r.attempts for r in rows} == {1} and {r.claimed_by for r in rows} == {None}
    for g in instances:
        g.close()


def test_an_envelope_waits_for_the_one_carrying_an_earlier_version_of_its_events(gw, tmp_path) -> None:
    line = p3_line(id_evenement="7")
    store_events(gw, tmp_path, [line], "a.csv")
    [first] = dispatch.seal_all(gw, run_id=None)
    store_events(gw, tmp_path, [{**line, "modalite": "TEL", "operation": "M"}], "b.csv")
    [second] = dispatch.seal_all(gw, run_id=None)  # the M of event 7, after its C

    assert sending.claim_next(gw) == first
    assert sending.claim_next(gw, exclude={first}) is None  # not before the C has its receipt
    dispatch.send_envelope(gw, first)
    assert sending.claim_next(gw) == second


def test_a_claim_holds_other_workers_off_until_released_or_expired(gw, tmp_path) -> None:
    store_events(gw, tmp_path, [p3_line(id_evenement=str(i)) for i in range(10)])
    [sealed] = dispatch.seal_all(gw, run_id=None)
    assert sending.claim_next(gw, holder="a:1:x") == sealed
    assert sending.claim_next(gw, holder="b:2:y") is None
    sending.release(gw, sealed, holder="a:1:x")
    assert sending.claim_next(gw, holder="b:2:y") == sealed
    short = Gateway(settings=gw.settings.model_copy(update={"send_claim_seconds": 0.2}), engine=gw.engine)
    sending.release(gw, sealed, holder="b:2:y")
    assert sending.claim_next(short, holder="c:3:z") == sealed
    time.sleep(0.3)  # c's claim lapses (it died, or stalled)
    assert sending.claim_next(gw, holder="d:4:w") == sealed


def test_a_dead_local_worker_s_claims_are_freed_by_the_next_sender(gw, emulator, tmp_path) -> None:
    store_events(gw, tmp_path, [p3_line(id_evenement=str(i)) for i in range(10)])
    [sealed] = dispatch.seal_all(gw, run_id=None)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = new_holder_id().rsplit(":", 2)[0] + f":{gone.pid}:abcdef"
    assert sending.claim_next(gw, holder=dead) == sealed

    stats = sending.send_waiting(gw)

    assert stats.envelopes == [sealed] and emulator.ledger_summary()["lots"] == 1


def test_sending_times_are_the_right_instants_whatever_the_clock_zone(settings, emulator, tmp_path) -> None:
    """A clock in Europe/Paris (a host without UTC, a test clock): the first sending is stored as the instant it
    is, not as its wall time taken for UTC (a bare datetime in COALESCE or CASE would be, on SQLite)."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from gateway.pipeline.run import run_batch

    paris = ZoneInfo("Europe/Paris")
    gw = Gateway.open(settings.model_copy(update={"dude_url": "http://dude.test/dude/v1"}),
                      transport=mock_transport(emulator), sleep=lambda seconds: None,
                      clock=lambda: datetime.now(paris))
    try:
        before = datetime.now(UTC)
        run_batch(gw, [write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])])
        after = datetime.now(UTC)
        with gw.engine.connect() as conn:
            sent_at = conn.execute(sa.select(envelopes_t.c.first_sent_at)).scalar_one()
    finally:
        gw.close()
    assert before <= sent_at <= after
