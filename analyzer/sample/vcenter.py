"""vpxd.log records (FORMATS.md section 3a), rendered from planned cycles plus vCenter background.

A record is `(ms, level, sub, opid, message, detail, task_key, snap_key, flags)` on the appliance
clock; the writer adds the vCenter clock skew, picks the header layout, and fills placeholders
whose values depend on global order: `{task}` (task-<n>, numbered as BEGIN lines appear),
`{snap}` (snapshot-<n>), `{ev}` (event key) and `{created}` (the event's own timestamp):

    2024-05-13T10:01:05.456Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxLro opID=5b1c2d3e] [VpxLRO] -- BEGIN task-88231 -- vm-1042 -- vim.VirtualMachine.createSnapshot -- 52b1c2d3-...(52a9...)
    2024-05-13T10:01:05.459Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxdEvent opID=5b1c2d3e] Event [4517711] [1-1] [2024-05-13T10:01:05.459123Z] [vim.event.TaskEvent] [info] [CONTOSO\\svc-azmigrate] [DC01] [4517711] [Task: Create virtual machine snapshot]
    2024-05-13T10:01:12.002Z verbose vpxd[7FE11CC03700] [Originator@6876 sub=PropertyProvider opID=5b1c2d3e] RecordOp ASSIGN: info.progress, task-88231 = 40
    2024-05-13T10:01:31.870Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxLro opID=5b1c2d3e] [VpxLRO] -- FINISH task-88231
"""

from __future__ import annotations

import hashlib
import random
from typing import Iterator

from analyzer.sample import catalogue as cat
from analyzer.sample.clock import MINUTE, SECOND
from analyzer.sample.world import Cycle, World

TASK, SNAP, EV, CREATED, END = 1, 2, 4, 8, 16

BACKUP_USER = "CONTOSO\\svc-veeam"
ADMIN_USER = "CONTOSO\\j.kim"
VC_ADMIN = "VSPHERE.LOCAL\\Administrator"

DISPLAY = {
    "vim.VirtualMachine.createSnapshot": "Create virtual machine snapshot",
    "vim.vm.Snapshot.remove": "Remove snapshot",
    "vim.VirtualMachine.removeAllSnapshots": "Remove all snapshots",
    "vim.VirtualMachine.consolidateDisks": "Consolidate virtual machine disk files",
    "vim.VirtualMachine.reconfigure": "Reconfigure virtual machine",
    "vim.VirtualMachine.relocate": "Relocate virtual machine",
    "vim.VirtualMachine.powerOn": "Power On virtual machine",
    "vim.VirtualMachine.powerOff": "Power Off virtual machine",
}

# error id -> (task that fails, fault type, fault msg); msg may use {file} {reason}
VCENTER_FAULTS: dict[str, tuple[str, str, str]] = {
    "internal_invalid_snapshot_configuration": ("create", "vim.fault.InvalidSnapshotFormat",
                                                "An invalid snapshot configuration was detected."),
    "internal_another_task_in_progress": ("create", "vim.fault.TaskInProgress", "Another task is already in progress."),
    "internal_operation_not_allowed": ("create", "vim.fault.InvalidState",
                                       "The operation is not allowed in the current state."),
    "internal_file_larger_than_max": ("create", "vim.fault.FileTooLarge",
                                      "The file {file} is larger than the maximum size supported by datastore '{ds}'."),
    "invalid_change_tracker": ("create", "vim.fault.GenericVmConfigFault",
                               "An error occurred while saving the snapshot: Invalid change tracker error code"),
    "unable_to_open_snapshot_file": ("create", "vim.fault.GenericVmConfigFault",
                                     "An error occurred while taking a snapshot: Unable to open the snapshot file."),
    "vmware_generic_failure": ("create", "vmodl.fault.SystemError", "{reason}"),
}


