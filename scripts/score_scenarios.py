"""Score the analyzer on generated scenarios: every scenario at several seeds, verdicts compared
with what the generator expects, as (VM, error, cause) triples.

    python scripts/score_scenarios.py                       # every scenario, seeds 1-20
    python scripts/score_scenarios.py --seeds 1-5 --only disk_upload  # a subset
    python scripts/score_scenarios.py --jobs 2 --json out.json

Prints, per scenario, the seeds that disagree and how (missing / unexpected triples), then the
totals: error recall and precision over (VM, error), cause accuracy over (VM, error, cause).
Exit 1 when any run disagrees.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def score_one(name: str, seed: int) -> dict:
    from analyzer import pipeline
    from analyzer.sample import write_bundles

    with tempfile.TemporaryDirectory() as tmp:
        try:
            [path] = write_bundles([name], Path(tmp), seed=seed)
            expected = json.loads(path.with_suffix(".expected.json").read_text())["verdicts"]
            doc = pipeline.analyze(path).doc
        except Exception as exc:  # a crash is a result too
            return {"scenario": name, "seed": seed, "crash": f"{type(exc).__name__}: {exc}"}
    want = {(v["vm"], v["error"], v["cause"]) for v in expected}
    got = {(v["vm"], v["error"], v["cause"]) for v in doc["verdicts"]}
    # where the generator knows the severity too (a failure that recovered is a warning)
    severity = {(v["vm"], v["error"], v["cause"]): v["severity"] for v in doc["verdicts"]}
    wrong = sorted((f"{v['vm']}/{v['error']}/{v['cause']}: {severity[key]} not {v['severity']}"
                    for v in expected if "severity" in v
                    and severity.get(key := (v["vm"], v["error"], v["cause"]), v["severity"]) != v["severity"]))
    return {"scenario": name, "seed": seed, "want": sorted(want, key=str), "got": sorted(got, key=str),
            "severity_wrong": wrong}


def main() -> int:
    from analyzer.sample.scenarios import SCENARIOS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1-20")
    ap.add_argument("--only", default="", help="scenarios whose name contains this (several: comma-separated)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write every result here")
    args = ap.parse_args()
    names = [n for n in sorted(SCENARIOS) if any(part in n for part in args.only.split(",")) and n != "fleet"]
    work = [(n, s) for n in names for s in _seeds(args.seeds)]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(score_one, *zip(*work)))

    tp_err = fn_err = fp_err = tp_cause = total_cause = 0
    bad: dict[str, list[str]] = {}
    for r in results:
        if "crash" in r:
            bad.setdefault(r["scenario"], []).append(f"seed {r['seed']}: CRASH {r['crash']}")
            continue
        want, got = set(map(tuple, r["want"])), set(map(tuple, r["got"]))
        want_err, got_err = {w[:2] for w in want}, {g[:2] for g in got}
        tp_err += len(want_err & got_err)
        fn_err += len(want_err - got_err)
        fp_err += len(got_err - want_err)
        total_cause += len(want)
        tp_cause += len(want & got)
        if want != got:
            bad.setdefault(r["scenario"], []).append(
                f"seed {r['seed']}: missing {sorted(want - got, key=str)} unexpected {sorted(got - want, key=str)}")
        if r.get("severity_wrong"):
            bad.setdefault(r["scenario"], []).append(f"seed {r['seed']}: severity {r['severity_wrong']}")
    for name, lines in sorted(bad.items()):
        print(name)
        for line in lines:
            print("   ", line)
    recall = tp_err / max(1, tp_err + fn_err)
    precision = tp_err / max(1, tp_err + fp_err)
    print(f"\n{len(results)} runs ({len(names)} scenarios x {len(_seeds(args.seeds))} seeds), "
          f"{len(bad)} scenarios disagree somewhere")
    print(f"errors: recall {recall:.3f} precision {precision:.3f}; "
          f"causes right {tp_cause}/{total_cause} = {tp_cause / max(1, total_cause):.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
