from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer import tables
from analyzer.diagnostics import Diagnostics
from analyzer.parsers.vcenter_log import (MAX_TEXT, METHOD_NAMES, SOURCE, TASK_ROWS, build_tasks,
                                          parse, sniff)
from analyzer.sources import ParseContext

VPXD = "2024-05-14T10:21:33.123Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxLro opID=68209c6d]"


def run(text: str, member: str = "vc/vpxd.log", **ctx):
    parsed = parse(text, member, ParseContext(**ctx))
    records, events = parsed.tables["vcenter_log"], parsed.tables["vcenter_events"]
    assert records.schema == pl.Schema(tables.VCENTER_LOG)
    assert events.schema == pl.Schema(tables.VCENTER_EVENTS)
    return parsed, records


def codes(parsed) -> list[str]:
    return [d.code for d in parsed.diagnostics.items]


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def line(ts: str, msg: str, sub: str = "vpxLro", op: str = "op1", level: str = "info") -> str:
    return f"{ts} {level} vpxd[7FE11CC03700] [Originator@6876 sub={sub} opID={op}] {msg}\n"


# ---------------------------------------------------------------- layouts

def test_vpxd65_hex_and_decimal_pids():
    text = (f"{VPXD} [VpxLRO] -- FINISH task-88231\n"
            "2022-06-02T11:58:12.796Z warning vpxd[47240] [Originator@6876 sub=MoCluster "
            "opID=HB-host-363@2022-389ab9b1] Host [vim.HostSystem:host-363,esx-2-121] has 1 HDCS\n")
    parsed, frame = run(text, vcenter="vcsa01")
    assert frame["layout"].to_list() == ["vpxd65", "vpxd65"]
    assert frame["level"].to_list() == ["info", "warning"]
    assert frame["process"].to_list() == ["vpxd", "vpxd"]
    assert frame["sub"].to_list() == ["vpxLro", "MoCluster"]
    assert frame["op_id"].to_list() == ["68209c6d", "HB-host-363@2022-389ab9b1"]
    assert frame["message"][0] == "[VpxLRO] -- FINISH task-88231"
    assert frame["message"][1].startswith("Host [vim.HostSystem:host-363")
    assert frame["ts"].to_list() == [utc(2024, 5, 14, 10, 21, 33, 123000),
                                     utc(2022, 6, 2, 11, 58, 12, 796000)]
    assert frame["vcenter"].to_list() == ["vcsa01", "vcsa01"]
    assert frame["member"].to_list() == ["vc/vpxd.log"] * 2
    assert frame["naive"].to_list() == [False, False]
    assert parsed.records == 2 and parsed.unparsed == 0 and codes(parsed) == []


@pytest.mark.parametrize("meta, sub, op_id", [
    ("Originator@6876 sub=Vimsvc.Ticket 52 66 af 87 opID=ec9d7fe8", "Vimsvc.Ticket 52 66 af 87",
     "ec9d7fe8"),
    ("Originator@6876 sub=Http2Session #28", "Http2Session #28", None),
    ("Originator@6876 sub=SSL SoapAdapter[1].HTTPService", "SSL SoapAdapter[1].HTTPService", None),
    ("Originator@6876 sub=Req@vsan/vSAN 7.0U2", "Req@vsan/vSAN 7.0U2", None),
    ("Originator@6876 sub=drmLogger item=FixNIOCViolation opID=SWI-5441881e", "drmLogger",
     "SWI-5441881e"),
    ("Originator@6876 sub=Libs opId=vsan-d810", "Libs", "vsan-d810"),
    ("opID=SWI-5e21ef1d-ddc1-f459 VsanPyVmomiProfiler::logProfile", None, "SWI-5e21ef1d-ddc1-f459"),
])
def test_vpxd65_meta_block(meta, sub, op_id):
    _, frame = run(f"2022-06-02T08:34:55.613Z info vpxd[44568] [{meta}] Max buffered\n")
    assert frame["layout"].to_list() == ["vpxd65"]
    assert frame["sub"][0] == sub
    assert frame["op_id"][0] == op_id
    assert frame["message"][0] == "Max buffered"


def test_vcenter9_quoted_values_and_spaced_pid():
    _, frame = run('2025-06-04T17:06:21.349Z INFO vpxd 20973 [Originator@4413 sub="ServiceAccount" '
                   'opID="SvcAcctInit-5a91f2fc"] Service account accessor initialized\n')
    row = frame.row(0, named=True)
    assert (row["layout"], row["level"], row["process"], row["sub"], row["op_id"]) == (
        "vpxd65", "info", "vpxd", "ServiceAccount", "SvcAcctInit-5a91f2fc")
    assert row["message"] == "Service account accessor initialized"


