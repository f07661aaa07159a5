from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer import tables
from analyzer.parsers.portal_events import (EVENTS_CSV, EVENTS_JSON, EVENTS_TEXT,
                                            REPLICATION_STATUS, SOURCES, STATUS_TEXT)
from analyzer.sources import ParseContext

HEADER = ("Time,Severity,Event,Machine,Event type,Error ID,Error message,Possible causes,"
          "Recommendation,Event code,Initiated by")
UPLOAD_TEXT = ("The upload of data for disk [ds01] APP01/APP01_1.vmdk, 6000C29a of virtual machine "
               "APP01; vm-1042 did not complete within the expected time.")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def run(source, text: str, member: str = "portal/events.csv", **ctx):
    """The parse and its source's own table. Pasted text also yields other tables (status,
    resources, text rows); every one conforms and `records` counts them all."""
    parsed = source.parse(text, member, ParseContext(**ctx))
    assert source.name in parsed.tables
    for table, frame in parsed.tables.items():
        assert frame.schema == pl.Schema(tables.SCHEMAS[table])
        if frame.height:
            assert frame["member"].cast(pl.Utf8).unique().to_list() == [member]
    assert sum(frame.height for frame in parsed.tables.values()) == parsed.records
    return parsed, parsed.tables[source.name]


def codes(parsed) -> list[str]:
    return [d.code for d in parsed.diagnostics.items]


def claimed_by(text: str) -> list[str]:
    return [s.form for s in SOURCES if s.sniff(text[:65536], "renamed.txt")]


# ---------------------------------------------------------------- CSV export

CSV = f"""\ufeff{HEADER}\r
2024-05-14T10:21:33.0705652Z,Error,Replication cycle failed for disk,APP01,Replication,1011,"{UPLOAD_TEXT}
Second line of the message, with ""quotes"".",Network issues.,Check the appliance.,VmDiskReplicationCycleFailed,admin@contoso.com\r
"5/14/2024, 10:21:33 AM",Warning,Replication cycle failed,APP02,,181008,Timeout,,,,\r
"2024. 5. 14. 오후 1:21:33",Error,복제 주기 실패,APP03,,1011,업로드 실패,,,,\r
"""


def test_csv_rows_columns_and_line_numbers():
    parsed, frame = run(EVENTS_CSV, CSV)
    assert frame["line"].to_list() == [2, 4, 5]
    assert frame["form"].unique().to_list() == ["csv"]
    first = frame.row(0, named=True)
    assert first["error_message"] == (UPLOAD_TEXT + '\nSecond line of the message, with '
                                      '"quotes".')
    assert (first["severity"], first["event"], first["machine"], first["event_type"],
            first["error_id"], first["possible_causes"], first["recommendation"],
            first["event_code"], first["initiated_by"]) == (
        "Error", "Replication cycle failed for disk", "APP01", "Replication", "1011",
        "Network issues.", "Check the appliance.", "VmDiskReplicationCycleFailed",
        "admin@contoso.com")
    assert frame["event"][2] == "복제 주기 실패"
    assert frame["ts"].to_list() == [utc(2024, 5, 14, 10, 21, 33, 70565),
                                     utc(2024, 5, 14, 10, 21, 33), utc(2024, 5, 14, 13, 21, 33)]
    assert frame["naive"].to_list() == [False, True, True]
    assert frame["event_type"][1] is None  # empty field -> null
    assert (parsed.first, parsed.last) == (utc(2024, 5, 14, 10, 21, 33),
                                           utc(2024, 5, 14, 13, 21, 33))
    assert codes(parsed) == ["naive-timestamps"]


def test_csv_display_times_use_portal_zone():
    parsed, frame = run(EVENTS_CSV, CSV, portal_tz="+09:00")
    assert frame["ts"].to_list()[1:] == [utc(2024, 5, 14, 1, 21, 33), utc(2024, 5, 14, 4, 21, 33)]
    assert codes(parsed) == []


def test_csv_header_any_case_order_spacing_missing_and_extra_columns():
    text = (" error ID ,EXTRA,  machine,TIME , Error   Message\n"
            "1011,ignored,APP01,2024-05-14T10:21:33Z,Upload timed out\n")
    parsed, frame = run(EVENTS_CSV, text)
    row = frame.row(0, named=True)
    assert (row["error_id"], row["machine"], row["error_message"], row["ts"]) == (
        "1011", "APP01", "Upload timed out", utc(2024, 5, 14, 10, 21, 33))
    assert row["severity"] is None and row["initiated_by"] is None
    assert codes(parsed) == []


