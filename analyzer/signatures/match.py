"""Apply every signature of a source to its table in one columnar pass.

1. One prefilter over the whole table: per column, a single Aho-Corasick `contains_any` over the
   literals of all matchers reading that column (plus the exact `where` values of matchers with
   no literal). This is the only work proportional to the table.
2. Every matcher's full condition (where, contains, exclude, literal, regex) in one `select` over
   the candidates only; `extract_groups` for captures only where a matcher hit.
3. One row per (table row, signature), in table order: tables.MATCHES.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import cache, reduce
from operator import or_

import polars as pl
import regex

from analyzer import tables
from analyzer.identity import clean_name
from analyzer.signatures.model import ANY, Example, Library, Matcher, Signature

CAPTURE = pl.Struct({"name": pl.Utf8, "value": pl.Utf8})
# Where vm / vm_id / host come from when the regex captures none.
ROW_IDENTITY = {
    "gateway_log": {"vm": "vm", "vm_id": "vm_id", "host": "host", "vcenter": "vcenter"},
    "portal_events": {"vm": "machine"},
    "vcenter_tasks": {"vm": "vm_name", "vm_id": "vm_id", "vcenter": "vcenter"},
    "vcenter_log": {"host": "host", "vcenter": "vcenter"},  # an ESXi log's host (vm-support archive)
    "vcenter_events": {"vcenter": "vcenter"},
    "text_log": {"vm": "vm", "host": "host"},
}
TS_COLUMN = {"vcenter_tasks": "start"}


def full_regex(pattern: str, ignore_case: bool) -> str:
    return f"(?i){pattern}" if ignore_case else pattern


@cache
def group_names(pattern: str, ignore_case: bool = False) -> tuple[str, ...]:
    """Named groups of a valid pattern, as polars' engine sees them."""
    fields = pl.Series([""], dtype=pl.Utf8).str.extract_groups(full_regex(pattern, ignore_case))
    return tuple(f for f in fields.struct.fields if not f.isdigit())


def _text(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Utf8)


def _any_substring(column: str, needles: tuple[str, ...], ignore_case: bool) -> pl.Expr:
    return _text(column).str.contains_any(list(needles), ascii_case_insensitive=ignore_case)


def _condition(m: Matcher) -> pl.Expr:
    """The whole matcher on any row; null (missing column value) counts as no match."""
    conds = [_text(col).is_in(list(values)) for col, values in m.where]
    conds += [_any_substring(col, subs, m.ignore_case) for col, subs in m.contains]
    conds += [~_any_substring(col, subs, m.ignore_case).fill_null(False) for col, subs in m.exclude]
    if m.literal:
        conds.append(_any_substring(m.column, m.literal, m.ignore_case))
    if m.regex:
        conds.append(_text(m.column).str.contains(full_regex(m.regex, m.ignore_case)))
    return pl.all_horizontal(conds).fill_null(False)


def _prefilter(matchers: list[Matcher]) -> pl.Expr:
    """A cheap superset of the rows any matcher accepts.

    One Aho-Corasick pass per column over the literals of all its matchers, case-insensitive as
    soon as one matcher needs that: a superset costs nothing, candidates are re-checked exactly.
    """
    literals: dict[str, set[str]] = {}
    any_case: set[str] = set()
    exprs = []
    for m in matchers:
        if m.literal:
            literals.setdefault(m.column, set()).update(m.literal)
            if m.ignore_case:
                any_case.add(m.column)
        else:  # where-only (cheap) or regex-only (lint warns): its own condition
            exprs.append(_condition(m))
    exprs += [_any_substring(col, tuple(sorted(lits)), col in any_case).fill_null(False)
              for col, lits in sorted(literals.items())]
    return reduce(or_, exprs)


def _captures(m: Matcher) -> tuple[pl.Expr, tuple[str, ...]]:
    names = group_names(m.regex, m.ignore_case) if m.regex else ()
    if not names:
        return pl.lit([], dtype=pl.List(CAPTURE)), names
    pairs = [pl.struct(pl.lit(n).alias("name"), pl.col("_groups").struct.field(n).alias("value"))
             for n in names]
    keep = pl.element().struct.field("value").is_not_null()
    return pl.concat_list(pairs).list.eval(pl.element().filter(keep)), names


