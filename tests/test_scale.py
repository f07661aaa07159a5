"""Issue 20: what a large bundle's outputs keep. The JSON lists a VM's tasks around its failures
and counts the rest; the report's timeline draws every task, from the task table."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer import detectors, evidence, pipeline, report, tables
from analyzer.report import view
from analyzer.report.page import unpacked_json
from analyzer.signatures.load import load_library
from tests.chromium import needs_chromium

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "sample_bundles" / "backup-task-conflict.zip"


@pytest.fixture(scope="module")
def analysis():
    return pipeline.analyze(BUNDLE)


def test_the_bundle_hash_read_while_the_bundle_is_parsed_is_the_files(analysis):
    assert analysis.doc["bundle"]["sha256"] == hashlib.sha256(BUNDLE.read_bytes()).hexdigest()


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
    drawn = sum(len(rows) for rows in _task_rows(_timeline(html)))
    with_start = analysis.tasks.filter(pl.col("start").is_not_null()).height
    assert drawn == with_start > sum(len(vm["tasks"]) for vm in analysis.doc["vms"])
    # without the table, only the listed tasks
    alone = sum(len(rows) for rows in _task_rows(_timeline(report.render(analysis.doc))))
    assert alone == sum(1 for vm in analysis.doc["vms"] for t in vm["tasks"] if t["start"])


def test_timeline_task_columns_give_back_each_task_of_the_table(analysis):
    """Each VM's tasks, written as columns of differences, read back (as the page does) to the
    table's tasks in its order, also when the table's rows of one VM are not together."""
    shuffled = analysis.tasks.sample(fraction=1.0, shuffle=True, seed=7)
    data = _timeline(report.render(analysis.doc, tasks=shuffled))
    strings = data["strings"]
    text = lambda i: strings[i] if i >= 0 else None  # noqa: E731
    names = [lane[0] for lane in data["vms"]]  # a lane's name is its VM's in the document
    for name, rows in zip(names, _task_rows(data)):
        table = (shuffled.filter((pl.col("vm").cast(pl.Utf8) == name) & pl.col("start").is_not_null())
                 .with_columns(pl.col("start").dt.epoch("s") - data["t0"], pl.col("end").dt.epoch("s") - data["t0"]))
        expected = [[r["start"], -1 if r["end"] is None else r["end"], r["method"], r["outcome"], r["fault_type"],
                     r["initiator"], r["task_id"] or ""] for r in table.iter_rows(named=True)]
        assert [[a, b, text(m), text(o), text(f), text(i), t] for a, b, m, o, f, i, t in rows] == expected
    assert sum(map(len, _task_rows(data))) > 100


def test_timeline_tasks_from_the_document_alone_keep_odd_values():
    """Without the table: a VM's listed tasks, whatever their values (a number as method, no
    start, a time that is no time), as the page will draw them."""
    doc = {"vms": [{"vm": "A", "tasks": [
        {"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T10:00:30Z", "method": 7, "task_id": "task-1"},
        {"start": None, "end": "2024-05-01T09:00:00Z", "method": "m"},
        {"start": "soon", "method": "x"},
        {"start": "2024-05-01T10:05:00Z", "end": None, "outcome": "", "initiator": "me", "task_id": None}]}]}
    data = _timeline(report.render(doc))
    strings = data["strings"]
    rows = [[a, b, strings[m] if m >= 0 else None, o, f, strings[i] if i >= 0 else None, t]
            for a, b, m, o, f, i, t in _task_rows(data)[0]]
    assert data["t0"] == 1714557600 - 3600  # the end of the task with no start is a moment too
    assert rows == [[3600, 3630, "7", -1, -1, None, "task-1"], [3900, -1, None, -1, -1, "me", ""]]


def _timeline(html: str) -> dict:
    return unpacked_json(html.split('data-encoding="gzip+base64">')[1].split("</script>")[0])


def _task_rows(timeline: dict) -> list[list[list]]:
    """Each VM's tasks as rows [start, end|-1, method, outcome, fault, initiator, id], read from
    the timeline's columns the way report.js reads them."""
    out = []
    for columns in timeline["tasks"]:
        rows, at = [], 0
        for n, step in enumerate(columns[0]):
            at += step
            rows.append([at, -1 if columns[1][n] < 0 else at + columns[1][n], *(c[n] for c in columns[2:])])
        out.append(rows)
    return out


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
        assert first == len(_task_rows(data)[0]) > 0
        page.locator("#tl-svg .bar").first.hover()
        assert page.locator(".tooltip").is_visible() and "#" in page.inner_text(".tooltip")
    finally:
        page.close()


_ISO_LIKE = st.one_of(
    st.builds(lambda d, digits, tail: d.strftime("%Y-%m-%dT%H:%M:%S") + (f".{d.microsecond:06d}"[:digits + 1] if digits else "") + tail,
              st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
              st.integers(0, 7), st.sampled_from(["Z", "", "+09:00", "-00:30", "Z ", "z"])),
    st.text(max_size=30), st.integers(), st.none(), st.just("2024-02-30T00:00:00Z"),
    st.just("1969-12-31T23:59:59.500Z"))


