"""The console's pure parts: the SVG chart, the XML as sent with its marks, the fields a reject points at,
the filter read from an address, the priorities of the dashboard, and the CSV's cells (issue 4)."""

from __future__ import annotations

import re
from datetime import date, timedelta

from lxml import etree

from gateway.console.attention import priorities
from gateway.console.chart import NightCounts, nice_max, rejects_chart
from gateway.console.csvexport import safe_cell
from gateway.console.filters import DEFAULT_STATES, RejectsQuery
from gateway.console.labels import actor_label, cause_label, fields_in_cause, reject_message, value_label
from gateway.console.queries import CodeCount
from gateway.console.xmlview import elements_for, render

NS = "urn:fr:spe:dude:echanges:v1"


def test_the_chart_stacks_each_nights_three_series_on_a_round_scale() -> None:
    first = date(2026, 10, 31)
    nights = [NightCounts(first + timedelta(days=i)) for i in range(30)]
    nights[-1] = NightCounts(nights[-1].day, preflight=10, envelope=5, business=25)
    nights[-2] = NightCounts(nights[-2].day, business=3)
    svg = str(rejects_chart(nights))
    etree.fromstring(svg.encode())  # well-formed SVG
    assert svg.count('<g class="barre">') == 30 and 'role="img"' in svg
    heights = {css: float(h) for css, h in re.findall(r'<rect class="([\w-]+)" x="[\d.]+" y="[\d.]+" width="[\d.]+" '
                                                      r'height="([\d.]+)"', svg)[-3:]}
    assert heights["serie-dude"] == 5 * heights["serie-lot"] and \
        heights["serie-avant-envoi"] == 2 * heights["serie-lot"]
    assert ("29/11/2026 : 40 rejets (10 refusés avant envoi, 5 rejetés avec leur lot (L01–L07), "
            "25 rejetés par le DUDE (E01–E10))") in svg  # codes and DUDE as written elsewhere, not lowercased
    assert re.findall(r'text-anchor="end">([\d\u202f]+)</text>', svg) == ["0", "10", "20", "30", "40", "50"]
    assert re.findall(r'text-anchor="middle">(\d\d/\d\d)<', svg) == ["04/11", "09/11", "14/11", "19/11", "24/11",
                                                                     "29/11"]  # every fifth night, from the last
    assert [nice_max(v) for v in (0, 1, 3, 7, 40, 150, 2001)] == [1, 1, 5, 10, 50, 200, 5000]


def test_an_empty_month_draws_an_empty_chart() -> None:
    svg = str(rejects_chart([NightCounts(date(2026, 11, 1) + timedelta(days=i)) for i in range(30)]))
    assert "<rect" not in svg and "0 rejet en 30 nuits" in svg


def evenement(**texts: str) -> etree._Element:
    xml = (f'<Evenement xmlns="{NS}" id="69001-1" version="2" operation="M"><Jeune>'
           f'<IdentifiantDE>1234567A</IdentifiantDE><Nom>{texts.get("nom", "LEFEVRE")}</Nom></Jeune>'
           f"<MiseEnRelation><NumeroOffre>123456A</NumeroOffre><Siret>73282932000075</Siret></MiseEnRelation>"
           f"</Evenement>")
    return etree.fromstring(xml.encode())


def test_the_xml_is_indented_escaped_and_marked_where_the_reject_points() -> None:
    lines = render(evenement(nom="D&amp;ANGELO &lt;script&gt;"), elements_for(["siret"]))
    html = [str(line.html) for line in lines]
    assert len(lines) == 10 and html[0].startswith('<span class="xml-tag">&lt;Evenement</span>')
    assert f'"{NS}"' in html[0] and 'operation</span>=<span class="xml-val">"M"' in html[0]
    assert html[3].startswith("    ") and "D&amp;ANGELO &lt;script&gt;" in html[3] and "<script>" not in "".join(html)
    assert [i for i, line in enumerate(lines) if line.marked] == [7]
    assert "Siret" in html[7] and "73282932000075" in html[7]
    assert [i for i, line in enumerate(render(evenement(), elements_for(["operation"]))) if line.marked] == [0]


def test_the_fields_in_cause_come_from_the_code_and_its_message() -> None:
    assert fields_in_cause("E01", "Identifiant demandeur d'emploi inconnu du fichier du DUDE.") == ["identifiant_pe"]
    assert fields_in_cause("E03", "Identité différente du dossier du DUDE : prénom.") == ["prenom"]
    assert fields_in_cause("E03", "Identité différente du dossier du DUDE : nom, date de naissance.") == \
        ["nom", "date_naissance"]
    assert fields_in_cause("E09", "Champ obligatoire absent pour un événement ENT (Entretien) : modalite.") == \
        ["modalite"]
    assert fields_in_cause("E07", "Le jeune a 27 ans à la date de l'événement") == ["date_naissance", "date_evenement"]
    assert fields_in_cause("E10", None) == ["date_debut", "date_fin"]
    assert fields_in_cause("L04", "Lot non conforme") == [] and fields_in_cause(None, None) == []
    assert fields_in_cause("E09", "Nombre de champs incorrect : 16 au lieu de 26") == []


