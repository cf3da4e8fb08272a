"""Envelopes sealed in a child process (gateway.pipeline.sealing, issue 7): the same envelopes the store's
payloads give, signed so that xmlsec1 accepts them; an envelope the child cannot seal is sealed by the run,
which finds the culprit; a child that dies loses nothing and sends nothing twice."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from lxml import etree

from adapters.dude.envelope import OutgoingEvent, build_envelope
from adapters.dude.events_xml import q
from adapters.parcours3.mapping import parse_export
from gateway.codes import EventType
from gateway.pipeline.ingest import ingest
from gateway.pipeline.run import run_batch
from gateway.pipeline.sealing import PipelinedSealing, Sealer
from gateway.preflight import PreflightConfig
from gateway.store.models import DOC_LOT, documents_t, events_t
from tests.factories import p3_line, write_export
from tests.tools import xmllint_validates, xmlsec1_verifies

#: Each test takes seconds; a bug that loops between the run and its child should fail fast, not at
#: pytest-timeout's default 600 s.
pytestmark = pytest.mark.timeout(120)

TYPES = list(EventType)


def lines(count: int, start: int = 1) -> list[dict[str, str]]:
    return [p3_line(TYPES[i % len(TYPES)], id_evenement=str(i)) for i in range(start, start + count)]


def events_c14n(root: etree._Element) -> list[bytes]:
    return [etree.tostring(e, method="c14n", exclusive=True) for e in root.iter(q("Evenement"))]


def stored_envelopes(gw) -> dict[str, bytes]:
    with gw.engine.connect() as conn:
        return dict(conn.execute(sa.select(documents_t.c.envelope_id, documents_t.c.body)
                                 .where(documents_t.c.kind == DOC_LOT)).all())


def states(gw) -> Counter:
    with gw.engine.connect() as conn:
        return Counter(dict(conn.execute(sa.select(events_t.c.state, sa.func.count()).group_by(events_t.c.state))
                            .all()))


def test_a_run_seals_in_a_child_the_envelopes_the_store_gives_signed_for_xmlsec1(gw, tmp_path: Path):
    export = write_export(tmp_path / "P3_69001_20261128.csv", lines(160))  # 4 envelopes of at most 50

    summary = run_batch(gw, [export])

    assert summary.sealer["cpu_seconds"] > 0  # the child sealed them (the run alone would leave this empty)
    assert dict(summary.states) == {"ACCEPTE": 160}
    envelopes = stored_envelopes(gw)
    assert len(envelopes) == 4
    with gw.engine.connect() as conn:
        rows = conn.execute(sa.select(events_t.c.envelope_id, events_t.c.version, events_t.c.operation,
                                      events_t.c.payload).order_by(events_t.c.id)).all()
    for envelope_id, body in envelopes.items():
        sent = etree.fromstring(body)
        from_store = build_envelope([OutgoingEvent(orjson.loads(p), v, o) for e, v, o, p in rows if e == envelope_id],
                                    id_lot=envelope_id, sender=gw.settings.sender_code,
                                    recipient=gw.settings.recipient_code, produced_at=gw.clock())
        assert events_c14n(sent) == events_c14n(from_store)
        path = tmp_path / f"{envelope_id}.xml"
        path.write_bytes(body)
        verified, why = xmlsec1_verifies(path, gw.settings.gateway_cert_file)
        assert verified, why
        valid, why = xmllint_validates(path)
        assert valid, why


def test_a_small_run_seals_in_its_own_thread(gw, tmp_path: Path):
    """Less than two envelopes' worth: nothing to seal while storing, so no child is started."""
    summary = run_batch(gw, [write_export(tmp_path / "P3_69001_20261128.csv", lines(20))])
    assert summary.sealer == {} and dict(summary.states) == {"ACCEPTE": 20}


