"""The named scenarios: what goes wrong in each generated bundle, and in which format it is written.

One scenario per (error, cause) of CATALOGUE.md, named `<error>--<cause>`, with the evidence the
catalogue names for that cause and nothing that would point elsewhere; `<error>--undetermined`
where no evidence singles a cause out and the decision rules give `undetermined`. Then outages,
red herrings, a fleet mix and format variants. The expected verdicts are not written here: they
follow from the planned cycles (assemble.expected_verdicts), plus the few verdicts no cycle carries
(Key Vault, stalled, slow).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable

from analyzer.sample import catalogue as cat
from analyzer.sample import portal, vcenter
from analyzer.sample.assemble import Built, Layout, busiest_time, quiet_time
from analyzer.sample.clock import DAY, HOUR, MINUTE, SECOND
from analyzer.sample import gateway
from analyzer.sample.world import (GIB, INITIAL, NEVER, RESYNC, VM, Cycle, Hit, Outage, Slow, Stall, World,
                                   build_world, plan)

TIMEOUTS = {cat.DISPOSAL: 20 * MINUTE, cat.QUERYING: 25 * MINUTE, cat.UPLOADING: 60 * MINUTE}
EVIDENCE_OF = {"gateway_storage_unreachable": "gateway_storage", "cache_storage_unreachable": "cache_storage",
               "service_bus_unreachable": "service_bus", "event_hub_unreachable": "event_hub",
               "key_vault_unreachable": "key_vault"}


@dataclass
class Ctx:
    name: str
    seed: int
    vms: int
    days: float
    size: int | None = None
    layout: Layout = field(default_factory=Layout)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    build: Callable[[Ctx], Built]
    min_vms: int = 1
    min_days: float = 1.0


# ---- helpers ---------------------------------------------------------------------------------------------


def new_world(ctx: Ctx, **kw) -> World:
    return build_world(ctx.name, ctx.seed, max(ctx.vms, kw.pop("min_vms", 1)), max(ctx.days, 1.0), **kw)


def pick(world: World, *, disks: int = 1, initial: bool | None = False, avoid: tuple[str, ...] = ()) -> VM:
    rng = world.rng("target")
    pool = [v for v in world.vms if len(v.disks) >= disks and v.name not in avoid
            and (initial is None or v.initial == initial)]
    if not pool:
        pool = [v for v in world.vms if v.name not in avoid] or world.vms
        vm = pool[rng.randrange(len(pool))]
        while len(vm.disks) < disks:  # give it the disks the scenario needs
            d = len(vm.disks)
            base = vm.disks[-1]
            vm.disks.append(type(base)(2000 + d, f"{vm.name}/{vm.name}_{d}.vmdk",
                                       base.disk_id[:-4] + f"{d:04x}", base.size, base.used))
        return vm
    return pool[rng.randrange(len(pool))]


def at(world: World, fraction: float) -> int:
    return world.start + int((world.end - world.start) * fraction)


def finish(ctx: Ctx, world: World, **kw) -> Built:
    return Built(world, plan(world), ctx.layout, **kw)


def hit(vm: VM | list[VM], start: int, error: str | None, cause: str | None, **kw) -> Hit:
    names = frozenset(v.label or v.name for v in ([vm] if isinstance(vm, VM) else vm))
    return Hit(names, start, error, cause, **kw)


def first_in(cycles: list[Cycle], vm: VM, after: int, types=("DeltaReplication",)) -> Cycle | None:
    for c in cycles:
        if c.vm is vm and c.due >= after and c.type in types and c.outcome == "succeeded":
            return c
    return None


# ---- appliance-wide causes ----------------------------------------------------------------------------


def appliance_outage(kind: str, error: str) -> Callable[[Ctx], Built]:
    """The appliance or its service goes away while a cycle sits in the error's state."""

    def build(ctx: Ctx) -> Built:
        world = new_world(ctx)
        vm = pick(world)
        dry = plan(world)
        state = cat.ERRORS[error].state
        target = first_in(dry, vm, at(world, 0.6))
        span = target.phase(state)
        start = (span[0] + span[1]) // 2
        timeout = TIMEOUTS.get(state, 30 * MINUTE)
        world.outages.append(Outage(kind, start, start + timeout + 35 * MINUTE, error=error, timeout=timeout))
        return finish(ctx, world)

    return build


def endpoint_outage(cause: str, error: str, hours: float = 2.5) -> Callable[[Ctx], Built]:
    """An Azure endpoint is unreachable for a while: every cycle that reaches the state then fails."""

    def build(ctx: Ctx) -> Built:
        world = new_world(ctx)
        state = cat.ERRORS[error].state
        start = at(world, 0.62)
        world.stalls.append(Stall(start, start + int(hours * HOUR), state, error, cause, TIMEOUTS[state],
                                  evidence=EVIDENCE_OF[cause]))
        return finish(ctx, world)

    return build


def read_throttled(ctx: Ctx) -> Built:
    world = new_world(ctx)
    vm = pick(world)
    start = at(world, 0.78)
    world.stalls.append(Stall(start, NEVER, cat.UPLOADING, "disk_upload_timed_out", "vcenter_read_throttled",
                              TIMEOUTS[cat.UPLOADING], vms=frozenset([vm.name]), crawl=0.4))
    return finish(ctx, world)


def upload_undetermined(ctx: Ctx) -> Built:
    """A delta far larger than usual at the usual rate: it times out, and nothing says why."""
    world = new_world(ctx)
    vm = pick(world)
    world.hits.append(hit(vm, at(world, 0.8), "disk_upload_timed_out", cat.UNDETERMINED, per_vm=1,
                          fail_after=TIMEOUTS[cat.UPLOADING], params={"churn": 60.0}))
    return finish(ctx, world)


def dispose_not_covered(ctx: Ctx) -> Built:
    """The failure predates the gateway log (older files rotated away): nothing can be concluded."""
    world = new_world(ctx, min_vms=1)
    vm = pick(world)
    when = at(world, 0.22)
    world.hits.append(hit(vm, when, "dispose_artefacts_timed_out", cat.UNDETERMINED, per_vm=1,
                          fail_after=TIMEOUTS[cat.DISPOSAL]))
    world.gateway_from = when + 4 * HOUR - (when + 4 * HOUR - world.start) % DAY + DAY \
        if (world.end - world.start) > 2 * DAY else when + 4 * HOUR
    return finish(ctx, world)


def stuck_undetermined(error: str) -> Callable[[Ctx], Built]:
    """The cycle sits in the error's state until the service gives up; no evidence anywhere."""

    def build(ctx: Ctx) -> Built:
        world = new_world(ctx)
        vm = pick(world)
        state = cat.ERRORS[error].state
        world.hits.append(hit(vm, at(world, 0.8), error, cat.UNDETERMINED, per_vm=2,
                              fail_after=TIMEOUTS.get(state, 25 * MINUTE)))
        return finish(ctx, world)

    return build