def test_values_read_as_parcours_3_shows_them() -> None:
    assert value_label("date_naissance", "2004-05-06", {}) == "06/05/2004"
    assert value_label("modalite", "TEL", {}) == "TEL — Entretien téléphonique"
    assert value_label("motif", "ABS", {"type_evenement": "MAN"}) == "ABS — Absence à un entretien"
    assert value_label("motif", "ABA", {"type_evenement": "SOR"}) == "ABA — Abandon"
    assert value_label("premier_entretien", True, {}) == "Oui" and value_label("premier_entretien", "N", {}) == "Non"
    assert value_label("saisi_le", "2026-11-28T15:02:11+01:00", {}) == "28/11/2026 15:02:11"
    assert value_label("modalite", "XYZ", {}) == "XYZ"


def test_a_filter_reads_back_from_its_own_address() -> None:
    from urllib.parse import parse_qs

    from starlette.datastructures import QueryParams

    query = RejectsQuery.from_params(QueryParams("ml=69001&code=e01&etat=REJETE&etat=CLOS&nuit=3&du=01/11/2026"
                                                 "&au=2026-11-30&recherche=69001-12"))
    assert query.errors == () and query.reject_code == "E01" and query.states == ("REJETE", "CLOS")
    assert query.date_from == date(2026, 11, 1) and query.run_id == 3
    assert RejectsQuery.from_params(QueryParams(query.query()[1:])) == query
    assert parse_qs(query.query(apres=40)[1:])["apres"] == ["40"]
    assert RejectsQuery.from_params(QueryParams("")).states == DEFAULT_STATES
    flt = query.event_filter(frozenset({"69001"}), identifiant_pe_pattern=r"[0-9]{7}[A-Z]")
    assert flt.key_prefix == "69001-12" and flt.key is None  # a key or its beginning (test_pages: what it finds)
    assert flt.identifiant_pe is None and flt.code_ml_in == {"69001"}
    by_id = RejectsQuery(search="1234567a").event_filter(None, identifiant_pe_pattern=r"[0-9]{7}[A-Z]")
    assert by_id.identifiant_pe == "1234567A" and by_id.key is None


def test_priorities_put_envelope_rejects_and_missing_reports_before_business_codes() -> None:
    found = priorities([CodeCount("E01", "REJETE", 40), CodeCount("E08", "INVALIDE", 3), CodeCount("E08", "REJETE", 2),
                        CodeCount("L04", "REJETE", 500), CodeCount(None, "SANS_REPONSE", 12),
                        CodeCount("E03", "REJETE", 7), CodeCount("E10", "INVALIDE", 1)], {"RECU": 2, "TRAITE": 9})
    assert [(p.level, p.title.split(" ")[0], p.count) for p in found] == [
        ("haute", "L04", 500), ("haute", "Événements", 12), ("moyenne", "E01", 40), ("moyenne", "E03", 7),
        ("moyenne", "E08", 5), ("info", "2", 2)]
    assert found[0].params == {"code": "L04"} and found[1].params == {"etat": "SANS_REPONSE"}
    assert priorities([], {}) == []


def test_envelopes_dude_has_not_received_are_not_said_to_wait_for_their_report() -> None:
    """Held by DUDE's outage, or after a failed post, an envelope was counted among those "waiting for their
    report": DUDE had not even received it, and nobody was told it goes again by itself."""
    from datetime import datetime

    from gateway.console.attention import Undelivered

    found = priorities([], {"ENVOYE": 2, "SIGNE": 1, "RECU": 4}, Undelivered(3, datetime(2026, 11, 30, 2, 15)))
    assert [(p.level, p.title, p.count) for p in found] == [
        ("info", "3 lots pas encore remis au DUDE", 3), ("info", "4 lots attendent le compte rendu du DUDE", 4)]
    assert "prochain essai le 30/11 à 02:15" in found[0].text and "ne pas les renvoyer" in found[0].text
    due = priorities([], {"ENVOYE": 1}, Undelivered(1))
    assert [p.title for p in due] == ["1 lot pas encore remis au DUDE"]
    assert "prochain essai à la prochaine tournée de la passerelle" in due[0].text
    # Sending paused: every envelope without DUDE's receipt is held by the gateway, none has a next attempt.
    paused = priorities([], {"ENVOYE": 2, "SIGNE": 1, "RECU": 4}, Undelivered(2, datetime(2026, 11, 30, 2, 15)),
                        paused=True)
    assert [(p.title, p.count) for p in paused] == [("3 lots pas encore remis au DUDE", 3),
                                                    ("4 lots attendent le compte rendu du DUDE", 4)]
    assert "dès la reprise de l'envoi" in paused[0].text and "prochain essai" not in paused[0].text


