"""Benchmark of the partner API on loopback: bulk submission throughput and the latency of reading one
event. Prints figures; asserts nothing.

    .venv/bin/python bench/api.py                  # 20,000 events in requests of 5,000; 2,000 reads per level
    .venv/bin/python bench/api.py --events 5000    # quicker
    .venv/bin/python bench/api.py --workers 2      # one server layout only (default: 1, then 2)
    .venv/bin/python bench/api.py --database-url postgresql+psycopg://…   # on PostgreSQL (a fresh database each)
    .venv/bin/python bench/api.py --json           # the same figures, machine-readable

The API runs as ``gateway serve --workers N`` in a child process (its own interpreters, as in
production), on a fresh store each time (SQLite, or a new database on ``--database-url``'s server); the
clients are httpx in this process. Bulk submission posts pre-serialised bodies (each request: JSON
parsing, pre-flight, one ingest, the per-event answer) from as many clients at once as the server has
workers (started 0.1 s apart), each on its own connection, one request after the other: first new events,
then the same requests again (all duplicates: the idempotent path). Besides the wall time, the server's
own CPU time (supervisor and workers) is read from ``/proc``, a figure that other processes on a shared
machine do not inflate. Reads fetch random keys, ``GET /api/v1/events/{key}`` (authentication, the event,
its versions and history), with 1, 4 and 16 clients at once; p50/p99 are per request, as the client sees
them, with the CPU each request cost the server and the client (both on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.api.auth import create_client  # noqa: E402
from gateway.context import Gateway  # noqa: E402
from gateway.demo import free_port  # noqa: E402
from gateway.procstats import cpu_seconds, process_tree  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.store.models import utcnow  # noqa: E402
from tests.backends import fresh_postgres_database  # noqa: E402

MISSIONS = [f"{69001 + i:05d}" for i in range(40)]


def make_event(index: int, rng: random.Random) -> dict:
    """A realistic partner event; about 2 % fail pre-flight (a SIRET with a wrong key)."""
    ml = MISSIONS[index % len(MISSIONS)]
    base = {"id_evenement": str(100000 + index), "code_ml": ml, "num_dossier": str(40000 + index),
            "identifiant_pe": f"{rng.randrange(10**7):07d}{rng.choice('ABCDEFGH')}", "nom": "Lefèvre",
            "prenom": "Zoé",
            "date_naissance": f"{rng.randint(2001, 2008)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "conseiller": f"CONS{index % 97:02d}", "date_evenement": "2026-11-20", "saisi_le": "2026-11-20T10:15:00",
            "nir": "204056912345678"}
    kind = index % 4
    if kind == 0:
        return {**base, "type_evenement": "ENT", "modalite": "IND", "premier_entretien": "O"}
    if kind == 1:
        return {**base, "type_evenement": "CPA", "parcours": "ACC"}
    if kind == 2:
        siret = "73282932000075" if rng.random() < 0.08 else "73282932000074"
        return {**base, "type_evenement": "MER", "num_offre": "123456A", "siret": siret, "resultat": "ATT"}
    return {**base, "type_evenement": "PFO", "formacode": "22435", "organisme": "AFPA Lyon"}


def start_server(data_dir: Path, port: int, workers: int = 1, database_url: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    if database_url:
        env["GATEWAY_DATABASE_URL"] = database_url
    process = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port), "--data-dir",
                                str(data_dir), "--workers", str(workers)], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"gateway serve did not start: {process.stderr.read().decode()}")
        time.sleep(0.1)


def wait_until_settled(pid: int, timeout: float = 30.0) -> None:
    """Wait until the server's processes are idle: with ``--workers``, the first worker answers
    ``/healthz`` while the others are still starting, and clients connecting then would all be accepted
    by the first (the bench would measure one worker)."""
    deadline = time.monotonic() + timeout
    before = server_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = server_cpu_seconds(pid)
        if now - before < 0.02:
            return
        before = now


def server_cpu_seconds(pid: int) -> float:
    """CPU time of the server's processes: the supervisor and, with ``--workers``, its workers."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


#: Clients start this far apart, as independent partners would. Which worker accepts a new connection is
#: the kernel's race: two connections opened in the same millisecond both went to one worker in about one
#: run out of five; a moment later, the idle worker takes the second one.
STAGGER_SECONDS = 0.1


