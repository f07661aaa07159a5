"""Text on the terminal: what the command line, batch and watch print about bundles."""

from __future__ import annotations

from rich.markup import escape

# C0/C1 controls (ESC, CSI 0x9b) would let bundle text drive the terminal; tab and newline stay.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0))}


def shown(value) -> str:
    """Text that comes from a bundle (names, messages), made inert for rich markup and the
    terminal: `[/x]` in a VM name would otherwise stop the run with a MarkupError."""
    return escape(str(value).translate(_CONTROLS))
