"""An envelope's page in the console (``/console/lots/{IdLot}``): what support staff reached only through the
command line and the API — its state, times, DUDE's receipt and report, its history and its events by state —
within the user's scope, and linked from the event page."""

from __future__ import annotations

import re

import sqlalchemy as sa

from gateway.codes import EventType
from gateway.pipeline.run import run_batch
from gateway.store.models import envelopes_t, events_t, utcnow
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export
from tests.gateway.console.conftest import listed, text, words

database_url = on_both_backends()


def envelope_of(gw, key: str) -> str:
    with gw.engine.connect() as conn:
        return conn.execute(sa.select(events_t.c.envelope_id).where(events_t.c.key == key)).scalar_one()


def test_an_envelopes_page_shows_its_state_times_answers_history_and_events(signed_in, gw) -> None:
    lot = envelope_of(gw, "69001-3")  # the night's one envelope: 69001-1..3 and 69002-1..3
    answer = signed_in("admin").get(f"/console/lots/{lot}")
    assert answer.status_code == 200
    page = words(answer)
    assert f"Lot {lot}" in page and "État Traité, compte rendu reçu et rapproché" in page
    assert re.search(r"Scellé le \d\d/\d\d/\d{4} \d\d:\d\d Premier envoi \d\d/\d\d/\d{4} \d\d:\d\d "
                     r"Tentatives d'envoi 1 Exécution N° 1", page)
    assert "Événements scellés 6" in page
    assert re.search(r"Accusé de réception reçu le \d\d/\d\d/\d{4} \d\d:\d\d Compte rendu reçu le", page)
    assert "Selon le compte rendu 4 acceptés, 2 rejetés" in page
    counts = page[page.index("par état"):page.index("Historique")]
    assert "Accepté par le DUDE 4 Rejeté par le DUDE 2 Total 6" in counts
    history = page[page.index("Historique"):]
    steps = ["6 événements signés", "premier envoi", "accusé de réception : 6 événements reçus",
             "compte rendu rapproché (demandé au DUDE) : 4 acceptés, 2 rejetés"]
    assert [history.index(s) for s in steps] == sorted(history.index(s) for s in steps)
    assert 'href="/console/rejets?nuit=1"' in answer.text


def test_a_support_user_sees_their_events_of_an_envelope_and_no_other_envelope(signed_in, gw, tmp_path) -> None:
    from tests.gateway.api.conftest import person

    shared = envelope_of(gw, "69001-3")
    user = signed_in("support_69001")
    page = words(user.get(f"/console/lots/{shared}"))
    assert "Ses événements de vos missions locales, par état" in page
    assert "Accepté par le DUDE 2 Rejeté par le DUDE 1 Total 3" in page  # its own three, not the six
    assert "Événements scellés" not in page and "Selon le compte rendu" not in page  # whole-envelope counts
    history = page[page.index("Historique"):]  # nor in its history
    assert "lot signé" in history and "compte rendu rapproché (demandé au DUDE)" in history
    assert "6 événements" not in history and "acceptés" not in history

    run_batch(gw, [write_export(tmp_path / "P3_69002_20261129.csv",
                                [p3_line(EventType.ENT, id_evenement="8", **person("69002"))])])
    foreign = envelope_of(gw, "69002-8")  # holds 69002's event only
    assert signed_in("admin").get(f"/console/lots/{foreign}").status_code == 200
    refused = user.get(f"/console/lots/{foreign}")
    missing = user.get("/console/lots/00000000-0000-0000-0000-000000000000")
    assert refused.status_code == missing.status_code == 404
    assert words(refused) == words(missing) and "Ce lot est introuvable" in words(refused)
    assert user.get(f"/console/lots/{shared}{'0' * 40}").status_code == 404  # longer than any IdLot


