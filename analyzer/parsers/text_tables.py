"""Tables people paste as text, cut into columns: PowerShell `Format-Table` and `Format-List`
output, and Markdown tables. Shape readers only; what a column means is the caller's business.

    Appliance     Server          State                         Progress TimeElapsed
    ---------     ------          -----                         -------- -----------
    nosbm-test-ds el41-r5w12r1-3  InitialReplication InProgress 48 %     3 hr 48 min

(Format-Table: each run of dashes spans a column, up to the next run; values may hold spaces)

    ErrorCode         : 1011
    ErrorMessage      : The upload of data for disk ...
                        ... continued at the value's column

(Format-List: `Name : value`, names without spaces, colons in one column, records apart by blank
lines)

    | **Error** | **Cause** | **Action** |
    |--|--|--|
    | **566**:NoDiskSnapshotsFound | The operation failed ...<br/>- ... | - If ... |

(Markdown: cells between pipes, under a `|--|--|` line)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import polars as pl

MAX_TABLES = 1000  # tables cut per text; more are left as plain lines (bounds hostile input)

_DASHES = r"^ *-{2,}(?: +-{2,})* *$"
_LIST_PROPERTY = r"^(?P<name>[A-Za-z][\w.]*) +: ?(?P<value>.*)$"
_MD_SEPARATOR = r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)+\|?\s*$"


@dataclass(eq=False)  # compared by identity: a frame has no truth value
class Table:
    names: list[str]  # column names as written (Markdown emphasis removed)
    rows: pl.DataFrame  # line, then one text column per name ("c0", "c1", ...), null when empty
    header_line: int
    lines: list[int] = field(default_factory=list)  # every line it covers: header, rule, rows


def format_tables(lines: pl.DataFrame) -> list[Table]:
    """PowerShell Format-Table blocks: a header line, a line of dash runs under it, the rows
    down to the next blank line."""
    text = pl.col("text")
    marked = lines.with_columns(seg=(text.str.strip_chars() == "").cum_sum(),
                                header=text.shift(1), header_line=pl.col("line").shift(1))
    rules = marked.filter(text.str.contains(_DASHES) & pl.col("header").is_not_null()
                          & (pl.col("header").str.strip_chars() != "")).head(MAX_TABLES)
    if rules.height == 0:
        return []
    body = (marked.join(rules.select("seg", rule="line"), on="seg")
            .filter(pl.col("line") > pl.col("rule")).select("rule", "line", "text"))
    found = []
    for rule_line, rule, header, header_line in rules.select(
            "line", "text", "header", "header_line").iter_rows():
        spans = [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]
        starts = [start for start, _ in spans]
        ends = [*starts[1:], None]
        names = [header[start:end].strip() for start, end in zip(starts, ends)]
        rows = body.filter(pl.col("rule") == rule_line)
        cells = [_cut(pl.col("text"), start, end).alias(f"c{i}")
                 for i, (start, end) in enumerate(zip(starts, ends))]
        rows = rows.select("line", *cells)
        found.append(Table(names, rows, header_line,
                           [header_line, rule_line, *rows["line"].to_list()]))
    return found


def _cut(text: pl.Expr, start: int, end: int | None) -> pl.Expr:
    piece = text.str.slice(start, None if end is None else end - start).str.strip_chars()
    return pl.when(piece != "").then(piece)


def format_lists(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """PowerShell Format-List records: one row per property (record, line, name, value), and
    the lines each record covers (record, line). A
    record is a blank-separated run of at least two `Name : value` lines whose colons stand in
    one column, any other line in it indented (a wrapped value, joined with "\\n")."""
    text = pl.col("text")
    found = lines.with_columns(seg=(text.str.strip_chars() == "").cum_sum(),
                               p=text.str.extract_groups(_LIST_PROPERTY))
    found = found.with_columns(name=pl.col("p").struct.field("name"),
                               value=pl.col("p").struct.field("value").str.strip_chars(),
                               colon=text.str.find(":", literal=True)).drop("p")
    found = found.filter(text.str.strip_chars() != "")
    segments = found.group_by("seg").agg(
        props=pl.col("name").is_not_null().sum(),
        columns=pl.col("colon").filter(pl.col("name").is_not_null()).n_unique(),
        loose=(pl.col("name").is_null() & ~text.str.contains(r"^\s")).sum(),
    ).filter((pl.col("props") >= 2) & (pl.col("columns") == 1) & (pl.col("loose") == 0))
    found = found.join(segments.select("seg"), on="seg", how="semi").sort("line")
    found = found.with_columns(owner=pl.when(pl.col("name").is_not_null()).then("line")
                               .forward_fill().over("seg"))
    wrapped = (found.filter(pl.col("name").is_null() & pl.col("owner").is_not_null())
               .group_by("owner").agg(more=text.str.strip_chars().str.join("\n")))
    props = (found.filter(pl.col("name").is_not_null())
             .join(wrapped, left_on="line", right_on="owner", how="left", maintain_order="left"))
    value = pl.col("value")
    more = pl.col("more")
    value = (pl.when(more.is_null()).then(value)
             .when(value == "").then(more)
             .otherwise(pl.concat_str(value, pl.lit("\n"), more)))
    return (props.select(record="seg", line="line", name="name",
                         value=pl.when(value != "").then(value)),
            found.select(record="seg", line="line"))


def markdown_tables(lines: pl.DataFrame) -> list[Table]:
    """Markdown tables: the header row above a `|--|--|` line, the `|` rows below it."""
    text = pl.col("text")
    piped = text.str.contains("|", literal=True)
    marked = lines.with_columns(run=(~piped).cum_sum(), header=text.shift(1),
                                header_line=pl.col("line").shift(1))
    rules = marked.filter(text.str.contains(_MD_SEPARATOR) & pl.col("header").is_not_null()
                          & pl.col("header").str.contains("|", literal=True)).head(MAX_TABLES)
    if rules.height == 0:
        return []
    body = (marked.filter(piped).join(rules.select("run", rule="line"), on="run")
            .filter(pl.col("line") > pl.col("rule")).select("rule", "line", "text"))
    found = []
    for rule_line, header, header_line in rules.select("line", "header", "header_line").iter_rows():
        names = _cells_of(header)
        rows = body.filter(pl.col("rule") == rule_line)
        cells = (rows.select("line", cells=_cells(pl.col("text"))))
        rows = cells.select("line", *[
            pl.col("cells").list.get(i, null_on_oob=True).alias(f"c{i}") for i in range(len(names))])
        rows = rows.with_columns(pl.when(pl.col(f"c{i}") != "").then(pl.col(f"c{i}")).alias(f"c{i}")
                                 for i in range(len(names)))
        found.append(Table(names, rows, header_line,
                           [header_line, rule_line, *rows["line"].to_list()]))
    return found


def headerless_rows(lines: pl.DataFrame, first_cell: str, names: list[str],
                    covered: set[int]) -> list[Table]:
    """Markdown rows pasted without their header and rule: each run of `|` rows whose first cell
    matches `first_cell` (a regex), outside the lines already `covered`, read with `names`."""
    text = pl.col("text")
    rows = lines.filter(text.str.contains(first_cell) & ~pl.col("line").is_in(sorted(covered)))
    if rows.height == 0:
        return []
    rows = rows.with_columns(run=(pl.col("line").diff().fill_null(1) != 1).cum_sum())
    found = []
    for (_,), run in rows.group_by("run", maintain_order=True):
        cells = run.select("line", cells=_cells(text))
        table = cells.select("line", *[pl.col("cells").list.get(i, null_on_oob=True).alias(f"c{i}")
                                       for i in range(len(names))])
        table = table.with_columns(pl.when(pl.col(f"c{i}") != "").then(pl.col(f"c{i}")).alias(f"c{i}")
                                   for i in range(len(names)))
        lines_of = table["line"].to_list()
        found.append(Table(list(names), table, lines_of[0], lines_of))
    return found


def _cells_of(row: str) -> list[str]:
    inner = row.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [re.sub(r"[*_`]", "", cell).strip() for cell in inner.split("|")]


def _cells(text: pl.Expr) -> pl.Expr:
    """A Markdown row's cells: emphasis marks off, `<br/>` as a line break, trimmed."""
    inner = text.str.strip_chars().str.strip_prefix("|").str.strip_suffix("|")
    return inner.str.split("|").list.eval(
        pl.element().str.replace_all(r"(?i)<br\s*/?>", "\n").str.replace_all(r"\*\*|__", "")
        .str.strip_chars())
