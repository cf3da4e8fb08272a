"""A run's polling of the reports DUDE owes, when a poll finds DUDE unavailable: it backs off, asks one report
(the probe), and polls the others once DUDE answers it (`gateway.pipeline.outage`, `Outage.poll_failed`), at the
end of a run and between two chunks of the exports alike; and what a catch-up run then says of the reports it
reconciled (summary, JSON, the stored run the API shows)."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa
from fastapi.testclient import TestClient
from rich.console import Console

from adapters.dude.emulator.app import mock_transport
from adapters.parcours3.mapping import parse_export
from gateway.api.auth import create_client
from gateway.api.main import create_app
from gateway.cli.report import render_summary
from gateway.context import Gateway
from gateway.pipeline import dispatch, reconcile
from gateway.pipeline.ingest import ingest
from gateway.pipeline.outage import Outage
from gateway.pipeline.run import _Dispatcher, run_batch, start_run
from gateway.preflight import PreflightConfig
from gateway.store.models import envelopes_t, utcnow
from tests.backends import on_both_backends
from tests.gateway.test_gateway_faults import dude, envelope_states, export, states
from tests.gateway.test_reconcile import Clock, night

database_url = on_both_backends()


class ReportBlips(httpx.BaseTransport):
    """DUDE behind a load balancer that answers ``status`` to the next ``blips`` report polls (all of them while
    ``down``), and lets everything else through; it counts the report polls."""

    def __init__(self, inner: httpx.BaseTransport, *, blips: int = 0, status: int = 503) -> None:
        self.inner, self.blips, self.status, self.down, self.gets = inner, blips, status, False, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            self.gets += 1
            if self.down or self.blips:
                self.blips = max(0, self.blips - 1)
                return httpx.Response(self.status, request=request)
        return self.inner.handle_request(request)


def open_gateway(settings, transport, *, clock, waits: list[float], **updates) -> Gateway:
    """A gateway whose sleeps are recorded in ``waits`` (and take no time)."""
    return Gateway.open(settings.model_copy(update={"dude_url": "http://dude.test/dude/v1", **updates}),
                        transport=transport, sleep=waits.append, clock=clock)


@contextlib.contextmanager
def catch_up_behind(settings, registry_file, tmp_path, *, status: int, later: float, caplog=None, **updates):
    """Last night's 3 envelopes received by DUDE, their reports owed; ``later`` seconds on, a catch-up run while
    every report poll is answered ``status``. Yields the gateway (its clock: ``gw.clock.now``), the link (report
    polls counted from the catch-up), the back-offs waited and the catch-up's summary. ``caplog`` records from
    the catch-up on."""
    waits: list[float] = []
    with dude(settings, registry_file) as emu:
        link = ReportBlips(mock_transport(emu), status=status)
        gw = open_gateway(settings, link, clock=Clock(), waits=waits, envelope_max_events=2,
                          report_poll_interval_seconds=0.5, **updates)
        try:
            run_batch(gw, [export(tmp_path, 6)], wait_for_reports=False)
            gw.clock.now += timedelta(seconds=later)
            if caplog is not None:
                caplog.set_level(logging.INFO)
            link.down, link.gets = True, 0
            yield gw, link, waits, run_batch(gw, [])
        finally:
            gw.close()


def said(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno >= logging.WARNING]


def test_one_503_on_a_report_poll_and_the_catch_up_run_still_applies_every_report(
        settings, dev_keys, registry_file, tmp_path, caplog) -> None:
    """Last night's reports owed; tonight's catch-up run meets one 503 on its first poll. It stopped there, and
    the night ended without them; it now waits one back-off, asks one report, and once DUDE answers, the rest:
    every report applied, the run TERMINE, one line for the 503 and one for DUDE answering again."""
    waits: list[float] = []
    with dude(settings, registry_file) as emu:
        link = ReportBlips(mock_transport(emu))
        clock = Clock()
        gw = open_gateway(settings, link, clock=clock, waits=waits, envelope_max_events=2,
                          report_poll_interval_seconds=0.5)
        run_batch(gw, [night(tmp_path)], wait_for_reports=False)  # 3 envelopes received, their reports owed
        assert envelope_states(gw) == {"RECU": 3}
        clock.now += timedelta(seconds=1)  # their polls due

        caplog.set_level(logging.INFO)
        link.blips, link.gets = 1, 0
        catch_up = run_batch(gw, [])

        assert catch_up.outcome == "TERMINE"
        assert states(gw) == {"ACCEPTE": 5, "REJETE": 1} and envelope_states(gw) == {"TRAITE": 3}
        assert link.gets == 4  # the 503, then each report once
        assert waits == [0.5]  # one back-off, then the probe
        lines = said(caplog, "gateway.reconcile")
        assert len(lines) == 2 and "DUDE unavailable" in lines[0] and "answers report polls again" in lines[1], lines
        assert not any("not awaited" in line for line in said(caplog, "gateway.run"))
        assert catch_up.reports == {"lots": 3, "ACCEPTE": 5, "REJETE": 1}
    gw.close()


def test_a_dude_that_stays_unavailable_ends_the_wait_before_its_deadline_in_few_lines(
        settings, dev_keys, registry_file, tmp_path, caplog) -> None:
    """DUDE gone for the whole wait: the probes come further and further apart (each back-off twice the last, up
    to 30 s), the wait ends when the next would come after its deadline, and the log holds one line for DUDE
    found unavailable and one for the reports left to the scheduler: no line per probe."""
    with catch_up_behind(settings, registry_file, tmp_path, status=503, later=1, caplog=caplog,
                         report_wait_seconds=100) as (gw, link, waits, catch_up):  # 1 s: their polls due
        assert waits == [0.5, 1, 2, 4, 8, 16, 30, 30]  # 91.5 s: a ninth probe would come after the 100 s
        assert link.gets == 1 + len(waits)
        lines = said(caplog, "gateway.reconcile")
        assert len(lines) == 1 and "DUDE unavailable" in lines[0], lines
        assert said(caplog, "gateway.run") == [
            f"run {catch_up.run_id}: DUDE unavailable or refusing the gateway: 3 envelope(s) received by DUDE still "
            "without their report, not awaited; polled later by the scheduler or the next run"]
        assert catch_up.outcome == "TERMINE" and envelope_states(gw) == {"RECU": 3}
        assert catch_up.reports == {}


def test_probes_that_find_dude_still_unavailable_do_not_give_up_an_overdue_envelope(
        settings, dev_keys, registry_file, tmp_path) -> None:
    """An envelope past ``report_timeout_seconds`` has ``report_max_polls`` polls left before SANS_REPONSE. A probe
    asks about DUDE, not about that report: eight probes through an outage must not spend them."""
    with catch_up_behind(settings, registry_file, tmp_path, status=503, later=61, report_timeout_seconds=60,
                         report_max_polls=3, report_wait_seconds=100) as (gw, link, _, _):  # 61 s: every report overdue
        assert link.gets == 9  # the failed poll and eight probes
        assert envelope_states(gw) == {"RECU": 3}  # none given up
        with gw.engine.connect() as conn:
            assert sorted(conn.execute(sa.select(envelopes_t.c.polls)).scalars()) == [0, 0, 0]  # not one counted

        link.down = False  # DUDE back: the next run, once the first one's next poll is due, has them all
        gw.clock.now += timedelta(seconds=10)
        assert run_batch(gw, []).reports["lots"] == 3
        assert states(gw) == {"ACCEPTE": 6}


def test_passes_of_the_scheduler_through_a_long_outage_do_not_give_up_an_overdue_envelope(
        settings, dev_keys, registry_file, tmp_path) -> None:
    """Each pass (a scheduler tick, a run) starts with no outage, so its first poll finds DUDE unavailable
    anew. Counted as "no report yet", ``report_max_polls`` such passes gave an overdue envelope up
    (``SANS_REPONSE``) for DUDE's absence alone: two hours down, six hours after a receipt, by default."""
    clock = Clock()
    with dude(settings, registry_file) as emu:
        link = ReportBlips(mock_transport(emu))
        gw = open_gateway(settings, link, clock=clock, waits=[], envelope_max_events=2, report_timeout_seconds=60,
                          report_max_polls=2, report_poll_interval_seconds=0.5)
        run_batch(gw, [export(tmp_path, 6)], wait_for_reports=False)
        link.down = True
        for _ in range(6):  # six passes of the scheduler's report job, each past the last one's next poll
            clock.now += timedelta(seconds=61)
            reconcile.poll_reports(gw, outage=Outage.of(gw))
        assert link.gets == 6 and envelope_states(gw) == {"RECU": 3}  # one poll a pass, none given up

        link.down = False
        clock.now += timedelta(seconds=61)
        reconcile.poll_reports(gw, outage=Outage.of(gw))
        assert envelope_states(gw) == {"TRAITE": 3} and states(gw) == {"ACCEPTE": 6}
    gw.close()


