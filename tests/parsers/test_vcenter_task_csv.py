from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer import tables
from analyzer.parsers.vcenter_task_csv import SOURCE, parse, sniff
from analyzer.sources import ParseContext

HEADER = ("Task Name,Target,Status,Details,Initiator,Queued For,Start Time,Completion Time,"
          "Execution Time,Server\n")


def run(text: str, **ctx):
    parsed = parse(text, "exports/tasks.csv", ParseContext(**ctx))
    frame = parsed.tables["vcenter_tasks"]
    assert frame.schema == pl.Schema(tables.VCENTER_TASKS)
    return parsed, frame


def codes(parsed) -> list[str]:
    return [d.code for d in parsed.diagnostics.items]


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_statuses_methods_and_faults():
    text = HEADER + (
        "Create virtual machine snapshot,APP01,Completed,,VSPHERE.LOCAL\\azmig,2 ms,"
        "2024-05-14T10:21:33Z,2024-05-14T10:21:40Z,7 s,vcsa01.contoso.local\n"
        "Remove snapshot,APP01,Failed,Another task is already in progress.,CONTOSO\\veeam,1 ms,"
        "2024-05-14T10:22:00Z,2024-05-14T10:22:05Z,5 s,vcsa01.contoso.local\n"
        "Consolidate virtual machine disk files,APP02,Unable to access file [ds01] APP02/APP02.vmdk "
        "since it is locked,,CONTOSO\\veeam,1 ms,2024-05-14T10:23:00Z,2024-05-14T10:23:09Z,9 s,\n"
        "Relocate virtual machine,APP03,42 %,,admin,1 ms,2024-05-14T10:24:00Z,,,vcsa01\n"
        "Reconfigure virtual machine,APP03,In progress,,admin,1 ms,2024-05-14T10:25:00Z,,,vcsa01\n"
        "Power On virtual machine,APP04,Completed,,admin,1 ms,2024-05-14T10:26:00Z,"
        "2024-05-14T10:26:01Z,1 s,vcsa01\n"
    )
    parsed, frame = run(text, vcenter="fallback-vc")
    assert frame["outcome"].to_list() == ["succeeded", "failed", "failed", "running", "running",
                                          "succeeded"]
    assert frame["method"].to_list() == [
        "vim.VirtualMachine.createSnapshot", "vim.vm.Snapshot.remove",
        "vim.VirtualMachine.consolidateDisks", "vim.VirtualMachine.relocate",
        "vim.VirtualMachine.reconfigure", "vim.VirtualMachine.powerOn"]
    assert frame["task_name"][0] == "Create virtual machine snapshot"
    assert frame["vm_name"].to_list() == ["APP01", "APP01", "APP02", "APP03", "APP03", "APP04"]
    assert frame["fault_message"].to_list() == [
        None, "Another task is already in progress.",
        "Unable to access file [ds01] APP02/APP02.vmdk since it is locked", None, None, None]
    assert frame["fault_type"].to_list() == [None, "vim.fault.TaskInProgress",
                                             "vim.fault.FileLocked", None, None, None]
    assert frame["progress"].to_list() == [None, None, None, 42, None, None]
    assert frame["end"].to_list()[3:5] == [None, None]
    assert frame["start"][0] == utc(2024, 5, 14, 10, 21, 33)
    assert frame["end"][0] == utc(2024, 5, 14, 10, 21, 40)
    assert frame["initiator"][1] == "CONTOSO\\veeam"
    assert frame["vcenter"].to_list()[:3] == ["vcsa01.contoso.local", "vcsa01.contoso.local",
                                              "fallback-vc"]
    assert frame["form"].to_list() == ["csv"] * 6
    assert frame["task_id"].null_count() == 6
    assert frame["line"].to_list() == [2, 3, 4, 5, 6, 7]
    assert parsed.records == 6
    assert parsed.first == utc(2024, 5, 14, 10, 21, 33) and parsed.last == utc(2024, 5, 14, 10, 26, 1)
    assert codes(parsed) == []


def test_header_any_case_any_order_optional_columns_missing():
    text = ("STATUS,target,Start Time,task name,Initiator,Completion Time,Details,Queued For,Extra\n"
            "Completed,APP01,2024-05-14T10:21:33Z,create virtual machine snapshot,u,"
            "2024-05-14T10:21:35Z,,1 ms,zzz\n"
            "Completed,APP01,2024-05-14T10:31:33Z,Upgrade VM Compatibility,u,,,,\n")
    assert sniff(text, "x.csv")
    _, frame = run(text)
    row = frame.row(0, named=True)
    assert (row["vm_name"], row["outcome"], row["method"], row["vcenter"]) == (
        "APP01", "succeeded", "vim.VirtualMachine.createSnapshot", None)
    assert frame["method"][1] is None and frame["task_name"][1] == "Upgrade VM Compatibility"


