"""What a support person does in the console, checked page by page over a real night: find the rejects,
understand one, resend it, close another, resend a whole filter, export the list (issue 4; brief §5)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from gateway.codes import EventType
from gateway.pipeline.run import run_batch
from gateway.store.models import audit_t, events_t, history_t
from tests.backends import on_both_backends
from tests.factories import p3_line, write_export
from tests.gateway.console.conftest import PEOPLE, listed, text, words

#: The console's own queries (dashboard, pages, chart) hold on SQLite and PostgreSQL alike (tests/backends.py).
database_url = on_both_backends()


def state(gw, key: str) -> str:
    with gw.engine.connect() as conn:
        return conn.execute(sa.select(events_t.c.state).where(events_t.c.key == key)
                            .order_by(events_t.c.version.desc()).limit(1)).scalar_one()


def history_of(gw, key: str) -> list[sa.Row]:
    with gw.engine.connect() as conn:
        return conn.execute(sa.select(history_t).join(events_t, events_t.c.id == history_t.c.event_id)
                            .where(events_t.c.key == key).order_by(history_t.c.id)).all()


def audit(gw, action: str) -> list[sa.Row]:
    with gw.engine.connect() as conn:
        return conn.execute(sa.select(audit_t).where(audit_t.c.action == action).order_by(audit_t.c.id)).all()


# --- the dashboard ------------------------------------------------------------------------------


def test_the_dashboard_shows_the_night_the_chart_and_what_to_handle_first(signed_in) -> None:
    page = text(signed_in("admin").get("/console/"))
    assert "Tableau de bord" in page and "5 événements en attente d'un traitement" in page
    priorities = page[page.index("À traiter en priorité"):page.index("Les dernières exécutions")]
    order = [priorities.index(t) for t in ("E01 — Demandeur d'emploi inconnu", "E08 — SIRET invalide", "E09 — ")]
    assert order == sorted(order)  # most events first, then by code
    assert "Corriger l'identifiant dans le dossier du jeune dans Parcours 3" in priorities  # the catalogue's hint
    night = re.search(r"<tbody>\s*<tr>(.*?)</tr>", page[page.index("Les dernières exécutions"):], re.DOTALL)[1]
    assert [int(n) for n in re.findall(r'<td class="nombre[^"]*">(\d+)</td>', night)[:5]] == [9, 4, 2, 3, 0]
    assert '<svg class="graphique"' in page and 'role="img"' in page
    assert page.count('<g class="barre">') == 30
    figures = page[page.index("Les chiffres du graphique"):]
    assert re.search(r'<td class="nombre">3</td><td class="nombre">0</td><td class="nombre">2</td>'
                     r'<td class="nombre">5</td>', figures)  # 3 refused before sending, 2 rejected by DUDE


def test_the_dashboard_says_which_envelopes_dude_has_not_received_and_when_they_go_again(signed_in, gw) -> None:
    """An envelope whose post failed (DUDE down) and that waits for the outage's end: said apart from those
    waiting for a report, with its next attempt in the console's zone, and that nobody should resend it."""
    from gateway.store.models import envelopes_t

    soon = gw.clock() + timedelta(hours=3)
    with gw.engine.begin() as conn:
        envelope_id = conn.execute(sa.select(envelopes_t.c.id).limit(1)).scalar_one()
        conn.execute(envelopes_t.update().where(envelopes_t.c.id == envelope_id).values(
            state="ENVOYE", last_error="[DUDE_UNREACHABLE] POST /lots: ConnectError", next_attempt_at=soon))
    page = words(signed_in("admin").get("/console/"))
    local = soon.astimezone(ZoneInfo(gw.settings.timezone))
    assert "1 lot pas encore remis au DUDE" in page, page
    assert f"prochain essai le {local:%d/%m à %H:%M}" in page and "ne pas les renvoyer" in page


def test_a_dashboard_of_one_mission_locale_counts_its_events_only(signed_in) -> None:
    page = text(signed_in("support_69002").get("/console/"))
    assert "2 événements en attente d'un traitement" in page
    assert "mission locale 69002" in page


# --- the rejects list ---------------------------------------------------------------------------


