"""The `bundle-analyzer` command line: commands, terminal output, exit codes (OUTPUT.md).

Exit codes: 0 analysis done, 1 `--fail-on` threshold reached, 2 usage error, 3 unusable bundle,
4 invalid signatures.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from analyzer import __version__
from analyzer.terminal import shown

EXIT_FAIL_ON = 1
EXIT_USAGE = 2
EXIT_UNUSABLE = 3
EXIT_SIGNATURES = 4

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Why is Azure Migrate agentless replication failing? Analyze a support bundle.")
console = Console(stderr=True)  # stdout stays free for `--json -`


def _mount_signatures() -> None:
    from analyzer.signatures.cli import app as signatures_app

    app.add_typer(signatures_app, name="signatures", help="The signature library: list, show, lint, test.")


def _options(signatures: list[Path] | None, appliance_tz, portal_tz, vcenter_tz, redact=True,
             dump_tables=None):
    from analyzer.parsers.timeparse import BadZone, zone_offset
    from analyzer.pipeline import Options

    for flag, value in (("--appliance-tz", appliance_tz), ("--portal-tz", portal_tz),
                        ("--vcenter-tz", vcenter_tz)):
        try:
            zone_offset(value)
        except BadZone as exc:
            _usage(f"{flag}: {exc}")
    return Options(signatures=tuple(signatures or ()), appliance_tz=appliance_tz, portal_tz=portal_tz,
                   vcenter_tz=vcenter_tz, redact=redact, dump_tables=dump_tables)


def _redacted(text: str, options) -> str:
    from analyzer.redact import redact

    return redact(text) if options.redact else text


def _usage(message: str) -> None:
    console.print(f"[red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(EXIT_USAGE)


def safe_stem(bundle: Path) -> str:
    """The bundle's name without archive suffixes, safe as a file name inside the output folder."""
    from analyzer.bundle import archive_stem

    name = bundle.resolve().name if bundle.name in ("", ".", "..") else bundle.name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", archive_stem(name)).lstrip(".")[:120]
    return cleaned or "bundle"


def _write_json(doc: dict, target: str) -> None:
    from analyzer.report import jsontext

    if target == "-":
        sys.stdout.write(jsontext.dumps(doc, indent=True, newline=True).decode("utf-8"))
    else:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            jsontext.write(doc, out, indent=True, newline=True)


def _run_with_progress(func, bundle: Path, options):
    """Run a pipeline entry point with a byte progress bar on a terminal."""
    from analyzer.signatures import SignatureError
    from analyzer.pipeline import UnusableBundle

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[member]}", style="dim")]
    try:
        with Progress(*columns, console=console, transient=True,
                      disable=not console.is_terminal) as bar:
            task = bar.add_task("reading", total=None, member="")

            def progress(done: int, member: str) -> None:
                bar.update(task, completed=done, member=shown(_redacted(member, options)[-60:]))

            return func(bundle, options, progress)
    except UnusableBundle as exc:
        console.print(f"[red]unusable bundle:[/] {shown(_redacted(str(exc), options))}",
                      highlight=False, soft_wrap=True)  # one line, however long
        raise typer.Exit(EXIT_UNUSABLE)
    except SignatureError as exc:
        console.print(f"[red]invalid signatures:[/]\n{shown(exc)}", highlight=False)
        raise typer.Exit(EXIT_SIGNATURES)


@app.command()
def analyze(
    bundle: Path = typer.Argument(..., help="zip, tar, tgz, gz or directory"),
    out_dir: Path = typer.Option(Path("reports"), "-o", "--out-dir", help="where the HTML report goes"),
    json_out: Optional[str] = typer.Option(None, "--json", help="write the analysis JSON here ('-' = stdout)"),
    signatures: Optional[list[Path]] = typer.Option(None, "--signatures",
                                                    help="extra signature folder (overrides by id)"),
    appliance_tz: Optional[str] = typer.Option(None, "--appliance-tz", help="zone of naive gateway times"),
    portal_tz: Optional[str] = typer.Option(None, "--portal-tz", help="zone of portal display times"),
    vcenter_tz: Optional[str] = typer.Option(None, "--vcenter-tz", help="zone of vCenter local times"),
    no_redact: bool = typer.Option(False, "--no-redact", help="show secrets as they are in the logs"),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="critical|warning: exit 1 if found"),
    dump_tables: Optional[Path] = typer.Option(None, "--dump-tables", help="write stage frames as Parquet"),
) -> None:
    """Analyze one bundle: HTML report, optional JSON, summary on the terminal."""
    from analyzer import pipeline, report

    if fail_on not in (None, "critical", "warning"):
        _usage("--fail-on takes critical or warning")
    if not bundle.exists():
        console.print(f"[red]unusable bundle:[/] {shown(bundle)}: no such file or directory",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_UNUSABLE)
    options = _options(signatures, appliance_tz, portal_tz, vcenter_tz, not no_redact, dump_tables)
    # only the document is needed from here on: the analysis' tables go before the report is built
    doc = _run_with_progress(pipeline.analyze, bundle, options).doc
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / f"{safe_stem(bundle)}.html"
    html_path.write_text(report.render(doc), encoding="utf-8")
    if json_out:
        _write_json(doc, json_out)
    _summary(doc, html_path)
    if fail_on:
        worst = {"critical": ("critical",), "warning": ("critical", "warning")}[fail_on]
        if any(v["severity"] in worst for v in doc["verdicts"]):
            raise typer.Exit(EXIT_FAIL_ON)


