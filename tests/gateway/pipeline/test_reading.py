"""The exports read in a child process (gateway.pipeline.reading): the same items as reading them in
process, refused files and logs passed on, and a child that never outlives the run nor hangs it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import pytest

from gateway.errors import ExportFileError, GatewayError
from gateway.fixturegen import generate_night
from gateway.pipeline.reading import ExportStream, Prepared
from gateway.preflight import PreflightConfig, Rejection
from tests.factories import p3_line, write_export

CONFIG = PreflightConfig(identifiant_pe_pattern=r"[0-9]{7}[A-Z]", send_comments=False, today=date(2026, 11, 29))


def read_all(paths: list[Path], *, in_child: bool) -> list[tuple[str, list | str]]:
    """Each file's name with its items, or with ``code: message`` of the error that refused it."""
    out = []
    with ExportStream(paths, CONFIG, encoding="auto", in_child=in_child, with_xml=True) as stream:
        for path, items in stream:
            if isinstance(items, BaseException):
                out.append((path.name, f"{getattr(items, 'code', '?')}: {items}"))
            else:
                out.append((path.name, list(items)))
    return out


def test_a_child_reads_exactly_what_the_run_would_read_itself(tmp_path: Path):
    night = generate_night(tmp_path / "nuit", events=3000, seed=7, night=date(2026, 11, 28))
    broken = tmp_path / "nuit" / "P3_00000_vide.csv"
    broken.write_bytes(b"")
    paths = [*night.export_files[:2], broken, *night.export_files[2:]]

    in_child = read_all(paths, in_child=True)

    assert in_child == read_all(paths, in_child=False)
    files = dict(in_child)
    assert files[broken.name].startswith("P3_EMPTY: ") and "fichier vide" in files[broken.name]
    items = [item for name, got in in_child if name != broken.name for item in got]
    assert len(items) == 3000
    prepared = [i for i in items if isinstance(i, Prepared)]
    assert prepared and any(isinstance(i, Rejection) for i in items)
    # what ingest stores: the payload is the record's JSON, the key its code_ml-id_evenement
    first = prepared[0]
    record = first.decoded_record()
    assert first.key == f"{record['code_ml']}-{record['id_evenement']}"
    assert '"operation"' not in first.payload and record["nom"] in first.payload
    # and its XML, but the start tag, which the store decides (version, operation on the wire)
    assert first.xml_body.startswith("<Jeune><IdentifiantDE>") and first.xml_body.endswith("</Evenement>")


def test_a_process_with_other_threads_reads_in_a_child_too(tmp_path: Path):
    """A run always has another thread (its lease's heartbeat; in `gateway serve`, the server's and the
    scheduler's): the reader is a fresh interpreter, not a fork that could inherit a lock one of them held."""
    paths = generate_night(tmp_path / "nuit", events=400, seed=3, night=date(2026, 11, 28)).export_files
    expected = read_all(paths, in_child=False)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="heartbeat")
    other.start()
    try:
        with ExportStream(paths, CONFIG, encoding="auto", with_xml=True) as stream:
            got = [(p.name, list(items)) for p, items in stream]
            child = stream._process
    finally:
        stop.set()
        other.join()
    assert child is not None and child.returncode == 0 and child.pid != os.getpid()
    assert stream.reader["cpu_seconds"] > 0 and stream.reader["peak_rss_mb"] > 0
    assert got == expected


def test_reading_the_next_file_before_the_last_ones_items_is_refused(tmp_path: Path):
    paths = generate_night(tmp_path / "nuit", events=400, seed=3, night=date(2026, 11, 28)).export_files
    with ExportStream(paths, CONFIG, encoding="auto") as stream:
        files = iter(stream)
        _, first = next(files)
        next(first)
        with pytest.raises(RuntimeError, match="to the end before the next file"):
            next(files)


def test_a_refused_file_keeps_its_code_and_message_across_the_process_boundary(tmp_path: Path):
    no_key = tmp_path / "P3_69001_20261128.csv"
    no_key.write_text("code_ml;nom\r\n69001;X\r\n", encoding="utf-8")
    good = write_export(tmp_path / "P3_69002_20261128.csv", [p3_line(id_evenement="1"), p3_line(id_evenement="2")])

    with ExportStream([no_key, good], CONFIG, encoding="auto") as stream:
        (first, refused), (second, items) = [(p, i if isinstance(i, BaseException) else list(i)) for p, i in stream]

    assert isinstance(refused, ExportFileError) and refused.code == "P3_COLUMN_MISSING"
    assert str(no_key) in str(refused) and "id_evenement" in str(refused)
    assert [i.key for i in items] == ["69001-1", "69001-2"]


def test_the_childs_log_lines_are_logged_by_the_run(tmp_path: Path, caplog):
    path = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line()])
    path.write_bytes(path.read_bytes().replace(b"saisi_le\r\n", b"saisi_le;antenne\r\n", 1))
    with caplog.at_level(logging.WARNING):
        assert [len(items) for _, items in read_all([path], in_child=True)] == [1]
    assert any("unknown column ignored: 'antenne'" in r.getMessage() for r in caplog.records)


def test_a_reader_that_dies_stops_the_run_with_a_clear_error_instead_of_hanging(tmp_path: Path):
    path = write_export(tmp_path / "P3_69001_20261128.csv",
                        [p3_line(id_evenement=str(i)) for i in range(1, 6001)])
    with pytest.raises(GatewayError) as caught:
        with ExportStream([path], CONFIG, encoding="auto") as stream:
            for _, items in stream:
                for n, _item in enumerate(items):
                    if n == 10:
                        os.kill(stream._process.pid, signal.SIGKILL)
    assert caught.value.code == "READER" and "exit code -9" in str(caught.value)


SELF_KILLING_RUN = """
import os, signal, sys
from datetime import date
from pathlib import Path
from gateway.pipeline.reading import ExportStream
from gateway.preflight import PreflightConfig
config = PreflightConfig(identifiant_pe_pattern=r"[0-9]{7}[A-Z]", send_comments=False, today=date(2026, 11, 29))
with ExportStream([Path(sys.argv[1])], config, encoding="auto") as stream:
    for _, items in stream:
        next(iter(items))
        print(stream._process.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_reader_does_not_outlive_a_run_killed_with_sigkill(tmp_path: Path):
    path = write_export(tmp_path / "P3_69001_20261128.csv",
                        [p3_line(id_evenement=str(i)) for i in range(1, 6001)])
    run = subprocess.run([sys.executable, "-c", SELF_KILLING_RUN, str(path)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[3], timeout=60)
    assert run.returncode == -signal.SIGKILL
    child = int(run.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the export reader outlived its run"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (its parent, gone, cannot reap it)
