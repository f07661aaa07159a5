"""Verdicts from hand-built frames: every detector, the decision rules, red herrings, skew, JSON."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest

from analyzer import cycles as cycles_stage
from analyzer.diagnostics import Diagnostics
from analyzer.signatures.model import Cause, Library, Matcher, Signature
from analyzer.sources import tables_of
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
                cause("appliance_down", "detect.appliance_silence", before="3h"),
                cause("gateway_service_down", "detect.service_down", before="3h"),
                cause("snapshot_creation_stuck", "detect.snapshot_task_stuck", scope="vm", before="12h", after="0m"),
                cause("conflicting_vcenter_task", "detect.overlapping_task", scope="vm", before="12h", after="0m"))
SLOW = error("slow_replication",
             cause("nfc_buffer_exhausted", "detect.host_parallel_disks", scope="host", before="1h"),
             cause("vcenter_read_throttled", "detect.low_read_rate", scope="vm", before="1h", confidence="medium"),
             cause("appliance_overloaded", "detect.appliance_saturated", before="1h", confidence="medium"))
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
            ids=None, sources: set[str] = ALL_SOURCES, library: Library = LIBRARY, activity: list[dict] = (),
            vcenter_log: list[dict] = ()):
    tables = {"gateway_log": gw.frame(), "matches": frame("matches", list(matches)),
              "vcenter_log": frame("vcenter_log", list(vcenter_log)),
              "vcenter_tasks": frame("vcenter_tasks", list(tasks)), "portal_events": frame("portal_events", list(portal)),
              "identities": ids if ids is not None else identities(("APP01", "vm-1", "esx01.contoso.local"),
                                                                    ("APP02", "vm-2", "esx01.contoso.local")),
              "activity": frame("activity", list(activity))}
    diags = Diagnostics()
    result = cycles_stage.build(tables, diags)
    decision = decide(tables, result, library, diags, tables_of(sources))
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
                       "analyzer_version": "0.1.0", "sources": {}, "complete": True,
                       "incomplete_reasons": []},
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


# --- vm and host scope detectors -------------------------------------------------------------------

def another_task_bundle(skew_minutes: float = 0, backup: tuple[float, float] = (95, 130)):
    """APP01's cycle 4 fails with 'Another task is already in progress' while a backup snapshot runs.
    vCenter times are written `skew_minutes` ahead of the appliance clock."""
    gw = quiet_log(260)
    gw.add(0, "vcenter_connected", "Connected to vCenter. vcenter=vcsa01 user=svc-migrate@vsphere.local")
    for n, start in enumerate((0, 60)):
        gw.cycle("APP01", n + 1, start, start + 20, vm_id="vm-1")
    gw.cycle("APP01", 4, 120, None, vm_id="vm-1", state="CreatingSnapshot")
    gw.add(121, None, "An internal error occurred. [Another task is already in progress]", level="Error", vm="APP01")
    error_line = gw.rows[-1]["line"]
    sort_log(gw)
    s = skew_minutes
    tasks = [task("task-1", "createSnapshot", 0.1 + s, 0.5 + s, line=10, initiator="svc-migrate@vsphere.local"),
             task("task-2", "createSnapshot", 60.1 + s, 60.5 + s, line=20, initiator="svc-migrate@vsphere.local"),
             task("task-3", "createSnapshot", backup[0] + s, backup[1] + s, line=30, initiator="CONTOSO\\svc-backup"),
             task("task-4", "createSnapshot", 120.1 + s, 120.2 + s, line=40, outcome="failed",
                  fault_type="vim.fault.TaskInProgress", initiator="svc-migrate@vsphere.local")]
    matches = [hit("internal_another_task_in_progress", 121, kind="error", line=error_line, vm="APP01")]
    return gw, tasks, matches


def test_overlapping_task_of_another_initiator_is_the_conflict():
    gw, tasks, matches = another_task_bundle()
    decision, _ = analyze(gw, matches=matches, tasks=tasks)
    verdict = only(decision)
    assert (verdict["cause"], verdict["confidence"]) == ("conflicting_vcenter_task", "high")
    [entry] = [e for e in verdict["evidence"] if e["evidence"] == "detect.overlapping_task"]
    assert entry["line"] == 30 and "svc-backup" in entry["text"]
    assert verdict["outage"] is None and not decision.outages
    assert decision.tasks["task_id"].to_list() == ["task-1", "task-2", "task-3", "task-4"]
    # the document lists the task cited as evidence and the one overlapping the failed cycle
    assert [t["task_id"] for t in decision.vms[0]["tasks"]] == ["task-3", "task-4"]
    assert decision.vms[0]["task_counts"] == {"total": 4, "by_outcome": {"failed": 1, "succeeded": 3}}


def test_backup_snapshot_that_does_not_overlap_the_cycle_explains_nothing():
    gw, tasks, matches = another_task_bundle(backup=(70, 90))
    decision, _ = analyze(gw, matches=matches, tasks=tasks)
    assert verdicts(decision) == {("APP01", "internal_another_task_in_progress", "undetermined")}


@pytest.mark.parametrize("skew", [-3, 3])
def test_three_minutes_of_clock_skew_change_no_verdict(skew):
    gw, tasks, matches = another_task_bundle(skew_minutes=0)
    plain, _ = analyze(gw, matches=matches, tasks=tasks)
    gw, tasks, matches = another_task_bundle(skew_minutes=skew, backup=(119, 125))  # overlaps only once corrected
    skewed, diags = analyze(gw, matches=matches, tasks=tasks)
    assert verdicts(skewed) == verdicts(plain) == {("APP01", "internal_another_task_in_progress",
                                                    "conflicting_vcenter_task")}
    assert any(d.code == "clock-skew" and f"{skew * 60:+.0f} s" in d.message for d in diags.items)


def test_task_timeout_evidence_signature_on_the_same_vm():
    gw, tasks, matches = another_task_bundle(backup=(70, 90))
    timed_out = hit("task_timed_out", 110, "vcenter_tasks", vm_id="vm-1", line=50,
                    text="vim.VirtualMachine.consolidateDisks: vim.fault.Timedout")
    decision, _ = analyze(gw, matches=[*matches, timed_out], tasks=tasks)
    assert verdicts(decision) == {("APP01", "internal_another_task_in_progress", "vcenter_task_timeout")}


def snapshot_hung_bundle(progress: int | None, end: float | None, vcenter_until: float = 300):
    gw = quiet_log(200)
    gw.cycle("APP01", 1, 0, 20, vm_id="vm-1")
    gw.cycle("APP01", 2, 60, 150, "failed", vm_id="vm-1", state="CreatingSnapshot",
             text="An internal error occurred. [Generate Snapshot Hung]")
    m = hit("internal_generate_snapshot_hung", 150, kind="error", line=gw.rows[-1]["line"], vm="APP01")
    tasks = [task("task-1", "createSnapshot", 0.1, 0.5, line=10),
             task("task-2", "createSnapshot", 60.1, end, line=20, progress=progress,
                  progress_ts=at(62), outcome="failed" if end else "running"),
             task("task-9", "reconfigure", vcenter_until, vcenter_until + 1, vm_id="vm-2", line=90)]
    return sort_log(gw), tasks, [m]


@pytest.mark.parametrize("progress,end", [(99, 150), (95, None), (None, None)])
def test_snapshot_task_stuck_at_95_99_or_never_ending(progress, end):
    gw, tasks, matches = snapshot_hung_bundle(progress, end)
    verdict = only(analyze(gw, matches=matches, tasks=tasks)[0])
    assert (verdict["cause"], verdict["confidence"]) == ("snapshot_creation_stuck", "high")
    assert any(e["evidence"] == "detect.snapshot_task_stuck" and e["line"] == 20 for e in verdict["evidence"])


def test_single_cause_without_evidence_is_that_cause_with_low_confidence():
    gw, tasks, matches = snapshot_hung_bundle(100, 61)
    verdict = only(analyze(gw, matches=matches, tasks=tasks)[0])
    assert (verdict["cause"], verdict["confidence"]) == ("snapshot_creation_stuck", "low")
    assert verdict["remediation"] == ["fix snapshot_creation_stuck"]


def test_vcenter_log_that_does_not_cover_the_failure_gives_undetermined():
    gw, tasks, matches = snapshot_hung_bundle(100, 61)
    tasks = [task("task-9", "reconfigure", 400, 401, vm_id="vm-2", line=90)]  # vCenter log starts later
    decision, diags = analyze(gw, matches=matches, tasks=tasks)
    assert verdicts(decision) == {("APP01", "internal_generate_snapshot_hung", "undetermined")}
    assert any(d.code == "source-does-not-cover" and d.location == "vcenter" for d in diags.items)


def test_missing_vcenter_source_is_not_evaluated_and_not_concluded():
    gw, _, matches = snapshot_hung_bundle(100, 61)
    decision, diags = analyze(gw, matches=matches, sources={"gateway_log", "portal_events"})
    assert verdicts(decision) == {("APP01", "internal_generate_snapshot_hung", "undetermined")}
    assert {"signature": "detect.snapshot_task_stuck", "source": "vcenter_tasks"} in decision.not_evaluated
    assert {"signature": "task_timed_out", "source": "vcenter_tasks"} in decision.not_evaluated
    assert not any(n["source"] == "gateway_log" for n in decision.not_evaluated)


def low_rate_bundle(rate: float, connectivity: bool = False):
    gw = quiet_log(200)
    gw.cycle("APP01", 1, 0, 20, vm_id="vm-1")
    m = failed_upload(gw, "APP01", 2, 60, 150, rate=rate, uploaded=10_000_000)
    matches = [m]
    if connectivity:  # in the 6 h throttling window, not in the 3 h window of the storage cause
        matches.append(hit("cache_storage_unreachable", -40, line=800))
    return sort_log(gw), matches


def test_low_read_rate_without_connectivity_failures_is_throttling():
    gw, matches = low_rate_bundle(rate=0.8)
    verdict = only(analyze(gw, matches=matches)[0])
    assert (verdict["cause"], verdict["confidence"]) == ("vcenter_read_throttled", "medium")
    [entry] = [e for e in verdict["evidence"] if e["evidence"] == "detect.low_read_rate"]
    assert "0.80 MB/s" in entry["note"]
    # the cycle's last progress line is the evidence (read only when a detector asks for it)
    assert entry["text"].startswith("Disk upload progress. vm=APP01 cycleId=2")
    last = max(r["line"] for r in gw.rows if r["event"] == "disk_progress" and r.get("cycle_id") == 2)
    assert entry["line"] == last


def test_low_rate_is_not_throttling_when_connectivity_failed_in_the_window():
    gw, matches = low_rate_bundle(rate=0.8, connectivity=True)
    assert verdicts(analyze(gw, matches=matches)[0]) == {("APP01", "disk_upload_timed_out", "undetermined")}


def test_normal_rate_is_not_throttling():
    gw, matches = low_rate_bundle(rate=40.0)
    assert verdicts(analyze(gw, matches=matches)[0]) == {("APP01", "disk_upload_timed_out", "undetermined")}


def parallel_disks_bundle(disks_on_host: int):
    gw = quiet_log(200)
    gw.cycle("APP01", 1, 0, 20, vm_id="vm-1")
    gw.cycle("APP02", 1, 55, 120, vm_id="vm-2", disks=disks_on_host - 2)
    gw.cycle("APP01", 2, 60, 100, "failed", vm_id="vm-1", disks=2,
             text="An internal error occurred. [Memory allocation failed. Out of memory.]")
    m = hit("internal_memory_allocation_failed", 100, kind="error", line=gw.rows[-1]["line"], vm="APP01")
    return sort_log(gw), [m]


def test_more_than_eight_disks_at_once_on_the_host_exhausts_nfc():
    gw, matches = parallel_disks_bundle(10)
    verdict = only(analyze(gw, matches=matches)[0])
    assert verdict["cause"] == "nfc_buffer_exhausted" and verdict["confidence"] == "high"
    assert "10 disks uploading at once on host esx01.contoso.local" in verdict["evidence"][0]["note"]


def test_eight_disks_at_once_is_within_the_limit():
    gw, matches = parallel_disks_bundle(8)
    verdict = only(analyze(gw, matches=matches)[0])
    assert (verdict["cause"], verdict["confidence"]) == ("nfc_buffer_exhausted", "low")  # single cause


def test_nfc_allocation_failure_on_another_host_is_not_evidence():
    gw, matches = parallel_disks_bundle(4)
    other = hit("nfc_allocation_failed", 90, line=801, host="esx09.contoso.local")
    same = hit("nfc_allocation_failed", 90, line=802, host="ESX01")
    assert only(analyze(gw, matches=[*matches, other])[0])["confidence"] == "low"
    verdict = only(analyze(gw, matches=[*matches, same])[0])
    assert verdict["confidence"] == "high" and verdict["evidence"][0]["line"] == 802


@pytest.mark.parametrize("version,cause,confidence", [
    ("6.7.0", "vddk_known_issue", "high"), ("7.0.3", "undetermined", "low"), (None, "vddk_known_issue", "low")])
def test_vddk_version_confirms_or_rules_out_the_known_issue(version, cause, confidence):
    gw = quiet_log(100)
    if version:
        gw.add(0, "vddk", f"VDDK initialised. version={version} build=8250137", version=version)
    gw.cycle("APP01", 1, 10, 40, "failed", vm_id="vm-1", text="An internal error occurred. [Server Refused Connection]")
    m = hit("internal_server_refused_connection", 40, kind="error", line=gw.rows[-1]["line"], vm="APP01")
    verdict = only(analyze(sort_log(gw), matches=[m])[0])
    assert (verdict["cause"], verdict["confidence"]) == (cause, confidence)


def test_fallback_cause_without_evidence_and_relocate_with_evidence():
    gw = quiet_log(100)
    gw.cycle("APP01", 1, 10, 40, "failed", vm_id="vm-1", text="Encountered an error while trying to fetch changed blocks")
    m = hit("changed_blocks_fetch_failed", 40, kind="error", line=gw.rows[-1]["line"], vm="APP01")
    tasks = [task("task-1", "createSnapshot", 10.1, 10.5, line=10)]
    assert verdicts(analyze(sort_log(gw), matches=[m], tasks=tasks)[0]) == {
        ("APP01", "changed_blocks_fetch_failed", "cbt_reset_or_corrupt")}
    relocate = hit("vm_relocated", -600, "vcenter_tasks", vm_id="vm-1", line=5)
    tasks.append(task("task-0", "relocate", -600, -590, line=5))
    verdict = only(analyze(sort_log(gw), matches=[m, relocate], tasks=tasks)[0])
    assert (verdict["cause"], verdict["confidence"]) == ("cbt_reset_by_storage_vmotion", "medium")


# --- Key Vault: no VM owns it ------------------------------------------------------------------------

KV_TEXT = ("Key Vault operation failed. Operation: Configure managed storage account, Key Vault: kv-migrate01, "
           "Storage Account: migratelsa1 failed")


def key_vault_bundle(first_user: str | None, failing_user: str | None):
    gw = quiet_log(60)
    portal = [portal_event(5, "APP01", None, "Enable replication started", 2, severity="Information",
                           event="Enable replication", initiated_by=first_user),
              portal_event(20, "APP01", None, KV_TEXT, 3, initiated_by=failing_user)]
    matches = [hit("key_vault_operation_failed", 20, "portal_events", "error", line=3, vm="APP01", text=KV_TEXT)]
    return gw, portal, matches


@pytest.mark.parametrize("first,failing,cause", [
    ("admin@contoso.com", "partner_fabrikam.com#EXT#@contoso.onmicrosoft.com", "csp_remote_user"),
    ("alice@contoso.com", "bob@contoso.com", "access_policy_missing_for_user"),
    ("alice@contoso.com", "alice@contoso.com", "undetermined"),
    (None, None, "undetermined"),
])
def test_key_vault_failure_cause_follows_the_initiating_user(first, failing, cause):
    gw, portal, matches = key_vault_bundle(first, failing)
    verdict = only(analyze(gw, matches=matches, portal=portal)[0])
    assert (verdict["vm"], verdict["error"], verdict["cause"]) == (None, "key_vault_operation_failed", cause)
    if cause != "undetermined":
        assert any(e["text"] == f"Initiated by {failing}" for e in verdict["evidence"])


# --- end of the bundle: stalled and slow -------------------------------------------------------------

def test_no_cycle_completed_for_longer_than_the_schedule_is_stalled():
    gw = quiet_log(600)
    for n, start in enumerate((0, 60, 120)):
        gw.cycle("APP01", n + 1, start, start + 20, vm_id="vm-1")
    gw.cycle("APP02", 1, 540, 560, vm_id="vm-2")
    decision, _ = analyze(sort_log(gw))
    verdict = only(decision)
    assert (verdict["vm"], verdict["error"], verdict["cause"]) == ("APP01", "replication_stalled", "undetermined")
    assert verdict["severity"] == "critical"
    assert verdict["first_seen"] == "2024-05-14T11:20:00Z"  # due one hour after the last cycle ended
    health = {v["vm"]: v["health"] for v in decision.vms}
    assert health == {"APP01": "critical", "APP02": "healthy"}


def test_stall_within_the_schedule_is_not_stalled():
    gw = quiet_log(230)
    for n, start in enumerate((0, 60, 120)):
        gw.cycle("APP01", n + 1, start, start + 20, vm_id="vm-1")
    assert analyze(sort_log(gw))[0].verdicts == []


def test_stall_explained_by_the_appliance_going_silent():
    gw = GatewayLog()
    gw.heartbeats(0, 150)
    for n, start in enumerate((0, 60, 120)):
        gw.cycle("APP01", n + 1, start, start + 20, vm_id="vm-1")
    portal = [portal_event(600, "APP02", None, "Some later event", 2, severity="Information")]
    decision, _ = analyze(sort_log(gw), portal=portal)
    verdict = only(decision)
    assert (verdict["error"], verdict["cause"]) == ("replication_stalled", "appliance_down")
    assert verdict["outage"] == "outage-1" and decision.outages[0]["vms"] == ["APP01"]


def test_stall_on_a_snapshot_task_that_never_ends():
    gw = quiet_log(600)
    for n, start in enumerate((0, 60)):
        gw.cycle("APP01", n + 1, start, start + 20, vm_id="vm-1")
    gw.cycle("APP01", 3, 140, None, vm_id="vm-1", state="CreatingSnapshot", disks=0)
    tasks = [task("task-1", "createSnapshot", 0.1, 0.5, line=10), task("task-2", "createSnapshot", 60.1, 60.5, line=20),
             task("task-3", "createSnapshot", 140.1, None, line=30, outcome="running"),
             task("task-4", "reconfigure", 300, 301, vm_id="vm-2", line=40, initiator="admin"),
             task("task-5", "createSnapshot", -300, -290, line=5, initiator="CONTOSO\\svc-backup")]
    decision, _ = analyze(sort_log(gw), tasks=tasks)
    verdict = only(decision)
    assert (verdict["error"], verdict["cause"], verdict["confidence"]) == (
        "replication_stalled", "snapshot_creation_stuck", "high")
    assert verdict["cycles"] == ["APP01#3"] and verdict["evidence"][0]["line"] == 30
    # A backup snapshot long before the next cycle was due is no conflict.
    assert not any(e["evidence"] == "detect.overlapping_task" for e in verdict["evidence"])


def test_stall_after_an_error_is_the_errors_verdict_only():
    gw = quiet_log(600)
    gw.cycle("APP01", 1, 0, 20, vm_id="vm-1")
    m = failed_upload(gw, "APP01", 2, 60, 100)
    assert {v["error"] for v in analyze(sort_log(gw), matches=[m])[0].verdicts} == {"disk_upload_timed_out"}


def slow_bundle(last_rate: float, queued: int = 0, duration: float = 20):
    gw = GatewayLog()
    gw.heartbeats(0, 320, active=4 if queued else 1, queued=queued)
    for n, start in enumerate((0, 60, 120, 180)):
        gw.cycle("APP01", n + 1, start, start + 20, vm_id="vm-1", rate=40.0, uploaded=2_400_000_000)
    gw.cycle("APP01", 5, 240, 240 + duration, vm_id="vm-1", rate=last_rate,
             uploaded=int(2_400_000_000 * min(1.0, last_rate / 40.0)))
    return sort_log(gw)


def test_cycle_far_slower_than_the_vms_median_is_slow_replication():
    decision, _ = analyze(slow_bundle(last_rate=5.0))
    verdict = only(decision)
    assert (verdict["error"], verdict["cause"], verdict["severity"]) == ("slow_replication", "undetermined", "warning")
    assert verdict["cycles"] == ["APP01#5"]
    assert decision.vms[0]["health"] == "warning"


def test_slow_cycle_while_the_appliance_queues_cycles_is_overload():
    verdict = only(analyze(slow_bundle(last_rate=5.0, queued=3))[0])
    assert (verdict["error"], verdict["cause"]) == ("slow_replication", "appliance_overloaded")
    assert any(e["evidence"] == "detect.appliance_saturated" and "queuedCycles=3" in e["text"]
               for e in verdict["evidence"])


def test_throttling_found_by_exclusion_yields_to_overload_with_its_own_evidence():
    verdict = only(analyze(slow_bundle(last_rate=2.0, queued=3))[0])
    assert (verdict["cause"], verdict["confidence"]) == ("appliance_overloaded", "medium")
    verdict = only(analyze(slow_bundle(last_rate=2.0))[0])
    assert (verdict["cause"], verdict["confidence"]) == ("vcenter_read_throttled", "medium")


def test_cycle_five_times_longer_than_usual_is_slow():
    assert verdicts(analyze(slow_bundle(last_rate=40.0, duration=100))[0]) == {
        ("APP01", "slow_replication", "undetermined")}


def test_usual_cycles_are_not_slow():
    assert analyze(slow_bundle(last_rate=30.0))[0].verdicts == []


# --- grouping, severity, health ---------------------------------------------------------------------

def test_repeated_lines_of_one_failure_and_two_failed_cycles_make_one_verdict():
    gw = quiet_log(200)
    gw.cycle("APP01", 1, 0, 20, vm_id="vm-1")
    m1 = failed_upload(gw, "APP01", 2, 60, 100)
    gw.add(99, None, UPLOAD_TEXT, level="Error", vm="APP01")
    m_plain = hit("disk_upload_timed_out", 99, kind="error", line=gw.rows[-1]["line"], vm="APP01")
    m_portal = hit("disk_upload_timed_out", 101, "portal_events", "error", line=2, vm="APP01")
    m2 = failed_upload(gw, "APP01", 3, 120, 160)
    portal = [portal_event(101, "APP01", "1011", UPLOAD_TEXT, 2)]
    decision, _ = analyze(sort_log(gw), matches=[m1, m_plain, m_portal, m2], portal=portal)
    verdict = only(decision)
    assert verdict["cycles"] == ["APP01#2", "APP01#3"]
    assert (verdict["first_seen"], verdict["last_seen"]) == ("2024-05-14T09:39:00Z", "2024-05-14T10:40:00Z")
    vm = decision.vms[0]
    assert (vm["health"], vm["consecutive_failures"]) == ("critical", 2)
    assert [c["error"] for c in vm["cycles"]] == [None, "disk_upload_timed_out", "disk_upload_timed_out"]


def test_failure_that_recovered_within_the_bundle_is_a_warning():
    gw = quiet_log(200)
    m = failed_upload(gw, "APP01", 1, 0, 40)
    gw.cycle("APP01", 2, 60, 80, vm_id="vm-1")
    decision, _ = analyze(sort_log(gw), matches=[m])
    assert only(decision)["severity"] == "warning"
    assert decision.vms[0]["health"] == "healthy" and decision.vms[0]["consecutive_failures"] == 0


def test_failed_cycle_no_signature_matched_is_named_by_its_unique_error_id():
    gw = quiet_log(100)
    gw.cycle("APP01", 1, 0, 40, "failed", vm_id="vm-1", error_id="1011", error="DiskUploadTimedOut", text="?")
    gw.cycle("APP02", 1, 0, 40, "failed", vm_id="vm-2", error_id="9999", error="Mystery", text="?")
    decision, diags = analyze(sort_log(gw))
    # an Error ID no signature knows is never dropped: a verdict outside the catalogue (OUTPUT.md)
    assert verdicts(decision) == {("APP01", "disk_upload_timed_out", "undetermined"),
                                  ("APP02", "unrecognised_error", "undetermined")}
    [other] = [v for v in decision.verdicts if v["error"] == "unrecognised_error"]
    assert (other["error_code"], other["severity"], other["confidence"]) == ("9999", "critical", "low")
    assert [d.code for d in diags.items] == ["unrecognised-error"]


# --- the document ---------------------------------------------------------------------------------

def test_document_matches_the_json_schema():
    gw, matches = service_outage_bundle()
    _, portal, kv = key_vault_bundle("a@contoso.com", "b@contoso.com")
    decision, _ = analyze(gw, matches=[*matches, *kv], portal=portal)
    doc = document(decision)
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(doc)
    assert decision.verdicts and decision.outages and decision.vms


def test_schema_rejects_what_the_contract_forbids():
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    gw, matches = service_outage_bundle()
    doc = document(analyze(gw, matches=matches)[0])
    bad_time = json.loads(json.dumps(doc))
    bad_time["verdicts"][0]["first_seen"] = "2024-05-14 10:00:00"
    bad_health = json.loads(json.dumps(doc))
    bad_health["vms"][0]["health"] = "Normal"
    missing = json.loads(json.dumps(doc))
    del missing["verdicts"][0]["cause"]
    for broken in (bad_time, bad_health, missing):
        assert not validator.is_valid(broken)


def test_two_runs_give_the_same_bytes():
    def once():
        gw, matches = service_outage_bundle()
        _, portal, kv = key_vault_bundle("a@contoso.com", "b@contoso.com")
        return json.dumps(document(analyze(gw, matches=[*kv, *reversed(matches)], portal=portal)[0]), sort_keys=False)
    assert once() == once()


def test_lists_are_sorted():
    gw, matches = service_outage_bundle()
    decision, _ = analyze(gw, matches=list(reversed(matches)))
    assert [v["vm"] for v in decision.verdicts] == sorted(v["vm"] for v in decision.verdicts)
    assert [v["vm"] for v in decision.vms] == ["APP01", "APP02"]
    for verdict in decision.verdicts:
        keys = [(e["ts"], e["source"], e["member"], e["line"]) for e in verdict["evidence"]]
        assert keys == sorted(keys)


@pytest.mark.parametrize("text,op_id", [
    ("[VpxLRO] -- ERROR task-20 -- vm-1 -- vim.VirtualMachine.createSnapshot: vim.fault.FileFault: cbt.noEpoch", None),
    ("Change tracking invalid or disk in use", "op-77"),
])
def test_vcenter_line_is_tied_to_its_vm_by_moref_or_by_the_opid_of_its_task(text, op_id):
    gw = quiet_log(100)
    gw.cycle("APP01", 1, 10, 40, "failed", vm_id="vm-1", text="Encountered an error while trying to fetch changed blocks")
    m = hit("changed_blocks_fetch_failed", 40, kind="error", line=gw.rows[-1]["line"], vm="APP01")
    tasks = [task("task-20", "createSnapshot", 10.1, 10.5, line=10, op_id="op-77")]
    fault = hit("cbt_fault", 10.4, "vcenter_log", line=12, text=text)
    log = [{"member": "vpxd-1.log", "line": 12, "ts": at(10.4), "message": text, "op_id": op_id}]
    verdict = only(analyze(sort_log(gw), matches=[m, fault], tasks=tasks, vcenter_log=log)[0])
    assert (verdict["cause"], verdict["confidence"]) == ("cbt_reset_or_corrupt", "high")
    assert any(e["evidence"] == "cbt_fault" and e["line"] == 12 for e in verdict["evidence"])



def test_documentinterned_list_are_the_column_with_repeated_strings_shared():
    import polars as pl

    from analyzer.evidence import interned_list
    repeated = pl.Series(["a", None, "b", "a", "a", "b", "a", "a", None])
    out = interned_list(repeated)
    assert out == repeated.to_list() and out[0] is out[3]
    for column in (pl.Series(["x", "y", "z"]), pl.Series([1, None, 1, 1, 1, 1]), pl.Series([], dtype=pl.Utf8),
                   pl.Series([None, None, None, None], dtype=pl.Utf8)):
        assert interned_list(column) == column.to_list()
