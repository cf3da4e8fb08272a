"""``gateway demo``: a whole realistic night on embedded defaults, from nothing.

Creates the data folder and development keys, generates a national night of Parcours 3 exports and
the matching DUDE registry, serves the gateway's API on a loopback port, starts the DUDE emulator as a
separate process on another one (as a real DUDE would be: another process, its own keys, its own
ledger) with the API's callback as the address of its reports, runs the batch against it, waits for
the reports, and returns the run's summary.

Reports come back the way the brief describes (§4: "pushed to the gateway's callback URL"): the
emulator POSTs each signed ``CompteRendu`` to ``/api/v1/dude/comptes-rendus``, over real HTTP. The
run still polls, as its fallback, but only after `DEMO_POLL_SECONDS`, by when the pushed reports are
normally in; the summary says how many came each way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from gateway.api.main import create_app
from gateway.api.routes.dude import CALLBACK_PATH
from gateway.api.serving import cannot_listen, serve_in_thread
from gateway.context import Gateway
from gateway.errors import ConfigurationError
from gateway.fixturegen import GeneratedNight, generate_night
from gateway.keys import init_dev_keys
from gateway.pipeline.run import Progress, RunSummary, run_batch
from gateway.settings import Settings
from gateway.store.models import DOC_REPORT, documents_t

#: How long the demo's DUDE takes to produce a report, and when the run first polls for one after the
#: receipt. The emulator pushes a report within 0.2 s of its being ready: the callback comes first, and
#: polling only picks up what it missed. The report is not made instant on purpose: a report pushed
#: before the gateway has even recorded the receipt of a large envelope is applied, then the receipt
#: moves the envelope back to RECU and a poll applies the report a second time (harmless, but noisy).
DEMO_REPORT_DELAY_SECONDS = 1.0
DEMO_POLL_SECONDS = 2.0


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


def _last_words(log_path: Path, since: int) -> str:
    """The last line the emulator wrote after byte ``since`` of its log (its ``Erreur KEYS : …``, naming the
    file), to say why it stopped rather than only where to look; nothing if it wrote none this time (the log is
    kept from one start to the next: an older line would be another start's)."""
    try:
        with open(log_path, "rb") as log:
            log.seek(max(since, log.seek(0, os.SEEK_END) - 4096))
            lines = [line.strip() for line in log.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f" : {lines[-1][:500]}" if lines else ""


@contextmanager
def emulator_process(settings: Settings, *, registry: Path, port: int | None = None,
                     report_delay: float = 0.2, callback_url: str | None = None,
                     extra_args: list[str] | None = None) -> Iterator[EmulatorHandle]:
    """Run ``gateway emulator serve`` in a child process until the block ends. A ``port`` already taken is
    refused here: the health check would get its 200 from whatever holds it, and the night would go there."""
    if port is None:
        port = free_port()
    else:
        problem = cannot_listen("127.0.0.1", port, what="l'émulateur", port_hint="--port", host_hint="--host")
        if problem:
            raise ConfigurationError(f"impossible d'écouter sur 127.0.0.1:{port} : {problem}.")
    cmd = [sys.executable, "-m", "gateway", "emulator", "serve", "--port", str(port), "--registry", str(registry),
           "--data-dir", str(settings.data_dir), "--report-delay", str(report_delay)]
    if callback_url:
        cmd += ["--callback-url", callback_url]
    cmd += extra_args or []
    log_path = settings.emulator_dir / "emulator.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        since = log.tell()
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    base_url = f"http://127.0.0.1:{port}/dude/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise ConfigurationError(f"l'émulateur du DUDE s'est arrêté au démarrage{_last_words(log_path, since)} "
                                         f"(son journal : {log_path})")
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
    #: How the reports came: ``{"callback": n, "polling": m}``.
    reports_via: dict[str, int] = field(default_factory=dict)
    api_url: str | None = None


def reset_demo_state(settings: Settings, *, force: bool = False) -> None:
    """A demo always shows a whole night: forget the previous demo's store, ledger and exports.

    Not a store that did more than demos (unless ``force``): ``gateway demo`` run on a machine whose
    ``GATEWAY_DATA_DIR`` names the real gateway's folder deleted its store, every night and API client with it.
    Such a store is told by its runs: one not started by a demo (``gateway run``, the schedule, the API)."""
    store = settings.data_dir / "gateway.db"
    if not force and (other := runs_not_from_demos(store)):
        raise ConfigurationError(
            f"{store} contient {other} exécution(s) qui ne viennent pas d'une démonstration : la démonstration "
            "effacerait cette base. Lui donner un dossier à elle (--data-dir), ou, pour l'effacer quand même : "
            "gateway demo --force")
    for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
        (settings.data_dir / name).unlink(missing_ok=True)
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        (settings.emulator_dir / name).unlink(missing_ok=True)
    shutil.rmtree(settings.data_dir / "nuit", ignore_errors=True)


def runs_not_from_demos(store: Path) -> int:
    """How many runs of the SQLite ``store`` a demo did not start (0 if there is no such store or table).
    Read with `sqlite3`, read-only: looking must not create the file, nor migrate it."""
    if not store.is_file():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM runs WHERE trigger <> 'demo'").fetchone()[0]
    except sqlite3.Error:  # not a store of ours (no runs table), or unreadable: nothing to protect here
        return 0


def run_demo(settings: Settings, *, events: int = 20_000, seed: int = 1, port: int | None = None,
             progress: Progress | None = None, force: bool = False) -> DemoResult:
    if settings.database_url is not None:  # a server database, or a SQLite file elsewhere: never the demo's
        raise ConfigurationError("la démonstration tourne sur sa propre base SQLite, dans son dossier de données : "
                                 "retirer GATEWAY_DATABASE_URL (elle désigne une autre base, que la démonstration "
                                 "ne doit pas remplir)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    reset_demo_state(settings, force=force)
    init_dev_keys(settings)
    night = generate_night(settings.data_dir / "nuit", events=events, seed=seed)
    registry = settings.emulator_dir / "registre-dude.csv"
    shutil.copyfile(night.registry_file, registry)
    port = port or free_port()
    run_settings = settings.model_copy(update={
        "dude_url": f"http://127.0.0.1:{port}/dude/v1",
        "report_poll_interval_seconds": max(settings.report_poll_interval_seconds, DEMO_POLL_SECONDS)})
    gw = Gateway.open(run_settings)
    try:
        with serve_in_thread(create_app(gw)) as api_url, \
                emulator_process(run_settings, registry=registry, port=port, report_delay=DEMO_REPORT_DELAY_SECONDS,
                                 callback_url=f"{api_url}{CALLBACK_PATH}") as emulator:
            summary = run_batch(gw, night.export_files, trigger="demo", progress=progress or (lambda *a: None))
            ledger = emulator.ledger()
        reports_via = reports_received(gw)
    finally:
        gw.close()
    return DemoResult(summary=summary, night=night, ledger=ledger, settings=run_settings, reports_via=reports_via,
                      api_url=api_url)


def reports_received(gw: Gateway) -> dict[str, int]:
    """Reports kept in the store, by the way they came (callback or polling)."""
    with gw.engine.connect() as conn:
        counts = dict(conn.execute(sa.select(documents_t.c.note, sa.func.count()).where(
            documents_t.c.kind == DOC_REPORT).group_by(documents_t.c.note)).all())
    return {"callback": counts.get("callback", 0), "polling": counts.get("polling", 0)}
