"""Any text member no specific source claims (and VMware VM, VDDK and syslog-forwarded ESXi logs
among them) -> text_log rows: a record starts at a line in the member's timestamp layout, the
lines below it that start none are folded into `detail`.

    2020-07-20T12:28:41.805Z| host-27| W115: [NFC ERROR]NfcNewAuthdConnectionEx: Failed to connect to peer.
    2023-12-05T17:42:40.666Z In(05) vmx vim-cmd-09-a45d SnapshotVMX_TakeSnapshot start: 'snap', deviceState=1
    May  7 17:07:09 esx07 Hostd: [error] Unable to access file [ds01] APP01/APP01.vmdk since it is locked

become rows with layout vmware_pipe / vmware_esxi8 / syslog, ts (UTC; the syslog stamp has no
year: 2000 stands in, yearless=true; none has a zone: naive=true), level warning / info / error,
component host-27 / vmx / Hostd, op_id vim-cmd-09-a45d, host esx07, message (the rest of the
first line) and detail (continuation lines joined by "\\n").

The layout is chosen once per member, from its head: of the layouts that start many of the head's
lines (LAYOUTS, most specific first), the first that starts nearly as many as the best. A text
without one is read a line a record, with no time (layout "none"). The form says what kind of
text it is: vmware_log (a VM's log: `vm` from its `displayName` line, else its folder),
vddk_log (VDDK / NFC client lines), esxi_syslog (ESXi lines forwarded by syslog: `host` from the
syslog header), pasted (lines around pasted portal errors, see portal_events) or text. Times are
read without any zone and years are not guessed here: the pipeline re-reads them once it knows
the bundle's zones and years (`naive`, `yearless`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from analyzer import tables
from analyzer.diagnostics import Diagnostics
from analyzer.parsers import timeparse
from analyzer.parsers.lines import ParseContext, Parsed, Source, read_lines

MAX_TEXT = 64 * 1024  # longest line / detail kept (characters); longer text is cut, with a diagnostic
HEAD_LINES = 200  # record-like lines of the head the layout is chosen from
NEARLY_BEST = 0.8  # a more specific layout wins when it starts this share of the best one's lines
MIN_SHARE = 0.2  # a layout must start this share of the head's lines, else the text has none
PLAUSIBLE_YEARS = (1970, 2099)
YEAR_STAND_IN = 2000  # a leap year: Feb 29 of a yearless stamp stays a date
SAMPLE_CHARS = 120
BINARY_SHARE = 0.05  # control characters beyond this share of the head: not text

# The time stamp of most logs: ISO 8601 with T or a space, with or without fraction (also `,` and
# `:` before it), Z / offset / UTC name or naive, in brackets or not.
_ISO = (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,:]\d{1,9})?(?: ?[AP]M\b)?"
        r"(?: ?(?:Z|[+-]\d{2}:?\d{2}|UTC|GMT)\b)?")
_ISO_STAMP = rf"\[?(?P<ts>{_ISO})\]?"
_WORD = (r"(?i:emergency|emerg|alert|critical|crit|fatal|panic|severe|error|erro|err|warning|warn|"
         r"notice|informational|information|info|verbose|trivia|debug|dbg|trace)")
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"


@dataclass(frozen=True)
class Layout:
    name: str
    kind: str  # how the stamp reads: iso | us | syslog | ctime | mmdd | klog | none (no date)
    stamp: str  # regex of the line's start up to the end of its stamp (group `ts`, maybe others)
    fields: str = ""  # regex of what follows the stamp (groups level, component, thread, op_id, host)
    start: str | None = None  # regex a record's first line matches; default: the stamp

    @property
    def strict(self) -> str:
        """Stamp and fields: how many head lines match this decides the layout."""
        return f"^(?:{self.stamp}){self.fields}"

    @property
    def header(self) -> str:
        """Stamp and, where they follow, the fields; `head` spans the prefix."""
        return f"^(?P<head>(?:{self.stamp})(?:{self.fields})?)"

    @property
    def stamp_sample(self) -> str | None:
        """A time stamp the `ts` group matches (see _fields); None when the layout has none."""
        if "(?P<ts>" not in self.stamp:
            return None
        return {"us": "1/1/2000 1:00:00", "syslog": "Jan  1 00:00:00",
                "ctime": "Mon Jan  1 00:00:00 2000", "klog": "0101 00:00:00.000000",
                "mmdd": "01-01 00:00:00.000"}.get(
            self.kind, {"iso_slash": "2000/01/01 00:00:00", "time_only": "1:00:00",
                        "logrus": "0000"}.get(self.name, "2000-01-01T00:00:00"))

    @property
    def ts_pattern(self) -> str:
        """The `ts` group's own pattern, without groups: finds the stamp in a header."""
        at = self.stamp.index("(?P<ts>") + len("(?P<ts>")
        depth, end = 1, at
        while depth:
            depth += {"(": 1, ")": -1}.get(self.stamp[end], 0) if self.stamp[end - 1] != "\\" \
                else 0
            end += 1
        return _ungrouped(self.stamp[at:end - 1])

    @property
    def record_start(self) -> str:
        return self.start or "^" + _ungrouped(self.stamp)