def test_the_rejects_list_filters_by_code_state_mission_locale_night_date_and_search(signed_in) -> None:
    user = signed_in("admin")
    assert set(listed(user.get("/console/rejets"))) == {"69001-3", "69001-4", "69002-3", "69002-4",
                                                        "?P3_00000_20261128.csv:10"}
    assert set(listed(user.get("/console/rejets?code=E01"))) == {"69001-3", "69002-3"}
    assert set(listed(user.get("/console/rejets?etat=REJETE"))) == {"69001-3", "69002-3"}
    assert set(listed(user.get("/console/rejets?ml=69002"))) == {"69002-3", "69002-4"}
    assert set(listed(user.get("/console/rejets?code=E08&ml=69001"))) == {"69001-4"}
    assert len(listed(user.get("/console/rejets?nuit=1"))) == 5  # the only night (a night that is not: below)
    assert len(listed(user.get("/console/rejets?du=2026-11-20&au=20/11/2026"))) == 5  # ISO or JJ/MM/AAAA
    assert listed(user.get("/console/rejets?du=2026-11-21")) == []
    assert listed(user.get("/console/rejets?recherche=69002-4")) == ["69002-4"]
    # the event number alone, as a counsellor reads it out: in every mission locale the user may see
    assert set(listed(user.get("/console/rejets?recherche=4"))) == {"69001-4", "69002-4"}
    assert listed(signed_in("support_69001").get("/console/rejets?recherche=4")) == ["69001-4"]
    assert set(listed(user.get(f"/console/rejets?recherche={PEOPLE['69002'][0].lower()}"))) == {"69002-4"}
    accepted_too = user.get("/console/rejets?etat=REJETE&etat=ACCEPTE")  # ACCEPTE is not a choice of this list
    assert set(listed(accepted_too)) == {"69001-3", "69002-3"}


def test_the_beginning_of_a_key_finds_the_events_it_begins(signed_in, gw, tmp_path) -> None:
    """A counsellor typed ``69001-1001`` for ``69001-100104`` and found nothing: only a whole key was found."""
    from tests.gateway.api.conftest import person

    lines = [p3_line(EventType.MER, id_evenement=n, siret="73282932000075", **person("69001"))
             for n in ("1001", "100104")]  # both invalid (E08), so both listed by default
    run_batch(gw, [write_export(tmp_path / "P3_69001_20261129.csv", lines)])
    user = signed_in("admin")
    assert set(listed(user.get("/console/rejets?recherche=69001-1001"))) == {"69001-1001", "69001-100104"}
    assert listed(user.get("/console/rejets?recherche=69001-10010")) == ["69001-100104"]
    assert listed(user.get("/console/rejets?recherche=69001-100104")) == ["69001-100104"]  # a whole key still
    assert set(listed(user.get("/console/rejets?recherche=69002-"))) == {"69002-3", "69002-4"}
    assert listed(user.get("/console/rejets?recherche=%3FP3_00000")) == ["?P3_00000_20261128.csv:10"]
    for wildcard in ("69001-%", "69001-1_01", "69001-_"):  # typed, not LIKE's wildcards
        assert listed(user.get("/console/rejets", params={"recherche": wildcard})) == [], wildcard
    assert listed(signed_in("support_69002").get("/console/rejets?recherche=69001-")) == []  # the scope holds
    page = user.get("/console/rejets")
    assert "Le début d'une clé suffit" in text(page) and 'aria-describedby="aide-recherche"' in page.text


def test_a_mission_locale_code_alone_or_a_key_as_the_command_line_prints_it_is_found(signed_in, gw, tmp_path) -> None:
    """``69002`` alone was read as an event number and found nothing, where ``69002-`` found that mission locale's
    events; ``69002-4 v1``, pasted from ``gateway`` commands, found nothing either."""
    from tests.gateway.api.conftest import person

    run_batch(gw, [write_export(tmp_path / "P3_69001_20261129.csv", [  # an event numbered like a mission locale
        p3_line(EventType.MER, id_evenement="69002", siret="73282932000075", **person("69001"))])])
    user = signed_in("admin")
    assert set(listed(user.get("/console/rejets?recherche=69002"))) == {"69002-3", "69002-4", "69001-69002"}
    assert listed(signed_in("support_69001").get("/console/rejets?recherche=69002")) == ["69001-69002"]
    assert listed(user.get("/console/rejets?recherche=3")) != []  # other lengths: an event number, as before
    assert listed(user.get("/console/rejets?recherche=690")) == []
    pasted = user.get("/console/rejets", params={"recherche": "69002-4 v1"})
    assert listed(pasted) == ["69002-4"] and 'value="69002-4"' in pasted.text
    assert "code d'une mission locale" in text(user.get("/console/rejets"))  # the help says so


