"""Two things support staff must be able to trust (issue 4 follow-ups): a resend never writes a wrong
reason over the real one of a line that could not be read, and a close comment is never cut silently."""

from __future__ import annotations

from urllib.parse import quote


from gateway.pipeline.run import run_batch
from tests.backends import on_both_backends
from tests.factories import P3_COLUMNS, p3_line, write_export
from tests.gateway.api.conftest import bearer, person
from tests.gateway.api.test_support import event, history

database_url = on_both_backends()


def unreadable_line(gw, tmp_path) -> str:
    """An export whose second line has one field too many (an unprotected ``;``): stored INVALIDE E09,
    under a key made from the file and line, with no field kept. Returns that key."""
    export = write_export(tmp_path / "P3_59916_20261129.csv", [p3_line(id_evenement="56", **person("69001"))])
    line = p3_line(id_evenement="57", **person("69001"))
    with open(export, "a", encoding="cp1252", newline="") as out:
        out.write(";".join([line.get(c, "") for c in P3_COLUMNS] + ["de trop"]) + "\r\n")
    run_batch(gw, [export])
    key = "?P3_59916_20261129.csv:3"
    stored = event(gw, key)
    assert (stored.state, stored.reject_code, stored.payload) == ("INVALIDE", "E09", "{}")
    assert stored.reject_message.startswith(f"Nombre de champs incorrect : {len(P3_COLUMNS) + 1} au lieu de "
                                            f"{len(P3_COLUMNS)}")
    return key


def test_resending_a_line_that_could_not_be_read_is_refused_and_keeps_its_reason(client, gw, tokens, night,
                                                                                  tmp_path) -> None:
    key = unreadable_line(gw, tmp_path)
    before, told = event(gw, key), history(gw, key)
    auth = bearer(tokens.admin)

    answer = client.post(f"/api/v1/events/{quote(key, safe='')}/resend", headers=auth).json()
    assert (answer["resent"], answer["state"]) == (0, "INVALIDE")
    assert "aucun champ n'a été conservé" in answer["reason"] and "l'exporter de nouveau" in answer["reason"]
    [still] = answer["still_invalid"]
    assert still["reject"]["code"] == "E09" and before.reject_message in still["reject"]["message"]

    after = event(gw, key)
    assert (after.state, after.reject_code, after.reject_message, after.updated_at) == (
        "INVALIDE", "E09", before.reject_message, before.updated_at)
    assert history(gw, key) == told
    detail = client.get(f"/api/v1/events/{quote(key, safe='')}", headers=auth).json()
    assert detail["reject"]["message"] == before.reject_message


def test_a_resend_by_filter_skips_lines_that_could_not_be_read_and_checks_the_others(client, gw, tokens, night,
                                                                                      tmp_path) -> None:
    key = unreadable_line(gw, tmp_path)
    before, told = event(gw, key), history(gw, key)

    answer = client.post("/api/v1/events/resend", json={"states": ["INVALIDE"]}, headers=bearer(tokens.admin)).json()
    assert answer["resent"] == 0
    still = {s["key"]: s["reject"] for s in answer["still_invalid"]}
    assert still[key]["code"] == "E09" and before.reject_message in still[key]["message"]
    assert "id_evenement" not in still[key]["message"]
    assert (still["69001-4"]["code"], still["69001-4"]["field"]) == ("E08", "siret")  # still checked again
    after = event(gw, key)
    assert (after.reject_code, after.reject_message) == ("E09", before.reject_message)
    assert history(gw, key) == told


def comment_of(length: int) -> str:
    words = "Jeune parti poursuivre une formation qualifiante dans une autre région, suivi repris par la " \
            "mission locale d'accueil ; dossier transmis au conseiller référent. "
    return (words * (length // len(words) + 1))[:length - 4].rstrip() + " FIN"


def test_a_long_close_comment_is_in_the_history_whole(client, gw, tokens, night) -> None:
    auth = bearer(tokens.support_both)
    comment = comment_of(2000)  # the API's limit
    closed = client.post("/api/v1/events/69002-3/close", json={"comment": comment}, headers=auth).json()
    assert (closed["closed"], closed["state"]) == (1, "CLOS")

    detail = client.get("/api/v1/events/69002-3", headers=auth).json()
    [close] = [h for h in detail["history"] if h["state"] == "CLOS"]
    assert close["actor"] == "api:support_both" and close["code"] == "E01"
    assert close["cause"] == f"clos par api:support_both : {comment}"  # it stopped at 255 characters
