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
-> one row per block, form=text (markdown for `**Error ID:** 1011` blocks and error tables,
   powershell for Format-List health errors); `line` is the block's first label. Pasted text
   may also hold status and resource tables (replication_status, appliance_resources); every
   line outside all of these becomes a text_log row (form pasted). See "pasted error details"
   for the shapes seen real and those assumed.

    {"properties": {"machineName": "APP01", "health": "Normal", "healthErrors": [{"errorCode":
     "1011", "errorId": "6:8010", "summaryMessage": "", ...}]}}
-> healthErrors wherever they sit (REST, az, ConvertTo-Json): one row per error, form=health_json.

    Appliance,Server,State,Progress,TimeElapsed,TimeRemaining,UploadSpeed,Health,LastSync,Datastore
-> REPLICATION_STATUS rows (also from the cmdlet's Format-Table text).

Times that cannot be read (or fall outside 1970..2099) leave a null ts; the row is kept.
"""

from __future__ import annotations

import csv
import json
import re

import polars as pl

from analyzer import tables
from analyzer.diagnostics import Diagnostics
from analyzer.parsers import text_log, text_tables, timeparse
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
    "errorid": "error_id", "오류id": "error_id", "errorcode": "error_id", "오류코드": "error_id",
    "errormessage": "error_message", "오류메시지": "error_message",
    "possiblecauses": "possible_causes", "possiblecause": "possible_causes",
    "가능한원인": "possible_causes",
    "recommendation": "recommendation", "recommendations": "recommendation",
    "recommendedaction": "recommendation", "recommendedactions": "recommendation",
    "권장사항": "recommendation", "권장조치": "recommendation",
    "firstseenat": "time", "처음발견시간": "time",
    "machine": "machine", "vm": "machine", "컴퓨터": "machine", "virtualmachine": "machine",
    "providererror": "provider", "providererrorcode": "provider_code",
    "providererrormessage": "provider_message",
    "providererrorpossiblecauses": "provider_causes",
    "providererrorrecommendedaction": "provider_action",
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

# `"healthErrors": [` anywhere: a JSON fragment cut out of a larger answer still carries them.
_HEALTH_ARRAY = re.compile(r'"health_?errors?"\s*:\s*\[', re.IGNORECASE)


def _sniff_events_json(head: str, member: str) -> bool:
    return (head.lstrip("\ufeff \t\r\n")[:1] in ("[", "{") and any(
        word in head for word in ("eventCode", "affectedObjectFriendlyName"))) \
        or _HEALTH_ARRAY.search(head) is not None


def _health_fragments(text: str) -> dict | None:
    """The healthErrors arrays of a JSON fragment (a document cut short or pasted in part), as
    one document; None when none can be read."""
    decoder = json.JSONDecoder()
    errors: list = []
    for found in _HEALTH_ARRAY.finditer(text):
        try:
            array, _ = decoder.raw_decode(text, found.end() - 1)
        except (ValueError, RecursionError):
            continue
        errors += array if isinstance(array, list) else []
    return {"healthErrors": errors} if errors else None


def _parse_events_json(text: str, member: str, ctx: ParseContext) -> Parsed:
    diags = Diagnostics()
    try:
        doc = json.loads(text.lstrip("\ufeff"))
    except (ValueError, RecursionError) as exc:
        fragment = _health_fragments(text)
        if fragment is not None:
            return _parse_health_json(fragment, text, member, ctx, diags)
        diags.add("error", "invalid-json", f"the events JSON cannot be read: {exc}"[:300], member,
                  "Export the events again (az site-recovery event list -o json).")
        return _events_result(_NO_ROWS, member, 0, diags)
    items = doc.get("value") if isinstance(doc, dict) else doc
    if not (isinstance(items, list) and any(_is_event(item) for item in items)):
        return _parse_health_json(doc, text, member, ctx, diags)
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


def _is_event(item) -> bool:
    props = item.get("properties") if isinstance(item, dict) else None
    return isinstance(props, dict) and any(
        key in props for key in ("eventCode", "eventType", "timeOfOccurrence",
                                 "affectedObjectFriendlyName", "description"))


# healthErrors as REST, az and PowerShell (ConvertTo-Json) give them, wherever they sit: on a
# replication item, under its `properties`, in a `value` list; names in any case. Real fields
# (FORMATS.md section 6): errorCode (string), errorId ("6:8010"), errorType, errorSource,
# summaryMessage (may be empty), errorMessage, possibleCauses, recommendedAction,
# creationTimeUtc, customerResolvability; innerHealthErrors are the provider's errors.
MAX_JSON_NODES = 1_000_000
_HEALTH_FIELDS = ("time", "severity", "event", "machine", "event_type", "event_code", "error_id",
                  "error_message", "possible_causes", "recommendation", "provider_code",
                  "provider_message", "health")


def _parse_health_json(doc, text: str, member: str, ctx: ParseContext,
                       diags: Diagnostics) -> Parsed:
    finder = _ItemLines(text)
    rows: list[tuple] = []
    stack: list[tuple[object, dict | None]] = [(doc, None)]
    seen = 0
    while stack and seen < MAX_JSON_NODES:
        node, parent = stack.pop()
        seen += 1
        if isinstance(node, list):
            stack.extend((child, parent) for child in reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        key = _key_of(node, "healtherrors", "healtherror")
        if key is not None:
            errors = node[key] if isinstance(node[key], list) else [node[key]]
            owners = [node] + ([parent] if parent is not None else [])
            rows.extend(_health_row(error, owners, finder, len(rows) + 1)
                        for error in errors if isinstance(error, dict))
        stack.extend((child, node) for name, child in reversed(list(node.items()))
                     if name != key and isinstance(child, (dict, list)))
    if not rows:
        diags.add("error", "invalid-json", "the JSON holds no events and no healthErrors", member,
                  "Export the events again (az site-recovery event list -o json).")
        return _events_result(_NO_ROWS, member, 0, diags)
    frame = pl.DataFrame(rows, schema={"line": pl.Int64, **{c: pl.Utf8 for c in _HEALTH_FIELDS}},
                         orient="row")
    frame = _with_time(frame, "time", "ts", ctx.portal_tz, member, diags)
    return _events_result(frame.with_columns(form=pl.lit("health_json")), member, 0, diags)


def _key_of(obj: dict, *names: str) -> str | None:
    """The key of `obj` that is one of `names` in any case."""
    return next((k for k in obj if isinstance(k, str) and k.lower() in names), None)


def _pick(objs: list[dict], *names: str):
    """The first non-empty value of any of `names` (any case) in the first object that has one."""
    lowered = tuple(n.lower() for n in names)
    for obj in objs:
        for name in lowered:
            key = _key_of(obj, name)
            if key is not None and obj[key] not in (None, "", [], {}):
                return obj[key]
    return None


def _health_row(error: dict, owners: list[dict], finder: "_ItemLines", position: int) -> tuple:
    code_key = _key_of(error, "errorcode")
    code = error.get(code_key) if code_key else None
    line = finder.line(code, position, key=code_key) if code_key and code is not None else position
    message = _pick([error], "errorMessage")
    inner = _pick([error], "innerHealthErrors")
    inner = inner[0] if isinstance(inner, list) and inner and isinstance(inner[0], dict) else {}
    found_code = re.search(_PROVIDER_CODE, message) if isinstance(message, str) else None
    found_message = re.search(_PROVIDER_MESSAGE, message) if isinstance(message, str) else None
    return _strings(
        line,
        _pick([error], "creationTimeUtc"),
        _pick([error], "errorLevel", "severity"),
        _pick([error], "summaryMessage"),
        _pick(owners, "machineName", "friendlyName", "affectedObjectFriendlyName", "displayName"),
        _pick([error], "errorType", "errorCategory"),
        _pick([error], "errorId"),
        code,
        message,
        _pick([error], "possibleCauses", "possibleCaus"),
        _pick([error], "recommendedAction"),
        _pick([inner], "errorCode") or (found_code.group(1) if found_code else None),
        _pick([inner], "errorMessage") or _pick([error], "recoveryProviderErrorMessage")
        or (found_message.group(1) if found_message else None),
        _pick(owners, "health", "replicationHealth"),
    )


_JSON_FIELDS = ("time", "severity", "event", "machine", "event_type", "event_code", "error_id",
                "error_message", "possible_causes", "recommendation")


class _ItemLines:
    """Line of each item's `"name": "<name>"`, searched from the previous item's; else its
    position. Newlines are counted from the previous find, not from the top (that was quadratic:
    20 s for a 4 MB export), and after MAX_RESTARTS names that cannot be found (each search runs
    to the end) the rest use their position."""

    def __init__(self, text: str):
        self.text, self.offset, self.offset_line, self.misses = text, 0, 1, 0

    def line(self, name, position: int, key: str = "name") -> int:
        """Line of `"<key>": <name>` (a string, or a number for other keys)."""
        if not isinstance(name, (str, int, float)) or isinstance(name, bool) \
                or self.misses > MAX_RESTARTS:
            return position
        if key == "name" and not isinstance(name, str):
            return position
        for quoted in (json.dumps(name, ensure_ascii=False), json.dumps(name)):
            found = re.compile(re.escape(json.dumps(key)) + r'\s*:\s*' + re.escape(quoted)
                               ).search(self.text, self.offset)
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

# What people paste into tickets, all read by one parser (shapes seen real, with their source):
# - the error blade copied label-per-line, blank lines between or not, several blocks, inside an
#   e-mail or ticket (MicrosoftDocs/azure-docs issues 65549, 68695); `- Label: value` bullets and
#   a provider error nested in the message (issue 73713);
# - Markdown: `**Error ID:** 1011`, `**Possible Causes:**` then paragraphs and bullets, headings
#   `### Error Message: An internal error occurred. [...]`, and the error tables
#   `| **566**:NoDiskSnapshotsFound | cause | action |` (troubleshoot-changed-block-tracking-
#   replication.md, English and Korean editions);
# - `Get-AzMigrateServerMigrationStatus` output: Format-Table status and resource tables and the
#   -Health text `Error Message: ...` / `Possible Causes: ...` / `Recommended Actions: ...`
#   (Azure/azure-powershell Get-AzMigrateServerMigrationStatus.md and its .ps1).
# Assumed, not seen: Format-List output of health errors (`ErrorCode : 1011`, property names of
# the Az.Migrate HealthError model) and of replication items (`MachineName`, `MigrationState`,
# `Health`); the `Error code | Error name` table header; bullets `•` and `*`.
# Lines outside all of these are kept as text_log rows (form "pasted"): signatures still see them.

# field -> rank: a block's labels come in this order; a label ranked before the one above it, or
# the same label again, opens a new block (as does text between two labels).
_RANK = {"machine": 0, "error_id": 1, "error_message": 2, "provider": 3, "provider_code": 4,
         "provider_message": 5, "provider_causes": 6, "provider_action": 7, "possible_causes": 8,
         "recommendation": 9, "time": 10}
# A label line: optional bullet / number / heading marks and bold, the label, and a colon with
# the value, or nothing (the value follows on the next lines).
_LABEL = (r"^[ \t]*(?:[-•*+][ \t]+|\d{1,2}[.)][ \t]+)?(?P<hash>#{1,6}[ \t]+)?(?P<bold>\*\*|__)?"
          r"[ \t]*(?P<label>\p{L}[\p{L}\p{N} ._/-]*?)[ \t]*(?:\*\*|__)?[ \t]*"
          r"(?:(?P<colon>:)[ \t]*(?:\*\*|__)?[ \t]*(?P<value>.*?)[ \t]*)?$")
# Lines that end a block: headings, bold titles, code fences, rules, table rows.
_BOUNDARY = (r"^\s*(?:#{1,6}\s|(?:\*\*|__)[^*_].*(?:\*\*|__):?\s*$|```|~~~|"
             r"(?:-{3,}|\*{3,}|_{3,})\s*$|\|)")
# A log, not a paste: most lines start with a time stamp.
_STAMPED = r"^\[?(?:\d{4}-\d{2}-\d{2}[T ]\d{2}:|[A-Z][a-z]{2} [ \d]\d \d{2}:|\d{1,2}/\d{1,2}/\d{4} )"
_PROVIDER_CODE = r"(?i)provider error code:\s*(\S+)"
_PROVIDER_MESSAGE = (r"(?is)provider error message:\s*(.*?)\s*"
                     r"(?:provider error (?:possible causes|recommended action):|$)")
MAX_LINE = 64 * 1024

# Markdown error-table columns (after _key) -> field; "error" holds `<id>:<name>`.
TABLE_COLUMNS = {
    "error": "error", "오류": "error",
    "errorcode": "error_id", "errorid": "error_id", "code": "error_id", "id": "error_id",
    "오류코드": "error_id", "오류id": "error_id",
    "errorname": "event", "name": "event",
    "errormessage": "error_message", "message": "error_message", "description": "error_message",
    "오류메시지": "error_message",
    "cause": "possible_causes", "causes": "possible_causes", "possiblecause": "possible_causes",
    "possiblecauses": "possible_causes", "reason": "possible_causes", "원인": "possible_causes",
    "가능한원인": "possible_causes",
    "action": "recommendation", "actions": "recommendation", "recommendation": "recommendation",
    "recommendations": "recommendation", "recommendedaction": "recommendation",
    "resolution": "recommendation", "remediation": "recommendation", "mitigation": "recommendation",
    "작업": "recommendation", "조치": "recommendation", "해결방법": "recommendation",
    "권장사항": "recommendation",
}
# Format-List properties (after _key) of health errors and replication items -> field.
LIST_FIELDS = {
    "errorcode": "error_code", "errorid": "error_ref", "errormessage": "error_message",
    "possiblecauses": "possible_causes", "possiblecaus": "possible_causes",
    "recommendedaction": "recommendation", "recommendation": "recommendation",
    "creationtimeutc": "time", "summarymessage": "event", "errorlevel": "severity",
    "errortype": "event_type", "machinename": "machine", "friendlyname": "machine",
    "affectedobjectfriendlyname": "machine", "health": "health", "replicationhealth": "health",
    "recoveryprovidererrormessage": "provider_message", "migrationstate": "migration_state",
    "migrationstatedescription": "state_description", "replicationstatus": "replication_status",
    "lastrecoverypointreceived": "last_sync",
}
RESOURCE_KINDS = (("cpu", "cpu"), ("ram", "ram"), ("network", "network"), ("nfc", "nfc_buffer"),
                  ("parallel disk", "parallel_disks"), ("snapshot", "snapshot_count"))


# Cheap tests on the raw head before any frame is built (sniffing runs on every member): the
# words a pasted error holds, a Format-Table rule, a Format-List property.
_ERROR_WORDS = re.compile(r"error|오류|provider", re.IGNORECASE)
# A row of the docs' error tables, pasted without its header: | **566**:NoDiskSnapshotsFound | … |
_ERROR_ROW = r"^[ \t]*\|[ \t]*\*\*[^*|\n]+\*\*[ \t]*:"
_ERROR_ROW_MARK = re.compile(_ERROR_ROW, re.MULTILINE)
_RULE = re.compile(r"^ *-{2,}(?: +-{2,})+ *$", re.MULTILINE)
_PROPERTY = re.compile(r"^[A-Za-z][\w.]* +: ", re.MULTILINE)


def _sniff_events_text(head: str, member: str) -> bool:
    """A pasted error block (an Error ID with its value, or an error message with another
    label's value), a Markdown error table, or Format-List health errors; never a log."""
    if not (_ERROR_WORDS.search(head) or _ERROR_ROW_MARK.search(head)):
        return False
    lines = _head_lines(head)
    if lines is None:
        return False
    shapes = _Shapes(lines, head)
    if shapes.list_events().height or any(_error_table(t) for t in shapes.markdown):
        return True
    blocks = _label_blocks(lines, shapes.used_lines())[0]
    if not blocks.height:
        return False
    others = pl.sum_horizontal(pl.col(f).is_not_null() for f in
                               ("machine", "provider", "provider_code", "provider_message",
                                "possible_causes", "recommendation", "time"))
    with_id = pl.col("error_id").is_not_null() & (pl.col("labels") >= 2)
    with_message = pl.col("error_message").is_not_null() & (others >= 1)
    return blocks.filter(with_id | with_message).height > 0


def _sniff_status_text(head: str, member: str) -> bool:
    """Format-Table status or resource tables of Get-AzMigrateServerMigrationStatus, or
    Format-List replication items; never a log."""
    if not (_RULE.search(head) or _PROPERTY.search(head)):
        return False
    lines = _head_lines(head)
    if lines is None or _sniff_events_text(head, member):  # errors with a status: events first
        return False
    shapes = _Shapes(lines, head)
    return (any(_table_kind(t) for t in shapes.format_tables)
            or shapes.list_status().height > 0)


def _head_lines(head: str) -> pl.DataFrame | None:
    """The head's lines, or None when it is a log (most lines stamped)."""
    lines = split_lines(head)
    text = pl.col("text")
    stamped = lines.select(text.str.contains(_STAMPED).filter(text.str.strip_chars() != "")
                           .mean()).item()
    return None if stamped is None or stamped > 0.5 else lines


class _Shapes:
    """The tables and lists found in a paste (text_tables), with the lines each covers. Each
    kind is looked for only when the raw text shows its mark."""

    def __init__(self, lines: pl.DataFrame, text: str):
        self.lines = lines
        self.format_tables = text_tables.format_tables(lines) if _RULE.search(text) else []
        self.markdown = (text_tables.markdown_tables(lines)
                         if "|" in text and "--" in text else [])
        if _ERROR_ROW_MARK.search(text):
            covered = {line for table in self.markdown for line in table.lines}
            self.markdown += text_tables.headerless_rows(lines, _ERROR_ROW, ["Error", "Cause", "Action"],
                                                         covered)
        if _PROPERTY.search(text):
            self.props, self.list_lines = text_tables.format_lists(lines)
        else:
            self.props = pl.DataFrame(schema={"record": pl.UInt32, "line": pl.Int64,
                                              "name": pl.Utf8, "value": pl.Utf8})
            self.list_lines = pl.DataFrame(schema={"record": pl.UInt32, "line": pl.Int64})
        self._wide: pl.DataFrame | None = None

    def _records(self) -> pl.DataFrame:
        if self._wide is None:
            props = self.props.with_columns(
                field=pl.col("name").str.to_lowercase().replace_strict(LIST_FIELDS, default=None))
            props = props.filter(pl.col("field").is_not_null())
            firsts = self.props.group_by("record").agg(pl.col("line").min())
            if props.height:
                wide = props.pivot(on="field", index="record", values="value",
                                   aggregate_function="first")
                self._wide = firsts.join(wide, on="record", how="inner").sort("line")
            else:
                self._wide = firsts.clear()
        return self._wide

    def list_events(self) -> pl.DataFrame:
        wide = self._records()
        has = [c for c in ("error_code", "error_message") if c in wide.columns]
        if not has:
            return wide.clear()
        return wide.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in has))

    def list_status(self) -> pl.DataFrame:
        wide = self._records()
        states = [c for c in ("migration_state", "state_description", "replication_status",
                              "health") if c in wide.columns]
        if "machine" not in wide.columns or not states:
            return wide.clear()
        events = self.list_events()["record"]
        return wide.filter(pl.col("machine").is_not_null()
                           & pl.any_horizontal(pl.col(c).is_not_null() for c in states)
                           & ~pl.col("record").is_in(events.implode()))

    def used_lines(self, tables: list[text_tables.Table] | None = None) -> pl.Series:
        """Lines of the shapes that are read as rows (events, status, resources)."""
        records = pl.concat([self.list_events()["record"], self.list_status()["record"]])
        listed = self.list_lines.filter(pl.col("record").is_in(records.implode()))["line"]
        tabled = [line for t in (tables if tables is not None else self._read_tables())
                  for line in t.lines]
        return pl.concat([listed, pl.Series("line", tabled, dtype=pl.Int64)]).unique()

    def _read_tables(self) -> list[text_tables.Table]:
        return ([t for t in self.format_tables if _table_kind(t)]
                + [t for t in self.markdown if _error_table(t)])


