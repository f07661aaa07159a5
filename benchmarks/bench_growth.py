"""Issue 20: how `analyze` grows with VMs and days at a fixed size (the cost per VM-day).

    python benchmarks/bench_growth.py [--size 128MiB] [--vms 50,150,300] [--days 1,3,7] [--runs 1]

Generates `sample fleet --vms V --days D --size SIZE` for each pair (cached under --work) and
times `analyze` (report and JSON) of this checkout under GNU time: median wall and CPU seconds,
largest peak RSS, and the sizes of the report and the JSON. The same bytes of text in every
bundle, so what grows is what VMs x days add: cycles, tasks, state lines, verdicts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import measure  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="128MiB")
    parser.add_argument("--vms", default="50,150,300")
    parser.add_argument("--days", default="1,3,7")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-growth")
    args = parser.parse_args()
    print("| VMs | days | wall s | CPU s | peak MiB | cycles | tasks | report bytes | JSON bytes |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for vms in map(int, args.vms.split(",")):
        for days in map(float, args.days.split(",")):
            folder = args.work / f"{vms}x{days:g}"
            bundle = folder / "fleet.zip"
            if not bundle.exists():
                folder.mkdir(parents=True, exist_ok=True)
                subprocess.run([sys.executable, "-m", "analyzer", "sample", "fleet", "--vms", str(vms), "--days",
                                f"{days:g}", "--size", args.size, "-o", str(folder)], check=True,
                               stdout=subprocess.DEVNULL)
            out = folder / "out"
            runs = []
            for _ in range(args.runs):
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                runs.append(measure([sys.executable, "-m", "analyzer", "analyze", str(bundle), "-o", str(out),
                                     "--json", str(out / "analysis.json")], cwd=out))
            doc = json.loads((out / "analysis.json").read_text(encoding="utf-8"))
            cycles = sum(len(vm["cycles"]) for vm in doc["vms"])
            tasks = sum(vm.get("task_counts", {}).get("total", len(vm["tasks"])) for vm in doc["vms"])
            html = next(out.glob("*.html")).stat().st_size
            print(f"| {vms} | {days:g} | {statistics.median(r.wall for r in runs):.1f} | "
                  f"{statistics.median(r.cpu for r in runs):.1f} | {max(r.peak_mb for r in runs):.0f} | {cycles:,} | "
                  f"{tasks:,} | {html:,} | {(out / 'analysis.json').stat().st_size:,} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
