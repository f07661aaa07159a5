"""Root-cause verdicts: for each failure, the cause whose evidence is present around it.

failures -> candidate causes -> evidence in window and scope -> choice of cause -> document.

A failure is one error of one VM in one cycle (its repeated lines grouped), or a condition with
no error event seen at the end of the bundle (stalled, slow). Each cause of the error's signature
names evidence ids: evidence signatures (matches) or built-in detectors (analyzer/detectors.py),
for what no regex can see. Evidence counts when it falls in the cause's window around the failure
and in its scope (same VM, same ESXi host, whole appliance); a host- or appliance-wide failure
followed by a successful cycle before the failure recovered (a transient) and does not. Cause
choice, confidence and severity follow CATALOGUE.md's decision rules. Appliance-wide causes backed
by an interval become one outage that lists every VM and cycle it explains. The case judged, its
failures and the findings are the types of analyzer/evidence.py.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import polars as pl

from analyzer import detectors, findings, i18n, identity
from analyzer.cycles import CycleResult
from analyzer.diagnostics import Diagnostics
from analyzer.evidence import (RULED_OUT, SLOW, STALLED, Case, Entry, Failure, Finding, Undecided,
                               family_of, interned_list, short_host)
from analyzer.parsers.timeparse import to_iso, to_iso_expr
from analyzer.redact import redact_columns, redact_series
from analyzer.signatures.load import cause_titles_ko
from analyzer.signatures.model import Cause, Library, Signature

UNDETERMINED = "undetermined"
UNRECOGNISED = "unrecognised_error"  # an error no signature of the catalogue knows (OUTPUT.md)
CONFIDENCE_RANK = {"high": 0, "medium": 1, "low": 2}
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
MAX_EVIDENCE = 20  # lines shown per verdict / outage
REGROUP_GAP = timedelta(minutes=15)  # repeated lines of an error with no cycle form one failure
CYCLE_GRACE = timedelta(minutes=10)  # a portal event may follow its cycle's end
# Wording for causes that no signature titles (cause ids are catalogue ids, not signature ids).
CAUSE_TITLES = {
    "appliance_down": "the appliance was down",
    "gateway_service_down": "the gateway service was not running",
    "gateway_storage_unreachable": "the gateway storage account was unreachable",
    "cache_storage_unreachable": "the cache storage account was unreachable",
    "service_bus_unreachable": "Service Bus was unreachable",
    "event_hub_unreachable": "Event Hubs were unreachable",
    "key_vault_unreachable": "Key Vault was unreachable",
    "vcenter_read_throttled": "reading disks from vCenter was throttled",
    "conflicting_vcenter_task": "another vCenter task on the VM overlapped the cycle",
    "snapshot_creation_stuck": "the snapshot task did not finish",
    "nfc_buffer_exhausted": "the ESXi host's NFC buffer ran out",
    "appliance_overloaded": "the appliance ran at its concurrency limit",
    UNDETERMINED: "no evidence singles out a cause",
}


@dataclass
class Decision:
    vms: list[dict]  # doc["vms"]
    verdicts: list[dict]  # doc["verdicts"]
    outages: list[dict]  # doc["outages"]
    not_evaluated: list[dict]
    findings: list[dict]  # doc["findings"]: every signature that matched
    unexplained: list[dict]  # doc["unexplained"]: problem records no signature explains, as templates
    # every VM's vCenter tasks (vm: the document's name; texts redacted as the document's), in order:
    # the document lists only some of them (_listed_tasks), the report's timeline draws them all
    tasks: pl.DataFrame | None = None


@dataclass
class Judgement:
    failure: Failure
    cause: str
    confidence: str
    findings: list[Finding]
    remediation: tuple[str, ...]


# The record tables only judging reads: the document is built from cycles, tasks and matches.
RECORD_TABLES = ("gateway_log", "vcenter_log", "vcenter_events")


def decide(frames: dict[str, pl.DataFrame], cycles: CycleResult, library: Library, diags: Diagnostics,
           tables_present: set[str], release: bool = False, redact: bool = True, lang: str = "en") -> Decision:
    """The failures, judged, and the document's VMs, verdicts and outages. `tables_present`: the
    tables the bundle's sources fill (sources.tables_of), which evidence can be looked for in.

    With `release`, the RECORD_TABLES are taken out of `frames` (and the cycles' corrected
    copies) once the failures are judged: on a large bundle they are most of the memory, and the
    document then needs room of its own.

    With `redact`, the texts of the document's VMs (names, cycles, tasks, error lines) and of
    the task table are redacted as columns while they are built (redact.redact_series); the
    pipeline redacts the rest of the document, a few thousand strings."""
    b = Case(frames, cycles, library, tables_present, lang)
    b.signals = detectors.Signals(b)
    failures = failures_from_errors(b, diags)
    failures += end_of_bundle_conditions(b, failures)
    judged = [judge(b, f, diags) for f in failures]
    outages, explains = _outages(b, judged)
    found = findings.findings(b.matches.with_columns(vm=_display_names(b)))
    unexplained = findings.unexplained(
        [findings.problem_records(name, frame) for name, frame in
         (("gateway_log", b.gateway), ("vcenter_log", frames.get("vcenter_log")), ("text_log", frames.get("text_log")))
         if frame is not None],
        b.matches, names=[*b.names.values(), *filter(None, b.hosts.values())])
    unrecognised = _unrecognised(b)
    if release:
        for name in RECORD_TABLES:
            frames.pop(name, None)
            cycles.corrected.pop(name, None)
        b.release_records()
    verdicts = sorted(_verdicts(b, judged, explains) + unrecognised, key=_verdict_order)
    not_evaluated = _not_evaluated(b)
    vms, keys = _vms(b, judged, redact)
    if release:  # a large bundle's cycles as dicts go before its tasks become dicts
        b.release_cycles()
    tasks = b.task_table(redact)
    docs = b.task_docs(tasks.filter(_listed_tasks(tasks, judged)))
    counts = _task_counts(tasks)
    for vm, key in zip(vms, keys):
        vm["tasks"] = docs.get(key, []) if key else []
        vm["task_counts"] = counts.get(key) or {"total": 0, "by_outcome": {}}
    names = pl.DataFrame({"vm_key": keys, "vm": [vm["vm"] for vm in vms]},
                         schema={"vm_key": pl.Utf8, "vm": pl.Utf8})
    timeline = (tasks.join(names, on="vm_key", how="inner", maintain_order="left")
                .select("vm", "start", "end", "method", "outcome", "fault_type", "initiator", "task_id"))
    return Decision(vms=vms, verdicts=verdicts, outages=outages, not_evaluated=not_evaluated,
                    findings=found, unexplained=unexplained, tasks=timeline)


def _listed_tasks(tasks: pl.DataFrame, judged: list[Judgement]) -> pl.Series:
    """Which tasks the document lists: those of a VM that overlap one of its failures (from the
    failing work's start to the failure's end) and those a finding cites as evidence. The others
    are counted (task_counts); the report and the Parquet exports keep every task."""
    spans = sorted((j.failure.vm_key, j.failure.since, max(j.failure.since, j.failure.until or j.failure.ts
                                                                or j.failure.since))
                   for j in judged if j.failure.vm_key is not None and j.failure.since is not None)
    merged: list[list] = []  # per VM, disjoint spans in order: the last one starting before a
    for key, lo, hi in spans:  # task's end is the only one that can overlap it
        if merged and merged[-1][0] == key and lo <= merged[-1][2]:
            merged[-1][2] = max(merged[-1][2], hi)
        else:
            merged.append([key, lo, hi])
    cited = [(e.member, e.line) for j in judged for fd in j.findings for e in fd.entries
             if e.source == "vcenter_tasks" and e.member is not None and e.line is not None]
    rows = (tasks.select("vm_key", "member", "line", "start", pl.coalesce("end", "start").alias("_end"))
            .with_row_index("_row"))
    keep: list[pl.Series] = []
    if merged:
        windows = pl.DataFrame(merged, schema={"vm_key": pl.Utf8, "lo": rows.schema["start"],
                                               "hi": rows.schema["start"]}, orient="row")
        timed = rows.filter(pl.col("start").is_not_null()).sort("_end")  # so sorted within each VM too
        keep.append(timed.join_asof(windows.sort("lo"), left_on="_end", right_on="lo", by="vm_key",
                                    strategy="backward", check_sortedness=False)
                    .filter(pl.col("hi") >= pl.col("start"))["_row"])
    if cited:
        evidence = pl.DataFrame(cited, schema={"member": pl.Utf8, "line": rows.schema["line"]}, orient="row")
        keep.append(rows.with_columns(pl.col("member").cast(pl.Utf8))
                    .join(evidence.unique(), on=["member", "line"], how="semi")["_row"])
    chosen = pl.concat(keep).unique() if keep else pl.Series("_row", [], dtype=pl.UInt32)
    return rows["_row"].is_in(chosen.implode())


def _task_counts(tasks: pl.DataFrame) -> dict[str, dict]:
    """Per VM: how many tasks it has in all, and how many of them ended each way."""
    counts: dict[str, dict] = {}
    for r in (tasks.group_by("vm_key", pl.col("outcome").fill_null("unknown")).len()
              .sort("vm_key", "outcome").iter_rows()):
        entry = counts.setdefault(r[0], {"total": 0, "by_outcome": {}})
        entry["total"] += r[2]
        entry["by_outcome"][r[1]] = r[2]
    return counts


def _display_names(b: Case) -> pl.Expr:
    """Each match's VM as the document names it (its identity's display name)."""
    return (pl.col("vm_key").replace_strict(list(b.names), list(b.names.values()), default=None,
                                            return_dtype=pl.Utf8)
            .fill_null(pl.col("vm")))


def _same_host(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return a.lower() == b.lower() or short_host(a) == short_host(b)


# --------------------------------------------------------------------------------------------
# Failures from errors


def _occurrences(b: Case, diags: Diagnostics) -> list[dict]:
    """Error matches on the rows failures are read from (b.error_tables), plus failed-cycle lines
    no signature recognised (their Error ID names the error when only one signature has it).
    An occurrence's ts is None when its text gives no time."""
    errors = b.matches.filter((pl.col("kind") == "error") & pl.col("source").is_in(b.error_tables))
    errors = errors.filter(pl.col("signature").is_in(list(b.library.signatures)))
    occ = errors.select("signature", "source", "ts", "vm_key", "member", "line", "text").to_dicts()
    matched = {(o["member"], o["line"]) for o in occ}
    failed = (b.gateway.filter((pl.col("event") == "cycle_failed") & pl.col("ts").is_not_null())
              .sort("ts", "member", "line").collect().to_dicts())
    for r in failed:
        if (r["member"], r["line"]) in matched:
            continue
        sigs = b.library.by_code(r["error_id"]) if r["error_id"] else []
        if len(sigs) == 1:
            occ.append({"signature": sigs[0].id, "source": "gateway_log", "ts": r["ts"], "vm_key": r["vm_key"],
                        "member": r["member"], "line": r["line"], "text": r["message"]})
        else:
            diags.add_line("info", "unrecognised-error",
                           f"a failed cycle of {r['vm'] or r['vm_id']} has error {r['error_id'] or r['error'] or '?'}, "
                           "which no signature recognises", r["member"], r["line"],
                           "add a signature for it (bundle-analyzer signatures)")
    for o in occ:
        o["code"] = b.row_code.get((o["member"], o["line"]))
        if o["signature"] in b.vm_less:
            o["vm_key"] = None  # raised while enabling replication, before a VM replicates
    return sorted(occ, key=lambda o: (o["vm_key"] or "", o["signature"], *_in_time(o)))