def task_lines(ms: int, key: tuple, entity: str, method: str, user: str, opid: str, *, progress=(),
               end: int | None, fault: tuple[str, str, tuple[str, ...]] | None = None,
               snap_key: tuple | None = None, event: bool = True) -> list[tuple]:
    """BEGIN (+ TaskEvent naming the user) + progress + FINISH/ERROR of one vCenter task.

    `progress`: [(ms, percent)]; `end=None`: the task never ends; `fault`: (type, msg, extra detail lines).
    """
    flags = TASK | (SNAP if snap_key else 0)
    out = [(ms, "info", "vpxLro", opid, f"[VpxLRO] -- BEGIN {{task}} -- {entity} -- {method} -- {session_of(user)}",
            None, key, snap_key, flags)]
    if event:
        out.append((ms + 3, "info", "vpxdEvent", opid,
                    f"Event [{{ev}}] [1-1] [{{created}}] [vim.event.TaskEvent] [info] [{user}] [DC01] [{{ev}}] "
                    f"[Task: {DISPLAY.get(method, method)}]", None, None, None, EV | CREATED))
    for t, pct in progress:
        out.append((t, "verbose", "PropertyProvider", opid, f"RecordOp ASSIGN: info.progress, {{task}} = {pct}",
                    None, key, None, TASK))
    if end is not None:
        if fault is None:
            out.append((end, "info", "vpxLro", opid, "[VpxLRO] -- FINISH {task}", None, key, None, TASK | END))
        else:
            ftype, msg, extra = fault
            detail = ("Result:", f"({ftype}) {{", "   faultCause = (vmodl.MethodFault) null,",
                      "   faultMessage = <unset>,") + extra + (f'   msg = "{msg}"', "}", "Args:")
            out.append((end, "info", "vpxLro", opid, f"[VpxLRO] -- ERROR {{task}} -- {entity} -- {method}: {ftype}:",
                        detail, key, None, TASK | END))
    return out


def _uuid(text: str) -> str:
    h = hashlib.md5(text.encode()).hexdigest()
    return f"52{h[2:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def session_of(user: str) -> str:
    """A user's vCenter session, `<session>(<parent>)` as BEGIN lines end: stable per user."""
    return f"{_uuid(user)}({_uuid(user + '/parent')})"


def event_line(ms: int, etype: str, message: str, opid: str = "", *, severity: str = "info",
               user: str = "", syslog: bool = False) -> tuple:
    if syslog:
        text = (f"Event [{{ev}}] [1-1] [{{created}}] [{etype}] [{severity}] [{user}] [DC01] [{{ev}}] [{message}]")
        return (ms, "info", "vpxdEvent", opid, text, None, None, None, EV | CREATED)
    return (ms, "info", "vpxdEvent", opid, f"Event {{ev}} : {etype} : {message}", None, None, None, EV)


def opid(rng: random.Random) -> str:
    return f"{rng.getrandbits(32):08x}"


