from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer import tables
from analyzer.parsers.gateway_log import MAX_VALUE_CHARS, SOURCE, parse, sniff
from analyzer.sources import ParseContext

ENGINE = "Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine"
REAL_SAMPLES = Path("/work/shared/real-samples")


def run(text: str, **ctx):
    parsed = parse(text, "Logs/GatewayService.log", ParseContext(**ctx))
    frame = parsed.tables["gateway_log"]
    assert frame.schema == pl.Schema(tables.GATEWAY_LOG)
    return parsed, frame


def codes(parsed) -> list[str]:
    return [d.code for d in parsed.diagnostics.items]


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


# ---------------------------------------------------------------- envelope, times, levels

def test_envelope_columns_and_zones():
    text = (
        f"2024-05-14T10:21:33.512Z Info [12] {ENGINE} - Service asrgwy started.\n"
        "2024-05-14T19:21:34.512+09:00 WARNING [ThreadPool 7] Gateway.Host - Something odd.\n"
        "2024-05-14T05:21:35,5-0500 error [3] Gateway.Host - Failed.\n"
        "2024-05-14 10:21:36.000 CrItIcAl [4] Gateway.Host - Very bad.\n"
        "2024-05-14T10:21:37.000Z verbose [5] Gateway.Host -\n"
    )
    parsed, frame = run(text)
    assert frame["line"].to_list() == [1, 2, 3, 4, 5]
    assert frame["level"].to_list() == ["Info", "Warning", "Error", "Critical", "Verbose"]
    assert frame["thread"].to_list() == ["12", "ThreadPool 7", "3", "4", "5"]
    assert frame["component"][0] == ENGINE
    assert frame["message"].to_list()[:4] == ["Service asrgwy started.", "Something odd.",
                                              "Failed.", "Very bad."]
    assert frame["ts"].to_list() == [utc(2024, 5, 14, 10, 21, 33, 512000),
                                     utc(2024, 5, 14, 10, 21, 34, 512000),
                                     utc(2024, 5, 14, 10, 21, 35, 500000),
                                     utc(2024, 5, 14, 10, 21, 36), utc(2024, 5, 14, 10, 21, 37)]
    assert frame["naive"].to_list() == [False, False, False, True, False]
    assert parsed.records == 5 and parsed.unparsed == 0
    assert parsed.first == utc(2024, 5, 14, 10, 21, 33, 512000)
    assert parsed.last == utc(2024, 5, 14, 10, 21, 37)
    assert codes(parsed) == ["naive-timestamps"]  # one, for the single naive line


def test_naive_times_use_appliance_zone_without_diagnostic():
    text = "2024-05-14 19:21:33.512 Info [1] A.B - Heartbeat. activeCycles=1 queuedCycles=0\n" * 3
    parsed, frame = run(text, appliance_tz="+09:00")
    assert frame["ts"].to_list() == [utc(2024, 5, 14, 10, 21, 33, 512000)] * 3
    assert frame["naive"].all()
    assert codes(parsed) == []


def test_naive_times_without_zone_give_one_diagnostic_with_fix():
    text = "2024-05-14 10:21:33.512 Info [1] A.B - Heartbeat.\n" * 50
    parsed, frame = run(text)
    assert frame["ts"][0] == utc(2024, 5, 14, 10, 21, 33, 512000)
    naive = [d for d in parsed.diagnostics.items if d.code == "naive-timestamps"]
    assert len(naive) == 1
    assert naive[0].severity == "warning" and naive[0].location == "Logs/GatewayService.log"
    assert "--appliance-tz" in naive[0].hint and "appliance_tz" in naive[0].hint


def test_bad_zone_falls_back_to_utc_with_error():
    parsed, frame = run("2024-05-14 10:21:33.512 Info [1] A - x\n", appliance_tz="Mars/Olympus")
    assert frame["ts"][0] == utc(2024, 5, 14, 10, 21, 33, 512000)
    assert "bad-time-zone" in codes(parsed)


