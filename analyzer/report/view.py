"""The analysis document reshaped for the page: what the template and the timeline script show.

Facts come from the document; this module only groups, counts, sorts and formats them. It is
tolerant: a field the pipeline left out (or filled with the wrong type) shows as "—" or is left
out of the timeline, never an exception, because a report is most needed when input is odd.
"""

from __future__ import annotations

from collections import Counter
from itertools import chain, islice

from markupsafe import Markup
import polars as pl

import analyzer
from analyzer.diagnostics import incomplete_reasons_in
from analyzer.i18n import Messages, format_iso, messages, parse_iso
from analyzer.parsers.timeparse import usual_utc
from analyzer.report.jsontext import same_with_orjson

HEALTH_ORDER = ("critical", "warning", "unknown", "healthy")
SEVERITY_ORDER = ("critical", "warning", "info")
CONFIDENCE_ORDER = ("high", "medium", "low")
OUTCOMES = ("succeeded", "failed", "in_progress", "incomplete")
CYCLE_TYPES = ("initial", "delta", "resync", "final_delta")
KNOWN_SOURCES = ("gateway_log", "portal_events", "vcenter_tasks")
FAILURE_SOURCES = ("gateway_log", "portal_events")  # the sources that show replication failing
# The words of the page are in the message catalogue (analyzer/i18n): sources as `source.<name>`,
# an unexplained template's sources as `template_source.<name>`, the rest by what they label.
EVIDENCE_SHOWN = 6  # evidence lines shown on a card before the rest is folded
TEMPLATES_SHOWN = 10  # unexplained templates shown before the rest is folded
FINDINGS_OPEN = 8  # up to this many findings show their example lines unfolded
UNRECOGNISED = "unrecognised_error"
NOTE_THE_ERROR = "the error"  # the note of a verdict's own error line (verdicts._error_entries)
EN = messages("en")
IN_ENGLISH = Markup(' lang="en"')  # marks English text in a page of another language


# ---------------------------------------------------------------- small formatting helpers

def text(value: object) -> str:
    return "" if value is None else str(value)


ACRONYMS = {"vcenter": "vCenter", "esxi": "ESXi", "cbt": "CBT", "nfc": "NFC", "vddk": "VDDK",
            "rdm": "RDM", "vm": "VM", "vms": "VMs", "id": "ID"}


def humanize(ident: object) -> str:
    """'vcenter_read_throttled' -> 'vCenter read throttled'."""
    words = [ACRONYMS.get(w.lower(), w) for w in text(ident).replace("_", " ").split()]
    if words and words[0] == words[0].lower():
        words[0] = words[0][:1].upper() + words[0][1:]
    return " ".join(words)


def epoch(value: object) -> float | None:
    """Seconds since 1970 for an ISO 8601 time (naive means UTC), None if it is not one."""
    moment = parse_iso(value)
    return None if moment is None else moment.timestamp()


def show_time(value: object, m: Messages = EN) -> str:
    shown = format_iso(value, m.lang)
    return (text(value) or "—") if shown is None else shown


def show_duration(seconds: float | None, m: Messages = EN) -> str:
    if seconds is None or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [m.text("time.days", n=days)] * bool(days) + [m.text("time.hours", n=hours)] * bool(hours)
    parts += [m.text("time.minutes", n=minutes)] * bool(minutes)
    parts += [m.text("time.seconds", n=secs)] * (bool(secs) and not days)
    return " ".join(parts[:2]) or m.text("time.seconds", n=0)


def show_bytes(value: object) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""  # unreachable


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _or_minus_one(value: object) -> float:
    number = _number(value)
    return -1 if number is None else number


def _ranked(value: object, order: tuple[str, ...]) -> int:
    return order.index(value) if value in order else len(order)


def _dicts(value: object) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _strings(value: object) -> list[str]:
    return [text(item) for item in value if item is not None] if isinstance(value, list) else []


# ---------------------------------------------------------------- header