def test_display_times_use_vcenter_tz_or_utc_with_diagnostic():
    text = HEADER + ("Create virtual machine snapshot,APP01,Completed,,u,1 ms,"
                     "\"05/14/2024, 10:21:33 AM\",05/14/2024 01:05:00 PM,,vc\n")
    parsed, frame = run(text, vcenter_tz="+09:00")
    assert frame["start"][0] == utc(2024, 5, 14, 1, 21, 33)
    assert frame["end"][0] == utc(2024, 5, 14, 4, 5)
    assert codes(parsed) == []
    parsed, frame = run(text)
    assert frame["start"][0] == utc(2024, 5, 14, 10, 21, 33)
    assert codes(parsed) == ["naive-timestamps"]


def test_quoted_multiline_details_bom_crlf_and_line_numbers():
    text = ("\ufeff" + HEADER + "Remove snapshot,APP01,Failed,\"A general system error occurred: "
            "line one\r\nline two, with comma\",u,1 ms,2024-05-14T10:21:33Z,2024-05-14T10:21:35Z,,vc\n"
            "\n"
            "Remove snapshot,APP02,Completed,,u,1 ms,2024-05-14T10:22:33Z,2024-05-14T10:22:35Z,,vc\n"
            ).replace("\n", "\r\n")
    parsed, frame = run(text)
    assert frame["line"].to_list() == [2, 5]
    assert frame["fault_message"][0].startswith("A general system error occurred: line one")
    assert "line two, with comma" in frame["fault_message"][0]
    assert frame["fault_type"][0] == "vmodl.fault.SystemError"
    assert frame["vm_name"].to_list() == ["APP01", "APP02"]


def test_semicolon_delimited_export():
    text = HEADER.replace(",", ";") + ("Reconfigure virtual machine;APP09;Completed;;u;1 ms;"
                                       "2024-05-14T10:21:33Z;2024-05-14T10:21:35Z;;vc\n")
    assert sniff(text, "x")
    _, frame = run(text)
    assert frame["method"][0] == "vim.VirtualMachine.reconfigure" and frame["vm_name"][0] == "APP09"


def test_bad_times_short_rows_and_empty_status():
    text = HEADER + ("Relocate virtual machine,APP01,Completed,,u,1 ms,yesterday,,,vc\n"
                     "Relocate virtual machine,APP02\n"
                     "Relocate virtual machine,APP03,,,u,1 ms,2024-05-14T10:21:33Z,"
                     "2024-05-14T10:22:33Z,,vc\n")
    parsed, frame = run(text)
    assert frame.height == 3
    assert frame["start"][0] is None and "bad-timestamps" in codes(parsed)
    assert frame["outcome"].to_list() == ["succeeded", "running", "succeeded"]


@pytest.mark.parametrize("text", ["", "\n\n", HEADER, "\ufeff" + HEADER + "\n"])
def test_empty_exports(text):
    parsed, frame = run(text)
    assert frame.height == 0 and parsed.records == 0


def test_missing_required_column_is_an_error_diagnostic():
    parsed, frame = run("Task Name,Status\nRemove snapshot,Completed\n")
    assert frame.height == 0 and codes(parsed) == ["missing-columns"]


def test_sniff():
    assert sniff(HEADER, "renamed.txt")
    assert sniff("\ufeff\n\"task name\",TARGET,status\n", "x")
    assert not sniff("Time,Severity,Event,Machine,Event type,Error ID,Error message\n", "x")
    assert not sniff("2024-05-14T10:21:33.123Z info vpxd[1] [Originator@6876 sub=x] Task Name "
                     "Target Status\n", "x")
    assert not sniff("", "x")
    assert SOURCE.name == "vcenter_tasks" and SOURCE.form == "task_csv"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.text(alphabet=st.sampled_from(list('ab,;"\n\r %5/:APM-T\x00가')),
                                 max_size=15), max_size=11), max_size=6))
def test_arbitrary_rows_never_raise(rows):
    text = HEADER + "\n".join(",".join(cells) for cells in rows)
    parsed, frame = run(text)
    assert parsed.records == frame.height
