"""``gateway serve --workers N`` (issue 7: bulk submission past one interpreter's ~7,000 events/s): several
processes answer on one port over one store, each submission is stored once whichever worker took it,
``/metrics`` counts the requests of all of them, the schedule runs once (in the supervisor), a worker that
dies is replaced, keep-alive requests are not held back by Nagle's algorithm, and SIGTERM stops every
process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient

from gateway.api.auth import create_client
from gateway.api.worker import create_worker_app, tcp_listener
from gateway.context import Gateway
from gateway.demo import free_port
from gateway.procstats import process_tree
from gateway.store.models import events_t, utcnow
from tests.backends import BACKENDS
from tests.factories import json_event
from tests.tools import stop_server

ROOT = Path(__file__).resolve().parents[3]
#: Eight connections at once: which worker accepts each is the kernel's race, and with eight both take
#: some (the /metrics check below tells a worker's own counts from the service's only then).
CLIENTS, REQUESTS_EACH, EVENTS_EACH = 8, 1, 50


def test_a_worker_serves_the_api_and_the_console_without_a_scheduler(settings, dev_keys, tmp_path, monkeypatch):
    Gateway.open(settings).close()  # the supervisor migrates the store before any worker starts
    monkeypatch.chdir(tmp_path)  # no .env but the test's
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(settings.data_dir))
    app = create_worker_app()
    with TestClient(app) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/console/connexion").status_code == 200
    assert app.state.scheduler is None
    assert app.state.gateway.settings.data_dir == settings.data_dir


def test_connections_accepted_by_a_worker_have_nagle_off() -> None:
    """uvicorn #3149: without the fix, every keep-alive request after the first waits ~40 ms."""
    listener = tcp_listener(uvicorn.Config("gateway.api.worker:create_worker_app", host="127.0.0.1", port=0))
    seen: list[int] = []

    async def accept_one() -> None:
        def handler(reader, writer):
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handler, sock=listener)  # what each worker's event loop does
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            while not seen:
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(asyncio.wait_for(accept_one(), timeout=10))
    assert seen and seen[0] != 0


def _workers(supervisor: int) -> list[int]:
    """The worker processes under the supervisor (uvicorn starts them with multiprocessing's spawn)."""
    found = []
    for pid in process_tree(supervisor)[1:]:
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


