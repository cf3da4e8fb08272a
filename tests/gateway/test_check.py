"""``gateway check`` (`gateway.checks`): what an integrator runs after installing, and when a night said nothing.
Each check says what is wrong and what to do; nothing is created or sent; exit code 1 when a night would fail."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from typer.testing import CliRunner

from adapters.dude.emulator.app import mock_transport, serve_in_thread
from gateway.checks import FAILING, OK, WARNING, installation
from gateway.cli import app as cli
from gateway.context import Gateway
from gateway.keys import make_self_signed
from gateway.pipeline.pause import pause
from gateway.store.models import utcnow
from tests.backends import on_both_backends

database_url = on_both_backends()


def statuses(checks) -> dict[str, str]:
    return {c.name: c.status for c in checks}


def detail(checks, name: str) -> str:
    return next(c.detail for c in checks if c.name == name)


def opened(settings, transport, **updates) -> Gateway:
    return Gateway.open(settings.model_copy(update={"dude_url": "http://dude.test/dude/v1", **updates}),
                        transport=transport)


def test_a_ready_installation_passes_every_check_and_dude_is_asked_without_sending(settings, emulator) -> None:
    gw = opened(settings, mock_transport(emulator))
    checks = installation(gw)
    gw.close()
    assert statuses(checks) == {"database": OK, "schema": OK, "sending": OK, "signing_key": OK, "trust_store": OK,
                                "certificates": OK, "drop_folder": OK, "dude": OK}, checks
    assert detail(checks, "dude").startswith("joignable, répond en ")
    assert emulator.ledger_summary()["lots"] == 0  # nothing was sent


@pytest.mark.parametrize(("answer", "said"), [
    (httpx.Response(404, text="<html>Not Found</html>"), "pas le point d'échange du DUDE : vérifier GATEWAY_DUDE_URL"),
    (httpx.Response(403), "refuse la passerelle (HTTP 403)"),
    (httpx.Response(503), "indisponible (HTTP 503)"),
    (httpx.ConnectError("[Errno 111] Connection refused"), "injoignable"),
])
def test_whatever_answers_in_dude_s_place_is_said_for_what_it_is(settings, dev_keys, answer, said) -> None:
    """A proxy's 404 page (a URL without its ``/dude/v1``) is not DUDE: only its endpoint answers ``NO_REPORT``."""
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    gw = opened(settings, httpx.MockTransport(handler))
    checks = installation(gw)
    gw.close()
    assert statuses(checks)["dude"] == FAILING and said in detail(checks, "dude"), detail(checks, "dude")


def test_a_paused_switch_and_a_certificate_near_its_end_are_warnings_an_expired_one_fails(settings, emulator) -> None:
    gw = opened(settings, mock_transport(emulator))
    pause(gw.engine, by="cli:ops", reason="migration du DUDE", now=utcnow())
    key, cert = make_self_signed("PARCOURS3 passerelle", days=20)
    settings.gateway_key_file.write_bytes(key)
    settings.gateway_cert_file.write_bytes(cert)
    checks = installation(gw)
    assert statuses(checks)["sending"] == WARNING and "migration du DUDE" in detail(checks, "sending")
    assert "gateway sending resume" in detail(checks, "sending")
    assert statuses(checks)["certificates"] == WARNING and "expire le" in detail(checks, "certificates")
    assert FAILING not in statuses(checks).values()

    gw.clock = lambda: utcnow() + timedelta(days=21)
    checks = installation(gw, ask_dude=False)
    assert statuses(checks)["certificates"] == FAILING and "expiré" in detail(checks, "certificates")
    assert "dude" not in statuses(checks)
    gw.close()


def test_a_drop_folder_that_is_not_there_fails(settings, emulator, tmp_path) -> None:
    gw = opened(settings, mock_transport(emulator), input_dir=tmp_path / "depot-mal-tape")
    checks = installation(gw, ask_dude=False)
    gw.close()
    assert statuses(checks)["drop_folder"] == FAILING
    assert "dossier de dépôt introuvable" in detail(checks, "drop_folder") and "GATEWAY_INPUT_DIR" in detail(
        checks, "drop_folder")


def test_the_command_on_a_fresh_machine_creates_nothing_and_says_what_is_missing(tmp_path, monkeypatch) -> None:
    """A mistyped ``--data-dir`` must not leave an empty store (or folder) behind, as a first look would."""
    monkeypatch.setenv("GATEWAY_DUDE_URL", "http://127.0.0.1:9/dude/v1")  # nothing listens on port 9
    nowhere = tmp_path / "pas-de-passerelle"
    answer = CliRunner().invoke(cli, ["check", "--data-dir", str(nowhere), "--json"])
    assert answer.exit_code == 1, answer.output
    said = json.loads(answer.stdout)
    assert said["ok"] is False
    found = {c["name"]: c for c in said["checks"]}
    assert found["database"]["status"] == WARNING and "la première nuit" in found["database"]["detail"]
    assert found["signing_key"]["status"] == FAILING and "gateway keys init" in found["signing_key"]["detail"]
    assert found["dude"]["status"] == FAILING and "vérifier GATEWAY_DUDE_URL, le pare-feu" in found["dude"]["detail"]
    assert not nowhere.exists()


def test_the_command_against_the_emulator_over_http_says_ready(settings, emulator, monkeypatch) -> None:
    from gateway.nightly import run_night

    gw = Gateway.open(settings)  # a store that has had a night (here: an empty one)
    run_night(gw)
    gw.close()
    if settings.database_url:
        monkeypatch.setenv("GATEWAY_DATABASE_URL", settings.database_url)
    with serve_in_thread(emulator) as base:
        monkeypatch.setenv("GATEWAY_DUDE_URL", f"{base}/dude/v1")
        answer = CliRunner().invoke(cli, ["check", "--data-dir", str(settings.data_dir)])
    assert answer.exit_code == 0, answer.output
    text = " ".join(answer.stdout.split())
    assert "Prête pour la nuit." in text and "joignable, répond en" in text and "échec" not in text, text
