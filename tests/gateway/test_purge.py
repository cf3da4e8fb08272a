"""The retention purge (brief §5): documents of settled envelopes and personal fields of settled events go;
keys, codes, states, content hashes and history stay; what still awaits a person keeps what it needs.
On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from gateway.pipeline.run import run_batch
from gateway.purge import purge, purge_with_lease
from gateway.store.models import documents_t, envelope_history_t, events_t, history_t
from gateway.support import close_event
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export

database_url = on_both_backends()


def night(gw, tmp_path):
    lines = [p3_line(id_evenement=str(i), commentaire="Zoé a trouvé un stage") for i in range(4)]
    lines.append(p3_line(id_evenement="98", identifiant_pe="7654321Z"))  # E01 at DUDE
    lines.append(p3_line(id_evenement="99", identifiant_pe="7654321Z"))  # E01, then closed by support
    summary = run_batch(gw, [write_export(tmp_path / "P3_69001_20261128.csv", lines)])
    assert summary.states == {"ACCEPTE": 4, "REJETE": 2}
    close_event(gw, "69001-99", comment="jeune parti dans une autre région", actor="support", scope=None)


def rows(gw) -> dict[str, sa.Row]:
    with gw.engine.connect() as conn:
        return {r.key: r for r in conn.execute(sa.select(events_t))}


def test_nothing_younger_than_the_retention_period_is_touched(gw, tmp_path) -> None:
    night(gw, tmp_path)
    before = rows(gw)
    result = purge(gw)
    assert (result.documents, result.events) == (0, 0) and rows(gw) == before


def test_past_the_retention_period_documents_and_personal_fields_of_settled_events_go(gw, tmp_path) -> None:
    night(gw, tmp_path)
    before = rows(gw)
    with gw.engine.connect() as conn:
        history = conn.execute(sa.select(sa.func.count()).select_from(history_t)).scalar_one()
    later = gw.clock() + timedelta(days=gw.settings.retention_days + 1)

    result = purge(gw, now=later)

    assert (result.documents, result.envelopes, result.events) == (3, 1, 5)  # lot, receipt, report; 4 + the closed
    after = rows(gw)
    for key in ("69001-0", "69001-99"):
        record = json.loads(after[key].payload)
        assert {record[f] for f in ("identifiant_pe", "nom", "prenom", "date_naissance")} == {None}
        assert after[key].identifiant_pe is None and after[key].erased_at is not None
        assert (after[key].state, after[key].content_hash, after[key].version) == (
            before[key].state, before[key].content_hash, before[key].version)
    assert json.loads(after["69001-0"].payload).get("commentaire") is None
    assert after["69001-99"].reject_code == "E01"  # codes stay
    assert after["69001-98"] == before["69001-98"]  # still REJETE: support may correct and resend it
    with gw.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(documents_t)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(history_t)).scalar_one() == history
        assert "purgés" in conn.execute(sa.select(envelope_history_t.c.cause)
                                        .order_by(envelope_history_t.c.id.desc()).limit(1)).scalar_one()
    assert purge(gw, now=later).events == 0  # done once


def test_the_scheduled_purge_runs_under_its_lease(gw, tmp_path) -> None:
    from gateway import lease

    assert lease.acquire(gw.engine, "purge", "autre-machine:1:x", seconds=600)
    assert "skipped" in purge_with_lease(gw)
    lease.release(gw.engine, "purge", "autre-machine:1:x")
    assert purge_with_lease(gw)["events"] == 0


def test_a_jobseeker_named_in_an_audited_filter_is_blanked_after_the_retention_period(gw, tmp_path) -> None:
    from gateway.store.models import audit_t
    from gateway.store.queries import EventFilter
    from gateway.support import resend_matching

    night(gw, tmp_path)
    resend_matching(gw, EventFilter(identifiant_pe="7654321Z"), actor="support")
    filters = sa.select(audit_t.c.filter).where(audit_t.c.action == "RESEND_FILTER")
    with gw.engine.connect() as conn:
        assert "7654321Z" in conn.execute(filters).scalar_one()

    purge(gw)  # within the period: the audit log is untouched
    with gw.engine.connect() as conn:
        assert "7654321Z" in conn.execute(filters).scalar_one()
    purge(gw, now=gw.clock() + timedelta(days=gw.settings.retention_days + 1))
    with gw.engine.connect() as conn:
        kept = json.loads(conn.execute(filters).scalar_one())
    assert kept["identifiant_pe"] == "(effacé)"