def test_csv_korean_header():
    text = ("시간,심각도,이벤트,컴퓨터,오류 ID,오류 메시지,가능한 원인,권장 사항\n"
            '"2024. 5. 14. 오전 10:21:33",오류,디스크의 복제 주기 실패,APP01,1011,메시지,원인,조치\n')
    assert claimed_by(text) == ["events_csv"]
    _, frame = run(EVENTS_CSV, text, portal_tz="Asia/Seoul")
    row = frame.row(0, named=True)
    assert (row["ts"], row["event"], row["machine"], row["error_id"], row["recommendation"]) == (
        utc(2024, 5, 14, 1, 21, 33), "디스크의 복제 주기 실패", "APP01", "1011", "조치")


def test_csv_tab_separated_export():
    text = HEADER.replace(",", "\t") + "\n2024-05-14T10:21:33Z\tError\tx\tAPP01\t\t1011\n"
    assert claimed_by(text) == ["events_csv"]
    _, frame = run(EVENTS_CSV, text)
    assert (frame["machine"][0], frame["error_id"][0]) == ("APP01", "1011")


def test_csv_unbalanced_quote_salvages_the_rest():
    good = [f"2024-05-14T10:{i:02d}:00Z,Error,e,APP{i},,{1000 + i},msg {i}" for i in range(40)]
    text = "\n".join([HEADER, good[0], '2024-05-14T09:00:00Z,Error,e,BROKEN,,1,"never closed',
                      *good[1:]]) + "\n"
    parsed, frame = run(EVENTS_CSV, text)
    assert frame.height == 41
    assert frame.filter(pl.col("machine") == "BROKEN")["line"].to_list() == [3]
    assert frame.filter(pl.col("machine") == "BROKEN")["error_message"][0] == "never closed"
    assert frame["machine"][-1] == "APP39" and frame["line"][-1] == 42
    (diag,) = [d for d in parsed.diagnostics.items if d.code == "unbalanced-quote"]
    assert diag.location == "portal/events.csv:3"


def test_csv_runaway_quote_in_the_middle_is_bounded():
    good = [f"2024-05-14T10:00:00Z,Error,e,APP{i},,1011,m" for i in range(1000)]
    text = "\n".join([HEADER, '2024-05-14T09:00:00Z,Error,e,BROKEN,,1,"opens', *good,
                      '2024-05-14T11:00:00Z,Error,e,LAST,,2,"closes" here'])
    parsed, frame = run(EVENTS_CSV, text)
    assert "unbalanced-quote" in codes(parsed)
    assert frame["machine"].to_list()[-1] == "LAST"
    assert frame.height > 900  # only the records swallowed before the cut-off are lost


def test_csv_ragged_rows_are_kept_with_a_diagnostic():
    text = HEADER + "\n2024-05-14T10:21:33Z,Error\n2024-05-14T10:21:34Z,Error,e,APP01,,1011,m,c,r,ec,u,extra,more\n"
    parsed, frame = run(EVENTS_CSV, text)
    assert frame["line"].to_list() == [2, 3]
    assert frame["machine"].to_list() == [None, "APP01"]
    assert frame["initiated_by"].to_list() == [None, "u"]
    (diag,) = [d for d in parsed.diagnostics.items if d.code == "ragged-rows"]
    assert diag.location == "portal/events.csv:2" and "2 row(s)" in diag.message


def test_csv_with_100k_header_columns():
    extra = ",".join(f"col{i}" for i in range(100_000))
    text = f"Time,Error ID,{extra}\n2024-05-14T10:21:33Z,1011,{',' * 99_999}\n"
    assert claimed_by(text) == ["events_csv"]
    parsed, frame = run(EVENTS_CSV, text)
    assert frame["error_id"].to_list() == ["1011"] and codes(parsed) == []


def test_csv_header_only_and_empty_files():
    for text in (HEADER + "\n", "", "\n\n", "\ufeff"):
        parsed, frame = run(EVENTS_CSV, text)
        assert frame.height == 0 and parsed.first is None


@pytest.mark.parametrize("stamp", ["0000-01-01T00:00:00Z", "9999-99-99T00:00:00Z", "yesterday",
                                   "13/45/2024, 10:21:33 AM"])