def _ungrouped(pattern: str) -> str:
    """The pattern with its named groups made plain (a search without groups is much faster)."""
    return re.sub(r"\(\?P<\w+>", "(?:", pattern)


# Most specific first: on a near tie the earlier one is taken (see NEARLY_BEST).
LAYOUTS: tuple[Layout, ...] = (
    # VMware VM / VDDK log: `2020-07-20T12:28:41.805Z| host-27| W115: msg` (ESXi 5.x: no I125)
    Layout("vmware_pipe", "iso", rf"(?P<ts>{_ISO})\|",
           r" (?P<component>[^|]+)\|(?: (?P<level>[A-Z]\d{1,3}):)? ?"),
    # ESXi 8 vmware.log: `...Z In(05) vmx - msg`, `...Z In(05) vcpu-0 <opID> msg`
    Layout("vmware_esxi8", "iso", rf"(?P<ts>{_ISO})",
           r" (?P<level>[A-Z][a-z])\(\d+\)(?:\[\+\])? (?P<component>[\w.-]+) "
           r"(?P<op_id>-|[\w.@]+(?:[-:][\w.@]+)+) "),
    # ESXi 8 host logs outside vpxd's reach: `...Z In(14) settingsd[263657]: msg`
    Layout("esxi8_syslog", "iso", rf"(?P<ts>{_ISO})",
           r" (?P<level>[A-Z][a-z])\(\d+\)(?:\[\+\])? (?P<component>[\w.-]+)"
           r"(?:\[(?P<thread>\w+)\])?: ?"),
    # .NET: `2024-05-14 10:21:33.512 Error [31] Gateway.Service.X - msg`
    Layout("dotnet", "iso", rf"(?P<ts>{_ISO})",
           rf" +(?P<level>{_WORD}) +\[(?P<thread>\d+)\] +(?P<component>[^\s\[\]]+) +- "),
    # log4j: `2024-05-14 10:21:33,123 ERROR [logger] (thread) msg` (logger, thread optional)
    Layout("log4j", "iso", rf"(?P<ts>{_ISO})",
           rf" +(?P<level>{_WORD}) +(?:\[(?P<component>[^\]]*)\] *)?"
           r"(?:\((?P<thread>[^)]*)\) *)?"),
    # Python logging: `2024-05-14 10:21:33,123 - name - ERROR - msg`
    Layout("python", "iso", rf"(?P<ts>{_ISO})", rf" - (?P<component>\S+) - (?P<level>{_WORD}) - "),
    # logfmt (logrus, Go): `time="2024-05-14T10:21:33Z" level=error msg="..."`
    Layout("logfmt", "iso", rf"time=\"?(?P<ts>{_ISO})\"?", r" level=(?P<level>\w+) "),
    # `[2024-05-14 10:21:33] ERROR msg`, `2024-05-14T10:21:33Z [error] msg`, `...:INFO:logger:`
    Layout("iso_level", "iso", _ISO_STAMP,
           rf"(?: *[|:-])? *[\[<]?(?P<level>{_WORD})[\]>]?(?:[ :]+|$)"),
    # syslog forwarded with an ISO stamp: `2024-05-07T17:07:09.123Z esx07 Hostd: msg`
    Layout("syslog_iso", "iso", rf"(?:<\d{{1,3}}>)?(?P<ts>{_ISO})",
           r" (?P<host>[\w.:-]+) (?P<component>[^\s:\[\]]+)(?:\[(?P<thread>\w+)\])?: "),
    # RFC 5424: `<166>1 2024-05-07T17:07:09.123Z esx07 Hostd - - - msg`
    Layout("rfc5424", "iso", rf"<\d{{1,3}}>\d{{1,2}} (?P<ts>{_ISO})",
           r" (?P<host>\S+) (?P<component>\S+) (?P<thread>\S+) \S+"
           r" (?:-|(?:\[[^\]]*\])+) ?"),
    # any other line that starts with an ISO stamp (`2025-12-19 01:02:05 - msg`)
    Layout("iso", "iso", _ISO_STAMP),
    # Go's log package: `2024/05/14 10:21:33 msg`
    Layout("iso_slash", "iso", r"\[?(?P<ts>\d{4}/\d{2}/\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?)\]?",
           rf" +\[?(?P<level>{_WORD})\]?:? "),
    # `MM/DD/YYYY hh:mm:ss AM/PM` (US display form, 24 h too)
    Layout("us", "us", r"\[?(?P<ts>\d{1,2}/\d{1,2}/\d{4},? \d{1,2}:\d{2}(?::\d{2})?(?:\.\d{1,7})?"
                       r"(?: ?[AaPp][Mm]\b)?)\]?",
           rf"(?: *[|:-])? *\[?(?P<level>{_WORD})\]?:? "),
    # syslog (RFC 3164, no year): `May  7 17:07:09 esx07 Hostd[123]: msg`
    Layout("syslog", "syslog",
           rf"(?:<\d{{1,3}}>)?(?P<ts>{_MONTH} {{1,2}}\d{{1,2}} \d{{2}}:\d{{2}}:\d{{2}}(?:\.\d{{1,6}})?)",
           r" (?P<host>[\w.:-]+) (?P<component>[^\s:\[\]]+)(?:\[(?P<thread>\w+)\])?: ?"),
    # ctime: `Wed Feb  6 10:11:12 2019 [..][..][E]: msg`
    Layout("ctime", "ctime",
           rf"\[?(?P<ts>(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) {_MONTH} {{1,2}}\d{{1,2}} "
           r"\d{2}:\d{2}:\d{2}(?:\.\d{1,6})? \d{4})\]?",
           r"(?: ?\[(?P<thread>[^\]]*)\])?(?: ?\[(?P<component>[^\]]*)\])?"
           r"(?: ?\[(?P<level>[A-Za-z]{1,8})\])?:? ?"),
    # klog (Kubernetes, Go): `E0514 10:21:33.123456   12345 file.go:123] msg` (no year)
    Layout("klog", "klog", r"(?P<level>[IWEF])(?P<ts>\d{4} \d{2}:\d{2}:\d{2}\.\d{6})",
           r" +(?P<thread>\d+) (?P<component>[^\]\s]+)\] "),
    # Android logcat: `09-20 19:39:29.647  2940  2981 E Tag: msg` (no year)
    Layout("logcat", "mmdd", r"(?P<ts>\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3})",
           r" +\d+ +(?P<thread>\d+) (?P<level>[VDIWEFA]) (?P<component>[^:]*?) *: "),
    # time of day only: `[1:37:24 AM] msg` (no date: no ts)
    Layout("time_only", "none", r"\[(?P<ts>\d{1,2}:\d{2}:\d{2}(?:\.\d{1,6})?(?: ?[AP]M)?)\]",
           rf" +\[?(?P<level>{_WORD})\]?:? "),
    # logrus text without a clock: `ERRO[52654] msg` (seconds since start: no ts)
    Layout("logrus", "none", r"(?P<level>[A-Z]{4})\[(?P<ts>\d{4,})\]"),
    # `nbdkit: vddk[1]: error: msg`: no time; each unindented line is a record
    Layout("tagged", "none", r"(?P<component>[A-Za-z][\w.-]*(?:\[\d+\])?): "
                             rf"(?:(?P<thread>[\w.-]+(?:\[\d+\])?): )?(?P<level>{_WORD}): ",
           start=r"^\S"),
)
_BY_NAME = {layout.name: layout for layout in LAYOUTS}

