"""From a planned world to a bundle on disk: which members exist, in which formats, and the expected
verdicts that go beside it.
"""

from __future__ import annotations

import bisect
import json
import math
import random
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Iterable, Iterator

from analyzer.sample import clock, esxi, gateway, portal, vcenter
from analyzer.sample.clock import DAY, MINUTE
from analyzer.sample.world import NEVER, Cycle, World
from analyzer.sample.writer import (WINDOW, Encoder, Padder, Part, TarContainer, TgzBundle, VcenterFormatter,
                                    ZipContainer, gateway_formatter, merged, write_log, write_text)

VPXD_LEAD = 30 * MINUTE  # vpxd reaches back a little before the appliance's log
VPXD_TAIL = 5 * MINUTE  # ... and goes on a little after (collected later)
SETUP_USER = "alice@contoso.com"  # who enabled replication of the VMs that start inside the bundle


@dataclass
class Layout:
    """How the bundle is laid out and encoded (the format variants change these)."""

    gateway_dir: str = "appliance/Logs"
    gateway_name: str = "GatewayService"
    gateway_single: str | None = None  # one renamed file instead of rotations
    gateway_style: str = "z"  # z | offset | naive
    gateway_tz: int = 0  # minutes, for offset/naive
    gateway_newline: str = "\r\n"
    gateway_gz: bool = False  # older rotations as .gz
    vpxd_layout: str = "vpxd65"  # vpxd65 | vpxd55 | win5x
    vcenter_tz: int = 0  # minutes, local time of vpxd55/win5x
    vpxd_nested: bool = False  # inside vc-<name>-<date>.tgz under var/log/vmware/vpxd/
    vpxd_gz: bool = False
    vpxd_dir: str = "vcenter"
    vpxd_single: str | None = None
    vpxd_encoding: str = "utf-8"
    vpxd_newline: str = "\n"
    events_form: str = "csv"  # csv | json | text
    events_name: str = "portal/replication-events.csv"
    events_encoding: str = "utf-8-sig"
    events_time: str = "iso"  # iso | us | ko
    events_korean: bool = False
    events_wrapped: bool = False  # JSON as {"value": [...]}
    portal_tz: int = 0
    status_table: bool = False
    toml: dict = field(default_factory=dict)
    archive: str = "zip"  # zip | tgz: the bundle itself
    toml_last: bool = False  # bundle.toml after every other member (archive order of `tar czf`)
    vcenters_reversed: bool = False  # several vCenters: their vc-support archives in reverse order
    esxi: str = ""  # where ESXi logs of traced failures go: "" (none) | vm-support | loose
    esxi_version: int = 7  # 7: pipe vmware.log, `info hostd[..]`; 8: `In(05) vmx`, `In(166) Hostd[..]:`
    vddk_log: bool = False  # the appliance's VDDK client log
    pasted_only: bool = False  # no gateway log or vpxd: the portal's errors pasted as text, loose logs


@dataclass
class Built:
    """A scenario, planned and ready to write."""

    world: World
    cycles: list[Cycle]
    layout: Layout
    gateway_extra: list[tuple] = field(default_factory=list)
    vcenter_extra: list[tuple] = field(default_factory=list)
    events_extra: list[portal.Event] = field(default_factory=list)
    verdicts_extra: list[tuple[str | None, str, str]] = field(default_factory=list)  # no cycle carries these
    vcenter_extra_at: dict[str, list[tuple]] = field(default_factory=dict)  # extras of the other vCenters
    severities: dict[tuple, str] = field(default_factory=dict)  # (vm, error, cause) -> severity, where known


# ---- expected verdicts ------------------------------------------------------------------------------


def visible(world: World, c: Cycle) -> bool:
    """The failure shows somewhere in the bundle by its end (gateway failed line or portal event)."""
    if c.outcome != "failed" or c.error is None:
        return False
    gw_from = world.gateway_from or world.start
    if c.killed is not None:
        gw_line = c.reconcile
    else:
        gw_line = c.phases[-1][2]
    seen_gateway = gw_line is not None and gw_from <= gw_line < world.end
    seen_portal = c.portal is not None and world.start <= c.portal < world.end
    return seen_gateway or seen_portal


