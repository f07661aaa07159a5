"""Secrets out of every text a person or a tool will see.

    https://migratelsa1.blob.core.windows.net/c/x?sv=2021&sig=AbC%2Bz&se=2024  -> ...&sig=<redacted>&se=2024
    Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=Zm9v              -> SharedAccessKey=<redacted>
    {"password": "hunter2"}                                                    -> {"password": <redacted>}
    Authorization: Bearer eyJ0eXAi...                                          -> Bearer <redacted>

Every rule runs in polars' Rust regex engine only, for single strings (`redact`), whole JSON
documents (`redact_doc`, one batch) and whole columns (`redact_frame`). One engine means the rules
cannot drift apart, and it is linear-time: Python's backtracking `re` took seconds on one 64 KB
line of `a.a.a.…` with the URL-credentials rule.
"""

from __future__ import annotations

import polars as pl

MASK = "<redacted>"

# Names whose value is a secret. A word may end in one (`authToken`, `storagePassword`).
_SECRET_KEYS = (
    r"sig|signature|sharedaccesskey|sharedaccesssignature|accountkey|primarykey|secondarykey|"
    r"password|passwd|pwd|passphrase|secret|token|apikey|api_key|credentials?"
)
# Between name and value: `=`, `:`, `%3D` (inside an encoded URL), and the closing quote of a JSON
# or Python key (`"password": "x"`); spaces but no newline around it.
_SEPARATOR = r"""\\?["']?[ \t]*(?:=|:|%3[dD])[ \t]*"""
# The value: quoted (also with escaped quotes, `\"x\"`, as in a message="..." token; a quote left
# open, as in a line cut short, runs to the end of the line), or up to a delimiter of query
# strings, connection strings and markup. A comma does not end it: passwords may hold one, and
# hiding too much is the safe side.
_VALUE = r"""\\?"[^"\n]*"?|'[^'\n]*'?|[^\s;&"'<>]+"""

# (pattern, replacement) in Rust regex syntax.
RULES: tuple[tuple[str, str], ...] = (
    # key=value secrets in query strings, connection strings, JSON and config dumps
    (rf"(?i)\b([a-z0-9_.-]*?(?:{_SECRET_KEYS}))({_SEPARATOR})({_VALUE})", "${1}${2}" + MASK),
    # Authorization headers: Bearer/Basic tokens, Storage SharedKey account:signature
    (r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*", "${1} " + MASK),
    (r"(?i)\b(sharedkey)\s+([^\s:]+):[A-Za-z0-9+/]+=*", "${1} ${2}:" + MASK),
    # bare JSON Web Tokens
    (r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", MASK),
    # credentials inside URLs: scheme://user:password@host
    (r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+):[^\s@/]+@", "${1}:" + MASK + "@"),
    # bare base64 keys: storage account keys (88 chars, `==`), Service Bus/Event Hubs keys (44, `=`)
    # (the character before is kept; the one after is not consumed, so `KEY1= KEY2=` both go)
    (r"(^|[^A-Za-z0-9+/=])[A-Za-z0-9+/]{40,}={1,2}", "${1}" + MASK),
    # PEM private keys
    (r"-----BEGIN [A-Z ]*PRIVATE KEY-----[^-]*(?:-----END [A-Z ]*PRIVATE KEY-----)?",
     "-----BEGIN PRIVATE KEY-----" + MASK),
)


def redact_expr(expr: pl.Expr) -> pl.Expr:
    for pattern, replacement in RULES:
        expr = expr.str.replace_all(pattern, replacement)
    return expr


def redact_texts(texts: list[str | None]) -> list[str | None]:
    """Many strings at once (one polars pass per rule)."""
    if not texts:
        return []
    series = pl.Series("t", texts, dtype=pl.Utf8)
    return series.to_frame().select(redact_expr(pl.col("t")))["t"].to_list()


def redact(text: str | None) -> str | None:
    if not text:
        return text
    return redact_texts([text])[0]


def redact_doc(value, enabled: bool = True):
    """Every string anywhere inside a JSON-like value (dict keys included), redacted (a copy)."""
    if not enabled:
        return value
    found: list[str] = []
    _collect(value, found)
    if not found:
        return value
    cleaned = iter(redact_texts(found))
    return _rebuild(value, cleaned)


def _collect(value, found: list[str]) -> None:
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _collect(key, found)
            _collect(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, found)


def _rebuild(value, cleaned):
    if isinstance(value, str):
        return next(cleaned)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            new_key = _rebuild(key, cleaned)
            out[new_key] = _rebuild(item, cleaned)
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(_rebuild(item, cleaned) for item in value)
    return value


def _redact_column(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr | None:
    """The column with its text redacted, down into lists and structs; None when it holds none."""
    if dtype == pl.Utf8:
        return redact_expr(expr)
    if isinstance(dtype, (pl.List, pl.Array)):
        inner = _redact_column(pl.element(), dtype.inner)
        return None if inner is None else expr.list.eval(inner) if isinstance(dtype, pl.List) \
            else expr.arr.eval(inner)
    if isinstance(dtype, pl.Struct):
        fields = [(f.name, _redact_column(expr.struct.field(f.name), f.dtype)) for f in dtype.fields]
        if all(e is None for _, e in fields):
            return None
        rebuilt = pl.struct([(e if e is not None else expr.struct.field(n)).alias(n) for n, e in fields])
        return pl.when(expr.is_not_null()).then(rebuilt)
    return None


def redact_frame(frame: pl.DataFrame, enabled: bool = True) -> pl.DataFrame:
    """Every text column (also text inside list and struct columns), redacted."""
    if not enabled:
        return frame
    exprs = [e.alias(c) for c, t in frame.schema.items()
             if (e := _redact_column(pl.col(c), t)) is not None]
    return frame.with_columns(exprs) if exprs else frame