def _in_time(o: dict) -> tuple:
    """An occurrence's place in time order: timed ones first, then those the text gave no time."""
    return (o["ts"] is None, o["ts"] or datetime.min.replace(tzinfo=timezone.utc), o["member"], o["line"])


def _cycle_for(b: Case, vm_key: str | None, ts: datetime) -> dict | None:
    """The VM's cycle running at `ts`, or ending just before it."""
    if vm_key is None:
        return None
    best = None
    for c in b.cycles_by_vm.get(vm_key, []):
        anchor = c["start"] or c["end"]
        if anchor is None or anchor > ts:
            continue
        close = c["end"]
        if close is None or ts <= close + CYCLE_GRACE:
            best = c
    return best


def failures_from_errors(b: Case, diags: Diagnostics) -> list[Failure]:
    groups: dict[tuple, list[dict]] = {}  # (vm, error, cycle id) -> its lines
    cycle_of: dict[tuple, dict] = {}
    loose: dict[tuple, list[list[dict]]] = defaultdict(list)  # (vm, error) -> runs of lines with no cycle
    timeless: dict[tuple, list[dict]] = defaultdict(list)  # (vm, error) -> its lines with no time
    for o in _occurrences(b, diags):
        if o["ts"] is None:
            timeless[(o["vm_key"], o["signature"])].append(o)
            continue
        cycle = _cycle_for(b, o["vm_key"], o["ts"])
        if cycle is not None:
            key = (o["vm_key"], o["signature"], cycle["cycle"])
            groups.setdefault(key, []).append(o)
            cycle_of[key] = cycle
            continue
        runs = loose[(o["vm_key"], o["signature"])]
        if runs and o["ts"] - runs[-1][-1]["ts"] <= REGROUP_GAP:
            runs[-1].append(o)
        else:
            runs.append([o])
    # A VM-less line of an error seen with a VM nearby is the same failure, said without the VM.
    named = defaultdict(list)
    for (vm_key, sig, _), occ in groups.items():
        named[sig] += [o["ts"] for o in occ]
    for (vm_key, sig), runs in loose.items():
        if vm_key is None:
            loose[(vm_key, sig)] = [r for r in runs if not any(abs(o["ts"] - t) <= REGROUP_GAP
                                                               for o in r for t in named[sig])]
    out = []
    for (vm_key, sig, cycle_id), occ in groups.items():
        cycle = cycle_of[(vm_key, sig, cycle_id)]
        ts = cycle["end"] if cycle["outcome"] == "failed" and cycle["end"] else occ[0]["ts"]
        out.append(Failure(b.library.signatures[sig], vm_key, cycle, ts, max(ts, occ[-1]["ts"]), occ, [cycle_id]))
    for (vm_key, sig), runs in loose.items():
        for occ in runs:
            out.append(Failure(b.library.signatures[sig], vm_key, None, occ[0]["ts"], occ[-1]["ts"], occ))
    out.sort(key=lambda f: (f.vm_key or "", f.error.id, f.ts))
    # An error read from text with no time is one failure per VM and error: it cannot be placed.
    return out + [Failure(b.library.signatures[sig], vm_key, None, None, None, occ)
                  for (vm_key, sig), occ in sorted(timeless.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))]


