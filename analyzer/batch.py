"""Many bundles at once: one report per bundle, a fleet page, exports, and a cache in OUT.

OUT is a fleet store that grows run after run (and is what `watch` writes into):

    OUT/<bundle_id>.html                 one report per bundle (bundle_id = safe stem + short hash)
    OUT/json/<bundle_id>.json            its analysis JSON, one line (plus "bundle_id")
    OUT/dataset/<table>/<bundle_id>.parquet   events, vcenter_tasks, cycles, verdicts (+ bundle_id)
    OUT/errors/<bundle_id>.txt           why a bundle failed, with the traceback
    OUT/index.html, verdicts.csv, analysis.jsonl   rebuilt from all of the above after every run
    OUT/.cache.json                      bundle -> cache key, summary; failures
    OUT/.cache.journal                   what finished since .cache.json was last written

A bundle is analyzed again only when its content hash, the signature library's digest, the
analysis options, the analyzer's version or its code change. Every file is written whole or not
at all (output.write_atomic); each finished bundle is noted in the journal at once, so a run
that is killed loses no finished work. The per-bundle job (`analyze_bundle`) is a top-level
function returning a small picklable `BundleResult`, so it runs the same in-process, in a
spawned process pool or on a Dask cluster; only the parent writes into OUT.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import glob
import hashlib
import io
import json
import multiprocessing
import os
import re
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

from analyzer import __version__, tables
from analyzer.bundle import ARCHIVE_SUFFIXES, archive_stem, file_sha256
from analyzer.errors import UserError
from analyzer.output import prepare_folder, write_atomic
from analyzer.pipeline import Options, UnusableBundle
from analyzer.terminal import labelled, one_line, say

CACHE_FILE = ".cache.json"
JOURNAL_FILE = ".cache.journal"
ERRORS = "errors"  # OUT/errors/<bundle_id>.txt: why a bundle failed
SCHEDULER_TIMEOUT = "15s"
MAX_LISTED_FAILURES = 50  # on the terminal; the fleet page lists them all
CACHE_VERSION = 1
# Export table name -> analysis table it comes from ("verdicts" is built from the document).
EXPORTS = {"events": "portal_events", "vcenter_tasks": "vcenter_tasks", "cycles": "cycles",
           "verdicts": None}
TS = tables.TS
VERDICT_ROWS = {
    "bundle_id": pl.Utf8, "bundle": pl.Utf8, "appliance": pl.Utf8, "vm": pl.Utf8, "host": pl.Utf8,
    "error": pl.Utf8, "error_code": pl.Utf8, "title": pl.Utf8, "cause": pl.Utf8,
    "confidence": pl.Utf8, "severity": pl.Utf8, "outage": pl.Utf8,
    "first_seen": TS, "last_seen": TS, "cycles": pl.List(pl.Utf8), "summary": pl.Utf8,
    "remediation": pl.List(pl.Utf8), "references": pl.List(pl.Utf8), "evidence_count": pl.Int64,
}


@dataclass
class BatchResult:
    done: int = 0  # analyzed in this run
    skipped: int = 0  # unchanged since a previous run: results reused
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, one-line message)
    details: dict[str, Path] = field(default_factory=dict)  # path -> its OUT/errors/ file
    bundle_ids: list[str] = field(default_factory=list)  # this run's bundles that have a report
    seconds: float = 0.0


@dataclass
class BundleResult:
    """What one job sends back to the parent (picklable, no polars objects)."""

    path: str
    bundle_id: str
    doc: dict | None = None
    html: str | None = None
    parquet: dict[str, bytes] = field(default_factory=dict)  # export table -> Parquet file bytes
    appliance: str | None = None
    error: str | None = None
    cacheable_error: bool = False  # UnusableBundle: a property of the bundle, not of this run
    details: str | None = None  # a failure's traceback
    seconds: float = 0.0


# ---------------------------------------------------------------- finding bundles and naming them

def is_archive(path: Path) -> bool:
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(262 + 5)
    except OSError:
        return False
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or head[:2] == b"\x1f\x8b" \
        or head[257:262] == b"ustar"


# Files that make a folder a (directory) bundle rather than a folder of bundles: logs, CSV
# exports, bundle.toml, log rotations (vpxd-3.log.gz, hostd.0.gz, GatewayService.log.1).
_BUNDLE_CONTENT = re.compile(r"(\.(log|csv|toml)|\.log\.\d+|\.log\.gz|\.\d+\.gz)$", re.I)


def _bundles_in_dir(folder: Path) -> list[Path] | None:
    """The bundles of a folder of bundles, or None when the folder is itself one bundle.

    A folder holding archives and no log-like files (see _BUNDLE_CONTENT) is a folder of bundles:
    its archives and its subfolders (directory bundles); other files in it (READMEs, expected
    JSON, reports) are ignored. Any other folder is a directory bundle. Hidden entries are skipped.
    """
    children = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    files = [p for p in children if p.is_file()]
    archives = [p for p in files if is_archive(p)]
    if not archives or any(_BUNDLE_CONTENT.search(p.name) for p in files):
        return None
    return sorted(archives + [p for p in children if p.is_dir()])


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, directories and globs -> (bundle paths, deduplicated, in order; problems)."""
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        if glob.has_magic(item):
            matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))]
            if not matches:
                problems.append((item, "no file matches this pattern"))
        else:
            matches = [Path(item)]
            if not matches[0].exists():
                problems.append((item, "no such file or directory"))
                continue
        for path in matches:
            inner = _bundles_in_dir(path) if path.is_dir() else None
            found.extend(inner if inner is not None else [path])
    seen: set[Path] = set()
    unique = []
    for path in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(key)
    return unique, problems


