"""Built-in evidence detectors: what no signature regex can see (the `detect.*` evidence ids).

A detector looks at the case (evidence.Case: the bundle's rows, indexed) around one failure, within the window [lo, hi] of the cause that
names it, and returns a Finding (the lines it rests on, and the interval of an appliance-wide
condition), None when it sees nothing, RULED_OUT when what it sees excludes its cause, or Undecided
when the bundle lacks the fact it needs (it says so rather than deciding from nothing)
(`detect.vddk_67` on another VDDK version). `detect()` runs one by id.

A new detector is one function `(case, failure, lo, hi)` here, named after its id, and one
DETECTORS entry in signatures/model.py, which also names the tables it reads (a detector is only
as good as those) and whether it finds its cause only by ruling the others out.

Signals holds what the detectors read, indexed once per bundle: the gateway timeline (silences,
service stops, heartbeats, VDDK lines), disks uploading at once per host, disk rates, initiators.
"""

from __future__ import annotations

import bisect
from collections import Counter
from datetime import datetime, timedelta
from functools import cached_property
from statistics import median
from typing import Callable

import polars as pl

from analyzer import tables
from analyzer.evidence import RULED_OUT, SLOW, STALLED, Case, Entry, Failure, Finding, Undecided, short_host
from analyzer.parsers.timeparse import to_iso
from analyzer.signatures.model import DETECTORS, Library, Signature

RESTART_GRACE = timedelta(minutes=15)  # a cycle started this long after a recovery was not hit by it
STUCK_TASK_OPEN = timedelta(minutes=30)  # a snapshot task open this long (vCenter still logging) never ended
STUCK_PROGRESS = timedelta(minutes=10)  # progress unchanged this long at 95/99 %
STOP_BEFORE_GAP = timedelta(minutes=5)  # a stop line this close before a gap explains it
READ_ONLY_TASK_WORDS = ("query", "retrieve", "acquire", "browse")
# Defaults of detector thresholds when no signature's [params] sets them.
DEFAULTS = {
    "low_rate_mbps": 5.0,
    "max_disks_per_host": 8.0,
    "slow_rate_fraction": 0.25,
    "slow_duration_factor": 4.0,
    "min_successful_cycles": 3.0,  # successful cycles needed for a median
    "silence_minutes": 15.0,  # no gateway record for this long is silence (heartbeats every 5 min)
    "stall_grace_minutes": 60.0,  # allowed lateness past the schedule
    "min_interval_h": 1.0,  # delta schedule: min(max(min, duration x fraction), max)
    "max_interval_h": 12.0,
    "interval_duration_fraction": 0.5,
    "min_queued_heartbeats": 2.0,  # heartbeats in a row showing queued cycles (saturation)
}


def param(library: Library, sig: Signature | None, name: str) -> float:
    """A threshold: the signature's own, else the first signature (by id) that sets it, else the default."""
    if sig is not None and name in dict(sig.params):
        return sig.param(name, DEFAULTS[name])
    for s in sorted(library.signatures.values(), key=lambda s: s.id):
        if name in dict(s.params):
            return s.param(name, DEFAULTS[name])
    return DEFAULTS[name]


# --------------------------------------------------------------------------------------------
# What the detectors read, indexed once


