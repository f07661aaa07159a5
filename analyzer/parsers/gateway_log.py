"""Gateway service log of the appliance (asrgwy): one record per line, stack traces folded in.

    2024-05-14T10:21:33.512Z Info [12] Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine - Replication cycle started. vm=APP01 vmId=vm-1042 cycleId=17 type=DeltaReplication disks=2
    2024-05-14 19:34:02.118 ERROR [31] Gateway.Service.Upload.DiskUploader - Replication cycle failed. vm=APP01 cycleId=17 errorId=1011 error=DiskUploadTimedOut message="The upload ... did not complete"
       at Gateway.Service.Upload.DiskUploader.UploadAsync()

become GATEWAY_LOG rows: ts (UTC; the naive second line read in appliance_tz, naive=true),
level=Error, thread=31, component, message, event=cycle_failed, vm=APP01, cycle_id=17,
error_id=1011, error=DiskUploadTimedOut, error_message="The upload ...", detail="   at ...".

A line that starts with a timestamp but is not an envelope, and lines before the first record,
are unparsed (counted, sampled). A record whose timestamp is impossible (9999-99-99, or a year
outside 1970..2099) is kept with a null ts: its text can still be evidence.
"""

from __future__ import annotations

import re

import polars as pl

from analyzer import tables
from analyzer.diagnostics import Diagnostics
from analyzer.parsers import timeparse
from analyzer.parsers.lines import Keep, ParseContext, Parsed, Source, holds_any, per_minute, split_lines

MAX_VALUE_CHARS = 64 * 1024  # longest message/detail kept; a 20 MB line must not flow downstream
SAMPLE_CHARS = 120
SNIFF_LINES = 50
PLAUSIBLE_YEARS = (1970, 2099)

_TS = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:\s?(?:Z|[+-]\d{2}:?\d{2}))?"
# Only the header is captured; the message is the rest of the line (sliced, not captured), so the
# regex engine never has to track groups across a very long message.
_HEADER = (
    rf"^(?P<head>(?P<ts>{_TS})\s+(?P<level>(?i:verbose|info|warning|error|critical))\s+"
    r"\[(?P<thread>[^\]]*)\]\s+(?P<component>\S+)\s+-(?:\s|$))"
)
_HEADER_RE = re.compile(_HEADER)
_STARTS_WITH_TS = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"
# A key=value token; a quoted value swallows any key=value text inside it.
_TOKEN = r'(?:^|\s)[A-Za-z]\w*=(?:"(?:[^"\\]|\\.)*"|\S+)'

LEVELS = {name.lower(): name for name in ("Verbose", "Info", "Warning", "Error", "Critical")}

TOKENS = {
    "vm": "vm", "vmId": "vm_id", "host": "host", "vcenter": "vcenter", "datastore": "datastore",
    "cycleId": "cycle_id", "type": "cycle_type", "from": "state_from", "to": "state_to",
    "disk": "disk", "diskId": "disk_id", "disks": "disks", "uploadedBytes": "uploaded_bytes",
    "totalBytes": "total_bytes", "rateMBps": "rate_mbps", "durationSec": "duration_sec",
    "durationMs": "duration_ms", "errorId": "error_id", "error": "error",
    "message": "error_message", "activeCycles": "active_cycles", "queuedCycles": "queued_cycles",
    "version": "version", "reason": "reason", "name": "snapshot_name",
}

EVENTS = (  # message prefix -> event (FORMATS.md section 1)
    ("Service asrgwy starting", "service_starting"),
    ("Service asrgwy started", "service_started"),
    ("Service asrgwy stopping", "service_stopping"),
    ("Service asrgwy stopped", "service_stopped"),
    ("Heartbeat.", "heartbeat"),
    ("VDDK initialised", "vddk"),
    ("Connected to vCenter", "vcenter_connected"),
    ("Replication cycle started", "cycle_started"),
    ("State changed", "state_changed"),
    ("Creating snapshot", "snapshot_creating"),
    ("Snapshot created", "snapshot_created"),
    ("Removing snapshot", "snapshot_removing"),
    ("Snapshot removal did not complete", "snapshot_removal_deferred"),
    ("Disk upload progress", "disk_progress"),
    ("Replication cycle completed", "cycle_completed"),
    ("Replication cycle failed", "cycle_failed"),
)


_TOKEN_KEYS = {column: key for key, column in TOKENS.items()}
_TOKEN_COLUMNS = pl.Enum(sorted(_TOKEN_KEYS))  # pivots faster than text
# Columns cut from the line as written (the level changes case only).
_AS_WRITTEN = {"thread", "component", "message", "detail", "vm", "vm_id"}