def test_unreadable_criteria_are_named_and_left_out(signed_in) -> None:
    page = signed_in("admin").get("/console/rejets?du=31/02/2026&code=E99&ml=6900&etat=ACCEPTE&etat=REJETE")
    assert page.status_code == 200
    words = text(page)
    assert "Date de début « 31/02/2026 » : date JJ/MM/AAAA attendue." in words
    assert "Code de rejet « E99 » inconnu." in words and "Mission locale « 6900 » : cinq chiffres attendus." in words
    assert "État « ACCEPTE » : cette liste montre les états Invalide, Rejeté" in words  # it was dropped in silence
    assert len(listed(page)) == 2  # the state that could be read still filters: the night's two REJETE


def test_reversed_dates_and_a_mission_locale_out_of_scope_are_said_not_an_empty_list(signed_in) -> None:
    """Both listed nothing without a word; the resend's confirmation then said the events were "déjà
    renvoyés, clos, ou acceptés"."""
    admin = signed_in("admin")
    page = admin.get("/console/rejets?du=20/11/2026&au=01/11/2026")
    assert "Dates inversées : du 20/11/2026 au 01/11/2026, aucun jour entre les deux." in text(page)
    assert len(listed(page)) == 5  # both left out, as the message says
    user = signed_in("support_69001")
    page = user.get("/console/rejets?ml=69002")
    assert "Mission locale « 69002 » : hors de vos missions locales." in text(page)
    assert set(listed(page)) == {"69001-3", "69001-4"}  # their own, the criterion left out
    confirm = text(user.get("/console/rejets/renvoi?ml=69002"))
    assert "hors de vos missions locales" in confirm and "déjà renvoyés" not in confirm


def test_an_unknown_night_is_said_and_the_other_criteria_kept(signed_in, gw, tmp_path) -> None:
    """``?nuit=99`` listed nothing, as if night 99 had had no rejects; a resend of that filter said "nothing
    to resend" instead of refusing it."""
    from tests.gateway.api.conftest import person

    user = signed_in("admin")
    page = user.get("/console/rejets?nuit=99&code=E01")
    assert page.status_code == 200
    assert "Exécution n° 99 : elle n'existe pas." in text(page)
    assert set(listed(page)) == {"69001-3", "69002-3"}  # the code still filters, the night is left out
    assert "lus par l'exécution" not in text(page) and "nuit=99" not in page.text  # nor kept in the links
    assert listed(user.get("/console/rejets?nuit=1&code=E01")) != [] and "n'existe pas" not in text(
        user.get("/console/rejets?nuit=1"))
    assert "Exécution n° 99 : elle n'existe pas" in text(user.get("/console/rejets/renvoi?nuit=99&code=E01"))
    refused = user.post("/console/actions/renvoyer-filtre", {"nuit": "99", "code": "E01"})
    assert refused.status_code == 400 and "Rien n'a été renvoyé" in text(refused)
    assert state(gw, "69001-3") == "REJETE" and audit(gw, "RESEND_FILTER") == []

    # a night that read only another mission locale's events is, for a support user, one that does not exist
    run_batch(gw, [write_export(tmp_path / "P3_69001_20261129.csv",
                                [p3_line(EventType.MER, id_evenement="7", siret="73282932000075", **person("69001"))])])
    assert listed(signed_in("support_69001").get("/console/rejets?nuit=2")) == ["69001-7"]
    other = signed_in("support_69002").get("/console/rejets?nuit=2")
    assert ("Exécution n° 2 : elle n'existe pas ou n'a lu ni envoyé aucun événement de vos missions "
            "locales.") in text(other)
    assert set(listed(other)) == {"69002-3", "69002-4"}


