"""``gateway demo``: a whole realistic night on embedded defaults, from nothing.

Creates the data folder and development keys, generates a national night of Parcours 3 exports and
the matching DUDE registry, starts the DUDE emulator as a separate process on a loopback port (as a
real DUDE would be: another process, its own keys, its own ledger), runs the batch against it, waits
for the reports, and returns the run's summary.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.context import Gateway
from gateway.errors import ConfigurationError
from gateway.fixturegen import GeneratedNight, generate_night
from gateway.keys import init_dev_keys
from gateway.pipeline.run import Progress, RunSummary, run_batch
from gateway.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True, slots=True)
class EmulatorHandle:
    base_url: str
    process: subprocess.Popen

    def ledger(self) -> dict:
        return httpx.get(f"{self.base_url}/ledger", timeout=30).json()


@contextmanager
def emulator_process(settings: Settings, *, registry: Path, port: int | None = None,
                     report_delay: float = 0.2, callback_url: str | None = None,
                     extra_args: list[str] | None = None) -> Iterator[EmulatorHandle]:
    """Run ``gateway emulator serve`` in a child process until the block ends."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "gateway", "emulator", "serve", "--port", str(port), "--registry", str(registry),
           "--data-dir", str(settings.data_dir), "--report-delay", str(report_delay)]
    if callback_url:
        cmd += ["--callback-url", callback_url]
    cmd += extra_args or []
    log_path = settings.emulator_dir / "emulator.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    base_url = f"http://127.0.0.1:{port}/dude/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise ConfigurationError(f"the DUDE emulator stopped at start-up; see {log_path}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ConfigurationError(f"the DUDE emulator did not start within 30 s; see {log_path}")
            time.sleep(0.1)
        yield EmulatorHandle(base_url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass(frozen=True, slots=True)
class DemoResult:
    summary: RunSummary
    night: GeneratedNight
    ledger: dict
    settings: Settings


def reset_demo_state(settings: Settings) -> None:
    """A demo always shows a whole night: forget the previous demo's store, ledger and exports."""
    for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
        (settings.data_dir / name).unlink(missing_ok=True)
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        (settings.emulator_dir / name).unlink(missing_ok=True)
    shutil.rmtree(settings.data_dir / "nuit", ignore_errors=True)


def run_demo(settings: Settings, *, events: int = 20_000, seed: int = 1, port: int | None = None,
             progress: Progress | None = None) -> DemoResult:
    if settings.database_url is not None and not settings.database_url.startswith("sqlite"):
        raise ConfigurationError("the demo runs on the embedded SQLite store; unset GATEWAY_DATABASE_URL")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    reset_demo_state(settings)
    init_dev_keys(settings)
    night = generate_night(settings.data_dir / "nuit", events=events, seed=seed)
    registry = settings.emulator_dir / "registre-dude.csv"
    shutil.copyfile(night.registry_file, registry)
    port = port or free_port()
    run_settings = settings.model_copy(update={"dude_url": f"http://127.0.0.1:{port}/dude/v1"})
    with emulator_process(run_settings, registry=registry, port=port) as emulator:
        gw = Gateway.open(run_settings)
        try:
            summary = run_batch(gw, night.export_files, trigger="demo", progress=progress or (lambda *a: None))
        finally:
            gw.close()
        ledger = emulator.ledger()
    return DemoResult(summary=summary, night=night, ledger=ledger, settings=run_settings)
