"""Key material that exists but cannot be used (brief §6): a key, a certificate, the key's password file or the
trust folder unreadable, a folder in a file's place, something else than PEM, a wrong password. Every way in
(``gateway run``, ``gateway serve``'s ``/readyz`` and nights, ``gateway check``, ``gateway demo``, the signer
read again by `Gateway.signer`) says it as ``KEYS``, in French: which file, which setting, what is wrong. It
used to be a bare ``PermissionError``/``IsADirectoryError`` traceback, cryptography's "Unable to load PEM
file … MalformedFraming", an English ``CONFIG`` error for the password file, or, for a trust folder the service
may not list, "aucun certificat du DUDE" (as if it were empty).

The suite runs as root in CI, and root reads every file: "permission denied" is made by refusing the reads of
that one path, as ``chmod 000`` does for the service's user."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gateway import checks
from gateway.api.auth import create_client
from gateway.api.main import create_app
from gateway.certificates import check_certificates
from gateway.cli import app
from gateway.context import Gateway
from gateway.errors import KeyMaterialError
from gateway.keys import check_key_material, gateway_identity, make_self_signed, write_identity
from gateway.store.models import utcnow
from tests.factories import p3_line, write_export

PASSWORD = "mot-de-passe-de-test"


def refuse_reads(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """``path`` unreadable to this process, as after ``chmod 000`` for a user that is not root."""
    denied = PermissionError(13, "Permission denied", str(path))
    real = {"read_bytes": Path.read_bytes, "read_text": Path.read_text, "scandir": os.scandir}

    def read_bytes(self: Path) -> bytes:
        if self == path:
            raise denied
        return real["read_bytes"](self)

    def read_text(self: Path, *args, **kwargs) -> str:
        if self == path:
            raise denied
        return real["read_text"](self, *args, **kwargs)

    def scandir(where="."):
        if Path(where) == path:
            raise denied
        return real["scandir"](where)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(os, "scandir", scandir)


def folder_in_place(path: Path) -> None:
    path.unlink()
    path.mkdir()


@dataclass(frozen=True)
class Case:
    """One way a piece of key material is unusable, and what must be said of it."""

    piece: str  # key, cert, password, trust, trusted (a certificate in the trust folder)
    defect: str  # permission, folder, garbage, other-pem, wrong, file
    setting: str
    said: str

    @property
    def id(self) -> str:
        return f"{self.piece}-{self.defect}"


CASES = [
    Case("key", "permission", "GATEWAY_KEY_FILE", "illisible : permission refusée"),
    Case("key", "folder", "GATEWAY_KEY_FILE", "illisible : c'est un dossier"),
    Case("key", "garbage", "GATEWAY_KEY_FILE", "n'est pas un fichier PEM"),
    Case("key", "other-pem", "GATEWAY_KEY_FILE", "ne contient pas de clé privée PEM"),
    Case("cert", "permission", "GATEWAY_CERT_FILE", "illisible : permission refusée"),
    Case("cert", "folder", "GATEWAY_CERT_FILE", "illisible : c'est un dossier"),
    Case("cert", "garbage", "GATEWAY_CERT_FILE", "n'est pas un fichier PEM"),
    Case("cert", "other-pem", "GATEWAY_CERT_FILE", "ne contient pas de certificat PEM"),
    Case("password", "permission", "GATEWAY_KEY_PASSWORD_FILE", "illisible : permission refusée"),
    Case("password", "folder", "GATEWAY_KEY_PASSWORD_FILE", "illisible : c'est un dossier"),
    Case("password", "wrong", "GATEWAY_KEY_PASSWORD_FILE", "mauvais mot de passe"),
    Case("trust", "permission", "GATEWAY_TRUST_DIR", "illisible : permission refusée"),
    Case("trust", "file", "GATEWAY_TRUST_DIR", "n'est pas un dossier"),
    Case("trusted", "permission", "GATEWAY_TRUST_DIR", "illisible : permission refusée"),
    Case("trusted", "folder", "GATEWAY_TRUST_DIR", "illisible : c'est un dossier"),
    Case("trusted", "garbage", "GATEWAY_TRUST_DIR", "n'est pas un fichier PEM"),
]


def break_it(case: Case, settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Spoil ``settings``' key material as ``case`` says; return the settings to use and the path at fault."""
    if case.piece == "password":  # an encrypted key, its password in a file
        password_file = tmp_path / "mot-de-passe"
        password_file.write_text(PASSWORD + "\n", encoding="utf-8")
        password_file.chmod(0o600)
        write_identity(gateway_identity(settings), *make_self_signed("PARCOURS3 passerelle",
                                                                     password=PASSWORD.encode()))
        settings = settings.model_copy(update={"key_password_file": password_file})
        if case.defect == "wrong":
            password_file.write_text("pas-le-bon\n", encoding="utf-8")
            return settings, settings.gateway_key_file
    path = {"key": settings.gateway_key_file, "cert": settings.gateway_cert_file,
            "password": settings.key_password_file, "trust": settings.gateway_trust_dir,
            "trusted": settings.gateway_trust_dir / "dude.cert.pem"}[case.piece]
    if case.defect == "permission":
        refuse_reads(monkeypatch, path)
    elif case.defect == "folder":
        folder_in_place(path)
    elif case.defect == "garbage":
        path.write_bytes(b"ceci n'est pas du PEM\n")
    elif case.defect == "other-pem":  # the certificate where the key goes, and the other way round
        other = settings.gateway_cert_file if case.piece == "key" else settings.gateway_key_file
        path.write_bytes(other.read_bytes())
    elif case.defect == "file":
        shutil.rmtree(path)
        path.write_text("un fichier à la place du dossier\n", encoding="utf-8")
    return settings, path


