"""Building the emulator from the gateway's settings (the demo's layout) and from a persistent ledger."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from adapters.dude.emulator import Emulator, EmulatorConfig, Faults
from gateway.errors import ConfigurationError
from gateway.keys import init_dev_keys
from gateway.settings import Settings

from .conftest import REGISTRY_CSV


def test_for_settings_follows_the_key_layout_and_survives_a_restart(tmp_path: Path, make_event, make_lot,
                                                                     keys) -> None:
    settings = Settings(data_dir=tmp_path)
    config = EmulatorConfig.for_settings(settings, report_delay_seconds=0)
    assert config.key_file == tmp_path / "emulator" / "keys" / "dude.key.pem"
    assert config.registry_file == tmp_path / "emulator" / "registre-dude.csv"
    assert config.ledger_path == tmp_path / "emulator" / "ledger.db"
    assert config.authorized_senders == frozenset({settings.sender_code})
    init_dev_keys(settings)
    with pytest.raises(ConfigurationError, match="registry"):
        Emulator(config)  # no registry file yet: said plainly, not an empty DUDE
    # the session's gateway key is the one `make_lot` signs with: trust it in this data folder too
    shutil.copyfile(keys.gateway.cert_file, config.trust_dir / "gateway-session.cert.pem")
    config.registry_file.write_text(REGISTRY_CSV, encoding="utf-8")

    id_lot = str(uuid.uuid4())
    body = make_lot([make_event()], id_lot=id_lot)
    with Emulator(config) as first:
        receipt = first.receive(body)
        assert b"RECU" in receipt.body
    with Emulator(config) as restarted:  # the ledger is a file: the lot is still known
        assert restarted.receive(body).body == receipt.body
        assert restarted.report(id_lot).status_code == 200
        summary = restarted.ledger_summary()
        assert (summary["lots"], summary["lot_replays"], summary["events_applied"]) == (1, 1, 1)


def test_config_refuses_nonsense(keys) -> None:
    base = dict(key_file=keys.emulator.key_file, cert_file=keys.emulator.cert_file, trust_dir=keys.emulator.trust_dir)
    with pytest.raises(ConfigurationError):
        EmulatorConfig(**base, report_delay_seconds=-1)
    with pytest.raises(ConfigurationError):
        EmulatorConfig(**base, max_events=0)
    assert EmulatorConfig(**base, authorized_senders={"A"}).authorized_senders == frozenset({"A"})
    with pytest.raises(ValueError):
        Faults(report_delay_seconds=-1)
    assert not Faults().any and Faults(report_delay_seconds=5).any
