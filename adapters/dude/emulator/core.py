"""The emulated DUDE endpoint as a plain handler: bytes in, `EmulatorAnswer` out (brief §4, STYLE.md 7).

`Emulator` knows nothing of HTTP servers: `adapters.dude.emulator.app` puts the same methods behind a
real ASGI app and behind an ``httpx.MockTransport``, so the gateway is tested against exactly what the
demo serves on a port.

Receiving an envelope (`Emulator.receive`), in the order of the issue, each step on what the previous
one let through:

1. size (``L07``, before parsing), then `safe_xml.parse` and the root element (``L03``);
2. the signature, by a trusted certificate valid now (``L01``/``L02``); from here on only the *signed*
   content is read (signxml's rule, `adapters.dude.signing`);
3. idempotency: an ``IdLot`` already in the ledger gets its first receipt back, byte for byte, and
   nothing is processed (§4);
4. the XSD (``L04``), the header count (``L05``), the sender (``L06``), the number of events (``L07``);
5. the business rules, event by event in document order (`rules.check`), the report built and
   signed at once but made available only ``report_delay_seconds`` later (§4: "produced later").

Every answer to a document whose ``IdLot`` can be read is HTTP 200 with a signed ``AccuseReception``
(``RECU`` or ``REJETE`` with its ``Motif``); without a readable ``IdLot`` there is nobody to address a
receipt to, and the answer is an RFC 9457 problem (HTTP 400, or 413 for a body over the size limit).
Only envelopes that passed the signature check are recorded: after ``L01``/``L02``/``L03`` the sender
may fix its key and post the same ``IdLot`` again; after ``L04``…``L07`` the same ``IdLot`` gets the
same ``REJETE`` receipt, so a corrected envelope needs a new ``IdLot``. A ``REJETE`` receipt says
``NombreEvenementsRecus`` 0 (nothing was taken in); its message gives the count found when it matters.

Faults on demand (`adapters.dude.emulator.faults`) are consulted at the ``# FAULT POINT`` comments.
Each fault that fires is logged at WARNING with the word ``FAULT``, the ``IdLot`` (or the body's digest
when none is read yet) and what was done, so that a test or an operator can tell a simulated failure
from a real one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from lxml import etree

from adapters.dude import safe_xml, schema
from adapters.dude.emulator import rules
from adapters.dude.emulator.config import EmulatorConfig
from adapters.dude.emulator.faults import Faults
from adapters.dude.emulator.ledger import REJETE, EventOutcome, Ledger, content_hash
from adapters.dude.emulator.registry import Registry
from adapters.dude.envelope import iter_events, peek_id_lot, read_header
from adapters.dude.events_xml import q, read_event
from adapters.dude.messages import RECU, EventResult, Receipt, Report, build_receipt, build_report
from adapters.dude.signing import Signer, TrustFolder, TrustStore, serialize
from gateway.codes import RejectCode
from gateway.errors import DocumentRejected, HostileXmlError, SchemaViolation

log = logging.getLogger(__name__)

XML = "application/xml"
JSON = "application/json"
PROBLEM = "application/problem+json"
_ID_LOT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # the XSD's IdLotType
_LOT_TAG = q("LotEvenements")


#: `EmulatorAnswer.fault` values: what the door must do instead of simply answering.
TIMEOUT, CUT = "timeout", "cut"


@dataclass(frozen=True, slots=True)
class EmulatorAnswer:
    """One HTTP answer, independent of any web framework.

    ``fault`` asks the door to misdeliver it (a fault on demand): ``"timeout"``, answer only after
    ``delay_seconds`` (the HTTP app sleeps; ``mock_transport`` raises ``httpx.ReadTimeout`` at once);
    ``"cut"``, close the connection before the body is out (``httpx.RemoteProtocolError`` /
    ``ReadError`` on the client's side).
    """

    status_code: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    fault: str | None = None
    delay_seconds: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


def problem(status: int, title: str, *, code: str, detail: str,
            headers: tuple[tuple[str, str], ...] = ()) -> EmulatorAnswer:
    """An RFC 9457 problem document carrying the project's stable ``code``."""
    body = {"type": "about:blank", "title": title, "status": status, "code": code, "detail": detail}
    return EmulatorAnswer(status, PROBLEM, json.dumps(body, ensure_ascii=False).encode("utf-8"), headers)


def json_answer(value: Any, status: int = 200) -> EmulatorAnswer:
    return EmulatorAnswer(status, JSON, json.dumps(value, ensure_ascii=False).encode("utf-8"))


class Emulator:
    """A DUDE that checks, decides, remembers and answers like the real one (brief §1, §4).

    Thread-safe: envelopes are parsed and their signatures checked concurrently; from the
    idempotency check to the ledger commit, one envelope at a time.
    """

    def __init__(self, config: EmulatorConfig, *, registry: Registry | None = None,
                 faults: Faults | None = None, http_client: httpx.Client | None = None):
        self.config = config
        #: The faults on; replace the whole value to change them (`Faults` is frozen).
        self.faults = faults or Faults()
        # A folder, key or certificate that cannot be used stops the emulator here (KEYS), named as its
        # configuration names it (`EmulatorConfig.key_names`): never the gateway's GATEWAY_KEY_FILE…
        self._trust = TrustFolder(config.trust_dir, names=config.key_names)
        self._trust.current()
        self._signer = Signer.from_files(config.key_file, config.cert_file, password=config.key_password,
                                         names=config.key_names)
        self._owns_registry = registry is None
        if registry is None:
            registry = Registry.from_csv(config.registry_file) if config.registry_file else Registry()
        self.registry = registry
        self.ledger = Ledger(config.ledger_path)
        self._lock = threading.RLock()
        self._sign_lock = threading.Lock()
        self._delivery_lock = threading.Lock()
        self._http = http_client
        self._owns_http = http_client is None
        #: How many times each body (by digest) and each IdLot was seen: the "how many times" of the
        #: seeded fault decisions (`Faults.draw`), so a resend meets a fresh draw, the same every run.
        self._seen: Counter[str] = Counter()
        self._seen_lock = threading.Lock()
        self._push_rounds = 0

    def close(self) -> None:
        if self._http is not None and self._owns_http:
            self._http.close()
        self.ledger.close()
        if self._owns_registry:
            self.registry.close()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- POST /lots ------------------------------------------------------------------------------

    def trust(self) -> TrustStore:
        """The certificates accepted now, read again when the trust folder changes (`TrustFolder`), as DUDE
        would take a gateway's new certificate without a restart. `gateway emulator serve` on a fresh folder
        makes only its own keys: the gateway's certificate, added by `gateway keys init`, is trusted from then."""
        return self._trust.current()

    def receive(self, body: bytes) -> EmulatorAnswer:
        """Answer one posted envelope with a signed receipt (or a problem when no IdLot is readable)."""
        faults = self.faults
        # FAULT POINT before-receive: latency, a share of 5xx answers (nothing read, nothing recorded).
        if faults.any:
            digest = hashlib.sha256(body).hexdigest()[:16]
            seen = self._count(f"post:{digest}")
            latency = faults.latency(digest, seen)
            if latency:
                time.sleep(latency)
            if faults.happens(faults.error_share, "error", digest, seen):
                log.warning("FAULT post %s (#%d): answered HTTP %d, nothing processed", digest, seen,
                            faults.error_status)
                return problem(faults.error_status, "Panne du DUDE (simulée)", code="DUDE_SERVER_ERROR",
                               detail="le DUDE n'a pas pu traiter la demande : réessayer plus tard")
        now = self.config.now()
        if len(body) > self.config.max_bytes:
            return self.refuse_too_large(len(body))
        try:
            root = safe_xml.parse(body, max_bytes=self.config.max_bytes, what="LotEvenements")
        except HostileXmlError as exc:
            log.warning("envelope refused L03 (no IdLot readable): %s", exc.message)
            return problem(400, RejectCode.L03.label, code="L03", detail=exc.message)
        if root.tag != _LOT_TAG:
            return self._refuse(_readable_id(root), now, RejectCode.L03,
                                f"racine {etree.QName(root).localname!r} au lieu de LotEvenements")
        try:
            signed = self.trust().verify(root, at=now).root
        except DocumentRejected as exc:
            return self._refuse(_readable_id(root), now, exc.reject, exc.message)
        id_lot = _readable_id(signed)  # from here on, only what was signed
        if id_lot is None:  # signed, but nothing to file it under (the XSD would refuse it too)
            return problem(400, RejectCode.L04.label, code="L04", detail="IdLot absent ou mal formé")
        # Parse, validate and read outside the lock (envelopes are checked concurrently), unless the
        # lot is already known: a replay costs a signature check and nothing more.
        lot = None if self.ledger.find_lot(id_lot) else _read_lot(signed, self.config)
        poisoned = faults.poison_keys and lot is not None and lot.records and sorted(
            {r["key"] for r in lot.records} & faults.poison_keys)
        if poisoned:  # FAULT POINT before-receive: an event DUDE cannot digest fails its whole envelope
            log.warning("FAULT lot %s holds poison event(s) %s: answered HTTP 500, nothing processed",
                        id_lot, ", ".join(poisoned))
            return problem(500, "Erreur interne du DUDE (simulée)", code="DUDE_SERVER_ERROR",
                           detail=f"le traitement du lot {id_lot} a échoué")
        with self._lock:  # from the idempotency check to the commit, one envelope at a time
            known = self.ledger.find_lot(id_lot)
            if known is not None:
                self.ledger.note_replay(id_lot)
                log.info("lot %s posted again: first receipt returned, nothing processed", id_lot)
                answer = EmulatorAnswer(200, XML, known.receipt)
            else:
                if lot is None:  # known a moment ago, forgotten since: impossible unless the ledger was reset
                    lot = _read_lot(signed, self.config)
                answer = (self._refuse_lot(id_lot, now, lot) if lot.refusal
                          else self._process(id_lot, now, lot, faults))
        # FAULT POINT after-receipt: the envelope is processed and recorded; its answer may still be lost.
        return self._after_receipt(answer, id_lot, faults) if faults.any else answer

    def _count(self, what: str) -> int:
        with self._seen_lock:
            self._seen[what] += 1
            return self._seen[what]

    def _after_receipt(self, answer: EmulatorAnswer, id_lot: str, faults: Faults) -> EmulatorAnswer:
        """Time-out, cut connection or broken signature, drawn for this IdLot's n-th answer."""
        seen = self._count(f"answer:{id_lot}")
        if faults.happens(faults.timeout_share, "timeout", id_lot, seen):
            log.warning("FAULT lot %s (answer #%d): receipt held back %.1f s (past the client's time-out)",
                        id_lot, seen, faults.timeout_seconds)
            return replace(answer, fault=TIMEOUT, delay_seconds=faults.timeout_seconds)
        if faults.happens(faults.cut_share, "cut", id_lot, seen):
            log.warning("FAULT lot %s (answer #%d): connection cut after the receipt was produced", id_lot, seen)
            return replace(answer, fault=CUT)
        if faults.happens(faults.bad_receipt_signature_share, "bad-signature", id_lot, seen):
            log.warning("FAULT lot %s (answer #%d): receipt signature broken on the way", id_lot, seen)
            return replace(answer, body=_flip_signature_bit(answer.body))
        return answer

    def refuse_too_large(self, size: int) -> EmulatorAnswer:
        """``L07`` before parsing: nothing of the body is read (HTTP 413)."""
        log.warning("envelope refused L07: %d bytes, at most %d", size, self.config.max_bytes)
        return problem(413, RejectCode.L07.label, code="L07",
                       detail=f"corps de {size} octets ou plus, au plus {self.config.max_bytes} acceptés")

    def _refuse_lot(self, id_lot: str, now: datetime, lot: _Lot) -> EmulatorAnswer:
        """A signed envelope refused as a whole (L04…L07): recorded, so a replay gets this receipt."""
        code, message = lot.refusal
        receipt = self._receipt(id_lot, now, code, f"{code.label} : {message}")
        self.ledger.record_rejected_lot(id_lot=id_lot, received_at=now, sender=lot.sender, code=code.value,
                                        event_count=lot.count, receipt=receipt)
        log.warning("lot %s refused %s: %s", id_lot, code.value, message)
        return EmulatorAnswer(200, XML, receipt)

    def _process(self, id_lot: str, now: datetime, lot: _Lot, faults: Faults) -> EmulatorAnswer:
        """The business rules, event by event in document order, then the report and the receipt."""
        today = self.config.today_at(now)
        view = self.ledger.snapshot(record["key"] for record in lot.records)
        # The envelope's people, looked up together (the registry lives on disk, not in memory).
        people = self.registry.find(record.get("identifiant_pe") or "" for record in lot.records)
        check, is_duplicate = rules.check, rules.is_duplicate
        outcomes, results = [], []
        rejected = duplicates = 0
        # Positional construction below: this loop runs for every event of the night.
        for record, digest in zip(lot.records, lot.digests, strict=True):
            key, version = record["key"], record["version"]
            duplicate = is_duplicate(record, digest, view)
            verdict = None if duplicate else check(record, content_hash=digest, registry=people, ledger=view,
                                                   today=today)
            if verdict is None:
                if duplicate:
                    duplicates += 1
                else:
                    view.accept(key, version, digest)
                outcomes.append(EventOutcome(key, version, digest, record["operation"], record.get("type_evenement"),
                                             True, None, None, not duplicate))
                results.append(EventResult(key, version, True))
            else:
                code, message = verdict
                rejected += 1
                outcomes.append(EventOutcome(key, version, digest, record["operation"], record.get("type_evenement"),
                                             False, code.value, message, False))
                results.append(EventResult(key, version, False, code, message))
        # FAULT POINT report-availability: how late the report becomes available, or never.
        delay = (faults.report_delay_seconds if faults.report_delay_seconds is not None
                 else self.config.report_delay_seconds)
        if faults.reports_out_of_order:  # due in another order than the envelopes came in
            delay += faults.draw("reorder", id_lot) * max(1.0, delay)
        if faults.happens(faults.report_late_share, "late", id_lot):
            delay += faults.report_late_seconds
            log.warning("FAULT lot %s: report made late by %.1f s", id_lot, faults.report_late_seconds)
        lost = faults.happens(faults.report_loss_share, "lost", id_lot)
        if lost:
            log.warning("FAULT lot %s: report lost (never polled, never pushed)", id_lot)
        available_at = now + timedelta(seconds=delay)
        report = self._sign(build_report(Report(id_lot=id_lot, processed_at=available_at,
                                                results=tuple(results))))
        receipt = self._receipt(id_lot, now, None, None, events=lot.count)
        self.ledger.record_processed_lot(id_lot=id_lot, received_at=now, sender=lot.sender, receipt=receipt,
                                         report=report, report_available_at=available_at, outcomes=outcomes,
                                         report_lost=lost)
        log.info("lot %s received: %d events, %d accepted (%d duplicates), %d rejected", id_lot,
                 lot.count, lot.count - rejected, duplicates, rejected)
        return EmulatorAnswer(200, XML, receipt)

    def _refuse(self, id_lot: str | None, now: datetime, code: RejectCode, detail: str) -> EmulatorAnswer:
        """Refuse a document that did not pass the signature check: answered, never recorded."""
        log.warning("lot %s refused %s: %s", id_lot or "(IdLot illisible)", code.value, detail)
        if id_lot is None:
            return problem(400, code.label, code=code.value, detail=detail)
        return EmulatorAnswer(200, XML, self._receipt(id_lot, now, code, f"{code.label} : {detail}"))

    def _receipt(self, id_lot: str, now: datetime, code: RejectCode | None, message: str | None, *,
                 events: int = 0) -> bytes:
        receipt = Receipt(id_lot=id_lot, received_at=now, status=RECU if code is None else REJETE,
                          events_received=events if code is None else 0, reject_code=code,
                          reject_message=message)
        return self._sign(build_receipt(receipt))

    def _sign(self, root: etree._Element) -> bytes:
        with self._sign_lock:  # one XMLSigner, shared: not documented as thread-safe
            return serialize(self._signer.sign(root))

    # -- GET /lots/{id}/compte-rendu -------------------------------------------------------------

    def report(self, id_lot: str) -> EmulatorAnswer:
        """200 with the signed report once available; 202 before; 404 (``NO_REPORT``) if none will come."""
        lot = self.ledger.find_lot(id_lot)
        if lot is None:
            return problem(404, "Lot inconnu", code="NO_REPORT", detail=f"aucun lot {id_lot} reçu")
        if lot.status == REJETE:
            return problem(404, "Lot rejeté en bloc : pas de compte rendu", code="NO_REPORT",
                           detail=f"lot {id_lot} rejeté {lot.reject_code} à la réception")
        now = self.config.now()
        if not lot.report_available(now):
            wait = (datetime.fromisoformat(lot.report_available_at) - now).total_seconds()
            return EmulatorAnswer(202, XML, b"", (("Retry-After", str(max(1, math.ceil(wait)))),))
        # Lost and late reports are decided when the report is made (report-availability): a lost one
        # stays "not yet" (202) for ever; a polled report may be fetched any number of times.
        return EmulatorAnswer(200, XML, lot.report)

    # -- pushing reports to the gateway ----------------------------------------------------------

    def deliver_due_reports(self) -> int:
        """POST each available, not yet pushed report to ``callback_url``; return how many were taken.

        A report is marked pushed on a 2xx answer only; the others are tried again on the next call.
        A connection failure stops this round (the callback is down: no point waiting on every lot).
        """
        url = self.config.callback_url
        if not url or not self._delivery_lock.acquire(blocking=False):
            return 0
        try:
            faults = self.faults
            due = self.ledger.due_reports(self.config.now())
            # FAULT POINT report-delivery (push): reorder `due`, push some twice (lost and late ones are
            # decided at report-availability: a lost report is never due).
            if faults.reports_out_of_order and len(due) > 1:
                self._push_rounds += 1
                due.sort(key=lambda item: faults.draw("push-order", self._push_rounds, item[0]))
            delivered = 0
            client = self._client()
            for id_lot, report in due:
                try:
                    response = client.post(url, content=report, headers={"Content-Type": XML})
                except httpx.HTTPError as exc:
                    log.warning("report %s: callback %s unreachable (%s); retried later", id_lot, url,
                                type(exc).__name__)
                    break
                if response.is_success:
                    self.ledger.mark_pushed(id_lot)
                    delivered += 1
                    if faults.happens(faults.report_duplicate_share, "duplicate", id_lot):
                        log.warning("FAULT lot %s: report pushed a second time", id_lot)
                        try:
                            if client.post(url, content=report, headers={"Content-Type": XML}).is_success:
                                self.ledger.mark_pushed(id_lot)
                        except httpx.HTTPError:
                            pass
                else:
                    log.warning("report %s: callback answered %d; retried later", id_lot,
                                response.status_code)
            return delivered
        finally:
            self._delivery_lock.release()

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self.config.callback_timeout_seconds)
        return self._http

    # -- the ledger --------------------------------------------------------------------------------

    def ledger_summary(self) -> dict[str, Any]:
        summary = self.ledger.summary(self.config.now())
        summary["registry"] = {"jobseekers": len(self.registry), "skipped_lines": len(self.registry.skipped)}
        summary["faults_on"] = self.faults.any
        summary["faults"] = self.faults.as_dict()
        return summary

    def ledger_events(self, key: str) -> list[dict[str, Any]]:
        """Every version DUDE holds of one event key (per-key lookup)."""
        return self.ledger.events_for(key)


