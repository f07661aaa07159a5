"""The terminal summary of `analyze`: incomplete results said above the verdicts, "no failure
found" only when it can be said, whole ids in a pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_bundles"

CRASHING_STATUS_PARSER = """
import dataclasses, sys
from analyzer.parsers import portal_events

def crash(*args, **kwargs):
    raise RuntimeError("a parser bug")

portal_events.SOURCES = [dataclasses.replace(s, parse=crash) if s.form == "status_csv" else s
                         for s in portal_events.SOURCES]
from analyzer import cli
cli.main(sys.argv[1:])
"""


def analyze(bundle: Path, tmp_path: Path, *args: str, code: str | None = None):
    """`analyze` through a pipe (no terminal), 80 columns; (result, the JSON)."""
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "analyzer"]
    result = subprocess.run([*command, "analyze", str(bundle), "-o", str(tmp_path), "--json",
                             str(tmp_path / "a.json"), *args], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines(), json.loads((tmp_path / "a.json").read_text())


def test_no_failure_found_when_complete_and_a_failure_source_was_read(tmp_path: Path):
    lines, doc = analyze(SAMPLES / "healthy.zip", tmp_path, "--portal-tz", "+00:00")
    assert doc["bundle"]["complete"] is True and doc["verdicts"] == []
    assert "no failure found" in lines
    assert not any(line.startswith("results incomplete") for line in lines)


def test_a_parser_crash_is_said_as_incomplete_results_not_as_no_failure(tmp_path: Path):
    lines, doc = analyze(SAMPLES / "healthy.zip", tmp_path, "--portal-tz", "+00:00",
                         code=CRASHING_STATUS_PARSER)
    assert doc["bundle"]["complete"] is False
    assert lines[1] == ("results incomplete: a parser failed on 1 member; what it holds is not in "
                        "the results")
    assert not any("no failure found" in line for line in lines)
    assert "no verdicts, but the results are incomplete (see above)" in lines
    html = (tmp_path / "healthy.html").read_text()
    assert 'class="incomplete"' in html and "a parser failed on 1 member" in html


def test_incomplete_results_are_said_above_the_verdicts(tmp_path: Path):
    lines, doc = analyze(SAMPLES / "outage-appliance-down.zip", tmp_path)
    assert doc["verdicts"] and doc["bundle"]["incomplete_reasons"]
    said = lines.index("results incomplete: " + "; ".join(doc["bundle"]["incomplete_reasons"]))
    header = next(i for i, line in enumerate(lines) if line.startswith("severity"))
    assert said < header


def test_without_a_failure_source_health_is_not_judged(tmp_path: Path):
    bundle = tmp_path / "vcenter-only"
    (bundle / "vcenter").mkdir(parents=True)
    with zipfile.ZipFile(SAMPLES / "upload-timeout-undetermined.zip") as z:
        (bundle / "vcenter" / "vpxd-12.log").write_bytes(z.read("vcenter/vpxd-12.log"))
    lines, doc = analyze(bundle, tmp_path / "out")
    assert doc["verdicts"] == [] and set(doc["bundle"]["sources"]) == {"vcenter_tasks"}
    assert (f"no gateway log or portal events: cannot judge replication health; "
            f"{len(doc.get('findings', []))} findings, {len(doc.get('unexplained', []))} "
            "unexplained templates") in lines
    assert not any("no failure found" in line for line in lines)


def test_ids_are_whole_in_a_pipe(tmp_path: Path):
    lines, doc = analyze(SAMPLES / "case-disk-upload-timeout.zip", tmp_path)
    assert doc["verdicts"]
    assert not any("…" in line for line in lines if not line.startswith("outage"))
    for v in doc["verdicts"]:
        row = [line.split() for line in lines if line.split()[:2] == [v["severity"], v["vm"]]]
        assert row and row[0][2:4] == [v["error"], v["cause"]], lines