def assert_said(message: str, case: Case, path: Path) -> None:
    said = " ".join(message.split())
    assert str(path) in said and case.setting in said and case.said in said, said
    for foreign in ("Errno", "cryptography.io", "Traceback", "MalformedFraming", "Permission denied"):
        assert foreign not in said, said


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_unusable_key_material_is_named_with_its_setting_on_every_way_in(case, settings, dev_keys, tmp_path,
                                                                         monkeypatch) -> None:
    settings, path = break_it(case, settings, tmp_path, monkeypatch)

    with pytest.raises(KeyMaterialError) as run:  # gateway run, before the store
        check_key_material(settings)
    assert_said(run.value.message, case, path)

    gw = Gateway(settings=settings, engine=checks.looking_engine(settings))
    try:
        loading = (lambda: gw.dude_trust) if case.piece in ("trust", "trusted") else (lambda: gw.signer)
        with pytest.raises(KeyMaterialError) as loaded:  # what a night of gateway serve signs and checks with
            loading()
        assert_said(loaded.value.message, case, path)

        said = {c.name: c for c in checks.keys(gw)}  # /readyz and gateway check
        failing = "trust_store" if case.piece in ("trust", "trusted") else "signing_key"
        assert said[failing].status == checks.FAILING
        assert_said(said[failing].detail, case, path)

        if case.piece in ("cert", "trust", "trusted"):  # /metrics and the daily check read the certificates
            with pytest.raises(KeyMaterialError) as expiry:
                check_certificates(gw)
            assert_said(expiry.value.message, case, path)
    finally:
        gw.close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: "" for k in os.environ if k.startswith("GATEWAY_")}
    env.update(extra)
    return env


COMMAND_CASES = [c for c in CASES if c.id in {"key-permission", "cert-folder", "password-permission", "trust-file",
                                              "trusted-garbage"}]


