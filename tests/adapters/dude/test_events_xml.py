"""Each event type and operation → ``Evenement`` XML → back, and the XSD agrees with it."""

from __future__ import annotations

import pytest
from lxml import etree

from adapters.dude.events_xml import NS, append_event, read_event
from gateway.codes import EventType
from tests.factories import make_record


@pytest.mark.parametrize("type_", list(EventType), ids=lambda t: t.value)
def test_every_type_round_trips(type_: EventType) -> None:
    record = make_record(type_)
    parent = etree.Element(f"{{{NS}}}Evenements")
    element = append_event(parent, record, version=2, operation="M")
    assert element.tag == f"{{{NS}}}Evenement"
    assert element.get("id") == f"{record['code_ml']}-{record['id_evenement']}"
    assert (element.get("version"), element.get("operation")) == ("2", "M")
    back = read_event(element)
    assert back.pop("key") == element.get("id")
    assert (back.pop("version"), back.pop("operation")) == (2, "M")
    assert back == record


def test_typed_element_is_named_for_the_type() -> None:
    parent = etree.Element("x")
    element = append_event(parent, make_record(EventType.MER), version=1, operation="C")
    assert element[3].tag == f"{{{NS}}}MiseEnRelation"
    assert [etree.QName(c).localname for c in element[3]] == ["NumeroOffre", "Siret", "CodeROME", "Resultat"]


def test_cancellation_carries_only_the_type() -> None:
    parent = etree.Element("x")
    element = append_event(parent, make_record(EventType.PEM), version=3, operation="A")
    annulation = element[3]
    assert etree.QName(annulation).localname == "Annulation"
    assert annulation.get("typeEvenement") == "PEM" and len(annulation) == 0
    assert read_event(element)["type_evenement"] == "PEM"


def test_comment_is_sent_only_when_present() -> None:
    parent = etree.Element("x")
    without = append_event(parent, make_record(), version=1, operation="C")
    with_comment = append_event(parent, make_record(commentaire="Jeune très motivé"), version=1, operation="C")
    assert without.find(f"{{{NS}}}Commentaire") is None
    assert with_comment.find(f"{{{NS}}}Commentaire").text == "Jeune très motivé"


def test_boolean_is_xsd_lexical() -> None:
    parent = etree.Element("x")
    element = append_event(parent, make_record(premier_entretien=False), version=1, operation="C")
    assert element.find(f".//{{{NS}}}PremierEntretien").text == "false"


def _both_builders(items):
    from datetime import UTC, datetime

    from adapters.dude.envelope import build_envelope, build_envelope_tree

    args = dict(id_lot="0f0e0d0c-0b0a-4908-8706-050403020100", sender="PARCOURS3", recipient="DUDE",
                produced_at=datetime(2026, 11, 29, 1, 2, 3, tzinfo=UTC))
    return build_envelope(items, **args), build_envelope_tree(items, **args)


@pytest.mark.parametrize("operation", ["C", "M", "A"])
def test_text_builder_gives_the_same_tree_as_the_element_builder(operation: str) -> None:
    """`build_envelope` writes text and parses it (the fast path); it must equal the node-by-node tree,
    escapes included, byte for byte once canonicalised (what the signature covers)."""
    from adapters.dude.envelope import OutgoingEvent

    tricky = {"nom": "O'Brien & <Fils> \"père\"", "prenom": "Zoé\tÉlise", "organisme": "A&B <formation>",
              "commentaire": "ligne 1\nligne 2 > 1 & \"fin\" \r"}
    items = [OutgoingEvent({**make_record(t, id_evenement=str(i)), **tricky}, i, operation)
             for i, t in enumerate(EventType, start=1)]
    fast, reference = _both_builders(items)
    assert etree.tostring(fast, method="c14n", exclusive=True) == etree.tostring(
        reference, method="c14n", exclusive=True)
    assert read_event(fast[1][0]) == read_event(reference[1][0])


def test_text_builder_refuses_what_xml_cannot_carry() -> None:
    from adapters.dude.envelope import OutgoingEvent

    items = [OutgoingEvent({**make_record(), "nom": "Zo\x01é"}, 1, "C")]
    with pytest.raises(ValueError):
        _both_builders(items)
