"""The social security number (NIR) never leaves the adapter: not in the store, the XML, the logs, the output."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import sqlalchemy as sa

from gateway.codes import EventType
from gateway.fixturegen import generate_night
from gateway.pipeline.run import run_batch
from gateway.store.models import documents_t
from tests.factories import p3_line, write_export

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "parcours3"


def nirs_of(paths: list[Path]) -> set[str]:
    found = set()
    for path in paths:
        with open(path, encoding="cp1252", newline="") as f:
            for row in csv.DictReader(f, delimiter=";"):
                if row.get("nir"):
                    found.add(row["nir"].strip())
    return found


def test_nir_appears_nowhere(gw, tmp_path: Path, caplog, capsys) -> None:
    caplog.set_level(logging.DEBUG)
    night = generate_night(tmp_path / "nuit", events=400, seed=3)
    mine = write_export(tmp_path / "P3_69001_20261128.csv", [
        p3_line(EventType.ENT, id_evenement="1", nir="204056912345678"),
        p3_line(EventType.ENT, id_evenement="2", nir="204056912345679", siret="1", type_evenement="MER"),
    ])
    inputs = [*night.export_files, mine, FIXTURES / "avec-nir.csv"]
    nirs = nirs_of(inputs)
    assert len(nirs) > 100

    summary = run_batch(gw, inputs)
    assert summary.states["ACCEPTE"] > 0 and summary.states["INVALIDE"] > 0

    with gw.engine.connect() as conn:
        documents = b"".join(conn.execute(sa.select(documents_t.c.body)).scalars())
        dump = "\n".join(str(tuple(row)) for table in ("events", "event_history", "runs", "envelopes")
                         for row in conn.execute(sa.text(f"SELECT * FROM {table}")))
    gw.close()
    database = b"".join(p.read_bytes() for p in gw.settings.data_dir.glob("gateway.db*"))
    logs = caplog.text + "".join(capsys.readouterr())
    assert documents and dump and logs
    for nir in nirs:
        assert nir.encode() not in database, "NIR in the database file"
        assert nir.encode() not in documents, "NIR in a signed document"
        assert nir not in dump, "NIR in a table"
        assert nir not in logs, "NIR in the logs"
    assert '"nir"' not in dump, "a nir field in a stored payload"
    # Logs name event keys, never people (brief §6): not even at DEBUG, not even a library's.
    for personal in ("Lefèvre", "Zoé", "2004-05-06", "06/05/2004", "1234567A"):
        assert personal not in logs, f"{personal!r} in the logs"