def test_message_starting_with_brackets_is_not_taken_for_the_meta_block():
    _, frame = run("2024-05-14T10:21:33.123Z info vpxd[7FE1] [VpxLRO] -- BEGIN task-1 -- vm-1 -- "
                   "vim.VirtualMachine.reconfigure -- s(s)\n")
    assert frame["message"][0].startswith("[VpxLRO] -- BEGIN task-1")
    assert frame["sub"][0] is None


def test_vpxd55_layout_with_offset():
    parsed, frame = run("2015-03-06T04:01:43.419-07:00 [13072 info 'commonvpxLro' opID=2408fce-ee] "
                        "[VpxLRO] -- FINISH task-internal-5\n")
    row = frame.row(0, named=True)
    assert row["layout"] == "vpxd55" and row["level"] == "info"
    assert row["sub"] == "commonvpxLro" and row["op_id"] == "2408fce-ee"
    assert row["ts"] == utc(2015, 3, 6, 11, 1, 43, 419000)
    assert row["message"] == "[VpxLRO] -- FINISH task-internal-5"
    assert codes(parsed) == []


def test_win5x_local_time_uses_vcenter_tz():
    text = "[2012-04-16 21:42:11.096 02584 info 'App'] Current working directory: C:\\vc\n"
    parsed, frame = run(text, vcenter_tz="+02:00")
    row = frame.row(0, named=True)
    assert (row["layout"], row["level"], row["sub"]) == ("win5x", "info", "App")
    assert row["ts"] == utc(2012, 4, 16, 19, 42, 11, 96000)
    assert row["naive"] is True
    assert row["message"] == "Current working directory: C:\\vc"
    assert "naive-timestamps" not in codes(parsed)


def test_win5x_without_zone_is_utc_with_one_diagnostic():
    text = ("[2012-04-16 21:42:11.096 02584 info 'App'] one\n"
            "[2012-04-16 21:42:12.096 02584 warning 'VpxProfiler' opID=SWI-1] two\n")
    parsed, frame = run(text)
    assert frame["ts"][0] == utc(2012, 4, 16, 21, 42, 11, 96000)
    assert frame["op_id"].to_list() == [None, "SWI-1"]
    assert codes(parsed) == ["naive-timestamps"]
    assert "2 records" in parsed.diagnostics.items[0].message


@pytest.mark.parametrize("text, level, process, sub, message", [
    ("2022-06-02T02:56:51.118Z Db(167) Hostd[1001392583]: [Originator@6876 sub=AdapterServer] "
     "Vdt span started", "verbose", "Hostd", "AdapterServer", "Vdt span started"),
    ("2023-08-08T15:08:36.834Z Wa(180) vmkwarning: cpu0:263421 opID=a03fc439)WARNING: Sched",
     "warning", "vmkwarning", None, "cpu0:263421 opID=a03fc439)WARNING: Sched"),
    ("2022-06-02T05:34:23Z In(14)[+] hostprofile[1001430319]: {'mode': 'Disabled'}",
     "info", "hostprofile", None, "{'mode': 'Disabled'}"),
    ("2022-06-02T02:15:22.987Z In(166) Hostd[1001392061]: info -[1001392061] "
     "[Originator@6876 sub=Default] Supported VMs 640", "info", "Hostd", "Default", "Supported VMs 640"),
    ("2024-03-26T04:31:17.959Z Er(163) Hostd[2098914]: [Originator@6876 sub=Libs opID=539bc6dd "
     "sid=52370179 user=vpxuser:<no user>] notFound(403)", "error", "Hostd", "Libs", "notFound(403)"),
])
def test_esxi8_layout(text, level, process, sub, message):
    _, frame = run(text + "\n")
    row = frame.row(0, named=True)
    assert (row["layout"], row["level"], row["process"], row["sub"], row["message"]) == (
        "esxi8", level, process, sub, message)


