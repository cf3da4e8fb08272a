"""Faults on demand: the seam through which the emulator misbehaves like a real peer (brief §1, §4).

The brief asks for an emulator that plays DUDE "faithfully (… delayed reports, faults on demand)",
and §4 warns that "a report may arrive twice, late, or never". Everything that can go wrong is a
field of `Faults`, all off by default, and `Emulator` consults one `Faults` value, read once per call
(so a change made while an envelope is being processed never applies to half of it), at points
marked ``# FAULT POINT <name>`` in ``core.py``:

``before-receive``
    latency, a share of 5xx answers, a timeout (planned)
``after-receipt``
    the connection cut after the receipt is produced, the envelope being processed anyway;
    a broken receipt signature (planned)
``report-availability``
    how long the report takes to become available: ``report_delay_seconds`` (implemented)
``report-delivery``
    reports lost, duplicated, late or delivered out of order (planned)

Swap faults at run time with ``emulator.faults = Faults(...)``; `Faults` is frozen so that a value
seen by a call cannot change under it.
"""

from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True, slots=True)
class Faults:
    """Which faults are on. Every default is "behave": ``Faults()`` is a well-behaved DUDE."""

    #: Overrides `EmulatorConfig.report_delay_seconds` for envelopes received while set (None: use
    #: the configured delay). A long delay makes reports "late"; the gateway then polls or gives up.
    report_delay_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.report_delay_seconds is not None and self.report_delay_seconds < 0:
            raise ValueError("report_delay_seconds must be >= 0")

    @property
    def any(self) -> bool:
        """Whether any fault is on (for logs and the ledger endpoint)."""
        return self != NO_FAULTS


NO_FAULTS = Faults()
