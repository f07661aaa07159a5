"""The hard cases of issue 18, through the whole pipeline on small hand-written bundles: vCenters
that share MoRefs and names, zones from a late bundle.toml, quoted VM names, snapshot removals that
time out, saturation, the portal's own health, Key Vault severity, real vpxd shapes.

Each test here failed on the analyzer before its fix (the commit that added it says so).
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from analyzer import pipeline

T0 = datetime(2024, 5, 14, 6, 0, tzinfo=timezone.utc)
ENGINE = "Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine"
APPLIANCE = "CONTOSO\\svc-azmigrate"
BACKUP = "CONTOSO\\svc-veeam"
ANOTHER_TASK = "An internal error occurred. [Another task is already in progress.]"


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def stamp(minute: float) -> str:
    return at(minute).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Gateway:
    """Gateway service log lines (FORMATS.md section 1), in any order; sorted when written."""

    def __init__(self, vcenters: tuple[str, ...] = ("vcsa01.contoso.local",)):
        self.lines: list[tuple[float, str]] = []
        self.add(0, f"Service asrgwy starting. version=25.24.02.07", component="Gateway.Service.Host.GatewayServiceHost")
        for vc in vcenters:
            self.add(0.1, f"Connected to vCenter. vcenter={vc} user={APPLIANCE} apiVersion=8.0.2.0",
                     component="Gateway.Service.VMware.VCenterSession")
        self.add(0.2, "Service asrgwy started.", component="Gateway.Service.Host.GatewayServiceHost")

    def add(self, minute: float, message: str, level: str = "Info", component: str = ENGINE) -> None:
        self.lines.append((minute, f"{stamp(minute)} {level} [14] {component} - {message}"))

    def heartbeats(self, until: float, queued=lambda minute: 0, active=lambda minute: 1) -> None:
        m = 2.5
        while m < until:
            self.add(m, f"Heartbeat. activeCycles={active(m)} queuedCycles={queued(m)}",
                     component="Gateway.Service.Health.HeartbeatPublisher")
            m += 5

    def cycle(self, vm: str, moref: str, cycle_id: int, start: float, minutes: float = 6.0, *,
              vcenter: str | None = None, host: str = "esx01.contoso.local", fail: str | None = None,
              fail_in: str = "CreatingSnapshot", fail_after: float = 0.5, error_id: str = "", release: bool = True,
              rate: float = 40.0, disks: int = 1) -> None:
        """One cycle: start, states, snapshot lines, one progress line per disk, completed (or failed in
        CreatingSnapshot or ConsolidatingDisks with the text `fail`)."""
        where = f" vcenter={vcenter}" if vcenter else ""
        self.add(start, f"Replication cycle started. vm={vm} vmId={moref} host={host} cycleId={cycle_id} "
                        f"type=DeltaReplication disks={disks}{where}")
        self.add(start + 0.05, f"State changed. vm={vm} cycleId={cycle_id} from=Queued to=CreatingSnapshot")
        self.add(start + 0.06, f"Creating snapshot. vm={vm} vmId={moref} name=\"AzureMigrate-{vm}-{cycle_id}\"",
                 component="Gateway.Service.VMware.SnapshotManager")
        if fail and fail_in == "CreatingSnapshot":
            self._fail(vm, moref, cycle_id, start + fail_after, fail, fail_in, error_id)
            return
        up, done = start + 1, start + minutes - 1.5
        self.add(start + 0.5, f"State changed. vm={vm} cycleId={cycle_id} from=CreatingSnapshot to=UploadingDisks")
        total = int(rate * 1e6 * (done - up) * 60)
        for d in range(disks):
            self.add(done - 0.1, f"Disk upload progress. vm={vm} cycleId={cycle_id} disk=\"[ds01] {vm}/{vm}_{d}.vmdk\" "
                                 f"diskId=6000C29a-{d:04x} uploadedBytes={total} totalBytes={total} "
                                 f"rateMBps={rate / disks:.1f}", component="Gateway.Service.DataPlane.DiskUploader")
        self.add(done, f"State changed. vm={vm} cycleId={cycle_id} from=UploadingDisks to=ReleasingSnapshot")
        if release:
            self.add(done + 0.01, f"Removing snapshot. vm={vm} name=\"AzureMigrate-{vm}-{cycle_id}\"",
                     component="Gateway.Service.VMware.SnapshotManager")
        self.add(done + 0.5, f"State changed. vm={vm} cycleId={cycle_id} from=ReleasingSnapshot to=ConsolidatingDisks")
        if fail:
            self._fail(vm, moref, cycle_id, start + minutes - 0.2, fail, fail_in, error_id)
            return
        self.add(start + minutes - 0.1, f"State changed. vm={vm} cycleId={cycle_id} from=ConsolidatingDisks to=Completed")
        self.add(start + minutes, f"Replication cycle completed. vm={vm} cycleId={cycle_id} "
                                  f"durationSec={int(minutes * 60)} uploadedBytes={total * disks}")

    def _fail(self, vm: str, moref: str, cycle_id: int, when: float, text: str, state: str, error_id: str) -> None:
        self.add(when, f"GatewayErrorHandling.GatewayServiceException: The operation failed with the error "
                       f"'{text}' vm={vm} vmId={moref} cycleId={cycle_id}", level="Error")
        self.add(when + 0.1, f"State changed. vm={vm} cycleId={cycle_id} from={state} to=Failed")
        code = f"errorId={error_id} " if error_id else ""
        self.add(when + 0.11, f"Replication cycle failed. vm={vm} cycleId={cycle_id} {code}error=InternalError "
                              f"message=\"An internal error occurred. [{text}]\"", level="Error")

    def text(self) -> str:
        return "\n".join(line for _, line in sorted(self.lines, key=lambda x: x[0])) + "\n"


class Vpxd:
    """vpxd.log lines (FORMATS.md section 3a, 6.5+ layout)."""

    def __init__(self):
        self.lines: list[tuple[float, str]] = []
        self.n = 88000

    def add(self, minute: float, message: str, sub: str = "vpxLro", op: str = "op1", level: str = "info") -> None:
        self.lines.append((minute, f"{stamp(minute)} {level} vpxd[7FE11CC03700] "
                                   f"[Originator@6876 sub={sub} opID={op}] {message}"))

    def task(self, entity: str, method: str, start: float, end: float | None, user: str = APPLIANCE,
             fault: tuple[str, str] | None = None, display: str = "Create virtual machine snapshot",
             progress: tuple = ()) -> str:
        self.n += 1
        task, op = f"task-{self.n}", f"op{self.n}"
        self.add(start, f"[VpxLRO] -- BEGIN {task} -- {entity} -- {method} -- 52b1c2d3-ab12(52a9)", op=op)
        self.add(start + 0.001, f"Event [{self.n}] [1-1] [{stamp(start)}] [vim.event.TaskEvent] [info] [{user}] "
                                f"[DC01] [{self.n}] [Task: {display}]", sub="vpxdEvent", op=op)
        for minute, text in progress:
            self.add(minute, f"RecordOp ASSIGN: info.progress, {task}{text}", sub="PropertyProvider", op=op,
                     level="verbose")
        if end is not None and fault is None:
            self.add(end, f"[VpxLRO] -- FINISH {task}", op=op)
        elif end is not None:
            ftype, msg = fault
            self.add(end, f"[VpxLRO] -- ERROR {task} -- {entity} -- {method}: {ftype}:\n--> Result:\n--> ({ftype}) {{\n"
                          f"-->    faultCause = (vmodl.MethodFault) null,\n-->    msg = \"{msg}\"\n--> }}\n--> Args:", op=op)
        return task

    def text(self) -> str:
        return "\n".join(line for _, line in sorted(self.lines, key=lambda x: x[0])) + "\n"


def tgz(members: dict[str, str]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def zip_bundle(path: Path, members: dict[str, str | bytes]) -> Path:
    """A zip with the members in the order given."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def portal_csv(*rows: tuple[float, str, str, str]) -> str:
    """Portal events CSV: (minute, machine, error id, message)."""
    head = "Time,Severity,Event,Machine,Event type,Error ID,Error message,Possible causes,Recommendation,Event code,Initiated by\n"
    return head + "".join(f"{stamp(m)},Critical,Replication cycle failed,{vm},Replication,{code},\"{msg}\",,,InternalError,\n"
                          for m, vm, code, msg in rows)