@pytest.mark.parametrize("text, level, ts, naive, message", [
    ("2021-05-24T20:31:05.671Z - last log rotation time", None, utc(2021, 5, 24, 20, 31, 5, 671000),
     False, "- last log rotation time"),
    ("2022-06-02T12:25:11.537Z info wcp [eamagency/util.go:148] [opID=vCLS] Going", "info",
     utc(2022, 6, 2, 12, 25, 11, 537000), False, "wcp [eamagency/util.go:148] [opID=vCLS] Going"),
    ("2020-05-11T22:32:56Z lifecycle: 1000212917: ERROR Failed", None, utc(2020, 5, 11, 22, 32, 56),
     False, "lifecycle: 1000212917: ERROR Failed"),
    ("2023-10-28 02:56:46,013 INFO imageService[1397] up", "info",
     utc(2023, 10, 28, 2, 56, 46, 13000), True, "imageService[1397] up"),
    ("[2020-05-26 19:46:43:259 'ConfigurationMgr' 1397 INFO]  created", None,
     utc(2020, 5, 26, 19, 46, 43, 259000), True, "'ConfigurationMgr' 1397 INFO]  created"),
    ("2015-03-12T23:16:52.071:INFO:com.root:Response :", "info",
     utc(2015, 3, 12, 23, 16, 52, 71000), True, "com.root:Response :"),
    ("2023-07-19T02:47:11 PM UTC [1670]DEBUG:firewall-reload:x", None,
     utc(2023, 7, 19, 14, 47, 11), False, "[1670]DEBUG:firewall-reload:x"),
    ("2023-07-19T03:05:15.97Z WARN vlcm [config.go:377] timeout", "warning",
     utc(2023, 7, 19, 3, 5, 15, 970000), False, "vlcm [config.go:377] timeout"),
])
def test_generic_layout(text, level, ts, naive, message):
    _, frame = run(text + "\n")
    row = frame.row(0, named=True)
    assert (row["layout"], row["level"], row["ts"], row["naive"], row["message"]) == (
        "generic", level, ts, naive, message)


def test_gateway_line_is_not_a_vpxd_header():
    text = ("2024-05-14T10:21:33.512Z Info [12] Gateway.Service.Host - Service asrgwy started.\n"
            "2024-05-14T10:21:34.512Z Info [12] Gateway.Service.Host - Heartbeat.\n")
    assert not sniff(text, "vpxd.log")
    _, frame = run(text)
    assert frame["layout"].to_list() == ["generic", "generic"]  # parsed, but never sniffed


# ---------------------------------------------------------------- folding, bad input

def test_continuations_fold_into_detail_without_marker():
    text = (line("2024-05-14T10:21:49.000Z", "[VpxLRO] -- ERROR task-9 -- vm-1 -- "
                 "vim.VirtualMachine.consolidateDisks: vim.fault.TaskInProgress:")
            + "--> Result:\n--> (vim.fault.TaskInProgress) {\n-->    msg = \"Another task\"\n-->\n"
            + "plain continuation without marker\n\n"
            + line("2024-05-14T10:21:50.000Z", "next"))
    parsed, frame = run(text)
    assert frame["line"].to_list() == [1, 8]
    assert frame["detail"][0] == ("Result:\n(vim.fault.TaskInProgress) {\n   msg = \"Another task\"\n"
                                  "\nplain continuation without marker")
    assert frame["detail"][1] is None
    assert parsed.records == 2 and parsed.unparsed == 0


def test_crlf_remnants_are_removed():
    text = line("2024-05-14T10:21:33.123Z", "first").replace("\n", "\r\n") + "--> cont\r\n"
    _, frame = run(text)
    assert frame["message"][0] == "first"
    assert frame["detail"][0] == "cont"
    assert frame["op_id"][0] == "op1"


def test_lines_before_first_record_are_unparsed_and_sampled():
    text = ("garbage one\n--> orphan continuation\ngarbage two\n"
            + line("2024-05-14T10:21:33.123Z", "first") + "after record: continuation\n")
    parsed, frame = run(text)
    assert parsed.unparsed == 2
    assert parsed.records == 1 and frame["line"].to_list() == [4]
    assert frame["detail"][0] == "after record: continuation"
    unparsed = [d for d in parsed.diagnostics.items if d.code == "unparsed-lines"]
    assert len(unparsed) == 1 and unparsed[0].severity == "warning"
    assert "line 1" in unparsed[0].message and "garbage two" in unparsed[0].message
    assert unparsed[0].location == "vc/vpxd.log"
    assert "orphan-continuation" in codes(parsed)


def test_many_malformed_lines_give_one_counted_diagnostic():
    text = "".join(f"junk {i}\n" for i in range(10_000)) + line("2024-05-14T10:21:33.123Z", "ok")
    parsed, _ = run(text)
    assert parsed.unparsed == 10_000 and parsed.records == 1
    assert codes(parsed) == ["unparsed-lines"]
    assert "10000 lines" in parsed.diagnostics.items[0].message


