"""Gateway service log records (FORMATS.md section 1), rendered from planned cycles.

A record is `(ms, level, thread, component, message, detail)`; `detail` holds .NET stack-trace
continuation lines or is None. The writer puts the timestamp in front in the bundle's style:

    2024-05-13T10:00:00.123Z Info [14] Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine - Replication cycle started. vm=APP01 vmId=vm-1042 host=esx01.contoso.local cycleId=17 type=DeltaReplication disks=2
    2024-05-13T10:03:12.345Z Info [14] Gateway.Service.DataPlane.DiskUploader - Disk upload progress. vm=APP01 cycleId=17 disk="[ds01] APP01/APP01_1.vmdk" diskId=6000C29a-... uploadedBytes=734003200 totalBytes=2147483648 rateMBps=41.7
    2024-05-13T11:40:02.001Z Error [31] Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine - Replication cycle failed. vm=APP01 cycleId=18 errorId=1011 error=DiskUploadTimedOut message="The upload ..."
"""

from __future__ import annotations

import base64
import bisect
import random
from typing import Iterator

from analyzer.sample import catalogue as cat
from analyzer.sample.clock import HOUR, MINUTE, SECOND, iso
from analyzer.sample.world import INITIAL, MIB, NEVER, Cycle, Stall, World

ENGINE = "Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine"
SNAPSHOTS = "Gateway.Service.VMware.SnapshotManager"
UPLOADER = "Gateway.Service.DataPlane.DiskUploader"
BLOB = "Gateway.Service.DataPlane.CacheStorageClient"
GW_STORE = "Gateway.Service.Azure.GatewayStorageClient"
SERVICE_BUS = "Gateway.Service.Azure.ServiceBusListener"
EVENT_HUB = "Gateway.Service.Azure.EventHubPublisher"
KEY_VAULT = "Gateway.Service.Azure.KeyVaultClient"
HOST = "Gateway.Service.Host.GatewayServiceHost"
CONFIG = "Gateway.Service.Host.ConfigurationManager"
HEALTH = "Gateway.Service.Health.HeartbeatPublisher"
MONITOR = "Gateway.Service.Health.ResourceMonitor"
VDDK = "Gateway.Service.Vddk.VddkLibrary"
NFC = "Gateway.Service.Vddk.NfcSession"
VCENTER = "Gateway.Service.VMware.VCenterSession"
INVENTORY = "Gateway.Service.VMware.InventoryRefresher"
TOKENS = "Gateway.Service.Azure.AadTokenProvider"
TELEMETRY = "Gateway.Service.Telemetry.TelemetryUploader"

EXCEPTION = "GatewayErrorHandling.GatewayServiceException"


def secret(rng: random.Random, n: int = 32) -> str:
    """A random base64 string shaped like an account key or SAS signature."""
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(n))).decode()


def sas(rng: random.Random, expiry_ms: int) -> str:
    sig = secret(rng).replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    expiry = iso(expiry_ms).replace(":", "%3A")[:22] + "Z"
    return f"sv=2021-08-06&ss=b&srt=co&sp=rwdlac&se={expiry}&spr=https&sig={sig}"


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def texts(world: World, cycle: Cycle) -> dict[str, str]:
    """Values for error-text placeholders."""
    vm = cycle.vm
    disk = vm.disks[-1]
    rng = world.rng(cycle.key, "text")
    params = cycle.hit.params if cycle.hit else {}
    # some texts name the VM in quotes: "... on VM 'ERP08': ..."
    name = f"'{vm.name}'" if params.get("quote_vm") else vm.name
    return {"vm": name, "vm_id": vm.moref, "disk": vm.disk_path(disk, cycle.due), "disk_id": disk.disk_id,
            "host": vm.host.name, "kv": world.key_vault, "sa": world.cache_storage,
            "snap_guid": f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x}"
                         f"-{rng.getrandbits(16):04x}-{rng.getrandbits(48):012x}",
            "reason": params.get("reason", "")}


def failure_text(world: World, cycle: Cycle) -> str:
    return cat.error_text(cat.ERRORS[cycle.error], **texts(world, cycle))


def _stack(*frames: str) -> tuple[str, ...]:
    return tuple(f"   at {f}" for f in frames)


