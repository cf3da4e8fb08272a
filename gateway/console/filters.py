"""The rejects list's filter, as read from a query string or a form, and back (issue 4).

One value object serves the list, its CSV export, the resend-by-filter confirmation and the resend itself,
so that what is confirmed is exactly what was listed and what is resent is exactly what was confirmed.
Reading is forgiving, as a person types: a value that cannot be read is named in ``errors`` and left
out of the filter (the page says so) instead of failing the page. The user's scope is added when the
`EventFilter` is built, never taken from the request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from urllib.parse import urlencode

from sqlalchemy import and_, or_

from gateway.codes import ACTIONABLE_EVENT_STATES, EventState, RejectCode
from gateway.console.labels import ID_LOT, STATE_SHORT
from gateway.store.queries import EventFilter

#: The states offered by the list: to handle first, then already handled.
STATE_CHOICES = (EventState.INVALIDE, EventState.REJETE, EventState.SANS_REPONSE, EventState.EN_ATTENTE,
                 EventState.CORRIGE, EventState.CLOS)
#: What the list shows when no state is chosen: what is waiting for someone.
DEFAULT_STATES = tuple(s.value for s in STATE_CHOICES if s in ACTIONABLE_EVENT_STATES)
_ML = re.compile(r"[0-9]{5}")
_EVENT_NUMBER = re.compile(r"[0-9]{1,20}")
_FR_DATE = re.compile(r"(\d{2})/(\d{2})/(\d{4})")
#: A key as the command line prints it, with its version after it (``69001-1001 v2``): the key is searched.
_PRINTED_VERSION = re.compile(r"\s+v\d{1,9}$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SearchFilter(EventFilter):
    """The store's filter, and one thing the search box adds: five digits alone are a mission locale's code as
    much as an event number (a key is ``code_ml-id_evenement``, brief §4), so ``62899`` finds that mission
    locale's events as ``62899-`` does, and the events numbered 62899 as before, both within the scope.

    A subclass, not a change to `EventFilter` (the API's and the command line's), whose clauses it reuses."""

    ml_or_number: str | None = None

    def where(self) -> list:
        clauses = EventFilter.where(self)  # zero-argument super() fails in a slots dataclass on Python 3.11
        if self.ml_or_number:
            clauses.append(or_(and_(*EventFilter(key_prefix=f"{self.ml_or_number}-").where()),
                               and_(*EventFilter(event_number=self.ml_or_number).where())))
        return clauses


def _date(text: str) -> date:
    text = text.strip()
    if m := _FR_DATE.fullmatch(text):
        return date(int(m[3]), int(m[2]), int(m[1]))
    return date.fromisoformat(text)


def _get(params: Mapping, name: str) -> str:
    value = params.get(name)
    return value.strip() if isinstance(value, str) else ""


def _all(params, name: str) -> list[str]:
    getter = getattr(params, "getlist", None)
    values = getter(name) if getter else [params[name]] if name in params else []
    return [v for v in values if isinstance(v, str)]


@dataclass(frozen=True, slots=True)
class RejectsQuery:
    """Criteria of the rejects list; French parameter names, as they appear in the console's addresses."""

    code_ml: str | None = None
    reject_code: str | None = None
    states: tuple[str, ...] = DEFAULT_STATES
    run_id: int | None = None
    date_from: date | None = None
    date_to: date | None = None
    search: str | None = None
    #: An envelope's IdLot: its events (those it was the last to carry), from the envelope's page.
    envelope_id: str | None = None
    errors: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_params(cls, params: Mapping) -> RejectsQuery:
        errors: list[str] = []
        code_ml = _get(params, "ml") or None
        if code_ml and not _ML.fullmatch(code_ml):
            errors.append(f"Mission locale « {code_ml} » : cinq chiffres attendus.")
            code_ml = None
        code = _get(params, "code").upper() or None
        if code and code not in RejectCode.__members__:
            errors.append(f"Code de rejet « {code} » inconnu.")
            code = None
        chosen = _all(params, "etat")
        unknown = [s for s in chosen if s not in {c.value for c in STATE_CHOICES}]
        if unknown:  # said, like the other criteria: a list silently wider than asked misleads
            errors.append(f"État « {', '.join(unknown)} » : cette liste montre les états "
                          f"{', '.join(STATE_SHORT[c.value] for c in STATE_CHOICES)}.")
        states = tuple(s.value for s in STATE_CHOICES if s.value in chosen) or DEFAULT_STATES
        run_id = None
        if text := _get(params, "nuit"):
            if text.isdigit() and len(text) < 10:
                run_id = int(text)
            else:
                errors.append(f"Exécution « {text} » : numéro attendu.")
        bounds = []
        for name, label in (("du", "Date de début"), ("au", "Date de fin")):
            text = _get(params, name)
            value = None
            if text:
                try:
                    value = _date(text)
                except ValueError:
                    errors.append(f"{label} « {text} » : date JJ/MM/AAAA attendue.")
            bounds.append(value)
        if bounds[0] and bounds[1] and bounds[0] > bounds[1]:  # no day between them: an empty list, unexplained
            errors.append(f"Dates inversées : du {bounds[0]:%d/%m/%Y} au {bounds[1]:%d/%m/%Y}, aucun jour entre "
                          "les deux.")
            bounds = [None, None]
        search = _PRINTED_VERSION.sub("", _get(params, "recherche")[:120]) or None
        envelope_id = _get(params, "lot").lower() or None
        if envelope_id and not ID_LOT.fullmatch(envelope_id):
            errors.append(f"Lot « {envelope_id[:40]} » : IdLot attendu (36 caractères, comme "
                          "5b593516-0c2e-4f8a-9d1b-3c7e2a6f8e10).")
            envelope_id = None
        return cls(code_ml, code, states, run_id, bounds[0], bounds[1], search, envelope_id, tuple(errors))

    def without_unknown_run(self, scope: frozenset[str] | None) -> RejectsQuery:
        """These criteria without their night, which the store does not have (or not for ``scope``), and
        saying so like an unreadable criterion: an empty list would read as a night without rejects."""
        where = "" if scope is None else " ou n'a lu ni envoyé aucun événement de vos missions locales"
        return replace(self, run_id=None,
                       errors=(*self.errors, f"Exécution n° {self.run_id} : elle n'existe pas{where}."))

    def without_foreign_ml(self) -> RejectsQuery:
        """These criteria without a mission locale the user does not see: an empty list said nothing, and the
        resend's confirmation said its events were "déjà renvoyés, clos, ou acceptés"."""
        return replace(self, code_ml=None,
                       errors=(*self.errors, f"Mission locale « {self.code_ml} » : hors de vos missions locales."))

    def without_unknown_envelope(self) -> RejectsQuery:
        """These criteria without their envelope, which the store does not have or the user may not open
        (answered alike, as on the envelope's own page), said like an unreadable criterion."""
        return replace(self, envelope_id=None,
                       errors=(*self.errors, f"Lot « {self.envelope_id} » : introuvable."))

    def event_filter(self, scope: frozenset[str] | None, *, identifiant_pe_pattern: str) -> EventFilter:
        """The store's filter, within ``scope``. The search box holds a key or its beginning (a whole key
        begins itself), a jobseeker id (told apart by the configured jobseeker-id format) or the Parcours 3
        event number alone (digits: the key after its dash, in any mission locale of the scope), which is
        what a counsellor usually reads out; five digits are also a mission locale's code (`SearchFilter`)."""
        key = pe = number = ml_or_number = None
        if self.search:
            if re.fullmatch(identifiant_pe_pattern, self.search.upper()):
                pe = self.search.upper()
            elif _ML.fullmatch(self.search):
                ml_or_number = self.search
            elif _EVENT_NUMBER.fullmatch(self.search):
                number = self.search
            else:
                key = self.search
        return SearchFilter(states=self.states, reject_code=self.reject_code, code_ml=self.code_ml,
                            code_ml_in=scope, key_prefix=key, event_number=number, identifiant_pe=pe,
                            run_id=self.run_id, date_from=self.date_from, date_to=self.date_to,
                            envelope_id=self.envelope_id, ml_or_number=ml_or_number)

    def params(self) -> list[tuple[str, str]]:
        """The criteria as query parameters (only those set; the default states left implicit)."""
        out: list[tuple[str, str]] = []
        if self.code_ml:
            out.append(("ml", self.code_ml))
        if self.reject_code:
            out.append(("code", self.reject_code))
        if self.states != DEFAULT_STATES:
            out += [("etat", s) for s in self.states]
        if self.run_id is not None:
            out.append(("nuit", str(self.run_id)))
        if self.date_from:
            out.append(("du", self.date_from.isoformat()))
        if self.date_to:
            out.append(("au", self.date_to.isoformat()))
        if self.search:
            out.append(("recherche", self.search))
        if self.envelope_id:
            out.append(("lot", self.envelope_id))
        return out

    def query(self, **extra: str | int | None) -> str:
        """``?…`` for a link keeping these criteria, with ``extra`` parameters (``None`` values left out)."""
        pairs = self.params() + [(k, str(v)) for k, v in extra.items() if v is not None]
        return "?" + urlencode(pairs) if pairs else ""

    def describe(self) -> list[str]:
        """The criteria in words, for the confirmation page and the CSV's file name."""
        out = []
        if self.code_ml:
            out.append(f"mission locale {self.code_ml}")
        if self.reject_code:
            out.append(f"code {self.reject_code} ({RejectCode(self.reject_code).label})")
        out.append("état " + " ou ".join(f"« {STATE_SHORT.get(s, s)} »" for s in self.states))
        if self.run_id is not None:
            out.append(f"lus par l'exécution n° {self.run_id}")
        if self.date_from:
            out.append(f"événements du {self.date_from:%d/%m/%Y} ou après")
        if self.date_to:
            out.append(f"événements du {self.date_to:%d/%m/%Y} ou avant")
        if self.search:
            out.append(f"recherche « {self.search} »")
        if self.envelope_id:
            out.append(f"envoyés en dernier dans le lot {self.envelope_id}")
        return out

    def file_name(self, now: datetime, scope: frozenset[str] | None) -> str:
        """``rejets-<mission locale>[-<code>][-nuit<n>]-<AAAAMMJJ>.csv``: a counsellor's report is one
        mission locale's (the filter's, or the only one the user sees)."""
        ml = self.code_ml or (next(iter(scope)) if scope is not None and len(scope) == 1 else "toutes-ml")
        parts = ["rejets", ml]
        if self.reject_code:
            parts.append(self.reject_code)
        if self.run_id is not None:
            parts.append(f"nuit{self.run_id}")
        if self.envelope_id:
            parts.append(f"lot{self.envelope_id[:8]}")
        return "-".join(parts) + f"-{now:%Y%m%d}.csv"