def expected_verdicts(built: Built) -> list[dict]:
    triples = set()
    for c in built.cycles:
        if visible(built.world, c):
            triples.add((c.vm.label or c.vm.name, c.error, c.cause))
    triples.update(built.verdicts_extra)
    rows = [{"vm": vm, "error": err, "cause": cause} for vm, err, cause in triples]
    for row in rows:
        severity = built.severities.get((row["vm"], row["error"], row["cause"]))
        if severity:
            row["severity"] = severity
    return sorted(rows, key=lambda r: (r["vm"] or "", r["error"], r["cause"]))


def expected_json(name: str, seed: int, built: Built) -> str:
    doc = {"scenario": name, "seed": seed, "verdicts": expected_verdicts(built)}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# ---- streams ------------------------------------------------------------------------------------------


def _per_vm(world: World, cycles: list[Cycle], render) -> list[Iterator[tuple]]:
    by_vm: dict[int, list[Cycle]] = {}
    for c in cycles:
        by_vm.setdefault(c.vm.index, []).append(c)
    return [chain.from_iterable(render(world, c) for c in own) for own in by_vm.values()]


def _between(records: Iterable[tuple], lo: int, hi: int, dead: list[tuple[int, int]] = ()) -> Iterator[tuple]:
    dead = sorted(dead)
    i = 0
    for rec in records:
        ms = rec[0]
        if ms < lo:
            continue
        if ms >= hi:
            break
        while i < len(dead) and dead[i][1] <= ms:
            i += 1
        if i < len(dead) and dead[i][0] <= ms:
            continue
        yield rec


def gateway_stream(built: Built) -> Iterator[tuple]:
    world = built.world
    extra = list(built.gateway_extra)
    for stall in world.stalls:
        if stall.evidence:
            extra += gateway.stall_evidence(world, stall)
    fixed = gateway.lifecycle_records(world, extra)
    streams = _per_vm(world, built.cycles, gateway.cycle_records)
    streams += [gateway.heartbeats(world, built.cycles), gateway.noise(world), fixed]
    return _between(merged(streams), world.gateway_from or world.start, world.end, world.dead())


def vcenter_stream(built: Built, vc: str | None = None) -> Iterator[tuple]:
    """vpxd records of one vCenter (`vc`: one of world.other_vcenters, else the first)."""
    world = built.world
    cycles = [c for c in built.cycles if world.vcenter_of(c.vm) == (vc or world.vcenter)]
    fixed = (vcenter.hit_evidence(world, cycles) + vcenter.other_vm_tasks(world, vc)
             + list(built.vcenter_extra_at.get(vc, []) if vc else built.vcenter_extra))
    fixed.sort(key=lambda r: r[0])
    streams = _per_vm(world, cycles, vcenter.cycle_records)
    streams += [vcenter.noise(world, vc), fixed]
    return _between(merged(streams), world.start - VPXD_LEAD, world.end + VPXD_TAIL)


# ---- padding content -----------------------------------------------------------------------------------


def _gateway_bodies(world: World) -> list[str]:
    rng = random.Random(f"{world.seed}/{world.name}/pad-gw")
    bodies = []
    for i in range(96):
        vm = world.vms[rng.randrange(len(world.vms))]
        th = rng.randint(5, 70)
        kind = i % 6
        if kind == 0:
            msg = f"Verbose [{th}] {gateway.ENGINE} - Replication settings verified. vm={vm.name} vmId={vm.moref} policy=Default"
        elif kind == 1:
            msg = (f"Verbose [{th}] {gateway.SERVICE_BUS} - Polled for work items. entity=snapshotmanager "
                   f"pending={rng.randint(0, 3)}")
        elif kind == 2:
            msg = (f"Verbose [{th}] Gateway.Service.DataPlane.BufferPool - Buffer pool statistics. "
                   f"rented={rng.randint(0, 64)} returned={rng.randint(0, 64)} sizeMB=256")
        elif kind == 3:
            msg = (f"Verbose [{th}] Gateway.Service.VMware.VimClient - Property collector update received. "
                   f"version={rng.randint(1000, 99999)} objects={rng.randint(1, 40)}")
        elif kind == 4:
            msg = (f"Info [{th}] {gateway.MONITOR} - Resource usage. cpuPercent={rng.randint(4, 60)} "
                   f"memoryMB={rng.randint(1800, 5200)} handles={rng.randint(1200, 2400)}")
        else:
            msg = (f"Verbose [{th}] Gateway.Service.DataPlane.ChunkTracker - Chunk map flushed. vm={vm.name} "
                   f"diskId={vm.disks[0].disk_id} chunks={rng.randint(10, 5000)}")
        bodies.append(" " + msg)
    return bodies


