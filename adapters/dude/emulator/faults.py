"""Faults on demand: the seam through which the emulator misbehaves like a real peer (brief §1, §4).

The brief asks for an emulator that plays DUDE "faithfully (… delayed reports, faults on demand)",
and §4 warns that "a report may arrive twice, late, or never". Everything that can go wrong is a
field of `Faults`, all off by default, and `Emulator` consults one `Faults` value, read once per call
(so a change made while an envelope is being processed never applies to half of it), at points
marked ``# FAULT POINT <name>`` in ``core.py``:

``before-receive``
    latency (``latency_seconds`` plus up to ``latency_jitter_seconds``); a share of answers
    ``error_status`` (5xx) with nothing processed (``error_share``); every envelope holding one of
    ``poison_keys`` answered HTTP 500, nothing processed (an event DUDE cannot digest).
``after-receipt``
    the envelope processed and recorded, then: its answer held back past the client's time-out
    (``timeout_share``, ``timeout_seconds``), the connection cut before the receipt is out
    (``cut_share``), or the receipt's signature broken on the way (``bad_receipt_signature_share``).
    The time-out and the cut are carried out by the door (`EmulatorAnswer.fault`): the HTTP app
    sleeps or closes the socket, ``mock_transport`` raises httpx's own exception at once.
``report-availability``
    when the report becomes available: ``report_delay_seconds``, a share made late by
    ``report_late_seconds`` more, a share lost for good (``report_loss_share``: never polled, never
    pushed), and, with ``reports_out_of_order``, a random extra delay so reports come due in
    another order than their envelopes came in.
``report-delivery``
    pushing to the callback: a share of reports pushed twice (``report_duplicate_share``), and with
    ``reports_out_of_order`` each round's reports pushed in a shuffled order.

**Deterministic under a seed.** No decision uses a shared random generator whose state depends on
thread timing: each is drawn from SHA-256 of (``seed``, the fault point, what it is about — the
posted body's digest or the ``IdLot`` — and how many times that was seen). The same night with the
same seed meets the same faults, whichever order two sender threads post in.

Swap faults at run time with ``emulator.faults = Faults(...)``, or over HTTP with ``PUT /dude/v1/pannes``
(JSON, `Faults.from_mapping`); `Faults` is frozen so that a value seen by a call cannot change under it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

#: How far in the future a lost report is "available": never, in practice, and easy to count.
LOST_REPORT_AT = "9999-12-31T00:00:00.000000+00:00"

_SHARES = ("error_share", "timeout_share", "cut_share", "bad_receipt_signature_share", "report_loss_share",
           "report_late_share", "report_duplicate_share")
_SECONDS = ("latency_seconds", "latency_jitter_seconds", "timeout_seconds", "report_late_seconds")


@dataclass(frozen=True, slots=True)
class Faults:
    """Which faults are on. Every default is "behave": ``Faults()`` is a well-behaved DUDE.

    ``Faults(seed=7, error_share=0.1, cut_share=0.05, report_loss_share=0.02)``: one post in ten
    answered 503, one in twenty processed but cut before the receipt, one report in fifty lost.
    """

    #: Seed of every decision below (same seed, same faults).
    seed: int = 0
    latency_seconds: float = 0.0
    latency_jitter_seconds: float = 0.0
    #: Share of ``POST /lots`` answered ``error_status`` before anything is read or recorded.
    error_share: float = 0.0
    error_status: int = 503
    #: Event keys (``code_ml-id_evenement``) whose envelope DUDE always answers HTTP 500 ("poison").
    poison_keys: frozenset[str] = frozenset()
    #: Share of processed envelopes whose receipt comes ``timeout_seconds`` late (after the client gave up).
    timeout_share: float = 0.0
    timeout_seconds: float = 30.0
    #: Share of processed envelopes whose connection is cut before the receipt is out.
    cut_share: float = 0.0
    #: Share of receipts whose signature value has one bit flipped on the way.
    bad_receipt_signature_share: float = 0.0
    #: Overrides `EmulatorConfig.report_delay_seconds` for envelopes received while set.
    report_delay_seconds: float | None = None
    report_loss_share: float = 0.0
    report_late_share: float = 0.0
    report_late_seconds: float = 60.0
    report_duplicate_share: float = 0.0
    reports_out_of_order: bool = False

    def __post_init__(self) -> None:
        for name in _SHARES:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a share between 0 and 1, not {value!r}")
        for name in _SECONDS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
        if self.report_delay_seconds is not None and not (
                isinstance(self.report_delay_seconds, (int, float)) and self.report_delay_seconds >= 0):
            raise ValueError("report_delay_seconds must be >= 0")
        if not isinstance(self.error_status, int) or not 500 <= self.error_status <= 599:
            raise ValueError(f"error_status must be a 5xx status, not {self.error_status!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, not {self.seed!r}")
        if not isinstance(self.poison_keys, frozenset):
            if isinstance(self.poison_keys, str):
                raise ValueError("poison_keys must be a list of event keys")
            object.__setattr__(self, "poison_keys", frozenset(self.poison_keys))

    @property
    def any(self) -> bool:
        """Whether any fault is on (for logs and the ledger endpoint); the seed alone is no fault."""
        return self != Faults(seed=self.seed)

    # -- decisions -----------------------------------------------------------------------------------

    def draw(self, point: str, *about: object) -> float:
        """A number in [0, 1) fixed by the seed, the fault point and what it is about."""
        text = "|".join((str(self.seed), point, *map(str, about)))
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64

    def happens(self, share: float, point: str, *about: object) -> bool:
        return share > 0 and self.draw(point, *about) < share

    def latency(self, *about: object) -> float:
        if not self.latency_jitter_seconds:
            return self.latency_seconds
        return self.latency_seconds + self.latency_jitter_seconds * self.draw("latency", *about)

    # -- JSON ----------------------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["poison_keys"] = sorted(self.poison_keys)
        return values

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Faults:
        """From JSON (``PUT /dude/v1/pannes``, ``--faults``); raises ValueError naming what is wrong.

        Fields left out keep their "behave" default: the JSON describes the whole set of faults on.
        """
        if not isinstance(values, Mapping):
            raise ValueError("faults must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        data = dict(values)
        if "poison_keys" in data:
            keys = data["poison_keys"]
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise ValueError("poison_keys must be a list of event keys")
            data["poison_keys"] = frozenset(keys)
        for name in (*_SHARES, *_SECONDS):  # JSON integers are fine where seconds or shares are expected
            if isinstance(data.get(name), int) and not isinstance(data.get(name), bool):
                data[name] = float(data[name])
        if "reports_out_of_order" in data and not isinstance(data["reports_out_of_order"], bool):
            raise ValueError("reports_out_of_order must be true or false")
        return cls(**data)


NO_FAULTS = Faults()
