"""The self-contained HTML report of one bundle: `render(doc)` returns the whole page.

`doc` is the analysis document (OUTPUT.md plus extensions), already redacted by the pipeline.
The page inlines its CSS, JS and SVG, loads nothing from the network (CSP), and escapes every
string taken from the document: Jinja autoescape for HTML; the data the timeline script draws is
gzip-compressed JSON in base64 (`page.packed_json`), inflated by the page.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import polars as pl

from analyzer.report import view
from analyzer.report.page import environment, packed_json

__all__ = ["render"]


def render(doc: dict, tasks: pl.DataFrame | None = None) -> str:
    """The page; `tasks`: every VM's vCenter tasks for the timeline (pipeline.Analysis.tasks),
    else the timeline draws the tasks the document lists."""
    with _gc_paused():
        model = view.build(doc, tasks)
        data = packed_json(model["timeline"], checked=model["timeline_checked"])
        model["timeline"] = {"empty": model["timeline"]["empty"]}  # the rest is in `data` now
        template = environment().get_template("report.html.j2")
        return template.render(**model, data=data)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic GC paused while the page is built, then as it was before. Building the page
    makes millions of small lists; the GC would walk the whole document again and again meanwhile
    and free nothing: on the 1 GiB fleet's document, render takes 1.13-1.36 CPU s paused against
    1.34-1.50 running (5 runs each, alternating in one process)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
