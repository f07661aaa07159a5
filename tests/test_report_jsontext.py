"""analyzer.report.jsontext: orjson where it writes what json.dumps writes, json elsewhere."""

from __future__ import annotations

import base64
import gzip
import io
import json
import math
import random
import struct
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.cli import _write_json
from analyzer.report import jsontext, render, view
from analyzer.report.page import script_json

ODD_STRINGS = ["", "\x00\x01\x1f\x7f", "é 한 \U0001F600", '\\ " / \b\f\n\r\t', "\u2028\u2029",
               "</script><!--"]
ODD_NUMBERS = [0.0, -0.0, 1e-4, 9.9e-5, 1e-5, 1e15, 9999999999999998.0, 1e16, 1.5e300, 5e-324,
               float("nan"), float("inf"), -float("inf"), 2**63, 2**64 - 1, 2**64, -2**63 - 1,
               True, False, None, 23991.0, 0.1]


def expected(doc, indent: bool) -> bytes:
    text = json.dumps(doc, ensure_ascii=False,
                      **({"indent": 2} if indent else {"separators": (",", ":")}))
    return (text + "\n").encode("utf-8")


def same_bytes(doc) -> None:
    for indent in (True, False):
        assert jsontext.dumps(doc, indent=indent, newline=True) == expected(doc, indent)
        assert jsontext.dumps(doc, indent=indent) == expected(doc, indent)[:-1]
        out = io.BytesIO(b"kept")
        out.seek(0, io.SEEK_END)
        jsontext.write(doc, out, indent=indent, newline=True)
        assert out.getvalue() == b"kept" + expected(doc, indent)


@pytest.mark.parametrize("value", ODD_NUMBERS + ODD_STRINGS, ids=repr)
def test_odd_values_are_written_as_json_writes_them(value):
    same_bytes(value)
    same_bytes({"a": [1, {"b": [value, value]}, (value,)], "c": {}, "d": []})


@pytest.mark.parametrize("doc", [
    {1: "int key"}, {"a": {2: "int key in a piece"}}, {"a": [{"b": {3: "deeper"}}]},
    {"a": [1, {"b": [2**64]}]}, {"a": [], "b": {}, "c": [[]], "d": [{}]}, {None: 1, True: 2}, OrderedDict(a=1), [OrderedDict(a=1.5)],
    {"k": type("S", (str,), {})("sub")}, [type("I", (int,), {})(3)], (1, [2, (3,)]),
    [[[[[[[[[[]]]]]]]]]],
], ids=repr)
def test_what_orjson_refuses_or_writes_otherwise_goes_to_json(doc):
    same_bytes(doc)


def test_deep_nesting_beyond_orjson_limit():
    doc: list = []
    node = doc
    for _ in range(400):
        node.append([])
        node = node[-1]
    same_bytes(doc)


def test_write_to_a_pipe():
    class Pipe(io.BytesIO):
        def seekable(self):
            return False

    doc = {"a": [1, {"b": 2.5}], "c": {"d": "é"}}
    out = Pipe()
    jsontext.write(doc, out, indent=True, newline=True)
    assert out.getvalue() == expected(doc, indent=True)


def test_lone_surrogate_fails_as_before():
    with pytest.raises(UnicodeEncodeError):
        jsontext.dumps({"a": "\ud800"})
    with pytest.raises(UnicodeEncodeError):
        jsontext.write({"a": ["\ud800"]}, io.BytesIO(), indent=True)


def test_floats_without_exponent_match_repr():
    rng = random.Random(7)
    floats = [rng.uniform(-1, 1) * 10 ** rng.uniform(-4, 16) for _ in range(20000)]
    floats += [struct.unpack("d", rng.getrandbits(64).to_bytes(8, "little"))[0]
               for _ in range(20000)]
    floats += [round(rng.uniform(0, 1e6), rng.randint(0, 6)) for _ in range(20000)]
    bound = 1e-4
    for _ in range(50):
        floats += [bound, -bound]
        bound = math.nextafter(bound, 1)
    same_bytes([f for f in floats if math.isfinite(f)])
    safe = [f for f in floats if 1e-4 <= abs(f) < 1e16]
    assert jsontext.same_with_orjson(safe)
    assert jsontext.orjson_dumps(safe) is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value(doc):
    same_bytes(doc)


def test_script_json_with_and_without_check_agree():
    doc = {"t": "</script><!-- & \u2028 \u2029 é", "n": [1, 2.5, -1, None, True], "e": {}}
    assert script_json(doc) == script_json(doc, checked=True)
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    assert script_json(doc) == text


def test_script_json_still_refuses_nan():
    with pytest.raises(ValueError):
        script_json({"x": float("nan")})


def odd_numbers_doc(value) -> dict:
    cycle = {"id": "A#1", "start": "2024-05-13T00:57:51.274Z", "end": "2024-05-13T07:37:43Z",
             "outcome": "succeeded", "uploaded_bytes": value, "duration_sec": value,
             "rate_mbps": value}
    return {"vms": [{"vm": "A", "consecutive_failures": value, "cycles": [cycle]}]}


@pytest.mark.parametrize("value", [1e20, 5e-7, 12.5, 7, 2**70], ids=repr)
def test_timeline_numbers_from_the_document_are_written_as_json_writes_them(value):
    model = view.build(odd_numbers_doc(value))
    assert model["timeline_checked"] == (value not in (1e20, 5e-7))  # a huge int: orjson raises
    text = json.dumps(model["timeline"], ensure_ascii=False, separators=(",", ":"))
    assert script_json(model["timeline"], checked=model["timeline_checked"]) == text
    packed = render(odd_numbers_doc(value)).split('data-encoding="gzip+base64">')[1].split("</script>")[0]
    assert gzip.decompress(base64.b64decode(packed)).decode("utf-8") == text


def test_write_json_file_and_stdout(tmp_path, capsys):
    doc = {"bundle": {"name": "é</script>", "size": 1e16}, "vms": [{"x": [1, 2.5]}]}
    _write_json(doc, str(tmp_path / "sub" / "a.json"))
    assert (tmp_path / "sub" / "a.json").read_bytes() == expected(doc, indent=True)
    _write_json(doc, "-")
    assert capsys.readouterr().out == expected(doc, indent=True).decode("utf-8")
