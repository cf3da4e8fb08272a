"""The chaos night (issue 6): a generated night of several thousand events, DUDE misbehaving in every way it
can, and the gateway process killed (SIGKILL) at random moments and started again, many times.

At the end every event is in a final state, DUDE's ledger shows each event applied at most once and each
envelope processed at most once, and the counts reconcile with the input: every line is exactly one row,
``ACCEPTE``, ``REJETE`` or ``INVALIDE`` — or ``SANS_REPONSE`` where DUDE lost the report, a fault injected on
purpose (a lost report is never repeated by DUDE: "no answer" is the truth the gateway must tell).

The emulator is a separate process (as DUDE would be), with its faults set per run (``--faults``); it pushes
its reports to the gateway's API served by the test, and each ``gateway run`` also polls. The closing summary
is printed (``pytest -s``) and written to ``artifacts/chaos-summary.json``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.api.main import create_app
from gateway.api.routes.dude import CALLBACK_PATH
from gateway.api.serving import serve_in_thread
from gateway.codes import EnvelopeState
from gateway.context import Gateway
from gateway.demo import emulator_process
from gateway.fixturegen import generate_night
from gateway.keys import init_dev_keys
from gateway.settings import Settings
from gateway.store.models import DOC_REPORT, documents_t, envelopes_t, events_t

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SEED = 6
EVENTS = 5000
KILLS = 12
#: Everything DUDE can do wrong, at once (adapters/dude/emulator/faults.py).
FAULTS = {
    "seed": SEED, "latency_seconds": 0.05, "latency_jitter_seconds": 0.15,
    "error_share": 0.1, "error_status": 503, "timeout_share": 0.05, "timeout_seconds": 1.5, "cut_share": 0.05,
    "bad_receipt_signature_share": 0.05,
    "report_loss_share": 0.03, "report_late_share": 0.2, "report_late_seconds": 2.0, "report_duplicate_share": 0.3,
    "reports_out_of_order": True,
}
FINAL = {"ACCEPTE", "REJETE", "INVALIDE", "SANS_REPONSE"}
SETTLED_ENVELOPES = {EnvelopeState.TRAITE.value, EnvelopeState.REJETE.value, EnvelopeState.SANS_REPONSE.value}


def store_counts(gw: Gateway) -> tuple[Counter, Counter, int]:
    with gw.engine.connect() as conn:
        events = Counter(dict(conn.execute(sa.select(events_t.c.state, sa.func.count())
                                           .group_by(events_t.c.state)).all()))
        envelopes = Counter(dict(conn.execute(sa.select(envelopes_t.c.state, sa.func.count())
                                              .group_by(envelopes_t.c.state)).all()))
        lines = conn.execute(sa.select(sa.func.count()).select_from(
            sa.select(events_t.c.source_file, events_t.c.source_line).distinct().subquery())).scalar_one()
    return events, envelopes, lines


def settled(gw: Gateway) -> bool:
    events, envelopes, _ = store_counts(gw)
    return set(events) <= FINAL and set(envelopes) <= SETTLED_ENVELOPES


def plan(rng: random.Random, emulator, process: subprocess.Popen, expected: float) -> str | None:
    """Wait for a random moment of this run and name it; None if the run ends first.

    Two kills in five come at a random point of the run's expected duration (starting, reading the exports,
    sealing, resending, waiting for reports), the others while envelopes are on the wire: once DUDE has received
    one to three more of them, the receipts of the last ones not yet recorded (a kill by time alone would
    mostly miss the few seconds a night spends sending). Either way the moment falls before the run would
    have ended, so that every run is cut short until the last ones."""
    if rng.random() < 0.4:
        deadline, target = time.monotonic() + rng.uniform(0.15, 0.9) * expected, None
    else:
        deadline, target = time.monotonic() + 0.9 * expected, emulator.ledger()["lots"] + rng.randint(1, 3)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        if target is not None and emulator.ledger()["lots"] >= target:
            return "pendant l'envoi"
        time.sleep(0.05)
    return "au hasard" if target is None else "au hasard (plus rien à envoyer)"


def test_chaos_night_killed_and_restarted_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    init_dev_keys(settings)
    night = generate_night(tmp_path / "nuit", events=EVENTS, seed=SEED)
    lines = night.expected["records"]
    inputs = [arg for path in night.export_files for arg in ("--input", str(path))]
    gw = Gateway.open(settings)  # the API receiving DUDE's pushed reports, and the final count
    logs = tmp_path / "runs"
    logs.mkdir()
    kills: list[dict] = []
    refused = completed = 0
    durations = [12.0]  # how long a run lasts, as last seen (a whole first night: about 12 s)

    with serve_in_thread(create_app(gw)) as api_url, emulator_process(
            settings, registry=night.registry_file, report_delay=0.3, callback_url=f"{api_url}{CALLBACK_PATH}",
            extra_args=["--faults", json.dumps(FAULTS)]) as emulator:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
               "GATEWAY_DATA_DIR": str(settings.data_dir), "GATEWAY_DUDE_URL": emulator.base_url,
               "GATEWAY_ENVELOPE_MAX_EVENTS": "100", "GATEWAY_HTTP_TIMEOUT_SECONDS": "1.0",
               "GATEWAY_SEND_ATTEMPTS": "3", "GATEWAY_RETRY_BACKOFF_SECONDS": "0.05",
               "GATEWAY_RETRY_BACKOFF_MAX_SECONDS": "0.3", "GATEWAY_REPORT_POLL_INTERVAL_SECONDS": "0.2",
               "GATEWAY_REPORT_WAIT_SECONDS": "2", "GATEWAY_REPORT_TIMEOUT_SECONDS": "4",
               "GATEWAY_REPORT_MAX_POLLS": "2", "GATEWAY_LEASE_SECONDS": "1"}
        command = [sys.executable, "-m", "gateway", "run", "--json", *inputs]

        def start(n: int) -> subprocess.Popen:
            with open(logs / f"run-{n:02d}.log", "wb") as log:
                return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)

        n = 0
        while len(kills) < KILLS:
            n += 1
            process, began = start(n), time.monotonic()
            kill = plan(rng, emulator, process, expected=min(durations[-3:]))
            if kill is None:  # it ended before its moment came
                code = process.wait()
                durations.append(time.monotonic() - began)
                if b"RUN_IN_PROGRESS" in (logs / f"run-{n:02d}.log").read_bytes():
                    refused += 1  # the killed run's lease has not expired yet (1 s): try again
                    time.sleep(0.3)
                    continue
                # 3: done, some envelopes still without a receipt (DUDE's faults): the next runs resend them
                assert code in (0, 1, 3), (logs / f"run-{n:02d}.log").read_text(errors="replace")[-2000:]
                completed += 1
                continue
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills.append({"run": n, "moment": kill, "after_seconds": round(time.monotonic() - began, 2),
                          "lots_received_by_dude": emulator.ledger()["lots"]})

        for _ in range(10):  # then let it finish: runs until every event and envelope is settled
            n += 1
            process = start(n)
            code = process.wait(timeout=120)
            if b"RUN_IN_PROGRESS" in (logs / f"run-{n:02d}.log").read_bytes():
                time.sleep(0.5)
                continue
            assert code in (0, 1, 3), (logs / f"run-{n:02d}.log").read_text(errors="replace")[-2000:]
            completed += 1
            if settled(gw):
                break
        time.sleep(1.0)  # the last pushes in flight (duplicates) reach the callback
        ledger = emulator.ledger()

    events, envelopes, distinct_lines = store_counts(gw)
    with gw.engine.connect() as conn:
        via = dict(conn.execute(sa.select(documents_t.c.note, sa.func.count()).where(
            documents_t.c.kind == DOC_REPORT).group_by(documents_t.c.note)).all())
    gw.close()
    rows = sum(events.values())
    summary = {
        "events_in_input": lines,
        "kills": len(kills), "kills_survived": len(kills) if set(events) <= FINAL else 0,
        "kill_moments": [f"{k['moment']} ({k['after_seconds']} s)" for k in kills],
        "lots_received_by_dude_at_each_kill": [k["lots_received_by_dude"] for k in kills],
        "runs_completed": completed, "runs_refused_while_a_killed_run_held_its_lease": refused,
        "events_lost": lines - rows,
        "events_processed_twice": len(ledger["events_applied_more_than_once"]),
        "lots_processed_twice": len(ledger["lots_processed_more_than_once"]),
        "final_states": dict(sorted(events.items())),
        "envelopes": dict(sorted(envelopes.items())),
        "sans_reponse_because_dude_lost_the_report": events.get("SANS_REPONSE", 0),
        "dude": {"lots": ledger["lots"], "lot_replays": ledger["lot_replays"], "events": ledger["events"],
                 "events_by_status": ledger["events_by_status"], "reports": ledger["reports"]},
        "reports_applied_via": via,
        "faults": FAULTS,
        "seconds": round(time.monotonic() - started, 1),
    }
    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "chaos-summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"\nNuit du chaos : {summary['kills_survived']} arrêts brutaux (SIGKILL) surmontés, "
          f"{summary['events_lost']} événement perdu, {summary['events_processed_twice']} traité deux fois ; "
          f"états finaux {summary['final_states']} pour {lines} lignes ; "
          f"{summary['sans_reponse_because_dude_lost_the_report']} SANS_REPONSE (comptes rendus perdus par le DUDE, "
          f"{ledger['reports']['lost']} lots) ; {summary['seconds']} s.\n{json.dumps(summary, ensure_ascii=False)}")

    assert len(kills) >= 10
    assert set(events) <= FINAL, events  # every event in a final state
    assert set(envelopes) <= SETTLED_ENVELOPES, envelopes
    assert rows == lines and distinct_lines == lines  # every line, exactly one row: nothing lost, nothing doubled
    assert ledger["events_applied_more_than_once"] == [] and ledger["lots_processed_more_than_once"] == []
    assert ledger["events"] == events["ACCEPTE"] + events["REJETE"] + events["SANS_REPONSE"]
    assert envelopes.get("SANS_REPONSE", 0) == ledger["reports"]["lost"]  # silence only where DUDE lost it
    assert ledger["lot_replays"] > 0  # envelopes were sent again (cut, time-out, broken receipt, kill): never twice
    assert via.get("callback", 0) > 0 and sum(via.values()) == envelopes["TRAITE"]  # each report applied once
