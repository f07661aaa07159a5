"""What every parser shares. Parsers import this module (and timeparse, tables, diagnostics),
never one another; sources.py lists them.

- what a parser is given and returns: ParseContext (zones, the vCenter, Keep), Parsed;
- how a parser declares each form it reads: Source (sources.py has the table of them all);
- text cut into numbered lines (split_lines, read_lines), Keep's literals looked for in them
  (holds_any), a CSV header's delimiter (csv_delimiter), records counted per minute (per_minute);
- vSphere's names that both vCenter parsers read (METHOD_NAMES, FAULT_TEXTS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import polars as pl

from analyzer import tables
from analyzer.bundle import decode
from analyzer.diagnostics import Diagnostics

# ---------------------------------------------------------------- what a parser takes and gives

@dataclass(frozen=True)
class Keep:
    """The records a caller needs from a log parser: those with any of these substrings in any of
    their lines. A parser may then leave the others out of its table (it still counts them in
    `records`, `activity` and diagnostics); parsers that cannot skip return every record."""

    literals: tuple[str, ...] = ()
    ignore_case: tuple[str, ...] = ()  # ASCII case-insensitive


@dataclass(frozen=True)
class ParseContext:
    """What a parser needs beyond the text. Zones are "+09:00", "-07:00", "Z" or IANA names."""

    appliance_tz: str | None = None  # naive gateway timestamps
    portal_tz: str | None = None  # portal display times
    vcenter_tz: str | None = None  # Windows vpxd layout, task CSV display times
    vcenter: str | None = None  # the vCenter this member belongs to (vc-support archive name)
    host: str | None = None  # the ESXi host this member belongs to (vm-support archive name)
    keep: Keep | None = None  # None: every record
    first_line: int = 1  # number of the text's first line in the member (a slice of a member)


@dataclass
class Parsed:
    """One member's parse result."""

    tables: dict[str, pl.DataFrame]  # table name (tables.SCHEMAS) -> conforming frame
    records: int = 0
    unparsed: int = 0
    first: datetime | None = None
    last: datetime | None = None
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    layout: str | None = None  # generic text: the timestamp layout chosen for the member


@dataclass(frozen=True)
class Source:
    """One form of one source, as sources.py lists it: how to recognise it and parse it."""

    name: str  # source key in the analysis JSON: gateway_log | portal_events | vcenter_tasks | ...
    form: str  # finer kind shown by inspect: gateway_log, events_csv, events_json, ...
    tables: tuple[str, ...]  # the tables (tables.SCHEMAS) its parser fills
    sniff: Callable[[str, str], bool]  # (head text, member path) -> True when this source
    parse: Callable[[str, str, ParseContext], Parsed]  # (text, member path, ctx)
    # parse also takes the member's bytes when they are plain UTF-8 (bundle.plain_utf8)
    reads_bytes: bool = False
    # where such bytes may be cut into slices parsed one by one: before a line this matches at
    # (a line that starts a record in the parser's eyes, so no record spans two slices)
    record_start: re.Pattern[bytes] | None = None


# ---------------------------------------------------------------- lines

def split_lines(text: str | bytes, first_line: int = 1) -> pl.DataFrame:
    """One row per line: line (1-based), text without a trailing CR. Like `text.split("\\n")`,
    a text ending in a newline has a last, empty line."""
    frame = read_lines(text, first_line)
    if not text or text.endswith(b"\n" if isinstance(text, bytes) else "\n"):
        frame = pl.concat([frame, pl.DataFrame({"line": [first_line + frame.height], "text": [""]},
                                               schema=frame.schema)])
    return frame


def read_lines(text: str | bytes, first_line: int = 1) -> pl.DataFrame:
    """The lines of `text` (line: 1-based, text without the trailing CR), no row after a final
    newline. Bytes must be plain UTF-8 (bundle.plain_utf8).

    Polars' CSV reader cuts them (one column, no quoting, a separator that cannot occur): several
    times faster than splitting a Python string, and it drops the CR of CRLF. Text it would read
    differently (NULs, lone CRs, a BOM) takes the plain split.
    """
    if isinstance(text, bytes):
        frame = _csv_lines(text, first_line)
        if frame["text"].str.contains("\r", literal=True).any():  # a lone CR breaks a line
            return read_lines(decode(text, "", Diagnostics()), first_line)
        return frame
    frame = None
    lone_cr = "\r" in text and text.count("\r") != text.count("\r\n")
    if not lone_cr and not text.startswith("\ufeff"):  # the reader would drop the BOM
        try:
            frame = _csv_lines(text.encode("utf-8"), first_line)
        except (UnicodeEncodeError, pl.exceptions.PolarsError):  # surrogates, NULs
            frame = None
    if frame is None:
        body = text[:-1] if text.endswith("\n") else text
        frame = (pl.DataFrame({"text": [body]}, schema={"text": pl.Utf8})
                 .select(pl.col("text").str.split("\n")).explode("text")
                 .with_row_index("line", offset=first_line)
                 .with_columns(pl.col("text").str.strip_suffix("\r")))
        frame = frame if text else frame.clear()
    return frame.with_columns(pl.col("line").cast(pl.Int64)).select("line", "text")


