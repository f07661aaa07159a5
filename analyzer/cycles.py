"""Replication cycles per VM and disk, rebuilt from the gateway log and joined with vCenter tasks
and portal events.

    Replication cycle started. vm=APP01 vmId=vm-1042 host=esx07 cycleId=17 type=DeltaReplication disks=2
    Disk upload progress. vm=APP01 cycleId=17 disk="[ds01] APP01/APP01_1.vmdk" diskId=6000C29a rateMBps=41.7
    Replication cycle failed. vm=APP01 cycleId=17 errorId=1011 error=DiskUploadTimedOut message="..."
become one CYCLES row `APP01#17` (type delta, outcome failed, failed_state UploadingDisks, ...) and
one CYCLE_DISKS row per disk.

The appliance and vCenter clocks are often minutes apart. The skew is the median difference
between the VM's createSnapshot task start (vCenter clock) and the gateway's `Creating snapshot`
line (appliance clock); every vCenter time is shifted onto the appliance clock before joining.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from analyzer import identity, tables
from analyzer.diagnostics import Diagnostics

CYCLE_TYPES = {
    "InitialReplication": "initial",
    "DeltaReplication": "delta",
    "Resync": "resync",
    "FinalDeltaReplication": "final_delta",
}
CYCLE_EVENTS = ["cycle_started", "state_changed", "disk_progress", "cycle_completed", "cycle_failed"]
LIFECYCLE_EVENTS = ["service_starting", "service_started", "service_stopping", "service_stopped"]
SNAPSHOT_METHODS = ["vim.VirtualMachine.createSnapshot", "vim.vm.Snapshot.remove",
                    "vim.VirtualMachine.removeAllSnapshots", "vim.VirtualMachine.consolidateDisks"]
CREATE_SNAPSHOT = "vim.VirtualMachine.createSnapshot"
SKEW_PAIR_TOLERANCE = timedelta(minutes=30)  # a snapshot task further than this from the line is another one
OWN_TASK_TOLERANCE = timedelta(minutes=2)  # after skew correction
# Two VMs' releases nearer each other than this, seen from one removal, cannot be told apart: the
# corrected start is off by the call's latency, which the skew (a median over pairs) leaves in.
RELEASE_APART = timedelta(seconds=1)
SKEW_REPORT_SECONDS = 30.0
# A cycle with no end is `in_progress` only when the gateway log runs up to the end of the bundle.
IN_PROGRESS_TAIL = timedelta(minutes=15)
MB = 1_000_000  # rateMBps of the gateway is decimal megabytes per second


@dataclass
class CycleResult:
    cycles: pl.DataFrame  # tables.CYCLES
    disks: pl.DataFrame  # tables.CYCLE_DISKS
    clock_skew: float | None  # seconds, vCenter minus appliance (median over matched pairs)
    skew_basis: int  # pairs used
    # vCenter-sourced frames shifted onto the appliance clock: vcenter_tasks (plus `vm_key` and
    # `own`: the appliance's own snapshot work), vcenter_events, matches, activity.
    corrected: dict[str, pl.DataFrame] = field(default_factory=dict)
    bundle_end: datetime | None = None  # latest record in any source (appliance clock)
    appliance_user: str | None = None  # vCenter user of the gateway's session, when logged


def _table(frames: dict[str, pl.DataFrame], name: str) -> pl.DataFrame:
    frame = frames.get(name)
    return tables.empty(name) if frame is None else tables.conform(name, frame)


# The gateway rows the clock skew, the snapshot tasks and the service restarts are read from
# (a superset of the rows each of them selects).
_MARKS = (pl.col("event").is_in(["snapshot_creating", "snapshot_removing", *LIFECYCLE_EVENTS])
          | ((pl.col("event") == "state_changed")
             & pl.col("state_to").is_in(["CreatingSnapshot", "ReleasingSnapshot", "Completed", "Failed"])))


def _shift(frame: pl.DataFrame | pl.LazyFrame, columns: list[str], seconds: float,
           only: pl.Expr | None = None) -> pl.DataFrame | pl.LazyFrame:
    if not seconds:
        return frame
    delta = pl.duration(microseconds=round(seconds * 1e6))
    return frame.with_columns(
        (pl.when(only).then(pl.col(c) - delta).otherwise(pl.col(c)) if only is not None
         else pl.col(c) - delta).alias(c)
        for c in columns
    )


def bundle_span(frames: dict[str, pl.DataFrame]) -> tuple[datetime | None, datetime | None]:
    """First and last record over every source (activity minutes count to their end)."""
    lows, highs = [], []
    for name, cols in (("gateway_log", ["ts"]), ("portal_events", ["ts"]), ("vcenter_events", ["ts"]),
                       ("vcenter_tasks", ["start", "end"]), ("matches", ["ts"])):
        frame = frames.get(name)
        if frame is None:
            continue
        for c in cols:
            low, high = tables.span(frame, c)
            lows.append(low)
            highs.append(high)
    activity = frames.get("activity")
    if activity is not None and activity.height:
        lows.append(activity["minute"].min())
        highs.append(activity["minute"].max() + timedelta(seconds=59))
    lows = [v for v in lows if v is not None]
    highs = [v for v in highs if v is not None]
    return (min(lows) if lows else None), (max(highs) if highs else None)


def estimate_skew(gateway: pl.DataFrame, tasks: pl.DataFrame) -> tuple[float | None, int]:
    """Median of (createSnapshot task start - gateway snapshot start) over the VM's nearest pairs.

    `gateway` and `tasks` carry `vm_key`. Each gateway snapshot start is paired with the nearest
    createSnapshot task of the same VM within SKEW_PAIR_TOLERANCE.
    """
    marks = (gateway.select("event", "state_to", "vm_key", "ts")
             .filter((pl.col("event") == "snapshot_creating")
                     | ((pl.col("event") == "state_changed") & (pl.col("state_to") == "CreatingSnapshot")))
             .filter(pl.col("vm_key").is_not_null() & pl.col("ts").is_not_null())
             .group_by("vm_key", pl.col("ts").dt.truncate("1m").alias("_m"))  # both lines of one snapshot
             .agg(pl.col("ts").min()).drop("_m").sort("ts"))
    creates = (tasks.select("method", "vm_key", "start")
               .filter((pl.col("method") == CREATE_SNAPSHOT) & pl.col("vm_key").is_not_null()
                       & pl.col("start").is_not_null())
               .select("vm_key", pl.col("start").alias("task_start")).sort("task_start"))
    if not marks.height or not creates.height:
        return None, 0
    pairs = marks.join_asof(creates, left_on="ts", right_on="task_start", by="vm_key", strategy="nearest",
                            tolerance=SKEW_PAIR_TOLERANCE, check_sortedness=False).drop_nulls("task_start")
    if not pairs.height:
        return None, 0
    diffs = (pairs["task_start"] - pairs["ts"]).dt.total_microseconds() / 1e6
    return float(round(diffs.median(), 3)), pairs.height


def appliance_user(gateway: pl.DataFrame | pl.LazyFrame) -> str | None:
    users = (gateway.lazy().select("event", "message").filter(pl.col("event") == "vcenter_connected")
             .select(pl.col("message").str.extract(r"\buser=\"?([^\s\"]+)", 1).alias("u"))
             .drop_nulls().collect())
    return users["u"][-1] if users.height else None


def _release_points(marks: pl.DataFrame) -> pl.DataFrame:
    """The moments each VM's service set about removing its own snapshot, from its gateway lines:
    a cycle's change to ReleasingSnapshot, its `Removing snapshot` lines, and a cycle's change to
    Failed once past CreatingSnapshot (the service then removes the snapshot it took; failing to
    take one, it has none to remove). The removal task starts right after."""
    failed_after_snapshot = (pl.col("state_to") == "Failed") & ~pl.col("state_from").is_in(["Queued", "CreatingSnapshot"])
    states = marks.filter((pl.col("event") == "state_changed")
                          & ((pl.col("state_to") == "ReleasingSnapshot") | failed_after_snapshot.fill_null(True)))
    removing = marks.filter(pl.col("event") == "snapshot_removing")
    return pl.concat([states.select("vm_key", "ts"), removing.select("vm_key", "ts")]).drop_nulls()


def _tie_removals(work: pl.DataFrame, points: pl.DataFrame, user: str | None) -> pl.Series:
    """The VM of each snapshot task that names no VM (a removal names `snapshot-<n>`), through the
    moments VMs set about removing their own snapshots (`_release_points`): the task and a VM's
    moment are each other's nearest, within OWN_TASK_TOLERANCE. Each release issues one removal,
    so a task just after another VM's release that is nearer its own VM's, or one beside a release
    whose own removal is nearer, is not that VM's; a second VM's moment within RELEASE_APART as
    near: no VM. Only the appliance's removals (its user's, or initiator unknown) are so tied: a
    backup product's removal beside a release is not that release's. A snapshot MoRef
    then ties the other tasks on it (a removal retried, a timed-out one)."""
    initiator = pl.col("initiator").cast(pl.Utf8).str.to_lowercase()
    appliance_s = initiator.is_null() | (initiator == user.lower()) if user else pl.lit(True)
    loose = work.filter(pl.col("vm_key").is_null() & pl.col("method").is_in(SNAPSHOT_METHODS)
                        & pl.col("start").is_not_null() & appliance_s).select("_i", "start")
    if not loose.height or not points.height:
        return work["vm_key"]
    owners = _mutually_nearest(loose, points).select("_i", _tied="vm_key")
    tied = work.join(owners, on="_i", how="left", maintain_order="left").with_columns(
        _key=pl.coalesce("vm_key", "_tied"))
    # every task on one snapshot MoRef is that snapshot's VM's
    snapshot = pl.col("entity").cast(pl.Utf8)
    same = (tied.filter(snapshot.str.starts_with("snapshot-") & pl.col("_key").is_not_null())
            .group_by("_vc", "entity").agg(_by_moref=pl.col("_key").first(), _n=pl.col("_key").n_unique())
            .filter(pl.col("_n") == 1).drop("_n"))
    tied = tied.join(same, on=["_vc", "entity"], how="left", maintain_order="left")
    by_moref = pl.when(snapshot.str.starts_with("snapshot-")).then("_by_moref")
    return tied.select(pl.coalesce("_key", by_moref).alias("vm_key")).to_series()


def _mutually_nearest(loose: pl.DataFrame, points: pl.DataFrame) -> pl.DataFrame:
    """Each task (`_i`, `start`) with the VM of the moment nearest it, when that moment is within
    OWN_TASK_TOLERANCE, no other VM's moment is within RELEASE_APART as near, and no other task is
    nearer that moment. Sorted searches (join_asof), not all pairs within the tolerance: on 300
    VMs x 7 days those were millions of rows and raised the analysis' peak by about 360 MiB.

    The nearest moment is the one just before the task or the one just after it. The nearest moment
    of another VM on either side is that neighbour, or, when the neighbour is the nearest VM's, the
    moment just beyond the run of that VM's consecutive moments it belongs to."""
    run = (pl.col("vm_key") != pl.col("vm_key").shift()).fill_null(True).cum_sum()
    moments = (points.select("vm_key", "ts").sort("ts").with_row_index("_k")
               .with_columns(_run=run, _before=pl.col("ts").shift(1), _after=pl.col("ts").shift(-1))
               .with_columns(_other_before=pl.col("_before").first().over("_run"),
                             _other_after=pl.col("_after").last().over("_run")))
    side = moments.select("ts", "_k", "vm_key", "_other_before", "_other_after")
    tasks = loose.sort("start")
    back = tasks.join_asof(side.select("ts", _kb="_k", _vb="vm_key", _ob="_other_before", _tb="ts"),
                           left_on="start", right_on="ts", strategy="backward", check_sortedness=False)
    both = back.drop("ts").join_asof(
        side.select("ts", _kf="_k", _vf="vm_key", _of="_other_after", _tf="ts"),
        left_on="start", right_on="ts", strategy="forward", check_sortedness=False).drop("ts")
    d_back, d_fwd = pl.col("start") - pl.col("_tb"), pl.col("_tf") - pl.col("start")
    take_back = d_fwd.is_null() | (d_back <= d_fwd)
    vm = pl.when(take_back).then("_vb").otherwise("_vf")
    other_back = pl.when(pl.col("_vb") != vm).then(d_back).otherwise(pl.col("start") - pl.col("_ob"))
    other_fwd = pl.when(pl.col("_vf") != vm).then(d_fwd).otherwise(pl.col("_of") - pl.col("start"))
    nearest = both.select(
        "_i", "start", vm_key=vm, _k=pl.when(take_back).then("_kb").otherwise("_kf"),
        _d=pl.when(take_back).then(d_back).otherwise(d_fwd),
        _second=pl.min_horizontal(other_back, other_fwd))
    second = pl.when(pl.col("_second") <= OWN_TASK_TOLERANCE).then("_second")
    nearest = nearest.filter((pl.col("_d") <= OWN_TASK_TOLERANCE)
                             & (second.is_null() | (second - pl.col("_d") >= RELEASE_APART)))
    # the distance from each moment to the task nearest it
    own = (moments.select("_k", "ts")
           .join_asof(tasks.select(_t="start"), left_on="ts", right_on="_t", strategy="nearest",
                      check_sortedness=False)
           .select("_k", _nearest_task=(pl.col("_t") - pl.col("ts")).abs()))
    return nearest.join(own, on="_k").filter(pl.col("_d") == pl.col("_nearest_task")).select("_i", "vm_key")


