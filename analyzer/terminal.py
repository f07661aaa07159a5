"""Text on the terminal: what the command line, batch and watch print about bundles.

Text that comes from the user or a bundle (names, paths, zones, messages) is never read as rich
markup: `shown` escapes it for a string that holds markup of ours, `say` and `error` print it as
plain text. Control characters are made visible, so that bundle text cannot drive the terminal.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

# C0/C1 controls (ESC, CSI 0x9b) would let bundle text drive the terminal; tab and newline stay.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0))}
WIDEST_TABLE = 1000  # columns, for a table printed whole into a pipe


def inert(value) -> str:
    """The text with its control characters made visible."""
    return str(value).translate(_CONTROLS)


def shown(value) -> str:
    """Text that comes from a bundle (names, messages), made inert for rich markup and the
    terminal: `[/x]` in a VM name would otherwise stop the run with a MarkupError."""
    return escape(inert(value))


def one_line(text: str, limit: int = 500) -> str:
    """The text on one line (whitespace runs, newlines included, become one space), bounded."""
    return " ".join(str(text).split())[:limit] or "failed without a message"


def say(console: Console, message: str, style: str | None = None) -> None:
    """One line of plain text (no markup read in it), however long."""
    console.print(Text(inert(message), style=style or ""), highlight=False, soft_wrap=True)


def labelled(console: Console, label: str, style: str, message: str) -> None:
    """One line: `label` in `style`, then the message as plain text."""
    console.print(Text.assemble((label, style), " ", inert(one_line(message, 2000))),
                  highlight=False, soft_wrap=True)


def error(console: Console, label: str, message: str) -> None:
    """The one way a command reports a problem: `label:` in red, then the message as plain text,
    on one line."""
    labelled(console, f"{label}:", "red", message)


def print_table(console: Console, table: Table) -> None:
    """A table, whole: into a pipe or a CI log (no terminal, whose width would cut the cells)
    at the width it needs, one line per row."""
    if console.is_terminal:
        console.print(table)
        return
    needed = Measurement.get(console, console.options.update(width=WIDEST_TABLE), table).maximum
    width = console.width
    console.width = max(width, min(needed, WIDEST_TABLE))
    try:
        console.print(table)
    finally:
        console.width = width