def _header(doc: dict, m: Messages) -> dict:
    bundle = doc.get("bundle") if isinstance(doc.get("bundle"), dict) else {}
    sources = bundle.get("sources") if isinstance(bundle.get("sources"), dict) else {}
    missing = _strings(bundle.get("missing_sources"))
    not_evaluated: dict[str, list[str]] = {}
    for item in _dicts(doc.get("not_evaluated")):
        not_evaluated.setdefault(text(item.get("source")), []).append(text(item.get("signature")))

    rows = []
    for name in sorted(set(KNOWN_SOURCES) | set(sources) | set(missing) | set(not_evaluated),
                       key=lambda n: (n not in KNOWN_SOURCES, n)):
        stats = sources.get(name) if isinstance(sources.get(name), dict) else None
        rows.append({
            "name": name, "label": m.text(f"source.{name}") if m.has(f"source.{name}") else humanize(name),
            "present": stats is not None,
            "files": text((stats or {}).get("files", "—")),
            "records": text((stats or {}).get("records", "—")),
            "unparsed": text((stats or {}).get("unparsed", "—")),
            "first": show_time((stats or {}).get("first"), m),
            "last": show_time((stats or {}).get("last"), m),
            "not_evaluated": sorted(not_evaluated.get(name, [])),
        })

    skew = bundle.get("clock_skew") if isinstance(bundle.get("clock_skew"), dict) else None
    skew_view = None
    if skew and _number(skew.get("seconds")) is not None:
        seconds = float(skew["seconds"])
        skew_view = {"text": m.text("header.skew_ahead" if seconds >= 0 else "header.skew_behind",
                                    seconds=f"{abs(seconds):.1f}"),
                     "basis": text(skew.get("basis", "?"))}

    diagnostics = sorted(
        ({"severity": text(d.get("severity")) or "info", "code": text(d.get("code")),
          "message": text(d.get("message")), "location": text(d.get("location")),
          # in another language than English: the code's meaning, the English message behind it
          "label": m.text(f"diag.{d.get('code')}") if m.lang != "en" and m.has(f"diag.{d.get('code')}") else "",
          "hint": text(d.get("hint")),
          # the repeats this entry stands for beyond itself, and the lines they are on
          "more": max(int(_number(d.get("count")) or 1) - 1, 0),
          "lines": ", ".join(text(n) for n in _strings(d.get("lines")))}
         for d in _dicts(doc.get("diagnostics"))),
        key=lambda d: (_ranked(d["severity"], ("error", "warning", "info")), d["code"],
                       d["location"]))
    complete = bundle.get("complete") is not False
    reasons = [] if complete else _strings(bundle.get("incomplete_reasons"))
    said = incomplete_reasons_in(_dicts(doc.get("diagnostics")), m) if m.lang != "en" and reasons else []
    return {
        # neither the gateway log nor portal events: nothing says whether replication works
        "no_failure_source": not set(FAILURE_SOURCES) & set(sources),
        "name": text(bundle.get("name")) or m.text("view.unnamed_bundle"),
        "sha256": text(bundle.get("sha256")) or "—",
        "ticket": text(bundle.get("ticket")),
        "analyzed_at": show_time(bundle.get("analyzed_at"), m),
        "version": text(bundle.get("analyzer_version")) or analyzer.__version__,
        "appliance_tz": text(bundle.get("appliance_tz")),
        "clock_skew": skew_view,
        "sources": rows,
        "missing": [r for r in rows if not r["present"]],
        "diagnostics": diagnostics,
        "diagnostic_counts": Counter(d["severity"] for d in diagnostics).most_common(),
        "complete": complete,
        "incomplete_reasons": said or reasons,
        "incomplete_lang": IN_ENGLISH if m.lang != "en" and not said else "",
    }


# ---------------------------------------------------------------- cards

def _evidence(items: object, m: Messages) -> list[dict]:
    lines = []
    for e in _dicts(items):
        member, line = text(e.get("member")), text(e.get("line"))
        note = text(e.get("note"))
        # a detector's note (measured values, built in English) stays English in another language
        english = m.lang != "en" and bool(note) and note != NOTE_THE_ERROR
        lines.append({"source": text(e.get("source")),
                      "where": f"{member}:{line}" if line else member or "—",
                      "ts": show_time(e.get("ts"), m) if e.get("ts") else m.text("view.no_time"),
                      "text": text(e.get("text")),
                      "note": m.text("card.note_error") if note == NOTE_THE_ERROR else note,
                      "note_lang": IN_ENGLISH if english else ""})
    return lines


def _seen(first: object, last: object, m: Messages) -> str:
    """'first → last', one time when they are equal, 'time not given' when the text gave none."""
    if not first and not last:
        return m.text("view.no_time")
    first, last = show_time(first, m), show_time(last, m)
    return first if last in (first, "—") else f"{first} → {last}"


def _in_language(v: dict, key: str, m: Messages, english: object) -> tuple[object, Markup | str]:
    """A text of the document in the page's language: its `<key>_ko` in Korean when there is one,
    else the English, marked as English in a page of another language."""
    if m.lang == "en":
        return english, ""
    value = v.get(f"{key}_{m.lang}")
    if value:
        return value, ""
    return english, IN_ENGLISH if english else ""


