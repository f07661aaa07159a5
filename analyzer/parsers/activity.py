"""Records per UTC minute of a log member (tables.ACTIVITY), shared by the log parsers.

A parser counts most records from a cheap minute key cut out of the raw line (`minutes`: minute,
records) and parses the timestamps of the rest one by one (`unkeyed`: a `ts` column).
"""

from __future__ import annotations

import polars as pl

from analyzer import tables


def per_minute(minutes: pl.DataFrame, unkeyed: pl.DataFrame, source: str, member: str) -> pl.DataFrame:
    one_by_one = (unkeyed.filter(pl.col("ts").is_not_null())
                  .select(minute=pl.col("ts").dt.truncate("1m"), records=pl.lit(1, pl.Int64)))
    counted = pl.concat([minutes.filter(pl.col("minute").is_not_null())
                         .select("minute", pl.col("records").cast(pl.Int64)), one_by_one])
    out = (counted.group_by("minute").agg(pl.col("records").sum()).sort("minute")
           .with_columns(source=pl.lit(source), member=pl.lit(member)))
    return tables.conform("activity", out)