def _tie_tasks(tasks: pl.DataFrame, gateway: pl.DataFrame, user: str | None) -> pl.DataFrame:
    """Tie snapshot tasks that name no VM to their VM through its own cycles (_tie_removals), and
    mark the appliance's own snapshot tasks (`own`): its vCenter user's, or (user unknown) a
    snapshot task of the VM at its own snapshot line or release."""
    # Worked out on the columns they need, in task order (`_i`), then set on the tasks: sorting
    # the tasks themselves would copy every column twice.
    work = tasks.select("vm_key", "method", "start", "initiator", "entity",
                        _vc=pl.col("vcenter").cast(pl.Utf8).fill_null("")).with_row_index("_i")
    keyed = _tie_removals(work, _release_points(gateway), user)
    released = work["vm_key"].is_null() & keyed.is_not_null()
    work = work.with_columns(vm_key=keyed, _released=released)
    snapshot_lines = (gateway.select("event", "vm_key", "ts")
                      .filter(pl.col("event").is_in(["snapshot_creating", "snapshot_removing"])
                              & pl.col("vm_key").is_not_null())
                      .select(pl.col("ts").alias("_sts"), "vm_key").sort("_sts"))
    work = work.sort("start")
    if snapshot_lines.height:
        work = work.join_asof(snapshot_lines, left_on="start", right_on="_sts", by="vm_key",
                              strategy="nearest", tolerance=OWN_TASK_TOLERANCE, check_sortedness=False)
    else:
        work = work.with_columns(pl.lit(None, tables.TS).alias("_sts"))
    initiator = pl.col("initiator").cast(pl.Utf8).str.to_lowercase()
    by_user = initiator == user.lower() if user else pl.lit(False)
    # one snapshot line is one task of the appliance's: of the tasks near it, the nearest (another
    # product's snapshot a minute before the appliance's is not the appliance's, initiator or not)
    snapshot = pl.col("method").is_in(SNAPSHOT_METHODS)
    gap = (pl.col("start") - pl.col("_sts")).abs()
    nearest = gap == gap.filter(snapshot).min().over("vm_key", "_sts")
    paired = snapshot & ((pl.col("_sts").is_not_null() & nearest) | pl.col("_released"))
    other_user = initiator.is_not_null() & pl.lit(user is not None) & ~by_user
    work = work.with_columns((by_user | (paired & ~other_user)).fill_null(False).alias("own")).sort("_i")
    return tasks.with_columns(work["vm_key"], work["own"])


