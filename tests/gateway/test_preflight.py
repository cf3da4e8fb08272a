"""Pre-flight rules (brief §3, §4): one reject code per event, the first failing in E09, E10, E08,
E07, E04 order, with a French message that names the field and never the young person."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.codes import EventType, Operation, RejectCode
from gateway.domain import Event
from gateway.errors import RecordRejected
from gateway.preflight import PreflightConfig, Rejection, Valid, age_on, check_event, siret_is_valid
from gateway.settings import Settings

TODAY = date(2026, 11, 29)
CONFIG = PreflightConfig(identifiant_pe_pattern=r"[0-9]{7}[A-Z]", send_comments=False, today=TODAY)
GOOD_SIRET = "73282932000074"
BAD_SIRET = "73282932000075"
PERSONAL_VALUES = ("Lefèvre", "Élodie", "1234567A", "2005-03-14", "14/03/2005")

BASE = Event(
    code_ml="69001", id_evenement="1001", identifiant_pe="1234567A", nom="Lefèvre", prenom="Élodie",
    date_naissance=date(2005, 3, 14), conseiller="CLB01", type_evenement=EventType.ENT,
    date_evenement=date(2026, 11, 2), modalite="IND", premier_entretien=True,
)


def reject_of(event: Event, config: PreflightConfig = CONFIG) -> RecordRejected | None:
    try:
        check_event(event, config)
    except RecordRejected as exc:
        return exc
    return None


def typed(etype: EventType, **fields) -> Event:
    """BASE turned into another type, with only that type's fields."""
    return dataclasses.replace(BASE, type_evenement=etype, modalite=None, premier_entretien=None,
                               **fields)


VALID_BY_TYPE = {
    "ENT": BASE,
    "PFO": typed(EventType.PFO, formacode="42752"),
    "EFO": typed(EventType.EFO, formacode="42752", organisme="Greta", date_debut=date(2026, 11, 9)),
    "MER": typed(EventType.MER, num_offre="123456K", siret=GOOD_SIRET, resultat="ATT"),
    "PPR": typed(EventType.PPR, code_prestation="ACL01"),
    "EPR": typed(EventType.EPR, code_prestation="ACL01", date_debut=date(2026, 11, 9)),
    "PEM-APP": typed(EventType.PEM, type_contrat="APP", siret=GOOD_SIRET, date_debut=date(2026, 12, 1)),
    "PEM-CDD": typed(EventType.PEM, type_contrat="CDD", siret=GOOD_SIRET, date_debut=date(2026, 12, 1),
                     date_fin=date(2027, 5, 31)),
    "SOR": typed(EventType.SOR, motif="EMP"),
    "MAN": typed(EventType.MAN, motif="ABS"),
    "CPA": typed(EventType.CPA, parcours="MOB"),
}


@pytest.mark.parametrize("event", VALID_BY_TYPE.values(), ids=VALID_BY_TYPE.keys())
def test_a_complete_event_of_each_type_passes(event):
    assert reject_of(event) is None


# --- E09: required fields ----------------------------------------------------------------

MISSING = [
    ("ENT", "modalite"), ("ENT", "premier_entretien"), ("PFO", "formacode"), ("EFO", "organisme"),
    ("EFO", "date_debut"), ("MER", "num_offre"), ("MER", "siret"), ("MER", "resultat"),
    ("PPR", "code_prestation"), ("EPR", "date_debut"), ("PEM-APP", "type_contrat"),
    ("PEM-APP", "date_debut"), ("PEM-CDD", "date_fin"), ("SOR", "motif"), ("CPA", "parcours"),
]


@pytest.mark.parametrize(("kind", "field"), MISSING, ids=[f"{k}-{f}" for k, f in MISSING])
def test_a_missing_required_field_is_E09_naming_it(kind, field):
    exc = reject_of(dataclasses.replace(VALID_BY_TYPE[kind], **{field: None}))
    assert exc is not None and exc.reject is RejectCode.E09
    assert exc.field == field
    assert field in exc.message


def test_an_end_date_is_required_for_a_temp_job_too():
    event = dataclasses.replace(VALID_BY_TYPE["PEM-CDD"], type_contrat="CTT", date_fin=None)
    assert reject_of(event).field == "date_fin"


def test_an_apprenticeship_needs_no_end_date():
    assert VALID_BY_TYPE["PEM-APP"].date_fin is None
    assert reject_of(VALID_BY_TYPE["PEM-APP"]) is None


@pytest.mark.parametrize("kind", VALID_BY_TYPE.keys())
def test_a_cancellation_needs_no_typed_field(kind):
    bare = typed(VALID_BY_TYPE[kind].type_evenement, operation=Operation.CANCEL)
    assert reject_of(bare) is None


def test_a_modification_needs_its_typed_fields():
    event = dataclasses.replace(BASE, operation=Operation.MODIFY, modalite=None)
    assert reject_of(event).reject is RejectCode.E09


@pytest.mark.parametrize(("field", "empty"), [
    ("conseiller", ""), ("nom", ""), ("identifiant_pe", ""), ("date_naissance", None),
    ("date_evenement", None),
])
def test_an_empty_common_field_is_E09(field, empty):
    """Events built by the partner API reach pre-flight without the CSV parser's checks."""
    exc = reject_of(dataclasses.replace(BASE, **{field: empty}))
    assert (exc.reject, exc.field) == (RejectCode.E09, field)


# --- E10, E08, E07, E04 -------------------------------------------------------------------

def test_an_end_before_the_start_is_E10():
    event = dataclasses.replace(VALID_BY_TYPE["EFO"], date_debut=date(2026, 9, 15), date_fin=date(2026, 9, 1))
    exc = reject_of(event)
    assert (exc.reject, exc.field) == (RejectCode.E10, "date_fin")
    assert "01/09/2026" in exc.message and "15/09/2026" in exc.message


