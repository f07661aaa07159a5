"""Diagnostics scale (repeats counted, per-line ones grouped per member) and say when the results
are incomplete (bundle.complete, bundle.incomplete_reasons)."""

from __future__ import annotations

from pathlib import Path

from analyzer.diagnostics import INCOMPLETE, MAX_SAMPLES, Diagnostic, Diagnostics, incomplete_reasons
from analyzer.i18n import LANGS, messages
from analyzer.pipeline import analyze


def test_repeats_beyond_the_samples_are_counted_not_dropped():
    diags = Diagnostics()
    for n in range(12):
        diags.add("warning", "decode-errors", f"bad byte at {n}", "a.log")
    for _ in range(3):
        diags.add("warning", "decode-errors", "same message", "b.log")
    kept = [d.as_dict() for d in diags.sorted()]
    at_a = [d for d in kept if d["location"] == "a.log"]
    assert len(at_a) == MAX_SAMPLES
    assert sum(d.get("count", 1) for d in at_a) == 12  # the last sample stands for the rest
    assert [d.get("count", 1) for d in at_a] == [1, 1, 1, 1, 8]
    assert [d for d in kept if d["location"] == "b.log"] == [
        {"severity": "warning", "code": "decode-errors", "message": "same message",
         "location": "b.log", "count": 3}]


def test_a_single_diagnostic_has_no_count():
    diags = Diagnostics()
    diags.add("info", "nul-bytes", "removed 3 NUL characters", "x.log")
    assert diags.sorted()[0].as_dict() == {"severity": "info", "code": "nul-bytes",
                                           "message": "removed 3 NUL characters", "location": "x.log"}


def test_per_line_diagnostics_are_one_per_member_with_the_first_lines():
    diags = Diagnostics()
    for line in range(10, 10_010):
        diags.add_line("info", "unrecognised-error", f"line {line} is odd", "Logs/a.log", line)
    diags.add_line("info", "unrecognised-error", "elsewhere", "Logs/b.log", 7)
    a, b = [d.as_dict() for d in diags.sorted()]
    assert a == {"severity": "info", "code": "unrecognised-error", "message": "line 10 is odd",
                 "location": "Logs/a.log:10", "count": 10_000, "lines": [10, 11, 12, 13, 14]}
    assert b == {"severity": "info", "code": "unrecognised-error", "message": "elsewhere",
                 "location": "Logs/b.log:7"}


def test_counts_survive_being_merged_into_another_collector():
    part = Diagnostics()
    for line in (5, 9, 12):
        part.add_line("info", "unrecognised-error", "x", "m.log", line)
    for _ in range(7):
        part.add("warning", "decode-errors", "same", "m.log")
    whole = Diagnostics()
    whole.add_line("info", "unrecognised-error", "x", "m.log", 2)
    whole.extend(part)
    grouped, repeated = whole.sorted()[1], whole.sorted()[0]
    assert (grouped.count, grouped.lines, grouped.location) == (4, (2, 5, 9, 12), "m.log:2")
    assert repeated.count == 7


def test_incomplete_reasons_come_from_the_one_table():
    def diag(code, severity="warning", count=1):
        return Diagnostic(severity, code, "m", "x", count=count)

    assert incomplete_reasons([diag("clock-skew"), diag("unparsed-lines"), diag("bad-timestamps")]) == []
    reasons = incomplete_reasons([diag("parser-failed", "error"), diag("naive-timestamps"),
                                  diag("naive-timestamps"), diag("source-does-not-cover", count=3)])
    assert reasons == sorted(reasons) == [
        "a parser failed on 1 member; what it holds is not in the results",
        "the logs do not cover the time of 3 failures whose cause they would show",
        "time zone assumed: times without a zone in 2 members were read as UTC"]
    # a warning that keeps the rows is not a reason; the error that drops them is
    assert incomplete_reasons([diag("missing-columns")]) == []
    assert incomplete_reasons([diag("missing-columns", "error")]) == [
        "1 file lacking the columns it needs, not read"]
    for lang in LANGS:  # every code has its reason in every language
        assert all(messages(lang).has(f"incomplete.{code}") for code in INCOMPLETE)


# ---------------------------------------------------------------- through the pipeline

FAILED = ("2024-05-14T{h:02d}:{m:02d}:{s:02d}.{ms:03d}Z Error [64] "
          "Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine - "
          "Replication cycle failed. vm=VM{vm:03d} cycleId={cycle} errorId=999999 "
          "error=SomethingNobodyKnows message=\"An error no signature has heard of.\"")


def test_ten_thousand_failed_cycles_with_an_unknown_error_give_one_diagnostic(tmp_path: Path):
    logs = tmp_path / "bundle" / "Logs"
    logs.mkdir(parents=True)
    lines = [FAILED.format(h=n // 3600 % 24, m=n // 60 % 60, s=n % 60, ms=n % 1000, vm=n % 40,
                           cycle=n) for n in range(10_000)]
    (logs / "GatewayService.log").write_text("\n".join(lines) + "\n")
    doc = analyze(tmp_path / "bundle").doc
    unrecognised = [d for d in doc["diagnostics"] if d["code"] == "unrecognised-error"]
    assert len(unrecognised) == 1, len(unrecognised)
    [d] = unrecognised
    assert d["count"] == 10_000
    assert d["location"] == "Logs/GatewayService.log:1" and d["lines"] == [1, 2, 3, 4, 5]
    assert len(doc["diagnostics"]) < 10  # not one per failed cycle
    again = analyze(tmp_path / "bundle").doc
    assert again["diagnostics"] == doc["diagnostics"]  # sorted, deterministic


def test_a_parser_crash_makes_the_results_incomplete(tmp_path: Path, monkeypatch):
    import dataclasses

    from analyzer.parsers import portal_events

    bundle = Path(__file__).resolve().parents[1] / "sample_bundles" / "healthy.zip"
    from analyzer.pipeline import Options

    options = Options(portal_tz="+00:00")  # the portal's display times: no zone assumed
    whole = analyze(bundle, options).doc["bundle"]
    assert (whole["complete"], whole["incomplete_reasons"]) == (True, [])

    def crash(*args, **kwargs):
        raise RuntimeError("a parser bug")

    sources = [dataclasses.replace(s, parse=crash) if s.form == "status_csv" else s
               for s in portal_events.SOURCES]
    monkeypatch.setattr(portal_events, "SOURCES", sources)
    broken = analyze(bundle, options).doc
    assert broken["bundle"]["complete"] is False
    assert broken["bundle"]["incomplete_reasons"] == [
        "a parser failed on 1 member; what it holds is not in the results"]
    assert [d["location"] for d in broken["diagnostics"] if d["code"] == "parser-failed"] == [
        "portal/replication-status.csv"]
