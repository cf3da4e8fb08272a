"""A night through the whole pipeline, against the emulator in-process: states, versions, idempotency."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa

from adapters.dude.envelope import iter_events
from adapters.dude.safe_xml import parse
from gateway.codes import EventType
from gateway.pipeline.run import run_batch
from gateway.store.models import DOC_LOT, documents_t, envelopes_t, events_t, history_t
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export
from tests.tools import xmllint_validates, xmlsec1_verifies

#: Every test here runs on SQLite and on PostgreSQL (tests/backends.py).
database_url = on_both_backends()


def states(gw) -> dict[str, str]:
    with gw.engine.connect() as conn:
        return {f"{r.key} v{r.version}": r.state for r in conn.execute(sa.select(events_t).order_by(events_t.c.id))}


def sent_documents(gw) -> list[bytes]:
    with gw.engine.connect() as conn:
        return list(conn.execute(sa.select(documents_t.c.body).where(documents_t.c.kind == DOC_LOT)
                                 .order_by(documents_t.c.id)).scalars())


def test_small_night_every_line_ends_in_one_final_state(gw, tmp_path: Path) -> None:
    lines = [p3_line(t, id_evenement=str(100 + i)) for i, t in enumerate(EventType)]
    lines.append(p3_line(EventType.ENT, id_evenement="200", identifiant_pe="7654321Z"))  # unknown to DUDE → E01
    lines.append(p3_line(EventType.MER, id_evenement="201", siret="73282932000075"))  # bad Luhn → E08 pre-flight
    export = write_export(tmp_path / "P3_69001_20261128.csv", lines)

    summary = run_batch(gw, [export])

    assert summary.ingest.lines == 12
    assert sum(summary.states.values()) == 12
    assert summary.states == {"ACCEPTE": 10, "REJETE": 1, "INVALIDE": 1}
    assert dict(summary.rejects) == {"E01": 1, "E08": 1}
    with gw.engine.connect() as conn:
        row = conn.execute(sa.select(events_t).where(events_t.c.key == "69001-201")).one()
        assert (row.reject_code, row.source_file, row.source_line) == ("E08", export.name, 13)  # header is line 1
        rejected = conn.execute(sa.select(events_t).where(events_t.c.key == "69001-200")).one()
        assert rejected.state == "REJETE" and rejected.reject_code == "E01"
        history = [h.state for h in conn.execute(sa.select(history_t.c.state).where(
            history_t.c.event_id == rejected.id).order_by(history_t.c.id))]
        assert history == ["RECU", "EN_ATTENTE", "ENVOYE", "TRANSMIS", "REJETE"]
        assert conn.execute(sa.select(envelopes_t.c.state)).scalars().all() == ["TRAITE"]


def test_every_sent_envelope_passes_xmllint_and_xmlsec1(gw, dev_keys, tmp_path: Path) -> None:
    lines = [p3_line(EventType.ENT, id_evenement=str(i)) for i in range(120)]  # 3 envelopes of ≤ 50
    run_batch(gw, [write_export(tmp_path / "P3_69001_20261128.csv", lines)])
    documents = sent_documents(gw)
    assert len(documents) == 3
    for index, body in enumerate(documents):
        path = tmp_path / f"lot-{index}.xml"
        path.write_bytes(body)
        ok, err = xmllint_validates(path)
        assert ok, err
        ok, err = xmlsec1_verifies(path, dev_keys.gateway.cert_file)
        assert ok, err


def test_running_the_same_input_again_sends_nothing(gw, emulator, tmp_path: Path) -> None:
    lines = [p3_line(EventType.ENT, id_evenement=str(i)) for i in range(10)]
    lines.append(p3_line(EventType.ENT, id_evenement="99", date_naissance="01/01/1990"))  # E07
    lines.append({**lines[2], "modalite": "TEL", "operation": "M"})  # the same night modifies event 2
    export = write_export(tmp_path / "P3_69001_20261128.csv", lines)
    first = run_batch(gw, [export])
    assert first.states == {"ACCEPTE": 11, "INVALIDE": 1}
    lots_before = emulator.ledger_summary()["lots"]

    again = run_batch(gw, [export])

    assert again.ingest.duplicates == 12 and again.ingest.new_events == 0 and again.ingest.invalid == 0
    assert len(sent_documents(gw)) == 1
    assert emulator.ledger_summary()["lots"] == lots_before
    assert sum(again.states.values()) == 0  # nothing of the second run is a new event


def test_modifying_one_line_sends_exactly_one_m_event(gw, emulator, tmp_path: Path) -> None:
    lines = [p3_line(EventType.ENT, id_evenement=str(i)) for i in range(10)]
    run_batch(gw, [write_export(tmp_path / "P3_69001_20261128.csv", lines)])
    lines[3] = {**lines[3], "modalite": "TEL", "operation": "M"}

    summary = run_batch(gw, [write_export(tmp_path / "P3_69001_20261129.csv", lines)])

    assert (summary.ingest.new_versions, summary.ingest.duplicates) == (1, 9)
    documents = sent_documents(gw)
    assert len(documents) == 2
    [event] = list(iter_events(parse(documents[-1])))
    assert (event.get("id"), event.get("version"), event.get("operation")) == ("69001-3", "2", "M")
    assert states(gw)["69001-3 v2"] == "ACCEPTE" and states(gw)["69001-3 v1"] == "ACCEPTE"


def test_going_back_to_earlier_content_in_a_later_export_is_sent(gw, tmp_path: Path) -> None:
    line = p3_line(EventType.CPA, id_evenement="6")
    run_batch(gw, [write_export(tmp_path / "a.csv", [line, {**line, "parcours": "MOB", "operation": "M"}])])
    run_batch(gw, [write_export(tmp_path / "b.csv", [{**line, "operation": "M"}])])  # the counsellor undid it
    with gw.engine.connect() as conn:
        rows = conn.execute(sa.select(events_t.c.version, events_t.c.operation, events_t.c.state)
                            .where(events_t.c.key == "69001-6").order_by(events_t.c.version)).all()
    assert [tuple(r) for r in rows] == [(1, "C", "ACCEPTE"), (2, "M", "ACCEPTE"), (3, "M", "ACCEPTE")]


def test_a_changed_line_is_a_new_version_even_if_parcours3_says_c(gw, tmp_path: Path) -> None:
    line = p3_line(EventType.CPA, id_evenement="5")
    run_batch(gw, [write_export(tmp_path / "a.csv", [line])])
    run_batch(gw, [write_export(tmp_path / "b.csv", [{**line, "parcours": "MOB"}])])
    with gw.engine.connect() as conn:
        rows = conn.execute(sa.select(events_t.c.version, events_t.c.operation, events_t.c.state)
                            .where(events_t.c.key == "69001-5").order_by(events_t.c.version)).all()
    assert [tuple(r) for r in rows] == [(1, "C", "ACCEPTE"), (2, "M", "ACCEPTE")]


def test_correcting_an_invalid_line_supersedes_it_and_sends_a_creation(gw, tmp_path: Path) -> None:
    bad = p3_line(EventType.MER, id_evenement="7", siret="73282932000075")
    run_batch(gw, [write_export(tmp_path / "a.csv", [bad])])
    run_batch(gw, [write_export(tmp_path / "b.csv", [{**bad, "siret": "73282932000074", "operation": "M"}])])
    with gw.engine.connect() as conn:
        rows = conn.execute(sa.select(events_t.c.version, events_t.c.operation, events_t.c.state)
                            .where(events_t.c.key == "69001-7").order_by(events_t.c.version)).all()
    # DUDE never got version 1, so version 2 goes as a creation.
    assert [tuple(r) for r in rows] == [(1, "C", "CORRIGE"), (2, "C", "ACCEPTE")]


def test_a_rejected_event_corrected_in_parcours_3_goes_again_with_the_next_export(gw, tmp_path: Path) -> None:
    """What the hints tell support staff (gateway/codes.py): a correction made in Parcours 3 arrives with the
    next export as a new version, without anyone pressing "Renvoyer"; the rejected version becomes CORRIGE."""
    wrong = p3_line(EventType.ENT, id_evenement="201", identifiant_pe="7654321Z")  # unknown to DUDE → E01
    run_batch(gw, [write_export(tmp_path / "a.csv", [wrong])])
    run_batch(gw, [write_export(tmp_path / "b.csv", [{**wrong, "identifiant_pe": p3_line()["identifiant_pe"]}])])
    with gw.engine.connect() as conn:
        rows = conn.execute(sa.select(events_t.c.version, events_t.c.state, events_t.c.reject_code)
                            .where(events_t.c.key == "69001-201").order_by(events_t.c.version)).all()
    assert [tuple(r) for r in rows] == [(1, "CORRIGE", "E01"), (2, "ACCEPTE", None)]


def test_an_event_is_counted_in_the_night_that_sends_it(gw, tmp_path: Path) -> None:
    """A resent event, or one a partner submitted, counted nowhere: the run that sent it said "Total 0" (or
    omitted it), and the console's nights filed its new result under the night that first read it."""
    from gateway import support
    from gateway.submission import submit
    from tests.factories import json_event

    first = run_batch(gw, [write_export(tmp_path / "a.csv", [p3_line(id_evenement="301", identifiant_pe="7654321Z")])])
    assert first.states == {"REJETE": 1}
    support.resend_event(gw, "69001-301", actor="test", scope=None)
    submit(gw, [json_event(id_evenement="302")], client="partenaire", scope=None, request_id="r1")
    second = run_batch(gw, [])
    assert second.states == {"REJETE": 1, "ACCEPTE": 1} and second.rejects == {"E01": 1}
    with gw.engine.connect() as conn:
        runs = dict(conn.execute(sa.select(events_t.c.key, events_t.c.run_id)).all())
    assert runs == {"69001-301": second.run_id, "69001-302": second.run_id}


