"""DUDE down: one envelope's round finds nobody there, the others of the pass are not posted, keep their IdLot and
go once DUDE is back; an HTTP 500 (DUDE there, this envelope broke it) never counts as "down"
(`gateway.pipeline.outage`). And what a run then says: every envelope still owed, the outcome, the exit code."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from rich.console import Console

from adapters.dude.emulator.app import mock_transport
from gateway.cli.report import render_summary
from gateway.pipeline import dispatch, reconcile, sending
from gateway.pipeline.run import run_batch
from gateway.store.models import envelope_history_t, envelopes_t
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export
from tests.gateway.test_gateway_faults import dude, envelope_states, export, open_gateway, states
from tests.gateway.test_reconcile import Clock

database_url = on_both_backends()


class Link(httpx.BaseTransport):
    """The line to DUDE, which the test cuts (``down``: no answer, or an HTTP status) and mends; it counts posts."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.down, self.posts = inner, None, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.posts += request.method == "POST"
        if self.down == "refused":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if self.down is not None:
            return httpx.Response(self.down, request=request)
        return self.inner.handle_request(request)


def refused_night(settings, emu, tmp_path, events: int, **updates):
    """DUDE refusing every connection, and a night of ``events`` events sent to it in envelopes of 2: the gateway
    (``updates`` to its settings, ``clock``), the link and the night's summary."""
    link = Link(mock_transport(emu))
    link.down = "refused"
    gw = open_gateway(settings, link, envelope_max_events=2, **updates)
    return gw, link, run_batch(gw, [export(tmp_path, events)], wait_for_reports=False)


def next_attempts(gw) -> Counter:
    with gw.engine.connect() as conn:
        return Counter(conn.execute(sa.select(envelopes_t.c.state, envelopes_t.c.next_attempt_at)).all())