def test_a_report_poll_dude_refuses_counts_and_an_overdue_envelope_is_given_up_in_time(
        settings, dev_keys, registry_file, tmp_path, caplog) -> None:
    """A 403 (an expired client certificate at a proxy, say) is DUDE, or what stands before it, answering: not
    an outage. Each such poll counts, and an overdue envelope goes SANS_REPONSE after ``report_max_polls``, as
    support staff must then see; taken for DUDE unavailable, the envelopes stayed RECU for ever, and every pass
    logged "DUDE unavailable"."""
    clock = Clock()
    with dude(settings, registry_file) as emu:
        link = ReportBlips(mock_transport(emu), status=403)
        gw = open_gateway(settings, link, clock=clock, waits=[], envelope_max_events=2, report_timeout_seconds=60,
                          report_max_polls=2, report_poll_interval_seconds=0.5)
        run_batch(gw, [export(tmp_path, 6)], wait_for_reports=False)
        link.down = True
        caplog.set_level(logging.INFO)
        for _ in range(6):  # passes of the scheduler's report job, each past the last one's next poll
            clock.now += timedelta(seconds=61)
            reconcile.poll_reports(gw, outage=Outage.of(gw))
        assert envelope_states(gw) == {"SANS_REPONSE": 3}
        assert not any("unavailable" in line for line in said(caplog, "gateway.reconcile"))
    gw.close()