def test_csv_unreadable_times_keep_the_row(stamp):
    parsed, frame = run(EVENTS_CSV, f'Time,Error ID\n"{stamp}",1011\n2024-05-14T10:00:00Z,1012\n')
    assert frame["error_id"].to_list() == ["1011", "1012"]
    assert frame["ts"].to_list() == [None, utc(2024, 5, 14, 10)]
    (diag,) = [d for d in parsed.diagnostics.items if d.code == "bad-timestamps"]
    assert diag.location == "portal/events.csv:2"


def test_csv_without_time_column_is_read_with_a_diagnostic():
    parsed, frame = run(EVENTS_CSV, "Event,Machine,Error ID\nReplication cycle failed,APP01,1011\n")
    assert frame["machine"].to_list() == ["APP01"] and frame["ts"][0] is None
    assert "missing-columns" in codes(parsed)


# ---------------------------------------------------------------- JSON

def event_item(name: str, errors: list[dict] | None, description="Replication cycle failed"):
    props = {"eventCode": "VmReplicationCycleFailed", "description": description,
             "eventType": "VmHealth", "affectedObjectFriendlyName": "APP01",
             "severity": "Critical", "timeOfOccurrence": "2024-05-14T10:21:33.0705652Z"}
    if errors is not None:
        props["healthErrors"] = errors
    return {"name": name, "id": f"/subscriptions/x/replicationEvents/{name}", "properties": props}


HEALTH = [{"errorCode": "1011", "errorMessage": UPLOAD_TEXT, "possibleCauses": "Network.",
           "recommendedAction": "Check.", "creationTimeUtc": "2024-05-14T10:20:00Z"},
          {"errorCode": 181008, "errorMessage": "Encountered timeout event 'DisposeArtefactsTimeout'"}]


def test_json_value_object_one_row_per_health_error():
    doc = {"value": [event_item("evt-1", HEALTH), event_item("evt-2", [], "Replication enabled")]}
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    assert claimed_by(text) == ["events_json"]
    parsed, frame = run(EVENTS_JSON, text, "events.json")
    assert frame["error_id"].to_list() == ["1011", "181008", None]
    assert frame["error_message"].to_list() == [UPLOAD_TEXT, HEALTH[1]["errorMessage"],
                                                "Replication enabled"]
    row = frame.row(0, named=True)
    assert (row["form"], row["event"], row["machine"], row["severity"], row["event_type"],
            row["event_code"], row["possible_causes"], row["recommendation"], row["ts"]) == (
        "json", "Replication cycle failed", "APP01", "Critical", "VmHealth",
        "VmReplicationCycleFailed", "Network.", "Check.", utc(2024, 5, 14, 10, 21, 33, 70565))
    lines = text.split("\n")
    for line_no in frame["line"].unique():
        assert '"name": "evt-' in lines[line_no - 1]
    assert frame["line"][0] == frame["line"][1] < frame["line"][2]
    assert codes(parsed) == []


def test_json_plain_list_and_line_fallback_to_position():
    items = [event_item("e1", HEALTH[:1]), {"properties": {"description": "no name",
                                                            "healthErrors": HEALTH[1:]}}]
    parsed, frame = run(EVENTS_JSON, json.dumps(items), "events.json")
    assert frame["line"].to_list() == [1, 2]  # one-line JSON; the nameless item is item 2
    assert frame["error_id"].to_list() == ["1011", "181008"]


def test_json_bad_shapes_degrade():
    for text in ("{not json", "[" * 100_000 + "]" * 100_000, '{"value": 5, "eventCode": 1}',
                 '[1, "x", null, {"properties": "weird", "eventCode": 1}]'):
        parsed, frame = run(EVENTS_JSON, text, "events.json")
        assert frame.height <= 1
        assert parsed.diagnostics.items, text[:20]
    parsed, _ = run(EVENTS_JSON, "{not json", "events.json")
    assert parsed.diagnostics.items[0].code == "invalid-json"
    assert parsed.diagnostics.items[0].severity == "error"


# ---------------------------------------------------------------- pasted error details

