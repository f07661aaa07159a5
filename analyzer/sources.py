"""The source registry: which kinds of member the analyzer reads, how each is recognised, parsed.

Sources are detected by content, never by name alone: `sniff` looks at the decoded head of a
member (first 64 KiB). Adding a log type = one entry here, one parser module, one test module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import polars as pl

from analyzer.diagnostics import Diagnostics

SNIFF_CHARS = 64 * 1024


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


@dataclass(frozen=True)
class Source:
    name: str  # source key in the analysis JSON: gateway_log | portal_events | vcenter_tasks | ...
    form: str  # finer kind shown by inspect: gateway_log, events_csv, events_json, ...
    sniff: Callable[[str, str], bool]  # (head text, member path) -> True when this source
    parse: Callable[[str, str, ParseContext], Parsed]  # (text, member path, ctx)
    # parse also takes the member's bytes when they are plain UTF-8 (bundle.plain_utf8)
    reads_bytes: bool = False
    # where such bytes may be cut into slices parsed one by one: before a line this matches at
    # (a line that starts a record in the parser's eyes, so no record spans two slices)
    record_start: re.Pattern[bytes] | None = None


def registry() -> list[Source]:
    """All sources, most specific sniffers first."""
    from analyzer.parsers import gateway_log, portal_events, text_log, vcenter_log, vcenter_task_csv

    return [
        *portal_events.SOURCES,  # events CSV / JSON / pasted text, replication status table
        vcenter_task_csv.SOURCE,
        gateway_log.SOURCE,
        text_log.VMWARE_SOURCE,  # a VM's vmware.log: its ESXi 8 lines would pass for vpxd ones
        vcenter_log.SOURCE,
        text_log.SOURCE,  # the fallback: any other text (binary stays unrecognised)
    ]


def sniff(head: str, member: str, sources: list[Source] | None = None) -> Source | None:
    for source in sources or registry():
        if source.sniff(head, member):
            return source
    return None