LEVELS = {
    **dict.fromkeys(("emergency", "emerg", "alert", "critical", "crit", "fatal", "fata", "panic",
                     "pani", "cr", "al", "em", "f", "a"), "critical"),
    **dict.fromkeys(("error", "erro", "err", "severe", "er", "e"), "error"),
    **dict.fromkeys(("warning", "warn", "wa", "w", "wrn"), "warning"),
    **dict.fromkeys(("informational", "information", "info", "inf", "notice", "in", "no", "i"),
                    "info"),
    **dict.fromkeys(("verbose", "verb", "v"), "verbose"),
    **dict.fromkeys(("debug", "debu", "dbg", "db", "d", "trace", "trac", "trivia"), "debug"),
}
# a level word or letter code opening the message (`[error] ...`, `ERROR: ...`, `E110: ...`, and
# the `info hostd[9BC1B70] [...]` header of a forwarded ESXi line)
_MESSAGE_LEVEL = (r"^(?:[\[<(](?P<a>[A-Za-z]{1,13})[\]>)]|(?P<b>[A-Za-z]{3,13}|[IWE]\d{2,3}):"
                  r"|(?P<c>[A-Z]{3,13})|(?P<d>[a-z]{4,7}) [\w.-]+\[\w+\])(?:\s|:|$)")

