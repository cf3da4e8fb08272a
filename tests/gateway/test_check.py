"""``gateway check`` (`gateway.checks`): what an integrator runs after installing, and when a night said nothing.
Each check says what is wrong and what to do; nothing is created or sent; exit code 1 when a night would fail."""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from types import SimpleNamespace

import httpx
import pytest
from typer.testing import CliRunner

from adapters.dude.emulator.app import mock_transport, serve_in_thread
from gateway.checks import FAILING, OK, SKIPPED, WARNING, installation, looking_engine
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


def plenty_of_room(monkeypatch, free: int = 50 << 30) -> None:
    """The disk's free space as the test says: the machine's own may be anything."""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=100 << 30, free=free))


def test_a_ready_installation_passes_every_check_and_dude_is_asked_without_sending(settings, emulator,
                                                                                   monkeypatch) -> None:
    plenty_of_room(monkeypatch)
    gw = opened(settings, mock_transport(emulator))
    checks = installation(gw)
    gw.close()
    assert statuses(checks) == {"database": OK, "schema": OK, "disk": OK, "sending": OK, "signing_key": OK,
                                "trust_store": OK, "certificates": OK, "key_files": OK, "drop_folder": OK,
                                "dude": OK}, checks
    assert detail(checks, "disk").startswith("50.0 Gio libres sur le disque de ")
    assert detail(checks, "dude").startswith("joignable, répond en ")
    assert "expire le" in detail(checks, "certificates") and "à renouveler" not in detail(checks, "certificates")
    assert emulator.ledger_summary()["lots"] == 0  # nothing was sent