# --------------------------------------------------------------------------------------------
# Conditions with no error event: judged at the end of the bundle


def end_of_bundle_conditions(b: Case, failures: list[Failure]) -> list[Failure]:
    stalled, slow = b.library.signatures.get(STALLED), b.library.signatures.get(SLOW)
    last_failure: dict[str, datetime] = {}
    for f in failures:
        if f.vm_key is not None and f.ts is not None:
            last_failure[f.vm_key] = max(last_failure.get(f.vm_key, f.ts), f.ts)
    out = []
    for vm_key in sorted(detectors.may_stall_or_slow(b, stalled is not None, slow is not None)):
        cycles = b.cycles_by_vm[vm_key]
        done = [c["end"] for c in cycles if c["outcome"] == "succeeded" and c["end"]]
        since = max(done) if done else None
        if vm_key in last_failure and (since is None or last_failure[vm_key] >= since):
            continue  # an error verdict covers this period
        failure = _stalled(b, stalled, vm_key, cycles) or _slow(b, slow, vm_key, cycles)
        if failure:
            out.append(failure)
    return out


def _stalled(b: Case, sig: Signature | None, vm_key: str, cycles: list[dict]) -> Failure | None:
    found = detectors.stall(b, vm_key) if sig else None
    if not found:
        return None
    last, due = found
    after = [c for c in cycles if c["start"] and c["start"] >= last["end"]]
    return Failure(sig, vm_key, after[-1] if after else None, due, b.end, [], [c["cycle"] for c in after])


def _slow(b: Case, sig: Signature | None, vm_key: str, cycles: list[dict]) -> Failure | None:
    """The last completed cycle, or one still running past the slow limit, tells the VM's pace now."""
    if sig is None:
        return None
    ended = [c for c in cycles if c["outcome"] == "succeeded" and c["start"]]
    running = [c for c in cycles if c["outcome"] == "in_progress" and c["start"]]
    for c in running[-1:] + ended[-1:]:
        if detectors.why_slow(b, vm_key, c):
            return Failure(sig, vm_key, c, c["start"], c["end"] or b.end, [], [c["cycle"]])
    return None


# --------------------------------------------------------------------------------------------
# Evidence in the cause's window and scope


def _evidence(b: Case, f: Failure, cause: Cause, diags: Diagnostics) -> tuple[list[Finding], bool]:
    """The findings of the cause's evidence around the failure, and whether one ruled it out. A
    detector that cannot decide on this bundle's shapes says so in a diagnostic."""
    if f.timeless:
        return [found for eid in cause.evidence if (found := _timeless_evidence(b, f, cause, eid))], False
    lo, hi = f.ts - cause.before, f.until + cause.after
    findings, ruled_out = [], False
    for eid in cause.evidence:
        if eid.startswith("detect."):
            got = detectors.detect(eid, b, f, lo, hi)
        else:
            got = _signature_evidence(b, f, cause, eid, lo, hi)
        if got == RULED_OUT:
            ruled_out = True
        elif isinstance(got, Undecided):
            diags.add("info", "evidence-undecided", f"{cause.id} ({got.evidence}): {got.reason}", got.location,
                      "the log lacks the fact this check needs; look at the task in vCenter (Monitor > Tasks)")
        elif got is not None:
            findings.append(got)
    return findings, ruled_out


def _signature_evidence(b: Case, f: Failure, cause: Cause, sig_id: str, lo: datetime,
                        hi: datetime) -> Finding | None:
    ts = b.sig_ts.get(sig_id, [])
    kept = b.by_signature.get(sig_id, [])[bisect.bisect_left(ts, lo):bisect.bisect_right(ts, hi)]
    if cause.scope == "appliance":
        # Connectivity failures are transient: one followed by a successful cycle before the
        # failure explains nothing. (A VM's relocate or fault is a change that stays: no such rule.)
        kept = kept[_first_unrecovered(b, f, [m["ts"] for m in kept]):]
    elif cause.scope == "vm":
        kept = [m for m in kept if f.vm_key is not None and m["vm_key"] == f.vm_key]
    elif cause.scope == "host":
        host = f.host(b)
        kept = [m for m in kept if _on_host(b, m, host, f.vm_key)
                and not (m["ts"] < f.ts and b.recovered("host", f, m["ts"], f.ts))]  # a recovered transient
    if not kept:
        return None
    entries = tuple(Entry(m["ts"], m["source"], m["member"], m["line"], m["text"] or "", sig_id) for m in kept)
    interval = None
    if cause.scope == "appliance":
        last = max(m["ts"] for m in kept)
        interval = next(((a, z) for a, z in b.clusters(sig_id) if a <= last <= z), (last, last))
    return Finding(sig_id, entries, interval)


