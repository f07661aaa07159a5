"""The `bundle-analyzer` command line: commands, terminal output, exit codes (OUTPUT.md).

Exit codes: 0 analysis done, 1 `--fail-on` threshold reached, 2 a problem of the user's making
(usage), 3 unusable bundle, 4 invalid signatures, 5 internal error (a bug). Commands raise; one
handler, `run`, turns what they raise into the exit code and one line on stderr.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
import sys
import tempfile
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from analyzer import __version__
from analyzer.errors import UserError
from analyzer.output import output_error, prepare_file, prepare_folder, write_atomic
from analyzer.terminal import error, labelled, one_line, print_table, say, shown

EXIT_FAIL_ON = 1
EXIT_USAGE = 2
EXIT_UNUSABLE = 3
EXIT_SIGNATURES = 4
EXIT_INTERNAL = 5
EXIT_INTERRUPTED = 130  # as a shell reports a process that Ctrl-C stopped

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Why is Azure Migrate agentless replication failing? Analyze a support bundle.")
console = Console(stderr=True)  # stdout stays free for `--json -`
LANG_HELP = "en|ko: language of the report and the summary (default: bundle.toml's lang, else en)"


@dataclass
class _Running:
    """What the handler needs to know of the command in progress."""

    args: tuple[str, ...] = ()  # the command line, for a crash report
    debug: bool = False  # --debug: print an internal error's traceback too
    out_dir: Path | None = None  # where a crash report goes (else the temp folder)
    redact: bool = True


running = _Running()


def _mount_signatures() -> None:
    from analyzer.signatures.cli import app as signatures_app

    app.add_typer(signatures_app, name="signatures", help="The signature library: list, show, lint, test.")


def _options(signatures: list[Path] | None, appliance_tz, portal_tz, vcenter_tz, redact=True,
             dump_tables=None, lang=None):
    from analyzer.i18n import LANGS, check_lang
    from analyzer.parsers.timeparse import BadZone, zone_offset
    from analyzer.pipeline import Options

    if lang is not None and check_lang(lang) is None:
        raise UserError(f"--lang takes {' or '.join(LANGS)}, not {lang!r}")

    for flag, value in (("--appliance-tz", appliance_tz), ("--portal-tz", portal_tz),
                        ("--vcenter-tz", vcenter_tz)):
        try:
            zone_offset(value)
        except BadZone as exc:
            raise UserError(f"{flag}: {exc}") from None
    for folder in signatures or ():
        if not folder.is_dir():
            raise UserError(f"--signatures {folder}: not a folder — give the folder that holds the "
                            "*.toml signature files")
    running.redact = redact
    return Options(signatures=tuple(signatures or ()), appliance_tz=appliance_tz, portal_tz=portal_tz,
                   vcenter_tz=vcenter_tz, redact=redact, dump_tables=dump_tables, lang=lang)


def _redacted(text: str, options) -> str:
    from analyzer.redact import redact

    return redact(text) if options.redact else text


def _bundle(path: Path) -> Path:
    """The bundle the user named, if it is there to be read."""
    if not path.exists():
        raise UserError(f"{path}: no such file or folder — give the path of a bundle (zip, tar, tgz, "
                        "gz or folder)")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise UserError(f"{path}: cannot be read (permission denied) — make it readable, or copy it "
                        "somewhere you can read it")
    return path


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
        write_atomic(Path(target), lambda out: jsontext.write(doc, out, indent=True, newline=True),
                     "--json")


def _run_with_progress(func, bundle: Path, options, **more):
    """Run a pipeline entry point with a byte progress bar on a terminal."""
    if not console.is_terminal:  # no bar to draw: the walk need not call back per chunk
        return func(bundle, options, None, **more)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[member]}", style="dim")]
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("reading", total=None, member="")

        @lru_cache(maxsize=1)  # called per chunk: a member's name is redacted once
        def label(member: str) -> str:
            return shown(_redacted(member, options)[-60:])

        def progress(done: int, member: str) -> None:
            bar.update(task, completed=done, member=label(member))

        return func(bundle, options, progress, **more)


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
    lang: Optional[str] = typer.Option(None, "--lang", help=LANG_HELP),
) -> None:
    """Analyze one bundle: HTML report, optional JSON, summary on the terminal."""
    from analyzer import pipeline, report

    if fail_on not in (None, "critical", "warning"):
        raise UserError(f"--fail-on takes critical or warning, not {fail_on!r}")
    _bundle(bundle)
    options = _options(signatures, appliance_tz, portal_tz, vcenter_tz, not no_redact, dump_tables, lang)
    # the places the results go are checked before the analysis, which may take minutes
    running.out_dir = prepare_folder(out_dir, "-o")
    if json_out and json_out != "-":
        prepare_file(Path(json_out), "--json")
    if dump_tables:
        prepare_folder(dump_tables, "--dump-tables")
    # only the document and the task table are needed from here on: the analysis' other tables
    # go before the report is built
    analysis = _run_with_progress(pipeline.analyze, bundle, options, while_reading=report.prepare)
    doc, tasks = analysis.doc, analysis.tasks
    del analysis
    html_path = out_dir / f"{safe_stem(bundle)}.html"
    write_atomic(html_path, report.render(doc, tasks=tasks), "-o")
    del tasks
    if json_out:
        _write_json(doc, json_out)
    _summary(doc, html_path)
    if fail_on:
        worst = {"critical": ("critical",), "warning": ("critical", "warning")}[fail_on]
        if any(v["severity"] in worst for v in doc["verdicts"]):
            raise typer.Exit(EXIT_FAIL_ON)


FAILURE_SOURCES = ("gateway_log", "portal_events")  # the sources that show cycles failing
SUMMARY_ROWS = 15


def _summary(doc: dict, html_path: Path) -> None:
    """What the analysis found, on the terminal, in the document's language."""
    from collections import Counter

    from analyzer.diagnostics import incomplete_reasons_in
    from analyzer.i18n import DEFAULT_LANG, check_lang, messages

    m = messages(check_lang(doc.get("lang")) or DEFAULT_LANG)
    bundle = doc["bundle"]
    health = Counter(vm["health"] for vm in doc["vms"])
    counts = "  ".join(f"{m.label('health', name)}: {health.get(name, 0)}"
                       for name in ("critical", "warning", "healthy", "unknown"))
    console.print(f"[bold]{shown(bundle['name'])}[/]  {m.text('cli.vms', n=len(doc['vms']))}  ({counts})",
                  highlight=False, soft_wrap=True)
    complete = bundle.get("complete", True)
    if not complete:
        reasons = bundle.get("incomplete_reasons", [])
        if m.lang != DEFAULT_LANG:
            reasons = incomplete_reasons_in(doc.get("diagnostics") or [], m) or reasons
        say(console, m.text("cli.incomplete", reasons="; ".join(reasons)), "yellow")
    for outage in doc.get("outages") or []:
        labelled(console, m.text("cli.outage"), "magenta", outage.get(f"summary_{m.lang}") or outage["summary"])
    if doc["verdicts"]:
        table = Table(*(m.text(f"cli.col_{name}") for name in ("severity", "vm", "error", "cause", "confidence",
                                                               "cycles")), box=None, pad_edge=False)
        for column in table.columns[1:4]:
            column.overflow = "fold"  # wrapped on a narrow terminal, never cut
        style = {"critical": "red", "warning": "yellow", "info": "blue"}
        for v in doc["verdicts"][:SUMMARY_ROWS]:
            table.add_row(f"[{style.get(v['severity'], '')}]{shown(m.label('severity', v['severity']))}[/]",
                          shown(v["vm"] or "—"), shown(v["error"]), shown(v["cause"]),
                          shown(m.label("confidence", v["confidence"])), str(len(v["cycles"])))
        print_table(console, table)
        if len(doc["verdicts"]) > SUMMARY_ROWS:
            say(console, m.text("cli.more_verdicts", n=len(doc["verdicts"]) - SUMMARY_ROWS))
    elif not set(FAILURE_SOURCES) & set(bundle.get("sources", {})):
        say(console, m.text("cli.no_failure_source", findings=len(doc.get("findings", [])),
                            templates=len(doc.get("unexplained", []))), "yellow")
    elif complete:
        say(console, m.text("cli.no_failure"), "green")
    else:
        say(console, m.text("cli.no_verdicts_incomplete"), "yellow")
    if doc["diagnostics"]:
        say(console, m.text("cli.diagnostics", n=len(doc["diagnostics"])))
    say(console, m.text("cli.report", path=html_path))


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

    _bundle(bundle)
    options = _options(None, appliance_tz, portal_tz, vcenter_tz)
    if json_out and json_out != "-":
        running.out_dir = prepare_file(Path(json_out), "--json").parent
    doc = _run_with_progress(pipeline.inspect, bundle, options)
    if json_out:
        _write_json(doc, json_out)
    if json_out == "-":
        return
    table = Table("member", "form (layout)", "records", "unparsed", "first", "last",
                  title=shown(doc["bundle"]["name"]))
    for column in table.columns[:2]:
        column.overflow = "fold"  # a member's name and form wrap, never cut
    for m in doc["members"]:
        form = f"{m['form']} ({m['layout']})" if m.get("layout") else m["form"]  # a text member's time layout
        table.add_row(shown(m["member"]), shown(form), str(m["records"]), str(m["unparsed"]),
                      m["first"] or "", m["last"] or "")
    console.print(table)
    vms = ", ".join(f"{vm['vm'] or '?'} ({', '.join(vm['vm_ids']) or 'no MoRef'})" for vm in doc["vms"])
    say(console, f"VMs: {vms or 'none found'}")
    for d in doc["diagnostics"]:
        labelled(console, d["severity"], "red" if d["severity"] == "error" else "yellow",
                 f"{d['code']}: {d['message']} ({d['location'] or '-'})"
                 + (f" ×{d['count']}" if d.get("count", 1) > 1 else ""))


