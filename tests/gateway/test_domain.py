"""The domain event's stored form and content hash: the fast path gives exactly the reference values."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.codes import EventType, Operation
from gateway.domain import from_record, record_hash, stored_form, to_record
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