def safe_stem(name: str) -> str:
    """A file-name-safe stem: no separators, no `..`, no control characters, bounded length."""
    stem = re.sub(r"[^\w.-]+", "_", archive_stem(name)).strip("._-")
    return stem[:80] or "bundle"


def bundle_id(path: Path, sha256: str) -> str:
    return f"{safe_stem(path.name)}-{sha256[:10]}"


# ---------------------------------------------------------------- the per-bundle job

def _appliance_of(analysis) -> str | None:
    named = analysis.doc.get("bundle", {}).get("appliance")
    if named:
        return str(named)
    status = analysis.tables.get("replication_status")
    if status is not None and "appliance" in status.columns:
        names = status["appliance"].drop_nulls()
        if len(names):
            return str(names.sort()[0])
    return None


def verdict_rows(doc: dict, bundle: str, appliance: str | None) -> pl.DataFrame:
    """The document's verdicts flattened to one row each, with the VM's host."""
    host_of = {vm.get("vm"): vm.get("host") for vm in doc.get("vms", [])}
    rows = []
    for v in doc.get("verdicts", []):
        rows.append({
            "bundle_id": bundle, "bundle": doc.get("bundle", {}).get("name"),
            "appliance": appliance, "vm": v.get("vm"), "host": host_of.get(v.get("vm")),
            "error": v.get("error"), "error_code": v.get("error_code"), "title": v.get("title"),
            "cause": v.get("cause"), "confidence": v.get("confidence"),
            "severity": v.get("severity"), "outage": v.get("outage"),
            "first_seen": v.get("first_seen"), "last_seen": v.get("last_seen"),
            "cycles": list(v.get("cycles") or []), "summary": v.get("summary"),
            "remediation": list(v.get("remediation") or []),
            "references": list(v.get("references") or []),
            "evidence_count": len(v.get("evidence") or []),
        })
    text_schema = {k: (pl.Utf8 if t == TS else t) for k, t in VERDICT_ROWS.items()}
    frame = pl.DataFrame(rows, schema=text_schema)
    iso = "%Y-%m-%dT%H:%M:%S%.fZ"
    return frame.with_columns(
        pl.col(c).str.to_datetime(iso, time_zone="UTC", strict=False) for c in
        ("first_seen", "last_seen"))


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _export_frames(analysis, bundle: str, appliance: str | None, redact: bool) -> dict[str, bytes]:
    from analyzer.redact import redact_frame

    out = {}
    for export, table in EXPORTS.items():
        if table is None:
            frame = verdict_rows(analysis.doc, bundle, appliance)  # the doc is already redacted
        else:
            source = analysis.tables.get(table)
            frame = tables.conform(table, source) if source is not None else tables.empty(table)
            # text as text: the dataset's schema must not follow how a table is held in memory
            frame = redact_frame(frame.with_columns(pl.col(pl.Categorical).cast(pl.Utf8)), redact)
            frame = frame.select(pl.lit(bundle).alias("bundle_id"), pl.all())
        out[export] = _parquet_bytes(frame)
    return out