def _summary(doc: dict, html_path: Path) -> None:
    from collections import Counter

    health = Counter(vm["health"] for vm in doc["vms"])
    counts = "  ".join(f"{name}: {health.get(name, 0)}" for name in ("critical", "warning", "healthy",
                                                                      "unknown"))
    console.print(f"[bold]{shown(doc['bundle']['name'])}[/]  VMs {len(doc['vms'])}  ({counts})", highlight=False)
    if doc.get("outages"):
        for outage in doc["outages"]:
            console.print(f"[magenta]outage[/] {shown(outage['summary'])}", highlight=False)
    table = Table("severity", "VM", "error", "cause", "confidence", "cycles", box=None, pad_edge=False)
    style = {"critical": "red", "warning": "yellow", "info": "blue"}
    for v in doc["verdicts"][:15]:
        table.add_row(f"[{style.get(v['severity'], '')}]{shown(v['severity'])}[/]", shown(v["vm"] or "—"),
                      shown(v["error"]), shown(v["cause"]), shown(v["confidence"]), str(len(v["cycles"])))
    if doc["verdicts"]:
        console.print(table)
        if len(doc["verdicts"]) > 15:
            console.print(f"… and {len(doc['verdicts']) - 15} more verdicts in the report")
    else:
        console.print("[green]no failure found[/]")
    if doc["diagnostics"]:
        console.print(f"{len(doc['diagnostics'])} diagnostics (see the report)")
    console.print(f"report: {shown(html_path)}", highlight=False)


@app.command()
def inspect(
    bundle: Path = typer.Argument(...),
    json_out: Optional[str] = typer.Option(None, "--json", help="write the inventory JSON ('-' = stdout)"),
    appliance_tz: Optional[str] = typer.Option(None, "--appliance-tz"),
    portal_tz: Optional[str] = typer.Option(None, "--portal-tz"),
    vcenter_tz: Optional[str] = typer.Option(None, "--vcenter-tz"),
) -> None:
    """What the bundle holds: members, sources, records, unparsed lines, time spans, VMs, diagnostics."""
    from analyzer import pipeline

    if not bundle.exists():
        console.print(f"[red]unusable bundle:[/] {shown(bundle)}: no such file or directory",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_UNUSABLE)
    options = _options(None, appliance_tz, portal_tz, vcenter_tz)
    doc = _run_with_progress(pipeline.inspect, bundle, options)
    if json_out:
        _write_json(doc, json_out)
    if json_out == "-":
        return
    table = Table("member", "source", "records", "unparsed", "first", "last",
                  title=shown(doc["bundle"]["name"]))
    for m in doc["members"]:
        table.add_row(shown(m["member"]), shown(m["form"]), str(m["records"]), str(m["unparsed"]),
                      m["first"] or "", m["last"] or "")
    console.print(table)
    vms = ", ".join(shown(f"{vm['vm'] or '?'} ({', '.join(vm['vm_ids']) or 'no MoRef'})") for vm in doc["vms"])
    console.print(f"VMs: {vms or 'none found'}", highlight=False)
    for d in doc["diagnostics"]:
        console.print(f"[{'red' if d['severity'] == 'error' else 'yellow'}]{d['severity']}[/] {shown(d['code'])}: "
                      f"{shown(d['message'])} ({shown(d['location'] or '-')})", highlight=False)


@app.command()
def batch(
    inputs: list[str] = typer.Argument(..., help="bundle files, directories or globs"),
    out_dir: Path = typer.Option(Path("reports"), "-o", "--out-dir"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="parallel processes (default: all cores)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler, tcp://HOST:PORT"),
    signatures: Optional[list[Path]] = typer.Option(None, "--signatures"),
    no_redact: bool = typer.Option(False, "--no-redact"),
) -> None:
    """Many bundles: one report each, a fleet index page, CSV/JSONL/Parquet exports."""
    from analyzer.batch import SchedulerUnreachable, run_batch
    from analyzer.signatures import SignatureError

    if jobs is not None and jobs < 1:
        _usage("--jobs must be at least 1")
    options = _options(signatures, None, None, None, not no_redact)
    try:
        result = run_batch(inputs, out_dir, jobs, options, scheduler, console)
    except SchedulerUnreachable as exc:
        _usage(shown(exc))
    except SignatureError as exc:
        console.print(f"[red]invalid signatures:[/]\n{shown(exc)}", highlight=False)
        raise typer.Exit(EXIT_SIGNATURES)
    if result.done == 0 and result.skipped == 0 and not result.failed:
        _usage("no bundle found in the inputs")


