"""Events submitted as JSON (by the partner API, later by the console): pre-flight, then the store.

The same road as a Parcours 3 export (brief §2): each object goes through
`adapters.parcours3.partner_json.parse_item` (the P3 pre-flight rules), then all the accepted ones
through one `gateway.pipeline.ingest.ingest` call, in one transaction, so a request is stored whole
or not at all. Idempotency is ingest's: the same key with the same content as its latest version
adds nothing, and the answer is that version's key, version and state.

So is replay: ingest never reads the same line of the same file twice (the same content at the same
place as any earlier version adds nothing: rereading an export whose lines modify each other sends
nothing), and a request's "file" is ``API:<client>:<request id>``, its "line" an event's position.
The request id being the caller's ``X-Request-ID`` when it sends one, a request retried under the
same id adds nothing for an event it had stored, even after a newer version with other content came
in between (a late retry does not undo a later correction); the answer is ``DEJA_RECU`` with the
*latest* version. Without the header, the id is drawn per request and only the latest content counts.
The partner API documents it (`gateway.api.routes.events.REPLAY`).

Decided here, where the issue left it open:

* **another mission locale** — an event whose ``code_ml`` is outside the caller's scope is refused
  on its own (``FORBIDDEN``), not stored, and the rest of the request goes on;
* **no key** — an event whose ``code_ml`` or ``id_evenement`` cannot be read is not stored: it could
  be neither scoped, nor found, nor resent, and unlike a line of a nightly file the partner has the
  verdict in hand. The API's schema requires both (a 422 naming the field); any other caller gets
  such an event refused on its own here (``E09`` naming the field);
* **the same key twice in one request** — the same content again is one event sent twice (a batch that
  repeats a line): the repeat is answered as a resubmission is, ``DEJA_RECU`` with the first's version and
  state; another content is refused (``CONFLICT``): a request holds at most one version of an event, so
  that sending the same request again is always harmless;
* **where it came from** — ``source_file`` is ``API:<client>:<request id>`` and ``source_line`` the
  position in the request (from 1), so support staff can trace an event to the call that brought it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy.exc import IntegrityError, OperationalError

from adapters.parcours3.partner_json import parse_item
from gateway.context import Gateway
from gateway.errors import Conflict
from gateway.pipeline.ingest import Answer, ingest
from gateway.preflight import Outcome, PreflightConfig, Rejection, Valid

API_SOURCE_PREFIX = "API:"

CREATED, NEW_VERSION, ALREADY, REFUSED = "CREE", "NOUVELLE_VERSION", "DEJA_RECU", "REFUSE"

#: One submission at a time per process: two requests racing on the same new key would otherwise
#: both compute version 1 (the unique constraint would refuse one of them).
_INTAKE_LOCK = threading.Lock()
_ATTEMPTS = 3


class ItemResult(NamedTuple):
    """The verdict on one submitted event, at ``index`` in the request (a tuple: a bulk request builds
    thousands, a frozen dataclass took twice as long to build)."""

    index: int
    outcome: str
    key: str | None = None
    version: int | None = None
    state: str | None = None
    code: str | None = None
    message: str | None = None
    field: str | None = None

    @property
    def stored(self) -> bool:
        return self.outcome != REFUSED


@dataclass(frozen=True, slots=True)
class SubmissionResult:
    request_id: str
    results: list[ItemResult]

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.outcome for r in self.results))


def is_api_source(source_file: str | None) -> bool:
    return bool(source_file) and source_file.startswith(API_SOURCE_PREFIX)


def submit(gw: Gateway, items: Sequence[Mapping[str, Any]], *, client: str, scope: frozenset[str] | None,
           request_id: str) -> SubmissionResult:
    """Check and store ``items``; ``scope`` is the caller's missions locales (``None``: all)."""
    config = PreflightConfig.from_settings(gw.settings)
    source = f"{API_SOURCE_PREFIX}{client}:{request_id}"[:255]
    results: list[ItemResult | None] = [None] * len(items)
    accepted: list[tuple[int, Outcome]] = []
    first: dict[str, tuple[int, Outcome]] = {}
    repeats: list[tuple[int, int]] = []  # (index, index of the same event earlier in the request)
    for index, item in enumerate(items):
        outcome = parse_item(item, config, source_file=source, source_line=index + 1)
        key = outcome.key
        if key is None:
            results[index] = ItemResult(index, REFUSED, code=outcome.code.value, message=outcome.message,
                                        field=outcome.field)
            continue
        code_ml = key.partition("-")[0]
        if scope is not None and code_ml not in scope:
            results[index] = ItemResult(index, REFUSED, key=key, code="FORBIDDEN", field="code_ml",
                                        message=f"La mission locale {code_ml} n'est pas dans le périmètre "
                                                "de ce client : événement refusé, non enregistré.")
            continue
        if key in first:
            earlier, earlier_outcome = first[key]
            if _same_content(outcome, earlier_outcome):
                repeats.append((index, earlier))
                continue
            results[index] = ItemResult(index, REFUSED, key=key, code="CONFLICT", field="id_evenement",
                                        message=f"L'événement {key} figure déjà à la position {earlier} de la "
                                                "requête (comptée à partir de 0, comme `index`) avec un autre "
                                                "contenu : une version par événement et par requête.")
            continue
        first[key] = (index, outcome)
        accepted.append((index, outcome))
    if accepted:
        for index, result in _store(gw, accepted):
            results[index] = result
    for index, earlier in repeats:
        results[index] = results[earlier]._replace(index=index, outcome=ALREADY)
    return SubmissionResult(request_id, [r for r in results if r is not None])


def _same_content(a: Outcome, b: Outcome) -> bool:
    """Whether two items of one request say the same thing of one event (the same fields, or the same
    refusal of the same fields)."""
    if isinstance(a, Valid) and isinstance(b, Valid):
        return a.event == b.event
    if isinstance(a, Rejection) and isinstance(b, Rejection):
        return (a.code, a.fields) == (b.code, b.fields)
    return False


def _store(gw: Gateway, accepted: list[tuple[int, Outcome]]) -> list[tuple[int, ItemResult]]:
    """One `ingest` call for the whole request, in one transaction; its `Answer` for each key is the
    answer (a request holds each key once: the key's latest version is either the one this request
    added, or, when it added nothing, the latest there was: the same content, or a newer one when the
    request is a retry of one that had stored this content, under the same request id)."""
    outcomes = [outcome for _, outcome in accepted]
    for attempt in range(1, _ATTEMPTS + 1):
        answers: dict[str, Answer] = {}
        try:
            with _INTAKE_LOCK, gw.engine.begin() as conn:
                ingest(gw.engine, outcomes, run_id=None, now=gw.clock(), connection=conn, answers=answers)
            break
        except (IntegrityError, OperationalError) as exc:  # another process stored the same key first
            if attempt == _ATTEMPTS:
                raise Conflict("des événements de cette requête sont enregistrés au même moment par "
                               "une autre requête : la renvoyer") from exc
    results = []
    for index, outcome in accepted:
        key = outcome.key
        answer = answers[key]
        if not answer.stored:
            kind = ALREADY
        else:
            kind = CREATED if answer.version == 1 else NEW_VERSION
        code = answer.reject_code
        results.append((index, ItemResult(index, kind, key=key, version=answer.version, state=answer.state,
                                          code=code, message=answer.reject_message,
                                          field=answer.reject_field)))
    return results
