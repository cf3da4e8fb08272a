"""Sealing a run's envelopes from the XML the export reader wrote ahead (issue 7): the envelope is the one
the store's own payloads give, whatever the store decided on the wire (version, C sent as M, A)."""

from __future__ import annotations

from pathlib import Path

import orjson
import sqlalchemy as sa
from lxml import etree

from adapters.dude.envelope import OutgoingEvent, build_envelope
from adapters.dude.events_xml import q
from gateway.codes import EventType
from gateway.pipeline import dispatch
from gateway.pipeline.ingest import ingest
from gateway.pipeline.reading import ExportStream
from gateway.preflight import PreflightConfig
from gateway.store.models import DOC_LOT, documents_t, events_t
from tests.factories import p3_line, write_export


def events_c14n(root: etree._Element) -> list[bytes]:
    """Each ``Evenement`` of an envelope, canonical (what the signature digests)."""
    return [etree.tostring(e, method="c14n", exclusive=True) for e in root.iter(q("Evenement"))]


def test_an_envelope_sealed_from_the_readers_xml_is_the_one_the_store_gives(gw, tmp_path: Path):
    lines = [p3_line(t, id_evenement=str(i), nom="D'Artagnan & Fils <Lyon>")
             for i, t in enumerate(EventType, start=1)]
    # the first event changed later in the same export (read C, sent M v2), the second cancelled (A v2)
    lines.append({**lines[0], "organisme": "AFPA", "modalite": "COL"})
    lines.append({**lines[1], "operation": "A"})
    export = write_export(tmp_path / "P3_69001_20261128.csv", lines)
    records: dict = {}
    with ExportStream([export], PreflightConfig.from_settings(gw.settings), encoding="auto", with_xml=True) as stream:
        for _, items in stream:
            ingest(gw.engine, items, run_id=None, now=gw.clock(), records=records)
    # by payload: the cancellation's is the same as its creation's, so these two share one entry, the
    # cancellation's (its XML must not go out under the creation's start tag)
    assert len(records) == len(lines) - 1
    assert all(line.xml_body for line in records.values())

    sealed = dispatch.seal_next(gw, run_id=None, records=records)

    assert records == {}  # all taken
    with gw.engine.connect() as conn:
        body = conn.execute(sa.select(documents_t.c.body).where(
            documents_t.c.envelope_id == sealed.envelope_id, documents_t.c.kind == DOC_LOT)).scalar_one()
        rows = conn.execute(sa.select(events_t.c.version, events_t.c.operation, events_t.c.payload)
                            .where(events_t.c.envelope_id == sealed.envelope_id).order_by(events_t.c.id)).all()
    sent = etree.fromstring(body)
    assert [(e.get("version"), e.get("operation")) for e in sent.iter(q("Evenement"))][-3:] == [
        ("1", "C"), ("2", "M"), ("2", "A")]
    from_store = build_envelope([OutgoingEvent(orjson.loads(payload), version, operation)
                                 for version, operation, payload in rows],
                                id_lot=sealed.envelope_id, sender=gw.settings.sender_code,
                                recipient=gw.settings.recipient_code, produced_at=gw.clock())
    assert events_c14n(sent) == events_c14n(from_store)
    assert "D'Artagnan &amp; Fils &lt;Lyon&gt;" in body.decode()
