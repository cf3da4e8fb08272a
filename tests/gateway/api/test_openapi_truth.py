"""The OpenAPI document against the answers: every code an answer carries is one its operation documents for
that status, every answer's headers are declared, a method a path does not take is the documented 405, and
nothing is left in FastAPI's English or copied from another operation. (test_schemathesis.py checks the same
on generated requests; these are the answers it cannot generate.)"""

from __future__ import annotations

import json
import re

from tests.factories import json_event
from tests.gateway.api.conftest import bearer

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def template_of(doc: dict, path: str) -> str:
    """``path``'s template in the document: itself, or the one with ``{…}`` in place of its last segment."""
    return path if path in doc["paths"] else next(
        t for t in doc["paths"] if re.fullmatch(re.escape(path.rsplit("/", 1)[0]) + r"/\{[a-z_]+\}", t))


def codes(response: dict) -> list[str]:
    return response["content"]["application/problem+json"]["schema"]["allOf"][1]["properties"]["code"]["enum"]


def test_no_answer_is_described_in_fastapis_english(client) -> None:
    doc = client.get("/openapi.json").json()
    text = json.dumps(doc)
    for english in ("Successful Response", "Validation Error", "Unprocessable"):
        assert english not in text, english


def test_every_answer_declares_its_request_id_and_no_store(client) -> None:
    doc = client.get("/openapi.json").json()
    for template, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert "500" in operation["responses"], (method, template)
            assert ("408" in operation["responses"]) == ("requestBody" in operation), (method, template)
            for status, response in operation["responses"].items():
                headers = response["headers"]
                assert headers["X-Request-ID"]["required"] and headers["Cache-Control"]["required"], (template, status)


def test_the_codes_answered_are_those_documented_for_the_status(client, tokens, night) -> None:
    """Real answers of each kind of error, each checked against its operation in the document."""
    doc = client.get("/openapi.json").json()
    admin, partner, support = bearer(tokens.admin), bearer(tokens.partner_69001), bearer(tokens.support_69001)
    json_ct = {"Content-Type": "application/json"}
    too_long = json.dumps({"events": [json_event()]}).replace('"1001"', "9" * 5000)
    cases = [
        ("GET", "/api/v1/events", {}, {}, 401),
        ("GET", "/api/v1/audit", {"headers": partner}, {}, 403),
        ("POST", "/api/v1/runs", {"headers": support, "json": {}}, {}, 403),
        ("POST", "/api/v1/events", {"headers": partner, "json": json_event(code_ml="69002")}, {}, 403),
        ("GET", "/api/v1/events/69001-999", {"headers": admin}, {}, 404),
        ("GET", "/api/v1/runs/999", {"headers": admin}, {}, 404),
        ("GET", "/api/v1/events", {"headers": admin}, {"cursor": "abc"}, 422),
        ("GET", "/api/v1/runs", {"headers": admin}, {"cursor": "abc"}, 422),
        ("GET", "/api/v1/envelopes", {"headers": admin}, {"cursor": "abc"}, 422),
        ("GET", "/api/v1/audit", {"headers": admin}, {"action": "SENDING_PAUSED"}, 422),
        ("POST", "/api/v1/events/bulk", {"headers": {**partner, **json_ct}, "content": too_long}, {}, 422),
        ("POST", "/api/v1/events/resend", {"headers": {**support, "Content-Type": "text/plain"}, "content": "{}"}, {},
         415),
        ("POST", "/api/v1/dude/comptes-rendus", {"headers": {"Content-Type": "application/xml"}, "content": b"<x"},
         {}, 400),
        ("POST", "/api/v1/dude/comptes-rendus", {"headers": {"Content-Type": "application/xml"},
                                                 "content": b'<AccuseReception xmlns="urn:fr:spe:dude:echanges:v1"/>'},
         {}, 400),
        ("POST", "/api/v1/dude/comptes-rendus", {"content": b"<x/>"}, {}, 415),
    ]
    for method, path, kwargs, params, status in cases:
        answer = client.request(method, path, params=params, **kwargs)
        assert answer.status_code == status, (method, path, answer.text)
        template = template_of(doc, path)
        response = doc["paths"][template][method.lower()]["responses"][str(status)]
        assert answer.json()["code"] in codes(response), (method, template, status, answer.json()["code"])
        assert {"x-request-id", "cache-control"} <= set(answer.headers), (method, path)


