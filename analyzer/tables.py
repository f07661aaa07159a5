"""The schema of every frame that passes between stages.

Stages meet only at these frames. A parser returns frames with exactly these columns (in this
order, see `empty` / `conform`); later stages may rely on every column existing with this dtype.
All times are UTC (`TS`). `member` is the path inside the bundle (nested archives joined with
`!/`), `line` the 1-based line number of the record's first line in that member.
"""

from __future__ import annotations

import io

import polars as pl

TS = pl.Datetime("us", "UTC")
STR = pl.Utf8
CAT = pl.Categorical()
INT = pl.Int64
FLOAT = pl.Float64
BOOL = pl.Boolean

PROVENANCE = {"member": STR, "line": INT}

# Gateway service log (appliance). One row per record; continuation lines folded into `detail`.
#   2024-05-14T10:21:33.512Z Info [12] Gateway...SnapshotReplicationEngine - Replication cycle started. vm=APP01 ...
# `event` classifies the fixed message shapes of FORMATS.md section 1:
#   service_starting service_started service_stopping service_stopped heartbeat vddk
#   vcenter_connected cycle_started state_changed snapshot_creating snapshot_created
#   snapshot_removing snapshot_removal_deferred disk_progress cycle_completed cycle_failed
# and is null for any other message.
# Text that repeats from row to row (member, levels, names, ids, error tokens) is categorical: a 4-byte
# code per row, not a 16-byte view plus the text, even where null (a 1 GiB bundle keeps 0.7 M
# gateway rows for the later stages). `message` and `detail` stay text.
GATEWAY_LOG = {
    "member": CAT,
    "line": INT,
    "ts": TS,
    "naive": BOOL,  # timestamp had no zone; appliance_tz (or UTC) was applied
    "level": CAT,  # Verbose | Info | Warning | Error | Critical (normalised case)
    "thread": CAT,
    "component": CAT,
    "message": STR,  # the first line's message
    "detail": STR,  # continuation lines joined with "\n", null when none
    "event": CAT,
    # key=value tokens (null when absent)
    "vm": CAT,  # vm= or the embedded "VM: APP01." / "virtual machine APP01;"
    "vm_id": CAT,  # vmId= (MoRef, vm-1042)
    "host": CAT,
    "vcenter": CAT,
    "datastore": CAT,
    "cycle_id": INT,
    "cycle_type": CAT,  # InitialReplication | DeltaReplication | Resync | FinalDeltaReplication
    "state_from": CAT,
    "state_to": CAT,
    "disk": CAT,
    "disk_id": CAT,
    "disks": INT,
    "uploaded_bytes": INT,
    "total_bytes": INT,
    "rate_mbps": FLOAT,
    "duration_sec": FLOAT,
    "duration_ms": FLOAT,
    "error_id": CAT,
    "error": CAT,  # error= token, e.g. DiskUploadTimedOut
    "error_message": CAT,  # message="..." token (the portal text)
    "active_cycles": INT,
    "queued_cycles": INT,
    "version": CAT,  # version= (service or VDDK)
    "reason": CAT,
    "snapshot_name": CAT,  # name= on snapshot lines
}

# Portal replication events: CSV export, az/REST JSON (one row per health error), pasted text.
PORTAL_EVENTS = {
    **PROVENANCE,
    "form": STR,  # csv | json | text
    "ts": TS,
    "naive": BOOL,
    "severity": STR,
    "event": STR,  # as written (English or Korean)
    "machine": STR,
    "event_type": STR,
    "error_id": STR,
    "error_message": STR,
    "possible_causes": STR,
    "recommendation": STR,
    "event_code": STR,
    "initiated_by": STR,
    # a provider error nested in the message ("Provider error code: 31475 Provider error
    # message: ..."), or a health error's inner error
    "provider_code": STR,
    "provider_message": STR,
    "health": STR,  # the item's health as given (Normal | Warning | Critical), may be Normal with errors
}

# Get-AzMigrateServerMigrationStatus table.
REPLICATION_STATUS = {
    **PROVENANCE,
    "appliance": STR,
    "server": STR,
    "state": STR,
    "progress": STR,
    "time_elapsed": STR,
    "time_remaining": STR,
    "upload_speed": STR,
    "health": STR,  # Normal | Warning | Critical
    "last_sync": TS,
    "datastore": STR,
}

