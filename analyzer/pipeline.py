"""The stage order. Only this module knows it.

bundle -> members -> source tables -> matches -> cycles -> verdicts -> analysis document

Members are processed one at a time (the next one is inflated meanwhile): each is parsed,
matched against the signatures of its source, then reduced to the rows later stages need
(structured events, warnings and errors, matched rows, vCenter task lines) plus a per-minute
activity count. A large log member goes through this in slices, two at a time. So memory
follows the largest member and the kept rows, not the bundle.
"""

from __future__ import annotations

import ctypes
import functools
import os
import queue
import re
import threading
import tomllib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from analyzer import __version__, bundle, cycles, identity, sources, tables, verdicts
from analyzer import signatures
from analyzer.bundle import UnusableBundle  # what analyze and inspect raise, for callers
from analyzer.diagnostics import Diagnostics
from analyzer.parsers import gateway_log, vcenter_log
from analyzer.parsers.timeparse import to_iso
from analyzer.redact import redact_doc, redact_frame


@dataclass(frozen=True)
class Options:
    signatures: tuple[Path, ...] = ()  # extra signature dirs, override built-ins by id
    appliance_tz: str | None = None
    portal_tz: str | None = None
    vcenter_tz: str | None = None
    redact: bool = True
    dump_tables: Path | None = None


@dataclass
class Analysis:
    doc: dict  # the analysis JSON of OUTPUT.md (plus extensions), already redacted
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    members: list[dict] = field(default_factory=list)  # inspect: path, source, form, records, ...
    diagnostics: Diagnostics = field(default_factory=Diagnostics)


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
                  "vcenter_events", "vcenter_task_lines", "vcenter_tasks")
_ROOT_CONFIG = "bundle.toml"
SLICE_BYTES = 16 << 20  # large log members are parsed in slices of about this size
SLICE_THREADS = 2  # slices parsed at once
READ_AHEAD = True  # read the next member while this one is parsed
STREAM_OVER = 1 << 20  # larger members are parsed as they are read, not first held whole
STREAM_QUEUE = 4  # chunks (bundle.CHUNK) read ahead of a streamed member's parsing
_LOOKAHEAD = 64 << 10  # see _stream_slices
# Tables the later stages scan from their stored parts instead of loading whole: the gateway's
# kept rows and vCenter's events are most of a large bundle's memory, and each stage reads a few
# of their rows or columns.
_SCANNED = ("gateway_log", "vcenter_events")
# Tables matched member by member; vCenter tasks are matched once paired across rotations.
_MATCHED_PER_MEMBER = ("gateway_log", "portal_events", "vcenter_log", "vcenter_events")


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
    known = {"appliance_tz", "portal_tz", "vcenter_tz", "ticket"}
    return {k: str(v) for k, v in config.items() if k in known}


def _is_root_config(member_path: str) -> bool:
    """`bundle.toml` at the root, or in the one folder an engineer zipped the bundle in."""
    return "!/" not in member_path and member_path.count("/") <= 1 and \
        member_path.rsplit("/", 1)[-1] == _ROOT_CONFIG


def _vcenter_of(member: bundle.Member) -> str | None:
    """Each vc-support archive is one vCenter: name it after its archive."""
    if member.container is None:
        return None
    return bundle.archive_stem(member.container.rsplit("!/", 1)[-1].rsplit("/", 1)[-1])


@dataclass
class _Ingested:
    config: dict
    parts: dict[str, list[bytes]]  # each table's kept rows, stored compressed (tables.store)
    members: list[dict]
    stats: dict[str, dict]