def analyze_bundle(path: str, bundle: str, options: Options, name: str | None = None,
                   exports: bool = True) -> BundleResult:
    """Analyze one bundle and render its report. Never raises: failures come back as results.

    `name` replaces the file's name in the document and report (`serve` stores uploads under
    names of its own; the name must be redacted already); `exports=False` skips the Parquet.
    """
    from analyzer.pipeline import analyze
    from analyzer.report import render

    started = time.perf_counter()
    result = BundleResult(path=path, bundle_id=bundle)
    try:
        analysis = analyze(Path(path), options)
        if name is not None:
            analysis.doc["bundle"]["name"] = name
        result.appliance = _appliance_of(analysis)
        result.doc = {**analysis.doc, "bundle_id": bundle}
        result.html = render(analysis.doc, tasks=analysis.tasks)
        if exports:
            result.parquet = _export_frames(analysis, bundle, result.appliance, options.redact)
    except UnusableBundle as exc:
        result.error, result.cacheable_error = one_line(str(exc)), True
        result.details = traceback.format_exc()
    except Exception as exc:  # one bad bundle must not stop the batch
        result.error = one_line(f"{type(exc).__name__}: {exc}")
        result.details = traceback.format_exc()
    result.seconds = time.perf_counter() - started
    if result.error:
        if options.redact:  # the message may quote member names or log text
            from analyzer.redact import redact

            result.error, result.details = redact(result.error), redact(result.details)
        result.doc = result.html = None
        result.parquet = {}
    return result


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the parent, which cancels them cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------- OUT: files and cache

CODE_SUFFIXES = (".py", ".j2", ".js", ".css")


@cache
def code_digest() -> str:
    """A hash of the analyzer's own code (its .py, templates, scripts and styles): a changed
    analyzer analyzes again even when its version number stayed the same."""
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.suffix in CODE_SUFFIXES and p.is_file()):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def options_fingerprint(options: Options) -> str:
    relevant = {"signatures": [str(p) for p in options.signatures],
                "appliance_tz": options.appliance_tz, "portal_tz": options.portal_tz,
                "vcenter_tz": options.vcenter_tz, "redact": options.redact, "lang": options.lang,
                "analyzer": __version__, "code": code_digest()}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


