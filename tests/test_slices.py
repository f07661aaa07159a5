"""Large log members are parsed in slices: the result must be that of one parse of the member."""

from __future__ import annotations

import re
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from analyzer import pipeline, signatures, tables
from analyzer.diagnostics import Diagnostics
from analyzer.parsers import gateway_log, vcenter_log

ROOT = Path(__file__).resolve().parents[1]
START = re.compile(rb"\n(?=\d)")


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_slices_cut_before_a_record_and_count_lines(monkeypatch, newline):
    monkeypatch.setattr(pipeline, "SLICE_BYTES", 10)
    lines = [b"1 first", b"  more", b"  more", b"2 second", b"3 third", b"  tail", b"4 last"]
    text = newline.join(lines) + newline
    pieces = list(pipeline._slices(text, START))
    assert len(pieces) > 1
    for piece, first_line in pieces:
        assert piece[:1].isdigit() and not piece.endswith(b"\r")
        assert piece.split(newline)[0] == lines[first_line - 1]
    assert newline.join(piece for piece, _ in pieces) == text


def test_small_text_and_str_are_not_sliced():
    assert list(pipeline._slices(b"1 a\n2 b\n", START)) == [(b"1 a\n2 b\n", 1)]
    assert list(pipeline._slices("1 a\n" * 10, START)) == [("1 a\n" * 10, 1)]
    assert list(pipeline._slices(b"1 a\n" * 10, None)) == [(b"1 a\n" * 10, 1)]


def test_slice_diagnostics_merge_into_the_whole_members():
    first, second = Diagnostics(), Diagnostics()
    first.add("warning", "bad-timestamps", "3 record(s) are bad (first: 'x')", "m:10")
    second.add("warning", "bad-timestamps", "4 record(s) are bad (first: 'y')", "m:900")
    first.add("warning", "naive-timestamps", "Times carry no zone.", "m", "give a zone")
    second.add("warning", "naive-timestamps", "Times carry no zone.", "m", "give a zone")
    second.add("info", "truncated-values", "1 record(s) cut", "m:950")
    second.add("info", "twice", "a", "m:1")
    second.add("info", "twice", "b", "m:2")
    merged = pipeline._merge_slice_diagnostics([first, second]).items
    assert [(d.code, d.message, d.location) for d in merged] == [
        ("bad-timestamps", "7 record(s) are bad (first: 'x')", "m:10"),
        ("naive-timestamps", "Times carry no zone.", "m"),
        ("truncated-values", "1 record(s) cut", "m:950"),
        ("twice", "a", "m:1"), ("twice", "b", "m:2"),
    ]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bundle", ["case-disk-upload-timeout.zip", "outage-appliance-down.zip",
                                    "format-win5x-storage-vmotion.zip"])
def test_sliced_ingest_gives_the_tables_of_a_whole_parse(monkeypatch, bundle, threads):
    path = ROOT / "sample_bundles" / bundle
    if not path.exists():
        pytest.skip("sample_bundles/ not generated")
    library = signatures.load_library(())

    def ingest():
        diags = Diagnostics()
        found = pipeline._ingest(path, pipeline.Options(), library, diags)
        return found, diags, {name: tables.load(name, parts) for name, parts in found.parts.items()}

    whole, whole_diags, whole_frames = ingest()
    monkeypatch.setattr(pipeline, "SLICE_BYTES", 64 << 10)
    monkeypatch.setattr(pipeline, "SLICE_THREADS", threads)
    sliced, sliced_diags, sliced_frames = ingest()
    assert sum(len(parts) for parts in sliced.parts.values()) > sum(
        len(parts) for parts in whole.parts.values())  # it did slice
    assert sliced.members == whole.members and sliced.stats == whole.stats
    assert [d.as_dict() for d in sliced_diags.sorted()] == [d.as_dict() for d in whole_diags.sorted()]
    for name, frame in whole_frames.items():
        # activity minutes of two slices are summed; task lines come slice by slice, each slice
        # its BEGIN/FINISH lines, then its progress lines
        assert_frame_equal(sliced_frames[name], frame,
                           check_row_order=name not in ("activity", "vcenter_task_lines"))


def test_both_log_parsers_can_be_sliced():
    assert gateway_log.SOURCE.record_start is not None and gateway_log.SOURCE.reads_bytes
    assert vcenter_log.SOURCE.record_start is not None and vcenter_log.SOURCE.reads_bytes