# Lines a VDDK / NFC client writes (the appliance's disk reader, other VDDK-based movers).
VDDK_MARKERS = ("VixDiskLib", "NfcAio", "[NFC ERROR]", "Cnx_Connect", "NfcFssrvr", "NBD_Client",
                "CnxAuthd", "NfcNewAuthdConnection", "vixDiskLib", "DiskLib")
# Processes of an ESXi host, as a syslog header names them.
_ESXI_PROCESSES = re.compile(
    r"\b(?:Hostd|hostd|Vpxa|vpxa|vmkernel|vmkwarning|vobd|fdm|sfcb-\w+|vmauthd|hostd-probe|"
    r"rhttpproxy|vmsyslogd|esxupdate|sdrsInjector|crond|storageRM|hostprofiletrace)(?:\[\w+\])?:")
_VMWARE_LOG_NAME = re.compile(r"^vmware(?:-\d+)?\.log(?:\.\d+)?(?:\.gz)?$", re.IGNORECASE)
_DISPLAY_NAME = r'\bdisplayName\s*=\s*"([^"]*)"'

_CONTROL = re.compile(r"[\x01-\x08\x0e-\x19\x1c-\x1f\x7f\ufffd]")
# the two VMware VM-log forms, for the early sniffer (the ESXi 8 one with its op field, so that
# VCSA's `In(05) host-16250 <analytics>` lines stay vCenter's)
_VMWARE_SNIFF = [re.compile(LAYOUTS[0].strict), re.compile(LAYOUTS[1].strict)]


def looks_like_text(head: str) -> bool:
    """Whether a member's decoded head is text: no NUL, and few control characters (a binary
    file decoded as cp1252 shows one in about eight characters; tabs, line and form feeds and
    ANSI escapes do not count)."""
    if "\x00" in head:
        return False
    sample = head[:64 * 1024]
    return len(_CONTROL.findall(sample)) <= BINARY_SHARE * len(sample)


def sniff(head: str, member: str) -> bool:
    """Any text: the fallback of the registry (binary stays unrecognised)."""
    return looks_like_text(head)


def sniff_vmware(head: str, member: str) -> bool:
    """Several of the first lines are a VMware VM log's (vmware.log, VDDK): the pipe form, or the
    ESXi 8 form with its op field."""
    if not looks_like_text(head):
        return False
    lines = [line for line in head.split("\n", 400)[:400] if line.strip() and not line[0].isspace()]
    lines = lines[:20]
    hits = sum(1 for line in lines if any(rx.match(line) for rx in _VMWARE_SNIFF))
    return hits > 0 and hits >= min(2, len(lines))


def parse(text: str | bytes, member: str, ctx: ParseContext) -> Parsed:
    diags = Diagnostics()
    if isinstance(text, str):
        text = text.removeprefix("\ufeff")
    frame = parse_lines(lines_of(text, member, diags, ctx.first_line), member, ctx, diags)
    if frame.height == 0:
        first = _first_line(text)
        diags.add("warning", "no-records",
                  f"{member} was read as generic text but yields no record (form "
                  f"{_form_of_empty(member)}; first line: {first!r})", member,
                  "Nothing in it can be matched; check that it is the file you meant to add.")
    dated = frame.filter(pl.col("ts").is_not_null() & ~pl.col("yearless"))["ts"]
    return Parsed(tables={"text_log": frame}, records=frame.height, unparsed=0,
                  first=dated.min() if dated.len() else None,
                  last=dated.max() if dated.len() else None, diagnostics=diags,
                  layout=frame["layout"][0] if frame.height else None)