def _verdict_card(v: dict, dom_id: str, vm_index: dict[str, int], m: Messages) -> dict:
    error = text(v.get("error")) or "unknown_error"
    vm = v.get("vm")
    evidence = _evidence(v.get("evidence"), m)
    unrecognised = error == UNRECOGNISED
    cause = text(v.get("cause")) or "undetermined"
    title, _ = _in_language(v, "title", m, text(v.get("title")) or humanize(error))
    cause_title, _ = _in_language(v, "cause_title", m, humanize(cause))
    summary, summary_lang = _in_language(v, "summary", m, text(v.get("summary")))
    remediation, remediation_lang = _in_language(v, "remediation", m, _strings(v.get("remediation")))
    if unrecognised:  # the error's own words, in whatever language it was given
        summary, summary_lang = text(v.get("summary")), ""
        remediation, remediation_lang = _strings(v.get("remediation")), ""
    return {
        "unrecognised": unrecognised,
        "stated_causes": _strings(v.get("stated_causes")),
        "seen": _seen(v.get("first_seen"), v.get("last_seen"), m),
        "id": dom_id, "kind": "verdict",
        "vm": text(vm) if vm is not None else None,
        "vm_indices": [vm_index[text(vm)]] if text(vm) in vm_index else [],
        "error": error, "error_code": text(v.get("error_code")),
        "title": title,
        "cause": cause,
        "cause_title": cause_title,
        "confidence": text(v.get("confidence")) or "low",
        "severity": text(v.get("severity")) or "info",
        "cycles": _strings(v.get("cycles")),
        "first_seen": show_time(v.get("first_seen"), m), "last_seen": show_time(v.get("last_seen"), m),
        "summary": summary, "summary_lang": summary_lang,
        "remediation": _strings(remediation), "remediation_lang": remediation_lang,
        "references": _strings(v.get("references")),
        "evidence": evidence[:EVIDENCE_SHOWN], "evidence_more": evidence[EVIDENCE_SHOWN:],
        "errors": [error], "causes": [text(v.get("cause")) or "undetermined"],
    }


def _outage_card(o: dict, dom_id: str, explained: list[dict], vm_index: dict[str, int], m: Messages) -> dict:
    start, end = epoch(o.get("start")), epoch(o.get("end"))
    vms = sorted(set(_strings(o.get("vms"))) | {text(v["vm"]) for v in explained if v["vm"]})
    cause = text(o.get("cause")) or "undetermined"
    severity = min((v["severity"] for v in explained),
                   key=lambda s: _ranked(s, SEVERITY_ORDER), default="warning")
    evidence = _evidence(o.get("evidence"), m)
    shown = {line["where"] for line in evidence}
    cause_title, _ = _in_language(o, "cause_title", m, humanize(cause))
    summary, summary_lang = _in_language(o, "summary", m, text(o.get("summary")))
    remediation_lang = next((v["remediation_lang"] for v in explained if v["remediation_lang"]), "")
    for v in explained:  # the outage card lists each verdict with the lines it adds
        v["own_evidence"] = [line for line in v["evidence"] + v["evidence_more"]
                             if line["where"] not in shown]
    return {
        "id": dom_id, "kind": "outage", "outage_id": text(o.get("id")),
        "cause": cause, "cause_title": cause_title,
        "start": show_time(o.get("start"), m), "end": show_time(o.get("end"), m),
        "raw_start": o.get("start"), "raw_end": o.get("end"),
        "duration": show_duration(end - start if start is not None and end is not None else None, m),
        "summary": summary, "summary_lang": summary_lang,
        "vms": vms, "vm_indices": sorted(vm_index[vm] for vm in vms if vm in vm_index),
        "cycles": _strings(o.get("cycles")),
        "cycle_count": len(set(_strings(o.get("cycles")))
                           | {c for v in explained for c in v["cycles"]}),
        "severity": severity,
        "explained": explained,
        "error_counts": Counter(v["title"] for v in explained).most_common(),
        "remediation": list(dict.fromkeys(r for v in explained for r in v["remediation"])),
        "remediation_lang": remediation_lang,
        "references": list(dict.fromkeys(r for v in explained for r in v["references"])),
        "evidence": evidence[:EVIDENCE_SHOWN], "evidence_more": evidence[EVIDENCE_SHOWN:],
        "errors": sorted({v["error"] for v in explained}), "causes": [cause],
    }