@pytest.mark.parametrize("stamp", ["9999-99-99T00:00:00.000Z", "0000-01-01T00:00:00.000Z",
                                   "2024-13-40 25:61:00.000", "1601-01-01T00:00:00Z"])
def test_impossible_timestamp_keeps_row_without_time(stamp):
    text = (f"2024-05-14T10:00:00Z Info [1] A - first\n{stamp} Error [1] A - Replication cycle "
            "failed. vm=APP01 errorId=1011\n2024-05-14T11:00:00Z Info [1] A - last\n")
    parsed, frame = run(text)
    assert frame.height == 3
    assert frame["ts"][1] is None
    assert frame["error_id"][1] == "1011" and frame["event"][1] == "cycle_failed"
    assert (parsed.first, parsed.last) == (utc(2024, 5, 14, 10), utc(2024, 5, 14, 11))
    bad = [d for d in parsed.diagnostics.items if d.code == "bad-timestamps"]
    assert len(bad) == 1 and bad[0].location == "Logs/GatewayService.log:2"


# ---------------------------------------------------------------- continuation, unparsed

def test_continuation_lines_fold_into_detail():
    text = (
        "2024-05-14T10:21:33.512Z Error [31] Gateway.Service.Transport.BlobClient - Request to "
        "https://migratelsa1.blob.core.windows.net/c failed. System.Net.WebException: Unable to "
        "connect to the remote server\r\n"
        "   at System.Net.HttpWebRequest.GetResponse()\r\n"
        "\r\n"
        "--- End of inner exception stack trace ---\r\n"
        "Inner text without a timestamp\r\n"
        "2024-05-14T10:21:34.000Z Info [1] A - next\r\n"
    )
    parsed, frame = run(text)
    assert frame["line"].to_list() == [1, 6]
    assert frame["detail"][0] == ("   at System.Net.HttpWebRequest.GetResponse()\n"
                                  "--- End of inner exception stack trace ---\n"
                                  "Inner text without a timestamp")
    assert frame["detail"][1] is None
    assert not frame["message"][0].endswith("\r")
    assert parsed.unparsed == 0 and codes(parsed) == []


def test_lines_before_first_record_and_malformed_lines_are_unparsed_and_sampled():
    junk = [f"preamble {i}" for i in range(7)]
    text = "\n".join(junk + [
        "",
        "2024-05-14T10:21:33.512Z Info [1] A - ok",
        "   at continuation()",
        "2024-05-14T10:21:34.000Z Information [1] A - level not in the envelope",
        "   at belongs.to.the.malformed.line()",
        "2024-05-14T10:21:35.000Z Info [1] A - ok again",
    ])
    parsed, frame = run(text)
    assert frame["line"].to_list() == [9, 13]
    assert frame["detail"][0] == "   at continuation()"
    assert parsed.unparsed == 9
    (diag,) = [d for d in parsed.diagnostics.items if d.code == "unparsed-lines"]
    assert diag.location == "Logs/GatewayService.log:1"
    assert diag.message.startswith("9 line(s)")
    assert diag.message.count("Logs/GatewayService.log:") == 5  # samples, capped


def test_empty_and_blank_files():
    for text in ("", "\n", "\r\n\r\n   \n"):
        parsed, frame = run(text)
        assert frame.height == 0 and parsed.records == 0 and parsed.unparsed == 0
        assert parsed.first is None and codes(parsed) == []


def test_huge_single_line_record_is_truncated():
    text = "2024-05-14T10:21:33.512Z Error [1] A - " + "x" * 20_000_000
    parsed, frame = run(text)
    assert frame.height == 1
    assert len(frame["message"][0]) == MAX_VALUE_CHARS
    assert "truncated-values" in codes(parsed)


def test_huge_single_junk_line_is_one_unparsed_line_with_short_sample():
    parsed, frame = run("y" * 20_000_000)
    assert frame.height == 0 and parsed.unparsed == 1
    (diag,) = parsed.diagnostics.items
    assert len(diag.message) < 1000


