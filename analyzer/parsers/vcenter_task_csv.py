"""vSphere Client task export (CSV) -> vcenter_tasks rows (form "csv").

    Task Name,Target,Status,Details,Initiator,Queued For,Start Time,Completion Time,Execution Time,Server
    Create virtual machine snapshot,APP01,Another task is already in progress.,,VSPHERE.LOCAL\\svc-backup,3 ms,05/14/2024 10:21:33 AM,05/14/2024 10:21:35 AM,2 s,vcsa01.contoso.local
    Remove snapshot,APP01,95%,,VSPHERE.LOCAL\\svc-azmig,2 ms,2024-05-14T10:25:00Z,,,vcsa01.contoso.local

  -> task_name, method (display name mapped back through METHOD_NAMES), vm_name (Target),
     outcome (Completed -> succeeded, Failed -> failed with Details as fault_message, In progress or
     `<n>%` -> running with progress n, any other status is the fault text itself -> failed),
     fault_type (known fault texts), initiator, start / end, vcenter (Server, else the member's).

Column names are matched case-insensitively, in any order; `Execution Time` and `Server` are
optional. Display times carry no zone: vCenter local time (`vcenter_tz`), else UTC.
The export is small (one row per task the user listed), so it is read with the csv module.
"""

from __future__ import annotations

import csv
import io

import polars as pl

from analyzer import tables
from analyzer.diagnostics import Diagnostics
from analyzer.parsers import timeparse
from analyzer.parsers.lines import FAULT_TEXTS, METHOD_NAMES, ParseContext, Parsed, Source, csv_delimiter

COLUMNS = {
    "task name": "task_name",
    "target": "vm_name",
    "status": "status",
    "details": "details",
    "initiator": "initiator",
    "queued for": "queued_for",
    "start time": "start_text",
    "completion time": "end_text",
    "execution time": "execution_time",
    "server": "server",
}
REQUIRED = ("task name", "target", "status")
_DISPLAY_TO_METHOD = {name.lower(): method for method, name in METHOD_NAMES.items()}
_RUNNING = ["in progress", "in-progress", "running", "queued", "pending"]
_SUCCEEDED = ["completed", "completed successfully", "success", "succeeded"]
_FAILED = ["failed", "error", "canceled", "cancelled"]


def _header(head: str) -> list[str] | None:
    first = next((line for line in head.lstrip("\ufeff").splitlines() if line.strip()), "")
    delimiter = csv_delimiter(first)
    try:
        names = next(csv.reader([first], delimiter=delimiter))
    except (csv.Error, StopIteration):
        return None
    return [name.strip().strip('"').lower() for name in names]


def sniff(head: str, member: str) -> bool:
    names = _header(head)
    return bool(names) and all(required in names for required in REQUIRED)


