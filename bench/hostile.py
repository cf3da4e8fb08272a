"""Time and peak memory of every hostile input (``fixtures/hostile/``, and the big ones generated here).

Each case runs in its own process, so that its peak resident memory is its own: the process imports the
gateway, builds what the door needs (DUDE's emulator and the gateway's trust store, or the export reader),
notes its resident memory, does the work once, and reports the outcome (the code), the time, its peak RSS and
how far that rose above the baseline (the peak of the imports is forgotten first: Linux ``clear_refs``). The
last line names the largest case and its peak::

    .venv/bin/python bench/hostile.py            # the corpus, a 12 MB text node, a 100 MB line, 100 MB of lines
    .venv/bin/python bench/hostile.py --json     # the same, for scripts

XML goes through the two parsers that every door uses: DUDE's (`Emulator.receive`, what a POST meets) and
the gateway's (`open_signed`, what a receipt, a polled report and the callback meet). An export goes through
`parse_export` to its last outcome (reading, decoding, pre-flight), none of them kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MB = 1024 * 1024


def one(case: str, path: Path, data_dir: Path) -> dict:
    """In the child process: one case, measured."""
    import logging

    logging.disable(logging.CRITICAL)  # a thousand refused lines would fill the terminal
    from gateway.errors import GatewayError
    from gateway.settings import Settings

    settings = Settings(_env_file=None, data_dir=data_dir)
    if case.startswith("xml-"):
        from adapters.dude.emulator import Emulator, EmulatorConfig
        from adapters.dude.messages import open_signed
        from adapters.dude.signing import TrustStore

        emulator = Emulator(EmulatorConfig.for_settings(settings, registry_file=None, ledger_path=None))
        trust = TrustStore.from_dir(settings.gateway_trust_dir)

        def work() -> str:
            body = path.read_bytes()
            answer = emulator.receive(body)
            try:
                open_signed(body, trust=trust, expected="CompteRendu")
                return f"DUDE {answer.status_code} {answer.json().get('code')}, passerelle acceptée"
            except GatewayError as exc:
                return f"DUDE {answer.status_code} {answer.json().get('code')}, passerelle {exc.code}"
    else:
        from collections import Counter

        from adapters.parcours3.mapping import parse_export
        from gateway.preflight import PreflightConfig

        config = PreflightConfig.from_settings(settings)

        def work() -> str:
            try:
                counts = Counter(getattr(o, "code", None) or "valide" for o in parse_export(path, config))
            except GatewayError as exc:
                return f"fichier refusé {exc.code}"
            return ", ".join(f"{n} {c}" for c, n in sorted(counts.items(), key=str)) or "aucun enregistrement"

    import gc

    from gateway.procstats import peak_rss_bytes, reset_peak, rss_bytes

    gc.collect()
    reset_peak()
    baseline = rss_bytes()
    started = time.perf_counter()
    outcome = work()
    seconds = time.perf_counter() - started
    peak = peak_rss_bytes() or 0
    return {"case": case, "bytes": path.stat().st_size, "outcome": outcome, "seconds": round(seconds, 3),
            "baseline_rss": baseline, "peak_rss": peak, "growth": max(0, peak - baseline)}


def cases(work_dir: Path) -> list[tuple[str, Path]]:
    from tests.hostile_inputs import HOSTILE, huge_text_node_xml, write_csv_of_many_lines, write_csv_with_huge_line

    found = [(p.name, p) for p in sorted(HOSTILE.glob("*")) if p.suffix in {".xml", ".csv"}]
    text_node = work_dir / "xml-noeud-texte-enorme.xml"
    text_node.write_bytes(huge_text_node_xml())
    found.append((text_node.name, text_node))
    found.append(("csv-100-mo.csv", write_csv_with_huge_line(work_dir / "csv-100-mo.csv")))
    many, _ = write_csv_of_many_lines(work_dir / "csv-100-mo-de-lignes.csv")
    found.append((many.name, many))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.path, args.data_dir)))
        return

    from gateway.keys import init_dev_keys
    from gateway.settings import Settings

    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        work_dir = Path(tmp)
        data_dir = work_dir / "data"
        init_dev_keys(Settings(_env_file=None, data_dir=data_dir))
        results = []
        for name, path in cases(work_dir):
            proc = subprocess.run([sys.executable, __file__, "--one", name, "--path", str(path), "--data-dir",
                                   str(data_dir)], capture_output=True, text=True, check=True)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    largest = max(results, key=lambda r: (r["bytes"], r["peak_rss"]))
    if args.json:
        print(json.dumps({"cases": results, "largest": largest}, ensure_ascii=False, indent=2))
        return
    print(f"{'cas':<36} {'taille':>10} {'durée':>8} {'pic RSS':>9} {'hausse':>9}  résultat")
    for r in results:
        print(f"{r['case']:<36} {r['bytes'] / MB:>8.2f} Mo {r['seconds']:>6.2f} s {r['peak_rss'] / MB:>6.1f} Mo "
              f"{r['growth'] / MB:>6.2f} Mo  {r['outcome']}")
    hungriest = max(results, key=lambda r: r["growth"])
    print(f"\nLe plus gros cas : {largest['case']} ({largest['bytes'] / MB:.0f} Mo) — pic de mémoire "
          f"{largest['peak_rss'] / MB:.1f} Mo, soit {largest['growth'] / MB:.2f} Mo au-dessus du processus au repos.")
    print(f"Le plus gourmand : {hungriest['case']} ({hungriest['bytes'] / MB:.0f} Mo) — pic "
          f"{hungriest['peak_rss'] / MB:.1f} Mo, {hungriest['growth'] / MB:.2f} Mo au-dessus du repos.")


if __name__ == "__main__":
    main()