def cycle_records(world: World, cycle: Cycle) -> list[tuple]:
    """Everything the gateway writes about one cycle, sorted by time."""
    vm = cycle.vm
    rng = world.rng(cycle.key, "gw")
    th = str(rng.randint(8, 64))
    out: list[tuple] = []

    def add(ms, message, level="Info", component=ENGINE, detail=None, thread=th):
        out.append((ms, level, thread, component, message, detail))

    cid = cycle.cid
    first = cycle.phases[0]
    order = rng.randrange(3)
    if order == 0:
        started = (f"vm={vm.name} vmId={vm.moref} host={vm.host.name} cycleId={cid} type={cycle.type} "
                   f"disks={len(vm.disks)}")
    elif order == 1:
        started = (f"cycleId={cid} vm={vm.name} type={cycle.type} vmId={vm.moref} host={vm.host.name} "
                   f"disks={len(vm.disks)}")
    else:
        started = (f"vm={vm.name} cycleId={cid} type={cycle.type} disks={len(vm.disks)} vmId={vm.moref} "
                   f"host={vm.host.name} vcenter={world.vcenter_of(vm)}")
    if world.other_vcenters and order != 2:  # with several vCenters every start names its own
        started += f" vcenter={world.vcenter_of(vm)}"
    add(first[1], f"Replication cycle started. {started}")
    snap_name = f"AzureMigrate-{vm.name}-{cid}"
    previous = cat.QUEUED
    for state, a, b in cycle.phases[1:]:
        add(a, f"State changed. vm={vm.name} cycleId={cid} from={previous} to={state}")
        previous = state
        failing = cycle.outcome != "succeeded" and state == cycle.phases[-1][0] and cycle.killed is None
        if state == cat.CREATING:
            if not (failing and cycle.fail_state == cat.CREATING and _skips_vcenter(cycle)):
                add(a + 40, f"Creating snapshot. vm={vm.name} vmId={vm.moref} name={quoted(snap_name)}",
                    component=SNAPSHOTS)
            if not failing and b < NEVER and cycle.killed is None or (cycle.killed and b < cycle.killed):
                add(b - 30, f"Snapshot created. vm={vm.name} durationMs={b - a - 70}", component=SNAPSHOTS)
        elif state == cat.QUERYING and not failing:
            for disk in vm.disks:
                add(b - 20, f"Changed areas queried. vm={vm.name} diskId={disk.disk_id} "
                            f"changedAreas={rng.randint(3, 900)}", level="Verbose", component=SNAPSHOTS)
        elif state == cat.UPLOADING:
            out.extend(_progress(world, cycle, a, b, th, rng))
        elif state == cat.RELEASING and not cycle.release_timeout:
            add(a + 25, f"Removing snapshot. vm={vm.name} name={quoted(snap_name)}", component=SNAPSHOTS)
    if cycle.killed is not None:
        if cycle.reconcile is not None:
            text = failure_text(world, cycle)
            spec = cat.ERRORS[cycle.error]
            add(cycle.reconcile, f"Cycle was interrupted while the service was not running; marking it failed. "
                                 f"vm={vm.name} cycleId={cid} state={cycle.fail_state}", level="Warning")
            add(cycle.reconcile + 15, _failed_line(vm.name, cid, spec, text), level="Error")
        return _sorted(out)
    if cycle.outcome == "succeeded":
        end = cycle.end
        add(end - 10, f"State changed. vm={vm.name} cycleId={cid} from={previous} to=Completed")
        uploaded = sum(cycle.uploaded)
        add(end, f"Replication cycle completed. vm={vm.name} cycleId={cid} "
                 f"durationSec={(end - cycle.due) // SECOND} uploadedBytes={uploaded}")
        if rng.random() < 0.3:
            add(end + 5, f"Committed block list. vm={vm.name} blob=\"https://{world.cache_storage}.blob.core."
                         f"windows.net/{vm.moref}-{vm.disks[0].key}/{cid:08d}.vhd?{sas(rng, end + 8 * HOUR)}\"",
                level="Verbose", component=BLOB)
        return _sorted(out)
    if cycle.outcome == "hung":
        return _sorted(out)
    # failed: the error itself, cleanup, the failed line
    fail_at = cycle.phases[-1][2]
    out.extend(_evidence_in_cycle(world, cycle, fail_at, th, rng))
    spec = cat.ERRORS[cycle.error]
    text = failure_text(world, cycle)
    add(fail_at, _error_message(world, cycle, text), level="Error", component=_error_component(cycle),
        detail=_error_stack(cycle))
    t = fail_at + 300
    if cycle.snapshot_taken:
        add(t, f"Removing snapshot. vm={vm.name} name={quoted(snap_name)}", component=SNAPSHOTS)
        t += 3200
    add(t, f"State changed. vm={vm.name} cycleId={cid} from={cycle.fail_state} to=Failed")
    add(t + 5, _failed_line(vm.name, cid, spec, text), level="Error")
    return _sorted(out)


