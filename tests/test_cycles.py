"""Cycles from hand-built gateway, vCenter and portal frames (tiny and explicit)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from analyzer import tables
from analyzer.cycles import build, estimate_skew
from analyzer.diagnostics import Diagnostics
from analyzer.identity import resolve

T0 = datetime(2024, 5, 14, 8, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def frame(name: str, rows: list[dict]) -> pl.DataFrame:
    return tables.conform(name, pl.DataFrame(rows, infer_schema_length=None)) if rows else tables.empty(name)


class GatewayLog:
    """Builds gateway_log rows whose messages read like the real service's."""

    def __init__(self, member: str = "Logs/GatewayService.log"):
        self.member = member
        self.rows: list[dict] = []

    def add(self, minute: float, event: str | None, message: str, level: str = "Info", **cols) -> dict:
        row = {"member": self.member, "line": len(self.rows) + 1, "ts": at(minute), "level": level,
               "component": "Gateway.Service", "message": message, "event": event, **cols}
        self.rows.append(row)
        return row

    def heartbeats(self, start: float, end: float, every: float = 5, active: int = 1, queued: int = 0):
        m = start
        while m <= end:
            self.add(m, "heartbeat", f"Heartbeat. activeCycles={active} queuedCycles={queued}",
                     active_cycles=active, queued_cycles=queued)
            m += every

    def cycle(self, vm: str, cycle_id: int, start: float, end: float | None, outcome: str = "succeeded",
              vm_id: str | None = None, host: str = "esx01.contoso.local", kind: str = "DeltaReplication",
              disks: int = 1, rate: float = 40.0, uploaded: int = 2_000_000_000, error_id: str | None = None,
              error: str | None = None, text: str | None = None, state: str = "UploadingDisks",
              snapshot: bool = True) -> None:
        ids = {"vm": vm, "cycle_id": cycle_id}
        self.add(start, "cycle_started",
                 f"Replication cycle started. vm={vm} vmId={vm_id} host={host} cycleId={cycle_id} type={kind} disks={disks}",
                 vm_id=vm_id, host=host, cycle_type=kind, disks=disks, **ids)
        if snapshot:
            self.add(start + 0.1, "snapshot_creating", f"Creating snapshot. vm={vm}", vm=vm)
        self.add(start + 0.5, "state_changed", f"State changed. vm={vm} cycleId={cycle_id} from=CreatingSnapshot to={state}",
                 state_from="CreatingSnapshot", state_to=state, **ids)
        last = end if end is not None else start + 1
        for d in range(disks):
            self.add(min(start + 1, last), "disk_progress",
                     f"Disk upload progress. vm={vm} cycleId={cycle_id} diskId=D{d} rateMBps={rate}",
                     disk=f"[ds01] {vm}/{vm}_{d}.vmdk", disk_id=f"{vm}-D{d}", uploaded_bytes=uploaded // disks,
                     total_bytes=uploaded // disks, rate_mbps=rate, **ids)
            self.add(last, "disk_progress",
                     f"Disk upload progress. vm={vm} cycleId={cycle_id} diskId=D{d} rateMBps={rate}",
                     disk=f"[ds01] {vm}/{vm}_{d}.vmdk", disk_id=f"{vm}-D{d}", uploaded_bytes=uploaded // disks,
                     total_bytes=uploaded // disks, rate_mbps=rate, **ids)
        if end is None:
            return
        duration = (end - start) * 60
        if outcome == "succeeded":
            self.add(end, "cycle_completed",
                     f"Replication cycle completed. vm={vm} cycleId={cycle_id} durationSec={duration:.0f} uploadedBytes={uploaded}",
                     duration_sec=duration, uploaded_bytes=uploaded, **ids)
        else:
            self.add(end, "state_changed", f"State changed. vm={vm} cycleId={cycle_id} from={state} to=Failed",
                     state_from=state, state_to="Failed", **ids)
            self.add(end, "cycle_failed",
                     f'Replication cycle failed. vm={vm} cycleId={cycle_id} errorId={error_id} error={error} message="{text}"',
                     level="Error", error_id=error_id, error=error, error_message=text, **ids)

    def frame(self) -> pl.DataFrame:
        return frame("gateway_log", self.rows)


def task(task_id: str, method: str, start: float, end: float | None, vm_id: str | None = "vm-1",
         outcome: str = "succeeded", line: int = 1, **cols) -> dict:
    return {"member": "vpxd-1.log", "line": line, "form": "vpxd", "task_id": task_id, "entity": vm_id,
            "vm_id": vm_id, "method": f"vim.VirtualMachine.{method}" if "." not in method else method,
            "start": at(start), "end": None if end is None else at(end), "outcome": outcome, **cols}


def identities(*vms: tuple[str, str, str]) -> pl.DataFrame:
    return frame("identities", [{"vm_key": name.lower(), "vm": name, "vm_id": moref, "host": host}
                                for name, moref, host in vms])


def run(gw: GatewayLog | pl.DataFrame, **frames):
    diags = Diagnostics()
    gateway = gw.frame() if isinstance(gw, GatewayLog) else gw
    result = build({"gateway_log": gateway, **frames}, diags)
    return result, diags


def by_cycle(result) -> dict[str, dict]:
    return {r["cycle"]: r for r in result.cycles.to_dicts()}


# ---------------------------------------------------------------------------------------------


def test_completed_and_failed_cycles_take_their_facts_from_the_log():
    gw = GatewayLog()
    gw.cycle("APP01", 17, 0, 30, "failed", vm_id="vm-1", rate=2.0, uploaded=100_000_000,
             error_id="1011", error="DiskUploadTimedOut", text="did not complete within the expected time")
    gw.cycle("APP01", 18, 60, 80, vm_id="vm-1", uploaded=600_000_000, disks=2)
    result, _ = run(gw)
    cycles = by_cycle(result)
    failed, done = cycles["APP01#17"], cycles["APP01#18"]
    assert failed["outcome"] == "failed" and failed["type"] == "delta"
    assert failed["failed_state"] == "UploadingDisks"
    assert failed["error_code"] == "1011" and failed["end"] == at(30)
    assert failed["duration_sec"] == pytest.approx(1800)
    assert failed["uploaded_bytes"] == 100_000_000
    assert done["outcome"] == "succeeded" and done["failed_state"] is None
    assert done["duration_sec"] == pytest.approx(1200)
    assert done["rate_mbps"] == pytest.approx(600_000_000 / 1200 / 1e6)
    assert done["host"] == "esx01.contoso.local" and done["vm_id"] == "vm-1"
    disks = result.disks.filter(pl.col("cycle") == "APP01#18")
    assert disks.height == 2 and disks["uploaded_bytes"].sum() == 600_000_000


def test_cycle_without_end_is_in_progress_only_while_the_log_runs_to_the_end():
    gw = GatewayLog()
    gw.cycle("DB01", 3, 0, None, kind="InitialReplication")
    gw.heartbeats(0, 60)
    result, _ = run(gw)
    assert by_cycle(result)["DB01#3"]["outcome"] == "in_progress"
    assert by_cycle(result)["DB01#3"]["type"] == "initial"

    # The portal goes on for hours after the gateway's last record: the cycle's end is unknown.
    portal = frame("portal_events", [{"member": "events.csv", "line": 2, "ts": at(600), "severity": "Information",
                                      "event": "Something else", "machine": "OTHER"}])
    result, _ = run(gw, portal_events=portal)
    assert by_cycle(result)["DB01#3"]["outcome"] == "incomplete"


def test_open_cycle_followed_by_a_restart_or_a_later_cycle_is_incomplete():
    gw = GatewayLog()
    gw.cycle("APP01", 1, 0, None)
    gw.add(20, "service_starting", "Service asrgwy starting. version=25.24.02.07")
    gw.heartbeats(20, 60)
    gw.cycle("APP02", 1, 0, None)
    gw.cycle("APP02", 2, 30, None)
    cycles = by_cycle(run(gw)[0])
    assert cycles["APP01#1"]["outcome"] == "incomplete"
    assert cycles["APP02#1"]["outcome"] == "incomplete"
    assert cycles["APP02#2"]["outcome"] == "in_progress"


def test_portal_failure_closes_a_cycle_the_gateway_never_ended():
    gw = GatewayLog()
    gw.cycle("APP01", 5, 0, None)
    gw.heartbeats(0, 120)
    portal = frame("portal_events", [
        {"member": "events.csv", "line": 2, "ts": at(45), "severity": "Error", "event": "Replication cycle failed",
         "machine": "app01", "error_id": "181008", "error_message": "Encountered timeout event 'DisposeArtefactsTimeout'"},
        {"member": "events.csv", "line": 3, "ts": at(50), "severity": "Error", "event": "Replication cycle failed",
         "machine": "OTHER", "error_id": "1011"},
    ])
    matches = frame("matches", [{"member": "events.csv", "line": 2, "signature": "dispose_artefacts_timed_out",
                                 "kind": "error", "source": "portal_events", "ts": at(45)}])
    cycle = by_cycle(run(gw, portal_events=portal, matches=matches)[0])["APP01#5"]
    assert cycle["outcome"] == "failed" and cycle["end"] == at(45)
    assert cycle["error_code"] == "181008" and cycle["error"] == "dispose_artefacts_timed_out"


def test_error_id_of_the_failed_line_names_the_cycle_error():
    gw = GatewayLog()
    gw.cycle("APP01", 9, 0, 10, "failed", error_id="1011", error="DiskUploadTimedOut", text="x")
    failed_line = next(r for r in gw.rows if r["event"] == "cycle_failed")
    matches = frame("matches", [{"member": gw.member, "line": failed_line["line"], "kind": "error",
                                 "signature": "disk_upload_timed_out", "source": "gateway_log", "ts": at(10)}])
    assert by_cycle(run(gw, matches=matches)[0])["APP01#9"]["error"] == "disk_upload_timed_out"


def test_skew_is_the_median_of_snapshot_task_minus_gateway_snapshot_start():
    gw = GatewayLog()
    for n, start in enumerate((0, 60, 120)):
        gw.cycle("APP01", n, start, start + 20, vm_id="vm-1")
    skewed = [task(f"task-{n}", "createSnapshot", start + 3, start + 3.5, line=n)
              for n, start in enumerate((0.1, 60.1, 120.1))]
    skewed.append(task("task-9", "createSnapshot", 500, 501, line=9))  # no gateway line near it
    result, diags = run(gw, vcenter_tasks=frame("vcenter_tasks", skewed),
                        identities=identities(("APP01", "vm-1", "esx01")))
    assert result.clock_skew == pytest.approx(180.0)
    assert result.skew_basis == 3
    assert [d.code for d in diags.items] == ["clock-skew"]
    corrected = result.corrected["vcenter_tasks"].sort("line")
    assert corrected["start"][0] == at(0.1)  # shifted onto the appliance clock
    assert corrected["own"].to_list()[:3] == [True, True, True]


def test_no_pairs_means_no_skew_and_no_diagnostic():
    gw = GatewayLog()
    gw.cycle("APP01", 1, 0, 20, vm_id="vm-1")
    result, diags = run(gw, vcenter_tasks=frame("vcenter_tasks", [task("task-1", "reconfigure", 5, 6)]))
    assert result.clock_skew is None and result.skew_basis == 0
    assert not diags.items


def test_small_skew_is_applied_but_not_reported():
    gw = GatewayLog()
    gw.cycle("APP01", 1, 0, 20, vm_id="vm-1")
    result, diags = run(gw, vcenter_tasks=frame("vcenter_tasks", [task("task-1", "createSnapshot", 0.1 + 0.25, 1)]),
                        identities=identities(("APP01", "vm-1", "esx01")))
    assert result.clock_skew == pytest.approx(15.0)
    assert not diags.items


def test_foreign_tasks_are_not_the_appliances_own():
    gw = GatewayLog()
    gw.add(0, "vcenter_connected", "Connected to vCenter. vcenter=vcsa01 user=svc-migrate@vsphere.local apiVersion=8.0")
    gw.cycle("APP01", 1, 10, 30, vm_id="vm-1")
    gw.add(25, "snapshot_removing", "Removing snapshot. vm=APP01 name=AzureMigrate-1", vm="APP01",
           snapshot_name="AzureMigrate-1")
    tasks = frame("vcenter_tasks", [
        task("task-1", "createSnapshot", 10.1, 10.5, initiator="VSPHERE.LOCAL\\svc-migrate@vsphere.local", line=1),
        task("task-2", "createSnapshot", 12, 20, initiator="CONTOSO\\svc-backup", line=2),
        task("task-3", "vim.vm.Snapshot.remove", 25.2, 26, vm_id=None, entity="snapshot-77", line=3),
    ])
    tasks = tasks.with_columns(pl.col("initiator").cast(pl.Utf8).str.replace(r"^.*\\", ""))
    result, _ = run(gw, vcenter_tasks=tasks, identities=identities(("APP01", "vm-1", "esx01")))
    rows = {r["task_id"]: r for r in result.corrected["vcenter_tasks"].to_dicts()}
    assert rows["task-1"]["own"] and not rows["task-2"]["own"]
    assert rows["task-3"]["vm_key"] == "app01" and rows["task-3"]["own"]
    assert result.appliance_user == "svc-migrate@vsphere.local"


def test_vm_key_comes_from_the_name_or_the_moref_identity():
    ids = identities(("App01", "vm-1", "esx01"))
    rows = frame("gateway_log", [{"vm": "APP01"}, {"vm_id": "vm-1"}, {"vm_id": "vm-9"}, {}])
    assert resolve(rows, ids)["vm_key"].to_list() == ["app01", "app01", "vm-9", None]


def test_empty_inputs_give_empty_frames():
    result, diags = run(tables.empty("gateway_log"))
    assert result.cycles.height == 0 and result.disks.height == 0
    assert result.cycles.schema == pl.Schema(tables.CYCLES)
    assert result.clock_skew is None and result.bundle_end is None
    assert estimate_skew(resolve(tables.empty("gateway_log"), tables.empty("identities")),
                         resolve(tables.empty("vcenter_tasks"), tables.empty("identities"), "vm_name")) == (None, 0)
