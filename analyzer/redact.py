"""Secrets out of every text a person or a tool will see.

    https://migratelsa1.blob.core.windows.net/c/x?sv=2021&sig=AbC%2Bz&se=2024  -> ...&sig=<redacted>&se=2024
    Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=Zm9v              -> SharedAccessKey=<redacted>
    Authorization: Bearer eyJ0eXAi...                                          -> Bearer <redacted>

The same rules run as Python `re` (short texts: JSON, terminal) and as polars expressions (whole
columns: exports). Keep both in `RULES` so they cannot drift apart.
"""

from __future__ import annotations

import re

import polars as pl

MASK = "<redacted>"

# (pattern, replacement). Patterns use only syntax that Python `re` and Rust regex share.
RULES: tuple[tuple[str, str], ...] = (
    # key=value secrets in query strings and connection strings
    (r"(?i)\b(sig|signature|sharedaccesskey|accountkey|sharedaccesssignature|password|pwd|"
     r"client_secret|clientsecret|access_token|refresh_token|secret|token)(\s*[=:]\s*)"
     r"(\"[^\"]*\"|'[^']*'|[^\s;&,\"'<>]+)",
     r"${1}${2}" + MASK),
    # Authorization headers
    (r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*", r"${1} " + MASK),
    # bare JSON Web Tokens
    (r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", MASK),
    # credentials inside URLs: scheme://user:password@host
    (r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+):[^\s@/]+@", r"${1}:" + MASK + "@"),
)

_PY_RULES = tuple((re.compile(p), r.replace("${1}", r"\g<1>").replace("${2}", r"\g<2>"))
                  for p, r in RULES)


def redact(text: str | None) -> str | None:
    if not text:
        return text
    for pattern, replacement in _PY_RULES:
        text = pattern.sub(replacement, text)
    return text


def redact_expr(expr: pl.Expr) -> pl.Expr:
    for pattern, replacement in RULES:
        expr = expr.str.replace_all(pattern, replacement)
    return expr


def redact_doc(value, enabled: bool = True):
    """Every string anywhere inside a JSON-like value, redacted (a copy)."""
    if not enabled:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_doc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_doc(v) for v in value]
    return value


def redact_frame(frame: pl.DataFrame, enabled: bool = True) -> pl.DataFrame:
    if not enabled:
        return frame
    text_cols = [c for c, t in frame.schema.items() if t == pl.Utf8]
    return frame.with_columns(redact_expr(pl.col(c)).alias(c) for c in text_cols)