PASTED = """Error details

Machine
APP01
Error ID
1011
Error Message
The upload of data for disk [ds01] APP01/APP01_1.vmdk
did not complete within the expected time.
Possible causes
The appliance could not reach Azure.

Recommendation
Check the appliance's connectivity.
First Seen At
5/14/2024, 10:21:33 AM

Error ID
181008
Error Message:
Encountered timeout event 'DisposeArtefactsTimeout'.
"""


def test_pasted_blocks():
    assert claimed_by(PASTED) == ["events_text"]
    parsed, frame = run(EVENTS_TEXT, PASTED.replace("\n", "\r\n"), "notes.txt",
                        portal_tz="+09:00")
    assert frame["line"].to_list() == [3, 18]
    assert frame["form"].unique().to_list() == ["text"]
    first, second = frame.iter_rows(named=True)
    assert (first["machine"], first["error_id"], first["possible_causes"],
            first["recommendation"], first["ts"]) == (
        "APP01", "1011", "The appliance could not reach Azure.",
        "Check the appliance's connectivity.", utc(2024, 5, 14, 1, 21, 33))
    assert first["error_message"] == ("The upload of data for disk [ds01] APP01/APP01_1.vmdk\n"
                                      "did not complete within the expected time.")
    assert (second["machine"], second["error_id"], second["ts"]) == (None, "181008", None)
    assert second["error_message"] == "Encountered timeout event 'DisposeArtefactsTimeout'."
    # the "Error details" title is outside every block: kept as a text row, not dropped
    rows = parsed.tables["text_log"]
    assert rows.select("line", "message", pl.col("form").cast(pl.Utf8)).rows() == [
        (1, "Error details", "pasted")]
    assert parsed.unparsed == 0


def test_pasted_korean_labels():
    text = "오류 ID\n1011\n오류 메시지\n업로드가 완료되지 않았습니다.\n권장 사항\n연결을 확인하세요.\n"
    assert claimed_by(text) == ["events_text"]
    _, frame = run(EVENTS_TEXT, text, "notes.txt")
    assert (frame["error_id"][0], frame["recommendation"][0]) == ("1011", "연결을 확인하세요.")


def test_pasted_sniff_needs_a_value_after_error_id():
    assert not EVENTS_TEXT.sniff("Error ID\nError Message\nx\n", "x")
    assert not EVENTS_TEXT.sniff("Error ID\n1011\n", "x")
    assert not EVENTS_TEXT.sniff("We saw Error ID 1011 and an Error Message.\n", "x")


def test_pasted_empty_values_and_junk():
    parsed, frame = run(EVENTS_TEXT, "Error ID\n\nError Message\n", "notes.txt")
    assert frame.height == 1 and frame["error_id"][0] is None
    parsed, frame = run(EVENTS_TEXT, "", "notes.txt")
    assert frame.height == 0 and codes(parsed) == []


# ---------------------------------------------------------------- replication status

STATUS = """Appliance,Server,State,Progress,TimeElapsed,TimeRemaining,UploadSpeed,Health,LastSync,Datastore
appl01,APP01,Delta sync,100 %,00:13:32,,41 MBps,Critical,"5/14/2024, 10:21:33 AM",ds01
appl01,APP02,Initial replication,37 %,02:10:00,04:00:00,12 MBps,Normal,,ds02
"""


def test_replication_status_table():
    assert claimed_by(STATUS) == ["status_csv"]
    parsed, frame = run(REPLICATION_STATUS, STATUS, "status.csv", portal_tz="-07:00")
    assert frame["server"].to_list() == ["APP01", "APP02"]
    assert frame["health"].to_list() == ["Critical", "Normal"]
    assert frame["last_sync"].to_list() == [utc(2024, 5, 14, 17, 21, 33), None]
    row = frame.row(1, named=True)
    assert (row["line"], row["appliance"], row["state"], row["progress"], row["time_elapsed"],
            row["time_remaining"], row["upload_speed"], row["datastore"]) == (
        3, "appl01", "Initial replication", "37 %", "02:10:00", "04:00:00", "12 MBps", "ds02")
    assert codes(parsed) == []
    assert parsed.first == parsed.last == utc(2024, 5, 14, 17, 21, 33)


# ---------------------------------------------------------------- sniffing and robustness

def test_each_form_is_claimed_by_exactly_one_source():
    assert claimed_by(CSV) == ["events_csv"]
    assert claimed_by(json.dumps([event_item("e", HEALTH)])) == ["events_json"]
    assert claimed_by(PASTED) == ["events_text"]
    assert claimed_by(STATUS) == ["status_csv"]
    assert {s.name for s in SOURCES} == {"portal_events", "replication_status"}