def test_binary_junk_never_crashes():
    rng = random.Random(7)
    text = bytes(rng.randrange(256) for _ in range(200_000)).decode("latin-1")
    parsed, frame = run(text)
    assert frame.height == 0 and parsed.unparsed > 0
    assert not sniff(text[:65536], "GatewayService.log")


# ---------------------------------------------------------------- tokens and events

LIFECYCLE = f"""\
2024-05-14T10:00:00.000Z Info [1] Gateway.Service.Host - Service asrgwy starting. version=25.24.02.07
2024-05-14T10:00:01.000Z Info [1] Gateway.Service.Host - Service asrgwy started.
2024-05-14T10:00:02.000Z Info [1] Gateway.Service.Host - VDDK initialised. version=6.7.0 build=8250137
2024-05-14T10:00:03.000Z Info [1] Gateway.Service.Vmware - Connected to vCenter. vcenter=vcsa01.contoso.local user=svc apiVersion=7.0
2024-05-14T10:00:04.000Z Info [1] Gateway.Service.Host - Heartbeat. activeCycles=12 queuedCycles=3
2024-05-14T10:00:05.000Z Info [12] {ENGINE} - Replication cycle started. type=DeltaReplication vm=APP01 host=esx07.contoso.local cycleId=17 vmId=vm-1042 disks=2 vcenter=vcsa01
2024-05-14T10:00:06.000Z Info [12] {ENGINE} - State changed. vm=APP01 cycleId=17 from=CreatingSnapshot to=UploadingDisks
2024-05-14T10:00:07.000Z Info [12] {ENGINE} - Creating snapshot. vm=APP01 datastore=ds01
2024-05-14T10:00:08.000Z Info [12] {ENGINE} - Snapshot created. vm=APP01 durationMs=7219
2024-05-14T10:00:09.000Z Info [15] Gateway.Service.Upload - Disk upload progress. vm=APP01 cycleId=17 disk="[ds01] APP01/APP01_1.vmdk" diskId=6000C29a-1d2e uploadedBytes=734003200 totalBytes=2147483648 rateMBps=41.7
2024-05-14T10:00:10.000Z Info [12] {ENGINE} - Removing snapshot. vm=APP01 name="AzureMigrate snap 17"
2024-05-14T10:00:11.000Z Warning [12] {ENGINE} - Snapshot removal did not complete; it will be retried in the next cycle. vm=APP01 error="Another task is already in progress."
2024-05-14T10:00:12.000Z Info [12] {ENGINE} - Replication cycle completed. vm=APP01 cycleId=17 durationSec=812 uploadedBytes=2147483648
2024-05-14T10:00:13.000Z Error [12] {ENGINE} - Replication cycle failed. vm=APP01 cycleId=18 errorId=1011 error=DiskUploadTimedOut message="The upload of data for disk [ds01] APP01/APP01_1.vmdk of virtual machine APP01; vm-1042 did not complete. vm=WRONG"
2024-05-14T10:00:14.000Z Info [1] Gateway.Service.Host - Service asrgwy stopping. reason="Service control manager stop"
2024-05-14T10:00:15.000Z Info [1] Gateway.Service.Host - Service asrgwy stopped.
2024-05-14T10:00:16.000Z Info [1] Gateway.Service.Config - Configuration reloaded. name=ignored type=Other
"""


def test_events_classified_by_message_prefix():
    _, frame = run(LIFECYCLE)
    assert frame["event"].to_list() == [
        "service_starting", "service_started", "vddk", "vcenter_connected", "heartbeat",
        "cycle_started", "state_changed", "snapshot_creating", "snapshot_created",
        "disk_progress", "snapshot_removing", "snapshot_removal_deferred", "cycle_completed",
        "cycle_failed", "service_stopping", "service_stopped", None]