def test_a_period_of_one_day_is_fine():
    event = dataclasses.replace(VALID_BY_TYPE["EFO"], date_fin=VALID_BY_TYPE["EFO"].date_debut)
    assert reject_of(event) is None


def test_a_bad_siret_is_E08_quoting_it():
    exc = reject_of(dataclasses.replace(VALID_BY_TYPE["MER"], siret=BAD_SIRET))
    assert (exc.reject, exc.field) == (RejectCode.E08, "siret")
    assert BAD_SIRET in exc.message


@pytest.mark.parametrize(("siret", "valid"), [
    ("73282932000074", True),   # Luhn
    ("39825979190746", True),
    ("73282932000075", False),  # key off by one
    ("35600000000048", True),   # La Poste head office: Luhn
    ("35600000000100", True),   # La Poste establishment: digits add up to a multiple of 5
    ("35600000000101", False),
    ("7328293200007", False),   # 13 digits
    ("732829320000740", False),
    ("7328293200007A", False),
    ("", False),
], ids=lambda value: str(value))
def test_siret_check(siret, valid):
    assert siret_is_valid(siret) is valid


BIRTH = date(2005, 3, 14)


@pytest.mark.parametrize(("event_day", "ok"), [
    (date(2021, 3, 14), True),    # 16th birthday
    (date(2021, 3, 13), False),   # the day before: 15
    (date(2031, 3, 13), True),    # last day at 25
    (date(2031, 3, 14), False),   # 26th birthday
], ids=["16-today", "15-yesterday", "25-last-day", "26-today"])
def test_age_bounds_are_inclusive_on_the_event_date(event_day, ok):
    config = dataclasses.replace(CONFIG, today=date(2032, 1, 1))
    exc = reject_of(dataclasses.replace(BASE, date_naissance=BIRTH, date_evenement=event_day), config)
    if ok:
        assert exc is None
    else:
        assert (exc.reject, exc.field) == (RejectCode.E07, "date_naissance")


def test_someone_born_on_29_february_gets_older_on_1_march():
    born = date(2008, 2, 29)
    assert age_on(born, date(2024, 2, 28)) == 15
    assert age_on(born, date(2024, 2, 29)) == 16
    assert age_on(born, date(2025, 2, 28)) == 16
    assert age_on(born, date(2026, 3, 1)) == 18


def test_an_event_dated_today_passes_and_tomorrow_is_E04():
    assert reject_of(dataclasses.replace(BASE, date_evenement=TODAY)) is None
    exc = reject_of(dataclasses.replace(BASE, date_evenement=TODAY + timedelta(days=1)))
    assert (exc.reject, exc.field) == (RejectCode.E04, "date_evenement")
    assert "30/11/2026" in exc.message


def test_a_start_date_in_the_future_is_fine():
    """A job or training can start after the day it is recorded: only the event date counts."""
    assert reject_of(VALID_BY_TYPE["PEM-CDD"]) is None
    assert VALID_BY_TYPE["PEM-CDD"].date_debut > TODAY


# --- one code, the first ------------------------------------------------------------------

FAULTS = {
    "E09": {"resultat": None},
    "E10": {"date_debut": date(2026, 11, 10), "date_fin": date(2026, 11, 1)},
    "E08": {"siret": BAD_SIRET},
    "E07": {"date_naissance": date(1990, 1, 1)},
    "E04": {"date_evenement": date(2027, 1, 1)},
}
ORDER = ["E09", "E10", "E08", "E07", "E04"]


@pytest.mark.parametrize(("first", "second"), [(a, b) for i, a in enumerate(ORDER) for b in ORDER[i + 1:]])
def test_the_first_failing_rule_wins(first, second):
    event = dataclasses.replace(VALID_BY_TYPE["MER"], **FAULTS[second], **FAULTS[first])
    assert reject_of(event).reject is RejectCode(first)


@pytest.mark.parametrize("code", ORDER)
def test_messages_are_french_and_name_nobody(code):
    exc = reject_of(dataclasses.replace(VALID_BY_TYPE["MER"], **FAULTS[code]))
    assert exc.reject is RejectCode(code)
    assert not any(value in exc.message for value in PERSONAL_VALUES)
    assert "1990" not in exc.message  # not even the faulty birth date
    assert exc.field in exc.message or code == "E07"


# --- config and outcomes ------------------------------------------------------------------

def test_config_from_settings_takes_the_input_settings():
    settings = Settings(identifiant_pe_pattern=r"[0-9]{8}[A-Z]{3}", send_comments=True,
                        timezone="America/Cayenne")
    config = PreflightConfig.from_settings(settings, today=TODAY)
    assert config == PreflightConfig(identifiant_pe_pattern=r"[0-9]{8}[A-Z]{3}", send_comments=True,
                                     today=TODAY, timezone="America/Cayenne")
    assert config.identifiant_pe_regex.fullmatch("12345678ABC")


def test_config_today_defaults_to_today_in_the_settings_zone():
    settings = Settings(timezone="Pacific/Kiritimati")  # UTC+14: often a day ahead of the machine
    before = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    config = PreflightConfig.from_settings(settings)
    after = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    assert config.today in {before, after}


def test_outcomes_are_frozen():
    valid = Valid(BASE, "P3_69001_20261128.csv", 2)
    assert valid.key == "69001-1001"
    rejection = Rejection(RejectCode.E08, "siret", "siret", "f.csv", 3, "69001-1002", {"siret": BAD_SIRET})
    with pytest.raises(dataclasses.FrozenInstanceError):
        rejection.code = RejectCode.E09  # type: ignore[misc]