# ---- VM- and host-scope causes --------------------------------------------------------------------------


def vm_failure(error: str, cause: str, *, disks: int = 1, evidence: str | None = None, gateway_evidence=None,
               host_scope: bool = False, before: int = 0, persist: bool = True, params: dict | None = None,
               vddk: str | None = None, cycle_type: str | None = None, fail_after: int | None = None,
               retry: bool = True, start_fraction: float = 0.8, window: int | None = None,
               move: bool = False, before_end: int | None = None, esxi: str = "", esxi_version: int = 7,
               vddk_log: bool = False) -> Callable[[Ctx], Built]:
    """A failure of one VM (or every VM on its host) from late in the bundle on, with its evidence.
    `esxi` (vm-support | loose), `esxi_version` and `vddk_log`: the ESXi and VDDK logs that carry
    the failure's VMware-side lines (esxi.py)."""

    def build(ctx: Ctx) -> Built:
        if esxi:
            ctx.layout.esxi, ctx.layout.esxi_version = esxi, esxi_version
        ctx.layout.vddk_log = ctx.layout.vddk_log or vddk_log
        world = new_world(ctx)
        if vddk:
            world.vddk, world.vddk_build = vddk, "8250137" if vddk.startswith("6.7") else world.vddk_build
        vm = pick(world, disks=disks)
        start = world.end - before_end if before_end else at(world, start_fraction)
        p = dict(params or {})
        if evidence:
            p["vcenter_evidence"] = evidence
        if gateway_evidence:
            p["gateway_evidence"] = gateway_evidence
        if evidence == "relocate":
            p["relocate_at"] = start - before
            p["relocate_dur"] = world.rng("relocate").randint(9, 25) * MINUTE
            if move:  # a Storage vMotion: the disks live on another datastore once the task ends
                new_ds = next(d for d in (f"ds{i:02d}" for i in range(1, 9)) if d != vm.datastore)
                vm.moves.append((p["relocate_at"] + p["relocate_dur"], new_ds))
        if evidence == "reconfigure":
            p["reconfigure_at"] = start - before
        if evidence == "host_down":
            p["host"] = vm.host.name
        if "reason" in p:
            p["reason"] = p["reason"].format(vm=vm.name, ds=vm.datastore)
        targets = [v for v in world.vms if v.host is vm.host] if host_scope else [vm]
        end = start + window if window else NEVER
        world.hits.append(hit(targets, start, error, cause, end=end, per_vm=None if persist else 1, params=p,
                              cycle_type=cycle_type, fail_after=fail_after, retry=retry))
        return finish(ctx, world)

    return build


def readiness_failure(ctx: Ctx) -> Built:
    """A VM with old snapshots is added late; its initial replication cannot start."""
    world = new_world(ctx)
    vm = pick(world, initial=None)
    vm.initial, vm.first_cycle = True, 1
    vm.first_due = world.end - 5 * HOUR + world.rng("late").randint(0, 30) * MINUTE
    world.hits.append(hit(vm, world.start, "protection_readiness_snapshots_present", "existing_snapshots_block_cbt",
                          state=cat.QUEUED))
    return finish(ctx, world)


# ---- Key Vault (enable replication) ------------------------------------------------------------------------


def key_vault(cause: str, recovered: bool = False) -> Callable[[Ctx], Built]:
    """`recovered`: once the vault's access policy is fixed, the retrying user enables replication of a
    new VM, whose initial replication starts (the failure is then history: a warning)."""

    def build(ctx: Ctx) -> Built:
        world = new_world(ctx)
        guest = "partner.admin_fabrikam.com#EXT#@contoso.onmicrosoft.com"
        first_user = guest if cause == "csp_remote_user" else "alice@contoso.com"
        retry_user = guest if cause == "csp_remote_user" else "bob@contoso.com"
        late = at(world, 0.85)
        added = None
        if recovered:
            added = pick(world, initial=None)
            added.initial, added.first_cycle = True, 1
            added.first_due = late + 70 * MINUTE
        events = [portal.setup_event(world, vm.first_due - 20 * MINUTE, retry_user if vm is added else first_user,
                                     vm.name)
                  for vm in world.vms if vm.initial]
        if not any(e.initiated_by == first_user for e in events):  # who set up the vault comes first
            events.append(portal.setup_event(world, world.start + 5 * MINUTE, first_user, world.vms[0].name))
        events.append(portal.key_vault_event(world, late, retry_user, 0))
        events.append(portal.key_vault_event(world, late + 7 * MINUTE, retry_user, 1))
        if cause == cat.UNDETERMINED:  # the JSON export carries no initiator at all
            ctx.layout.events_form, ctx.layout.events_name = "json", "portal/events.json"
        built = finish(ctx, world, events_extra=events, verdicts_extra=[(None, "key_vault_operation_failed", cause)])
        if recovered:
            built.severities[(None, "key_vault_operation_failed", cause)] = "warning"
        return built

    return build


# ---- part C --------------------------------------------------------------------------------------------------


def stalled_hang(ctx: Ctx) -> Built:
    world = new_world(ctx)
    vm = pick(world)
    world.hits.append(hit(vm, world.end - 7 * HOUR, None, None, state=cat.UPLOADING, hang=True, per_vm=1))
    return finish(ctx, world, verdicts_extra=[(vm.name, "replication_stalled", cat.UNDETERMINED)])


def stalled_outage(kind: str) -> Callable[[Ctx], Built]:
    """The appliance/service goes away in a quiet moment and never comes back: every VM stalls."""

    def build(ctx: Ctx) -> Built:
        world = new_world(ctx)
        dry = plan(world)
        # Two minutes clear of any cycle is quiet: with ten either side, six hourly VMs often leave no
        # quiet minute for hours, and an outage found only minutes before the end stalls nothing yet.
        start = quiet_time(dry, world.end - 8 * HOUR, world, margin=2 * MINUTE)
        world.outages.append(Outage(kind, start, NEVER))
        built = finish(ctx, world)
        replicating = sorted({c.vm.name for c in built.cycles})
        built.verdicts_extra = [(name, "replication_stalled", kind) for name in replicating]
        return built

    return build


def slow_expected(built: Built, vms: list[str], cause: str) -> None:
    """VMs whose last completed cycle is slow by CATALOGUE part C's rule get a slow_replication verdict."""
    world = built.world
    for name in vms:
        done = [c for c in built.cycles if c.vm.name == name and c.outcome == "succeeded" and c.type != INITIAL
                and c.end < world.end]
        if len(done) < 4:
            continue
        rates = [sum(c.totals) / max(1, c.phase(cat.UPLOADING)[1] - c.phase(cat.UPLOADING)[0]) for c in done]
        durations = [c.end - c.due for c in done]
        last = -1
        if rates[last] < 0.25 * statistics.median(rates) or durations[last] > 4 * statistics.median(durations):
            built.verdicts_extra.append((name, "slow_replication", cause))