@pytest.mark.parametrize("text", [
    "2024-05-14T10:21:33.512Z Info [12] A.B - Replication cycle failed. errorId=1011\n" * 5,
    "Task Name,Target,Status,Details,Initiator,Queued For,Start Time,Completion Time\n",
    "2024-05-14T10:21:33.123Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxLro] x\n",
    '{"some": "json"}', "", "Time\n", "Error ID\n",
])
def test_other_content_is_not_claimed(text):
    assert claimed_by(text) == []


@pytest.mark.parametrize("path", sorted(Path("/work/shared/real-samples").glob("*.log")),
                         ids=lambda p: p.name)
def test_real_vcenter_logs_are_not_claimed(path):
    assert claimed_by(path.read_text(encoding="utf-8", errors="replace")) == []


def test_binary_junk_never_crashes():
    rng = random.Random(11)
    text = bytes(rng.randrange(256) for _ in range(100_000)).decode("latin-1")
    for source in SOURCES:
        source.sniff(text[:65536], "x")
        run(source, text, "junk.bin")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text):
    for source in SOURCES:
        source.sniff(text, "x")
        run(source, text, "x")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(alphabet='ab,"\n\r\t 1:/-T', max_size=30), max_size=12))
def test_quote_and_comma_noise_under_a_header_never_raises(cells):
    text = HEADER + "\n" + "".join(cells)
    parsed, frame = run(EVENTS_CSV, text)
    assert frame["line"].is_sorted() and (frame["line"] >= 2).all()


# ---------------------------------------------------------------- pasted text as tickets bring it

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"


def real(name: str) -> str:
    return (REAL / name).read_text(encoding="utf-8")


def text_rows(parsed) -> dict[int, str]:
    rows = parsed.tables.get("text_log")
    if rows is None:
        return {}
    assert rows["form"].cast(pl.Utf8).unique().to_list() == ["pasted"]
    return dict(rows.select("line", "message").iter_rows())


def test_real_blade_inside_an_issue_65549():
    text = real("parsers-issue-65549-blade.txt")
    assert claimed_by(text) == ["events_text"]
    parsed, frame = run(EVENTS_TEXT, text, "ticket.md", portal_tz="+09:00")
    assert frame.height == 1
    row = frame.row(0, named=True)
    assert (row["line"], row["form"], row["error_id"], row["ts"]) == (
        4, "text", "110088", utc(2020, 11, 4, 6, 51, 16))
    assert row["error_message"].startswith("The operation cannot be completed because the storage")
    assert row["possible_causes"] == ("The storage account was moved to a different resource "
                                      "group or was deleted.")
    assert row["recommendation"] == "Select a different storage account and retry the operation."
    prose = text_rows(parsed)
    assert prose[1].startswith("Followed through steps") and prose[16].startswith("Template")


def test_real_blade_with_a_nested_provider_error_68695():
    parsed, frame = run(EVENTS_TEXT, real("parsers-issue-68695-provider.txt"), "ticket.md")
    row = frame.row(0, named=True)
    assert (row["error_id"], row["provider_code"]) == ("70094", "31389")
    assert row["error_message"] == "Protection couldn't be enabled for the virtual machine."
    assert row["provider_message"].startswith("Job 'Enabling Replication'")
    assert "Check the error details." in row["provider_message"]
    assert row["possible_causes"].startswith("Protection can't be enabled")
    assert row["recommendation"].startswith("Fix any issues in the Event Viewer logs")
    assert 1 in text_rows(parsed)


def test_real_bullets_with_provider_error_in_one_line_73713():
    text = real("parsers-issue-73713-bullets.txt")
    assert claimed_by(text) == ["events_text"]
    _, frame = run(EVENTS_TEXT, text, "ticket.md")
    row = frame.row(0, named=True)
    assert (row["error_id"], row["error_message"], row["provider_code"]) == (
        "110034", "Migration requirements could not be retrieved.", "31475")
    assert row["provider_message"].startswith("Insufficient permissions to start the replication.")