def _timeless_evidence(b: Case, f: Failure, cause: Cause, sig_id: str) -> Finding | None:
    """For a failure with no time: the evidence signature's matches in the cause's scope anywhere
    in the bundle (no window can be drawn; detectors, which need one, are not asked)."""
    rows = b.by_signature.get(sig_id, []) + b.timeless_by_signature.get(sig_id, [])
    if cause.scope == "vm":
        rows = [m for m in rows if f.vm_key is not None and m["vm_key"] == f.vm_key]
    elif cause.scope == "host":
        host = f.host(b)
        rows = [m for m in rows if host is None or _on_host(b, m, host, f.vm_key)]
    if not rows:
        return None
    return Finding(sig_id, tuple(Entry(m["ts"], m["source"], m["member"], m["line"], m["text"] or "", sig_id)
                                 for m in rows))


def _first_unrecovered(b: Case, f: Failure, times: list[datetime]) -> int:
    """Index of the first match after which no cycle recovered before the failure (matches are in
    time order, and recovery only gets less likely for later ones: a binary search)."""
    lo_i, hi_i = 0, bisect.bisect_left(times, f.ts)
    while lo_i < hi_i:
        mid = (lo_i + hi_i) // 2
        if b.recovered("appliance", f, times[mid], f.ts):
            lo_i = mid + 1
        else:
            hi_i = mid
    return lo_i


def _on_host(b: Case, m: dict, host: str | None, vm_key: str | None) -> bool:
    """Whether match `m` happened on `host` (a match with no host counts when it names the VM)."""
    m_host = m["host"] or b.host_of(m["vm_key"])
    return _same_host(m_host, host) or (m_host is None and bool(m["vm_key"]) and m["vm_key"] == vm_key)


def _evidence_tables(b: Case, evidence_id: str) -> set[str]:
    if evidence_id.startswith("detect."):
        return set(detectors.tables_of(evidence_id))
    sig = b.library.signatures.get(evidence_id)
    return {m.source for m in sig.matchers} if sig else set()


def _uncovered_tables(b: Case, f: Failure, cause: Cause) -> set[str] | None:
    """The tables of the cause's evidence when none of them covers the failure, else None."""
    found_in = {t for eid in cause.evidence for t in _evidence_tables(b, eid)}
    if f.timeless or not cause.evidence or any(b.covers(t, f.start or f.ts, f.ts) for t in found_in):
        return None
    return found_in


# --------------------------------------------------------------------------------------------
# Choosing the cause


def judge(b: Case, f: Failure, diags: Diagnostics) -> Judgement:
    sig = f.error
    present: list[tuple[int, Cause, list[Finding]]] = []
    ruled_out: set[str] = set()
    unchecked: dict[str, set[str]] = {}  # cause id -> sources that do not cover the failure
    for order, cause in enumerate(sig.causes):
        findings, excluded = _evidence(b, f, cause, diags)
        if excluded:
            ruled_out.add(cause.id)
        if findings:
            present.append((order, cause, findings))
        missing = _uncovered_tables(b, f, cause)
        if missing is None:
            unchecked.pop(cause.id, None)
        else:
            unchecked.setdefault(cause.id, set()).update(missing)
    if present:
        succeeded = [(c["start"], c["end"]) for c in b.cycles_by_vm.get(f.vm_key, [])
                     if c["outcome"] == "succeeded" and c["start"] and c["end"]] if f.vm_key else []
        rated = [(order, cause, findings, min((confidence_of(fd, f, cause, succeeded) for fd in findings),
                                              key=CONFIDENCE_RANK.get)) for order, cause, findings in present]
        _, cause, findings, confidence = min(rated, key=_rank)
        return Judgement(f, cause.id, confidence, findings, cause.remediation)
    if unchecked:
        _warn_uncovered(b, f, {s for v in unchecked.values() for s in v}, diags)
        return Judgement(f, UNDETERMINED, "low", [], sig.undetermined)
    candidates = [c for c in sig.causes if c.id not in ruled_out]
    if len(sig.causes) == 1 and candidates:
        return Judgement(f, candidates[0].id, "low", [], candidates[0].remediation)
    fallback = next((c for c in candidates if c.fallback), None)
    if fallback:
        return Judgement(f, fallback.id, "low", [], fallback.remediation)
    return Judgement(f, UNDETERMINED, "low", [], sig.undetermined)


def _rank(rated: tuple[int, Cause, list[Finding], str]) -> tuple:
    """THE rule for several causes with evidence (CATALOGUE "Choosing the cause"): the most specific
    evidence wins. A cause found only by ruling the others out (vcenter_read_throttled: a low rate
    with no connectivity failure) is the catch-all and yields to any cause with evidence of its own;
    then direct evidence beats circumstantial (confidence_of); then the order the signature lists
    its causes in."""
    order, cause, findings, confidence = rated
    catch_all = all(detectors.by_exclusion(fd.evidence) for fd in findings)
    return catch_all, CONFIDENCE_RANK[confidence], order


DIRECT_SLACK = timedelta(minutes=5)  # clocks and log lines around the failing work


def confidence_of(finding: Finding, f: Failure, cause: Cause, succeeded: list[tuple[datetime, datetime]]) -> str:
    """How sure a cause is, from what its evidence is (OUTPUT.md: high = direct, medium =
    circumstantial); the cause's `confidence` in its signature is the ceiling, not the answer.

    Direct: seen (not found by ruling the others out, not a guess) in the failure's scope while its
    work ran (the cycle, from its start to the failure, DIRECT_SLACK either side): a task of the VM
    overlapping the cycle, a fault on the VM's disk, NFC failures on its host then, an outage
    covering it; a state that holds until changed (the VDDK version); on the VM itself, a change
    since it last replicated (no successful cycle of the VM between the evidence and the failure).
    Circumstantial: the rest found in the cause's window (the same host hours before, a relocate
    with good cycles since), anything found by exclusion or by a guess (the earliest initiator taken
    for the Key Vault's creator), and any evidence of a failure that has no time."""
    if f.timeless or finding.basis == "guess" or detectors.by_exclusion(finding.evidence):
        direct = False
    elif finding.basis == "standing":
        direct = True
    else:
        since, until = (f.since or f.ts) - DIRECT_SLACK, f.until + DIRECT_SLACK
        if finding.interval:
            start, end = finding.interval
            direct = start <= until and (end is None or end >= since)
        else:
            times = finding.at or tuple(e.ts for e in finding.entries if e.ts is not None)
            direct = any(since <= t <= until for t in times)
            if not direct and cause.scope == "vm":
                latest = max((t for t in times if t < since), default=None)
                direct = latest is not None and not any(latest <= a and z <= f.ts for a, z in succeeded)
    return max("high" if direct else "medium", cause.confidence, key=CONFIDENCE_RANK.get)