def _cards(doc: dict, vm_index: dict[str, int], m: Messages) -> tuple[list[dict], list[dict]]:
    raw_verdicts = _dicts(doc.get("verdicts"))
    verdicts = [_verdict_card(v, f"v-{n}", vm_index, m) for n, v in enumerate(raw_verdicts)]
    outages = _dicts(doc.get("outages"))
    outage_ids = {text(o.get("id")) for o in outages}
    explained_by: dict[str, list[dict]] = {}
    own_cards = []
    for raw, card in zip(raw_verdicts, verdicts):
        outage = text(raw.get("outage"))
        if outage and outage in outage_ids:
            explained_by.setdefault(outage, []).append(card)
        else:
            own_cards.append(card)
    outage_cards = [_outage_card(o, f"o-{n}", explained_by.get(text(o.get("id")), []), vm_index, m)
                    for n, o in enumerate(outages)]
    outage_cards.sort(key=lambda c: (c["start"], c["outage_id"]))
    own_cards.sort(key=lambda c: (_ranked(c["severity"], SEVERITY_ORDER),
                                  _ranked(c["confidence"], CONFIDENCE_ORDER),
                                  c["vm"] is not None, c["vm"] or "", c["error"], c["cause"]))
    return outage_cards, own_cards


# ---------------------------------------------------------------- VMs, summary, timeline

def _vms(doc: dict, m: Messages) -> list[dict]:
    """VMs in lane order: grouped by ESXi host, then by name."""
    no_host = m.text("view.no_host")
    vms = []
    for raw in _dicts(doc.get("vms")):
        cycles = _dicts(raw.get("cycles"))
        vms.append({
            "raw": raw,
            "name": text(raw.get("vm")) or m.text("view.unnamed_vm"),
            "host": text(raw.get("host")) or no_host,
            "ids": ", ".join(_strings(raw.get("vm_ids"))),
            "health": text(raw.get("health")) if raw.get("health") in HEALTH_ORDER else "unknown",
            "last_success": show_time(raw.get("last_successful_cycle_end"), m)
            if raw.get("last_successful_cycle_end") else m.text("view.never"),
            "last_success_sort": text(raw.get("last_successful_cycle_end")),
            "consecutive": _number(raw.get("consecutive_failures")),
            "cycles": len(cycles),
            "failed": sum(c.get("outcome") == "failed" for c in cycles),
        })
        vms[-1]["health_rank"] = _ranked(vms[-1]["health"], HEALTH_ORDER)
        vms[-1]["health_note"] = _health_note(raw, vms[-1]["health"], m)
    vms.sort(key=lambda v: (v["host"] == no_host, v["host"].lower(), v["name"].lower()))
    for n, vm in enumerate(vms):
        vm["index"] = n
    return vms


def _health_note(raw: dict, health: str, m: Messages) -> str:
    """'portal: critical · cycles: healthy' when the portal's health and the cycle history
    disagree (vms[].derived_health), else ''."""
    derived = raw.get("derived_health")
    if derived not in HEALTH_ORDER or derived == health:
        return ""
    # derived_health exists only beside the portal's
    return m.text("view.health_note", health=m.label("health", health), derived=m.label("health", derived))


def _attach_findings(vms: list[dict], outage_cards: list[dict], cards: list[dict],
                     titles: dict[str, str]) -> None:
    """Per VM: the errors and causes it shows (for filters) and the cards that explain it."""
    by_name = {vm["name"]: vm for vm in vms}
    for vm in vms:
        vm["errors"] = {text(c.get("error")) for c in _dicts(vm["raw"].get("cycles"))
                        if c.get("error")}
        vm["errors"] |= {text(e.get("error")) for e in _dicts(vm["raw"].get("errors"))
                         if e.get("error")}
        vm["causes"], vm["cards"] = set(), []
    for card in outage_cards:
        for name in card["vms"]:
            if name in by_name:
                by_name[name]["causes"].add(card["cause"])
                by_name[name]["cards"].append({"id": card["id"], "label": card["cause_title"]})
        for v in card["explained"]:
            if v["vm"] in by_name:
                by_name[v["vm"]]["errors"].add(v["error"])
    for card in cards:
        if card["vm"] in by_name:
            vm = by_name[card["vm"]]
            vm["errors"].add(card["error"])
            vm["causes"].add(card["cause"])
            vm["cards"].append({"id": card["id"], "label": card["cause_title"]})
    for vm in vms:
        vm["errors"], vm["causes"] = sorted(vm["errors"]), sorted(vm["causes"])
        vm["error_titles"] = [titles.get(e) or humanize(e) for e in vm["errors"]]