# The appliance resources of Get-AzMigrateServerMigrationStatus -Expedite ("Resource utilization
# information for migration operations"), one row per resource:
#   Appliance CPU Sum : Primary and scale out appliances   4 Cores   -   99%   At capacity
APPLIANCE_RESOURCES = {
    **PROVENANCE,
    "appliance": STR,  # from the status table printed above it, when it names one appliance
    "server": STR,  # likewise, the server the command was run for
    "resource": STR,  # as written: "Appliance CPU Sum : Primary and scale out appliances"
    "kind": STR,  # cpu | ram | network | nfc_buffer | parallel_disks | snapshot_count | other
    "capacity": STR,  # "4 Cores", "32768 MB" (as written; "-" -> null)
    "utilization": STR,  # utilization for server migrations
    "total_utilization": STR,
    "status": STR,  # Underutilized | At capacity | ... as written
}

# Any text member no specific source claims (and lines around pasted portal errors), one row per
# record: a line that starts with the member's timestamp layout, with the lines below it that do
# not folded into `detail`.
#   2020-07-20T12:28:41.805Z| host-27| W115: [NFC ERROR]NfcNewAuthdConnectionEx: Failed to connect ...
#   May  7 17:07:09 esx07 Hostd: [error] ...
# form: text | vmware_log | vddk_log | esxi_syslog | pasted
# layout: the timestamp layout chosen for the member (text_log.LAYOUTS), or "none"
TEXT_LOG = {
    "member": CAT,
    "line": INT,
    "form": CAT,
    "layout": CAT,
    "ts": TS,  # UTC; null when the layout has no date or the time is impossible
    "naive": BOOL,  # no zone in the text: read as UTC (null when ts is null)
    "yearless": BOOL,  # syslog-like stamp without a year: year 2000 stands in (null when ts is null)
    "level": CAT,  # critical | error | warning | info | verbose | debug, null when none
    "component": CAT,  # logger, process, or VMware thread (vmx, vcpu-0)
    "thread": CAT,
    "op_id": STR,
    "message": STR,  # the first line after the prefix
    "detail": STR,  # continuation lines joined with "\n", null when none
    "vm": CAT,  # a vmware.log's VM
    "host": CAT,  # syslog host name, or the host of the vm-support archive (ParseContext.host)
}

# vCenter / ESXi log records (vpxd.log and relatives), `-->` continuations folded into `detail`.
#   2024-05-14T10:21:33.123Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxLro opID=68209c6d] msg
# layout: vpxd65 | vpxd55 | win5x | esxi8 | generic
VCENTER_LOG = {
    **PROVENANCE,
    "vcenter": STR,  # which vCenter this member belongs to (vc-support archive / hostname), or null
    "host": STR,  # the ESXi host of a hostd/vpxa log (ParseContext.host: vm-support archive), or null
    "ts": TS,
    "naive": BOOL,
    "layout": STR,
    "level": STR,  # lowercase word
    "process": STR,
    "sub": STR,
    "op_id": STR,
    "message": STR,
    "detail": STR,
}

# The vpxd lines vCenter tasks are paired from (vcenter_log.task_lines): `[VpxLRO] -- BEGIN /
# FINISH / ERROR` and `info.progress`, cut to the fields the pairing reads.
VCENTER_TASK_LINES = {
    "member": CAT,  # categorical as in GATEWAY_LOG: 0.7 M lines on a 1 GiB bundle
    "line": INT,
    "vcenter": CAT,
    "ts": TS,
    "op_id": STR,
    "kind": CAT,  # BEGIN | FINISH | ERROR | PROGRESS
    "id": STR,  # task-88231, lro-1203
    "entity": CAT,  # vm-1042, snapshot-17, SessionManager
    "method": CAT,
    "fault_type": STR,  # FINISH/ERROR: the line's fault, else the one of its `-->` block
    "fault_message": STR,
    "progress": INT,  # PROGRESS: the value, when the line gives one
}

# vCenter long-running operations: vpxd BEGIN/FINISH/ERROR paired by id, or the vSphere Client
# task CSV. One row per task. Repeating text is categorical, as in GATEWAY_LOG (a 1 GiB bundle
# has 0.25 M tasks); ids, names and fault messages stay text.
VCENTER_TASKS = {
    "member": CAT,  # the BEGIN line (or CSV row)
    "line": INT,
    "form": CAT,  # vpxd | csv
    "vcenter": CAT,
    "task_id": STR,  # task-88231, task-internal-5, lro-12 (null for CSV rows)
    "entity": STR,  # MoRef the task ran on: vm-1042, snapshot-77, host-12
    "vm_id": STR,  # entity when it is a vm-, else resolved later (null)
    "vm_name": STR,  # CSV Target, or resolved later
    "method": CAT,  # vim.VirtualMachine.createSnapshot (CSV display names mapped to methods)
    "task_name": CAT,  # display name when known
    "start": TS,
    "end": TS,  # null while running / hung
    "outcome": CAT,  # succeeded | failed | running
    "fault_type": CAT,  # vim.fault.TaskInProgress
    "fault_message": STR,  # from the `msg = "..."` continuation
    "initiator": CAT,
    "op_id": STR,
    "progress": INT,  # last info.progress seen (0-100), null when never reported
    "progress_ts": TS,  # when progress last changed
    "end_member": CAT,
    "end_line": INT,
}