def triples(doc: dict) -> set[tuple]:
    return {(v["vm"], v["error"], v["cause"]) for v in doc["verdicts"]}


# --------------------------------------------------------------------------------------------
# 1. Identity across vCenters


VC1, VC2 = "vcsa01.contoso.local", "vcsa02.contoso.local"


def two_vcenter_members() -> tuple[str, str, str, str]:
    """vcsa01: APP01 = vm-100, SQL01 = vm-200. vcsa02: ADM01 = vm-100 (the same MoRef), APP01 = vm-300 (the
    same name). APP01 of vcsa01 fails 'another task in progress' while a backup snapshot runs on it; in
    vcsa02 the VM holding its MoRef was relocated and had a task time out just before."""
    gw = Gateway((VC1, VC2))
    for n, start in enumerate((60, 120, 180, 240, 300)):
        if start != 240:
            gw.cycle("APP01", "vm-100", 17 + n, start, vcenter=VC1)
        gw.cycle("SQL01", "vm-200", 40 + n, start + 10, vcenter=VC1)
        gw.cycle("ADM01", "vm-100", 7 + n, start + 20, vcenter=VC2)
        gw.cycle("APP01", "vm-300", 17 + n, start + 30, vcenter=VC2)  # the same cycle ids, other times
    gw.cycle("APP01", "vm-100", 20, 240, vcenter=VC1, fail=ANOTHER_TASK)
    gw.heartbeats(340)
    vc1, vc2 = Vpxd(), Vpxd()
    vc1.task("vm-100", "vim.VirtualMachine.createSnapshot", 238, 252, user=BACKUP)
    vc1.task("vm-100", "vim.VirtualMachine.createSnapshot", 240.1, 240.4,
             fault=("vim.fault.TaskInProgress", "Another task is already in progress."))
    vc2.task("vm-100", "vim.VirtualMachine.relocate", 200, 215, user="CONTOSO\\j.kim", display="Relocate virtual machine")
    vc2.task("vm-100", "vim.VirtualMachine.removeAllSnapshots", 205, 230, user="VSPHERE.LOCAL\\Administrator",
             fault=("vim.fault.Timedout", "Operation timed out."), display="Remove all snapshots")
    vc1.add(59, "[vim.VirtualMachine:vm-100,APP01] registered", sub="vmName")
    vc2.add(59, "[vim.VirtualMachine:vm-300,APP01] registered", sub="vmName")
    return gw.text(), vc1.text(), vc2.text(), portal_csv((240.8, "APP01", "", ANOTHER_TASK))