def _sorted(records: list[tuple]) -> list[tuple]:
    records.sort(key=lambda r: r[0])
    return records


def _skips_vcenter(cycle: Cycle) -> bool:
    return cycle.error in cat.BEFORE_VCENTER


def _failed_line(vm: str, cid: int, spec: cat.ErrorSpec, text: str) -> str:
    code = f"errorId={spec.code} " if spec.code else ""
    return f"Replication cycle failed. vm={vm} cycleId={cid} {code}error={spec.token} message={quoted(text)}"


def _error_component(cycle: Cycle) -> str:
    if cycle.fail_state == cat.UPLOADING:
        return UPLOADER
    if cycle.fail_state in (cat.CREATING, cat.RELEASING, cat.CONSOLIDATING, cat.QUERYING):
        return SNAPSHOTS
    return ENGINE


def _error_message(world: World, cycle: Cycle, text: str) -> str:
    """The Error record that precedes the failed line: the VMware text wrapped like the real service."""
    vm = cycle.vm
    spec = cat.ERRORS[cycle.error]
    where = f"vm={vm.name} vmId={vm.moref} cycleId={cycle.cid}"
    if spec.vmware is not None:
        fault = VMWARE_FAULT_TEXT.get(cycle.error)
        if fault:
            return (f"{EXCEPTION}: The operation failed with the error "
                    f"'{fault.format(**texts(world, cycle))}' {where}")
        return f"{text} {where}"
    if cycle.error == "disk_upload_timed_out":
        disk = vm.disks[-1]
        return (f"Disk upload did not complete within the expected time. {where} "
                f"disk={quoted(vm.disk_path(disk, cycle.due))} diskId={disk.disk_id}")
    return f"{EXCEPTION}: {text} {where}"


# The VMware fault text the service wraps for snapshot-side internal errors (vpxd shows the same).
VMWARE_FAULT_TEXT = {
    "internal_another_task_in_progress": "Another task is already in progress.",
    "internal_operation_not_allowed": "The operation is not allowed in the current state.",
    "internal_invalid_snapshot_configuration": "An invalid snapshot configuration was detected.",
}


def _error_stack(cycle: Cycle) -> tuple[str, ...]:
    state = cycle.fail_state
    handler = f"Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine.On{state}Async()"
    if state == cat.UPLOADING:
        inner = _stack("Gateway.Service.Vddk.VddkDisk.Read(Int64 startSector, Int32 sectorCount, Byte[] buffer)",
                       "Gateway.Service.DataPlane.DiskUploader.UploadRangeAsync(DiskRange range)")
    else:
        inner = _stack("Gateway.Service.VMware.VimClient.WaitForTaskAsync(ManagedObjectReference task)",
                       "Gateway.Service.VMware.SnapshotManager.RunAsync(String vmMoRef, String operation)")
    return inner + ("--- End of inner exception stack trace ---",) + _stack(
        handler, "Gateway.Service.StateMachine.StateMachineBase`1.FireAsync(TTrigger trigger)")


