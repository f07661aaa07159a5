"""The simulated estate: vCenter, hosts, VMs and their disks, and the appliance that replicates them.

`plan(world)` runs the replication schedule of CATALOGUE.md part C for every VM, with the faults
the scenario put in the world (outages, stalls, VMware failures, slow windows) applied, and
returns the cycles in start order. Everything later (gateway log, vpxd, portal events, expected
verdicts) is rendered from these cycles, so the logs and the expectations cannot disagree.

All randomness comes from `random.Random` seeded by strings built from the bundle seed, so the
plan does not depend on the order cycles are processed in.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

from analyzer.sample import catalogue as cat
from analyzer.sample.clock import BASE_MS, DAY, HOUR, MINUTE, SECOND

GIB = 1 << 30
MIB = 1 << 20
NEVER = 1 << 62

INITIAL = "InitialReplication"
DELTA = "DeltaReplication"
RESYNC = "Resync"

VM_PREFIXES = ("APP", "SQL", "WEB", "FS", "EXCH", "SAP", "CRM", "ERP", "BI", "API", "MQ", "DB")
OTHER_VMS = ("FILESRV09", "JUMP01", "PRINT02", "VEEAM-PROXY01", "DEV-BUILD03", "TEST-WIN11", "LAB-DC02")


@dataclass
class Host:
    name: str
    moref: str
    ip: str


@dataclass
class Disk:
    key: int  # vSphere device key: 2000, 2001, ...
    file: str  # "APP01/APP01_1.vmdk"
    disk_id: str  # 6000C29a-...
    size: int
    used: int


@dataclass
class VM:
    index: int
    name: str
    moref: str
    host: Host
    datastore: str
    disks: list[Disk]
    rate: float  # usual upload rate, MB/s
    churn: float  # changed bytes per hour
    first_due: int
    first_cycle: int
    initial: bool  # starts with its initial replication inside the bundle
    moves: list[tuple[int, str]] = field(default_factory=list)  # (ms, datastore) after a Storage vMotion
    vcenter: str | None = None  # its vCenter when the appliance talks to several (None: World.vcenter)
    label: str | None = None  # how the analysis names it when another vCenter has a VM of the same name

    def datastore_at(self, ms: int) -> str:
        ds = self.datastore
        for at, new in self.moves:
            if at <= ms:
                ds = new
        return ds

    def disk_path(self, disk: Disk, ms: int) -> str:
        return f"[{self.datastore_at(ms)}] {disk.file}"


# ---- faults the scenario puts in the world -------------------------------------------------


@dataclass
class Outage:
    """Appliance off (`appliance_down`, silent) or gateway service stopped (`gateway_service_down`).

    Cycles in flight at `start` die; the portal reports them failed after `timeout`; the service
    marks them failed once it is back. `error=None`: the error follows the state the cycle died in.
    """

    kind: str
    start: int
    end: int  # NEVER: it never came back
    error: str | None = None
    timeout: int = 40 * MINUTE
    critical: str = "System.OutOfMemoryException: Insufficient memory to continue the execution of the program."


@dataclass
class Stall:
    """Cycles of `vms` (None: all) that reach `state` inside [start, end) hang there; after `timeout`
    they fail with `error`. `crawl` (MB/s) keeps an upload creeping instead of stopping. `evidence`
    names the lines the condition leaves in the gateway log (rendered by gateway.py)."""

    start: int
    end: int
    state: str
    error: str
    cause: str
    timeout: int
    vms: frozenset[str] | None = None
    crawl: float | None = None
    evidence: str | None = None  # cache_storage | gateway_storage | service_bus | event_hub | key_vault


@dataclass
class Hit:
    """A VMware/Azure-side failure: cycles of `vms` entering `state` inside [start, end) fail there
    after `fail_after`. `per_vm` caps failures per VM (None: every cycle). `retry=False`: the VM
    runs no further cycle (a hung snapshot task); `hang=True`: the cycle never ends, no error."""

    vms: frozenset[str]
    start: int
    error: str | None
    cause: str | None
    end: int = NEVER
    state: str | None = None  # default: the error's state
    fail_after: int | None = None
    per_vm: int | None = None
    retry: bool = True
    hang: bool = False
    cycle_type: str | None = None  # the failing cycles are of this type (Resync)
    params: dict = field(default_factory=dict)  # reason, ... for texts; evidence flags for renderers


@dataclass
class Slow:
    """Upload rate divided by `factor` (and churn multiplied) for cycles of `vms` starting in the window."""

    vms: frozenset[str]
    start: int
    end: int
    factor: float
    churn: float = 1.0


@dataclass
class World:
    name: str
    seed: int
    start: int
    end: int
    hosts: list[Host]
    vms: list[VM]
    others: list[tuple[str, str]]  # non-replicated VMs for vCenter noise: (name, moref)
    skew: int  # vCenter clock minus appliance clock, ms
    vddk: str = "7.0.3"
    vddk_build: str = "19513565"
    service_version: str = "25.24.02.07"
    limit: int = 64  # appliance concurrency (cycles past Queued)
    limit_unit: str = "cycles"  # cycles | disks: a cycle takes one slot, or one per disk it reads
    vcenter: str = "vcsa01.contoso.local"
    datacenter: str = "DC01"
    cluster: str = "CL01"
    appliance: str = "AZMIG-APP01"
    account: str = "CONTOSO\\svc-azmigrate"
    gw_storage: str = "migrategwsa1329610309"
    cache_storage: str = "migratelsa1329610309"
    key_vault: str = "migratekv1329610309"
    service_bus: str = "migratesb-1329610309"
    event_hub: str = "migrateeh-1329610309"
    outages: list[Outage] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    slows: list[Slow] = field(default_factory=list)
    gateway_from: int | None = None  # the gateway log starts here (older files rotated away)
    other_vcenters: tuple[str, ...] = ()  # more vCenters the appliance replicates from (VM.vcenter)

    def vcenters(self) -> tuple[str, ...]:
        return (self.vcenter, *self.other_vcenters)

    def vcenter_of(self, vm: VM) -> str:
        return vm.vcenter or self.vcenter

    def rng(self, *parts: object) -> random.Random:
        return random.Random("/".join([str(self.seed), self.name, *map(str, parts)]))

    def vm(self, name: str) -> VM:
        return next(v for v in self.vms if v.name == name)

    def dead(self) -> list[tuple[int, int]]:
        """Intervals with no gateway records (appliance off or service stopped)."""
        return sorted((o.start, o.end) for o in self.outages)


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def disk_uuid(rng: random.Random) -> str:
    return f"6000C29{_hex(rng, 1)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 12)}"


def build_world(name: str, seed: int, vms: int, days: float, *, hosts: int | None = None,
                initial_share: float = 0.34) -> World:
    rng = random.Random(f"{seed}/{name}/world")
    start = BASE_MS
    end = BASE_MS + int(days * DAY)
    n_hosts = hosts or max(2, math.ceil(vms / 8))
    host_list = [Host(f"esx{i + 1:02d}.contoso.local", f"host-{20 + i * 3}", f"10.0.4.{11 + i}")
                 for i in range(n_hosts)]
    datastores = [f"ds{i + 1:02d}" for i in range(max(2, min(6, n_hosts)))]
    morefs = rng.sample(range(1000, 4000), vms)
    vm_list = []
    for i in range(vms):
        vm_name = f"{VM_PREFIXES[i % len(VM_PREFIXES)]}{i + 1:02d}"
        n_disks = rng.choice((1, 2, 2, 3))
        disks = []
        for d in range(n_disks):
            size = (rng.randint(80, 200) if d == 0 else rng.randint(100, 600)) * GIB
            file = f"{vm_name}/{vm_name}.vmdk" if d == 0 else f"{vm_name}/{vm_name}_{d}.vmdk"
            disks.append(Disk(2000 + d, file, disk_uuid(rng), size, int(size * rng.uniform(0.35, 0.7))))
        initial = rng.random() < initial_share
        vm_list.append(VM(
            index=i, name=vm_name, moref=f"vm-{morefs[i]}", host=host_list[i % n_hosts],
            datastore=datastores[i % len(datastores)], disks=disks,
            rate=rng.uniform(30, 80), churn=rng.uniform(0.3, 2.5) * GIB,
            first_due=start + rng.randint(2 * MINUTE, (150 if initial else 55) * MINUTE),
            first_cycle=1 if initial else rng.randint(20, 400), initial=initial))
    other_ids = rng.sample(range(5000, 6000), len(OTHER_VMS))
    skew = rng.choice((-1, 1)) * rng.randint(30, 180) * SECOND + rng.randint(0, 999)
    digits = str(rng.randint(10**9, 10**10 - 1))
    tag = _hex(rng, 6)
    return World(
        name=name, seed=seed, start=start, end=end, hosts=host_list, vms=vm_list,
        others=[(n, f"vm-{m}") for n, m in zip(OTHER_VMS, other_ids)], skew=skew,
        gw_storage=f"migrategwsa{digits}", cache_storage=f"migratelsa{digits}",
        key_vault=f"migratekv{tag}", service_bus=f"migratesb-{tag}", event_hub=f"migrateeh-{tag}")


# ---- cycles ---------------------------------------------------------------------------------


@dataclass
class Cycle:
    vm: VM
    cid: int
    type: str
    due: int  # "Replication cycle started"
    phases: list[tuple[str, int, int]]  # (state, start, end), Queued first
    end: int  # NEVER while hung
    outcome: str  # succeeded | failed | hung
    totals: list[int]  # bytes to upload per disk this cycle
    uploaded: list[int]  # bytes uploaded per disk when the upload phase ended
    rate: float  # MB/s while uploading
    error: str | None = None
    cause: str | None = None
    fail_state: str | None = None
    killed: int | None = None  # an outage cut the cycle here (no gateway line after)
    reconcile: int | None = None  # the restarted service logs the failure here
    portal: int | None = None  # portal event time
    stalled: tuple[int, int, float | None] | None = None  # upload hang (from, to, crawl MB/s)
    hit: Hit | None = None
    stall: Stall | None = None
    outage: Outage | None = None
    # vCenter's removal of this cycle's snapshot times out (vim.fault.Timedout) while the gateway
    # moves on; the gateway then logs only its state change to ReleasingSnapshot
    release_timeout: bool = False

    @property
    def key(self) -> str:
        return f"{self.vm.name}#{self.cid}"

    def phase(self, state: str) -> tuple[int, int] | None:
        for s, a, b in self.phases:
            if s == state:
                return a, b
        return None

    def state_at(self, ms: int) -> str:
        for s, a, b in self.phases:
            if a <= ms < b:
                return s
        return self.phases[-1][0]

    @property
    def snapshot_taken(self) -> bool:
        """A snapshot exists (and must be removed) once CreatingSnapshot completed."""
        span = self.phase(cat.CREATING)
        return span is not None and self.fail_state not in (cat.QUEUED, cat.CREATING) and span[1] > span[0]


def interval_after(duration: int) -> int:
    """CATALOGUE part C: next delta is due min(max(1 h, duration / 2), 12 h) after the cycle ends."""
    return min(max(HOUR, duration // 2), 12 * HOUR)


def _outage_at(world: World, ms: int) -> Outage | None:
    for o in world.outages:
        if o.start <= ms < o.end:
            return o
    return None


def _hit_for(world: World, vm: VM, due: int, counts: dict) -> Hit | None:
    for hit in world.hits:
        if (vm.label or vm.name) in hit.vms and hit.start <= due < hit.end:
            if hit.per_vm is None or counts.get((id(hit), vm.name), 0) < hit.per_vm:
                return hit
    return None


def _slow_for(world: World, vm: VM, due: int) -> Slow | None:
    for slow in world.slows:
        if vm.name in slow.vms and slow.start <= due < slow.end:
            return slow
    return None


def _nominal(world: World, vm: VM, cid: int, ctype: str, due: int, active: int,
             since_snapshot: int, churn: float = 1.0) -> tuple[list[tuple[str, int]], list[int], float]:
    """Durations per state (Queued first) without faults, bytes per disk, upload rate."""
    rng = world.rng(vm.name, cid, "plan")
    if ctype == INITIAL:
        totals = [d.used for d in vm.disks]
    else:
        hours = max(since_snapshot, 10 * MINUTE) / HOUR
        local_hour = ((due - BASE_MS) // HOUR) % 24
        burst = 3.0 if vm.name.startswith("SQL") and 1 <= local_hour < 3 else 1.0
        changed = vm.churn * hours * rng.uniform(0.6, 1.4) * burst * churn
        weights = [d.used for d in vm.disks]
        totals = [max(16 * MIB, int(changed * w / sum(weights))) for w in weights]
        if ctype == RESYNC:
            totals = [t * 4 for t in totals]
    rate = vm.rate * rng.uniform(0.85, 1.15)
    if ctype == INITIAL:  # full reads of every allocated block: slower than deltas
        rate *= 0.4
    slow = _slow_for(world, vm, due)
    if slow:
        rate /= slow.factor
        totals = [int(t * slow.churn) for t in totals]
    upload = int(max(totals) / (rate * MIB / len(totals)) * SECOND) + rng.randint(2, 8) * SECOND
    steps = [
        (cat.QUEUED, max(active - due, 0) + rng.randint(400, 2500)),
        (cat.CREATING, rng.randint(6, 35) * SECOND + rng.randint(0, 999)),
        (cat.DISPOSAL, rng.randint(1, 6) * SECOND + rng.randint(0, 999)),
        (cat.QUERYING, rng.randint(1, 3) * SECOND * len(totals) + rng.randint(0, 999)),
        (cat.UPLOADING, upload),
        (cat.RELEASING, rng.randint(5, 20) * SECOND + rng.randint(0, 999)),
        (cat.CONSOLIDATING, rng.randint(4, 25) * SECOND + rng.randint(0, 999)),
    ]
    return steps, totals, rate


def _build_cycle(world: World, vm: VM, cid: int, ctype: str, due: int, active: int,
                 since_snapshot: int, hit: Hit | None) -> Cycle:
    churn = hit.params.get("churn", 1.0) if hit else 1.0
    steps, totals, rate = _nominal(world, vm, cid, ctype, due, active, since_snapshot, churn)
    rng = world.rng(vm.name, cid, "fault")
    phases: list[tuple[str, int, int]] = []
    t = due
    cycle = Cycle(vm, cid, ctype, due, phases, NEVER, "succeeded", totals, list(totals), rate)
    for state, duration in steps:
        end = t + duration
        if hit and state == hit_state(hit):
            cycle.hit = hit
            if hit.hang:
                phases.append((state, t, NEVER))
                cycle.outcome = "hung"
                cycle.fail_state = state
                if state == cat.UPLOADING:  # it moved for ten minutes, then nothing
                    cycle.uploaded = [min(tot // 2, int(rate * MIB / len(totals) * 600)) for tot in totals]
                return cycle
            after = hit.fail_after if hit.fail_after is not None else rng.randint(3, 40) * SECOND
            phases.append((state, t, t + after))
            _fail(cycle, state, t + after, hit.error, hit.cause)
            if state == cat.UPLOADING:
                cycle.uploaded = [min(tot, int(rate * MIB / len(totals) * after / SECOND)) for tot in totals]
            return cycle
        stall = _stall_for(world, vm, state, t, end)
        if stall:
            stuck = max(t, stall.start)
            cycle.stall = stall
            if stuck + stall.timeout <= stall.end:
                fail = stuck + stall.timeout
                phases.append((state, t, fail))
                if state == cat.UPLOADING:
                    done = (stuck - t) / SECOND * rate * MIB / len(totals)
                    if stall.crawl:
                        done += stall.timeout / SECOND * stall.crawl * MIB / len(totals)
                    cycle.uploaded = [min(tot - MIB, int(done)) for tot in totals]
                    cycle.stalled = (stuck, fail, stall.crawl)
                _fail(cycle, state, fail, stall.error, stall.cause)
                return cycle
            # the condition clears before the timeout: the state lasts until it does
            resume = stall.end + rng.randint(5, 60) * SECOND
            if state == cat.UPLOADING:
                cycle.stalled = (stuck, resume, None)
            end = max(end, resume + (end - stuck))
        phases.append((state, t, end))
        t = end
    cycle.end = t
    return cycle


def hit_state(hit: Hit) -> str:
    return hit.state or cat.ERRORS[hit.error].state


def _stall_for(world: World, vm: VM, state: str, a: int, b: int) -> Stall | None:
    for stall in world.stalls:
        if stall.state == state and (stall.vms is None or vm.name in stall.vms):
            if a < stall.end and stall.start < b:
                return stall
    return None


def _fail(cycle: Cycle, state: str, at: int, error: str | None, cause: str | None) -> None:
    cycle.outcome = "failed"
    cycle.fail_state = state
    cycle.error = error
    cycle.cause = cause
    cycle.end = at + 4 * SECOND  # cleanup and the failed line follow the error
    cycle.portal = at + 9 * SECOND


def _cut_by_outage(world: World, cycle: Cycle) -> None:
    """An outage that begins while the cycle runs kills it."""
    for o in world.outages:
        if cycle.due < o.start < cycle.end:
            state = cycle.state_at(o.start)
            cycle.phases[:] = [(s, a, min(b, o.start)) for s, a, b in cycle.phases if a < o.start]
            cycle.outcome = "failed"
            cycle.killed = o.start
            cycle.outage = o
            cycle.fail_state = state
            cycle.error = o.error or ("disk_upload_timed_out" if state == cat.UPLOADING
                                      else "dispose_artefacts_timed_out")
            cycle.cause = o.kind
            cycle.hit = None
            cycle.stalled = None
            cycle.portal = o.start + o.timeout
            cycle.reconcile = o.end + world.rng(cycle.key, "reconcile").randint(25, 50) * SECOND \
                if o.end < world.end else None
            cycle.end = o.start
            if state == cat.UPLOADING:
                span = cycle.phase(cat.UPLOADING)
                frac = (o.start - span[0]) / max(1, cycle.phases[-1][2] - span[0] + 1) if span else 0
                cycle.uploaded = [int(t * min(frac, 0.95)) for t in cycle.totals]
            return


def plan(world: World) -> list[Cycle]:
    """Every cycle of every VM inside [world.start, world.end), FIFO through the appliance's slots."""
    due_heap = [(vm.first_due, vm.index) for vm in world.vms]
    heapq.heapify(due_heap)
    slots = [world.start] * world.limit
    state = {vm.index: {"cid": vm.first_cycle, "type": INITIAL if vm.initial else DELTA,
                        "snap": vm.first_due - HOUR} for vm in world.vms}
    hit_counts: dict = {}
    cycles: list[Cycle] = []
    while due_heap:
        due, index = heapq.heappop(due_heap)
        vm = world.vms[index]
        outage = _outage_at(world, due)
        if outage:  # nothing starts while the gateway is down; it catches up after restart
            if outage.end >= world.end:
                continue
            due = outage.end + world.rng(vm.name, due, "restart").randint(120, 400) * SECOND
        if due >= world.end:
            continue
        st = state[index]
        hit = _hit_for(world, vm, due, hit_counts)
        ctype = hit.cycle_type if hit and hit.cycle_type else st["type"]
        # a disk-limited appliance gives a cycle one slot per disk it reads
        need = min(len(vm.disks), world.limit) if world.limit_unit == "disks" else 1
        free = max(heapq.heappop(slots) for _ in range(need))
        cycle = _build_cycle(world, vm, st["cid"], ctype, due, max(due, free), due - st["snap"], hit)
        _cut_by_outage(world, cycle)
        for _ in range(need):
            heapq.heappush(slots, cycle.end)
        cycles.append(cycle)
        if cycle.hit:
            hit_counts[(id(cycle.hit), vm.name)] = hit_counts.get((id(cycle.hit), vm.name), 0) + 1
        st["cid"] += 1
        if cycle.outcome == "hung" or (cycle.hit and not cycle.hit.retry and cycle.outcome == "failed"):
            continue
        if cycle.outcome == "succeeded":
            st["snap"] = cycle.phase(cat.CREATING)[0]
            if cycle.type == INITIAL:
                st["type"] = DELTA
                heapq.heappush(due_heap, (cycle.end + world.rng(cycle.key, "next").randint(5, 30) * SECOND,
                                          index))
                continue
        nxt = cycle.end + interval_after(cycle.end - cycle.due)
        if cycle.reconcile:
            nxt = max(nxt, cycle.reconcile + 90 * SECOND)
        heapq.heappush(due_heap, (nxt, index))
    cycles.sort(key=lambda c: (c.due, c.vm.index))
    return cycles
