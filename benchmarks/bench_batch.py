"""Batch throughput: bundles per minute for N small generated bundles with --jobs 1 and
--jobs 2, and the time of a no-change re-run (everything cached).

    python benchmarks/bench_batch.py [--bundles 100] [--vms 2] [--days 1] [--work DIR]
"""

from __future__ import annotations

import argparse
import io
import resource
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.batch import run_batch  # noqa: E402
from analyzer.pipeline import Options  # noqa: E402
from analyzer.sample import list_scenarios, write_bundles  # noqa: E402


def generate(folder: Path, count: int, vms: int, days: int) -> list[Path]:
    names = [n for n, _ in list_scenarios() if not n.startswith("fleet")]
    folder.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    seed = 1
    while len(made) < count:
        batch = names[: count - len(made)]
        for path in write_bundles(batch, folder / f"seed{seed}", vms=vms, days=days, seed=seed):
            target = folder / f"s{seed}-{path.name}"
            path.rename(target)
            made.append(target)
        shutil.rmtree(folder / f"seed{seed}")
        seed += 1
    return made


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the pool's workers)."""
    own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                       resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_run(bundles: list[Path], out: Path, jobs: int) -> tuple[float, float, object]:
    started, cpu = time.perf_counter(), cpu_seconds()
    result = run_batch([str(p) for p in bundles], out, jobs, Options(), None,
                       Console(file=io.StringIO()))
    return time.perf_counter() - started, cpu_seconds() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundles", type=int, default=100)
    parser.add_argument("--vms", type=int, default=2)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out/batch"))
    args = parser.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    bundles = generate(args.work / "bundles", args.bundles, args.vms, args.days)
    size = sum(p.stat().st_size for p in bundles)
    print(f"{len(bundles)} bundles, {size / 2**20:.1f} MiB zipped "
          f"(--vms {args.vms} --days {args.days})")
    for jobs in (1, 2):
        out = args.work / f"out-jobs{jobs}"
        seconds, cpu, result = timed_run(bundles, out, jobs)
        # CPU / wall tells how many cores the run actually got on a shared machine.
        print(f"--jobs {jobs}: {seconds:.1f} s, {result.done / seconds * 60:.1f} bundles/min "
              f"(done {result.done}, failed {len(result.failed)}; CPU {cpu:.1f} s = "
              f"{cpu / seconds:.2f} cores)")
    seconds, _, result = timed_run(bundles, args.work / "out-jobs2", 2)
    print(f"no-change re-run: {seconds:.2f} s (skipped {result.skipped}, done {result.done})")


if __name__ == "__main__":
    main()
