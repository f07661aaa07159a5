"""vCenter vpxd.log and its relatives (hostd, vpxa, vmkernel, VCSA services) -> vcenter_log rows.

    2024-05-14T10:21:33.123Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxLro opID=68209c6d] [VpxLRO] -- BEGIN task-88231 -- vm-1042 -- vim.VirtualMachine.createSnapshot -- 52b1(52a9)
    2015-03-06T04:01:43.419-07:00 [13072 info 'commonvpxLro' opID=2408fce-ee] [VpxLRO] -- FINISH task-88231
    [2012-04-16 21:42:11.096 02584 info 'App'] Event 5512 : vim.event.TaskEvent : Task: Create virtual machine snapshot user=CONTOSO\\svc-backup
    --> (vim.fault.TaskInProgress) {

  -> ts, naive, layout (vpxd65 | vpxd55 | win5x | esxi8 | generic), level (lowercase word), process,
     sub, op_id, message (first line after the header), detail (continuation lines joined by "\\n",
     `--> ` marker removed). Events of the vpxd event log become vcenter_events rows.

Layouts: `esxi8` is the ESXi 8 syslog prefix (`...Z In(166) Hostd[1001392583]: [Originator@6876 ...]`),
`generic` any other line that starts with an ISO timestamp (VCSA services, vmkernel, banners).
Naive timestamps (Windows 5.x, some services) are vCenter local time: `ctx.vcenter_tz`, else UTC.

Tasks are paired across members by `build_tasks`, which the pipeline calls once with the
`vcenter_log` rows of every member (keep at least the rows `TASK_ROWS` selects). For the
generated bundles, task progress and initiators are read from these shapes:

    ... [Originator@6876 sub=PropertyProvider opID=...] RecordOp ASSIGN: info.progress, task-88231 = 95
    ... [Originator@6876 sub=vpxdEvent opID=<the task's opID>] Event 5512 : vim.event.TaskEvent : Task: Create virtual machine snapshot user=VSPHERE.LOCAL\\svc-backup
    ... Event [5512] [1-1] [2024-05-14T10:21:33.120Z] [vim.event.TaskEvent] [info] [VSPHERE.LOCAL\\svc-backup] [DC01] [5512] [Task: Create virtual machine snapshot]

(`= <n>` is optional: real vpxd writes `info.progress, task-88231. Applied change to temp map.`;
a TaskEvent names the task by its display name, METHOD_NAMES, within 2 s of the BEGIN line.)
"""

from __future__ import annotations

import re

import polars as pl

from analyzer import tables
from analyzer.diagnostics import Diagnostics
from analyzer.parsers import timeparse
from analyzer.parsers.lines import (METHOD_NAMES, Keep, ParseContext, Parsed, Source, holds_any, per_minute,
                                    read_lines)

# Longest message/detail kept per record (bytes); longer text is cut and a diagnostic says so.
MAX_TEXT = 64 * 1024
SNIFF_LINES = 10

# Rows task_lines reads.
TASK_ROWS = pl.col("message").str.contains_any(["[VpxLRO]", "info.progress"])

_TS = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?"
# `[Originator@6876 sub=... opID=...]`: sub values may hold one level of brackets.
_META = (r"\[(?P<meta>(?:[\w.-]+@\d+|[^\[\]]*?(?i:opid)=)"
         r"(?:[^\[\]]|\[[^\[\]]*\])*)\]")