def _csv_lines(data: bytes, first_line: int) -> pl.DataFrame:
    frame = pl.read_csv(data, has_header=False, separator="\x00", quote_char=None,
                        schema={"text": pl.Utf8}, empty_string_is_null=False,
                        raise_if_empty=False, row_index_name="line", row_index_offset=first_line)
    return frame.with_columns(pl.col("line").cast(pl.Int64)).select("line", "text")


def holds_any(keep: Keep, text: pl.Expr = pl.col("text")) -> pl.Expr:
    """Lines holding one of `keep`'s literals, or more: ASCII literals are looked for without case
    in one regex pass over the lowercased line (many literals: faster than Aho-Corasick), the
    others with Aho-Corasick."""
    found = {*keep.literals, *keep.ignore_case}
    plain = sorted({x.lower() for x in found if x.isascii()}, key=len)
    # a literal holding a shorter one adds nothing ("error" finds "error=DiskUploadTimedOut")
    plain = [x for i, x in enumerate(plain) if not any(y in x for y in plain[:i])]
    other = sorted(x for x in found if not x.isascii())
    hit = pl.lit(False)
    if plain:
        hit = hit | text.str.to_lowercase().str.contains("|".join(map(re.escape, plain)))
    if other:
        hit = hit | text.str.contains_any(other, ascii_case_insensitive=True)
    return hit


def csv_delimiter(header: str, choices: tuple[str, ...] = (",", ";", "\t")) -> str:
    """The one of `choices` the header line holds most often (the first of them on a tie).
    Excel's "Unicode text" export is tab-separated, a European locale's CSV semicolon-separated."""
    return max(choices, key=header.count)


# Records per UTC minute of a log member (tables.ACTIVITY): a log parser counts most records from
# a cheap minute key cut out of the raw line (`minutes`: minute, records) and parses the
# timestamps of the rest one by one (`unkeyed`: a `ts` column).
def per_minute(minutes: pl.DataFrame, unkeyed: pl.DataFrame, source: str, member: str) -> pl.DataFrame:
    one_by_one = (unkeyed.filter(pl.col("ts").is_not_null())
                  .select(minute=pl.col("ts").dt.truncate("1m"), records=pl.lit(1, pl.Int64)))
    counted = pl.concat([minutes.filter(pl.col("minute").is_not_null())
                         .select("minute", pl.col("records").cast(pl.Int64)), one_by_one])
    out = (counted.group_by("minute").agg(pl.col("records").sum()).sort("minute")
           .with_columns(source=pl.lit(source), member=pl.lit(member)))
    return tables.conform("activity", out)


# ---------------------------------------------------------------- vSphere names

# vSphere API method -> the display name the vSphere Client and TaskEvents use.
METHOD_NAMES: dict[str, str] = {
    "vim.VirtualMachine.createSnapshot": "Create virtual machine snapshot",
    "vim.vm.Snapshot.remove": "Remove snapshot",
    "vim.VirtualMachine.removeAllSnapshots": "Remove all snapshots",
    "vim.VirtualMachine.consolidateDisks": "Consolidate virtual machine disk files",
    "vim.VirtualMachine.reconfigure": "Reconfigure virtual machine",
    "vim.VirtualMachine.relocate": "Relocate virtual machine",
    "vim.VirtualMachine.queryChangedDiskAreas": "Query changed disk areas",
    "vim.VirtualMachine.powerOn": "Power On virtual machine",
    "vim.VirtualMachine.powerOff": "Power Off virtual machine",
}

# Fault texts (the start of `msg = "..."`) -> fault type, for sources that carry only the text.
FAULT_TEXTS: dict[str, str] = {
    "Another task is already in progress": "vim.fault.TaskInProgress",
    "The operation is not allowed in the current state": "vim.fault.InvalidState",
    "An invalid snapshot configuration was detected": "vim.fault.InvalidSnapshotFormat",
    "Unable to access file": "vim.fault.FileLocked",
    "Change tracking invalid or disk in use": "vim.fault.FileFault",
    "Operation timed out": "vim.fault.Timedout",
    "A general system error occurred": "vmodl.fault.SystemError",
}