def lines_of(text: str | bytes, member: str, diags: Diagnostics, first_line: int = 1) -> pl.DataFrame:
    """read_lines, also for text that cannot be encoded (lone surrogates): those characters
    become U+FFFD, with a diagnostic."""
    try:
        return read_lines(text, first_line)
    except UnicodeEncodeError:
        diags.add("info", "decode-errors", "characters that cannot be encoded (lone surrogates) "
                  "were replaced by U+FFFD", member)
        clean = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return read_lines(clean, first_line)


def parse_lines(lines: pl.DataFrame, member: str, ctx: ParseContext, diags: Diagnostics,
                form: str | None = None) -> pl.DataFrame:
    """text_log rows (conformed) from lines (`line`, `text`) of one member. Lines need not be
    consecutive: a line that does not follow the one before it starts a record (pasted text
    between portal error blocks). `form` overrides the form found from the text."""
    if lines.height == 0:
        return tables.empty("text_log")
    lines = _cap(lines, "text", member, diags, "long-line", "lines longer than 64 KiB were cut "
                 "to 64 KiB")
    text = pl.col("text")
    lines = lines.with_columns(blank=text.str.strip_chars() == "")
    layout = choose_layout(lines)
    form = form or _form(lines, member, layout)
    lines = _starts(lines, layout)
    records = _fold(lines)
    records = _fields(records, layout)
    records = _timestamps(records, layout.kind if layout else "none")
    if layout is not None and layout.kind != "none":
        _report_times(records, member, diags)
    records = _cap(records, "detail", member, diags, "long-record",
                   "records with more than 64 KiB of continuation lines were cut to 64 KiB")
    host = pl.lit(ctx.host, pl.Utf8)
    records = records.with_columns(
        member=pl.lit(member), form=pl.lit(form), layout=pl.lit(layout.name if layout else "none"),
        vm=pl.lit(_vm(lines, member) if form == "vmware_log" else None, pl.Utf8),
        host=pl.coalesce("host", host) if "host" in records.columns else host,
    )
    return tables.conform("text_log", records)


def choose_layout(lines: pl.DataFrame) -> Layout | None:
    """The layout of the head's record-like lines (non-blank, not indented): of those starting at
    least MIN_SHARE of them, the first in LAYOUTS that starts NEARLY_BEST of the best's count."""
    text = pl.col("text")
    head = lines.filter(text.str.strip_chars() != "", ~text.str.contains(r"^\s")).head(HEAD_LINES)
    if head.height == 0:
        return None
    counts = head.select(text.str.contains(layout.strict).sum().alias(layout.name)
                         for layout in LAYOUTS).row(0, named=True)
    best = max(counts.values())
    if best < max(1, MIN_SHARE * head.height):
        return None
    return next(layout for layout in LAYOUTS if counts[layout.name] >= NEARLY_BEST * best)


def _starts(lines: pl.DataFrame, layout: Layout | None) -> pl.DataFrame:
    """is_start: the line opens a record (it matches the layout's start; or it comes before the
    first such line, or after a gap in the line numbers; or there is no layout), and `owner`,
    the line of the record each line belongs to (null for blank lines before any record)."""
    text, blank = pl.col("text"), pl.col("blank")
    if layout is None:
        opens = pl.lit(True)
    else:
        lines = lines.with_columns(_match=text.str.contains(layout.record_start))
        gap = pl.col("line").diff().fill_null(1) != 1
        opens = pl.col("_match") | gap | (pl.col("_match").cum_sum() == 0)
    lines = lines.with_columns(is_start=~blank & opens).drop("_match", strict=False)
    return lines.with_columns(owner=pl.when("is_start").then(pl.col("line")).forward_fill())


def _fold(lines: pl.DataFrame) -> pl.DataFrame:
    """Record lines with their continuation lines (blank ones left out) joined into `detail`."""
    continuation = (lines.filter(~pl.col("is_start") & ~pl.col("blank") & pl.col("owner").is_not_null())
                    .group_by("owner").agg(detail=pl.col("text").str.join("\n")))
    return (lines.filter("is_start").select("line", "text")
            .join(continuation, left_on="line", right_on="owner", how="left", maintain_order="left"))


