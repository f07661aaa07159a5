"""Helpers every parser shares (analyzer/parsers/lines.py); the line splitters are tested in
test_keep.py and test_plain_bytes.py."""

from __future__ import annotations

from datetime import datetime

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.parsers import timeparse
from analyzer.parsers.lines import csv_delimiter


def test_csv_delimiter_takes_the_most_frequent_choice_and_the_first_on_a_tie():
    assert csv_delimiter("Task Name,Target,Status") == ","
    assert csv_delimiter("Task Name;Target;Status") == ";"
    assert csv_delimiter("Time\tSeverity\tEvent") == "\t"
    assert csv_delimiter("Time") == ","
    assert csv_delimiter("a;b\tc\td", (",", "\t")) == "\t"
    assert csv_delimiter("a;b;c", (",", "\t")) == ","  # the portal's exports are never ;-separated


_STAMPS = st.one_of(
    st.builds(lambda d, digits, sep, zone: d.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
              + (f".{d.microsecond:06d}{d.microsecond % 1000:03d}"[:digits + 1] if digits else "") + zone,
              st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
              st.integers(0, 9), st.sampled_from(["T", " "]),
              st.sampled_from(["Z", "", "+09:00", "-0530", " Z", "z", "Z junk"])),
    st.text(max_size=25), st.none(), st.just("2024-02-30T00:00:00Z"), st.just("2024-05-14T24:00:00Z"))


@settings(max_examples=400)
@given(st.lists(_STAMPS, max_size=25), st.sampled_from([None, "+09:00", "Asia/Seoul"]))
def test_with_iso_reads_every_stamp_as_the_general_reader(stamps, tz):
    """timeparse.with_iso reads the usual `...Z` stamps directly and leaves the rest to iso: the
    same times and naive flags as iso alone."""
    frame = pl.DataFrame({"t": stamps}, schema={"t": pl.Utf8})
    fast = timeparse.with_iso(frame, "t", tz).select("ts", "naive")
    slow = frame.select(*(e.alias(n) for e, n in zip(timeparse.iso(pl.col("t"), tz), ("ts", "naive"))))
    assert fast.equals(slow)