class Store:
    """The fleet kept in OUT: which bundles have results, and the outputs built from them.

    What a run learns is kept in .cache.json, written whole every few seconds and at the end, and
    in between appended to .cache.journal one line per finished bundle (a process that is killed
    keeps all but a torn last line, which is ignored); loading replays the journal on the cache.
    """

    def __init__(self, out: Path, redact: bool = True):
        self.out = out
        self.redact = redact  # the names and paths this store writes about failures
        self.path = out / CACHE_FILE
        self.journal = out / JOURNAL_FILE
        self.bundles: dict[str, dict] = {}  # bundle_id -> entry
        self.failures: dict[str, dict] = {}  # source path -> {key, sha256, message, cacheable, details}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") == CACHE_VERSION:
                self.bundles = data.get("bundles", {})
                self.failures = data.get("failures", {})
        except (OSError, ValueError, AttributeError):
            pass  # no cache or an unreadable one: everything is analyzed again
        self._replay()

    def _replay(self) -> None:
        try:
            lines = self.journal.read_bytes().splitlines()
        except OSError:
            return
        for line in lines:
            try:
                note = json.loads(line)
                if note.get("version") != CACHE_VERSION:
                    continue
                if "bundle" in note:
                    self.bundles[note["bundle"]] = note["entry"]
                elif "removed" in note:
                    self.bundles.pop(note["removed"], None)
                elif "failure" in note:
                    self.failures[note["failure"]] = note["entry"]
                elif "recovered" in note:
                    self.failures.pop(note["recovered"], None)
            except (ValueError, AttributeError, KeyError, TypeError):
                continue  # a line torn by a kill, or not ours

    def _note(self, **note) -> None:
        """One line in the journal, written in one call, so that it survives a kill after it."""
        line = json.dumps({"version": CACHE_VERSION, **note}, sort_keys=True, ensure_ascii=False)
        try:
            with open(self.journal, "ab") as out:
                out.write(line.encode("utf-8") + b"\n")
        except OSError as exc:
            from analyzer.output import output_error

            raise output_error(exc, self.journal, "-o") from None

    def save(self) -> None:
        data = {"version": CACHE_VERSION, "bundles": self.bundles, "failures": self.failures}
        write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False), "-o")
        self.journal.unlink(missing_ok=True)  # all it held is in the cache now

    def _files(self, bundle: str) -> list[Path]:
        return [self.out / f"{bundle}.html", self.out / "json" / f"{bundle}.json",
                *(self.out / "dataset" / t / f"{bundle}.parquet" for t in EXPORTS)]

    def cached(self, bundle: str, key: str) -> bool:
        entry = self.bundles.get(bundle)
        return bool(entry and entry["key"] == key and all(p.exists() for p in self._files(bundle)))

    def cached_failure(self, path: str, key: str) -> tuple[str, Path | None] | None:
        """(message, traceback file) of a failure that analyzing again would repeat."""
        failure = self.failures.get(path)
        if failure and failure["key"] == key and failure.get("cacheable"):
            details = self.out / failure["details"] if failure.get("details") else None
            return failure["message"], details if details and details.exists() else None
        return None

    def _shown(self, text: str) -> str:
        """A bundle's path or name as this store may write it (the file's name may hold a secret)."""
        if not self.redact:
            return text
        from analyzer.redact import redact

        return redact(text)

    def details(self, path: str) -> Path | None:
        """The file that tells why this bundle failed, if there is one."""
        name = self.failures.get(path, {}).get("details")
        return self.out / name if name else None

    def record(self, result: BundleResult, key: str, sha256: str) -> None:
        """Write one bundle's outputs; drop an older result of the same source path."""
        earlier = self.failures.pop(result.path, None)
        if earlier and earlier.get("details"):
            (self.out / earlier["details"]).unlink(missing_ok=True)
        if result.error:
            entry = {"key": key, "sha256": sha256, "message": result.error,
                     "cacheable": result.cacheable_error, "details": None}
            if result.details:
                # named as the bundle's id is, from its name as shown
                name = f"{ERRORS}/{bundle_id(Path(self._shown(Path(result.path).name)), sha256)}.txt"
                text = f"{self._shown(result.path)}\n{result.error}\n\n{result.details}"
                write_atomic(self.out / name, text, "-o")
                entry["details"] = name
            self.failures[result.path] = entry
            self._note(failure=result.path, entry=entry)
            return
        if earlier is not None:
            self._note(recovered=result.path)
        for old, entry in list(self.bundles.items()):
            if entry["path"] == result.path and old != result.bundle_id:
                self.remove(old)
        from analyzer.report import jsontext

        bundle = result.bundle_id
        write_atomic(self.out / f"{bundle}.html", result.html or "", "-o")
        write_atomic(self.out / "json" / f"{bundle}.json",
                     jsontext.dumps(result.doc, newline=True), "-o")  # json.dumps' bytes, faster
        for export, data in result.parquet.items():
            write_atomic(self.out / "dataset" / export / f"{bundle}.parquet", data, "-o")
        doc = result.doc or {}
        health: dict[str, int] = {}
        for vm in doc.get("vms", []):
            health[vm.get("health") or "unknown"] = health.get(vm.get("health") or "unknown", 0) + 1
        self.bundles[bundle] = {
            "key": key, "path": result.path, "sha256": sha256,
            "name": doc.get("bundle", {}).get("name") or Path(result.path).name,
            "appliance": result.appliance, "ticket": doc.get("bundle", {}).get("ticket"),
            "analyzed_at": doc.get("bundle", {}).get("analyzed_at"),
            "vms": len(doc.get("vms", [])), "health": health,
            "verdicts": len(doc.get("verdicts", [])), "seconds": round(result.seconds, 3),
        }
        self._note(bundle=bundle, entry=self.bundles[bundle])

    def remove(self, bundle: str) -> None:
        for path in self._files(bundle):
            path.unlink(missing_ok=True)
        self.bundles.pop(bundle, None)
        self._note(removed=bundle)

    def verdicts(self) -> pl.DataFrame:
        files = [self.out / "dataset" / "verdicts" / f"{b}.parquet" for b in sorted(self.bundles)]
        files = [f for f in files if f.exists()]
        if not files:
            return pl.DataFrame(schema=VERDICT_ROWS)
        return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")

    def rebuild_outputs(self, redact: bool = True, lang: str | None = None) -> None:
        """index.html, verdicts.csv and analysis.jsonl over every bundle in the store."""
        from analyzer.redact import redact_texts
        from analyzer.report.fleet import render_fleet

        verdicts = self.verdicts()
        self._write_csv(verdicts)
        docs = [self.out / "json" / f"{bundle}.json" for bundle in sorted(self.bundles)]
        write_atomic(self.out / "analysis.jsonl",  # one document in memory at a time
                     (doc.read_bytes().rstrip(b"\n") + b"\n" for doc in docs if doc.exists()), "-o")
        failures = sorted((path, f["message"], f.get("details")) for path, f in self.failures.items())
        if redact:  # messages are redacted when recorded; the bundle's path is shown here too
            failures = [(shown_path, message, details) for shown_path, (_, message, details)
                        in zip(redact_texts([p for p, _, _ in failures]), failures)]
        write_atomic(self.out / "index.html", render_fleet(self.bundles, verdicts, failures, lang), "-o")

    def _write_csv(self, verdicts: pl.DataFrame) -> None:
        iso = "%Y-%m-%dT%H:%M:%SZ"
        frame = verdicts.select(
            "bundle_id", "bundle", (pl.col("bundle_id") + ".html").alias("report"), "appliance",
            "vm", "host", "error", "error_code", "title", "cause", "confidence", "severity",
            "outage", pl.col("first_seen").dt.strftime(iso), pl.col("last_seen").dt.strftime(iso),
            pl.col("cycles").list.join(";"), "summary", "evidence_count",
        ).sort("bundle_id", "vm", "error", "cause", nulls_last=True)
        # A cell starting with = + - @ is a formula to spreadsheets; log text must stay text.
        text = [c for c, t in frame.schema.items() if t == pl.Utf8]
        frame = frame.with_columns(
            pl.when(pl.col(c).str.contains(r"^[=+\-@\t\r]")).then("'" + pl.col(c))
            .otherwise(pl.col(c)).alias(c) for c in text)
        write_atomic(self.out / "verdicts.csv", frame.write_csv, "-o")


