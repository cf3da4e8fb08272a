"""The console's times in the gateway's zone (``GATEWAY_TIMEZONE``), and its pages saying which zone that is: a
gateway set to a mission locale's zone overseas showed its times in that zone under a footer that said "les
heures sont celles de Paris"."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from gateway.store.models import events_t
from tests.gateway.console.conftest import words


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"timezone": "America/Cayenne"})


def test_pages_say_the_zone_their_times_are_in(signed_in, gw) -> None:
    user = signed_in("support_69001")
    with gw.engine.connect() as conn:
        changed = conn.execute(sa.select(events_t.c.updated_at).where(events_t.c.key == "69001-3")).scalar_one()
    page = words(user.get("/console/evenements/69001-3"))
    assert f"Dernier changement {changed.astimezone(ZoneInfo('America/Cayenne')):%d/%m/%Y %H:%M}" in page
    for path in ("/console/", "/console/rejets", "/console/evenements/69001-3"):
        said = words(user.get(path))
        assert "les heures sont celles du fuseau America/Cayenne." in said and "celles de Paris" not in said, path
