"""Large log members are parsed in slices: the result must be that of one parse of the member."""

from __future__ import annotations

import functools
import gzip
import re
import time
import zipfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from analyzer import bundle, ingest, pipeline, signatures, streaming, tables
from analyzer.diagnostics import Diagnostics
from analyzer.parsers import gateway_log, vcenter_log

ROOT = Path(__file__).resolve().parents[1]
START = re.compile(rb"\n(?=\d)")


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_slices_cut_before_a_record_and_count_lines(monkeypatch, newline):
    monkeypatch.setattr(streaming, "SLICE_BYTES", 10)
    lines = [b"1 first", b"  more", b"  more", b"2 second", b"3 third", b"  tail", b"4 last"]
    text = newline.join(lines) + newline
    pieces = list(streaming.slices(text, START))
    assert len(pieces) > 1
    for piece, first_line in pieces:
        assert piece[:1].isdigit() and not piece.endswith(b"\r")
        assert piece.split(newline)[0] == lines[first_line - 1]
    assert newline.join(piece for piece, _ in pieces) == text


def test_small_text_and_str_are_not_sliced():
    assert list(streaming.slices(b"1 a\n2 b\n", START)) == [(b"1 a\n2 b\n", 1)]
    assert list(streaming.slices("1 a\n" * 10, START)) == [("1 a\n" * 10, 1)]
    assert list(streaming.slices(b"1 a\n" * 10, None)) == [(b"1 a\n" * 10, 1)]


def test_slice_diagnostics_merge_into_the_whole_members():
    first, second = Diagnostics(), Diagnostics()
    first.add("warning", "bad-timestamps", "3 record(s) are bad (first: 'x')", "m:10")
    second.add("warning", "bad-timestamps", "4 record(s) are bad (first: 'y')", "m:900")
    first.add("warning", "naive-timestamps", "Times carry no zone.", "m", "give a zone")
    second.add("warning", "naive-timestamps", "Times carry no zone.", "m", "give a zone")
    second.add("info", "truncated-values", "1 record(s) cut", "m:950")
    second.add("info", "twice", "a", "m:1")
    second.add("info", "twice", "b", "m:2")
    merged = streaming.merge_slice_diagnostics([first, second]).items
    assert [(d.code, d.message, d.location) for d in merged] == [
        ("bad-timestamps", "7 record(s) are bad (first: 'x')", "m:10"),
        ("naive-timestamps", "Times carry no zone.", "m"),
        ("truncated-values", "1 record(s) cut", "m:950"),
        ("twice", "a", "m:1"), ("twice", "b", "m:2"),
    ]


@pytest.mark.parametrize("streamed", [False, True], ids=["held", "streamed"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bundle", ["case-disk-upload-timeout.zip", "outage-appliance-down.zip",
                                    "format-win5x-storage-vmotion.zip"])
def test_sliced_ingest_gives_the_tables_of_a_whole_parse(monkeypatch, bundle, threads, streamed):
    path = ROOT / "sample_bundles" / bundle
    if not path.exists():
        pytest.skip("sample_bundles/ not generated")
    library = signatures.load_library(())

    def read():
        diags = Diagnostics()
        found = ingest.ingest(path, {}, library, diags)
        return found, diags, {name: tables.load(name, parts) for name, parts in found.parts.items()}

    monkeypatch.setattr(streaming, "STREAM_OVER", None)
    whole, whole_diags, whole_frames = read()
    monkeypatch.setattr(streaming, "SLICE_BYTES", 64 << 10)
    monkeypatch.setattr(streaming, "SLICE_THREADS", threads)
    if streamed:  # the logs are read as they are parsed
        monkeypatch.setattr(streaming, "STREAM_OVER", 16 << 10)
    sliced, sliced_diags, sliced_frames = read()
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
            yield bundle.Member(str(i), b"", None)
        if fail:
            raise pipeline.UnusableBundle("nothing readable")

    seen = []
    for member in streaming.read_ahead(members(fail=False)):
        time.sleep(0.02)  # the reader has time to run ahead, if it would
        assert len(produced) <= int(member.path) + 2  # this one and at most the next
        seen.append(member.path)
    assert seen == ["0", "1", "2", "3", "4"]
    with pytest.raises(pipeline.UnusableBundle, match="nothing readable"):
        list(streaming.read_ahead(members(fail=True)))


def test_read_ahead_stops_reading_when_the_caller_stops():
    produced = []

    def members():
        for i in range(100):
            produced.append(i)
            yield bundle.Member(str(i), b"", None)

    for member in streaming.read_ahead(members()):
        if member.path == "2":
            break
    time.sleep(0.1)
    assert len(produced) <= 4


def test_kept_rows_wait_compressed_until_the_ingest_ends():
    """A slice's kept rows are stored as compressed bytes, not as frames holding the slice's text."""
    path = ROOT / "sample_bundles" / "case-disk-upload-timeout.zip"
    if not path.exists():
        pytest.skip("sample_bundles/ not generated")
    found = ingest.ingest(path, {}, signatures.load_library(()), Diagnostics())
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


@settings(max_examples=200, deadline=None)
@given(records=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3)), max_size=60),
       chunk_sizes=st.lists(st.integers(1, 70), min_size=1, max_size=5),
       crlf=st.booleans(), slice_bytes=st.integers(1, 60), lookahead=st.integers(1, 8))
