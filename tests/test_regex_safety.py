"""Regex safety: no regex that runs over log text takes super-linear time on adversarial lines.

The sweep is benchmarks/bench_regex_safety.py (every signature matcher, every redaction rule, the
parser regexes that walk whole lines) at sizes small enough for a test. Nothing here compares a
time with a fixed budget: each case is timed at two sizes, 4x apart, and linear work grows about
4x where quadratic work grows 16x. A steep case is timed again at 4x the size before it counts,
so that noise on a busy machine does not fail the test and a real quadratic case still does.
Python-side regexes run in the sniffers, on the 64 KiB head of every member; they are checked the
same way.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from analyzer import sources

ROOT = Path(__file__).resolve().parents[1]
SMALL, LARGE = 64_000, 256_000
STEEP = 10.0  # linear is 4, quadratic 16
FLOOR = 0.003  # seconds; below this a ratio is mostly noise
SNIFF_FLOOR = 0.02  # all sniffers on one 64 KiB head take a few ms; quadratic ones took minutes


def _bench():
    spec = importlib.util.spec_from_file_location("bench_regex_safety",
                                                  ROOT / "benchmarks" / "bench_regex_safety.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


bench = _bench()


def test_every_regex_that_reads_log_text_is_swept():
    cases = bench.all_cases()
    from analyzer.redact import RULES
    from analyzer.signatures import load_library

    matchers = [m for s in load_library().signatures.values() for m in s.matchers if m.regex]
    names = [c.name for c in cases]
    assert sum(n.startswith("signature ") for n in names) == len(matchers) > 30
    assert sum(n.startswith("redact rule") for n in names) == len(RULES)
    for case in cases:
        units = dict(bench.units(case))
        assert len(units) >= len(bench.CHARS), case.name
        if case.samples:
            assert any(label.startswith("sample") for label in units), case.name


def test_literals_are_read_from_the_pattern():
    assert bench.literals(r"(?P<a>migratelsa[a-z0-9]*\.blob\.core)x?|Unable to connect") == \
        ["Unable to connect", "migratelsa", ".blob.core"]


def test_a_quadratic_regex_would_be_caught():
    """The method itself: a known quadratic case (find-all where each match needs a look to the
    end of the line) is steep, even at a few kilobytes."""
    case = bench.Case("quadratic", r"a+b|a", ("extract_all",))
    run = bench.operation(case, "extract_all")
    small, large = (bench.timed(run, pl.Series([bench.line_of("a", n)]), 2) for n in (4000, 16000))
    assert large / small > STEEP, (small, large)


def test_no_regex_is_superlinear_on_adversarial_lines():
    cases = bench.all_cases()
    results = bench.sweep(cases, SMALL, LARGE)
    suspects = bench.suspects(results, top=25, floor=FLOOR)
    bench.retime(suspects, cases, SMALL, LARGE)
    steep = [r for r in suspects if r.large > FLOOR and r.ratio > STEEP]
    bench.retime(steep, cases, LARGE, 4 * LARGE)  # a real quadratic case stays near 16x
    still = [(r.case, r.op, r.unit, round(r.ratio, 1)) for r in steep
             if r.large > FLOOR and r.ratio > STEEP]
    assert still == []


# --- sniffers (Python regexes on the head of every member) -----------------------------------

SNIFF_UNITS = ["\n", " ", " \n", "\t", "a", "0", ",", '"', "'", "[", "-->", "é",
               "error id", "Error ID:\n", "Error ID  \n", "error message \n", "Machine\n",
               "2024-05-14T10:21:33.512Z Info [1] ", "2024-05-14T10:21:33.512Z Info [1] X ",
               "2024-05-14T10:21:33.123Z info vpxd[7FE1] [Originator@6876 sub=",
               "[2012-04-16 21:42:11.096 02584 info '", "Time,Error ID,", "Task Name,Target,",
               '{"value": [', '{"name": "', "x" * 200 + "\n", "| **", "\"healthErrors\": ["]


def _sniff_all(head: str) -> None:
    for source in sources.registry():
        source.sniff(head, "member.log")


def _timed(head: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        _sniff_all(head)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("unit", SNIFF_UNITS, ids=[repr(u[:20]) for u in SNIFF_UNITS])
def test_sniffers_are_linear_in_the_head(unit: str):
    sizes = (sources.SNIFF_CHARS // 4, sources.SNIFF_CHARS)
    small, large = (_timed(bench.line_of(unit, n)) for n in sizes)
    if large > SNIFF_FLOOR and large / max(small, 1e-6) > STEEP:  # confirm at 4x first
        small, large = (_timed(bench.line_of(unit, n * 4)) for n in sizes)
    assert large <= SNIFF_FLOOR or large / max(small, 1e-6) <= STEEP, (unit, small, large)


# --- parsers: linear in the number of records ------------------------------------------------

def _records(form: str, n: int) -> str:
    """n records of one source form, each a little different."""
    import json

    from tests.test_hostile import (PORTAL_HEADER, TASK_HEADER, gateway_log, portal_row,
                                    task_row, vpxd_log)

    if form == "gateway_log":
        return "".join(gateway_log(vm=f"VM{i}", vm_id=f"vm-{i}") for i in range(n // 14 + 1))
    if form == "vpxd_log":
        return "".join(vpxd_log(vm_id=f"vm-{i}").replace("task-88231", f"task-{i}")
                       for i in range(n // 7 + 1))
    if form == "events_csv":
        return PORTAL_HEADER + "\n" + "\n".join(portal_row(vm=f"VM{i}") for i in range(n)) + "\n"
    if form == "events_json":
        return json.dumps({"value": [{"name": f"e{i}", "properties": {
            "eventCode": "E1", "affectedObjectFriendlyName": f"VM{i}",
            "timeOfOccurrence": "2024-05-14T10:21:33Z",
            "healthErrors": [{"errorCode": "1011", "errorMessage": "x" * 80}]}}
            for i in range(n)]}, indent=2)
    if form == "events_text":
        return "".join(f"Machine\nVM{i}\nError ID\n1011\nError Message\nThe upload did not "
                       "complete within the expected time.\nFirst Seen At\n5/14/2024, 10:21:33 AM\n\n"
                       for i in range(n))
    if form == "task_csv":
        return TASK_HEADER + "\n" + "\n".join(task_row(vm=f"VM{i}") for i in range(n)) + "\n"
    if form == "status_csv":
        return ("Appliance,Server,State,Progress,TimeElapsed,TimeRemaining,UploadSpeed,Health,"
                "LastSync,Datastore\n" + "".join(
                    f"app1,VM{i},Replicating,50%,1h,1h,10 MBps,Normal,\"5/14/2024, 10:21:33 AM\",ds1\n"
                    for i in range(n)))
    raise ValueError(form)


FORMS = ["gateway_log", "vpxd_log", "events_csv", "events_json", "events_text", "task_csv",
         "status_csv"]


def _parse_time(form: str, n: int) -> float:
    source = next(s for s in sources.registry() if s.form == form)
    text = _records(form, n)
    assert source.sniff(text[: sources.SNIFF_CHARS], "member"), form
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        source.parse(text, "member", sources.ParseContext())
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("form", FORMS)
def test_parsers_are_linear_in_the_number_of_records(form: str):
    """An events JSON export once took O(items * size) (20 s for 8000 items)."""
    n = 2000
    small, large = _parse_time(form, n), _parse_time(form, 4 * n)
    if large > 0.05 and large / small > 8:  # linear is 4, quadratic 16; confirm before failing
        small, large = large, _parse_time(form, 16 * n)
    assert large <= 0.05 or large / small <= 8, (form, small, large)
