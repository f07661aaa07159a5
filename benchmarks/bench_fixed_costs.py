"""Issue 20: the share of `analyze`'s wall time that comes after the ingest, two checkouts side by side.

    python benchmarks/bench_fixed_costs.py BUNDLE --before DIR [--runs 3]

Each round runs the real command line (`bundle-analyzer analyze BUNDLE -o TMP --json TMP/a.json`)
of the checkout at --before and of this checkout (PYTHONPATH), one after the other, each in a
fresh process. The process's wall time is taken from outside; inside, `ingest.ingest` is wrapped
to note when it returns, and the process notes when the command returns. "After ingest" is the
time between the two: pairing, cycles, verdicts, document, report, JSON and the terminal summary,
everything the bundle's size does not drive. Prints the medians and each round's share.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUNNER = r'''
import json, os, sys, time
from analyzer import cli, ingest
cli.tune_process(["analyze"])
times = {}
plain_ingest = ingest.ingest
def timed_ingest(*args, **kwargs):
    times["ingest_start"] = time.perf_counter()
    found = plain_ingest(*args, **kwargs)
    times["ingest_end"] = time.perf_counter()
    return found
ingest.ingest = timed_ingest
code = cli.run(sys.argv[1:])
times["end"] = time.perf_counter()
with open(os.environ["TIMES_OUT"], "w") as out:
    json.dump({"code": code, **times}, out)
'''


def one_run(checkout: Path, bundle: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        times_out = Path(tmp) / "times.json"
        env = {**os.environ, "PYTHONPATH": str(checkout), "TIMES_OUT": str(times_out)}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", RUNNER, "analyze", str(bundle), "-o", tmp, "--json",
                        str(Path(tmp) / "a.json")], env=env, cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        inner = json.loads(times_out.read_text())
    if inner["code"] != 0:
        raise SystemExit(f"analyze of {checkout} exited with {inner['code']}")
    after = inner["end"] - inner["ingest_end"]
    return {"wall": wall, "ingest": inner["ingest_end"] - inner["ingest_start"], "after": after,
            "share": after / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--before", type=Path, required=True, help="checkout to compare with")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    checkouts = {"before": args.before.resolve(), "after": ROOT}
    results: dict[str, list[dict]] = {name: [] for name in checkouts}
    for n in range(args.runs):
        for name, checkout in checkouts.items():
            results[name].append(one_run(checkout, args.bundle.resolve()))
        print(f"round {n + 1}: " + "; ".join(
            f"{name}: {r[-1]['wall']:.1f} s wall, {r[-1]['after']:.2f} s after the ingest ({r[-1]['share']:.1%})"
            for name, r in results.items()), flush=True)
    print(f"\n{args.bundle.name}: {args.runs} rounds (medians)")
    print("| checkout | wall s | ingest s | after ingest s | share of wall | shares per round |")
    print("|---|---:|---:|---:|---:|---|")
    for name, runs in results.items():
        median = {key: statistics.median(r[key] for r in runs) for key in ("wall", "ingest", "after", "share")}
        shares = ", ".join(f"{r['share']:.1%}" for r in runs)
        print(f"| {name} | {median['wall']:.2f} | {median['ingest']:.2f} | {median['after']:.2f} | "
              f"{median['share']:.1%} | {shares} |")


if __name__ == "__main__":
    main()