class Signals:
    """The bundle as the detectors read it."""

    def __init__(self, b: Case):
        self._gateway_points(b)
        self.gaps = self._silences(b.end, param(b.library, None, "silence_minutes"))
        self.downs = self._service_down(b.end)
        self.host_load = _host_load(b)
        self.portal_users = (b.portal.filter(pl.col("initiated_by").is_not_null() & pl.col("ts").is_not_null())
                             .sort("ts", "member", "line").to_dicts())

    def _gateway_points(self, b: Case) -> None:
        gw_activity = pl.col("source") == "gateway_log"
        timed = b.gateway.filter(pl.col("ts").is_not_null())
        order = ("ts", "member", "line")
        # Every timed gateway row in order, searched by time: its time and its row number in
        # b.gateway, whose row is read when an entry needs it (b.gateway is lazy: holding the
        # rows, even sorted, would hold their text). Null times sort first.
        keys = b.gateway.select("ts", "member", "line").collect()  # member: categorical, sorts as text
        by_time = keys.select(pl.arg_sort_by("ts", "member", "line")).to_series()
        self._gateway = b.gateway
        self._gw_rows = by_time.slice(keys["ts"].null_count())
        ts = keys["ts"].gather(self._gw_rows)
        self.gw_ts = ts
        gw_minutes = b.activity.filter(gw_activity)["minute"]
        self.gw_points = _points([ts, gw_minutes, gw_minutes + timedelta(seconds=59)], ts.dtype)
        self.gw_last = self.gw_points[-1] if len(self.gw_points) else None
        self.other_points = _points([b.activity.filter(~gw_activity)["minute"], b.portal["ts"],
                                     b.events.select("ts").collect().to_series(), b.tasks["start"],
                                     b.tasks["end"]], ts.dtype)
        event = pl.col("event")
        lifecycle = event.is_in(["service_starting", "service_started", "service_stopping", "service_stopped"])
        heartbeat, vddk, critical = event == "heartbeat", event == "vddk", pl.col("level") == "Critical"
        # a few thousand rows, read in one scan of the gateway
        read = timed.filter(pl.any_horizontal(lifecycle, heartbeat, vddk, critical)).sort(order).collect()

        def rows(keep: pl.Expr) -> list[dict]:
            return read.filter(keep).to_dicts()

        self.lifecycle = rows(lifecycle)
        self.heartbeats = rows(heartbeat)
        # runs of consecutive heartbeats that show cycles queued (appliance_saturated)
        self.queue_runs: list[list[dict]] = [[]]
        for r in self.heartbeats:
            if (r["queued_cycles"] or 0) > 0:
                self.queue_runs[-1].append(r)
            elif self.queue_runs[-1]:
                self.queue_runs.append([])
        self.vddk = rows(vddk)
        self.criticals = rows(critical)

    @cached_property
    def _progress(self) -> tuple[pl.DataFrame, dict]:
        """The last progress line of each cycle, and its row by (vm_key, cycle_id): read when a
        detector first asks for one (few do), not for every bundle."""
        order = ("ts", "member", "line")
        last = (self._gateway.filter(pl.col("ts").is_not_null() & (pl.col("event") == "disk_progress"))
                .select("vm_key", "cycle_id", *order, "message")
                .sort(order).group_by("vm_key", "cycle_id").agg(pl.all().last()).collect())
        return last, {key: i for i, key in enumerate(zip(last["vm_key"].to_list(), last["cycle_id"].to_list()))}

    def last_progress(self, vm_key: str, cycle_id: int) -> dict | None:
        last, at = self._progress
        i = at.get((vm_key, cycle_id))
        return None if i is None else last.row(i, named=True)

    def last_gateway_row(self, at: datetime) -> dict | None:
        i = self.gw_ts.search_sorted(at, side="right")
        return self._gateway_row(self._gw_rows[i - 1]) if i else None

    def first_gateway_row(self, at: datetime) -> dict | None:
        i = self.gw_ts.search_sorted(at, side="left")
        return self._gateway_row(self._gw_rows[i]) if i < len(self.gw_ts) else None

    def _gateway_row(self, index: int) -> dict:
        return self._gateway.slice(index, 1).collect().row(0, named=True)

    def others_during(self, lo: datetime, hi: datetime) -> int:
        points = self.other_points
        return points.search_sorted(hi, side="right") - points.search_sorted(lo, side="right")

    def _silences(self, end: datetime | None, minutes: float) -> list[dict]:
        """Gaps in the gateway log while other sources go on; gaps that end in a stop line are
        service-down intervals, not silence."""
        limit = timedelta(minutes=minutes)
        after = (pl.DataFrame({"a": self.gw_points}).with_columns(b=pl.col("a").shift(-1))
                 .filter(pl.col("b") - pl.col("a") > limit))
        gaps = list(zip(after["a"].to_list(), after["b"].to_list()))
        if self.gw_last and end and end - self.gw_last > limit:
            gaps.append((self.gw_last, None))
        out = []
        for a, b in gaps:
            hi = b or end
            if not self.others_during(a, hi):
                continue
            if any(a - STOP_BEFORE_GAP <= r["ts"] <= a for r in self.lifecycle
                   if r["event"] in ("service_stopping", "service_stopped")):
                continue  # a stopped service: see _service_down
            last = self.last_gateway_row(a)
            out.append({"start": a, "end": b, "last": last, "next": self.first_gateway_row(hi) if b else None})
        return out

    def _service_down(self, end: datetime | None) -> list[dict]:
        """Stop line .. next start line (or never came back); and heartbeat gaps while the log goes on."""
        out, down = [], None
        for r in self.lifecycle:
            if r["event"] in ("service_stopping", "service_stopped"):
                down = down or {"start": r["ts"], "stop": r}
            elif down:
                out.append({**down, "end": r["ts"], "back": r})
                down = None
        if down:
            out.append({**down, "end": None, "back": None})
        beats = self.heartbeats
        if len(beats) >= 3:
            spacing = median((b["ts"] - a["ts"]).total_seconds() for a, b in zip(beats, beats[1:]))
            limit = timedelta(seconds=max(3 * spacing, 15 * 60))
            pairs = list(zip(beats, beats[1:]))
            if end and end - beats[-1]["ts"] > limit:
                pairs.append((beats[-1], None))
            for a, b in pairs:
                hi = b["ts"] if b else end
                if hi - a["ts"] <= limit or any(d["start"] <= hi and (d["end"] is None or d["end"] >= a["ts"])
                                                for d in out):
                    continue
                # The log going on without heartbeats is a hung service; no log at all is silence.
                logged = self.gw_ts.search_sorted(hi, side="left") - self.gw_ts.search_sorted(a["ts"], side="right")
                if logged:
                    out.append({"start": a["ts"], "stop": a, "end": b["ts"] if b else None, "back": b,
                                "heartbeats": True})
        for d in out:  # the Critical record that often precedes a stop
            d["critical"] = next((r for r in reversed(self.criticals)
                                  if timedelta(0) <= d["start"] - r["ts"] <= timedelta(minutes=10)), None)
        return sorted(out, key=lambda d: d["start"])


