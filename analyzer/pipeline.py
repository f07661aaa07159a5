"""The stage order. Only this module knows it.

    bundle -> members -> source tables -> matches     ingest.py (bundle.py, sources.py, parsers/,
                                                      signatures/; large members: streaming.py)
    -> vCenter tasks paired across members -> VM identities -> cycles -> verdicts -> document
                                                      parsers/vcenter_log, identity, cycles, verdicts

`analyze` runs them all and returns an Analysis (the document of OUTPUT.md and the frames);
`inspect` stops after the identities and says what the bundle holds. Both raise UnusableBundle
when nothing in the bundle can be read.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl

from analyzer import __version__, bundle, cycles, i18n, identity, ingest, signatures, sources, tables, verdicts
from analyzer.bundle import UnusableBundle  # what analyze and inspect raise, for callers
from analyzer.diagnostics import Diagnostics, incomplete_reasons
from analyzer.output import write_atomic
from analyzer.parsers import vcenter_log
from analyzer.parsers.timeparse import to_iso
from analyzer.redact import redact_doc, redact_frame

__all__ = ["Analysis", "Options", "UnusableBundle", "analyze", "inspect"]


@dataclass(frozen=True)
class Options:
    signatures: tuple[Path, ...] = ()  # extra signature dirs, override built-ins by id
    appliance_tz: str | None = None
    portal_tz: str | None = None
    vcenter_tz: str | None = None
    redact: bool = True
    dump_tables: Path | None = None
    lang: str | None = None  # en | ko; None: as the bundle's bundle.toml says, else en


@dataclass
class Analysis:
    doc: dict  # the analysis JSON of OUTPUT.md (plus extensions), already redacted
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    members: list[dict] = field(default_factory=list)  # inspect: path, source, form, records, ...
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    # every VM's vCenter tasks, redacted as the doc (verdicts.Decision.tasks): the report draws
    # them all, the doc lists those around failures
    tasks: pl.DataFrame | None = None


def analyze(path: Path, options: Options = Options(), progress=None, while_reading=None) -> Analysis:
    """Run every stage on one bundle. `progress(done_bytes, member_path)` is called per member;
    `while_reading()` as the bundle starts to be read (to start work of the caller's own in the
    background: reading leaves a core idle now and then)."""
    path = Path(path)
    diags = Diagnostics()
    library = signatures.load_library(options.signatures)
    if while_reading is not None:
        while_reading()
    sha256 = _hash_meanwhile(path)
    found = ingest.ingest(path, _zones(options), library, diags, progress)
    frames = _take_frames(found)
    _place_yearless(frames, found.stats, diags)
    task_lines = _pair_tasks(frames, diags)
    if options.dump_tables:
        frames["vcenter_task_lines"] = task_lines
    del task_lines
    frames["identities"] = identity.build(frames, diags)
    _match_tasks(frames, library)
    cycle_result = cycles.build(frames, diags)
    frames["cycles"] = cycle_result.cycles
    frames["cycle_disks"] = cycle_result.disks
    # without a dump, the record tables go once judged (the Analysis keeps the others)
    lang = _language(options, found.config, diags)
    decision = verdicts.decide(frames, cycle_result, library, diags, sources.tables_of(found.stats),
                               release=options.dump_tables is None, redact=options.redact, lang=lang)
    for finding in decision.findings:  # the report names each signature by its title
        signature = library.signatures.get(finding["signature"])
        finding["title"] = signature.title if signature is not None else None
        if lang == "ko":
            finding["title_ko"] = (signature.title_ko or signature.title) if signature is not None else None
    doc = _document(path, options, found, cycle_result, decision, diags, lang, sha256.result())
    members = [{**m, "first": to_iso(m["first"]), "last": to_iso(m["last"])} for m in found.members]
    if options.dump_tables:
        frames = {name: frame.collect() if isinstance(frame, pl.LazyFrame) else frame
                  for name, frame in frames.items()}
        _dump(frames, options.dump_tables, options.redact)
    return Analysis(doc=doc, tables=frames, members=members, diagnostics=diags, tasks=decision.tasks)


def inspect(path: Path, options: Options = Options(), progress=None) -> dict:
    """What the bundle holds: members, sources, records, time spans, VMs, diagnostics."""
    path = Path(path)
    diags = Diagnostics()
    library = signatures.load_library(options.signatures)
    found = ingest.ingest(path, _zones(options), library, diags, progress)
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


def _language(options: Options, config: dict, diags: Diagnostics) -> str:
    """The language of the document's texts: --lang, else bundle.toml's `lang`, else English."""
    if options.lang:
        return options.lang
    wanted = config.get("lang")
    if wanted is not None and i18n.check_lang(wanted) is None:
        diags.add("warning", "bad-bundle-toml", f"bundle.toml: lang {wanted!r} is not one of "
                  f"{', '.join(i18n.LANGS)}; the report is in English", "bundle.toml",
                  "write lang = \"en\" or lang = \"ko\"")
        return i18n.DEFAULT_LANG
    return wanted or i18n.DEFAULT_LANG


def _zones(options: Options) -> dict[str, str | None]:
    return {"appliance_tz": options.appliance_tz, "portal_tz": options.portal_tz,
            "vcenter_tz": options.vcenter_tz}


# Tables the later stages scan from their stored parts instead of loading whole: the gateway's
# kept rows and vCenter's events are most of a large bundle's memory, and each stage reads a few
# of their rows or columns.
_SCANNED = ("gateway_log", "vcenter_events")


def _take_frames(found: ingest.Ingested) -> dict[str, pl.DataFrame | pl.LazyFrame]:
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


def _match_tasks(frames: dict[str, pl.DataFrame], library) -> None:
    """The vCenter tasks' matches (tasks are matched once paired across rotations) join the
    others, and all of them are put in order."""
    if frames["vcenter_tasks"].height:
        task_matches = tables.compact(signatures.match(library, "vcenter_tasks", frames["vcenter_tasks"]))
        frames["matches"] = tables.concat("matches", [frames["matches"], task_matches])
    frames["matches"] = frames["matches"].sort(["ts", "member", "line", "signature"], nulls_last=True)


# The JSON groups vCenter logs and task exports under one source key, as OUTPUT.md does; the
# replication status table and `text` (generic text, a VM's vmware.log) are listed when the bundle
# has some, never as missing.
_DOC_SOURCES = ("gateway_log", "portal_events", "vcenter_tasks")
_EXTRA_DOC_SOURCES = ("replication_status", "text")
YEARLESS_SLACK = timedelta(days=2)  # a year-less time this far past the bundle's end is last year's


def _place_yearless(frames: dict, stats: dict[str, dict], diags: Diagnostics) -> None:
    """Syslog-like stamps have no year (the parser puts them in 2000): give them the year that
    puts them at or before the end of the bundle's dated records, in the text rows and in their
    matches. With no dated record anywhere the times stay unknown (null)."""
    text = frames["text_log"]
    yearless = text.filter(pl.col("yearless").fill_null(False) & pl.col("ts").is_not_null())
    if yearless.height == 0:
        return
    lasts = [entry["last"] for entry in stats.values() if entry.get("last") is not None]
    ts = pl.col("ts")
    if lasts:
        end = max(lasts)
        placed = ts.dt.offset_by(f"{end.year - 2000}y")
        placed = pl.when(placed > end + YEARLESS_SLACK).then(placed.dt.offset_by("-1y")).otherwise(placed)
    else:
        placed = pl.lit(None, dtype=tables.TS)
        diags.add("warning", "yearless-times", f"{yearless.height} records carry a time with no year and "
                  "no other record gives one: their times are unknown", yearless["member"][0],
                  "add a log with full dates (the gateway log, vpxd) to the bundle")
    is_yearless = pl.col("yearless").fill_null(False)
    frames["text_log"] = text.with_columns(pl.when(is_yearless).then(placed).otherwise(ts).alias("ts"))
    fixed = yearless.select(pl.col("member").cast(pl.Utf8), "line", placed.alias("_placed"),
                            pl.lit(True).alias("_yearless"))
    frames["matches"] = (frames["matches"].join(fixed, on=["member", "line"], how="left")
                         .with_columns(pl.when((pl.col("source") == "text_log") & pl.col("_yearless"))
                                       .then(pl.col("_placed")).otherwise(ts).alias("ts"))
                         .drop("_placed", "_yearless"))


def _hash_meanwhile(path: Path) -> Future[str]:
    """The bundle's SHA-256, read in a thread while the bundle is parsed: hashlib lets go of the
    GIL, and the 73 MB fleet bundle took 0.06 s to hash after the analysis."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-sha256")
    try:
        return pool.submit(bundle.file_sha256, path)
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one task


