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
                                            REPLICATION_STATUS, SOURCES)
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
