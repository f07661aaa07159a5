"""Secrets out of every text a person or a tool will see.

    https://migratelsa1.blob.core.windows.net/c/x?sv=2021&sig=AbC%2Bz&se=2024  -> ...&sig=<redacted>&se=2024
    Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=Zm9v              -> SharedAccessKey=<redacted>
    {"password": "hunter2"}                                                    -> {"password": <redacted>}
    Authorization: Bearer eyJ0eXAi...                                          -> Bearer <redacted>

Every rule runs in polars' Rust regex engine only, for single strings (`redact`), whole JSON
documents (`redact_doc`, in batches), whole columns (`redact_frame`) and the text columns a
document is built from (`redact_series`, `redact_columns`: the per-VM tables of a large bundle are
redacted as columns before they become the document's strings). One engine means the rules
cannot drift apart, and it is linear-time: Python's backtracking `re` took seconds on one 64 KB
line of `a.a.a.…` with the URL-credentials rule.
"""

from __future__ import annotations

from collections.abc import Iterator

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


# Literals (ASCII, any case) at least one of which every rule's match holds: a key name, `bearer`,
# `basic`, `sharedkey`, `eyJ`, `://`, `-----BEGIN `. A base64 key needs 40 key characters then `=`.
# Text without any of them cannot change, so only the rest runs the rules (the bulk of a document
# is ids, names and numbers). A text with a non-ASCII character always runs them: `(?i)` folds
# Unicode (`ſ` matches `s`), which an ASCII prefilter cannot see.
_MUST_HOLD_ONE = (*(word.removesuffix("s?") for word in _SECRET_KEYS.split("|")),
                  "bearer", "basic", "sharedkey", "eyj", "://", "-----begin ")
_BASE64_KEY = r"[A-Za-z0-9+/]{40}="


def _may_hold_secret(expr: pl.Expr) -> pl.Expr:
    return (expr.str.contains_any(list(_MUST_HOLD_ONE), ascii_case_insensitive=True)
            | expr.str.contains(_BASE64_KEY)
            | (expr.str.len_bytes() != expr.str.len_chars()))


_BATCH = 1 << 16  # texts per polars pass: a large document's ~1 M strings are not copied at once


def _changed(texts: list) -> tuple[list[int], list[str]]:
    """Positions of the texts that redaction changes, and their redacted text."""
    positions: list[int] = []
    cleaned: list[str] = []
    for start in range(0, len(texts), _BATCH):
        frame = (pl.DataFrame({"t": pl.Series(texts[start:start + _BATCH], dtype=pl.Utf8)})
                 .with_row_index("i", offset=start))
        candidates = frame.filter(_may_hold_secret(pl.col("t")))
        changed = (candidates.with_columns(redact_expr(pl.col("t")).alias("r"))
                   .filter(pl.col("r") != pl.col("t")))
        positions += changed["i"].to_list()
        cleaned += changed["r"].to_list()
    return positions, cleaned


def redact_series(column: pl.Series) -> pl.Series:
    """A text column redacted: the rules run once per distinct value that may hold a secret, and
    the changed values are replaced in place (a column of a few distinct methods or initiators
    costs as little as its distinct values)."""
    if isinstance(column.dtype, (pl.Categorical, pl.Enum)):
        column = column.cast(pl.Utf8)
    if column.dtype != pl.Utf8 or len(column) == 0:
        return column
    distinct = pl.DataFrame({"t": column.drop_nulls().unique()})
    changed = (distinct.filter(_may_hold_secret(pl.col("t")))
               .with_columns(redact_expr(pl.col("t")).alias("r"))
               .filter(pl.col("r") != pl.col("t")))
    if changed.height == 0:
        return column
    return column.replace(changed["t"], changed["r"])


def redact_columns(frame: pl.DataFrame, columns, enabled: bool = True) -> pl.DataFrame:
    """`frame` with the text `columns` redacted (redact_series); the others as they are."""
    if not enabled:
        return frame
    return frame.with_columns(redact_series(frame[c]) for c in columns)


def redact_texts(texts: list[str | None]) -> list[str | None]:
    """Many strings at once (one polars pass per rule, over those that may hold a secret)."""
    out = list(texts)
    if out:
        for i, text in zip(*_changed(out)):
            out[i] = text
    return out


def redact(text: str | None) -> str | None:
    if not text:
        return text
    return redact_texts([text])[0]


def redact_doc(value, enabled: bool = True):
    """Every string anywhere inside a JSON-like value (dict keys included), redacted.

    The input is never changed: a container that holds a changed string (or a dict subclass) is
    rebuilt, as a plain dict, a list or its own sequence type; any other is the input's own. The
    strings are read in batches of _BATCH distinct ones, as the walk meets them: a large
    document's million strings are never gathered at once.
    """
    if not enabled:
        return value
    if isinstance(value, str):
        return redact_texts([value])[0]
    new: dict[str, str] = {}
    batch: dict[str, None] = {}

    def flush() -> None:
        texts = list(batch)
        batch.clear()
        for i, text in zip(*_changed(texts)):
            new[texts[i]] = text

    plain = True
    for text in _strings(value):
        if text is None:  # a dict subclass: rebuilt as a plain dict
            plain = False
        elif text not in batch:
            batch[text] = None
            if len(batch) >= _BATCH:
                flush()
    flush()
    if not new and plain:
        return value
    return _rebuild(value, new)


def _strings(value) -> Iterator[str | None]:
    """The strings inside `value`, dict keys included; None for each dict that is not a plain dict."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if type(item) is not dict:
                yield None
            yield from (key for key in item if isinstance(key, str))
            inner = item.values()
        elif isinstance(item, (list, tuple)):
            inner = item
        else:
            continue
        for x in inner:
            if isinstance(x, str):
                yield x
            elif isinstance(x, (dict, list, tuple)):
                stack.append(x)


def _rebuild(value, new: dict[str, str]):
    """`value` with the strings in `new` replaced; the same object where nothing changes."""
    if isinstance(value, dict):
        changed = _changes(value.items(), new)
        if not changed and type(value) is dict and new.keys().isdisjoint(value):
            return value
        out = {}
        for key, inner in value.items():  # two keys redacted alike: the first place, the last value
            out[new.get(key, key) if isinstance(key, str) else key] = changed.get(key, inner)
        return out
    if isinstance(value, (list, tuple)):
        changed = _changes(enumerate(value), new)
        if not changed:
            return value
        items = list(value)
        for i, inner in changed.items():
            items[i] = inner
        return items if type(value) is list else type(value)(items)
    return value


def _changes(pairs, new: dict[str, str]) -> dict:
    """{key: new value} for the (key, value) pairs of a container whose value changes."""
    changed = {}
    for key, inner in pairs:
        if isinstance(inner, str):
            if inner in new:
                changed[key] = new[inner]
        elif isinstance(inner, (dict, list, tuple)):
            done = _rebuild(inner, new)
            if done is not inner:
                changed[key] = done
    return changed


def _redact_column(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr | None:
    """The column with its text redacted, down into lists and structs; None when it holds none.
    A categorical column comes back as text."""
    if dtype == pl.Utf8:
        return redact_expr(expr)
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        return redact_expr(expr.cast(pl.Utf8))
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

