"""The self-contained HTML report of one bundle: `render(doc)` returns the whole page.

`doc` is the analysis document (OUTPUT.md plus extensions), already redacted by the pipeline.
The page inlines its CSS, JS and SVG, loads nothing from the network (CSP), and escapes every
string taken from the document: Jinja autoescape for HTML, `page.script_json` for the data the
timeline script draws.
"""

from __future__ import annotations

import gc

from analyzer.report import view
from analyzer.report.page import environment, script_json

__all__ = ["render"]


def render(doc: dict) -> str:
    # Building the page makes millions of small lists; the cyclic GC would walk the whole
    # document again and again meanwhile (a third of the time on a fleet) and frees nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        model = view.build(doc)
        data = script_json(model["timeline"], checked=model["timeline_checked"])
        model["timeline"] = {"empty": model["timeline"]["empty"]}  # the rest is in `data` now
        template = environment().get_template("report.html.j2")
        return template.render(**model, data=data)
    finally:
        if enabled:
            gc.enable()
