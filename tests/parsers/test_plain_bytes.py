"""Log parsers fed the member's bytes (bundle.plain_utf8) give what they give on the decoded text."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from analyzer import bundle
from analyzer.diagnostics import Diagnostics
from analyzer.parsers import gateway_log, vcenter_log
from analyzer.parsers.lines import read_lines, split_lines
from analyzer.sources import ParseContext
from tests.parsers.test_keep import GATEWAY, VPXD, _keep, _text


def _same_from_bytes(module, text: str, ctx: ParseContext) -> None:
    data = text.encode("utf-8")
    assert bundle.plain_utf8(data) is data
    decoded = bundle.decode(data, "m.log", Diagnostics())
    from_text = module.parse(decoded, "m.log", ctx)
    from_bytes = module.parse(data, "m.log", ctx)
    assert (from_bytes.records, from_bytes.unparsed, from_bytes.first, from_bytes.last) == (
        from_text.records, from_text.unparsed, from_text.first, from_text.last)
    assert from_bytes.diagnostics.items == from_text.diagnostics.items
    assert from_bytes.tables.keys() == from_text.tables.keys()
    for name, frame in from_text.tables.items():
        assert_frame_equal(from_bytes.tables[name], frame)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(GATEWAY)), max_size=60), st.sampled_from(["\n", "\r\n"]),
       st.sampled_from(["", "\n", "\r\n"]), st.booleans())
def test_gateway_from_bytes(names, newline, end, keep):
    text = _text(GATEWAY, names, newline).replace("APP01", "서버01").replace("pending=", "\rpending=") + end
    _same_from_bytes(gateway_log, text, ParseContext(keep=_keep("gateway_log") if keep else None))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(VPXD)), max_size=60), st.sampled_from(["\n", "\r\n"]),
       st.sampled_from(["", "\n"]), st.booleans())
def test_vpxd_from_bytes(names, newline, end, keep):
    text = _text(VPXD, names, newline).replace("svc", "svc-é") + end
    _same_from_bytes(vcenter_log, text, ParseContext(keep=_keep("vcenter_log") if keep else None))


@pytest.mark.parametrize("text", ["", "\n", "a", "a\n", "a\r\nb\r\n", "\n\nx", "x\n\n", "é\r\n\r\n",
                                  "a lone\rCR\n", "a\r\r\nb", "\rx\r\ny\n"])
def test_lines_from_bytes_like_from_decoded_text(text):
    data = text.encode("utf-8")
    assert bundle.plain_utf8(data) is data
    decoded = bundle.decode(data, "m.log", Diagnostics())
    assert split_lines(data).equals(split_lines(decoded))
    assert read_lines(data).equals(read_lines(decoded))


@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbfa BOM\n",
    "UTF-16 without a BOM, mostly ASCII\n".encode("utf-16-le"),
    b"\xff\xfeu\x00",
    b"a NUL\x00 here\n",
    b"a CR at the end\r",
    b"not UTF-8 \xe9t\xe9\n",
    b"cut multi-byte \xed\x95",
])
def test_what_plain_utf8_leaves_to_decode(data):
    assert bundle.plain_utf8(data) is None