def test_real_documentation_sections_in_markdown():
    text = real("parsers-azure-docs-cbt-sections.txt")
    assert claimed_by(text) == ["events_text"]
    parsed, frame = run(EVENTS_TEXT, text, "docs.md")
    assert frame["error_id"].to_list() == ["181008", "1011", None, None, "181008", "1022"]
    assert frame["form"].unique().to_list() == ["markdown"]
    first = frame.row(0, named=True)
    assert first["error_message"].startswith("VM: VMName. Error: Encountered timeout event")
    assert first["possible_causes"].endswith(
        "- The gateway service is experiencing connectivity issues to Service Bus/Event "
        "hubs/Appliance Storage account.")
    assert frame["error_message"][2] == ("An internal error occurred. [Server Refused "
                                         "Connection]")
    assert frame["error_message"][5].endswith("vSphere host '%HostName;'")  # placeholder kept
    assert frame["recommendation"][4] == ("- Restore the included disks to the original path "
                                          "using storage vMotion and try replication again.")
    prose = text_rows(parsed)
    assert prose[14].startswith("**Identifying the exact cause")
    assert any(m.startswith("This error typically indicates") for m in prose.values())


def test_real_documentation_error_tables():
    text = real("parsers-azure-docs-cbt-table.txt")
    assert claimed_by(text) == ["events_text"]
    parsed, frame = run(EVENTS_TEXT, text, "docs.md")
    assert frame.select("error_id", "event", "error_message").rows() == [
        ("572", "ConsolidateDisksFailed", "ConsolidateDisksFailed"),
        ("566", "NoDiskSnapshotsFound", "NoDiskSnapshotsFound"),
        ("1023", "SnapshotDiskAttachedInPhysicalMode", "SnapshotDiskAttachedInPhysicalMode"),
        (None, "InternalError", "InternalError:Server Refused Connection"),
        (None, "InternalError", "InternalError:MemoryAllocationFailed")]
    assert frame["possible_causes"][1] == (
        "The operation failed due to one of the following reasons:\n- Path of one or more "
        "included disks changed due to Storage vMotion.\n- One or more included disks is no "
        "longer attached to the VM.")
    assert sorted(text_rows(parsed)) == [1, 2, 10]


def test_real_korean_documentation_blocks():
    _, frame = run(EVENTS_TEXT, real("parsers-azure-docs-ko-blocks.txt"), "docs.ko.md")
    assert frame["error_id"].to_list() == ["181008", "1011"]
    assert frame["possible_causes"][0].startswith("Azure에 데이터를 복제")


def test_labels_in_any_case_with_bullets_colons_and_blank_lines():
    text = ("Hi team, the replication of two servers fails:\n\n"
            "• machine: APP01\n• ERROR ID: 1011\n• error message:\n\nDisk upload timed out.\n"
            "• Recommendation: Check connectivity.\n\n"
            "Second one\n"
            "error id:\n\n181008\n\nerror message:\nTimeout event.\n\n"
            "Thanks, Kim\n")
    assert claimed_by(text) == ["events_text"]
    parsed, frame = run(EVENTS_TEXT, text, "mail.txt")
    assert frame.select("machine", "error_id", "error_message", "recommendation").rows() == [
        ("APP01", "1011", "Disk upload timed out.", "Check connectivity."),
        (None, "181008", "Timeout event.", None)]
    assert set(text_rows(parsed).values()) == {
        "Hi team, the replication of two servers fails:", "Second one", "Thanks, Kim"}


HEALTH_TEXT = """
Server Information:

Appliance Server State                      Progress TimeElapsed TimeRemaining UploadSpeed LastSync              Datastore
--------- ------ -----                      -------- ----------- ------------- ----------- --------              ---------
appl01    APP01  DeltaReplication Failed    -        -           -             -           5/14/2024, 9:51:05 AM ds01

List of warning or critical errors for this server with their resolutions:
Error Message: The upload of data for disk DiskPath did not complete within the expected time.

Possible Causes: 

Recommended Actions: Check the appliance connectivity.


Error Message: Encountered timeout event 'DisposeArtefactsTimeout'.

Possible Causes: The gateway service is down.

Recommended Actions: Start the gateway service.

"""