@pytest.mark.slow
@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_two_workers_share_the_port_and_the_store_and_stop_on_sigterm(settings, dev_keys, database_url,
                                                                      tmp_path) -> None:
    gw = Gateway.open(settings)
    _, token = create_client(gw.engine, name="partenaire", role="admin", now=utcnow())
    gw.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    if database_url:
        env["GATEWAY_DATABASE_URL"] = database_url
    log = tmp_path / "serve.log"  # a file, not a pipe: the access log of every request must never block
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "gateway", "--verbose", "serve", "--workers", "2",
                                   "--port", str(port), "--data-dir", str(settings.data_dir)], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while len(_workers(server.pid)) < 2 or not _answers(base):
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "gateway serve --workers 2 did not start"
            time.sleep(0.1)
        workers = _workers(server.pid)
        assert len(workers) == 2

        headers = {"Authorization": f"Bearer {token}"}
        bodies = [[json_event(id_evenement=f"{c}{r}{i:03d}") for i in range(EVENTS_EACH)]
                  for c in range(CLIENTS) for r in range(REQUESTS_EACH)]
        answers: list[dict] = []
        errors: list[BaseException] = []

        def client(index: int) -> None:  # its own connection, kept alive between its requests
            try:
                with httpx.Client(base_url=base, timeout=60, headers=headers) as http:
                    for body in bodies[index::CLIENTS]:
                        answer = http.post("/api/v1/events/bulk", json={"events": body})
                        answer.raise_for_status()
                        answers.append(answer.json()["counts"])
            except BaseException as exc:
                errors.append(exc)

        for _ in ("new", "again"):
            threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert not errors
        total = CLIENTS * REQUESTS_EACH
        assert answers[:total] == [{"CREE": EVENTS_EACH}] * total
        assert answers[total:] == [{"DEJA_RECU": EVENTS_EACH}] * total  # whichever worker took the resend

        engine = sa.create_engine(settings.db_url)
        with engine.connect() as conn:
            stored = conn.execute(sa.select(events_t.c.key, sa.func.count()).group_by(events_t.c.key)
                                  ).all()
        engine.dispose()
        assert len(stored) == total * EVENTS_EACH and {count for _, count in stored} == {1}

        bulk = re.compile(r'^gateway_api_requests_total\{method="POST",operation="submit_events",status="200"\} '
                          r'(\S+)$', re.M)
        for _ in range(3):  # new connections, whichever worker takes them: the counts of both
            scrape = httpx.get(f"{base}/metrics", headers=headers, timeout=10).text
            assert float(bulk.search(scrape).group(1)) == 2 * total

        os.kill(workers[0], signal.SIGKILL)  # a worker dies: the supervisor starts another, the service goes on
        deadline = time.monotonic() + 60
        while len(set(_workers(server.pid)) - set(workers)) < 1 or len(_workers(server.pid)) < 2:
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.1)
        workers = sorted(set(workers) | set(_workers(server.pid)))
        late = [json_event(id_evenement=f"9{i:03d}") for i in range(EVENTS_EACH)]
        answer = httpx.post(f"{base}/api/v1/events/bulk", json={"events": late}, headers=headers, timeout=30)
        assert answer.json()["counts"] == {"CREE": EVENTS_EACH}
        scrape = httpx.get(f"{base}/metrics", headers=headers, timeout=10).text
        assert float(bulk.search(scrape).group(1)) == 2 * total + 1  # the dead worker's counts are kept
    finally:
        stop_server(server)
    stderr = log.read_text()
    assert server.returncode == 0, stderr
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert len(re.findall(r"Scheduler started", stderr)) == 1, stderr  # in the supervisor only
    assert not list(settings.data_dir.glob("metrics-workers-*"))  # the counters' folder is removed


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_serving_with_workers_makes_its_data_folder_or_says_why_it_cannot(tmp_path, monkeypatch) -> None:
    """On PostgreSQL, with the keys and the console's secret elsewhere, nothing had made the data folder:
    ``gateway serve --workers 2`` announced itself, then ended in a traceback (FileNotFoundError)."""
    from gateway.api import worker
    from gateway.errors import ConfigurationError
    from gateway.settings import Settings

    served = []
    monkeypatch.setattr(worker.Multiprocess, "run", lambda self: served.append(os.listdir(os.environ[
        worker.MULTIPROCESS_DIR_ENV])))
    monkeypatch.setenv("GATEWAY_CONSOLE_SECRET_KEY", "s" * 40)
    for name in (worker.MULTIPROCESS_DIR_ENV, "GATEWAY_DATA_DIR", worker.VERBOSE_ENV, worker.SUPERVISOR_ENV):
        monkeypatch.setenv(name, "")
    settings = Settings(_env_file=None, data_dir=tmp_path / "absent" / "data", api_workers=2,
                        api_host="127.0.0.1", api_port=free_port())
    worker.serve_workers(settings, scheduler=None)
    assert served == [[]] and (tmp_path / "absent" / "data").is_dir()

    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigurationError, match="GATEWAY_DATA_DIR"):
        worker.serve_workers(settings.model_copy(update={"data_dir": tmp_path / "a-file" / "data"}), scheduler=None)


def test_workers_stop_when_their_supervisor_is_killed(settings, dev_keys, tmp_path) -> None:
    """``kill -9`` of the supervisor (outside systemd) left its workers serving, without the schedule, and
    holding the port: the service could not start again ("port déjà pris")."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--workers", "2", "--port", str(port),
                                   "--data-dir", str(settings.data_dir)], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while len(_workers(server.pid)) < 2 or not _answers(f"http://127.0.0.1:{port}"):
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "gateway serve --workers 2 did not start"
            time.sleep(0.1)
        workers = _workers(server.pid)
    finally:
        server.kill()
        server.wait()
    deadline = time.monotonic() + 30
    while [pid for pid in workers if _alive(pid)]:
        assert time.monotonic() < deadline, f"workers {workers} still serving after their supervisor died"
        time.sleep(0.1)
    with socket.create_server(("127.0.0.1", port)):  # the port is free for the service's restart
        pass


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