@pytest.mark.parametrize("down", ["refused", 503])
def test_dude_down_one_envelope_probes_the_others_wait_then_all_go(settings, dev_keys, registry_file, tmp_path,
                                                                    caplog, down) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    with dude(settings, registry_file) as emu:
        link = Link(mock_transport(emu))
        link.down = down
        gw = open_gateway(settings, link, clock=clock, envelope_max_events=2, send_attempts=3, send_workers=1,
                          dude_outage_seconds=120)
        night = run_batch(gw, [export(tmp_path, 10)], wait_for_reports=False)

        assert link.posts == 3  # the first envelope's round; the four others were not posted
        assert night.sending["envoyes"] == 1 and night.sending["sans_accuse"] == 1
        assert night.sending["non_envoyes"] == 4 and night.undelivered == 5
        assert night.outcome == "TERMINE_SANS_ACCUSE"
        back_at = clock.now + timedelta(seconds=120)
        kept = next_attempts(gw)
        assert kept == {("ENVOYE", back_at): 1, ("SIGNE", back_at): 4}, kept  # same IdLot, due then
        warnings = [r.getMessage() for r in caplog.records
                    if r.name == "gateway.outage" and r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "DUDE unreachable" in warnings[0]
        assert not sending.due_for_sending(gw)  # the scheduler's tick leaves them too, until then

        link.down = None  # DUDE back, and the outage over
        clock.now = back_at + timedelta(seconds=1)
        assert sending.due_for_sending(gw)
        catch_up = run_batch(gw, [], wait_for_reports=False)
        assert catch_up.outcome == "TERMINE" and catch_up.undelivered == 0
        assert catch_up.sending["reprises"] == 5 and catch_up.resumed == {"TRANSMIS": 10}
        reconcile.poll_reports(gw, force=True)
        assert states(gw) == {"ACCEPTE": 10} and envelope_states(gw) == {"TRAITE": 5}
        assert emu.ledger_summary()["events_applied_more_than_once"] == []

    out = Console(record=True, width=200)
    render_summary(catch_up, out, title="Exécution")
    text = out.export_text()
    assert "aucune nouvelle ligne lue" in text and "Total 0" not in text.replace("\u202f", "")
    assert "Lots repris : 5" in text and "Événements des lots repris" in text and "TRANSMIS" in text
    out = Console(record=True, width=200)
    render_summary(night, out, title="Exécution")
    text = out.export_text()
    assert "4 lot(s) non envoyé(s)" in text and "1 lot(s) sans accusé" in text
    gw.close()


def test_http_500_is_dude_there_so_every_envelope_is_still_tried(settings, dev_keys, registry_file, tmp_path) -> None:
    """A 500 says "this envelope broke me" (gateway.pipeline.quarantine counts it): it must not stop the others."""
    with dude(settings, registry_file) as emu:
        link = Link(mock_transport(emu))
        link.down = 500
        gw = open_gateway(settings, link, envelope_max_events=2, send_attempts=2, poison_after_failed_runs=5)
        night = run_batch(gw, [export(tmp_path, 6)], wait_for_reports=False)
        assert link.posts == 6 and night.sending["sans_accuse"] == 3 and "non_envoyes" not in night.sending
    gw.close()


def test_outage_seconds_0_lets_every_envelope_make_all_its_attempts(settings, dev_keys, registry_file,
                                                                    tmp_path) -> None:
    with dude(settings, registry_file) as emu:
        gw, link, night = refused_night(settings, emu, tmp_path, 6, send_attempts=2, dude_outage_seconds=0)
        assert link.posts == 6 and night.sending["sans_accuse"] == 3 and night.undelivered == 3
    gw.close()


def test_a_scheduler_round_with_dude_down_posts_one_envelope_only(settings, dev_keys, registry_file,
                                                                  tmp_path) -> None:
    """`send_waiting` (the scheduler's tick, a run's resumption): once one round found DUDE down, nothing more
    is claimed, so the tick ends in one envelope's attempts rather than every envelope's."""
    with dude(settings, registry_file) as emu:
        link = Link(mock_transport(emu))
        gw = open_gateway(settings, link, envelope_max_events=2, send_attempts=3, send_workers=1)
        run_batch(gw, [export(tmp_path, 8)], wait_for_reports=False)  # DUDE up: 4 envelopes accepted
        link.down, link.posts = "refused", 0
        tomorrow = write_export(tmp_path / "P3_69001_20261129.csv",
                                [p3_line(id_evenement=str(100 + i)) for i in range(8)])
        run_batch(gw, [tomorrow], wait_for_reports=False)
        assert link.posts == 3
        link.posts = 0
        stats = sending.send_waiting(gw, workers=1)
        assert link.posts == 3 and stats.sent == 1
        assert len(dispatch.unanswered_envelopes(gw)) == 4
    gw.close()


@pytest.mark.parametrize("workers", [2, 4])
def test_with_several_senders_one_round_probes_the_others_wait_for_it(settings, dev_keys, registry_file, tmp_path,
                                                                      workers) -> None:
    """A night that begins with DUDE down: each sender thread made its own round (up to ``send_workers``
    rounds, and their warnings, to learn what the first had). Until DUDE answers, one envelope's round goes at
    a time; the outage it opens holds the others, unposted."""
    with dude(settings, registry_file) as emu:
        gw, link, night = refused_night(settings, emu, tmp_path, 20, send_attempts=3, send_workers=workers)
        assert link.posts == 3  # one round
        assert night.sending["envoyes"] == 1 and night.sending["non_envoyes"] == 9 and night.undelivered == 10
    gw.close()


def test_a_tick_past_the_outage_probes_with_one_envelope_then_sends_with_all_its_workers(
        settings, dev_keys, registry_file, tmp_path) -> None:
    """The scheduler's tick at the outage's end, with four workers: it claimed four envelopes at once, so DUDE
    still down meant four rounds. It claims one, the probe; once DUDE answers, the others go four at a time."""
    clock = Clock()
    with dude(settings, registry_file) as emu:
        gw, link, _ = refused_night(settings, emu, tmp_path, 16, clock=clock, send_attempts=2, send_workers=4,
                                    dude_outage_seconds=120)
        assert link.posts == 2  # the night's probe: 8 envelopes wait

        clock.now += timedelta(seconds=121)  # over, DUDE still down
        link.posts = 0
        stats = sending.send_waiting(gw, due_only=True)
        assert link.posts == 2 and stats.sent == 1 and stats.deferred == 0  # one round; nothing else claimed

        clock.now += timedelta(seconds=121)
        link.down, link.posts = None, 0  # DUDE back
        stats = sending.send_waiting(gw, due_only=True)
        assert link.posts == 8 and stats.states == {"RECU": 8}
        assert emu.ledger_summary()["lots_processed_more_than_once"] == []
    gw.close()


class ReportsGone(Link):
    """DUDE takes the envelopes (their receipts come back), then is gone when its reports are asked for."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        super().__init__(inner)
        self.gets, self.gone = 0, True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and self.gone:
            self.gets += 1
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return super().handle_request(request)


def test_dude_gone_before_its_reports_the_run_probes_one_report_at_a_time_and_says_so(
        settings, dev_keys, registry_file, tmp_path, caplog) -> None:
    """A run whose envelopes were received, DUDE gone before their reports: it asked every awaited report every
    half-second for ``report_wait_seconds``, a warning each time (205 lines in 20 s for 5 envelopes, 60 s by
    default); it now says once that DUDE is unavailable, asks one report at a time, each after twice the last
    wait, says in one line that the reports are left to the scheduler, and ends
    (tests/gateway/pipeline/test_report_wait.py counts the probes on a clock of its own)."""
    caplog.set_level(logging.INFO)
    with dude(settings, registry_file) as emu:
        link = ReportsGone(mock_transport(emu))
        gw = open_gateway(settings, link, envelope_max_events=2, report_wait_seconds=1)
        night = run_batch(gw, [export(tmp_path, 10)])

        assert night.outcome == "TERMINE" and night.envelopes == {"RECU": 5}  # every receipt came
        assert 1 < link.gets <= 20, link.gets  # a probe after 0.01 s, 0.02, 0.04…: not a poll every 0.01 s
        polls = [r.getMessage() for r in caplog.records
                 if r.name == "gateway.reconcile" and r.levelno == logging.WARNING]
        assert len(polls) == 1 and "DUDE unavailable" in polls[0] and "not polled" in polls[0], polls
        said = [r.getMessage() for r in caplog.records if r.name == "gateway.run" and "not awaited" in r.getMessage()]
        assert said == [f"run {night.run_id}: DUDE unavailable or refusing the gateway: 5 envelope(s) received by "
                        "DUDE still without their report, not awaited; polled later by the scheduler or the next "
                        "run"], said

        link.gone = False  # DUDE back: the reports come
        reconcile.poll_reports(gw, force=True)
        assert states(gw) == {"ACCEPTE": 10} and envelope_states(gw) == {"TRAITE": 5}
        assert emu.ledger_summary()["events_applied_more_than_once"] == []
    gw.close()


def test_the_schedulers_ticks_post_nothing_while_dude_is_found_down_then_all_go_once(
        settings, dev_keys, registry_file, tmp_path, caplog) -> None:
    """`gateway serve` with DUDE down: a tick's probe that finds it down holds every waiting envelope until the
    outage's end. Before, the envelopes the tick had not reached stayed due, so each next tick (every
    ``GATEWAY_SCHEDULE_POLL_SECONDS``) claimed the oldest, those the outage held, for a whole round again."""
    from gateway.scheduler import reports_job, run_job_now

    caplog.set_level(logging.INFO)
    clock = Clock()
    with dude(settings, registry_file) as emu:
        gw, link, _ = refused_night(settings, emu, tmp_path, 10, clock=clock, send_attempts=2, send_workers=1,
                                    dude_outage_seconds=120)  # the night: one round, 4 envelopes wait
        assert link.posts == 2

        clock.now += timedelta(seconds=121)  # the night's outage is over, DUDE still down: a tick probes
        link.posts = 0
        run_job_now(gw, reports_job)
        assert link.posts == 2  # one envelope's round
        held_until = clock.now + timedelta(seconds=120)
        held = next_attempts(gw)
        assert {when for _, when in held} == {held_until} and held.total() == 5, held  # all five, the same IdLots

        for _ in range(4):  # the ticks within the outage post nothing
            clock.now += timedelta(seconds=15)
            link.posts = 0
            run_job_now(gw, reports_job)
            assert link.posts == 0, link.posts

        link.down = None  # DUDE back; the first tick past the outage sends them all, each once
        clock.now = held_until + timedelta(seconds=1)
        caplog.clear()
        run_job_now(gw, reports_job)
        assert link.posts == 5
        said = [r.getMessage() for r in caplog.records if r.name == "gateway.night"]
        assert said == ["waiting envelope(s) posted by the schedule: 5, now RECU 5"], said
        reconcile.poll_reports(gw, force=True)
        assert states(gw) == {"ACCEPTE": 10} and envelope_states(gw) == {"TRAITE": 5}
        ledger = emu.ledger_summary()
        assert ledger["lot_replays"] == 0 and ledger["events_applied_more_than_once"] == []
    gw.close()


def test_a_failed_poll_makes_the_next_a_probe_after_a_growing_back_off_and_an_outage_ends_by_itself() -> None:
    """A poll that found DUDE unavailable holds the pass's polling for a back-off, the poll interval, then twice
    as long at each probe that fails, up to 30 s; DUDE answering a post does not resume it (the number of polls
    must not depend on how sending and polling interleave), a probe answered does. The sending outage ends
    when its time is up."""
    from gateway.pipeline.outage import Outage

    clock = Clock()
    outage = Outage(clock, 120, poll_interval=0.5)
    assert outage.probe_in() is None  # polls go
    assert outage.poll_failed() == 0.5
    assert not outage.polling_stopped() and outage.until() is None  # sending is left to find out by itself
    outage.answered()
    assert outage.probe_in() == 0.5
    clock.now += timedelta(seconds=0.5)
    assert outage.probe_in() == 0  # the probe may go
    assert [outage.poll_failed() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    outage.poll_answered()
    assert outage.probe_in() is None and outage.poll_failed() == 0.5  # DUDE back: a new failure starts over
    fresh = Outage(clock, 120)
    assert fresh.round_failed("refused") == clock.now + timedelta(seconds=120) and fresh.polling_stopped()
    clock.now += timedelta(seconds=121)
    assert fresh.until() is None and not fresh.polling_stopped()  # over: the next round probes


def test_until_dude_answers_one_round_at_a_time_then_all_go() -> None:
    """`Outage.take_turn`: the second envelope waits for the first one's round (the probe); an answer from DUDE,
    even a 500, lets it go; an outage opened by the probe lets it go too (to be held by `defer`)."""
    import threading

    from gateway.pipeline.outage import Outage

    def second_waits(outage: Outage, end) -> None:
        outage.take_turn("first")
        went = threading.Event()
        other = threading.Thread(target=lambda: (outage.take_turn("second"), went.set()))
        other.start()
        assert not went.wait(0.3)  # the probe is on the wire
        end(outage)
        assert went.wait(5), "the second envelope still waits after the probe's end"
        other.join()

    clock = Clock()
    second_waits(Outage(clock, 120), Outage.reached)
    second_waits(Outage(clock, 120), Outage.answered)
    opened = Outage(clock, 120)
    second_waits(opened, lambda o: o.round_failed("refused"))
    assert opened.defer("second") == clock.now + timedelta(seconds=120)
    failed_otherwise = Outage(clock, 120)  # e.g. paused: the next one probes
    second_waits(failed_otherwise, lambda o: o.round_over("first"))
    assert failed_otherwise.probing()
    off = Outage(clock, 0)
    off.take_turn("first")
    off.take_turn("second")  # 0: no outage, no probe, every envelope goes
    assert not off.probing()


@pytest.mark.parametrize("status", [401, 403])
def test_dude_refusing_the_gateway_stops_the_night_after_two_posts_and_says_why(settings, dev_keys, registry_file,
                                                                               tmp_path, caplog, status) -> None:
    """A 401/403 refuses the gateway, not an envelope (`gateway.errors.AccessRefused`): it used to cost every envelope
    ``send_attempts`` posts and a warning each, and the night read "sans accusé" as if DUDE had been down."""
    caplog.set_level(logging.WARNING)
    clock = Clock()
    with dude(settings, registry_file) as emu:
        link = Link(mock_transport(emu))
        link.down = status
        gw = open_gateway(settings, link, clock=clock, envelope_max_events=2, send_attempts=3, send_workers=2,
                          dude_outage_seconds=120)
        night = run_batch(gw, [export(tmp_path, 10)], wait_for_reports=False)

        assert link.posts == 2  # two envelopes refused, once each: the refusal is the gateway's; the others wait
        assert night.sending["acces_refuse"] == 2 and night.sending["tentatives"] == 2
        assert night.undelivered == 5 and night.outcome == "TERMINE_SANS_ACCUSE"
        assert "quarantaine" not in night.sending
        back_at = clock.now + timedelta(seconds=120)
        assert next_attempts(gw) == {("ENVOYE", back_at): 2, ("SIGNE", back_at): 3}
        with gw.engine.connect() as conn:
            errors = set(conn.execute(sa.select(envelopes_t.c.last_error).where(envelopes_t.c.state == "ENVOYE"))
                         .scalars())
        assert errors == {f"[DUDE_ACCESS_REFUSED] POST /lots: access refused, HTTP {status} (no content type, 0 bytes)"}
        warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert sum("DUDE refuses the gateway's access" in w for w in warned) == 1, warned

        link.down = None  # the access mended
        clock.now = back_at + timedelta(seconds=1)
        again = run_batch(gw, [], wait_for_reports=False)
        assert again.outcome == "TERMINE" and again.sending["reprises"] == 5
        reconcile.poll_reports(gw, force=True)
        assert states(gw) == {"ACCEPTE": 10} and emu.ledger_summary()["events_applied_more_than_once"] == []

    out = Console(record=True, width=300)
    render_summary(night, out, title="Exécution")
    text = " ".join(out.export_text().split())
    assert "Le DUDE, ou un filtre devant lui, refuse la passerelle (HTTP 401 ou 403) : 2 lot(s)" in text
    assert "Rien n'est perdu" in text and "3 lot(s) non envoyé(s)" in text
    assert "après toutes les tentatives" not in text  # posted once each, as it says
    gw.close()


class Filter(Link):
    """A filter before DUDE that refuses one envelope for its content (403), and lets the others through."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        super().__init__(inner)
        self.refused: bytes | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.refused = self.refused or request.content
            if request.content == self.refused:
                self.posts += 1
                return httpx.Response(403, request=request)
        return super().handle_request(request)


