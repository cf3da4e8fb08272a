"""Secrets (brief §6): the private key may be encrypted, its password comes from the environment or a file and
is never logged nor printed; a key file others can read is pointed out on start, with the fix."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.context import Gateway
from gateway.errors import ConfigurationError, KeyMaterialError
from gateway.keys import unsafe_key_files
from gateway.settings import Settings
from tests.factories import p3_line, write_export

PASSWORD = "Tr3s-s3cr3t!mot-de-passe"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a command: no GATEWAY_* of the machine, only what the test gives."""
    env = {k: "" for k in os.environ if k.startswith("GATEWAY_")}
    env.update(extra)
    return env


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "mot-de-passe"
    path.write_text(PASSWORD + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def encrypted(tmp_path: Path, password_file: Path) -> tuple[Path, object]:
    """``gateway keys init --password-file``: its data folder, and what the command printed."""
    data = tmp_path / "data"
    result = CliRunner().invoke(app, ["keys", "init", "--data-dir", str(data), "--password-file", str(password_file)],
                                env=clean_env())
    assert result.exit_code == 0, result.output
    return data, result


def test_keys_init_encrypts_the_gateway_key_with_the_password_from_a_file(encrypted) -> None:
    data, result = encrypted
    key = (data / "keys" / "gateway.key.pem").read_bytes()
    assert key.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert (data / "keys" / "gateway.key.pem").stat().st_mode & 0o777 == 0o600
    assert "chiffrée" in result.output and PASSWORD not in result.output


@pytest.mark.parametrize("source", ["environment", "file"])
def test_the_gateway_signs_with_the_password_from_the_environment_or_a_file(encrypted, password_file, source,
                                                                            caplog) -> None:
    caplog.set_level(logging.DEBUG)
    data, _ = encrypted
    given = {"key_password": PASSWORD} if source == "environment" else {"key_password_file": password_file}
    settings = Settings(_env_file=None, data_dir=data, **given)
    gw = Gateway.open(settings)
    assert gw.signer.certificate is not None
    assert PASSWORD not in repr(settings) and PASSWORD not in settings.model_dump_json()
    assert PASSWORD not in caplog.text
    gw.close()


def test_a_wrong_or_missing_password_is_a_clear_error_that_never_shows_it(encrypted, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    data, _ = encrypted
    with pytest.raises(KeyMaterialError, match="chiffrée : donner son mot de passe") as missing:
        Gateway.open(Settings(_env_file=None, data_dir=data)).signer  # noqa: B018
    wrong = PASSWORD[::-1]
    with pytest.raises(KeyMaterialError, match="mauvais mot de passe") as refused:
        Gateway.open(Settings(_env_file=None, data_dir=data, key_password=wrong)).signer  # noqa: B018
    said = str(refused.value)  # which file, and which settings to look at
    assert str(data / "keys" / "gateway.key.pem") in said
    assert "GATEWAY_KEY_FILE" in said and "GATEWAY_KEY_PASSWORD_FILE" in said
    with pytest.raises(KeyMaterialError, match="fichier du mot de passe de la clé .* introuvable ; vérifier "
                                               "GATEWAY_KEY_PASSWORD_FILE") as unreadable:
        Settings(_env_file=None, data_dir=data, key_password_file=tmp_path / "absent").key_password_bytes()
    for error in (missing.value, refused.value, unreadable.value):
        assert PASSWORD not in str(error) and wrong not in str(error)
    assert PASSWORD not in caplog.text and wrong not in caplog.text


def test_a_run_with_the_wrong_password_fails_saying_so_and_never_prints_it(encrypted, tmp_path) -> None:
    data, _ = encrypted
    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    wrong = PASSWORD[::-1]
    result = CliRunner().invoke(app, ["run", "--input", str(export), "--data-dir", str(data), "--no-wait"],
                                env=clean_env(GATEWAY_KEY_PASSWORD=wrong, GATEWAY_DUDE_URL="http://127.0.0.1:9/dude/v1"))
    assert result.exit_code != 0
    assert "KEYS" in result.output and "mauvais mot de passe" in " ".join(result.output.split())
    assert wrong not in result.output and PASSWORD not in result.output


def test_a_run_without_its_keys_stops_before_storing_anything(tmp_path) -> None:
    """The keys are checked first, before the store is even opened: a mistyped --data-dir (no keys there)
    used to leave an empty store behind, which later commands then showed as a quiet night."""
    data = tmp_path / "data"
    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    result = CliRunner().invoke(app, ["run", "--input", str(export), "--data-dir", str(data), "--no-wait"],
                                env=clean_env(GATEWAY_DUDE_URL="http://127.0.0.1:9/dude/v1"))
    assert result.exit_code == 2 and "KEYS" in result.stderr and "gateway keys init" in result.stderr
    assert not (data / "gateway.db").exists()


def test_a_night_with_an_empty_trust_folder_stops_before_storing_anything(settings, dev_keys, tmp_path) -> None:
    """An empty trust folder passed: DUDE took the envelopes, every receipt was refused (L02) and the night
    ended as if DUDE were down. Now the run stops at once (KEYS), in the command as in a scheduled night."""
    import sqlalchemy as sa

    from gateway.context import Gateway
    from gateway.pipeline.run import run_batch
    from gateway.store.models import events_t, runs_t

    for certificate in settings.gateway_trust_dir.iterdir():
        certificate.unlink()
    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    result = CliRunner().invoke(app, ["run", "--input", str(export), "--data-dir", str(settings.data_dir), "--no-wait"],
                                env=clean_env(GATEWAY_DUDE_URL="http://127.0.0.1:9/dude/v1"))
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "KEYS" in said and str(settings.gateway_trust_dir) in said

    gw = Gateway.open(settings)
    try:
        with pytest.raises(KeyMaterialError, match="dossier de confiance"):
            run_batch(gw, [export])  # the scheduler's way in
        with gw.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(events_t)).scalar_one() == 0
            assert conn.execute(sa.select(runs_t.c.outcome)).scalars().all() == ["ECHEC"]
    finally:
        gw.close()


# --- permissions -------------------------------------------------------------------------------------

def test_a_key_others_can_read_is_pointed_out_with_the_fix(settings, dev_keys, password_file) -> None:
    key = settings.gateway_key_file
    assert unsafe_key_files(settings) == []  # created 0600
    key.chmod(0o644)
    password_file.chmod(0o640)
    warnings = unsafe_key_files(settings.model_copy(update={"key_password_file": password_file}))
    assert len(warnings) == 2
    assert str(key) in warnings[0] and f"chmod 600 {key}" in warnings[0] and "0644" in warnings[0]
    assert str(password_file) in warnings[1] and f"chmod 600 {password_file}" in warnings[1]
    assert PASSWORD not in "".join(warnings)


@pytest.mark.parametrize("command", ["run", "serve", "demo"])
def test_run_serve_and_demo_warn_on_start(settings, dev_keys, tmp_path, monkeypatch, command) -> None:
    settings.gateway_key_file.chmod(0o640)
    data = ["--data-dir", str(settings.data_dir)]
    if command == "run":
        args = ["run", "--input", str(write_export(tmp_path / "P3_69001_20261128.csv", [p3_line()])), "--dry-run"]
    elif command == "serve":
        monkeypatch.setattr("uvicorn.run", lambda *a, **k: None)  # start, then stop at once
        args = ["serve", "--port", "1"]
    else:
        def refuse(*a, **k):
            raise ConfigurationError("arrêt du test après le contrôle des clés")
        monkeypatch.setattr("gateway.demo.run_demo", refuse)
        args = ["demo"]
    result = CliRunner().invoke(app, [*args, *data], env=clean_env())
    shown = " ".join(result.output.split())
    assert "Attention" in shown and str(settings.gateway_key_file) in shown
    assert f"chmod 600 {settings.gateway_key_file}" in shown

    settings.gateway_key_file.chmod(0o600)
    again = CliRunner().invoke(app, [*args, *data], env=clean_env())
    assert "chmod 600" not in again.output


def test_keys_init_makes_only_the_missing_side_and_keeps_the_gateways_key(tmp_path) -> None:
    """With the emulator's folder gone, ``gateway keys init`` (no ``--force``) made both sides again: the
    gateway's key, and the certificate registered with DUDE, were replaced without a word."""
    from gateway.keys import emulator_identity, gateway_identity

    data = tmp_path / "data"
    assert CliRunner().invoke(app, ["keys", "init", "--data-dir", str(data)]).exit_code == 0
    settings = Settings(_env_file=None, data_dir=data)
    gw, emu = gateway_identity(settings), emulator_identity(settings)
    kept = (gw.key_file.read_bytes(), gw.cert_file.read_bytes())
    shutil.rmtree(emu.key_file.parent)

    again = CliRunner().invoke(app, ["keys", "init", "--data-dir", str(data), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["made"] == ["emulator"]
    assert (gw.key_file.read_bytes(), gw.cert_file.read_bytes()) == kept
    assert (emu.trust_dir / "gateway.cert.pem").read_bytes() == kept[1]  # the new emulator trusts the kept key
    assert (gw.trust_dir / "dude.cert.pem").read_bytes() == emu.cert_file.read_bytes()


def test_the_emulator_makes_its_own_keys_and_never_the_gateways(tmp_path) -> None:
    from gateway.keys import emulator_identity, gateway_identity, init_dev_keys

    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    made = init_dev_keys(settings, sides=("emulator",))  # what `gateway emulator serve` does
    assert made.made == ("emulator",) and emulator_identity(settings).key_file.exists()
    assert not gateway_identity(settings).key_file.exists()


def test_a_run_stops_on_an_expired_certificate_and_warns_of_one_ending_soon(settings, dev_keys, tmp_path,
                                                                           caplog) -> None:
    """An expired certificate of ours was told by ``/readyz`` only: ``gateway run`` (cron) sealed and sent, and
    DUDE refused every envelope (L02), a night that read as "DUDE is down"."""
    from datetime import UTC, datetime, timedelta

    from gateway.keys import check_key_material, gateway_identity, make_self_signed, write_identity

    signer = check_key_material(settings)
    end = signer.certificate.not_valid_after_utc
    with caplog.at_level(logging.WARNING, logger="gateway.keys"):
        check_key_material(settings, now=end - timedelta(days=5))
    assert "the gateway's certificate expires on" in caplog.text and "in 5 day(s)" in caplog.text
    with pytest.raises(KeyMaterialError, match="certificat de la passerelle .* expiré depuis le"):
        check_key_material(settings, now=end + timedelta(days=1))
    trusted = settings.gateway_trust_dir / "dude.cert.pem"
    kept = trusted.read_bytes()
    trusted.write_bytes(make_self_signed("dude", days=0, not_before=datetime.now(UTC) - timedelta(days=1))[1])
    with pytest.raises(KeyMaterialError, match="aucun certificat du DUDE valide à cette date dans le dossier de "
                                               "confiance .* expiré depuis le"):
        check_key_material(settings)
    trusted.write_bytes(kept)

    # End to end: a certificate that ended a minute ago stops `gateway run` before anything is stored.
    gw_id = gateway_identity(settings)
    write_identity(gw_id, *make_self_signed("passerelle", days=0, not_before=datetime.now(UTC) - timedelta(days=1)))
    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    result = CliRunner(env={"GATEWAY_DATA_DIR": None, "GATEWAY_DATABASE_URL": None}).invoke(
        app, ["run", "--input", str(export), "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 2
    assert "Erreur KEYS" in result.stderr and "expiré depuis le" in " ".join(result.stderr.split())