def _progress(world: World, cycle: Cycle, a: int, b: int, th: str, rng: random.Random) -> list[tuple]:
    """Disk upload progress lines: every minute (every 5 for an initial replication), per disk."""
    vm = cycle.vm
    out = []
    step = 5 * MINUTE if cycle.type == INITIAL else MINUTE
    stalled = cycle.stalled
    end = b if b < NEVER else a + 10 * MINUTE  # a hung upload: it moved, then stopped
    for i, disk in enumerate(vm.disks):
        total = cycle.totals[i]
        final = cycle.uploaded[i] if cycle.outcome != "succeeded" else total
        path = quoted(vm.disk_path(disk, cycle.due))
        t = a + step + rng.randint(0, 999)
        times = []
        while t < end:
            times.append(t)
            t += step + rng.randint(-900, 900)
        if cycle.outcome == "succeeded" or not times or times[-1] < end - 200:
            times.append(end - 100 - i * 7)
        active = end - a
        if stalled:
            active -= (stalled[1] - stalled[0]) if stalled[2] is None else 0
        for t in times:
            if t == times[-1] and cycle.outcome == "succeeded":
                out.append((t, "Info", th, UPLOADER,
                            f"Disk upload progress. vm={vm.name} cycleId={cycle.cid} disk={path} "
                            f"diskId={disk.disk_id} uploadedBytes={total} totalBytes={total} "
                            f"rateMBps={cycle.rate / len(vm.disks):.1f}", None))
                continue
            if stalled and stalled[0] <= t and stalled[2] is None and t < stalled[1]:
                continue  # nothing moves while the upload hangs
            if stalled and stalled[0] <= t and stalled[2] is not None:
                done_before = (stalled[0] - a) / SECOND * cycle.rate * MIB / len(vm.disks)
                done = done_before + (t - stalled[0]) / SECOND * stalled[2] * MIB / len(vm.disks)
                rate = stalled[2] / len(vm.disks) * rng.uniform(0.8, 1.2)
            else:
                elapsed = t - a
                if stalled and t >= stalled[1]:
                    elapsed -= stalled[1] - stalled[0]
                done = final * min(1.0, elapsed / max(1, active))
                rate = cycle.rate / len(vm.disks) * rng.uniform(0.9, 1.1)
            done = int(min(done, final))
            out.append((t, "Info", th, UPLOADER,
                        f"Disk upload progress. vm={vm.name} cycleId={cycle.cid} disk={path} diskId={disk.disk_id} "
                        f"uploadedBytes={done} totalBytes={total} rateMBps={rate:.1f}", None))
    return out


def _evidence_in_cycle(world: World, cycle: Cycle, fail_at: int, th: str, rng: random.Random) -> list[tuple]:
    """Lines the failing cycle itself writes before its error (host-side causes)."""
    hit = cycle.hit
    kind = hit.params.get("gateway_evidence") if hit else None
    vm = cycle.vm
    out = []
    start = cycle.phases[-1][1]
    if kind == "nfc_alloc":
        for k in range(3):
            t = start + (fail_at - start) * (k + 1) // 4
            out.append((t, "Error", th, NFC,
                        f"NfcFssrvrProcessErrorMsg: received NFC error 5 from server: Failed to allocate the "
                        f"requested 2097176 bytes host={vm.host.name} vm={vm.name}", None))
    elif kind == "dns":
        for k in range(2):
            t = start + (fail_at - start) * (k + 1) // 3
            out.append((t, "Error", th, NFC,
                        f"Connecting to ESXi host failed. host={vm.host.name} vm={vm.name} "
                        f"System.Net.Sockets.SocketException: No such host is known", _stack(
                            "System.Net.Dns.GetAddrInfo(String name)",
                            "Gateway.Service.Vddk.NfcSession.ConnectAsync(String host, Int32 port)")))
    elif kind == "port902":
        for k in range(3):
            t = start + (fail_at - start) * (k + 1) // 4
            out.append((t, "Error", th, NFC,
                        f"[NFC ERROR]NfcNewAuthdConnectionEx: Failed to connect to server {vm.host.name}:902 "
                        f"host={vm.host.name} vm={vm.name}", None))
    return out


# ---- appliance-wide records -----------------------------------------------------------------


def startup(world: World, at: int, rng: random.Random, vddk: str | None = None) -> list[tuple]:
    version = vddk or world.vddk
    return [
        (at, "Info", "1", HOST, f"Service asrgwy starting. version={world.service_version}", None),
        (at + 850, "Info", "1", CONFIG,
         f"Configuration loaded. appliance={world.appliance} maxConcurrentCycles={world.limit} "
         f"maxDisksPerHost=8 nfcBufferMB=32", None),
        (at + 1900, "Info", "1", VDDK, f"VDDK initialised. version={version} build={world.vddk_build}", None),
        (at + 4200 + rng.randint(0, 900), "Info", "6", VCENTER,
         f"Connected to vCenter. vcenter={world.vcenter} user={world.account} apiVersion=8.0.2.0", None),
        *((at + 4300 + 100 * n, "Info", "6", VCENTER,
           f"Connected to vCenter. vcenter={other} user={world.account} apiVersion=8.0.2.0", None)
          for n, other in enumerate(world.other_vcenters)),
        (at + 6100 + rng.randint(0, 900), "Info", "1", HOST, "Service asrgwy started.", None),
    ]