@pytest.mark.parametrize("first", ["vcsa01", "vcsa02"])
def test_two_vcenters_sharing_morefs_and_a_name_keep_their_vms_and_tasks_apart(tmp_path, first):
    gw, vc1, vc2, events = two_vcenter_members()
    archives = {"vcsa01": ("vc-vcsa01-2024-05-14--12.00-1001.tgz", vc1), "vcsa02": ("vc-vcsa02-2024-05-14--12.00-1002.tgz", vc2)}
    order = [first] + [k for k in archives if k != first]
    members = {"appliance/GatewayService.log": gw}
    members |= {archives[k][0]: tgz({"var/log/vmware/vpxd/vpxd-1.log": archives[k][1]}) for k in order}
    members["portal/events.csv"] = events
    analysis = pipeline.analyze(zip_bundle(tmp_path / "two-vcenters.zip", members))
    doc = analysis.doc

    assert triples(doc) == {("APP01 (vcsa01)", "internal_another_task_in_progress", "conflicting_vcenter_task")}
    [verdict] = doc["verdicts"]
    assert any(BACKUP in e["text"] for e in verdict["evidence"])  # the real conflicting task
    assert not any("relocate" in e["text"] or "removeAllSnapshots" in e["text"] for e in verdict["evidence"])
    vms = {vm["vm"]: vm for vm in doc["vms"]}
    assert set(vms) == {"ADM01", "APP01 (vcsa01)", "APP01 (vcsa02)", "SQL01"}
    assert vms["APP01 (vcsa01)"]["vm_ids"] == ["vm-100"] and vms["APP01 (vcsa02)"]["vm_ids"] == ["vm-300"]
    cycle_ids = [c["id"] for vm in doc["vms"] for c in vm["cycles"]]
    assert len(cycle_ids) == len(set(cycle_ids)) and "APP01 (vcsa02)#17" in cycle_ids
    relocates = analysis.tasks.filter(pl.col("method") == "vim.VirtualMachine.relocate")["vm"].to_list()
    assert relocates and set(relocates) == {"ADM01"}
    assert vms["APP01 (vcsa02)"]["health"] == "healthy" and len(vms["APP01 (vcsa02)"]["cycles"]) == 5


