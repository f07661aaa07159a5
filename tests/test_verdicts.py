"""Verdicts from hand-built frames: every detector, the decision rules, red herrings, skew, JSON."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema
import polars as pl
import pytest

from analyzer import cycles as cycles_stage
from analyzer.diagnostics import Diagnostics
from analyzer.signatures.model import Cause, Library, Matcher, Signature
from analyzer.verdicts import decide
from tests.test_cycles import GatewayLog, at, frame, identities, task

SCHEMA = Path(__file__).resolve().parents[1] / "analyzer" / "schema" / "analysis-v1.json"
ALL_SOURCES = {"gateway_log", "portal_events", "vcenter_tasks"}
UPLOAD_TEXT = ("The upload of data for disk [ds01] APP01/APP01_1.vmdk, 6000C29a of virtual machine APP01; "
               "vm-1 did not complete within the expected time.")


# --- a tiny library ----------------------------------------------------------------------------

def cause(id: str, *evidence: str, scope: str = "appliance", before: str = "3h", after: str = "30m",
          confidence: str = "high", fallback: bool = False) -> Cause:
    units = {"m": "minutes", "h": "hours", "d": "days"}
    window = lambda w: timedelta(**{units[w[-1]]: int(w[:-1])})  # noqa: E731
    return Cause(id=id, evidence=tuple(evidence), scope=scope, before=window(before), after=window(after),
                 confidence=confidence, remediation=(f"fix {id}",), fallback=fallback)


def error(id: str, *causes: Cause, codes: tuple[str, ...] = (), params: dict | None = None,
          summary: str = "{vm} failed: {cause_title}.") -> Signature:
    return Signature(id=id, title=id.replace("_", " ").capitalize(), kind="error", severity="critical",
                     codes=codes, summary=summary, causes=causes, undetermined=(f"check everything about {id}",),
                     references=("https://learn.microsoft.com/azure/migrate/troubleshoot",),
                     params=tuple((params or {}).items()),
                     matchers=(Matcher(source="gateway_log", column="message", literal=("x",)),))


def evidence(id: str, source: str = "gateway_log", scope: str = "appliance") -> Signature:
    return Signature(id=id, title=id.replace("_", " ").capitalize(), kind="evidence", severity="warning",
                     scope=scope, matchers=(Matcher(source=source, column="message", literal=("x",)),))


UPLOAD = error("disk_upload_timed_out",
               cause("appliance_down", "detect.appliance_silence"),
               cause("gateway_service_down", "detect.service_down"),
               cause("cache_storage_unreachable", "cache_storage_unreachable", after="10m"),
               cause("vcenter_read_throttled", "detect.low_read_rate", scope="vm", before="6h", after="5m",
                     confidence="medium"),
               codes=("1011",), params={"low_rate_mbps": 5.0})
DISPOSE = error("dispose_artefacts_timed_out",
                cause("appliance_down", "detect.appliance_silence"),
                cause("gateway_service_down", "detect.service_down"), codes=("181008",))
ANOTHER_TASK = error("internal_another_task_in_progress",
                     cause("conflicting_vcenter_task", "detect.overlapping_task", scope="vm", before="2h"),
                     cause("vcenter_task_timeout", "task_timed_out", scope="vm", before="2h"))
SNAPSHOT_HUNG = error("internal_generate_snapshot_hung",
                      cause("snapshot_creation_stuck", "detect.snapshot_task_stuck", scope="vm", before="2h"))
REFUSED = error("internal_server_refused_connection", cause("vddk_known_issue", "detect.vddk_67", before="30d"))
MEMORY = error("internal_memory_allocation_failed",
               cause("nfc_buffer_exhausted", "nfc_allocation_failed", "detect.host_parallel_disks", scope="host",
                     before="2h"), params={"max_disks_per_host": 8})
CBT = error("changed_blocks_fetch_failed",
            cause("cbt_reset_by_storage_vmotion", "vm_relocated", scope="vm", before="2d", confidence="medium"),
            cause("cbt_reset_or_corrupt", "cbt_fault", scope="vm", before="6h", fallback=True))
KEY_VAULT = error("key_vault_operation_failed",
                  cause("csp_remote_user", "detect.kv_guest_user", before="1h", after="1h"),
                  cause("access_policy_missing_for_user", "detect.kv_other_user", before="1h", after="1h"))
STALLED = error("replication_stalled",
                cause("appliance_down", "detect.appliance_silence", before="12h", after="0m"),
                cause("gateway_service_down", "detect.service_down", before="12h", after="0m"))
SLOW = error("slow_replication",
             cause("nfc_buffer_exhausted", "detect.host_parallel_disks", scope="host", before="1h"),
             cause("vcenter_read_throttled", "detect.low_read_rate", scope="vm", before="1h"),
             cause("appliance_overloaded", "detect.appliance_saturated", before="1h"))
SIGNATURES = [UPLOAD, DISPOSE, ANOTHER_TASK, SNAPSHOT_HUNG, REFUSED, MEMORY, CBT, KEY_VAULT, STALLED, SLOW,
              evidence("cache_storage_unreachable"), evidence("task_timed_out", "vcenter_tasks", "vm"),
              evidence("nfc_allocation_failed", scope="host"), evidence("vm_relocated", "vcenter_tasks", "vm"),
              evidence("cbt_fault", "vcenter_log", "vm")]
LIBRARY = Library(signatures={s.id: s for s in SIGNATURES})


def hit(signature: str, minute: float, source: str = "gateway_log", kind: str = "evidence", line: int = 900,
        member: str | None = None, **cols) -> dict:
    return {"member": member or {"gateway_log": "Logs/GatewayService.log", "portal_events": "events.csv"}.get(
        source, "vpxd-1.log"), "line": line, "signature": signature, "kind": kind, "source": source,
        "ts": at(minute), "text": cols.pop("text", f"{signature} line"), **cols}


def analyze(gw: GatewayLog, *, matches: list[dict] = (), tasks: list[dict] = (), portal: list[dict] = (),
            ids=None, sources: set[str] = ALL_SOURCES, library: Library = LIBRARY, activity: list[dict] = ()):
    tables = {"gateway_log": gw.frame(), "matches": frame("matches", list(matches)),
              "vcenter_tasks": frame("vcenter_tasks", list(tasks)), "portal_events": frame("portal_events", list(portal)),
              "identities": ids if ids is not None else identities(("APP01", "vm-1", "esx01.contoso.local"),
                                                                    ("APP02", "vm-2", "esx01.contoso.local")),
              "activity": frame("activity", list(activity))}
    diags = Diagnostics()
    result = cycles_stage.build(tables, diags)
    decision = decide(tables, result, library, diags, sources)
    return decision, diags


def verdicts(decision) -> set[tuple]:
    return {(v["vm"], v["error"], v["cause"]) for v in decision.verdicts}


def only(decision) -> dict:
    assert len(decision.verdicts) == 1, decision.verdicts
    return decision.verdicts[0]


def failed_upload(gw: GatewayLog, vm: str, cycle_id: int, start: float, end: float, **kw) -> dict:
    """A cycle failing with DiskUploadTimedOut; returns the error match of its failed line."""
    gw.cycle(vm, cycle_id, start, end, "failed", vm_id={"APP01": "vm-1", "APP02": "vm-2"}.get(vm), error_id="1011",
             error="DiskUploadTimedOut", text=UPLOAD_TEXT, **kw)
    line = gw.rows[-1]
    return hit("disk_upload_timed_out", end, kind="error", line=line["line"], vm=vm, text=line["message"])


def portal_event(minute: float, machine: str | None, error_id: str | None, text: str, line: int, **cols) -> dict:
    return {"member": "events.csv", "line": line, "form": "csv", "ts": at(minute), "severity": "Error",
            "event": "Replication cycle failed", "machine": machine, "error_id": error_id, "error_message": text, **cols}


def document(decision) -> dict:
    return {"schema": "bundle-analyzer/analysis/v1",
            "bundle": {"name": "case.zip", "sha256": "0" * 64, "analyzed_at": "2024-05-15T00:00:00Z",
                       "analyzer_version": "0.1.0", "sources": {}},
            "vms": decision.vms, "verdicts": decision.verdicts, "outages": decision.outages,
            "not_evaluated": decision.not_evaluated, "diagnostics": []}


def quiet_log(until: float = 600) -> GatewayLog:
    gw = GatewayLog()
    gw.heartbeats(0, until)
    return gw


def sort_log(gw: GatewayLog) -> GatewayLog:
    gw.rows.sort(key=lambda r: r["ts"])
    return gw


# --- appliance-wide: service down, silence, connectivity ----------------------------------------

def service_outage_bundle() -> tuple[GatewayLog, list[dict]]:
    gw = GatewayLog()
    gw.heartbeats(0, 95)
    gw.cycle("APP01", 1, 0, 30, vm_id="vm-1")
    gw.add(99, None, "Unhandled exception in replication worker", level="Critical")
    gw.add(100, "service_stopping", 'Service asrgwy stopping. reason="unhandled exception"')
    gw.add(100.2, "service_stopped", "Service asrgwy stopped.")
    gw.add(160, "service_starting", "Service asrgwy starting. version=25.24.02.07")
    gw.heartbeats(160, 300)
    m1 = failed_upload(gw, "APP01", 2, 90, 165)
    m2 = failed_upload(gw, "APP02", 7, 95, 166)
    return sort_log(gw), [m1, m2]


def test_service_stop_before_the_failures_is_one_outage_explaining_both_vms():
    gw, matches = service_outage_bundle()
    decision, _ = analyze(gw, matches=matches)
    assert verdicts(decision) == {("APP01", "disk_upload_timed_out", "gateway_service_down"),
                                  ("APP02", "disk_upload_timed_out", "gateway_service_down")}
    assert {v["confidence"] for v in decision.verdicts} == {"high"}
    assert {v["severity"] for v in decision.verdicts} == {"critical"}
    [outage] = decision.outages
    assert outage["cause"] == "gateway_service_down"
    assert (outage["start"], outage["end"]) == ("2024-05-14T09:40:00Z", "2024-05-14T10:40:00Z")
    assert outage["vms"] == ["APP01", "APP02"] and outage["cycles"] == ["APP01#2", "APP02#7"]
    assert "2 failed cycles on 2 VMs" in outage["summary"]
    assert {v["outage"] for v in decision.verdicts} == {"outage-1"}
    texts = [e["text"] for e in outage["evidence"]]
    assert 'Service asrgwy stopping. reason="unhandled exception"' in texts
    assert "Unhandled exception in replication worker" in texts  # the Critical before the stop
    verdict = decision.verdicts[0]
    assert verdict["remediation"] == ["fix gateway_service_down"]
    assert verdict["cycles"] == ["APP01#2"] and verdict["error_code"] == "1011"
    assert verdict["summary"] == "APP01 failed: the gateway service was not running."


def test_service_that_never_came_back_is_down_until_the_end():
    gw = GatewayLog()
    gw.heartbeats(0, 95)
    gw.add(100, "service_stopping", "Service asrgwy stopping.")
    gw.cycle("APP01", 2, 90, None, vm_id="vm-1")
    sort_log(gw)
    portal = [portal_event(150, "APP01", "1011", UPLOAD_TEXT, 2)]
    matches = [hit("disk_upload_timed_out", 150, "portal_events", "error", line=2, vm="APP01")]
    decision, _ = analyze(gw, matches=matches, portal=portal)
    assert verdicts(decision) == {("APP01", "disk_upload_timed_out", "gateway_service_down")}
    assert decision.outages[0]["end"] is None


def silence_bundle(resume: float | None = 170) -> tuple[GatewayLog, list[dict], list[dict]]:
    """Gateway records stop at 08:90 with no stop line; the portal keeps reporting."""
    gw = GatewayLog()
    gw.heartbeats(0, 90)
    gw.cycle("APP01", 3, 80, None, vm_id="vm-1")
    if resume is not None:
        gw.add(resume, "service_starting", "Service asrgwy starting.")
        gw.heartbeats(resume, resume + 120)
    sort_log(gw)
    text = ("Encountered timeout event 'DisposeArtefactsTimeout' in the state "
            "'[SnapshotReplicationEngine+WaitingForArtefactsDisposalPreCycle]'")
    portal = [portal_event(140, "APP01", "181008", text, 2)]
    matches = [hit("dispose_artefacts_timed_out", 140, "portal_events", "error", line=2, vm="APP01")]
    return gw, portal, matches


def test_silence_while_the_portal_goes_on_is_appliance_down():
    gw, portal, matches = silence_bundle()
    decision, _ = analyze(gw, matches=matches, portal=portal)
    verdict = only(decision)
    assert (verdict["vm"], verdict["cause"], verdict["confidence"]) == ("APP01", "appliance_down", "high")
    assert verdict["cycles"] == ["APP01#3"]
    [outage] = decision.outages
    assert outage["cause"] == "appliance_down" and outage["start"].startswith("2024-05-14T09:30")
    note = next(e for e in verdict["evidence"] if e["evidence"] == "detect.appliance_silence")["note"]
    assert "while other sources kept logging" in note


def test_silence_that_never_ended_is_still_appliance_down():
    gw, portal, matches = silence_bundle(resume=None)
    decision, _ = analyze(gw, matches=matches, portal=portal)
    assert verdicts(decision) == {("APP01", "dispose_artefacts_timed_out", "appliance_down")}
    assert decision.outages[0]["end"] is None


def test_gateway_log_that_starts_after_the_failure_is_not_silence():
    gw = GatewayLog()
    gw.heartbeats(200, 400)  # rotated away: the log begins after the failure
    portal = [portal_event(140, "APP01", "181008", "Encountered timeout event 'DisposeArtefactsTimeout'", 2),
              portal_event(300, "APP02", None, "something", 3, severity="Information")]
    matches = [hit("dispose_artefacts_timed_out", 140, "portal_events", "error", line=2, vm="APP01")]
    decision, diags = analyze(gw, matches=matches, portal=portal)
    verdict = only(decision)
    assert verdict["cause"] == "undetermined" and verdict["confidence"] == "low"
    assert verdict["remediation"] == ["check everything about dispose_artefacts_timed_out"]
    assert not decision.outages
    [diag] = [d for d in diags.items if d.code == "source-does-not-cover"]
    assert diag.location == "gateway_log" and "2024-05-14T10:20:00Z" in diag.message


def test_silence_with_no_other_source_logging_is_not_evidence():
    gw = GatewayLog()
    gw.heartbeats(0, 90)
    gw.heartbeats(170, 300)
    m = failed_upload(gw, "APP01", 4, 60, 175)
    decision, _ = analyze(sort_log(gw), matches=[m])
    assert verdicts(decision) == {("APP01", "disk_upload_timed_out", "undetermined")}


def test_connectivity_failures_in_the_window_name_the_endpoint():
    gw = quiet_log(300)
    m = failed_upload(gw, "APP01", 5, 100, 160)
    failures = [hit("cache_storage_unreachable", minute, line=500 + n,
                    text="Request to https://migratelsa1.blob.core.windows.net/x failed. Unable to connect to the remote server")
                for n, minute in enumerate((110, 120, 130))]
    decision, _ = analyze(sort_log(gw), matches=[m, *failures])
    verdict = only(decision)
    assert (verdict["cause"], verdict["confidence"]) == ("cache_storage_unreachable", "high")
    assert [e["line"] for e in verdict["evidence"] if e["evidence"] == "cache_storage_unreachable"] == [500, 501, 502]
    [outage] = decision.outages
    assert (outage["start"], outage["end"]) == ("2024-05-14T09:50:00Z", "2024-05-14T10:10:00Z")


# --- red herrings --------------------------------------------------------------------------------

def test_transient_connectivity_error_hours_before_is_not_evidence():
    gw = quiet_log(300)
    for n, start in enumerate((0, 60, 120, 180)):
        gw.cycle("APP02", n + 1, start, start + 20, vm_id="vm-2")
    m = failed_upload(gw, "APP01", 9, 200, 250)
    transient = hit("cache_storage_unreachable", 30, line=700)  # before APP02's later successful cycles
    decision, _ = analyze(sort_log(gw), matches=[m, transient])
    assert verdicts(decision) == {("APP01", "disk_upload_timed_out", "undetermined")}
    assert not decision.outages


def test_another_vms_evidence_explains_nothing():
    gw = quiet_log(300)
    gw.cycle("APP01", 1, 0, 20, vm_id="vm-1")
    gw.add(25, None, "An internal error occurred. [Another task is already in progress]", level="Error", vm="APP01")
    m = hit("internal_another_task_in_progress", 25, kind="error", line=gw.rows[-1]["line"], vm="APP01")
    other = hit("task_timed_out", 10, "vcenter_tasks", vm_id="vm-2", line=40)
    tasks = [task("task-7", "reconfigure", 5, 30, vm_id="vm-2", initiator="admin", line=40)]
    decision, _ = analyze(sort_log(gw), matches=[m, other], tasks=tasks)
    assert verdicts(decision) == {("APP01", "internal_another_task_in_progress", "undetermined")}


def test_restart_in_a_quiet_period_gives_no_verdict():
    gw = GatewayLog()
    gw.heartbeats(0, 60)
    gw.add(61, "service_stopping", "Service asrgwy stopping.")
    gw.add(62, "service_starting", "Service asrgwy starting.")
    gw.heartbeats(65, 250)
    gw.cycle("APP01", 1, 120, 140, vm_id="vm-1")
    decision, diags = analyze(sort_log(gw))
    assert decision.verdicts == [] and decision.outages == []
    # ...and a failure of a cycle that started long after the restart is not explained by it.
    m = failed_upload(gw, "APP01", 2, 150, 170)
    decision, _ = analyze(sort_log(gw), matches=[m])
    assert verdicts(decision) == {("APP01", "disk_upload_timed_out", "undetermined")}


def test_error_of_another_vm_does_not_make_a_verdict_for_this_one():
    gw = quiet_log(120)
    gw.cycle("APP01", 1, 0, 20, vm_id="vm-1")
    m = failed_upload(gw, "APP02", 1, 0, 40)
    decision, _ = analyze(sort_log(gw), matches=[m])
    assert {v["vm"] for v in decision.verdicts} == {"APP02"}
    health = {v["vm"]: v["health"] for v in decision.vms}
    assert health == {"APP01": "healthy", "APP02": "warning"}
