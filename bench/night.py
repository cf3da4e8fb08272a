"""Benchmark of a whole night, stage by stage: time and peak memory. Prints figures; asserts nothing.

    .venv/bin/python bench/night.py                 # 20,000 events, SQLite, emulator on loopback
    .venv/bin/python bench/night.py --events 2000   # quicker
    .venv/bin/python bench/night.py --json          # the same figures, machine-readable

Each stage runs the functions a real run uses, on its own, so its time and memory can be read
apart: reading and pre-flight checks alone, then reading + storing, sealing (XML, XSD, signature,
store), sending to the emulator (a separate process on a loopback port, as DUDE would be) and
receipts, then the reports. A last line runs the same night again through `run_batch`, the way
``gateway run`` does it (sealing overlaps sending), on a fresh store.

Peak memory is the process's resident set high-water mark, reset before each stage
(``/proc/self/clear_refs``), so each figure is that stage's own peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.parcours3.mapping import parse_export  # noqa: E402
from gateway.context import Gateway  # noqa: E402
from gateway.demo import emulator_process  # noqa: E402
from gateway.fixturegen import generate_night  # noqa: E402
from gateway.keys import init_dev_keys  # noqa: E402
from gateway.pipeline import dispatch, reconcile  # noqa: E402
from gateway.pipeline.ingest import ingest  # noqa: E402
from gateway.pipeline.run import run_batch  # noqa: E402
from gateway.preflight import PreflightConfig  # noqa: E402
from gateway.settings import Settings  # noqa: E402


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, events: int, fn: Callable[[], Any], results: list[dict]) -> Any:
    reset_peak()
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    results.append({"stage": name, "seconds": round(seconds, 3), "events_per_second": round(events / seconds)
                    if seconds else None, "peak_rss_mb": round(peak_mb(), 1)})
    return value


def bench(events: int, workdir: Path, *, seed: int) -> dict:
    settings = Settings(_env_file=None, data_dir=workdir / "data", report_poll_interval_seconds=0.05)
    init_dev_keys(settings)
    night = generate_night(workdir / "nuit", events=events, seed=seed)
    files = night.export_files
    config = PreflightConfig.from_settings(settings)
    stages: list[dict] = []

    with emulator_process(settings, registry=night.registry_file, report_delay=0.0) as emulator:
        run_settings = settings.model_copy(update={"dude_url": emulator.base_url})
        gw = Gateway.open(run_settings)

        def read_only() -> int:
            return sum(1 for path in files for _ in parse_export(path, config))

        def store() -> None:
            for path in files:
                ingest(gw.engine, parse_export(path, config), run_id=None, now=gw.clock())

        def send(sealed: list[str]) -> None:
            for envelope_id in sealed:
                dispatch.send_envelope(gw, envelope_id)

        def reports() -> None:
            while reconcile.awaiting(gw):
                reconcile.poll_reports(gw, force=True)

        measure("lecture + contrôle", events, read_only, stages)
        measure("lecture + stockage", events, store, stages)
        sealed = measure("scellement (XML, XSD, signature)", events, lambda: dispatch.seal_all(gw, run_id=None), stages)
        measure("envoi + accusés", events, lambda: send(sealed), stages)
        measure("comptes rendus", events, reports, stages)
        gw.close()

    fresh = settings.model_copy(update={"data_dir": workdir / "data2"})
    init_dev_keys(fresh)
    with emulator_process(fresh, registry=night.registry_file, report_delay=0.0) as emulator:
        gw = Gateway.open(fresh.model_copy(update={"dude_url": emulator.base_url}))
        summary = measure("nuit complète (run_batch)", events, lambda: run_batch(gw, files, trigger="bench"), stages)
        gw.close()
    return {"events": events, "stages": stages, "states": dict(summary.states),
            "run_durations": summary.durations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        result = bench(args.events, Path(tmp), seed=args.seed)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    print(f"Nuit de {result['events']:,} événements".replace(",", " "))
    print(f"{'étape':<36}{'secondes':>10}{'évts/s':>10}{'pic RSS (Mo)':>14}")
    for s in result["stages"]:
        print(f"{s['stage']:<36}{s['seconds']:>10.3f}{s['events_per_second'] or 0:>10}{s['peak_rss_mb']:>14.1f}")
    print("états finaux :", result["states"])


if __name__ == "__main__":
    main()