def _points(columns: list[pl.Series], dtype: pl.DataType) -> pl.Series:
    """The distinct non-null instants of the columns, in order."""
    return pl.concat([c.cast(dtype).rename("ts") for c in columns]).drop_nulls().unique().sort()


def _host_load(b: Case) -> dict[str, tuple[pl.Series, pl.Series]]:
    """Disks uploading at once per ESXi host: change points and the count after each."""
    hosts = b.with_short_host(b.cycle_frame.select("cycle", "vm_key", "host")).select("cycle", "_host")
    disks = (b.disks.join(hosts, on="cycle", how="left")
             .filter(pl.col("_host").is_not_null() & pl.col("first_progress").is_not_null()))
    start = pl.col("first_progress")
    end = pl.max_horizontal(pl.coalesce("last_progress", start), start + pl.duration(minutes=1))
    changes = (pl.concat([disks.select("_host", start.alias("ts"), pl.lit(1).alias("d")),
                          disks.select("_host", end.alias("ts"), pl.lit(-1).alias("d"))])
               .sort("_host", "ts", "d")
               .with_columns(pl.col("d").cum_sum().over("_host").alias("n")))
    return {host: (group["ts"], group["n"]) for (host,), group in changes.group_by("_host", maintain_order=True)}


# --------------------------------------------------------------------------------------------
# Appliance-wide: silence, service down, saturation, VDDK


def _gateway_entry(row: dict, evidence: str, note: str | None = None) -> Entry:
    text = row["message"] or ""
    return Entry(row["ts"], "gateway_log", row["member"], row["line"], text, evidence, note)


def _interval_hits(b: Case, f: Failure, lo: datetime, hi: datetime, start: datetime,
                   end: datetime | None) -> bool:
    """An outage [start, end] explains the failure unless it ended before the failing cycle began
    or a successful cycle ran after it, before the failure."""
    if start > hi or (end is not None and end < lo):
        return False
    if end is None:
        return True
    if f.start is not None and f.start > end + RESTART_GRACE:
        return False
    return not b.recovered("appliance", f, end, f.ts)


