"""Portal replication events (CSV export, az/REST JSON, pasted error details) and the
replication status table.

    Time,Severity,Event,Machine,Event type,Error ID,Error message,Possible causes,Recommendation,Event code,Initiated by
    2024-05-14T10:21:33.0705652Z,Error,Replication cycle failed,APP01,,1011,"The upload of data ...
    ... did not complete within the expected time.",,,,
-> PORTAL_EVENTS row: form=csv, line=2, ts, severity=Error, event, machine=APP01, error_id=1011, ...

    {"value": [{"name": "a1b2", "properties": {"eventCode": "...", "description": "Replication cycle failed",
                "affectedObjectFriendlyName": "APP01", "timeOfOccurrence": "2024-05-14T10:21:33Z",
                "healthErrors": [{"errorCode": "1011", "errorMessage": "...", ...}]}}]}
-> one row per health error, form=json; `line` is the line of the item's "name" key, or the item's
   1-based position in the list when that key cannot be found.

    Error ID
    1011
    Error Message
    The upload of data ...
-> one row per block, form=text; `line` is the block's first label.

    Appliance,Server,State,Progress,TimeElapsed,TimeRemaining,UploadSpeed,Health,LastSync,Datastore
-> REPLICATION_STATUS rows.

Times that cannot be read (or fall outside 1970..2099) leave a null ts; the row is kept.
"""

from __future__ import annotations

import csv
import json
import re

import polars as pl

from analyzer import tables
from analyzer.diagnostics import Diagnostics
from analyzer.parsers import timeparse
from analyzer.parsers.lines import ParseContext, Parsed, Source, csv_delimiter, split_lines

PLAUSIBLE_YEARS = (1970, 2099)
MAX_RECORD_LINES = 200  # a quoted field longer than this is an unbalanced quote, not a message
MAX_RESTARTS = 100  # re-reads after broken records; bounds the work on hostile input
SAMPLES = 5
_DELIMITERS = (",", "\t")  # the portal's exports: CSV, or Excel's tab-separated "Unicode text"

# Header names after _key(): lowercase, without spaces/punctuation. Korean names as the Korean
# portal labels its columns (오류 ID, 오류 메시지, ...).
EVENT_COLUMNS = {
    "time": "time", "시간": "time",
    "severity": "severity", "심각도": "severity",
    "event": "event", "이벤트": "event",
    "machine": "machine", "컴퓨터": "machine", "vm": "machine",
    "eventtype": "event_type", "이벤트유형": "event_type",
    "errorid": "error_id", "오류id": "error_id",
    "errormessage": "error_message", "오류메시지": "error_message",
    "possiblecauses": "possible_causes", "가능한원인": "possible_causes",
    "recommendation": "recommendation", "권장사항": "recommendation",
    "eventcode": "event_code", "이벤트코드": "event_code",
    "initiatedby": "initiated_by", "시작한사람": "initiated_by",
}
STATUS_COLUMNS = {
    "appliance": "appliance", "server": "server", "state": "state", "progress": "progress",
    "timeelapsed": "time_elapsed", "timeremaining": "time_remaining",
    "uploadspeed": "upload_speed", "health": "health", "lastsync": "last_sync",
    "datastore": "datastore",
}
TEXT_LABELS = {
    "errorid": "error_id", "오류id": "error_id",
    "errormessage": "error_message", "오류메시지": "error_message",
    "possiblecauses": "possible_causes", "가능한원인": "possible_causes",
    "recommendation": "recommendation", "권장사항": "recommendation",
    "firstseenat": "time", "처음발견시간": "time",
    "machine": "machine", "vm": "machine", "컴퓨터": "machine",
}


def _key(name: str) -> str:
    return re.sub(r"[\W_]+", "", name.replace("\ufeff", "").lower())


# ---------------------------------------------------------------- CSV (events and status)

def _header_line(head: str) -> str:
    return next((line for line in head.split("\n") if line.strip()), "")


