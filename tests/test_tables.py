"""tables: compact (kept rows stop holding the large frame's text), store/load (kept rows wait
compressed, scanned lazily), span, concat, text_rank, as_text and the gateway schema's categorical columns."""

import polars as pl
from polars.testing import assert_frame_equal

from analyzer import tables


def buffer_bytes(frame: pl.DataFrame) -> int:
    """Bytes of every buffer the frame's columns hold, shared view buffers included."""
    return sum(frame[c].to_arrow(compat_level=pl.CompatLevel.newest()).get_total_buffer_size()
               for c in frame.columns)


def big_frame(rows: int = 100_000) -> pl.DataFrame:
    text = pl.format("a record of some length, number {}, well past the inline size", pl.int_range(rows))
    frame = pl.select(n=pl.int_range(rows), text=text)
    return frame.with_columns(
        text=pl.when(pl.col("n") % 5 == 0).then(None).otherwise("text"),
        captures=pl.when(pl.col("n") % 7 == 0).then(None).otherwise(
            pl.concat_list(pl.struct(name=pl.lit("vm"), value=pl.col("text").str.slice(2, 40)))))


def test_kept_rows_let_the_large_frame_go_and_keep_their_values():
    kept = big_frame().filter(pl.col("n") % 1000 < 3)
    compacted = tables.compact(kept)
    assert_frame_equal(compacted, kept)
    assert compacted["text"].null_count() and compacted["captures"].null_count()  # nulls stay nulls
    assert buffer_bytes(kept) > 50 * buffer_bytes(compacted)  # the filter kept every buffer
    assert buffer_bytes(compacted) < 64 << 10


def test_frames_without_text_or_rows_are_returned_as_they_are():
    numbers = pl.DataFrame({"n": [1, 2]})
    assert tables.compact(numbers) is numbers
    empty = tables.empty("gateway_log")
    assert tables.compact(empty) is empty


def test_stored_parts_load_as_one_frame_of_the_schema_with_their_values():
    rows = big_frame(30_000).select(line="n", text="text", captures="captures")
    parts = [tables.store("matches", rows.slice(i, 10_000)) for i in range(0, rows.height, 10_000)]
    loaded = tables.load("matches", parts)
    assert loaded.schema == tables.empty("matches").schema
    assert all(loaded[c].n_chunks() == 1 for c in loaded.columns)
    expected = tables.conform("matches", rows)
    assert_frame_equal(loaded, expected)  # order, nulls and nested captures as they were
    assert loaded["text"].null_count() == 6000 and loaded["signature"].null_count() == 30_000
    assert sum(map(len, parts)) * 4 < buffer_bytes(expected)  # compressed


def test_stored_categorical_and_time_columns_come_back_as_such():
    frame = pl.DataFrame({"member": ["a.log"] * 3, "line": [1, 2, 3], "level": ["Info", None, "Error"],
                          "ts": ["2024-05-14T10:00:00Z", None, "2024-05-14T10:00:01.5Z"]})
    frame = frame.with_columns(pl.col("ts").str.to_datetime(time_zone="UTC"))
    loaded = tables.load("gateway_log", [tables.store("gateway_log", frame)] * 2)
    assert loaded.height == 6 and loaded["level"].dtype == tables.CAT and loaded["ts"].dtype == tables.TS
    assert loaded["level"].to_list() == ["Info", None, "Error"] * 2
    assert loaded["ts"][2].microsecond == 500_000


def test_nothing_stored_loads_as_the_empty_table():
    assert_frame_equal(tables.load("gateway_log", []), tables.empty("gateway_log"))


def test_stored_parts_scan_lazily_and_span_gives_least_and_greatest():
    frame = pl.DataFrame({"member": ["a"] * 4, "line": [3, 1, 4, None]})
    scanned = tables.scan("gateway_log", [tables.store("gateway_log", frame.slice(0, 2)),
                                          tables.store("gateway_log", frame.slice(2))])
    assert isinstance(scanned, pl.LazyFrame)
    assert scanned.select("line").collect()["line"].to_list() == [3, 1, 4, None]
    assert tables.span(scanned, "line") == (1, 4) == tables.span(frame, "line")
    assert tables.span(tables.scan("gateway_log", []), "ts") == (None, None)
    assert tables.conform("gateway_log", scanned) is scanned  # already of the schema


def test_concat_gives_one_chunk_per_column():
    part = pl.DataFrame({"source": ["gateway_log"] * 3, "member": ["m"] * 3, "minute": [None] * 3,
                         "records": [1, 2, 3]})
    frame = tables.concat("activity", [part] * 4)
    assert frame.height == 12 and {frame[c].n_chunks() for c in frame.columns} == {1}


def test_text_rank_sorts_as_the_text_does():
    frame = pl.DataFrame({"member": ["b.log", None, "a.log", "c.log", "a.log", None, "B.log"],
                          "line": [1, 2, 3, 4, 5, 6, 7]})
    for nulls_last in (False, True):
        by_text = frame.select(pl.arg_sort_by("member", "line", nulls_last=nulls_last)).to_series()
        by_rank = frame.select(pl.arg_sort_by(tables.text_rank(frame, "member"), "line",
                                              nulls_last=nulls_last)).to_series()
        assert by_rank.to_list() == by_text.to_list()
    empty = frame.clear()
    assert empty.select(tables.text_rank(empty, "member")).height == 0


def test_as_text_reads_categorical_columns_as_text_and_leaves_the_others():
    frame = pl.DataFrame({"vm": ["APP01", None, "APP01"], "line": [1, 2, 3], "message": ["a", "b", "c"]},
                         schema={"vm": pl.Categorical(), "line": pl.Int64, "message": pl.Utf8})
    out = tables.as_text(frame.lazy()).collect()
    assert out.schema == pl.Schema({"vm": pl.Utf8, "line": pl.Int64, "message": pl.Utf8})
    assert out["vm"].to_list() == ["APP01", None, "APP01"]
    assert out.select(pl.col("vm").str.to_lowercase())["vm"].to_list() == ["app01", None, "app01"]


def test_gateway_names_ids_and_tokens_are_categorical():
    schema = tables.GATEWAY_LOG
    assert all(schema[c] == tables.CAT for c in ("vm", "vm_id", "host", "disk", "error", "snapshot_name"))
    assert schema["message"] == schema["detail"] == tables.STR

