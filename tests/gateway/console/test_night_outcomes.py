"""What the console says of the nights that did not simply end, found by walking through it as support staff
the morning after: a catch-up run that only reconciled last night's late reports, a night whose export was
refused, sending paused by the integrator, an envelope DUDE rejected whole. Each said nothing, or the wrong
thing, on the pages support staff read."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from gateway.codes import EventType
from gateway.pipeline.pause import pause, resume
from gateway.pipeline.run import run_batch
from gateway.store.models import envelopes_t, events_t, utcnow
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export
from tests.gateway.api.conftest import person
from tests.gateway.console.conftest import words

database_url = on_both_backends()


def run_line(page: str, run_id: int) -> str:
    """The dashboard's words from run ``run_id``'s line to the next run's (its notes included)."""
    start = page.index(f"N° {run_id} ")
    following = re.search(r"N° \d+ \d\d/\d\d/\d{4}", page[start + 1:])
    return page[start:start + 1 + following.start()] if following else page[start:page.index("Rejets par nuit")]


def export(tmp_path, name: str, numbers: dict[str, str]):
    """An export of mission locale 69001's young person: ``numbers`` maps an event number to "ok" or "E01"."""
    lines = [p3_line(EventType.ENT, id_evenement=n, **({**person("69001"), "identifiant_pe": "9999999Z"}
                                                       if outcome == "E01" else person("69001")))
             for n, outcome in numbers.items()]
    return write_export(tmp_path / name, lines)


def test_a_catch_up_run_says_the_reports_it_reconciled(signed_in, gw, tmp_path) -> None:
    """A night that did not wait for its reports (``--no-wait``), then ``gateway run --now`` with nothing new: the
    catch-up's line on the dashboard was a row of zeros, while it had applied last night's owed reports."""
    owed = run_batch(gw, [export(tmp_path, "P3_69001_20261129.csv", {"20": "ok", "21": "ok", "22": "E01"})],
                     wait_for_reports=False)
    catch_up = run_batch(gw, [])
    assert catch_up.reports == {"lots": 1, "ACCEPTE": 2, "REJETE": 1}  # what the pipeline recorded
    page = words(signed_in("admin").get("/console/"))
    line = run_line(page, catch_up.run_id)
    assert "Aucune ligne d'export lue : exécution de rattrapage." in line
    assert ("Comptes rendus du DUDE rapprochés : 1 lot laissé en attente par une exécution précédente — "
            "2 événements acceptés, 1 rejeté") in line
    assert "Comptes rendus" not in run_line(page, owed.run_id)  # its figures say it: 2 accepted, 1 rejected
    # The summary counts every mission locale: a support user is not told its figures (nor sees the run).
    assert "rapprochés" not in words(signed_in("support_69001").get("/console/"))


def test_a_night_with_a_refused_export_says_which_and_why(signed_in, gw, tmp_path) -> None:
    """"Terminée avec erreurs", and nowhere in the console which export was refused."""
    empty = tmp_path / "P3_69002_20261129.csv"
    empty.write_bytes(b"")
    summary = run_batch(gw, [export(tmp_path, "P3_69001_20261129.csv", {"30": "ok"}), empty])
    assert summary.outcome == "TERMINE_AVEC_ERREURS"
    said = ("Fichier refusé : P3_69002_20261129.csv (P3_EMPTY) — fichier vide, pas de ligne d'en-tête. "
            "Rien de ce fichier n'a été lu.")
    assert said in run_line(words(signed_in("admin").get("/console/")), summary.run_id)
    assert "Terminée avec erreurs" in run_line(words(signed_in("support_both").get("/console/")), summary.run_id)
    assert said in words(signed_in("support_both").get("/console/"))  # named for one of their missions locales
    # 69001's support sees the night (it read their event), not another mission locale's export.
    mine = words(signed_in("support_69001").get("/console/"))
    assert f"N° {summary.run_id} " in mine and "Fichier refusé" not in mine
    # 69002's own support sees it too, though the run read nothing of 69002: their refused export is the news.
    theirs = words(signed_in("support_69002").get("/console/"))
    assert f"N° {summary.run_id} " in theirs and said in run_line(theirs, summary.run_id)