def test_powershell_health_text_assumed_from_the_cmdlet_source():
    assert claimed_by(HEALTH_TEXT) == ["events_text"]
    parsed, frame = run(EVENTS_TEXT, HEALTH_TEXT, "health.txt")
    assert frame.select("error_message", "possible_causes", "recommendation").rows() == [
        ("The upload of data for disk DiskPath did not complete within the expected time.",
         None, "Check the appliance connectivity."),
        ("Encountered timeout event 'DisposeArtefactsTimeout'.", "The gateway service is down.",
         "Start the gateway service.")]
    status = parsed.tables["replication_status"]
    assert status.select("server", "state", "last_sync").rows() == [
        ("APP01", "DeltaReplication Failed", utc(2024, 5, 14, 9, 51, 5))]


def test_real_status_table_list_by_project():
    text = real("parsers-az-migrate-status-list.txt")
    assert claimed_by(text) == ["status_text"]
    parsed, frame = run(STATUS_TEXT, text, "status.txt", portal_tz="+02:00")
    assert frame.select("line", "appliance", "server", "state", "progress", "time_elapsed",
                        "time_remaining", "upload_speed", "health", "datastore").rows()[0] == (
        4, "nosbm-test-ds", "el41-r5w12r1-3", "InitialReplication InProgress", "48 %",
        "3 hr 48 min", "12 hr 37 min", "1230 Mbps", "Normal", "IDCLAB-T100_10TB")
    assert frame["last_sync"].to_list() == [None, utc(2025, 9, 4, 13, 4, 45),
                                            utc(2025, 9, 4, 12, 58, 21)]
    assert frame["progress"][1] is None  # "-"
    assert sorted(text_rows(parsed)) == [11, 12]


def test_real_status_and_resource_tables_expedite():
    text = real("parsers-az-migrate-status-expedite.txt")
    assert claimed_by(text) == ["status_text"]
    parsed, frame = run(STATUS_TEXT, text, "expedite.txt")
    assert frame.select("server", "state").rows() == [("Rhel8-Vm", "DeltaReplication Completed")]
    resources = parsed.tables["appliance_resources"]
    assert resources.schema == pl.Schema(tables.APPLIANCE_RESOURCES)
    assert resources.select("kind", "capacity", "utilization", "total_utilization",
                            "status").rows() == [
        ("ram", "32768 MB", "1808 MB", "7014 MB", "Underutilized"),
        ("cpu", "4 Cores", None, "99%", "At capacity"),
        ("network", "1192 MBps", None, None, "Underutilized"),
        ("nfc_buffer", "32 MB", "8 MB", None, "Underutilized"),
        ("parallel_disks", "58", "3", None, "Underutilized"),
        ("snapshot_count", "15", "2", None, "Underutilized")]
    assert resources["resource"][1] == "Appliance CPU Sum : Primary and scale out appliances"
    assert resources.select("appliance", "server").unique().rows() == [("cbtresyncgql", "Rhel8-Vm")]
    prose = text_rows(parsed)  # the disk and resource-sharing tables stay text
    assert any(m.startswith("Rhel8-Vm DeltaReplication Completed") for m in prose.values())
    assert any(m.startswith("cbtresyncgql wave-selfhost-vm8") for m in prose.values())


FORMAT_LIST = """
CreationTimeUtc       : 5/14/2024 10:21:33 AM
CustomerResolvability : Allowed
ErrorCode             : 1011
ErrorId               : 6:8010
ErrorLevel            : Error
ErrorMessage          : The upload of data for disk [ds01] APP01.vmdk did not complete within
                        the expected time.
PossibleCaus          : Network issues.
RecommendedAction     : Check the appliance.
SummaryMessage        :

MachineName           : APP01
MigrationState        : Replicating
Health                : Critical
"""


def test_format_list_health_errors_and_items_assumed_shapes():
    assert claimed_by(FORMAT_LIST) == ["events_text"]
    parsed, frame = run(EVENTS_TEXT, FORMAT_LIST, "fl.txt")
    row = frame.row(0, named=True)
    assert (row["line"], row["form"], row["error_id"], row["event_code"], row["severity"],
            row["possible_causes"], row["recommendation"], row["event"], row["ts"]) == (
        2, "powershell", "1011", "6:8010", "Error", "Network issues.", "Check the appliance.",
        None, utc(2024, 5, 14, 10, 21, 33))
    assert row["error_message"].endswith("within\nthe expected time.")
    assert parsed.tables["replication_status"].select("server", "state", "health").rows() == [
        ("APP01", "Replicating", "Critical")]
    assert "text_log" not in parsed.tables