def test_envelopes_sealed_and_never_posted_are_not_said_to_wait_for_dude_s_report() -> None:
    """Sealed while sending was paused, then resumed: DUDE has never seen them, and owes no report."""
    found = priorities([], {"SIGNE": 2, "RECU": 4}, unsent=2)
    assert [(p.title, p.count) for p in found] == [("2 lots signés, pas encore envoyés au DUDE", 2),
                                                    ("4 lots attendent le compte rendu du DUDE", 4)]
    assert "exécution en cours, ou la prochaine" in found[0].text and "ne pas les renvoyer" in found[0].text
    # While paused, the held envelopes say it already: not twice.
    assert [p.title for p in priorities([], {"SIGNE": 2}, unsent=2, paused=True)] == [
        "2 lots pas encore remis au DUDE"]


def test_cells_a_spreadsheet_would_run_are_defused() -> None:
    assert [safe_cell(v) for v in ("=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx", "69001-3", None, 4)] == \
        ["'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)", "'\tx", "69001-3", "", "4"]


def test_how_a_report_came_back_is_said_in_french_and_nothing_else_is_touched() -> None:
    assert cause_label("compte rendu du lot 3f2a (polling) : Identité différente (nom)") == \
        "compte rendu du lot 3f2a (demandé au DUDE) : Identité différente (nom)"
    assert cause_label("compte rendu tardif rapproché (callback) : 4 acceptés, 2 rejetés") == \
        "compte rendu tardif rapproché (transmis par le DUDE) : 4 acceptés, 2 rejetés"
    for kept in ("clos par console:x : compte rendu (polling) reçu deux fois",
                 "accusé de réception : 3 événements reçus", "compte rendu du lot 3f2a (autre)"):
        assert cause_label(kept) == kept


def test_pre_flight_messages_name_fields_in_french_and_other_messages_are_left_as_they_came() -> None:
    assert reject_message("Champ obligatoire absent pour un événement ENT (Entretien) : modalite.", "INVALIDE") \
        == "Champ obligatoire absent pour un événement ENT (Entretien) : modalité de l'entretien."
    assert reject_message("date_fin (01/02/2026) antérieure à la date_debut (01/03/2026).", "INVALIDE") == \
        "Date de fin (01/02/2026) antérieure à la date de début (01/03/2026)."
    assert reject_message("Champ mal formé : organisme « nom motif » (attendu : 100 caractères).", "INVALIDE") == \
        "Champ mal formé : organisme de formation ou de prestation « nom motif » (attendu : 100 caractères)."
    dude = "Identité différente du dossier du DUDE : nom, prenom."
    assert reject_message(dude, "REJETE") == dude and reject_message(None, "INVALIDE") == ""


def test_people_are_named_first_and_the_tool_after() -> None:
    assert actor_label("console:sup62899") == "sup62899 (console)"
    assert actor_label("api:partenaire 1") == "partenaire 1 (API)" and actor_label(None) == "la passerelle"
    assert cause_label("clos par console:sup62899 : vu avec console:sup62899", "console:sup62899") == \
        "clos par sup62899 (console) : vu avec console:sup62899"  # the comment as it was typed


def test_a_runs_notes_say_what_its_figures_cannot_and_only_to_whom_they_belong() -> None:
    """A take-over that only resent held envelopes read as a row of zeros; a refused export's message began with
    its path on the gateway's disk; another mission locale's refused export is not a support user's business."""
    import json

    from gateway.console.runnotes import run_notes

    summary = json.dumps({"ingest": {"lines": 0}, "sending": {"reprises": 2}, "reports": {"lots": 0},
                          "file_errors": [{"file": "P3_69002_20261129.csv", "code": "P3_EMPTY", "message":
                                           "[P3_EMPTY] /srv/depot/P3_69002_20261129.csv: fichier vide."}]})
    assert run_notes(summary, None) == (
        "Aucune ligne d'export lue : exécution de rattrapage.",
        "2 lots d'exécutions précédentes repris (envoi au DUDE sous le même IdLot) ; leurs événements comptent "
        "dans la ligne de l'exécution qui les a lus.",
        "Fichier refusé : P3_69002_20261129.csv (P3_EMPTY) — fichier vide. Rien de ce fichier n'a été lu.")
    assert run_notes(summary, frozenset({"69001"})) == ()
    assert run_notes(summary, frozenset({"69002"})) == run_notes(summary, None)[-1:]
    assert run_notes("{}", None) == () and run_notes(None, None) == ()  # a run still going on
