"""Profiles of a whole night (pyinstrument), gateway side and emulator side, as text files.

    .venv/bin/python bench/profile_night.py --label after            # 20,000 events
    .venv/bin/python bench/profile_night.py --label after --events 2000

Writes ``bench/profiles/<label>-gateway.txt`` (``run_batch`` of the night against the emulator in its
own process on a loopback port, as in the demo) and ``bench/profiles/<label>-emulator.txt`` (the
emulator's ``receive`` and ``report`` of the very envelopes the gateway sent, replayed in-process on a
fresh ledger, since the emulator's own process cannot be sampled from here).

pyinstrument samples the main thread only: the sender threads of ``run_batch`` show up as the main
thread waiting on them; their own cost appears in the emulator-side profile's mirror image (parsing
and verifying receipts is small) and in ``bench/night.py``'s stage figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from pyinstrument import Profiler  # noqa: E402

from adapters.dude.emulator.config import EmulatorConfig  # noqa: E402
from adapters.dude.emulator.core import Emulator  # noqa: E402
from gateway.context import Gateway  # noqa: E402
from gateway.demo import emulator_process  # noqa: E402
from gateway.fixturegen import generate_night  # noqa: E402
from gateway.gc_tuning import tune_gc  # noqa: E402
from gateway.keys import init_dev_keys  # noqa: E402
from gateway.pipeline.run import run_batch  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.store.models import DOC_LOT, documents_t  # noqa: E402

PROFILES = ROOT / "bench" / "profiles"


def main() -> None:
    tune_gc()  # as the `gateway` command does
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", required=True, help="file name prefix, e.g. before or after")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    PROFILES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gateway-profile-") as tmp:
        work = Path(tmp)
        settings = Settings(_env_file=None, data_dir=work / "data", report_poll_interval_seconds=0.05)
        init_dev_keys(settings)
        night = generate_night(work / "nuit", events=args.events, seed=args.seed)
        with emulator_process(settings, registry=night.registry_file, report_delay=0.0) as emulator:
            gw = Gateway.open(settings.model_copy(update={"dude_url": emulator.base_url}))
            profiler = Profiler(interval=0.001)
            profiler.start()
            summary = run_batch(gw, night.export_files, trigger="bench")
            profiler.stop()
            with gw.engine.connect() as conn:
                bodies = list(conn.execute(sa.select(documents_t.c.body).where(documents_t.c.kind == DOC_LOT)
                                           .order_by(documents_t.c.id)).scalars())
            gw.close()
        header = f"# run_batch of a {args.events}-event night; states {dict(summary.states)}\n"
        (PROFILES / f"{args.label}-gateway.txt").write_text(
            header + profiler.output_text(unicode=True, color=False, show_all=False))

        config = EmulatorConfig.for_settings(settings, registry_file=night.registry_file, ledger_path=work / "l.db",
                                             report_delay_seconds=0.0)
        with Emulator(config) as emu:
            profiler = Profiler(interval=0.001)
            profiler.start()
            for body in bodies:
                answer = emu.receive(body)
                assert answer.status_code == 200, answer.body[:300]
            profiler.stop()
        header = f"# emulator receive() of the {len(bodies)} envelopes of that night, in-process\n"
        (PROFILES / f"{args.label}-emulator.txt").write_text(
            header + profiler.output_text(unicode=True, color=False, show_all=False))
    print(f"written {PROFILES}/{args.label}-gateway.txt and -emulator.txt")


if __name__ == "__main__":
    main()