def keep_where(column: str, values: tuple[str, ...]) -> Keep | None:
    """Literals every record whose `column` is one of `values` holds in its lines; None when the
    column is not text taken from the line (numbers, times)."""
    values = tuple(values)
    if any('"' in v or "\\" in v for v in values):
        return None  # quoted values are unescaped: not the line's text
    if column == "event":
        return Keep(literals=tuple(prefix for prefix, name in EVENTS if name in values))
    if column == "level":
        return Keep(ignore_case=tuple(v.lower() for v in values))
    if column in _AS_WRITTEN:  # vm / vm_id may also be embedded in the message
        return Keep(literals=values)
    if tables.GATEWAY_LOG.get(column) in (tables.STR, tables.CAT) and column in _TOKEN_KEYS:
        key = _TOKEN_KEYS[column]
        return Keep(literals=tuple(f"{key}{eq}{v}" for v in values for eq in ("=", '="')))
    return None


def keep_literals(column: str, literals: tuple[str, ...], ignore_case: bool = False) -> Keep | None:
    """Literals every record whose `column` contains one of `literals` holds in its lines."""
    if column not in _AS_WRITTEN and not (tables.GATEWAY_LOG.get(column) in (tables.STR, tables.CAT)
                                          and column in _TOKEN_KEYS):
        return None
    if any('"' in x or "\\" in x or "\n" in x for x in literals):
        return None  # unescaped values, details joined across lines
    return Keep(ignore_case=tuple(literals)) if ignore_case else Keep(literals=tuple(literals))


def sniff(head: str, member: str) -> bool:
    """Several of the first lines are gateway envelopes (the name is not consulted).

    Indented and `---` lines are skipped: a rotated file may open in the middle of a stack trace.
    """
    lines = [line for line in head.splitlines()[: SNIFF_LINES * 20]
             if line.strip() and not line[0].isspace() and not line.startswith("---")]
    lines = lines[:SNIFF_LINES]
    hits = sum(1 for line in lines if _HEADER_RE.match(line))
    return hits > 0 and hits >= min(3, len(lines))


def parse(text: str | bytes, member: str, ctx: ParseContext) -> Parsed:
    """Every record, or with `ctx.keep` only the records that hold one of its literals (plus the
    ones the diagnostics and first/last need); `records`, `activity` and the diagnostics always
    count every record.

    Only the kept records pay for the header regex, timestamps and tokens. The others cost a
    header test and a minute count: records per minute are counted on the text of the
    timestamp's minute and zone, and only those few distinct texts are parsed (`_minutes`).
    """
    diags = Diagnostics()
    tz = ctx.appliance_tz
    try:
        timeparse.zone_offset(tz)
    except timeparse.BadZone as exc:
        diags.add("error", "bad-time-zone", f"{exc}; gateway times read as UTC", member)
        tz = None

    lines = _classify(split_lines(text, ctx.first_line))
    unparsed = lines.filter(~pl.col("owner_ok") & ~pl.col("blank")).select("line", "text")
    minutes = _minutes(lines.filter("is_record"), tz)
    kept = lines.filter(pl.col("owner_ok") & pl.col("owner").is_in(
        _kept_owners(lines, minutes, ctx.keep).implode()))
    records = _fold(kept)

    records = _header_columns(records, tz)
    records = _truncate(records, member, diags)
    records = _with_tokens(records)
    records = _with_event_and_vm(records)
    frame = tables.conform("gateway_log", records.with_columns(member=pl.lit(member)))

    _report_unparsed(unparsed, member, diags)
    _report_times(records, minutes, member, tz, diags)
    ts = frame["ts"].drop_nulls()
    return Parsed(
        tables={"gateway_log": frame,
                "activity": per_minute(minutes, records.filter(~pl.col("keyed")), "gateway_log", member)},
        records=int(lines["is_record"].sum()),
        unparsed=unparsed.height,
        first=ts.min() if ts.len() else None,
        last=ts.max() if ts.len() else None,
        diagnostics=diags,
    )


