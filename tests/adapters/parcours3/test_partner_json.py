"""A partner's JSON event goes through the rules of a Parcours 3 line, and is never changed without a word: a
control character in a value it keeps refuses it (``E09`` naming the field) rather than being taken out."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from adapters.parcours3.mapping import parse_export
from adapters.parcours3.partner_json import parse_item
from gateway.codes import RejectCode
from gateway.preflight import PreflightConfig, Rejection, Valid
from tests.factories import json_event, p3_line, write_export

CONFIG = PreflightConfig(identifiant_pe_pattern=r"[0-9]{7}[A-Z]", send_comments=False, today=date(2026, 11, 29))
WITH_COMMENTS = PreflightConfig(identifiant_pe_pattern=r"[0-9]{7}[A-Z]", send_comments=True,
                                today=date(2026, 11, 29))


def parse(config: PreflightConfig = CONFIG, **fields):
    return parse_item(json_event(**fields), config, source_file="API:partenaire:req-1", source_line=3)


@pytest.mark.parametrize("character", ["\x00", "\x01", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85", "\x9f",
                                       "\ufffe"])
def test_a_control_character_refuses_the_event_naming_the_field_and_the_character(character) -> None:
    outcome = parse(nom=f"Lef{character}èvre")
    assert isinstance(outcome, Rejection), outcome
    assert (outcome.code, outcome.field, outcome.key, outcome.source_line) == (RejectCode.E09, "nom", "69001-1001", 3)
    assert f"U+{ord(character):04X}, 4e caractère" in outcome.message and "Lef" not in outcome.message
    # What is kept (the console shows it, a database takes it): the partner's value, but a C0 control.
    assert outcome.fields["nom"] == ("Lefèvre" if character < " " else f"Lef{character}èvre")


def test_the_first_character_is_said_as_such_and_a_code_is_refused_too() -> None:
    outcome = parse(conseiller="\x00CONS01")
    assert outcome.field == "conseiller" and "(U+0000, 1er caractère)" in outcome.message
    assert outcome.fields["conseiller"] == "CONS01"


def test_tab_and_line_breaks_are_text_as_in_an_export() -> None:
    outcome = parse(nom="Lefèvre\tMartin\r\n")
    assert isinstance(outcome, Valid) and outcome.event.nom == "Lefèvre Martin"


def test_a_comment_is_looked_at_only_when_it_is_passed_on() -> None:
    """Parcours 3's comments carry stray control characters (brief §3); one not passed on is neither kept nor
    sent, so it refuses nothing."""
    kept = parse(WITH_COMMENTS, commentaire="rappeler\x00 lundi")
    assert isinstance(kept, Rejection) and kept.field == "commentaire"
    assert kept.fields["commentaire"] == "rappeler lundi"
    dropped = parse(commentaire="rappeler\x00 lundi")
    assert isinstance(dropped, Valid) and dropped.event.commentaire is None


def test_a_nul_refuses_the_event_by_either_door(tmp_path: Path) -> None:
    """The same event, with a NUL in its name, from an export (the reader rejects the whole record) and from a
    partner (the field is named): INVALIDE ``E09`` both ways, never sent without the character."""
    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(nom="Lef\x00èvre")], encoding="utf-8")
    [from_export] = parse_export(export, CONFIG)
    from_partner = parse(nom="Lef\x00èvre")
    assert isinstance(from_export, Rejection) and isinstance(from_partner, Rejection)
    assert from_export.code == from_partner.code == RejectCode.E09
