"""What a partner sends and what it gets back, where a lax reading once gave a wrong answer: a retry
under the same ``X-Request-ID`` (documented as the replay key it is), a JSON body labelled as something
else (415, not "doit être un objet JSON"), a boolean or a number where a number or a day is meant (422,
not run 1 or 1970-01-01), and pydantic's messages still in English."""

from __future__ import annotations

import json
from datetime import date

import pytest
import sqlalchemy as sa
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from gateway.api.problems import field_errors
from gateway.store.models import events_t
from tests.factories import json_event
from tests.gateway.api.conftest import bearer

JSON_LABEL = "Content-Type: application/json"


def versions(gw, key: str) -> list[tuple[int, dict]]:
    with gw.engine.connect() as conn:
        rows = conn.execute(sa.select(events_t.c.version, events_t.c.payload).where(events_t.c.key == key)
                            .order_by(events_t.c.version)).all()
    return [(r.version, json.loads(r.payload)) for r in rows]


def support_actions(client, tokens) -> list[str]:
    """The audit log's actions but the clients the fixtures made: what a request may have done."""
    items = client.get("/api/v1/audit", headers=bearer(tokens.admin)).json()["items"]
    return [e["action"] for e in items if e["action"] != "CLIENT_CREATE"]


def english(message: str) -> bool:
    return any(word in message for word in ("Input should", "should be", "valid ", "Field required"))


# --- 1. X-Request-ID: a replay key, said so ---------------------------------------------------------------

def test_a_retry_under_the_same_request_id_is_already_received_with_the_latest_version(client, gw, tokens) -> None:
    """A late retry of a request that stored an event does not undo the correction sent since: the
    OpenAPI declares the header on both submissions and says what it does, and the API does it."""
    doc = client.get("/openapi.json").json()
    for path in ("/api/v1/events", "/api/v1/events/bulk"):
        operation = doc["paths"][path]["post"]
        [header] = [p for p in operation["parameters"] if p["in"] == "header" and p["name"] == "X-Request-ID"]
        assert header["required"] is False and "DEJA_RECU" in header["description"]
        assert "X-Request-ID" in operation["description"] and "dernière" in operation["description"]
    outcome = doc["components"]["schemas"]["SubmissionItem"]["properties"]["outcome"]["description"]
    assert "X-Request-ID" in outcome  # DEJA_RECU is not only "the same content as the latest version"

    partner = bearer(tokens.partner_69001)
    first, corrected = json_event(), json_event(modalite="TEL")
    sent = client.post("/api/v1/events", json=first, headers={**partner, "X-Request-ID": "retry-abc-1"})
    assert (sent.status_code, sent.json()["outcome"], sent.json()["version"]) == (201, "CREE", 1)
    fixed = client.post("/api/v1/events", json=corrected, headers=partner)
    assert (fixed.json()["outcome"], fixed.json()["version"]) == ("NOUVELLE_VERSION", 2)

    retry = client.post("/api/v1/events", json=first, headers={**partner, "X-Request-ID": "retry-abc-1"})
    assert retry.status_code == 200 and retry.headers["x-request-id"] == "retry-abc-1"
    assert retry.json() == {"index": 0, "outcome": "DEJA_RECU", "key": "69001-1001", "version": 2,
                            "state": "EN_ATTENTE", "reject": None}
    assert [(v, p["modalite"]) for v, p in versions(gw, "69001-1001")] == [(1, "IND"), (2, "TEL")]

    # Another client's request is another request, whatever its id; and without the id, content alone counts.
    other = client.post("/api/v1/events", json=first, headers={**bearer(tokens.admin), "X-Request-ID": "retry-abc-1"})
    assert (other.status_code, other.json()["outcome"], other.json()["version"]) == (201, "NOUVELLE_VERSION", 3)
    client.post("/api/v1/events", json=corrected, headers=partner)
    plain = client.post("/api/v1/events", json=first, headers=partner)
    assert (plain.json()["outcome"], plain.json()["version"]) == ("NOUVELLE_VERSION", 5)

    # In a bulk, the same goes for each event at its position.
    batch, lot = {"events": [json_event(id_evenement="7"), json_event(id_evenement="8")]}, {"X-Request-ID": "lot-7"}
    assert client.post("/api/v1/events/bulk", json=batch, headers={**partner, **lot}).status_code == 200
    client.post("/api/v1/events", json=json_event(id_evenement="8", modalite="TEL"), headers=partner)
    again = client.post("/api/v1/events/bulk", json=batch, headers={**partner, **lot}).json()
    assert [(r["key"], r["outcome"], r["version"]) for r in again["results"]] == [
        ("69001-7", "DEJA_RECU", 1), ("69001-8", "DEJA_RECU", 2)]


