"""The columnar matcher on small hand-built frames."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl

from analyzer import tables
from analyzer.signatures import Library, match
from analyzer.signatures.match import regex_progress
from analyzer.signatures.model import Matcher, Signature

T0 = datetime(2024, 5, 14, 10, 0, tzinfo=timezone.utc)


def sig(id, *matchers, kind="error"):
    return Signature(id=id, title=id, kind=kind, severity="critical", matchers=tuple(matchers))


def gateway(*rows: dict) -> pl.DataFrame:
    full = [{"member": "gw.log", "line": n + 1, "ts": T0, **row} for n, row in enumerate(rows)]
    return tables.conform("gateway_log", pl.DataFrame(full, infer_schema_length=None))


def captures(frame: pl.DataFrame, row: int = 0) -> dict:
    return {c["name"]: c["value"] for c in frame["captures"][row]}


UPLOAD = Matcher("gateway_log", "message", literal=("did not complete",),
                 regex=r"virtual machine (?P<vm>[^;]+); (?P<vm_id>\S+) did not complete")
NFC = Matcher("gateway_log", "message", literal=("Failed to allocate",),
              regex=r"Failed to allocate the requested (?P<bytes>\d+) bytes")


def test_one_pass_many_signatures_in_table_order():
    frame = gateway({"message": "Heartbeat. activeCycles=1 queuedCycles=0"},
                    {"message": "NFC: Failed to allocate the requested 2097176 bytes", "host": "esx07"},
                    {"message": "disk x of virtual machine APP01; vm-1042 did not complete in time"},
                    {"message": "Replication cycle completed. vm=APP01"})
    library = Library({"upload": sig("upload", UPLOAD), "nfc": sig("nfc", NFC, kind="evidence")})
    out = match(library, "gateway_log", frame)
    assert out.schema == pl.Schema(tables.MATCHES)
    assert out.select("line", "signature", "kind").rows() == [(2, "nfc", "evidence"), (3, "upload", "error")]
    assert captures(out, 0) == {"bytes": "2097176"}
    assert out["host"][0] == "esx07"  # from the row's column
    assert (out["vm"][1], out["vm_id"][1]) == ("APP01", "vm-1042")  # from captures
    assert out["text"][1].startswith("disk x of virtual machine APP01")
    assert out["ts"][0] == T0 and out["member"][0] == "gw.log"


def test_captures_win_over_row_columns_and_fill_their_gaps():
    frame = gateway({"message": "disk x of virtual machine APP01; vm-1042 did not complete", "vm": "app01-row",
                     "host": "esx09"})
    out = match(Library({"upload": sig("upload", UPLOAD)}), "gateway_log", frame)
    assert out.select("vm", "vm_id", "host").row(0) == ("APP01", "vm-1042", "esx09")


def test_a_row_matched_twice_by_one_signature_keeps_the_richest_match():
    by_code = Matcher("gateway_log", "error_id", where=(("error_id", ("1011",)),))
    frame = gateway({"message": "disk x of virtual machine APP01; vm-1042 did not complete", "error_id": "1011"},
                    {"message": "Replication cycle failed.", "error_id": "1011"})
    out = match(Library({"upload": sig("upload", by_code, UPLOAD)}), "gateway_log", frame)
    assert out["line"].to_list() == [1, 2]
    assert captures(out, 0) == {"vm": "APP01", "vm_id": "vm-1042"}
    assert captures(out, 1) == {}
    assert out["text"][1] == "1011"


def test_a_row_may_match_several_signatures():
    frame = gateway({"message": "NFC: Failed to allocate the requested 8 bytes; did not complete"})
    library = Library({"a": sig("a", NFC), "b": sig("b", Matcher("gateway_log", "message",
                                                                    literal=("did not complete",)))})
    assert match(library, "gateway_log", frame)["signature"].to_list() == ["a", "b"]


def test_where_contains_exclude_and_case():
    m = Matcher("gateway_log", "message", literal=("unable to connect",), ignore_case=True,
                where=(("level", ("Error", "Warning")),),
                contains=(("component", ("Messaging",)),),
                exclude=(("message", ("eventhub",)),))
    frame = gateway(
        {"message": "Unable to connect to sb://x", "level": "Error", "component": "Svc.Messaging.Receiver"},
        {"message": "Unable to connect to sb://x", "level": "Info", "component": "Svc.Messaging.Receiver"},
        {"message": "Unable to connect to sb://x", "level": "Error", "component": "Svc.Upload"},
        {"message": "UNABLE TO CONNECT to sb://x/EventHub", "level": "Error", "component": "Svc.Messaging.X"},
        {"message": "UNABLE TO CONNECT to sb://y", "level": "Warning", "component": "Svc.MESSAGING.Y"},
    )
    out = match(Library({"s": sig("s", m)}), "gateway_log", frame)
    assert out["line"].to_list() == [1, 5]


def test_exclude_on_a_null_column_does_not_veto():
    m = Matcher("gateway_log", "message", literal=("boom",), exclude=(("detail", ("harmless",)),))
    frame = gateway({"message": "boom"}, {"message": "boom", "detail": "it was harmless"})
    assert match(Library({"s": sig("s", m)}), "gateway_log", frame)["line"].to_list() == [1]


def test_where_compares_non_text_columns_as_text():
    m = Matcher("gateway_log", "message", where=(("total_bytes", ("0",)), ("event", ("disk_progress",))))
    frame = gateway({"message": "Disk upload progress. totalBytes=0", "total_bytes": 0, "event": "disk_progress"},
                    {"message": "Disk upload progress. totalBytes=5", "total_bytes": 5, "event": "disk_progress"})
    assert match(Library({"s": sig("s", m)}), "gateway_log", frame)["line"].to_list() == [1]


def test_regex_only_matcher_still_matches():
    m = Matcher("gateway_log", "message", regex=r"code (?P<code>\d{3})\b")
    frame = gateway({"message": "code 12"}, {"message": "got code 503 back"})
    out = match(Library({"s": sig("s", m)}), "gateway_log", frame)
    assert out["line"].to_list() == [2] and captures(out) == {"code": "503"}


def test_source_specific_identity_and_time():
    portal = tables.conform("portal_events", pl.DataFrame([
        {"member": "events.csv", "line": 2, "ts": T0, "machine": "SQL02", "error_id": "1011"}]))
    by_code = Matcher("portal_events", "error_id", where=(("error_id", ("1011",)),))
    out = match(Library({"e": sig("e", by_code)}), "portal_events", portal)
    assert (out["vm"][0], out["source"][0], out["ts"][0]) == ("SQL02", "portal_events", T0)

    start = datetime(2024, 5, 14, 9, 0, tzinfo=timezone.utc)
    tasks = tables.conform("vcenter_tasks", pl.DataFrame([
        {"member": "vpxd.log", "line": 7, "start": start, "vm_id": "vm-1042", "vm_name": "APP01",
         "method": "vim.VirtualMachine.relocate"}]))
    relocate = Matcher("vcenter_tasks", "method", where=(("method", ("vim.VirtualMachine.relocate",)),))
    out = match(Library({"r": sig("r", relocate, kind="evidence")}), "vcenter_tasks", tasks)
    assert out.select("ts", "vm", "vm_id", "host").row(0) == (start, "APP01", "vm-1042", None)


def test_nothing_to_do_gives_an_empty_matches_frame():
    library = Library({"u": sig("u", UPLOAD)})
    for frame, source in ((gateway(), "gateway_log"), (gateway({"message": "hello"}), "gateway_log"),
                          (tables.empty("vcenter_log"), "vcenter_log")):
        out = match(library, source, frame)
        assert out.height == 0 and out.schema == pl.Schema(tables.MATCHES)


def test_null_text_never_matches():
    frame = gateway({"message": None, "level": "Error"})
    assert match(Library({"u": sig("u", UPLOAD)}), "gateway_log", frame).height == 0


def test_regex_progress_points_at_the_break():
    said = regex_progress(r"The upload of (?P<d>\w+) did not complete", "The upload of disk1 did complete")
    assert said == "regex: got as far as 'The upload of disk1 did ' and stopped before 'complete'"
    assert "only the beginning" in regex_progress(r"abc def", "xx abc")
    assert "cannot even start" in regex_progress(r"zzz", "abc")


def test_an_any_block_matches_the_text_of_every_source():
    from analyzer.signatures.load import _matchers

    locked = _matchers({"source": "any", "literal": ["since it is locked"],
                        "regex": r"Unable to access file (?P<file>.+?) since it is locked"}, 1)
    library = Library({"locked": sig("locked", *locked, kind="evidence")})
    text = "Unable to access file [ds1] APP01/APP01.vmdk since it is locked"
    frames = {
        "text_log": {"message": "2024-05-14T10:00:00Z| vmx| " + text, "vm": "APP01", "host": "esx07"},
        "vcenter_log": {"message": text},
        "portal_events": {"error_message": text, "machine": "APP01"},
        "vcenter_tasks": {"fault_message": text, "vm_name": "APP01", "start": T0},
    }
    for source, row in frames.items():
        frame = tables.conform(source, pl.DataFrame([{"member": "m", "line": 1, "ts": T0, **row}],
                                                    infer_schema_length=None))
        out = match(library, source, frame)
        assert out["signature"].to_list() == ["locked"], source
        assert captures(out) == {"file": "[ds1] APP01/APP01.vmdk"}, source
    # a vmware.log row carries its VM and host into the match
    frame = tables.conform("text_log", pl.DataFrame([{"member": "m", "line": 1, "ts": T0, **frames["text_log"]}]))
    assert match(library, "text_log", frame).select("vm", "host").row(0) == ("APP01", "esx07")
