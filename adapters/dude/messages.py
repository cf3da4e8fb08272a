"""DUDE's answers: the receipt (``AccuseReception``) and the report (``CompteRendu``), both signed.

Building them is the emulator's job; reading them is the gateway's. `open_signed` is the one way in
for any signed document from the other side, in the order the brief gives for envelopes (§4 and the
emulator's checks): well-formed and harmless (``L03``), signed by a trusted, valid certificate
(``L01``/``L02``), valid against the XSD (``L04``); then only the signed content is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from adapters.dude import safe_xml, schema
from adapters.dude.events_xml import NSMAP, q
from adapters.dude.signing import TrustStore, Verified
from gateway.codes import RejectCode
from gateway.errors import ReportInconsistent, SchemaViolation, UnexpectedDocument

_SUB = etree.SubElement
RECU, REJETE, ACCEPTE = "RECU", "REJETE", "ACCEPTE"


@dataclass(frozen=True, slots=True)
class Receipt:
    """``AccuseReception``: DUDE's synchronous answer to one envelope."""

    id_lot: str
    received_at: datetime
    status: str  # RECU or REJETE
    events_received: int
    reject_code: RejectCode | None = None
    reject_message: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == RECU


@dataclass(frozen=True, slots=True)
class EventResult:
    """One ``Resultat`` of a report."""

    key: str
    version: int
    accepted: bool
    code: RejectCode | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """``CompteRendu``: how DUDE processed each event of one envelope."""

    id_lot: str
    processed_at: datetime
    results: tuple[EventResult, ...] = field(default=())

    @property
    def accepted_count(self) -> int:
        return sum(1 for r in self.results if r.accepted)

    @property
    def rejected_count(self) -> int:
        return len(self.results) - self.accepted_count


def _stamp(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return when.isoformat(timespec="seconds")


def build_receipt(receipt: Receipt) -> etree._Element:
    root = etree.Element(q("AccuseReception"), nsmap=NSMAP)
    _SUB(root, q("IdLot")).text = receipt.id_lot
    _SUB(root, q("DateReception")).text = _stamp(receipt.received_at)
    _SUB(root, q("Statut")).text = receipt.status
    _SUB(root, q("NombreEvenementsRecus")).text = str(receipt.events_received)
    if receipt.reject_code is not None:
        _SUB(root, q("Motif"), code=receipt.reject_code.value).text = (
            receipt.reject_message or receipt.reject_code.label)[:1000]
    return root


def build_report(report: Report) -> etree._Element:
    root = etree.Element(q("CompteRendu"), nsmap=NSMAP)
    _SUB(root, q("IdLot")).text = report.id_lot
    _SUB(root, q("DateTraitement")).text = _stamp(report.processed_at)
    _SUB(root, q("NombreAcceptes")).text = str(report.accepted_count)
    _SUB(root, q("NombreRejetes")).text = str(report.rejected_count)
    results = _SUB(root, q("Resultats"))
    tag, motif = q("Resultat"), q("Motif")
    for r in report.results:
        el = _SUB(results, tag, id=r.key, version=str(r.version), statut=ACCEPTE if r.accepted else REJETE)
        if not r.accepted and r.code is not None:
            _SUB(el, motif, code=r.code.value).text = (r.message or r.code.label)[:1000]
    return root


def open_signed(data: bytes, *, trust: TrustStore, expected: str, max_bytes: int = safe_xml.DEFAULT_MAX_BYTES,
                at: datetime | None = None) -> Verified:
    """Parse, check the signature, then the schema, of a document whose root must be ``expected``.

    Raises `HostileXmlError` (L03), `SignatureInvalid` (L01), `CertificateRejected` (L02),
    `SchemaViolation` (L04), or `UnexpectedDocument` for a valid document of another kind.
    """
    root = safe_xml.parse(data, max_bytes=max_bytes, what=expected)
    if root.tag != q(expected):
        raise UnexpectedDocument(f"expected {expected}, got {etree.QName(root).localname}")
    verified = trust.verify(root, at=at)
    schema.validate(verified.root)
    return verified


def _child_text(root: etree._Element, local: str) -> str:
    found = root.find(q(local))
    return (found.text or "") if found is not None else ""


def parse_receipt(root: etree._Element) -> Receipt:
    """Read a receipt from its verified, schema-valid element."""
    motif = root.find(q("Motif"))
    return Receipt(
        id_lot=_child_text(root, "IdLot"),
        received_at=datetime.fromisoformat(_child_text(root, "DateReception")),
        status=_child_text(root, "Statut"),
        events_received=int(_child_text(root, "NombreEvenementsRecus")),
        reject_code=RejectCode(motif.get("code")) if motif is not None else None,
        reject_message=motif.text if motif is not None else None,
    )


def parse_report(root: etree._Element) -> Report:
    """Read a report from its verified, schema-valid element; its counts must agree with its results
    (`ReportInconsistent` if not: the XSD cannot say so)."""
    results = []
    motif_tag = q("Motif")
    for el in root.iterfind(f"{q('Resultats')}/{q('Resultat')}"):  # one per event: keep the loop lean
        get = el.get
        if get("statut") == ACCEPTE:
            results.append(EventResult(get("id"), int(get("version")), True))
            continue
        motif = el.find(motif_tag)
        if motif is None:
            raise SchemaViolation(f"Resultat {get('id')} is REJETE without a Motif")
        results.append(EventResult(get("id"), int(get("version")), False, RejectCode(motif.get("code")),
                                   motif.text or ""))
    report = Report(id_lot=_child_text(root, "IdLot"),
                    processed_at=datetime.fromisoformat(_child_text(root, "DateTraitement")),
                    results=tuple(results))
    announced = (int(_child_text(root, "NombreAcceptes")), int(_child_text(root, "NombreRejetes")))
    found = (report.accepted_count, report.rejected_count)
    if announced != found:
        raise ReportInconsistent(f"report {report.id_lot}: its counts ({announced[0]} accepted, {announced[1]} "
                                 f"rejected) do not match its results ({found[0]}, {found[1]})",
                                 announced=announced, found=found)
    return report


def results_by_key(results: Iterable[EventResult]) -> dict[tuple[str, int], EventResult]:
    return {(r.key, r.version): r for r in results}