def _summary(vms: list[dict], outage_cards: list[dict], cards: list[dict],
             titles: dict[str, str], cause_titles: dict[str, str]) -> dict:
    health = Counter(vm["health"] for vm in vms)
    all_verdicts = cards + [v for o in outage_cards for v in o["explained"]]
    severity = Counter(v["severity"] for v in all_verdicts)
    outcomes = Counter(text(c.get("outcome")) for vm in vms
                       for c in _dicts(vm["raw"].get("cycles")))
    errors = Counter(e for vm in vms for e in vm["errors"])
    errors.update(v["error"] for v in cards if v["vm"] is None)
    causes = Counter(c for vm in vms for c in vm["causes"])
    causes.update(v["cause"] for v in cards if v["vm"] is None)
    return {
        "vm_total": len(vms),
        "health": [(h, health.get(h, 0)) for h in HEALTH_ORDER],
        "verdict_total": len(all_verdicts),
        "severity": [(s, severity.get(s, 0)) for s in SEVERITY_ORDER],
        "outages": len(outage_cards),
        "cycle_total": sum(outcomes.values()),
        "outcomes": [(o, outcomes.get(o, 0)) for o in OUTCOMES],
        "errors": [(e, titles.get(e) or humanize(e), n)
                   for e, n in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))],
        "causes": [(c, cause_titles.get(c) or humanize(c), n)
                   for c, n in sorted(causes.items(), key=lambda kv: (-kv[1], kv[0]))],
    }


class _Strings(dict):
    """Interns repeated strings (errors, methods, hosts...) so the page data stays small."""

    def __init__(self) -> None:
        super().__init__()
        self.table: list[str] = []

    def __missing__(self, key: str) -> int:
        self[key] = len(self.table)
        self.table.append(key)
        return self[key]

    def index(self, value: object) -> int:
        if value.__class__ is str:
            return self[value] if value else -1
        return -1 if value is None or value == "" else self[text(value)]


def _seconds(values) -> list[int | None]:
    """int(epoch(value)) of each value, None where it is not a time. The document's own form
    (timeparse.to_iso: a fleet's report reads 100,000s of them) is read by polars (usual_utc),
    any other value one by one."""
    values = list(values)
    fast = (pl.DataFrame({"text": [v if v.__class__ is str else None for v in values]}, schema={"text": pl.Utf8})
            .select(usual_utc(pl.col("text")).dt.epoch("s")).to_series().to_list())
    # before 1970, int() of a fraction rounds up where the epoch rounds down: one by one
    return [seconds if seconds is not None and seconds >= 0 else _one_second(v)
            for seconds, v in zip(fast, values)]


def _lane_seconds(rows_of: list[list[dict]], key: str) -> list[list[int | None]]:
    """_seconds of each row's `key`, lane by lane (all lanes read in one go)."""
    flat = iter(_seconds(row.get(key) for rows in rows_of for row in rows))
    return [list(islice(flat, len(rows))) for rows in rows_of]


def _one_second(value: object) -> int | None:
    seconds = epoch(value)
    return None if seconds is None else int(seconds)


def _task_frame(vms: list[dict], tasks: pl.DataFrame | None) -> tuple[pl.DataFrame, list]:
    """Every lane's tasks in one frame (`key`, start and end in whole seconds since 1970, null
    when not a time, and the _TASK_TEXTS), and each lane's key in it: from the task table when
    given (keyed by its `vm`, the document's name), else from the document's own lists (keyed by
    the lane's place)."""
    if tasks is None:
        listed = [(n, t) for n, vm in enumerate(vms) for t in _dicts(vm["raw"].get("tasks"))]
        columns = {"key": [n for n, _ in listed],
                   "start": _seconds(t.get("start") for _, t in listed),
                   "end": _seconds(t.get("end") for _, t in listed),
                   **{c: [None if (v := t.get(c)) is None else text(v) for _, t in listed] for c in _TASK_TEXTS}}
        schema = {"key": pl.Int64, "start": pl.Int64, "end": pl.Int64, **dict.fromkeys(_TASK_TEXTS, pl.Utf8)}
        return pl.DataFrame(columns, schema=schema), list(range(len(vms)))
    keys = [vm["raw"].get("vm") for vm in vms]
    frame = tasks.select(pl.col("vm").cast(pl.Utf8).alias("key"), pl.col("start").dt.epoch("s"),
                         pl.col("end").dt.epoch("s"), *(pl.col(c).cast(pl.Utf8) for c in _TASK_TEXTS))
    return frame.filter(pl.col("key").is_in([k for k in keys if k is not None])), keys