def test_modification_of_an_unknown_event_is_e06(gw, tmp_path: Path) -> None:
    summary = run_batch(gw, [write_export(tmp_path / "a.csv", [p3_line(EventType.ENT, operation="M")])])
    assert dict(summary.rejects) == {"E06": 1}


def test_cancellation_is_sent_as_annulation(gw, emulator, tmp_path: Path) -> None:
    line = p3_line(EventType.PEM, id_evenement="8")
    run_batch(gw, [write_export(tmp_path / "a.csv", [line])])
    summary = run_batch(gw, [write_export(tmp_path / "b.csv", [{**line, "operation": "A"}])])
    assert summary.states == {"ACCEPTE": 1}
    [event] = list(iter_events(parse(sent_documents(gw)[-1])))
    assert event.get("operation") == "A" and event[3].get("typeEvenement") == "PEM"


def test_dry_run_says_what_would_happen_and_writes_no_event(gw, tmp_path: Path) -> None:
    in_a_month = (date.today() + timedelta(days=30)).strftime("%d/%m/%Y")
    export = write_export(tmp_path / "a.csv", [p3_line(EventType.ENT, id_evenement=str(i)) for i in range(4)]
                          + [p3_line(EventType.ENT, id_evenement="9", date_evenement=in_a_month)])
    summary = run_batch(gw, [export], dry_run=True)
    assert summary.would_send == 4 and dict(summary.rejects) == {"E04": 1}
    assert states(gw) == {}
    assert sent_documents(gw) == []
    with gw.engine.connect() as conn:
        stored = json.loads(conn.execute(sa.text("SELECT counts FROM runs")).scalar_one())
    assert stored["dry_run"] is True and stored["would_send"] == 4