LAYOUTS: dict[str, str] = {
    # vpxd[7FE11CC03700] / vpxd[45715]; vCenter 9 writes `INFO vpxd 20973 [Originator@4413 ...]`
    "vpxd65": (rf"^(?P<head>(?P<ts>{_TS}) (?P<level>[A-Za-z]+) (?P<process>[^\s\[\]]+)"
               rf"(?:\[\w+\]| \d+)(?: {_META})? ?)"),
    "vpxd55": (rf"^(?P<head>(?P<ts>{_TS}) \[[0-9A-Fa-f]+ (?P<level>[A-Za-z]+) '(?P<sub>[^']*)'"
               r"(?P<meta>[^\]]*)\] ?)"),
    "win5x": (r"^(?P<head>\[(?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,9})?) [0-9A-Fa-f]+ "
              r"(?P<level>[A-Za-z]+) '(?P<sub>[^']*)'(?P<meta>[^\]]*)\] ?)"),
    # the old `info -[pid] ` header may sit inside the ESXi 8 one
    "esxi8": (rf"^(?P<head>(?P<ts>{_TS}) (?P<level>[A-Z][a-z])\(\d+\)(?:\[\+\])? "
              r"(?P<process>[^\s\[\]:]+)(?:\[\w+\])?:? ?(?:[a-z]+ [^\s\[\]]*\[\w+\] )?"
              rf"(?:{_META} ?)?)"),
    "generic": (r"^(?P<head>\[?(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,:]\d{1,9})?)"
                r"(?: (?P<ampm>[AP]M))?(?:(?P<zone>Z|[+-]\d{2}:?\d{2})| (?P<zname>UTC|GMT))?"
                r"(?:[\s:\]]+|$)(?:(?P<level>(?i:verbose|trivia|debug|info|warning|warn|error|"
                r"critical|fatal))(?:[\s:]+|$))?)"),
}
# The vpxd65 header without groups, to find where it ends (see _headers).
_VPXD65_SPAN = re.sub(r"\(\?P<\w+>", "(?:", LAYOUTS["vpxd65"])
_ESXI_LEVELS = {"In": "info", "No": "info", "Wa": "warning", "Er": "error", "Db": "verbose",
                "Cr": "critical", "Al": "alert", "Em": "emergency"}
_BANNER = re.compile(r"^\S+ .*Section for VMware VirtualCenter")
_SNIFF_RES = [re.compile(LAYOUTS[name]) for name in ("vpxd65", "vpxd55", "win5x", "esxi8")]

_EVENT_PLAIN = r"^Event (?P<key>\d+) : (?P<type>[\w.]+) : (?P<msg>.*)$"
_EVENT_SYSLOG = (r"Event \[(?P<key>\d+)\] \[[^\]]*\] \[(?P<created>[^\]]*)\] \[(?P<type>[^\]]*)\] "
                 r"\[(?P<sev>[^\]]*)\] \[(?P<user>[^\]]*)\] \[(?P<dc>[^\]]*)\] "
                 r"\[(?P<chain>[^\]]*)\] \[(?P<msg>.*)$")
_EVENT_USER = r"\s+user=(\"[^\"]*\"|\S+)\s*$"

_LRO = (r"\[VpxLRO\] -- (?P<kind>BEGIN|FINISH|ERROR) (?P<id>\S+)"
        r"(?: -- (?P<entity>\S*) -- (?P<method>[\w.]+)(?::\s*(?P<fault>[\w.]+))?)?")
_PROGRESS = r"RecordOp ASSIGN: info\.progress, (?P<id>[\w-]*\d)\b(?:\s*=\s*(?P<value>\d+))?"
_FAULT_MSG = r'msg = "(?P<msg>(?:[^"\\]|\\.)*)"'
_FAULT_BLOCK = r"\((?P<type>(?:vim|vmodl)\.[\w.]*fault\.\w+)\) \{"


def sniff(head: str, member: str) -> bool:
    """Several of the first non-empty lines are vpxd / ESXi headers (or the vpxd start banner)."""
    lines = [line.lstrip("\ufeff") for line in head.splitlines()[: SNIFF_LINES * 20]
             if line.strip() and not line.startswith("-->")][:SNIFF_LINES]
    hits = sum(1 for line in lines
               if _BANNER.match(line) or any(rx.match(line) for rx in _SNIFF_RES))
    return hits > 0 and hits >= min(2, len(lines))


_AS_WRITTEN = {"process", "sub", "op_id", "message", "detail"}  # columns cut from the line


def keep_where(column: str, values: tuple[str, ...]) -> Keep | None:
    """Literals every record whose `column` is one of `values` holds in its lines; None when the
    column is not text taken from the line."""
    values = tuple(values)
    if column == "level":  # the word in any case ("warn" for warning), or the ESXi 8 code `Wa(`
        words = {"warning": "warn"}
        codes = tuple(f"{code}(" for code, name in _ESXI_LEVELS.items() if name in values)
        return Keep(literals=codes, ignore_case=tuple(words.get(v, v) for v in values))
    if column in _AS_WRITTEN and not any('"' in v for v in values):
        return Keep(literals=values)
    return None