def _without_unsettled(gw: pl.LazyFrame, unsettled: dict[str, list[str]], diags: Diagnostics) -> pl.LazyFrame:
    """Cycle lines of a name two vCenters' VMs share that nothing placed (both VMs ran a cycle of
    that id at the time) are no VM's: left out of the cycles, and said so."""
    bare = pl.col("vm_key").is_in(list(unsettled))
    left = gw.filter(bare).group_by("vm_key").agg(pl.len(), pl.col("cycle_id").unique().sort().head(5)).collect()
    for row in left.sort("vm_key").to_dicts():
        diags.add("warning", "vm-lines-unplaced",
                  f"{row['len']} gateway cycle lines name {row['vm_key']} and a cycle id that VMs of "
                  f"{' and '.join(k.split('/')[0] for k in unsettled[row['vm_key']])} both ran at the time "
                  f"(cycles {', '.join(map(str, row['cycle_id']))}); they were left out of both VMs' cycles",
                  "gateway_log", "the gateway's cycle lines name the VM only; its vcenter= token on every line "
                  "would tell them apart")
    return gw.filter(~bare)


def _ends(gw: pl.LazyFrame) -> pl.DataFrame:
    ends = tables.as_text(gw.filter(pl.col("event").is_in(["cycle_completed", "cycle_failed"]))).sort("ts", "line")
    return ends.group_by("vm_key", "cycle_id").agg(
        pl.col("ts").last().alias("end"),
        pl.when(pl.col("event").last() == "cycle_completed").then(pl.lit("succeeded"))
        .otherwise(pl.lit("failed")).alias("outcome"),
        pl.col("duration_sec").last().alias("end_duration"),
        pl.col("uploaded_bytes").last().alias("end_uploaded"),
        pl.col("error_id").last().alias("error_code"),
        pl.col("error_message").last().alias("error_text"),
        pl.col("member").last().alias("end_member"),
        pl.col("line").last().alias("end_line"),
        pl.col("vm").last().alias("end_vm"),
    ).collect()