def _fields(records: pl.DataFrame, layout: Layout | None) -> pl.DataFrame:
    """ts_text, level, component, thread, op_id, host (where the layout has them) and message.

    Capturing groups is slow (about 1 µs a line), so the groups are read once per distinct
    header shape: each line's header is found without groups, its time stamp is swapped for a
    fixed one, and only the distinct results are matched with groups. Lines that do not match
    the layout (text before the first record) keep their whole text as message."""
    text = pl.col("text")
    if layout is None:
        records = records.with_columns(ts_text=pl.lit(None, pl.Utf8), message=text)
        raw_level = pl.lit(None, pl.Utf8)
    else:
        head = pl.col("_head")
        records = records.with_columns(_head=text.str.extract(_ungrouped(layout.header), 0))
        names = set(re.findall(r"\?P<(\w+)>", layout.header)) - {"head", "ts"}
        if layout.stamp_sample is None:
            records = records.with_columns(ts_text=pl.lit(None, pl.Utf8), _key=head)
        else:
            records = records.with_columns(ts_text=head.str.extract(layout.ts_pattern, 0),
                                           _key=head.str.replace(layout.ts_pattern,
                                                                 layout.stamp_sample))
        shapes = records.select(pl.col("_key").drop_nulls().unique())
        shapes = shapes.select("_key", g=pl.col("_key").str.extract_groups(layout.header))
        shapes = shapes.select("_key", *[pl.col("g").struct.field(n).alias(f"_{n}") for n in names])
        records = records.join(shapes, on="_key", how="left", maintain_order="left")

        def group(name: str) -> pl.Expr:
            return pl.col(f"_{name}") if name in names else pl.lit(None, pl.Utf8)

        head_len = head.str.len_chars()
        records = records.with_columns(
            component=group("component"), thread=group("thread"),
            op_id=pl.when(group("op_id") != "-").then(group("op_id")),
            **({"host": group("host")} if "host" in names else {}),
            message=pl.when(head_len.is_not_null())
            .then(text.str.slice(head_len).str.strip_chars_start(" \t|:-]"))
            .otherwise(text),
        )
        raw_level = group("level")
    message = pl.col("message")
    opener = pl.when(raw_level.is_null()).then(message).str.extract_groups(_MESSAGE_LEVEL)
    records = records.with_columns(
        level=_level(pl.coalesce(raw_level, *(opener.struct.field(g) for g in "abcd"))),
        op_id=pl.coalesce(
            pl.col("op_id") if "op_id" in records.columns else pl.lit(None, pl.Utf8),
            pl.when(message.str.contains("(?i)opid=")).then(
                message.str.extract(r"(?i:opid)=\"?([^\s\]\"]+)", 1))),
    )
    return records.select(pl.all().exclude("text", "^_.*$"))


def _level(raw: pl.Expr) -> pl.Expr:
    """A level word or code (`ERROR`, `[error]`, `ERRO`, `I125`, `Wa`, `E`) -> critical | error |
    warning | info | verbose | debug, null when unknown."""
    key = raw.str.to_lowercase().str.strip_chars("[]<>():")
    key = pl.when(key.str.contains(r"^[a-z]\d+$")).then(key.str.slice(0, 1)).otherwise(key)
    return key.replace_strict(LEVELS, default=None, return_dtype=pl.Utf8)