def end_condition(built: Built, vm: VM) -> str | None:
    """CATALOGUE part C for one VM at the end of the bundle: `replication_stalled` when no cycle completed
    for longer than the schedule allows (an hour's grace) and none is uploading, else `slow_replication`
    when its running cycle has run, or its last completed cycle took, more than four times the median of
    its completed cycles of that type; else None."""
    world = built.world
    own = [c for c in built.cycles if c.vm is vm and c.due < world.end]
    done = [c for c in own if c.outcome == "succeeded" and c.end < world.end]
    if not done:
        return None
    last = max(done, key=lambda c: c.end)
    interval = 0 if last.type in (INITIAL, RESYNC) else min(max(HOUR, (last.end - last.due) // 2), 12 * HOUR)
    running = [c for c in own if c.end >= world.end and c.outcome != "failed"]

    def last_progress(c: Cycle) -> int | None:  # the latest progress line of the cycle the log holds
        up = c.phase(cat.UPLOADING)
        if not up or min(up[0] + MINUTE, up[1] - 100) >= world.end:
            return None
        return min(up[1], world.end)

    uploading = any((seen := last_progress(c)) is not None and world.end - seen <= HOUR for c in running)
    if world.end - (last.end + interval) > HOUR and not uploading:
        return "replication_stalled"
    for c in running[-1:] + [max(done, key=lambda c: c.due)]:
        same = [d for d in done if d.type == c.type]
        if len([d for d in same if d is not c]) < 3:
            continue
        durations = sorted(d.end - d.due for d in same)
        took = (world.end if c in running else c.end) - c.due
        if took > 4 * statistics.median(durations):
            return "slow_replication"
    return None


def slow_throttled(ctx: Ctx) -> Built:
    world = new_world(ctx)
    vm = pick(world)
    world.slows.append(Slow(frozenset([vm.name]), world.end - 8 * HOUR, NEVER, factor=14.0))
    built = finish(ctx, world)
    slow_expected(built, [vm.name], "vcenter_read_throttled")
    return built


def slow_undetermined(ctx: Ctx) -> Built:
    world = new_world(ctx)
    vm = pick(world)
    world.slows.append(Slow(frozenset([vm.name]), world.end - 6 * HOUR, NEVER, factor=1.0, churn=30.0))
    built = finish(ctx, world)
    slow_expected(built, [vm.name], cat.UNDETERMINED)
    return built


def parallel_disks(cycles: list[Cycle], host: str, a: int, b: int) -> int:
    """Most disks seen uploading at once on `host` during [a, b), as the log shows them: between a
    disk's first progress line (a minute into the upload) and its last."""
    spans = []
    for c in cycles:
        up = c.phase(cat.UPLOADING)
        if not up or c.vm.host.name != host:
            continue
        lo, hi = up[0] + 62 * SECOND, up[1] - SECOND
        if lo < b and a < hi:
            spans += [(max(lo, a), len(c.vm.disks)), (min(hi, b), -len(c.vm.disks))]
    best = now = 0
    for _, delta in sorted(spans, key=lambda s: (s[0], s[1])):
        now += delta
        best = max(best, now)
    return best


def slow_nfc(ctx: Ctx) -> Built:
    """Six VMs with three disks each on one host, reading slowly and mostly at once: more than 8 disks
    per host. A VM whose last slow cycle happened to overlap fewer disks only shows a low rate."""
    world = new_world(ctx, min_vms=7)
    host = world.hosts[0]
    crowd = world.vms[:6]
    for vm in crowd:
        vm.host = host
        while len(vm.disks) < 3:
            d = len(vm.disks)
            base = vm.disks[-1]
            vm.disks.append(type(base)(2000 + d, f"{vm.name}/{vm.name}_{d}.vmdk", base.disk_id[:-4] + f"{d:04x}",
                                       base.size, base.used))
    for vm in world.vms[6:]:
        vm.host = world.hosts[1]
    names = frozenset(v.name for v in crowd)
    world.slows.append(Slow(names, world.end - 7 * HOUR, NEVER, factor=10.0, churn=3.0))
    built = finish(ctx, world)
    for name in sorted(names):
        # the cause is judged on the cycle part C judges (the VM's pace now), in the cause's window:
        # from an hour before it started to its end (an earlier slow cycle's crowd explains nothing)
        judged = judged_cycle(built, world.vm(name))
        crowded = judged is not None and parallel_disks(built.cycles, host.name, judged.due - HOUR,
                                                         min(judged.end, world.end)) > 8
        slow_expected(built, [name], "nfc_buffer_exhausted" if crowded else "vcenter_read_throttled")
    return built


def judged_cycle(built: Built, vm: VM) -> Cycle | None:
    """The cycle CATALOGUE part C judges a VM's slowness on: the one still running at the end when it
    has run more than four times the VM's median, else the last completed one."""
    world = built.world
    done = [c for c in built.cycles if c.vm is vm and c.outcome == "succeeded" and c.end < world.end]
    running = [c for c in built.cycles if c.vm is vm and c.due < world.end <= c.end and c.outcome != "failed"]
    durations = [c.end - c.due for c in done if c.type != INITIAL]
    if running and durations and world.end - running[-1].due > 4 * statistics.median(durations):
        return running[-1]
    return max(done, key=lambda c: c.end) if done else None


# CATALOGUE "Appliance saturation" as the signatures read it: heartbeats in a row (slow_replication's
# min_queued_heartbeats) showing cycles queued, a run that touches the cause's window.
QUEUED_RUN = 2


def queued_over(built: Built, lo: int, hi: int) -> bool:
    """The heartbeats the log holds show cycles queued, QUEUED_RUN or more in a row, over [lo, hi]."""
    world = built.world
    seen = [(t, queued) for t, _, queued in gateway.heartbeat_counts(world, built.cycles)
            if (world.gateway_from or world.start) <= t and not any(a <= t < z for a, z in world.dead())]
    runs, run = [], []
    for t, queued in seen + [(NEVER, 0)]:
        if queued:
            run.append(t)
        elif run:
            runs.append(run)
            run = []
    return any(len(run) >= QUEUED_RUN and any(lo <= t <= hi for t in run) for run in runs)


def slow_overloaded(ctx: Ctx) -> Built:
    """Few slots and big deltas: cycles wait in Queued behind each other (heartbeats show queued cycles
    while every slot is busy), so they take far longer than usual at a normal upload rate. A VM whose
    judged cycle met no queue (from an hour before it to its end) is slow from its big delta alone."""
    world = new_world(ctx, min_vms=8)
    world.limit = 2
    names = frozenset(v.name for v in world.vms)
    world.slows.append(Slow(names, world.end - 7 * HOUR, NEVER, factor=1.0, churn=20.0))
    built = finish(ctx, world)
    for name in sorted(names):
        judged = judged_cycle(built, world.vm(name))
        queued = judged is not None and queued_over(built, judged.due - HOUR, min(judged.end, world.end))
        slow_expected(built, [name], "appliance_overloaded" if queued else cat.UNDETERMINED)
    return built


# ---- outages, herrings, healthy, fleet -----------------------------------------------------------------------


def healthy(ctx: Ctx) -> Built:
    ctx.layout.status_table = True
    return finish(ctx, new_world(ctx))


def outage(kind: str) -> Callable[[Ctx], Built]:
    def build(ctx: Ctx) -> Built:
        world = new_world(ctx, min_vms=4)
        for vm in world.vms:  # a busy estate: big deltas, long cycles that overlap
            vm.churn *= 6
        ctx.layout.vpxd_nested = True
        ctx.layout.vpxd_gz = True
        ctx.layout.status_table = True
        dry = plan(world)
        if kind == "storage":
            start = busiest_time(dry, at(world, 0.55), at(world, 0.75))
            world.stalls.append(Stall(start, start + 3 * HOUR, cat.UPLOADING, "disk_upload_timed_out",
                                      "cache_storage_unreachable", TIMEOUTS[cat.UPLOADING], evidence="cache_storage"))
        else:
            start = busiest_time(dry, at(world, 0.55), at(world, 0.75))
            world.outages.append(Outage(kind, start, start + 100 * MINUTE, timeout=35 * MINUTE))
        return finish(ctx, world)

    return build


def herring_transient(ctx: Ctx) -> Built:
    """Cache storage blipped for ten minutes early on and recovered; much later a VM times out for no
    visible reason. The blip explains nothing."""
    world = new_world(ctx, min_vms=2)
    start = at(world, 0.3)
    world.stalls.append(Stall(start, start + 10 * MINUTE, cat.UPLOADING, "disk_upload_timed_out",
                              "cache_storage_unreachable", TIMEOUTS[cat.UPLOADING], evidence="cache_storage"))
    vm = pick(world)
    world.hits.append(hit(vm, at(world, 0.82), "disk_upload_timed_out", cat.UNDETERMINED, per_vm=1,
                          fail_after=TIMEOUTS[cat.UPLOADING], params={"churn": 60.0}))
    return finish(ctx, world)


def herring_other_vm(ctx: Ctx) -> Built:
    """VM A fails with 'another task in progress'; the timed-out task, the backup snapshot and the
    relocate all happened on VM B. Nothing on A itself: undetermined."""
    world = new_world(ctx, min_vms=2)
    a = pick(world)
    b = pick(world, avoid=(a.name,))
    world.hits.append(hit(a, at(world, 0.8), "internal_another_task_in_progress", cat.UNDETERMINED, per_vm=1))
    built = finish(ctx, world)
    failed = next(c for c in built.cycles if c.vm is a and c.outcome == "failed")
    create = failed.phase(cat.CREATING)
    rng = world.rng("herring-b")
    specs = [
        (create[0] - 40 * MINUTE, b.moref, "vim.VirtualMachine.removeAllSnapshots", vcenter.VC_ADMIN,
         31 * MINUTE, ("vim.fault.Timedout", "Operation timed out.", ())),
        (create[0] - 2 * MINUTE, b.moref, "vim.VirtualMachine.createSnapshot", vcenter.BACKUP_USER,
         9 * MINUTE, None),
        (create[0] - 5 * HOUR, b.moref, "vim.VirtualMachine.relocate", vcenter.ADMIN_USER,
         rng.randint(10, 20) * MINUTE, None),
    ]
    built.vcenter_extra = sorted(vcenter.extra_tasks(world, specs), key=lambda r: r[0])
    return built


def herring_quiet_restart(ctx: Ctx) -> Built:
    """The service restarts while nothing runs; hours later a VM's reads crawl. The restart is history."""
    world = new_world(ctx)
    vm = pick(world)
    dry = plan(world)
    restart = quiet_time(dry, at(world, 0.55), world, margin=6 * MINUTE)
    rng = world.rng("quiet-restart")
    extra = [(restart, "Info", "1", gateway.HOST, 'Service asrgwy stopping. reason="Service restart requested by '
                                                 'CONTOSO\\admin.kim"', None),
             (restart + 2200, "Info", "1", gateway.HOST, "Service asrgwy stopped.", None)]
    extra += gateway.startup(world, restart + 2 * MINUTE + 10 * SECOND, rng)
    start = at(world, 0.8)
    world.stalls.append(Stall(start, NEVER, cat.UPLOADING, "disk_upload_timed_out", "vcenter_read_throttled",
                              TIMEOUTS[cat.UPLOADING], vms=frozenset([vm.name]), crawl=0.4))
    return finish(ctx, world, gateway_extra=extra)


def fleet(ctx: Ctx) -> Built:
    """Many VMs, mostly healthy; a spread of VM faults, one host fault, one storage blip that fails
    uploads, a quiet restart. The nested vc-support archive with gz rotations."""
    world = new_world(ctx, hosts=None, initial_share=0.2)
    lay = ctx.layout
    lay.vpxd_nested, lay.vpxd_gz, lay.gateway_gz, lay.status_table = True, True, True, True
    rng = world.rng("fleet")
    vms = list(world.vms)
    rng.shuffle(vms)
    recipes = [
        ("internal_another_task_in_progress", "conflicting_vcenter_task", {"vcenter_evidence": "backup_overlap"}),
        ("changed_blocks_fetch_failed", "cbt_reset_or_corrupt", {}),
        ("internal_snapshot_disk_size_invalid", "snapshot_disk_size_zero", {}),
        ("internal_consolidate_disks_failed", "consolidation_failed",
         {"reason": "A general system error occurred: Consolidation of the delta disks did not complete"}),
        ("storage_account_not_found", "storage_account_moved_or_deleted", {}),
        ("internal_invalid_snapshot_configuration", "disk_removed_from_vm", {"vcenter_evidence": "reconfigure"}),
    ]
    n_faulty = max(1, len(vms) // 12)
    span = world.end - world.start
    for i, vm in enumerate(vms[:n_faulty]):
        error, cause, params = recipes[i % len(recipes)]
        params = dict(params)
        start = world.start + int(span * rng.uniform(0.45, 0.9))
        if params.get("vcenter_evidence") == "reconfigure":
            params["reconfigure_at"] = start - 2 * HOUR
            if len(vm.disks) < 2:
                params.pop("vcenter_evidence")
                error, cause = "internal_snapshot_disk_size_invalid", "snapshot_disk_size_zero"
        world.hits.append(hit(vm, start, error, cause, per_vm=rng.choice((1, 2, None)), params=params))
    if len(world.hosts) > 2 and len(vms) >= 24:
        host = world.hosts[-1]
        start = world.start + int(span * 0.7)
        on_host = [v for v in world.vms if v.host is host and v.name not in {n for h in world.hits for n in h.vms}]
        if on_host:
            world.hits.append(hit(on_host, start, "internal_memory_allocation_failed", "nfc_buffer_exhausted",
                                  end=start + 2 * HOUR, params={"gateway_evidence": "nfc_alloc"}))
    blip = world.start + int(span * 0.35)
    world.stalls.append(Stall(blip, blip + 75 * MINUTE, cat.UPLOADING, "disk_upload_timed_out",
                              "cache_storage_unreachable", TIMEOUTS[cat.UPLOADING], evidence="cache_storage",
                              vms=frozenset(v.name for v in world.vms
                                            if v.name not in {n for h in world.hits for n in h.vms})))
    return finish(ctx, world)


# ---- hard cases: shapes the field shows that single-vCenter, well-behaved bundles do not ---------------------


OTHER_VCENTER = "vcsa02.contoso.local"


def two_vcenters(reverse: bool) -> Callable[[Ctx], Built]:
    """One appliance replicating from two vCenters, each with its vc-support archive. The second vCenter's
    VMs reuse the first's MoRefs (other VMs behind them) and one VM name. A VM of the first vCenter fails
    'another task in progress' after a task of its own timed out; the second vCenter's VM holding the same
    MoRef runs a backup snapshot over the failing cycle and was relocated hours before: neither is about
    the failing VM. `reverse` writes the second vCenter's archive first."""

    def build(ctx: Ctx) -> Built:
        world = new_world(ctx, min_vms=6)
        ctx.layout.vcenters_reversed = reverse
        world.other_vcenters = (OTHER_VCENTER,)
        half = len(world.vms) // 2
        first, second = world.vms[:half], world.vms[half:2 * half]
        for n, vm in enumerate(second):
            vm.vcenter = OTHER_VCENTER
            vm.moref = first[(n + 1) % half].moref  # the same MoRef names another VM there
        target, twin = first[0], second[-1]  # twin: the same name, another MoRef, another vCenter
        old = twin.name
        twin.name = target.name
        for disk in twin.disks:
            disk.file = disk.file.replace(old, twin.name)
        for vm in (target, twin):
            vm.label = f"{vm.name} ({world.vcenter_of(vm).split('.')[0]})"
        holder = next(vm for vm in second if vm.moref == target.moref)
        world.hits.append(hit(target, at(world, 0.8), "internal_another_task_in_progress", "vcenter_task_timeout",
                              per_vm=1, params={"vcenter_evidence": "task_timeout"}))
        built = finish(ctx, world)
        failed = next(c for c in built.cycles if c.vm is target and c.outcome == "failed")
        create = failed.phase(cat.CREATING)
        rng = world.rng("other-vcenter")
        specs = [
            (create[0] - 2 * MINUTE, holder.moref, "vim.VirtualMachine.createSnapshot", vcenter.BACKUP_USER,
             9 * MINUTE, None),
            (create[0] - 5 * HOUR, holder.moref, "vim.VirtualMachine.relocate", vcenter.ADMIN_USER,
             rng.randint(10, 20) * MINUTE, None),
        ]
        built.vcenter_extra_at[OTHER_VCENTER] = sorted(vcenter.extra_tasks(world, specs), key=lambda r: r[0])
        return built

    return build


def removal_timed_out(ctx: Ctx) -> Built:
    """vCenter's removal of one cycle's snapshot times out (vim.fault.Timedout) while the gateway, which
    logs only its state change to ReleasingSnapshot, completes the cycle; the next cycle's snapshot
    fails with 'Another task is already in progress'."""
    world = new_world(ctx)
    vm = pick(world)
    before = first_in(plan(world), vm, at(world, 0.75))
    world.hits.append(hit(vm, before.due + 1, "internal_another_task_in_progress", "vcenter_task_timeout",
                          per_vm=1))
    built = finish(ctx, world)
    next(c for c in built.cycles if c.vm is vm and c.cid == before.cid).release_timeout = True
    return built


def migration_wave(ctx: Ctx) -> Built:
    """A migration wave on an appliance that limits the disks it reads at once (12): six 4-disk VMs start
    their initial replication three hours before the end and take every slot, so the deltas of the VMs
    already replicating wait in Queued behind them (heartbeats show the queue). Earlier, ten 1-disk initial
    replications ran side by side without any queue: the most cycles ever active is not the limit."""
    world = new_world(ctx, min_vms=16, hosts=6)
    world.limit_unit, world.limit = "disks", 12
    rng = world.rng("wave")
    base, wave = world.vms[:-6], world.vms[-6:]
    for vm in base:
        del vm.disks[1:]
        vm.host = world.hosts[vm.index % 2]
        vm.initial, vm.first_cycle = True, 1
        vm.first_due = world.start + rng.randint(2, 12) * MINUTE
    start = world.end - 160 * MINUTE
    for n, vm in enumerate(wave):
        vm.host = world.hosts[2 + n % 4]
        vm.disks = [type(vm.disks[0])(2000 + d, f"{vm.name}/{vm.name}" + (f"_{d}" if d else "") + ".vmdk",
                                      vm.disks[0].disk_id[:-4] + f"{d:04x}", 48 * GIB, rng.randint(15, 25) * GIB)
                    for d in range(4)]
        vm.initial, vm.first_cycle = True, 1
        vm.first_due = start + rng.randint(0, 10) * MINUTE
    built = finish(ctx, world)
    for vm in world.vms:  # the wave's own deltas queue behind it too
        condition = end_condition(built, vm)
        if condition:
            built.verdicts_extra.append((vm.name, condition, "appliance_overloaded"))
    return built


# ---- format variants: each a simple scenario with one known failure ---------------------------------------------


def variant(base: Callable[[Ctx], Built], **layout) -> Callable[[Ctx], Built]:
    def build(ctx: Ctx) -> Built:
        for key, value in layout.items():
            setattr(ctx.layout, key, value)
        return base(ctx)

    return build


# ---- the registry -------------------------------------------------------------------------------------------------

_VM_CAUSES: dict[tuple[str, str], tuple[str, Callable[[Ctx], Built]]] = {
    ("changed_blocks_fetch_failed", "cbt_reset_by_storage_vmotion"):
        ("Storage vMotion of the VM three hours before; the next delta cannot fetch changed blocks",
         vm_failure("changed_blocks_fetch_failed", "cbt_reset_by_storage_vmotion", evidence="relocate",
                    before=3 * HOUR, move=True)),
    ("changed_blocks_fetch_failed", "cbt_reset_or_corrupt"):
        ("queryChangedDiskAreas fails with a CBT fault (cbt.cannotGetChanges)",
         vm_failure("changed_blocks_fetch_failed", "cbt_reset_or_corrupt", esxi="loose")),
    ("internal_server_refused_connection", "vddk_known_issue"):
        ("VDDK 6.7 on the appliance; disk reads refused",
         vm_failure("internal_server_refused_connection", "vddk_known_issue", vddk="6.7.0")),
    ("internal_server_refused_connection", cat.UNDETERMINED):
        ("disk reads refused, but the appliance runs VDDK 7.0.3 (rules out the 6.7 issue)",
         vm_failure("internal_server_refused_connection", cat.UNDETERMINED)),
    ("internal_invalid_snapshot_configuration", "disk_removed_from_vm"):
        ("a disk removed from a multi-disk VM two hours before; snapshots then fail",
         vm_failure("internal_invalid_snapshot_configuration", "disk_removed_from_vm", disks=2,
                    evidence="reconfigure", before=2 * HOUR)),
    ("internal_generate_snapshot_hung", "snapshot_creation_stuck"):
        ("the VM's createSnapshot task sits at 95 % and never finishes",
         vm_failure("internal_generate_snapshot_hung", "snapshot_creation_stuck", persist=False, retry=False,
                    fail_after=35 * MINUTE, before_end=100 * MINUTE, params={"stuck_at": 95})),
    ("internal_consolidate_disks_failed", "disk_locked"):
        ("consolidation fails: a delta disk is locked (FileLocked)",
         vm_failure("internal_consolidate_disks_failed", "disk_locked",
                    params={"reason": "Unable to access file [{ds}] {vm}/{vm}-000001.vmdk since it is locked"},
                    esxi="vm-support")),
    ("internal_consolidate_disks_failed", "consolidation_failed"):
        ("consolidation fails with a general system error",
         vm_failure("internal_consolidate_disks_failed", "consolidation_failed",
                    params={"reason": "A general system error occurred: Consolidation of the delta disks did not "
                                      "complete"})),
    ("internal_another_task_in_progress", "conflicting_vcenter_task"):
        ("a backup product's snapshot task (svc-veeam) overlaps each cycle",
         vm_failure("internal_another_task_in_progress", "conflicting_vcenter_task", evidence="backup_overlap")),
    ("internal_another_task_in_progress", "vcenter_task_timeout"):
        ("a task on the VM timed out in vCenter shortly before each cycle",
         vm_failure("internal_another_task_in_progress", "vcenter_task_timeout", evidence="task_timeout")),
    ("internal_another_task_in_progress", cat.UNDETERMINED):
        ("TaskInProgress with no other task on the VM in vCenter",
         vm_failure("internal_another_task_in_progress", cat.UNDETERMINED)),
    ("internal_operation_not_allowed", "host_management_agent_down"):
        ("the VM's ESXi host stops responding; snapshots of its VMs fail for three hours",
         vm_failure("internal_operation_not_allowed", "host_management_agent_down", evidence="host_down",
                    host_scope=True, start_fraction=0.7, window=3 * HOUR)),
    ("internal_snapshot_disk_size_invalid", "snapshot_disk_size_zero"):
        ("the snapshot reports a disk of size 0 (known VMware issue)",
         vm_failure("internal_snapshot_disk_size_invalid", "snapshot_disk_size_zero")),
    ("internal_memory_allocation_failed", "nfc_buffer_exhausted"):
        ("NFC allocation failures on one host; uploads of its VMs fail for two hours",
         vm_failure("internal_memory_allocation_failed", "nfc_buffer_exhausted", gateway_evidence="nfc_alloc",
                    host_scope=True, start_fraction=0.72, window=2 * HOUR, esxi="vm-support", esxi_version=8,
                    vddk_log=True)),
    ("no_disk_snapshots_found", "disk_path_changed_by_storage_vmotion"):
        ("Storage vMotion moved the disks; the cycle finds no disk snapshots",
         vm_failure("no_disk_snapshots_found", "disk_path_changed_by_storage_vmotion", evidence="relocate",
                    before=2 * HOUR, move=True)),
    ("no_disk_snapshots_found", "disk_detached"):
        ("an included disk was detached by a reconfigure",
         vm_failure("no_disk_snapshots_found", "disk_detached", disks=2, evidence="reconfigure", before=90 * MINUTE)),
    ("no_disk_snapshots_found", cat.UNDETERMINED):
        ("no disk snapshots found, and no relocate or reconfigure of the VM",
         vm_failure("no_disk_snapshots_found", cat.UNDETERMINED)),
    ("internal_file_larger_than_max", "snapshot_file_too_large"):
        ("createSnapshot fails with FileTooLarge",
         vm_failure("internal_file_larger_than_max", "snapshot_file_too_large")),
    ("internal_cannot_connect_to_host", "esxi_host_network_unreachable"):
        ("disk reads cannot reach the ESXi host",
         vm_failure("internal_cannot_connect_to_host", "esxi_host_network_unreachable")),
    ("invalid_change_tracker", "datastore_problem"):
        ("createSnapshot fails saving the change tracker",
         vm_failure("invalid_change_tracker", "datastore_problem")),
    ("unable_to_open_snapshot_file", "datastore_out_of_space"):
        ("the datastore runs full; createSnapshot cannot open the snapshot file",
         vm_failure("unable_to_open_snapshot_file", "datastore_out_of_space", evidence="datastore_full",
                    esxi="loose", esxi_version=8)),
    ("host_connection_refused", "esxi_hostname_unresolvable"):
        ("the appliance cannot resolve the ESXi host name (No such host is known)",
         vm_failure("host_connection_refused", "esxi_hostname_unresolvable", gateway_evidence="dns",
                    host_scope=True, start_fraction=0.75, window=3 * HOUR)),
    ("host_connection_refused", "port_902_blocked"):
        ("NFC connections to the host's port 902 fail",
         vm_failure("host_connection_refused", "port_902_blocked", gateway_evidence="port902", host_scope=True,
                    start_fraction=0.75, window=3 * HOUR, vddk_log=True)),
    ("host_connection_refused", cat.UNDETERMINED):
        ("the host refuses the appliance, with no DNS or port 902 failure logged",
         vm_failure("host_connection_refused", cat.UNDETERMINED)),
    ("protection_readiness_snapshots_present", "existing_snapshots_block_cbt"):
        ("a VM added late with existing snapshots cannot start replicating", readiness_failure),
    ("storage_account_not_found", "storage_account_moved_or_deleted"):
        ("the replication storage account is gone", vm_failure("storage_account_not_found",
                                                                "storage_account_moved_or_deleted")),
    ("state_container_not_found", "replication_disabled"):
        ("the VM's replication state no longer exists in the service",
         vm_failure("state_container_not_found", "replication_disabled")),
    ("subscription_snapshot_throttled", "subscription_snapshot_rate_limit"):
        ("Azure throttles snapshot operations in the subscription",
         vm_failure("subscription_snapshot_throttled", "subscription_snapshot_rate_limit")),
    ("resync_snapshot_missing", "resync_snapshot_deleted"):
        ("resync cycles fail: their snapshot was deleted",
         vm_failure("resync_snapshot_missing", "resync_snapshot_deleted", cycle_type=RESYNC)),
    ("insufficient_key_vault_permissions", "key_vault_permissions_removed"):
        ("the appliance lost its Key Vault permissions",
         vm_failure("insufficient_key_vault_permissions", "key_vault_permissions_removed")),
    ("disk_change_id_unavailable", "cbt_disabled_or_independent_disk"):
        ("the snapshot's change id is missing (CBT off or independent disk)",
         vm_failure("disk_change_id_unavailable", "cbt_disabled_or_independent_disk")),
    ("rdm_physical_mode_disk", "physical_mode_rdm"):
        ("a physical-mode RDM disk cannot be snapshotted",
         vm_failure("rdm_physical_mode_disk", "physical_mode_rdm")),
    ("disk_download_timed_out", "download_service_degraded"):
        ("downloads of disk data time out on the service side",
         vm_failure("disk_download_timed_out", "download_service_degraded")),
    ("change_tracking_reset", "cbt_reset_by_storage_vmotion"):
        ("Storage vMotion resets CBT; the service reports ChangeBlockTrackingReset",
         vm_failure("change_tracking_reset", "cbt_reset_by_storage_vmotion", evidence="relocate", before=3 * HOUR,
                    move=True)),
    ("change_tracking_reset", "cbt_reset_or_corrupt"):
        ("CBT fault (cbt.noEpoch) on the VM's disk",
         vm_failure("change_tracking_reset", "cbt_reset_or_corrupt", params={"cbt_key": "vim.hostd.vmsvc.cbt.noEpoch"})),
    ("change_tracking_reset", cat.UNDETERMINED):
        ("ChangeBlockTrackingReset with no relocate and no CBT fault in vCenter",
         vm_failure("change_tracking_reset", cat.UNDETERMINED)),
    ("vmware_generic_failure", "vmware_operation_failed"):
        ("createSnapshot fails with a general VMware system error",
         vm_failure("vmware_generic_failure", "vmware_operation_failed",
                    params={"reason": "A general system error occurred: vix error code = 21001"})),
}


def _timeout_scenarios() -> dict[tuple[str, str], tuple[str, Callable[[Ctx], Built]]]:
    out = {}
    for error in ("dispose_artefacts_timed_out", "component_timed_out", "disk_upload_timed_out"):
        state = cat.ERRORS[error].state
        out[(error, "appliance_down")] = (
            f"the appliance goes silent while a cycle is in {state}", appliance_outage("appliance_down", error))
        out[(error, "gateway_service_down")] = (
            f"the gateway service stops (Critical, stopping, stopped) while a cycle is in {state}",
            appliance_outage("gateway_service_down", error))
        causes = ["gateway_storage_unreachable"] if error != "disk_upload_timed_out" else ["cache_storage_unreachable"]
        for cause in causes + ["service_bus_unreachable", "event_hub_unreachable", "key_vault_unreachable"]:
            endpoint = EVIDENCE_OF[cause].replace("_", " ")
            out[(error, cause)] = (f"{endpoint} unreachable for 2.5 hours; every cycle reaching {state} fails",
                                   endpoint_outage(cause, error))
    out[("disk_upload_timed_out", "vcenter_read_throttled")] = (
        "one VM's disk reads crawl at 0.4 MB/s with no connectivity failure", read_throttled)
    out[("disk_upload_timed_out", cat.UNDETERMINED)] = (
        "a huge delta at the usual rate times out; nothing points at a cause", upload_undetermined)
    out[("dispose_artefacts_timed_out", cat.UNDETERMINED)] = (
        "the failure predates the gateway log in the bundle (older files rotated away)", dispose_not_covered)
    out[("component_timed_out", cat.UNDETERMINED)] = (
        "a cycle sits in QueryingChangedBlocks until the service gives up; no evidence",
        stuck_undetermined("component_timed_out"))
    return out


def _error_cause_scenarios() -> dict[str, Scenario]:
    table = {**_timeout_scenarios(), **_VM_CAUSES}
    for cause in ("csp_remote_user", "access_policy_missing_for_user", cat.UNDETERMINED):
        what = {"csp_remote_user": "a guest (#EXT#) partner admin enables replication",
                "access_policy_missing_for_user": "a second user retries after the first one created the vault",
                cat.UNDETERMINED: "the events come as JSON, which carries no initiator"}[cause]
        table[("key_vault_operation_failed", cause)] = (f"Key Vault failure while enabling replication: {what}",
                                                       key_vault(cause))
    table[("replication_stalled", cat.UNDETERMINED)] = (
        "one VM's upload stops moving for its last seven hours; no error anywhere", stalled_hang)
    table[("replication_stalled", "gateway_service_down")] = (
        "the service stops in a quiet moment eight hours before the end and never returns",
        stalled_outage("gateway_service_down"))
    table[("replication_stalled", "appliance_down")] = (
        "the appliance goes silent in a quiet moment eight hours before the end", stalled_outage("appliance_down"))
    table[("slow_replication", "vcenter_read_throttled")] = (
        "one VM's reads drop to a fourteenth of its usual rate for the last eight hours", slow_throttled)
    table[("slow_replication", "nfc_buffer_exhausted")] = (
        "six 3-disk VMs on one host read slowly, mostly at once (more than 8 disks in parallel)", slow_nfc)
    table[("slow_replication", "appliance_overloaded")] = (
        "two slots for eight VMs with big deltas: cycles queue, heartbeats show queued cycles at the limit", slow_overloaded)
    table[("slow_replication", cat.UNDETERMINED)] = (
        "one VM's deltas grow thirtyfold at its usual rate: much longer cycles, no cause", slow_undetermined)
    out = {}
    for (error, cause), (description, build) in table.items():
        name = f"{error}--{cause}"
        min_vms = {"slow_replication--nfc_buffer_exhausted": 7, "slow_replication--appliance_overloaded": 8}.get(name, 1)
        out[name] = Scenario(name, f"{error} / {cause}: {description}", build, min_vms=min_vms)
    return out


def _others() -> dict[str, Scenario]:
    cases = [
        Scenario("healthy", "an appliance replicating every VM without a single failure", healthy),
        Scenario("outage-gateway-service", "the gateway service crashes at the busiest moment; in-flight cycles of "
                 "many VMs fail (nested vc-support tgz, gz rotations)", outage("gateway_service_down"), min_vms=4),
        Scenario("outage-appliance-down", "the appliance goes silent for 100 minutes at the busiest moment; "
                 "in-flight cycles fail", outage("appliance_down"), min_vms=4),
        Scenario("outage-storage", "the cache storage account is unreachable for three hours; uploads of many VMs "
                 "time out", outage("storage"), min_vms=4),
        Scenario("herring-transient-recovered", "a ten-minute storage blip that recovered hours before an "
                 "unexplained upload timeout (expected: undetermined)", herring_transient, min_vms=2),
        Scenario("herring-other-vm-error", "'another task in progress' on one VM while the timed-out task, "
                 "backup snapshot and relocate are on another VM (expected: undetermined)", herring_other_vm,
                 min_vms=2),
        Scenario("herring-quiet-restart", "a service restart in a quiet period, hours before a VM's reads crawl "
                 "(expected: vcenter_read_throttled)", herring_quiet_restart),
        Scenario("fleet", "many VMs, mostly healthy: a spread of VM faults, a host NFC fault, a storage blip; "
                 "used for scale with --size", fleet),
        Scenario("format-vpxd55", "vpxd in the 5.5-6.0 layout (-07:00 offsets): a backup task conflicts",
                 variant(_VM_CAUSES[("internal_another_task_in_progress", "conflicting_vcenter_task")][1],
                         vpxd_layout="vpxd55", vcenter_tz=-420)),
        Scenario("format-win5x", "vpxd in the Windows 5.x layout, naive local times, cp1252, CRLF, "
                 "bundle.toml vcenter_tz: Storage vMotion then changed blocks fail",
                 variant(_VM_CAUSES[("changed_blocks_fetch_failed", "cbt_reset_by_storage_vmotion")][1],
                         vpxd_layout="win5x", vcenter_tz=120, vpxd_encoding="cp1252", vpxd_newline="\r\n",
                         toml={"vcenter_tz": "+02:00", "ticket": "2405150010004471"})),
        Scenario("format-naive-tz", "gateway log with naive local times and bundle.toml appliance_tz = +09:00: "
                 "cache storage unreachable",
                 variant(endpoint_outage("cache_storage_unreachable", "disk_upload_timed_out"), gateway_style="naive",
                         gateway_tz=540, toml={"appliance_tz": "+09:00", "ticket": "2405140010001234"})),
        Scenario("format-utf16-events", "events exported by the Korean portal as UTF-16 LE CSV with BOM "
                 "(Korean times, portal_tz +09:00): gateway storage unreachable",
                 variant(endpoint_outage("gateway_storage_unreachable", "dispose_artefacts_timed_out"),
                         events_encoding="utf-16", events_time="ko", events_korean=True, portal_tz=540,
                         events_name="portal/복제 이벤트.csv", toml={"portal_tz": "+09:00"})),
        Scenario("format-json-events", "events as az site-recovery event list JSON: NFC buffer exhausted on a host",
                 variant(_VM_CAUSES[("internal_memory_allocation_failed", "nfc_buffer_exhausted")][1],
                         events_form="json", events_name="portal/az-event-list.json")),
        Scenario("format-text-events", "error details pasted as text (US display times): reads throttled",
                 variant(read_throttled, events_form="text", events_name="portal/error-details.txt",
                         events_encoding="utf-8", toml={"portal_tz": "+00:00"})),
        Scenario("format-renamed", "renamed files: the gateway log is notes.txt, vpxd is vcenter-dump.txt, "
                 "events are export (1).csv: a locked disk blocks consolidation",
                 variant(_VM_CAUSES[("internal_consolidate_disks_failed", "disk_locked")][1],
                         gateway_single="notes.txt", vpxd_single="logs/vcenter-dump.txt",
                         events_name="export (1).csv")),
        Scenario("esxi-cbt-vm-support", "ChangeBlockTrackingReset; vCenter shows only a file fault on the -ctk.vmdk, "
                 "the host's vm-support archive (vmware.log, hostd.log) says change tracking is invalid",
                 vm_failure("change_tracking_reset", "cbt_reset_or_corrupt", params={"vcenter_cbt": "file_fault"},
                            esxi="vm-support")),
        Scenario("pasted-only", "no gateway log, no vpxd, no portal export: the portal's error blade pasted as "
                 "text, the VM's vmware.log and the host's hostd.log (ESXi 8) and the VDDK log, loose: the "
                 "datastore ran out of space",
                 variant(vm_failure("unable_to_open_snapshot_file", "datastore_out_of_space", esxi="loose",
                                    esxi_version=8, vddk_log=True),
                         pasted_only=True, events_form="text", events_name="ticket/portal-error-details.txt",
                         events_encoding="utf-8", toml={"portal_tz": "+00:00"})),
        Scenario("format-nested-gz", "vpxd rotations as .gz inside a nested vc-support tgz, gateway rotations "
                 "as .gz, JSON events wrapped in value: a host stops responding",
                 variant(_VM_CAUSES[("internal_operation_not_allowed", "host_management_agent_down")][1],
                         vpxd_nested=True, vpxd_gz=True, gateway_gz=True, events_form="json", events_wrapped=True,
                         events_name="portal/events.json")),
        # hard cases (issue 18): each once broke a verdict on bundles nobody on the team generated
        Scenario("vcenters-shared-morefs", "two vCenters (two vc-support archives) reuse MoRefs and a VM name; a "
                 "VM of the first fails after a task of its own timed out while the other vCenter's VM with its "
                 "MoRef runs a backup snapshot (expected: vcenter_task_timeout)", two_vcenters(False), min_vms=6),
        Scenario("vcenters-shared-morefs-reversed", "as vcenters-shared-morefs, the second vCenter's archive first",
                 two_vcenters(True), min_vms=6),
        Scenario("format-tgz-late-toml", "a tgz whose bundle.toml (appliance_tz = +09:00 for a naive gateway "
                 "log) comes after the logs: cache storage unreachable",
                 variant(endpoint_outage("cache_storage_unreachable", "disk_upload_timed_out"), gateway_style="naive",
                         gateway_tz=540, toml={"appliance_tz": "+09:00", "ticket": "2405140010009876"},
                         archive="tgz", toml_last=True)),
        Scenario("format-quoted-vm-name", "the error text names its VM in quotes (on VM 'ERP08': ...): a locked "
                 "delta disk blocks consolidation",
                 vm_failure("internal_consolidate_disks_failed", "disk_locked",
                            params={"reason": "Unable to access file [{ds}] {vm}/{vm}-000001.vmdk since it is locked",
                                    "quote_vm": True})),
        Scenario("snapshot-removal-timed-out", "vCenter's removal of a snapshot times out while the gateway shows "
                 "only ReleasingSnapshot; the next cycle meets 'another task in progress' (expected: "
                 "vcenter_task_timeout)", removal_timed_out),
        Scenario("slow-migration-wave", "a wave of 4-disk initial replications fills a disk-limited appliance; "
                 "deltas of the other VMs wait queued (expected: appliance_overloaded)", migration_wave, min_vms=16),
        Scenario("key-vault-recovered", "Key Vault failures while a second user enables replication, then the "
                 "same user's enable succeeds (expected: a warning, not critical)",
                 key_vault("access_policy_missing_for_user", recovered=True)),
    ]
    return {s.name: s for s in cases}


SCENARIOS: dict[str, Scenario] = dict(sorted({**_error_cause_scenarios(), **_others()}.items()))


def covered_errors() -> set[str]:
    """Error ids that have at least one scenario (names before `--`)."""
    return {name.split("--")[0] for name in SCENARIOS if "--" in name}


def build(name: str, seed: int, vms: int, days: float, size: int | None = None) -> Built:
    scenario = SCENARIOS[name]
    ctx = Ctx(name, seed, max(vms, scenario.min_vms), max(days, scenario.min_days), size)
    return scenario.build(ctx)