# --------------------------------------------------------------------------------------------
# 3. VM names in quotes, placeholders


def test_an_error_naming_its_vm_in_quotes_joins_that_vms_evidence(tmp_path):
    locked = "Unable to access file [ds01] ERP08/ERP08-000001.vmdk since it is locked"
    failing = f"Failed to consolidate the disks on VM 'ERP08': {locked}"
    gw = Gateway()
    for n, start in enumerate((60, 120, 180, 240)):
        gw.cycle("ERP08", "vm-8", 30 + n, start)
        gw.cycle("SQL02", "vm-2", 50 + n, start + 20)
    gw.cycle("ERP08", "vm-8", 34, 300, fail=failing, fail_in="ConsolidatingDisks")
    gw.cycle("SQL02", "vm-2", 54, 320)
    gw.heartbeats(330)
    vc = Vpxd()
    vc.task("vm-8", "vim.VirtualMachine.consolidateDisks", 305.2, 305.5, fault=("vim.fault.FileLocked", locked),
            display="Consolidate virtual machine disk files")
    docs = ("Troubleshooting: An internal error occurred. [Failed to consolidate the disks on VM <VM name>: "
            "Unable to access file VMName.vmdk since it is locked]\n")
    members = {"appliance/GatewayService.log": gw.text(), "vcenter/vpxd-1.log": vc.text(),
               "portal/events.csv": portal_csv((305.9, "ERP08", "", f"An internal error occurred. [{failing}]")),
               "ticket/kb-notes.txt": docs}
    doc = pipeline.analyze(zip_bundle(tmp_path / "quoted.zip", members)).doc

    assert triples(doc) == {("ERP08", "internal_consolidate_disks_failed", "disk_locked")}
    named = {vm["vm"] for vm in doc["vms"]} | {vm for f in doc["findings"] for vm in f["vms"]}
    assert named == {"ERP08", "SQL02"}  # neither 'ERP08' nor a placeholder is a VM


# --------------------------------------------------------------------------------------------
# 4. Snapshot removals tied through the VM's own cycle


def test_a_removal_that_timed_out_is_tied_through_its_vms_own_cycle(tmp_path):
    gw = Gateway()
    for n, start in enumerate((60, 120, 180)):
        gw.cycle("APP01", "vm-1", 17 + n, start)
        gw.cycle("WEB03", "vm-3", 70 + n, start)  # releasing its snapshot at the same moments as APP01
        gw.cycle("SQL02", "vm-2", 40 + n, start + 30)
    gw.cycle("APP01", "vm-1", 20, 240, release=False)  # the gateway shows only ReleasingSnapshot
    gw.cycle("SQL02", "vm-2", 43, 236)  # its own 'Removing snapshot' line comes 4 minutes before
    gw.cycle("APP01", "vm-1", 21, 300, fail=ANOTHER_TASK)
    gw.cycle("SQL02", "vm-2", 44, 300)
    gw.cycle("WEB03", "vm-3", 73, 290)
    gw.heartbeats(320)
    vc = Vpxd()
    timed_out = vc.task("snapshot-77", "vim.vm.Snapshot.remove", 244.7, 280, display="Remove snapshot",
                        fault=("vim.fault.Timedout", "Operation timed out."))
    retried = vc.task("snapshot-77", "vim.vm.Snapshot.remove", 300.05, 300.3, display="Remove snapshot")
    vc.task("vm-1", "vim.VirtualMachine.createSnapshot", 300.1, 300.4,
            fault=("vim.fault.TaskInProgress", "Another task is already in progress."))
    both = vc.task("snapshot-90", "vim.vm.Snapshot.remove", 184.6, 184.9, display="Remove snapshot")
    members = {"appliance/GatewayService.log": gw.text(), "vcenter/vpxd-1.log": vc.text(),
               "portal/events.csv": portal_csv((300.8, "APP01", "", ANOTHER_TASK))}
    doc = pipeline.analyze(zip_bundle(tmp_path / "removal.zip", members)).doc

    assert triples(doc) == {("APP01", "internal_another_task_in_progress", "vcenter_task_timeout")}
    tasks = {vm["vm"]: {t["task_id"] for t in vm["tasks"]} for vm in doc["vms"]}
    assert {timed_out, retried} <= tasks["APP01"]  # the retry follows its snapshot's MoRef
    assert both not in tasks["APP01"] | tasks["WEB03"]  # APP01 and WEB03 released theirs then: neither's


