"""Where a night's cores go, moment by moment: the CPU use of each thread of the run, of its reader process
and of the emulator, every ``--step`` seconds, with the envelopes' milestones. Prints figures; asserts nothing.

    .venv/bin/python bench/timeline.py                  # 20,000 events
    .venv/bin/python bench/timeline.py --events 5000 --step 0.1

`bench/night.py` says how long a night takes and how much CPU each process used; this says *when*: a core
left idle while another process waits (the start, before the first envelope; the end, while DUDE checks
the last one) is time that no amount of work saved elsewhere gets back, and a thread busy all night long
is the one that sets the pace. Read from ``/proc`` (Linux, `gateway.procstats`): the CPU time of each
thread of this process (the run's main thread, its sender threads) and of its children (the reader, the
emulator), sampled by a thread of its own, which is left out of the figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from night import fresh_settings, generate  # noqa: E402

from gateway.context import Gateway  # noqa: E402
from gateway.demo import emulator_process  # noqa: E402
from gateway.gc_tuning import tune_gc  # noqa: E402
from gateway.pipeline.run import run_batch  # noqa: E402
from gateway.procstats import cpu_seconds, process_tree  # noqa: E402


class Sampler(threading.Thread):
    """Reads the CPU time of every thread of this process and of the reader, sealing and emulator processes."""

    def __init__(self, emulator_pid: int, step: float):
        super().__init__(name="sampler", daemon=True)
        self.emulator_pid, self.step = emulator_pid, step
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.names: dict[str, str] = {}
        self._done = threading.Event()

    def run(self) -> None:
        me, mine = os.getpid(), threading.get_native_id()
        start = time.perf_counter()
        while not self._done.is_set():
            row = {tid: cpu_seconds(me, thread=int(tid)) for tid in os.listdir(f"/proc/{me}/task")
                   if int(tid) != mine}
            for child in process_tree(me)[1:]:
                row[self._label(child)] = cpu_seconds(child)
            row = {key: value for key, value in row.items() if value == value}  # NaN: gone meanwhile
            for thread in threading.enumerate():  # Python's names for the native thread ids
                if thread.native_id is not None:
                    self.names.setdefault(str(thread.native_id), thread.name)
            self.samples.append((time.perf_counter() - start, row))
            time.sleep(self.step)

    def _label(self, pid: int) -> str:
        if pid == self.emulator_pid:
            return "émulateur"
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            command = b""
        return "scelleur" if b"sealing_child" in command else "lecteur"

    def stop(self) -> None:
        self._done.set()
        self.join()


class Milestones(logging.Handler):
    """The run's log lines about envelopes (sealed, receipt, report), with the time they came."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.start = time.perf_counter()
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name in ("gateway.dispatch", "gateway.reconcile") and message.startswith("envelope "):
            self.lines.append((time.perf_counter() - self.start, message[:110]))


def main() -> None:
    tune_gc()  # as the `gateway` command does
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--step", type=float, default=0.2, help="seconds between two lines (default 0.2)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    milestones = Milestones()
    for name in ("gateway.dispatch", "gateway.reconcile"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(milestones)
        logger.propagate = False  # the milestones are printed at the end, in order

    with tempfile.TemporaryDirectory(prefix="timeline-") as work:
        exports, registry = generate(Path(work) / "nuit", args.events, args.seed)
        settings = fresh_settings(Path(work) / "donnees")
        with emulator_process(settings, registry=registry, report_delay=0.0) as emulator:
            gw = Gateway.open(settings.model_copy(update={"dude_url": emulator.base_url}))
            gw.signer  # noqa: B018  (loading the key is set-up, not night work)
            sampler = Sampler(emulator.process.pid, args.step / 4)
            sampler.start()
            milestones.start = time.perf_counter()
            started = time.perf_counter()
            run_batch(gw, exports, trigger="bench")
            seconds = time.perf_counter() - started
            sampler.stop()
            gw.close()
    report(sampler, milestones, seconds, args.events, args.step, main_tid=str(threading.main_thread().native_id))


def report(sampler: Sampler, milestones: Milestones, seconds: float, events: int, step: float, *,
           main_tid: str) -> None:
    samples = sampler.samples
    totals = {}
    for key in {k for _, row in samples for k in row}:
        seen = [row[key] for _, row in samples if key in row]
        totals[key] = max(seen) - min(seen)
    keys = [k for k in sorted(totals, key=totals.get, reverse=True) if totals[k] >= 0.02]

    def label(key: str) -> str:
        if key == main_tid:
            return "run"
        return sampler.names.get(key, key)[:11]

    count = f"{events:,}".replace(",", " ")
    print(f"Nuit de {count} événements en {seconds:.2f} s : % d'un cœur par tâche, toutes les {step} s")
    print(f"{'s':>6} " + " ".join(f"{label(k):>11}" for k in keys) + f"{'total':>8}")
    previous = samples[0]
    for when, row in samples[1:]:
        if when - previous[0] < step * 0.999 and (when, row) != samples[-1]:
            continue
        elapsed = when - previous[0]
        shares = [(row[k] - previous[1][k]) / elapsed * 100 if k in row and k in previous[1] else None for k in keys]
        print(f"{when:6.2f} " + " ".join(f"{s:11.0f}" if s is not None else f"{'':>11}" for s in shares)
              + f"{sum(s for s in shares if s is not None):8.0f}")
        previous = (when, row)
    total = sum(totals[k] for k in keys)
    print("CPU (s) : " + ", ".join(f"{label(k)} {totals[k]:.2f}" for k in keys)
          + f" ; en tout {total:.2f} s sur {len(os.sched_getaffinity(0))} cœurs")
    print("Lots :")
    for when, line in milestones.lines:
        print(f"{when:6.2f}  {line}")


if __name__ == "__main__":
    main()