def _header_keys(head: str) -> set[str]:
    line = _header_line(head).strip("\r")
    return {_key(f) for f in _one_line(line, csv_delimiter(line, _DELIMITERS))}


def _sniff_events_csv(head: str, member: str) -> bool:
    names = {EVENT_COLUMNS.get(k) for k in _header_keys(head)}
    return {"time", "error_id"} <= names or {"event", "machine"} <= names


def _sniff_status_csv(head: str, member: str) -> bool:
    names = {STATUS_COLUMNS.get(k) for k in _header_keys(head)}
    return {"server", "health"} <= names and bool({"appliance", "state", "last_sync"} & names)


Rows = list[tuple[int, list[str]]]  # (line where the record starts, fields)


def _read_csv(text: str, member: str, diags: Diagnostics) -> tuple[list[str], Rows]:
    """Header keys and (start line, fields) per record, salvaging around broken quoting.

    A record that runs to the end of the file with an odd number of quotes, runs over
    MAX_RECORD_LINES lines, or trips the csv module, had an unbalanced quote: its first line is
    read on its own and reading resumes on the next line.
    """
    lines = [line + "\n" for line in text.split("\n")]
    if lines[-1] == "\n":
        lines.pop()
    delimiter = csv_delimiter(_header_line(text[:65536]), _DELIMITERS)
    records: Rows = []
    broken: list[int] = []
    pos = 0
    while pos < len(lines):
        cursor = [pos + 1]  # line where the record being read starts; _feed watches it
        reader = csv.reader(_feed(lines, pos, cursor), delimiter=delimiter)
        try:
            for fields in reader:
                end = pos + reader.line_num
                if end > cursor[0] and end == len(lines) and _odd_quotes(lines[cursor[0] - 1:end]):
                    raise csv.Error("quoted field runs to the end of the file")
                records.append((cursor[0], fields))
                cursor[0] = end + 1
            break
        except (csv.Error, _RunawayRecord):
            start = cursor[0]
            broken.append(start)
            records.append((start, _one_line(lines[start - 1], delimiter)))
            pos = start
            if len(broken) > MAX_RESTARTS:
                diags.add("error", "csv-abandoned",
                          f"more than {MAX_RESTARTS} broken records; the rest of the file "
                          f"(from line {start + 1}) is not read", f"{member}:{start + 1}")
                break
    if broken:
        diags.add("warning", "unbalanced-quote",
                  f"{len(broken)} record(s) have an unbalanced quote; each was read as a single "
                  f"line (lines {', '.join(map(str, broken[:SAMPLES]))})",
                  f"{member}:{broken[0]}")
    records = [(line, fields) for line, fields in records if any(f.strip() for f in fields)]
    if not records:
        return [], []
    (_, header), rows = records[0], records[1:]
    swallowed = [line for line, fields in rows if _swallows_a_record(fields, delimiter)]
    if swallowed:
        diags.add("warning", "unbalanced-quote",
                  f"{len(swallowed)} record(s) have a quoted field that runs over what looks like "
                  f"the next record, probably a stray quote (lines "
                  f"{', '.join(map(str, swallowed[:SAMPLES]))}); those records were merged",
                  f"{member}:{swallowed[0]}")
    return [_key(name) for name in header], rows


def _swallows_a_record(fields: list[str], delimiter: str) -> bool:
    """A stray quote that a later quote closed: a field holds a line that starts the way this
    record starts (its first field's shape, digits alike, e.g. a timestamp)."""
    if not fields or not fields[0].strip():
        return False
    shape = re.sub(r"\d", "0", fields[0])
    return any(delimiter in inner and re.sub(r"\d", "0", inner.split(delimiter, 1)[0]) == shape
               for field in fields if "\n" in field for inner in field.split("\n")[1:])


class _RunawayRecord(Exception):
    pass


def _feed(lines: list[str], pos: int, cursor: list[int]):
    """lines[pos:], stopping a record that grows past MAX_RECORD_LINES (so a stray quote costs
    at most that many lines of re-reading, never the rest of the file)."""
    for i in range(pos, len(lines)):
        if i + 1 - cursor[0] >= MAX_RECORD_LINES:
            raise _RunawayRecord
        yield lines[i]


