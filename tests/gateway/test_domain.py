"""The domain event's stored form and content hash: the fast path gives exactly the reference values."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.codes import EventType, Operation, RejectCode
from gateway.domain import Event, from_record, record_hash, stored_form, to_record
from gateway.pipeline.ingest import _rejection_hash
from gateway.preflight import Rejection
from tests.factories import make_event


@pytest.mark.parametrize("operation", list(Operation), ids=lambda o: o.value)
@pytest.mark.parametrize("type_", list(EventType), ids=lambda t: t.value)
def test_stored_form_is_to_record_and_record_hash(type_: EventType, operation: Operation) -> None:
    event = make_event(type_, operation=operation, commentaire="Très « motivée »", num_dossier="42",
                       saisi_le=datetime(2026, 11, 20, 10, 15, tzinfo=ZoneInfo("Europe/Paris")))
    record, digest = stored_form(event)
    assert record == to_record(event)
    assert digest == record_hash(to_record(event)) == event.content_hash()
    assert from_record(record) == event


def test_a_cancellation_hashes_differently_from_the_same_fields_created() -> None:
    created, cancelled = make_event(), make_event(operation=Operation.CANCEL, modalite="IND", premier_entretien=True)
    assert stored_form(created)[1] != stored_form(cancelled)[1]


def test_content_hashes_stored_by_earlier_versions_still_match() -> None:
    """The store keeps each version's hash: if this gateway hashed the same content differently after an
    upgrade, the next night would send every event again as a new version. These digests were computed
    by the first implementation (stdlib ``json``); texts hold what a JSON encoder may escape differently:
    quotes, a backslash, a tab, a line break, a control character, non-ASCII letters, an emoji."""
    event = Event(code_ml="69001", id_evenement="7", identifiant_pe="1234567A", nom="Lefèvre-d'Ornano",
                  prenom='Zoé "Zaza"', date_naissance=date(2004, 2, 29), conseiller="CONS01",
                  type_evenement=EventType.EFO, date_evenement=date(2026, 11, 20), num_dossier="42",
                  formacode="22435", organisme="AFPA « Lyon » \\ Sud\t€😀", date_debut=date(2026, 11, 23),
                  commentaire="ligne 1\nligne 2\x01",
                  saisi_le=datetime(2026, 11, 20, 10, 15, tzinfo=ZoneInfo("Europe/Paris")))
    assert stored_form(event)[1] == "b8ec633490571b12b273779bf08a128b2badf74b307d83f8155cc2d6a03ca337"
    cancelled = event.with_changes(operation=Operation.CANCEL)
    assert stored_form(cancelled)[1] == "65a422756f7d538c942891f9743099c5b948ca567abc2a8f7fae643b859029cd"


def test_the_hash_of_a_rejected_line_is_the_one_earlier_versions_stored() -> None:
    """Rereading an export must find its invalid lines already stored (nothing new), across upgrades too;
    the digest was computed by the first implementation (stdlib ``json``)."""
    rejection = Rejection(code=RejectCode.E09, message="m", field="siret", source_file="f.csv", source_line=3,
                          key=None, fields={"nom": "Zoé", "siret": '123 "4"', "commentaire": "a\nb"})
    assert _rejection_hash(rejection) == "2ea222778e6ea05a2563a16cc689c31487f864e52c8b2830fe0144f6d270c3be"