def appliance_silence(b: Case, f: Failure, lo: datetime, hi: datetime) -> Finding | None:
    for gap in reversed(b.signals.gaps):
        if not _interval_hits(b, f, lo, hi, gap["start"], gap["end"]):
            continue
        end = gap["end"] or b.end
        minutes = round((end - gap["start"]).total_seconds() / 60)
        note = (f"no gateway records for {minutes} min ({to_iso(gap['start'])} to "
                f"{to_iso(gap['end']) if gap['end'] else 'the end of the bundle'}) while other sources kept logging")
        entries = [_gateway_entry(gap["last"], "detect.appliance_silence", "last record before the silence: " + note)] \
            if gap["last"] else []
        if gap["next"]:
            entries.append(_gateway_entry(gap["next"], "detect.appliance_silence", "first record after the silence"))
        return Finding("detect.appliance_silence", tuple(entries), (gap["start"], gap["end"]))
    return None


def service_down(b: Case, f: Failure, lo: datetime, hi: datetime) -> Finding | None:
    for down in reversed(b.signals.downs):
        if not _interval_hits(b, f, lo, hi, down["start"], down["end"]):
            continue
        what = "heartbeats stopped" if down.get("heartbeats") else "the gateway service stopped"
        back = f"until {to_iso(down['end'])}" if down["end"] else "and did not come back within the bundle"
        entries = [_gateway_entry(down["stop"], "detect.service_down", f"{what} at {to_iso(down['start'])} {back}")]
        if down.get("critical"):
            entries.append(_gateway_entry(down["critical"], "detect.service_down", "Critical record before the stop"))
        if down["back"]:
            entries.append(_gateway_entry(down["back"], "detect.service_down", "service back"))
        return Finding("detect.service_down", tuple(entries), (down["start"], down["end"]))
    return None


def appliance_saturated(b: Case, f: Failure, lo: datetime, hi: datetime) -> Finding | None:
    """CATALOGUE "Appliance saturation": the appliance queues cycles only while it runs at its
    concurrency limit, whatever that limit is (appliance size, scale-out, disks rather than
    cycles), so heartbeats with cycles queued over the window are the evidence. A cycle waits a
    second or two for its slot at any load: queueing counts when consecutive heartbeats show it
    (the run may reach past the window)."""
    needed = max(1, int(param(b.library, f.error, "min_queued_heartbeats")))
    hot = [r for run in b.signals.queue_runs if len(run) >= needed for r in run if lo <= r["ts"] <= hi]
    if not hot:
        return None
    worst = max(hot, key=lambda r: (r["queued_cycles"], -r["ts"].timestamp()))
    note = (f"{len(hot)} heartbeats from {to_iso(hot[0]['ts'])} to {to_iso(hot[-1]['ts'])} show cycles queued "
            f"(up to {worst['queued_cycles']}, with {worst['active_cycles']} active): the appliance ran at its limit")
    return Finding("detect.appliance_saturated", (_gateway_entry(worst, "detect.appliance_saturated", note),),
                   at=tuple(r["ts"] for r in hot))


def vddk_67(b: Case, f: Failure, lo: datetime, hi: datetime) -> Finding | str | None:
    lines = b.signals.vddk
    if not lines:
        return None
    before = [r for r in lines if r["ts"] <= hi]
    row = before[-1] if before else lines[0]
    if (row["version"] or "").startswith("6.7"):
        return Finding("detect.vddk_67", (_gateway_entry(row, "detect.vddk_67", "VDDK 6.7 in use"),), basis="standing")
    return RULED_OUT if row["version"] else None


# --------------------------------------------------------------------------------------------
# The VM's cycle: read rate, slowness, stall


def _connectivity_ids(library: Library) -> set[str]:
    return {e for s in library.errors() for c in s.causes if c.id.endswith("_unreachable")
            for e in c.evidence if not e.startswith("detect.")}