def test_the_event_page_links_to_its_envelope(signed_in, gw) -> None:
    lot = envelope_of(gw, "69001-3")
    user = signed_in("support_69001")
    event = user.get("/console/evenements/69001-3")
    xml = event.text[event.text.index("Le XML envoyé au DUDE"):event.text.index('<pre class="xml"')]
    assert f'<a href="/console/lots/{lot}"><code>{lot}</code></a>' in xml  # "Tel qu'envoyé dans le lot …"
    history = event.text[event.text.index("Historique"):]
    assert f'lot <a href="/console/lots/{lot}">{lot}</a>' in history
    followed = user.get(f"/console/lots/{lot}")
    assert followed.status_code == 200 and f"Lot {lot}" in text(followed)


def test_an_envelope_the_user_can_no_longer_open_is_named_not_linked(signed_in, gw, tmp_path) -> None:
    """Resent, an event goes in a new envelope; the old one, holding none of the user's events any more, would
    answer 404: the event page names it without a link."""
    from tests.gateway.api.conftest import person

    run_batch(gw, [write_export(tmp_path / "P3_69002_20261129.csv", [  # alone in its envelope, rejected (E01)
        p3_line(EventType.ENT, id_evenement="9", **{**person("69002"), "identifiant_pe": "9999999Z"})])])
    first = envelope_of(gw, "69002-9")
    user = signed_in("support_69002")
    assert user.post("/console/actions/renvoyer", {"cle": "69002-9"}).status_code == 303
    run_batch(gw, [])  # sent again, in a new envelope
    second = envelope_of(gw, "69002-9")
    assert second != first and user.get(f"/console/lots/{first}").status_code == 404
    history = user.get("/console/evenements/69002-9").text.split("Historique", 1)[1]
    assert f'lot <a href="/console/lots/{second}">{second}</a>' in history
    assert f"lot {first}" in history and f'href="/console/lots/{first}"' not in history
    assert f'href="/console/lots/{first}"' in signed_in("admin").get("/console/evenements/69002-9").text


def test_the_envelope_page_keeps_the_consoles_security_headers(signed_in, gw) -> None:
    answer = signed_in("admin").get(f"/console/lots/{envelope_of(gw, '69001-3')}")
    assert answer.status_code == 200
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store" and answer.headers["x-frame-options"] == "DENY"
    assert 'style="' not in answer.text and "<script>" not in answer.text


def test_an_envelopes_counts_lead_to_its_events_in_the_rejects_list(signed_in, gw) -> None:
    """From an envelope's page, a count opens the rejects list on that envelope and state: which of its events
    were rejected, to handle them (the list's ``lot`` criterion, kept by its form and its links)."""
    lot = envelope_of(gw, "69001-3")
    with gw.engine.connect() as conn:
        rejected = sorted(conn.execute(sa.select(events_t.c.key).where(events_t.c.envelope_id == lot,
                                                                       events_t.c.state == "REJETE")).scalars())
    admin = signed_in("admin")
    page = admin.get(f"/console/lots/{lot}").text
    link = f"/console/rejets?lot={lot}&amp;etat=REJETE"
    assert f'href="{link}"' in page
    answer = admin.get(link.replace("&amp;", "&"))
    assert sorted(listed(answer)) == rejected and len(rejected) == 2
    assert f'name="lot" type="text" value="{lot}"' in answer.text  # kept when the form is sent again
    mine = listed(signed_in("support_69001").get(link.replace("&amp;", "&")))
    assert mine == [k for k in rejected if k.startswith("69001-")] and len(mine) == 1


def test_an_unknown_or_unreadable_envelope_in_the_rejects_list_is_said_and_left_out(signed_in, gw) -> None:
    admin = signed_in("admin")
    everything = sorted(listed(admin.get("/console/rejets")))
    unknown = admin.get("/console/rejets?lot=00000000-0000-0000-0000-000000000000")
    assert "Lot « 00000000-0000-0000-0000-000000000000 » : introuvable." in words(unknown)
    assert sorted(listed(unknown)) == everything  # left out, as the message says
    garbled = admin.get("/console/rejets?lot=pas-un-lot")
    assert "Lot « pas-un-lot » : IdLot attendu" in words(garbled) and sorted(listed(garbled)) == everything
    # Another mission locale's envelope is answered as a missing one.
    lot = envelope_of(gw, "69001-3")
    assert "introuvable" not in words(signed_in("support_69002").get(f"/console/rejets?lot={lot}"))  # shared
    refused = signed_in("support_69002").post("/console/actions/renvoyer-filtre",
                                              {"lot": "00000000-0000-0000-0000-000000000000"})
    assert "Rien n'a été renvoyé" in words(refused)  # a criterion dropped would widen the resend