def _timestamps(records: pl.DataFrame, kind: str) -> pl.DataFrame:
    """ts (UTC, null when there is no date or it is impossible), naive and yearless (null where ts
    is) from ts_text, read as the layout's kind says. Steps are materialised one by one: eager
    polars does not share repeated sub-expressions."""
    text = pl.col("ts_text")
    naive_flag, yearless_flag = pl.lit(True), pl.lit(False)
    if kind == "iso":
        records = _iso_times(records)
        ts, naive_flag = pl.col("ts"), pl.col("_naive_iso")
    elif kind == "us":
        ts = timeparse.us_display(text.str.replace(r"(\d:\d{2}:\d{2})\.\d+", "$1"))
    elif kind == "syslog":
        ts = _naive(pl.lit(f"{YEAR_STAND_IN} ") + text.str.replace_all(" +", " "),
                    "%Y %b %d %H:%M:%S%.f")
        yearless_flag = pl.lit(True)
    elif kind == "ctime":  # the weekday is dropped: a wrong one would void the date
        ts = _naive(text.str.slice(4).str.replace_all(" +", " "), "%b %d %H:%M:%S%.f %Y")
    elif kind == "mmdd":
        ts = _naive(pl.lit(f"{YEAR_STAND_IN}-") + text, "%Y-%m-%d %H:%M:%S%.f")
        yearless_flag = pl.lit(True)
    elif kind == "klog":
        ts = _naive(pl.lit(str(YEAR_STAND_IN)) + text, "%Y%m%d %H:%M:%S%.f")
        yearless_flag = pl.lit(True)
    else:
        ts = pl.lit(None, tables.TS)
    records = records.with_columns(ts=ts.cast(tables.TS), _naive=naive_flag, _yearless=yearless_flag)
    ts = pl.col("ts")
    records = records.with_columns(ts=pl.when(ts.dt.year().is_between(*PLAUSIBLE_YEARS)).then(ts))
    return records.with_columns(
        naive=pl.when(ts.is_not_null()).then(pl.col("_naive")),
        yearless=pl.when(ts.is_not_null()).then(pl.col("_yearless")),
    ).select(pl.all().exclude("^_.*$"))


def _iso_times(records: pl.DataFrame) -> pl.DataFrame:
    """ts and _naive_iso from ISO ts_text. The member's stamps are read with the exact format of
    its first one (polars reads a fixed format several times faster than a general one); only
    the stamps that do not fit it pay for the general reader (`,`/`:` fractions, offsets, zone
    names, AM/PM, `/` dates)."""
    text = pl.col("ts_text")
    sample = records["ts_text"].drop_nulls().head(1).to_list()
    fmt, zoned = _iso_format(sample[0]) if sample else (None, False)
    if fmt is None:
        records = records.with_columns(ts=pl.lit(None, tables.TS), _naive_iso=pl.lit(False))
    else:
        ts = text.str.strptime(pl.Datetime("us"), fmt, strict=False)
        if not fmt.endswith("z"):  # an offset gives UTC times; a literal Z or none, plain ones
            ts = ts.dt.replace_time_zone("UTC")
        records = records.with_columns(ts=ts.cast(tables.TS), _naive_iso=pl.lit(not zoned))
    other = records.filter(pl.col("ts").is_null() & text.is_not_null()).select("line", "ts_text")
    if not other.height:
        return records
    other = other.with_columns(
        _ampm=text.str.extract(r" ?([AP]M)\b", 1),
        _clean=text.str.replace(r"^(\d{4})[-/](\d{2})[-/](\d{2})[T ](\d{2}:\d{2}:\d{2})[,:](\d)",
                                "$1-$2-${3}T$4.$5")
        .str.replace(r"^(\d{4})/(\d{2})/(\d{2})", "$1-$2-$3")
        .str.replace(r" ?[AP]M\b", "").str.replace(r" ?(?:UTC|GMT)$", "Z"))
    ts, naive = timeparse.iso(pl.col("_clean"))
    hour = text.str.slice(11, 2).cast(pl.Int64, strict=False)
    shift = (pl.when((pl.col("_ampm") == "PM") & (hour < 12)).then(pl.duration(hours=12))
             .when((pl.col("_ampm") == "AM") & (hour == 12)).then(pl.duration(hours=-12))
             .otherwise(pl.duration(hours=0)))
    other = other.select("line", _ts=ts + shift, _nv=naive)
    return (records.join(other, on="line", how="left", maintain_order="left")
            .with_columns(ts=pl.coalesce("ts", "_ts"), _naive_iso=pl.coalesce("_nv", "_naive_iso"))
            .drop("_ts", "_nv"))


_ISO_PARTS = re.compile(r"^(\d{4})([-/])\d{2}[-/]\d{2}([T ])\d{2}:\d{2}:\d{2}"
                        r"(?:([.,:])(\d{1,9}))?(Z|[+-]\d{2}:\d{2}|[+-]\d{4})?$")


