"""findings: every signature that matched; unexplained: the problem records no signature explains,
grouped into templates."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from analyzer import tables
from analyzer.findings import MAX_EXAMPLES, MAX_TEMPLATES, findings, problem_records, template, unexplained

T0 = datetime(2024, 5, 14, 10, 0, tzinfo=timezone.utc)


def _matches(*rows: dict) -> pl.DataFrame:
    full = [{"member": "m.log", "line": n + 1, "kind": "evidence", "source": "text_log", "ts": T0,
             "text": "x", **row} for n, row in enumerate(rows)]
    return tables.conform("matches", pl.DataFrame(full, infer_schema_length=None))


def test_findings_count_span_vms_and_examples_per_signature():
    rows = [{"signature": "file_locked_fault", "vm": vm, "ts": T0 + timedelta(minutes=n), "text": f"locked {n}"}
            for n, vm in enumerate(["APP01", None, "APP01", "SQL02", None, "APP01", "WEB03"])]
    rows.append({"signature": "internal_memory_allocation_failed", "kind": "error", "source": "portal_events",
                 "ts": None, "text": "Memory allocation failed. Out of memory."})
    out = findings(_matches(*rows))
    assert [f["signature"] for f in out] == ["file_locked_fault", "internal_memory_allocation_failed"]
    locked, memory = out
    assert locked["count"] == 7 and locked["kind"] == "evidence"
    assert (locked["first_seen"], locked["last_seen"]) == ("2024-05-14T10:00:00Z", "2024-05-14T10:06:00Z")
    assert locked["vms"] == ["APP01", "SQL02", "WEB03"]
    assert len(locked["examples"]) == MAX_EXAMPLES
    assert [e["text"] for e in locked["examples"]] == [f"locked {n}" for n in range(MAX_EXAMPLES)]
    assert locked["examples"][0] == {"source": "text_log", "member": "m.log", "line": 1,
                                     "ts": "2024-05-14T10:00:00Z", "text": "locked 0"}
    assert memory["count"] == 1 and memory["first_seen"] is None and memory["vms"] == []
    assert findings(tables.empty("matches")) == []


@pytest.mark.parametrize("a, b", [
    ("Failed to open disk [ds01] APP01/APP01_1.vmdk: error 13 (0x0000000d)",
     "Failed to open disk [ds02] SQL02/SQL02.vmdk: error 4 (0x00000004)"),
    ("Connection to 10.0.4.17:902 refused after 3 attempts", "Connection to 10.0.9.1:902 refused after 12 attempts"),
    ("Job 6f1c2b3a-1111-2222-3333-444455556666 failed for user admin@contoso.com",
     "Job 0a1b2c3d-aaaa-bbbb-cccc-ddddeeeeffff failed for user ops@fabrikam.com"),
    ("Upload of 'C:\\ProgramData\\a.bin' failed: code=17 host=esx07.contoso.local",
     "Upload of 'C:\\Temp\\b.bin' failed: code=903 host=esx12.contoso.local"),
    ("Task task-88231 on vm-1042 timed out", "Task task-9 on vm-77 timed out"),
    ("thread 7FE11CC03700 gave up", "thread 7FE11CC9F800 gave up"),
])
def test_records_that_differ_only_in_values_share_a_template(a, b):
    frame = pl.DataFrame({"t": [a, b]})
    got = frame.select(template(pl.col("t"))).to_series().to_list()
    assert got[0] == got[1], got
    assert "<" in got[0]


def test_different_messages_keep_different_templates_and_names_are_masked():
    frame = pl.DataFrame({"t": ["NFC connection to ERP08 lost", "NFC connection to WEB03 lost",
                                "Snapshot of ERP08 could not be consolidated"]})
    got = frame.select(template(pl.col("t"), names=["ERP08", "web03"])).to_series().to_list()
    assert got == ["NFC connection to <name> lost"] * 2 + ["Snapshot of <name> could not be consolidated"]


def test_problem_records_take_levels_and_failure_words():
    frame = pl.DataFrame({
        "member": ["a"] * 5, "line": [1, 2, 3, 4, 5], "ts": [T0] * 5,
        "level": ["Error", "info", None, None, "WARNING"],
        "message": ["boom", "connection failed (info)", "Disk write failed", "all good", "slow"],
    })
    got = problem_records("text_log", frame).collect()
    assert got["line"].to_list() == [1, 3, 5]
    assert got.columns == ["source", "member", "line", "ts", "text"]


def test_unexplained_leaves_out_matched_records_and_ranks_by_count():
    frame = pl.DataFrame({
        "member": ["v.log"] * 6, "line": list(range(1, 7)),
        "ts": [T0 + timedelta(minutes=n) for n in range(6)],
        "level": ["error"] * 6,
        "message": ["Disk 1 of APP01 lost", "Disk 2 of APP01 lost", "Disk 3 of SQL02 lost",
                    "Failed to lock the file", "Quota 7 exceeded", "Disk 4 of WEB03 lost"],
    })
    records = [problem_records("text_log", frame)]
    matched = _matches({"signature": "file_locked_fault", "member": "v.log", "line": 4})
    out = unexplained(records, matched)
    assert [(t["template"], t["count"]) for t in out] == [
        ("Disk <n> of APP01 lost", 2), ("Disk <n> of SQL02 lost", 1), ("Disk <n> of WEB03 lost", 1),
        ("Quota <n> exceeded", 1)]
    out = unexplained(records, matched, names=["APP01", "SQL02", "WEB03"])
    top = out[0]
    assert (top["template"], top["count"], top["sources"]) == ("Disk <n> of <name> lost", 4, ["text_log"])
    assert (top["first_seen"], top["last_seen"]) == ("2024-05-14T10:00:00Z", "2024-05-14T10:05:00Z")
    assert top["example"] == {"member": "v.log", "line": 1, "text": "Disk 1 of APP01 lost"}


def test_unexplained_keeps_at_most_fifty_templates_and_survives_hostile_text():
    words = [f"w{chr(97 + a)}{chr(97 + b)}" for a in range(26) for b in range(3)]
    messages = [f"{w} broke" for w in words] + ["x" * 2_000_000, "\x00\x1b[31m<script>", "", "((((((((" * 1000]
    frame = pl.DataFrame({"member": "h", "line": range(1, len(messages) + 1), "ts": [None] * len(messages),
                          "level": "error", "message": messages}, schema_overrides={"ts": tables.TS})
    out = unexplained([problem_records("text_log", frame)], tables.empty("matches"))
    assert len(out) == MAX_TEMPLATES
    assert all(len(t["template"]) <= 300 for t in out)
    assert unexplained([], tables.empty("matches")) == []
