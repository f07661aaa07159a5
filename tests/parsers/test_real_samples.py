"""Real vCenter / ESXi lines (lnav fixtures, /work/shared/real-samples) through the vpxd parser."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from analyzer.diagnostics import Diagnostics
from analyzer.parsers.vcenter_log import TASK_ROWS, build_tasks, parse, sniff
from analyzer.sources import ParseContext

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "real-samples"
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared/real-samples not beside the repo")

# Lines of layouts deliberately not supported, with why. Inside a real log each would simply
# continue the record above it; fed alone, each is one unparsed line.
UNSUPPORTED = {
    "lnav-format-samples.log": {
        14: "vLCM HsmService: the service name comes before the timestamp",
        15: "vLCM ImageService: service name and thread id come before the timestamp",
        45: "ESXi hostprofile date-only header (time moved into the message); it continues the "
            "`In(14)[+]` record before it",
    },
    "lnav-fixture-lines.log": {},
}


def read(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def whole(name: str):
    parsed = parse(read(name), name, ParseContext(vcenter="lab-vc"))
    return parsed, parsed.tables["vcenter_log"]


def folded_lines(frame: pl.DataFrame) -> int:
    """Lines accounted for: each record plus each of its continuation lines."""
    continuation = frame["detail"].drop_nulls().str.count_matches("\n") + 1
    return frame.height + int(continuation.sum())


@pytest.mark.parametrize("name, records", [("lnav-vpxd.log", 12), ("lnav-vmw-log.log", 3),
                                           ("lnav-vami.log", 1)])
def test_whole_files_parse_with_no_unparsed_line(name, records):
    parsed, frame = whole(name)
    lines = [line for line in read(name).splitlines() if line.strip()]
    assert parsed.unparsed == 0
    assert parsed.records == records
    assert folded_lines(frame) == len(lines)
    assert frame["ts"].null_count() == 0
    assert "unparsed-lines" not in [d.code for d in parsed.diagnostics.items]


def test_vpxd_files_are_sniffed():
    assert sniff(read("lnav-vpxd.log"), "renamed.log")
    assert sniff(read("lnav-vmw-log.log"), "renamed.log")


def test_lnav_vpxd_lro_lines_pair_into_five_tasks():
    parsed, frame = whole("lnav-vpxd.log")
    tasks = build_tasks(frame.filter(TASK_ROWS), parsed.tables["vcenter_events"], Diagnostics())
    assert tasks["task_id"].to_list() == ["lro-846063", "lro-846064", "lro-846066", "lro-846067",
                                          "lro-846068"]
    assert tasks["outcome"].to_list() == ["succeeded"] * 5
    assert tasks["method"].to_list().count("vim.SessionManager.sessionIsActive") == 4
    assert "vim.cdc.ChangeLogCollector.waitForChanges" in tasks["method"].to_list()
    assert tasks["op_id"][2] == "l3wrhr4o-cbf-h5:70001034-60"
    assert tasks["entity"].to_list()[:3] == ["SessionManager", "SessionManager", "ChangeLogCollector"]
    assert tasks["end"].null_count() == 0 and tasks["vcenter"].to_list() == ["lab-vc"] * 5
    assert (tasks["end"] >= tasks["start"]).all()


def test_lnav_vmw_log_continuation_and_warning():
    _, frame = whole("lnav-vmw-log.log")
    last = frame.row(2, named=True)
    assert (last["level"], last["sub"], last["op_id"]) == ("warning", "drmLogger", "SWI-66b629ff")
    assert last["message"].endswith("(Fault cause: vim.fault.NotFound")
    assert last["detail"] == ")"


def test_fixture_sql_record_keeps_its_bare_marker_line():
    parsed = parse(read("lnav-fixture-lines.log"), "f", ParseContext())
    sql = parsed.tables["vcenter_log"].filter(pl.col("line") == 14).row(0, named=True)
    assert sql["message"] == "[VdbStatement]Executing SQL:" and sql["process"] == "-"
    assert sql["detail"].split("\n")[0] == "      INSERT INTO PM_CLUSTER_DRAFT_VALIDATION_STATE"
    assert sql["detail"].endswith("\n")  # the bare `-->` is an empty last line
    tasks = build_tasks(parsed.tables["vcenter_log"], parsed.tables["vcenter_events"], Diagnostics())
    assert tasks["task_id"].to_list() == ["lro-954041"] and tasks["outcome"][0] == "running"


def samples_of(name: str) -> list[tuple[int, str]]:
    """(first line number, text) for each line with the `-->` lines that follow it."""
    groups: list[tuple[int, list[str]]] = []
    for number, text in enumerate(read(name).splitlines(), start=1):
        if text.startswith("-->") and groups:
            groups[-1][1].append(text)
        elif text.strip():
            groups.append((number, [text]))
    return [(number, "\n".join(lines) + "\n") for number, lines in groups]


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_line_by_line_only_the_listed_layouts_fail(name):
    failing = set()
    for number, text in samples_of(name):
        parsed = parse(text, name, ParseContext())
        if parsed.unparsed:
            assert (parsed.unparsed, parsed.records) == (1, 0)
            failing.add(number)
        else:
            assert parsed.records == 1, (number, text)
            assert parsed.tables["vcenter_log"]["ts"].null_count() == 0, (number, text)
    assert failing == set(UNSUPPORTED[name])


def test_format_samples_layouts_and_fields():
    parsed = parse(read("lnav-format-samples.log"), "s", ParseContext())
    frame = parsed.tables["vcenter_log"]
    by_line = {row["line"]: row for row in frame.iter_rows(named=True)}
    assert by_line[2]["layout"] == "win5x" and by_line[2]["op_id"] == "F6FC49D5-000007E6-d"
    assert by_line[3]["ts"] == datetime(2014, 11, 4, 10, 23, 31, 75000, tzinfo=timezone.utc)
    assert by_line[6]["layout"] == "vpxd55" and by_line[6]["level"] == "verbose"
    assert by_line[12]["sub"].startswith("Vimsvc.Ticket 52 66 af") and by_line[12]["op_id"] == "ec9d7fe8"
    assert by_line[27]["sub"] == "WorkQueue.rhttpproxy.packetsniffer[0000562e3c06fee0].queue"
    assert by_line[28]["layout"] == "esxi8" and by_line[28]["level"] == "verbose"
    assert by_line[38]["op_id"] == "SvcAcctInit-5a91f2fc"
    assert by_line[41]["level"] == "warning" and by_line[41]["process"] == "vmkwarning"
    assert by_line[57]["ts"] == datetime(2023, 7, 19, 2, 47, 11, tzinfo=timezone.utc)
    layouts = frame["layout"].value_counts().sort("layout")
    assert set(layouts["layout"]) == {"vpxd65", "vpxd55", "win5x", "esxi8", "generic"}
