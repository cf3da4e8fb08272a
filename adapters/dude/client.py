"""The HTTP client for DUDE's exchange endpoint (the emulator's, or a real one).

Routes (relative to ``dude_url``): ``POST /lots`` with a signed envelope, answered by a signed
``AccuseReception``; ``GET /lots/{IdLot}/compte-rendu``, answered by the signed ``CompteRendu``
(200), "not yet" (202), or an unknown lot (404).

httpx's errors are translated here and only here: a connection failure or a time-out is a
`TransportError`, a 5xx a `RemoteServerError` — both mean "try again later, with the same IdLot".
Tests swap the network for the emulator in-process by passing ``transport=mock_transport(emulator)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from gateway.errors import EnvelopeRefused, NoReport, RemoteServerError, TransportError

XML = "application/xml"


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
        except httpx.HTTPError as exc:
            raise TransportError(f"{method} {url}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise RemoteServerError(f"{method} {url}: HTTP {response.status_code}", status_code=response.status_code)
        return Answer(response.status_code, response.content, response.headers.get("content-type", ""),
                      response.headers.get("location"))

    def post_envelope(self, body: bytes) -> bytes:
        """Send a signed envelope; return the receipt's bytes (not yet verified).

        A 400 answer without a receipt (DUDE could not even read the envelope's id) becomes a
        `EnvelopeRefused` carrying DUDE's code.
        """
        answer = self._call("POST", "/lots", content=body, headers={"Content-Type": XML})
        if answer.status_code == 200:
            return answer.body
        problem = _problem(answer)
        if answer.status_code in (400, 413, 422) and problem.get("code", "").startswith("L"):
            raise EnvelopeRefused(problem.get("detail") or problem.get("title") or "refused",
                                   code=problem["code"])
        raise RemoteServerError(f"POST /lots: unexpected HTTP {answer.status_code}: {problem or answer.body[:200]!r}")

    def get_report(self, id_lot: str) -> bytes | None:
        """The report's bytes (not yet verified), or ``None`` while DUDE has not produced it."""
        answer = self._call("GET", f"/lots/{id_lot}/compte-rendu")
        if answer.status_code == 200:
            return answer.body
        if answer.status_code in (202, 204):
            return None
        if answer.status_code == 404:
            raise NoReport(f"DUDE knows no report for envelope {id_lot}")
        raise RemoteServerError(f"GET report {id_lot}: unexpected HTTP {answer.status_code}")


    def probe(self) -> tuple[int, str | None, str | None]:
        """Whether DUDE's exchange endpoint is at ``base_url``, without sending anything: the report of an
        ``IdLot`` no envelope ever had. DUDE answers 404 with its code ``NO_REPORT``; anything else that answers
        (another 404, a proxy's page, a redirection) is not DUDE's endpoint. Returns the status, the problem's
        code and a redirection's ``Location``; raises `TransportError` (no answer) or `RemoteServerError` (5xx)
        as every call does."""
        answer = self._call("GET", f"/lots/{PROBE_ID_LOT}/compte-rendu")
        return answer.status_code, _problem(answer).get("code"), answer.location


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