_SIGNATURE_VALUE = b"SignatureValue>"


def _flip_signature_bit(receipt: bytes) -> bytes:
    """The receipt with one bit of its base64 signature value changed (still base64, no longer valid)."""
    start = receipt.find(_SIGNATURE_VALUE)
    if start < 0:
        return receipt
    at = start + len(_SIGNATURE_VALUE)
    swapped = b"B" if receipt[at:at + 1] == b"A" else b"A"
    return receipt[:at] + swapped + receipt[at + 1:]


def _readable_id(root: etree._Element) -> str | None:
    """The ``IdLot`` if it can be echoed in a schema-valid receipt, else None."""
    id_lot = peek_id_lot(root)
    return id_lot if id_lot is not None and _ID_LOT.fullmatch(id_lot) else None


@dataclass(frozen=True, slots=True)
class _Lot:
    """A signed envelope, read: either why it is refused as a whole, or its events' records."""

    sender: str | None
    count: int
    refusal: tuple[RejectCode, str] | None = None
    records: tuple[dict[str, Any], ...] = ()
    digests: tuple[str, ...] = ()


def _read_lot(signed: etree._Element, config: EmulatorConfig) -> _Lot:
    """The envelope-level checks after the signature, in order: ``L04``, ``L05``, ``L06``, ``L07``."""
    elements = list(iter_events(signed))
    count = len(elements)
    violation = _schema_violation(signed)
    if violation is not None:
        return _Lot(None, count, (RejectCode.L04, violation))
    header = read_header(signed)
    sender = header.emetteur
    if header.nombre_evenements != count:
        return _Lot(sender, count, (RejectCode.L05, f"l'en-tête annonce {header.nombre_evenements} "
                                                    f"événements, le lot en contient {count}"))
    if sender not in config.authorized_senders:
        return _Lot(sender, count, (RejectCode.L06, f"émetteur {sender} non habilité"))
    if count > config.max_events:
        return _Lot(sender, count, (RejectCode.L07, f"{count} événements, au plus {config.max_events} par lot"))
    records = tuple(read_event(element) for element in elements)
    return _Lot(sender, count, records=records, digests=tuple(content_hash(r) for r in records))


def _schema_violation(signed: etree._Element) -> str | None:
    """None if valid, else a French summary naming where (paths and event keys, never values)."""
    try:
        schema.validate(signed)
    except SchemaViolation as exc:
        if not exc.errors:
            return "lot non conforme au schéma"
        first = exc.errors[0]
        where = f"événement {first.event_id}, " if first.event_id else ""
        return f"{len(exc.errors)} erreur(s) de schéma ; première : {where}{first.path or 'racine'}"
    return None
