"""Events submitted as JSON: the pre-flight rules of a Parcours 3 line, the same ingest, idempotent by key
and content, one answer per event; the NIR dropped; malformed requests are 422 naming the field."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from gateway.codes import EventType
from gateway.store.models import events_t, history_t
from tests.backends import BACKENDS
from tests.factories import json_event
from gateway.api.views import PARTNER_HINT
from tests.gateway.api.conftest import bearer

#: A day that is still in the future for the gateway however long the suite runs: this module is
#: collected (and this computed) minutes before its tests run, and a "tomorrow" taken at 23:59 in Paris
#: is today by then, which is how CI once failed. The exact boundary (tomorrow is refused, today is not) is
#: tests/gateway/test_preflight.py's, on a fixed day.
IN_TWO_DAYS = (datetime.now(ZoneInfo("Europe/Paris")).date() + timedelta(days=2)).isoformat()

#: Each pre-flight reject code, from a JSON event (brief §3, §4).
PREFLIGHT = {
    "E09-champ-absent": ({"nom": None}, "E09", "nom"),
    "E09-date-non-iso": ({"date_evenement": "20/11/2026"}, "E09", "date_evenement"),
    "E09-date-inexistante": ({"date_evenement": "2026-02-30"}, "E09", "date_evenement"),
    "E09-horodatage-heure-25": ({"saisi_le": "2026-11-20T25:00:00"}, "E09", "saisi_le"),
    "E09-horodatage-an-10000-a-paris": ({"saisi_le": "9999-12-31T23:59:59-12:00"}, "E09", "saisi_le"),
    "E09-code-inconnu": ({"modalite": "XYZ"}, "E09", "modalite"),
    "E10-fin-avant-debut": ({"type_evenement": "EFO", "formacode": "22435", "organisme": "AFPA",
                             "date_debut": "2026-11-10", "date_fin": "2026-11-01"}, "E10", "date_fin"),
    "E08-siret-luhn": ({"type_evenement": "MER", "num_offre": "123456A", "siret": "73282932000075",
                        "resultat": "ATT"}, "E08", "siret"),
    "E07-age": ({"date_naissance": "1990-01-01"}, "E07", "date_naissance"),
    "E04-date-future": ({"date_evenement": IN_TWO_DAYS}, "E04", "date_evenement"),
    "E06-modification-inconnue": ({"operation": "M", "id_evenement": "777"}, "E06", "operation"),
}


def rows(gw, key: str | None = None) -> list:
    query = sa.select(events_t).order_by(events_t.c.id)
    if key:
        query = query.where(events_t.c.key == key)
    with gw.engine.connect() as conn:
        return conn.execute(query).all()


def test_a_valid_event_is_stored_once_and_resubmitting_adds_nothing(client, gw, tokens) -> None:
    auth = bearer(tokens.partner_69001)
    event = json_event(nir="204056912345678")
    first = client.post("/api/v1/events", json=event, headers=auth)
    assert first.status_code == 201 and first.headers["location"] == "/api/v1/events/69001-1001"
    assert first.json() == {"index": 0, "outcome": "CREE", "key": "69001-1001", "version": 1,
                            "state": "EN_ATTENTE", "reject": None}
    assert client.get(first.headers["location"], headers=auth).json()["key"] == "69001-1001"
    again = client.post("/api/v1/events", json=event, headers=auth)
    assert again.status_code == 200 and "location" not in again.headers
    assert {**again.json(), "outcome": "CREE"} == first.json() and again.json()["outcome"] == "DEJA_RECU"
    [row] = rows(gw)
    assert "nir" not in json.loads(row.payload) and "204056912345678" not in row.payload
    store = b"".join(p.read_bytes() for p in gw.settings.data_dir.glob("gateway.db*"))
    assert b"204056912345678" not in store  # nowhere in the database files (brief §3: never stored)
    assert row.source_file.startswith("API:partner_69001:") and row.source_line == 1

    changed = client.post("/api/v1/events", json={**event, "modalite": "TEL"}, headers=auth)
    assert changed.status_code == 201 and changed.json()["outcome"] == "NOUVELLE_VERSION"
    assert changed.json()["version"] == 2
    assert [(r.version, r.operation, r.state) for r in rows(gw)] == [(1, "C", "EN_ATTENTE"), (2, "M", "EN_ATTENTE")]


@pytest.mark.parametrize("change, code, field", PREFLIGHT.values(), ids=PREFLIGHT.keys())
def test_each_preflight_reject_is_answered_and_stored_invalid(client, gw, tokens, change, code, field) -> None:
    event = json_event(**change)
    answer = client.post("/api/v1/events", json=event, headers=bearer(tokens.partner_69001))
    assert answer.status_code == 201
    body = answer.json()
    assert body["state"] == "INVALIDE" and body["reject"]["code"] == code and body["reject"]["field"] == field
    assert body["reject"]["label"] and body["reject"]["message"]
    # What a partner can do: not "corriger dans Parcours 3, part avec le prochain export" (an export line's).
    assert body["reject"]["hint"] == PARTNER_HINT and "Parcours 3" not in body["reject"]["hint"]
    [row] = rows(gw)
    assert (row.key, row.state, row.reject_code) == (body["key"], "INVALIDE", code)
    read = client.get(f"/api/v1/events/{body['key']}", headers=bearer(tokens.partner_69001)).json()
    assert read["reject"]["hint"] == PARTNER_HINT
    again = client.post("/api/v1/events", json=event, headers=bearer(tokens.partner_69001))
    assert again.status_code == 200 and again.json()["outcome"] == "DEJA_RECU" and len(rows(gw)) == 1


def test_a_bad_timestamp_is_told_in_iso_terms_and_refuses_only_its_event(client, gw, tokens) -> None:
    """An hour 25 is said about the value the partner sent, in ISO terms (not the Parcours 3 text it would
    have become); an instant outside the calendar in Paris time (it failed the whole request with a 500)
    refuses its event alone: the others of the request are stored."""
    events = [json_event(id_evenement="1"), json_event(id_evenement="2", saisi_le="2026-11-20T25:00:00"),
              json_event(id_evenement="3", saisi_le="0001-01-01T00:00:00+14:00"), json_event(id_evenement="4")]
    answer = client.post("/api/v1/events/bulk", json={"events": events}, headers=bearer(tokens.partner_69001))
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [(r["state"], (r["reject"] or {}).get("field")) for r in results] == [
        ("EN_ATTENTE", None), ("INVALIDE", "saisi_le"), ("INVALIDE", "saisi_le"), ("EN_ATTENTE", None)]
    assert "« 2026-11-20T25:00:00 »" in results[1]["reject"]["message"]
    assert "ISO 8601" in results[1]["reject"]["message"] and "JJ/MM" not in results[1]["reject"]["message"]
    assert "0001 et 9999" in results[2]["reject"]["message"]
    assert {r.key: r.state for r in rows(gw)} == {"69001-1": "EN_ATTENTE", "69001-2": "INVALIDE",
                                                  "69001-3": "INVALIDE", "69001-4": "EN_ATTENTE"}


def test_a_bulk_past_the_ceiling_is_refused_before_any_item_is_checked(client, tokens) -> None:
    """200,000 bad items took ~10 s of the server's CPU, and answered 600,000 errors, before the count
    was looked at: a list longer than any setting allows is refused on its length alone."""
    answer = client.post("/api/v1/events/bulk", json={"events": [{}] * 100_001}, headers=bearer(tokens.admin))
    assert answer.status_code == 422
    assert [(e["field"], e["type"]) for e in answer.json()["errors"]] == [("events", "too_long")]


def test_a_422_names_at_most_a_hundred_fields_and_counts_the_others(client, tokens) -> None:
    event = {**json_event(), **{f"champ_{i}": "x" for i in range(300)}}
    answer = client.post("/api/v1/events", json=event, headers=bearer(tokens.admin))
    problem = answer.json()
    assert answer.status_code == 422 and len(problem["errors"]) == 100
    assert {e["type"] for e in problem["errors"]} == {"extra_forbidden"}
    assert "(et 297 autre(s))" in problem["detail"]


def test_the_same_event_through_an_export_and_through_json_is_one_event(client, gw, tokens, tmp_path) -> None:
    from gateway.pipeline.run import run_batch
    from tests.factories import p3_line, write_export

    run_batch(gw, [write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(EventType.ENT)])])
    answer = client.post("/api/v1/events", json=json_event(saisi_le="2026-11-20T10:15:00"),
                         headers=bearer(tokens.partner_69001))
    assert answer.json()["outcome"] == "DEJA_RECU" and answer.json()["state"] == "ACCEPTE"


def test_bulk_answers_each_event_in_order(client, gw, tokens) -> None:
    events = [json_event(id_evenement="1"), json_event(id_evenement="2", siret="1"),  # siret is not an ENT field
              json_event(id_evenement="3", date_naissance="1990-01-01"),
              json_event(id_evenement="4", code_ml="69002"),  # another mission locale
              json_event(id_evenement="1", modalite="TEL"),  # the same key twice in one request
              json_event(EventType.PEM, id_evenement="5")]
    answer = client.post("/api/v1/events/bulk", json={"events": events}, headers=bearer(tokens.partner_69001))
    assert answer.status_code == 200
    body = answer.json()
    got = [(r["index"], r["outcome"], r["key"], r["state"], (r["reject"] or {}).get("code")) for r in body["results"]]
    assert got == [(0, "CREE", "69001-1", "EN_ATTENTE", None), (1, "CREE", "69001-2", "EN_ATTENTE", None),
                   (2, "CREE", "69001-3", "INVALIDE", "E07"), (3, "REFUSE", "69002-4", None, "FORBIDDEN"),
                   (4, "REFUSE", "69001-1", None, "CONFLICT"), (5, "CREE", "69001-5", "EN_ATTENTE", None)]
    assert body["counts"] == {"CREE": 4, "REFUSE": 2}
    refused = [r["reject"] for r in body["results"] if r["outcome"] == "REFUSE"]
    assert all(r["label"] and r["hint"] for r in refused)  # labelled like the catalogue's codes
    assert {r.key for r in rows(gw)} == {"69001-1", "69001-2", "69001-3", "69001-5"}
    with gw.engine.connect() as conn:
        causes = conn.execute(sa.select(history_t.c.cause).where(history_t.c.state == "RECU")).scalars().all()
    assert all(c.startswith(f"lu dans API:partner_69001:{body['request_id']}:") for c in causes)

    again = client.post("/api/v1/events/bulk", json={"events": events}, headers=bearer(tokens.partner_69001))
    assert again.json()["counts"] == {"DEJA_RECU": 4, "REFUSE": 2} and len(rows(gw)) == 4


def test_an_admin_submits_for_any_mission_locale(client, tokens) -> None:
    answer = client.post("/api/v1/events", json=json_event(code_ml="13055"), headers=bearer(tokens.admin))
    assert answer.status_code == 201 and answer.json()["key"] == "13055-1001"


def test_an_event_without_a_readable_key_is_a_422_naming_the_field(client, gw, tokens) -> None:
    """The key (code_ml, id_evenement) is the one thing the schema requires: without it there is no event."""
    answer = client.post("/api/v1/events", json=json_event(code_ml="690"), headers=bearer(tokens.admin))
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "code_ml"
    bulk = client.post("/api/v1/events/bulk", json={"events": [json_event(), json_event(id_evenement=None)]},
                       headers=bearer(tokens.admin))
    assert bulk.status_code == 422 and bulk.json()["errors"][0]["field"] == "events.1.id_evenement"
    assert rows(gw) == []


@pytest.mark.parametrize("body, field", [
    ({"events": [{"nom": 12}]}, "events.0.nom"),
    ({"events": [{"date_de_naissance": "2004-05-06"}]}, "events.0.date_de_naissance"),
    ({"events": []}, "events"),
    ({"evenements": []}, "events"),
    ([json_event()], "body"),
], ids=["type", "champ-inconnu", "liste-vide", "sans-events", "pas-un-objet"])
def test_a_wrong_field_is_a_422_naming_it(client, tokens, body, field) -> None:
    answer = client.post("/api/v1/events/bulk", json=body, headers=bearer(tokens.partner_69001))
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert field in {e["field"] for e in answer.json()["errors"]}


def test_invalid_json_is_a_422(client, tokens) -> None:
    answer = client.post("/api/v1/events/bulk", content=b'{"events": [', headers={
        **bearer(tokens.partner_69001), "Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "body"


def test_a_body_nested_too_deep_is_told_so_not_as_unreadable(client, gw, tokens) -> None:
    """Thousands of lists one in the other are valid JSON in valid UTF-8, past what the parser reads: the 422
    said "corps illisible : JSON en UTF-8 attendu", and a partner went checking its encoding. It says what is
    wrong now, under its own type; a body that is not UTF-8 is still told so."""
    label = {"Content-Type": "application/json"}
    deep = b'{"events": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    answer = client.post("/api/v1/events/bulk", content=deep, headers={**label, **bearer(tokens.partner_69001)})
    assert (answer.status_code, answer.json()["code"]) == (422, "VALIDATION")
    [error] = answer.json()["errors"]
    assert (error["field"], error["type"]) == ("body", "json_too_deep")
    assert "trop profondément imbriqué" in error["message"] and "UTF-8" not in error["message"]
    assert error["message"] in answer.json()["detail"]
    not_utf8 = client.post("/api/v1/events/bulk", content=b'{"events": "\xff"}',
                           headers={**label, **bearer(tokens.partner_69001)})
    assert not_utf8.json()["errors"] == [{"field": "body", "message": "corps illisible : JSON en UTF-8 attendu",
                                          "type": "json_invalid"}]
    assert client.post("/api/v1/events/bulk", content=deep, headers=label).status_code == 401  # no token: that first
    assert rows(gw) == []


def test_more_events_than_the_setting_allows_is_a_422(gw, tokens) -> None:
    from fastapi.testclient import TestClient

    from gateway.api.main import create_app

    gw.settings = gw.settings.model_copy(update={"api_max_events_per_request": 3})
    with TestClient(create_app(gw)) as small:
        events = [json_event(id_evenement=str(i)) for i in range(4)]
        answer = small.post("/api/v1/events/bulk", json={"events": events}, headers=bearer(tokens.partner_69001))
        assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "events"
        schema = small.get("/openapi.json").json()["components"]["schemas"]["EventBulkIn"]
        assert schema["properties"]["events"]["maxItems"] == 3
    assert rows(gw) == []


def test_a_body_over_the_limit_is_refused_before_it_is_read(gw, tokens) -> None:
    from fastapi.testclient import TestClient

    from gateway.api.main import create_app

    gw.settings = gw.settings.model_copy(update={"api_max_body_bytes": 2000})
    with TestClient(create_app(gw)) as small:
        def chunks():  # no Content-Length: counted as it comes (over a socket: tests/…/test_end_to_end.py)
            for _ in range(100):
                yield b" " * 100

        big = small.post("/api/v1/events/bulk", content=b"x" * 5000, headers={
            **bearer(tokens.partner_69001), "Content-Type": "application/json"})
        assert big.status_code == 413 and big.json()["code"] == "TOO_LARGE"
        assert big.headers["content-type"] == "application/problem+json"
        streamed = small.post("/api/v1/events/bulk", content=chunks(), headers={
            **bearer(tokens.partner_69001), "Content-Type": "application/json"})
        assert streamed.status_code == 413 and streamed.json()["code"] == "TOO_LARGE"
        ok = small.post("/api/v1/events", json=json_event(), headers=bearer(tokens.partner_69001))
        assert ok.status_code == 201
    assert [r.key for r in rows(gw)] == ["69001-1001"]


def test_dates_and_timestamps_are_iso(client, gw, tokens) -> None:
    event = json_event(EventType.EFO, date_debut="2026-11-02", date_fin="2027-03-31",
                       saisi_le="2026-11-20T09:15:00Z", premier_entretien=None)
    answer = client.post("/api/v1/events", json=event, headers=bearer(tokens.partner_69001))
    assert answer.json()["state"] == "EN_ATTENTE", answer.json()
    stored = json.loads(rows(gw)[0].payload)
    assert stored["date_debut"] == "2026-11-02" and stored["date_naissance"] == "2004-05-06"
    assert datetime.fromisoformat(stored["saisi_le"]) == datetime(2026, 11, 20, 9, 15, tzinfo=ZoneInfo("UTC"))
    assert date.fromisoformat(stored["date_evenement"]) == date(2026, 11, 20)


def test_an_export_lines_reject_keeps_the_hint_for_parcours_3(client, tokens, night) -> None:
    from gateway.codes import RejectCode

    read = client.get("/api/v1/events/69001-4", headers=bearer(tokens.partner_69001)).json()
    assert read["reject"]["code"] == "E08" and read["reject"]["hint"] == RejectCode.E08.hint


def test_the_same_event_twice_in_one_bulk_is_already_received_unless_its_content_differs(client, gw, tokens) -> None:
    """Two identical items are one event sent twice (a partner's batch that repeats a line): the second is
    answered as a resubmission across two requests is, ``DEJA_RECU`` with the first's version and state; only
    another content under the same key is a ``CONFLICT``."""
    partner = bearer(tokens.partner_69001)
    events = [json_event(id_evenement="1"), json_event(id_evenement="1"), json_event(id_evenement="1", modalite="TEL")]
    body = client.post("/api/v1/events/bulk", json={"events": events}, headers=partner).json()
    got = [(r["index"], r["outcome"], r["key"], r["version"], r["state"], (r["reject"] or {}).get("code"))
           for r in body["results"]]
    assert got == [(0, "CREE", "69001-1", 1, "EN_ATTENTE", None), (1, "DEJA_RECU", "69001-1", 1, "EN_ATTENTE", None),
                   (2, "REFUSE", "69001-1", None, None, "CONFLICT")]
    assert len(rows(gw)) == 1


def test_a_reject_read_back_names_the_same_field_as_the_answer_did(client, tokens) -> None:
    """The field a pre-flight reject names is stored with it (``reject_field``): reading the event back used to
    give the code's usual first field (``date_debut`` for E10) where the answer had said ``date_fin``."""
    event = json_event(EventType.EFO, date_debut="2026-11-02", date_fin="2026-10-01", premier_entretien=None)
    answer = client.post("/api/v1/events", json=event, headers=bearer(tokens.partner_69001)).json()
    assert (answer["reject"]["code"], answer["reject"]["field"]) == ("E10", "date_fin"), answer
    read = client.get(f"/api/v1/events/{answer['key']}", headers=bearer(tokens.partner_69001)).json()
    assert (read["reject"]["code"], read["reject"]["field"]) == ("E10", "date_fin")
    again = client.post("/api/v1/events", json=event, headers=bearer(tokens.partner_69001)).json()
    assert again["outcome"] == "DEJA_RECU" and again["reject"]["field"] == "date_fin"  # from the store, too


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)  # PostgreSQL refuses a NUL in any text
def test_a_control_character_invalidates_its_event_naming_the_field_and_the_others_go_on(client, gw, tokens) -> None:
    """A control character was taken out of the value without a word: ``2026-11-\\x0020`` became a valid date,
    a name lost a letter, and DUDE got what the partner never sent. Now the event is INVALIDE, ``E09`` naming
    the field and the character, never quoting a value (it may be a name); the others of the request are
    stored; a comment that is not passed on is not looked at (nothing of it is kept)."""
    partner = bearer(tokens.partner_69001)
    events = [json_event(id_evenement="1"), json_event(id_evenement="2", nom="Lef\u0000èvre"),
              json_event(id_evenement="3", date_evenement="2026-11-\u000020"),
              json_event(id_evenement="4", conseiller="CONS\u001b01"), json_event(id_evenement="5", prenom="Zo\u0085é"),
              json_event(id_evenement="6", commentaire="rappeler\u0000 lundi"), json_event(id_evenement="7")]
    answer = client.post("/api/v1/events/bulk", json={"events": events}, headers=partner)
    assert answer.status_code == 200
    results = answer.json()["results"]
    got = [(r["index"], r["outcome"], r["state"], (r["reject"] or {}).get("code"), (r["reject"] or {}).get("field"))
           for r in results]
    assert got == [(0, "CREE", "EN_ATTENTE", None, None), (1, "CREE", "INVALIDE", "E09", "nom"),
                   (2, "CREE", "INVALIDE", "E09", "date_evenement"), (3, "CREE", "INVALIDE", "E09", "conseiller"),
                   (4, "CREE", "INVALIDE", "E09", "prenom"), (5, "CREE", "EN_ATTENTE", None, None),
                   (6, "CREE", "EN_ATTENTE", None, None)]
    said = [r["reject"]["message"] for r in results[1:5]]
    assert ["U+0000, 4e caractère", "U+0000, 9e caractère", "U+001B, 5e caractère", "U+0085, 3e caractère"] == [
        m.partition("caractère de contrôle (")[2].partition(")")[0] for m in said]
    assert all("soumettre l'événement de nouveau" in m and "Lef" not in m and "Zo" not in m for m in said), said
    assert all(results[i]["reject"]["hint"] == PARTNER_HINT for i in range(1, 5))
    for row in rows(gw):
        assert "\x00" not in row.payload and "\\u0000" not in row.payload, row.payload
    read = client.get("/api/v1/events/69001-2", headers=partner).json()
    assert (read["state"], read["reject"]["code"], read["reject"]["field"]) == ("INVALIDE", "E09", "nom")

    fixed = client.post("/api/v1/events", json=json_event(id_evenement="2"), headers=partner)
    assert (fixed.status_code, fixed.json()["outcome"], fixed.json()["state"]) == (201, "NOUVELLE_VERSION",
                                                                                   "EN_ATTENTE")
    one = client.post("/api/v1/events", json=json_event(id_evenement="8", nom="Lef\u0007èvre"), headers=partner)
    assert (one.status_code, one.json()["state"], one.json()["reject"]["field"]) == (201, "INVALIDE", "nom")