def test_a_failed_send_and_a_quarantine_are_said_and_lead_to_the_new_envelopes(signed_in, gw, tmp_path) -> None:
    """The envelope's last transport error (English, for the integrator's logs) was not shown at all; and a
    quarantined envelope, whose events have moved to new envelopes, showed none and said they were resent."""
    from gateway.pipeline.pause import pause
    from gateway.pipeline.quarantine import isolate
    from tests.gateway.api.conftest import person

    pause(gw.engine, by="test", reason="DUDE en panne", now=utcnow())  # sealed, not sent
    run_batch(gw, [write_export(tmp_path / "P3_69001_20261129.csv", [
        p3_line(EventType.ENT, id_evenement=n, **person("69001")) for n in ("20", "21")])])
    lot = envelope_of(gw, "69001-20")
    with gw.engine.begin() as conn:  # as the sending leaves it after a round of HTTP 500
        conn.execute(envelopes_t.update().where(envelopes_t.c.id == lot).values(last_error="POST /lots: HTTP 500"))
    admin, support = signed_in("admin"), signed_in("support_69001")
    said = "Dernière tentative d'envoi en échec : le serveur du DUDE a répondu par une erreur (HTTP 500)."
    page = words(admin.get(f"/console/lots/{lot}"))
    assert said in page and "la passerelle renverra ce lot à la prochaine exécution, sous le même IdLot" in page
    assert "Détail technique, pour l'intégrateur : POST /lots: HTTP 500" in page
    page = words(support.get(f"/console/lots/{lot}"))
    assert said in page and "POST /lots" not in page  # the technical text for admins only, as in the API

    isolate(gw, lot, run_id=None, reason="2 tour(s) d'envoi en échec")
    moved = {envelope_of(gw, "69001-20"), envelope_of(gw, "69001-21")}
    answer = admin.get(f"/console/lots/{lot}")
    assert len(moved) == 2 and lot not in moved
    assert "Ce lot a été mis en quarantaine : ses événements ont été scellés à nouveau dans les lots" in words(answer)
    assert "ils ont tous été renvoyés" not in words(answer)
    news = answer.text[answer.text.index('id="lots-suivants"'):answer.text.index("où ils sont suivis")]
    assert set(re.findall(r'href="/console/lots/([0-9a-f-]{36})"', news)) == moved
    assert support.get(f"/console/lots/{lot}").status_code == 404  # holds none of their events now: as before


def test_the_envelope_pages_breadcrumb_goes_back_where_the_person_came_from(signed_in, gw) -> None:
    """It went to the dashboard whatever page the envelope was opened from."""
    lot = envelope_of(gw, "69001-3")
    user = signed_in("support_69001")

    def crumb(referer: str | None) -> str:
        page = user.get(f"/console/lots/{lot}", headers={"referer": referer} if referer else {})
        return re.search(r'<p class="fil"><a href="([^"]*)">([^<]*)</a>', page.text).group(1, 2)

    assert crumb("http://testserver/console/rejets?recherche=69001&code=E01") == \
        ("/console/rejets?recherche=69001&amp;code=E01", "Rejets")
    assert crumb("http://testserver/console/evenements/69001-3?action=12") == \
        ("/console/evenements/69001-3", "Événement 69001-3")  # not the action's result again
    for elsewhere in (None, "https://ailleurs.example/console/rejets", "http://testserver/console/connexion?fin=1",
                      f"http://testserver/console/lots/{lot}"):
        assert crumb(elsewhere) == ("/console/", "Tableau de bord"), elsewhere