def keep_literals(column: str, literals: tuple[str, ...], ignore_case: bool = False) -> Keep | None:
    """Literals every record whose `column` contains one of `literals` holds in its lines."""
    if column not in _AS_WRITTEN or any("\n" in x for x in literals):
        return None  # details are joined across lines
    return Keep(ignore_case=tuple(literals)) if ignore_case else Keep(literals=tuple(literals))


def parse(text: str | bytes, member: str, ctx: ParseContext) -> Parsed:
    """Every record, or with `ctx.keep` only the records that hold one of its literals (plus every
    event, and the ones the diagnostics and first/last need); `records`, `activity` and the
    diagnostics always count every record.

    Only the kept records pay for the header regexes and timestamps; the others cost a layout
    test and a minute count (records per minute are counted on the text of the timestamp's
    minute and zone, and only those few distinct texts are parsed).
    """
    diags = Diagnostics()
    lines = read_lines(text if isinstance(text, bytes) else text.removeprefix("\ufeff"),
                       ctx.first_line)
    lines = _cap(lines, "text", member, diags, "long-line",
                 "lines longer than 64 KiB were cut to 64 KiB")
    lines = _classify(lines)
    unparsed = _report_orphans(lines, member, diags)
    minutes = _minutes(lines, ctx.vcenter_tz)
    kept = lines.filter(pl.col("record").is_in(_kept_records(lines, minutes, ctx.keep).implode()))
    records = _fold(_headers(kept.filter(pl.col("layout").is_not_null()), ctx.vcenter_tz), kept)
    records = records.with_columns(member=pl.lit(member), vcenter=pl.lit(ctx.vcenter, pl.Utf8),
                                   host=pl.lit(ctx.host, pl.Utf8))
    records = _cap(records, "detail", member, diags, "long-record",
                   "continuation text longer than 64 KiB was cut to 64 KiB")

    unkeyed = records.filter(~pl.col("keyed"))
    naive = unkeyed.filter(pl.col("naive")).height + int(
        minutes.filter(pl.col("naive"))["records"].sum())
    if naive and not ctx.vcenter_tz:
        diags.add("warning", "naive-timestamps",
                  f"{naive} records carry no time zone; they were read as UTC", member,
                  hint="give --vcenter-tz or vcenter_tz in bundle.toml")
    bad_ts = records.filter(pl.col("ts").is_null()).height  # every such record is kept
    if bad_ts:
        diags.add("warning", "bad-timestamps",
                  f"{bad_ts} records have a timestamp that is not a valid date", member)

    activity = per_minute(minutes, unkeyed, "vcenter_log", member)
    records = tables.conform("vcenter_log", records)
    events = tables.conform("vcenter_events", _events(records))
    ts = records["ts"].drop_nulls()
    return Parsed(tables={"vcenter_log": records, "vcenter_events": events, "activity": activity},
                  records=int(lines["layout"].is_not_null().sum()), unparsed=unparsed,
                  first=ts.min() if len(ts) else None, last=ts.max() if len(ts) else None,
                  diagnostics=diags)