# --- 2. a JSON body labelled as something else --------------------------------------------------------------

@pytest.mark.parametrize("content_type", [None, "text/plain", "application/xml", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"],
                         ids=["sans", "text-plain", "xml", "formulaire", "multipart"])
def test_a_json_body_not_labelled_json_is_a_415_saying_which_content_type(client, gw, tokens, content_type) -> None:
    headers = {**bearer(tokens.partner_69001), **({"Content-Type": content_type} if content_type else {})}
    answer = client.post("/api/v1/events/bulk", content=json.dumps({"events": [json_event()]}).encode(),
                         headers=headers)
    assert answer.status_code == 415
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["accept"] == "application/json"
    problem = answer.json()
    assert (problem["code"], problem["status"]) == ("UNSUPPORTED_MEDIA_TYPE", 415)
    assert JSON_LABEL in problem["detail"] and problem["title"] == "Type de contenu non pris en charge"
    assert (content_type or "sans en-tête Content-Type") in problem["detail"]
    assert versions(gw, "69001-1001") == []


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON",
                                          "application/vnd.p3+json"])
def test_json_under_another_spelling_of_its_type_is_still_taken(client, tokens, content_type) -> None:
    """What FastAPI decodes as JSON stays accepted, while the same body as text/plain is the 415: the
    415 is for bodies FastAPI would not decode, never for a spelling of JSON it takes."""
    body = json.dumps(json_event()).encode()
    auth = bearer(tokens.partner_69001)
    text = client.post("/api/v1/events", content=body, headers={**auth, "Content-Type": "text/plain"})
    assert text.status_code == 415
    answer = client.post("/api/v1/events", content=body, headers={**auth, "Content-Type": content_type})
    assert answer.status_code == 201 and answer.json()["outcome"] == "CREE"


#: (path, its OpenAPI template, who may call it, a body it would take as JSON)
OPERATIONS_TAKING_JSON = [
    ("/api/v1/events", None, "partner_69001", json_event()),
    ("/api/v1/events/bulk", None, "partner_69001", {"events": [json_event()]}),
    ("/api/v1/events/resend", None, "support_69001", {"reject_code": "E01"}),
    ("/api/v1/events/69001-3/close", "/api/v1/events/{key}/close", "support_69001", {"comment": "sans objet"}),
    ("/api/v1/runs", None, "admin", {"dry_run": False}),
    ("/api/v1/sending/pause", None, "admin", {"reason": "maintenance"}),
    ("/api/v1/sending/resume", None, "admin", {"reason": "fin"}),
]