def test_one_envelope_refused_403_by_a_filter_holds_back_nothing_else(settings, dev_keys, registry_file,
                                                                      tmp_path) -> None:
    """One refusal alone is not the gateway's: holding the night behind it would hold it for good (that envelope
    is the first to probe again). It is posted once, kept with its IdLot, and the others go."""
    with dude(settings, registry_file) as emu:
        link = Filter(mock_transport(emu))
        gw = open_gateway(settings, link, envelope_max_events=2, send_attempts=3, send_workers=1,
                          dude_outage_seconds=120)
        night = run_batch(gw, [export(tmp_path, 10)], wait_for_reports=False)
        assert link.posts == 5  # the refused one once, the four others once each
        assert night.sending["acces_refuse"] == 1 and night.undelivered == 1
        assert envelope_states(gw) == {"RECU": 4, "ENVOYE": 1}
        with gw.engine.connect() as conn:
            causes = conn.execute(sa.select(envelope_history_t.c.cause).where(
                envelope_history_t.c.cause.like("%refuse l'accès%"))).scalars().all()
        assert causes == ["le DUDE refuse l'accès à la passerelle (HTTP 403) : renvoyé plus tard, même IdLot"]
    gw.close()


def test_two_envelopes_a_filter_refuses_for_their_content_hold_the_others_one_outage_at_most(
        settings, dev_keys, registry_file, tmp_path) -> None:
    """Two refusals before any answer open the outage (it cannot be told from the gateway refused). When the two
    were the oldest envelopes, they were the first to probe each pass, every pass held again, and the others never
    went (review). Now envelopes refused before are claimed last, and after DUDE's first answer a refusal holds
    nothing: one outage, then the others go."""
    clock = Clock()
    with dude(settings, registry_file) as emu:
        gw, link, night = refused_night(settings, emu, tmp_path, 10, clock=clock, send_attempts=1, send_workers=1,
                                        dude_outage_seconds=120)
        assert night.undelivered == 5 and link.posts == 1  # DUDE down for the night: nothing went
        with gw.engine.connect() as conn:  # the two first in the order envelopes are claimed in
            first_two = conn.execute(sa.select(envelopes_t.c.id).order_by(envelopes_t.c.created_at, envelopes_t.c.id)
                                     .limit(2)).scalars().all()
        link.down = None
        inner = link.inner

        class ContentFilter(httpx.BaseTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                if request.method == "POST" and any(i.encode() in request.content for i in first_two):
                    return httpx.Response(403, request=request)
                return inner.handle_request(request)

        link.inner = ContentFilter()
        said = []
        for _ in range(3):  # the scheduler's ticks, each once the outage and the back-offs are over
            clock.now += timedelta(minutes=10)
            said.append(sending.send_waiting(gw, due_only=True).states)
        assert said == [{"ENVOYE": 2}, {"ENVOYE": 2, "RECU": 3}, {"ENVOYE": 2}], said  # one outage, then all go
        assert envelope_states(gw) == {"RECU": 3, "ENVOYE": 2}
        assert emu.ledger_summary()["events_applied_more_than_once"] == []
    gw.close()