@app.command()
def batch(
    inputs: list[str] = typer.Argument(..., help="bundle files, directories or globs"),
    out_dir: Path = typer.Option(Path("reports"), "-o", "--out-dir"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="parallel processes (default: all cores)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler, tcp://HOST:PORT"),
    signatures: Optional[list[Path]] = typer.Option(None, "--signatures"),
    no_redact: bool = typer.Option(False, "--no-redact"),
    lang: Optional[str] = typer.Option(None, "--lang", help=LANG_HELP),
) -> None:
    """Many bundles: one report each, a fleet index page, CSV/JSONL/Parquet exports."""
    from analyzer.batch import run_batch

    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be at least 1, not {jobs}")
    options = _options(signatures, None, None, None, not no_redact, lang=lang)
    running.out_dir = out_dir
    run_batch(inputs, out_dir, jobs, options, scheduler, console)


@app.command()
def watch(
    folder: Path = typer.Argument(..., help="drop folder"),
    out_dir: Path = typer.Option(Path("reports"), "-o", "--out-dir"),
    signatures: Optional[list[Path]] = typer.Option(None, "--signatures"),
    lang: Optional[str] = typer.Option(None, "--lang", help=LANG_HELP),
) -> None:
    """Analyze each bundle dropped into FOLDER once it is completely written."""
    from analyzer.watch import watch as run_watch

    options = _options(signatures, None, None, None, lang=lang)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder — give the drop folder to watch")
    running.out_dir = out_dir
    run_watch(folder, out_dir, options, console)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (default: this machine only)"),
    port: int = typer.Option(8765, "--port"),
    out_dir: Path = typer.Option(Path("reports"), "-o", "--out-dir", help="where uploads and reports go"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="analyses at once (default: cores - 1)"),
    max_upload: str = typer.Option("2GiB", "--max-upload", help="largest bundle accepted, e.g. 500MiB"),
    lang: Optional[str] = typer.Option(None, "--lang", help=LANG_HELP),
) -> None:
    """A local web page to drop bundles on: progress, verdicts, reports, and a JSON API."""
    from analyzer.sample import parse_size
    from analyzer.serve import default_workers, run

    options = _options(None, None, None, None, lang=lang)
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be at least 1, not {jobs}")
    if not 0 <= port <= 65535:
        raise UserError(f"--port takes a number from 0 to 65535, not {port}")
    try:
        limit = parse_size(max_upload)
    except ValueError as exc:
        raise UserError(f"--max-upload: {exc}") from None
    if limit <= 0:
        raise UserError("--max-upload must be more than 0 bytes, e.g. 500MiB")
    running.out_dir = out_dir
    run(host, port, out_dir, jobs or default_workers(), limit, options,
        say=lambda text: say(console, text))


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
        raise UserError("give one or more scenarios and -o DIR (or --list)")
    try:
        size_bytes = generator.parse_size(size) if size is not None else None
        generator.check(scenarios, vms, days, size_bytes)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    running.out_dir = prepare_folder(out_dir, "-o")
    try:
        paths = generator.write_bundles(scenarios, out_dir, vms=vms, days=days, seed=seed, size=size_bytes)
    except OSError as exc:
        raise output_error(exc, out_dir, "-o") from None
    for path in paths:
        say(console, f"wrote {path}")


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", help="print the version"),
          debug: bool = typer.Option(False, "--debug", help="on an internal error, print the traceback "
                                                            "too (before the command: --debug analyze …)"),
          ) -> None:
    running.debug = debug
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        raise UserError("name a command (bundle-analyzer --help lists them)")


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else list(args)
    tune_process(args)
    sys.exit(run(args))