def lifecycle_records(world: World, extra: list[tuple] = ()) -> list[tuple]:
    """Service start at the bundle start, stops and restarts around outages."""
    rng = world.rng("lifecycle")
    out = [] if world.gateway_from else startup(world, world.start + 1200, rng)
    for o in world.outages:
        if o.kind == "gateway_service_down":
            out.append((o.start - 4200, "Critical", "19", HOST,
                        "Unhandled exception in the replication host; the service will stop.",
                        (o.critical,) + _stack("Gateway.Service.DataPlane.BufferPool.Rent(Int32 size)",
                                               "Gateway.Service.DataPlane.DiskUploader.UploadRangeAsync(DiskRange range)")))
            out.append((o.start - 3100, "Info", "1", HOST,
                        'Service asrgwy stopping. reason="Unhandled exception in the replication host"', None))
            out.append((o.start - 900, "Info", "1", HOST, "Service asrgwy stopped.", None))
        if o.end < world.end:
            out.extend(startup(world, o.end, rng))
    out.extend(extra)
    return _sorted(out)


def heartbeat_counts(world: World, cycles: list[Cycle]) -> Iterator[tuple[int, int, int]]:
    """(ms, active cycles, queued cycles) every 5 minutes, counted from the plan."""
    q_starts = sorted(c.due for c in cycles)
    q_ends = sorted(c.phases[0][2] for c in cycles)
    a_starts = sorted(c.phases[0][2] for c in cycles)
    a_ends = sorted(min(c.end, c.killed or NEVER) for c in cycles)
    t = world.start + 5 * MINUTE + world.rng("hb").randint(0, 299_999)
    while t < world.end:
        queued = bisect.bisect_right(q_starts, t) - bisect.bisect_right(q_ends, t)
        active = bisect.bisect_right(a_starts, t) - bisect.bisect_right(a_ends, t)
        yield t, active, queued
        t += 5 * MINUTE


def heartbeats(world: World, cycles: list[Cycle]) -> Iterator[tuple]:
    """`Heartbeat. activeCycles=N queuedCycles=M` every 5 minutes."""
    for t, active, queued in heartbeat_counts(world, cycles):
        yield (t, "Info", "4", HEALTH, f"Heartbeat. activeCycles={active} queuedCycles={queued}", None)


def stall_evidence(world: World, stall: Stall) -> list[tuple]:
    """Connectivity failures the appliance logs while an Azure endpoint is unreachable."""
    rng = world.rng("stall", stall.start, stall.evidence)
    out = []
    t = stall.start + rng.randint(5, 40) * SECOND
    n = 0
    end = min(stall.end, world.end)
    while t < end:
        out.append(_connectivity(world, stall.evidence, t, n, rng))
        n += 1
        t += rng.randint(45, 150) * SECOND
    return out


_WEB = "System.Net.WebException"
_TIMEOUT = ("A connection attempt failed because the connected party did not properly respond after a period of "
            "time, or established connection failed because connected host has failed to respond")