def _ingest(path: Path, options: Options, library, diags: Diagnostics, progress=None) -> _Ingested:
    """Open, sniff, parse, match and reduce every member, one at a time."""
    zones = {"appliance_tz": options.appliance_tz, "portal_tz": options.portal_tz,
             "vcenter_tz": options.vcenter_tz}
    found = _Ingested(config={}, parts={t: [] for t in (*_SOURCE_TABLES, "matches", "activity")},
                      members=[], stats={})
    registry = sources.registry()
    keeps = {form: _keep(library, table) for form, table in _KEEP_FORMS.items()}
    readable = 0
    done_bytes = 0
    early = bundle.peek_root_file(path, _ROOT_CONFIG)
    if early is not None:  # zones must be known before the first member is parsed
        found.config = _read_bundle_config(early, diags)
        for key in zones:
            zones[key] = zones[key] or found.config.get(key)

    def read(n: int, member: str) -> None:
        nonlocal done_bytes
        done_bytes += n
        if progress:
            progress(done_bytes, member)

    for member in _read_ahead(bundle.open_bundle(path, diags, stream_over=STREAM_OVER)):
        readable += 1
        info = {"member": member.path, "source": None, "form": "unrecognised", "records": 0,
                "unparsed": 0, "first": None, "last": None}
        found.members.append(info)
        read(len(member.data), member.path)
        if member.rest is not None:
            _fix_mmap_threshold()
            member = replace(member, rest=_reported(member.rest, lambda n, m=member.path: read(n, m)))
        try:
            if _is_root_config(member.path):
                member = bundle.whole(member)
                if early is None:
                    found.config = _read_bundle_config(member.data, diags)
                    for key in zones:
                        zones[key] = zones[key] or found.config.get(key)
                    if readable > 1 and any(found.config.get(k) for k in zones):
                        diags.add("warning", "late-bundle-toml", "bundle.toml comes after other members "
                                  "in this tar; members before it were read without its time zones",
                                  member.path, "put bundle.toml first in the archive, or pass the "
                                  "zones as --appliance-tz/--portal-tz/--vcenter-tz")
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
        raise UnusableBundle(f"{path.name}: nothing in this bundle could be read ({problems})"
                             " — check that it is the bundle you meant and that it is complete")
    return found


