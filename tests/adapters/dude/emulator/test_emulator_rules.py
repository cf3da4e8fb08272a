"""The business rules, one event at a time, without envelopes (pure functions: `rules.check`)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from adapters.dude.emulator import rules
from adapters.dude.emulator.ledger import LedgerSnapshot, content_hash
from adapters.dude.emulator.registry import Registry
from gateway.codes import RejectCode

TODAY = date(2025, 6, 15)  # the conftest's "today" (checked by the fixture below)


@pytest.fixture
def check(registry: Registry, today: date):
    """``check(record, ledger=None, today=TODAY)`` → `rules.check`'s verdict against the test registry."""
    assert today == TODAY

    def run(rec: dict[str, Any], ledger: LedgerSnapshot | None = None, today: date = TODAY):
        return rules.check(rec, content_hash=content_hash(rec), registry=registry,
                           ledger=ledger or LedgerSnapshot(), today=today)

    return run


def record(**fields: Any) -> dict[str, Any]:
    """A record as `events_xml.read_event` returns it: an interview of 1000001A, valid by default."""
    out: dict[str, Any] = {
        "key": "12345-1", "version": 1, "operation": "C", "code_ml": "12345", "id_evenement": "1",
        "identifiant_pe": "1000001A", "nom": "Dupont", "prenom": "Zoé", "date_naissance": "2004-05-06",
        "conseiller": "CONS01", "date_evenement": "2025-05-20", "type_evenement": "ENT", "modalite": "IND",
        "premier_entretien": True,
    }
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


def code_of(verdict) -> str | None:
    return None if verdict is None else verdict[0].value


PEM = {"type_evenement": "PEM", "modalite": None, "premier_entretien": None, "type_contrat": "CDD",
       "siret": "73282932000074", "date_debut": "2025-05-01", "date_fin": "2025-08-31"}


@pytest.mark.parametrize(("expected", "fields"), [
    (None, {}),
    ("E01", {"identifiant_pe": "9999999Z"}),
    ("E02", {"identifiant_pe": "1000003C", "nom": "Martin", "prenom": "Paul", "date_naissance": "2005-02-01"}),
    ("E02", {"identifiant_pe": "1000004D", "nom": "Bernard", "prenom": "Léa", "date_naissance": "2004-10-10"}),
    ("E03", {"nom": "Durand"}),
    ("E03", {"prenom": "Zoe-Marie"}),
    ("E03", {"date_naissance": "2004-05-07"}),
    ("E04", {"date_evenement": "2025-06-16"}),
    ("E04", {"date_evenement": "2023-12-31"}),
    ("E07", {"identifiant_pe": "1000005E", "nom": "Petit", "prenom": "Hugo", "date_naissance": "2010-03-20",
             "date_evenement": "2025-03-19"}),
    (None, {"identifiant_pe": "1000005E", "nom": "Petit", "prenom": "Hugo", "date_naissance": "2010-03-20",
            "date_evenement": "2026-03-20"}),  # 16 that day… but in the future
    ("E08", {**PEM, "siret": "73282932000075"}),
    ("E09", {**PEM, "date_fin": None}),
    ("E09", {**PEM, "type_contrat": "CTT", "date_fin": None}),
    (None, {**PEM, "type_contrat": "CIE", "date_fin": None}),
    ("E10", {**PEM, "date_fin": "2025-04-30"}),
    ("E09", {"key": "54321-1"}),                       # key and CodeML disagree
    ("E09", {"date_evenement": "2025-02-30"}),          # not a date
    ("E09", {"modalite": None, "premier_entretien": None}),  # C carrying an Annulation element
], ids=lambda v: v if isinstance(v, str) else None)
def test_each_rule(check, expected: str | None, fields: dict[str, Any]) -> None:
    rec = record(**fields)
    verdict = check(rec, today=date(2026, 6, 1) if rec["date_evenement"] == "2026-03-20" else TODAY)
    assert code_of(verdict) == expected, verdict
    if verdict is not None:
        assert isinstance(verdict[0], RejectCode) and verdict[1]