def test_a_removal_is_the_vm_whose_release_it_follows_not_one_still_releasing(tmp_path):
    """In a busy appliance another VM is often still in ReleasingSnapshot when a removal starts; the
    removal belongs to the VM whose release came just before it (or, with the skew's slack, just after)."""
    gw = Gateway()
    gw.cycle("APP01", "vm-1", 17, 60)  # ReleasingSnapshot at 64.5 until 65.0
    gw.cycle("WEB03", "vm-3", 70, 60.25)  # ReleasingSnapshot at 64.75, inside APP01's
    gw.cycle("SQL02", "vm-2", 40, 90)  # releases at 94.5 ...
    gw.cycle("FS04", "vm-4", 9, 90.008)  # ... and FS04 half a second later
    gw.heartbeats(100)
    vc = Vpxd()
    app01 = vc.task("snapshot-11", "vim.vm.Snapshot.remove", 64.505, 64.6, display="Remove snapshot")
    web03 = vc.task("snapshot-12", "vim.vm.Snapshot.remove", 64.748, 64.85, display="Remove snapshot")
    between = vc.task("snapshot-13", "vim.vm.Snapshot.remove", 94.5125, 94.6, display="Remove snapshot")
    analysis = pipeline.analyze(zip_bundle(tmp_path / "busy.zip", {"appliance/GatewayService.log": gw.text(),
                                                                    "vcenter/vpxd-1.log": vc.text()}))
    doc = analysis.doc

    tasks = tasks_by_vm(analysis, doc)
    assert app01 in tasks["APP01"] and web03 in tasks["WEB03"]  # main: both APP01's
    assert web03 not in tasks["APP01"]
    assert between not in set().union(*tasks.values())  # two releases under a second apart: neither's


def test_a_backup_products_removal_beside_a_failed_cycle_is_not_that_vms(tmp_path):
    """A cycle failing in CreatingSnapshot took no snapshot, so removes none; a removal by another user
    (a backup product) just before it names only `snapshot-<n>`: whose it is cannot be told, and it is
    no conflict on the VM."""
    gw = Gateway()
    for n, start in enumerate((60, 120, 180)):
        gw.cycle("APP01", "vm-1", 17 + n, start)
    gw.cycle("APP01", "vm-1", 20, 240, fail=ANOTHER_TASK)  # Failed at 240.6
    gw.heartbeats(260)
    vc = Vpxd()
    vc.task("vm-1", "vim.VirtualMachine.removeAllSnapshots", 200, 230, fault=("vim.fault.Timedout", "Operation timed out."),
            display="Remove all snapshots")
    backup = vc.task("snapshot-146", "vim.vm.Snapshot.remove", 240.0, 240.95, user=BACKUP, display="Remove snapshot")
    vc.task("vm-1", "vim.VirtualMachine.createSnapshot", 240.1, 240.4,
            fault=("vim.fault.TaskInProgress", "Another task is already in progress."))
    members = {"appliance/GatewayService.log": gw.text(), "vcenter/vpxd-1.log": vc.text(),
               "portal/events.csv": portal_csv((240.8, "APP01", "", ANOTHER_TASK))}
    analysis = pipeline.analyze(zip_bundle(tmp_path / "backup.zip", members))
    doc = analysis.doc

    assert triples(doc) == {("APP01", "internal_another_task_in_progress", "vcenter_task_timeout")}  # before: conflicting
    tasks = tasks_by_vm(analysis, doc)
    assert backup not in tasks["APP01"]


def tasks_by_vm(analysis, doc) -> dict[str, set[str]]:
    """Every VM's task ids, from the task table (the JSON lists only those around failures)."""
    out = {vm["vm"]: set() for vm in doc["vms"]}
    for vm, task_id in analysis.tasks.select("vm", "task_id").iter_rows():
        out.setdefault(vm, set()).add(task_id)
    return out


# --------------------------------------------------------------------------------------------
# 2. Zones from a bundle.toml that comes after the logs