@given(st.lists(_ISO_LIKE, max_size=30))
def test_timeline_seconds_read_in_one_go_are_the_one_by_one_seconds(values):
    """The report reads the document's times with polars when they have its own form, one by one
    otherwise: the same seconds either way (before 1970, out of range, not a time at all)."""
    assert view._seconds(values) == [view._one_second(v) for v in values]


# -- the verdict stage asks its questions about every cycle of the columns (evidence.Case) ---------

_T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
_MINUTES = st.integers(0, 3000).map(lambda m: _T0 + timedelta(minutes=m))
_CYCLE = st.fixed_dictionaries({
    "vm_key": st.sampled_from(["a", "a", "b"]),  # a few VMs with enough like cycles for a median
    "type": st.sampled_from(["delta"] * 6 + ["initial", None]),
    "outcome": st.sampled_from(["succeeded"] * 4 + ["failed", "in_progress", "in_progress"]),
    "start": st.none() | _MINUTES,
    "length": st.sampled_from([20, 30, 30, 40, 150, 400]),  # minutes; mostly alike, some far longer
    "ended": st.booleans(),
    "rate_mbps": st.none() | st.sampled_from([0.0, 0.5, 3.0, 10.0, 40.0]),
    "disk_rates": st.none() | st.lists(st.sampled_from([0.0, 0.7, 2.0, 5.0, 30.0]), max_size=3),
})


def _cycle_case(rows: list[dict], end: datetime, gw_last: datetime | None) -> SimpleNamespace:
    """What detectors.stall, why_slow and may_stall_or_slow read of a Case, for these cycles."""
    cycles = []
    for n, r in enumerate(rows):
        end_at = r["start"] + timedelta(minutes=r["length"]) if r["start"] and r["ended"] else None
        cycles.append({"vm_key": r["vm_key"], "cycle": f"c{n:03}", "type": r["type"], "outcome": r["outcome"],
                       "start": r["start"], "end": end_at,
                       "duration_sec": r["length"] * 60.0 if r["ended"] else None,
                       "rate_mbps": r["rate_mbps"], "disk_rates": r["disk_rates"],
                       "disk_last": end_at or r["start"]})
    frame = pl.DataFrame(cycles, schema={"vm_key": pl.Utf8, "cycle": pl.Utf8, "type": pl.Utf8, "outcome": pl.Utf8,
                                         "start": tables.TS, "end": tables.TS, "duration_sec": pl.Float64,
                                         "rate_mbps": pl.Float64, "disk_rates": pl.List(pl.Float64),
                                         "disk_last": tables.TS})
    frame = frame.sort("start", "cycle", nulls_last=True)
    return SimpleNamespace(cycle_frame=frame, cycles_by_vm=evidence.CyclesByVm(frame), library=_LIBRARY, end=end,
                           portal_status={}, signals=SimpleNamespace(gw_last=gw_last))


_LIBRARY = load_library()


@settings(max_examples=400, deadline=None)
@given(st.lists(_CYCLE, min_size=4, max_size=24), _MINUTES, st.none() | _MINUTES)
def test_the_stall_and_slow_screen_keeps_every_vm_the_rules_flag(rows, end, gw_last):
    b = _cycle_case(rows, end, gw_last)
    kept = set(detectors.may_stall_or_slow(b))
    for vm_key, cycles in b.cycles_by_vm.items():
        ended = [c for c in cycles if c["outcome"] == "succeeded" and c["start"]]
        running = [c for c in cycles if c["outcome"] == "in_progress" and c["start"]]
        flagged = detectors.stall(b, vm_key) or any(detectors.why_slow(b, vm_key, c) for c in running[-1:] + ended[-1:])
        if flagged:
            assert vm_key in kept


def test_the_stall_and_slow_screen_leaves_out_vms_that_keep_pace():
    # four like cycles, the last one as fast as the others, the bundle ending right after it
    rows = [{"vm_key": "a", "type": "delta", "outcome": "succeeded", "start": _T0 + timedelta(hours=h), "length": 30,
             "ended": True, "rate_mbps": 10.0, "disk_rates": [10.0]} for h in range(5)]
    b = _cycle_case(rows, _T0 + timedelta(hours=4, minutes=40), None)
    assert detectors.may_stall_or_slow(b) == []
    rows[-1] = {**rows[-1], "length": 300}  # the last one five times as long: slow
    b = _cycle_case(rows, _T0 + timedelta(hours=9, minutes=10), None)
    assert detectors.may_stall_or_slow(b) == ["a"]


@given(st.lists(st.tuples(_MINUTES, st.integers(0, 900)), max_size=12), _MINUTES, st.integers(0, 900))
def test_recoveries_find_a_cycle_run_entirely_in_the_window(spans, since, length):
    spans = [(start, start + timedelta(minutes=n)) for start, n in spans]
    until = since + timedelta(minutes=length)
    frame = pl.DataFrame({"start": [s for s, _ in spans], "end": [e for _, e in spans]},
                         schema={"start": tables.TS, "end": tables.TS})
    expected = any(since <= s and e <= until for s, e in spans)
    assert evidence.Recoveries(frame).between(since, until) == expected