def _ramp(a: int, b: int, rng: random.Random, stops=(12, 45, 80)) -> list[tuple[int, int]]:
    return [(a + (b - a) * (i + 1) // (len(stops) + 1) + rng.randint(0, 99), p) for i, p in enumerate(stops)]


def cycle_records(world: World, cycle: Cycle) -> list[tuple]:
    """The appliance's vCenter tasks for one cycle (create, query CBT, remove, consolidate)."""
    vm = cycle.vm
    rng = world.rng(cycle.key, "vc")
    user = world.account
    out: list[tuple] = []
    key = cycle.key
    failed_here = cycle.fail_state if cycle.outcome in ("failed", "hung") and cycle.killed is None else None
    vc_fault = VCENTER_FAULTS.get(cycle.error or "")
    params = cycle.hit.params if cycle.hit else {}
    for state, a, b in cycle.phases[1:]:
        last = failed_here == state
        killed_here = cycle.killed is not None and b == cycle.killed and state == cycle.phases[-1][0]
        end = cycle.killed + rng.randint(2, 9) * SECOND if killed_here else b - rng.randint(80, 300)
        if state == cat.CREATING:
            if last and cycle.error in cat.BEFORE_VCENTER:
                continue
            op = opid(rng)
            t0 = a + rng.randint(150, 600)
            if last and cycle.outcome == "hung" or (last and cycle.error == "internal_generate_snapshot_hung"):
                out += task_lines(t0, (key, "create"), vm.moref, "vim.VirtualMachine.createSnapshot", user, op,
                                  progress=[(t0 + 4 * SECOND, 10), (t0 + 40 * SECOND, 45), (t0 + 95 * SECOND, 80),
                                            (t0 + 170 * SECOND, params.get("stuck_at", 95))], end=None)
                continue
            fault = None
            if last and vc_fault and vc_fault[0] == "create":
                fault = (vc_fault[1], _fault_msg(world, cycle, vc_fault[2]), ())
            out += task_lines(t0, (key, "create"), vm.moref, "vim.VirtualMachine.createSnapshot", user, op,
                              progress=_ramp(t0, end, rng) if end - t0 > 3 * SECOND and not fault else (),
                              end=max(end, t0 + 500), fault=fault)
        elif state == cat.QUERYING:
            t = a + rng.randint(100, 400)
            for i, disk in enumerate(vm.disks):
                op = opid(rng)
                fault = None
                if last and i == len(vm.disks) - 1 and cycle.error in ("changed_blocks_fetch_failed",
                                                                       "change_tracking_reset"):
                    fault = _cbt_fault(world, cycle)
                    if params.get("vcenter_cbt") == "file_fault":  # vCenter names only the file
                        ctk = vm.disk_path(disk, cycle.due).replace(".vmdk", "-ctk.vmdk")
                        fault = ("vim.fault.FileFault", f"Error caused by file {ctk}", ())
                dur = rng.randint(60, 900)
                out += task_lines(t, (key, "query", i), vm.moref, "vim.VirtualMachine.queryChangedDiskAreas",
                                  user, op, end=(t + dur) if not killed_here or t + dur < cycle.killed else None,
                                  fault=fault, event=False)
                t += dur + rng.randint(50, 500)
        elif state == cat.RELEASING and cycle.release_timeout:
            op = opid(rng)
            t0 = a + rng.randint(300, 900)
            # vCenter gives up on the removal long after the gateway moved on
            out += task_lines(t0, (key, "remove"), "{snap}", "vim.vm.Snapshot.remove", user, op,
                              progress=[(t0 + 20 * SECOND, 30)], end=t0 + rng.randint(30, 45) * MINUTE,
                              fault=("vim.fault.Timedout", "Operation timed out.", ()), snap_key=(key,))
        elif state == cat.RELEASING:
            op = opid(rng)
            t0 = a + rng.randint(300, 900)
            out += task_lines(t0, (key, "remove"), "{snap}", "vim.vm.Snapshot.remove", user, op,
                              progress=_ramp(t0, end, rng, (30, 70)) if end - t0 > 3 * SECOND else (),
                              end=max(end, t0 + 400), snap_key=(key,))
        elif state == cat.CONSOLIDATING:
            op = opid(rng)
            t0 = a + rng.randint(300, 900)
            fault = None
            if last and cycle.error == "internal_consolidate_disks_failed":
                if cycle.cause == "disk_locked":
                    fault = ("vim.fault.FileLocked", f"Unable to access file {_delta_file(world, cycle)} "
                                                     f"since it is locked", ())
                else:
                    fault = ("vmodl.fault.SystemError", params.get("reason", "A general system error occurred"), ())
            out += task_lines(t0, (key, "consolidate"), vm.moref, "vim.VirtualMachine.consolidateDisks", user, op,
                              end=max(end, t0 + 400), fault=fault)
            if fault:
                out.append(event_line(end + 40, "com.vmware.vc.VmDiskFailedToConsolidateEvent",
                                      f"Virtual machine {vm.name} disks consolidation failed on {vm.host.name} "
                                      f"in cluster {world.cluster} in {world.datacenter}.", op))
            elif not killed_here:
                out.append(event_line(end + 40, "com.vmware.vc.VmDiskConsolidatedEvent",
                                      f"Virtual machine {vm.name} disks consolidated successfully on "
                                      f"{vm.host.name} in cluster {world.cluster} in {world.datacenter}.", op))
    if cycle.outcome == "failed" and cycle.killed is None and cycle.snapshot_taken:
        fail_at = cycle.phases[-1][2]
        op = opid(rng)
        t0 = fail_at + 900
        out += task_lines(t0, (key, "cleanup"), "{snap}", "vim.vm.Snapshot.remove", user, op,
                          end=t0 + rng.randint(1500, 2600), snap_key=(key,))
    out.sort(key=lambda r: r[0])
    return out


def _delta_file(world: World, cycle: Cycle) -> str:
    vm = cycle.vm
    disk = vm.disks[0]
    return vm.disk_path(disk, cycle.due).replace(".vmdk", "-000001.vmdk")


def _fault_msg(world: World, cycle: Cycle, template: str) -> str:
    vm = cycle.vm
    params = cycle.hit.params if cycle.hit else {}
    return template.format(file=_delta_file(world, cycle), ds=vm.datastore_at(cycle.due),
                           reason=params.get("reason", "A general system error occurred"))


def _cbt_fault(world: World, cycle: Cycle) -> tuple[str, str, tuple[str, ...]]:
    vm = cycle.vm
    ctk = vm.disk_path(vm.disks[-1], cycle.due).replace(".vmdk", "-ctk.vmdk")
    if cycle.cause == "cbt_reset_or_corrupt":
        key = cycle.hit.params.get("cbt_key", "vim.hostd.vmsvc.cbt.cannotGetChanges") if cycle.hit else \
            "vim.hostd.vmsvc.cbt.cannotGetChanges"
        return ("vim.fault.FileFault", "Change tracking invalid or disk in use",
                ("   faultMessage = (vmodl.LocalizableMessage) [",
                 "      (vmodl.LocalizableMessage) {",
                 f'         key = "{key}",',
                 '         message = "Cannot compute changed blocks: the change tracking data of the disk is not '
                 'consistent."',
                 "      }", "   ],", f'   file = "{ctk}",'))
    # after a Storage vMotion the old change id simply no longer exists
    return ("vmodl.fault.InvalidArgument", "A specified parameter was not correct: changeId",
            ('   invalidProperty = "changeId",',))


# ---- evidence and background ------------------------------------------------------------------


def hit_evidence(world: World, cycles: list[Cycle]) -> list[tuple]:
    """vCenter-side evidence of the causes behind failed cycles: tasks by other users, events."""
    out: list[tuple] = []
    firsts: dict[tuple[int, str], Cycle] = {}
    for c in cycles:
        if c.hit and c.outcome == "failed":
            firsts.setdefault((id(c.hit), c.vm.name), c)
    for c in cycles:
        hit = c.hit
        if not hit or c.outcome != "failed":
            continue
        kind = hit.params.get("vcenter_evidence")
        rng = world.rng(c.key, "evidence")
        vm = c.vm
        create = c.phase(cat.CREATING)
        first = firsts[(id(hit), vm.name)] is c
        if kind == "backup_overlap" and create:
            op = opid(rng)
            t0 = create[0] - rng.randint(60, 170) * SECOND
            out += task_lines(t0, (c.key, "backup"), vm.moref, "vim.VirtualMachine.createSnapshot", BACKUP_USER,
                              op, progress=[(t0 + 20 * SECOND, 35), (t0 + 200 * SECOND, 70)],
                              end=create[1] + rng.randint(200, 420) * SECOND)
        elif kind == "task_timeout" and create:
            op = opid(rng)
            t0 = create[0] - rng.randint(38, 50) * MINUTE
            out += task_lines(t0, (c.key, "timeout"), vm.moref, "vim.VirtualMachine.removeAllSnapshots", VC_ADMIN,
                              op, progress=[(t0 + 30 * SECOND, 20)],
                              end=create[0] - rng.randint(6, 12) * MINUTE,
                              fault=("vim.fault.Timedout", "Operation timed out.", ()))
        elif kind == "relocate" and first:
            at, dur = hit.params["relocate_at"], hit.params["relocate_dur"]
            op = opid(rng)
            old, new = vm.datastore_at(at), vm.datastore_at(at + dur)
            out += task_lines(at, (c.key, "relocate"), vm.moref, "vim.VirtualMachine.relocate", ADMIN_USER, op,
                              progress=_ramp(at, at + dur, rng, (18, 52, 88)), end=at + dur)
            out.append(event_line(at + dur + 150, "vim.event.VmMigratedEvent",
                                  f"Migration of virtual machine {vm.name} from {vm.host.name}, {old} to "
                                  f"{vm.host.name}, {new} completed", op, user=ADMIN_USER, syslog=True))
        elif kind == "reconfigure" and first:
            at = hit.params["reconfigure_at"]
            op = opid(rng)
            out += task_lines(at, (c.key, "reconfigure"), vm.moref, "vim.VirtualMachine.reconfigure", ADMIN_USER,
                              op, end=at + rng.randint(3, 9) * SECOND)
            out.append(event_line(at + 9 * SECOND, "vim.event.VmReconfiguredEvent",
                                  f"Reconfigured {vm.name} on {vm.host.name} in {world.datacenter}. Deleted: "
                                  f"Hard disk {len(vm.disks)} ({vm.disk_path(vm.disks[-1], at)})", op,
                                  user=ADMIN_USER, syslog=True))
        elif kind == "datastore_full" and first:
            ds = vm.datastore_at(c.due)
            at = c.due - rng.randint(20, 90) * MINUTE
            out.append(event_line(at, "vim.event.AlarmStatusChangedEvent",
                                  f"Alarm 'Datastore usage on disk' on {ds} changed from Yellow to Red",
                                  severity="warning", syslog=True))
    for hit in world.hits:
        if hit.params.get("vcenter_evidence") == "host_down":
            host = next(h for h in world.hosts if h.name == hit.params["host"])
            rng = world.rng(host.name, "host-down")
            t = hit.start - rng.randint(2, 8) * MINUTE
            out.append((t, "warning", "vpxdHostCnx", f"HB-{host.moref}@{rng.randint(100, 999)}-{opid(rng)}",
                        f"[VpxdHostCnx] Host {host.name} ({host.moref}) is not responding: no heartbeat for 62 "
                        f"seconds", None, None, None, 0))
            out.append(event_line(t + 2 * SECOND, "vim.event.HostConnectionLostEvent",
                                  f"Host {host.name} in {world.datacenter} is not responding", severity="error",
                                  syslog=True))
            if hit.end < world.end:
                out.append(event_line(hit.end + rng.randint(1, 4) * MINUTE, "vim.event.HostReconnectedEvent",
                                      f"Reconnected to {host.name} in {world.datacenter}"))
    return out


def extra_tasks(world: World, specs: list[tuple]) -> list[tuple]:
    """Scenario extras: (ms, vm_moref, method, user, duration, fault|None) tasks (herrings, noise on others)."""
    out = []
    for n, (ms, moref, method, user, dur, fault) in enumerate(specs):
        rng = world.rng("extra-task", n)
        out += task_lines(ms, ("extra", n), moref, method, user, opid(rng), end=ms + dur, fault=fault)
    return out


def other_vm_tasks(world: World, vcenter: str | None = None) -> list[tuple]:
    """Everyday tasks on VMs nobody replicates (backups, reconfigures, power-ons): noise, never evidence."""
    rng = world.rng("vc-other-tasks", vcenter) if vcenter else world.rng("vc-other-tasks")
    out: list[tuple] = []
    t = world.start + rng.randint(10, 90) * MINUTE
    n = 0
    while t < world.end:
        n += 1
        name, moref = world.others[rng.randrange(len(world.others))]
        method = rng.choice(("vim.VirtualMachine.createSnapshot", "vim.VirtualMachine.reconfigure",
                             "vim.VirtualMachine.powerOn", "vim.vm.Snapshot.remove"))
        user = BACKUP_USER if "napshot" in method else ADMIN_USER
        entity = f"snapshot-{rng.randint(100, 900)}" if method == "vim.vm.Snapshot.remove" else moref
        out += task_lines(t, ("other", n), entity, method, user, opid(rng), end=t + rng.randint(2, 90) * SECOND)
        t += rng.randint(40, 180) * MINUTE
    return out


def noise(world: World, vcenter: str | None = None) -> Iterator[tuple]:
    """vCenter background: session checks, property updates, logins, cluster chatter."""
    rng = world.rng("vc-noise", vcenter) if vcenter else world.rng("vc-noise")
    t = world.start - 30 * MINUTE + rng.randint(0, 30) * SECOND
    end = world.end + 5 * MINUTE
    n = 0
    while t < end:
        n += 1
        kind = n % 10
        op = opid(rng)
        if kind in (0, 5):
            yield (t, "info", "vpxLro", op,
                   f"[VpxLRO] -- BEGIN {{task}} -- SessionManager -- vim.SessionManager.sessionIsActive -- "
                   f"{session_of(op)}", None, ("lro", "noise", n), None, TASK)
            yield (t + rng.randint(0, 3), "info", "vpxLro", op, "[VpxLRO] -- FINISH {task}", None,
                   ("lro", "noise", n), None, TASK | END)
        elif kind in (1, 6):
            host = world.hosts[rng.randrange(len(world.hosts))]
            yield (t, "verbose", "PropertyProvider", f"ProcessAlarmFiring-{op}",
                   f'RecordOp ASSIGN: declaredAlarmState["alarm-{rng.randint(1, 90)}.{host.moref}"], {host.moref}. '
                   f"Applied change to temp map.", None, None, None, 0)
        elif kind == 2:
            host = world.hosts[rng.randrange(len(world.hosts))]
            yield (t, "info", "MoCluster", f"HB-{host.moref}@{rng.randint(1000, 9999)}-{op}",
                   f"Host [vim.HostSystem:{host.moref},{host.name}] has 1 HDCS resources", None, None, None, 0)
        elif kind == 3:
            user = rng.choice((VC_ADMIN, ADMIN_USER, BACKUP_USER, world.account, "CONTOSO\\s.müller"))
            yield event_line(t, "vim.event.UserLoginSessionEvent",
                             f"User {user}@10.0.{rng.randint(1, 9)}.{rng.randint(10, 250)} logged in as "
                             f"VMware vim-java 1.0", op, user=user, syslog=True)
        else:
            yield (t, "verbose", "Default", op,
                   f"[VpxVmomi] Invoke done: vmodl.query.PropertyCollector.waitForUpdatesEx session: "
                   f"52{op[:6]}-{op[2:6]}-{op[4:8]}-{op[1:5]}-{op}{op[:4]}", None, None, None, 0)
        t += rng.randint(15, 75) * SECOND + rng.randint(0, 999)