def _matches_of(sig: Signature, m: Matcher, rows: pl.DataFrame, source: str) -> pl.DataFrame:
    """The match rows of one matcher, given the table rows it accepts."""
    captures, names = _captures(m)
    if names:
        rows = rows.with_columns(
            _text(m.column).str.extract_groups(full_regex(m.regex, m.ignore_case)).alias("_groups"))
    ids = ROW_IDENTITY[source]

    def identity(field: str) -> pl.Expr:
        sources = ([pl.col("_groups").struct.field(field)] if field in names else []) + \
            ([pl.col(ids[field]).cast(pl.Utf8)] if field in ids else [])
        if field == "vm":  # a VM named in quotes or brackets is that VM; a placeholder names none
            sources = [clean_name(source) for source in sources]
        return pl.coalesce(sources) if sources else pl.lit(None, dtype=pl.Utf8)

    return rows.select(
        "_row", "member", "line",
        pl.lit(sig.id).alias("signature"), pl.lit(sig.kind).alias("kind"),
        pl.lit(source).alias("source"), pl.col(TS_COLUMN.get(source, "ts")).alias("ts"),
        identity("vm").alias("vm"), identity("vm_id").alias("vm_id"), identity("host").alias("host"),
        identity("vcenter").alias("vcenter"),
        _text(m.column).alias("text"), captures.alias("captures"),
    )


def match(library: Library, source: str, frame: pl.DataFrame) -> pl.DataFrame:
    """All matches of the library's signatures over one source table (tables.MATCHES)."""
    pairs = [(sig, m) for sig in library.signatures.values() for m in sig.matchers
             if m.source == source]
    if not pairs or frame.height == 0:
        return tables.empty("matches")
    frame = tables.conform(source, frame).with_row_index("_row")
    candidates = frame.filter(_prefilter([m for _, m in pairs]))
    if candidates.height == 0:
        return tables.empty("matches")
    # Every matcher's full condition in one pass over the candidates; extract only where it hit.
    hits = candidates.select(_condition(m).alias(str(n)) for n, (_, m) in enumerate(pairs))
    found = [_matches_of(sig, m, candidates.filter(hits[str(n)]), source)
             for n, (sig, m) in enumerate(pairs) if hits[str(n)].any()]
    if not found:
        return tables.empty("matches")
    # A row taken by several matchers of one signature keeps the match with the most captures.
    out = (pl.concat(found, how="vertical_relaxed")
           .sort(["_row", "signature", pl.col("captures").list.len()], descending=[False, False, True],
                 maintain_order=True)
           .unique(["_row", "signature"], keep="first", maintain_order=True))
    return tables.conform("matches", out)


# --- examples ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExampleResult:
    signature: str
    path: str  # the signature's file
    key: str  # "examples[2]" / "counterexamples[1]"
    example: Example
    ok: bool
    detail: str = ""  # why it failed: which condition, how far the regex got
    vm: str | None = None  # the `vm` the regex captured, as captured (lint checks it names a VM)

    def __str__(self) -> str:
        state = "ok" if self.ok else "FAIL"
        return f"{state} {self.path}: {self.key}" + (f"\n    {self.detail}" if self.detail else "")


def example_keys(sig: Signature) -> list[tuple[str, Example]]:
    """Each example with its position in the file: examples[1], ..., counterexamples[1], ..."""
    out = []
    for section, expect in (("examples", True), ("counterexamples", False)):
        group = [ex for ex in sig.examples if ex.matches is expect]
        out += [(f"{section}[{n}]", ex) for n, ex in enumerate(group, 1)]
    return out


_EXAMPLE_TS = datetime(2024, 5, 14, tzinfo=timezone.utc)


def _example_row(sig: Signature, ex: Example, line: int) -> dict:
    """A table row holding the example: its text in every column a matcher of its source reads,
    unless `columns` gives that column a value of its own."""
    row = {"member": sig.id, "line": line, TS_COLUMN.get(ex.source, "ts"): _EXAMPLE_TS}
    row.update({m.column: ex.text for m in sig.matchers if m.source == ex.source})
    row.update(dict(ex.columns))
    return row


def _concrete(sig: Signature, ex: Example) -> list[Example]:
    """The example in each source it is tried in: an `any` example in every source the
    signature's `source = "any"` blocks read."""
    if ex.source != ANY:
        return [ex] if any(m.source == ex.source for m in sig.matchers) else []
    return [replace(ex, source=s) for s in sorted({m.source for m in sig.matchers if m.any_source})]