@pytest.mark.parametrize("case", COMMAND_CASES, ids=[c.id for c in COMMAND_CASES])
def test_run_check_readyz_and_metrics_say_it_as_keys_without_a_traceback(case, settings, dev_keys, tmp_path,
                                                                         monkeypatch) -> None:
    settings, path = break_it(case, settings, tmp_path, monkeypatch)
    env = clean_env(GATEWAY_DUDE_URL="http://127.0.0.1:9/dude/v1",
                    GATEWAY_KEY_PASSWORD_FILE=str(settings.key_password_file or ""))
    data = ["--data-dir", str(settings.data_dir)]

    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    ran = CliRunner().invoke(app, ["run", "--input", str(export), "--no-wait", *data], env=env)
    assert ran.exit_code == 2 and not isinstance(ran.exception, OSError), ran.exception
    assert "Erreur KEYS" in ran.stderr
    assert_said(ran.stderr, case, path)
    assert not (settings.data_dir / "gateway.db").exists()  # stopped before the store

    checked = CliRunner().invoke(app, ["check", "--json", "--no-dude", *data], env=env)
    assert checked.exit_code == 1, checked.output
    failing = [c for c in json.loads(checked.stdout)["checks"] if c["status"] == "failing"]
    assert len(failing) == 1
    assert_said(failing[0]["detail"], case, path)

    gw = Gateway.open(settings)
    _, token = create_client(gw.engine, name="adm", role="admin", now=utcnow())
    try:
        with TestClient(create_app(gw)) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["code"] == "NOT_READY"
            assert_said(ready.json()["detail"], case, path)
            metrics = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert metrics.status_code == 200  # a certificate it cannot read was a 500
            certificates_ok = 0 if case.piece in ("cert", "trust", "trusted") else 1
            assert f"gateway_certificates_ok {certificates_ok}.0" in metrics.text
    finally:
        gw.close()


def test_gateway_keys_show_cert_says_which_file_it_cannot_read(settings, dev_keys) -> None:
    folder_in_place(settings.gateway_cert_file)
    shown = CliRunner().invoke(app, ["keys", "show-cert", "--data-dir", str(settings.data_dir)], env=clean_env())
    assert shown.exit_code == 2 and "Erreur KEYS" in shown.stderr, shown.exception
    said = " ".join(shown.stderr.split())
    assert str(settings.gateway_cert_file) in said and "GATEWAY_CERT_FILE" in said and "c'est un dossier" in said


def test_the_signer_read_again_keeps_the_one_loaded_before_when_the_new_files_cannot_be_read(
        settings, dev_keys, monkeypatch, caplog) -> None:
    """A certificate file that became unreadable (a renewal copied in with the wrong owner) used to escape the
    signer as a bare ``PermissionError``: the night that was sealing stopped. It is a KEYS problem, said, and the
    signer loaded before goes on."""
    import logging

    gw = Gateway(settings=settings, engine=checks.looking_engine(settings))
    before = gw.signer
    fresh = settings.gateway_cert_file.with_suffix(".neuf")
    fresh.write_bytes(settings.gateway_cert_file.read_bytes())
    os.replace(fresh, settings.gateway_cert_file)  # the files changed (another inode) …
    refuse_reads(monkeypatch, settings.gateway_cert_file)  # … and cannot be read by the service
    with caplog.at_level(logging.WARNING, logger="gateway.keys"):
        assert gw.signer is before
    assert "illisible : permission refusée" in caplog.text and "GATEWAY_CERT_FILE" in caplog.text
    gw.close()


def test_a_demo_whose_gateway_certificate_cannot_be_read_stops_on_keys(tmp_path, dev_keys_template) -> None:
    data = tmp_path / "demo"
    shutil.copytree(dev_keys_template, data)
    cert = data / "keys" / "gateway.cert.pem"
    folder_in_place(cert)
    result = CliRunner().invoke(app, ["demo", "--events", "5", "--data-dir", str(data)], env=clean_env())
    assert result.exit_code == 2 and not isinstance(result.exception, OSError), result.exception
    said = " ".join(result.stderr.split())
    assert "Erreur KEYS" in said and str(cert) in said and "GATEWAY_CERT_FILE" in said
    assert "c'est un dossier" in said