def _task_columns(frame: pl.DataFrame, keys: list, t0: int, s) -> list[list[list]]:
    """Per lane (its key in `keys`): its tasks with a start, as the columns [start, duration|-1,
    method, outcome, fault type, initiator, task id]. The first start is in seconds after t0,
    each next one in seconds after the start before it; `s` interns the texts but the task id.
    Small numbers in columns compress far better than rows of times (see _timeline)."""
    frame = frame.filter(pl.col("start").is_not_null()).sort("key", maintain_order=True)
    coded = []
    for c in _TASK_TEXTS[:4]:
        values = frame[c].drop_nulls().unique(maintain_order=True).to_list()
        coded.append(pl.col(c).replace_strict(values, [s(v) for v in values], default=-1,
                                              return_dtype=pl.Int64).fill_null(-1))
    start, first = pl.col("start"), pl.col("key").ne_missing(pl.col("key").shift(1))
    columns = frame.select(
        pl.when(first).then(start - t0).otherwise(start - start.shift(1)),
        pl.when(pl.col("end").is_null()).then(-1).otherwise(pl.col("end") - start).alias("duration"),
        *coded, pl.col("task_id").fill_null(""))
    spans, at = {}, 0
    for key, n in frame.group_by("key", maintain_order=True).len().iter_rows():
        spans[key] = (at, at + n)
        at += n
    values = [columns[c].to_list() for c in columns.columns]
    return [[column[slice(*spans.get(key, (0, 0)))] for column in values] for key in keys]


_TASK_TEXTS = ("method", "outcome", "fault_type", "initiator", "task_id")


def _timeline(doc: dict, vms: list[dict], outage_cards: list[dict], cards: list[dict],
              header: dict, titles: dict[str, str], m: Messages,
              task_frame: tuple[pl.DataFrame, list]) -> dict:
    """Compact arrays for the timeline script; times are whole seconds after `t0`.

    vm:     [name, host, health, [error ids], [cause ids], [findings], last success,
             failures in a row|-1, health note ('' or 'portal: … · cycles: …')]
    cycle:  [start, end|-1, outcome, type, id, error, uploaded bytes|-1, duration s|-1,
             rate MB/s|-1, failed state, [findings]]
    tasks:  per VM, columns rather than rows (see _task_columns): [[start], [duration|-1],
            [method], [outcome], [fault type], [initiator], [task id]], each start after the one
            before, a duration rather than an end: small numbers compress; the page turns them
            back into rows of [start, end|-1, method, outcome, fault type, initiator, task id]
    error:  [ts, error, source, text]
    outage: [start, end, cause, finding]
    finding: see _findings
    Strings other than ids and texts are indices into `strings` (-1 = none).
    A number taken from the document as it is must be checked in `_plain_timeline`.
    """
    bundle = doc.get("bundle") if isinstance(doc.get("bundle"), dict) else {}
    sources = bundle.get("sources") if isinstance(bundle.get("sources"), dict) else {}
    # Each time is parsed once (a fleet has hundreds of thousands): per VM its cycles and errors
    # with their times in whole seconds since 1970 (the tasks': _task_frame).
    cycles_of = [_dicts(vm["raw"].get("cycles")) for vm in vms]
    errors_of = [_dicts(vm["raw"].get("errors")) for vm in vms]
    per_vm = list(zip(cycles_of, _lane_seconds(cycles_of, "start"), _lane_seconds(cycles_of, "end"),
                      errors_of, _lane_seconds(errors_of, "ts")))
    del cycles_of, errors_of
    outages = _dicts(doc.get("outages"))
    task_times, task_keys = task_frame
    moments = [x for times in per_vm for x in chain(*times[1:3], times[4])]
    moments += task_times.select(pl.min_horizontal(pl.min("start"), pl.min("end")).alias("first"),
                                 pl.max_horizontal(pl.max("start"), pl.max("end")).alias("last")).row(0)
    moments += _seconds(x for o in outages for x in (o.get("start"), o.get("end")))
    if moments:  # in-progress cycles are drawn up to the end of the bundle's sources
        moments += _seconds(x for src in sources.values() if isinstance(src, dict)
                            for x in (src.get("first"), src.get("last")))
    moments = [m for m in moments if m is not None]
    t0 = min(moments, default=0)
    t1 = max(moments, default=0) + 1

    def rel(value: object) -> int:
        seconds = epoch(value)
        return -1 if seconds is None else int(seconds) - t0

    strings = _Strings()
    s = strings.index
    findings, outage_entry, of_vm, of_cycle = _findings(outage_cards, cards, m)

    tasks = _task_columns(task_times, task_keys, t0, s)
    lanes, cycles, errors = [], [], []
    per_vm.reverse()
    for vm in vms:  # popped: each VM's times are freed once its rows are made
        vm_cycles, c_start, c_end, vm_errors, e_ts = per_vm.pop()
        lanes.append([vm["name"], s(vm["host"]), vm["health"], vm["errors"], vm["causes"],
                      of_vm.get(vm["name"], []), vm["last_success"],
                      -1 if vm["consecutive"] is None else vm["consecutive"], vm["health_note"]])
        row = []
        for c, start, end in zip(vm_cycles, c_start, c_end):
            if start is None:
                continue
            rate = _number(c.get("rate_mbps"))
            row.append([start - t0, -1 if end is None else end - t0,
                        _ranked(c.get("outcome"), OUTCOMES), _ranked(c.get("type"), CYCLE_TYPES),
                        text(c.get("id")), s(c.get("error")),
                        _or_minus_one(c.get("uploaded_bytes")),
                        _or_minus_one(c.get("duration_sec")),
                        round(rate, 2) if rate is not None else -1,
                        s(c.get("failed_state")),
                        of_cycle.get(text(c.get("id")), [])])
        cycles.append(row)
        errors.append([[ts - t0, s(e.get("error")), s(e.get("source")), text(e.get("text"))]
                       for e, ts in zip(vm_errors, e_ts) if ts is not None])
    outages = [[rel(card["raw_start"]), rel(card["raw_end"]), s(card["cause"]),
                outage_entry[card["id"]]]
               for card in outage_cards if epoch(card["raw_start"]) is not None]
    return {
        "empty": not moments, "t0": t0, "t1": t1 - t0, "tz": header["appliance_tz"] or None,
        "outcomes": list(OUTCOMES), "types": list(CYCLE_TYPES),
        "vms": lanes, "cycles": cycles, "tasks": tasks, "errors": errors, "outages": outages,
        "findings": findings,
        "titles": titles,
        "strings": strings.table,
    }