def test_the_rejects_list_pages_by_keyset_both_ways(signed_in, gw) -> None:
    gw.settings = gw.settings.model_copy(update={"console_page_size": 2})  # 5 rejects: pages of 2, 2, 1
    user = signed_in("admin")

    def link(page, rel: str) -> str | None:
        found = re.search(rf'href="([^"]+)" rel="{rel}"', page.text)
        return found[1].replace("&amp;", "&") if found else None

    pages = [user.get("/console/rejets?code=")]
    while link(pages[-1], "next"):
        pages.append(user.get(link(pages[-1], "next")))
    seen = [listed(p) for p in pages]
    assert [len(keys) for keys in seen] == [2, 2, 1]
    with gw.engine.connect() as conn:
        newest_first = list(conn.execute(sa.select(events_t.c.key).where(events_t.c.state.in_(["REJETE", "INVALIDE"]))
                                         .order_by(events_t.c.id.desc())).scalars())
    assert [key for keys in seen for key in keys] == newest_first
    assert link(pages[0], "prev") is None
    assert listed(user.get(link(pages[2], "prev"))) == seen[1]
    assert listed(user.get(link(pages[1], "prev"))) == seen[0]
    # where each page stands in the list, going forward and back (the keyset alone did not say)
    assert [re.search(r"Événements? ([\d–]+ sur \d+)", words(p))[1] for p in pages] == ["1–2 sur 5", "3–4 sur 5",
                                                                                         "5 sur 5"]
    assert "Événements 3–4 sur 5" in words(user.get(link(pages[2], "prev")))


