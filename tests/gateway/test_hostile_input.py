"""The hostile corpus (``fixtures/hostile/``): every document through every door it can come in by, each refused
with its code, in bounded memory, changing nothing and losing none of the good lines around the bad ones.

XML comes in by four doors: DUDE's ``POST /lots`` (the emulator checks what we send as DUDE would), the
gateway's receipt check (the answer to a POST), report polling, and the API's callback. Exports come in by
one: a run (`run_batch`).
"""

from __future__ import annotations

import logging
import re
import tracemalloc
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.dude.emulator.app import mock_transport
from adapters.dude.messages import open_signed
from adapters.parcours3.mapping import parse_export
from gateway.api.main import create_app
from gateway.context import Gateway
from gateway.errors import GatewayError
from gateway.pipeline import dispatch, reconcile
from gateway.pipeline.ingest import ingest
from gateway.pipeline.run import run_batch
from gateway.preflight import PreflightConfig
from gateway.settings import Settings
from gateway.store.models import DOC_RECEIPT, documents_t, events_t
from tests.factories import p3_line, write_export
from tests.gateway.test_reconcile import snapshot
from tests.hostile_inputs import CSV_EXPECT, HOSTILE, MB, XML_CASES, csv_case, peak_growth_in_child, xml_case

CALLBACK = "/api/v1/dude/comptes-rendus"
#: What the store knows of the factories' young person: none of it may reach a log.
PERSONAL = ("Lefèvre", "LEFEVRE", "Zoé", "06/05/2004", "2004-05-06")