def test_read_ahead_keeps_order_reads_one_ahead_and_passes_errors_on():
    produced = []

    def members(fail: bool):
        for i in range(5):
            produced.append(i)
            yield i
        if fail:
            raise pipeline.UnusableBundle("nothing readable")

    seen = []
    for member in pipeline._read_ahead(members(fail=False)):
        time.sleep(0.02)  # the reader has time to run ahead, if it would
        assert len(produced) <= member + 2  # this one and at most the next
        seen.append(member)
    assert seen == [0, 1, 2, 3, 4]
    with pytest.raises(pipeline.UnusableBundle, match="nothing readable"):
        list(pipeline._read_ahead(members(fail=True)))


def test_read_ahead_stops_reading_when_the_caller_stops():
    produced = []

    def members():
        for i in range(100):
            produced.append(i)
            yield i

    for member in pipeline._read_ahead(members()):
        if member == 2:
            break
    time.sleep(0.1)
    assert len(produced) <= 4


def test_kept_rows_wait_compressed_until_the_ingest_ends():
    """A slice's kept rows are stored as compressed bytes, not as frames holding the slice's text."""
    path = ROOT / "sample_bundles" / "case-disk-upload-timeout.zip"
    if not path.exists():
        pytest.skip("sample_bundles/ not generated")
    found = pipeline._ingest(path, pipeline.Options(), signatures.load_library(()), Diagnostics())
    parts = found.parts["gateway_log"]
    assert parts and all(isinstance(part, bytes) for part in parts)
    frame = tables.load("gateway_log", parts)
    assert frame.height > 1000 and frame.schema == tables.empty("gateway_log").schema
    assert sum(map(len, parts)) * 4 < frame.estimated_size()


def test_task_lines_are_let_go_once_paired_unless_dumped(tmp_path):
    path = ROOT / "sample_bundles" / "snapshot-hung.zip"
    if not path.exists():
        pytest.skip("sample_bundles/ not generated")
    analysis = pipeline.analyze(path)
    assert "vcenter_task_lines" not in analysis.tables and analysis.tables["vcenter_tasks"].height
    pipeline.analyze(path, pipeline.Options(dump_tables=tmp_path))
    lines = pl.read_parquet(tmp_path / "vcenter_task_lines.parquet")
    assert lines.height > analysis.tables["vcenter_tasks"].height


def test_record_tables_are_let_go_once_judged_unless_dumped(tmp_path):
    path = ROOT / "sample_bundles" / "snapshot-hung.zip"
    if not path.exists():
        pytest.skip("sample_bundles/ not generated")
    released = pipeline.analyze(path)
    assert not {"gateway_log", "vcenter_log", "vcenter_events"} & set(released.tables)
    assert {"vcenter_tasks", "cycles", "matches", "portal_events"} <= set(released.tables)
    kept = pipeline.analyze(path, pipeline.Options(dump_tables=tmp_path))
    assert kept.tables["gateway_log"].height == pl.read_parquet(tmp_path / "gateway_log.parquet").height > 0
    # judging saw the same rows either way
    for key in ("vms", "verdicts", "outages", "not_evaluated"):
        assert released.doc[key] == kept.doc[key]


def test_scanned_tables_give_the_result_of_loading_them(monkeypatch):
    path = ROOT / "sample_bundles" / "outage-appliance-down.zip"
    if not path.exists():
        pytest.skip("sample_bundles/ not generated")
    assert {"gateway_log", "vcenter_events"} <= set(pipeline._SCANNED)
    seen = []
    build = pipeline.cycles.build
    monkeypatch.setattr(pipeline.cycles, "build", lambda frames, diags: (
        seen.append({type(frames[name]) for name in ("gateway_log", "vcenter_events")}),
        build(frames, diags))[1])

    def doc(scanned: tuple[str, ...]) -> dict:
        monkeypatch.setattr(pipeline, "_SCANNED", scanned)
        result = pipeline.analyze(path).doc
        result["bundle"]["analyzed_at"] = None
        return result

    scanned = doc(pipeline._SCANNED)
    assert scanned == doc(()) and seen == [{pl.LazyFrame}, {pl.DataFrame}]
    assert scanned["verdicts"]  # the comparison covers judged failures