def _ingest_member(member: bundle.Member, info: dict, found: _Ingested, zones: dict, keeps: dict,
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
    if source is None:
        return
    if streamed and not (source.reads_bytes and source.record_start is not None):
        member, streamed = bundle.whole(member), False
        text = bundle.plain_utf8(member.data)  # None: decoded below
    if streamed:
        pieces = _stream_slices(member.data, member.rest, source.record_start)
    else:
        if text is None or (isinstance(text, bytes) and not source.reads_bytes):
            text = bundle.decode(member.data, member.path, diags)
        pieces = _slices(text, source.record_start)
    ctx = sources.ParseContext(vcenter=_vcenter_of(member), keep=keeps.get(source.form), **zones)
    try:
        parsed, reduced = _parse_member(source, pieces, member.path, ctx, library)
    except bundle.MemberDropped:
        raise
    except Exception as exc:  # a parser bug must disable only this member
        diags.add("error", "parser-failed", f"{source.form} parser failed: {exc!r}", member.path,
                  "please report this with the member attached")
        return
    diags.extend(parsed.diagnostics)
    info.update(source=source.name, form=source.form, records=parsed.records,
                unparsed=parsed.unparsed, first=parsed.first, last=parsed.last)
    _add_stats(found.stats, source.name, parsed)
    for table, frames in reduced.items():
        found.parts[table].extend(frames)


@functools.cache  # once per process
def _fix_mmap_threshold(size: int = 256 << 10) -> None:
    """Have glibc's malloc serve every block of `size` bytes or more with a mapping of its own,
    from the first streamed member on (a bundle of small members is left as it is).

    By default glibc raises that threshold (up to 32 MiB) each time such a block is freed, so
    that later blocks of the size come from the heap, where what is freed between long-lived
    blocks stays counted in RSS. Streaming allocates and frees many 1-16 MiB blocks (chunks,
    slices) between the kept rows it stores. On the 1 GiB fleet bundle the analyze peak went
    from 537-554 to 497-501 MiB (GNU time, 2 runs each, alternating), for about 1.5 s more
    system time (fresh pages are zeroed). The user's own MALLOC_MMAP_THRESHOLD_ wins; libcs
    other than glibc are left alone.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, size)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _reported(chunks: Iterator[bytes], read) -> Iterator[bytes]:
    for chunk in chunks:
        read(len(chunk))
        yield chunk


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _read_ahead(members: Iterator[bundle.Member]) -> Iterator[bundle.Member]:
    """The members, each next one read (inflated) in a thread while this one is parsed. The
    reader waits until a member is taken before it reads another: one member more in memory.
    A streamed member's rest is read in that thread too, STREAM_QUEUE chunks ahead of its parse."""
    if not READ_AHEAD:
        yield from members
        return
    handoff: queue.Queue = queue.Queue()
    taken = threading.Semaphore(0)
    stop = threading.Event()

    def read() -> None:
        try:
            for member in members:
                if member.rest is not None:  # read here, into a queue the parser takes from
                    chunks: queue.Queue = queue.Queue(STREAM_QUEUE)
                    handoff.put(replace(member, rest=_received(chunks)))
                    _pump(member.rest, chunks, stop)
                else:
                    handoff.put(member)
                del member
                taken.acquire()
                if stop.is_set():
                    return
            handoff.put(None)
        except BaseException as exc:  # the walker's own errors reach the caller
            handoff.put(_Failed(exc))

    threading.Thread(target=read, name="bundle-reader", daemon=True).start()
    try:
        while (item := handoff.get()) is not None:
            if isinstance(item, _Failed):
                raise item.exc
            taken.release()
            yield item
            del item
    finally:
        stop.set()
        taken.release()


def _pump(rest: Iterator[bytes], chunks: queue.Queue, stop: threading.Event) -> None:
    """Read a streamed member's rest into `chunks`, then None; what breaks it goes there too."""
    def put(item) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    try:
        for chunk in rest:
            if not put(chunk):
                return
    except bundle.MemberDropped as exc:
        put(_Failed(exc))
        return
    except BaseException as exc:
        put(_Failed(exc))
        raise
    put(None)


def _received(chunks: queue.Queue) -> Iterator[bytes]:
    while (item := chunks.get()) is not None:
        if isinstance(item, _Failed):
            raise item.exc
        yield item


def _parse_member(source: sources.Source, pieces: Iterator[tuple], member: str,
                  ctx: sources.ParseContext, library) -> tuple[sources.Parsed, dict[str, list[bytes]]]:
    """Parse, match and reduce one member, given as pieces (_slices, _stream_slices): (its counts
    and diagnostics, reduced frames by table, each stored compressed: tables.store).

    A large log member is parsed slice by slice, each slice matched and reduced before the next
    one is read: memory then follows SLICE_BYTES, not the member's size.
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
    for parsed, out in _in_threads(parse_slice, pieces):
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
                          diagnostics=_merge_slice_diagnostics([r.diagnostics for r in results])), reduced


def _in_threads(work, items: Iterator[tuple]) -> Iterator:
    """work(*item) for each item, in order, SLICE_THREADS at a time: polars releases the GIL, and
    the string kernels of one slice use one core."""
    if SLICE_THREADS < 2:
        yield from (work(*item) for item in items)
        return
    with ThreadPoolExecutor(SLICE_THREADS) as pool:
        running: deque = deque()
        for item in items:
            running.append(pool.submit(work, *item))
            del item  # a slice is held by its task only
            if len(running) >= SLICE_THREADS:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()


def _slices(text: str | bytes, record_start) -> Iterator[tuple[str | bytes, int]]:
    """(piece, number of its first line): pieces of about SLICE_BYTES, each cut before a line
    `record_start` finds (without the newline between them), or the whole text."""
    if not isinstance(text, bytes) or record_start is None:
        yield text, 1
        return
    start, line = 0, 1
    while len(text) - start > SLICE_BYTES:
        cut = record_start.search(text, start + SLICE_BYTES)
        if cut is None:
            break
        newline = cut.start()
        yield text[start:newline - (text[newline - 1] == 13)], line  # 13: the CR of CRLF
        line += text.count(b"\n", start, newline) + 1
        start = newline + 1
    yield (text[start:] if start else text), line


def _stream_slices(first: bytes, rest: Iterator[bytes],
                   record_start) -> Iterator[tuple[bytes, int, bool]]:
    """The pieces _slices cuts from first + rest, reading the rest only as far as the next cut
    needs: (piece, number of its first line, whether it is the last). A cut is taken only once
    _LOOKAHEAD bytes past it are read, so that it falls where it would in the whole text. Each
    byte is copied once into its piece; only the few chunks around a cut are joined to find it."""
    held, size = [first], len(first)  # chunks read but not yet cut
    line, ended = 1, False
    while True:
        tail = cut = None
        if size > SLICE_BYTES:
            keep, tail = _split_at(held, SLICE_BYTES)
            cut = record_start.search(tail)
        if cut is None or (not ended and cut.end() + _LOOKAHEAD > len(tail)):
            if ended:
                yield b"".join(held), line, True
                return
            if size <= SLICE_BYTES:
                need = SLICE_BYTES + _LOOKAHEAD - size
            else:  # a cut near the end needs a little more; none at all, half as much again
                need = _LOOKAHEAD if cut is not None else size // 2  # (linear time)
            for chunk in rest:
                held.append(chunk)
                size += len(chunk)
                need -= len(chunk)
                if need <= 0:
                    break
            else:
                ended = True
            continue
        newline = cut.start()
        keep = [part for part in (*keep, tail[:newline]) if part]
        if keep and keep[-1].endswith(b"\r"):
            keep[-1] = keep[-1][:-1]  # the CR of CRLF
        piece = b"".join(keep)
        del keep
        yield piece, line, False
        line += piece.count(b"\n") + 1
        del piece
        held = [tail[newline + 1:]]
        size = len(held[0])


def _split_at(chunks: list[bytes], at: int) -> tuple[list[bytes], bytes]:
    """The chunks' bytes before offset `at` (whole chunks, then a part of one) and after it, joined."""
    before, offset = [], 0
    for i, chunk in enumerate(chunks):
        if offset + len(chunk) > at:
            if at > offset:
                before.append(chunk[:at - offset])
            return before, b"".join([chunk[at - offset:], *chunks[i + 1:]])
        before.append(chunk)
        offset += len(chunk)
    return before, b""


def _merge_slice_diagnostics(parts: list[Diagnostics]) -> Diagnostics:
    """The slices' diagnostics as one parse of the whole member gives them: a code each slice
    reports once becomes one diagnostic whose leading count is the sum; its location and
    samples are the first slice's. Anything else is kept as it is."""
    groups: dict[tuple[str, str], list[list]] = {}
    for i, part in enumerate(parts):
        for d in part.items:
            groups.setdefault((d.severity, d.code), [[] for _ in parts])[i].append(d)
    merged = Diagnostics()
    for per_slice in groups.values():
        items = [d for found in per_slice for d in found]
        counts = [re.match(r"\d+(?= )", d.message) for d in items]
        if any(len(found) > 1 for found in per_slice):
            for d in items:
                merged.add(d.severity, d.code, d.message, d.location, d.hint)
            continue
        first = items[0]
        message = first.message
        if len(items) > 1 and all(counts):
            message = f"{sum(int(m.group()) for m in counts)}{first.message[counts[0].end():]}"
        merged.add(first.severity, first.code, message, first.location, first.hint)
    return merged


def analyze(path: Path, options: Options = Options(), progress=None) -> Analysis:
    """Run every stage on one bundle. `progress(done_bytes, member_path)` is called per member."""
    path = Path(path)
    diags = Diagnostics()
    library = signatures.load_library(options.signatures)
    found = _ingest(path, options, library, diags, progress)
    return _finish(path, options, library, found, diags)


def inspect(path: Path, options: Options = Options(), progress=None) -> dict:
    """What the bundle holds: members, sources, records, time spans, VMs, diagnostics."""
    path = Path(path)
    diags = Diagnostics()
    library = signatures.load_library(options.signatures)
    found = _ingest(path, options, library, diags, progress)
    frames = _take_frames(found)
    _pair_tasks(frames, diags)
    ids = identity.build(frames, diags)
    vms: dict[str, dict] = {}
    for row in ids.sort("vm_key").iter_rows(named=True):
        entry = vms.setdefault(row["vm_key"], {"vm": row["vm"], "vm_ids": [], "host": row["host"]})
        if row["vm_id"] and row["vm_id"] not in entry["vm_ids"]:
            entry["vm_ids"].append(row["vm_id"])
    doc = {
        "bundle": {"name": path.name, "sha256": bundle.file_sha256(path), "ticket": found.config.get("ticket")},
        "members": [{**m, "first": to_iso(m["first"]), "last": to_iso(m["last"])} for m in found.members],
        "sources": {name: {**e, "first": to_iso(e["first"]), "last": to_iso(e["last"])}
                    for name, e in sorted(found.stats.items())},
        "vms": [vms[k] for k in sorted(vms)],
        "vcenter_tasks": frames["vcenter_tasks"].height,
        "diagnostics": [d.as_dict() for d in diags.sorted()],
    }
    return redact_doc(doc, options.redact)


# The JSON groups vCenter logs and task exports under one source key, as OUTPUT.md does.
_DOC_SOURCES = ("gateway_log", "portal_events", "vcenter_tasks")


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


def _take_frames(found: _Ingested) -> dict[str, pl.DataFrame | pl.LazyFrame]:
    """Each table's stored parts as one frame, or as a lazy scan for the _SCANNED tables. The
    parts are taken out of `found`, one table at a time, so what no later stage needs can go."""
    return {name: (tables.scan if name in _SCANNED else tables.load)(name, found.parts.pop(name))
            for name in list(found.parts)}


def _pair_tasks(frames: dict[str, pl.DataFrame], diags: Diagnostics) -> pl.DataFrame:
    """vCenter tasks paired from the vpxd task lines, added to the exported tasks; the task lines,
    taken out of `frames`, are returned (to be let go unless dumped)."""
    task_lines = frames.pop("vcenter_task_lines")
    paired = vcenter_log.pair_tasks(task_lines, frames["vcenter_events"], diags)
    frames["vcenter_tasks"] = tables.concat("vcenter_tasks", [paired, frames["vcenter_tasks"]])
    return task_lines


def _finish(path: Path, options: Options, library, found: _Ingested, diags: Diagnostics) -> Analysis:
    config, stats = found.config, found.stats
    frames = _take_frames(found)
    task_lines = _pair_tasks(frames, diags)
    if options.dump_tables:
        frames["vcenter_task_lines"] = task_lines
    del task_lines
    frames["identities"] = identity.build(frames, diags)
    if frames["vcenter_tasks"].height:
        task_matches = tables.compact(signatures.match(library, "vcenter_tasks", frames["vcenter_tasks"]))
        frames["matches"] = tables.concat("matches", [frames["matches"], task_matches])
    frames["matches"] = frames["matches"].sort(["ts", "member", "line", "signature"], nulls_last=True)

    cycle_result = cycles.build(frames, diags)
    frames["cycles"] = cycle_result.cycles
    frames["cycle_disks"] = cycle_result.disks
    # without a dump, the record tables go once judged (the Analysis keeps the others)
    decision = verdicts.decide(frames, cycle_result, library, diags, set(stats),
                               release=options.dump_tables is None)

    doc = {
        "schema": "bundle-analyzer/analysis/v1",
        "bundle": {
            "name": path.name,
            "sha256": bundle.file_sha256(path),
            "analyzed_at": to_iso(datetime.now(timezone.utc).replace(microsecond=0)),
            "analyzer_version": __version__,
            "ticket": config.get("ticket"),
            "sources": {name: {**entry, "first": to_iso(entry["first"]), "last": to_iso(entry["last"])}
                        for name, entry in sorted(stats.items()) if name in _DOC_SOURCES},
            "missing_sources": sorted(set(_DOC_SOURCES) - set(stats)),
            "clock_skew": (None if cycle_result.clock_skew is None else
                           {"seconds": round(cycle_result.clock_skew, 1),
                            "basis": cycle_result.skew_basis}),
            "appliance_tz": options.appliance_tz or config.get("appliance_tz"),
        },
        "vms": decision.vms,
        "verdicts": decision.verdicts,
        "outages": decision.outages,
        "not_evaluated": decision.not_evaluated,
        "diagnostics": [d.as_dict() for d in diags.sorted()],
    }
    doc = redact_doc(doc, options.redact)
    members = [{**m, "first": to_iso(m["first"]), "last": to_iso(m["last"])} for m in found.members]
    if options.dump_tables:
        frames = {name: frame.collect() if isinstance(frame, pl.LazyFrame) else frame
                  for name, frame in frames.items()}
        _dump(frames, options.dump_tables, options.redact)
    return Analysis(doc=doc, tables=frames, members=members, diagnostics=diags)


def _dump(frames: dict[str, pl.DataFrame], folder: Path, redact: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        redact_frame(frame, redact).write_parquet(folder / f"{name}.parquet")