def low_read_rate(b: Case, f: Failure, lo: datetime, hi: datetime) -> Finding | None:
    c = f.cycle
    if c is None:
        return None
    threshold = param(b.library, f.error, "low_rate_mbps")
    rates = c["disk_rates"] or []
    rate = max(rates) if rates else c["rate_mbps"]
    if rate is None or rate >= threshold or not (c["uploaded_bytes"] or rates):
        return None
    for sig in _connectivity_ids(b.library):
        ts = b.sig_ts.get(sig, [])
        if bisect.bisect_right(ts, hi) > bisect.bisect_left(ts, lo):
            return None
    note = f"upload rate {rate:.2f} MB/s stayed under {threshold:g} MB/s with no connectivity failure"
    row = b.signals.last_progress(c["vm_key"], c["cycle_id"])
    entry = (_gateway_entry(row, "detect.low_read_rate", note) if row else
             Entry(c["start"], "gateway_log", c["member"], c["line"], f"cycle {c['cycle']}",
                   "detect.low_read_rate", note))
    return Finding("detect.low_read_rate", (entry,))


def _upload_rate(b: Case, c: dict) -> float | None:
    """MB/s while uploading: the disks' reported rates, else bytes over the whole cycle."""
    rates = c["disk_rates"]
    return sum(rates) / len(rates) if rates else c["rate_mbps"]


def why_slow(b: Case, vm_key: str, cycle: dict) -> str | None:
    """Why `cycle` is slow against the VM's successful cycles of its type, or None.

    A running cycle is judged by how long it has run so far (until the appliance's last record)."""
    sig = b.library.signatures.get(SLOW)
    done = [c for c in b.cycles_by_vm.get(vm_key, []) if c["outcome"] == "succeeded" and c["type"] == cycle["type"]]
    if len([c for c in done if c is not cycle]) < param(b.library, sig, "min_successful_cycles"):
        return None
    fraction, factor = param(b.library, sig, "slow_rate_fraction"), param(b.library, sig, "slow_duration_factor")
    rates = [r for r in (_upload_rate(b, c) for c in done) if r]
    rate = _upload_rate(b, cycle)
    if cycle["outcome"] == "succeeded" and rates and rate is not None and rate < fraction * median(rates):
        return f"upload rate {rate:.2f} MB/s is under {fraction:g} x the VM's median {median(rates):.2f} MB/s"
    durations = [c["duration_sec"] for c in done if c["duration_sec"] is not None]
    duration = cycle["duration_sec"]
    gw_last = b.signals.gw_last
    if cycle["outcome"] == "in_progress" and cycle["start"] and gw_last:
        duration = (gw_last - cycle["start"]).total_seconds()
    if durations and duration is not None and duration > factor * median(durations):
        return f"took {duration / 60:.0f} min, over {factor:g} x the VM's median {median(durations) / 60:.0f} min"
    return None


def stall(b: Case, vm_key: str) -> tuple[dict, datetime] | None:
    """(last successful cycle, when the next was due) when no cycle completed in time. The
    portal's LastSync counts as a completed cycle: a VM the portal saw sync after the gateway log
    ends (collected earlier than the rest) is not stalled for the log's silence."""
    sig = b.library.signatures.get(STALLED)
    cycles = b.cycles_by_vm.get(vm_key, [])
    done = [c for c in cycles if c["outcome"] == "succeeded" and c["end"]]
    if not done or b.end is None:
        return None
    last = max(done, key=lambda c: c["end"])
    if last["type"] == "final_delta":
        return None  # migrated: no more cycles are due
    synced = (b.portal_status.get(vm_key) or {}).get("last_sync")
    if last["type"] in ("initial", "resync"):
        interval = timedelta(0)  # the first delta starts right after
    else:
        length = (last["end"] - last["start"]).total_seconds() if last["start"] else 0
        lowest = param(b.library, sig, "min_interval_h") * 3600
        highest = param(b.library, sig, "max_interval_h") * 3600
        fraction = param(b.library, sig, "interval_duration_fraction")
        interval = timedelta(seconds=min(max(lowest, length * fraction), highest))
    due = max(last["end"], synced or last["end"]) + interval
    grace = timedelta(minutes=param(b.library, sig, "stall_grace_minutes"))
    if b.end - due <= grace:
        return None
    # A cycle still uploading (progress in the last grace period) is slow, not stalled.
    for c in cycles:
        if c["outcome"] == "in_progress" and c["start"] and c["start"] >= last["end"]:
            seen = c["disk_last"]
            if seen and b.end - seen <= grace:
                return None
    return last, due


