"""Each stage after the ingest, for two checkouts side by side, on one ingest saved once.

    python benchmarks/bench_stages.py BUNDLE --before DIR [--runs 3]

The ingest of BUNDLE (this checkout's) is saved once with pickle; then, per round, each checkout
(PYTHONPATH) runs the stages of `pipeline.analyze` after it, `report.render` and the JSON on it,
in a fresh process with the command line's process settings (`cli.tune_process`). Prints the
median wall seconds of each stage, and its peak RSS (VmHWM, reset before each stage), so that a
change to one stage is seen apart from the ingest's noise.
"""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STAGES = r'''
import io, pickle, sys, time
from analyzer.cli import tune_process
tune_process(["analyze"])
from pathlib import Path
from analyzer import cycles, identity, pipeline, report, signatures, sources, verdicts
from analyzer.report import jsontext

def hwm():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) // 1024 for l in status if l.startswith("VmHWM"))

last = [time.perf_counter()]
def tick(name):
    now = time.perf_counter()
    print(f"{name} {now - last[0]:.4f} {hwm()}")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    last[0] = time.perf_counter()

bundle, saved = Path(sys.argv[1]), sys.argv[2]
with open(saved, "rb") as f:
    found, diags = pickle.load(f)
options = pipeline.Options()
tick("load")
library = signatures.load_library(options.signatures); tick("load_library")
frames = pipeline._take_frames(found)
pipeline._place_yearless(frames, found.stats, diags); tick("take_frames")
pipeline._pair_tasks(frames, diags); tick("pair_tasks")
frames["identities"] = identity.build(frames, diags); tick("identity")
pipeline._match_tasks(frames, library); tick("match_tasks")
result = cycles.build(frames, diags); tick("cycles")
frames["cycles"], frames["cycle_disks"] = result.cycles, result.disks
decision = verdicts.decide(frames, result, library, diags, sources.tables_of(found.stats), release=True,
                           redact=True, lang="en"); tick("verdicts")
for finding in decision.findings:
    signature = library.signatures.get(finding["signature"])
    finding["title"] = signature.title if signature is not None else None
doc = pipeline._document(bundle, options, found, result, decision, diags, "en"); tick("document")
html = report.render(doc, tasks=decision.tasks); tick("render")
jsontext.write(doc, io.BytesIO(), indent=True, newline=True); tick("json")
'''
SUMMED = ("load_library", "take_frames", "pair_tasks", "identity", "match_tasks", "cycles", "verdicts",
          "document", "render", "json")


def save_ingest(bundle: Path, target: Path) -> None:
    from analyzer import ingest, pipeline, signatures
    from analyzer.diagnostics import Diagnostics

    options, diags = pipeline.Options(), Diagnostics()
    found = ingest.ingest(bundle, pipeline._zones(options), signatures.load_library(options.signatures), diags)
    with open(target, "wb") as f:
        pickle.dump((found, diags), f)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the code before")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        saved = Path(work) / "ingest.pkl"
        save_ingest(args.bundle.resolve(), saved)
        tools = {"before": args.before.resolve(), "after": ROOT}
        seconds = {name: collections.defaultdict(list) for name in tools}
        peaks = {name: collections.defaultdict(list) for name in tools}
        for _ in range(args.runs):
            for name, checkout in tools.items():
                out = subprocess.run([sys.executable, "-c", STAGES, str(args.bundle.resolve()), str(saved)],
                                     capture_output=True, text=True, check=True, cwd=work,
                                     env={**os.environ, "PYTHONPATH": str(checkout)}).stdout
                for line in out.splitlines():
                    stage, wall, peak = line.split()
                    seconds[name][stage].append(float(wall))
                    peaks[name][stage].append(int(peak))
    print(f"{args.bundle.name}: stages after one saved ingest, medians of {args.runs} (peak: largest)")
    print("| stage | before s | after s | before peak MiB | after peak MiB |")
    print("|---|---:|---:|---:|---:|")
    for stage in SUMMED:
        print(f"| {stage} | {statistics.median(seconds['before'][stage]):.2f} | "
              f"{statistics.median(seconds['after'][stage]):.2f} | {max(peaks['before'][stage])} | "
              f"{max(peaks['after'][stage])} |")
    total = {name: statistics.median(sum(seconds[name][s][i] for s in SUMMED) for i in range(args.runs))
             for name in tools}
    print(f"| all of them | {total['before']:.2f} | {total['after']:.2f} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