def test_a_conflicts_position_is_the_index_of_the_earlier_event_counted_from_0(client, tokens) -> None:
    """A partner reading "position 1" in a ``CONFLICT`` must find the event it names: the one answered with that
    ``index``; the event read back gives the same place counted from 1 (``source_line``), as the document says."""
    partner = bearer(tokens.partner_69001)
    events = [json_event(id_evenement="1"), json_event(id_evenement="2"), json_event(id_evenement="2", modalite="TEL")]
    results = client.post("/api/v1/events/bulk", json={"events": events}, headers=partner).json()["results"]
    assert [(r["index"], r["outcome"]) for r in results] == [(0, "CREE"), (1, "CREE"), (2, "REFUSE")]
    message = results[2]["reject"]["message"]
    assert "à la position 1 de la requête (comptée à partir de 0" in message, message
    assert client.get("/api/v1/events/69001-2", headers=partner).json()["source_line"] == results[1]["index"] + 1


def test_an_invalid_partner_event_keeps_its_date_and_a_search_by_date_finds_it(client, gw, tokens) -> None:
    """A refused partner event keeps its fields as sent, ISO dates included: read as an export's ``JJ/MM/AAAA``
    only, its date was lost, and ``date_from``/``date_to`` (the console's filters too) never found it."""
    auth = bearer(tokens.partner_69001)
    refused = client.post("/api/v1/events", json=json_event(id_evenement="41", date_naissance="1990-01-01",
                                                            date_evenement="2026-11-20"), headers=auth).json()
    assert refused["state"] == "INVALIDE" and refused["reject"]["code"] == "E07"
    [row] = rows(gw)
    assert str(row.date_evenement) == "2026-11-20"
    found = client.get("/api/v1/events?date_from=2026-11-20&date_to=2026-11-20", headers=auth).json()["items"]
    assert [(e["key"], e["date_evenement"]) for e in found] == [(refused["key"], "2026-11-20")]
    assert client.get("/api/v1/events?date_from=2026-11-21", headers=auth).json()["items"] == []