def _connectivity(world: World, kind: str, t: int, n: int, rng: random.Random) -> tuple:
    th = str(rng.randint(20, 90))
    if kind == "cache_storage":
        vm = world.vms[n % len(world.vms)]
        url = (f"https://{world.cache_storage}.blob.core.windows.net/{vm.moref}-{vm.disks[0].key}/"
               f"{rng.randint(1, 99999):08d}.vhd?comp=block&{sas(rng, t + 8 * HOUR)}")
        failure = "Unable to connect to the remote server" if n % 3 else "The operation has timed out"
        return (t, "Error", th, BLOB, f"Request to {url} failed. {_WEB}: {failure}",
                (f" ---> System.Net.Sockets.SocketException: {_TIMEOUT} 20.60.{rng.randint(1, 250)}.4:443",)
                + _stack("System.Net.HttpWebRequest.EndGetRequestStream(IAsyncResult asyncResult)",
                         "Microsoft.WindowsAzure.Storage.Core.Executor.Executor.EndOperation[T](ExecutionState`1 state)")
                + ("--- End of inner exception stack trace ---",))
    if kind == "gateway_storage":
        if n % 4 == 3:
            return (t, "Warning", th, GW_STORE,
                    f'Recreating storage client. connection="DefaultEndpointsProtocol=https;AccountName='
                    f'{world.gw_storage};AccountKey={secret(rng, 64)};EndpointSuffix=core.windows.net"', None)
        failure = "Unable to connect to the remote server" if n % 2 else "No such host is known"
        return (t, "Error", th, GW_STORE,
                f"Request to https://{world.gw_storage}.blob.core.windows.net/gateway-state/artefacts-"
                f"{rng.randint(1000, 9999)}.json failed. {_WEB}: {failure}",
                _stack("System.Net.HttpWebRequest.GetResponse()",
                       "Gateway.Service.Azure.GatewayStorageClient.DeleteArtefactsAsync(String cycle)"))
    if kind == "service_bus":
        if n % 4 == 3:
            return (t, "Warning", th, SERVICE_BUS,
                    f"Reconnecting to Service Bus. connection=\"Endpoint=sb://{world.service_bus}.servicebus.windows."
                    f"net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={secret(rng)}\"", None)
        return (t, "Error", th, SERVICE_BUS,
                f"Receive from sb://{world.service_bus}.servicebus.windows.net/snapshotmanager failed. "
                f"Microsoft.ServiceBus.Messaging.MessagingCommunicationException: Could not connect to "
                f"net.tcp://{world.service_bus}.servicebus.windows.net:9354/. The connection attempt lasted for a "
                f"time span of 00:00:21.0156250.", _stack(
                    "Microsoft.ServiceBus.Messaging.MessageReceiver.EndReceive(IAsyncResult result)",
                    "Gateway.Service.Azure.ServiceBusListener.ReceiveLoopAsync()"))
    if kind == "event_hub":
        return (t, "Error", th, EVENT_HUB,
                f"Send to EventHub failed. endpoint=sb://{world.event_hub}.servicebus.windows.net/ "
                f"entity=replicationevents Microsoft.ServiceBus.Messaging.ServiceBusCommunicationException: {_TIMEOUT}",
                _stack("Microsoft.ServiceBus.Messaging.EventHubSender.EndSend(IAsyncResult result)",
                       "Gateway.Service.Azure.EventHubPublisher.PublishAsync(EventData[] batch)"))
    if kind == "key_vault":
        return (t, "Error", th, KEY_VAULT,
                f"Request to https://{world.key_vault}.vault.azure.net/storage/{world.cache_storage}/sas/"
                f"replication?api-version=7.4 failed. {_WEB}: Unable to connect to the remote server",
                (f" ---> System.Net.Sockets.SocketException: {_TIMEOUT} 52.{rng.randint(1, 250)}.7.9:443",)
                + ("--- End of inner exception stack trace ---",)
                + _stack("Gateway.Service.Azure.KeyVaultClient.GetSasTokenAsync(String definition)"))
    raise ValueError(kind)


def noise(world: World) -> Iterator[tuple]:
    """The service's everyday chatter: tokens, telemetry, inventory, resource usage, polling."""
    rng = world.rng("gw-noise")
    t = world.start + 20 * SECOND
    n = 0
    vms = world.vms
    while t < world.end:
        n += 1
        kind = n % 12
        if kind == 0:
            yield (t, "Info", "9", TOKENS,
                   "Access token renewed. resource=https://vault.azure.net expiresInSec=3599", None)
        elif kind in (1, 7):
            yield (t, "Info", "11", INVENTORY,
                   f"Inventory refreshed. vcenter={world.vcenter} vms={140 + rng.randint(0, 9)} "
                   f"hosts={len(world.hosts)} durationMs={rng.randint(900, 6000)}", None)
        elif kind in (2, 8):
            yield (t, "Info", "5", MONITOR,
                   f"Resource usage. cpuPercent={rng.randint(4, 60)} memoryMB={rng.randint(1800, 5200)} "
                   f"handles={rng.randint(1200, 2400)}", None)
        elif kind == 3:
            yield (t, "Info", "12", TELEMETRY,
                   f"Telemetry batch uploaded. records={rng.randint(20, 400)} bytes={rng.randint(4000, 90000)}", None)
        elif kind in (4, 9):
            vm = vms[rng.randrange(len(vms))]
            yield (t, "Verbose", "13", ENGINE,
                   f"Replication settings verified. vm={vm.name} vmId={vm.moref} policy=Default", None)
        else:
            yield (t, "Verbose", "7", SERVICE_BUS,
                   f"Polled for work items. entity=snapshotmanager pending={rng.randint(0, 3)}", None)
        t += rng.randint(40, 200) * SECOND + rng.randint(0, 999)