def _plain_timeline(timeline: dict) -> bool:
    """True if orjson writes the timeline as json does (see page.script_json).

    The timeline holds only strings made by `text`, ints, lists and dicts, except for the
    numbers taken from the document as they are: those are checked here.
    """
    numbers = [lane[7] for lane in timeline["vms"]]
    numbers += [x for rows in timeline["cycles"] for row in rows for x in row[6:9]]
    return same_with_orjson(numbers)


def _findings(outage_cards: list[dict], cards: list[dict], m: Messages):
    """What the timeline says about a cycle or a VM: one entry per verdict, plus one per outage.

    entry: [card dom id, title, cause, severity, confidence, note]. A verdict explained by an
    outage points at the outage's card, which holds the evidence shown once.
    Returns (entries, outage card id -> entry, VM name -> entries, cycle id -> entries).
    """
    entries: list[list] = []
    outage_entry: dict[str, int] = {}
    of_vm: dict[str, list[int]] = {}
    of_cycle: dict[str, list[int]] = {}

    def add(entry: list, vm: str | None, cycles: list[str]) -> int:
        entries.append(entry)
        if vm is not None:
            of_vm.setdefault(vm, []).append(len(entries) - 1)
        for cycle in cycles:
            of_cycle.setdefault(cycle, []).append(len(entries) - 1)
        return len(entries) - 1

    for card in outage_cards:
        window = f"{card['start']} → {card['end']}"
        outage_entry[card["id"]] = add(
            [card["id"], m.text("timeline.outage_title", cause_title=card["cause_title"]), card["cause"],
             card["severity"], "", m.text("timeline.outage_note", window=window, cycles=card["cycle_count"],
                                          vms=len(card["vms"]))],
            None, [])
        for v in card["explained"]:
            add([card["id"], v["title"], v["cause"], v["severity"], v["confidence"],
                 m.text("timeline.explained_by", window=window)], v["vm"], v["cycles"])
        explained_cycles = {c for v in card["explained"] for c in v["cycles"]}
        explained_vms = {v["vm"] for v in card["explained"]}
        for cycle in card["cycles"]:
            if cycle not in explained_cycles:
                of_cycle.setdefault(cycle, []).append(outage_entry[card["id"]])
        for vm in card["vms"]:
            if vm not in explained_vms:
                of_vm.setdefault(vm, []).append(outage_entry[card["id"]])
    for card in cards:
        add([card["id"], card["title"], card["cause"], card["severity"], card["confidence"], ""],
            card["vm"], card["cycles"])
    return entries, outage_entry, of_vm, of_cycle