def test_streamed_slices_are_cut_where_the_whole_text_is(records, chunk_sizes, crlf, slice_bytes,
                                                        lookahead):
    """Cut from the chunks as they come, the pieces are those of the whole text."""
    newline = b"\r\n" if crlf else b"\n"
    text = b"".join(b"1" + b"x" * width + newline + (b"  more" + newline) * extra
                    for width, extra in records)

    def chunks(data: bytes):
        at, i = 0, 0
        while at < len(data):
            size = chunk_sizes[i % len(chunk_sizes)]
            yield data[at:at + size]
            at, i = at + size, i + 1

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(streaming, "SLICE_BYTES", slice_bytes)
        patch.setattr(streaming, "_LOOKAHEAD", lookahead)
        whole = list(streaming.slices(text, START))
        first = chunk_sizes[0]
        streamed = list(streaming.stream_slices(text[:first], chunks(text[first:]), START))
    assert [(piece, line) for piece, line, _ in streamed] == whole
    assert [last for _, _, last in streamed] == [False] * (len(whole) - 1) + [True]


def test_a_record_longer_than_a_slice_is_read_in_linear_time(monkeypatch):
    """With no cut in sight, what is held grows by half each time (a few searches of the text),
    not by a chunk (thousands)."""
    monkeypatch.setattr(streaming, "SLICE_BYTES", 1 << 10)
    monkeypatch.setattr(streaming, "_LOOKAHEAD", 16)
    searches = []

    class CountedStart:
        def search(self, text, pos=0):
            searches.append(pos)
            return START.search(text, pos)

    long = b"1 " + b"x" * (4 << 20) + b"\n2 short\n"
    chunks = (long[at:at + 64] for at in range(64, len(long), 64))
    pieces = [(len(piece), line, last)
              for piece, line, last in streaming.stream_slices(long[:64], chunks, CountedStart())]
    assert pieces == [(len(long) - 9, 1, False), (8, 2, True)]
    assert len(searches) < 40


GATEWAY_LINE = ("2024-05-13T00:{m:02d}:{s:02d}.{i:03d}Z Info [1] Gateway.Service.Host.Worker - "
                "Replication cycle step. vm=VM{i} disk=scsi0:{d} bytes={i}\n")


def gateway_text(lines: int, middle: bytes = b"") -> bytes:
    """A gateway log of about `lines` records; `middle` is put in the middle of a message."""
    text = "".join(GATEWAY_LINE.format(m=(i // 60) % 60, s=i % 60, i=i % 1000, d=i % 4)
                   for i in range(lines)).encode()
    cut = text.index(b"\n", len(text) // 2)
    return text[:cut] + middle + text[cut:]


def ingest_zip(path: Path, stream_over: int | None, limits=None) -> tuple:
    diags = Diagnostics()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(streaming, "STREAM_OVER", stream_over)
        patch.setattr(streaming, "SLICE_BYTES", 32 << 10)
        if limits is not None:
            patch.setattr(bundle, "open_bundle", functools.partial(bundle.open_bundle, limits=limits))
        found = ingest.ingest(path, {}, signatures.load_library(()), diags)
    frames = {name: tables.load(name, parts) for name, parts in found.parts.items()}
    return found.members, [d.as_dict() for d in diags.sorted()], frames


def test_a_streamed_log_with_bad_bytes_later_on_is_decoded_slice_by_slice(tmp_path):
    """A member whose start is plain UTF-8 is streamed; a later slice that is not (cp1252 bytes,
    NULs) is decoded on its own, and no record is lost."""
    path = tmp_path / "case.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        # 3 MB: the bad bytes come after the first chunk read (bundle.CHUNK)
        zf.writestr("GatewayService.log", gateway_text(24_000, middle=b" caf\xe9 \x00end"))
    members, diags, frames = ingest_zip(path, stream_over=16 << 10)
    held_members, held_diags, held_frames = ingest_zip(path, stream_over=None)
    [member] = members
    assert member["form"] == "gateway_log" and member["unparsed"] == 0
    assert member["records"] == held_members[0]["records"] == 24_000
    assert frames["activity"]["records"].sum() == 24_000
    codes = [d["code"] for d in diags]
    assert codes == [d["code"] for d in held_diags] == ["decoded-as-cp1252", "nul-bytes"]
    assert [d["message"] for d in diags] != [d["message"] for d in held_diags]  # byte offsets
    assert_frame_equal(frames["gateway_log"], held_frames["gateway_log"])


def test_a_limit_met_mid_stream_skips_the_member_as_when_held(tmp_path):
    path = tmp_path / "case.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        # a rotation: its size is known only once inflated, so the limit trips mid-stream
        zf.writestr("appliance/GatewayService.log.1.gz", gzip.compress(gateway_text(24_000)))
        zf.writestr("appliance/GatewayService.log", gateway_text(100))
    # the rotation inflates to about 3 MB, read a chunk (bundle.CHUNK) at a time
    limits = bundle.Limits(max_member_bytes=2_000_000)
    streamed = ingest_zip(path, stream_over=16 << 10, limits=limits)
    held = ingest_zip(path, stream_over=None, limits=limits)
    members, diags, frames = streamed
    assert [m["member"] for m in members] == ["appliance/GatewayService.log"]
    assert [d["code"] for d in diags if d["severity"] != "info"] == ["decompression-limit"]
    assert frames["activity"]["records"].sum() == 100  # nothing of the dropped member is kept
    assert members == held[0] and diags == held[1]
    for name, frame in held[2].items():
        assert_frame_equal(frames[name], frame)