@pytest.mark.parametrize("text", ["", "\n", "\r\n\r\n", "   \n\t\n", "\ufeff"])
def test_empty_files(text):
    parsed, frame = run(text)
    assert frame.height == 0 and parsed.records == 0 and parsed.unparsed == 0
    assert parsed.first is None and parsed.last is None
    assert parsed.tables["vcenter_events"].height == 0


def test_bom_before_first_header():
    parsed, frame = run("\ufeff" + line("2024-05-14T10:21:33.123Z", "first"))
    assert frame.height == 1 and parsed.unparsed == 0


def test_binary_junk_never_crashes():
    junk = bytes(range(256)).decode("latin-1") * 40
    text = junk + "\n" + line("2024-05-14T10:21:33.123Z", "ok") + junk + "\n\x00\x00\n"
    parsed, frame = run(text)
    assert parsed.records == 1 and parsed.unparsed >= 1
    assert frame["detail"][0].startswith("\x00")


def test_twenty_megabyte_line_is_cut_to_64k():
    text = line("2024-05-14T10:21:33.123Z", "x" * 20_000_000) + line("2024-05-14T10:21:34Z", "next")
    parsed, frame = run(text)
    assert parsed.records == 2
    assert frame["message"].str.len_bytes()[0] <= MAX_TEXT
    assert frame["message"][0].startswith("xxx")
    assert frame["op_id"][0] == "op1" and frame["message"][1] == "next"
    assert "long-line" in codes(parsed)


def test_long_multibyte_line_stays_within_64k_bytes():
    parsed, frame = run(line("2024-05-14T10:21:33.123Z", "가" * 100_000))
    assert 0 < frame["message"].str.len_bytes()[0] <= MAX_TEXT
    assert "long-line" in codes(parsed)


def test_huge_continuation_block_is_cut():
    text = line("2024-05-14T10:21:33.123Z", "start") + "--> " + "y" * 1000 + "\n"
    text += ("--> " + "y" * 1000 + "\n") * 100
    parsed, frame = run(text)
    assert frame["detail"].str.len_bytes()[0] <= MAX_TEXT
    assert "long-record" in codes(parsed)


def test_invalid_date_in_header_is_reported():
    parsed, frame = run(line("2024-13-45T10:21:33.123Z", "bad month"))
    assert frame.height == 1 and frame["ts"][0] is None
    assert "bad-timestamps" in codes(parsed)


# ---------------------------------------------------------------- events

def test_plain_event_with_user_token():
    text = line("2024-05-14T10:21:33.100Z", "Event 5512 : vim.event.TaskEvent : Task: Create virtual "
                "machine snapshot user=VSPHERE.LOCAL\\svc-backup", sub="vpxdEvent")
    parsed, _ = run(text, vcenter="vcsa01")
    event = parsed.tables["vcenter_events"].row(0, named=True)
    assert event["event_key"] == "5512" and event["event_type"] == "vim.event.TaskEvent"
    assert event["message"] == "Task: Create virtual machine snapshot"
    assert event["user"] == "VSPHERE.LOCAL\\svc-backup"
    assert event["severity"] == "info" and event["op_id"] == "op1"
    assert event["vcenter"] == "vcsa01" and event["line"] == 1
    assert event["ts"] == utc(2024, 5, 14, 10, 21, 33, 100000)


def test_syslog_event_message_runs_to_the_last_bracket():
    text = line("2024-05-14T10:21:40.000Z", "Event [9001] [1-1] [2024-05-14T10:21:36.5Z] "
                "[com.vmware.vc.VmDiskFailedToConsolidateEvent] [warning] [User] [DC01] [9001] "
                "[Disk consolidation failed on APP01 [ds01] APP01.vmdk in DC01]", sub="Default")
    parsed, _ = run(text)
    event = parsed.tables["vcenter_events"].row(0, named=True)
    assert event["event_type"] == "com.vmware.vc.VmDiskFailedToConsolidateEvent"
    assert event["message"] == "Disk consolidation failed on APP01 [ds01] APP01.vmdk in DC01"
    assert (event["severity"], event["user"], event["datacenter"], event["chain_id"]) == (
        "warning", "User", "DC01", "9001")
    assert event["ts"] == utc(2024, 5, 14, 10, 21, 36, 500000)  # createdTime wins


def test_text_mentioning_event_is_not_an_event():
    parsed, _ = run(line("2024-05-14T10:21:40.000Z", "Event collector started: 12 events queued"))
    assert parsed.tables["vcenter_events"].height == 0


# ---------------------------------------------------------------- sniffing

