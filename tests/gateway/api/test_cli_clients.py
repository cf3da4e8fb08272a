"""``gateway clients create|list|revoke`` (a token is printed once, only its hash is kept) and
``gateway serve`` (uvicorn on the configured host and port)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from gateway.cli import app
from gateway.demo import free_port
from gateway.store.db import make_engine
from gateway.store.models import api_clients_t


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_a_token_is_printed_once_and_only_its_hash_is_kept(tmp_path) -> None:
    data = str(tmp_path / "data")
    made = cli("clients", "create", "--name", "ml-lyon", "--role", "partner", "--ml", "69001", "--ml", "69002",
               "--data-dir", data, "--json")
    assert made.exit_code == 0, made.output
    assert "Base créée" in made.stderr  # a first command that sets something up says it made the store
    created = json.loads(made.stdout)
    token = created["token"]
    assert token.startswith("p3g_") and len(token) >= 40 and created["ml_codes"] == ["69001", "69002"]

    listed = cli("clients", "list", "--data-dir", data, "--json")
    assert token not in listed.output and json.loads(listed.output)["clients"][0]["name"] == "ml-lyon"
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'gateway.db'}")
    with engine.connect() as conn:
        stored = conn.execute(sa.select(api_clients_t)).one()
    assert token not in stored.token_hash and len(stored.token_hash) == 64

    assert cli("clients", "revoke", str(created["id"]), "--data-dir", data).exit_code == 0
    assert json.loads(cli("clients", "list", "--data-dir", data, "--json").output)["clients"][0]["revoked_at"]
    assert cli("clients", "revoke", "999", "--data-dir", data).exit_code == 2


def test_clients_are_refused_without_the_scope_their_role_needs(tmp_path) -> None:
    data = str(tmp_path / "data")
    for args in (["--role", "partner"], ["--role", "support"], ["--role", "admin", "--ml", "69001"],
                 ["--role", "partner", "--ml", "690"], ["--role", "chef", "--ml", "69001"]):
        refused = cli("clients", "create", "--name", "x", *args, "--data-dir", data)
        assert refused.exit_code == 2, (args, refused.output)
    assert cli("clients", "create", "--name", "x", "--role", "admin", "--data-dir", data).exit_code == 0
    assert cli("clients", "create", "--name", "x", "--role", "admin", "--data-dir", data).exit_code == 2


def test_serve_starts_the_api(tmp_path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    server = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port), "--data-dir",
                               str(tmp_path / "data")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                time.sleep(0.1)
        assert answer.json() == {"status": "ok"}
        unauthenticated = httpx.get(f"http://127.0.0.1:{port}/api/v1/events", timeout=5)
        assert unauthenticated.status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()["info"]["title"]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_serve_on_a_taken_port_says_so_and_announces_nothing(tmp_path) -> None:
    """Not "API … on http://…" followed by uvicorn's bind error: one line naming the port and what to change."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner(env={"GATEWAY_API_HOST": None, "GATEWAY_API_PORT": None}).invoke(
            app, ["serve", "--port", str(port), "--data-dir", str(tmp_path / "data")])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and f"127.0.0.1:{port}" in said and "port déjà pris" in said and "--port" in said
    assert "http://" not in result.stdout


@pytest.mark.parametrize("command", [["emulator", "serve"], ["demo", "--events", "50"]], ids=["emulator", "demo"])
def test_the_emulator_on_a_taken_port_says_so_and_nothing_is_sent_there(command, tmp_path) -> None:
    """``gateway emulator serve`` announced itself, then failed with uvicorn's error; ``gateway demo --port``
    took the 200 of whatever held the port for its emulator's, and sent the whole night there."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    posted: list[str] = []

    class Other(BaseHTTPRequestHandler):  # another server, answering everything
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def do_POST(self):
            posted.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    other = HTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        port = other.server_address[1]
        result = CliRunner().invoke(app, [*command, "--port", str(port), "--data-dir", str(tmp_path / "data")])
    finally:
        other.shutdown()
        other.server_close()
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and f"127.0.0.1:{port}" in said and "port déjà pris" in said and "--port" in said
    assert "http://" not in result.stdout and posted == []


def test_clients_list_shows_times_in_the_gateway_zone_and_revoking_an_unknown_one_is_an_error(tmp_path) -> None:
    """Times as the console shows them (Paris by default, and it says so); a wrong number is ``Erreur
    NOT_FOUND`` with exit code 2, like the command line's other errors (it was "Introuvable", exit 1)."""
    data = str(tmp_path / "data")
    made = CliRunner().invoke(app, ["clients", "create", "--name", "equipe", "--role", "admin", "--data-dir", data])
    assert made.exit_code == 0
    created = json.loads(CliRunner().invoke(app, ["clients", "list", "--data-dir", data, "--json"]).output)
    at = datetime.fromisoformat(created["clients"][0]["created_at"])
    shown = CliRunner(env={"COLUMNS": "160"}).invoke(app, ["clients", "list", "--data-dir", data]).output
    paris = at.astimezone(ZoneInfo("Europe/Paris")).strftime("%d/%m/%Y %H:%M")
    assert paris in shown and "Europe/Paris" in shown
    unknown = CliRunner().invoke(app, ["clients", "revoke", "999", "--data-dir", data])
    assert unknown.exit_code == 2 and "Erreur NOT_FOUND" in unknown.stderr