def test_every_method_a_path_does_not_document_is_the_documented_405(client, tokens) -> None:
    doc = client.get("/openapi.json").json()
    not_allowed = doc["components"]["responses"]["MethodNotAllowed"]
    samples = {"{key}": "69001-1", "{run_id}": "1", "{envelope_id}": "lot-1"}
    for template, operations in doc["paths"].items():
        path = template
        for name, value in samples.items():
            path = path.replace(name, value)
        allowed = sorted(m.upper() for m in operations)
        for method in set(METHODS) - set(allowed):
            answer = client.request(method, path, headers=bearer(tokens.admin))
            assert answer.status_code == 405, (method, path, answer.status_code)
            assert answer.json()["code"] in codes(not_allowed)
            assert answer.headers["allow"] == ", ".join(allowed), (method, path)
    assert "METHOD_NOT_ALLOWED" in doc["info"]["description"]


def test_every_code_of_the_document_is_in_its_table_of_codes(client) -> None:
    doc = client.get("/openapi.json").json()
    table = doc["info"]["description"]
    found = {code for operations in doc["paths"].values() for operation in operations.values()
             for response in operation["responses"].values()
             if "application/problem+json" in response.get("content", {}) for code in codes(response)}
    assert {"UNAUTHENTICATED", "INVALID_CURSOR", "BODY_TIMEOUT", "DOC_MISMATCH", "RUN_IN_PROGRESS"} <= found
    for code in found:
        assert re.search(rf"\| `{code}` \| [0-9, ]+ \| \w", table), code  # its statuses, and what it means


def test_the_403_of_a_submission_is_worded_for_submissions_only(client) -> None:
    """The submission's 403 (a mission locale outside the client's scope) was every operation's 403."""
    paths = client.get("/openapi.json").json()["paths"]
    for template in ("/api/v1/events", "/api/v1/events/bulk"):
        assert "périmètre" in paths[template]["post"]["responses"]["403"]["description"]
    for template, method in (("/api/v1/audit", "get"), ("/api/v1/runs", "post"), ("/api/v1/sending", "get"),
                             ("/api/v1/events/{key}/close", "post"), ("/metrics", "get")):
        assert paths[template][method]["responses"]["403"]["description"] == "Rôle insuffisant pour cette opération."


def test_the_audit_filter_offers_every_action_the_gateway_writes(client, tokens) -> None:
    """Pausing and resuming are written in the audit log, and were missing from the filter's list."""
    admin = bearer(tokens.admin)
    client.post("/api/v1/sending/pause", json={"reason": "maintenance"}, headers=admin)
    client.post("/api/v1/sending/resume", json={}, headers=admin)
    [action] = [p for p in client.get("/openapi.json").json()["paths"]["/api/v1/audit"]["get"]["parameters"]
                if p["name"] == "action"]
    offered = action["schema"]["enum"]
    written = {e["action"] for e in client.get("/api/v1/audit", headers=admin).json()["items"]}
    assert {"SENDING_PAUSE", "SENDING_RESUME", "CLIENT_CREATE"} <= written <= set(offered)
    paused = client.get("/api/v1/audit", params={"action": "SENDING_PAUSE"}, headers=admin).json()["items"]
    assert [e["action"] for e in paused] == ["SENDING_PAUSE"]


def test_every_position_the_document_reports_says_where_it_counts_from(client, tokens) -> None:
    """``index``, a 422's ``events.N.field`` and a ``CONFLICT``'s position count from 0; ``source_line`` from 1:
    a partner reading "position 3" must know which event it is. The document says so where each is reported,
    and the answers count as it says."""
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "à partir de 0" in schemas["SubmissionItem"]["properties"]["index"]["description"]
    assert "à partir de 0" in schemas["RejectPublic"]["properties"]["code"]["description"]  # CONFLICT's position
    assert "à partir de 1" in schemas["EventPublic"]["properties"]["source_line"]["description"]
    bulk = doc["paths"]["/api/v1/events/bulk"]["post"]
    assert "à partir de 0" in bulk["responses"]["422"]["description"]
    answer = client.post("/api/v1/events/bulk", json={"events": [json_event(), json_event(nom=12)]},
                         headers=bearer(tokens.partner_69001))
    assert answer.status_code == 422 and [e["field"] for e in answer.json()["errors"]] == ["events.1.nom"]


def test_both_submissions_and_the_events_schema_state_the_rule_on_control_characters(client) -> None:
    doc = client.get("/openapi.json").json()
    for path in ("/api/v1/events", "/api/v1/events/bulk"):
        assert "caractère de contrôle" in doc["paths"][path]["post"]["description"], path
    assert "caractère de contrôle" in doc["components"]["schemas"]["EventIn"]["description"]
