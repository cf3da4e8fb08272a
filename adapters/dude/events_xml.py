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


def read_event(element: etree._Element) -> dict[str, Any]:
    """The inverse of `append_event`: a record dict plus ``key``, ``version`` and ``operation``.

    Expects a schema-valid element; the emulator validates the envelope before reading it.
    """
    key = element.get("id")
    code_ml, _, id_evenement = key.partition("-")
    out: dict[str, Any] = {
        "key": key, "version": int(element.get("version")), "operation": element.get("operation"),
        "code_ml": code_ml, "id_evenement": id_evenement,
    }
    children = iter(element)
    jeune, ml, date_ev, typed = next(children), next(children), next(children), next(children)
    for child in jeune:
        out[_JEUNE_FIELDS[etree.QName(child).localname]] = child.text
    for child in ml:
        out[_ML_FIELDS[etree.QName(child).localname]] = child.text
    out["date_evenement"] = date_ev.text
    local = etree.QName(typed).localname
    if local == "Annulation":
        out["type_evenement"] = typed.get("typeEvenement")
    else:
        out["type_evenement"] = ELEMENT_TO_TYPE[local].value
        for child in typed:
            name = ELEMENT_FIELDS[etree.QName(child).localname]
            out[name] = (child.text.strip() in ("true", "1")) if name == "premier_entretien" else child.text
    comment = next(children, None)
    if comment is not None:
        out["commentaire"] = comment.text or ""
    return out


_JEUNE_FIELDS = {"IdentifiantDE": "identifiant_pe", "Nom": "nom", "Prenom": "prenom",
                 "DateNaissance": "date_naissance"}
_ML_FIELDS = {"CodeML": "code_ml", "Conseiller": "conseiller"}