def test_the_export_is_a_reject_report_excel_fr_opens(signed_in) -> None:
    answer = signed_in("support_69001").get("/console/rejets.csv")
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="rejets-69001-\d{8}\.csv"', answer.headers["content-disposition"])
    raw = answer.content
    assert raw.startswith("\ufeff".encode()) and b"\r\n" in raw
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""), delimiter=";"))
    header, lines = rows[0], {r[1]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert header[:3] == ["Mission locale", "Clé de l'événement", "N° de l'événement"]
    assert set(lines) == {"69001-3", "69001-4"}
    e01 = lines["69001-3"]
    assert e01["Code"] == "E01" and e01["Libellé du rejet"] == "Demandeur d'emploi inconnu"
    assert e01["Date de l'événement"] == "20/11/2026" and e01["État"] == "Rejeté par le DUDE"
    assert "Corriger l'identifiant" in e01["Ce qu'il faut faire"]
    assert e01["Champs Parcours 3 à vérifier"] == "Identifiant France Travail (identifiant_pe)"
    assert e01["Fichier source"] == "P3_00000_20261128.csv" and e01["Ligne"].isdigit()
    assert lines["69001-4"]["Code"] == "E08" and "SIRET" in lines["69001-4"]["Champs Parcours 3 à vérifier"]
    assert "LEFEVRE" not in raw.decode("utf-8-sig")  # no names in a file that leaves the console
    one_code = signed_in("admin").get("/console/rejets.csv?code=E08&ml=69002")
    assert 'filename="rejets-69002-E08-' in one_code.headers["content-disposition"]
    assert len(one_code.content.decode("utf-8-sig").splitlines()) == 2


# --- one event ------------------------------------------------------------------------------------


def test_a_rejected_events_page_explains_it_and_marks_the_element_sent(signed_in) -> None:
    answer = signed_in("support_69001").get("/console/evenements/69001-3")
    page = text(answer)
    assert "E01" in page and "Demandeur d'emploi inconnu" in page
    assert "Message du DUDE :" in page and "inconnu du fichier du DUDE" in page
    assert "Corriger l'identifiant dans le dossier du jeune dans Parcours 3 : la version corrigée part" in page
    assert "Dans Parcours 3, vérifier : Identifiant France Travail identifiant_pe" in words(answer)
    fields = answer.text[answer.text.index("Les champs, tels que Parcours 3"):]
    assert re.search(r'<tr class="a-corriger">\s*<th scope="row">Identifiant France Travail', fields)
    marked = re.findall(r'<mark class="en-cause">(.*?)</mark>', answer.text)
    assert len(marked) == 1 and "IdentifiantDE" in marked[0] and "9999999Z" in marked[0]
    xml = answer.text[answer.text.index('<pre class="xml"'):answer.text.index("</pre>")]
    assert "&lt;Evenement" in xml and 'urn:fr:spe:dude:echanges:v1' in xml and "&lt;Entretien" in xml
    assert "<Evenement" not in xml  # escaped, never markup
    timeline = page[page.index("Historique"):]
    assert [s for s in ("Reçu", "En attente", "Envoyé", "Transmis", "Rejeté") if s in timeline] == \
        ["Reçu", "En attente", "Envoyé", "Transmis", "Rejeté"]
    assert 'action="/console/actions/renvoyer"' in answer.text and 'action="/console/actions/clore"' in answer.text


def test_the_history_says_in_french_how_the_report_came_back(signed_in) -> None:
    """It said "compte rendu du lot … (polling)": the pipeline's word, kept in the store, shown as such."""
    page = text(signed_in("support_69001").get("/console/evenements/69001-3"))
    timeline = page[page.index("Historique"):]
    assert re.search(r"compte rendu du lot [0-9a-f-]{36} \(demandé au DUDE\) : ", timeline), timeline
    assert "polling" not in page and "callback" not in page


def test_an_invalid_events_page_says_it_was_never_sent(signed_in) -> None:
    answer = signed_in("admin").get("/console/evenements/69002-4")
    page = text(answer)
    assert "E08" in page and "SIRET invalide" in page and "Message du contrôle avant envoi" in page
    assert "Cet événement n'a jamais été envoyé au DUDE : il a été arrêté par le contrôle avant envoi." in page
    assert re.search(r'<tr class="a-corriger">\s*<th scope="row">SIRET de l&#39;employeur', answer.text)
    assert "<caption class=\"visuellement-cache\">Les champs de l'événement, ceux à vérifier marqués" in answer.text


def test_console_words_name_fields_people_and_runs_one_way(signed_in) -> None:
    """Pre-flight's messages named the export's columns ("siret « … » invalide", "Champ obligatoire absent :
    date_evenement"), histories named people "console:…", and the list said both "Nuit (exécution)" and
    "Exécution N°", "Identifiant FT" and "identifiant France Travail"."""
    admin = signed_in("admin")
    event = words(admin.get("/console/evenements/69002-4"))
    assert "Message du contrôle avant envoi : SIRET de l'employeur « 73282932000075 » invalide" in event
    listing = admin.get("/console/rejets")
    assert "SIRET de l'employeur « 73282932000075 » invalide" in text(listing)
    assert "siret « " not in text(listing) and "Champ mal formé : code de la mission locale" in text(listing)
    assert "Identifiant France Travail" in text(listing) and "Identifiant FT" not in text(listing)
    assert '<label for="nuit">Exécution</label>' in listing.text and "Nuit" not in words(listing)
    assert "Les dernières exécutions" in text(admin.get("/console/"))


def test_an_unreadable_line_has_its_page_for_admin(signed_in) -> None:
    answer = signed_in("admin").get("/console/evenements/%3FP3_00000_20261128.csv%3A10")
    assert answer.status_code == 200 and "Événement ?P3_00000_20261128.csv:10" in text(answer)


def test_resend_one_event_is_done_once_and_said_so(signed_in, gw) -> None:
    user = signed_in("support_69001")
    first = user.post("/console/actions/renvoyer", {"cle": "69001-3"})
    assert first.status_code == 303 and re.fullmatch(r"/console/evenements/69001-3\?action=\d+",
                                                      first.headers["location"])
    assert "Événement remis en attente d'envoi" in text(user.get(first.headers["location"]))
    second = user.post("/console/actions/renvoyer", {"cle": "69001-3"})  # the button pressed twice
    assert "Déjà renvoyé : l'événement est « En attente d'envoi »" in text(user.get(second.headers["location"]))
    assert state(gw, "69001-3") == "EN_ATTENTE"
    resends = [h for h in history_of(gw, "69001-3") if h.actor == "console:support_69001"]
    assert len(resends) == 1 and resends[0].code == "E01" and "remplace le rejet E01" in resends[0].cause
    assert [(a.actor, a.target, a.count) for a in audit(gw, "RESEND")] == \
        [("console:support_69001", "69001-3", 1), ("console:support_69001", "69001-3", 0)]
    page = text(user.get("/console/evenements/69001-3"))
    assert "Dernier rejet de cette version" in page and "renvoyé par support_69001 (console)" in page
    assert "console:" not in page and "par support_69001 (console)" in page  # the cause and who acted, alike
    assert "Que faire de cet événement" not in page  # nothing left to do until the next night answers


def test_resending_an_event_still_invalid_says_what_is_wrong(signed_in, gw) -> None:
    user = signed_in("support_69001")
    answer = user.post("/console/actions/renvoyer", {"cle": "69001-4"})
    page = text(user.get(answer.headers["location"]))
    assert "Renvoi refusé : l'événement ne passe toujours pas le contrôle avant envoi" in page
    assert "69001-4 : SIRET de l'employeur « 73282932000075 » invalide" in page
    assert state(gw, "69001-4") == "INVALIDE"


def test_close_needs_a_comment_then_closes_once(signed_in, gw) -> None:
    user = signed_in("support_69002")
    empty = user.post("/console/actions/clore", {"cle": "69002-3", "commentaire": "   "})
    assert empty.headers["location"] == "/console/evenements/69002-3?erreur=commentaire#clore"
    assert "Le commentaire est obligatoire pour clore un événement." in text(user.get(empty.headers["location"]))
    assert state(gw, "69002-3") == "REJETE"
    done = user.post("/console/actions/clore", {"cle": "69002-3", "commentaire": "Jeune suivi par Pôle emploi <Lyon>"})
    page = text(user.get(done.headers["location"]))
    assert "Événement clos, avec le commentaire : « Jeune suivi par Pôle emploi <Lyon> »." in page
    again = user.post("/console/actions/clore", {"cle": "69002-3", "commentaire": "encore"})
    assert "Déjà clos : rien de plus n'a été fait." in text(user.get(again.headers["location"]))
    assert state(gw, "69002-3") == "CLOS"
    closes = [h for h in history_of(gw, "69002-3") if h.state == "CLOS"]
    assert len(closes) == 1 and closes[0].cause == "clos par console:support_69002 : Jeune suivi par Pôle emploi <Lyon>"
    assert [(a.comment, a.count) for a in audit(gw, "CLOSE")] == [("Jeune suivi par Pôle emploi <Lyon>", 1),
                                                                   ("encore", 0)]
    closed = user.get("/console/evenements/69002-3")
    assert "&lt;Lyon&gt;" in closed.text  # shown escaped
    # Closed, it is no longer "rejected": its last reject is shown as past, DUDE's message named as DUDE's.
    said = words(closed)
    assert "Pourquoi cet événement est rejeté" not in said and "Dernier rejet de cette version" in said
    assert "Message du DUDE :" in said


def test_resend_by_filter_confirms_the_count_then_resends_once(signed_in, gw) -> None:
    user = signed_in("admin")
    listing = user.get("/console/rejets?code=E01")
    assert 'href="/console/rejets/renvoi?code=E01"' in listing.text
    confirm = user.get("/console/rejets/renvoi?code=E01")
    assert "2 événements seront remis en attente d'envoi." in words(confirm)
    assert "code E01 (Demandeur d'emploi inconnu)" in words(confirm)
    assert '<input type="hidden" name="code" value="E01">' in confirm.text
    first = user.post("/console/actions/renvoyer-filtre", {"code": "E01"})
    assert first.headers["location"].startswith("/console/rejets?code=E01&action=")
    assert "2 événements remis en attente d'envoi sur 2 trouvés." in text(user.get(first.headers["location"]))
    second = user.post("/console/actions/renvoyer-filtre", {"code": "E01"})
    assert "Aucun événement à renvoyer" in text(user.get(second.headers["location"]))
    assert state(gw, "69001-3") == state(gw, "69002-3") == "EN_ATTENTE"
    rows = audit(gw, "RESEND_FILTER")
    assert [(r.count, json.loads(r.filter)["reject_code"]) for r in rows] == [(2, "E01"), (0, "E01")]
    assert "Aucun événement de ce filtre n'est à renvoyer" in text(user.get("/console/rejets/renvoi?code=E01"))


def test_a_resend_by_filter_does_not_promise_the_lines_that_could_not_be_read(signed_in, gw, tmp_path) -> None:
    """A line read with no field kept is never resent (only a corrected export replaces it): the list offered
    "Renvoyer ces événements (1)…" and the confirmation "1 événement sera remis en attente", for none."""
    from tests.gateway.api.test_support_unreadable_and_long_comments import unreadable_line

    key = unreadable_line(gw, tmp_path)
    user = signed_in("admin")
    only = "recherche=%3FP3_59916"  # the beginning of its key
    assert listed(user.get(f"/console/rejets?{only}")) == [key]
    assert "Renvoyer ces événements" not in words(user.get(f"/console/rejets?{only}"))
    confirm = words(user.get(f"/console/rejets/renvoi?{only}"))
    assert "Aucun événement de ce filtre n'est à renvoyer" in confirm and "lignes illisibles de l'export" in confirm
    both = words(user.get("/console/rejets/renvoi?etat=INVALIDE"))  # with the night's three readable ones
    assert "3 événements à renvoyer : 3 invalides seront contrôlés de nouveau avant envoi" in both


def test_a_resend_by_filter_with_an_unreadable_criterion_resends_nothing(signed_in, gw) -> None:
    user = signed_in("admin")
    answer = user.post("/console/actions/renvoyer-filtre", {"code": "E01", "du": "hier"})
    assert answer.status_code == 400 and "Rien n'a été renvoyé" in text(answer)
    assert state(gw, "69001-3") == "REJETE" and audit(gw, "RESEND_FILTER") == []
    assert "corrigez le filtre avant de renvoyer" in text(user.get("/console/rejets/renvoi?code=E01&du=hier"))


def test_other_versions_are_linked_and_an_old_one_cannot_be_acted_on(signed_in, gw, tmp_path) -> None:
    from tests.gateway.api.conftest import person

    fixed = write_export(tmp_path / "P3_69001_20261129.csv",
                         [p3_line(EventType.ENT, id_evenement="3", modalite="TEL", **person("69001"))])
    run_batch(gw, [fixed])
    user = signed_in("support_69001")
    latest = user.get("/console/evenements/69001-3")
    assert "Événement 69001-3 version 2" in words(latest)
    assert 'href="/console/evenements/69001-3?version=1"' in latest.text
    old = text(user.get("/console/evenements/69001-3?version=1"))
    assert "Cette version a été remplacée" in old and "Que faire de cet événement" not in old
    assert "Corrigé" in old and "E01" in old
    assert user.get("/console/evenements/69001-3?version=7").status_code == 404


def test_pages_carry_the_consoles_security_headers(signed_in) -> None:
    answer = signed_in("admin").get("/console/rejets")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store" and answer.headers["x-frame-options"] == "DENY"
    assert 'style="' not in answer.text and "<script>" not in answer.text  # nothing inline for the CSP to refuse


def test_the_chart_counts_each_nights_rejects_on_its_own_night(signed_in, gw, tmp_path) -> None:
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from tests.gateway.api.conftest import person

    real = gw.clock
    # "Today" is the day of the fixture's night, and the earlier nights are dated from it on a clock that
    # still runs (the run waits on it): midnight in Paris between the fixture and this test moves nothing.
    with gw.engine.connect() as conn:
        fixture_night = conn.execute(sa.select(sa.func.max(history_t.c.at))).scalar_one()
    today = fixture_night.astimezone(ZoneInfo("Europe/Paris")).date()
    lag = real() - fixture_night
    for days_ago, ids in ((3, ("30", "31", "32")), (1, ("40",))):  # earlier nights: unknown jobseekers (E01)
        gw.clock = lambda days_ago=days_ago: real() - lag - timedelta(days=days_ago)
        lines = [p3_line(EventType.ENT, id_evenement=i, **{**person("69001"), "identifiant_pe": "9999999Z"})
                 for i in ids]
        run_batch(gw, [write_export(tmp_path / f"P3_69001_{days_ago}.csv", lines)])
    gw.clock = real
    page = signed_in("support_69001").get("/console/")
    figures = page.text[page.text.index("Les chiffres du graphique"):]
    rows = re.findall(r'<tr><th scope="row">(\d\d/\d\d/\d{4})</th>((?:<td class="nombre">\d+</td>)+)</tr>', figures)
    counts = {day: [int(n) for n in re.findall(r"\d+", cells)] for day, cells in rows}
    assert counts == {(today - timedelta(days=3)).strftime("%d/%m/%Y"): [0, 0, 3, 3],
                      (today - timedelta(days=1)).strftime("%d/%m/%Y"): [0, 0, 1, 1],
                      today.strftime("%d/%m/%Y"): [1, 0, 1, 2]}  # the fixture's night: one E08, one E01
    assert page.text.count('<rect class="serie-dude"') == 3

    # A person's resend of an invalid event that fails pre-flight again is not a reject of a night: the chart
    # counted each press of "Renvoyer" as one more "refusé avant envoi".
    user = signed_in("support_69001")
    for _ in range(2):
        assert user.post("/console/actions/renvoyer", {"cle": "69001-4"}).status_code == 303
    assert state(gw, "69001-4") == "INVALIDE"
    again = user.get("/console/")
    figures = again.text[again.text.index("Les chiffres du graphique"):]
    rows = re.findall(r'<tr><th scope="row">(\d\d/\d\d/\d{4})</th>((?:<td class="nombre">\d+</td>)+)</tr>', figures)
    assert {day: [int(n) for n in re.findall(r"\d+", cells)] for day, cells in rows} == counts


def test_an_older_run_chosen_from_a_link_shows_in_the_dropdown(signed_in, gw) -> None:
    """The dropdown lists the last 30 runs; a run older than that, opened from a link (``?nuit=1``), filtered the
    list while the dropdown said "toutes", and the next search from the form dropped it."""
    from gateway.store.models import runs_t, utcnow

    with gw.engine.begin() as conn:
        conn.execute(runs_t.insert(), [{"trigger": "cli", "dry_run": False, "inputs": "[]", "started_at": utcnow(),
                                        "finished_at": utcnow(), "outcome": "TERMINE", "counts": "{}"}] * 30)
    page = signed_in("admin").get("/console/rejets?nuit=1")
    assert len(listed(page)) == 5
    assert re.search(r'<option value="1" selected>N° 1 — ', page.text), "run 1 is not shown as chosen"
    assert re.search(r'<option value="31">N° 31 — ', page.text)


def test_a_night_dude_acknowledged_later_says_so_beside_its_outcome(signed_in, gw) -> None:
    """A run that ended ``TERMINE_SANS_ACCUSE`` (DUDE down) keeps that outcome; once the scheduler got its
    envelopes through, the dashboard said "lots sans accusé" beside counts all settled."""
    from gateway.store.models import envelopes_t, runs_t

    with gw.engine.begin() as conn:
        conn.execute(runs_t.update().where(runs_t.c.id == 1).values(outcome="TERMINE_SANS_ACCUSE"))
    admin = signed_in("admin")

    def outcome_cell() -> str:
        page = text(admin.get("/console/"))
        return re.search(r"<tbody>\s*<tr>.*?</td>\s*<td>(.*?)</td>", page[page.index("Les dernières exécutions"):],
                         re.DOTALL)[1]

    assert outcome_cell().startswith("Terminée, lots sans accusé du DUDE") and "envoyés depuis" in outcome_cell()
    with gw.engine.begin() as conn:  # one of its envelopes still waiting for DUDE: nothing more to say
        envelope = conn.execute(sa.select(envelopes_t.c.id).where(envelopes_t.c.run_id == 1).limit(1)).scalar_one()
        conn.execute(envelopes_t.update().where(envelopes_t.c.id == envelope).values(state="ENVOYE"))
    assert "envoyés depuis" not in outcome_cell()
