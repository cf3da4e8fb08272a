"""Sealing a run's envelopes in a child process, while the run's thread goes on storing (issue 7).

Why a child process: in a night the run's main thread sets the pace. It stores every line, seals every
envelope and records every receipt and report, and the other core waits for it (`bench/timeline.py`).
Building an envelope's tree, the XSD check, the signature and the serialisation are ~0.5 s of its ~3 s
for 20,000 events, and they need nothing from the store: they can be done elsewhere, from the events
read for the envelope. A *thread* would not do: lxml's XSD validation releases and retakes the
interpreter lock so often that beside a busy Python thread it took 23 times longer (1,227 ms instead
of 52 for 5,000 events). So a child process seals, one envelope at a time, and the run only reads the
envelope's events before (`dispatch.claim_pending`) and stores the signed bytes after
(`dispatch.store_claim`), in one transaction, as `dispatch.seal_next` does: the outbox rule holds, an
envelope and its events are written before it is sent.

Nothing is lost whatever stops: the child writes nothing, and the events it seals stay ``EN_ATTENTE``
until the run stores the envelope. A claim is optimistic: if another instance seals some of those
events meanwhile, storing fails and the rest is sealed again. Whenever the child cannot seal an
envelope (an event the XSD refuses, a character XML cannot carry, the child gone or silent), the run
seals it itself with `dispatch.seal_next`, which finds the culprits and marks them ``INVALIDE``; once the
child is gone, the run seals everything itself, as with ``seal_in_subprocess = false``.

The child runs `gateway.pipeline.sealing_child`: a fresh interpreter, not a fork, for the reason the
export reader's is (`gateway.pipeline.reading`): a run's process has other threads. It loads the signing
key once (its password, if any, comes through the pipe, never on a command line), and leaves when the
run closes the pipe or dies. Starting it costs ~0.25 s of CPU, so a run starts it only when its exports
hold at least two envelopes' worth of lines (one can then be sealed while the next is stored): a run of a
few events seals in its own thread.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from multiprocessing.connection import Connection

from gateway.context import Gateway
from gateway.keys import key_names
from gateway.pipeline import dispatch
from gateway.pipeline.reading import Prepared, start_child

log = logging.getLogger("gateway.sealing")

#: How long the run waits for one envelope before it takes the child for dead and seals it itself
#: (5,000 events take ~0.15 s; a machine swapping hard, much longer).
ANSWER_TIMEOUT = 120.0


class SealerGone(Exception):
    """The child stopped answering: the run seals in its own thread from now on."""


class Sealer:
    """The child process: ``submit`` one claim, then ``answer`` gives its signed bytes, or None when the
    child could not seal it (the run then seals it itself). One claim at a time."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        self.stats: dict[str, float] = {}  # the child's peak RSS and CPU time, once it is closed
        self._process: subprocess.Popen | None = None
        self._orders: Connection | None = None
        self._answers: Connection | None = None

    def __enter__(self) -> Sealer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Sealer:
        """Start the child and hand it the signing key's files; closes everything again if that fails."""
        try:
            orders_r, orders_w = os.pipe()
            answers_r, answers_w = os.pipe()
            self._orders = Connection(orders_w, readable=False)
            self._answers = Connection(answers_r, writable=False)
            self._process = start_child("gateway.pipeline.sealing_child", orders_r, answers_w)
            s = self.gw.settings
            self._orders.send((str(s.gateway_key_file), str(s.gateway_cert_file), s.key_password_bytes(),
                               key_names(s), s.sender_code, s.recipient_code))
        except BaseException:
            self.close()
            raise
        return self

    def submit(self, claim: dispatch.Claim) -> None:
        try:
            self._orders.send((claim.envelope_id, claim.produced_at, claim.items))
        except OSError as exc:
            raise SealerGone(f"the sealing process is gone ({exc})") from exc

    def ready(self) -> bool:
        """Whether the answer to the claim submitted is there (it is read without waiting)."""
        try:
            return self._answers.poll()
        except OSError:
            return True  # answer() says what happened

    def answer(self, claim: dispatch.Claim, *, timeout: float = ANSWER_TIMEOUT) -> bytes | None:
        try:
            if not self._answers.poll(timeout):
                raise SealerGone(f"the sealing process did not answer in {timeout:.0f} s")
            message = self._answers.recv()
        except (EOFError, OSError) as exc:
            raise SealerGone(f"the sealing process stopped (exit code {self._process.poll()})") from exc
        kind, envelope_id, detail = message
        if kind == "crashed":
            raise SealerGone(f"the sealing process failed:\n{detail}")
        if envelope_id != claim.envelope_id:  # a bug on one side or the other: do not store a mix-up
            raise SealerGone(f"the sealing process answered for {envelope_id}, {claim.envelope_id} was asked")
        if kind == "sealed":
            return detail
        log.info("envelope %s: not sealed by the sealing process (%s), sealed by the run", envelope_id, detail)
        return None

    def close(self) -> None:
        """Ask the child to leave (it sends its figures first); kill it if it does not within 5 s."""
        if self._orders is not None:
            try:
                self._orders.send(None)
            except OSError:
                pass
            self._orders.close()
        if self._answers is not None:
            try:
                if self._answers.poll(5):
                    message = self._answers.recv()
                    if message[0] == "done":
                        self.stats = {"peak_rss_mb": message[1], "cpu_seconds": message[2]}
            except (EOFError, OSError):
                pass
            self._answers.close()
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._orders = self._answers = self._process = None


