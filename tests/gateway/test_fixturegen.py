"""The night generator: realistic files (brief §3), a registry consistent with them (§4), and a
manifest against which a test can reconcile every outcome."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import tracemalloc
import unicodedata
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from adapters.parcours3.mapping import parse_export
from adapters.parcours3.reader import read_export
from gateway.codes import Operation
from gateway.fixturegen import generate_night
from gateway.preflight import PreflightConfig, Rejection, Valid

NIGHT = date(2026, 11, 28)
CONFIG = PreflightConfig(identifiant_pe_pattern=r"[0-9]{7}[A-Z]", send_comments=False,
                         today=NIGHT + timedelta(days=1))


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return generate_night(tmp_path_factory.mktemp("night"), events=6000, seed=11, night=NIGHT,
                          missions_locales=8)


@pytest.fixture(scope="module")
def outcomes(night):
    return [o for path in night.export_files for o in parse_export(path, CONFIG)]


def digest(paths):
    return hashlib.sha256(b"".join(Path(p).read_bytes() for p in paths)).hexdigest()


def test_same_seed_same_bytes_other_seed_other_night(tmp_path):
    one = generate_night(tmp_path / "a", events=800, seed=5, night=NIGHT, missions_locales=4)
    two = generate_night(tmp_path / "b", events=800, seed=5, night=NIGHT, missions_locales=4)
    three = generate_night(tmp_path / "c", events=800, seed=6, night=NIGHT, missions_locales=4)
    files = lambda g: [*g.export_files, g.registry_file]  # noqa: E731
    assert digest(files(one)) == digest(files(two))
    assert digest(files(one)) != digest(files(three))
    assert one.expected == two.expected


def test_one_export_per_mission_locale_named_as_parcours3_does(night):
    assert len(night.export_files) == 8
    for path in night.export_files:
        code_ml = path.name.split("_")[1]
        assert path.name == f"P3_{code_ml}_20261128.csv" and len(code_ml) == 5 and code_ml.isdigit()
    assert night.manifest_file.name == "manifest.json"
    assert json.loads(night.manifest_file.read_text(encoding="utf-8")) == night.expected
    assert night.expected["records"] == 6000 == sum(f["records"] for f in night.expected["files"])


def test_files_are_windows_1252_with_crlf_and_vary_as_real_exports_do(night):
    headers, nir_files, unknown = set(), 0, 0
    illegible = {(d["file"], d["line"]) for d in night.expected["defects"]
                 if d["variant"] == "octet_illisible"}
    for path in night.export_files:
        data = path.read_bytes()
        assert data.count(b"\n") == data.count(b"\r\n") > 0
        for number, raw in enumerate(data.split(b"\r\n")[:-1], start=1):
            try:
                raw.decode("cp1252")
            except UnicodeDecodeError:
                assert (path.name, number) in illegible  # only the lines made illegible on purpose
        reader = read_export(path)
        assert reader.encoding == "cp1252"
        header = data.split(b"\r\n", 1)[0].decode("cp1252").split(";")
        headers.add(tuple(header))
        nir_files += "nir" in header
        unknown += bool(reader.warnings)
    assert len(headers) > 1, "column order should vary between files"
    assert nir_files and unknown


def test_some_fields_are_quoted_with_separators_or_line_breaks_inside(night):
    text = "".join(p.read_bytes().decode("cp1252", "replace") for p in night.export_files)
    assert '"Greta; antenne Nord"' in text or '"AFPA; site de Saint-Étienne"' in text
    assert any(f["physical_lines"] > f["records"] + 1 for f in night.expected["files"])


def test_the_mix_looks_like_a_night(night, outcomes):
    expected = night.expected
    types = Counter(o.event.type_evenement.value for o in outcomes if isinstance(o, Valid))
    assert types.most_common(1)[0][0] == "ENT"
    assert 0.38 < types["ENT"] / sum(types.values()) < 0.52
    assert all(types[t] for t in ("MER", "PFO", "PPR", "EPR", "EFO", "PEM", "CPA", "MAN", "SOR"))
    ops = expected["operations"]
    assert ops["C"] > 0.9 * expected["records"] and ops["M"] > 0 and ops["A"] > 0
    assert 1.3 < expected["records"] / expected["persons"] < 1.7
    defects = sum(expected["rejects_preflight"].values()) + sum(expected["rejects_store"].values())
    assert 0.02 < defects / expected["records"] < 0.045
    assert set(expected["rejects_preflight"]) == {"E04", "E07", "E08", "E09", "E10"}
    assert expected["rejects_store"]["E06"] > 0


def test_preflight_finds_exactly_the_injected_defects(night, outcomes):
    expected = night.expected
    rejections = {(o.source_file, o.source_line): o for o in outcomes if isinstance(o, Rejection)}
    injected = {(d["file"], d["line"]): d for d in expected["defects"] if d["code"] != "E06"}
    assert {k: o.code.value for k, o in rejections.items()} == {k: d["code"] for k, d in injected.items()}
    assert Counter(o.code.value for o in rejections.values()) == Counter(expected["rejects_preflight"])
    for key, outcome in rejections.items():
        assert outcome.key == injected[key]["key"]
    assert len(outcomes) == expected["records"]


def test_young_people_and_dates_are_plausible(night, outcomes):
    valid = [o.event for o in outcomes if isinstance(o, Valid)]
    assert all(e.date_evenement <= NIGHT for e in valid)
    assert min(e.date_evenement for e in valid) >= NIGHT - timedelta(days=60)
    accented = {e.nom for e in valid} | {e.prenom for e in valid}
    assert {"Élodie", "François", "Noël", "Zoé", "Bénédicte"} & accented
    assert any(not name.isascii() for name in accented)
    assert any("'" in e.nom for e in valid)


def test_modifications_and_cancellations_refer_to_events_created_earlier(night, outcomes):
    orphans = {(d["file"], d["line"]) for d in night.expected["defects"] if d["code"] == "E06"}
    created: dict[str, object] = {}
    seen_orphans = 0
    for outcome in outcomes:
        if not isinstance(outcome, Valid):
            continue
        event = outcome.event
        if event.operation is Operation.CREATE:
            assert event.key not in created, "a key is created once"
            created[event.key] = event
        elif (outcome.source_file, outcome.source_line) in orphans:
            assert event.key not in created  # E06 for the pipeline: never created
            seen_orphans += 1
        else:
            assert event.key in created
            if event.operation is Operation.MODIFY:
                assert event.content_hash() != created[event.key].content_hash()
    assert seen_orphans == night.expected["rejects_store"]["E06"]


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c)).casefold()


def _dude_verdict(event, registry) -> str:
    """The business rules of brief §4, written again here to reconcile the manifest."""
    row = registry.get(event.identifiant_pe)
    if row is None:
        return "E01"
    if row["code_ml"] != event.code_ml:
        return "E02"
    born = date(*map(int, reversed(row["date_naissance"].split("/"))))
    if (_fold(row["nom"]), _fold(row["prenom"]), born) != (_fold(event.nom), _fold(event.prenom),
                                                           event.date_naissance):
        return "E03"
    start = date(*map(int, reversed(row["date_debut_cotraitance"].split("/"))))
    if event.date_evenement < start:
        return "E04"
    return "ACCEPTE"


def test_the_registry_gives_the_business_rejects_the_manifest_announces(night, outcomes):
    with night.registry_file.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    assert list(rows[0]) == ["identifiant_pe", "nom", "prenom", "date_naissance", "code_ml",
                             "date_debut_cotraitance", "date_fin_cotraitance"]
    assert len(rows) == night.expected["registry_rows"]
    registry = {row["identifiant_pe"]: row for row in rows}
    assert len(registry) == len(rows)
    orphans = {(d["file"], d["line"]) for d in night.expected["defects"] if d["code"] == "E06"}
    verdicts = Counter(
        _dude_verdict(o.event, registry) for o in outcomes
        if isinstance(o, Valid) and (o.source_file, o.source_line) not in orphans)
    accepted = verdicts.pop("ACCEPTE")
    assert verdicts == Counter(night.expected["rejects_business"])
    assert accepted == night.expected["accepted"]
    assert set(verdicts) == {"E01", "E02", "E03", "E04"}
    share = {code: n / night.expected["persons"] for code, n in night.expected["business_persons"].items()}
    assert 0.01 < share["E01"] < 0.045 and 0.005 < share["E02"] < 0.03 and 0.005 < share["E03"] < 0.03


def test_case_and_accent_differences_in_the_registry_are_harmless(night):
    variants = night.expected["identity_variants_accepted"]
    assert variants["persons"] > 0
    with night.registry_file.open(encoding="utf-8", newline="") as handle:
        names = [row["nom"] for row in csv.DictReader(handle, delimiter=";")]
    assert any(name.isupper() for name in names)


def test_the_nir_column_never_reaches_an_outcome(night, outcomes):
    nirs = set()
    for path in night.export_files:
        with path.open(encoding="cp1252", errors="replace", newline="") as handle:
            for row in csv.DictReader(handle, delimiter=";"):
                if row.get("nir"):
                    nirs.add(row["nir"])
    assert nirs and all(len(nir) == 15 and nir.isdigit() for nir in nirs)
    fifteen_digits = set(re.findall(r"[0-9]{15}", " ".join(map(repr, outcomes))))
    assert not fifteen_digits & nirs


def _peak_and_size(path: Path, events: int) -> tuple[int, int]:
    tracemalloc.start()
    try:
        generated = generate_night(path, events=events, seed=2, night=NIGHT, missions_locales=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert generated.expected["records"] == events
    return peak, sum(p.stat().st_size for p in generated.export_files)


def test_a_night_is_streamed_to_disk_in_bounded_memory(tmp_path):
    small_peak, small_size = _peak_and_size(tmp_path / "small", 2000)
    large_peak, large_size = _peak_and_size(tmp_path / "large", 10000)
    assert large_peak < 8 * 1024 * 1024, f"peak {large_peak / 1e6:.1f} MB"
    # five times the lines, hardly more memory: what grows is the manifest's list of defects
    # and a cache of formatted dates, bounded by the calendar
    assert large_peak - small_peak < (large_size - small_size) / 4