# The screen's slack on its thresholds: polars and Python may round a mean or a median apart in
# the last bits; the screen must keep every VM the rules above would flag.
_SCREEN_SLACK = 1e-6


def may_stall_or_slow(b: Case, stalled: bool = True, slow: bool = True) -> list[str | None]:
    """The VMs on which `stall`, or `why_slow` on the VM's last running and last completed cycle,
    could find something: worked out on the columns of every cycle, it keeps more VMs than the
    rules flag, never fewer (they then judge each VM kept, on its cycles)."""
    cycles = b.cycle_frame
    keep: set[str | None] = set()
    succeeded = pl.col("outcome") == "succeeded"
    if stalled and b.end is not None:
        # stall: nothing completed within the grace after the last success (due is never before it)
        grace = timedelta(minutes=param(b.library, b.library.signatures.get(STALLED), "stall_grace_minutes"))
        last_ok = (cycles.filter(succeeded & pl.col("end").is_not_null())
                   .group_by("vm_key").agg(pl.col("end").max()))
        keep.update(last_ok.filter(pl.col("end") < b.end - grace)["vm_key"].to_list())
    if slow:
        sig = b.library.signatures.get(SLOW)
        fraction, factor = param(b.library, sig, "slow_rate_fraction"), param(b.library, sig, "slow_duration_factor")
        rates = pl.col("disk_rates")
        rate = pl.when(rates.list.len() > 0).then(rates.list.mean()).otherwise("rate_mbps")  # _upload_rate
        done = (cycles.filter(succeeded).with_columns(_rate=rate)
                .group_by("vm_key", "type").agg(
                    pl.len().alias("_done"),
                    pl.col("_rate").filter(pl.col("_rate").is_not_null() & (pl.col("_rate") != 0)).median()
                    .alias("_rate_median"),
                    pl.col("duration_sec").drop_nulls().median().alias("_duration_median")))
        running = pl.col("outcome") == "in_progress"
        gw_last = b.signals.gw_last
        duration = (pl.when(running).then((pl.lit(gw_last, tables.TS) - pl.col("start")).dt.total_microseconds() / 1e6)
                    .otherwise("duration_sec") if gw_last is not None else pl.col("duration_sec"))
        rate_bound = fraction * pl.col("_rate_median")
        duration_bound = factor * pl.col("_duration_median")
        last = (cycles.filter(pl.col("start").is_not_null() & (succeeded | running))
                .group_by("vm_key", "outcome").agg(pl.all().last())
                .with_columns(_rate=rate, _duration=duration)
                .join(done, on=["vm_key", "type"], how="left", nulls_equal=True))
        flagged = last.filter(
            (pl.col("_done") - succeeded.cast(pl.Int64) >= param(b.library, sig, "min_successful_cycles"))
            & ((succeeded & (pl.col("_rate") < rate_bound + rate_bound.abs() * _SCREEN_SLACK))
               | (pl.col("_duration") > duration_bound - duration_bound.abs() * _SCREEN_SLACK)).fill_null(False))
        keep.update(flagged["vm_key"].to_list())
    return list(keep)


def slow_cycle(b: Case, f: Failure, lo: datetime, hi: datetime) -> Finding | None:
    reason = why_slow(b, f.vm_key, f.cycle) if f.cycle else None
    if not reason:
        return None
    c = f.cycle
    return Finding("detect.slow_cycle", (Entry(c["start"], "gateway_log", c["member"], c["line"],
                                               f"cycle {c['cycle']}", "detect.slow_cycle", reason),))


def stalled(b: Case, f: Failure, lo: datetime, hi: datetime) -> Finding | None:
    found = stall(b, f.vm_key)
    if not found:
        return None
    last, due = found
    return Finding("detect.stalled", (Entry(last["end"], "gateway_log", last["member"], last["line"],
                                            f"cycle {last['cycle']} completed", "detect.stalled",
                                            f"next cycle was due by {to_iso(due)}"),))


# --------------------------------------------------------------------------------------------
# vCenter tasks on the VM, disks on its host


