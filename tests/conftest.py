"""Shared fixtures: a throwaway data folder with development keys, settings, a gateway, the emulator."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.keys import DevKeys, init_dev_keys
from gateway.settings import Settings
from tests.backends import fresh_postgres_database


@pytest.fixture
def database_url(request) -> Iterator[str | None]:
    """The store of `settings`: None is SQLite in the data folder. A module whose tests must hold on
    PostgreSQL too overrides it: ``database_url = on_both_backends()``; one test alone:
    ``@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)`` (`tests.backends`)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    """Embedded defaults in a temporary data folder, with fast retries and polls."""
    return Settings(_env_file=None, data_dir=tmp_path / "data", retry_backoff_seconds=0.0,
                    retry_backoff_max_seconds=0.0, report_poll_interval_seconds=0.01, report_wait_seconds=10,
                    envelope_max_events=50, database_url=database_url)


@pytest.fixture(scope="session")
def dev_keys_template(tmp_path_factory) -> Path:
    """Development keys made once per session (RSA key generation is the slow part of most fixtures)."""
    template = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("cles-dev") / "data")
    init_dev_keys(template)
    return template.data_dir


@pytest.fixture
def dev_keys(settings: Settings, dev_keys_template: Path) -> DevKeys:
    shutil.copytree(dev_keys_template, settings.data_dir, dirs_exist_ok=True)
    return init_dev_keys(settings)  # finds them in place


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    """DUDE knows the factories' young person (Zoé Lefèvre, 1234567A), delegated to mission locale 69001."""
    from tests.factories import write_registry

    return write_registry(tmp_path / "registre-dude.csv", [("1234567A", "LEFEVRE", "Zoe", "06/05/2004", "69001")])


@pytest.fixture
def emulator(settings: Settings, dev_keys: DevKeys, registry_file: Path):
    """The DUDE emulator in-process: in-memory ledger, reports available at once."""
    from adapters.dude.emulator.config import EmulatorConfig
    from adapters.dude.emulator.core import Emulator

    config = EmulatorConfig.for_settings(settings, registry_file=registry_file, ledger_path=None,
                                         report_delay_seconds=0.0)
    with Emulator(config) as emu:
        yield emu


@pytest.fixture
def gw(settings: Settings, emulator):
    """A gateway on a fresh SQLite store, talking to the in-process emulator through httpx.MockTransport."""
    from adapters.dude.emulator.app import mock_transport
    from gateway.context import Gateway

    gateway = Gateway.open(settings.model_copy(update={"dude_url": "http://dude.test/dude/v1"}),
                           transport=mock_transport(emulator), sleep=lambda seconds: None)
    yield gateway
    gateway.close()