def _document(path: Path, options: Options, found: ingest.Ingested, cycle_result: cycles.CycleResult,
              decision: verdicts.Decision, diags: Diagnostics, lang: str, sha256: str | None = None) -> dict:
    """The analysis document (OUTPUT.md), redacted unless asked not to be: the VMs were redacted
    as columns while they were built (verdicts.decide); the rest, verdicts, findings and
    diagnostics composed from a few thousand rows, is redacted here. `sha256`: the bundle's, when
    already known."""
    config, stats = found.config, found.stats
    diagnostics = diags.sorted()
    reasons = incomplete_reasons(diagnostics)
    doc = {
        "schema": "bundle-analyzer/analysis/v1",
        "lang": lang,
        "bundle": {
            "name": path.name,
            "sha256": sha256 or bundle.file_sha256(path),
            "analyzed_at": to_iso(datetime.now(timezone.utc).replace(microsecond=0)),
            "analyzer_version": __version__,
            "ticket": config.get("ticket"),
            "sources": {name: {**entry, "first": to_iso(entry["first"]), "last": to_iso(entry["last"])}
                        for name, entry in sorted(stats.items()) if name in _DOC_SOURCES + _EXTRA_DOC_SOURCES},
            "missing_sources": sorted(set(_DOC_SOURCES) - set(stats)),
            "clock_skew": (None if cycle_result.clock_skew is None else
                           {"seconds": round(cycle_result.clock_skew, 1),
                            "basis": cycle_result.skew_basis}),
            "appliance_tz": options.appliance_tz or config.get("appliance_tz"),
            "complete": not reasons,
            "incomplete_reasons": reasons,
        },
        "vms": None,
        "verdicts": decision.verdicts,
        "outages": decision.outages,
        "not_evaluated": decision.not_evaluated,
        "findings": decision.findings,
        "unexplained": decision.unexplained,
        "diagnostics": [d.as_dict() for d in diagnostics],
    }
    doc = redact_doc(doc, options.redact)
    doc["vms"] = decision.vms
    return doc


def _dump(frames: dict[str, pl.DataFrame], folder: Path, redact: bool) -> None:
    for name, frame in frames.items():
        write_atomic(folder / f"{name}.parquet", redact_frame(frame, redact).write_parquet,
                     "--dump-tables")