def test_a_tgz_gives_the_same_analysis_whether_bundle_toml_comes_first_or_last(tmp_path):
    """A gateway log in naive local time (+09:00, said by bundle.toml) in a tgz: `tar czf` of a folder
    puts the members in any order."""
    from analyzer.sample.assemble import write_bundle
    from analyzer.sample.scenarios import build

    docs = []
    for last in (False, True):
        built = build("format-tgz-late-toml", 2, 6, 2)
        built.layout.toml_last = last
        path = write_bundle("case", built, tmp_path / ("last" if last else "first"), seed=2)
        names = tarfile.open(path).getnames()
        assert (names[-1] == "bundle.toml") == last and (names[0] == "bundle.toml") == (not last)
        doc = pipeline.analyze(path).doc
        for key in ("analyzed_at", "sha256"):
            doc["bundle"].pop(key)
        docs.append(doc)
    first, last = docs
    assert json.dumps(last, sort_keys=True) == json.dumps(first, sort_keys=True)
    assert first["bundle"]["appliance_tz"] == "+09:00" and first["bundle"]["complete"]
    expected = json.loads((tmp_path / "first" / "case.expected.json").read_text())["verdicts"]
    assert triples(first) == {(v["vm"], v["error"], v["cause"]) for v in expected}


# --------------------------------------------------------------------------------------------
# 8. Confidence from the evidence


def test_a_relocate_a_day_before_with_good_cycles_since_is_circumstantial_one_just_before_is_direct(tmp_path):
    lost = "No disksnapshots were found for the snapshot replication with snapshot ID: '7d1c0e4a-1b2c-4d5e-8f90-123456789abc'"
    gw = Gateway()
    for n in range(24):
        gw.cycle("APP01", "vm-1", 100 + n, 60 + 60 * n)
        if n < 23:
            gw.cycle("WEB03", "vm-3", 200 + n, 70 + 60 * n)
    gw.cycle("APP01", "vm-1", 124, 1500, fail=lost)
    gw.cycle("WEB03", "vm-3", 223, 1450, fail=lost)
    gw.heartbeats(1510)
    vc = Vpxd()
    vc.task("vm-1", "vim.VirtualMachine.relocate", 200, 215, user="CONTOSO\\j.kim", display="Relocate virtual machine")
    vc.task("vm-3", "vim.VirtualMachine.relocate", 1420, 1432, user="CONTOSO\\j.kim", display="Relocate virtual machine")
    members = {"appliance/GatewayService.log": gw.text(), "vcenter/vpxd-1.log": vc.text()}
    doc = pipeline.analyze(zip_bundle(tmp_path / "relocates.zip", members)).doc

    got = {v["vm"]: (v["cause"], v["confidence"]) for v in doc["verdicts"]}
    assert got == {"APP01": ("disk_path_changed_by_storage_vmotion", "medium"),  # 21 good cycles since
                   "WEB03": ("disk_path_changed_by_storage_vmotion", "high")}  # nothing ran since


# --------------------------------------------------------------------------------------------
# 5. Saturation: queued cycles over the window


def test_queued_cycles_over_a_slow_cycle_are_overload_whatever_the_most_cycles_ever_active(tmp_path):
    gw = Gateway()
    for n in range(6):
        gw.cycle("APP01", "vm-1", 30 + n, 60 + 60 * n)
    gw.cycle("APP01", "vm-1", 36, 420, minutes=60, rate=2.0)  # ten times longer, a twentieth of the rate
    peak = lambda m: 10 if m < 150 else 3  # noqa: E731 - ten 1-disk initial copies early on, no queue
    gw.heartbeats(490, queued=lambda m: 4 if 400 <= m <= 485 else 0, active=peak)
    status = ("Resource                                                         Capacity  Utilization for server migrations  Total utilization  Status\n"
              "--------                                                         --------  ---------------------------------  -----------------  ------\n"
              "Appliance CPU Sum : Primary and scale out appliances             4 Cores   -                                  99%                At capacity\n")
    note = "Suggestions:\n1. CPU is At capacity. Pause or stop other migrations under this appliance.\n"
    members = {"appliance/GatewayService.log": gw.text(), "portal/migration-status.txt": status,
               "ticket/notes.txt": note}
    doc = pipeline.analyze(zip_bundle(tmp_path / "wave.zip", members)).doc

    [verdict] = doc["verdicts"]  # a low rate alone would say throttled: the queue is evidence of its own
    assert (verdict["vm"], verdict["error"], verdict["cause"]) == ("APP01", "slow_replication", "appliance_overloaded")
    assert any("queued" in (e.get("note") or "") for e in verdict["evidence"])
    # evidence with no time (the status command's suggestion, pasted) is read and breaks no window
    [capacity] = [f for f in doc["findings"] if f["signature"] == "appliance_at_capacity"]
    assert capacity["first_seen"] is None