def _starts(gw: pl.LazyFrame) -> pl.DataFrame:
    starts = tables.as_text(gw.filter(pl.col("event") == "cycle_started")).sort("ts", "line")
    return starts.group_by("vm_key", "cycle_id").agg(
        pl.col("ts").first().alias("start"),
        pl.col("vm").first(),
        pl.col("vm_id").drop_nulls().first(),
        pl.col("host").drop_nulls().last(),
        pl.col("cycle_type").first(),
        pl.col("disks").first(),
        pl.col("member").first(),
        pl.col("line").first(),
    ).collect()


def _states(gw: pl.LazyFrame) -> pl.DataFrame:
    states = tables.as_text(gw.filter(pl.col("event") == "state_changed")).sort("ts", "line")
    return states.group_by("vm_key", "cycle_id").agg(
        pl.col("state_from").filter(pl.col("state_to") == "Failed").last().alias("from_failed"),
        pl.col("state_to").filter(pl.col("state_to") != "Failed").last().alias("last_state"),
        pl.col("ts").max().alias("last_state_ts"),
    ).collect()


def _disks(gw: pl.LazyFrame) -> pl.DataFrame:
    progress = tables.as_text(gw.filter(pl.col("event") == "disk_progress")).with_columns(
        pl.coalesce("disk_id", "disk").alias("_disk"))
    return progress.group_by("vm_key", "cycle_id", "_disk").agg(
        pl.col("disk").drop_nulls().first(),
        pl.col("disk_id").drop_nulls().first(),
        pl.col("uploaded_bytes").max(),
        pl.col("total_bytes").max(),
        pl.col("rate_mbps").mean(),
        pl.col("ts").min().alias("first_progress"),
        pl.col("ts").max().alias("last_progress"),
    ).drop("_disk").collect()