def _warn_uncovered(b: Case, f: Failure, uncovered: set[str], diags: Diagnostics) -> None:
    since = f.start or f.ts
    for source in sorted({family_of(t) for t in uncovered}):
        what = "does not cover" if b.has_table(source) else "is missing from the bundle, so it does not cover"
        diags.add("warning", "source-does-not-cover",
                  f"{source} {what} {to_iso(since)} to {to_iso(f.ts)}, when {b.name_of(f.vm_key) or 'the appliance'} "
                  f"failed with {f.error.id}: the cause cannot be told from what this source would show",
                  source, "collect the logs of that period (older rotations) to tell the cause")


# --------------------------------------------------------------------------------------------
# The document


def _still_failing(b: Case, f: Failure) -> bool:
    """Whether the failure still holds at the end of the bundle: the VM has had no successful cycle
    since; for a failure no VM owns (enabling replication: Key Vault), no later enable went through."""
    if f.error.id == STALLED or f.timeless:
        return True
    if f.vm_key is None:
        return not _enabled_since(b, f)
    return not any(c["outcome"] == "succeeded" and c["end"] and c["end"] > f.until
                   for c in b.cycles_by_vm.get(f.vm_key, []))


def _enabled_since(b: Case, f: Failure) -> bool:
    """A later event of the failed operation's kind that is no error (the portal's 'Replication
    enabled' after 'Enable replication failed'), or an initial replication that started after it:
    enabling replication has worked since."""
    rows = {(o["member"], o["line"]) for o in f.occurrences if o["source"] == "portal_events"}
    failed = b.portal.filter(pl.struct("member", "line").is_in([{"member": m, "line": n} for m, n in rows]))
    kinds = failed["event_type"].drop_nulls().unique().to_list()
    severity = pl.col("severity").str.to_lowercase().str.strip_chars()
    later = b.portal.filter((pl.col("ts") > f.until) & pl.col("event_type").is_in(kinds)
                            & ~severity.is_in(_ERROR_SEVERITIES).fill_null(False))
    initial_after = b.cycle_frame.filter((pl.col("type") == "initial") & (pl.col("start") > f.until))
    return later.height > 0 or initial_after.height > 0


def _severity(b: Case, f: Failure) -> str:
    """The error's severity while it lasts; a critical one that recovered, or slowness, is a warning."""
    sig = f.error.severity
    if f.error.id != SLOW and _still_failing(b, f):
        return sig
    return "warning" if sig == "critical" else sig


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _cause_title(b: Case, cause: str) -> str:
    sig = b.library.signatures.get(cause)
    if sig is not None and sig.title:
        return sig.title[0].lower() + sig.title[1:]
    return CAUSE_TITLES.get(cause, cause.replace("_", " "))


def _summary(sig: Signature, facts: dict[str, str]) -> str:
    """The signature's sentence with the facts filled in; captures of the error lines fill the rest."""
    values = _Blank(facts)
    if sig.summary:
        try:
            return sig.summary.format_map(values)
        except (ValueError, IndexError, AttributeError):
            pass  # a malformed template: fall back to the plain sentence
    return f"{sig.title} on {values['vm']}: {values['cause_title']}."


# --------------------------------------------------------------------------------------------
# Korean texts (--lang ko): built beside the English ones, only when the document is in Korean
# (Case.lang); the English stay as they are. The UI's words are in analyzer/i18n.


def _korean(b: Case, sig: Signature, best: Judgement, facts: dict[str, str], vm: str | None,
            host: str | None) -> dict:
    """A verdict's title_ko, cause_title_ko, summary_ko and remediation_ko: the signature's Korean
    texts filled with the facts of the English summary (a text the signature lacks stays English)."""
    if b.lang != "ko":
        return {}
    ko = i18n.messages("ko")
    label = _cause_title_ko(b, sig, best.cause)
    values = _Blank({**facts, "vm": vm or ko.text("verdict.no_vm"), "host": host or ko.text("verdict.no_host"),
                     "cause_title": label, "title": sig.title_ko or sig.title})
    summary = _summary(sig, facts)
    if sig.summary_ko:
        try:
            summary = sig.summary_ko.format_map(values)
        except (ValueError, IndexError, AttributeError):
            pass
    elif not sig.summary:
        summary = ko.text("verdict.summary", vm=values["vm"], title=values["title"], cause_title=label)
    cause = sig.cause(best.cause)
    steps = (cause.remediation_ko if cause else sig.undetermined_ko) or best.remediation
    return {"title_ko": sig.title_ko or sig.title, "cause_title_ko": label, "summary_ko": summary,
            "remediation_ko": list(steps)}


def _cause_title_ko(b: Case, sig: Signature | None, cause_id: str) -> str:
    """The cause's Korean label: its block's title_ko, else the library's label for the id, else
    the English wording."""
    cause = sig.cause(cause_id) if sig is not None else None
    if cause is not None and cause.title_ko:
        return cause.title_ko
    return cause_titles_ko(b.library).get(cause_id) or _cause_title(b, cause_id)


def _unrecognised_korean(b: Case, code: str | None) -> dict:
    """An error outside the catalogue keeps the words it was given (summary, remediation)."""
    if b.lang != "ko":
        return {}
    ko = i18n.messages("ko")
    return {"title_ko": ko.text("verdict.unrecognised_title", code=code) if code else
            ko.text("verdict.unrecognised_title_no_code"),
            "cause_title_ko": _cause_title_ko(b, None, UNDETERMINED)}


