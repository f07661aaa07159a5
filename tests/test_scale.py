"""Issue 20: what a large bundle's outputs keep. The JSON lists a VM's tasks around its failures
and counts the rest; the report's timeline draws every task, from the task table."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from analyzer import pipeline, report
from analyzer.report.page import unpacked_json
from tests.chromium import needs_chromium

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "sample_bundles" / "backup-task-conflict.zip"


@pytest.fixture(scope="module")
def analysis():
    return pipeline.analyze(BUNDLE)


def test_listed_tasks_are_failures_and_evidence_and_counts_cover_every_task(analysis):
    doc, tasks = analysis.doc, analysis.tasks
    per_vm = {vm: frame for (vm,), frame in tasks.partition_by("vm", as_dict=True).items()}
    listed_total = 0
    for vm in doc["vms"]:
        mine = per_vm.get(vm["vm"], tasks.clear())
        counts = vm["task_counts"]
        assert counts["total"] == mine.height == sum(counts["by_outcome"].values())
        ids = mine["task_id"].to_list()
        listed = [t["task_id"] for t in vm["tasks"]]
        assert [i for i in ids if i in set(listed)] == listed  # a subset, in the table's order
        listed_total += len(listed)
    assert 0 < listed_total < tasks.height / 10  # most tasks are counted, not listed
    # every task a verdict cites as evidence is listed under its VM
    cited = {(e["member"], e["line"]) for v in doc["verdicts"] for e in v["evidence"]
             if e["source"] == "vcenter_tasks"}
    assert cited
    conflict = next(v for v in doc["verdicts"] if v["cause"] == "conflicting_vcenter_task")
    vm = next(vm for vm in doc["vms"] if vm["vm"] == conflict["vm"])
    texts = " ".join(e["text"] for e in conflict["evidence"] if e["source"] == "vcenter_tasks")
    assert any(t["task_id"] and t["task_id"] in texts for t in vm["tasks"])


def test_timeline_draws_every_task_from_the_table(analysis):
    html = report.render(analysis.doc, tasks=analysis.tasks)
    drawn = sum(len(row) for row in _timeline(html)["tasks"])
    with_start = analysis.tasks.filter(pl.col("start").is_not_null()).height
    assert drawn == with_start > sum(len(vm["tasks"]) for vm in analysis.doc["vms"])
    # without the table, only the listed tasks
    alone = sum(len(row) for row in _timeline(report.render(analysis.doc))["tasks"])
    assert alone == sum(1 for vm in analysis.doc["vms"] for t in vm["tasks"] if t["start"])


def _timeline(html: str) -> dict:
    return unpacked_json(html.split('data-encoding="gzip+base64">')[1].split("</script>")[0])


@pytest.mark.browser
@needs_chromium
def test_packed_report_works_from_file_in_chromium(analysis, browser, tmp_path):
    """The data island is inflated in the page (DecompressionStream): opened from file://, the
    page runs without errors or requests, draws its lanes and every task of a lane, and shows a
    tooltip."""
    path = tmp_path / "packed.html"
    path.write_text(report.render(analysis.doc, tasks=analysis.tasks), encoding="utf-8")
    page = browser.new_page()
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(path.as_uri())
        page.wait_for_selector("html[data-ready]")
        assert errors == [] and [u for u in requests if not u.startswith("file:")] == []
        assert page.get_attribute("html", "data-error") is None
        lanes = page.eval_on_selector_all("#tl-svg text.vm-label", "ts => ts.length")
        assert lanes == len(analysis.doc["vms"])
        # every task of the first lane is drawn, though the JSON lists only a few of them
        first = page.eval_on_selector_all('#tl-svg [data-k="t"][data-v="0"]',
                                          "ts => new Set(ts.map(t => t.dataset.n)).size")
        data = _timeline(path.read_text(encoding="utf-8"))
        assert first == len(data["tasks"][0]) > 0
        page.locator("#tl-svg .bar").first.hover()
        assert page.locator(".tooltip").is_visible() and "#" in page.inner_text(".tooltip")
    finally:
        page.close()