def _task_entry(t: dict, evidence: str, note: str) -> Entry:
    who = t["initiator"] or "an unknown initiator"
    span = f"{to_iso(t['start'])} to {to_iso(t['end']) if t['end'] else 'no end'}"
    target = t["vm_name"] or t["entity"] or t["vm_key"]
    text = f"{t['task_id'] or t['task_name'] or 'task'} {t['method']} on {target} by {who} ({span})"
    return Entry(t["start"], "vcenter_tasks", t["member"], t["line"], text, evidence, note)


def overlapping_task(b: Case, f: Failure, lo: datetime, hi: datetime) -> Finding | None:
    start = f.since
    end = (f.cycle["end"] if f.cycle and f.cycle["end"] else f.until)
    hits = []
    for t in b.tasks_of(f.vm_key):
        if t["own"] or t["start"] is None or any(w in (t["method"] or "").lower() for w in READ_ONLY_TASK_WORDS):
            continue
        if t["start"] <= end and (t["end"] is None or t["end"] >= start):
            hits.append(_task_entry(t, "detect.overlapping_task",
                                    f"overlaps the cycle; initiated by {t['initiator'] or 'unknown'}"))
    return Finding("detect.overlapping_task", tuple(hits)) if hits else None


def snapshot_task_stuck(b: Case, f: Failure, lo: datetime, hi: datetime) -> Finding | Undecided | None:
    """The VM's create-snapshot task never ended, or sat at 95/99 %. Real vpxd logs progress as
    `info.progress, task-<n>. Applied change to temp map.` with no value: there, progress that stopped
    moving while the task went on is the sign (at an unknown percentage: a guess); a task that ran
    long and failed with no progress logged at all cannot be told from one that worked slowly."""
    vc_last = b.spans.get("vcenter", (None, None))[1]
    hits, guessed, undecided = [], [], []
    for t in b.tasks_of(f.vm_key):
        if t["method"] != "vim.VirtualMachine.createSnapshot" or t["start"] is None or not lo <= t["start"] <= hi:
            continue
        progress, moved = t["progress"], t["progress_ts"]
        failing = t["end"] is None or t["outcome"] == "failed"
        if t["end"] is None and vc_last is not None and vc_last - t["start"] >= STUCK_TASK_OPEN:
            hits.append(_task_entry(t, "detect.snapshot_task_stuck", "the create-snapshot task never ended"))
        elif progress is not None:
            if 95 <= progress < 100 and (failing or (moved is not None and t["end"] - moved >= STUCK_PROGRESS)):
                hits.append(_task_entry(t, "detect.snapshot_task_stuck", f"progress stopped at {progress} %"))
        elif moved is not None:
            still = (t["end"] or vc_last or moved) - moved
            if failing and still >= STUCK_PROGRESS:
                guessed.append(_task_entry(t, "detect.snapshot_task_stuck",
                                           f"its progress stopped moving {still.total_seconds() / 60:.0f} min before "
                                           "it ended (vCenter logs no percentage)"))
        elif failing and t["end"] is not None and t["end"] - t["start"] >= STUCK_PROGRESS:
            undecided.append(t)
    if hits:
        return Finding("detect.snapshot_task_stuck", tuple(hits))
    if guessed:
        return Finding("detect.snapshot_task_stuck", tuple(guessed), basis="guess")
    if undecided:
        t = undecided[0]
        return Undecided("detect.snapshot_task_stuck",
                         f"{t['task_id'] or 'a create-snapshot task'} of {b.name_of(f.vm_key)} ran "
                         f"{(t['end'] - t['start']).total_seconds() / 60:.0f} min and failed with no progress logged: "
                         "whether it sat at 95 or 99 % cannot be told", t["member"])
    return None


def _host_peak(b: Case, f: Failure, start: datetime, end: datetime) -> tuple[int, datetime | None]:
    """Most disks uploading at once on the failure's host within [start, end], and when."""
    load = b.signals.host_load.get(short_host(f.host(b)))
    if load is None:
        return 0, None
    times, counts = load
    i, j = times.search_sorted(start, side="right"), times.search_sorted(end, side="right")
    window = counts[max(i - 1, 0):j]
    if not len(window):
        return 0, None
    return window.max(), times[max(i - 1, 0) + window.arg_max()]


