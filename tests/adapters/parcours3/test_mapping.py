"""From Parcours 3 records to events or rejects (brief §3): what support staff would check is the
code, file and line of each reject, that good lines go on after bad ones, and that nothing
personal leaks into a message."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapters.parcours3.mapping import parse_export, parse_record
from adapters.parcours3.reader import SourceRecord, read_export
from gateway.codes import EventType, Operation, RejectCode
from gateway.domain import TYPE_FIELDS
from gateway.errors import ExportFileError
from gateway.preflight import PreflightConfig, Rejection, Valid

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "parcours3"
CONFIG = PreflightConfig(identifiant_pe_pattern=r"[0-9]{7}[A-Z]", send_comments=False,
                         today=date(2026, 11, 29))
WITH_COMMENTS = PreflightConfig(identifiant_pe_pattern=r"[0-9]{7}[A-Z]", send_comments=True,
                                today=date(2026, 11, 29))
OK = "valide"

#: fixtures/parcours3/README.md, as (line, outcome, field at fault) per file.
EXPECTED = {
    "tous-types-valides.csv": [(n, OK, None) for n in range(2, 15)],
    "rejets-preflight.csv": [
        (2, OK, None), (3, "E09", "siret"), (4, "E10", "date_fin"), (5, "E08", "siret"),
        (6, OK, None), (7, "E07", "date_naissance"), (8, "E04", "date_evenement"), (9, OK, None)],
    "rejets-champs-mal-formes.csv": [
        (2, "E09", "premier_entretien"), (3, "E09", "identifiant_pe"), (4, "E09", "code_rome"),
        (5, "E09", "date_evenement"), (6, "E09", "type_evenement"), (7, "E09", "date_fin"),
        (8, "E09", "premier_entretien"), (9, "E09", "motif"), (10, "E09", "conseiller"),
        (11, OK, None)],
    "utf8-bom.csv": [(2, OK, None), (3, OK, None)],
    "utf8-sans-bom.csv": [(2, OK, None), (3, OK, None)],
    "colonnes-desordre-et-inconnue.csv": [(2, OK, None), (3, OK, None), (4, OK, None)],
    "champs-entre-guillemets.csv": [(2, OK, None), (3, OK, None), (6, OK, None), (7, "E08", "siret"),
                                    (8, OK, None)],
    "lignes-cassees.csv": [(2, OK, None), (3, "E09", None), (4, OK, None), (5, "E09", None),
                           (6, OK, None), (7, "E09", None), (8, OK, None)],
    "entete-seulement.csv": [],
    "avec-nir.csv": [(2, OK, None), (3, OK, None)],
}
REFUSED = {"vide.csv": "P3_EMPTY", "colonne-obligatoire-manquante.csv": "P3_COLUMN_MISSING"}


def summary(outcome):
    if isinstance(outcome, Valid):
        return outcome.source_line, OK, None
    return outcome.source_line, outcome.code.value, outcome.field


def test_every_fixture_is_listed():
    assert {p.name for p in FIXTURES.glob("*.csv")} == set(EXPECTED) | set(REFUSED)


@pytest.mark.parametrize("name", EXPECTED)
def test_each_line_gives_the_outcome_the_readme_states(name):
    outcomes = list(parse_export(FIXTURES / name, CONFIG))
    assert [summary(o) for o in outcomes] == EXPECTED[name]
    assert {o.source_file for o in outcomes} <= {name}


@pytest.mark.parametrize(("name", "code"), REFUSED.items())
def test_a_file_refused_whole_is_refused_when_opened(name, code):
    with pytest.raises(ExportFileError) as info:
        parse_export(FIXTURES / name, CONFIG)  # not only when iterated
    assert info.value.code == code


def test_every_type_and_operation_is_parsed():
    events = [o.event for o in parse_export(FIXTURES / "tous-types-valides.csv", CONFIG)]
    assert {e.type_evenement for e in events} == set(EventType)
    assert {e.operation for e in events} == set(Operation)
    first = events[0]
    assert (first.key, first.nom, first.prenom) == ("69001-1001", "Lefèvre", "Élodie")
    assert first.date_naissance == date(2005, 3, 14)
    assert (first.modalite, first.premier_entretien) == ("IND", True)
    assert first.saisi_le == datetime(2026, 11, 2, 17, 45, 12, tzinfo=ZoneInfo("Europe/Paris"))
    assert first.saisi_le.utcoffset() == timedelta(hours=1)
    assert first.num_dossier == "40001"
    assert events[8].operation is Operation.CREATE  # empty operation column


def test_a_modification_and_a_cancellation_keep_the_key_of_what_they_change():
    events = [o.event for o in parse_export(FIXTURES / "tous-types-valides.csv", CONFIG)]
    by_line = dict(zip(range(2, 15), events, strict=True))
    assert by_line[13].operation is Operation.MODIFY and by_line[13].key == by_line[5].key
    assert by_line[13].content_hash() != by_line[5].content_hash()  # a new version to send
    assert by_line[14].operation is Operation.CANCEL and by_line[14].key == by_line[2].key
    assert by_line[14].modalite is None


def test_only_the_fields_of_the_event_type_are_kept():
    record = SourceRecord("f.csv", 2, {
        "id_evenement": "1", "code_ml": "69001", "identifiant_pe": "1234567A", "nom": "Lefèvre",
        "prenom": "Élodie", "date_naissance": "14/03/2005", "conseiller": "CLB01",
        "type_evenement": "PFO", "date_evenement": "02/11/2026", "formacode": "42752",
        "siret": "garbage", "modalite": "XXX", "motif": "???", "date_fin": "pas une date",
    })
    outcome = parse_record(record, CONFIG)
    assert isinstance(outcome, Rejection) and outcome.field == "date_fin"  # PFO keeps date_fin
    del record.fields["date_fin"]
    event = parse_record(record, CONFIG).event
    assert event.formacode == "42752"
    assert (event.siret, event.modalite, event.motif) == (None, None, None)
    assert not {"siret", "modalite", "motif"} & {name for name, _ in TYPE_FIELDS[EventType.PFO]}


def _record(**changes) -> SourceRecord:
    fields = {
        "id_evenement": "1", "code_ml": "69001", "identifiant_pe": "1234567A", "nom": " Lefèvre ",
        "prenom": "Élodie", "date_naissance": "14/03/2005", "conseiller": "CLB01",
        "type_evenement": "ENT", "date_evenement": "02/11/2026", "modalite": "IND",
        "premier_entretien": "N", "commentaire": "",
    }
    fields.update(changes)
    return SourceRecord("P3_69001_20261128.csv", 12, fields)


def test_values_are_trimmed_and_codes_forgive_case():
    event = parse_record(_record(modalite=" ind ", premier_entretien="o", type_evenement="ent"), CONFIG).event
    assert (event.nom, event.modalite, event.premier_entretien, event.type_evenement) == (
        "Lefèvre", "IND", True, EventType.ENT)


def test_comments_are_dropped_unless_the_setting_lets_them_through():
    raw = "Très motivée\r\nvoir\tlundi\x07 " + "é" * 300
    assert parse_record(_record(commentaire=raw), CONFIG).event.commentaire is None
    comment = parse_record(_record(commentaire=raw), WITH_COMMENTS).event.commentaire
    assert comment.startswith("Très motivée voir lundi é")
    assert len(comment) == 255
    assert not any(ord(c) < 32 for c in comment)


def test_a_comment_of_control_characters_only_is_no_comment():
    assert parse_record(_record(commentaire="\x07\x0b "), WITH_COMMENTS).event.commentaire is None


@pytest.mark.parametrize(("field", "value", "shown"), [
    ("code_ml", "6900", True), ("id_evenement", "12a", True), ("conseiller", "CONSEILLER11", True),
    ("date_evenement", "31/02/2026", True), ("modalite", "VIS", True),
    ("identifiant_pe", "123456", False), ("nom", "x" * 101, False), ("date_naissance", "14-03-2005", False),
    ("num_dossier", "A12", False),
], ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None)
def test_a_malformed_field_is_E09_quoting_the_value_only_if_it_names_nobody(field, value, shown):
    outcome = parse_record(_record(**{field: value}), CONFIG)
    assert (outcome.code, outcome.field) == (RejectCode.E09, field)
    assert field in outcome.message
    assert (value in outcome.message) is shown


def test_the_jobseeker_id_follows_the_configured_pattern():
    record = _record(identifiant_pe="12345678ABC")
    refused = parse_record(record, CONFIG)
    assert isinstance(refused, Rejection)
    # What it should look like, in words support staff can check a value against (not "the configured format").
    assert "(attendu : 7 chiffres puis une lettre majuscule, par exemple 9876543Z)" in refused.message
    assert "12345678ABC" not in refused.message  # it identifies someone: never quoted
    newer = PreflightConfig(identifiant_pe_pattern=r"[0-9]{8}[A-Z]{3}", send_comments=False,
                            today=date(2026, 11, 29))
    assert isinstance(parse_record(record, newer), Valid)
    refused = parse_record(_record(identifiant_pe="1234567A"), newer)
    assert "[0-9]{8}[A-Z]{3} (GATEWAY_IDENTIFIANT_PE_PATTERN)" in refused.message


def test_a_rejection_carries_what_support_needs_and_no_more():
    record = _record(id_evenement="77", modalite="VIS", commentaire="Absent\x00, rappeler",
                     nir="205036912345678")
    hidden = parse_record(record, CONFIG)
    assert (hidden.source_file, hidden.source_line) == ("P3_69001_20261128.csv", 12)
    assert hidden.key == "69001-77"
    assert hidden.fields["modalite"] == "VIS"
    assert "nir" not in hidden.fields and "commentaire" not in hidden.fields
    shown = parse_record(record, WITH_COMMENTS)
    assert shown.fields["commentaire"] == "Absent, rappeler"  # no NUL a database would refuse


def test_no_key_without_a_well_formed_id():
    outcome = parse_record(_record(id_evenement="A-12"), CONFIG)
    assert outcome.key is None and outcome.field == "id_evenement"


def test_a_record_with_a_problem_is_E09_with_the_readers_words():
    outcome = parse_record(SourceRecord("f.csv", 5, {}, "Nombre de champs incorrect : 28 au lieu de 27."),
                           CONFIG)
    assert (outcome.code, outcome.source_line, outcome.key, outcome.field) == (RejectCode.E09, 5, None, None)
    assert outcome.message.startswith("Nombre de champs incorrect")


def test_no_message_names_a_young_person():
    for name in EXPECTED:
        for record in read_export(FIXTURES / name):
            outcome = parse_record(record, CONFIG)
            if isinstance(outcome, Rejection):
                personal = [record.fields.get(k)
                            for k in ("nom", "prenom", "date_naissance", "identifiant_pe")]
                assert not any(value and value.strip() in outcome.message for value in personal), outcome


def test_the_nir_reaches_no_outcome():
    outcomes = list(parse_export(FIXTURES / "avec-nir.csv", WITH_COMMENTS))
    assert len(outcomes) == 2
    for outcome in outcomes:
        assert "205036912345678" not in repr(outcome) and "103116938212345" not in repr(outcome)