# ---------------------------------------------------------------- what was recognised, what was not

def _recognised(doc: dict, m: Messages) -> list[dict]:
    """`findings`: every signature that matched, errors first, then the most frequent."""
    out = []
    for f in _dicts(doc.get("findings")):
        signature = text(f.get("signature")) or "unknown_signature"
        kind = text(f.get("kind")) if f.get("kind") in ("error", "evidence") else "evidence"
        count = _number(f.get("count"))
        out.append({
            "signature": signature,
            "title": _in_language(f, "title", m, text(f.get("title")) or humanize(signature))[0],
            "kind": kind, "count": int(count) if count is not None else 0,
            "seen": _seen(f.get("first_seen"), f.get("last_seen"), m),
            "vms": _strings(f.get("vms")),
            "examples": _evidence(f.get("examples"), m),
        })
    out.sort(key=lambda f: (f["kind"] != "error", -f["count"], f["signature"]))
    return out


def _unexplained(doc: dict, m: Messages) -> list[dict]:
    """`unexplained`: problem records no signature explains, as templates, largest first."""
    out = []
    for t in _dicts(doc.get("unexplained")):
        example = t.get("example") if isinstance(t.get("example"), dict) else {}
        member, line = text(example.get("member")), text(example.get("line"))
        count = _number(t.get("count"))
        out.append({
            "template": text(t.get("template")), "count": int(count) if count is not None else 0,
            "seen": _seen(t.get("first_seen"), t.get("last_seen"), m),
            "sources": ", ".join(m.text(f"template_source.{x}") if m.has(f"template_source.{x}") else humanize(x)
                                 for x in _strings(t.get("sources"))),
            "where": f"{member}:{line}" if line else member or "—",
            "text": text(example.get("text")),
        })
    out.sort(key=lambda t: -t["count"])  # stable: the document's order among equal counts
    return out


def build(doc: dict, m: Messages = EN, tasks: pl.DataFrame | None = None) -> dict:
    """Everything the report template needs, from an analysis document, in `m`'s language.
    `tasks`: every VM's vCenter tasks (pipeline.Analysis.tasks) for the timeline; without it,
    those the document lists."""
    if not isinstance(doc, dict):
        doc = {}
    header = _header(doc, m)
    vms = _vms(doc, m)
    vm_index = {vm["name"]: vm["index"] for vm in vms}
    outage_cards, cards = _cards(doc, vm_index, m)
    explained = [v for o in outage_cards for v in o["explained"]]
    recognised = _recognised(doc, m)
    titles = {}
    if m.lang != "en":  # errors seen with no verdict: their signature's title, not the id's English
        titles = {f["signature"]: f["title"] for f in recognised if f["kind"] == "error"}
    titles.update({v["error"]: v["title"] for v in cards + explained})
    if UNRECOGNISED in titles:  # one id for many errors: each card has its own title, the filter this one
        titles[UNRECOGNISED] = m.text("view.unrecognised_filter")
    cause_titles = {c["cause"]: c["cause_title"] for c in outage_cards + cards + explained} \
        if m.lang != "en" else {}
    _attach_findings(vms, outage_cards, cards, titles)
    hosts = Counter(vm["host"] for vm in vms)
    timeline = _timeline(doc, vms, outage_cards, cards, header, titles, m, _task_frame(vms, tasks))
    unexplained = _unexplained(doc, m)
    return {
        "recognised": recognised,
        "findings_open": len(recognised) <= FINDINGS_OPEN,
        "unexplained": unexplained[:TEMPLATES_SHOWN],
        "unexplained_more": unexplained[TEMPLATES_SHOWN:],
        "unexplained_total": sum(t["count"] for t in unexplained),
        "header": header,
        "summary": _summary(vms, outage_cards, cards, titles, cause_titles),
        "cause_titles": cause_titles,
        "outage_cards": outage_cards,
        "cards": cards,
        "vms": sorted(vms, key=lambda v: (_ranked(v["health"], HEALTH_ORDER),
                                          v["name"].lower())),
        "host_count": len(hosts),
        "timeline": timeline,
        "timeline_checked": _plain_timeline(timeline),
    }