def test_polling_between_two_chunks_skips_its_turn_until_the_back_off_ends_then_probes(
        settings, dev_keys, registry_file, tmp_path, caplog) -> None:
    """`_Dispatcher.catch_up`, between two chunks of the exports: after a 503 it asks nothing (each chunk would
    otherwise ask again), then, the back-off over, one report and the others once DUDE answers."""
    clock = Clock()
    with dude(settings, registry_file) as emu:
        link = ReportBlips(mock_transport(emu), blips=1)
        gw = open_gateway(settings, link, clock=clock, waits=[], envelope_max_events=2,
                          report_poll_interval_seconds=0.5)
        summary = start_run(gw, trigger="test", inputs=[], dry_run=False)
        ingest(gw.engine, parse_export(export(tmp_path, 6), PreflightConfig.from_settings(gw.settings)),
               run_id=summary.run_id, now=clock())
        caplog.set_level(logging.INFO)
        with _Dispatcher(gw, summary, poll_reports=True, outage=Outage.of(gw)) as dispatcher:
            dispatch.seal_pending(gw, run_id=summary.run_id, on_sealed=dispatcher.submit)
            dispatcher.wait_for_receipts(lambda *args: None)
            clock.now += timedelta(seconds=1)  # their polls due
            dispatcher.catch_up()
            assert link.gets == 1 and envelope_states(gw) == {"RECU": 3}  # the 503
            for _ in range(3):  # the next chunks, within the back-off
                dispatcher.catch_up()
            assert link.gets == 1

            clock.now += timedelta(seconds=1)
            dispatcher.catch_up()
        assert link.gets == 4 and envelope_states(gw) == {"TRAITE": 3} and states(gw) == {"ACCEPTE": 6}
        assert summary.reports == {"lots": 3, "ACCEPTE": 6, "REJETE": 0}
        lines = said(caplog, "gateway.reconcile")
        assert len(lines) == 2 and "answers report polls again" in lines[1], lines
    gw.close()