def test_sniff():
    assert sniff(line("2024-05-14T10:21:33.123Z", "a") * 3, "renamed.txt")
    assert sniff(line("2024-05-14T10:21:33.123Z", "only one line"), "x")
    assert sniff("2014-11-04T12:46:42.990+05:30 Section for VMware VirtualCenter, pid=6432\n"
                 + line("2014-11-04T12:46:43.000Z", "x"), "x")
    assert sniff("[2012-04-16 21:42:11.096 02584 info 'App'] a\n[2012-04-16 21:42:12.096 02584 "
                 "info 'App'] b\n", "x")
    assert sniff("2022-06-02T02:56:51.118Z Db(167) Hostd[1]: a\n2022-06-02T02:56:52.118Z "
                 "In(166) Hostd[1]: b\n", "x")
    assert not sniff("", "vpxd.log")
    assert not sniff("Task Name,Target,Status\nCreate,APP01,Completed\n", "vpxd.log")
    assert not sniff("hello\nworld\nthis is not a log\n" + line("2024-05-14T10:21:33.123Z", "a"), "x")
    assert SOURCE.name == "vcenter_tasks" and SOURCE.form == "vpxd_log"


# ---------------------------------------------------------------- tasks

def tasks_of(*members: tuple[str, str],
             vcenter: str | None = "vcsa01") -> tuple[pl.DataFrame, Diagnostics]:
    parsed = [parse(text, name, ParseContext(vcenter=vcenter)) for name, text in members]
    records = pl.concat([p.tables["vcenter_log"] for p in parsed])
    events = pl.concat([p.tables["vcenter_events"] for p in parsed])
    diags = Diagnostics()
    tasks = build_tasks(records.filter(TASK_ROWS), events, diags)
    assert tasks.schema == pl.Schema(tables.VCENTER_TASKS)
    return tasks, diags


BEGIN_SNAP = ("[VpxLRO] -- BEGIN task-88231 -- vm-1042 -- vim.VirtualMachine.createSnapshot -- "
              "52b1c2d3-ab12(52a9)")
ERROR_BLOCK = ("[VpxLRO] -- ERROR task-88231 -- vm-1042 -- vim.VirtualMachine.createSnapshot: "
               "vim.fault.TaskInProgress:\n--> Result:\n--> (vim.fault.TaskInProgress) {\n"
               "-->    faultCause = (vmodl.MethodFault) null,\n"
               "-->    msg = \"Another task is already in progress.\"\n--> }\n--> Args:\n")


def test_pairing_across_two_members_with_fault_block():
    tasks, diags = tasks_of(
        ("vc/vpxd-3.log", line("2024-05-14T10:21:33.123Z", BEGIN_SNAP)),
        ("vc/vpxd-4.log", line("2024-05-14T10:22:00.000Z", "x", sub="Default")
         + line("2024-05-14T10:23:00.000Z", ERROR_BLOCK.rstrip("\n"))),
    )
    assert tasks.height == 1
    row = tasks.row(0, named=True)
    assert (row["task_id"], row["entity"], row["vm_id"], row["method"], row["task_name"]) == (
        "task-88231", "vm-1042", "vm-1042", "vim.VirtualMachine.createSnapshot",
        "Create virtual machine snapshot")
    assert (row["member"], row["line"], row["end_member"], row["end_line"]) == (
        "vc/vpxd-3.log", 1, "vc/vpxd-4.log", 2)
    assert row["start"] == utc(2024, 5, 14, 10, 21, 33, 123000)
    assert row["end"] == utc(2024, 5, 14, 10, 23)
    assert row["outcome"] == "failed" and row["form"] == "vpxd" and row["vcenter"] == "vcsa01"
    assert row["fault_type"] == "vim.fault.TaskInProgress"
    assert row["fault_message"] == "Another task is already in progress."
    assert row["op_id"] == "op1"
    assert diags.items == []


def test_fault_type_from_block_when_the_error_line_has_none():
    text = (line("2024-05-14T10:21:33Z", "[VpxLRO] -- BEGIN task-5 -- vm-7 -- "
                 "vim.VirtualMachine.consolidateDisks -- s(s)")
            + line("2024-05-14T10:21:39Z", "[VpxLRO] -- ERROR task-5 -- vm-7 -- "
                   "vim.VirtualMachine.consolidateDisks")
            + "--> (vim.fault.FileLocked) {\n-->    msg = \"Unable to access file [ds] a.vmdk "
              "since it is locked\"\n--> }\n")
    tasks, _ = tasks_of(("vpxd.log", text))
    row = tasks.row(0, named=True)
    assert row["fault_type"] == "vim.fault.FileLocked"
    assert row["fault_message"] == "Unable to access file [ds] a.vmdk since it is locked"