def test_key_value_tokens_land_in_columns():
    _, frame = run(LIFECYCLE)
    rows = {row["event"]: row for row in frame.iter_rows(named=True)}
    assert rows["service_starting"]["version"] == "25.24.02.07"
    assert rows["vddk"]["version"] == "6.7.0"
    assert rows["vcenter_connected"]["vcenter"] == "vcsa01.contoso.local"
    assert (rows["heartbeat"]["active_cycles"], rows["heartbeat"]["queued_cycles"]) == (12, 3)
    start = rows["cycle_started"]
    assert (start["vm"], start["vm_id"], start["host"], start["cycle_id"], start["cycle_type"],
            start["disks"], start["vcenter"]) == (
        "APP01", "vm-1042", "esx07.contoso.local", 17, "DeltaReplication", 2, "vcsa01")
    assert (rows["state_changed"]["state_from"], rows["state_changed"]["state_to"]) == (
        "CreatingSnapshot", "UploadingDisks")
    assert rows["snapshot_creating"]["datastore"] == "ds01"
    assert rows["snapshot_created"]["duration_ms"] == 7219.0
    progress = rows["disk_progress"]
    assert progress["disk"] == "[ds01] APP01/APP01_1.vmdk"
    assert progress["disk_id"] == "6000C29a-1d2e"
    assert (progress["uploaded_bytes"], progress["total_bytes"], progress["rate_mbps"]) == (
        734003200, 2147483648, 41.7)
    assert rows["snapshot_removing"]["snapshot_name"] == "AzureMigrate snap 17"
    assert rows["snapshot_removal_deferred"]["error"] == "Another task is already in progress."
    assert rows["cycle_completed"]["duration_sec"] == 812.0
    failed = rows["cycle_failed"]
    assert (failed["vm"], failed["cycle_id"], failed["error_id"], failed["error"]) == (
        "APP01", 18, "1011", "DiskUploadTimedOut")
    assert failed["error_message"].endswith("did not complete. vm=WRONG")
    assert failed["vm_id"] == "vm-1042"  # from the embedded "virtual machine APP01; vm-1042"
    assert rows["service_stopping"]["reason"] == "Service control manager stop"
    other = rows[None]
    assert other["snapshot_name"] is None  # name= only counts on snapshot lines
    assert other["cycle_type"] == "Other"


def test_quoted_values_unescape_and_bare_values_lose_sentence_punctuation():
    text = ('2024-05-14T10:00:00Z Error [1] A - Failed. error="say \\"hi\\" \\\\ bye" vm=APP01. '
            "host=esx01,\n")
    _, frame = run(text)
    assert frame["error"][0] == 'say "hi" \\ bye'
    assert frame["vm"][0] == "APP01" and frame["host"][0] == "esx01"


def test_embedded_vm_forms():
    text = (
        "2024-05-14T10:00:00Z Error [1] A - An internal error occurred. VM: APP01. "
        "[Server Refused Connection]\n"
        "2024-05-14T10:00:01Z Error [1] A - The upload of data for disk x of virtual machine "
        "APP02; vm-2002 did not complete within the expected time.\n"
        "2024-05-14T10:00:02Z Error [1] A - Failed with VM: web.contoso.local\n"
        "2024-05-14T10:00:03Z Error [1] A - Nothing here about any virtual machine\n"
    )
    _, frame = run(text)
    assert frame["vm"].to_list() == ["APP01", "APP02", "web.contoso.local", None]
    assert frame["vm_id"].to_list() == [None, "vm-2002", None, None]


def test_numbers_that_do_not_parse_become_null():
    _, frame = run("2024-05-14T10:00:00Z Info [1] A - Heartbeat. activeCycles=many cycleId=x\n")
    assert frame["active_cycles"][0] is None and frame["cycle_id"][0] is None


# ---------------------------------------------------------------- sniffing

def test_sniff_claims_gateway_content_whatever_the_name():
    assert sniff(LIFECYCLE, "notes.txt")
    assert sniff("2024-05-14 10:00:00.000 info [1] A - one line only\n", "x")
    assert sniff("\n\n" + LIFECYCLE.replace("\n", "\r\n"), "x")
    assert SOURCE.name == "gateway_log" and SOURCE.form == "gateway_log"