def test_an_envelope_the_child_cannot_seal_is_sealed_by_the_run_which_finds_the_culprit(gw, tmp_path: Path):
    export = write_export(tmp_path / "P3_69001_20261128.csv", lines(30))
    ingest(gw.engine, parse_export(export, PreflightConfig.from_settings(gw.settings)), run_id=None, now=gw.clock())
    with gw.engine.begin() as conn:  # what pre-flight should have prevented: a formacode the XSD refuses
        culprit, payload = conn.execute(sa.select(events_t.c.id, events_t.c.payload)
                                        .where(events_t.c.event_type == EventType.PFO.value).limit(1)).one()
        conn.execute(events_t.update().where(events_t.c.id == culprit).values(
            payload=orjson.dumps({**orjson.loads(payload), "formacode": "1234X"}).decode()))
    sealed = []
    with Sealer(gw) as sealer:
        pipeline = PipelinedSealing(gw, sealer, run_id=None, claimed_by=None, records={}, on_sealed=sealed.append)
        pipeline.advance(1, finish=True)
        assert pipeline.sealer is sealer  # a refusal is not a death: the child seals the next ones
    assert len(sealed) == 1 and sealed[0].event_count == 29
    with gw.engine.connect() as conn:
        state, code, message = conn.execute(sa.select(events_t.c.state, events_t.c.reject_code,
                                                      events_t.c.reject_message).where(events_t.c.id == culprit)).one()
    assert (state, code) == ("INVALIDE", "E09") and "schéma" in message and "Formacode" in message
    assert states(gw) == Counter({"ENVOYE": 29, "INVALIDE": 1})


def test_a_sealing_process_that_dies_loses_nothing_and_sends_nothing_twice(gw, emulator, tmp_path: Path,
                                                                          monkeypatch, caplog):
    answer = Sealer.answer
    calls = []

    def dies_at_the_second_envelope(self, claim, **kwargs):
        calls.append(claim.envelope_id)
        if len(calls) == 2:
            self._process.kill()
            self._process.wait()
        return answer(self, claim, **kwargs)

    monkeypatch.setattr(Sealer, "answer", dies_at_the_second_envelope)
    export = write_export(tmp_path / "P3_69001_20261128.csv", lines(200))  # 4 envelopes of 50

    with caplog.at_level(logging.WARNING, logger="gateway.sealing"):
        summary = run_batch(gw, [export])

    assert len(calls) == 2  # the first by the child, then the run sealed the rest itself
    assert any("seals in its own thread" in r.getMessage() for r in caplog.records)
    assert dict(summary.states) == {"ACCEPTE": 200}
    envelopes = stored_envelopes(gw)
    assert len(envelopes) == 4
    keys = Counter(e.get("id") for body in envelopes.values() for e in etree.fromstring(body).iter(q("Evenement")))
    assert len(keys) == 200 and set(keys.values()) == {1}  # every event in exactly one envelope
    dude = emulator.ledger.summary()
    assert (dude["lots"], dude["lot_replays"], dude["events_applied"]) == (4, 0, 200)


def test_the_child_is_gone_once_the_run_is_over(gw, tmp_path: Path, monkeypatch):
    started, processes = [], []
    start = Sealer.start

    def remember(self):
        started.append(self)
        sealer = start(self)
        processes.append(self._process)
        return sealer

    monkeypatch.setattr(Sealer, "start", remember)
    run_batch(gw, [write_export(tmp_path / "P3_69001_20261128.csv", lines(120))])
    (sealer,), (process,) = started, processes
    assert process is not None and process.poll() is not None  # it left (or was made to) with the run
    assert sealer.stats["peak_rss_mb"] > 0  # and said so first: it left on its own


def test_a_key_the_child_cannot_load_is_said_by_its_setting(gw, tmp_path: Path):
    """The run checked the key; one replaced since (a renewal half done) fails in the child, whose words reach the
    run's log: they name the setting, as every other way of loading the key does (`gateway.keys.key_names`)."""
    from datetime import UTC, datetime

    from gateway.pipeline.dispatch import Claim
    from gateway.pipeline.sealing import SealerGone

    garbage = tmp_path / "gateway.key.pem"
    garbage.write_text("pas une clé\n")
    gw.settings = gw.settings.model_copy(update={"key_file": garbage})
    with Sealer(gw) as sealer, pytest.raises(SealerGone) as gone:
        claim = Claim("e", datetime.now(UTC), [], frozenset(), [])
        sealer.submit(claim)
        sealer.answer(claim, timeout=60)
    assert "GATEWAY_KEY_FILE" in str(gone.value) and "KEYS" in str(gone.value), gone.value
