"""ESXi and VDDK logs (FORMATS.md sections 3c and 6), rendered from planned cycles: a VM's
`vmware.log`, a host's `hostd.log` and the appliance's VDDK client log.

Each log holds the everyday lines of the cycles it sees (snapshots taken and consolidated, tasks,
disks opened over NFC) and, around a failed cycle whose cause leaves a VMware-side trace, the
lines an engineer reads that cause from: a locked delta disk, a datastore out of space, NFC
connections to port 902 that time out, NFC buffers that cannot be allocated, change tracking
that cannot be read. A record is `(ms, level, message)` (hostd: `(ms, level, sub, opid, message)`)
on the appliance clock; the ESXi logs are written on vCenter's clock (the hosts keep its time).

    2024-05-14T10:01:05.123Z| vmx| I125: SnapshotVMX_TakeSnapshot start: 'AzureMigrate-17', ...   (ESXi 7)
    2024-05-14T10:01:05.123Z In(05) vmx - SnapshotVMX_TakeSnapshot start: 'AzureMigrate-17', ...  (ESXi 8)
    2024-05-14T10:01:05.123Z info hostd[2099834] [Originator@6876 sub=Vimsvc.TaskManager opID=...] Task Created : ...
    2024-05-14T10:01:05.123Z In(166) Hostd[2099834]: [Originator@6876 sub=Vimsvc.TaskManager opID=...] Task Created : ...
    2024-05-14T10:01:05.123Z| host-27| I125: VixDiskLib: VixDiskLib_OpenEx: Open a disk.
"""

from __future__ import annotations

from analyzer.sample import catalogue as cat
from analyzer.sample import clock
from analyzer.sample.clock import MINUTE, SECOND
from analyzer.sample.world import NEVER, VM, Cycle, Host, World

# the causes whose VMware-side lines these logs carry, and in which log
VMWARE_LOG_CAUSES = ("disk_locked", "datastore_out_of_space", "cbt_reset_or_corrupt")
HOSTD_CAUSES = ("disk_locked", "datastore_out_of_space", "cbt_reset_or_corrupt", "nfc_buffer_exhausted")
VDDK_CAUSES = ("port_902_blocked", "nfc_buffer_exhausted")

ESX_BUILD = {7: ("7.0.3", "21424296"), 8: ("8.0.2", "22380479")}
NOISE_EVERY = 37 * MINUTE  # a background line this often in every log


def failed_cycles(cycles: list[Cycle], causes: tuple[str, ...]) -> list[Cycle]:
    """Failed cycles (not cut by an outage) whose cause leaves lines in one of these logs."""
    return [c for c in cycles if c.outcome == "failed" and c.killed is None and c.cause in causes]


def _fail_at(c: Cycle) -> int:
    return c.phases[-1][2]


def _inside(world: World, records: list[tuple]) -> list[tuple]:
    records = [r for r in records if world.start <= r[0] < world.end]
    records.sort(key=lambda r: r[0])
    return records


def _vmx_path(vm: VM, ms: int, name: str) -> str:
    return f"/vmfs/volumes/{vm.datastore_at(ms)}/{vm.name}/{name}"


# ---- vmware.log --------------------------------------------------------------------------------------