def test_a_catch_up_run_says_which_owed_reports_it_reconciled_and_what_they_said(
        settings, dev_keys, registry_file, tmp_path: Path) -> None:
    """A catch-up run reads no line: its table said "Total 0" and nothing of the reports it applied. It says how
    many envelopes' reports came in and how many events they accepted and rejected, on the command line, in
    ``--json``, and in the run the API shows an administrator."""
    with dude(settings, registry_file) as emu:
        clock = Clock()
        gw = open_gateway(settings, mock_transport(emu), clock=clock, waits=[], envelope_max_events=2)
        first = run_batch(gw, [night(tmp_path)], wait_for_reports=False)
        clock.now += timedelta(seconds=1)  # the reports owed: due
        catch_up = run_batch(gw, [])

    assert first.as_dict()["reports"] == {"lots": 0, "ACCEPTE": 0, "REJETE": 0}
    assert catch_up.as_dict()["reports"] == {"lots": 3, "ACCEPTE": 5, "REJETE": 1}
    out = Console(record=True, width=200)
    render_summary(catch_up, out, title="Exécution")
    text = out.export_text()
    assert "aucune nouvelle ligne lue" in text and "Total" not in text
    assert "Comptes rendus rapprochés : 3 lot(s)" in text and "acceptés : 5, rejetés : 1" in text
    out = Console(record=True, width=200)
    render_summary(first, out, title="Exécution")
    assert "Comptes rendus" not in out.export_text()

    _, token = create_client(gw.engine, name="admin", role="admin", now=utcnow())
    with TestClient(create_app(gw)) as client:
        run = client.get(f"/api/v1/runs/{catch_up.run_id}", headers={"Authorization": f"Bearer {token}"}).json()
    assert run["summary"]["reports"] == {"lots": 3, "ACCEPTE": 5, "REJETE": 1}
    gw.close()


def test_dude_refusing_the_gateways_report_polls_backs_off_like_dude_down_and_the_summary_says_so(
        settings, dev_keys, registry_file, tmp_path, caplog) -> None:
    """A 403 to every report poll (a filter before DUDE that no longer admits the gateway): a run waiting for its
    reports asked every one of them every half-second, 720 polls and as many warnings in its minute, ending
    TERMINE with a summary that said nothing (a drill found it). Now one poll, then probes further and further
    apart, one warning, and the summary says in red who refuses and what to do."""
    with catch_up_behind(settings, registry_file, tmp_path, status=403, later=1, caplog=caplog,
                         report_wait_seconds=60) as (gw, link, waits, catch_up):  # 1 s: their polls due
        assert waits == [0.5, 1, 2, 4, 8, 16], waits  # 31.5 s: the next probe, 30 s on, would end after the wait
        assert link.gets == 7  # the first poll, then one probe after each back-off
        lines = said(caplog, "gateway.reconcile")
        assert len(lines) == 1 and "DUDE refuses the gateway" in lines[0], lines
        assert catch_up.reports == {"acces_refuse": 7} and envelope_states(gw) == {"RECU": 3}

        link.down = False  # the access mended: the next pass applies every report
        gw.clock.now += timedelta(seconds=1)
        reconcile.poll_reports(gw, force=True)
        assert envelope_states(gw) == {"TRAITE": 3}
    out = Console(record=True, width=300)
    render_summary(catch_up, out, title="Exécution")
    text = " ".join(out.export_text().split())
    assert "refuse la passerelle (HTTP 401 ou 403) : 7 relevé(s) de compte rendu refusé(s)" in text, text


def test_refused_probes_do_not_spend_an_overdue_envelopes_polls(settings, dev_keys, registry_file, tmp_path) -> None:
    """A probe asks the oldest report every few seconds, due or not: counted, a run waiting behind a refusing filter
    gave an overdue envelope up (SANS_REPONSE, its events resendable though DUDE had them) within seconds, not after
    ``report_max_polls`` spaced polls. Only the pass's first poll, of a report that was due, counts."""
    with catch_up_behind(settings, registry_file, tmp_path, status=403, later=601, report_wait_seconds=60,
                         report_timeout_seconds=600, report_max_polls=3) as (gw, link, _, _):  # every report overdue
        assert link.gets == 7  # the first poll and six probes, as above
        assert envelope_states(gw) == {"RECU": 3}
        with gw.engine.connect() as conn:
            polls = sorted(conn.execute(sa.select(envelopes_t.c.polls)).scalars())
        assert polls == [0, 0, 1], polls  # the first poll counted, the probes not