def host_parallel_disks(b: Case, f: Failure, lo: datetime, hi: datetime) -> Finding | None:
    peak, at = _host_peak(b, f, lo, hi)
    limit = param(b.library, f.error, "max_disks_per_host")
    if peak <= limit:
        return None
    note = f"{peak} disks uploading at once on host {f.host(b)} at {to_iso(at)} (limit {limit:g})"
    c = f.cycle
    entry = (Entry(c["start"], "gateway_log", c["member"], c["line"], f"cycle {c['cycle']} on {f.host(b)}",
                   "detect.host_parallel_disks", note) if c else
             Entry(at, "gateway_log", None, None, note, "detect.host_parallel_disks"))
    return Finding("detect.host_parallel_disks", (entry,), at=(at,))


# --------------------------------------------------------------------------------------------
# Key Vault: who initiated the failing operation


def _initiators(b: Case, f: Failure) -> list[dict]:
    lines = {(o["member"], o["line"]) for o in f.occurrences if o["source"] == "portal_events"}
    return [r for r in b.signals.portal_users if (r["member"], r["line"]) in lines]


def _portal_entry(row: dict, evidence: str, note: str) -> Entry:
    return Entry(row["ts"], "portal_events", row["member"], row["line"],
                 f"Initiated by {row['initiated_by']}", evidence, note)


def _domain(user: str) -> str | None:
    return user.rsplit("@", 1)[1].lower() if "@" in user else None


def kv_guest_user(b: Case, f: Failure, lo: datetime, hi: datetime) -> Finding | None:
    # The tenant's domain is the one most initiators share; with no clear majority, only #EXT# tells.
    domains = Counter(d for d in (_domain(r["initiated_by"]) for r in b.signals.portal_users
                                  if "#ext#" not in r["initiated_by"].lower()) if d).most_common()
    tenant = domains[0][0] if len(domains) > 1 and domains[0][1] > domains[1][1] else None
    hits, guest = [], False
    for r in _initiators(b, f):
        user = r["initiated_by"]
        if "#ext#" in user.lower():
            guest = True
            hits.append(_portal_entry(r, "detect.kv_guest_user", "a guest (#EXT#) principal of the tenant"))
        elif tenant and _domain(user) and _domain(user) != tenant:
            hits.append(_portal_entry(r, "detect.kv_guest_user", f"a principal outside the tenant's domain {tenant}"))
    # #EXT# says so in the name itself; another domain than most initiators' is a guess at the tenant
    return Finding("detect.kv_guest_user", tuple(hits), basis="observed" if guest else "guess") if hits else None


def kv_other_user(b: Case, f: Failure, lo: datetime, hi: datetime) -> Finding | None:
    users = b.signals.portal_users
    if not users:
        return None
    first = users[0]
    note = f"not the user who first set up replication ({first['initiated_by']})"
    hits = [_portal_entry(r, "detect.kv_other_user", note)
            for r in _initiators(b, f) if r["initiated_by"].lower() != first["initiated_by"].lower()]
    if not hits:
        return None
    # the earliest initiator in the export is taken for the vault's creator: a guess by the window the export covers
    return Finding("detect.kv_other_user",
                   (*hits, _portal_entry(first, "detect.kv_other_user", "the user who first set up replication")),
                   basis="guess")


# --------------------------------------------------------------------------------------------
# The registry


# The detectors are declared in signatures/model.py's DETECTORS (what each reads, whether it
# finds its cause by exclusion), which the signature loader checks cause evidence against; each
# is carried out by the function of this module named after its id.
FIND: dict[str, Callable[[Case, Failure, datetime, datetime], Finding | str | None]] = {
    detector_id: globals()[detector_id.removeprefix("detect.")] for detector_id in DETECTORS}


def detect(evidence_id: str, b: Case, f: Failure, lo: datetime, hi: datetime) -> Finding | str | None:
    """What the detector `evidence_id` finds about failure `f` in [lo, hi] (None for an unknown id)."""
    find = FIND.get(evidence_id)
    return find(b, f, lo, hi) if find else None


def tables_of(evidence_id: str) -> tuple[str, ...]:
    detector = DETECTORS.get(evidence_id)
    return detector.tables if detector else ()


def by_exclusion(evidence_id: str) -> bool:
    detector = DETECTORS.get(evidence_id)
    return bool(detector and detector.by_exclusion)