def vmware_records(world: World, vm: VM, cycles: list[Cycle]) -> list[tuple]:
    """A VM's vmware.log: its header, its snapshots, its share of background, its failures."""
    rng = world.rng(vm.name, "vmware.log")
    version, build = ESX_BUILD[7]
    out = [(world.start, "I", f"Log for VMware ESX pid={rng.randint(2000000, 2900000)} version={version} "
                              f"build=build-{build} option=Release"),
           (world.start + 2, "I", f"Hostname={vm.host.name}"),
           (world.start + 4, "I", f'DICT                displayName = "{vm.name}"'),
           (world.start + 6, "I", f'DICT                 scsi0:0.fileName = "{vm.name}.vmdk"')]
    t = world.start + rng.randint(1, 9) * MINUTE
    n = 0
    while t < world.end:
        n += 1
        out.append((t, "I", f"GuestRpc: Got RPCI vsocket connection {n % 40 + 10}, assigned to app: toolbox."
                   if n % 2 else "Tools: Tools heartbeat received, guest running."))
        t += NOISE_EVERY + rng.randint(0, 9) * MINUTE
    for c in cycles:
        if c.vm is not vm:
            continue
        create, consolidate = c.phase(cat.CREATING), c.phase(cat.CONSOLIDATING)
        label = f"AzureMigrate-{c.cid}"
        if create and create[1] < NEVER:
            out.append((create[0] + 400, "I", f"SnapshotVMX_TakeSnapshot start: '{label}', deviceState=0, lazy=0, "
                                              "quiesced=0, quiesceMode=0, snapshotMemory=0"))
            if c.fail_state != cat.CREATING:
                out.append((create[0] + 1900, "I", f"DISKLIB-CBT   : Initializing ESX kernel change tracking for "
                                                   f"fid {rng.randint(10**7, 10**8 - 1)}."))
                out.append((create[1] - 300, "I", f"SnapshotVMXTakeSnapshotComplete: Done with snapshot '{label}': "
                                                  f"{c.cid % 7 + 1}"))
        if consolidate and consolidate[1] < NEVER and c.fail_state != cat.CONSOLIDATING:
            out.append((consolidate[0] + 500, "I", "SnapshotVMX_Consolidate: Starting online snapshot consolidate "
                                                   "operation."))
            out.append((consolidate[1] - 400, "I", "SnapshotVMX_Consolidate: Snapshot consolidate complete: The "
                                                   "operation completed successfully (0)."))
    for c in failed_cycles(cycles, VMWARE_LOG_CAUSES):
        if c.vm is vm:
            out += _vmware_evidence(c)
    return _inside(world, out)


def _vmware_evidence(c: Cycle) -> list[tuple]:
    vm, at = c.vm, _fail_at(c)
    if c.cause == "disk_locked":
        delta = _vmx_path(vm, at, f"{vm.name}-000001")
        return [(at - 25 * SECOND, "I", "SnapshotVMX_Consolidate: Starting online snapshot consolidate operation."),
                (at - 22 * SECOND, "W", f'DISKLIB-VMFS  : "{delta}-delta.vmdk" : failed to open (Failed to lock the '
                                        "file): ObjLib_Open failed. Type 3"),
                (at - 22 * SECOND + 3, "W", f'DISKLIB-LINK  : "{delta}.vmdk" : failed to open (Failed to lock the '
                                            "file)."),
                (at - 21 * SECOND, "W", "SnapshotVMX_Consolidate: Snapshot consolidate failed: Failed to lock the "
                                        "file (16392).")]
    if c.cause == "datastore_out_of_space":
        disk = f"{vm.name}-00000{c.cid % 3 + 2}.vmdk"
        return [(at - 31 * SECOND, "I", "Msg_Question:"),
                (at - 31 * SECOND + 2, "W", f"[msg.hbacommon.outofspace] There is no more space for virtual disk "
                                            f"'{disk}'. You might be able to continue this session by freeing disk "
                                            "space on the relevant volume, and clicking _Retry. Click Cancel to "
                                            "terminate this session."),
                (at - 20 * SECOND, "I", "Msg_Question: msg.hbacommon.outofspace reply=1"),
                (at - 19 * SECOND, "I", f"SnapshotVMXTakeSnapshotComplete: Done with snapshot 'AzureMigrate-{c.cid}': "
                                        "0")]
    ctk = _vmx_path(vm, at, f"{vm.disks[-1].file.split('/')[-1][:-5]}-ctk.vmdk")
    return [(at - 41 * SECOND, "W", f'DISKLIB-CTK   : Could not open change tracking file "{ctk}": Change tracking '
                                    "invalid or disk in use."),
            (at - 40 * SECOND, "W", "DISKLIB-CBT   : ChangeTracker_GetChanges: the change tracking data of the disk "
                                    "no longer matches its epoch.")]


def vmware_line(version: int):
    """(ms, level letter, message) -> a vmware.log line of ESXi `version` on the host clock `skew`."""
    pipe = {"I": "I125", "W": "W115", "E": "E105"}
    esx8 = {"I": "In(05)", "W": "Wa(03)", "E": "Er(02)"}

    def fmt(rec: tuple, skew: int) -> str:
        ms, level, message = rec
        if version >= 8:
            return f"{clock.iso(ms + skew)} {esx8[level]} vmx - {message}"
        return f"{clock.iso(ms + skew)}| vmx| {pipe[level]}: {message}"

    return fmt