def _one_line(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:  # e.g. a field over the csv module's size limit
        return line.split(delimiter)


def _odd_quotes(lines: list[str]) -> bool:
    return sum(line.count('"') for line in lines) % 2 == 1


def _csv_frame(text: str, member: str, columns: dict[str, str], diags: Diagnostics) -> pl.DataFrame:
    """All-string frame with `line` and the target columns found in the header."""
    header, rows = _read_csv(text, member, diags)
    index: dict[str, int] = {}
    for i, key in enumerate(header):
        target = columns.get(key)
        if target is not None and target not in index:
            index[target] = i
    width = len(header)
    ragged = [line for line, fields in rows if len(fields) != width]
    if ragged:
        diags.add("warning", "ragged-rows",
                  f"{len(ragged)} row(s) do not have the header's {width} fields; missing fields "
                  f"are empty, extra ones ignored (lines {', '.join(map(str, ragged[:SAMPLES]))})",
                  f"{member}:{ragged[0]}")
    data: dict[str, list] = {"line": [line for line, _ in rows]}
    for target, i in index.items():
        data[target] = [_value(fields[i]) if i < len(fields) else None for _, fields in rows]
    return pl.DataFrame(data, schema={"line": pl.Int64, **{t: pl.Utf8 for t in index}})


def _value(text: str) -> str | None:
    text = text.replace("\r\n", "\n").strip()
    return text or None


def _parse_events_csv(text: str, member: str, ctx: ParseContext) -> Parsed:
    diags = Diagnostics()
    frame = _csv_frame(text, member, EVENT_COLUMNS, diags)
    if frame.height and "time" not in frame.columns:
        diags.add("warning", "missing-columns", "the events CSV has no Time column; events "
                  "are kept without a time", member)
    frame = _with_time(frame, "time", "ts", ctx.portal_tz, member, diags)
    return _events_result(frame.with_columns(form=pl.lit("csv")), member, 0, diags)


def _parse_status_csv(text: str, member: str, ctx: ParseContext) -> Parsed:
    diags = Diagnostics()
    frame = _csv_frame(text, member, STATUS_COLUMNS, diags)
    frame = _with_time(frame, "last_sync", "last_sync", ctx.portal_tz, member, diags)
    frame = tables.conform("replication_status", frame.with_columns(member=pl.lit(member)))
    return _result("replication_status", frame, "last_sync", 0, diags)


# ---------------------------------------------------------------- JSON

def _sniff_events_json(head: str, member: str) -> bool:
    return head.lstrip("\ufeff \t\r\n")[:1] in ("[", "{") and any(
        word in head for word in ("healthErrors", "eventCode", "affectedObjectFriendlyName"))


def _parse_events_json(text: str, member: str, ctx: ParseContext) -> Parsed:
    diags = Diagnostics()
    try:
        doc = json.loads(text.lstrip("\ufeff"))
    except (ValueError, RecursionError) as exc:
        diags.add("error", "invalid-json", f"the events JSON cannot be read: {exc}"[:300], member,
                  "Export the events again (az site-recovery event list -o json).")
        return _events_result(_NO_ROWS, member, 0, diags)
    items = doc.get("value") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        diags.add("error", "invalid-json", "the events JSON holds neither a list nor an object "
                  "with a 'value' list", member)
        return _events_result(_NO_ROWS, member, 0, diags)
    rows, skipped = [], 0
    finder = _ItemLines(text)
    for position, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            skipped += 1
            continue
        rows.extend(_json_rows(item, finder.line(item.get("name"), position)))
    if skipped:
        diags.add("warning", "unparsed-items", f"{skipped} item(s) of the events JSON are not "
                  "objects and were skipped", member)
    frame = pl.DataFrame(rows, schema={"line": pl.Int64, **{c: pl.Utf8 for c in _JSON_FIELDS}},
                         orient="row")
    frame = _with_time(frame, "time", "ts", ctx.portal_tz, member, diags)
    return _events_result(frame.with_columns(form=pl.lit("json")), member, skipped, diags)


_JSON_FIELDS = ("time", "severity", "event", "machine", "event_type", "event_code", "error_id",
                "error_message", "possible_causes", "recommendation")


class _ItemLines:
    """Line of each item's `"name": "<name>"`, searched from the previous item's; else its
    position. Newlines are counted from the previous find, not from the top (that was quadratic:
    20 s for a 4 MB export), and after MAX_RESTARTS names that cannot be found (each search runs
    to the end) the rest use their position."""

    def __init__(self, text: str):
        self.text, self.offset, self.offset_line, self.misses = text, 0, 1, 0

    def line(self, name, position: int) -> int:
        if not isinstance(name, str) or self.misses > MAX_RESTARTS:
            return position
        for quoted in (json.dumps(name, ensure_ascii=False), json.dumps(name)):
            found = re.compile(r'"name"\s*:\s*' + re.escape(quoted)).search(self.text, self.offset)
            if found:
                line = self.offset_line + self.text.count("\n", self.offset, found.start())
                self.offset_line = line + self.text.count("\n", found.start(), found.end())
                self.offset = found.end()
                return line
        self.misses += 1
        return position


def _json_rows(item: dict, line: int) -> list[tuple]:
    props = item.get("properties")
    props = props if isinstance(props, dict) else {}
    errors = props.get("healthErrors")
    errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    event = (props.get("timeOfOccurrence"), props.get("severity"), props.get("description"),
             props.get("affectedObjectFriendlyName"), props.get("eventType"),
             props.get("eventCode"))
    if not errors:
        return [_strings(line, *event, None, props.get("description"), None, None)]
    return [_strings(line, event[0] or e.get("creationTimeUtc"), *event[1:], e.get("errorCode"),
                     e.get("errorMessage"), e.get("possibleCauses"), e.get("recommendedAction"))
            for e in errors]


def _strings(line: int, *values) -> tuple:
    return (line, *(None if v is None or v == "" else str(v) for v in values))


# ---------------------------------------------------------------- pasted error details

# [ \t], not \s, and no two stars side by side: Python's backtracking engine took quadratic time
# (minutes for a 64 KiB head of blank lines) with `^\s*` running across lines under MULTILINE.
_LABEL_LINE = re.compile(r"^[ \t]*(error id|오류 id)[ \t]*(?::[ \t]*)?$", re.IGNORECASE | re.MULTILINE)
_MESSAGE_LINE = re.compile(r"^[ \t]*(error message|오류 메시지)[ \t]*(?::[ \t]*)?$",
                           re.IGNORECASE | re.MULTILINE)


def _sniff_events_text(head: str, member: str) -> bool:
    label = _LABEL_LINE.search(head)
    if not label or not _MESSAGE_LINE.search(head):
        return False
    following = head[label.end():].lstrip("\r\n").split("\n", 1)[0].strip()
    return bool(following) and _key(following) not in TEXT_LABELS


def _parse_events_text(text: str, member: str, ctx: ParseContext) -> Parsed:
    diags = Diagnostics()
    lines = split_lines(text)
    label_key = pl.col("text").str.replace_all(r"[\W_]+", "").str.to_lowercase()
    lines = lines.with_columns(
        label=pl.when(pl.col("text").str.len_chars() < 40)
        .then(label_key.replace_strict(TEXT_LABELS, default=None)))
    labels = lines.filter(pl.col("label").is_not_null()).with_columns(
        # A block opens at Machine/VM, or at Error ID unless Machine/VM stands right before it.
        opens=(pl.int_range(pl.len()) == 0) | (pl.col("label") == "machine") | (
            (pl.col("label") == "error_id") & (pl.col("label").shift(1) != "machine")))
    labels = labels.with_columns(block=pl.col("opens").cum_sum())
    lines = lines.with_columns(owner=pl.when(pl.col("label").is_not_null()).then("line")
                               .forward_fill())
    values = (
        lines.filter(pl.col("label").is_null() & pl.col("owner").is_not_null())
        .group_by("owner").agg(value=pl.col("text").str.join("\n").str.strip_chars())
    )
    fields = labels.join(values, left_on="line", right_on="owner", how="left",
                         maintain_order="left")
    unparsed = lines.filter(pl.col("owner").is_null() & (pl.col("text").str.strip_chars() != ""))
    if fields.height == 0:
        frame = _NO_ROWS
    else:
        frame = (
            fields.group_by("block")
            .agg(pl.col("line").min(),
                 *[pl.col("value").filter(pl.col("label") == name).first().alias(name)
                   for name in sorted(set(TEXT_LABELS.values()))])
            .sort("block")
            .with_columns(pl.all().exclude("line", "block").replace("", None))
        )
        frame = _with_time(frame, "time", "ts", ctx.portal_tz, member, diags)
    if unparsed.height:
        diags.add("info", "unparsed-lines",
                  f"{unparsed.height} line(s) outside any error-details block were ignored",
                  f"{member}:{unparsed['line'][0]}")
    return _events_result(frame.with_columns(form=pl.lit("text")), member, unparsed.height, diags)


# ---------------------------------------------------------------- shared

def _with_time(frame: pl.DataFrame, text_col: str, ts_col: str, tz: str | None, member: str,
               diags: Diagnostics) -> pl.DataFrame:
    if text_col not in frame.columns:
        return frame
    try:
        timeparse.zone_offset(tz)
    except timeparse.BadZone as exc:
        diags.add("error", "bad-time-zone", f"{exc}; portal times read as UTC", member)
        tz = None
    ts, naive = timeparse.any_form(pl.col(text_col), tz)
    frame = frame.with_columns(_ts=ts, naive=naive)
    frame = frame.with_columns(
        _ts=pl.when(pl.col("_ts").dt.year().is_between(*PLAUSIBLE_YEARS)).then("_ts"))
    bad = frame.filter(pl.col(text_col).is_not_null() & pl.col("_ts").is_null())
    if bad.height:
        diags.add("warning", "bad-timestamps",
                  f"{bad.height} row(s) have a time that cannot be read (first: "
                  f"{bad[text_col][0][:60]!r}); they are kept without a time",
                  f"{member}:{bad['line'][0]}")
    if tz is None and frame["naive"].any():
        diags.add("warning", "naive-timestamps",
                  "Portal display times carry no zone; they were read as UTC.", member,
                  "Give the zone of the browser that exported them with --portal-tz "
                  "(e.g. +09:00) or portal_tz in bundle.toml.")
    return frame.drop(text_col).rename({"_ts": ts_col})


_NO_ROWS = pl.DataFrame(schema={"line": pl.Int64})


def _events_result(frame: pl.DataFrame, member: str, unparsed: int, diags: Diagnostics) -> Parsed:
    frame = tables.conform("portal_events", frame.with_columns(member=pl.lit(member)))
    return _result("portal_events", frame, "ts", unparsed, diags)


def _result(table: str, frame: pl.DataFrame, ts_col: str, unparsed: int,
            diags: Diagnostics) -> Parsed:
    ts = frame[ts_col].drop_nulls()
    return Parsed(tables={table: frame}, records=frame.height, unparsed=unparsed,
                  first=ts.min() if ts.len() else None, last=ts.max() if ts.len() else None,
                  diagnostics=diags)


EVENTS_CSV = Source("portal_events", "events_csv", ("portal_events",), _sniff_events_csv, _parse_events_csv)
EVENTS_JSON = Source("portal_events", "events_json", ("portal_events",), _sniff_events_json, _parse_events_json)
EVENTS_TEXT = Source("portal_events", "events_text", ("portal_events",), _sniff_events_text, _parse_events_text)
REPLICATION_STATUS = Source("replication_status", "status_csv", ("replication_status",), _sniff_status_csv,
                            _parse_status_csv)
SOURCES = [EVENTS_CSV, EVENTS_JSON, EVENTS_TEXT, REPLICATION_STATUS]