def test_messages_never_carry_names_or_birth_dates(check) -> None:
    for fields in ({"nom": "Durand"}, {"date_naissance": "2004-05-07"}, {"identifiant_pe": "9999999Z"},
                   {"identifiant_pe": "1000005E", "nom": "Petit", "prenom": "Hugo", "date_naissance": "2010-03-20",
                    "date_evenement": "2025-03-19"}):
        _, message = check(record(**fields))
        for secret in ("Durand", "Dupont", "Petit", "Hugo", "Zoé", "2004", "2010", "06/05", "20/03"):
            assert secret not in message, message


def test_identity_ignores_case_accents_and_separators(check) -> None:
    rec = record(identifiant_pe="1000002B", nom="LEFEVRE D HOTE", prenom="jean eric", date_naissance="2003-03-15")
    assert check(rec) is None


def test_who_comes_before_what(check) -> None:
    """An unknown jobseeker with a bad SIRET gets E01: the first fact support must fix."""
    assert code_of(check(record(identifiant_pe="9999999Z", **{**PEM, "siret": "11111111111111"}))) == "E01"


def test_ledger_rules_duplicate_e05_e06(check) -> None:
    rec = record()
    digest = content_hash(rec)
    accepted = LedgerSnapshot({("12345-1", 1): digest})
    assert check(rec, accepted) is None and rules.is_duplicate(rec, digest, accepted)
    changed = record(modalite="TEL")
    assert code_of(check(changed, accepted)) == "E05"
    # E05 wins even over rules the content would fail today: the conflict is the protocol error
    assert code_of(check(record(modalite="TEL", identifiant_pe="9999999Z"), accepted)) == "E05"
    assert code_of(check(record(version=2, operation="M"))) == "E06"
    assert code_of(check(record(version=2, operation="A", modalite=None, premier_entretien=None))) == "E06"
    assert check(record(version=2, operation="M", modalite="TEL"), accepted) is None
    assert check(record(version=2, operation="A", modalite=None, premier_entretien=None), accepted) is None
    # an A must carry the Annulation element, not the details of an interview
    assert code_of(check(record(version=2, operation="A"), accepted)) == "E09"


def test_a_ledger_kept_from_an_earlier_version_still_recognises_what_it_accepted() -> None:
    """The emulator's ledger file outlives it (the demo keeps it): the same content must hash to the same
    digest across versions, or a resend would be an ``E05`` conflict instead of a duplicate. Computed by
    the first implementation (stdlib ``json``), on a record with what encoders may escape differently."""
    rec = {"key": "69001-7", "version": 2, "operation": "M", "type_evenement": "ENT", "nom": "Lefèvre-d'Ornano",
           "prenom": 'Zoé "Zaza"', "premier_entretien": True, "commentaire": "ligne 1\nligne 2\t€😀 \\",
           "organisme": None}
    assert content_hash(rec) == "dfcfae70854ed103f09fed93e29de22b531ee3bb7c04682adf8640452d0ef5f3"
    assert content_hash({**rec, "version": 3, "key": "69001-7"}) == content_hash(rec)  # identity left out


def test_a_duplicate_stays_accepted_even_if_the_registry_changed_since(check) -> None:
    rec = record(identifiant_pe="9999999Z")
    digest = content_hash(rec)
    assert check(rec, LedgerSnapshot({("12345-1", 1): digest})) is None


@pytest.mark.parametrize(("siret", "valid"), [
    ("73282932000074", True),    # a real SIRET, Luhn-valid
    ("73282932000075", False),
    ("35600000000048", True),    # La Poste head office: Luhn
    ("35600000000010", True),    # a La Poste establishment: digit sum 15, not Luhn-valid
    ("35600000000011", False),
    ("1234567890123", False),    # 13 digits
    ("7328293200007a", False),
    ("７３２８２９３２００００７４", False),  # full-width digits are not ASCII digits
])
def test_siret_check(siret: str, valid: bool) -> None:
    assert rules.siret_is_valid(siret) is valid


def test_age_and_dates() -> None:
    assert rules.age_on(date(2004, 5, 6), date(2020, 5, 5)) == 15
    assert rules.age_on(date(2004, 5, 6), date(2020, 5, 6)) == 16
    assert rules.age_on(date(2004, 2, 29), date(2021, 2, 28)) == 16
    assert rules.age_on(date(2004, 2, 29), date(2021, 3, 1)) == 17
    assert rules.parse_date(" 2025-01-31 ") == date(2025, 1, 31)
    assert rules.parse_date("2025-01-31+01:00") == date(2025, 1, 31)
    assert rules.parse_date("2025-02-30") is None