# --------------------------------------------------------------------------------------------
# 7. Key Vault severity


KV_TEXT = ("Key Vault operation failed. Operation: Generate shared access signature definition, Key Vault: migratekv01, "
           "Storage Account: migratelsa01 failed with the error: The user or application does not have the storage "
           "permission 'setsas' on the key vault.")


def key_vault_events(recovered: bool) -> str:
    head = "Time,Severity,Event,Machine,Event type,Error ID,Error message,Possible causes,Recommendation,Event code,Initiated by\n"
    rows = [(60, "Information", "Replication enabled", "APP01", "", "Replication was enabled for virtual machine APP01.",
             "EnableReplication", "alice@contoso.com"),
            (300, "Critical", "Enable replication failed", "", "", KV_TEXT, "KeyVaultOperationFailed", "bob@contoso.com"),
            (307, "Critical", "Enable replication failed", "", "", KV_TEXT, "KeyVaultOperationFailed", "bob@contoso.com")]
    if recovered:  # the vault's access policy fixed, bob's next try goes through
        rows.append((360, "Information", "Replication enabled", "SQL02", "",
                     "Replication was enabled for virtual machine SQL02.", "EnableReplication", "bob@contoso.com"))
    return head + "".join(f'{stamp(m)},{sev},{event},{vm},Enable replication,{code},"{msg}",,,{ecode},{user}\n'
                          for m, sev, event, vm, code, msg, ecode, user in rows)


@pytest.mark.parametrize("recovered, severity", [(False, "critical"), (True, "warning")])
def test_a_key_vault_failure_is_critical_only_while_enabling_still_fails(tmp_path, recovered, severity):
    gw = Gateway()
    for n in range(7):
        gw.cycle("APP01", "vm-1", 1 + n, 65 + 60 * n)
    gw.heartbeats(480)
    members = {"appliance/GatewayService.log": gw.text(), "portal/events.csv": key_vault_events(recovered)}
    doc = pipeline.analyze(zip_bundle(tmp_path / "kv.zip", members)).doc
    [verdict] = doc["verdicts"]
    assert (verdict["vm"], verdict["error"], verdict["cause"]) == (None, "key_vault_operation_failed",
                                                                   "access_policy_missing_for_user")
    assert verdict["severity"] == severity


# --------------------------------------------------------------------------------------------
# 6. The portal's own health, and its LastSync


def status_csv(*rows: tuple[str, str, float]) -> str:
    """Get-AzMigrateServerMigrationStatus as CSV: (server, health, last sync minute)."""
    head = "Appliance,Server,State,Progress,TimeElapsed,TimeRemaining,UploadSpeed,Health,LastSync,Datastore\n"
    return head + "".join(f'AZMIG-APP01,{vm},Delta sync,100%,,,40 MBps,{health},"{at(m).strftime("%-m/%-d/%Y, %-I:%M:%S %p")}",ds01\n'
                          for vm, health, m in rows)


def test_the_portals_health_is_the_vms_health_and_the_cycles_say_when_they_disagree(tmp_path):
    """A generated bundle with the status table: VMs whose cycles failed during the outage and then
    recovered are Warning in the portal (it keeps the warning), healthy by their cycles."""
    from analyzer.sample import write_bundles

    [path] = write_bundles(["outage-gateway-service"], tmp_path, seed=1)
    doc = pipeline.analyze(path).doc
    rows = zipfile.ZipFile(path).read("portal/replication-status.csv").decode("utf-8-sig").splitlines()[1:]
    portal = {r.split(",")[1]: {"Normal": "healthy", "Warning": "warning", "Critical": "critical"}[r.split(",")[7]]
              for r in rows}
    assert {vm["vm"]: vm["health"] for vm in doc["vms"]} == portal
    assert all(vm["health_basis"] == "portal" for vm in doc["vms"])
    disagree = [vm for vm in doc["vms"] if "derived_health" in vm]
    assert disagree and all(vm["derived_health"] != vm["health"] for vm in disagree)


