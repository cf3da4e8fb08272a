"""The XML of an event exactly as it was sent, indented and escaped, the elements in error marked (issue 4).

The ``Evenement`` is taken from the signed envelope the store kept byte for byte (`documents`, kind
``LOT``), not rebuilt from the event's fields: what support sees is what DUDE received. It is found by
key and version (`adapters.dude.envelope.find_event`), parsed with the hardened parser like every
document, and rendered line by line with every character escaped (names and values come from Parcours 3
and may hold ``<`` or ``&``). The Parcours 3 columns a reject points at
(`gateway.console.labels.fields_in_cause`) map to XML elements through the wire layer's own table
(`adapters.dude.events_xml.FIELD_ELEMENTS`) plus the identity block.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from lxml import etree
from markupsafe import Markup, escape
from sqlalchemy.engine import Connection

from adapters.dude import safe_xml
from adapters.dude.envelope import find_event
from adapters.dude.events_xml import FIELD_ELEMENTS
from gateway.errors import GatewayError
from gateway.store.models import DOC_LOT, documents_t

#: Parcours 3 column → the XML element carrying it (attributes of ``Evenement`` mark its start tag).
ELEMENT_OF_FIELD: dict[str, str] = {
    "identifiant_pe": "IdentifiantDE", "nom": "Nom", "prenom": "Prenom", "date_naissance": "DateNaissance",
    "code_ml": "CodeML", "conseiller": "Conseiller", "date_evenement": "DateEvenement",
    "commentaire": "Commentaire", "id_evenement": "Evenement", "operation": "Evenement",
    **FIELD_ELEMENTS,
}
_INDENT = "  "


@dataclass(frozen=True, slots=True)
class XmlLine:
    html: Markup
    marked: bool


@dataclass(frozen=True, slots=True)
class SentXml:
    envelope_id: str
    sent_at: object
    lines: list[XmlLine]
    marked_elements: list[str]

    @property
    def has_marks(self) -> bool:
        return any(line.marked for line in self.lines)

    @property
    def html(self) -> Markup:
        """The lines for a ``<pre>``: one per line of text, those in error inside a ``<mark>``."""
        return Markup("\n").join(Markup('<mark class="en-cause">{}</mark>').format(line.html) if line.marked
                                  else line.html for line in self.lines)


def elements_for(fields: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ELEMENT_OF_FIELD[f] for f in fields if f in ELEMENT_OF_FIELD))


def sent_xml(conn: Connection, *, key: str, version: int, envelope_ids: list[str],
             fields: Iterable[str]) -> SentXml | None:
    """The ``Evenement`` of ``key``/``version`` in the latest of ``envelope_ids`` that holds it, or ``None``."""
    marked = elements_for(fields)
    for envelope_id in reversed(envelope_ids):
        found = conn.execute(sa.select(documents_t.c.body, documents_t.c.at).where(
            documents_t.c.envelope_id == envelope_id, documents_t.c.kind == DOC_LOT)
            .order_by(documents_t.c.id.desc()).limit(1)).first()
        if found is None:
            continue
        try:
            root = safe_xml.parse(bytes(found.body), what="lot")
        except GatewayError:
            continue
        element = find_event(root, key, version)
        if element is not None:
            return SentXml(envelope_id, found.at, render(element, marked), marked)
    return None


def render(element: etree._Element, marked: Iterable[str] = ()) -> list[XmlLine]:
    """``element`` as indented, escaped lines; the lines of elements named in ``marked`` flagged."""
    names = frozenset(marked)
    out: list[XmlLine] = []
    _render(element, 0, names, out, root=True)
    return out


def _tag(element: etree._Element) -> str:
    return etree.QName(element).localname


def _attrs(element: etree._Element, *, root: bool) -> str:
    parts = []
    if root:
        ns = etree.QName(element).namespace
        if ns:
            parts.append(f' <span class="xml-attr">xmlns</span>=<span class="xml-val">"{escape(ns)}"</span>')
    for name, value in element.attrib.items():
        local = etree.QName(name).localname
        parts.append(f' <span class="xml-attr">{escape(local)}</span>=<span class="xml-val">"{escape(value)}"</span>')
    return "".join(parts)


def _render(element: etree._Element, depth: int, marked: frozenset[str], out: list[XmlLine], *,
            root: bool = False) -> None:
    name = _tag(element)
    pad = _INDENT * depth
    mark = name in marked
    open_tag = f'<span class="xml-tag">&lt;{escape(name)}</span>{_attrs(element, root=root)}<span class="xml-tag">'
    children = [child for child in element if isinstance(child.tag, str)]  # no comments or PIs
    text = (element.text or "").strip()
    if not children:
        if text:
            html = f'{pad}{open_tag}&gt;</span>{escape(text)}<span class="xml-tag">&lt;/{escape(name)}&gt;</span>'
        else:
            html = f"{pad}{open_tag}/&gt;</span>"
        out.append(XmlLine(Markup(html), mark))
        return
    out.append(XmlLine(Markup(f"{pad}{open_tag}&gt;</span>"), mark))
    for child in children:
        _render(child, depth + 1, marked, out)
    out.append(XmlLine(Markup(f'{pad}<span class="xml-tag">&lt;/{escape(name)}&gt;</span>'), mark and not root))
