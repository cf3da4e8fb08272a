"""Runs started through the API (admin only): `run_batch` in a background thread, one at a time.

The request is answered 202 with the run's id as soon as its row exists; the run's progress and
outcome are then read with ``GET /api/v1/runs/{id}``. A second start while a run goes on is refused
(409 ``RUN_IN_PROGRESS``): the one this process runs, or any run the store shows ``EN_COURS`` since
less than ``run_stale_seconds`` (a ``gateway run`` from the command line, another instance); an
older ``EN_COURS`` row is a run that crashed, and does not block.

Inputs are export *names* in ``settings.runs_input_dir``: an API client never names a path on the
server, and nothing outside that folder is read.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from gateway.context import Gateway
from gateway.errors import FieldError, RequestRejected, RunInProgress
from gateway.pipeline.run import run_batch
from gateway.store.models import audit_t, runs_t

log = logging.getLogger("gateway.api.runs")

START_TIMEOUT_SECONDS = 30.0


class RunLauncher:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def resolve_inputs(self, names: list[str]) -> list[Path]:
        folder = self.gw.settings.runs_input_dir.resolve()
        paths, errors = [], []
        for index, name in enumerate(names):
            path = (folder / name).resolve()
            if path.parent != folder or not path.is_file():
                errors.append(FieldError(f"inputs.{index}", f"pas de fichier {name!r} dans le dossier d'entrée",
                                         "not_found"))
            paths.append(path)
        if errors:
            raise RequestRejected("exports introuvables dans le dossier d'entrée de la passerelle", errors=errors)
        return paths

    def start(self, names: list[str], *, dry_run: bool, wait_for_reports: bool, actor: str,
              client_id: int | None) -> int:
        inputs = self.resolve_inputs(names)
        with self._lock:
            self._refuse_if_running()
            started = threading.Event()
            box: dict = {}

            def on_started(run_id: int) -> None:
                box["run_id"] = run_id
                started.set()

            def work() -> None:
                try:
                    run_batch(self.gw, inputs, trigger="api", dry_run=dry_run, wait_for_reports=wait_for_reports,
                              on_started=on_started)
                except Exception as exc:  # recorded on the run row by run_batch; logged here
                    box["error"] = exc
                    log.exception("run started through the API failed")
                finally:
                    started.set()

            self._thread = threading.Thread(target=work, name="api-run", daemon=True)
            self._thread.start()
            started.wait(START_TIMEOUT_SECONDS)
            if "run_id" not in box:
                raise box.get("error") or RunInProgress("l'exécution n'a pas démarré à temps")
            run_id = box["run_id"]
        with self.gw.engine.begin() as conn:
            conn.execute(audit_t.insert().values(
                at=self.gw.clock(), actor=actor[:120], client_id=client_id, action="RUN_START", target=str(run_id),
                count=1, detail=json.dumps({"inputs": names, "dry_run": dry_run}, ensure_ascii=False)))
        return run_id

    def _refuse_if_running(self) -> None:
        if self.busy:
            raise RunInProgress("une exécution lancée par l'API est en cours")
        since = self.gw.clock() - timedelta(seconds=self.gw.settings.run_stale_seconds)
        with self.gw.engine.connect() as conn:
            current = conn.execute(sa.select(runs_t.c.id).where(runs_t.c.outcome == "EN_COURS",
                                                                runs_t.c.started_at >= since)
                                   .order_by(runs_t.c.id.desc()).limit(1)).scalar()
        if current is not None:
            raise RunInProgress(f"l'exécution n° {current} est en cours")

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