# ---- hostd.log ---------------------------------------------------------------------------------------


def hostd_records(world: World, host: Host, cycles: list[Cycle]) -> list[tuple]:
    """A host's hostd.log: the snapshot tasks of the VMs it runs, background, and failures."""
    rng = world.rng(host.name, "hostd")
    out: list[tuple] = []
    t = world.start + rng.randint(1, 9) * MINUTE
    while t < world.end:
        out.append((t, "verbose", "Hostsvc.DatastoreSystem", None, "RefreshVdiskDatastores: Done refreshing "
                                                                    "datastores."))
        t += NOISE_EVERY + rng.randint(0, 9) * MINUTE
    task = 51000 + rng.randint(0, 900)
    for c in cycles:
        if c.vm.host is not host:
            continue
        local_id = int(c.vm.moref.split("-")[1]) % 97 + 1
        for state, method in ((cat.CREATING, "createSnapshot"), (cat.CONSOLIDATING, "consolidateDisks")):
            span = c.phase(state)
            if not span or span[1] >= NEVER:
                continue
            task += 1
            op = f"{rng.getrandbits(32):08x}-{task % 100:02d}-h{rng.randint(1, 9)}"
            name = f"haTask-{local_id}-vim.VirtualMachine.{method}-{task}"
            status = "error" if c.fail_state == state and c.outcome == "failed" else "success"
            out.append((span[0] + 300, "info", "Vimsvc.TaskManager", op, f"Task Created : {name}"))
            out.append((span[1] - 200, "info", "Vimsvc.TaskManager", op, f"Task Completed : {name} Status {status}"))
    for c in failed_cycles(cycles, HOSTD_CAUSES):
        if c.vm.host is host:
            out += _hostd_evidence(world, c, f"{rng.getrandbits(32):08x}-{c.cid % 100:02d}-h{rng.randint(1, 9)}")
    return _inside(world, out)


def _hostd_evidence(world: World, c: Cycle, op: str) -> list[tuple]:
    vm, at = c.vm, _fail_at(c)
    sub = f"Vmsvc.vm:{_vmx_path(vm, at, vm.name + '.vmx')}"
    if c.cause == "disk_locked":
        return [(at - 20 * SECOND, "error", sub, op, f"Consolidate disks failed: Unable to access file "
                                                     f"[{vm.datastore_at(at)}] {vm.name}/{vm.name}-000001.vmdk since "
                                                     "it is locked")]
    if c.cause == "datastore_out_of_space":
        return [(at - 30 * SECOND, "warning", sub, op, f"Question info: There is no more space for virtual disk "
                                                       f"{vm.name}-00000{c.cid % 3 + 2}.vmdk. You might be able to "
                                                       "continue this session by freeing disk space on the relevant "
                                                       "volume, and clicking Retry. Click Cancel to terminate this "
                                                       "session., Id: 0 : Type : 2, Default: 0, Number of options: 3"),
                (at - 15 * SECOND, "error", sub, op, f"Insufficient disk space on datastore '{vm.datastore_at(at)}'.")]
    if c.cause == "cbt_reset_or_corrupt":
        key = (c.hit.params.get("cbt_key") if c.hit else None) or "vim.hostd.vmsvc.cbt.cannotGetChanges"
        return [(at - 35 * SECOND, "error", sub, op, f"Failed to query changed disk areas of disk "
                                                     f"{vm.disks[-1].key}: vim.fault.FileFault: key = \"{key}\"")]
    # nfc_buffer_exhausted: the host's NFC server runs out of buffer for the disks it serves
    up = c.phase(cat.UPLOADING) or (at - 10 * MINUTE, at)
    return [(up[0] + (at - up[0]) * k // 4, "error", "Libs", op,
             f"[NFC ERROR] NfcFssrvr_DiskOpen: Failed to allocate the requested {33554456 if k % 2 else 16777240} "
             "bytes") for k in (1, 2, 3)]


