"""Reading the exports of a run: parse, pre-flight and put each line in the form ingest stores, in a
child process when it can (issue 7).

Why a child process: reading, pre-flight and building the stored form (record, content hash, JSON
text) are pure Python, about a third of a night's CPU, and the interpreter lock keeps them on the
same core as storing and sealing. In a child they run on another core, ahead of the run, which
only unpickles tuples of strings (about a sixth of the work it hands over). The child also writes
each event's XML but its start tag (`Prepared.xml_body`): the run's process is the night's busiest
(storing, sealing, receipts and reports on one thread) while the child often waits for it, and a
night's XML text is ~0.3 s of CPU moved off the run (measured: the run's CPU ~6 % lower). A thread of the run
takes the child's messages off the pipe as they come (`ExportStream._drain`), so that the child
reads up to `AHEAD` batches ahead while the run seals an envelope.

What the child sends, through one pipe, file after file: ``("start",)`` or ``("refused", error)`` (the
file is refused whole, `gateway.errors.ExportFileError`), then ``("items", [...])`` batches of
`Prepared` and `gateway.preflight.Rejection`, then ``("end",)`` or ``("failed", error)``; its log records
as ``("log", level, logger, message)``, logged again here; ``("done", peak_rss_mb, cpu_seconds)`` at the
very end. The child is never more than `AHEAD` batches ahead (memory stays bounded at a million
events), and a crash of the run loses nothing that was not yet stored: the child only reads. The
social security number does not cross the pipe: the export reader drops that column before any
record exists, in the child as in the run.

The child is a fresh interpreter (``python -c "…serve()"``, ~0.1 s to start: it imports this module and
the parsers, nothing else), not a fork: a run's process has other threads (the lease's heartbeat, the
API server, the scheduler), and a forked child could wait forever on a lock one of them held. It dies
with the run: it holds no end of the pipe but the one it writes to, so when the run's process goes
(even by SIGKILL), its next ``send`` fails and it stops. ``read_in_subprocess = false`` reads in the
run's own process, with the same results.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

import orjson

from adapters.dude.events_xml import event_body
from adapters.parcours3.mapping import parse_export
from gateway.domain import stored_form
from gateway.errors import ExportFileError, GatewayError
from gateway.gc_tuning import tune_gc
from gateway.preflight import Outcome, PreflightConfig, Rejection
from gateway.procstats import peak_rss_bytes

#: Lines per message from the child (about 600 kB pickled).
BATCH = 1000
#: Messages the run keeps received but not yet read: how far ahead the child may read (8 batches,
#: ~5 MB), so that it goes on while the run seals an envelope (~4 batches' worth of reading), and
#: memory stays bounded.
AHEAD = 8


def payload_json(record: dict[str, Any]) -> str:
    """A record as the store keeps it (``events.payload``): compact JSON, UTF-8 text unescaped.

    ``orjson`` (4 times faster than ``json.dumps`` here, and every line of every export goes through
    it). Readers decode it with any JSON parser: payloads stored by earlier versions, with spaces after
    ``:`` and ``,``, read back the same."""
    return orjson.dumps(record).decode()


class Prepared(NamedTuple):
    """A valid line in the form ingest stores it: everything ingest needs, nothing it must recompute."""

    key: str
    operation: str  # as read: C, M or A (ingest decides what goes on the wire)
    event_type: str
    code_ml: str
    identifiant_pe: str
    date_evenement: date
    #: `gateway.domain.to_record` without ``operation``: what sealing turns into XML. None for a line read
    #: from an export (`ExportStream`): ``payload`` is its JSON, which `decoded_record` reads back when
    #: needed. Not carrying both halves what a line costs to pickle and unpickle (~0.1 s of the run's
    #: busiest core per 20,000 lines) and what the run holds in memory for the envelope being filled.
    record: dict[str, Any] | None
    content_hash: str
    payload: str  # ``record`` as stored (JSON text)
    source_file: str | None
    source_line: int | None
    #: The ``Evenement``'s XML after its start tag (`adapters.dude.events_xml.event_body`; a cancellation
    #: when ``operation`` is ``A``): written here, in the reader's process, so that sealing the run's
    #: envelopes (on the run's busiest core) only adds the start tag. None when nobody will seal from it
    #: (the API's submissions, a dry run): sealing then writes it from the stored payload.
    xml_body: str | None

    def decoded_record(self) -> dict[str, Any]:
        """``record``, read back from ``payload`` when the line came without it (same keys, same values)."""
        return self.record if self.record is not None else orjson.loads(self.payload)


Item = Prepared | Rejection


def prepare(outcome: Outcome | Prepared, *, stored: tuple[dict[str, Any], str] | None = None,
            with_xml: bool = False, keep_record: bool = True) -> Item:
    """`Prepared` for a valid outcome (a rejection is kept as it is); ``stored``: its `stored_form`
    when the caller has computed it already; ``with_xml``: with its `Prepared.xml_body`;
    ``keep_record``: with its `Prepared.record` (else None: the payload says it all)."""
    if isinstance(outcome, (Rejection, Prepared)):
        return outcome
    event = outcome.event
    record, content_hash = stored or stored_form(event)
    operation = record.pop("operation", "C")
    return Prepared(event.key, operation, record["type_evenement"], event.code_ml, event.identifiant_pe,
                    event.date_evenement, record if keep_record else None, content_hash, payload_json(record),
                    outcome.source_file,
                    outcome.source_line, event_body(record, cancels=operation == "A") if with_xml else None)


def start_child(module: str, *fds: int, stdin: int = subprocess.DEVNULL) -> subprocess.Popen:
    """A fresh interpreter (not a fork: see above) running ``module.serve()`` with ``fds``, its ends of our
    pipes, as arguments; they are closed here once it has them, so that its death, or ours, ends the other's
    reads (EOFError). It imports the very code the run imported (a checkout on ``sys.path``, or the
    installed package). The export reader's and the sealing process's (`gateway.pipeline.sealing`)."""
    here = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
    try:
        return subprocess.Popen([sys.executable, "-c", f"from {module} import serve; serve()", *map(str, fds)],
                                stdin=stdin, pass_fds=fds, close_fds=True, env=env)
    finally:
        for fd in fds:
            os.close(fd)


class ExportStream:
    """The exports of one run, read in order; ``with ExportStream(...) as stream: for path, items in stream``.

    ``items`` is either an iterator of `Item` (consume it whole before the next file: ingest does) or the
    exception that refused the file (`ExportFileError`, `OSError`). Iterating ``items`` may raise the error
    that stopped the file midway (an `OSError` reading it). ``reader`` tells, at the end, the child's peak
    memory and CPU time (empty when reading in process). ``with_xml``: each line with its XML
    (`Prepared.xml_body`), for a run that seals what it reads.
    """

    def __init__(self, paths: Sequence[Path], config: PreflightConfig, *, encoding: str, in_child: bool = True,
                 with_xml: bool = False):
        self.paths = [Path(p) for p in paths]
        self.config, self.encoding, self.with_xml = config, encoding, with_xml
        self.in_child = in_child and bool(self.paths) and os.name == "posix"
        self.reader: dict[str, float] = {}
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._unread = False  # a file's items are being read (in the child's case)
        self._inbox: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=AHEAD)
        self._closing = threading.Event()
        self._pump: threading.Thread | None = None

    def __enter__(self) -> ExportStream:
        if self.in_child:
            try:
                self._start()
            except BaseException:
                self.__exit__()
                raise
        return self

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        self._conn = Connection(read_fd, writable=False)
        self._process = start_child("gateway.pipeline.reading", write_fd, stdin=subprocess.PIPE)
        with self._process.stdin as orders:  # our own pickle, read by our own code
            pickle.dump((self.paths, self.config, self.encoding, self.with_xml), orders)
        self._pump = threading.Thread(target=self._drain, name="export-reader-pipe", daemon=True)
        self._pump.start()

    def _drain(self) -> None:
        """Move the child's messages from the pipe to ``_inbox`` as they come, unread (bytes), so that the
        child goes on reading while the run seals an envelope: a pipe holds less than one batch. The
        bytes are unpickled by the run's thread (`_receive`); this one only waits on the pipe, without
        the interpreter lock."""
        while True:
            try:
                data: bytes | BaseException = self._conn.recv_bytes()
            except (EOFError, OSError) as exc:
                data = exc
            while not self._closing.is_set():
                try:
                    self._inbox.put(data, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if self._closing.is_set() or isinstance(data, BaseException):
                return

    def __exit__(self, *exc: object) -> None:
        """Normally the child has said "done" and is leaving; if the run stopped reading before that, the
        child is killed (it only reads). Then the pipe thread sees the end of the pipe, which is closed."""
        self._closing.set()
        if self._process is not None:
            try:
                self._process.wait(timeout=5 if self.reader else 0)  # "done" received: it is leaving
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._pump is not None:
            self._pump.join()
        if self._conn is not None:
            self._conn.close()

    def __iter__(self) -> Iterator[tuple[Path, Iterator[Item] | BaseException]]:
        for path in self.paths:
            if not self.in_child:
                try:
                    yield path, (prepare(o, with_xml=self.with_xml, keep_record=False)
                                 for o in parse_export(path, self.config, encoding=self.encoding))
                except (ExportFileError, OSError) as exc:
                    yield path, exc
                continue
            if self._unread:  # its messages come first in the pipe: they would be taken for the next file's
                raise RuntimeError("ExportStream: read a file's items to the end before the next file")
            message = self._expect("refused", "start")
            if message[0] == "refused":
                yield path, message[1]
            else:
                self._unread = True
                yield path, self._items()
        if self.in_child:
            self._expect("done")

    def _items(self) -> Iterator[Item]:
        while True:
            message = self._expect("items", "end", "failed")
            if message[0] == "items":
                yield from message[1]
                continue
            self._unread = False
            if message[0] == "failed":
                raise message[1]
            return

    def _expect(self, *kinds: str) -> tuple:
        message = self._receive()
        if message[0] not in kinds:  # a bug on one side or the other: say so rather than misread the stream
            raise GatewayError(f"the export reader sent {message[0]!r} where {' or '.join(kinds)} was expected",
                               code="READER")
        return message

    def _receive(self) -> tuple:
        while True:
            data = self._inbox.get()
            if isinstance(data, BaseException):
                try:
                    code = self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    code = None
                raise GatewayError(f"the export reader process stopped (exit code {code})",
                                   code="READER") from data
            message = pickle.loads(data)
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


def serve() -> None:
    """The reader process's entry point: orders on stdin, messages on the pipe named by ``argv[1]``."""
    tune_gc()
    conn = Connection(int(sys.argv[1]), readable=False)
    paths, config, encoding, with_xml = pickle.load(sys.stdin.buffer)
    _read(paths, config, encoding, conn, with_xml=with_xml)


def _read(paths: list[Path], config: PreflightConfig, encoding: str, conn: Connection, *,
          with_xml: bool) -> None:
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
                    batch.append(prepare(outcome, with_xml=with_xml, keep_record=False))
                    if len(batch) == BATCH:
                        conn.send(("items", batch))
                        batch = []
            except (ExportFileError, OSError) as exc:
                conn.send(("items", batch))
                conn.send(("failed", exc))
                continue
            conn.send(("items", batch))
            conn.send(("end",))
        conn.send(("done", round((peak_rss_bytes() or 0) / 2**20, 1), round(time.process_time() - started, 3)))
    except (BrokenPipeError, ConnectionResetError):  # the run is gone: nobody to read for
        os._exit(0)
    except BaseException:  # noqa: BLE001  (said to the run, which raises it)
        try:
            conn.send(("crashed", traceback.format_exc()))
        except OSError:
            pass
