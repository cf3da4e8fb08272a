"""What a partner's developer met, integrating from the README and the OpenAPI document alone: 422 details that
quoted a regular expression or ended a French list in "or", bodies refused as missing where nothing was required,
reject messages naming days in a format the partner never sent, and search parameters and states the document
did not explain."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta

from gateway.codes import EventState, RejectCode
from tests.factories import json_event
from tests.gateway.api.conftest import bearer

#: A day as Parcours 3 writes it: what a partner's reject message must not name.
P3_DAY = re.compile(r"\b[0-9]{2}/[0-9]{2}/[0-9]{4}\b")


def details(problem: dict) -> list[str]:
    return [problem["detail"], *(e["message"] for e in problem.get("errors", []))]


# --- 422s in words ---------------------------------------------------------------------------------------------

def test_a_blank_comment_or_reason_is_told_as_blank_not_as_a_regular_expression(client, tokens) -> None:
    admin = bearer(tokens.admin)
    for path, body in (("/api/v1/events/69001-1/close", {"comment": "   "}),
                       ("/api/v1/sending/pause", {"reason": "  "})):
        refused = client.post(path, json=body, headers=admin)
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert error["type"] == "string_pattern_mismatch"  # the stable type is unchanged
        assert "vide" in error["message"] and "\\" not in refused.text and "format attendu" not in refused.text


def test_a_malformed_code_or_key_says_what_is_expected_in_words(client, tokens) -> None:
    partner = bearer(tokens.partner_69001)
    searched = client.get("/api/v1/events", params={"code_ml": "6900"}, headers=partner)
    assert searched.status_code == 422
    assert searched.json()["errors"][0]["message"] == "5 chiffres attendus (par exemple 69001)"
    submitted = client.post("/api/v1/events", json=json_event(id_evenement="E-12"), headers=partner)
    assert submitted.status_code == 422
    [error] = submitted.json()["errors"]
    assert error["field"] == "id_evenement" and "chiffres" in error["message"] and "^" not in error["message"]


def test_a_list_of_admitted_values_ends_in_french(client, tokens) -> None:
    partner = bearer(tokens.partner_69001)
    for params in ({"state": "NOPE"}, {"reject_code": "X01"}):
        refused = client.get("/api/v1/events", params=params, headers=partner)
        assert refused.status_code == 422
        for text in details(refused.json()):
            assert " or " not in text and " ou '" in text, text
    audit = client.get("/api/v1/audit", params={"action": "NOPE"}, headers=bearer(tokens.admin))
    assert "'SENDING_PAUSE' ou 'SENDING_RESUME'" in audit.json()["errors"][0]["message"]


# --- bodies that hold nothing required are optional ------------------------------------------------------------

def test_resuming_sending_takes_no_body_as_the_document_says(client, tokens) -> None:
    admin = bearer(tokens.admin)
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/sending/resume"]["post"]
    assert operation["requestBody"].get("required", False) is False
    client.post("/api/v1/sending/pause", json={"reason": "maintenance"}, headers=admin)
    resumed = client.post("/api/v1/sending/resume", headers=admin)  # curl -X POST …/resume
    assert (resumed.status_code, resumed.json()["paused"], resumed.json()["reason"]) == (200, False, None)
    with_reason = client.post("/api/v1/sending/resume", json={"reason": "fini"}, headers=admin)
    assert with_reason.json()["reason"] == "fini"
    # a body is still read as the JSON it must be
    assert client.post("/api/v1/sending/resume", content=b"x", headers={**admin, "Content-Type": "text/plain"}) \
        .status_code == 415


def test_a_run_starts_without_a_body_as_with_an_empty_one(client, tokens) -> None:
    admin = bearer(tokens.admin)
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/runs"]["post"]
    assert operation["requestBody"].get("required", False) is False
    started = client.post("/api/v1/runs", headers=admin)
    assert started.status_code == 202, started.text
    assert started.headers["Location"] == f"/api/v1/runs/{started.json()['run_id']}"
    deadline = time.monotonic() + 120  # wide: a loaded CI machine
    while (run := client.get(started.headers["Location"], headers=admin).json())["outcome"] == "EN_COURS":
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
    assert run["dry_run"] is False and run["inputs"] == []
    assert client.post("/api/v1/runs", headers=bearer(tokens.partner_69001)).status_code == 403


# --- a partner's reject in the partner's terms -----------------------------------------------------------------

def test_a_partners_reject_names_days_as_the_partner_wrote_them(client, tokens) -> None:
    partner = bearer(tokens.partner_69001)
    future = date.today() + timedelta(days=40)
    cases = {  # what was sent → (code, the days the message must name)
        "1": (dict(date_evenement=future.isoformat(), date_naissance=f"{future.year - 20}-01-15"),
              "E04", [future.isoformat()]),
        "2": (dict(date_naissance="1990-01-01"), "E07", ["2026-11-20"]),
        "3": (dict(type_evenement="EFO", formacode="22435", organisme="AFPA", date_debut="2026-11-10",
                   date_fin="2026-11-02", modalite=None, premier_entretien=None), "E10", ["2026-11-02", "2026-11-10"]),
    }
    for number, (fields, code, days) in cases.items():
        sent = client.post("/api/v1/events", json=json_event(id_evenement=number, **fields), headers=partner)
        assert sent.status_code == 201, sent.text
        reject = sent.json()["reject"]
        assert reject["code"] == code, reject
        assert all(day in reject["message"] for day in days) and not P3_DAY.search(reject["message"]), reject
        read = client.get(f"/api/v1/events/69001-{number}", headers=partner).json()["reject"]
        assert read["message"] == reject["message"]  # stored as answered


def test_a_value_the_message_quotes_stays_as_the_partner_sent_it(client, tokens) -> None:
    sent = client.post("/api/v1/events", json=json_event(id_evenement="4", conseiller="01/02/2003"),
                       headers=bearer(tokens.partner_69001))
    reject = sent.json()["reject"]
    assert (reject["code"], reject["field"]) == ("E09", "conseiller")
    assert "« 01/02/2003 »" in reject["message"]


# --- the document explains what a partner filters on and reads -------------------------------------------------

def test_every_search_parameter_is_described(client) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/events"]["get"]
    undescribed = [p["name"] for p in operation["parameters"]
                   if not (p.get("description") or p["schema"].get("description"))]
    assert undescribed == []
    assert {"key", "date_to", "updated_to"} <= {p["name"] for p in operation["parameters"]}


def test_states_and_reject_codes_are_explained_in_french(client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    states, codes = schemas["EventState"]["description"], schemas["RejectCode"]["description"]
    assert all(f"`{s.value}` : {s.label}" in states for s in EventState)
    assert all(f"`{c.value}` : {c.label}" in codes for c in RejectCode)
    assert "brief" not in states + codes and "store" not in states


def test_a_runs_outcome_and_trigger_and_an_envelopes_state_are_explained(client) -> None:
    """Plain strings in the document: a partner could not tell `TERMINE_SANS_ACCUSE` from `ECHEC`, nor what to do."""
    from gateway.codes import EnvelopeState

    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    run = schemas["RunPublic"]["properties"]
    for outcome in ("EN_COURS", "TERMINE", "TERMINE_AVEC_ERREURS", "TERMINE_SANS_ACCUSE", "ECHEC"):
        assert f"`{outcome}`" in run["outcome"]["description"], outcome
    for trigger in ("schedule", "cli", "api", "demo", "reprise"):
        assert f"`{trigger}`" in run["trigger"]["description"], trigger
    state = schemas["EnvelopePublic"]["properties"]["state"]["description"]
    assert all(f"`{s.value}` ({s.label})" in state for s in EnvelopeState)