def bulk(base_url: str, token: str, bodies: list[bytes], events: int, pid: int, clients: int) -> dict:
    """Post ``bodies`` from ``clients`` threads, each on its own connection, one request after the other
    (client ``k`` posts bodies ``k``, ``k + clients``…, starting ``k × STAGGER_SECONDS`` after the first)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    failures: list[BaseException] = []

    def client(k: int) -> None:
        time.sleep(STAGGER_SECONDS * k)  # counted in the wall time
        try:
            with httpx.Client(base_url=base_url, timeout=300) as http:
                for body in bodies[k::clients]:
                    answer = http.post("/api/v1/events/bulk", content=body, headers=headers)
                    answer.raise_for_status()
                    with lock:
                        for outcome, count in answer.json()["counts"].items():
                            outcomes[outcome] = outcomes.get(outcome, 0) + count
        except BaseException as exc:  # re-raised below, in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    processes = process_tree(pid)
    before = [cpu_seconds(p) for p in processes]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    used = [cpu_seconds(p) - b for p, b in zip(processes, before, strict=True)]
    cpu = sum(used)
    if failures:
        raise failures[0]
    # Which process did the work: the kernel gives a new connection to whichever worker accepts it
    # first, so two clients may still both be served by one worker; this says when.
    busy = sorted((round(u, 2) for u in used if u >= 0.05), reverse=True)
    return {"events": events, "requests": len(bodies), "clients": clients, "seconds": round(seconds, 3),
            "events_per_second": round(events / seconds), "server_cpu_seconds": round(cpu, 3),
            "server_cpu_by_process": busy,
            "events_per_server_cpu_second": round(events / cpu) if cpu > 0 else None, "outcomes": outcomes}


async def reads(base_url: str, token: str, keys: list[str], *, concurrency: int, total: int, pid: int) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    rng = random.Random(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits, headers=headers) as client:
        await client.get(f"/api/v1/events/{keys[0]}")  # warm the connection pool

        async def worker(count: int) -> None:
            for _ in range(count):
                key = rng.choice(keys)
                t0 = time.perf_counter()
                answer = await client.get(f"/api/v1/events/{key}")
                latencies.append(time.perf_counter() - t0)
                if answer.status_code != 200:
                    raise SystemExit(f"GET {key}: {answer.status_code} {answer.text[:200]}")

        cpu, client_cpu = server_cpu_seconds(pid), time.process_time()
        start = time.perf_counter()
        await asyncio.gather(*(worker(max(1, total // concurrency)) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        cpu, client_cpu = server_cpu_seconds(pid) - cpu, time.process_time() - client_cpu
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"clients": concurrency, "requests": len(latencies), "p50_ms": round(p(0.50), 2),
            "p99_ms": round(p(0.99), 2), "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
            "requests_per_second": round(len(latencies) / seconds),
            # per request, in ms: which side of the loopback the CPU goes to (both share the machine)
            "server_cpu_ms": round(cpu / len(latencies) * 1000, 2),
            "client_cpu_ms": round(client_cpu / len(latencies) * 1000, 2)}


def bench(events: int, batch: int, reads_per_level: int, workdir: Path, seed: int, workers: int,
          database_url: str | None = None) -> dict:
    settings = Settings(_env_file=None, data_dir=workdir / "data", api_max_events_per_request=max(batch, 1),
                        database_url=database_url)
    gw = Gateway.open(settings)
    _, token = create_client(gw.engine, name="bench", role="admin", now=utcnow())
    gw.close()
    rng = random.Random(seed)
    items = [make_event(i, rng) for i in range(events)]
    bodies = [json.dumps({"events": items[i:i + batch]}).encode() for i in range(0, events, batch)]
    keys = [f"{e['code_ml']}-{e['id_evenement']}" for e in items]

    port = free_port()
    server = start_server(settings.data_dir, port, workers, database_url)
    wait_until_settled(server.pid)
    base_url = f"http://127.0.0.1:{port}"
    try:
        first = bulk(base_url, token, bodies, events, server.pid, clients=workers)
        again = bulk(base_url, token, bodies, events, server.pid, clients=workers)
        levels = [asyncio.run(reads(base_url, token, keys, concurrency=c, total=reads_per_level, pid=server.pid))
                  for c in (1, 4, 16)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"events": events, "batch": batch, "workers": workers,
            "store": "postgresql" if database_url else "sqlite", "body_bytes": sum(map(len, bodies)),
            "bulk_new": first, "bulk_again": again, "reads": levels}


def fr(n: int) -> str:
    return f"{n:,}".replace(",", "\u202f")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=5000, help="events per request")
    parser.add_argument("--reads", type=int, default=2000, help="reads per concurrency level")
    parser.add_argument("--workers", type=int, action="append",
                        help="server processes (gateway serve --workers); repeat to compare (default: 1, then 2)")
    parser.add_argument("--database-url", help="store on this PostgreSQL server (postgresql+psycopg://…): a fresh "
                        "database per layout, created next to the one named and dropped after (default: SQLite)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    for workers in args.workers or [1, 2]:
        with (tempfile.TemporaryDirectory(prefix="gateway-bench-api-") as tmp,
              fresh_postgres_database(args.database_url, prefix="gateway_bench_api") if args.database_url
              else contextlib.nullcontext() as database_url):
            results.append(bench(args.events, args.batch, args.reads, Path(tmp), args.seed, workers, database_url))
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return
    for result in results:
        print(f"API, {result['workers']} processus, stockage {result['store']} — soumission en nombre : "
              f"{fr(result['events'])} événements, requêtes de {fr(result['batch'])} "
              f"({result['body_bytes'] / 1e6:.1f} Mo au total), {result['workers']} client(s) à la fois")
        for label, key in (("nouveaux", "bulk_new"), ("renvoyés (déjà reçus)", "bulk_again")):
            b = result[key]
            split = " + ".join(f"{u:.2f}" for u in b["server_cpu_by_process"])
            print(f"  {label:<24}{b['seconds']:>8.3f} s {fr(b['events_per_second']):>9} évts/s   (serveur : "
                  f"{b['server_cpu_seconds']:.3f} s de CPU ({split}), {fr(b['events_per_server_cpu_second'] or 0)} "
                  f"évts par seconde de CPU)  {b['outcomes']}")
        print(f"API, {result['workers']} processus, stockage {result['store']} — lecture d'un événement "
              f"(GET /api/v1/events/{{clé}})")
        print(f"  {'clients':>8}{'p50 (ms)':>10}{'p99 (ms)':>10}{'moy. (ms)':>11}{'req/s':>8}"
              f"{'CPU serveur/req (ms)':>22}{'CPU client/req (ms)':>21}")
        for r in result["reads"]:
            print(f"  {r['clients']:>8}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['mean_ms']:>11.2f}"
                  f"{r['requests_per_second']:>8}{r['server_cpu_ms']:>22.2f}{r['client_cpu_ms']:>21.2f}")


if __name__ == "__main__":
    main()