def test_sniff_claims_a_rotation_that_opens_inside_a_stack_trace():
    stack = "   at Gateway.Service.Some.Frame()\n" * 80 + "--- End of inner exception stack trace ---\n"
    assert sniff(stack + LIFECYCLE, "GatewayService.log.3")


@pytest.mark.parametrize("path", sorted(REAL_SAMPLES.glob("*.log")), ids=lambda p: p.name)
def test_sniff_does_not_claim_real_vcenter_logs(path):
    assert not sniff(path.read_text(encoding="utf-8", errors="replace"), path.name)


def test_sniff_does_not_claim_vpxd_csv_or_prose():
    vpxd = ("2024-05-14T10:21:33.123Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxLro "
            "opID=68209c6d] [VpxLRO] -- BEGIN task-88231 -- vm-1042 -- vim.VirtualMachine."
            "createSnapshot -- 52b1c2d3\n") * 5
    csv_text = ("Time,Severity,Event,Machine,Event type,Error ID\n"
                "2024-05-14T10:21:33Z,Error,Replication cycle failed,APP01,,1011\n") * 3
    prose = "Gateway logs are attached.\nSee 2024-05-14 for details.\n"
    mostly_prose = prose * 10 + "2024-05-14T10:00:00Z Info [1] A - one stray record\n"
    for text in (vpxd, csv_text, prose, mostly_prose, ""):
        assert not sniff(text, "GatewayService.log")


# ---------------------------------------------------------------- properties

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(text):
    sniff(text, "x.log")
    parsed = parse(text, "x.log", ParseContext())
    frame = parsed.tables["gateway_log"]
    assert frame.height == parsed.records
    assert frame.schema == pl.Schema(tables.GATEWAY_LOG)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="0123456789-:TZ .+[]=\"\\ Info\n\r\tat", max_size=300))
def test_envelope_like_noise_never_raises(text):
    parse(text, "x.log", ParseContext(appliance_tz="+09:00"))


NAMES = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                min_size=1, max_size=20)
QUOTED = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)


@settings(max_examples=120, deadline=None)
@given(
    level=st.sampled_from(["Verbose", "Info", "Warning", "Error", "Critical"]),
    upper=st.booleans(),
    vm=NAMES, host=NAMES, cycle_id=st.integers(0, 10**9), error_text=QUOTED,
    disks=st.integers(0, 64), order=st.randoms(use_true_random=False),
    ms=st.integers(0, 999), offset_hours=st.integers(-12, 14),
)
def test_generated_records_land_in_the_right_columns(level, upper, vm, host, cycle_id,
                                                     error_text, disks, order, ms, offset_hours):
    escaped = error_text.replace("\\", "\\\\").replace('"', '\\"')
    tokens = [f"vm={vm}", f"host={host}", f"cycleId={cycle_id}", f"disks={disks}",
              f'message="{escaped}"']
    order.shuffle(tokens)
    sign = "+" if offset_hours >= 0 else "-"
    stamp = f"2024-05-14T10:21:33.{ms:03d}{sign}{abs(offset_hours):02d}:00"
    line = (f"{stamp} {level.upper() if upper else level} [9] Gateway.X - "
            f"Replication cycle started. {' '.join(tokens)}")
    parsed, frame = run("2024-05-14T00:00:00Z Info [1] A - first\n" + line + "\n   at x()\n")
    row = frame.row(1, named=True)
    assert row["line"] == 2 and row["level"] == level and row["event"] == "cycle_started"
    assert (row["vm"], row["host"], row["cycle_id"], row["disks"]) == (vm, host, cycle_id, disks)
    assert row["error_message"] == error_text
    assert row["detail"] == "   at x()"
    expected = datetime(2024, 5, 14, 10, 21, 33, ms * 1000, tzinfo=timezone.utc)
    assert row["ts"] == expected - timedelta(hours=offset_hours)