def _table_kind(table: text_tables.Table) -> str | None:
    keys = {_key(name) for name in table.names}
    if {"server", "state"} <= keys and "sharedresourcetype" not in keys:
        return "status"
    if {"resource", "status"} <= keys:
        return "resources"
    return None


def _error_table(table: text_tables.Table) -> bool:
    fields = {TABLE_COLUMNS.get(_key(name)) for name in table.names}
    return bool(fields & {"error", "error_id", "error_message"}) and bool(
        fields & {"possible_causes", "recommendation"})


def _parse_events_text(text: str, member: str, ctx: ParseContext) -> Parsed:
    return _parse_pasted(text, member, ctx, "portal_events")


def _parse_status_text(text: str, member: str, ctx: ParseContext) -> Parsed:
    return _parse_pasted(text, member, ctx, "replication_status")


def _parse_pasted(text: str, member: str, ctx: ParseContext, main: str) -> Parsed:
    """Pasted blocks, Markdown error tables, PowerShell tables and lists -> portal_events,
    replication_status and appliance_resources rows; every other line -> text_log rows."""
    diags = Diagnostics()
    lines = text_log.lines_of(text.removeprefix("\ufeff"), member, diags)
    long = lines.filter(pl.col("text").str.len_chars() > MAX_LINE)
    if long.height:
        diags.add("warning", "long-line", f"{long.height} lines longer than 64 KiB were cut to "
                  f"64 KiB (first at line {long['line'][0]})", f"{member}:{long['line'][0]}")
        lines = lines.with_columns(pl.col("text").str.slice(0, MAX_LINE))
    shapes = _Shapes(lines, text)
    read = shapes._read_tables()
    blocks, block_lines = _label_blocks(lines, shapes.used_lines(read))
    events = [_block_events(blocks),
              *[_table_events(t) for t in read if t in shapes.markdown],
              _list_events(shapes.list_events())]
    events = _with_times(events, "time", "ts", ctx, member, diags).sort("line")
    events = tables.conform("portal_events", events.with_columns(member=pl.lit(member)))
    status_parts, resources = [], []
    last_status: pl.DataFrame | None = None
    for table in shapes.format_tables:
        kind = _table_kind(table)
        if kind == "status":
            last_status = _status_rows(table)
            status_parts.append(last_status)
        elif kind == "resources":
            resources.append(_resource_rows(table, last_status))
    status_parts.append(_list_status(shapes.list_status()))
    status = _with_times(status_parts, "last_sync", "last_sync", ctx, member, diags).sort("line")
    status = tables.conform("replication_status", status.with_columns(member=pl.lit(member)))
    resources = tables.concat("appliance_resources",
                              [r.with_columns(member=pl.lit(member)) for r in resources])
    used = pl.concat([shapes.used_lines(read), block_lines]).unique()
    outside = lines.filter(~pl.col("line").is_in(used.implode()))
    text_rows = text_log.parse_lines(outside, member, ctx, diags, form="pasted")
    found = {"portal_events": events, "replication_status": status,
             "appliance_resources": resources, "text_log": text_rows}
    out = {name: frame for name, frame in found.items() if frame.height or name == main}
    times = [events["ts"], status["last_sync"],
             text_rows.filter(~pl.col("yearless").fill_null(False))["ts"]]
    ts = pl.concat([t.drop_nulls() for t in times])
    return Parsed(tables=out, records=sum(frame.height for frame in out.values()), unparsed=0,
                  first=ts.min() if ts.len() else None, last=ts.max() if ts.len() else None,
                  diagnostics=diags)