def test_paused_sending_is_said_on_every_page_and_what_it_holds_is_not_said_to_be_on_its_way(signed_in, gw,
                                                                                           tmp_path) -> None:
    pause(gw.engine, by="cli:exploitant", reason="Maintenance du DUDE jusqu'à 14 h", now=utcnow())
    held = run_batch(gw, [export(tmp_path, "P3_69001_20261129.csv", {"40": "ok"})])  # sealed, not sent
    with gw.engine.connect() as conn:
        lot = conn.execute(sa.select(events_t.c.envelope_id).where(events_t.c.key == "69001-40")).scalar_one()
    user = signed_in("support_69001")
    banner = "Envoi au DUDE suspendu depuis le"
    for path in ("/console/", "/console/rejets", "/console/evenements/69001-3", f"/console/lots/{lot}",
                 "/console/rejets/renvoi"):
        page = words(user.get(path))
        assert banner in page and "par exploitant (ligne de commande) : « Maintenance du DUDE jusqu'à 14 h »" \
            in page, path
    dashboard = words(user.get("/console/"))
    assert "1 lot pas encore remis au DUDE" in dashboard and "dès la reprise de l'envoi" in dashboard
    assert "attend le compte rendu" not in dashboard  # DUDE never had it
    assert "L'envoi au DUDE était suspendu : cette exécution n'a rien envoyé" in run_line(dashboard, held.run_id)
    assert "Ils partiront à la reprise de l'envoi au DUDE" in words(user.get("/console/rejets/renvoi"))
    done = user.post("/console/actions/renvoyer", {"cle": "69001-3"})
    assert "il partira à la reprise de l'envoi au DUDE, suspendu pour l'instant." in \
        words(user.get(done.headers["location"]))

    resume(gw.engine, by="cli:exploitant", now=utcnow())
    after = words(user.get(done.headers["location"]))
    assert banner not in after and "il partira avec la prochaine exécution." in after
    # Resumed, the envelope sealed during the pause is still not DUDE's: it goes with the next run.
    dashboard = words(user.get("/console/"))
    assert "1 lot signé, pas encore envoyé au DUDE" in dashboard and "attend le compte rendu" not in dashboard


@pytest.fixture
def rejected_whole(gw, settings, emulator, tmp_path) -> str:
    """An envelope DUDE rejected whole (L06: the gateway sent under a sender code DUDE does not know)."""
    from adapters.dude.emulator.app import mock_transport
    from gateway.context import Gateway

    other = Gateway.open(settings.model_copy(update={"dude_url": "http://dude.test/dude/v1",
                                                     "sender_code": "INCONNU"}),
                         transport=mock_transport(emulator), sleep=lambda seconds: None)
    try:
        run_batch(other, [export(tmp_path, "P3_69001_20261129.csv", {"50": "ok", "51": "ok"})])
    finally:
        other.close()
    with gw.engine.connect() as conn:
        lot = conn.execute(sa.select(events_t.c.envelope_id).where(events_t.c.key == "69001-50")).scalar_one()
        assert conn.execute(sa.select(envelopes_t.c.state, envelopes_t.c.reject_code)
                            .where(envelopes_t.c.id == lot)).one() == ("REJETE", "L06")
    return lot


def test_an_envelope_rejected_whole_expects_no_report_and_its_events_are_resent_together(
        signed_in, rejected_whole) -> None:
    """Its page said "Compte rendu : pas encore reçu", and support staff waited for a report that never comes;
    and an event of it said only that no field was at fault, not how to resend the lot once the cause is gone."""
    lot = rejected_whole
    user = signed_in("support_69001")
    page = words(user.get(f"/console/lots/{lot}"))
    assert "Compte rendu aucun : le DUDE a rejeté le lot entier" in page and "pas encore reçu" not in page
    confirm = f'/console/rejets/renvoi?lot={lot}&amp;etat=REJETE'
    assert confirm in user.get(f"/console/lots/{lot}").text
    event = user.get("/console/evenements/69001-50")
    assert "rien à corriger dans Parcours 3" in words(event) and confirm in event.text
    assert "2 événements seront remis en attente d'envoi." in words(user.get(confirm.replace("&amp;", "&")))


def test_a_resend_confirmation_does_not_promise_to_send_invalid_events(signed_in) -> None:
    """A filter of invalid events was confirmed as "3 événements seront remis en attente d'envoi", and the
    result said 0 were (pre-flight refused them again)."""
    user = signed_in("admin")
    invalid = words(user.get("/console/rejets/renvoi?etat=INVALIDE"))
    assert "3 événements à renvoyer : 3 invalides seront contrôlés de nouveau avant envoi" in invalid
    assert "seront remis en attente d'envoi." not in invalid
    mixed = words(user.get("/console/rejets/renvoi"))
    assert ("5 événements à renvoyer : 2 rejetés ou sans compte rendu seront remis en attente d'envoi ; "
            "3 invalides seront contrôlés de nouveau") in mixed
    assert "2 événements seront remis en attente d'envoi." in words(user.get("/console/rejets/renvoi?etat=REJETE"))

