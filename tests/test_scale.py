"""Issue 20: what a large bundle's outputs keep. The JSON lists a VM's tasks around its failures
and counts the rest; the report's timeline draws every task, from the task table."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from analyzer import pipeline, report

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
    html = report.render(analysis.doc, analysis.tasks)
    drawn = sum(len(row) for row in _timeline(html)["tasks"])
    with_start = analysis.tasks.filter(pl.col("start").is_not_null()).height
    assert drawn == with_start > sum(len(vm["tasks"]) for vm in analysis.doc["vms"])
    # without the table, only the listed tasks
    alone = sum(len(row) for row in _timeline(report.render(analysis.doc))["tasks"])
    assert alone == sum(1 for vm in analysis.doc["vms"] for t in vm["tasks"] if t["start"])


def _timeline(html: str) -> dict:
    return json.loads(html.split('<script type="application/json" id="data">')[1].split("</script>")[0])

