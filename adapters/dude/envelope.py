"""The ``LotEvenements`` envelope: building it from stored events, and reading its header (brief §4)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

from adapters.dude.events_xml import NS, NSMAP, SCHEMA_VERSION, append_event, escape_text, event_start, event_xml, q
from gateway.codes import Operation

_SUB = etree.SubElement


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """One event as it goes into an envelope: its stored record, wire version and wire operation, and
    optionally its XML after the start tag, written ahead (`events_xml.event_body` of ``record``, with
    ``cancels`` true exactly when ``operation`` is ``A``; None: written here)."""

    record: Mapping[str, Any]
    version: int
    operation: Operation | str
    body: str | None = None


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    id_lot: str
    emetteur: str
    destinataire: str
    date_production: str
    nombre_evenements: int
    version_schema: str


def build_envelope(events: Iterable[OutgoingEvent], *, id_lot: str, sender: str, recipient: str,
                   produced_at: datetime) -> etree._Element:
    """An unsigned ``LotEvenements`` holding ``events`` in order; the header count is the real count.

    Written as text (`events_xml.event_xml`) and parsed once by libxml2, with entities, DTDs and
    network off: less than half the cost of building the tree node by node (`build_envelope_tree`,
    the reference it must equal). A value XML cannot carry (a control character) raises
    ``ValueError``, as the node-by-node builder does.
    """
    if produced_at.tzinfo is None:
        raise ValueError("produced_at must be timezone-aware (the XSD requires an offset)")
    parts = []
    for item in events:
        body = item.body
        parts.append(event_xml(item.record, version=item.version, operation=item.operation) if body is None
                     else event_start(item.record, version=item.version, operation=item.operation) + body)
    text = (f'<LotEvenements xmlns="{NS}"><EnTete><IdLot>{escape_text(id_lot)}</IdLot>'
            f"<Emetteur>{escape_text(sender)}</Emetteur><Destinataire>{escape_text(recipient)}</Destinataire>"
            f"<DateProduction>{produced_at.isoformat(timespec='seconds')}</DateProduction>"
            f"<NombreEvenements>{len(parts)}</NombreEvenements><VersionSchema>{SCHEMA_VERSION}</VersionSchema>"
            f"</EnTete><Evenements>{''.join(parts)}</Evenements></LotEvenements>")
    try:
        return etree.fromstring(text.encode("utf-8"), parser=_builder_parser())
    except (etree.XMLSyntaxError, UnicodeEncodeError) as exc:
        raise ValueError(f"an event holds a character XML cannot carry: {exc}") from exc


def _builder_parser() -> etree.XMLParser:
    # A new parser per call (lxml parsers are not thread-safe), hardened like safe_xml's although the
    # text is ours; collect_ids off: no xml:id to index.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, collect_ids=False)


def build_envelope_tree(events: Iterable[OutgoingEvent], *, id_lot: str, sender: str, recipient: str,
                        produced_at: datetime) -> etree._Element:
    """`build_envelope` node by node with lxml's element API: the reference (and the benchmark's floor)."""
    if produced_at.tzinfo is None:
        raise ValueError("produced_at must be timezone-aware (the XSD requires an offset)")
    root = etree.Element(q("LotEvenements"), nsmap=NSMAP)
    head = _SUB(root, q("EnTete"))
    _SUB(head, q("IdLot")).text = id_lot
    _SUB(head, q("Emetteur")).text = sender
    _SUB(head, q("Destinataire")).text = recipient
    _SUB(head, q("DateProduction")).text = produced_at.isoformat(timespec="seconds")
    count = _SUB(head, q("NombreEvenements"))
    _SUB(head, q("VersionSchema")).text = SCHEMA_VERSION
    parent = _SUB(root, q("Evenements"))
    n = 0
    for item in events:
        append_event(parent, item.record, version=item.version, operation=item.operation)
        n += 1
    count.text = str(n)
    return root


def read_header(root: etree._Element) -> EnvelopeHeader:
    """The header of an envelope that passed the schema check."""
    head = root.find(q("EnTete"))
    text = {etree.QName(child).localname: (child.text or "") for child in head}
    return EnvelopeHeader(
        id_lot=text["IdLot"], emetteur=text["Emetteur"], destinataire=text["Destinataire"],
        date_production=text["DateProduction"], nombre_evenements=int(text["NombreEvenements"]),
        version_schema=text["VersionSchema"],
    )


def peek_id_lot(root: etree._Element) -> str | None:
    """The ``IdLot`` of any well-formed envelope, valid or not (to answer even a rejected one by its id)."""
    found = root.find(f"{q('EnTete')}/{q('IdLot')}")
    return found.text.strip() if found is not None and found.text else None


def iter_events(root: etree._Element) -> Iterator[etree._Element]:
    return root.iterfind(f"{q('Evenements')}/{q('Evenement')}")


def find_event(root: etree._Element, key: str, version: int | None = None) -> etree._Element | None:
    """The ``Evenement`` of a given key (and version) in an envelope: what the console shows as sent."""
    for element in iter_events(root):
        if element.get("id") == key and (version is None or element.get("version") == str(version)):
            return element
    return None
