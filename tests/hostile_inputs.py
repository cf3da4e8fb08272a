"""The hostile corpus (``fixtures/hostile/``) and its big cases, generated at test time rather than committed.

Shared by the tests (`tests.gateway.test_hostile_input`) and the benchmark (``bench/hostile.py``): one list
of cases, one expectation each (also the table of ``fixtures/hostile/README.md``, which a test keeps in
step). Every CSV holds four good lines (events 1–4, for the registry's Zoé Lefèvre) around the bad one
(event 901, physical line 4), so a test can check that none of the good ones is lost.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.procstats import peak_rss_bytes, reset_peak, rss_bytes
from tests.factories import P3_COLUMNS, p3_line

HOSTILE = Path(__file__).resolve().parent.parent / "fixtures" / "hostile"
NS = "urn:fr:spe:dude:echanges:v1"
MB = 1024 * 1024


@dataclass(frozen=True)
class CsvExpect:
    """What must happen to one hostile export: a whole-file refusal (its code), a file warning (its code),
    or some lines refused (line → (code, fragment of the message)), the good events being kept."""

    file_error: str | None = None
    warning: str | None = None
    bad_lines: dict[int, tuple[str, str]] = field(default_factory=dict)
    good_ids: tuple[str, ...] = ("1", "2", "3", "4")


CSV_EXPECT: dict[str, CsvExpect] = {
    "csv-mauvais-encodage.csv": CsvExpect(bad_lines={4: ("E09", "Caractères illisibles")}),
    "csv-octets-nul.csv": CsvExpect(bad_lines={4: ("E09", "Octet nul")}),
    "csv-guillemets-desequilibres.csv": CsvExpect(bad_lines={4: ("E09", "Nombre de champs incorrect")}),
    "csv-champ-trop-long.csv": CsvExpect(bad_lines={4: ("E09", "organisme")}),
    "csv-100-mo.csv": CsvExpect(bad_lines={4: ("E09", "Ligne trop longue")}),
    "csv-vide.csv": CsvExpect(file_error="P3_EMPTY", good_ids=()),
    "csv-entete-seule.csv": CsvExpect(warning="P3_NO_RECORDS", good_ids=()),
    "csv-utf16.csv": CsvExpect(file_error="P3_ENCODING", good_ids=()),
    "csv-colonne-manquante.csv": CsvExpect(file_error="P3_COLUMN_MISSING", good_ids=()),
    "csv-separateur-virgule.csv": CsvExpect(file_error="P3_COLUMN_MISSING", good_ids=()),
}

#: Every hostile XML document is refused ``L03`` by every door, before any signature or schema check.
XML_CASES = sorted([p.name for p in HOSTILE.glob("xml-*.xml")] + ["xml-noeud-texte-enorme.xml"])

#: Generated at test time (too big to commit): name → size in bytes, roughly.
GENERATED = {"xml-noeud-texte-enorme.xml": 12 * MB, "csv-100-mo.csv": 100 * MB}


def huge_text_node_xml(size: int = GENERATED["xml-noeud-texte-enorme.xml"]) -> bytes:
    """A report whose ``IdLot`` is one text node of ``size`` bytes (libxml2 stops at 10 MB without
    ``huge_tree``, which stays off)."""
    head = f'<?xml version="1.0" encoding="UTF-8"?>\n<CompteRendu xmlns="{NS}"><IdLot>'.encode()
    return head + b"x" * size + b"</IdLot></CompteRendu>\n"


def xml_case(name: str) -> bytes:
    if name == "xml-noeud-texte-enorme.xml":
        return huge_text_node_xml()
    return (HOSTILE / name).read_bytes()


def _line(fields: dict[str, str]) -> bytes:
    return (";".join(fields.get(c, "") for c in P3_COLUMNS) + "\r\n").encode("cp1252")


def write_csv_with_huge_line(path: Path, size: int = GENERATED["csv-100-mo.csv"]) -> Path:
    """Events 1 and 2, then event 901 whose comment is one line of ``size`` bytes, then events 3 and 4;
    written by 1 MB chunks (the test never holds the file)."""
    with open(path, "wb") as out:
        out.write((";".join(P3_COLUMNS) + "\r\n").encode("cp1252"))
        out.write(_line(p3_line(id_evenement="1")) + _line(p3_line(id_evenement="2")))
        bad = _line(p3_line(id_evenement="901", commentaire="@@")).split(b"@@")
        out.write(bad[0])
        chunk = b"x" * MB
        for _ in range(size // MB):
            out.write(chunk)
        out.write(bad[1])
        out.write(_line(p3_line(id_evenement="3")) + _line(p3_line(id_evenement="4")))
    return path


def write_csv_of_many_lines(path: Path, size: int = 100 * MB) -> tuple[Path, int]:
    """``size`` bytes of good lines (a national night that is merely big), one in a thousand broken by an
    unbalanced quote; returns the path and the number of lines."""
    good = _line(p3_line(id_evenement="@ID@"))
    broken = good.replace(b";CONS01;", b';"CONS01;')
    count = 0
    with open(path, "wb") as out:
        out.write((";".join(P3_COLUMNS) + "\r\n").encode("cp1252"))
        written = 0
        while written < size:
            count += 1
            line = (broken if count % 1000 == 0 else good).replace(b"@ID@", str(count).encode())
            out.write(line)
            written += len(line)
    return path, count


def csv_case(name: str, tmp: Path) -> Path:
    if name == "csv-100-mo.csv":
        return write_csv_with_huge_line(tmp / name)
    return HOSTILE / name


# --- memory -------------------------------------------------------------------------------------------

def peak_growth_in_child(work: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``work()`` in a forked child; return (its result, picklable, or the repr of what it raised) and
    how far the child's peak resident memory rose above what it started with, in bytes.

    A fork, because libxml2 allocates outside Python (tracemalloc sees none of it) and ``ru_maxrss`` of the
    test process only ever grows: the child's own peak, less what it held when it started, is what the work
    cost."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: do the work, report, leave without running any of the parent's cleanup
        os.close(read)
        start = rss_bytes()  # measured in the child: a fork does not map every page of the parent at once
        reset_peak()
        try:
            result = ("ok", work())
        except BaseException as exc:  # noqa: BLE001 — everything goes back to the parent
            result = ("raised", f"{type(exc).__name__}: {getattr(exc, 'code', '')}")
        growth = max(0, (peak_rss_bytes() or 0) - start)
        with os.fdopen(write, "wb") as out:
            out.write(pickle.dumps((*result, growth)))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    kind, value, growth = pickle.loads(data)
    return (value if kind == "ok" else ("raised", value)), growth
