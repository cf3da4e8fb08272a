"""The HTTP client for DUDE's exchange endpoint (the emulator's, or a real one).

Routes (relative to ``dude_url``): ``POST /lots`` with a signed envelope, answered by a signed
``AccuseReception``; ``GET /lots/{IdLot}/compte-rendu``, answered by the signed ``CompteRendu``
(200), "not yet" (202), or an unknown lot (404).

httpx's errors are translated here and only here: a connection failure or a time-out is a
`TransportError`, a 5xx a `RemoteServerError` — both mean "try again later, with the same IdLot".
Tests swap the network for the emulator in-process by passing ``transport=mock_transport(emulator)``.

What an error message says of an answer (`_said`): its status, and a problem document's ``code`` and
``title``, or else its content type and size — never its body. These messages go to the logs, the run's
warnings and the store (``last_error``, an envelope's reject), and a body DUDE, or a proxy in front of it,
sends back may echo what we sent it: names, birth dates (brief §6: logs name envelopes, never people).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import httpx

from gateway.codes import Level, RejectCode
from gateway.errors import AccessRefused, EnvelopeRefused, NoReport, RemoteServerError, TransportError

XML = "application/xml"
PROBLEM = "application/problem+json"
#: Longest text of DUDE's (a problem's ``code``, ``title``; a content type; httpx's words) put in a message.
CODE_MAX, TITLE_MAX, TEXT_MAX = 40, 120, 200
#: C0 and C1 controls (line breaks included: one in a log line forges the next), DEL.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
#: The envelope-level reject codes (brief §4: ``L01``…``L07``): the only codes an envelope's events are refused
#: with. Any other code (``L``-something that the catalogue, the console and the run's summary do not know) is an
#: answer we did not expect.
_ENVELOPE_CODES = {c.value: c for c in RejectCode if c.level is Level.ENVELOPE}


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    body: bytes
    content_type: str
    location: str | None = None  # a redirection's (never followed: an envelope is not posted elsewhere)


class DudeClient:
    """Talks to one DUDE endpoint. Thread-safe (one httpx.Client, connection pooling)."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers={"User-Agent": "p3-dude-gateway"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DudeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, url: str, **kwargs) -> Answer:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransportError(f"{method} {url}: no answer in time ({exc.__class__.__name__})") from exc
        except httpx.HTTPError as exc:  # h11's words may quote what came back ("illegal status line: b'…'")
            said = one_line(str(exc), TEXT_MAX) or ""
            raise TransportError(f"{method} {url}: {exc.__class__.__name__}: {said}") from exc
        answer = Answer(response.status_code, response.content, response.headers.get("content-type", ""),
                        response.headers.get("location"))
        if answer.status_code >= 500:
            raise RemoteServerError(f"{method} {url}: {_said(answer)}", status_code=answer.status_code)
        return answer

    def post_envelope(self, body: bytes) -> bytes:
        """Send a signed envelope; return the receipt's bytes (not yet verified).

        A 400 answer without a receipt (DUDE could not even read the envelope's id) becomes a
        `EnvelopeRefused` carrying DUDE's code, and its problem's ``title`` (else the code's label) as the
        message every event of the envelope keeps. Not its ``detail``: RFC 9457 makes that the account of this
        occurrence, which may quote the envelope, and the message is stored and shown.
        """
        answer = self._call("POST", "/lots", content=body, headers={"Content-Type": XML})
        if answer.status_code == 200:
            return answer.body
        problem = _problem(answer)
        code = problem.get("code")
        known = _ENVELOPE_CODES.get(code) if isinstance(code, str) else None
        if answer.status_code in (400, 413, 422) and known is not None:
            raise EnvelopeRefused(one_line(problem.get("title"), TITLE_MAX) or known.label, code=known.value)
        _refused_access("POST /lots", answer)
        # With its status: a 400 is DUDE (or what stands before it) answering, not DUDE unavailable
        # (`gateway.pipeline.outage.unavailable`: ``None`` means no answer).
        raise RemoteServerError(f"POST /lots: unexpected {_said(answer)}", status_code=answer.status_code)

    def get_report(self, id_lot: str) -> bytes | None:
        """The report's bytes (not yet verified), or ``None`` while DUDE has not produced it."""
        answer = self._call("GET", f"/lots/{id_lot}/compte-rendu")
        if answer.status_code == 200:
            return answer.body
        if answer.status_code in (202, 204):
            return None
        if answer.status_code == 404:
            raise NoReport(f"DUDE knows no report for envelope {id_lot}")
        _refused_access(f"GET report {id_lot}", answer)
        raise RemoteServerError(f"GET report {id_lot}: unexpected {_said(answer)}", status_code=answer.status_code)


    def probe(self) -> tuple[int, str | None, str | None]:
        """Whether DUDE's exchange endpoint is at ``base_url``, without sending anything: the report of an
        ``IdLot`` no envelope ever had. DUDE answers 404 with its code ``NO_REPORT``; anything else that answers
        (another 404, a proxy's page, a redirection) is not DUDE's endpoint. Returns the status, the problem's
        code and a redirection's ``Location``; raises `TransportError` (no answer) or `RemoteServerError` (5xx)
        as every call does."""
        answer = self._call("GET", f"/lots/{PROBE_ID_LOT}/compte-rendu")
        return answer.status_code, one_line(_problem(answer).get("code"), CODE_MAX), answer.location


#: No envelope has it (ours are UUID4: version 4, never all zeros).
PROBE_ID_LOT = "00000000-0000-0000-0000-000000000000"


def _problem(answer: Answer) -> dict:
    if "json" not in answer.content_type:
        return {}
    try:
        value = json.loads(answer.body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def one_line(value: object, limit: int) -> str | None:
    """Text DUDE wrote, fit for one log line: control characters removed, cut to ``limit`` characters;
    ``None`` for anything else (a number, an object, nothing but blanks)."""
    if not isinstance(value, str):
        return None
    text = _CONTROLS.sub("", value).strip()
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return text or None


#: The statuses by which DUDE, or what stands before it, refuses the gateway itself rather than one request.
ACCESS_REFUSED_STATUSES = frozenset({401, 403})


def _refused_access(call: str, answer: Answer) -> None:
    """Raise `AccessRefused` if ``answer`` refuses the gateway itself (401, 403). Not in `_call`: `probe` returns
    such a status to `gateway check`, which words it."""
    if answer.status_code in ACCESS_REFUSED_STATUSES:
        raise AccessRefused(f"{call}: access refused, {_said(answer)}", status_code=answer.status_code)


def _said(answer: Answer) -> str:
    """An answer we did not expect, as an error message may carry it (see the module's docstring): a problem
    document's ``code`` and ``title`` (RFC 9457: the same for every occurrence of the problem), else the
    content type and the size of the body."""
    status = f"HTTP {answer.status_code}"
    if PROBLEM in answer.content_type.lower():
        problem = _problem(answer)
        code, title = one_line(problem.get("code"), CODE_MAX), one_line(problem.get("title"), TITLE_MAX)
        if code or title:
            return f"{status} {code or '(no code)'}" + (f" ({title})" if title else "")
    kind = one_line(answer.content_type.partition(";")[0], CODE_MAX) or "no content type"
    return f"{status} ({kind}, {len(answer.body)} bytes)"