def test_every_operation_taking_json_refuses_another_type_and_documents_it(client, gw, tokens, night) -> None:
    """Each one answers 415 and changes nothing (no resend, no close, no run, the switch as it was);
    who the caller is is still said first (401); the OpenAPI lists the 415 on each of them. DUDE's
    callback takes signed XML, and its own 415 is for any other label."""
    doc = client.get("/openapi.json").json()
    for path, template, who, body in OPERATIONS_TAKING_JSON:
        answer = client.post(path, content=json.dumps(body).encode(),
                             headers={**bearer(tokens[who]), "Content-Type": "text/plain"})
        assert (answer.status_code, answer.json()["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE"), path
        assert "415" in doc["paths"][template or path]["post"]["responses"], path
        anonymous = client.post(path, content=json.dumps(body).encode(), headers={"Content-Type": "text/plain"})
        assert anonymous.status_code == 401, path
    admin = bearer(tokens.admin)
    assert support_actions(client, tokens) == []
    assert [r["trigger"] for r in client.get("/api/v1/runs", headers=admin).json()["items"]] == ["cli"]
    assert client.get("/api/v1/sending", headers=admin).json()["paused"] is False
    assert client.get("/api/v1/events/69001-3", headers=admin).json()["state"] == "REJETE"

    callback = doc["paths"]["/api/v1/dude/comptes-rendus"]["post"]
    assert "415" in callback["responses"] and list(callback["requestBody"]["content"]) == ["application/xml"]
    xml = client.post("/api/v1/dude/comptes-rendus", content=b"<CompteRendu",  # read, and found unreadable
                      headers={"Content-Type": "application/xml"})
    assert (xml.status_code, xml.json()["code"]) == (400, "L03")


# --- 3. strict types where a JSON body means a number, a boolean, a day --------------------------------------

RESEND_FILTERS = [
    ({"run_id": True}, "run_id"),
    ({"run_id": 1.5}, "run_id"),  # 1.0 is an integer in JSON Schema, and taken as 1
    ({"run_id": "1"}, "run_id"),
    ({"date_from": 0}, "date_from"),
    ({"date_from": 20261101}, "date_from"),
    ({"date_from": "20261101"}, "date_from"),
    ({"date_to": "2026-11-28T00:00:00"}, "date_to"),
    ({"updated_from": 0}, "updated_from"),
    ({"updated_to": 1_800_000_000}, "updated_to"),
]


def test_the_resend_filter_takes_no_boolean_for_a_number_nor_a_number_for_a_date(client, tokens, night) -> None:
    """``{"run_id": true}`` read as run 1 really resent run 1's rejects; now each of these is a 422 naming
    its field in French, and nothing is resent. A query string, text by nature, still reads "1" as 1."""
    support = bearer(tokens.support_69001)
    for body, field in RESEND_FILTERS:
        answer = client.post("/api/v1/events/resend", json=body, headers=support)
        assert answer.status_code == 422, body
        [error] = answer.json()["errors"]
        assert error["field"] == field and not english(error["message"]), (body, error)
    assert client.get("/api/v1/events/69001-3", headers=support).json()["state"] == "REJETE"
    assert support_actions(client, tokens) == []

    found = client.get("/api/v1/events?run_id=1&date_from=2000-01-01&updated_from=2000-01-01T00:00:00Z",
                       headers=support)
    assert found.status_code == 200 and "69001-3" in {e["key"] for e in found.json()["items"]}
    by_number = client.get("/api/v1/events?date_from=20261101", headers=support)
    assert by_number.status_code == 422 and by_number.json()["errors"][0]["field"] == "date_from"


def test_a_plus_pasted_unencoded_in_a_search_url_is_told_to_be_written_2b(client, tokens, night) -> None:
    """In a query string ``+`` is a space: ``updated_from=2026-11-29T10:00:00+01:00`` pasted into a URL was
    refused as "horodatage ISO 8601 attendu", not a word of why. The 422 now says it, with the value to write."""
    support = bearer(tokens.support_69001)
    for name in ("updated_from", "updated_to"):
        answer = client.get(f"/api/v1/events?{name}=2026-11-29T10:00:00+01:00", headers=support)
        assert answer.status_code == 422
        [error] = answer.json()["errors"]
        assert (error["field"], error["type"]) == (name, "datetime_plus_as_space")
        assert "« + »" in error["message"] and "(2026-11-29T10:00:00%2B01:00)" in error["message"], error
        assert "Z" in error["message"] and error["message"] in answer.json()["detail"]
    written = client.get("/api/v1/events?updated_from=2000-01-01T10:00:00%2B01:00&updated_to=2100-01-01T00:00:00Z",
                         headers=support)
    assert written.status_code == 200 and "69001-3" in {e["key"] for e in written.json()["items"]}


def test_a_run_and_an_event_take_no_number_for_a_boolean(client, gw, tokens) -> None:
    """``{"dry_run": 1}`` started a real run (``1`` read as ``true`` is a guess, and here the wrong way
    round would send); ``premier_entretien: 1`` was stored as ``true``. Both are 422 naming the field once."""
    admin = bearer(tokens.admin)
    answer = client.post("/api/v1/runs", json={"dry_run": 1}, headers=admin)
    assert answer.status_code == 422 and [e["field"] for e in answer.json()["errors"]] == ["dry_run"]
    assert client.get("/api/v1/runs", headers=admin).json()["items"] == []

    flag = client.post("/api/v1/events", json=json_event(premier_entretien=1), headers=bearer(tokens.partner_69001))
    assert flag.status_code == 422
    assert flag.json()["errors"] == [{"field": "premier_entretien", "message": "O, N, true ou false attendu",
                                      "type": "bool_or_text_type"}]
    assert versions(gw, "69001-1001") == []
    for value in (True, "O"):  # what the field documents is still taken
        taken = client.post("/api/v1/events", json=json_event(premier_entretien=value),
                            headers=bearer(tokens.partner_69001))
        assert taken.status_code in (200, 201) and taken.json()["state"] == "EN_ATTENTE", taken.json()


# --- 4. French messages -----------------------------------------------------------------------------------

def test_a_required_field_sent_as_null_is_told_missing(client, tokens, night) -> None:
    partner = bearer(tokens.partner_69001)
    one = client.post("/api/v1/events", json={**json_event(), "code_ml": None}, headers=partner)
    assert one.status_code == 422
    assert one.json()["errors"] == [{"field": "code_ml", "message": "champ obligatoire", "type": "missing"}]
    bulk = client.post("/api/v1/events/bulk", json={"events": [{**json_event(), "id_evenement": None}]},
                       headers=partner)
    assert [(e["field"], e["message"]) for e in bulk.json()["errors"]] == [("events.0.id_evenement",
                                                                          "champ obligatoire")]
    close = client.post("/api/v1/events/69001-3/close", json={"comment": None}, headers=bearer(tokens.support_69001))
    assert [(e["field"], e["message"]) for e in close.json()["errors"]] == [("comment", "champ obligatoire")]


def test_a_lone_surrogate_is_told_in_french(client, tokens) -> None:
    """Valid JSON (``"\\ud800"``), not text: refused naming the field, in French."""
    body = json.dumps({**json_event(), "nom": "\ud800"}).encode()
    answer = client.post("/api/v1/events", content=body, headers={**bearer(tokens.partner_69001),
                                                                 "Content-Type": "application/json"})
    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    assert (error["field"], error["type"]) == ("nom", "string_unicode") and not english(error["message"])
    assert "Unicode" in error["message"]


@pytest.mark.parametrize("target, value, error_type, message", [
    (int, 1.5, "int_from_float", "doit être un entier, sans partie décimale"),
    (date, "2026-11-01T10:00:00", "date_from_datetime_inexact", "date AAAA-MM-JJ attendue, sans heure"),
])
def test_pydantic_errors_a_partner_may_meet_are_french(target, value, error_type, message) -> None:
    """The types the strict bodies no longer let through (no request reaches them now), French for any model
    that still may."""
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(target).validate_python(value)
    [error] = caught.value.errors()
    assert error["type"] == error_type
    [translated] = field_errors(RequestValidationError([{**error, "loc": ("body", "champ")}]))
    assert (translated.field, translated.message, translated.type) == ("champ", message, error_type)


def test_an_instant_out_of_the_calendar_in_utc_is_a_422_not_a_500(client, tokens, night) -> None:
    """``9999-12-31T23:59:59-12:00`` is in the year 10,000 in UTC, where the store keeps its instants: the
    search and the resend by filter failed converting it (500), as ``saisi_le`` did before."""
    admin = bearer(tokens.admin)
    for name, value in (("updated_from", "9999-12-31T23:59:59-12:00"), ("updated_to", "0001-01-01T00:00:00%2B14:00")):
        searched = client.get(f"/api/v1/events?{name}={value}", headers=admin)
        resent = client.post("/api/v1/events/resend", json={name: value.replace("%2B", "+")}, headers=admin)
        for answer in (searched, resent):
            assert answer.status_code == 422, answer.text
            [error] = answer.json()["errors"]
            assert (error["field"], error["type"]) == (name, "datetime_out_of_range")
            assert "hors du calendrier" in error["message"]


def test_the_documented_replay_key_carries_no_example_that_swagger_ui_would_send(client) -> None:
    """Swagger UI fills a parameter's example in: every submission tried from /docs went under the same
    X-Request-ID, and a content sent before was answered DEJA_RECU and not stored."""
    doc = client.get("/openapi.json").json()
    for path in ("/api/v1/events", "/api/v1/events/bulk"):
        [header] = [p for p in doc["paths"][path]["post"]["parameters"] if p["name"] == "X-Request-ID"]
        assert "example" not in header and "examples" not in header and "example" not in header["schema"]
        assert "p3-20261120-0001" in header["description"]  # shown, never sent
    created = doc["paths"]["/api/v1/events"]["post"]["responses"]["201"]
    assert "Location" in created["headers"]