def _classify(lines: pl.DataFrame) -> pl.DataFrame:
    """Which lines are records, and the record each line belongs to.

    A continuation belongs to the nearest line above that starts with a timestamp (`owner`); if
    that line is not a valid envelope (or there is none), the continuation is unparsed with it
    (`owner_ok` false).
    """
    text = pl.col("text")
    lines = lines.with_columns(is_record=text.str.contains(_HEADER))
    lines = lines.with_columns(
        starts=pl.col("is_record") | pl.when(~pl.col("is_record")).then(text)
        .str.contains(_STARTS_WITH_TS).fill_null(False),
        blank=text.str.strip_chars() == "",
    )
    # a record's minute: its minute text and the start of its zone text ("Z Info ", "+09:00 ",
    # " Info [" when naive). Seconds of 60 or more roll into the next minute: no key, such a
    # record is parsed on its own.
    zone = text.str.slice(19, 24).str.strip_chars_start(".,0123456789").str.slice(0, 7)
    key = pl.when(pl.col("is_record") & (text.str.slice(17, 2) < "60")).then(
        text.str.slice(0, 16) + zone)
    return lines.with_columns(
        owner=pl.when("starts").then(pl.col("line")).forward_fill(),
        owner_ok=pl.when("starts").then(pl.col("is_record")).forward_fill().fill_null(False),
        key=key,
    ).drop("starts")


def _minutes(records: pl.DataFrame, tz: str | None) -> pl.DataFrame:
    """Records counted per minute key: key, records, minute (UTC, null when impossible), naive.
    Only these few distinct texts are parsed."""
    counts = (records.filter(pl.col("key").is_not_null())
              .group_by("key").agg(records=pl.len()).sort("key"))
    ts, naive = timeparse.iso(pl.col("key").str.slice(0, 16) + ":00" + pl.col("key").str.slice(16),
                              tz)
    return counts.with_columns(minute=ts, naive=naive).with_columns(
        minute=pl.when(pl.col("minute").dt.year().is_between(*PLAUSIBLE_YEARS)).then("minute"))


def _kept_owners(lines: pl.DataFrame, minutes: pl.DataFrame, keep: Keep | None) -> pl.Series:
    """Line numbers of the records to parse fully.

    Besides the records holding a literal (in any of their lines): the records of the first and
    last minute (so first/last are exact), of impossible minutes and unkeyed ones (the
    bad-timestamp diagnostic names the first), and records long enough to be truncated.
    """
    if keep is None:
        return lines.filter("is_record")["line"]
    text = pl.col("text")
    hit = holds_any(keep)
    minute = pl.col("minute")
    odd = minutes.filter(minute.is_null() | (minute == minute.min()) | (minute == minute.max()))
    own = lines.filter("owner_ok")
    key = pl.col("key")
    long_detail = (own.filter(~pl.col("is_record"))
                   .group_by("owner").agg(size=(text.str.len_bytes() + 1).sum())
                   .filter(pl.col("size") > MAX_VALUE_CHARS)["owner"])
    by_text = own.filter(hit | (text.str.len_bytes() > MAX_VALUE_CHARS))["owner"]
    by_time = own.filter(pl.col("is_record") & (key.is_null() | key.is_in(odd["key"].implode())))
    return pl.concat([by_text, long_detail, by_time["line"]]).unique()


def _fold(lines: pl.DataFrame) -> pl.DataFrame:
    """Records with the header parsed and their continuation lines joined into `detail`."""
    records = (lines.filter("is_record")
               .select("line", "text", header=pl.col("text").str.extract_groups(_HEADER),
                       keyed=pl.col("key").is_not_null()))
    continuation = (
        lines.filter(~pl.col("is_record") & ~pl.col("blank"))
        .group_by("owner")
        .agg(detail=pl.col("text").str.join("\n"))
    )
    return records.join(continuation, left_on="line", right_on="owner", how="left",
                        maintain_order="left")


def _header_columns(records: pl.DataFrame, tz: str | None) -> pl.DataFrame:
    field = pl.col("header").struct.field
    records = timeparse.with_iso(records.with_columns(ts_text=field("ts")), "ts_text", tz)
    records = records.with_columns(
        level=field("level").str.to_lowercase().replace_strict(LEVELS, default=None),
        thread=field("thread"),
        component=field("component"),
        message=pl.col("text").str.slice(field("head").str.len_chars()),
    ).drop("header", "text")
    return records.with_columns(ts=pl.when(pl.col("ts").dt.year().is_between(*PLAUSIBLE_YEARS))
                                .then("ts"))


def _truncate(records: pl.DataFrame, member: str, diags: Diagnostics) -> pl.DataFrame:
    too_long = (pl.col("message").str.len_chars() > MAX_VALUE_CHARS) | (
        pl.col("detail").str.len_chars() > MAX_VALUE_CHARS)
    long_rows = records.filter(too_long)
    if long_rows.height:
        diags.add("info", "truncated-values",
                  f"{long_rows.height} record(s) longer than {MAX_VALUE_CHARS} characters were "
                  f"cut to that length (first at line {long_rows['line'][0]})",
                  f"{member}:{long_rows['line'][0]}")
        records = records.with_columns(pl.col("message", "detail").str.slice(0, MAX_VALUE_CHARS))
    return records