@app.command()
def watch(
    folder: Path = typer.Argument(..., help="drop folder"),
    out_dir: Path = typer.Option(Path("reports"), "-o", "--out-dir"),
    signatures: Optional[list[Path]] = typer.Option(None, "--signatures"),
) -> None:
    """Analyze each bundle dropped into FOLDER once it is completely written."""
    from analyzer.watch import watch as run_watch

    if not folder.is_dir():
        _usage(f"{folder} is not a directory")
    run_watch(folder, out_dir, _options(signatures, None, None, None), console)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (default: this machine only)"),
    port: int = typer.Option(8765, "--port"),
    out_dir: Path = typer.Option(Path("reports"), "-o", "--out-dir", help="where uploads and reports go"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="analyses at once (default: cores - 1)"),
    max_upload: str = typer.Option("2GiB", "--max-upload", help="largest bundle accepted, e.g. 500MiB"),
) -> None:
    """A local web page to drop bundles on: progress, verdicts, reports, and a JSON API."""
    from analyzer.sample import parse_size
    from analyzer.serve import ServeError, default_workers, run

    if jobs is not None and jobs < 1:
        _usage("--jobs must be at least 1")
    if not 0 <= port <= 65535:
        _usage("--port takes a number from 0 to 65535")
    try:
        limit = parse_size(max_upload)
    except ValueError as exc:
        _usage(f"--max-upload: {exc}")
    try:
        run(host, port, out_dir, jobs or default_workers(), limit, _options(None, None, None, None),
            say=lambda text: console.print(shown(text), highlight=False, soft_wrap=True))
    except ServeError as exc:
        _usage(shown(exc))


@app.command()
def sample(
    scenarios: Optional[list[str]] = typer.Argument(None, help="scenario names (see --list)"),
    out_dir: Optional[Path] = typer.Option(None, "-o", "--out-dir"),
    vms: int = typer.Option(6, "--vms"),
    days: int = typer.Option(2, "--days"),
    seed: int = typer.Option(1, "--seed"),
    size: Optional[str] = typer.Option(None, "--size", help="pad to this much uncompressed log, e.g. 1GiB"),
    list_: bool = typer.Option(False, "--list", help="list the scenarios"),
) -> None:
    """Write generated bundles for the named scenarios."""
    from analyzer import sample as generator

    if list_:
        for name, description in generator.list_scenarios():
            typer.echo(f"{name}\t{description}")
        return
    if not scenarios or out_dir is None:
        _usage("give one or more scenarios and -o DIR (or --list)")
    try:
        size_bytes = generator.parse_size(size) if size else None
        paths = generator.write_bundles(scenarios, out_dir, vms=vms, days=days, seed=seed, size=size_bytes)
    except ValueError as exc:
        _usage(str(exc))
    for path in paths:
        console.print(f"wrote {path}", highlight=False)


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="print the version")) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)


def main() -> None:
    tune_process(sys.argv[1:])
    _mount_signatures()
    app()


# ------------------------------------------------------------------------------------ the process

ALLOCATOR = "narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0"  # polars' jemalloc, see tune_process
MMAP_THRESHOLD = 256 << 10  # glibc's, see tune_process
ONE_BUNDLE_COMMANDS = ("analyze", "inspect")  # the commands that analyze a bundle in this process


def tune_process(args: list[str]) -> None:
    """The settings for the whole process, which belong to the command line alone: set here once,
    before anything loads polars. A library caller (tests, batch workers, a server) keeps its
    process as it is and gets the same results; README ("Embedding") says how to set them there.
    A value the user sets in the environment wins.

    - `_RJEM_MALLOC_CONF`, polars' allocator (jemalloc), which reads it once when polars loads;
      polars adds it after its own defaults (dirty pages kept 0.5 s, then "muzzy" for 1 s, still
      counted in RSS). One arena for all threads: what the ingest's parse threads free is reused
      by the later stages instead of staying reserved per thread; idle pages go straight back to
      the system. On the 1 GiB fleet bundle the peak went from 964 to 898 MiB (medians of 5
      runs), same wall time. Batch's worker processes inherit it with the environment.
    - glibc's mmap threshold, for `analyze` and `inspect`: every block of MMAP_THRESHOLD bytes or
      more gets a mapping of its own. By default glibc raises that threshold (up to 32 MiB) each
      time such a block is freed, so that later blocks of the size come from the heap, where what
      is freed between long-lived blocks stays counted in RSS; streaming a large member allocates
      and frees many 1-16 MiB blocks (chunks, slices) between the kept rows it stores. On the
      1 GiB fleet bundle the analyze peak went from 537-554 to 497-501 MiB (GNU time, 2 runs
      each, alternating), for about 1.5 s more system time (fresh pages are zeroed). Not for
      batch and watch, which analyze many bundles in one process: there it cost small bundles
      throughput (BENCHMARKS.md). Libcs other than glibc are left alone.
    """
    os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR)
    command = next((arg for arg in args if not arg.startswith("-")), None)
    if command in ONE_BUNDLE_COMMANDS and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        try:
            ctypes.CDLL("libc.so.6").mallopt(-3, MMAP_THRESHOLD)  # -3: M_MMAP_THRESHOLD
        except (OSError, AttributeError):
            pass
