"""benchmarks/run.py --quick on a tiny generated bundle: it runs every tool and prints the table.
No timing is asserted: only that each tool ran and reported numbers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("analyze", "ingest", "rg", "rg-as-is", "py-loop")


@pytest.mark.skipif(shutil.which("rg") is None, reason="ripgrep (rg) is not installed")
def test_quick_benchmark_prints_a_row_per_tool(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick",
                           "--out", str(tmp_path), "--markdown", str(tmp_path / "B.md")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert re.search(r"^\d+ patterns from the signature library", out, re.M)
    assert "| tool | wall s (median) | CPU s | MB/s |" in out
    rows = {line.split("|")[1].split(" (")[0].strip(): line for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| tool")}
    assert set(rows) == set(TOOLS)
    for tool, line in rows.items():
        wall, cpu, mbps, vs_rg, speedup, peak = (float(x) for x in line.split("|")[2:8])
        assert mbps > 0 and peak > 0, (tool, line)
    assert float(rows["rg"].split("|")[5]) == 1.0  # the ratio column is relative to rg
    # the bundle and the extracted files are cached for the next run; --quick writes no Markdown
    assert (tmp_path / "quick" / "fleet.zip").is_file()
    assert any((tmp_path / "quick" / "files").rglob("*.log*"))
    assert not (tmp_path / "B.md").exists()


def _compare_with_itself(script: str, tmp_path) -> dict[str, list[str]]:
    """The rows of the table that a two-checkout benchmark prints for this checkout against
    itself, one round on a sample bundle: first cell -> the next four."""
    bundle = ROOT / "sample_bundles" / "case-disk-upload-timeout.zip"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), str(bundle),
                           "--before", str(ROOT), "--runs", "1"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    table = [line.split("|") for line in done.stdout.splitlines() if line.startswith("| ")]
    return {cells[1].strip(): cells[2:6] for cells in table[1:]}  # the first row is the header


def test_stage_benchmark_prints_every_stage_for_both_checkouts(tmp_path):
    rows = _compare_with_itself("bench_stages.py", tmp_path)
    assert list(rows)[:3] == ["load_library", "take_frames", "pair_tasks"] and "all of them" in rows
    assert all(float(row[2]) > 0 for name, row in rows.items() if name != "all of them")  # peaks
    assert float(rows["all of them"][0]) > 0


def test_fixed_cost_benchmark_times_the_real_command_line(tmp_path):
    rows = _compare_with_itself("bench_fixed_costs.py", tmp_path)
    assert set(rows) == {"before", "after"}
    for wall, ingest, after, share in rows.values():
        assert 0 < float(ingest) < float(wall) and 0 < float(after) < float(wall)
        assert 0 < float(share.strip(" %")) < 100