def test_hung_begin_is_running_and_orphan_end_keeps_null_start():
    text = (line("2024-05-14T10:21:33Z", "[VpxLRO] -- FINISH task-1")
            + line("2024-05-14T10:21:34Z", BEGIN_SNAP))
    tasks, diags = tasks_of(("vpxd.log", text))
    assert tasks["task_id"].to_list() == ["task-88231", "task-1"]  # known starts first
    hung, orphan = tasks.row(0, named=True), tasks.row(1, named=True)
    assert hung["outcome"] == "running" and hung["end"] is None and hung["end_line"] is None
    assert orphan["start"] is None and orphan["outcome"] == "succeeded"
    assert (orphan["line"], orphan["end_line"]) == (1, 1)
    assert orphan["end"] == utc(2024, 5, 14, 10, 21, 33)
    assert [d.code for d in diags.items] == ["task-begin-missing"]


def test_duplicated_log_lines_give_one_task_and_ids_of_every_kind():
    text = "".join([
        line("2024-05-14T10:00:00Z", "[VpxLRO] -- BEGIN lro-12 -- SessionManager -- "
             "vim.SessionManager.sessionIsActive -- s(s)"),
        line("2024-05-14T10:00:01Z", "[VpxLRO] -- FINISH lro-12"),
        line("2024-05-14T10:00:02Z", "[VpxLRO] -- BEGIN task-internal-5 -- host-12 -- "
             "vim.HostSystem.reconnect -- s(s)"),
        line("2024-05-14T10:00:03Z", "[VpxLRO] -- BEGIN task-9 -- snapshot-77 -- "
             "vim.vm.Snapshot.remove -- s(s)"),
        line("2024-05-14T10:00:04Z", "[VpxLRO] -- FINISH task-9"),
    ])
    tasks, _ = tasks_of(("vpxd.log", text), ("copy/vpxd.log", text))
    assert tasks["task_id"].to_list() == ["lro-12", "task-internal-5", "task-9"]
    assert tasks["entity"].to_list() == ["SessionManager", "host-12", "snapshot-77"]
    assert tasks["vm_id"].to_list() == [None, None, None]
    assert tasks["outcome"].to_list() == ["succeeded", "running", "succeeded"]
    assert tasks["task_name"].to_list() == [None, None, "Remove snapshot"]
    assert tasks["member"].to_list() == ["copy/vpxd.log"] * 3  # deterministic: first by name


def test_same_task_id_in_two_vcenters_stays_two_tasks():
    text = line("2024-05-14T10:21:33Z", BEGIN_SNAP)
    a = parse(text, "a/vpxd.log", ParseContext(vcenter="vcA")).tables["vcenter_log"]
    b = parse(text, "b/vpxd.log", ParseContext(vcenter="vcB")).tables["vcenter_log"]
    tasks = build_tasks(pl.concat([a, b]), tables.empty("vcenter_events"), Diagnostics())
    assert sorted(tasks["vcenter"].to_list()) == ["vcA", "vcB"]


def test_progress_last_value_and_when_it_last_changed():
    assign = "RecordOp ASSIGN: info.progress, task-88231"
    text = "".join([
        line("2024-05-14T10:21:33Z", BEGIN_SNAP),
        line("2024-05-14T10:21:40Z", f"{assign} = 10", sub="PropertyProvider", level="verbose"),
        line("2024-05-14T10:22:00Z", f"{assign} = 95", sub="PropertyProvider", level="verbose"),
        line("2024-05-14T10:30:00Z", f"{assign} = 95", sub="PropertyProvider", level="verbose"),
        line("2024-05-14T10:21:50Z", "RecordOp ASSIGN: info.progress, task-882310 = 50",
             sub="PropertyProvider"),
    ])
    tasks, _ = tasks_of(("vpxd.log", text))
    row = tasks.row(0, named=True)
    assert row["progress"] == 95
    assert row["progress_ts"] == utc(2024, 5, 14, 10, 22)