def run_examples(library: Library, only: set[str] | None = None) -> list[ExampleResult]:
    """Run every example and counterexample through `match`, one frame per source. An `any`
    example passes when it passes in every source it is tried in."""
    sigs = [s for s in library.signatures.values() if only is None or s.id in only]
    cases = [(sig, key, ex, tried) for sig in sigs for key, ex in example_keys(sig)
             for tried in _concrete(sig, ex)]
    matched: dict[int, pl.DataFrame] = {}
    for source in sorted({tried.source for *_, tried in cases}):
        rows = [_example_row(sig, tried, n) for n, (sig, _, _, tried) in enumerate(cases)
                if tried.source == source]
        frame = pl.DataFrame(rows, infer_schema_length=None)
        found = match(Library({s.id: s for s in sigs}), source, frame)
        for (line,), group in found.group_by("line"):
            matched[line] = group
    results: dict[tuple[str, str], ExampleResult] = {}
    for n, (sig, key, ex, tried) in enumerate(cases):
        got = _judge(sig, key, tried, matched.get(n))
        if ex.source == ANY:
            got = replace(got, example=ex, detail=got.detail and f"in {tried.source}: {got.detail}")
        kept = results.setdefault((sig.id, key), got)
        if kept.ok and not got.ok:
            results[(sig.id, key)] = got
    return list(results.values())


def _judge(sig: Signature, key: str, ex: Example, found: pl.DataFrame | None) -> ExampleResult:
    own = found.filter(pl.col("signature") == sig.id) if found is not None else None
    hit = own is not None and own.height > 0
    if not ex.matches:
        detail = "" if not hit else f"matched, but it must not (text: {own['text'][0]!r:.200})"
        return ExampleResult(sig.id, sig.path, key, ex, not hit, detail)
    if not hit:
        return ExampleResult(sig.id, sig.path, key, ex, False, explain_miss(sig, ex))
    got = {c["name"]: c["value"] for c in own["captures"][0]}
    wrong = [f"{name}: expected {want!r}, got {got.get(name)!r}"
             for name, want in ex.captures if got.get(name) != want]
    return ExampleResult(sig.id, sig.path, key, ex, not wrong, "; ".join(wrong), got.get("vm"))


def explain_miss(sig: Signature, ex: Example) -> str:
    """Why no matcher of the example's source took it, matcher by matcher."""
    row = _example_row(sig, ex, 0)
    reasons = []
    for m in sig.matchers:
        if m.source == ex.source:
            reasons.append(f"match[{m.block}]: {_first_failure(m, row)}")
    return "; ".join(reasons)


def _first_failure(m: Matcher, row: dict) -> str:
    def has(value, needles) -> bool:
        value = "" if value is None else str(value)
        if m.ignore_case:
            value, needles = value.lower(), [n.lower() for n in needles]
        return any(n in value for n in needles)

    for col, values in m.where:
        if str(row.get(col)) not in values:
            return f"where: {col} is {row.get(col)!r}, not one of {list(values)}"
    for col, subs in m.contains:
        if not has(row.get(col), subs):
            return f"contains: {col} holds none of {list(subs)}"
    for col, subs in m.exclude:
        if has(row.get(col), subs):
            return f"exclude: {col} holds one of {list(subs)}"
    text = str(row.get(m.column) or "")
    if m.literal and not has(text, m.literal):
        return f"literal: none of {list(m.literal)} occurs in the text"
    if m.regex:
        return regex_progress(m.regex, text, m.ignore_case)
    return "every condition holds here, yet the matcher found nothing (report this)"


def regex_progress(pattern: str, text: str, ignore_case: bool = False) -> str:
    """How far `pattern` gets into `text` before it can no longer match.

    `regex` partial matching answers "could a longer text still match?", which is monotone in
    the text's length, so the furthest point is found by bisection from each viable start.
    """
    try:
        rx = regex.compile(pattern, regex.IGNORECASE if ignore_case else 0)
    except regex.error as exc:
        return f"regex: no match (the Python regex module cannot read it to say more: {exc})"
    text = text[:4000]
    if rx.search(text):
        return "regex: matches in Python's engine but not in polars' (check escapes and flags)"
    best_start, best_end = 0, 0
    for start in range(len(text)):
        if rx.match(text, start, start + 1, partial=True) is None:
            continue
        lo, hi = start + 1, len(text)  # lo is viable; find the largest viable end
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if rx.match(text, start, mid, partial=True) is not None:
                lo = mid
            else:
                hi = mid - 1
        if lo - start > best_end - best_start:
            best_start, best_end = start, lo
    if best_end == best_start:
        return "regex: cannot even start matching anywhere in the text"
    if best_end == len(text):
        return (f"regex: {_quote(text[best_start:])} is only the beginning of a match: the regex "
                "expects more text after it")
    return (f"regex: got as far as {_quote(text[best_start:best_end])} and stopped before "
            f"{_quote(text[best_end:best_end + 40])}")


def _quote(excerpt: str) -> str:
    """The excerpt as written in the example (repr would double every backslash)."""
    return "'" + excerpt.replace("\n", "\\n") + "'"
