"""Several instances on one PostgreSQL (issue 5): the instance running the night is killed (SIGKILL, a real
`gateway run --now` in its own process, "on another machine" so that only its lease's expiry frees the
night); another instance's scheduler takes the night over once the lease expires and finishes it, with
nothing lost, and nothing processed twice by DUDE — a separate process, as DUDE would be, whose ledger
proves it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import lease
from gateway.context import Gateway
from gateway.demo import emulator_process
from gateway.fixturegen import generate_night
from gateway.keys import init_dev_keys
from gateway.nightly import RUN_LEASE
from gateway.scheduler import GatewayScheduler
from gateway.settings import Settings
from gateway.store.models import events_t, runs_t
from tests.backends import fresh_postgres_database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

EVENTS, PER_ENVELOPE = 3000, 60


def wait_until(condition, *, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what}: the process ended first: {process.stderr.read()!r}")
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def test_the_holder_killed_another_instance_takes_the_night_over_and_finishes_it(tmp_path: Path) -> None:
    with fresh_postgres_database() as url:
        settings = Settings(_env_file=None, data_dir=tmp_path / "data", database_url=url, lease_seconds=2,
                            envelope_max_events=PER_ENVELOPE, report_poll_interval_seconds=0.05,
                            report_wait_seconds=30, schedule_poll_seconds=1)
        init_dev_keys(settings)
        night = generate_night(tmp_path / "nuit", events=EVENTS, seed=11)
        settings.runs_input_dir.mkdir(parents=True)
        for export in night.export_files:  # the drop folder
            shutil.copy(export, settings.runs_input_dir / export.name)

        with emulator_process(settings, registry=night.registry_file, report_delay=0.1) as emulator:
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
                   "GATEWAY_DATA_DIR": str(settings.data_dir), "GATEWAY_DATABASE_URL": url,
                   "GATEWAY_DUDE_URL": emulator.base_url, "GATEWAY_ENVELOPE_MAX_EVENTS": str(PER_ENVELOPE),
                   "GATEWAY_LEASE_SECONDS": "2", "GATEWAY_INSTANCE_NAME": "autre-machine",
                   "GATEWAY_REPORT_POLL_INTERVAL_SECONDS": "0.05"}
            holder = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--now", "--json"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            wait_until(lambda: emulator.ledger()["lots"] >= 8, timeout=120, what="the night is being sent",
                       process=holder)
            holder.kill()  # SIGKILL: no clean-up, its lease and claims stay as they were
            holder.wait()
            killed_at = emulator.ledger()["lots"]
            assert killed_at < -(-EVENTS // PER_ENVELOPE), "the night was over before the kill: make it bigger"

            other = Gateway.open(settings.model_copy(update={"dude_url": emulator.base_url}))
            abandoned = lease.read(other.engine, RUN_LEASE)
            assert abandoned.holder.startswith("autre-machine:") and abandoned.released_at is None
            scheduler = GatewayScheduler(other)  # another instance's `gateway serve`
            scheduler.start()
            try:
                wait_until(lambda: (lambda held: held.done_until is not None and held.released_at is not None)(
                    lease.read(other.engine, RUN_LEASE)), timeout=180, what="the night is taken over and finished")
            finally:
                scheduler.shutdown()
            ledger = emulator.ledger()

        with other.engine.connect() as conn:
            states = Counter(dict(conn.execute(sa.select(events_t.c.state, sa.func.count())
                                               .group_by(events_t.c.state)).all()))
            runs = [tuple(r) for r in conn.execute(sa.select(runs_t.c.trigger, runs_t.c.outcome).order_by(runs_t.c.id))]
        finished = lease.read(other.engine, RUN_LEASE)
        other.close()

    lines = json.loads(night.manifest_file.read_text())["records"]
    assert runs == [("cli", "INTERROMPU"), ("reprise", "TERMINE")]
    assert finished.done_until == abandoned.night and not finished.holder.startswith("autre-machine:")
    # Every line in exactly one final state: nothing lost.
    assert set(states) <= {"ACCEPTE", "REJETE", "INVALIDE"}, states
    assert sum(states.values()) == lines
    # DUDE processed nothing twice, and saw exactly what the gateway says it sent.
    assert ledger["events_applied_more_than_once"] == []
    assert ledger["lots_processed_more_than_once"] == []
    assert ledger["events"] == states["ACCEPTE"] + states["REJETE"]
