"""Issue 20: a full appliance (300 VMs x 7 days) before and after, side by side in one run.

    python benchmarks/bench_scale.py BUNDLE --before DIR [--runs 3] [--rg-patterns FILE]

Each round runs, one after the other, `analyze` (HTML report and JSON) of the checkout at
--before and of this checkout (PYTHONPATH), and `rg -j2 -c -f PATTERNS` over the bundle's
members fully decompressed to plain files (.gz inflated, nested tgz unpacked). The machine is
shared, so only numbers of one run are compared: medians of wall and CPU seconds, the largest
peak RSS (GNU time), and the sizes of the report and the JSON.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import extract, measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def plain_members(bundle: Path, folder: Path) -> tuple[list[Path], int]:
    """The bundle's members as plain files: run.extract's (nested tgz unpacked), .gz inflated."""
    files, _ = extract(bundle, folder)
    for packed in (f for f in files if f.suffix == ".gz"):
        with gzip.open(packed) as src, open(packed.with_suffix(""), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        packed.unlink()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".done")
    return files, sum(p.stat().st_size for p in files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the code before")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rg-patterns", type=Path, default=ROOT.parent / "shared" / "bench" / "rg-patterns.txt")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-scale")
    args = parser.parse_args()
    files, size = plain_members(args.bundle, args.work / "plain")
    tools = {"before": args.before.resolve(), "after": ROOT}
    rows: dict[str, list] = {name: [] for name in (*tools, "rg")}
    sizes: dict[str, tuple[int, int]] = {}
    for n in range(args.runs):
        for name, checkout in tools.items():
            out = args.work / name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            env = {**os.environ, "PYTHONPATH": str(checkout)}
            rows[name].append(measure([sys.executable, "-m", "analyzer", "analyze", str(args.bundle.resolve()),
                                       "-o", str(out), "--json", str(out / "analysis.json")], env=env, cwd=out))
            html = next(out.glob("*.html"))
            sizes[name] = (html.stat().st_size, (out / "analysis.json").stat().st_size)
        rows["rg"].append(measure(["rg", "-j2", "-c", "-f", str(args.rg_patterns), "--", *map(str, files)]))
        print(f"round {n + 1}: " + ", ".join(f"{k} {v[-1].wall:.1f} s" for k, v in rows.items()), flush=True)
    print(f"\n{args.bundle.name}: {size / 1e6:.0f} MB of plain text, {args.runs} rounds (medians; peak: largest)")
    print("| tool | wall s | CPU s | peak MiB | MB/s | vs rg | report bytes | JSON bytes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rg_wall = statistics.median(r.wall for r in rows["rg"])
    for name, runs in rows.items():
        wall = statistics.median(r.wall for r in runs)
        cpu = statistics.median(r.cpu for r in runs)
        peak = max(r.peak_mb for r in runs)
        html, js = sizes.get(name, (None, None))
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {peak:.0f} | {size / 1e6 / wall:.0f} | {rg_wall / wall:.2f}x | "
              f"{'' if html is None else f'{html:,}'} | {'' if js is None else f'{js:,}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
