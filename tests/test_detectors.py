"""The detector registry: what the signature library may name, and what each detector reads.

The detectors' behaviour on hand-built bundles is tested through the verdicts they lead to
(tests/test_verdicts.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl

from analyzer import detectors
from analyzer import tables
from analyzer.detectors import DETECTORS
from analyzer.parsers.timeparse import to_iso, to_iso_expr
from analyzer.signatures import load


def test_every_detector_the_signature_library_names_is_built_in():
    library = load.load_library()
    named = {e for s in library.errors() for c in s.causes for e in c.evidence if e.startswith("detect.")}
    assert named and named <= set(DETECTORS)
    assert load.DETECTORS is DETECTORS  # one registry, which the loader checks evidence ids against
    assert set(detectors.FIND) == set(DETECTORS)
    assert all(find.__module__ == "analyzer.detectors" and callable(find) for find in detectors.FIND.values())


def test_every_detector_reads_named_input_tables():
    # not_evaluated and the coverage warnings are only as right as these names.
    for detector_id, detector in DETECTORS.items():
        assert detector.tables, detector_id
        assert set(detector.tables) <= set(tables.SCHEMAS), detector_id
        assert detectors.tables_of(detector_id) == detector.tables


def test_only_the_low_read_rate_finds_its_cause_by_exclusion():
    assert {d for d in DETECTORS if detectors.by_exclusion(d)} == {"detect.low_read_rate"}
    assert not detectors.by_exclusion("cache_storage_unreachable")  # an evidence signature


def test_an_unknown_detector_finds_nothing_and_reads_nothing():
    now = datetime(2025, 3, 1, tzinfo=timezone.utc)
    assert detectors.detect("detect.no_such_thing", None, None, now, now) is None
    assert detectors.tables_of("detect.no_such_thing") == ()


def test_document_times_keep_milliseconds_only_when_there_are_some():
    times = [datetime(2025, 3, 1, 4, 5, 6, tzinfo=timezone.utc), datetime(2025, 3, 1, 4, 5, 6, 7000, tzinfo=timezone.utc),
             None]
    expected = ["2025-03-01T04:05:06Z", "2025-03-01T04:05:06.007Z", None]
    assert [to_iso(t) for t in times] == expected
    frame = pl.DataFrame({"ts": times}, schema={"ts": tables.TS})
    assert frame.select(to_iso_expr("ts"))["ts"].to_list() == expected
