"""Plumbing shared by the HTML pages: one Jinja environment, inlined assets, safe embedded JSON.

Pages are single files opened from mail attachments and tickets, so nothing is fetched: CSS and
JS are read from `static/` and inlined, and the CSP forbids every network request.
"""

from __future__ import annotations

import base64
import gzip
import json
from functools import cache
from pathlib import Path

from isal import igzip
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from analyzer.i18n import Messages
from analyzer.report.jsontext import orjson_dumps

HERE = Path(__file__).parent

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:; base-uri 'none'; form-action 'none'")

# Inside <script type="application/json"> only "</script" or "<!--" could end the element early;
# escaping every <, > and & (and the JS line separators) keeps any log text inert.
_SCRIPT_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                   ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))
_SCRIPT_ESCAPES_UTF8 = tuple((c.encode(), e.encode()) for c, e in _SCRIPT_ESCAPES)


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["CSP"] = CSP
    env.globals["static"] = static
    env.filters["code_spans"] = code_spans
    return env


def page_words(m: Messages) -> dict:
    """What a template needs to speak `m`'s language: `t("key", name=value)` (escaped; a value
    that is markup stays markup) and `label("health", "critical")`."""
    return {"lang": m.lang, "t": m.html, "label": m.label}


def code_spans(value: object) -> Markup:
    """Escaped text with `backtick` spans as <code>, as remediation steps quote commands."""
    parts = str(value).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: show the text as it is
        return escape(str(value))
    return Markup("").join(escape(p) if n % 2 == 0 else Markup("<code>%s</code>") % p
                           for n, p in enumerate(parts))


@cache
def static(name: str) -> str:
    """Text of analyzer/report/static/<name>, for inlining into a page (mark it safe there)."""
    return (HERE / "static" / name).read_text(encoding="utf-8")


def script_json(data: object, checked: bool = False) -> str:
    """JSON that can sit inside <script type="application/json"> whatever strings it holds.

    `checked`: the caller knows that `jsontext.same_with_orjson(data)` holds.
    """
    fast = orjson_dumps(data, checked=checked)
    if fast is not None:  # escaped while UTF-8: the bytes take less memory than the text
        return _escape(fast, _SCRIPT_ESCAPES_UTF8).decode("utf-8")
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _escape(text, _SCRIPT_ESCAPES)


def packed_json(data: object, checked: bool = False) -> str:
    """The data as gzip-compressed JSON in base64, for a page to inflate with the browser's
    DecompressionStream: a fleet's timeline is mostly repeated numbers and ids, and compresses
    about fourfold. Base64 holds no character that could end its <script> element. The same data
    gives the same text (no time in the gzip header). ISA-L's gzip at its level 3: a fleet's 11 MB
    took 0.07 s against zlib's 0.45 s at level 6, for 5 % more bytes (BENCHMARKS.md)."""
    raw = orjson_dumps(data, checked=checked)
    if raw is None:
        raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return base64.b64encode(igzip.compress(raw, compresslevel=3, mtime=0)).decode("ascii")


def unpacked_json(text: str) -> object:
    """The data of `packed_json` (for tools and tests that read a report's data)."""
    return json.loads(gzip.decompress(base64.b64decode(text)))


def _escape(text, escapes):
    for char, escaped in escapes:  # str.translate goes char by char; replace is memchr
        if char in text:
            text = text.replace(char, escaped)
    return text
