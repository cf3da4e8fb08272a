"""Times written by a clock that was ahead (a run made while a machine's clock was hours fast, a drill's faketime):
a next attempt, a claim's end or a next poll later than any back-off, claim or spacing sets is taken as past, not
obeyed for hours without a word (`gateway.lease.ahead_of_the_clock`). Times within what the settings set are kept."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from adapters.dude.emulator.app import mock_transport
from gateway.pipeline import reconcile, sending
from gateway.pipeline.run import run_batch
from gateway.store.models import envelopes_t
from tests.backends import on_both_backends
from tests.gateway.pipeline.test_outage import Link, refused_night
from tests.gateway.test_gateway_faults import dude, envelope_states, export, open_gateway
from tests.gateway.test_reconcile import Clock

database_url = on_both_backends()


def set_all(gw, **values) -> None:
    with gw.engine.begin() as conn:
        conn.execute(envelopes_t.update().values(**values))


def test_envelopes_held_by_a_clock_that_was_ahead_go_at_the_next_tick(settings, dev_keys, registry_file,
                                                                        tmp_path) -> None:
    clock = Clock()
    with dude(settings, registry_file) as emu:
        gw, link, night = refused_night(settings, emu, tmp_path, 6, clock=clock, send_attempts=1,
                                        dude_outage_seconds=120)
        assert night.undelivered == 3
        link.down = None
        # as a run made 8 hours ahead left them: held until then, and one claimed until then by a run of another
        # machine that died
        set_all(gw, next_attempt_at=clock.now + timedelta(hours=8))
        with gw.engine.begin() as conn:
            first = conn.execute(sa.select(envelopes_t.c.id).limit(1)).scalar_one()
            conn.execute(envelopes_t.update().where(envelopes_t.c.id == first).values(
                claimed_by="autre-hote:4242:cafe", claimed_until=clock.now + timedelta(hours=8)))
        assert sending.due_for_sending(gw)
        assert sending.send_waiting(gw, due_only=True).states == {"RECU": 3}
        assert envelope_states(gw) == {"RECU": 3}

        set_all(gw, state="ENVOYE", next_attempt_at=clock.now + timedelta(seconds=100))  # an outage's own hold
        assert not sending.due_for_sending(gw)  # within what the settings set: obeyed
    gw.close()


def test_a_report_put_off_by_a_clock_that_was_ahead_is_polled_at_the_next_pass(settings, dev_keys, registry_file,
                                                                                 tmp_path) -> None:
    clock = Clock()
    with dude(settings, registry_file) as emu:
        link = Link(mock_transport(emu))
        gw = open_gateway(settings, link, clock=clock, envelope_max_events=2, report_timeout_seconds=3600,
                          report_max_polls=3)
        run_batch(gw, [export(tmp_path, 6)], wait_for_reports=False)
        assert envelope_states(gw) == {"RECU": 3}
        spacing = reconcile.poll_spacing(gw.settings)  # 300 s: the longest a poll is put off
        set_all(gw, next_poll_at=clock.now + timedelta(seconds=spacing - 1))
        assert reconcile.poll_reports(gw) == []  # within the spacing: not yet
        set_all(gw, next_poll_at=clock.now + timedelta(hours=8))  # as a run made 8 hours ahead left them
        applied = reconcile.poll_reports(gw)
        assert [r.outcome for r in applied] == [reconcile.ReportOutcome.APPLIED] * 3
        assert envelope_states(gw) == {"TRAITE": 3}
    gw.close()
