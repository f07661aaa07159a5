"""JSON text of a document, byte for byte what `json.dumps(..., ensure_ascii=False)` writes, fast.

The standard library's encoder is pure Python as soon as `indent` is given (seconds for a fleet's
analysis); orjson writes the same bytes for JSON's own types, except for floats in exponent form,
NaN and infinities (orjson: `1e16`, `null`; json: `1e+16`, `NaN`). `same_with_orjson` looks
for those, and for any other type, and the standard encoder is used for such a document.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import chain, compress, repeat
from math import isfinite
from operator import is_
from typing import BinaryIO

import orjson

_SCALARS = frozenset({str, int, bool, type(None)})
_CONTAINERS = frozenset({dict, list, tuple})
_ALLOWED = _SCALARS | _CONTAINERS | {float}


def same_with_orjson(doc: object) -> bool:
    """True if orjson writes `doc` as json.dumps does, or raises (a non-str key, a huge int...).

    Looks at the values one level of nesting at a time, all containers of a level together, so
    that the loops run in C: a fleet's analysis has millions of values.
    """
    level = [doc]
    while level:
        types = list(map(type, level))
        kinds = set(types)

        def of(kind: type):
            return compress(level, map(is_, types, repeat(kind)))

        if not kinds <= _ALLOWED:  # subclasses too: json and orjson differ on some of them
            return False
        if float in kinds:  # repr(float), which json writes, has no exponent in [1e-4, 1e16)
            sizes = list(map(abs, filter(None, of(float))))  # 0.0 and -0.0 are alike
            # the sum is NaN or infinite if one of them is
            if sizes and not (min(sizes) >= 1e-4 and max(sizes) < 1e16 and isfinite(sum(sizes))):
                return False
        below: list = []
        if dict in kinds:
            below += chain.from_iterable(map(dict.values, of(dict)))
        for kind in (list, tuple):
            if kind in kinds:
                below += chain.from_iterable(of(kind))
        level = below
    return True


def orjson_dumps(doc: object, *, indent: bool = False, newline: bool = False,
                 checked: bool = False) -> bytes | None:
    """What `dumps` returns, or None when orjson would write `doc` differently (or cannot).

    `checked`: the caller knows that `same_with_orjson(doc)` holds.
    """
    if not checked and not same_with_orjson(doc):
        return None
    option = (orjson.OPT_INDENT_2 if indent else 0) | (orjson.OPT_APPEND_NEWLINE if newline else 0)
    try:
        return orjson.dumps(doc, option=option)
    except orjson.JSONEncodeError:  # a non-str key, an int beyond 64 bits, a lone surrogate...
        return None


def _json_dumps(doc: object, indent: bool, newline: bool) -> bytes:
    text = json.dumps(doc, ensure_ascii=False,
                      **({"indent": 2} if indent else {"separators": (",", ":")}))
    return (text + "\n" if newline else text).encode("utf-8")


def dumps(doc: object, *, indent: bool = False, newline: bool = False) -> bytes:
    """UTF-8 of `json.dumps(doc, ensure_ascii=False)` (+ "\\n"): indented by 2, or compact."""
    data = orjson_dumps(doc, indent=indent, newline=newline)
    if data is None:  # json writes it, or raises its own error
        data = _json_dumps(doc, indent, newline)
    return data


class _Differs(Exception):
    pass


def _pieces(value: object, indent: bool, depth: int = 0) -> Iterator[bytes]:
    """orjson's text of `value` in pieces: its first two levels of containers by hand."""
    kind = value.__class__
    if depth == 2 or kind not in _CONTAINERS or not value:
        data = orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else 0)
        # JSON text has no raw newline in strings: each one starts a line to indent further
        yield data.replace(b"\n", b"\n" + b"  " * depth) if indent and depth else data
        return
    pad = b"\n" + b"  " * (depth + 1) if indent else b""
    yield b"{" if kind is dict else b"["
    items = value.items() if kind is dict else zip(repeat(None), value)
    for n, (key, item) in enumerate(items):
        yield b"," + pad if n else pad
        if kind is dict:
            if key.__class__ is not str:  # json writes 1 as "1", orjson refuses
                raise _Differs
            yield orjson.dumps(key) + (b": " if indent else b":")
        yield from _pieces(item, indent, depth + 1)
    yield (b"\n" + b"  " * depth if indent else b"") + (b"}" if kind is dict else b"]")


def write(doc: object, out: BinaryIO, *, indent: bool = False, newline: bool = False) -> None:
    """Writes `dumps(doc, ...)` to `out`, in pieces (not one copy of the whole text in memory).

    A piece orjson refuses makes the whole text json's, written again from the start; so an
    unseekable `out` (a pipe) gets the text in one piece.
    """
    if not out.seekable():
        out.write(dumps(doc, indent=indent, newline=newline))
        return
    start = out.tell()
    if same_with_orjson(doc):
        try:
            for piece in _pieces(doc, indent):
                out.write(piece)
            if newline:
                out.write(b"\n")
            return
        except (_Differs, orjson.JSONEncodeError):  # a non-str key, an int beyond 64 bits...
            out.seek(start)
            out.truncate()
    out.write(_json_dumps(doc, indent, newline))
