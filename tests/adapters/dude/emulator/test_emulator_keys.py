"""The emulator's own keys: what cannot be used is said with the emulator's settings, never the gateway's.

``gateway emulator serve`` takes its key, certificate and trust folder from its data folder (``--data-dir``,
`EmulatorConfig.for_settings`); an emulator built by hand, from `EmulatorConfig`'s fields. Its errors used to
send its operator to ``GATEWAY_KEY_FILE``, ``GATEWAY_CERT_FILE`` and ``GATEWAY_KEY_PASSWORD_FILE``, which it
never reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapters.dude.emulator import Emulator, EmulatorConfig
from gateway.errors import KeyMaterialError
from gateway.keys import init_dev_keys, make_self_signed
from gateway.settings import Settings


def said(config: EmulatorConfig) -> str:
    with pytest.raises(KeyMaterialError) as refused:
        Emulator(config)
    message = " ".join(refused.value.message.split())
    assert "GATEWAY_KEY" not in message and "GATEWAY_CERT" not in message and "GATEWAY_TRUST" not in message
    return message


def test_the_emulator_of_gateway_emulator_serve_names_its_data_folder(tmp_path: Path, keys) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    init_dev_keys(settings, sides=("emulator",))
    config = EmulatorConfig.for_settings(settings, registry_file=None, ledger_path=None)

    config.cert_file.unlink()
    config.cert_file.mkdir()  # a folder where the certificate goes
    message = said(config)
    assert f"certificat de l'émulateur {config.cert_file} illisible : c'est un dossier" in message
    assert "--data-dir" in message

    shutil.rmtree(config.cert_file)
    shutil.copyfile(keys.emulator.cert_file, config.cert_file)  # not the pair of its key
    assert "ne correspond pas" in said(config) and "--data-dir" in said(config)

    shutil.rmtree(config.trust_dir)
    message = said(config)
    assert f"dossier de confiance {config.trust_dir} introuvable" in message and "--data-dir" in message


def test_an_emulator_built_by_hand_names_its_configuration_fields(tmp_path: Path, keys) -> None:
    key, cert = make_self_signed("DUDE emulateur", password=b"secret")
    (tmp_path / "dude.key.pem").write_bytes(key)
    (tmp_path / "dude.cert.pem").write_bytes(cert)
    config = EmulatorConfig(key_file=tmp_path / "dude.key.pem", cert_file=tmp_path / "dude.cert.pem",
                            trust_dir=keys.emulator.trust_dir)
    message = said(config)
    assert "chiffrée : donner son mot de passe" in message and "EmulatorConfig.key_password" in message

    (tmp_path / "dude.key.pem").write_bytes(b"pas une cle\n")
    message = said(config)
    assert f"clé privée de l'émulateur {tmp_path / 'dude.key.pem'} n'est pas un fichier PEM" in message
    assert "EmulatorConfig.key_file" in message


def test_an_emulator_whose_keys_cannot_be_used_says_why_when_the_demo_starts_it(tmp_path: Path, keys) -> None:
    """``gateway emulator serve`` stops on ``Erreur KEYS`` (exit code 2, no traceback), and the demo that started
    it says that line, in French, rather than only where its log is."""
    from typer.testing import CliRunner

    from gateway.cli import app as cli
    from gateway.demo import emulator_process
    from gateway.errors import ConfigurationError

    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    init_dev_keys(settings, sides=("emulator",))
    config = EmulatorConfig.for_settings(settings, registry_file=None, ledger_path=None)
    config.cert_file.write_text("pas un certificat\n")

    answer = CliRunner().invoke(cli, ["emulator", "serve", "--data-dir", str(settings.data_dir), "--port", "0"])
    assert answer.exit_code == 2, answer.output
    assert "Erreur KEYS" in answer.output and "Traceback" not in answer.output

    registry = tmp_path / "registre.csv"
    registry.write_text("id_de;nir\n")
    with pytest.raises(ConfigurationError) as refused, emulator_process(settings, registry=registry):
        pass
    message = " ".join(refused.value.message.split())
    assert message.startswith("l'émulateur du DUDE s'est arrêté au démarrage : Erreur KEYS"), message
    assert f"certificat de l'émulateur {config.cert_file} n'est pas un fichier PEM" in message