class Answering(httpx.BaseTransport):
    """A "DUDE" that answers every request with the same document (HTTP 200, XML)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=self.body, headers={"Content-Type": "application/xml"})


@pytest.fixture
def doors(gw, emulator, tmp_path: Path):
    """A store with one envelope awaiting its report (RECU) and one sealed, not yet sent (SIGNE)."""
    quiet = Gateway(settings=gw.settings.model_copy(update={"report_wait_seconds": 0}), engine=gw.engine,
                    transport=gw.transport, sleep=gw.sleep)
    run_batch(quiet, [write_export(tmp_path / "P3_69001_20261127.csv", [p3_line(id_evenement="1")])],
              wait_for_reports=False)
    (awaiting,) = [e for e, s in snapshot(gw)[1] if s == "RECU"]
    config = PreflightConfig.from_settings(gw.settings)
    ingest(gw.engine, parse_export(write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="2")]),
                                   config), run_id=None, now=gw.clock())
    (sealed,) = dispatch.seal_all(gw, run_id=None)
    return awaiting, sealed


def hostile_gateway(gw, body: bytes) -> Gateway:
    return Gateway(settings=gw.settings.model_copy(update={"send_attempts": 1}), engine=gw.engine,
                   transport=Answering(body), sleep=lambda seconds: None)


@pytest.mark.parametrize("case", XML_CASES)
def test_hostile_xml_is_refused_l03_at_every_door_and_changes_nothing(case, gw, emulator, doors, caplog) -> None:
    body = xml_case(case)
    awaiting, sealed = doors
    caplog.set_level(logging.INFO)

    # 1. DUDE's door (the emulator): no IdLot can be read, so a problem rather than a receipt.
    with httpx.Client(transport=mock_transport(emulator), base_url="http://dude.test") as dude:
        posted = dude.post("/dude/v1/lots", content=body, headers={"Content-Type": "application/xml"})
    assert (posted.status_code, posted.json()["code"]) == (400, "L03")

    # 2. The gateway's receipt check: the attempt fails, the envelope stays to be sent again (same IdLot).
    before = snapshot(gw)
    hostile = hostile_gateway(gw, body)
    sent = dispatch.transmit(hostile, sealed)
    assert sent.state == "ENVOYE" and "[L03]" in sent.error
    events, envelopes, _ = snapshot(gw)
    assert events == before[0] and dict(envelopes) == {**dict(before[1]), sealed: "ENVOYE"}
    with gw.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(documents_t).where(
            documents_t.c.kind == DOC_RECEIPT, documents_t.c.envelope_id == sealed)).scalar_one() == 0

    # 3. Polling, and 4. the callback: refused, nothing changes.
    before = snapshot(gw)
    (polled,) = reconcile.poll_reports(hostile, envelope_ids=[awaiting], force=True)
    assert polled.outcome is reconcile.ReportOutcome.NOT_READY
    with TestClient(create_app(gw)) as api:
        pushed = api.post(CALLBACK, content=body, headers={"Content-Type": "application/xml"})
    assert (pushed.status_code, pushed.json()["code"]) == (400, "L03")
    assert snapshot(gw) == before
    assert emulator.ledger_summary()["lots"] == 1  # only the genuine envelope of the fixture

    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert re.search(r"attempt 1/1 failed: .*\[L03\]", logged)
    assert "report refused L03 (polling" in logged and "report refused L03 (callback)" in logged
    assert not [p for p in PERSONAL if p in caplog.text]


@pytest.mark.parametrize("case", XML_CASES)
def test_hostile_xml_costs_bounded_memory(case, emulator, gw) -> None:
    body = xml_case(case)

    def both_parsers() -> tuple[int, str]:
        answer = emulator.receive(body)
        try:
            open_signed(body, trust=gw.dude_trust, expected="CompteRendu")
        except GatewayError as exc:
            return answer.status_code, exc.code
        return answer.status_code, "accepted"

    outcome, growth = peak_growth_in_child(both_parsers)
    assert outcome == (400, "L03")
    assert growth < 16 * MB + 2 * len(body), f"{case}: {growth / MB:.1f} MB"


@pytest.fixture(scope="module")
def generated_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.mark.parametrize("case", sorted(CSV_EXPECT))
def test_hostile_export_gives_its_code_and_keeps_the_good_lines(case, gw, generated_dir, caplog) -> None:
    path = csv_case(case, generated_dir)
    expect = CSV_EXPECT[case]
    caplog.set_level(logging.WARNING)
    summary = run_batch(gw, [path])

    assert [e["code"] for e in summary.file_errors] == ([expect.file_error] if expect.file_error else [])
    assert [w["code"] for w in summary.file_warnings] == ([expect.warning] if expect.warning else [])
    with gw.engine.connect() as conn:
        rows = conn.execute(sa.select(events_t.c.key, events_t.c.state, events_t.c.reject_code,
                                      events_t.c.reject_message, events_t.c.source_line)).all()
    bad = {r.source_line: r for r in rows if r.state == "INVALIDE"}
    assert sorted(bad) == sorted(expect.bad_lines)
    for line, (code, fragment) in expect.bad_lines.items():
        assert bad[line].reject_code == code and fragment in bad[line].reject_message, bad[line]
    good = {r.key: r.state for r in rows if r.state != "INVALIDE"}
    assert good == {f"69001-{i}": "ACCEPTE" for i in expect.good_ids}  # none of the good lines lost
    if expect.file_error or expect.warning:
        assert (expect.file_error or expect.warning) in caplog.text
    assert not [p for p in PERSONAL if p in caplog.text]


@pytest.mark.parametrize("case", sorted(CSV_EXPECT))
def test_hostile_export_is_read_in_bounded_memory(case, generated_dir) -> None:
    path = csv_case(case, generated_dir)
    config = PreflightConfig.from_settings(Settings(_env_file=None))
    tracemalloc.start()
    try:
        outcomes = 0
        try:
            for _ in parse_export(path, config):
                outcomes += 1
        except GatewayError:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MB, f"{case}: {peak / MB:.1f} MB for a file of {path.stat().st_size / MB:.1f} MB"


def test_the_corpus_and_its_readme_agree() -> None:
    committed = sorted(p.name for p in HOSTILE.iterdir() if p.name != "README.md")
    known = set(CSV_EXPECT) | set(XML_CASES)
    assert [name for name in committed if name not in known] == []
    readme = (HOSTILE / "README.md").read_text(encoding="utf-8")
    assert [name for name in sorted(known) if f"`{name}`" not in readme] == []
    assert all((HOSTILE / name).stat().st_size < 64 * 1024 for name in committed)  # big ones are generated


def test_a_document_over_the_size_limit_is_refused_before_it_is_parsed(gw, doors, settings, registry_file) -> None:
    from adapters.dude.emulator import Emulator, EmulatorConfig

    limit = 1 * MB
    body = b'<?xml version="1.0"?><CompteRendu xmlns="urn:fr:spe:dude:echanges:v1">' + b" " * limit + b"</CompteRendu>"
    awaiting, sealed = doors
    small = Gateway(settings=gw.settings.model_copy(update={"max_document_bytes": limit, "send_attempts": 1}),
                    engine=gw.engine, transport=Answering(body), sleep=lambda seconds: None)
    config = EmulatorConfig.for_settings(settings, registry_file=registry_file, ledger_path=None, max_bytes=limit)
    with Emulator(config) as dude, httpx.Client(transport=mock_transport(dude), base_url="http://dude.test") as http:
        posted = http.post("/dude/v1/lots", content=body)
    assert (posted.status_code, posted.json()["code"]) == (413, "L07")
    sent = dispatch.transmit(small, sealed)
    assert "[L03]" in sent.error and "too large" in sent.error
    before = snapshot(gw)
    with TestClient(create_app(small)) as api:
        pushed = api.post(CALLBACK, content=body, headers={"Content-Type": "application/xml"})
    assert (pushed.status_code, pushed.json()["code"]) == (413, "TOO_LARGE")
    assert snapshot(gw) == before