# vCenter events logged by vpxd: `Event <key> : <type> : <msg>` or the syslog form.
VCENTER_EVENTS = {
    **PROVENANCE,
    "vcenter": STR,
    "ts": TS,
    "event_key": STR,
    "event_type": STR,  # com.vmware.vc.VmDiskConsolidatedEvent, VmMigratedEvent, ...
    "severity": STR,
    "user": STR,
    "datacenter": STR,
    "chain_id": STR,
    "message": STR,
    "op_id": STR,  # opID of the vpxd line that logged the event (ties a TaskEvent to its task)
}

# One row per VM identity, built from every (name, MoRef) pair seen together.
IDENTITIES = {
    "vm_key": STR,  # stable key: lowercased name, or "<vcenter>/<moref>" when no name is known
    "vm": STR,  # display name as first seen (null when only a MoRef is known)
    "vm_id": STR,  # one row per MoRef; null when the VM has none
    "vcenter": STR,
    "host": STR,  # last ESXi host seen for the VM
}

# Signature matches over any source table.
MATCHES = {
    **PROVENANCE,
    "signature": STR,
    "kind": STR,  # error | evidence
    "source": STR,  # gateway_log | portal_events | vcenter_log | vcenter_tasks | vcenter_events
    "ts": TS,
    "vm": STR,
    "vm_id": STR,
    "host": STR,
    "vcenter": STR,  # the vCenter of the row (vc-support archive, vcenter= token), for its MoRef
    "text": STR,  # the matched text (not yet redacted)
    "captures": pl.List(pl.Struct({"name": STR, "value": STR})),
}

# Replication cycles per VM (one row per cycle); disks in CYCLE_DISKS.
CYCLES = {
    "vm_key": STR,
    "vm": STR,
    "vm_id": STR,
    "host": STR,
    "cycle": STR,  # "APP01#17"
    "cycle_id": INT,
    "type": STR,  # initial | delta | resync | final_delta
    "start": TS,
    "end": TS,
    "outcome": STR,  # succeeded | failed | in_progress | incomplete
    "failed_state": STR,
    "error": STR,  # catalogue error id
    "error_code": STR,
    "error_text": STR,
    "uploaded_bytes": INT,
    "total_bytes": INT,
    "duration_sec": FLOAT,
    "rate_mbps": FLOAT,
    "disks": INT,
    "member": STR,
    "line": INT,
}

CYCLE_DISKS = {
    "cycle": STR,
    "vm_key": STR,
    "disk": STR,
    "disk_id": STR,
    "uploaded_bytes": INT,
    "total_bytes": INT,
    "rate_mbps": FLOAT,
    "first_progress": TS,
    "last_progress": TS,
}

# Records per minute per source, kept instead of every row so silence can be told from quiet.
ACTIVITY = {
    "source": STR,  # gateway_log | vcenter_log | ...
    "member": STR,
    "minute": TS,
    "records": INT,
}

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "activity": ACTIVITY,
    "gateway_log": GATEWAY_LOG,
    "portal_events": PORTAL_EVENTS,
    "replication_status": REPLICATION_STATUS,
    "appliance_resources": APPLIANCE_RESOURCES,
    "text_log": TEXT_LOG,
    "vcenter_log": VCENTER_LOG,
    "vcenter_task_lines": VCENTER_TASK_LINES,
    "vcenter_tasks": VCENTER_TASKS,
    "vcenter_events": VCENTER_EVENTS,
    "identities": IDENTITIES,
    "matches": MATCHES,
    "cycles": CYCLES,
    "cycle_disks": CYCLE_DISKS,
}
# The tables vCenter's logs and task exports fill (their times are vCenter's clock).
VCENTER = ("vcenter_log", "vcenter_tasks", "vcenter_events")


def empty(name: str) -> pl.DataFrame:
    """An empty frame with the declared schema of table `name`."""
    return pl.DataFrame(schema=SCHEMAS[name])