def _vcenter_bodies(world: World, layout: str) -> list[str]:
    rng = random.Random(f"{world.seed}/{world.name}/pad-vc")
    fmt = VcenterFormatter(layout, 0, 0, "pad")
    bodies = []
    for i in range(96):
        host = world.hosts[rng.randrange(len(world.hosts))]
        op = f"{rng.getrandbits(32):08x}"
        kind = i % 3
        if kind == 0:
            rec = (0, "verbose", "PropertyProvider", f"ProcessAlarmFiring-{op}",
                   f'RecordOp ASSIGN: declaredAlarmState["alarm-{rng.randint(1, 90)}.{host.moref}"], {host.moref}. '
                   f"Applied change to temp map.", None, None, None, 0)
        elif kind == 1:
            rec = (0, "verbose", "Default", op,
                   f"[VpxVmomi] Invoke done: vmodl.query.PropertyCollector.waitForUpdatesEx session: "
                   f"52{op[:6]}-{op[2:6]}-{op[4:8]}-{op[1:5]}-{op}{op[:4]}", None, None, None, 0)
        else:
            rec = (0, "info", "MoCluster", f"HB-{host.moref}@{rng.randint(1000, 9999)}-{op}",
                   f"Host [vim.HostSystem:{host.moref},{host.name}] has 1 HDCS resources", None, None, None, 0)
        line = fmt(rec)
        # drop the formatter's timestamp (the padder writes its own)
        if layout == "win5x":
            bodies.append(line[1 + 23:])
        else:
            cut = line.index(" ")
            bodies.append(line[cut:])
    return bodies


def _padders(built: Built, size: int | None) -> tuple[Padder | None, Padder | None]:
    if not size:
        return None, None
    world, lay = built.world, built.layout
    if lay.gateway_style == "naive":
        gw_stamp, gw_off = "%Y-%m-%d %H:%M:%S%.3f", lay.gateway_tz * MINUTE
    elif lay.gateway_style == "offset":
        gw_stamp, gw_off = "%Y-%m-%dT%H:%M:%S%.3f" + clock.offset_text(lay.gateway_tz), lay.gateway_tz * MINUTE
    else:
        gw_stamp, gw_off = "%Y-%m-%dT%H:%M:%S%.3fZ", 0
    gw = Padder(int(size * 0.45), world.gateway_from or world.start, world.end, _gateway_bodies(world),
                gw_stamp, gw_off, seed=world.seed)
    if lay.vpxd_layout == "vpxd65":
        vc_stamp, vc_off, prefix = "%Y-%m-%dT%H:%M:%S%.3fZ", world.skew, ""
    elif lay.vpxd_layout == "vpxd55":
        vc_stamp = "%Y-%m-%dT%H:%M:%S%.3f" + clock.offset_text(lay.vcenter_tz)
        vc_off, prefix = world.skew + lay.vcenter_tz * MINUTE, ""
    else:
        vc_stamp, vc_off, prefix = "%Y-%m-%d %H:%M:%S%.3f", world.skew + lay.vcenter_tz * MINUTE, "["
    vc = Padder(int(size * 0.55), world.start - VPXD_LEAD, world.end + VPXD_TAIL,
                _vcenter_bodies(world, lay.vpxd_layout), vc_stamp, vc_off, prefix, seed=world.seed + 1)
    return gw, vc


# ---- members ---------------------------------------------------------------------------------------------