def _with_tokens(records: pl.DataFrame) -> pl.DataFrame:
    """key=value tokens of the message as columns (names of TOKENS' values), strings for now."""
    with_eq = records.filter(pl.col("message").str.contains("=", literal=True))
    token = pl.col("token")
    parts = (with_eq.select("line", token=pl.col("message").str.extract_all(_TOKEN))
             .explode("token")
             .drop_nulls("token")
             # the key is a word: the first "=" ends it
             .select("line", parts=token.str.strip_chars_start().str.splitn("=", 2)))
    key, value = pl.col("parts").struct.field("field_0"), pl.col("parts").struct.field("field_1")
    tokens = (parts.filter(key.is_in(list(TOKENS)))
              .select("line", key=key.replace_strict(TOKENS, return_dtype=_TOKEN_COLUMNS),
                      value=_clean_value(value)))
    if tokens.height == 0:
        return records
    wide = tokens.pivot(on="key", index="line", values="value", aggregate_function="first")
    return records.join(wide, on="line", how="left", maintain_order="left")


def _clean_value(value: pl.Expr) -> pl.Expr:
    """`"a \\"b\\""` -> `a "b"`; `APP01.` -> `APP01` (a bare value may end a sentence)."""
    quoted = value.str.starts_with('"') & value.str.ends_with('"') & (value.str.len_chars() >= 2)
    inner = value.str.slice(1, value.str.len_chars() - 2).str.replace_all(r'\\(["\\])', "$1")
    bare = value.str.strip_chars_start('"').str.strip_chars_end(".,;")
    return pl.when(quoted).then(inner).otherwise(bare)


def _with_event_and_vm(records: pl.DataFrame) -> pl.DataFrame:
    message = pl.col("message")
    event = pl.coalesce([pl.when(message.str.starts_with(prefix)).then(pl.lit(name))
                         for prefix, name in EVENTS])
    for col in ("vm", "vm_id", "snapshot_name"):  # token columns exist only when seen
        if col not in records.columns:
            records = records.with_columns(pl.lit(None, dtype=pl.Utf8).alias(col))
    # Portal texts name the VM inside the sentence: "VM: APP01." / "virtual machine APP01; vm-1042".
    unnamed = pl.col("vm").is_null() | pl.col("vm_id").is_null()
    embedded = pl.when(unnamed).then(message).str.extract_groups(
        r"\bVM: (?P<a>\S+?)[.;,]?(?:\s|$)|(?i:virtual machine) (?P<b>[^\s;]+);\s*(?P<id>vm-\d+)?")
    return records.with_columns(event=event).with_columns(
        vm=pl.coalesce("vm", embedded.struct.field("a"), embedded.struct.field("b")),
        vm_id=pl.coalesce("vm_id", embedded.struct.field("id")),
        snapshot_name=pl.when(pl.col("event").str.starts_with("snapshot")).then("snapshot_name"),
    )


def _report_unparsed(unparsed: pl.DataFrame, member: str, diags: Diagnostics) -> None:
    if unparsed.height == 0:
        return
    samples = "; ".join(
        f"{member}:{line}: {text[:SAMPLE_CHARS]!r}"
        for line, text in unparsed.head(5).iter_rows())
    diags.add("warning", "unparsed-lines",
              f"{unparsed.height} line(s) are not gateway log records (samples: {samples})",
              f"{member}:{unparsed['line'][0]}",
              "Lines before the first record, or starting with a timestamp but not in the "
              "'<time> <Level> [<thread>] <Component> - <message>' shape, are skipped.")


def _report_times(records: pl.DataFrame, minutes: pl.DataFrame, member: str, tz: str | None,
                  diags: Diagnostics) -> None:
    """`records` holds every record with an impossible time (see _kept_owners)."""
    bad = records.filter(pl.col("ts").is_null()).select("line", "ts_text")
    if bad.height:
        line, text = bad.row(0)
        diags.add("warning", "bad-timestamps",
                  f"{bad.height} record(s) have an impossible timestamp (first: {text!r}); "
                  "they are kept without a time", f"{member}:{line}")
    if tz is None and (records["naive"].any() or minutes["naive"].any()):
        diags.add("warning", "naive-timestamps",
                  "Gateway log times carry no zone; they were read as UTC.", member,
                  "Give the appliance's zone with --appliance-tz (e.g. +09:00) or appliance_tz "
                  "in bundle.toml.")


SOURCE = Source(name="gateway_log", form="gateway_log", tables=("gateway_log", "activity"),
                sniff=sniff, parse=parse, reads_bytes=True,
                # a line that starts with a timestamp owns the lines below it (_classify)
                record_start=re.compile(rb"\n(?=\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2})"))