def test_progress_without_values_keeps_the_time_of_the_last_assign():
    text = "".join([
        line("2024-05-14T10:21:33Z", BEGIN_SNAP),
        line("2024-05-14T10:21:40Z", "RecordOp ASSIGN: info.progress, task-88231. Applied change "
             "to temp map.", sub="PropertyProvider"),
        line("2024-05-14T10:25:40Z", "RecordOp ASSIGN: info.progress, task-88231. Applied change "
             "to temp map.", sub="PropertyProvider"),
    ])
    row = tasks_of(("vpxd.log", text))[0].row(0, named=True)
    assert row["progress"] is None
    assert row["progress_ts"] == utc(2024, 5, 14, 10, 25, 40)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["", "vcA", "vcB"]), st.sampled_from(["task-1", "task-2", "task-10"]),
                          st.integers(0, 30), st.one_of(st.none(), st.integers(0, 3))), max_size=40))
def test_progress_of_interleaved_tasks_equals_a_walk_of_each_task_in_time_order(rows):
    """_progress against the rule said plainly: per task, in time order (ties in line order), the
    last value, and the last time the value changed (a line without a value is always a change)."""
    from analyzer.parsers.vcenter_log import _progress

    frame = pl.DataFrame({"_vc": [r[0] for r in rows], "id": [r[1] for r in rows],
                          "ts": [utc(2024, 5, 14, 10, r[2]) for r in rows], "progress": [r[3] for r in rows]},
                         schema={"_vc": pl.Categorical(), "id": pl.Utf8, "ts": tables.TS, "progress": pl.Int64})
    expected: dict[tuple, dict] = {}
    for vc, task, minute, value in sorted(rows, key=lambda r: r[2]):  # stable: ties keep line order
        seen = expected.setdefault((vc, task), {"progress": None, "progress_ts": None, "_last": "start"})
        if value is None or value != seen["_last"]:
            seen["progress_ts"] = utc(2024, 5, 14, 10, minute)  # times only grow in this walk
        seen["_last"] = value
        if value is not None:
            seen["progress"] = value
    got = {(r["_vc"], r["id"]): {"progress": r["progress"], "progress_ts": r["progress_ts"]}
           for r in _progress(frame).iter_rows(named=True)}
    assert got == {key: {k: v for k, v in e.items() if k != "_last"} for key, e in expected.items()}


def test_initiator_from_task_event_prefers_same_op_id():
    event = "Event {key} : vim.event.TaskEvent : Task: Create virtual machine snapshot user={user}"
    text = "".join([
        line("2024-05-14T10:21:33.000Z", event.format(key=1, user="CONTOSO\\backup"), op="opB",
             sub="vpxdEvent"),
        line("2024-05-14T10:21:33.050Z", event.format(key=2, user="VSPHERE.LOCAL\\azmig"), op="opA",
             sub="vpxdEvent"),
        line("2024-05-14T10:21:33.100Z", BEGIN_SNAP, op="opB"),
        line("2024-05-14T10:21:33.100Z", BEGIN_SNAP.replace("88231", "88232").replace("1042", "7"),
             op="opA"),
        line("2024-05-14T10:21:40.000Z", BEGIN_SNAP.replace("88231", "88233"), op="opC"),
        line("2024-05-14T10:21:33.200Z", "[VpxLRO] -- BEGIN task-88234 -- vm-1 -- "
             "vim.VirtualMachine.reconfigure -- s(s)", op="opD"),
    ])
    tasks, _ = tasks_of(("vpxd.log", text))
    by_id = dict(zip(tasks["task_id"], tasks["initiator"]))
    assert by_id["task-88231"] == "CONTOSO\\backup"
    assert by_id["task-88232"] == "VSPHERE.LOCAL\\azmig"
    assert by_id["task-88233"] is None  # 7 s later: too far
    assert by_id["task-88234"] is None  # another display name


def test_initiator_from_syslog_event_by_time():
    text = (line("2024-05-14T10:21:34Z", "Event [5513] [1-1] [2024-05-14T10:21:35.000Z] "
                 "[vim.event.TaskEvent] [info] [VSPHERE.LOCAL\\Administrator] [DC01] [5513] "
                 "[Task: Remove snapshot]", sub="Default")
            + line("2024-05-14T10:21:36Z", "[VpxLRO] -- BEGIN task-3 -- snapshot-7 -- "
                   "vim.vm.Snapshot.remove -- s(s)", op="other"))
    tasks, _ = tasks_of(("vpxd.log", text))
    assert tasks["initiator"].to_list() == ["VSPHERE.LOCAL\\Administrator"]


def test_no_lro_lines_gives_an_empty_table():
    tasks, diags = tasks_of(("vpxd.log", line("2024-05-14T10:21:36Z", "hello")))
    assert tasks.height == 0 and diags.items == []
    assert build_tasks(tables.empty("vcenter_log"), tables.empty("vcenter_events"),
                       Diagnostics()).height == 0