def run(args: list[str]) -> int:
    """Run the command line and return its exit code. This is the one place where what a
    command raises becomes an exit code and a line on stderr (OUTPUT.md): no bare traceback."""
    running.args = tuple(args)
    try:
        _mount_signatures()
        code = app(args=args, standalone_mode=False)
    except (Exception, KeyboardInterrupt) as exc:
        return _exit_code(exc)
    if code == EXIT_INTERRUPTED:  # typer's answer to Ctrl-C in a command
        error(console, "interrupted", "stopped before the end")
    return code if isinstance(code, int) else 0


def _exit_code(exc: BaseException) -> int:
    """Say what went wrong, in one line (a usage block for click's own errors); the exit code."""
    from analyzer.bundle import UnusableBundle
    from analyzer.signatures import SignatureError

    click = _click_exceptions()
    if isinstance(exc, click.ClickException):  # click's own: a usage block ending in one line
        exc.show()
        return EXIT_USAGE
    if isinstance(exc, (KeyboardInterrupt, typer.Abort, getattr(click, "Abort", typer.Abort))):
        error(console, "interrupted", "stopped before the end")
        return EXIT_INTERRUPTED
    if isinstance(exc, UserError):
        error(console, "error", str(exc))
        return EXIT_USAGE
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        # wherever it happens, a full disk is not a bug
        error(console, "error", str(output_error(exc, Path(exc.filename or "."))))
        return EXIT_USAGE
    if isinstance(exc, UnusableBundle):
        error(console, "unusable bundle", _redact(str(exc)))
        return EXIT_UNUSABLE
    if isinstance(exc, SignatureError):
        error(console, "invalid signatures", f"{len(exc.problems)} problem(s)")
        for problem in exc.problems:
            say(console, f"  {problem}")
        return EXIT_SIGNATURES
    return _crashed(exc)