def test_an_event_holding_a_character_xml_cannot_carry_is_invalid_and_blocks_nothing(gw, tmp_path: Path) -> None:
    """Pre-flight strips control characters from Parcours 3 text, but a stored event may still hold one
    (another way in): sealing makes that event INVALIDE (E09) and sends the others."""
    from adapters.parcours3.mapping import parse_export
    from gateway.pipeline.ingest import ingest
    from gateway.preflight import PreflightConfig

    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement=str(i)) for i in range(3)])
    ingest(gw.engine, parse_export(export, PreflightConfig.from_settings(gw.settings)), run_id=None, now=gw.clock())
    with gw.engine.begin() as conn:
        payload = json.loads(conn.execute(
            sa.select(events_t.c.payload).where(events_t.c.key == "69001-1")).scalar_one())
        conn.execute(events_t.update().where(events_t.c.key == "69001-1").values(
            payload=json.dumps({**payload, "nom": "Zo\x01é"})))

    run_batch(gw, [])

    assert states(gw) == {"69001-0 v1": "ACCEPTE", "69001-1 v1": "INVALIDE", "69001-2 v1": "ACCEPTE"}
    with gw.engine.connect() as conn:
        assert conn.execute(sa.select(events_t.c.reject_code).where(events_t.c.key == "69001-1")).scalar_one() == "E09"
