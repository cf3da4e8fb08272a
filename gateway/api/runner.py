"""Runs started through the API (admin only): `run_batch` in a background thread, one at a time.

The request is answered 202 with the run's id as soon as its row exists; the run's progress and
outcome are then read with ``GET /api/v1/runs/{id}``. A second start while a run goes on is refused
(409 ``RUN_IN_PROGRESS``): the one this process runs, or any run holding the run lease
(`gateway.nightly.RunLease`: the night, a ``gateway run``, another instance). The lease is taken here,
in the request, so that two requests racing on two instances cannot both start; a run whose instance
died no longer blocks once its lease expires.

Inputs are export *names* in ``settings.runs_input_dir``: an API client never names a path on the
server, and nothing outside that folder is read.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from gateway.context import Gateway
from gateway.errors import FieldError, RequestRejected, RunInProgress
from gateway.nightly import RunLease
from gateway.pipeline.run import run_batch
from gateway.store.models import audit_t

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
        """The drop folder's exports ``names`` (bare file names). A symbolic link is not followed here: the run
        refuses it as it opens it (``P3_SYMLINK``), as the night does; resolving it first read a link to a file
        of the folder through its target, and answered a link pointing elsewhere "not found"."""
        folder = self.gw.settings.runs_input_dir.resolve()
        paths, errors = [], []
        for index, name in enumerate(names):
            try:
                path = folder / name
                found = (name not in ("", ".", "..") and path.parent == folder
                         and (path.is_symlink() or path.is_file()))
            except (ValueError, OSError):  # a NUL byte, a name too long: no such export either (it was a 500)
                path, found = folder / "?", False
            if not found:
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
            if self.busy:
                raise RunInProgress("une exécution lancée par l'API est en cours")
            held = RunLease(self.gw).acquire()  # RunInProgress when another instance or command holds it
            started = threading.Event()
            box: dict = {}

            def on_started(run_id: int) -> None:
                held.started(run_id)
                box["run_id"] = run_id
                started.set()

            def work() -> None:
                try:
                    run_batch(self.gw, inputs, trigger="api", dry_run=dry_run, wait_for_reports=wait_for_reports,
                              on_started=on_started, guard=held.guard)
                except Exception as exc:  # recorded on the run row by run_batch; logged here
                    box["error"] = exc
                    log.exception("run started through the API failed")
                finally:
                    held.release()
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

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