class PipelinedSealing:
    """A run's sealing with a `Sealer`: the child seals one envelope while the run's thread stores the
    next lines; ``advance`` is called between two chunks of the exports, and once more at the end.

    ``on_sealed`` is called with each envelope stored (the run's dispatcher sends it at once)."""

    def __init__(self, gw: Gateway, sealer: Sealer | None, *, run_id: int | None, claimed_by: str | None,
                 records: dict[str, Prepared], on_sealed: Callable[[dispatch.SealedEnvelope], None] | None):
        self.gw, self.sealer = gw, sealer
        self.run_id, self.claimed_by, self.records, self.on_sealed = run_id, claimed_by, records, on_sealed
        self._claim: dispatch.Claim | None = None  # submitted, not yet stored

    def advance(self, at_least: int, *, finish: bool) -> list[dispatch.SealedEnvelope]:
        """Store the envelope the child has sealed, if it is ready (``finish``: wait for it), and hand it
        the next one while at least ``at_least`` events are pending; with ``finish``, go on until none is."""
        sealed: list[dispatch.SealedEnvelope] = []
        while True:
            if self._claim is not None:
                if not finish and not self.sealer.ready():
                    return sealed
                sealed += self._settle()
            if self.sealer is None:  # gone: the run seals the rest itself
                sealed += dispatch.seal_pending(self.gw, run_id=self.run_id, at_least=at_least,
                                                on_sealed=self.on_sealed, claimed_by=self.claimed_by,
                                                records=self.records)
                return sealed
            if at_least > 1 and dispatch.pending_count(self.gw) < at_least:
                return sealed
            claim = dispatch.claim_pending(self.gw, records=self.records)
            if claim is None:
                return sealed
            try:
                self.sealer.submit(claim)
            except SealerGone as exc:
                self._lost(exc)
                continue
            self._claim = claim
            if not finish:
                return sealed

    def _settle(self) -> list[dispatch.SealedEnvelope]:
        claim, self._claim = self._claim, None
        try:
            body = self.sealer.answer(claim)
        except SealerGone as exc:
            self._lost(exc)
            body = None
        if body is not None:  # stored, or None if another worker sealed some of its events (the rest wait)
            envelope = dispatch.store_claim(self.gw, claim, body, run_id=self.run_id, claimed_by=self.claimed_by)
        else:  # sealed here instead: its events are the first pending ones again (nothing else was claimed)
            envelope = dispatch.seal_one(self.gw, run_id=self.run_id, claimed_by=self.claimed_by)
        if envelope is None:
            return []
        if self.on_sealed:
            self.on_sealed(envelope)
        return [envelope]

    def _lost(self, exc: SealerGone) -> None:
        log.warning("sealing in a child process stopped, the run seals in its own thread: %s", exc)
        self.sealer.close()
        self.sealer = None