def parse(text: str, member: str, ctx: ParseContext) -> Parsed:
    diags = Diagnostics()
    rows = _rows(text.lstrip("\ufeff"), member, diags)
    if not rows.height:
        return Parsed(tables={"vcenter_tasks": tables.empty("vcenter_tasks")}, diagnostics=diags)

    status = pl.col("status").str.strip_chars()
    status_key = status.str.to_lowercase()
    percent = status.str.extract(r"^(\d{1,3})\s*%$", 1).cast(pl.Int64, strict=False)
    details = pl.col("details").str.strip_chars()
    details = pl.when(details != "").then(details)
    start, start_naive = timeparse.any_form(pl.col("start_text"), ctx.vcenter_tz)
    end, end_naive = timeparse.any_form(pl.col("end_text"), ctx.vcenter_tz)

    tasks = rows.with_columns(
        outcome=pl.when(percent.is_not_null() | status_key.is_in(_RUNNING)).then(pl.lit("running"))
        .when(status_key.is_in(_SUCCEEDED)).then(pl.lit("succeeded"))
        .when(status_key.is_in(_FAILED) | (status_key != "")).then(pl.lit("failed"))
        .when(pl.col("end_text").str.strip_chars() != "").then(pl.lit("succeeded"))
        .otherwise(pl.lit("running")),
        progress=percent,
        fault_message=pl.when(status_key.is_in(_FAILED)).then(details)
        .when(percent.is_null() & ~status_key.is_in(_RUNNING + _SUCCEEDED) & (status_key != ""))
        .then(status),
        start=start, end=end,
        naive=start_naive.fill_null(False) | end_naive.fill_null(False),
        bad_time=(start.is_null() & (pl.col("start_text").str.strip_chars() != ""))
        | (end.is_null() & (pl.col("end_text").str.strip_chars() != "")),
    ).with_columns(
        fault_type=_fault_type(pl.col("fault_message")),
        method=pl.col("task_name").str.strip_chars().str.to_lowercase()
        .replace_strict(_DISPLAY_TO_METHOD, default=None, return_dtype=pl.Utf8),
        vcenter=pl.coalesce(pl.when(pl.col("server").str.strip_chars() != "")
                            .then(pl.col("server").str.strip_chars()),
                            pl.lit(ctx.vcenter, pl.Utf8)),
        end=pl.when(pl.col("outcome") == "running").then(None).otherwise(pl.col("end")),
        member=pl.lit(member), form=pl.lit("csv"),
    )

    naive = tasks["naive"].sum()
    if naive and not ctx.vcenter_tz:
        diags.add("warning", "naive-timestamps",
                  f"{naive} task rows have times without a zone; they were read as UTC", member,
                  hint="give --vcenter-tz or vcenter_tz in bundle.toml")
    bad = tasks.filter(pl.col("bad_time"))
    if bad.height:
        diags.add("warning", "bad-timestamps",
                  f"{bad.height} task rows have a start or completion time that could not be "
                  f"read (first at line {bad['line'][0]})", member)

    tasks = tables.conform("vcenter_tasks", tasks)
    times = pl.concat([tasks["start"], tasks["end"]]).drop_nulls()
    return Parsed(tables={"vcenter_tasks": tasks}, records=tasks.height,
                  first=times.min() if len(times) else None,
                  last=times.max() if len(times) else None, diagnostics=diags)


def _rows(text: str, member: str, diags: Diagnostics) -> pl.DataFrame:
    """CSV rows as strings, with the line each starts on; short rows padded, long rows cut."""
    lines = text.splitlines(keepends=True)
    skipped = 0
    while skipped < len(lines) and not lines[skipped].strip():
        skipped += 1
    if skipped == len(lines):
        return pl.DataFrame()
    delimiter = csv_delimiter(lines[skipped])
    reader = csv.reader(io.StringIO("".join(lines[skipped:])), delimiter=delimiter)
    schema = {col: pl.Utf8 for col in COLUMNS.values()}
    header: list[str | None] = []
    data: list[dict[str, str]] = []
    starts: list[int] = []
    try:
        header = [COLUMNS.get(name.strip().lower()) for name in next(reader)]
        previous_end = reader.line_num
        for values in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not any(value.strip() for value in values):
                continue
            values = (values + [""] * len(header))[: len(header)]
            data.append({col: value for col, value in zip(header, values) if col})
            starts.append(start + skipped)
    except csv.Error as exc:
        diags.add("warning", "malformed-csv", f"the CSV stops being readable: {exc}",
                  f"{member}:{reader.line_num + skipped}")
    missing = [name for name in REQUIRED if COLUMNS[name] not in header]
    if missing:
        diags.add("error", "missing-columns", f"the task export has no {', '.join(missing)} column",
                  member)
        return pl.DataFrame()
    frame = pl.DataFrame(data, schema=schema) if data else pl.DataFrame(schema=schema)
    return frame.with_columns(line=pl.Series(starts, dtype=pl.Int64)).with_columns(
        pl.col(col).fill_null("") for col in schema)


def _fault_type(message: pl.Expr) -> pl.Expr:
    lowered = message.str.to_lowercase()
    result = pl.lit(None, pl.Utf8)
    for text, fault in reversed(FAULT_TEXTS.items()):
        known = lowered.str.contains(text.lower(), literal=True)
        result = pl.when(known).then(pl.lit(fault)).otherwise(result)
    return result


SOURCE = Source(name="vcenter_tasks", form="task_csv", tables=("vcenter_tasks",), sniff=sniff, parse=parse)