def health_doc(**extra) -> dict:
    error = {"errorSource": "ServiceProvider", "errorType": "ReplicationCycleFailed",
             "errorLevel": "Error", "errorCode": "1011", "summaryMessage": "",
             "errorMessage": "Disk 'APP01' upload failed.", "possibleCauses": "Network.",
             "recommendedAction": "Check.", "creationTimeUtc": "2024-05-14T10:21:33Z",
             "errorId": "6:8010", "customerResolvability": "Allowed", **extra}
    return {"id": "/subscriptions/x/replicationMigrationItems/a1", "name": "a1",
            "properties": {"machineName": "APP01", "health": "Normal", "healthErrors": [error]}}


@pytest.mark.parametrize("shape", ["object", "value", "list", "powershell"])
def test_health_errors_json_wherever_they_sit(shape):
    doc = health_doc()
    if shape == "value":
        doc = {"value": [doc, {"name": "quiet", "properties": {"healthErrors": []}}]}
    elif shape == "list":
        doc = [doc]
    elif shape == "powershell":  # ConvertTo-Json of the PowerShell object: PascalCase names
        inner = doc["properties"]["healthErrors"][0]
        doc = {"MachineName": "APP01", "Health": "Normal",
               "HealthError": [{k[0].upper() + k[1:]: v for k, v in inner.items()}]}
    text = json.dumps(doc, indent=2).replace("'", "\\u0027")
    assert claimed_by(text) == ["events_json"]
    parsed, frame = run(EVENTS_JSON, text, "health.json")
    row = frame.row(0, named=True)
    assert (row["form"], row["machine"], row["health"], row["error_id"], row["event_code"],
            row["event"], row["severity"], row["error_message"], row["ts"]) == (
        "health_json", "APP01", "Normal", "1011", "6:8010", None, "Error",
        "Disk 'APP01' upload failed.", utc(2024, 5, 14, 10, 21, 33))
    assert '"1011"' in text.split("\n")[row["line"] - 1] or shape == "powershell"
    assert codes(parsed) == []


def test_health_error_provider_details_from_inner_errors_or_the_message():
    doc = health_doc(innerHealthErrors=[{"errorCode": "31475", "errorMessage": "No permission"}])
    _, frame = run(EVENTS_JSON, json.dumps(doc), "h.json")
    assert frame.select("provider_code", "provider_message").row(0) == ("31475", "No permission")
    doc = health_doc(errorMessage="Migration failed. Provider error code: 31389 Provider error "
                                  "message: Job failed. Provider error possible causes: x")
    _, frame = run(EVENTS_JSON, json.dumps(doc), "h.json")
    assert frame.select("provider_code", "provider_message").row(0) == ("31389", "Job failed.")


@pytest.mark.parametrize("text", [
    # a log whose messages hold labels: most lines stamped
    "2024-05-14T10:21:33.512Z Info [12] A.B - x\nError ID: 1011\nError Message: y\n"
    "2024-05-14T10:21:34Z Info [12] A.B - z\n2024-05-14T10:21:35Z Info [12] A.B - w\n",
    "We saw error id 1011 in the portal and an error message about disks.\n",
    "| Name | Value |\n|--|--|\n| a | b |\n",
    " NPM(K)    PM(M)      WS(M)     CPU(s)      Id  SI ProcessName\n"
    " ------    -----      -----     ------      --  -- -----------\n"
    "     24    10.52      30.11       0.08    4760   1 asrgwy\n",
    "Name : a\nValue : b\n",
])
def test_other_pastes_are_not_claimed(text):
    assert claimed_by(text) == []


def test_many_labels_and_hostile_markdown_stay_fast():
    import time
    text = "".join(f"Error ID\n{i}\nError Message\nm{i}\n\n" for i in range(50_000))
    started = time.perf_counter()
    _, frame = run(EVENTS_TEXT, text, "big.txt")
    assert frame.height == 50_000 and frame["error_id"][-1] == "49999"
    hostile = ("**" * 3000 + "\n" + "|" * 3000 + "\n" + "|--|" * 1000 + "\n" + "- " * 3000
               + ":\n" + "#" * 3000 + "\n" + "-" * 5000 + "\n") * 50
    parsed, _ = run(EVENTS_TEXT, hostile + "Error ID: 1\nError Message: x\n", "hostile.md")
    assert parsed.tables["portal_events"]["error_id"].to_list() == ["1"]
    assert time.perf_counter() - started < 60