def _day_parts(container, start: int, end: int, names) -> list[Part]:
    """One part per day of [start, end) (per half when it is shorter than two days, so there is
    always a rotation); `names(k, n)` -> (member name, gz) for part k of n (0 = oldest)."""
    period = DAY if end - start >= 2 * DAY else max(WINDOW, (end - start) // 2 // WINDOW * WINDOW)
    n = max(1, math.ceil((end - start) / period))
    parts = []
    for k in range(n):
        name, gz = names(k, n)
        until = start + (k + 1) * period if k < n - 1 else NEVER
        parts.append(Part(container, name, until, gz))
    return parts


def _gateway_parts(zc: ZipContainer, built: Built) -> list[Part]:
    world, lay = built.world, built.layout
    if lay.gateway_single:
        return [Part(zc, lay.gateway_single, NEVER)]
    start = world.gateway_from or world.start
    start -= (start - world.start) % DAY

    def names(k, n):
        age = n - 1 - k
        if age == 0:
            return f"{lay.gateway_dir}/{lay.gateway_name}.log", False
        gz = lay.gateway_gz and age > 0
        return f"{lay.gateway_dir}/{lay.gateway_name}.log.{age}" + (".gz" if gz else ""), gz

    return _day_parts(zc, start, world.end, names)


def _vpxd_parts(container, built: Built) -> list[Part]:
    world, lay = built.world, built.layout
    if lay.vpxd_single:
        return [Part(container, lay.vpxd_single, NEVER)]
    first = 11 + world.seed % 7
    directory = "var/log/vmware/vpxd" if lay.vpxd_nested else lay.vpxd_dir

    def names(k, n):
        newest = k == n - 1
        gz = lay.vpxd_gz and not newest
        return f"{directory}/vpxd-{first + k}.log" + (".gz" if gz else ""), gz

    return _day_parts(container, world.start, world.end, names)


def _toml(values: dict) -> str:
    lines = ["# written by the support engineer who collected this bundle"]
    for key, value in values.items():
        lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


def _write_appliance_and_vcenter(zc, built: Built, out_dir: Path, name: str, seed: int,
                                  size: int | None) -> None:
    world, lay = built.world, built.layout
    gw_pad, vc_pad = _padders(built, size)
    write_log(gateway_stream(built), gateway_formatter(lay.gateway_style, lay.gateway_tz),
              _gateway_parts(zc, built), lambda: Encoder("utf-8", lay.gateway_newline), gw_pad)
    if world.other_vcenters:  # one vc-support archive per vCenter
        order = list(world.vcenters())
        for n, vc in enumerate(order[::-1] if lay.vcenters_reversed else order):
            container = TarContainer(zc, _vc_support_name(vc, world, seed + n), out_dir)
            formatter = VcenterFormatter(lay.vpxd_layout, world.skew, lay.vcenter_tz, f"{seed}/{name}/{vc}")
            write_log(vcenter_stream(built, None if vc == world.vcenter else vc), formatter,
                      _vpxd_parts(container, built), lambda: Encoder(lay.vpxd_encoding, lay.vpxd_newline))
            container.close()
        return
    container = TarContainer(zc, _vc_support_name(world.vcenter, world, seed), out_dir) if lay.vpxd_nested else zc
    formatter = VcenterFormatter(lay.vpxd_layout, world.skew, lay.vcenter_tz, f"{seed}/{name}")
    write_log(vcenter_stream(built), formatter, _vpxd_parts(container, built),
              lambda: Encoder(lay.vpxd_encoding, lay.vpxd_newline), vc_pad)
    if container is not zc:
        container.close()


def _lines(records: list[tuple], fmt) -> str:
    return "".join(fmt(r) + "\n" for r in records)


def _write_esxi(zc: ZipContainer, built: Built, out_dir: Path, seed: int) -> None:
    """The ESXi and VDDK logs of the failures they trace (esxi.py): per host a vm-support archive
    (esx-<host>-<date>--<hh.mm>-<n>.tgz: var/run/log/hostd.log, vmfs/volumes/<ds>/<vm>/vmware.log),
    or loose (esxi/<host>/hostd.log, esxi/<vm>/vmware.log); the VDDK client log beside the
    appliance's logs (loose under vddk/ when the bundle has no appliance logs)."""
    world, cycles, lay = built.world, built.cycles, built.layout
    if lay.vddk_log:
        folder = "vddk" if lay.pasted_only else f"{lay.gateway_dir}/VDDK"
        write_text(zc, f"{folder}/vixDiskLib-{clock.day_stamp(world.end)}.log",
                   _lines(esxi.vddk_records(world, cycles), esxi.vddk_line))
    if not lay.esxi:
        return
    vms, hosts = esxi.traced_vms(world, cycles), esxi.traced_hosts(world, cycles)
    vm_line, hostd_line = esxi.vmware_line(lay.esxi_version), esxi.hostd_line(lay.esxi_version)
    for n, host in enumerate(h for h in world.hosts if h in hosts or any(vm.host is h for vm in vms)):
        pid = world.rng(host.name, "pid").randint(2000000, 2900000)
        logs = [(f"vmfs/volumes/{vm.datastore_at(world.end)}/{vm.name}/vmware.log", f"esxi/{vm.name}/vmware.log",
                 _lines(esxi.vmware_records(world, vm, cycles), lambda r: vm_line(r, world.skew)))
                for vm in vms if vm.host is host]
        logs.append(("var/run/log/hostd.log", f"esxi/{host.name.split('.')[0]}/hostd.log",
                     _lines(esxi.hostd_records(world, host, cycles), lambda r: hostd_line(r, world.skew, pid))))
        if lay.esxi == "vm-support":
            tar = TarContainer(zc, f"esx-{host.name}-{clock.day_stamp(world.end)}--09.30-{5000 + seed % 999 + n}.tgz",
                               out_dir)
            for inner, _, text in logs:
                write_text(tar, inner, text)
            tar.close()
        else:
            for _, loose, text in logs:
                write_text(zc, loose, text)


def write_bundle(name: str, built: Built, out_dir: Path, seed: int, size: int | None = None) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    world, lay = built.world, built.layout
    level = 1 if size else 9
    if lay.archive == "tgz":
        path = out_dir / f"{name}.tgz"
        zc = TgzBundle(path, level, out_dir)
    else:
        path = out_dir / f"{name}.zip"
        zc = ZipContainer(path, level, big=bool(size))
    try:
        if lay.toml and not lay.toml_last:
            write_text(zc, "bundle.toml", _toml(lay.toml))
        if not lay.pasted_only:
            _write_appliance_and_vcenter(zc, built, out_dir, name, seed, size)
        _write_esxi(zc, built, out_dir, seed)
        events = portal.cycle_events(world, built.cycles) + built.events_extra
        if not any(e.event_type == "Enable replication" for e in built.events_extra):
            events += [portal.setup_event(world, vm.first_due - 20 * MINUTE, SETUP_USER, vm.name)
                       for vm in world.vms if vm.initial and vm.first_due - 20 * MINUTE >= world.start]
        if lay.events_form == "json":
            text = portal.events_json(world, events, lay.events_wrapped)
        elif lay.events_form == "text":
            text = portal.events_text(events, lay.portal_tz)
        else:
            text = portal.events_csv(events, lay.events_time, lay.portal_tz, lay.events_korean)
        encoding = lay.events_encoding
        if lay.events_form != "csv" and encoding == "utf-8-sig":  # only Excel-style CSV exports carry a BOM
            encoding = "utf-8"
        write_text(zc, lay.events_name, text, encoding)
        if lay.status_table:
            write_text(zc, "portal/replication-status.csv", portal.status_table(world, built.cycles), "utf-8-sig")
        if lay.toml and lay.toml_last:
            write_text(zc, "bundle.toml", _toml(lay.toml))
    finally:
        zc.close()
    (out_dir / f"{name}.expected.json").write_text(expected_json(name, seed, built), encoding="utf-8")
    return path


def _vc_support_name(vcenter_name: str, world: World, n: int) -> str:
    return f"vc-{vcenter_name.split('.')[0]}-{clock.day_stamp(world.end)}--09.30-{4000 + n % 999}.tgz"


def quiet_time(cycles: list[Cycle], around: int, world: World, margin: int = 10 * MINUTE) -> int:
    """The first moment at or after `around` when no cycle runs within `margin` either side."""
    t = around
    while t < world.end:
        if not any(c.due - margin <= t < c.end + margin for c in cycles):
            return t
        t += MINUTE
    return around


def busiest_time(cycles: list[Cycle], lo: int, hi: int) -> int:
    """The minute in [lo, hi) with the most cycles in flight (ties: earliest)."""
    starts = sorted(c.due for c in cycles)
    ends = sorted(c.end for c in cycles)
    best, best_t = -1, lo
    t = lo
    while t < hi:
        n = bisect.bisect_right(starts, t) - bisect.bisect_right(ends, t)
        if n > best:
            best, best_t = n, t
        t += MINUTE
    return best_t
