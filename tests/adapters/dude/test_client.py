"""What DUDE's client says of an answer it did not expect: the status, a problem's code and title, else the
content type and the size; never the body, which DUDE or a proxy in front of it may fill with what we sent
(brief §6: logs name envelopes, never people). The messages go to the logs, the run and the store."""

from __future__ import annotations

import json

import httpx
import pytest

from adapters.dude.client import DudeClient
from gateway.errors import AccessRefused, EnvelopeRefused, RemoteServerError

#: What an echo of our envelope carries, plus a NIR-like number a proxy's page could hold.
PERSONAL = ("Lefèvre", "LEFEVRE", "Zoé", "1234567A", "2004-05-06", "204056912345678")
ECHO = ("<html><body><pre>&lt;Jeune&gt;&lt;IdentifiantDE&gt;1234567A&lt;/IdentifiantDE&gt;&lt;Nom&gt;Lefèvre"
        "&lt;/Nom&gt;&lt;Prenom&gt;Zoé&lt;/Prenom&gt;&lt;DateNaissance&gt;2004-05-06&lt;/DateNaissance&gt;"
        " nir=204056912345678</pre></body></html>").encode()
#: A problem document whose occurrence-specific ``detail`` (and an extra member) echo the envelope.
PROBLEM = json.dumps({"type": "about:blank", "title": "Erreur interne du DUDE", "status": 500,
                      "code": "DUDE_SERVER_ERROR", "detail": "Nom Lefèvre, Prénom Zoé, né le 2004-05-06",
                      "requete": ECHO.decode()}).encode()


def client(status: int, body: bytes, content_type: str) -> DudeClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": content_type})

    return DudeClient("http://dude.test/dude/v1", transport=httpx.MockTransport(answer))


def raised(dude: DudeClient, call: str) -> RemoteServerError:
    with pytest.raises(RemoteServerError) as caught:
        if call == "post":
            dude.post_envelope(b"<LotEvenements/>")
        else:
            dude.get_report("3f2a9c1d-4e5b-4a7c-9d8e-1f2a3b4c5d6e")
    return caught.value


CASES = {  # (call, status, body, content type, what the message must say)
    "post-500-page": ("post", 500, ECHO, "text/html; charset=utf-8", f"HTTP 500 (text/html, {len(ECHO)} bytes)"),
    "post-502-problem": ("post", 502, PROBLEM, "application/problem+json",
                         "HTTP 502 DUDE_SERVER_ERROR (Erreur interne du DUDE)"),
    "post-404-page": ("post", 404, ECHO, "text/html", f"unexpected HTTP 404 (text/html, {len(ECHO)} bytes)"),
    "post-409-problem": ("post", 409, PROBLEM, "application/problem+json",
                         "unexpected HTTP 409 DUDE_SERVER_ERROR (Erreur interne du DUDE)"),
    "report-503-json-not-a-problem": ("get", 503, PROBLEM, "application/json",
                                      f"HTTP 503 (application/json, {len(PROBLEM)} bytes)"),
    "report-418-problem": ("get", 418, PROBLEM, "application/problem+json",
                           "unexpected HTTP 418 DUDE_SERVER_ERROR (Erreur interne du DUDE)"),
    "report-410-no-type": ("get", 410, ECHO, "", f"unexpected HTTP 410 (no content type, {len(ECHO)} bytes)"),
}


@pytest.mark.parametrize("call, status, body, content_type, said", CASES.values(), ids=CASES.keys())
def test_an_answer_echoing_what_we_sent_is_told_by_its_status_and_code_never_its_body(
        call, status, body, content_type, said, caplog) -> None:
    error = raised(client(status, body, content_type), call)
    assert said in str(error) and error.code == "DUDE_SERVER_ERROR"
    assert not [p for p in PERSONAL if p in str(error)], str(error)
    assert not [p for p in PERSONAL if p in caplog.text]  # httpx's own log lines name the URL only


@pytest.mark.parametrize("call", ["post", "get"])
@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_refuse_the_gateway_itself_and_are_told_apart_from_other_answers(call, status) -> None:
    """A refusal of the gateway (its address, a proxy wanting credentials) stops a sending round at once
    (`gateway.pipeline.outage`): it needs its own code, and keeps its status, the body still unsaid."""
    error = raised(client(status, ECHO, "text/html"), call)
    assert isinstance(error, AccessRefused) and error.code == "DUDE_ACCESS_REFUSED" and error.status_code == status
    assert f"access refused, HTTP {status} (text/html, {len(ECHO)} bytes)" in str(error)
    assert not [p for p in PERSONAL if p in str(error)]


def test_a_problems_code_and_title_come_cut_and_without_control_characters() -> None:
    """A title is DUDE's text all the same: a line break in it forged a second log line, and its length is
    the sender's to choose."""
    forged = json.dumps({"code": "PANNE\r\n2026-11-30 03:00:00 ERROR gateway.run: FORGED" + "X" * 100,
                         "title": "Panne\n2026-11-30 03:00:00 ERROR gateway.run: FORGED\x1b[31m" + "é" * 500}).encode()
    message = str(raised(client(500, forged, "application/problem+json"), "post"))
    assert "\n" not in message and "\r" not in message and "\x1b" not in message
    code, _, title = message.partition("HTTP 500 ")[2].partition(" (")
    assert code.startswith("PANNE2026-11-30 03:00:00") and code.endswith("…") and len(code) == 40
    assert title.startswith("Panne2026-11-30 03:00:00 ERROR") and len(title) == 120 + len(")")
    assert title.endswith("é…)")


def test_a_refused_envelope_keeps_the_problems_title_not_its_detail() -> None:
    """Every event of a refused envelope keeps the message (stored, shown to support staff): DUDE's ``detail``
    tells of this occurrence and may quote the envelope; its ``title``, or the catalogue's label, does not."""
    detail = {"code": "L03", "status": 400, "detail": "XML mal formé près de <Nom>Lefèvre</Nom> (1234567A)"}
    with pytest.raises(EnvelopeRefused) as titled:
        client(400, json.dumps({**detail, "title": "XML mal formé"}).encode(), "application/problem+json"
               ).post_envelope(b"<LotEvenements/>")
    assert (titled.value.code, titled.value.message) == ("L03", "XML mal formé")
    with pytest.raises(EnvelopeRefused) as untitled:
        client(413, json.dumps({**detail, "code": "L07"}).encode(), "application/problem+json"
               ).post_envelope(b"<LotEvenements/>")
    assert untitled.value.code == "L07" and untitled.value.message == "Lot trop volumineux"


@pytest.mark.parametrize("code", ["Lefèvre Zoé", "L99", "E03", 3])
def test_only_a_catalogue_envelope_code_refuses_an_envelope(code) -> None:
    """A 400 whose code is not one of ``L01``…``L07`` (anything starting with an L was: a proxy's JSON could
    put a name in every event's reject code) is an answer we did not expect, told without its text."""
    body = json.dumps({"code": code, "title": "refus"}).encode()
    error = raised(client(400, body, "application/json"), "post")
    assert str(error).endswith(f"unexpected HTTP 400 (application/json, {len(body)} bytes)")


def test_the_probe_gives_a_clean_code() -> None:
    forged = json.dumps({"code": "NO_REPORT\n" + "x" * 100}).encode()
    status, code, _ = client(404, forged, "application/problem+json").probe()
    assert status == 404 and code is not None and "\n" not in code and len(code) == 40
    assert client(404, b'{"code": "NO_REPORT"}', "application/problem+json").probe()[1] == "NO_REPORT"
