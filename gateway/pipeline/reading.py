"""Reading the exports of a run: parse, pre-flight and put each line in the form ingest stores, in a
child process when it can (issue 7).

Why a child process: reading, pre-flight and building the stored form (record, content hash, JSON
text) are pure Python, about a third of a night's CPU, and the interpreter lock keeps them on the
same core as storing and sealing. In a child they run on the other core, one batch ahead of the
run, which only unpickles tuples of strings (about a sixth of the work it hands over).

What the child sends, through one pipe, file after file: ``("start",)`` or ``("refused", error)`` (the
file is refused whole, `gateway.errors.ExportFileError`), then ``("items", [...])`` batches of
`Prepared` and `gateway.preflight.Rejection`, then ``("end",)`` or ``("failed", error)``; its log records
as ``("log", level, logger, message)``, logged again here; ``("done", peak_rss_mb, cpu_seconds)`` at the
very end. The pipe holds about one batch, so the child is never more than two batches ahead (memory
stays bounded at a million events) and a crash of the run loses nothing that was not yet stored:
the child only reads. The social security number does not cross the pipe: the export reader drops
that column before any record exists, in the child as in the run.

The child dies with the run: it holds no end of the pipe it reads from, so when the run's process
goes (even by SIGKILL), its next ``send`` fails and it stops. When the run's process has other
threads (the API server, the scheduler), the child is started by a fork server rather than a plain
``fork``, which is not safe then. ``read_in_subprocess = false`` (or a daemonic process, which may not
have children) reads in the run's own process, with the same results.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import resource
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

from adapters.parcours3.mapping import parse_export
from gateway.domain import stored_form
from gateway.errors import ExportFileError, GatewayError
from gateway.preflight import Outcome, PreflightConfig, Rejection

log = logging.getLogger("gateway.reading")

#: Lines per message from the child (about 600 kB pickled).
BATCH = 1000

#: ``json.dumps(record, ensure_ascii=False)``, the stored payload's form, with the encoder built once.
PAYLOAD_JSON = json.JSONEncoder(ensure_ascii=False).encode


class Prepared(NamedTuple):
    """A valid line in the form ingest stores it: everything ingest needs, nothing it must recompute."""

    key: str
    operation: str  # as read: C, M or A (ingest decides what goes on the wire)
    event_type: str
    code_ml: str
    identifiant_pe: str
    date_evenement: date
    record: dict[str, Any]  # `gateway.domain.to_record` without ``operation``: what sealing turns into XML
    content_hash: str
    payload: str  # ``record`` as stored (JSON text)
    source_file: str | None
    source_line: int | None


Item = Prepared | Rejection


def prepare(outcome: Outcome | Prepared) -> Item:
    """`Prepared` for a valid outcome (a rejection is kept as it is)."""
    if isinstance(outcome, (Rejection, Prepared)):
        return outcome
    event = outcome.event
    record, content_hash = stored_form(event)
    operation = record.pop("operation", "C")
    return Prepared(event.key, operation, record["type_evenement"], event.code_ml, event.identifiant_pe,
                    event.date_evenement, record, content_hash, PAYLOAD_JSON(record), outcome.source_file,
                    outcome.source_line)


class ExportStream:
    """The exports of one run, read in order; ``with ExportStream(...) as stream: for path, items in stream``.

    ``items`` is either an iterator of `Item` (consume it whole before the next file: ingest does) or the
    exception that refused the file (`ExportFileError`, `OSError`). Iterating ``items`` may raise the error
    that stopped the file midway (an `OSError` reading it). ``reader`` tells, at the end, the child's peak
    memory and CPU time (empty when reading in process).
    """

    def __init__(self, paths: Sequence[Path], config: PreflightConfig, *, encoding: str, in_child: bool = True):
        self.paths = [Path(p) for p in paths]
        self.config, self.encoding = config, encoding
        self.in_child = (in_child and bool(self.paths) and not multiprocessing.current_process().daemon
                         and "forkserver" in multiprocessing.get_all_start_methods())  # POSIX
        self.reader: dict[str, float] = {}
        self._process = None
        self._conn = None

    def __enter__(self) -> ExportStream:
        if self.in_child:
            # fork is safe, and starts at once, only when no other thread may hold a lock meanwhile.
            ctx = multiprocessing.get_context("fork" if threading.active_count() == 1 else "forkserver")
            reader, writer = ctx.Pipe(duplex=False)
            self._process = ctx.Process(target=_child, name="gateway-reader", daemon=True,
                                        args=(self.paths, self.config, self.encoding, writer, reader))
            self._process.start()
            writer.close()  # ours: the child's death must end our reads (EOFError), not hang them
            self._conn = reader
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is None:
            return
        self._conn.close()
        self._process.join(timeout=5)
        if self._process.is_alive():  # the run stopped before reading everything
            self._process.terminate()
            self._process.join()

    def __iter__(self) -> Iterator[tuple[Path, Iterator[Item] | BaseException]]:
        for path in self.paths:
            if not self.in_child:
                try:
                    yield path, (prepare(o) for o in parse_export(path, self.config, encoding=self.encoding))
                except (ExportFileError, OSError) as exc:
                    yield path, exc
                continue
            message = self._receive()
            if message[0] == "refused":
                yield path, message[1]
            else:
                yield path, self._items()
        if self.in_child:
            self._receive()  # "done"

    def _items(self) -> Iterator[Item]:
        while True:
            message = self._receive()
            if message[0] == "items":
                yield from message[1]
            elif message[0] == "end":
                return
            else:  # "failed"
                raise message[1]

    def _receive(self) -> tuple:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError) as exc:
                self._process.join(timeout=5)
                raise GatewayError(f"the export reader process stopped (exit code {self._process.exitcode})",
                                   code="READER") from exc
            kind = message[0]
            if kind == "log":
                logging.getLogger(message[2]).log(message[1], "%s", message[3])
            elif kind == "crashed":
                raise GatewayError(f"the export reader process failed:\n{message[1]}", code="READER")
            elif kind == "done":
                self.reader = {"peak_rss_mb": message[1], "cpu_seconds": message[2]}
                return message
            else:
                return message


class _PipeHandler(logging.Handler):
    """In the child: log records go to the run, which logs them where it logs everything else."""

    def __init__(self, conn):
        super().__init__(logging.INFO)
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        self.conn.send(("log", record.levelno, record.name, record.getMessage()))


def _child(paths: list[Path], config: PreflightConfig, encoding: str, conn, other_end) -> None:
    other_end.close()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_PipeHandler(conn))
    root.setLevel(logging.INFO)
    started = time.process_time()
    try:
        for path in paths:
            try:
                outcomes = parse_export(path, config, encoding=encoding)
            except (ExportFileError, OSError) as exc:
                conn.send(("refused", exc))
                continue
            conn.send(("start",))
            batch: list[Item] = []
            try:
                for outcome in outcomes:
                    batch.append(prepare(outcome))
                    if len(batch) == BATCH:
                        conn.send(("items", batch))
                        batch = []
            except (ExportFileError, OSError) as exc:
                conn.send(("items", batch))
                conn.send(("failed", exc))
                continue
            conn.send(("items", batch))
            conn.send(("end",))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conn.send(("done", round(peak, 1), round(time.process_time() - started, 3)))
    except (BrokenPipeError, ConnectionResetError):  # the run is gone: nobody to read for
        os._exit(0)
    except BaseException:  # noqa: BLE001  (said to the run, which raises it)
        try:
            conn.send(("crashed", traceback.format_exc()))
        except OSError:
            pass
