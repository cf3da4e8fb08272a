"""Kill a real `gateway run` (SIGKILL) while it sends, start it again: the night completes, nothing is lost,
and the emulator — a separate process, as DUDE would be — processed nothing twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.demo import emulator_process
from gateway.fixturegen import generate_night
from gateway.keys import init_dev_keys
from gateway.settings import Settings
from gateway.store.db import make_engine
from gateway.store.models import events_t

pytestmark = pytest.mark.slow


def wait_for_lots(emulator, at_least: int, process: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lots = emulator.ledger()["lots"]
        if lots >= at_least:
            return lots
        if process.poll() is not None:
            pytest.fail(f"the run ended before {at_least} envelopes were received: {process.stderr.read()!r}")
        time.sleep(0.02)
    pytest.fail("the emulator received too few envelopes in time")


def test_kill_during_sending_then_rerun_completes_the_night(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    init_dev_keys(settings)
    night = generate_night(tmp_path / "nuit", events=3000, seed=11)
    inputs = [arg for path in night.export_files for arg in ("--input", str(path))]

    with emulator_process(settings, registry=night.registry_file, report_delay=0.1) as emulator:
        env = {**os.environ, "GATEWAY_DATA_DIR": str(settings.data_dir), "GATEWAY_DUDE_URL": emulator.base_url,
               "GATEWAY_ENVELOPE_MAX_EVENTS": "60", "GATEWAY_REPORT_POLL_INTERVAL_SECONDS": "0.05"}
        command = [sys.executable, "-m", "gateway", "run", "--json", *inputs]
        kills = []
        for at_least in (3, 12):  # two kills, at different points of the sending
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            wait_for_lots(emulator, at_least, process)
            process.kill()
            process.wait()
            kills.append(emulator.ledger()["lots"])
        total_envelopes = -(-3000 // 60)
        assert kills[-1] < total_envelopes, "the night was over before the last kill: make it bigger"

        final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr
        ledger = emulator.ledger()

    engine = make_engine(settings.db_url)
    with engine.connect() as conn:
        states = Counter(dict(conn.execute(sa.select(events_t.c.state, sa.func.count())
                                           .group_by(events_t.c.state)).all()))
        keys = conn.execute(sa.select(sa.func.count(sa.distinct(events_t.c.key)))).scalar_one()
    engine.dispose()
    manifest = json.loads(night.manifest_file.read_text())
    lines = manifest["records"]

    # Every line in exactly one final state, nothing lost.
    assert set(states) <= {"ACCEPTE", "REJETE", "INVALIDE"}, states
    assert sum(states.values()) == lines
    # Nothing processed twice by DUDE, and DUDE saw exactly what the gateway says it sent.
    assert ledger["events_applied_more_than_once"] == []
    assert ledger["lots_processed_more_than_once"] == []
    assert ledger["events"] == states["ACCEPTE"] + states["REJETE"]
    assert ledger["events_by_status"] == {"ACCEPTE": states["ACCEPTE"], "REJETE": states["REJETE"]}
    assert keys <= lines