@pytest.mark.parametrize(("answer", "said"), [
    (httpx.Response(404, text="<html>Not Found</html>"), "pas le point d'échange du DUDE : vérifier GATEWAY_DUDE_URL"),
    (httpx.Response(403), "refuse la passerelle (HTTP 403)"),
    (httpx.Response(503), "indisponible (HTTP 503)"),
    (httpx.ConnectError("[Errno 111] Connection refused"), "injoignable : rien n'écoute à cette adresse et ce port"),
    (httpx.ConnectError("[Errno -2] Name or service not known"), "injoignable : nom d'hôte inconnu (DNS)"),
    (httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number"), "https:// vers un port qui parle en http"),
    # httpx's words quote what came back: said on one line, without its control characters, cut
    (httpx.RemoteProtocolError("illegal status line: b'HTTP/1.1 200\\r\\nX-Forged: \x1b[31m\n" + "x" * 500 + "'"),
     "injoignable : illegal status line: b'HTTP/1.1 200\\r\\nX-Forged: [31m"),
    (httpx.Response(302, headers={"Location": "https://dude.test/dude/v1/lots/x?jeton=secret"}),
     "redirige (HTTP 302) vers https://dude.test/dude/v1/lots/x : mettre cette adresse-là dans GATEWAY_DUDE_URL"),
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
    assert detail(checks, "dude").isprintable() and len(detail(checks, "dude")) < 400, detail(checks, "dude")


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
    assert "à renouveler, puis à enregistrer auprès de l'agence" in detail(checks, "certificates")
    assert FAILING not in statuses(checks).values()

    gw.clock = lambda: utcnow() + timedelta(days=21)
    checks = installation(gw, ask_dude=False)
    assert statuses(checks)["certificates"] == FAILING and "expiré" in detail(checks, "certificates")
    assert statuses(checks)["dude"] == SKIPPED and detail(checks, "dude") == "non interrogé (--no-dude)"
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


def test_production_key_paths_get_the_variables_as_advice_not_the_development_command(tmp_path, monkeypatch) -> None:
    """``gateway keys init`` makes development keys: with GATEWAY_KEY_FILE… set, the variables are the advice."""
    monkeypatch.setenv("GATEWAY_DUDE_URL", "http://127.0.0.1:9/dude/v1")  # nothing listens on port 9
    monkeypatch.setenv("GATEWAY_KEY_FILE", str(tmp_path / "pki" / "passerelle.key.pem"))
    monkeypatch.setenv("GATEWAY_TRUST_DIR", str(tmp_path / "pki" / "dude"))
    answer = CliRunner().invoke(cli, ["check", "--data-dir", str(tmp_path / "data"), "--json", "--no-dude"])
    found = {c["name"]: c for c in json.loads(answer.stdout)["checks"]}
    for name, setting in (("signing_key", "GATEWAY_KEY_FILE"), ("trust_store", "GATEWAY_TRUST_DIR")):
        assert found[name]["status"] == FAILING, found[name]
        assert "gateway keys init" not in found[name]["detail"], found[name]
        assert f"vérifier {setting}" in found[name]["detail"], found[name]  # the one that names what is missing
    assert str(tmp_path / "pki" / "passerelle.key.pem") in found["signing_key"]["detail"]
    assert f"dossier de confiance {tmp_path / 'pki' / 'dude'} introuvable" in found["trust_store"]["detail"]


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

    gw = Gateway.open(settings)
    pause(gw.engine, by="cli:ops", reason="bascule", now=utcnow())
    gw.close()
    settings.gateway_key_file.chmod(0o644)
    answer = CliRunner().invoke(cli, ["check", "--no-dude", "--data-dir", str(settings.data_dir)])
    assert answer.exit_code == 0, answer.output  # warnings: a night would still do its work
    text = " ".join(answer.stdout.split())
    assert "Prête pour la nuit, avec 2 point(s) d'attention (sending, key_files) ; non vérifié : dude." in text, text
    assert "(mode 0644)" in text


def test_a_dude_that_does_not_answer_in_time_is_a_warning_and_the_address_shown_keeps_no_secret(settings,
                                                                                                dev_keys) -> None:
    """The probe waits 10 s where a night waits 60: a slow DUDE is a warning that says both. And a user and
    password in ``GATEWAY_DUDE_URL`` (or a token in its query) were printed as they were, in the table and JSON."""
    def silent(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    gw = Gateway.open(settings.model_copy(update={"dude_url": "https://agent:MotDePasse@dude.test/dude/v1?jeton=x"}),
                      transport=httpx.MockTransport(silent))
    checks = installation(gw)
    gw.close()
    said = json.dumps([c.as_dict() for c in checks], ensure_ascii=False)
    assert statuses(checks)["dude"] == WARNING and "pas de réponse en 10 s" in detail(checks, "dude")
    assert "une nuit attend 60 s par envoi" in detail(checks, "dude")
    assert "DUDE (https://dude.test/dude/v1)" in said and "MotDePasse" not in said and "jeton" not in said


def test_an_empty_store_a_newer_store_and_an_unreadable_export_are_said_without_a_crash(settings, dev_keys, emulator,
                                                                                       monkeypatch) -> None:
    """Found by an integrator's walk-through: a new PostgreSQL database (the README's service order checks
    before the unit's ``db upgrade``) or an empty SQLite file made the command fail with a traceback; a store
    migrated by a newer version was "ready" while every start would fail; an export the service's user may
    not read was counted as readable."""
    import sqlalchemy as sa

    from gateway.store.db import make_engine

    empty = Gateway(settings=settings, engine=looking_engine(settings), transport=mock_transport(emulator))
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        (settings.data_dir / "gateway.db").touch()  # an empty file
    checks = installation(empty, ask_dude=False)
    empty.close()
    assert statuses(checks)["schema"] == WARNING and "gateway db upgrade" in detail(checks, "schema")
    assert "sending" not in statuses(checks)  # no table to read it from: not a crash
    if settings.database_url is None:
        assert (settings.data_dir / "gateway.db").stat().st_size == 0  # looked at, not written to (no WAL switch)

    engine = make_engine(settings.db_url)
    from gateway.store.db import create_schema

    create_schema(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    (settings.runs_input_dir).mkdir(parents=True, exist_ok=True)
    (settings.runs_input_dir / "P3_69001_20261129.csv").write_text("id_evenement;code_ml\r\n")
    (settings.runs_input_dir / "P3_69002_20261129.csv").write_text("id_evenement;code_ml\r\n")
    import builtins

    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):  # root reads everything: the service's user would not
        if "69002" in str(file):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    newer = Gateway(settings=settings, engine=looking_engine(settings))
    checks = installation(newer, ask_dude=False)
    newer.close()
    assert statuses(checks)["schema"] == FAILING and "révision 0099, inconnue de cette version" in detail(checks,
                                                                                                         "schema")
    assert statuses(checks)["drop_folder"] == FAILING
    assert "1 export(s) que la passerelle ne peut pas lire (P3_69002_20261129.csv)" in detail(checks, "drop_folder")


def test_a_database_that_refuses_is_named_with_what_it_said_and_no_password(monkeypatch, tmp_path) -> None:
    """Every failure read "injoignable : OperationalError": a wrong password, a missing database, a closed port.
    The command names the database (password masked) and the driver's first line; /readyz stays terse."""
    from tests.backends import postgres_url

    import sqlalchemy as sa

    server = postgres_url()  # skipped without a server (failing in CI, where one is required)

    url = sa.engine.make_url(server).set(database="gwtest_pas_de_base_ici").render_as_string(hide_password=False)
    monkeypatch.setenv("GATEWAY_DATABASE_URL", url)
    answer = CliRunner().invoke(cli, ["check", "--no-dude", "--json", "--data-dir", str(tmp_path)])
    assert answer.exit_code == 1, answer.output
    found = {c["name"]: c for c in json.loads(answer.stdout)["checks"]}
    said = found["database"]["detail"]
    assert found["database"]["status"] == FAILING and "gwtest_pas_de_base_ici" in said and "***" in said
    assert "does not exist" in said and "vérifier GATEWAY_DATABASE_URL" in said
    password = sa.engine.make_url(server).password
    assert not password or f":{password}@" not in answer.output


def test_a_dude_that_refused_the_gateways_last_posts_is_said_until_it_takes_one(settings, emulator, tmp_path) -> None:
    """A filter before DUDE that refuses the gateway's posts (403) but lets its GETs through: the check's probe, a
    GET, said "joignable" and "Prête pour la nuit" while every envelope of the night was refused (a drill). Said
    as a warning, with when: the access may have been mended since, which only a post can tell; once DUDE takes
    a post, or took one after (the refusal was then that envelope's alone), nothing more is said."""
    from gateway.pipeline.run import run_batch
    from tests.factories import p3_line, write_export

    class PostsRefused(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner, self.refusing = mock_transport(emulator), True

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "POST" and self.refusing:
                return httpx.Response(403, request=request)
            return self.inner.handle_request(request)

    link = PostsRefused()
    gw = opened(settings, link, send_attempts=1)
    run_batch(gw, [write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])],
              wait_for_reports=False)
    checks = installation(gw)
    said = detail(checks, "dude")
    assert statuses(checks)["dude"] == WARNING, said
    assert re.search(r"joignable, mais a refusé la passerelle au dernier envoi, le \d\d/\d\d à \d\d:\d\d \(lot "
                     r"[0-9a-f]{8}…, HTTP 403\), et n'a accusé réception d'aucun lot depuis : si l'accès n'a pas été "
                     r"rétabli depuis, voir avec l'agence ou le réseau", said), said
    link.refusing = False  # the filter mended: the next run delivers, and the check is ok again
    run_batch(gw, [], wait_for_reports=False)
    assert statuses(installation(gw))["dude"] == OK
    gw.close()


def test_one_envelope_a_filter_refuses_while_dude_takes_the_others_is_not_said(settings, emulator, tmp_path) -> None:
    from gateway.pipeline.run import run_batch
    from tests.factories import p3_line, write_export
    from tests.gateway.pipeline.test_outage import Filter

    link = Filter(mock_transport(emulator))
    gw = opened(settings, link, send_attempts=1, envelope_max_events=2, send_workers=1)
    run_batch(gw, [write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement=str(i)) for i in range(6)])],
              wait_for_reports=False)
    assert link.posts == 3  # one envelope refused (once), the two others taken
    assert statuses(installation(gw))["dude"] == OK
    gw.close()


def test_a_mount_that_says_no_size_is_said_without_a_crash(settings, monkeypatch) -> None:
    """Some FUSE and network mounts give a total of 0 (as /proc does): the share of free space divided by it."""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=0, free=0))
    gw = opened(settings, httpx.MockTransport(lambda request: httpx.Response(404)))
    checks = installation(gw, ask_dude=False)
    gw.close()
    assert statuses(checks)["disk"] == FAILING and detail(checks, "disk").startswith("0.0 Gio libres sur le disque")


@pytest.mark.parametrize(("free", "status", "said"), [
    (100 << 20, FAILING, "0.1 Gio libres sur le disque de "),
    (600 << 20, WARNING, "à surveiller, une nuit y écrit quelques dizaines de Mo"),
])
def test_a_disk_nearly_full_is_said_before_the_night_stops_on_it(settings, emulator, monkeypatch, free, status,
                                                                  said) -> None:
    """A drill filled the store's disk: the night stopped on it (nothing lost), and the check had said ready."""
    plenty_of_room(monkeypatch, free)
    gw = opened(settings, mock_transport(emulator))
    checks = installation(gw, ask_dude=False)
    gw.close()
    assert statuses(checks)["disk"] == status and said in detail(checks, "disk"), detail(checks, "disk")
