"""The API on a fresh store with the in-process emulator: an app, a client, tokens for every role and
scope, and a store holding a night of two missions locales (69001 and 69002)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.api.auth import create_client
from gateway.api.main import create_app
from gateway.codes import EventType
from gateway.keys import DevKeys, init_dev_keys
from gateway.pipeline.run import run_batch
from gateway.store.models import utcnow
from tests.factories import p3_line, write_export, write_registry

#: Who DUDE knows: one young person per mission locale.
PEOPLE = {"69001": ("1234567A", "LEFEVRE", "Zoe", "06/05/2004"), "69002": ("7654321B", "MARTIN", "Lucas", "12/03/2005")}


@pytest.fixture(scope="session")
def key_template(tmp_path_factory) -> Path:
    """Development keys made once for the session (RSA key generation is the slow part of a fixture)."""
    from gateway.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("cles") / "data")
    init_dev_keys(settings)
    return settings.data_dir


@pytest.fixture
def dev_keys(settings, key_template: Path) -> DevKeys:
    shutil.copytree(key_template, settings.data_dir, dirs_exist_ok=True)
    return init_dev_keys(settings)  # finds them in place


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    return write_registry(tmp_path / "registre-dude.csv", [(*PEOPLE[ml], ml) for ml in PEOPLE])


@pytest.fixture
def app(gw):
    return create_app(gw)


@pytest.fixture
def client(app):
    with TestClient(app) as test_client:
        yield test_client


@dataclass(frozen=True)
class Tokens:
    admin: str
    support_69001: str
    partner_69001: str
    support_69002: str
    partner_69002: str
    support_both: str

    def __getitem__(self, name: str) -> str:
        return getattr(self, name)


#: Each token's scope (None: everything).
SCOPES = {"admin": None, "support_69001": {"69001"}, "partner_69001": {"69001"}, "support_69002": {"69002"},
          "partner_69002": {"69002"}, "support_both": {"69001", "69002"}}


@pytest.fixture
def tokens(gw) -> Tokens:
    made = {}
    for name, scope in SCOPES.items():
        role = name.split("_")[0]
        _, made[name] = create_client(gw.engine, name=name, role=role, ml_codes=sorted(scope or []), now=utcnow())
    return Tokens(**made)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def person(ml: str) -> dict[str, str]:
    pe, nom, prenom, born = PEOPLE[ml]
    return {"identifiant_pe": pe, "nom": nom, "prenom": prenom, "date_naissance": born, "code_ml": ml}


def night_lines() -> list[dict[str, str]]:
    """Per mission locale: 2 accepted, 1 rejected by DUDE (E01), 1 invalid (E08); and a line whose
    mission locale cannot be read (admin only)."""
    lines = []
    for ml in PEOPLE:
        lines += [p3_line(EventType.ENT, id_evenement="1", **person(ml)),
                  p3_line(EventType.CPA, id_evenement="2", **person(ml)),
                  p3_line(EventType.ENT, id_evenement="3", **{**person(ml), "identifiant_pe": "9999999Z"}),
                  p3_line(EventType.MER, id_evenement="4", siret="73282932000075", **person(ml))]
    lines.append(p3_line(EventType.ENT, id_evenement="5", code_ml="6900X"))
    return lines


@pytest.fixture
def night(gw, tmp_path: Path):
    """The store after a night: 69001-1, -2 ACCEPTE, -3 REJETE E01, -4 INVALIDE E08; the same for 69002;
    one INVALIDE line with an unreadable mission locale."""
    export = write_export(tmp_path / "P3_00000_20261128.csv", night_lines())
    summary = run_batch(gw, [export])
    assert summary.states == {"ACCEPTE": 4, "REJETE": 2, "INVALIDE": 3}, summary.states
    return summary
