"""Bundle -> members -> source tables -> matches, one member at a time.

Each member is sniffed (sources.py), parsed, matched against the signatures of its tables, then
reduced to the rows later stages need (structured events, warnings and errors, matched rows,
vCenter task lines) plus a per-minute activity count; what is kept waits compressed
(tables.store). A large log member goes through this in slices as it is read (streaming.py). So
memory follows the largest member and the kept rows, not the bundle.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

import re

from analyzer import bundle, findings, signatures, sources, streaming, tables
from analyzer.diagnostics import Diagnostics
from analyzer.parsers import gateway_log, vcenter_log

# The rows of the log tables later stages use (_reduce): structured events (gateway), these
# levels and worse, messages with these literals, and every row a signature matches. Before
# parsing, the same rule reaches the parser as literals (_keep), so it can skip the other rows.
_KEEP_LEVELS = {
    "gateway_log": ("Warning", "Error", "Critical"),
    "vcenter_log": ("warning", "error"),
}
_KEEP_MESSAGES = {
    "gateway_log": (),
    "vcenter_log": ("vim.VirtualMachine:vm-",),  # VM name/MoRef pairs
}
# Records the parsers must read in full for what is kept of them in another form: vpxd task lines
# (vcenter_log.task_lines, about half of a vpxd.log's records) are kept as vcenter_task_lines.
_TASK_MESSAGES = {"gateway_log": (), "vcenter_log": ("[VpxLRO]", "info.progress")}
# Which table a log parser (by source form) fills, for its Keep.
_KEEP_FORMS = {"gateway_log": "gateway_log", "vpxd_log": "vcenter_log"}
_SOURCE_TABLES = ("gateway_log", "portal_events", "replication_status", "vcenter_log",
                  "vcenter_events", "vcenter_task_lines", "vcenter_tasks", "text_log",
                  "appliance_resources")
_ROOT_CONFIG = "bundle.toml"

# Tables matched member by member; vCenter tasks are matched once paired across rotations.
_MATCHED_PER_MEMBER = ("gateway_log", "portal_events", "vcenter_log", "vcenter_events", "text_log")
# A vm-support archive is named after its ESXi host: esx-<host>-<yyyy-mm-dd>--<hh.mm>[-<pid>].tgz
_VM_SUPPORT = re.compile(r"^esx-(?P<host>.+?)-\d{4}-\d{2}-\d{2}--\d{2}\.\d{2}(?:-\d+)?$", re.IGNORECASE)
SAMPLE_CHARS = 120  # of a member's first line, in diagnostics


def _reduce(table: str, frame: pl.DataFrame, matched_lines: pl.Series) -> pl.DataFrame:
    """The rows later stages use: structured events, warnings and worse, matched rows."""
    if table == "gateway_log":
        keep = (pl.col("event").is_not_null() | pl.col("level").is_in(_KEEP_LEVELS[table])
                | pl.col("line").is_in(matched_lines.implode()))
        return frame.filter(keep)
    if table == "vcenter_log":
        keep = (pl.col("message").str.contains_any(list(_KEEP_MESSAGES[table]))
                | pl.col("level").is_in(_KEEP_LEVELS[table])
                | pl.col("line").is_in(matched_lines.implode()))
        return frame.filter(keep)
    if table == "text_log":  # what signatures or the unexplained templates can use
        return frame.filter(findings.is_problem() | pl.col("line").is_in(matched_lines.implode()))
    return frame


def _keep(library, table: str) -> sources.Keep | None:
    """_reduce's rule as literals a parser can look for in the raw lines before it parses: every
    row _reduce would keep holds one. None (keep every row) when a signature gives nothing to
    look for."""
    parser = gateway_log if table == "gateway_log" else vcenter_log
    parts = [parser.keep_where("level", _KEEP_LEVELS[table]),
             parser.keep_literals("message", _KEEP_MESSAGES[table] + _TASK_MESSAGES[table])]
    if table == "gateway_log":
        parts.append(parser.keep_where("event", tuple(name for _, name in gateway_log.EVENTS)))
    for sig in library.signatures.values():
        for m in sig.matchers:
            if m.source != table:
                continue
            # any one condition of a matcher will do: the rows it matches meet them all
            found = parser.keep_literals(m.column, m.literal, m.ignore_case) if m.literal else None
            for column, values in m.where:
                found = found or parser.keep_where(column, values)
            parts.append(found)
    if any(part is None for part in parts):
        return None
    return sources.Keep(tuple(sorted({x for part in parts for x in part.literals})),
                        tuple(sorted({x for part in parts for x in part.ignore_case})))


def _read_bundle_config(data: bytes, diags: Diagnostics) -> dict:
    try:
        config = tomllib.loads(data.decode("utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        diags.add("warning", "bad-bundle-toml", f"bundle.toml could not be read: {exc}",
                  _ROOT_CONFIG, "fix the TOML syntax; the zones it sets were not applied")
        return {}
    known = {"appliance_tz", "portal_tz", "vcenter_tz", "ticket", "lang"}
    return {k: str(v) for k, v in config.items() if k in known}


def _is_root_config(member_path: str) -> bool:
    """`bundle.toml` at the root, or in the one folder an engineer zipped the bundle in."""
    return "!/" not in member_path and member_path.count("/") <= 1 and \
        member_path.rsplit("/", 1)[-1] == _ROOT_CONFIG


def _scope_of(member: bundle.Member) -> dict[str, str | None]:
    """The vCenter or ESXi host a member belongs to, from the archive it came in: a vm-support
    archive is one ESXi host (esx-<host>-<date>.tgz), any other nested archive (vc-support) one
    vCenter, named after the archive."""
    if member.container is None:
        return {"vcenter": None, "host": None}
    stem = bundle.archive_stem(member.container.rsplit("!/", 1)[-1].rsplit("/", 1)[-1])
    esx = _VM_SUPPORT.match(stem)
    return {"vcenter": None, "host": esx["host"]} if esx else {"vcenter": stem, "host": None}


def _first_line(head: str) -> str:
    return next((line.strip() for line in head.split("\n", 50) if line.strip()), "")[:SAMPLE_CHARS]


@dataclass
class Ingested:
    config: dict
    parts: dict[str, list[bytes]]  # each table's kept rows, stored compressed (tables.store)
    members: list[dict]
    stats: dict[str, dict]


def ingest(path: Path, zones: dict[str, str | None], library, diags: Diagnostics, progress=None) -> Ingested:
    """Open, sniff, parse, match and reduce every member, one at a time. `zones`: appliance_tz,
    portal_tz, vcenter_tz as given (None: as the bundle's bundle.toml says, else UTC).

    The zones of bundle.toml must be known before the first member is parsed. A zip or folder
    gives the file up front; a tar is read in its own order, so a bundle.toml found after members
    whose times had no zone (and that sets a zone the command line did not) means those were
    read as UTC: the bundle is then read again, bundle.toml first. The result never depends on
    where the file sits (measured in BENCHMARKS.md: a tgz pays the second read only when this
    happens; a header pre-pass over every tgz would cost its decompression every time)."""
    zones = {key: zones.get(key) for key in ("appliance_tz", "portal_tz", "vcenter_tz")}
    early = bundle.peek_root_file(path, _ROOT_CONFIG)
    config = _read_bundle_config(early, diags) if early is not None else None
    walk = Diagnostics()
    found, naive_before = _walk(path, zones, config, library, walk, progress)
    if config is None and naive_before and any(found.config.get(k) and not zones[k] for k in zones):
        config = found.config
        del found  # the first read's rows and diagnostics describe times read as UTC: gone with it
        walk = Diagnostics()
        found, _ = _walk(path, zones, config, library, walk, progress)
    diags.extend(walk)
    return found


def _walk(path: Path, given: dict[str, str | None], config: dict | None, library, diags: Diagnostics,
          progress) -> tuple[Ingested, bool]:
    """One read of every member; `config`: bundle.toml read before (None: found on the way). Also
    says whether members with times of no zone came before a bundle.toml found on the way."""
    zones = {key: given[key] or (config or {}).get(key) for key in given}
    found = Ingested(config=dict(config or {}), parts={t: [] for t in (*_SOURCE_TABLES, "matches", "activity")},
                     members=[], stats={})
    registry = sources.registry()
    keeps = {form: _keep(library, table) for form, table in _KEEP_FORMS.items()}
    readable = 0
    done_bytes = 0
    naive_before = False

    def read(n: int, member: str) -> None:
        nonlocal done_bytes
        done_bytes += n
        if progress:
            progress(done_bytes, member)

    # closed here, not by the garbage collector: a Ctrl-C that lands while the reader is stopped
    # is then an ordinary KeyboardInterrupt, never an 'Exception ignored' traceback
    walk = streaming.read_ahead(bundle.open_bundle(path, diags, stream_over=streaming.STREAM_OVER))
    with contextlib.closing(walk):
        for member in walk:
            readable += 1
            info = {"member": member.path, "source": None, "form": "unrecognised", "records": 0,
                    "unparsed": 0, "first": None, "last": None}
            found.members.append(info)
            read(len(member.data), member.path)
            if member.rest is not None:
                member = replace(member, rest=_reported(member.rest, lambda n, m=member.path: read(n, m)))
            try:
                if _is_root_config(member.path):
                    member = bundle.whole(member)
                    if config is None:
                        found.config = _read_bundle_config(member.data, diags)
                        naive_before = any(d.code == "naive-timestamps" for d in diags.items)
                        for key in zones:
                            zones[key] = zones[key] or found.config.get(key)
                    info.update(source="bundle_config", form="toml", records=len(found.config))
                else:
                    _ingest_member(member, info, found, zones, keeps, registry, library, diags)
                for _ in member.rest or ():  # what was left unread, so that the walk goes on
                    pass
            except bundle.MemberDropped:  # a limit stopped its reading: skipped, as the walk says
                readable -= 1
                found.members.pop()

    if readable == 0:
        problems = "; ".join(d.message for d in diags.sorted()[:3]) or "it holds no files"
        raise bundle.UnusableBundle(f"{path.name}: nothing in this bundle could be read ({problems})"
                             " — check that it is the bundle you meant and that it is complete")
    return found, naive_before


def _ingest_member(member: bundle.Member, info: dict, found: Ingested, zones: dict, keeps: dict,
                   registry, library, diags: Diagnostics) -> None:
    """Sniff, parse, match and reduce one member into `found` (its parts, stats and `info`).

    A streamed member (bundle.open_bundle) is parsed slice by slice as it is read when it is a log
    whose start is plain UTF-8; each slice is then checked (and decoded if need be) on its own.
    Any other is read whole first."""
    streamed = member.rest is not None
    # a streamed member's first part up to its last full line (none: it is read whole)
    start = member.data[:member.data.rfind(b"\n") + 1] if streamed else member.data
    text: str | bytes | None = bundle.plain_utf8(start) if start or not streamed else None
    if text is None and streamed:  # decoded whole, as an unstreamed member is
        member, streamed = bundle.whole(member), False
    if text is not None:
        head = text[: sources.SNIFF_CHARS].decode("utf-8", "ignore").replace("\r\n", "\n")
    else:
        text = bundle.decode(member.data, member.path, diags)
        head = text[: sources.SNIFF_CHARS]
    if streamed:
        del start, text  # a copy of the member's first part
    source = sources.sniff(head, member.path, registry)
    if source is None:  # not text: nothing to read in it (FORMATS.md: listed, never an error)
        diags.add("info", "unrecognised-member", f"{member.path} is not text (binary); it was not read",
                  member.path, "if it holds logs, export them as text and add them to the bundle")
        return
    if streamed and not (source.reads_bytes and source.record_start is not None):
        member, streamed = bundle.whole(member), False
        text = bundle.plain_utf8(member.data)  # None: decoded below
    if streamed:
        pieces = streaming.stream_slices(member.data, member.rest, source.record_start)
    else:
        if text is None or (isinstance(text, bytes) and not source.reads_bytes):
            text = bundle.decode(member.data, member.path, diags)
        pieces = streaming.slices(text, source.record_start)
    ctx = sources.ParseContext(**_scope_of(member), keep=keeps.get(source.form), **zones)
    try:
        parsed, reduced = _parse_member(source, pieces, member.path, ctx, library)
    except bundle.MemberDropped:
        raise
    except Exception as exc:  # a parser bug must disable only this member
        diags.add("error", "parser-failed", f"{source.form} parser failed: {exc!r}", member.path,
                  "please report this with the member attached")
        return
    diags.extend(parsed.diagnostics)
    if parsed.records == 0 and not any(d.code == "no-records" for d in parsed.diagnostics.items):
        diags.add("warning", "no-records", f"{member.path} was read as {source.form} but yields no "
                  f"record (first line: {_first_line(head)!r})", member.path,
                  "nothing in it can be matched; check that it is the file you meant to add")
    info.update(source=source.name, form=source.form, records=parsed.records,
                unparsed=parsed.unparsed, first=parsed.first, last=parsed.last)
    if parsed.layout is not None:
        info["layout"] = parsed.layout
    _add_stats(found.stats, source.name, parsed)
    for table, frames in reduced.items():
        found.parts[table].extend(frames)


def _reported(chunks: Iterator[bytes], read) -> Iterator[bytes]:
    for chunk in chunks:
        read(len(chunk))
        yield chunk


def _parse_member(source: sources.Source, pieces: Iterator[tuple], member: str,
                  ctx: sources.ParseContext, library) -> tuple[sources.Parsed, dict[str, list[bytes]]]:
    """Parse, match and reduce one member, given as pieces (streaming.slices, stream_slices): (its counts
    and diagnostics, reduced frames by table, each stored compressed: tables.store).

    A large log member is parsed slice by slice, each slice matched and reduced before the next
    one is read: memory then follows streaming.SLICE_BYTES, not the member's size.
    """
    def parse_slice(piece: str | bytes, first_line: int, last: bool | None = None):
        # last: set for a streamed member's pieces, whose text is checked here, one by one
        decoded = Diagnostics()
        if last is not None and bundle.plain_utf8_piece(piece, last) is None:
            piece = bundle.decode(piece, member, decoded)  # checked here, in the slice's thread
        parsed = source.parse(piece, member, replace(ctx, first_line=first_line))
        parsed.diagnostics.extend(decoded)
        out: dict[str, list[pl.DataFrame]] = {}
        for table, frame in parsed.tables.items():  # the log parsers count `activity` themselves
            matched = tables.empty("matches")
            if table in _MATCHED_PER_MEMBER and frame.height:
                matched = signatures.match(library, table, frame)
                out.setdefault("matches", []).append(matched)
            if table == "vcenter_log":
                out.setdefault("vcenter_task_lines", []).append(vcenter_log.task_lines(frame))
            out.setdefault(table, []).append(_reduce(table, frame, matched["line"]))
        parsed.tables = {}
        # stored compressed, the kept rows are copied out: the slice's text can go
        return parsed, {table: [tables.store(table, f) for f in frames if f.height]
                        for table, frames in out.items()}

    reduced: dict[str, list[bytes]] = {}
    results = []
    for parsed, out in streaming.in_threads(parse_slice, pieces):
        results.append(parsed)
        for table, frames in out.items():
            reduced.setdefault(table, []).extend(frames)
    if len(results) == 1:
        return results[0], reduced
    if "activity" in reduced:  # a minute may be split between two slices
        both = tables.load("activity", reduced["activity"])
        reduced["activity"] = [tables.store("activity", both.group_by("source", "member", "minute")
                                            .agg(pl.col("records").sum()).sort("minute"))]
    firsts = [r.first for r in results if r.first is not None]
    lasts = [r.last for r in results if r.last is not None]
    return sources.Parsed(tables={}, records=sum(r.records for r in results),
                          unparsed=sum(r.unparsed for r in results),
                          first=min(firsts, default=None), last=max(lasts, default=None),
                          layout=next((r.layout for r in results if r.layout), None),
                          diagnostics=streaming.merge_slice_diagnostics([r.diagnostics for r in results])), reduced


def _add_stats(stats: dict[str, dict], source: str, parsed: sources.Parsed) -> None:
    entry = stats.setdefault(source, {"files": 0, "records": 0, "unparsed": 0, "first": None,
                                      "last": None})
    entry["files"] += 1
    entry["records"] += parsed.records
    entry["unparsed"] += parsed.unparsed
    if parsed.first is not None:
        entry["first"] = min(filter(None, (entry["first"], parsed.first)))
    if parsed.last is not None:
        entry["last"] = max(filter(None, (entry["last"], parsed.last)))
