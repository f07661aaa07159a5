"""End to end: the installed command on the committed sample bundles, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "sample_bundles").glob("*.zip"))
SCHEMA = json.loads((ROOT / "analyzer" / "schema" / "analysis-v1.json").read_text())


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", "analyzer", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def triples(verdicts: list[dict]) -> list[tuple]:
    return sorted({(v["vm"] or "", v["error"], v["cause"]) for v in verdicts})


def test_there_are_enough_sample_bundles():
    assert len(SAMPLES) >= 8
    for bundle in SAMPLES:
        assert bundle.stat().st_size < 1_000_000, bundle
        assert bundle.with_suffix(".expected.json").exists(), bundle


@pytest.mark.parametrize("bundle", SAMPLES, ids=[b.stem for b in SAMPLES])
def test_analyze_sample_matches_expected_verdicts(bundle: Path, tmp_path: Path):
    result = run_cli("analyze", str(bundle), "-o", str(tmp_path), "--json", str(tmp_path / "a.json"))
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "a.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    expected = json.loads(bundle.with_suffix(".expected.json").read_text())["verdicts"]
    assert triples(doc["verdicts"]) == triples(expected)
    html = (tmp_path / f"{bundle.stem}.html").read_text()
    assert "<html" in html and doc["bundle"]["sha256"] in html


def test_json_is_byte_identical_across_runs_apart_from_analyzed_at(tmp_path: Path):
    bundle = ROOT / "sample_bundles" / "case-disk-upload-timeout.zip"
    outputs = []
    for run in range(2):
        result = run_cli("analyze", str(bundle), "-o", str(tmp_path / str(run)), "--json", "-")
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        doc["bundle"]["analyzed_at"] = None
        outputs.append(json.dumps(doc, sort_keys=False))
    assert outputs[0] == outputs[1]


def test_fail_on_critical_exits_1_when_a_critical_verdict_exists(tmp_path: Path):
    # every VM is still stalled at the end of this bundle: its verdicts are critical
    bundle = ROOT / "sample_bundles" / "stalled-service-gone.zip"
    result = run_cli("analyze", str(bundle), "-o", str(tmp_path), "--fail-on", "critical",
                     "--json", str(tmp_path / "a.json"))
    assert result.returncode == 1, result.stderr
    doc = json.loads((tmp_path / "a.json").read_text())
    assert any(v["severity"] == "critical" for v in doc["verdicts"])


def test_fail_on_critical_ignores_recovered_failures(tmp_path: Path):
    # the storage outage recovered within the bundle: warnings only
    bundle = ROOT / "sample_bundles" / "case-disk-upload-timeout.zip"
    assert run_cli("analyze", str(bundle), "-o", str(tmp_path), "--fail-on", "critical").returncode == 0
    assert run_cli("analyze", str(bundle), "-o", str(tmp_path), "--fail-on", "warning").returncode == 1


def test_fail_on_passes_on_a_healthy_bundle(tmp_path: Path):
    healthy = [b for b in SAMPLES if "healthy" in b.stem]
    assert healthy, "a healthy sample bundle is expected"
    result = run_cli("analyze", str(healthy[0]), "-o", str(tmp_path), "--fail-on", "warning")
    assert result.returncode == 0, result.stderr


def test_unusable_bundle_exits_3_with_one_line(tmp_path: Path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is not an archive at all" * 10)
    result = run_cli("analyze", str(junk), "-o", str(tmp_path / "out"))
    assert result.returncode == 3
    assert "junk.zip" in result.stderr
    assert not (tmp_path / "out" / "junk.html").exists()


def test_missing_bundle_is_a_usage_error(tmp_path: Path):
    result = run_cli("analyze", str(tmp_path / "nope.zip"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope.zip'}: no such file or folder — give the path of a bundle (zip, "
        "tar, tgz, gz or folder)"]
    assert list(tmp_path.iterdir()) == []  # not even the report folder


def test_usage_errors_exit_2(tmp_path: Path):
    assert run_cli("analyze").returncode == 2
    bundle = str(ROOT / "sample_bundles" / "case-disk-upload-timeout.zip")
    assert run_cli("analyze", bundle, "--fail-on", "sometimes").returncode == 2
    assert run_cli("analyze", bundle, "--appliance-tz", "Mars/Olympus").returncode == 2


def test_inspect_lists_members_sources_and_vms(tmp_path: Path):
    bundle = ROOT / "sample_bundles" / "case-disk-upload-timeout.zip"
    result = run_cli("inspect", str(bundle), "--json", "-")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    forms = {m["form"] for m in doc["members"]}
    assert "gateway_log" in forms
    assert doc["sources"]["gateway_log"]["records"] > 0
    assert all(m["unparsed"] == 0 for m in doc["members"])
    assert doc["vms"], "VMs should be listed"


def test_inspect_shows_each_text_members_layout(tmp_path: Path):
    bundle = tmp_path / "ticket"
    bundle.mkdir()
    (bundle / "esx07-syslog.txt").write_text(
        "May  7 17:07:09 esx07 Hostd[2099]: [error] Unable to access file [ds01] APP01/APP01.vmdk since it is locked\n"
        "May  7 17:07:10 esx07 Hostd[2099]: [info] Task completed\n", encoding="utf-8")
    (bundle / "notes.txt").write_text("the customer says replication is slow\n", encoding="utf-8")
    result = run_cli("inspect", str(bundle))
    assert result.returncode == 0, result.stderr
    shown = result.stdout + result.stderr  # the table goes where the terminal console writes
    rows = {line.split()[1]: line for line in shown.splitlines() if ".txt" in line}
    assert "text (syslog)" in rows["esx07-syslog.txt"], shown
    assert "text (none)" in rows["notes.txt"], shown  # no time layout: one record per line
    assert "form (layout)" in shown
    doc = json.loads(run_cli("inspect", str(bundle), "--json", "-").stdout)
    assert {m["member"]: m["layout"] for m in doc["members"]} == {"esx07-syslog.txt": "syslog", "notes.txt": "none"}


@pytest.mark.parametrize("bundle", SAMPLES, ids=[b.stem for b in SAMPLES])
def test_inspect_every_sample_bundle_parses_without_unparsed_lines(bundle: Path):
    result = run_cli("inspect", str(bundle), "--json", "-")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [m for m in doc["members"] if m["unparsed"]] == []
    assert [m["member"] for m in doc["members"] if m["form"] == "unrecognised"] == []


def test_signatures_override_directory_invalid_exits_4(tmp_path: Path):
    bad = tmp_path / "sigs"
    bad.mkdir()
    (bad / "broken.toml").write_text('id = "broken"\nkind = "nonsense"\n')
    bundle = ROOT / "sample_bundles" / "case-disk-upload-timeout.zip"
    result = run_cli("analyze", str(bundle), "-o", str(tmp_path), "--signatures", str(bad))
    assert result.returncode == 4
    assert "broken.toml" in result.stdout + result.stderr