def conform(name: str, frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """Add missing columns as nulls, cast to the declared dtypes, order as declared (lazily for a
    lazy frame).

    Extra columns are dropped: the schema is the contract between stages.
    """
    schema = SCHEMAS[name]
    current = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
    if list(current.items()) == list(schema.items()):
        return frame  # as it is: a select, even of no-op casts, can copy a frame of many chunks
    exprs = []
    for col, dtype in schema.items():
        if col in frame.columns:
            exprs.append(pl.col(col).cast(dtype, strict=False))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(col))
    return frame.select(exprs)


def concat(name: str, frames: list[pl.DataFrame]) -> pl.DataFrame:
    """The frames as one, in one chunk per column. Chunked, polars may cut the columns at different
    rows, and every later select or filter would then copy the whole frame to line them up.
    (The ingest's many parts are joined by `load`, a column at a time.)"""
    frames = [conform(name, f) for f in frames if f.height]
    return pl.concat(frames, how="vertical", rechunk=True) if frames else empty(name)


def store(name: str, frame: pl.DataFrame) -> bytes:
    """The frame, conformed to `name`'s schema, as compressed Parquet: kept rows wait in memory
    this way until the ingest ends (the 300-VM fleet's gateway rows take 32 MiB so). Writing
    copies the rows out: the frame they were cut from can go. Snappy rather than zstd: the later
    stages scan these parts a dozen times, and snappy reads in half the time (a slice of gateway
    rows: 11 against 20 ms) for 1.8 times the bytes (all parts of the fleet: 52 against 29 MiB)."""
    out = io.BytesIO()
    conform(name, frame).write_parquet(out, compression="snappy")
    return out.getvalue()


def load(name: str, stored: list[bytes]) -> pl.DataFrame:
    """The stored parts (see `store`) as one frame, in one chunk per column. Read a column at a
    time: the read then needs room for one column twice, not for the table twice."""
    if not stored:
        return empty(name)
    scan = pl.scan_parquet(stored)
    return pl.DataFrame([scan.select(column).collect().to_series().rechunk() for column in SCHEMAS[name]])


def scan(name: str, stored: list[bytes]) -> pl.LazyFrame:
    """The stored parts (see `store`) as a lazy frame: a query decompresses only the columns it
    reads. For a table most stages read a few columns of."""
    return pl.scan_parquet(stored) if stored else empty(name).lazy()


def span(frame: pl.DataFrame | pl.LazyFrame, column: str) -> tuple:
    """The least and the greatest value of a column (None, None when it has none)."""
    values = pl.col(column)
    return frame.lazy().select(values.min().alias("lo"), values.max().alias("hi")).collect().row(0)


def as_text(frame: pl.LazyFrame) -> pl.LazyFrame:
    """The frame with its categorical columns read as text (lazily: only the columns a query
    keeps are cast), for stages that build text columns of their own from them."""
    return frame.with_columns(pl.col(pl.Categorical).cast(pl.Utf8))


def text_rank(frame: pl.DataFrame, column: str) -> pl.Expr:
    """A text column as its rank among the column's distinct values, to sort by: it sorts as the
    text does, and sorting by several columns with a text one among them copies that text."""
    names = frame[column].drop_nulls().unique().sort()
    ranks = pl.Series(range(len(names)), dtype=pl.UInt32)
    return pl.col(column).replace_strict(names, ranks, default=None, return_dtype=pl.UInt32)


def compact(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with its text copied into buffers of its own.

    Polars keeps text as views into shared buffers, and a filter keeps the views it selects but
    every buffer they point into: a few rows kept from a 16 MiB slice hold the whole slice's text.
    Call this on rows kept from a much larger frame, so the larger frame's memory can go."""
    exprs = [_copied(pl.col(name), dtype).alias(name) for name, dtype in frame.schema.items()
             if _has_text(dtype)]
    return frame.with_columns(exprs) if exprs and frame.height else frame


def _has_text(dtype: pl.DataType) -> bool:
    if dtype == pl.String:
        return True
    if isinstance(dtype, pl.List):
        return _has_text(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return any(_has_text(f.dtype) for f in dtype.fields)
    return False


def _copied(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return pl.concat_str(expr, pl.lit(""))  # a new string per row (null stays null)
    if isinstance(dtype, pl.List):
        return expr.list.eval(_copied(pl.element(), dtype.inner))
    if isinstance(dtype, pl.Struct):
        fields = [_copied(expr.struct.field(f.name), f.dtype).alias(f.name) for f in dtype.fields]
        return pl.when(expr.is_not_null()).then(pl.struct(fields))
    return expr