def _with_times(frames: list[pl.DataFrame], text_col: str, ts_col: str, ctx: ParseContext,
                member: str, diags: Diagnostics) -> pl.DataFrame:
    """The frames as one (missing columns null), times read by _with_time: one diagnostic for
    all of them."""
    frames = [f for f in frames if f.height] or [_NO_ROWS]
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    frames = [f.with_columns(pl.lit(None, pl.Utf8).alias(c) for c in columns if c not in f.columns)
              .select(columns) for f in frames]
    return _with_time(pl.concat(frames, how="vertical_relaxed"), text_col, ts_col, ctx.portal_tz,
                      member, diags)


def _label_blocks(lines: pl.DataFrame, used: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
    """Blocks of label lines and their values: one row per block that has an Error ID or Error
    Message label (line, form, md, labels and a column per field), and the lines they cover.

    A value is the text after the label's colon and the lines below it, down to the next label
    or boundary; for a value given on the label's line, down to the first blank line only."""
    text = pl.col("text")
    found = lines.with_columns(
        blank=text.str.strip_chars() == "",
        used=pl.col("line").is_in(used.implode()),
        lab=pl.when(text.str.len_chars() < 4096).then(text).str.extract_groups(_LABEL),
    )
    lab = pl.col("lab").struct.field
    found = found.with_columns(
        field=pl.when(~pl.col("used")).then(
            lab("label").str.to_lowercase().str.replace_all(r"[\W_]+", "")
            .replace_strict(TEXT_LABELS, default=None)),
        inline=lab("value").fill_null(""),
        md=lab("hash").is_not_null() | lab("bold").is_not_null(),
    ).drop("lab")
    is_label = pl.col("field").is_not_null()
    boundary = pl.col("used") | (~is_label & text.str.contains(_BOUNDARY))
    found = found.with_columns(head=is_label | boundary)
    found = found.with_columns(seg=pl.col("head").cum_sum())
    # A value on the label's line ends at a blank line. One below the label may start after
    # blank lines and hold several paragraphs, but past a blank line only list items (and
    # indented lines) carry it on: the first other line ends it (a greeting after a block).
    text_line = ~pl.col("head") & ~pl.col("blank")
    listed = text.str.contains(r"^\s*(?:[-•*+]|\d{1,2}[.)])\s|^\s+\S")
    found = found.with_columns(
        seg_field=pl.col("field").first().over("seg"),
        seg_inline=(pl.col("inline") != "").first().over("seg"),
        blanks=pl.col("blank").cum_sum().over("seg"),
        started=text_line.cum_sum().over("seg"),
    )
    gap = pl.col("blank") & (pl.col("started") > 0)
    found = found.with_columns(gaps=gap.cum_sum().over("seg"))
    found = found.with_columns(
        ended=(text_line & ~listed & (pl.col("gaps") > 0)).cum_sum().over("seg") > 0)
    value_line = (text_line & pl.col("seg_field").is_not_null()
                  & pl.when(pl.col("seg_inline")).then(pl.col("blanks") == 0)
                  .otherwise(~pl.col("ended")))
    found = found.with_columns(value_line=value_line)
    found = found.with_columns(
        outside=(~is_label & ~pl.col("value_line") & ~pl.col("blank")).cum_sum())
    values = (found.filter("value_line").group_by("seg")
              .agg(more=text.str.strip_chars().str.join("\n")))
    labels = found.filter(is_label).join(values, on="seg", how="left", maintain_order="left")
    labels = labels.with_columns(rank=pl.col("field").replace_strict(_RANK, return_dtype=pl.Int64))
    prev_field, prev_rank = pl.col("field").shift(1), pl.col("rank").shift(1)
    opens = (prev_field.is_null() | (pl.col("field") == "machine") | (pl.col("rank") < prev_rank)
             | (pl.col("field") == prev_field) | (pl.col("outside") != pl.col("outside").shift(1)))
    value = pl.concat_str(pl.col("inline"), pl.col("more"), separator="\n", ignore_nulls=True)
    labels = labels.with_columns(block=opens.cum_sum(), value=value.str.strip_chars())
    fields = sorted(_RANK)
    blocks = labels.group_by("block").agg(
        pl.col("line").min(), md=pl.col("md").any(), labels=pl.len(),
        has=pl.col("field").is_in(["error_id", "error_message"]).any(),
        *[pl.col("value").filter(pl.col("field") == f).first().alias(f) for f in fields],
    ).filter("has").sort("line").with_columns(
        pl.col(fields).replace("", None))
    covered = labels.join(blocks.select("block"), on="block", how="semi").select("seg")
    block_lines = found.join(covered, on="seg", how="semi").filter(
        pl.col("field").is_not_null() | pl.col("value_line"))["line"]
    return blocks.drop("has", "block"), block_lines


def _block_events(blocks: pl.DataFrame) -> pl.DataFrame:
    if not blocks.height:
        return _NO_ROWS
    provider_text = pl.concat_str(pl.col("provider"), pl.col("error_message"), separator="\n",
                                  ignore_nulls=True)
    message = pl.coalesce(pl.col("provider_message"),
                          provider_text.str.extract(_PROVIDER_MESSAGE, 1))
    return blocks.select(
        "line", "machine", "error_message", "possible_causes", "recommendation", "time",
        form=pl.when("md").then(pl.lit("markdown")).otherwise(pl.lit("text")),
        error_id=pl.col("error_id").str.split("\n").list.first().str.strip_chars(" *`'\""),
        provider_code=pl.coalesce(pl.col("provider_code"),
                                  provider_text.str.extract(_PROVIDER_CODE, 1)),
        provider_message=pl.concat_str(pl.when(message != "").then(message),
                                       pl.col("provider_causes"), pl.col("provider_action"),
                                       separator="\n\n", ignore_nulls=True),
    ).with_columns(pl.col("provider_message").replace("", None))


def _table_events(table: text_tables.Table) -> pl.DataFrame:
    """Rows of a Markdown error table; the error cell reads `<id>:<name>` (`**566**:NoDisk...`)."""
    columns: dict[str, str] = {}
    for i, name in enumerate(table.names):
        columns.setdefault(TABLE_COLUMNS.get(_key(name), ""), f"c{i}")
    cell = {f: pl.col(c) for f, c in columns.items() if f}
    none = pl.lit(None, pl.Utf8)
    error = cell.get("error", none).str.extract_groups(r"(?s)^(?P<id>[^:]+?)\s*:\s*(?P<name>.+)$")
    numeric = error.struct.field("id").str.contains(r"^\d+$")
    whole = cell.get("error", none)
    rows = table.rows.select(
        "line",
        error_id=pl.coalesce(cell.get("error_id", none),
                             pl.when(numeric).then(error.struct.field("id")),
                             pl.when(whole.str.contains(r"^\d+$")).then(whole)),
        event=pl.coalesce(cell.get("event", none),
                          pl.when(numeric).then(error.struct.field("name"))
                          .otherwise(error.struct.field("id"))),
        # `<id>:<name>` gives the name; `<name>:<text>` keeps both, as written
        error_message=pl.coalesce(cell.get("error_message", none),
                                  pl.when(numeric).then(error.struct.field("name")),
                                  pl.when(~whole.str.contains(r"^\d+$")).then(whole)),
        possible_causes=cell.get("possible_causes", none),
        recommendation=cell.get("recommendation", none),
        form=pl.lit("markdown"),
    )
    return rows.filter(pl.col("error_id").is_not_null() | pl.col("error_message").is_not_null())


def _list_events(records: pl.DataFrame) -> pl.DataFrame:
    """Format-List health errors: ErrorCode is the error's id, ErrorId ("6:8010") its reference."""
    if not records.height:
        return _NO_ROWS
    col = {c: pl.col(c) for c in records.columns}
    none = pl.lit(None, pl.Utf8)
    return records.select(
        "line", form=pl.lit("powershell"),
        error_id=pl.coalesce(col.get("error_code", none), col.get("error_ref", none)),
        event_code=pl.when(col.get("error_code", none).is_not_null()).then(col.get("error_ref", none)),
        **{f: col.get(f, none) for f in ("error_message", "possible_causes", "recommendation",
                                          "time", "event", "severity", "event_type", "machine",
                                          "health", "provider_message")},
    )


def _status_rows(table: text_tables.Table) -> pl.DataFrame:
    columns = {}
    for i, name in enumerate(table.names):
        target = STATUS_COLUMNS.get(_key(name))
        if target and target not in columns:
            columns[target] = pl.col(f"c{i}")
    return table.rows.select("line", *[pl.when(expr != "-").then(expr).alias(target)
                                       for target, expr in columns.items()])


def _list_status(records: pl.DataFrame) -> pl.DataFrame:
    if not records.height:
        return _NO_ROWS
    col = {c: pl.col(c) for c in records.columns}
    none = pl.lit(None, pl.Utf8)
    return records.select(
        "line", server=col["machine"], health=col.get("health", none),
        state=pl.coalesce(col.get("state_description", none), col.get("migration_state", none),
                          col.get("replication_status", none)),
        last_sync=col.get("last_sync", none))


def _resource_rows(table: text_tables.Table, status: pl.DataFrame | None) -> pl.DataFrame:
    """The resource table; appliance and server from the status table printed above it when that
    names one server."""
    names = {_key(name): f"c{i}" for i, name in reversed(list(enumerate(table.names)))}
    none = pl.lit(None, pl.Utf8)

    def cell(key: str) -> pl.Expr:
        expr = pl.col(names[key]) if key in names else none
        return pl.when(expr != "-").then(expr)

    resource = cell("resource")
    kind = pl.lit("other")
    for word, name in reversed(RESOURCE_KINDS):
        kind = pl.when(resource.str.to_lowercase().str.contains(word, literal=True)) \
            .then(pl.lit(name)).otherwise(kind)
    one = status is not None and status.height == 1
    return table.rows.select(
        "line", resource=resource, kind=kind, capacity=cell("capacity"),
        utilization=cell("utilizationforservermigrations"),
        total_utilization=cell("totalutilization"), status=cell("status"),
        appliance=pl.lit(status["appliance"][0] if one and "appliance" in status.columns else None,
                         pl.Utf8),
        server=pl.lit(status["server"][0] if one and "server" in status.columns else None, pl.Utf8),
    )


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
# A paste fills every table its shapes call for; the lines around them become text_log rows.
_PASTED = ("portal_events", "replication_status", "appliance_resources", "text_log")
EVENTS_TEXT = Source("portal_events", "events_text", _PASTED, _sniff_events_text, _parse_events_text)
REPLICATION_STATUS = Source("replication_status", "status_csv", ("replication_status",), _sniff_status_csv,
                            _parse_status_csv)
STATUS_TEXT = Source("replication_status", "status_text", _PASTED, _sniff_status_text, _parse_status_text)
SOURCES = [EVENTS_CSV, EVENTS_JSON, EVENTS_TEXT, REPLICATION_STATUS, STATUS_TEXT]
