"""One domain event ↔ one ``Evenement`` element of the v1 exchange (brief §4).

The builder takes the event as the store keeps it (`gateway.domain.to_record`: ISO dates, codes as
strings), because those strings are already the XML's lexical forms: no conversion on the hot path.
The parser is the inverse, used by the DUDE emulator and by the console to show what was sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from gateway.codes import ELEMENT_TO_TYPE, EventType, Operation
from gateway.domain import TYPE_FIELDS

NS = "urn:fr:spe:dude:echanges:v1"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
SCHEMA_VERSION = "1.0"
NSMAP = {None: NS}


def q(local: str) -> str:
    """Clark notation for an element of the exchange namespace: ``{urn:…:v1}local``."""
    return f"{{{NS}}}{local}"


#: Parcours 3 field → XML element name inside the typed element.
FIELD_ELEMENTS = {
    "modalite": "Modalite", "premier_entretien": "PremierEntretien", "formacode": "Formacode",
    "organisme": "Organisme", "date_debut": "DateDebut", "date_fin": "DateFin",
    "num_offre": "NumeroOffre", "siret": "Siret", "code_rome": "CodeROME", "resultat": "Resultat",
    "code_prestation": "CodePrestation", "type_contrat": "TypeContrat", "motif": "Motif",
    "parcours": "Parcours",
}
ELEMENT_FIELDS = {element: name for name, element in FIELD_ELEMENTS.items()}

# Tags in Clark notation, computed once (they are looked up ~20 times per event).
_T = {name: q(name) for name in (
    "Evenement", "Jeune", "IdentifiantDE", "Nom", "Prenom", "DateNaissance", "MissionLocale",
    "CodeML", "Conseiller", "DateEvenement", "Annulation", "Commentaire",
    *FIELD_ELEMENTS.values(), *(t.element for t in EventType),
)}
_TYPED = {t.value: (_T[t.element], tuple((name, _T[FIELD_ELEMENTS[name]]) for name, _ in TYPE_FIELDS[t]))
          for t in EventType}
_SUB = etree.SubElement


def _text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def append_event(parent: etree._Element, record: Mapping[str, Any], *, version: int,
                 operation: Operation | str) -> etree._Element:
    """Append one ``Evenement`` to ``parent`` from a stored event record, and return it.

    ``operation`` is the one sent on the wire (decided by the store: ``M`` when DUDE already has a
    version of this key), not necessarily the one Parcours 3 wrote.
    """
    op = operation.value if isinstance(operation, Operation) else operation
    ev = _SUB(parent, _T["Evenement"], id=f"{record['code_ml']}-{record['id_evenement']}",
              version=str(version), operation=op)
    jeune = _SUB(ev, _T["Jeune"])
    _SUB(jeune, _T["IdentifiantDE"]).text = record["identifiant_pe"]
    _SUB(jeune, _T["Nom"]).text = record["nom"]
    _SUB(jeune, _T["Prenom"]).text = record["prenom"]
    _SUB(jeune, _T["DateNaissance"]).text = record["date_naissance"]
    ml = _SUB(ev, _T["MissionLocale"])
    _SUB(ml, _T["CodeML"]).text = record["code_ml"]
    _SUB(ml, _T["Conseiller"]).text = record["conseiller"]
    _SUB(ev, _T["DateEvenement"]).text = record["date_evenement"]
    type_code = record["type_evenement"]
    if op == "A":
        _SUB(ev, _T["Annulation"], typeEvenement=type_code)
    else:
        tag, fields = _TYPED[type_code]
        typed = _SUB(ev, tag)
        for name, field_tag in fields:
            value = record.get(name)
            if value is not None:
                _SUB(typed, field_tag).text = _text(value)
    comment = record.get("commentaire")
    if comment:
        _SUB(ev, _T["Commentaire"]).text = comment
    return ev


# -- the same Evenement as text: the sealing hot path --------------------------------------------------

#: XML text escapes. ``\r`` is escaped because a parser would turn a literal one into ``\n``; in
#: attributes, tabs and line breaks too (attribute-value normalisation would make them spaces).
_TEXT_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\r", "&#13;"))
_ATTR_ESCAPES = (*_TEXT_ESCAPES, ('"', "&quot;"), ("\t", "&#9;"), ("\n", "&#10;"))


def escape_text(value: str) -> str:
    """``value`` as XML character data. Most values need no escape: four ``in`` tests (C speed) say so."""
    if "&" in value or "<" in value or ">" in value or "\r" in value:
        for char, entity in _TEXT_ESCAPES:
            value = value.replace(char, entity)
    return value


def escape_attr(value: str) -> str:
    """``value`` as a double-quoted XML attribute value."""
    for char, entity in _ATTR_ESCAPES:
        if char in value:
            value = value.replace(char, entity)
    return value


_TYPED_TEXT = {t.value: (t.element, tuple((name, FIELD_ELEMENTS[name]) for name, _ in TYPE_FIELDS[t]))
               for t in EventType}


def event_xml(record: Mapping[str, Any], *, version: int, operation: Operation | str) -> str:
    """The ``Evenement`` `append_event` builds, as XML text in the exchange's default namespace.

    Why text: building the tree node by node costs ~25 lxml calls per event (about 40 µs); writing
    the text and letting libxml2 parse the whole envelope at once costs less than half of that, for
    the same tree (``tests/adapters/dude/test_events_xml.py`` checks both builders give the same
    canonical XML). Every value is escaped; a character XML cannot carry makes the envelope fail to
    parse, never pass unnoticed. The XSD check that follows is the same either way.
    """
    op = operation.value if isinstance(operation, Operation) else operation
    return event_start(record, version=version, operation=op) + event_body(record, cancels=op == "A")


def event_start(record: Mapping[str, Any], *, version: int, operation: Operation | str) -> str:
    """The ``Evenement`` start tag: the event's key, and the wire version and operation, which only the
    store can decide (a ``C`` read from Parcours 3 goes out as ``M`` once DUDE has the event)."""
    op = operation.value if isinstance(operation, Operation) else operation
    return (f'<Evenement id="{escape_attr(record["code_ml"])}-{escape_attr(record["id_evenement"])}" '
            f'version="{int(version)}" operation="{escape_attr(op)}">')


def event_body(record: Mapping[str, Any], *, cancels: bool) -> str:
    """Everything after the ``Evenement`` start tag, its end tag included: it depends on the record
    alone (and on whether it cancels), so the export reader's process writes it ahead of the run
    (`gateway.pipeline.reading.Prepared.xml_body`), and sealing only adds the start tag."""
    esc = escape_text
    type_code = record["type_evenement"]
    head = (f'<Jeune><IdentifiantDE>{esc(record["identifiant_pe"])}</IdentifiantDE><Nom>{esc(record["nom"])}</Nom>'
            f'<Prenom>{esc(record["prenom"])}</Prenom><DateNaissance>{esc(record["date_naissance"])}'
            f'</DateNaissance></Jeune><MissionLocale><CodeML>{esc(record["code_ml"])}</CodeML>'
            f'<Conseiller>{esc(record["conseiller"])}</Conseiller></MissionLocale>'
            f'<DateEvenement>{esc(record["date_evenement"])}</DateEvenement>')
    if cancels:
        parts = [head, f'<Annulation typeEvenement="{escape_attr(type_code)}"/>']
    else:
        element, fields = _TYPED_TEXT[type_code]
        parts = [head, f"<{element}>"]
        for name, field_element in fields:
            value = record.get(name)
            if value is not None:
                parts.append(f"<{field_element}>{esc(_text(value))}</{field_element}>")
        parts.append(f"</{element}>")
    comment = record.get("commentaire")
    if comment:
        parts.append(f"<Commentaire>{esc(comment)}</Commentaire>")
    parts.append("</Evenement>")
    return "".join(parts)


def read_event(element: etree._Element) -> dict[str, Any]:
    """The inverse of `append_event`: a record dict plus ``key``, ``version`` and ``operation``.

    Expects a schema-valid element; the emulator validates the envelope before reading it.

    Hot path of the emulator (every event of every envelope): one walk over the descendants, each
    Clark tag looked up whole in one table. ``etree.QName(child).localname`` per child cost ~40% more
    (a QName object per element), and the XSD already fixes which element may sit where.
    """
    key = element.get("id")
    code_ml, _, id_evenement = key.partition("-")
    out: dict[str, Any] = {
        "key": key, "version": int(element.get("version")), "operation": element.get("operation"),
        "code_ml": code_ml, "id_evenement": id_evenement,
    }
    fields, types = _READ_FIELDS, _READ_TYPES
    for child in element.iterdescendants():
        tag = child.tag
        name = fields.get(tag)
        if name is not None:
            text = child.text
            if name == "premier_entretien":
                out[name] = (text or "").strip() in ("true", "1")
            elif name == "commentaire":
                out[name] = text or ""
            else:
                out[name] = text
        elif tag in types:
            out["type_evenement"] = types[tag] or child.get("typeEvenement")
    return out


_JEUNE_FIELDS = {"IdentifiantDE": "identifiant_pe", "Nom": "nom", "Prenom": "prenom",
                 "DateNaissance": "date_naissance"}
_ML_FIELDS = {"CodeML": "code_ml", "Conseiller": "conseiller"}
#: Clark tag → record field, for every leaf an ``Evenement`` may hold (the ``CodeML`` element
#: overrides the key's prefix, so that rule E09 can compare them).
_READ_FIELDS: dict[str, str] = {
    **{q(local): name for local, name in _JEUNE_FIELDS.items()},
    **{q(local): name for local, name in _ML_FIELDS.items()},
    q("DateEvenement"): "date_evenement", q("Commentaire"): "commentaire",
    **{q(element): name for element, name in ELEMENT_FIELDS.items()},
}
#: Clark tag of the typed element → event type code (``None`` for ``Annulation``: read its attribute).
_READ_TYPES: dict[str, str | None] = {
    **{q(element): code.value for element, code in ELEMENT_TO_TYPE.items()}, q("Annulation"): None,
}