# ---------------------------------------------------------------- running a batch

class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed * 60:.1f}/min" if speed else "–/min", style="progress.data.speed")


def _progress(console: Console, visible: bool) -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), _RateColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console,
                    disable=not visible)


def _library_digest(options: Options) -> str:
    from analyzer.signatures import load_library

    return load_library(list(options.signatures)).digest


@dataclass
class _Job:
    path: str
    bundle_id: str
    key: str
    sha256: str


def _plan(paths: list[Path], store: Store, library: str, options: Options,
          result: BatchResult) -> list[_Job]:
    """Hash every bundle; keep the ones whose results are not already in the store."""
    fingerprint = options_fingerprint(options)
    jobs = []
    planned: set[str] = set()
    for path in paths:
        try:
            sha = file_sha256(path)
        except Exception as exc:  # unreadable file: recorded, the batch goes on
            result.failed.append((str(path), one_line(f"cannot read: {exc}")))
            continue
        bundle = bundle_id(path, sha)
        key = hashlib.sha256(f"{sha}|{library}|{fingerprint}".encode()).hexdigest()
        if bundle in planned:  # the same bytes under another name: one result serves both
            result.skipped += 1
        elif store.cached(bundle, key):
            result.skipped += 1
            result.bundle_ids.append(bundle)
        elif (failure := store.cached_failure(str(path), key)) is not None:
            result.failed.append((str(path), failure[0]))
            if failure[1] is not None:
                result.details[str(path)] = failure[1]
        else:
            jobs.append(_Job(str(path), bundle, key, sha))
            planned.add(bundle)
    return jobs