def _portal_failures(portal: pl.DataFrame, identities: pl.DataFrame) -> pl.DataFrame:
    failed = portal.filter(pl.col("error_id").is_not_null()
                           | pl.col("severity").str.to_lowercase().is_in(["error", "critical"]))
    return (identity.resolve(failed, identities, "machine", None)
            .filter(pl.col("vm_key").is_not_null() & pl.col("ts").is_not_null())
            .select("vm_key", pl.col("ts").alias("p_ts"), pl.col("error_id").alias("p_code"),
                    pl.col("error_message").alias("p_text"), pl.col("member").alias("p_member"),
                    pl.col("line").alias("p_line"))
            .sort("p_ts"))


def _error_of_lines(matches: pl.DataFrame) -> pl.DataFrame:
    """The catalogue error id of each matched line (first signature id when several match)."""
    return (matches.filter(pl.col("kind") == "error").sort("signature")
            .group_by("member", "line").agg(pl.col("signature").first().alias("_error")))


def build(frames: dict[str, pl.DataFrame], diags: Diagnostics) -> CycleResult:
    identities = _table(frames, "identities")
    # The gateway may be a lazy scan (pipeline._SCANNED): each part below reads only its rows
    # and columns (state changes alone are hundreds of thousands of rows).
    scanned = identity.resolve(_table(frames, "gateway_log").lazy(), identities, cycle_col="cycle_id")
    marks = scanned.filter(_MARKS).select("event", "state_from", "state_to", "vm_key", "cycle_id", "ts").collect()
    tasks = identity.resolve(_table(frames, "vcenter_tasks"), identities, "vm_name")
    matches = _table(frames, "matches")
    activity = _table(frames, "activity")
    events = _table(frames, "vcenter_events")

    skew, basis = estimate_skew(marks, tasks)
    if skew is not None and abs(skew) > SKEW_REPORT_SECONDS:
        diags.add("warning", "clock-skew",
                  f"vCenter clock is {skew:+.0f} s off the appliance clock (median over {basis} "
                  "snapshot task/cycle pairs); vCenter times were shifted onto the appliance clock.",
                  "vcenter_tasks")
    shift = skew or 0.0
    tasks = _shift(tasks, ["start", "end", "progress_ts"], shift)
    events = _shift(events, ["ts"], shift)
    matches = _shift(matches, ["ts"], shift, pl.col("source").is_in(list(tables.VCENTER)))
    activity = _shift(activity, ["minute"], shift, pl.col("source").str.starts_with("vcenter"))
    user = appliance_user(scanned)
    tasks = _tie_tasks(tasks, marks, user)
    corrected = {"vcenter_tasks": tasks, "vcenter_events": events, "matches": matches,
                 "activity": activity}
    _, end_of_bundle = bundle_span({**frames, **corrected})
    gateway_last = tables.span(scanned, "ts")[1]

    gw = scanned.filter(pl.col("event").is_in(CYCLE_EVENTS) & pl.col("cycle_id").is_not_null()
                        & pl.col("vm_key").is_not_null())
    unsettled = identity.unsettled(identities)
    if unsettled:
        gw = _without_unsettled(gw, unsettled, diags)
    disks = _disks(gw)
    cycles = _assemble(gw, disks, _portal_failures(_table(frames, "portal_events"), identities),
                       matches, identities, marks, gateway_last, end_of_bundle)
    disk_frame = (disks.join(cycles.select("vm_key", "cycle_id", "cycle"), on=["vm_key", "cycle_id"])
                  .sort("cycle", "disk_id", "disk", nulls_last=True))
    return CycleResult(
        cycles=tables.conform("cycles", cycles), disks=tables.conform("cycle_disks", disk_frame),
        clock_skew=skew, skew_basis=basis, corrected=corrected, bundle_end=end_of_bundle,
        appliance_user=user,
    )