def _iso_format(stamp: str) -> tuple[str | None, bool]:
    """The strptime format of one ISO stamp (and whether it carries a zone), or None when it has
    parts the exact formats cannot say (AM/PM, zone names)."""
    parts = _ISO_PARTS.match(stamp)
    if parts is None:
        return None, False
    _, dash, sep, frac_sep, frac, zone = parts.groups()
    fmt = f"%Y{dash}%m{dash}%d{sep}%H:%M:%S"
    if frac:
        fmt += f"{frac_sep}%{len(frac)}f" if len(frac) in (3, 6, 9) else (
            "%.f" if frac_sep == "." else None)
        if fmt is None:
            return None, False
    if zone:
        fmt += "Z" if zone == "Z" else ("%:z" if ":" in zone else "%z")
    return fmt, zone is not None


def _naive(text: pl.Expr, fmt: str) -> pl.Expr:
    return text.str.strptime(pl.Datetime("us"), fmt, strict=False).dt.replace_time_zone("UTC")


def _report_times(records: pl.DataFrame, member: str, diags: Diagnostics) -> None:
    bad = records.filter(pl.col("ts_text").is_not_null() & pl.col("ts").is_null())
    if bad.height:
        line, text = bad.select("line", "ts_text").row(0)
        diags.add("warning", "bad-timestamps",
                  f"{bad.height} record(s) have a timestamp that is not a valid date (first: "
                  f"{text[:60]!r}); they are kept without a time", f"{member}:{line}")


def _cap(frame: pl.DataFrame, col: str, member: str, diags: Diagnostics, code: str,
         message: str) -> pl.DataFrame:
    """`col` cut to MAX_TEXT characters, with a diagnostic naming the first such row."""
    long = frame.filter(pl.col(col).str.len_chars() > MAX_TEXT)
    if not long.height:
        return frame
    diags.add("warning", code, f"{long.height} {message} (first at line {long['line'][0]})",
              f"{member}:{long['line'][0]}")
    return frame.with_columns(pl.col(col).str.slice(0, MAX_TEXT))


def _form(lines: pl.DataFrame, member: str, layout: Layout | None) -> str:
    """vmware_log | vddk_log | esxi_syslog | text, from the head and the layout."""
    head_text = "\n".join(lines.head(400)["text"].to_list())
    name = member.rsplit("!/", 1)[-1].rsplit("/", 1)[-1]
    name_layout = layout is not None and layout.name in ("vmware_pipe", "vmware_esxi8")
    if name_layout and (_VMWARE_LOG_NAME.match(name) or re.search(
            r"(?m)^\S+(?:\| vmx\| | [A-Z][a-z]\(\d+\) vmx )", head_text)):
        return "vmware_log"
    if any(marker in head_text for marker in VDDK_MARKERS):
        return "vddk_log"
    if (layout is not None and layout.name in ("syslog", "syslog_iso", "rfc5424", "esxi8_syslog")
            and _ESXI_PROCESSES.search(head_text)):
        return "esxi_syslog"
    return "text"


def _vm(lines: pl.DataFrame, member: str) -> str | None:
    """The VM of a vmware.log: its `displayName = "APP01"` line, else the folder it lies in."""
    text = pl.col("text")
    named = (lines.filter(text.str.contains("displayName", literal=True))
             .select(text.str.extract(_DISPLAY_NAME, 1)).to_series().drop_nulls())
    if named.len():
        return named[0]
    inner = member.rsplit("!/", 1)[-1]
    return inner.rsplit("/", 2)[-2] if inner.count("/") >= 1 else None


def _first_line(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text[:4096].decode("utf-8", "replace")
    first = next((line for line in text[:65536].split("\n") if line.strip()), "")
    return first[:SAMPLE_CHARS]


def _form_of_empty(member: str) -> str:
    name = member.rsplit("!/", 1)[-1].rsplit("/", 1)[-1]
    return "vmware_log" if _VMWARE_LOG_NAME.match(name) else "text"


SOURCE = Source(name="text", form="text", tables=("text_log",), sniff=sniff, parse=parse, reads_bytes=True,
                # slices are cut before an unindented line: an indented one continues a record
                record_start=re.compile(rb"\n(?=[^\s])"))
VMWARE_SOURCE = Source(name="text", form="vmware_log", tables=("text_log",), sniff=sniff_vmware, parse=parse,
                       reads_bytes=True, record_start=re.compile(rb"\n(?=\d{4}-\d{2}-\d{2}T)"))