def test_a_vm_the_portal_saw_sync_after_the_gateway_log_ends_is_not_stalled(tmp_path):
    """The gateway log was collected four hours before vCenter's and the portal's status: APP01 synced
    since (LastSync), SQL02 did not (and the portal says Critical)."""
    gw = Gateway()
    for n in range(4):
        gw.cycle("APP01", "vm-1", 10 + n, 5 + 60 * n)
        gw.cycle("SQL02", "vm-2", 20 + n, 25 + 60 * n)
    gw.heartbeats(240)
    vc = Vpxd()
    for n in range(48):  # vCenter goes on logging until minute 480
        vc.task("vm-900", "vim.VirtualMachine.reconfigure", 10 * n, 10 * n + 0.1, user="CONTOSO\\j.kim",
                display="Reconfigure virtual machine")
    members = {"appliance/GatewayService.log": gw.text(), "vcenter/vpxd-1.log": vc.text(),
               "portal/replication-status.csv": status_csv(("APP01", "Normal", 470), ("SQL02", "Critical", 191))}
    doc = pipeline.analyze(zip_bundle(tmp_path / "late-status.zip", members)).doc
    stalled = {v["vm"] for v in doc["verdicts"] if v["error"] == "replication_stalled"}
    assert stalled == {"SQL02"}
    assert {vm["vm"]: vm["health"] for vm in doc["vms"]} == {"APP01": "healthy", "SQL02": "critical"}


# --------------------------------------------------------------------------------------------
# 9. vpxd as vCenter writes it: TaskEvents in the syslog form or none, progress without a value


def real_vpxd_bundle(tmp_path: Path, name: str, failing: str, tasks) -> dict:
    gw = Gateway()
    for n in range(5):
        gw.cycle("APP01", "vm-1", 40 + n, 5 + 60 * n)
    gw.cycle("APP01", "vm-1", 45, 305, fail=failing, fail_after=40)
    gw.heartbeats(350)
    vc = Vpxd()
    tasks(vc)
    vc.lines = [(m, line) for m, line in vc.lines if "TaskEvent" not in line]  # vpxd.log at info: no events
    members = {"appliance/GatewayService.log": gw.text(), "vcenter/vpxd-1.log": vc.text()}
    return pipeline.analyze(zip_bundle(tmp_path / name, members)).doc


def test_without_initiators_the_other_snapshot_task_is_still_the_conflict(tmp_path):
    def tasks(vc):
        vc.task("vm-1", "vim.VirtualMachine.createSnapshot", 303.6, 315, user=BACKUP)  # no event names the user
        vc.task("vm-1", "vim.VirtualMachine.createSnapshot", 305.1, 305.3,
                fault=("vim.fault.TaskInProgress", "Another task is already in progress."))
    doc = real_vpxd_bundle(tmp_path, "no-events.zip", ANOTHER_TASK.split("[")[1].rstrip("]"), tasks)
    [verdict] = doc["verdicts"]
    assert (verdict["error"], verdict["cause"]) == ("internal_another_task_in_progress", "conflicting_vcenter_task")
    assert any("unknown" in e["text"] for e in verdict["evidence"] if e["evidence"] == "detect.overlapping_task")


def test_progress_logged_without_its_value_stops_moving_or_cannot_tell(tmp_path):
    hung = "Generate Snapshot Hung"

    def moving_then_still(vc):  # real PropertyProvider lines: the task's id, no percentage
        vc.task("vm-1", "vim.VirtualMachine.createSnapshot", 305.1, 345, progress=[
            (305.2 + k, ". Applied change to temp map.") for k in range(3)],
            fault=("vim.fault.Timedout", "Operation timed out."))

    doc = real_vpxd_bundle(tmp_path, "still.zip", hung, moving_then_still)
    [verdict] = doc["verdicts"]
    assert (verdict["cause"], verdict["confidence"]) == ("snapshot_creation_stuck", "medium")  # stopped, at what %?
    assert any("stopped moving" in (e.get("note") or "") for e in verdict["evidence"])

    def silent(vc):  # no progress line at all: whether it sat at 95 % cannot be told
        vc.task("vm-1", "vim.VirtualMachine.createSnapshot", 305.1, 345,
                fault=("vim.fault.Timedout", "Operation timed out."))

    doc = real_vpxd_bundle(tmp_path, "silent.zip", hung, silent)
    [verdict] = doc["verdicts"]
    assert (verdict["cause"], verdict["confidence"]) == ("snapshot_creation_stuck", "low")  # the only cause, no evidence
    [said] = [d for d in doc["diagnostics"] if d["code"] == "evidence-undecided"]
    assert "cannot be told" in said["message"]
