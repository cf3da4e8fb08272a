"""The order in which a run records DUDE's answers (gateway.pipeline.run._Dispatcher, issue 7): while the
exports are still being read and DUDE has nothing left to check, the answers wait, so that the run goes
back to storing the next envelope's events; once DUDE has an envelope to check, or the reading is over,
they are recorded, in the order the envelopes were sent."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from gateway.pipeline import dispatch, run
from gateway.pipeline.run import RunSummary, _Dispatcher


@pytest.fixture
def dispatcher(monkeypatch):
    """A dispatcher whose sender threads "post" instantly, except envelope ``slow`` (until released); the
    envelopes whose answer is recorded are listed in ``recorded``."""
    recorded: list[str] = []
    release = threading.Event()

    def transmit(gw, envelope_id, *, run_id, outage):
        if envelope_id == "slow":
            release.wait(10)
        return dispatch.SendResult(envelope_id, "ENVOYE", 1)

    monkeypatch.setattr(dispatch, "transmit", transmit)
    monkeypatch.setattr(run, "release_claim", lambda gw, envelope_id: recorded.append(envelope_id))
    gw = SimpleNamespace(settings=SimpleNamespace(send_workers=2))
    summary = RunSummary(run_id=1, trigger="test", dry_run=False, inputs=[], started_at=datetime.now(UTC))
    with _Dispatcher(gw, summary, poll_reports=False, outage=None) as d:
        yield d, recorded, release
        release.set()


def sent(d: _Dispatcher, envelope_id: str) -> None:
    d.submit(dispatch.SealedEnvelope(envelope_id, frozenset({envelope_id}), 1, 1))


def settle(d: _Dispatcher) -> None:
    """Let the sender threads finish what they can."""
    for future in d._futures:
        try:
            future.result(timeout=0.5)
        except TimeoutError:
            pass


def test_answers_wait_while_dude_is_idle_and_the_exports_are_still_read(dispatcher):
    d, recorded, release = dispatcher
    sent(d, "first")
    settle(d)

    d.catch_up(more_to_seal=True)
    assert recorded == []  # DUDE idle: back to storing, the answer waits

    sent(d, "slow")
    d.catch_up(more_to_seal=True)
    assert recorded == ["first"]  # DUDE busy with the next one: now it is recorded

    release.set()
    settle(d)
    d.catch_up(more_to_seal=False)  # the reading is over: nothing waits any more
    assert recorded == ["first", "slow"]
    assert d.summary.sending["envoyes"] == 2
