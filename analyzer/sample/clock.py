"""Time in the generator: integer milliseconds since the epoch, UTC, on the appliance's clock.

No wall clock anywhere: every bundle starts from `BASE_MS` (2024-05-13T00:00:00Z), so the same
seed gives the same bytes on any day. Formatting is hand-rolled (divmod on integers, one cached
date string per day) because it runs for every generated line.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

BASE = datetime(2024, 5, 13, tzinfo=timezone.utc)
BASE_MS = int(BASE.timestamp() * 1000)
EPOCH_DAY = BASE_MS // DAY


@lru_cache(maxsize=4096)
def _date(day: int) -> tuple[int, int, int]:
    d = datetime(1970, 1, 1) + timedelta(days=day)
    return d.year, d.month, d.day


def split(ms: int) -> tuple[int, int, int, int, int, int, int]:
    """-> year, month, day, hour, minute, second, millisecond."""
    day, rem = divmod(ms, DAY)
    y, mo, d = _date(day)
    h, rem = divmod(rem, HOUR)
    mi, rem = divmod(rem, MINUTE)
    s, milli = divmod(rem, SECOND)
    return y, mo, d, h, mi, s, milli


@lru_cache(maxsize=4096)
def _iso_date(day: int) -> str:
    y, mo, d = _date(day)
    return f"{y:04d}-{mo:02d}-{d:02d}"


def iso(ms: int, offset_min: int = 0, sep: str = "T", zone: str | None = "Z") -> str:
    """`2024-05-13T10:00:00.123Z`; with an offset the local time and `+09:00` (zone=None: naive)."""
    t = ms + offset_min * MINUTE
    day, rem = divmod(t, DAY)
    h, rem = divmod(rem, HOUR)
    mi, rem = divmod(rem, MINUTE)
    s, milli = divmod(rem, SECOND)
    if zone == "Z" and offset_min:
        zone = offset_text(offset_min)
    return f"{_iso_date(day)}{sep}{h:02d}:{mi:02d}:{s:02d}.{milli:03d}{zone or ''}"


def offset_text(offset_min: int) -> str:
    sign = "-" if offset_min < 0 else "+"
    hh, mm = divmod(abs(offset_min), 60)
    return f"{sign}{hh:02d}:{mm:02d}"


def iso7(ms: int, extra: int = 0) -> str:
    """Portal ISO form with 7 fraction digits: `2024-05-14T10:21:33.0705652Z`."""
    y, mo, d, h, mi, s, milli = split(ms)
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{milli:03d}{extra % 10000:04d}Z"


def us_display(ms: int, offset_min: int = 0) -> str:
    """`5/14/2024, 10:21:33 AM` in the zone `offset_min`."""
    y, mo, d, h, mi, s, _ = split(ms + offset_min * MINUTE)
    ampm = "AM" if h < 12 else "PM"
    return f"{mo}/{d}/{y}, {(h % 12) or 12}:{mi:02d}:{s:02d} {ampm}"


def korean_display(ms: int, offset_min: int = 0) -> str:
    """`2024. 5. 14. 오전 10:21:33` (오전 = AM, 오후 = PM) in the zone `offset_min`."""
    y, mo, d, h, mi, s, _ = split(ms + offset_min * MINUTE)
    ampm = "오전" if h < 12 else "오후"
    return f"{y}. {mo}. {d}. {ampm} {(h % 12) or 12}:{mi:02d}:{s:02d}"


def day_stamp(ms: int) -> str:
    """`2024-05-14` (vc-support archive names)."""
    return _iso_date(ms // DAY)
