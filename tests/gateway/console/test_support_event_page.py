"""The event page and what support does from it, where it went wrong (issue 4 follow-ups): a line that
could not be read offers no resend and keeps its real reason everywhere; a long close comment is read
back whole on the page."""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import quote

from tests.backends import on_both_backends
from tests.gateway.api.test_support_unreadable_and_long_comments import (
    comment_of,
    event,
    unreadable_line,
)
from tests.gateway.console.conftest import text

database_url = on_both_backends()

CLOSE_CAUSES = re.compile(r'<span class="etat etat-clos">.*?</p>\s*<p>(.*?)</p>', re.DOTALL)


def test_a_line_that_could_not_be_read_offers_no_resend_and_keeps_its_reason(signed_in, gw, tmp_path) -> None:
    key = unreadable_line(gw, tmp_path)
    page_url = f"/console/evenements/{quote(key, safe='')}"
    user = signed_in("admin")
    reason = event(gw, key).reject_message  # "Nombre de champs incorrect : … au lieu de …"
    page = user.get(page_url)
    assert reason in text(page)
    assert "Renvoyer l'événement" not in page.text and 'action="/console/actions/renvoyer"' not in page.text
    assert "Impossible depuis la passerelle" in text(page) and "Clore l'événement" in page.text
    assert "Opération (jamais envoyée)" in text(page)  # it said "Opération envoyée : Création"

    answer = user.post("/console/actions/renvoyer", {"cle": key})  # a page opened before, say
    said = text(user.get(answer.headers["location"]))
    assert "Renvoi refusé" in said and "aucun champ n'a été conservé" in said and "l'exporter de nouveau" in said

    again = text(user.get(page_url))
    box = again[again.index("Pourquoi cet événement est rejeté"):again.index("Que faire de cet événement")]
    assert reason in box and "id_evenement" not in box
    assert "renvoi demandé" not in again[again.index("Historique"):]
    assert reason in text(user.get("/console/rejets?code=E09"))
    export = user.get("/console/rejets.csv?code=E09").content.decode("utf-8-sig")
    rows = {r["Clé de l'événement"]: r for r in csv.DictReader(io.StringIO(export, newline=""), delimiter=";")}
    assert rows[key]["Message"] == reason


def test_a_long_close_comment_is_read_back_whole_on_the_event_page(signed_in) -> None:
    user = signed_in("support_69002")
    comment = comment_of(1000)  # the form's limit
    done = user.post("/console/actions/clore", {"cle": "69002-3", "commentaire": comment})
    assert done.status_code == 303

    page = text(user.get("/console/evenements/69002-3"))
    causes = CLOSE_CAUSES.findall(page[page.index("Historique"):])
    assert causes == [f"clos par support_69002 (console) : {comment}"]  # it stopped at 255 characters