def _cap(frame: pl.DataFrame, col: str, member: str, diags: Diagnostics, code: str,
         message: str) -> pl.DataFrame:
    """Cut `col` to MAX_TEXT bytes (cutting at a character boundary)."""
    too_long = frame.select((pl.col(col).str.len_bytes() > MAX_TEXT).sum()).item()
    if not too_long:
        return frame
    diags.add("warning", code, f"{too_long} {message}", member)
    cut = pl.col(col).str.slice(0, MAX_TEXT)
    cut = pl.when(cut.str.len_bytes() > MAX_TEXT).then(cut.str.slice(0, MAX_TEXT // 4)).otherwise(cut)
    return frame.with_columns(pl.when(pl.col(col).str.len_bytes() > MAX_TEXT).then(cut)
                              .otherwise(pl.col(col)).alias(col))


def _classify(lines: pl.DataFrame) -> pl.DataFrame:
    """layout (the first of LAYOUTS whose header starts the line; null for continuations),
    record (number of the record a line belongs to, 0 before the first) and key (the text of the
    record's timestamp minute and zone; null when the record must be parsed on its own).

    Most lines of a vpxd.log are vpxd65, so the other layouts only test the lines it left.
    """
    text = pl.col("text")
    candidates = pl.when(~text.str.starts_with("-->")).then(text)
    first, *others = LAYOUTS
    lines = lines.with_columns(_first=candidates.str.contains(LAYOUTS[first]))
    rest = pl.when(~pl.col("_first")).then(candidates)
    layout = pl.when(pl.col("_first")).then(pl.lit(first))
    for name in others:
        layout = layout.when(rest.str.contains(LAYOUTS[name])).then(pl.lit(name))
    lines = lines.with_columns(layout=layout.otherwise(None)).drop("_first")
    layout = pl.col("layout")
    # zoned layouts start with the timestamp (zone, if any, glued to the seconds); win5x with
    # "[" and a local time; the generic layout's many forms are parsed one by one. Seconds of 60
    # or more roll into the next minute: parsed one by one too.
    zoned = layout.is_in(["vpxd65", "vpxd55", "esxi8"])
    zone = text.str.slice(19, 24).str.strip_chars_start(".,0123456789").str.slice(0, 7)
    zone = pl.when(zone.str.starts_with(" ")).then(pl.lit("")).otherwise(zone)  # " Zebra": a level
    key = (pl.when(zoned & (text.str.slice(17, 2) < "60")).then(text.str.slice(0, 16) + zone)
           .when((layout == "win5x") & (text.str.slice(18, 2) < "60")).then(text.str.slice(1, 16)))
    return lines.with_columns(record=layout.is_not_null().cum_sum(), key=key)


def _report_orphans(lines: pl.DataFrame, member: str, diags: Diagnostics) -> int:
    """Lines before the first record: unparsed (sampled), or `-->` ends of an earlier file."""
    text = pl.col("text")
    orphans = lines.filter((pl.col("record") == 0) & (text.str.strip_chars() != ""))
    unparsed = orphans.filter(~text.str.starts_with("-->"))
    if unparsed.height:
        samples = "; ".join(f"line {n}: {t[:120]!r}" for n, t in
                            unparsed.head(3).select("line", "text").iter_rows())
        diags.add("warning", "unparsed-lines",
                  f"{unparsed.height} lines before the first record match no vCenter layout "
                  f"(e.g. {samples})", member)
    if orphans.height > unparsed.height:
        diags.add("info", "orphan-continuation",
                  f"{orphans.height - unparsed.height} '-->' lines continue a record of an "
                  "earlier file", member)
    return unparsed.height


def _minutes(lines: pl.DataFrame, vcenter_tz: str | None) -> pl.DataFrame:
    """Records counted per minute key: key, records, minute (UTC, null when impossible), naive.
    Only these few distinct texts are parsed."""
    counts = (lines.filter(pl.col("key").is_not_null())
              .group_by("key").agg(records=pl.len()).sort("key"))
    ts, naive = timeparse.iso(pl.col("key").str.slice(0, 16) + ":00" + pl.col("key").str.slice(16),
                              vcenter_tz)
    return counts.with_columns(minute=pl.when(ts.dt.year() >= 1).then(ts), naive=naive)


def _kept_records(lines: pl.DataFrame, minutes: pl.DataFrame, keep: Keep | None) -> pl.Series:
    """Numbers of the records to parse fully: those holding a literal of `keep` or "Event " (in
    any of their lines), those of the first and last minute (so first/last are exact), of
    impossible minutes and unkeyed ones, and records with a long continuation."""
    records = lines.filter(pl.col("layout").is_not_null())
    if keep is None:
        return records["record"]
    text = pl.col("text")
    hit = holds_any(Keep(("Event ", *keep.literals), keep.ignore_case))
    minute, key = pl.col("minute"), pl.col("key")
    odd = minutes.filter(minute.is_null() | (minute == minute.min()) | (minute == minute.max()))
    own = lines.filter(pl.col("record") > 0)
    long_detail = (own.filter(pl.col("layout").is_null())
                   .group_by("record").agg(size=(text.str.len_bytes() + 1).sum())
                   .filter(pl.col("size") > MAX_TEXT)["record"])
    by_time = records.filter(key.is_null() | key.is_in(odd["key"].implode()))["record"]
    return pl.concat([own.filter(hit)["record"], long_detail, by_time]).unique()


def _headers(lines: pl.DataFrame, vcenter_tz: str | None) -> pl.DataFrame:
    """Header fields of record lines whose layout is known: each layout's regex runs only on
    its own lines.

    vpxd65, nearly every line, is not captured: the regex only finds where the header ends (a
    search without groups is several times cheaper), and its fields are cut at the spaces:
    `<ts> <level> <process>[<thread>] [<meta>] ` (or `<process> <pid> [<meta>] `).
    """
    text, layout = pl.col("text"), pl.col("layout")
    others = {name: pattern for name, pattern in LAYOUTS.items() if name != "vpxd65"}
    found = lines.with_columns(
        pl.when(layout == name).then(text).str.extract_groups(pattern).alias(name)
        for name, pattern in others.items())
    rest = pl.when(layout == "vpxd65").then(text).str.replace(_VPXD65_SPAN, "")
    found = found.with_columns(
        _head=text.str.slice(0, text.str.len_chars() - rest.str.len_chars()))
    head = pl.col("_head")
    words = head.str.splitn(" ", 4)
    meta_at = head.str.find(" [", literal=True)
    vpxd65 = {
        "head": head,
        "ts": words.struct.field("field_0"),
        "level": words.struct.field("field_1"),
        "process": words.struct.field("field_2").str.splitn("[", 2).struct.field("field_0"),
        "meta": head.str.slice(meta_at + 2).str.strip_suffix(" ").str.strip_suffix("]"),
    }

    def field(group: str) -> pl.Expr:
        value = pl.lit(None, pl.Utf8)
        if group in vpxd65:
            value = pl.when(layout == "vpxd65").then(vpxd65[group])
        for name, pattern in others.items():
            if f"?P<{group}>" in pattern:
                value = (pl.when(layout == name).then(pl.col(name).struct.field(group))
                         .otherwise(value))
        return value

    found = found.with_columns(
        ts_text=field("ts"), head=field("head"), raw_level=field("level"), process=field("process"),
        sub=field("sub"), meta=field("meta"), ampm=field("ampm"), zone=field("zone"),
        zname=field("zname"),
    ).drop(*others, "_head")
    found = _with_timestamps(found, vcenter_tz)
    level = pl.col("raw_level")
    level = (pl.when(pl.col("layout") == "esxi8")
             .then(level.replace_strict(_ESXI_LEVELS, default=level.str.to_lowercase()))
             .otherwise(level.str.to_lowercase().replace("warn", "warning")))
    meta = pl.col("meta")
    return found.with_columns(
        level=level,
        sub=pl.coalesce(pl.col("sub"), meta.str.extract(r"\bsub=(\"[^\"]*\"|.*?)(?:\s+[\w-]+=|$)", 1))
            .str.strip_chars('"'),
        op_id=meta.str.extract(r"(?i:opid)=(\"[^\"]*\"|[^\s\]]+)", 1).str.strip_chars('"'),
        message=pl.col("text").str.slice(pl.col("head").str.len_chars()),
        keyed=pl.col("key").is_not_null(),
    ).drop("ts_text", "raw_level", "meta", "ampm", "zone", "zname", "key")


def _with_timestamps(frame: pl.DataFrame, vcenter_tz: str | None) -> pl.DataFrame:
    """ts and naive from ts_text (+ the generic layout's am/pm and zone parts).

    Steps are materialised one by one: eager polars does not share repeated sub-expressions.
    """
    text = pl.col("ts_text")
    # the common `2024-05-14T10:21:33.123Z` is read directly: the general parser is 30x slower
    frame = frame.with_columns(
        _fast=text.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.fZ", strict=False))
    # `19:46:43:259` / `,259` fractions, `02:47:11 AM UTC`
    frame = frame.with_columns(_other=(
        pl.when(pl.col("_fast").is_null()).then(text)
        .str.replace(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})[,:](\d)", "${1}T${2}.${3}")
        + pl.coalesce(pl.col("zone"), pl.when(pl.col("zname").is_not_null()).then(pl.lit("Z")),
                      pl.lit(""))))
    other_ts, other_naive = timeparse.iso(pl.col("_other"), vcenter_tz)
    frame = frame.with_columns(_other_ts=other_ts, _other_naive=other_naive)
    hour = text.str.slice(11, 2).cast(pl.Int64, strict=False)
    ampm_shift = (pl.when((pl.col("ampm") == "PM") & (hour < 12)).then(pl.duration(hours=12))
                  .when((pl.col("ampm") == "AM") & (hour == 12)).then(pl.duration(hours=-12))
                  .otherwise(pl.duration(hours=0)))
    ts = pl.coalesce(pl.col("_fast").dt.replace_time_zone("UTC"), pl.col("_other_ts") + ampm_shift)
    return frame.with_columns(
        ts=pl.when(ts.dt.year() >= 1).then(ts).cast(tables.TS),  # year 0 has no Python datetime
        naive=pl.when(pl.col("_fast").is_null()).then(pl.col("_other_naive")).otherwise(False),
    ).drop("_fast", "_other", "_other_ts", "_other_naive")


def _fold(records: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """Continuation lines join the record above into `detail` (`-->` marker removed; a bare
    `-->` is kept as an empty detail line, blank lines are dropped)."""
    text = pl.col("text")
    marker = text.str.starts_with("-->")
    continuations = (
        lines.filter((pl.col("record") > 0) & pl.col("layout").is_null()
                     & (marker | (text.str.strip_chars() != "")))
        .with_columns(pl.when(marker).then(text.str.replace(r"^--> ?", "")).otherwise(text))
        .group_by("record").agg(detail=pl.col("text").str.join("\n"))
    )
    return (records.join(continuations, on="record", how="left", maintain_order="left")
            .drop("record", "text", "head"))


def _events(records: pl.DataFrame) -> pl.DataFrame:
    """vCenter events: `Event <key> : <type> : <msg>` and the syslog `Event [<key>] [1-1] ...` form."""
    candidates = records.filter(pl.col("message").str.contains("Event ", literal=True))
    if not candidates.height:
        return tables.empty("vcenter_events")
    msg = pl.col("message")
    plain = msg.str.extract_groups(_EVENT_PLAIN)
    syslog = msg.str.extract_groups(_EVENT_SYSLOG)
    found = candidates.with_columns(plain=plain, syslog=syslog).filter(
        pl.col("plain").struct.field("key").is_not_null()
        | pl.col("syslog").struct.field("key").is_not_null())
    if not found.height:
        return tables.empty("vcenter_events")
    p, s = pl.col("plain").struct.field, pl.col("syslog").struct.field
    plain_text = p("msg")
    # syslog events give their creation time: thousands a slice
    found = timeparse.with_iso(found.with_columns(_created=s("created")), "_created", ts="_created_ts",
                               naive="_created_naive")
    return found.select(
        "member", "line", "vcenter", "op_id",
        ts=pl.coalesce("_created_ts", "ts"),
        event_key=pl.coalesce(p("key"), s("key")),
        event_type=pl.coalesce(p("type"), s("type")),
        severity=pl.coalesce(s("sev"), pl.col("level")),
        user=pl.coalesce(s("user"), plain_text.str.extract(_EVENT_USER, 1).str.strip_chars('"')),
        datacenter=s("dc"),
        chain_id=s("chain"),
        # the syslog message may itself contain `]`: it runs to the last one
        message=pl.coalesce(plain_text.str.replace(_EVENT_USER, ""),
                            s("msg").str.replace(r"\][^\]]*$", "")),
    )


def task_lines(records: pl.DataFrame) -> pl.DataFrame:
    """The `[VpxLRO]` and `info.progress` lines of vcenter_log rows, cut to the fields tasks are
    paired from (tables.VCENTER_TASK_LINES). The pipeline keeps these per slice instead of the
    rows' text."""
    detail = pl.col("detail").fill_null("")
    end = pl.col("kind") != "BEGIN"
    lro = (records.lazy().filter(pl.col("message").str.contains("[VpxLRO] -- ", literal=True))
           .with_columns(pl.col("message").str.extract_groups(_LRO).alias("lro"))
           .drop("message").unnest("lro").filter(pl.col("kind").is_not_null())
           .with_columns(fault_type=pl.when(end).then(pl.coalesce(pl.col("fault"),
                                                                  detail.str.extract(_FAULT_BLOCK, 1))),
                         fault_message=pl.when(end).then(detail.str.extract(_FAULT_MSG, 1))))
    progress = (records.lazy().filter(pl.col("message").str.contains("info.progress", literal=True))
                .with_columns(p=pl.col("message").str.extract_groups(_PROGRESS))
                .with_columns(kind=pl.lit("PROGRESS"), id=pl.col("p").struct.field("id"),
                              progress=pl.col("p").struct.field("value").cast(pl.Int64, strict=False))
                .filter(pl.col("id").is_not_null()))
    return pl.concat([tables.conform("vcenter_task_lines", frame.collect()) for frame in (lro, progress)])


def build_tasks(records: pl.DataFrame, events: pl.DataFrame, diags: Diagnostics) -> pl.DataFrame:
    """pair_tasks over the task lines of vcenter_log rows."""
    return pair_tasks(task_lines(records), events, diags)


def pair_tasks(lines: pl.DataFrame, events: pl.DataFrame | pl.LazyFrame, diags: Diagnostics) -> pl.DataFrame:
    """Pair `[VpxLRO] -- BEGIN` with `-- FINISH` / `-- ERROR` by (vcenter, id) over every member.

    One row per BEGIN (deduplicated: the same line may sit in two copies of a log). A BEGIN with no
    end is `running` with a null end. An end whose BEGIN was rotated away still gives a row, with
    a null `start` and the end line as its provenance.
    """
    # the schema keeps names and other few-valued text categorical: sorts and joins below do not
    # copy it (member is sorted as text all the same, by text_rank)
    lines = tables.conform("vcenter_task_lines", lines)
    lines = lines.with_columns(_vc=pl.col("vcenter").fill_null("").cast(pl.Categorical()))
    lro = lines.filter(pl.col("kind") != "PROGRESS")
    if not lro.height:
        return tables.empty("vcenter_tasks")
    progress = _progress(lines.filter(pl.col("kind") == "PROGRESS"))
    del lines  # each step lets go of what the next ones do not read
    lro = lro.sort("ts", tables.text_rank(lro, "member"), "line", nulls_last=True)
    key = ["_vc", "id"]

    # the first line of each task id (is_first_distinct: a third of unique's time here)
    first = pl.struct(key).is_first_distinct()
    begins = (lro.filter(pl.col("kind") == "BEGIN").filter(first)
              .select(*key, "member", "line", "vcenter", "op_id", "entity", "method", start="ts"))
    ends = (lro.filter(pl.col("kind") != "BEGIN").filter(first)
            .select(*key, "fault_type", "fault_message", end="ts", end_member="member",
                    end_line="line", end_vcenter="vcenter", end_op_id="op_id",
                    end_entity="entity", end_method="method",
                    outcome=pl.when(pl.col("kind") == "FINISH").then(pl.lit("succeeded"))
                    .otherwise(pl.lit("failed"))))

    del lro
    tasks = begins.join(ends, on=key, how="full", coalesce=True)
    del begins, ends
    orphan_ends = tasks.filter(pl.col("start").is_null()).height
    if orphan_ends:
        diags.add("info", "task-begin-missing",
                  f"{orphan_ends} vCenter tasks end in the logs but their BEGIN line is not in the "
                  "bundle (rotated away); their start is unknown")

    tasks = tasks.with_columns(
        member=pl.coalesce("member", "end_member"), line=pl.coalesce("line", "end_line"),
        vcenter=pl.coalesce("vcenter", "end_vcenter"), op_id=pl.coalesce("op_id", "end_op_id"),
        entity=pl.coalesce("entity", "end_entity"), method=pl.coalesce("method", "end_method"),
        outcome=pl.col("outcome").fill_null("running"),
    ).with_columns(
        task_id=pl.col("id"),
        vm_id=pl.when(pl.col("entity").cast(pl.Utf8).str.starts_with("vm-")).then(pl.col("entity")),
        task_name=pl.col("method").cast(pl.Utf8).replace_strict(METHOD_NAMES, default=None,
                                                                return_dtype=pl.Utf8),
        form=pl.lit("vpxd"),
    )
    tasks = tasks.join(progress, on=["_vc", "id"], how="left")
    tasks = _with_initiator(tasks, events)
    return tables.conform("vcenter_tasks", tasks.sort("start", tables.text_rank(tasks, "member"), "line",
                                                      nulls_last=True))


def _progress(progress: pl.DataFrame) -> pl.DataFrame:
    """Last `info.progress` value of each task (by _vc, id) and when it last changed."""
    # each task's lines together, in time order: the line before is the task's previous one
    # unless it is another task's (a shift over each task's window took 20 times as long)
    progress = progress.select("_vc", "ts", "id", value="progress").sort("_vc", "id", "ts", maintain_order=True)
    same_task = ((pl.col("_vc") == pl.col("_vc").shift(1)) & (pl.col("id") == pl.col("id").shift(1))).fill_null(False)
    # without a value every ASSIGN is a change; with values, only a new value is
    changed = (pl.col("value").is_null() | ~same_task
               | (pl.col("value") != pl.col("value").shift(1)).fill_null(True))
    return progress.with_columns(_changed_ts=pl.when(changed).then("ts")).group_by("_vc", "id").agg(
        progress=pl.col("value").drop_nulls().last(),
        progress_ts=pl.col("_changed_ts").max(),
    )


def _with_initiator(tasks: pl.DataFrame, events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The user of the TaskEvent naming the task's display name within 2 s of its BEGIN.

    An event logged under the task's own opID wins: tasks of one kind often start in the same
    second (a backup run snapshots many VMs at once).
    """
    task_events = (events.lazy().filter(pl.col("event_type").str.ends_with("TaskEvent")
                                 & pl.col("user").is_not_null() & pl.col("ts").is_not_null())
                   .select("op_id", "ts", _vc=pl.col("vcenter").fill_null("").cast(pl.Categorical()),
                           initiator="user",
                           _name=_display_key(pl.col("message").str.replace(r"^Task:\s*", "")))
                   .sort("ts").collect())
    candidates = tasks.filter(pl.col("start").is_not_null() & pl.col("task_name").is_not_null())
    if not task_events.height or not candidates.height:
        return tasks.with_columns(initiator=pl.lit(None, pl.Utf8))
    # the display key of each task's name, worked out once per method (tasks are 100,000s)
    names = pl.DataFrame({"method": list(METHOD_NAMES), "name": list(METHOD_NAMES.values())})
    names = names.select("method", key=_display_key(pl.col("name")))
    candidates = (candidates.select("_vc", "id", "start", "op_id",
                                    _name=pl.col("method").cast(pl.Utf8).replace_strict(
                                        names["method"], names["key"], default=None))
                  .sort("start"))
    nearest = {"left_on": "start", "right_on": "ts", "strategy": "nearest", "tolerance": "2s",
               "check_sortedness": False}
    same_op = candidates.filter(pl.col("op_id").is_not_null()).join_asof(
        task_events.filter(pl.col("op_id").is_not_null()), by=["_vc", "_name", "op_id"], **nearest)
    any_op = candidates.join_asof(task_events.drop("op_id"), by=["_vc", "_name"], **nearest)
    found = (any_op.select("_vc", "id", any_initiator="initiator")
             .join(same_op.select("_vc", "id", op_initiator="initiator"), on=["_vc", "id"],
                   how="left")
             .select("_vc", "id", initiator=pl.coalesce("op_initiator", "any_initiator")))
    return tasks.join(found, on=["_vc", "id"], how="left")


def _display_key(expr: pl.Expr) -> pl.Expr:
    return expr.str.strip_chars().str.strip_chars_end(".").str.to_lowercase()


SOURCE = Source(name="vcenter_tasks", form="vpxd_log", tables=("vcenter_log", "vcenter_events", "activity"),
                sniff=sniff, parse=parse, reads_bytes=True,
                # the usual vpxd/ESXi stamp and a space: a record in every layout's eyes (generic)
                record_start=re.compile(
                    rb"\n(?=\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{1,9}(?:Z|[+-]\d{2}:\d{2}) )"))
