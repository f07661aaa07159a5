"""Helpers every parser shares (analyzer/parsers/lines.py); the line splitters are tested in
test_keep.py and test_plain_bytes.py."""

from __future__ import annotations

from analyzer.parsers.lines import csv_delimiter


def test_csv_delimiter_takes_the_most_frequent_choice_and_the_first_on_a_tie():
    assert csv_delimiter("Task Name,Target,Status") == ","
    assert csv_delimiter("Task Name;Target;Status") == ";"
    assert csv_delimiter("Time\tSeverity\tEvent") == "\t"
    assert csv_delimiter("Time") == ","
    assert csv_delimiter("a;b\tc\td", (",", "\t")) == "\t"
    assert csv_delimiter("a;b;c", (",", "\t")) == ","  # the portal's exports are never ;-separated