def _run_local(jobs: list[_Job], workers: int, options: Options, on_result) -> None:
    if workers <= 1 or len(jobs) <= 1:
        _run_in_process(jobs, options, on_result)
        return
    # spawn, not fork: polars' thread pool does not survive a fork.
    context = multiprocessing.get_context("spawn")
    pending = list(jobs)
    broken_once: set[str] = set()
    while pending:
        retry = []
        with cf.ProcessPoolExecutor(min(workers, len(pending)), mp_context=context,
                                    initializer=_ignore_sigint) as pool:
            futures = {pool.submit(analyze_bundle, j.path, j.bundle_id, options): j
                       for j in pending}
            try:
                for future in cf.as_completed(futures):
                    job = futures[future]
                    try:
                        on_result(job, future.result())
                    except cf.process.BrokenProcessPool:
                        # A worker died (memory?). Retry once in a fresh pool, then give up.
                        if job.path in broken_once:
                            on_result(job, BundleResult(job.path, job.bundle_id,
                                                        error="the worker process died while "
                                                              "analyzing this bundle"))
                        else:
                            broken_once.add(job.path)
                            retry.append(job)
            except BaseException:  # Ctrl-C: do not wait for bundles in flight
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        pending = retry


def _run_in_process(jobs: list[_Job], options: Options, on_result) -> None:
    """One bundle after another in this process. A Ctrl-C is noted as well as raised: a library
    may swallow the KeyboardInterrupt raised inside one of its calls (polars prints "Exception
    ignored" and raises an error of its own), and the bundle would then count as failed and the
    batch go on. Noted, it stops the batch once the bundle returns, and that result is dropped."""
    interrupted = threading.Event()

    def on_sigint(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    handled = threading.current_thread() is threading.main_thread() and previous is not None
    if handled:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        for job in jobs:
            bundle = analyze_bundle(job.path, job.bundle_id, options)
            if interrupted.is_set():
                raise KeyboardInterrupt
            on_result(job, bundle)
    finally:
        if handled:
            signal.signal(signal.SIGINT, previous)


class SchedulerUnreachable(UserError):
    """`--scheduler` names no Dask scheduler that answers. The message is one line."""


def _run_dask(jobs: list[_Job], scheduler: str, options: Options, on_result) -> None:
    """Per-bundle jobs on a Dask cluster. Workers need this package installed and the bundle
    paths readable (a shared file system); results come back to this process, which writes OUT."""
    from distributed import Client, as_completed

    if not jobs:  # a no-change re-run needs no cluster
        return
    try:
        client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachable(f"{scheduler}: no Dask scheduler answered ({exc}) — check the "
                                   "address, or leave out --scheduler to run here") from exc
    with client:
        futures = {}
        for job in jobs:
            future = client.submit(analyze_bundle, job.path, job.bundle_id, options, pure=False)
            futures[future] = job
        try:
            for future in as_completed(list(futures)):
                job = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # worker lost, unpicklable result, ...
                    result = BundleResult(job.path, job.bundle_id,
                                          error=one_line(f"{type(exc).__name__}: {exc}"))
                on_result(job, result)
        except BaseException:
            client.cancel(list(futures))
            raise


def run_batch(inputs: list[str], out: Path, jobs: int | None, options: Options,
              scheduler: str | None, console: Console) -> BatchResult:
    """Analyze every bundle named by `inputs` (files, folders, globs) into `out`."""
    from analyzer.i18n import DEFAULT_LANG, messages
    from analyzer.redact import redact

    paths, problems = expand_inputs(inputs)
    if not paths:
        found = "; ".join(f"{item}: {why}" for item, why in problems[:3])
        raise UserError(f"no bundle found ({found or 'no inputs'}) — give bundle files, folders "
                        "or globs that match some")
    result = run_paths(paths, out, jobs, options, scheduler, console, problems)
    m = messages(options.lang or DEFAULT_LANG)
    say(console, m.text("cli.batch_done", done=result.done, skipped=result.skipped, failed=len(result.failed),
                        seconds=f"{result.seconds:.1f}", index=Path(out) / "index.html"))
    for path, message in result.failed[:MAX_LISTED_FAILURES]:
        named = message if message.startswith(path) else f"{path}: {message}"
        named = redact(named) if options.redact else named
        details = result.details.get(path)
        labelled(console, m.text("cli.batch_failed"), "red", named + (f" (details: {details})" if details else ""))
    if len(result.failed) > MAX_LISTED_FAILURES:
        say(console, m.text("cli.batch_more", n=len(result.failed) - MAX_LISTED_FAILURES))
    return result


def run_paths(paths: list[Path], out: Path, jobs: int | None, options: Options,
              scheduler: str | None, console: Console,
              problems: list[tuple[str, str]] | None = None) -> BatchResult:
    """Analyze these bundles into `out`: skip unchanged ones, then rebuild the fleet outputs."""
    started = time.perf_counter()
    out = prepare_folder(Path(out), "-o")
    options = dataclasses.replace(options, dump_tables=None)  # one dump dir cannot serve many
    result = BatchResult(failed=list(problems or []))
    store = Store(out, options.redact)
    planned = _plan([Path(p).resolve() for p in paths], store, _library_digest(options), options,
                    result)
    last_save = time.monotonic()

    def on_result(job: _Job, bundle: BundleResult) -> None:
        nonlocal last_save
        store.record(bundle, job.key, job.sha256)  # noted in the journal at once
        if bundle.error:
            result.failed.append((job.path, bundle.error))
            if (details := store.details(job.path)) is not None:
                result.details[job.path] = details
        else:
            result.done += 1
            result.bundle_ids.append(job.bundle_id)
        progress.advance(task)
        if time.monotonic() - last_save > 2:  # the journal folded into the cache now and then
            store.save()
            last_save = time.monotonic()

    workers = jobs or len(os.sched_getaffinity(0))
    # No bar when there is nothing to analyze (a no-change re-run), nor into a pipe or a log.
    with _progress(console, visible=bool(planned) and console.is_terminal) as progress:
        task = progress.add_task("bundles", total=len(planned))
        try:
            if scheduler:
                _run_dask(planned, scheduler, options, on_result)
            else:
                _run_local(planned, workers, options, on_result)
        finally:
            store.save()
            store.rebuild_outputs(options.redact, options.lang)
    result.failed.sort()
    result.bundle_ids.sort()
    result.seconds = time.perf_counter() - started
    return result