def _outage_korean(b: Case, cause: str, start: datetime, end: datetime | None, cycles: int | None,
                   failures: int, vms: int) -> dict:
    if b.lang != "ko":
        return {}
    ko = i18n.messages("ko")
    label = _cause_title_ko(b, None, cause)
    until = i18n.format_time(end, "ko") if end else ko.text("verdict.outage_until_end")
    what = ko.text("verdict.outage_cycles", n=cycles) if cycles else ko.text("verdict.outage_failures", n=failures)
    return {"cause_title_ko": label,
            "summary_ko": ko.text("verdict.outage_summary", cause_title=label, start=i18n.format_time(start, "ko"),
                                  until=until, what=what, vms=vms)}


def _captures(b: Case, occurrences: list[dict]) -> dict[str, str]:
    out: dict[str, str] = {}
    for o in sorted(occurrences, key=_in_time):
        for cap in b.captures.get((o["member"], o["line"])) or []:
            if cap["value"] is not None:
                out.setdefault(cap["name"], cap["value"])
    return out


def _error_entries(f: Failure) -> list[Entry]:
    return [Entry(o["ts"], o["source"], o["member"], o["line"], o["text"] or "", f.error.id, "the error")
            for o in f.occurrences[:1]]


def _limit(entries: list[Entry]) -> list[dict]:
    unique = {(e.source, e.member, e.line, e.evidence, e.text): e for e in entries}
    kept = sorted(unique.values(), key=Entry.key)
    causal = [e for e in kept if e.note != "the error"]
    errors = [e for e in kept if e.note == "the error"]
    chosen = (causal + errors)[:MAX_EVIDENCE]
    return [e.as_dict() for e in sorted(chosen, key=Entry.key)]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _outages(b: Case, judged: list[Judgement]) -> tuple[list[dict], dict[int, str]]:
    """One outage per (cause, interval) of appliance-wide causes; which judgement it explains."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, j in enumerate(judged):
        cause = j.failure.error.cause(j.cause)
        if cause is None or cause.scope != "appliance":
            continue
        finding = next((fd for fd in j.findings if fd.interval), None)
        if finding:
            groups[(j.cause, finding.interval)].append(i)
    ordered = sorted(groups, key=lambda k: (k[1][0], k[0]))
    outages, explains = [], {}
    for n, key in enumerate(ordered, 1):
        cause, (start, end) = key
        oid = f"outage-{n}"
        members = [judged[i] for i in groups[key]]
        vms = sorted({b.name_of(j.failure.vm_key) for j in members if j.failure.vm_key})
        cycles = sorted({c for j in members for c in j.failure.cycles})
        entries = [e for j in members for fd in j.findings if fd.interval == (start, end) for e in fd.entries]
        title = _cause_title(b, cause)
        until = to_iso(end) if end else "the end of the bundle"
        what = _count(len(cycles), "failed cycle") if cycles else _count(len(members), "failure")
        summary = (f"{title[0].upper()}{title[1:]} from {to_iso(start)} to {until}; "
                   f"it explains {what} on {_count(len(vms), 'VM')}.")
        outages.append({"id": oid, "cause": cause, "start": to_iso(start), "end": to_iso(end), "summary": summary,
                        "vms": vms, "cycles": cycles, "evidence": _limit(entries),
                        **_outage_korean(b, cause, start, end, len(cycles) if cycles else None,
                                         len(members), len(vms))})
        for i in groups[key]:
            explains[i] = oid
    return outages, explains


def _verdicts(b: Case, judged: list[Judgement], explains: dict[int, str]) -> list[dict]:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, j in enumerate(judged):
        groups[(j.failure.vm_key, j.failure.error.id, j.cause)].append(i)
    out = []
    for (vm_key, error, cause), idx in groups.items():
        members = [judged[i] for i in idx]
        sig = members[0].failure.error
        occ = [o for j in members for o in j.failure.occurrences]
        times = [t for j in members for t in ([o["ts"] for o in j.failure.occurrences]
                                               or [j.failure.ts, j.failure.until]) if t is not None]
        first, last = min(times, default=None), max(times, default=None)
        cycles = sorted({c for j in members for c in j.failure.cycles})
        codes = sorted({o["code"] for o in occ if o.get("code")})
        best = min(members, key=lambda j: CONFIDENCE_RANK[j.confidence])
        # The outage that explains the verdict's latest explained failure.
        newest_first = sorted((i for i in idx if judged[i].failure.ts is not None),
                              key=lambda i: judged[i].failure.ts, reverse=True)
        outage = next((explains[i] for i in newest_first if i in explains), None)
        severity = min((_severity(b, j.failure) for j in members), key=SEVERITY_RANK.get)
        entries = [e for j in members for fd in j.findings for e in fd.entries]
        entries += [e for j in members for e in _error_entries(j.failure)]
        vm = b.name_of(vm_key)
        code = codes[0] if codes else (sig.codes[0] if sig.codes else None)
        vm_ids = sorted({c["vm_id"] for c in b.cycles_by_vm.get(vm_key, []) if c["vm_id"]})
        facts = {**_captures(b, occ), "vm": vm or "the appliance", "host": b.host_of(vm_key) or "its host",
                 "cause": cause, "cause_title": _cause_title(b, cause), "error": error, "title": sig.title,
                 "error_code": code or "", "count": str(len(cycles)), "cycles": ", ".join(cycles),
                 "first_seen": to_iso(first), "last_seen": to_iso(last)}
        if vm_ids:
            facts["vm_id"] = vm_ids[0]
        out.append({
            "vm": vm, "error": error, "error_code": code,
            "cause": cause, "confidence": best.confidence, "severity": severity, "cycles": cycles,
            "first_seen": to_iso(first), "last_seen": to_iso(last),
            "summary": _summary(sig, facts),
            "remediation": list(best.remediation), "references": sorted(sig.references),
            "evidence": _limit(entries), "title": sig.title, "outage": outage,
            **_korean(b, sig, best, facts, vm, b.host_of(vm_key)),
        })
    return out


def _verdict_order(v: dict) -> tuple:
    return ((v["vm"] or "").lower(), v["vm"] or "", v["error"], v["error_code"] or "", v["cause"])


# --------------------------------------------------------------------------------------------
# Errors outside the catalogue

_PORTAL_SEVERITY = {"warning": "warning", "information": "info", "informational": "info", "info": "info"}
# A portal row with no Error ID is an error only when its severity says so (English or Korean portal).
_ERROR_SEVERITIES = ["error", "critical", "warning", "오류", "심각", "위험", "경고"]
# How portal and provider texts name a VM when no column does (FORMATS.md section 1).
_VM_IN_TEXT = (r"(?i)\bvirtual machine '(?P<vm>[^'\n]+)'|\bvirtual machine \"(?P<vm2>[^\"\n]+)\""
               r"|\bVM: '?(?P<vm3>[A-Za-z0-9][\w.-]*?)'?\.(?:\s|$)")


def _vm_in_text(text: pl.Expr) -> pl.Expr:
    groups = text.str.extract_groups(_VM_IN_TEXT)
    return pl.coalesce(groups.struct.field("vm"), groups.struct.field("vm2"), groups.struct.field("vm3"))


def _unrecognised(b: Case) -> list[dict]:
    """Errors no signature recognises, one verdict per VM and Error ID (OUTPUT.md:
    `unrecognised_error`, cause undetermined, the message, stated causes and recommendation as
    given): portal error rows no error signature matched, and failed cycles whose Error ID and
    text none knows. They are never dropped."""
    matched = (b.matches.filter(pl.col("kind") == "error").select("member", "line").unique())
    severity = pl.col("severity").str.to_lowercase().str.strip_chars()
    portal = (b.portal.filter(pl.col("error_id").is_not_null()
                              | (pl.col("error_message").is_not_null() & severity.is_in(_ERROR_SEVERITIES)))
              .join(matched, on=["member", "line"], how="anti")
              .select("member", "line", "ts",
                      pl.coalesce("machine", _vm_in_text(pl.col("error_message")),
                                  _vm_in_text(pl.col("provider_message"))).alias("vm"),
                      pl.lit(None, pl.Utf8).alias("vm_id"),
                      pl.col("error_id").alias("code"), pl.col("error_message").alias("message"),
                      "possible_causes", "recommendation", "provider_code", "provider_message", "severity",
                      pl.lit("portal_events").alias("source")))
    known = {c for sig in b.library.errors() for c in sig.codes if len(b.library.by_code(c)) == 1}
    failed = (b.gateway.filter((pl.col("event") == "cycle_failed")
                               & ~pl.col("error_id").cast(pl.Utf8).is_in(list(known)).fill_null(False))
              .select(pl.col("member").cast(pl.Utf8), "line", "ts", pl.col("vm").cast(pl.Utf8),
                      pl.col("vm_id").cast(pl.Utf8),
                      pl.coalesce(pl.col("error_id").cast(pl.Utf8), pl.col("error").cast(pl.Utf8)).alias("code"),
                      pl.coalesce(pl.col("error_message").cast(pl.Utf8), pl.col("message")).alias("message"))
              .collect().join(matched, on=["member", "line"], how="anti")
              .with_columns(pl.lit("gateway_log").alias("source")))
    rows = identity.resolve(pl.concat([portal, failed], how="diagonal_relaxed"), b.identities)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows.sort("ts", "member", "line", nulls_last=True).to_dicts():
        groups[(r["vm_key"], r["code"])].append(r)
    out = []
    for (vm_key, code), group in groups.items():
        first = group[0]
        times = [r["ts"] for r in group if r["ts"] is not None]
        message = " ".join((first["message"] or "(no message given)").split())
        if first.get("provider_code"):
            message += f" (provider error {first['provider_code']}: {' '.join((first['provider_message'] or '').split())})"
        recovered = vm_key is not None and times and any(
            c["outcome"] == "succeeded" and c["end"] and c["end"] > max(times) for c in b.cycles_by_vm.get(vm_key, []))
        severity = "warning" if recovered else _PORTAL_SEVERITY.get((first.get("severity") or "").lower(), "critical")
        out.append({
            "vm": b.name_of(vm_key) if vm_key in b.names else first["vm"], "error": UNRECOGNISED,
            "error_code": code, "cause": UNDETERMINED, "confidence": "low", "severity": severity,
            "cycles": [], "first_seen": to_iso(min(times, default=None)), "last_seen": to_iso(max(times, default=None)),
            "summary": message[:2000],
            "stated_causes": [first["possible_causes"].strip()] if first.get("possible_causes") else [],
            "remediation": [first["recommendation"].strip()] if first.get("recommendation") else [],
            "references": [],
            "evidence": _limit([Entry(r["ts"], r["source"], r["member"], r["line"], r["message"] or "",
                                      UNRECOGNISED, "the error") for r in group]),
            "title": f"Error {code} (not in the catalogue)" if code else "An error not in the catalogue",
            "outage": None,
            **_unrecognised_korean(b, code),
        })
    return out


def _redactions(texts, redact: bool) -> dict[str, str]:
    """Each of `texts` that the document shows otherwise, and how: the distinct texts are redacted
    as one column."""
    if not redact:
        return {}
    distinct = pl.Series(list({t for t in texts if t}), dtype=pl.Utf8)
    return {a: b for a, b in zip(distinct.to_list(), redact_series(distinct).to_list()) if a != b}


def _vms(b: Case, judged: list[Judgement], redact: bool) -> tuple[list[dict], list[str | None]]:
    """The document's VMs, and each one's key; their `tasks` are left empty (see decide). With
    `redact`, their texts are redacted as columns: the error lines' columns, and one column of
    every distinct name, host, id and cycle text (see _redactions)."""
    by_vm: dict[str, list[Judgement]] = defaultdict(list)
    cycle_error: dict[str, str] = {}
    for j in judged:
        if j.failure.vm_key is not None:
            by_vm[j.failure.vm_key].append(j)
        for c in j.failure.cycles:
            if j.failure.occurrences:
                cycle_error.setdefault(c, j.failure.error.id)
    errors = b.matches.filter((pl.col("kind") == "error") & pl.col("vm_key").is_not_null())
    errors_by_vm: dict[str, list[dict]] = defaultdict(list)
    for r in redact_columns(errors.sort("ts", "signature", "source", "member", "line", nulls_last=True)
                            .select("vm_key", to_iso_expr("ts").alias("ts"), pl.col("signature").alias("error"),
                                    pl.col("source").cast(pl.Utf8), pl.col("text").cast(pl.Utf8)),
                            ("error", "source", "text"), redact).to_dicts():
        errors_by_vm[r.pop("vm_key")].append(r)
    portal = _portal_health(b)
    cycles = b.cycle_frame
    stats = _cycle_stats(cycles)
    keys = list(set(stats) | set(by_vm) | set(errors_by_vm) | set(portal))
    ids = defaultdict(set)
    for r in b.identities.filter(pl.col("vm_id").is_not_null()).to_dicts():
        ids[r["vm_key"]].add(r["vm_id"])
    cycle_ids = cycles.filter(pl.col("vm_id").is_not_null() & (pl.col("vm_id") != "")).select("vm_key", "vm_id").unique()
    for vm_key, vm_id in zip(cycle_ids["vm_key"].to_list(), cycle_ids["vm_id"].to_list()):
        ids[vm_key].add(vm_id)
    changed = _redactions([*(b.name_of(k) for k in keys), *(b.host_of(k) for k in keys),
                           *(i for v in ids.values() for i in v),
                           *(t for f in _CYCLE_TEXTS for t in cycles[f].drop_nulls().unique().to_list())], redact)

    def shown(text: str | None) -> str | None:
        return changed.get(text, text)

    cycle_docs = _cycle_docs(cycles, cycle_error, changed)
    out = []
    for key in keys:
        last_ok, failed_after = stats.get(key, (None, 0))
        loose = [j for j in by_vm[key] if not j.failure.cycles and j.failure.occurrences
                 and (last_ok is None or (j.failure.ts is not None and j.failure.ts > last_ok))]
        consecutive = failed_after + len(loose)
        derived = _health(consecutive, {j.failure.error.id for j in by_vm[key]}, key in stats)
        # OUTPUT.md: health is the portal's Normal/Warning/Critical where the bundle has it
        health_now = portal.get(key) or derived
        basis = {"health_basis": "portal" if portal.get(key) else "cycles"}
        if portal.get(key) and key in stats and derived != health_now:
            basis["derived_health"] = derived  # the cycles tell another story: the report says so
        out.append({
            "vm": shown(b.name_of(key)), "vm_ids": sorted(shown(i) for i in ids[key]), "host": shown(b.host_of(key)),
            "health": health_now, **basis,
            "last_successful_cycle_end": to_iso(last_ok), "consecutive_failures": consecutive,
            "cycles": cycle_docs.get(key, []),
            "tasks": [],
            "errors": errors_by_vm.get(key, []),
        })
    order = sorted(range(len(out)), key=lambda i: ((out[i]["vm"] or "").lower(), out[i]["vm"] or ""))
    return [out[i] for i in order], [keys[i] for i in order]


_CYCLE_TEXTS = ("cycle", "type", "outcome", "error", "failed_state")  # a cycle's texts the document shows


def _cycle_stats(cycles: pl.DataFrame) -> dict[str | None, tuple[datetime | None, int]]:
    """Per VM with cycles: the end of its last successful cycle, and how many cycles failed after it."""
    last_ok = pl.col("end").filter((pl.col("outcome") == "succeeded") & pl.col("end").is_not_null()).max()
    after = (pl.col("outcome") == "failed") & (pl.col("_last_ok").is_null()
                                               | (pl.coalesce("end", "start") > pl.col("_last_ok")))
    per_vm = (cycles.with_columns(last_ok.over("vm_key").alias("_last_ok"))
              .group_by("vm_key").agg(pl.col("_last_ok").first(), after.sum().alias("_after")))
    return dict(zip(per_vm["vm_key"].to_list(), zip(per_vm["_last_ok"].to_list(), per_vm["_after"].to_list())))


def _cycle_docs(cycles: pl.DataFrame, cycle_error: dict[str, str],
                changed: dict[str, str]) -> dict[str | None, list[dict]]:
    """Each VM's cycles as the document lists them, by start (else end), with their texts as
    the document shows them (`changed`) and the error judged on the cycle where its row names none."""
    def shown(name: str, column: pl.Expr) -> pl.Expr:
        return column.replace(changed).alias(name) if changed else column.alias(name)

    judged_error = (pl.col("cycle").replace_strict(cycle_error, default=None, return_dtype=pl.Utf8)
                    if cycle_error else pl.lit(None, pl.Utf8))
    error = pl.when(pl.col("error").is_not_null() & (pl.col("error") != "")).then("error").otherwise(judged_error)
    frame = (cycles.sort("vm_key", pl.coalesce("start", "end"), "cycle", nulls_last=True, maintain_order=True)
             .select("vm_key", shown("id", pl.col("cycle")), shown("type", pl.col("type")),
                     to_iso_expr("start").alias("start"), to_iso_expr("end").alias("end"),
                     shown("outcome", pl.col("outcome")), "uploaded_bytes", shown("error", error),
                     "duration_sec", "rate_mbps", shown("failed_state", pl.col("failed_state"))))
    columns = [interned_list(frame[c]) for c in frame.columns]
    for n in (frame.columns.index("duration_sec"), frame.columns.index("rate_mbps")):
        columns[n] = [None if x is None else round(x, 3) for x in columns[n]]
    out: dict[str | None, list[dict]] = defaultdict(list)
    for vm_key, cycle, kind, start, end, outcome, uploaded, error_id, duration, rate, failed_state in zip(*columns):
        out[vm_key].append({"id": cycle, "type": kind, "start": start, "end": end, "outcome": outcome,
                            "uploaded_bytes": uploaded, "error": error_id, "duration_sec": duration,
                            "rate_mbps": rate, "failed_state": failed_state})
    return out


_PORTAL_HEALTH = {"normal": "healthy", "warning": "warning", "critical": "critical"}


def _portal_health(b: Case) -> dict[str, str | None]:
    """Each VM of the portal's replication status, with its health as the portal says it (its
    latest row; None when the table gives none)."""
    return {key: _PORTAL_HEALTH.get((r["health"] or "").lower()) for key, r in b.portal_status.items()}


def _health(consecutive_failures: int, errors: set[str], has_cycles: bool) -> str:
    if STALLED in errors or consecutive_failures >= 2:
        return "critical"
    if consecutive_failures == 1 or SLOW in errors:
        return "warning"
    return "healthy" if has_cycles else "unknown"


def _not_evaluated(b: Case) -> list[dict]:
    out = set()
    for sig in b.library.signatures.values():
        for m in sig.matchers:
            if not b.has_table(m.source):
                out.add((sig.id, m.source))
    used = {e for s in b.library.errors() for c in s.causes for e in c.evidence if e.startswith("detect.")}
    for det in used:
        for table in detectors.tables_of(det):
            if not b.has_table(table):
                out.add((det, table))
    return [{"signature": s, "source": src} for s, src in sorted(out)]
