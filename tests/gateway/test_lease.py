"""The run lease: one holder at a time across instances, renewed while held, free once its holder stops
or dies (brief §8; issue 5). On SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest

from gateway import lease
from gateway.context import Gateway
from gateway.errors import LeaseLost
from tests.backends import on_both_backends

database_url = on_both_backends()


@pytest.fixture
def store(settings):
    gw = Gateway.open(settings)
    yield gw.engine
    gw.close()


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_one_holder_at_a_time_and_free_when_released(store) -> None:
    first = lease.acquire(store, "run", "a:1:x", seconds=60)
    assert first is not None and first.previous is None
    assert lease.acquire(store, "run", "b:2:y", seconds=60) is None
    assert lease.acquire(store, "run", "a:1:x", seconds=60) is not None  # its own: taken again
    assert lease.release(store, "run", "a:1:x", done_until=datetime(2026, 11, 28, 1, tzinfo=UTC))
    second = lease.acquire(store, "run", "b:2:y", seconds=60)
    assert second is not None and second.taken_over is None  # released cleanly: nothing to take over
    info = lease.read(store, "run")
    assert info.holder == "b:2:y" and info.done_until == datetime(2026, 11, 28, 1, tzinfo=UTC)


def test_the_night_served_is_kept_as_the_instant_it_was_in_paris(store) -> None:
    """The scheduler hands over 02:00 Europe/Paris: kept as 01:00 UTC in winter, not as 02:00 UTC."""
    from zoneinfo import ZoneInfo

    night = datetime(2026, 12, 1, 2, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert lease.acquire(store, "run", "a:1:x", seconds=60, night=night)
    assert lease.release(store, "run", "a:1:x", done_until=night)
    info = lease.read(store, "run")
    assert info.done_until == night == datetime(2026, 12, 1, 1, 0, tzinfo=UTC) and info.night == night


def test_an_expired_lease_goes_to_the_next_and_says_whose_it_was(store) -> None:
    assert lease.acquire(store, "run", "autre-machine:1:x", seconds=0.3, night=datetime(2026, 11, 28, 1, tzinfo=UTC))
    wait_until(lambda: lease.read(store, "run").free_at(lease.now(store)))
    taken = lease.acquire(store, "run", "b:2:y", seconds=60)
    assert taken is not None and taken.taken_over.holder == "autre-machine:1:x"
    assert taken.taken_over.night == datetime(2026, 11, 28, 1, tzinfo=UTC)


def test_the_lease_of_a_dead_process_of_this_machine_is_free_at_once(store) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = lease.new_holder_id().rsplit(":", 2)[0] + f":{gone.pid}:abcdef"
    assert lease.acquire(store, "run", dead, seconds=3600)
    taken = lease.acquire(store, "run", lease.new_holder_id(), seconds=60)
    assert taken is not None and taken.taken_over.holder == dead


def test_racing_instances_get_it_once(store) -> None:
    barrier, won = threading.Barrier(6), []

    def take(n: int) -> None:
        barrier.wait()
        if lease.acquire(store, "run", f"h{n}:1:x", seconds=60):
            won.append(n)

    threads = [threading.Thread(target=take, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_a_heartbeat_keeps_it_and_notices_when_it_is_lost(store) -> None:
    # 2 s, renewed every 2/3 s: a beat may come 1.3 s late (a loaded CI machine) before the lease is lost
    assert lease.acquire(store, "run", "a:1:x", seconds=2.0)
    beat = lease.Heartbeat(store, "run", "a:1:x", seconds=2.0).start()
    try:
        time.sleep(2.5)  # longer than the lease: only the heartbeat keeps it
        assert lease.acquire(store, "run", "b:2:y", seconds=60) is None
        beat.check()
    finally:
        beat.stop()
    wait_until(lambda: lease.read(store, "run").free_at(lease.now(store)))
    assert lease.acquire(store, "run", "b:2:y", seconds=60)  # a stalled holder's lease went to another
    beat = lease.Heartbeat(store, "run", "a:1:x", seconds=0.3).start()
    wait_until(beat.lost.is_set)
    with pytest.raises(LeaseLost):
        beat.check()
    beat.stop()