def _assemble(gw: pl.LazyFrame, disks: pl.DataFrame, portal: pl.DataFrame, matches: pl.DataFrame,
              identities: pl.DataFrame, marks: pl.DataFrame, gateway_last: datetime | None,
              end_of_bundle: datetime | None) -> pl.DataFrame:
    key = ["vm_key", "cycle_id"]
    starts, ends, states = _starts(gw), _ends(gw), _states(gw)
    # each cycle line is one of these events (CYCLE_EVENTS): together they hold every cycle
    keys = pl.concat([f.select(key) for f in (starts, ends, states, disks)]).unique()
    if not keys.height:
        return tables.empty("cycles")
    by_disk = disks.group_by("vm_key", "cycle_id").agg(
        pl.col("uploaded_bytes").sum().alias("disk_uploaded"),
        pl.col("total_bytes").sum().alias("disk_total"),
        pl.col("last_progress").max(),
        pl.len().alias("disk_rows"),
    )
    names = (identities.filter(pl.col("vm").is_not_null()).sort("vm")
             .group_by("vm_key").agg(pl.col("vm").first().alias("id_vm"),
                                     pl.col("host").drop_nulls().first().alias("id_host")))
    frame = (keys.join(starts, on=key, how="left").join(ends, on=key, how="left")
             .join(states, on=key, how="left").join(by_disk, on=key, how="left")
             .join(names, on="vm_key", how="left"))
    # a cycle whose VM no start or end line names: the name on the VM's first line that has one
    unnamed = frame.filter(pl.all_horizontal(pl.col("id_vm", "vm", "end_vm").is_null()))["vm_key"].unique()
    any_vm = (tables.as_text(gw.filter(pl.col("vm_key").is_in(unnamed.implode()))).select("ts", "vm_key", "vm").sort("ts")
              .group_by("vm_key").agg(pl.col("vm").drop_nulls().first().alias("gw_vm")).collect()
              if unnamed.len() else pl.DataFrame(schema={"vm_key": pl.Utf8, "gw_vm": pl.Utf8}))
    frame = frame.join(any_vm, on="vm_key", how="left").with_columns(
        pl.coalesce("id_vm", "vm", "end_vm", "gw_vm", "vm_key").alias("vm"),
        pl.coalesce("host", "id_host").alias("host"),
        pl.coalesce("start", pl.min_horizontal("last_state_ts", "end")).alias("_order"),
    )
    # The next start of the same VM bounds where a portal failure or an open cycle can belong.
    frame = frame.sort("vm_key", "_order", "cycle_id").with_columns(
        pl.col("start").shift(-1).over("vm_key").alias("next_start"))
    frame = _join_portal(frame, portal)

    lifecycle = marks.select("event", "ts").filter(pl.col("event").is_in(LIFECYCLE_EVENTS))["ts"].max()
    open_ = pl.col("outcome").is_null()
    restarted = pl.lit(lifecycle, tables.TS) >= pl.col("start") if lifecycle is not None else pl.lit(False)
    runs_to_end = (gateway_last is not None and end_of_bundle is not None
                   and gateway_last >= end_of_bundle - IN_PROGRESS_TAIL)
    frame = frame.with_columns(
        pl.when(~open_).then(pl.col("outcome"))
        .when(pl.col("next_start").is_null() & ~restarted.fill_null(True) & pl.lit(runs_to_end))
        .then(pl.lit("in_progress")).otherwise(pl.lit("incomplete")).alias("outcome"))

    last_seen = pl.max_horizontal("last_state_ts", "last_progress", "start")
    duration = pl.coalesce(
        "end_duration",
        (pl.coalesce("end", last_seen) - pl.col("start")).dt.total_microseconds() / 1e6)
    uploaded = pl.coalesce("end_uploaded", "disk_uploaded")
    frame = frame.with_columns(
        pl.format("{}#{}", "vm", "cycle_id").alias("cycle"),
        pl.col("cycle_type").replace_strict(CYCLE_TYPES, default=None).alias("type"),
        pl.when(pl.col("outcome") == "failed").then(pl.coalesce("from_failed", "last_state"))
        .alias("failed_state"),
        uploaded.alias("uploaded_bytes"),
        pl.col("disk_total").alias("total_bytes"),
        duration.alias("duration_sec"),
        pl.when(duration > 0).then(uploaded / duration / MB).alias("rate_mbps"),
        pl.coalesce("disks", "disk_rows").alias("disks"),
        pl.coalesce("member", "end_member").alias("member"),
        pl.coalesce("line", "end_line").alias("line"),
    )
    line_errors = _error_of_lines(matches)
    frame = (frame.join(line_errors.rename({"member": "end_member", "line": "end_line"}),
                        on=["end_member", "end_line"], how="left")
             .join(line_errors.rename({"member": "p_member", "line": "p_line", "_error": "_perror"}),
                   on=["p_member", "p_line"], how="left")
             .with_columns(pl.coalesce("_error", "_perror").alias("error")))
    return tables.conform("cycles", frame).sort("vm_key", "start", "cycle_id", nulls_last=True)