def test_method_names_cover_the_methods_that_matter():
    assert set(METHOD_NAMES) >= {
        "vim.VirtualMachine.createSnapshot", "vim.vm.Snapshot.remove",
        "vim.VirtualMachine.removeAllSnapshots", "vim.VirtualMachine.consolidateDisks",
        "vim.VirtualMachine.reconfigure", "vim.VirtualMachine.relocate",
        "vim.VirtualMachine.queryChangedDiskAreas"}


# ---------------------------------------------------------------- properties

LOGGY = st.text(alphabet=st.sampled_from(list("0123456789-T:.Z []'=@()\n\r\t-->abcdefinoINFO\x00é가")),
                max_size=400)
PREFIXES = st.sampled_from(["", VPXD + " ", "2024-05-14T10:21:33Z In(166) Hostd[1]: ",
                            "[2012-04-16 21:42:11.096 02584 info 'App'] ", "--> ",
                            "2015-03-06T04:01:43.419-07:00 [13072 info 'x' opID=1] "])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(PREFIXES, st.one_of(LOGGY, st.text(max_size=200))), max_size=12))
def test_arbitrary_text_never_raises(parts):
    text = "\n".join(prefix + body for prefix, body in parts)
    sniff(text, "x")
    parsed = parse(text, "x", ParseContext(vcenter_tz="+09:00"))
    records = parsed.tables["vcenter_log"]
    assert records.schema == pl.Schema(tables.VCENTER_LOG)
    assert parsed.records == records.height
    build_tasks(records, parsed.tables["vcenter_events"], Diagnostics())


# ---------------------------------------------------------------- ESXi host logs (hostd, vpxa)

REAL = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "real"


def test_host_column_from_context():
    text = line("2024-05-14T10:21:33.123Z", "x") * 2
    _, records = run(text, "esx-esx07-2024.tgz!/var/run/log/hostd.log", host="esx07")
    assert records["host"].unique().to_list() == ["esx07"]
    _, records = run(text)
    assert records["host"].null_count() == 2


def test_real_hostd_lines_of_every_layout_parse_with_no_unparsed_line():
    # lnav's real hostd / ESXi samples (BSD-2): legacy `[ts hex level 'sub' opID]`, 6.5+
    # `verbose hostd[...] [Originator@6876 sub=... opID=...]`, ESXi 8 `Db(167) Hostd[...]:` and
    # `In(166) Hostd[...]: info -[...]`; with `-->` and indented continuations between them
    real = (REAL / "parsers-lnav-hostd.log").read_text(encoding="utf-8").splitlines()
    text = "\n".join([real[0], "--> continued fault block", *real[1:4],
                      "   an indented continuation", *real[4:]]) + "\n"
    parsed, records = run(text, "esx-esx07-2024.tgz!/var/run/log/hostd.log", host="esx07")
    assert parsed.unparsed == 0 and "unparsed-lines" not in codes(parsed)
    assert parsed.records == records.height == 7
    assert records["ts"].null_count() == 0
    assert records["layout"].to_list() == ["win5x", "vpxd65", "esxi8", "esxi8", "esxi8", "esxi8",
                                           "esxi8"]
    assert records["process"].to_list()[2:] == ["Hostd", "vmsyslogd", "Hostd", "Hostd", "Hostd"]
    assert records["detail"].to_list()[:4] == ["continued fault block", None, None,
                                               "   an indented continuation"]
    assert records["op_id"].to_list()[-1] == "539bc6dd-c7-c39c"
    assert records["host"].unique().to_list() == ["esx07"]


def test_esxi8_hostd_with_level_words_and_vpxa():
    text = ("2024-05-07T17:07:09.123Z Er(163) Hostd[2098914]: [Originator@6876 sub=Vmsvc.vm:/vmfs/"
            "volumes/ds01/APP01/APP01.vmx opID=a1-b2 user=vpxuser] Failed to lock the file\n"
            "2024-05-07T17:07:10.000Z In(166) Vpxa[2099001]: [Originator@6876 sub=vpxLro "
            "opID=c3] [VpxLRO] -- FINISH lro-1\n")
    parsed, records = run(text, "hostd.log", host="esx07")
    assert records.select("level", "process", "op_id").rows() == [
        ("error", "Hostd", "a1-b2"), ("info", "Vpxa", "c3")]
    assert records["sub"][0] == "Vmsvc.vm:/vmfs/volumes/ds01/APP01/APP01.vmx"
    assert parsed.unparsed == 0