def hostd_line(version: int):
    """(ms, level, sub, opid, message) -> a hostd.log line of ESXi `version` on the host clock."""
    esx8 = {"verbose": "Db(167)", "info": "In(166)", "warning": "Wa(164)", "error": "Er(163)"}

    def fmt(rec: tuple, skew: int, pid: int) -> str:
        ms, level, sub, op, message = rec
        meta = f"[Originator@6876 sub={sub}" + (f" opID={op} user=vpxuser" if op else "") + "]"
        if version >= 8:
            return f"{clock.iso(ms + skew)} {esx8[level]} Hostd[{pid}]: {meta} {message}"
        return f"{clock.iso(ms + skew)} {level} hostd[{pid}] {meta} {message}"

    return fmt


# ---- the appliance's VDDK client log -----------------------------------------------------------------


def vddk_records(world: World, cycles: list[Cycle]) -> list[tuple]:
    """VixDiskLib opening each disk of each cycle over NFC, and the NFC failures of a failing host."""
    rng = world.rng("vddk.log")
    out: list[tuple] = [(world.start, "I", f"VixDiskLib: VixDiskLib_InitEx: Initialize VDDK {world.vddk} "
                                           f"build-{world.vddk_build}.")]
    failing = {id(c) for c in failed_cycles(cycles, VDDK_CAUSES)}
    for c in cycles:
        up = c.phase(cat.UPLOADING)
        if not up or up[1] >= NEVER:
            continue
        for disk in c.vm.disks:
            path = c.vm.disk_path(disk, c.due)
            t = up[0] + rng.randint(200, 900)
            if id(c) in failing and c.cause == "port_902_blocked":
                out += _vddk_refused(c.vm.host.name, t)
                continue
            out.append((t, "I", "VixDiskLib: VixDiskLib_OpenEx: Open a disk."))
            out.append((t + 40, "I", f"NBD_ClientOpen: attempting to create connection to vpxa-nfc://{path}@"
                                     f"{c.vm.host.name}:902"))
            out.append((t + 310, "I", f"DISKLIB-LINK  : Opened 'vpxa-nfc://{path}@{c.vm.host.name}:902' (0xa): "
                                      f"custom, {disk.size // 512} sectors / {disk.size >> 30} GB."))
            end = up[1] - rng.randint(100, 900)
            if id(c) in failing and c.cause == "nfc_buffer_exhausted":
                out.append((end - 2 * SECOND, "W", "[NFC ERROR] NfcFssrvrProcessErrorMsg: received NFC error 5 from "
                                                   "server: Failed to allocate the requested 2097176 bytes"))
            out.append((max(end, t + 400), "I", "VixDiskLib: VixDiskLib_Close: Close disk."))
    return _inside(world, out)


def _vddk_refused(host: str, t: int) -> list[tuple]:
    """One disk open that cannot reach the host's NFC port (the lines VDDK writes for it)."""
    return [(t, "I", "VixDiskLib: VixDiskLib_OpenEx: Open a disk."),
            (t + 20 * SECOND, "W", f"CnxOpenTCPSocket: Timed out connecting to server {host}:902: Operation now in "
                                   "progress"),
            (t + 20 * SECOND + 1, "W", f"Cnx_Connect: Error message: Failed to connect to server {host}:902"),
            (t + 20 * SECOND + 2, "W", f"[NFC ERROR]NfcNewAuthdConnectionEx: Failed to connect to peer. Error: "
                                       f"Failed to connect to server {host}:902"),
            (t + 20 * SECOND + 3, "W", f"NBD_ClientOpen: Couldn't connect to {host}:902 Failed to connect to server "
                                       f"{host}:902")]


def vddk_line(rec: tuple) -> str:
    ms, level, message = rec
    return f"{clock.iso(ms)}| host-{ms // 997 % 40 + 10}| {dict(I='I125', W='W115', E='E105')[level]}: {message}"


# ---- which logs a scenario's bundle holds -------------------------------------------------------------


def traced_vms(world: World, cycles: list[Cycle]) -> list[VM]:
    """The VMs whose vmware.log goes in the bundle: those with a failure it shows."""
    names = {c.vm.name for c in failed_cycles(cycles, VMWARE_LOG_CAUSES)}
    return [vm for vm in world.vms if vm.name in names]


def traced_hosts(world: World, cycles: list[Cycle]) -> list[Host]:
    """The hosts whose hostd.log goes in the bundle: those of the failures it shows."""
    names = {c.vm.host.name for c in failed_cycles(cycles, HOSTD_CAUSES)}
    return [h for h in world.hosts if h.name in names]
