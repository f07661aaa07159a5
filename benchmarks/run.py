"""Throughput of `bundle-analyzer analyze` against ripgrep and a hand-written Python loop.

    python benchmarks/run.py [--sizes 0.25,0.5,1] [--runs 3] [--quick] [--batch]

For each size it generates `sample fleet --vms 300 --days 7 --size <size>GiB` (cached under
benchmarks/out/), extracts it once (gzip rotations stay .gz, the nested vc-support archive is
unpacked) and times, each as a whole process, the median of --runs runs of:

  analyze   bundle-analyzer analyze, HTML report and JSON, end to end
  ingest    bundle-analyzer inspect: open, decode, parse, match and reduce every member (the
            per-member loop; no verdicts, no report)
  rg        rg -j2 -z -c with every signature regex (a matcher's literals when it has no regex),
            word boundaries written ASCII-only as rg's manual advises: `\\b` -> `(?-u:\\b)`
  rg-as-is  the same with the patterns as the library writes them (rg 13's lazy DFA gives up on
            a Unicode `\\b` and the whole union runs in its slow NFA)
  py-loop   a per-line `re` loop over the same patterns, run on a slice and scaled

MB/s are over the uncompressed text (1 MB = 10^6 bytes); CPU and peak memory (maximum RSS, in
MiB, the largest of the runs) come from GNU time. Results go to the terminal and, for full runs,
into the marked block of BENCHMARKS.md.
--quick runs a tiny bundle once, writes no Markdown (the smoke test uses it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

THREADS = 2  # rg -j2 and polars' pool: the same thread count for both
GNU_TIME = "/usr/bin/time"
PY_SLICE = 24_000_000  # bytes of text the Python loop reads; its time is scaled to the whole
FULL = {"vms": 300, "days": 7}
QUICK = {"vms": 6, "days": 1, "size": "2MiB"}
START, END = "<!-- results:start -->", "<!-- results:end -->"


@dataclass
class Run:
    wall: float
    cpu: float
    peak_mb: float


@dataclass
class Row:
    tool: str
    size_mb: float  # uncompressed text measured (py-loop: the whole, after scaling)
    runs: list[Run]
    scale: float = 1.0  # py-loop: whole / slice

    @property
    def wall(self) -> float:
        return statistics.median(r.wall for r in self.runs) * self.scale

    @property
    def cpu(self) -> float:
        return statistics.median(r.cpu for r in self.runs) * self.scale

    @property
    def peak_mb(self) -> float:
        return max(r.peak_mb for r in self.runs)

    @property
    def mbps(self) -> float:
        return self.size_mb / self.wall if self.wall else 0.0


# ---- the bundle ---------------------------------------------------------------------------


def generate(folder: Path, vms: int, days: float, size: str) -> Path:
    """The fleet bundle for these arguments, generated once (a stamp file names them)."""
    bundle, stamp = folder / "fleet.zip", folder / "args.json"
    args = {"vms": vms, "days": days, "size": size}
    if bundle.exists() and stamp.exists() and json.loads(stamp.read_text()) == args:
        return bundle
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "analyzer", "sample", "fleet", "--vms", str(vms),
                    "--days", str(days), "--size", size, "-o", str(folder)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    stamp.write_text(json.dumps(args))
    return bundle


def extract(bundle: Path, folder: Path) -> tuple[list[Path], int]:
    """The bundle's members as files for rg and the Python loop: .gz rotations kept, nested
    archives unpacked into `<archive>.d/`. Returns the files and their uncompressed bytes."""
    done = folder / ".done"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        with zipfile.ZipFile(bundle) as zf:
            zf.extractall(folder)
        for nested in sorted(folder.rglob("*.tgz")):
            with tarfile.open(nested) as tf:
                tf.extractall(nested.with_name(nested.name + ".d"), filter="data")
            nested.unlink()
        done.touch()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".done")
    return files, sum(_text_bytes(p) for p in files)


def _text_bytes(path: Path) -> int:
    if path.suffix != ".gz":
        return path.stat().st_size
    with gzip.open(path) as fh:
        return sum(len(chunk) for chunk in iter(lambda: fh.read(1 << 20), b""))


def library_patterns() -> list[str]:
    """Every signature's regex (with its case flag, groups unnamed); a matcher's literals when
    it has none."""
    from analyzer.signatures import load_library

    found: list[str] = []
    for sig in load_library(()).signatures.values():
        for m in sig.matchers:
            if m.regex:
                pattern = m.regex
            elif m.literal:
                pattern = "|".join(re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", x) for x in m.literal)
            else:
                continue  # a `where` on a column: no text to search
            pattern = f"(?i){pattern}" if m.ignore_case else pattern
            # rg joins the patterns into one regex, where two groups may not share a name
            pattern = re.sub(r"\(\?P<\w+>", "(?:", pattern)
            if pattern not in found:
                found.append(pattern)
    return found


# ---- measuring ----------------------------------------------------------------------------


def measure(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> Run:
    """Run `cmd` to completion: wall time, CPU (user + system, threads and children included)
    and peak RSS.

    GNU time reports them: a child of this Python process would carry this process's RSS in its
    own peak (ru_maxrss survives exec), a child of `time` carries only time's few hundred KB.
    """
    with tempfile.NamedTemporaryFile("r") as stats, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        done = subprocess.run([GNU_TIME, "-o", stats.name, "-f", "%U %S %M", *cmd],
                              stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=cwd)
        wall = time.perf_counter() - started
        if done.returncode not in (0, 1):  # analyze exits 1 only with --fail-on; rg: no match
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd[:4])} failed ({done.returncode}): "
                               f"{err.read()[-800:].decode(errors='replace')}")
        user, system, peak_kb = stats.read().split("\n")[-2].split()  # after "exited with" notes
    return Run(wall, float(user) + float(system), int(peak_kb) / 1024)


def analyzer_cmd(kind: str, bundle: Path, out: Path) -> list[str]:
    """`analyze` (report + JSON) or, for `ingest`, `inspect`."""
    if kind == "analyze":
        return [sys.executable, "-m", "analyzer", "analyze", str(bundle), "-o", str(out),
                "--json", str(out / "analysis.json")]
    return [sys.executable, "-m", "analyzer", "inspect", str(bundle), "--json",
            str(out / "inspect.json")]


def rg_cmd(patterns_file: Path, files: list[Path]) -> list[str]:
    return ["rg", f"-j{THREADS}", "-z", "-c", "-f", str(patterns_file), "--", *map(str, files)]


def py_loop_cmd(patterns_file: Path, shares: dict[Path, int]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "_py_loop", str(patterns_file),
            *(f"{share}:{path}" for path, share in shares.items())]


def py_loop(patterns_file: Path, shares: dict[Path, int]) -> None:
    """What people write by hand: every line against every pattern, `share` bytes of each file."""
    patterns = []
    for text in patterns_file.read_text(encoding="utf-8").splitlines():
        try:
            patterns.append(re.compile(text))
        except re.error:
            pass  # Rust syntax Python lacks: that pattern is left out
    counts = [0] * len(patterns)
    for path, share in shares.items():
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            read = 0
            for line in fh:
                read += len(line)
                if read > share:
                    break
                for i, rx in enumerate(patterns):
                    if rx.search(line):
                        counts[i] += 1
    print(sum(counts))


def run_size(label: str, bundle: Path, work: Path, runs: int, patterns_file: Path) -> list[Row]:
    files, text_bytes = extract(bundle, work / "files")
    size_mb = text_bytes / 1e6
    env = {**os.environ, "POLARS_MAX_THREADS": str(THREADS)}
    rows = []
    for kind in ("analyze", "ingest"):
        out = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-", dir=work))
        rows.append(Row(kind, size_mb, [measure(analyzer_cmd(kind, bundle, out), env, ROOT)
                                        for _ in range(runs)]))
        shutil.rmtree(out, ignore_errors=True)
    ascii_file = patterns_file.with_name("patterns-ascii-b.txt")
    rows.append(Row("rg", size_mb, [measure(rg_cmd(ascii_file, files)) for _ in range(runs)]))
    rows.append(Row("rg-as-is", size_mb,
                    [measure(rg_cmd(patterns_file, files)) for _ in range(runs)]))
    limit = min(PY_SLICE, text_bytes)  # each file gives its share of the slice
    shares = {f: limit * _text_bytes(f) // text_bytes for f in files}
    rows.append(Row("py-loop", size_mb,
                    [measure(py_loop_cmd(patterns_file, shares)) for _ in range(runs)],
                    scale=text_bytes / max(sum(shares.values()), 1)))
    print(table(label, bundle, rows), flush=True)
    return rows


# ---- reporting ----------------------------------------------------------------------------


def table(label: str, bundle: Path, rows: list[Row]) -> str:
    by = {r.tool: r for r in rows}
    lines = [f"### {label}: {bundle.stat().st_size / 1e6:.0f} MB zipped, "
             f"{rows[0].size_mb:.0f} MB of text",
             "",
             "| tool | wall s (median) | CPU s | MB/s | vs rg | analyze is × faster | peak MiB (largest run) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        vs_rg = r.mbps / by["rg"].mbps if by["rg"].mbps else 0
        speedup = by["analyze"].mbps / r.mbps if r.mbps else 0
        note = " (scaled from a slice)" if r.scale != 1 else ""
        lines.append(f"| {r.tool}{note} | {r.wall:.1f} | {r.cpu:.1f} | {r.mbps:.1f} | "
                     f"{vs_rg:.2f} | {speedup:.1f} | {r.peak_mb:.0f} |")
    return "\n".join(lines)


def growth(results: dict[str, list[Row]]) -> str:
    if len(results) < 2:
        return ""
    lines = ["### Growth with size (analyze, median wall)", "",
             "| bundle | MB of text | wall s | s per 100 MB | ingest s | ingest s per 100 MB |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, rows in results.items():
        by = {r.tool: r for r in rows}
        a, i = by["analyze"], by["ingest"]
        lines.append(f"| {label} | {a.size_mb:.0f} | {a.wall:.1f} | {100 * a.wall / a.size_mb:.2f} | "
                     f"{i.wall:.1f} | {100 * i.wall / i.size_mb:.2f} |")
    return "\n".join(lines)


def machine() -> str:
    from analyzer import __version__
    import polars

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    ram = next((int(line.split()[1]) / 2**20 for line in Path("/proc/meminfo").read_text()
                .splitlines() if line.startswith("MemTotal")), 0)
    rg = subprocess.run(["rg", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"- machine: {os.cpu_count()} CPUs ({cpu}), {ram:.1f} GiB RAM, load average {load} "
            f"at the end of the run\n"
            f"- versions: Python {platform.python_version()}, polars {polars.__version__}, "
            f"{rg}, bundle-analyzer {__version__} (commit {commit})\n"
            f"- run: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")


def write_markdown(path: Path, body: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{body}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_py_loop"]:
        py_loop(Path(argv[1]), {Path(p.split(":", 1)[1]): int(p.split(":", 1)[0])
                                for p in argv[2:]})
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0.25,0.5,1", help="GiB, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one tiny bundle, one run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--batch", action="store_true",
                        help="also run benchmarks/bench_batch.py (100 small bundles, --jobs 2)")
    args = parser.parse_args(argv)
    if shutil.which("rg") is None or not Path(GNU_TIME).exists():
        sys.exit("ripgrep and GNU time are needed: apt-get install ripgrep time")

    args.out.mkdir(parents=True, exist_ok=True)
    patterns_file = args.out / "patterns.txt"
    patterns = library_patterns()
    patterns_file.write_text("\n".join(patterns) + "\n", encoding="utf-8")
    patterns_file.with_name("patterns-ascii-b.txt").write_text(
        "\n".join(p.replace("\\b", "(?-u:\\b)") for p in patterns) + "\n", encoding="utf-8")
    print(f"{len(patterns)} patterns from the signature library", flush=True)

    if args.quick:
        folder = args.out / "quick"
        bundle = generate(folder, QUICK["vms"], QUICK["days"], QUICK["size"])
        run_size("quick", bundle, folder, 1, patterns_file)
        return
    results: dict[str, list[Row]] = {}
    tables = []
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        label = f"{size} GiB"
        folder = args.out / f"fleet-{size}GiB"
        bundle = generate(folder, FULL["vms"], FULL["days"], f"{size}GiB")
        results[label] = run_size(label, bundle, folder, args.runs, patterns_file)
        tables.append(table(label, bundle, results[label]))
    report = [machine(), "",
              f"`sample fleet --vms {FULL['vms']} --days {FULL['days']} --size <size>GiB`, "
              f"{len(patterns)} patterns, median of {args.runs} runs, {THREADS} threads.", "",
              "\n\n".join(tables)]
    if growth(results):
        report += ["", growth(results)]
    if args.batch:
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_batch.py")],
                              capture_output=True, text=True, cwd=ROOT)
        report += ["", "### Batch (benchmarks/bench_batch.py)", "", "```",
                   (done.stdout or done.stderr).strip(), "```"]
        print(done.stdout or done.stderr)
    print(growth(results))
    write_markdown(args.markdown, "\n".join(report))
    print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