def _join_portal(frame: pl.DataFrame, portal: pl.DataFrame) -> pl.DataFrame:
    """A cycle the gateway never ended takes the VM's first portal failure after its start."""
    if not portal.height:
        return frame.with_columns(pl.lit(None, tables.STR).alias("p_member"), pl.lit(None, tables.INT).alias("p_line"))
    open_cycles = frame.filter(pl.col("end").is_null() & pl.col("start").is_not_null()).sort("start")
    joined = open_cycles.join_asof(portal, left_on="start", right_on="p_ts", by="vm_key", strategy="forward",
                                     check_sortedness=False)
    joined = joined.with_columns(
        pl.when(pl.col("next_start").is_null() | (pl.col("p_ts") < pl.col("next_start")))
        .then(pl.struct("p_ts", "p_code", "p_text", "p_member", "p_line")).alias("_p")
    ).drop("p_ts", "p_code", "p_text", "p_member", "p_line").unnest("_p")
    joined = joined.with_columns(
        pl.coalesce("end", "p_ts").alias("end"),
        pl.when(pl.col("p_ts").is_not_null()).then(pl.lit("failed")).otherwise(pl.col("outcome")).alias("outcome"),
        pl.coalesce("error_code", "p_code").alias("error_code"),
        pl.coalesce("error_text", "p_text").alias("error_text"),
    ).drop("p_ts", "p_code", "p_text")
    closed = frame.filter(~(pl.col("end").is_null() & pl.col("start").is_not_null())).with_columns(
        pl.lit(None, tables.STR).alias("p_member"), pl.lit(None, tables.INT).alias("p_line"))
    return pl.concat([closed, joined.select(closed.columns)], how="vertical")