def _click_exceptions():
    """The module of click's exceptions as typer raises them (typer 0.2x carries its own click)."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def _redact(text: str) -> str:
    if not running.redact:
        return text
    try:
        from analyzer.redact import redact

        return redact(text)
    except Exception:  # the report of a crash must not crash
        return text


def _crashed(exc: BaseException) -> int:
    """An internal error: the traceback to a crash file, one line saying so on stderr."""
    trace = "".join(traceback.format_exception(exc))
    what = one_line(_redact(f"{type(exc).__name__}: {exc}"), 300)
    report = (f"bundle-analyzer {__version__}: internal error: {what}\n"
              f"command: bundle-analyzer {' '.join(running.args)}\n"
              f"python: {platform.python_version()} on {platform.platform()}\n"
              f"time: {datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}\n\n{trace}")
    name = f"bundle-analyzer-crash-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    written = None
    for folder in (running.out_dir, Path(tempfile.gettempdir())):
        if folder is None:
            continue
        try:
            write_atomic(Path(folder) / name, _redact(report))
            written = Path(folder) / name
            break
        except Exception:
            continue
    where = f"the traceback is in {written}" if written else \
        "the traceback could not be written anywhere; run again with --debug to see it"
    error(console, "internal error", f"{what} — this is a bug; {where} (please report it with that file)")
    if running.debug:
        sys.stderr.write(trace)
    return EXIT_INTERNAL


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
