"""`bundle-analyzer signatures …`: list, show, lint and test the signature library."""

from __future__ import annotations

import difflib
import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from analyzer.output import write_atomic
from analyzer.signatures.load import BUILTIN_DIR, SignatureError, collect, json_schema, lint, \
    load_library
from analyzer.signatures.match import run_examples
from analyzer.signatures.model import Library, Signature

EXIT_USAGE = 2
EXIT_INVALID = 4

app = typer.Typer(name="signatures", no_args_is_help=True, add_completion=False,
                  help="The signature library: known errors and the evidence for their causes.")
console = Console(highlight=False)
# Problems and example results stay one line each (file: key: message), whatever the width.
errors = Console(stderr=True, highlight=False, soft_wrap=True)
lines = Console(highlight=False, soft_wrap=True)

ExtraDirs = Annotated[Optional[list[Path]], typer.Option(
    "--signatures", help="Extra signature directory (adds or overrides by id); repeatable.")]
LintDir = Annotated[Optional[Path], typer.Argument(
    help="Directory of signature files (default: the built-in library).")]


def _library(extra: list[Path] | None) -> Library:
    try:
        return load_library(extra or ())
    except SignatureError as exc:
        _print_problems(exc.problems)
        raise typer.Exit(EXIT_INVALID)


def _print_problems(problems) -> None:
    for p in problems:
        style = "red" if p.severity == "error" else "yellow"
        where = f"{p.file}: {p.key}" if p.key else p.file
        errors.print(f"[{style}]{p.severity}[/] {escape(where)}: {escape(p.message)}")
        if p.hint:
            errors.print(f"    [dim]fix:[/] {escape(p.hint)}")


def _window(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _sources(sig: Signature) -> list[str]:
    return sorted({m.source for m in sig.matchers})


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
          extra: ExtraDirs = None) -> None:
    """Every signature: id, kind, severity, codes, sources, title."""
    library = _library(extra)
    sigs = sorted(library.signatures.values(), key=lambda s: (s.kind != "error", s.id))
    if as_json:
        typer.echo(json.dumps([{
            "id": s.id, "kind": s.kind, "title": s.title, "codes": list(s.codes),
            "severity": s.severity, "scope": s.scope if s.kind == "evidence" else None,
            "sources": _sources(s), "causes": [c.id for c in s.causes], "path": s.path,
        } for s in sigs], indent=2, ensure_ascii=False))
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "kind", "severity", "codes"):
        table.add_column(column, no_wrap=True)
    table.add_column("title")
    for s in sigs:
        table.add_row(s.id, s.kind, s.severity, ",".join(s.codes), escape(s.title))
    console.print(table)
    console.print(f"{len(library.errors())} errors, {len(library.evidence())} evidence")


@app.command()
def show(signature_id: Annotated[str, typer.Argument(metavar="ID")], extra: ExtraDirs = None) -> None:
    """One signature in full: matchers, causes with evidence and remediation, examples."""
    library = _library(extra)
    sig = library.signatures.get(signature_id)
    if sig is None:
        close = difflib.get_close_matches(signature_id, list(library.signatures), n=3)
        errors.print(f"no signature '{escape(signature_id)}'"
                     + (f"; did you mean: {', '.join(close)}?" if close else ""))
        raise typer.Exit(EXIT_USAGE)
    out = console.print
    out(f"[bold]{sig.id}[/] ({sig.kind}, {sig.severity}) — {escape(sig.title)}")
    out(f"file: {sig.path}")
    if sig.codes:
        out(f"Error IDs: {', '.join(sig.codes)}")
    if sig.kind == "evidence":
        out(f"scope: {sig.scope}")
    if sig.summary:
        out(f"summary: {escape(sig.summary)}")
    blocks = sig.blocks()
    out(f"\n[bold]matchers[/] ({len(blocks) or 'none: raised by a detector'})")
    for m in blocks:
        conds = [f"{col} in {list(v)}" for col, v in m.where]
        conds += [f"{col} contains one of {list(v)}" for col, v in m.contains]
        conds += [f"{col} contains none of {list(v)}" for col, v in m.exclude]
        where = "any source's text" if m.any_source else f"{m.source}.{m.column}"
        out(f"  {m.block}. {where}" + (" (ignore case)" if m.ignore_case else ""))
        if m.literal:
            out(f"     literal: {escape(str(list(m.literal)))}")
        if m.regex:
            out(f"     regex:   {escape(m.regex)}")
        for cond in conds:
            out(f"     where:   {escape(cond)}")
    for cause in sig.causes:
        flags = ", fallback" if cause.fallback else ""
        out(f"\n[bold]cause {cause.id}[/] (scope {cause.scope}, confidence {cause.confidence}{flags}, "
            f"window {_window(cause.before)} before … {_window(cause.after)} after)")
        out(f"  evidence: {', '.join(cause.evidence) or '(none: the error alone)'}")
        for step in cause.remediation:
            out(f"  - {escape(step)}")
    if sig.undetermined:
        out("\n[bold]undetermined[/] (checklist)")
        for step in sig.undetermined:
            out(f"  - {escape(step)}")
    if sig.params:
        out("\n[bold]params[/]: " + ", ".join(f"{k} = {v:g}" for k, v in sig.params))
    for ref in sig.references:
        out(f"reference: {escape(ref)}")
    positives = sum(e.matches for e in sig.examples)
    out(f"\nexamples: {positives} that must match, {len(sig.examples) - positives} that must not")


@app.command("lint")
def lint_(directory: LintDir = None) -> None:
    """Every check on the signature files, examples included. Exit 4 on errors."""
    problems = lint([directory] if directory else None)
    _print_problems(problems)
    failed = sum(p.severity == "error" for p in problems)
    warned = len(problems) - failed
    target = directory or BUILTIN_DIR
    if failed:
        errors.print(f"[red]{failed} error(s)[/], {warned} warning(s) in {target}")
        raise typer.Exit(EXIT_INVALID)
    lines.print(f"[green]ok[/]: {target}, {warned} warning(s)")


@app.command()
def test(directory: LintDir = None,
         verbose: Annotated[bool, typer.Option("-v", "--verbose", help="List passing ones too.")] = False
         ) -> None:
    """Run every example and counterexample; on a failure, say how far the regex got."""
    target = directory or BUILTIN_DIR
    library, problems = collect([target])
    blocking = [p for p in problems if p.severity == "error"]
    if blocking:
        _print_problems(blocking)
        raise typer.Exit(EXIT_INVALID)
    results = run_examples(library)
    for r in results:
        if verbose or not r.ok:
            state = "[green]ok[/]  " if r.ok else "[red]FAIL[/]"
            lines.print(f"{state} {escape(r.path)}: {r.key} ({r.example.source})")
            if not r.ok:
                lines.print(f"     text:   {escape(r.example.text[:300])}")
                lines.print(f"     reason: {escape(r.detail)}")
    failed = sum(not r.ok for r in results)
    lines.print(f"{len(results)} examples in {len(library.signatures)} signatures: "
                  f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(EXIT_INVALID)


@app.command()
def schema(output: Annotated[Optional[Path], typer.Option(
        "-o", "--output", help="Write to this file (default: standard output).")] = None) -> None:
    """The JSON Schema of a signature file, for editors (signatures/schema.json is this)."""
    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output:
        write_atomic(output, text, "-o")
    else:
        typer.echo(text, nl=False)
