"""Root-cause verdicts: for each failure, the cause whose evidence is present around it.

failures -> candidate causes -> evidence in window and scope -> choice of cause -> document.

A failure is one error of one VM in one cycle (its repeated lines grouped), or a condition with
no error event seen at the end of the bundle (stalled, slow). Each cause of the error's signature
names evidence ids: evidence signatures (matches) or built-in detectors (analyzer/detectors.py),
for what no regex can see. Evidence counts when it falls in the cause's window around the failure
and in its scope (same VM, same ESXi host, whole appliance); a host- or appliance-wide failure
followed by a successful cycle before the failure recovered (a transient) and does not. Cause
choice, confidence and severity follow CATALOGUE.md's decision rules. Appliance-wide causes backed
by an interval become one outage that lists every VM and cycle it explains.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from analyzer import detectors
from analyzer import tables as T
from analyzer.cycles import CycleResult, with_vm_key
from analyzer.detectors import RULED_OUT, SLOW, STALLED, Entry, Finding, iso, iso_expr, short_host
from analyzer.diagnostics import Diagnostics
from analyzer.signatures.model import Cause, Library, Signature

UNDETERMINED = "undetermined"
ERROR_SOURCES = ("gateway_log", "portal_events")
VCENTER = ("vcenter_log", "vcenter_tasks", "vcenter_events")
CONFIDENCE_RANK = {"high": 0, "medium": 1, "low": 2}
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
MAX_EVIDENCE = 20  # lines shown per verdict / outage
REGROUP_GAP = timedelta(minutes=15)  # repeated lines of an error with no cycle form one failure
CYCLE_GRACE = timedelta(minutes=10)  # a portal event may follow its cycle's end
UNKNOWN_CYCLE_SPAN = timedelta(minutes=30)  # how long a failure with no known cycle is taken to have run
CLUSTER_GAP = timedelta(minutes=30)  # connectivity failures this close form one outage
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


@dataclass
class Failure:
    error: Signature
    vm_key: str | None
    cycle: dict | None  # CYCLES row
    ts: datetime  # when it failed (the window is anchored here)
    until: datetime  # end of the failing span (stalled / slow conditions last)
    occurrences: list[dict] = field(default_factory=list)  # error match rows
    cycles: list[str] = field(default_factory=list)  # cycle ids it covers

    @property
    def start(self) -> datetime | None:
        return self.cycle["start"] if self.cycle else None

    def host(self, b: Bundle) -> str | None:
        """The ESXi host the failing cycle ran on (the VM's last known host otherwise)."""
        return (self.cycle["host"] if self.cycle else None) or b.host_of(self.vm_key)

    @property
    def since(self) -> datetime:
        """Since when the failing work ran: its cycle's start, else a guess before the failure
        (a stall: since the next cycle was due)."""
        if self.start is not None:
            return self.start
        return self.ts if self.error.id == STALLED else self.ts - UNKNOWN_CYCLE_SPAN


@dataclass
class Judgement:
    failure: Failure
    cause: str
    confidence: str
    findings: list[Finding]
    remediation: tuple[str, ...]


# The record tables only judging reads: the document is built from cycles, tasks and matches.
RECORD_TABLES = ("gateway_log", "vcenter_log", "vcenter_events")


def decide(tables: dict[str, pl.DataFrame], cycles: CycleResult, library: Library, diags: Diagnostics,
           sources_present: set[str], release: bool = False) -> Decision:
    """The failures, judged, and the document's VMs, verdicts and outages.

    With `release`, the RECORD_TABLES are taken out of `tables` (and the cycles' corrected
    copies) once the failures are judged: on a large bundle they are most of the memory, and the
    document then needs room of its own."""
    b = Bundle(tables, cycles, library, sources_present)
    failures = failures_from_errors(b, diags)
    failures += end_of_bundle_conditions(b, failures)
    judged = [judge(b, f, diags) for f in failures]
    outages, explains = _outages(b, judged)
    if release:
        for name in RECORD_TABLES:
            tables.pop(name, None)
            cycles.corrected.pop(name, None)
        b.release_records()
    verdicts, not_evaluated = _verdicts(b, judged, explains), _not_evaluated(b)
    vms, keys = _vms(b, judged)
    if release:  # a large bundle's cycles as dicts go before its tasks become dicts
        b.release_cycles()
    tasks = b.task_docs()
    for vm, key in zip(vms, keys):
        vm["tasks"] = tasks.get(key, []) if key else []
    return Decision(vms=vms, verdicts=verdicts, outages=outages, not_evaluated=not_evaluated)


# --------------------------------------------------------------------------------------------
# The bundle, indexed once


class Recoveries:
    """Successful cycles, to ask: did one run entirely after `since` and end by `until`?"""

    def __init__(self, spans: list[tuple[datetime, datetime]]):
        spans = sorted(spans)
        self.starts = [s for s, _ in spans]
        self.min_end_from = [e for _, e in spans]
        for i in range(len(spans) - 2, -1, -1):
            self.min_end_from[i] = min(self.min_end_from[i], self.min_end_from[i + 1])

    def between(self, since: datetime, until: datetime) -> bool:
        i = bisect.bisect_left(self.starts, since)
        return i < len(self.starts) and self.min_end_from[i] <= until


class Bundle:
    """The bundle's frames and cycles, indexed for time-window queries."""

    def __init__(self, tables: dict[str, pl.DataFrame], result: CycleResult, library: Library,
                 sources_present: set[str]):
        self.library = library
        self.present = set(sources_present)
        self.identities = _table(tables, "identities")
        corrected = result.corrected
        self.end = result.bundle_end
        # Lazy (the table may be a scan of its stored parts, pipeline._SCANNED): each reader
        # collects its rows and columns. Not sorted as a whole: rows read in time order are
        # sorted where read.
        self.gateway = with_vm_key(_table(tables, "gateway_log").lazy(), self.identities)
        self.portal = _table(tables, "portal_events")
        self.tasks = (corrected["vcenter_tasks"] if "vcenter_tasks" in corrected
                      else with_vm_key(_table(tables, "vcenter_tasks"), self.identities, "vm_name"))
        if "own" not in self.tasks.columns:
            self.tasks = self.tasks.with_columns(pl.lit(False).alias("own"))
        # lazy, as the gateway: it may be a scan (pipeline._SCANNED)
        self.events = (corrected["vcenter_events"] if "vcenter_events" in corrected
                       else _table(tables, "vcenter_events")).lazy()
        self.activity = corrected["activity"] if "activity" in corrected else _table(tables, "activity")
        matches = corrected["matches"] if "matches" in corrected else _table(tables, "matches")
        self.matches = self._keyed_matches(matches, _table(tables, "vcenter_log"))
        # The columns read here and by the detectors; _start_iso/_end_iso: the document's
        # timestamps, formatted once per column (see _vms).
        cycles = (result.cycles.sort("start", "cycle", nulls_last=True)
                  .select(*_CYCLE_FIELDS, iso_expr("start").alias("_start_iso"), iso_expr("end").alias("_end_iso")))
        self.cycles = _dicts(cycles)
        self.disks = result.disks
        # Each VM's tasks in order, as row numbers of self.tasks (a VM's run: self._task_runs):
        # the tasks stay in the frame; rows become dicts only for the document and the detectors.
        by_vm = self.tasks.select(pl.arg_sort_by(T.text_rank(self.tasks, "vm_key"), "start", "task_id",
                                                 T.text_rank(self.tasks, "member"), "line", nulls_last=True))
        # null keys sort last: no VM's tasks
        self._task_order = by_vm.to_series().head(self.tasks.height - self.tasks["vm_key"].null_count())
        order = self.tasks.select(pl.col("vm_key").gather(self._task_order))
        runs = order.group_by("vm_key", maintain_order=True).len()
        ends = runs["len"].cum_sum().to_list()
        self._task_runs = {k: (e - n, e) for k, n, e in zip(runs["vm_key"].to_list(), runs["len"].to_list(), ends)}
        self._tasks_of: dict[str, list[dict]] = {}

        self.names = self._names()
        self.hosts = {r["vm_key"]: r["host"] for r in (
            self.identities.filter(pl.col("host").is_not_null()).sort("vm_key", "host")
            .unique("vm_key", keep="last").to_dicts())}
        self.cycles_by_vm: dict[str, list[dict]] = defaultdict(list)
        for c in self.cycles:
            self.cycles_by_vm[c["vm_key"]].append(c)
            if c["host"] and c["vm_key"] not in self.hosts:
                self.hosts[c["vm_key"]] = c["host"]
        ok = [c for c in self.cycles if c["outcome"] == "succeeded" and c["start"] and c["end"]]
        self.recover_all = Recoveries([(c["start"], c["end"]) for c in ok])
        by_host = defaultdict(list)
        for c in ok:
            by_host[short_host(c["host"] or self.host_of(c["vm_key"]))].append((c["start"], c["end"]))
        self.recover_host = {k: Recoveries(v) for k, v in by_host.items()}

        self.by_signature: dict[str, list[dict]] = defaultdict(list)
        # A row with an impossible timestamp keeps a null ts; it cannot sit in a window.
        for m in self.matches.filter((pl.col("kind") == "evidence") & pl.col("ts").is_not_null()).to_dicts():
            self.by_signature[m["signature"]].append(m)
        self.sig_ts = {k: [m["ts"] for m in v] for k, v in self.by_signature.items()}
        self._clusters: dict[str, list[tuple[datetime, datetime]]] = {}
        self.spans = self._spans()
        coded = pl.concat([f.lazy().filter(pl.col("error_id").is_not_null())
                           .select(pl.col("member").cast(pl.Utf8), "line", pl.col("error_id").cast(pl.Utf8))
                           for f in (self.portal, self.gateway)]).collect()
        self.row_code = dict(zip(_row_keys(coded), coded["error_id"].to_list()))
        # Key Vault failures happen while enabling replication: no VM owns them.
        self.vm_less = {s.id for s in library.errors()
                        if any(e.startswith("detect.kv_") for c in s.causes for e in c.evidence)}
        errors = self.matches.filter(pl.col("kind") == "error")
        self.captures = dict(zip(_row_keys(errors), errors["captures"].to_list()))
        self.signals = detectors.Signals(self)

    def release_records(self) -> None:
        """Let go of the RECORD_TABLES' rows (and what indexes them): judging is done."""
        self.gateway = self.events = None
        self.signals = None

    def release_cycles(self) -> None:
        """Let go of the cycles as dicts: the document's VMs are built."""
        self.cycles = self.cycles_by_vm = None
        self.recover_all = self.recover_host = None

    # -- identities ---------------------------------------------------------------------------
    def _keyed_matches(self, matches: pl.DataFrame, vcenter_log: pl.DataFrame) -> pl.DataFrame:
        """Fill the VM the matcher left empty: a portal row names it in `machine`; a vCenter line by
        a MoRef in its text, or through the task that shares its opID."""
        key = ["member", "line"]
        machine = (self.portal.select(*key, pl.col("machine").alias("_machine")).unique(key, keep="first"))
        # Only the matched lines' opIDs and their tasks: the logs have hundreds of thousands of rows.
        op_ids = (pl.concat([vcenter_log.lazy().select(*key, "op_id"), self.events.select(*key, "op_id")])
                  .join(matches.lazy().select(key).unique(), on=key, how="semi", maintain_order="left")
                  .drop_nulls("op_id").unique(key, keep="first").collect())
        task_vm = (self.tasks.lazy().select("op_id", "vm_id", "start")
                   .filter(pl.col("op_id").is_not_null() & pl.col("vm_id").is_not_null())
                   .join(op_ids.lazy().select("op_id").unique(), on="op_id", how="semi")
                   .sort("start").unique("op_id", keep="first").select("op_id", pl.col("vm_id").alias("_task_vm"))
                   .collect())
        from_vcenter = pl.col("source").is_in(list(VCENTER))
        filled = (matches.join(machine, on=key, how="left").join(op_ids, on=key, how="left")
                  .join(task_vm, on="op_id", how="left")
                  .with_columns(
                      pl.coalesce("vm", "_machine").alias("vm"),
                      pl.coalesce("vm_id", pl.when(from_vcenter).then(pl.col("text").str.extract(r"\b(vm-\d+)\b", 1)),
                                  pl.when(from_vcenter).then(pl.col("_task_vm"))).alias("vm_id"))
                  .drop("_machine", "op_id", "_task_vm"))
        keyed = with_vm_key(filled, self.identities)
        return keyed.sort("ts", "member", "line", "signature", nulls_last=True)

    def _names(self) -> dict[str, str]:
        names = {}
        for r in self.identities.filter(pl.col("vm").is_not_null()).sort("vm_key", "vm").to_dicts():
            names.setdefault(r["vm_key"], r["vm"])
        for c in self.cycles:
            names.setdefault(c["vm_key"], c["vm"])
        for r in (self.matches.filter(pl.col("vm").is_not_null()).select("vm_key", "vm").unique()
                  .sort("vm_key", "vm").to_dicts()):
            names.setdefault(r["vm_key"], r["vm"])
        return names

    def name_of(self, vm_key: str | None) -> str | None:
        return None if vm_key is None else self.names.get(vm_key, vm_key)

    def host_of(self, vm_key: str | None) -> str | None:
        return self.hosts.get(vm_key) if vm_key else None

    def tasks_of(self, vm_key: str | None) -> list[dict]:
        """The VM's vCenter tasks (rows of self.tasks) by start."""
        if not vm_key or vm_key not in self._task_runs:
            return []
        if vm_key not in self._tasks_of:
            lo, hi = self._task_runs[vm_key]
            self._tasks_of[vm_key] = self.tasks[self._task_order[lo:hi]].to_dicts()
        return self._tasks_of[vm_key]

    def task_docs(self) -> dict[str, list[dict]]:
        """Each VM's tasks as the document lists them."""
        frame = self.tasks.select(
            pl.col("task_id", "method").gather(self._task_order),
            *(iso_expr(c).gather(self._task_order).alias(c) for c in ("start", "end")),
            pl.col("outcome", "fault_type", "initiator").gather(self._task_order))
        columns = [_values(frame[c]) for c in frame.columns]
        docs = [{"task_id": a, "method": b, "start": c, "end": d, "outcome": e, "fault_type": f, "initiator": g}
                for a, b, c, d, e, f, g in zip(*columns)]
        return {k: docs[lo:hi] for k, (lo, hi) in self._task_runs.items()}

    # -- coverage -----------------------------------------------------------------------------
    def _spans(self) -> dict[str, tuple[datetime, datetime]]:
        """First and last record of each source family (gateway, vcenter, portal)."""
        points: dict[str, list[datetime]] = defaultdict(list)
        for r in self.activity.group_by("source").agg(pl.col("minute").min().alias("lo"),
                                                      pl.col("minute").max().alias("hi")).to_dicts():
            family = _family(r["source"])
            points[family] += [r["lo"], r["hi"] + timedelta(seconds=59)]
        for family, frame, cols in (("gateway_log", self.gateway, ["ts"]),
                                    ("portal_events", self.portal, ["ts"]),
                                    ("vcenter", self.events, ["ts"]),
                                    ("vcenter", self.tasks, ["start", "end"])):
            for c in cols:
                points[family] += [v for v in T.span(frame, c) if v is not None]
        return {f: (min(p), max(p)) for f, p in points.items() if p}

    def covers(self, source: str, since: datetime, until: datetime) -> bool:
        """Whether `source` was logging over the failure [since, until]. The gateway must have
        started by `since`: a gateway log that stops before is silence, not missing coverage."""
        family = _family(source)
        if not self.has_source(source) or family not in self.spans:
            return False
        first, last = self.spans[family]
        if family == "gateway_log":
            return first <= since
        return first <= until and last >= since

    def has_source(self, source: str) -> bool:
        if source in VCENTER:
            return any(s in self.present for s in VCENTER) or any(s.startswith("vcenter") for s in self.present)
        return source in self.present

    # -- evidence signatures ------------------------------------------------------------------
    def clusters(self, signature: str) -> list[tuple[datetime, datetime]]:
        if signature not in self._clusters:
            spans: list[list[datetime]] = []
            for ts in self.sig_ts.get(signature, []):
                if spans and ts - spans[-1][1] <= CLUSTER_GAP:
                    spans[-1][1] = ts
                else:
                    spans.append([ts, ts])
            self._clusters[signature] = [(a, b) for a, b in spans]
        return self._clusters[signature]

    def recovered(self, scope: str, failure: Failure, since: datetime, until: datetime) -> bool:
        """A successful cycle (of any VM, or of a VM on the failure's host) ran entirely between
        `since` and `until`."""
        if scope == "appliance":
            index = self.recover_all
        else:
            index = self.recover_host.get(short_host(failure.host(self)))
        return bool(index and index.between(since, until))


def _same_host(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return a.lower() == b.lower() or short_host(a) == short_host(b)


_CYCLE_FIELDS = ("vm_key", "vm", "vm_id", "host", "cycle", "cycle_id", "type", "start", "end", "outcome",
                 "failed_state", "error", "uploaded_bytes", "duration_sec", "rate_mbps", "member", "line")


def _dicts(frame: pl.DataFrame) -> list[dict]:
    """frame.to_dicts(), sharing repeated strings (see _values)."""
    names = frame.columns
    return [dict(zip(names, row)) for row in zip(*(_values(frame[c]) for c in names))]


def _values(column: pl.Series) -> list:
    """column.to_list(), with one str object per distinct value when values repeat (method,
    outcome, initiator): the document holds hundreds of thousands of them."""
    if isinstance(column.dtype, pl.Categorical):
        column = column.cast(pl.Utf8)
    if column.dtype != pl.Utf8 or column.n_unique() > len(column) // 4:
        return column.to_list()
    distinct = column.drop_nulls().unique()
    values = distinct.to_list()
    return [None if c is None else values[c] for c in column.cast(pl.Enum(distinct)).to_physical().to_list()]


def _row_keys(frame: pl.DataFrame) -> zip:
    """(member, line) of each row."""
    return zip(frame["member"].to_list(), frame["line"].to_list())


def _family(source: str) -> str:
    return "vcenter" if source.startswith("vcenter") else source


def _table(tables: dict[str, pl.DataFrame], name: str) -> pl.DataFrame:
    frame = tables.get(name)
    return T.empty(name) if frame is None else T.conform(name, frame)


# --------------------------------------------------------------------------------------------
# Failures from errors


def _occurrences(b: Bundle, diags: Diagnostics) -> list[dict]:
    """Error matches on gateway/portal rows, plus failed-cycle lines no signature recognised
    (their Error ID names the error when only one signature has it)."""
    errors = b.matches.filter((pl.col("kind") == "error") & pl.col("source").is_in(ERROR_SOURCES)
                              & pl.col("ts").is_not_null())
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
            diags.add("info", "unrecognised-error",
                      f"a failed cycle of {r['vm'] or r['vm_id']} has error {r['error_id'] or r['error'] or '?'}, "
                      "which no signature recognises", f"{r['member']}:{r['line']}",
                      "add a signature for it (bundle-analyzer signatures)")
    for o in occ:
        o["code"] = b.row_code.get((o["member"], o["line"]))
        if o["signature"] in b.vm_less:
            o["vm_key"] = None  # raised while enabling replication, before a VM replicates
    return sorted(occ, key=lambda o: (o["vm_key"] or "", o["signature"], o["ts"], o["member"], o["line"]))


def _cycle_for(b: Bundle, vm_key: str | None, ts: datetime) -> dict | None:
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


def failures_from_errors(b: Bundle, diags: Diagnostics) -> list[Failure]:
    groups: dict[tuple, list[dict]] = {}  # (vm, error, cycle id) -> its lines
    cycle_of: dict[tuple, dict] = {}
    loose: dict[tuple, list[list[dict]]] = defaultdict(list)  # (vm, error) -> runs of lines with no cycle
    for o in _occurrences(b, diags):
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
    return sorted(out, key=lambda f: (f.vm_key or "", f.error.id, f.ts))


# --------------------------------------------------------------------------------------------
# Conditions with no error event: judged at the end of the bundle


def end_of_bundle_conditions(b: Bundle, failures: list[Failure]) -> list[Failure]:
    stalled, slow = b.library.signatures.get(STALLED), b.library.signatures.get(SLOW)
    last_failure: dict[str, datetime] = {}
    for f in failures:
        if f.vm_key is not None:
            last_failure[f.vm_key] = max(last_failure.get(f.vm_key, f.ts), f.ts)
    out = []
    for vm_key, cycles in sorted(b.cycles_by_vm.items()):
        done = [c["end"] for c in cycles if c["outcome"] == "succeeded" and c["end"]]
        since = max(done) if done else None
        if vm_key in last_failure and (since is None or last_failure[vm_key] >= since):
            continue  # an error verdict covers this period
        failure = _stalled(b, stalled, vm_key, cycles) or _slow(b, slow, vm_key, cycles)
        if failure:
            out.append(failure)
    return out


def _stalled(b: Bundle, sig: Signature | None, vm_key: str, cycles: list[dict]) -> Failure | None:
    found = detectors.stall(b, vm_key) if sig else None
    if not found:
        return None
    last, due = found
    after = [c for c in cycles if c["start"] and c["start"] >= last["end"]]
    return Failure(sig, vm_key, after[-1] if after else None, due, b.end, [], [c["cycle"] for c in after])


def _slow(b: Bundle, sig: Signature | None, vm_key: str, cycles: list[dict]) -> Failure | None:
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


def _evidence(b: Bundle, f: Failure, cause: Cause) -> tuple[list[Finding], bool]:
    """The findings of the cause's evidence around the failure, and whether one ruled it out."""
    lo, hi = f.ts - cause.before, f.until + cause.after
    findings, ruled_out = [], False
    for eid in cause.evidence:
        if eid.startswith("detect."):
            got = detectors.detect(eid, b, f, lo, hi)
        else:
            got = _signature_evidence(b, f, cause, eid, lo, hi)
        if got == RULED_OUT:
            ruled_out = True
        elif got is not None:
            findings.append(got)
    return findings, ruled_out


def _signature_evidence(b: Bundle, f: Failure, cause: Cause, sig_id: str, lo: datetime,
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


def _first_unrecovered(b: Bundle, f: Failure, times: list[datetime]) -> int:
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


def _on_host(b: Bundle, m: dict, host: str | None, vm_key: str | None) -> bool:
    """Whether match `m` happened on `host` (a match with no host counts when it names the VM)."""
    m_host = m["host"] or b.host_of(m["vm_key"])
    return _same_host(m_host, host) or (m_host is None and bool(m["vm_key"]) and m["vm_key"] == vm_key)


def _evidence_sources(b: Bundle, evidence_id: str) -> set[str]:
    if evidence_id.startswith("detect."):
        return set(detectors.sources_of(evidence_id))
    sig = b.library.signatures.get(evidence_id)
    return {m.source for m in sig.matchers} if sig else set()


def _uncovered_sources(b: Bundle, f: Failure, cause: Cause) -> set[str] | None:
    """The sources of the cause's evidence when none of them covers the failure, else None."""
    sources = {s for eid in cause.evidence for s in _evidence_sources(b, eid)}
    if not cause.evidence or any(b.covers(s, f.start or f.ts, f.ts) for s in sources):
        return None
    return sources


# --------------------------------------------------------------------------------------------
# Choosing the cause


def judge(b: Bundle, f: Failure, diags: Diagnostics) -> Judgement:
    sig = f.error
    present: list[tuple[int, Cause, list[Finding]]] = []
    ruled_out: set[str] = set()
    unchecked: dict[str, set[str]] = {}  # cause id -> sources that do not cover the failure
    for order, cause in enumerate(sig.causes):
        findings, excluded = _evidence(b, f, cause)
        if excluded:
            ruled_out.add(cause.id)
        if findings:
            present.append((order, cause, findings))
        missing = _uncovered_sources(b, f, cause)
        if missing is None:
            unchecked.pop(cause.id, None)
        else:
            unchecked.setdefault(cause.id, set()).update(missing)
    if present:
        _, cause, findings = min(present, key=_rank)
        return Judgement(f, cause.id, cause.confidence, findings, cause.remediation)
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


def _rank(present: tuple[int, Cause, list[Finding]]) -> tuple:
    """Confidence first; a cause found only by exclusion yields to any cause with evidence of its own."""
    order, cause, findings = present
    return CONFIDENCE_RANK[cause.confidence], all(detectors.by_exclusion(fd.evidence) for fd in findings), order


def _warn_uncovered(b: Bundle, f: Failure, sources: set[str], diags: Diagnostics) -> None:
    since = f.start or f.ts
    for source in sorted({_family(s) for s in sources}):
        what = "does not cover" if b.has_source(source) else "is missing from the bundle, so it does not cover"
        diags.add("warning", "source-does-not-cover",
                  f"{source} {what} {iso(since)} to {iso(f.ts)}, when {b.name_of(f.vm_key) or 'the appliance'} "
                  f"failed with {f.error.id}: the cause cannot be told from what this source would show",
                  source, "collect the logs of that period (older rotations) to tell the cause")


# --------------------------------------------------------------------------------------------
# The document


def _still_failing(b: Bundle, f: Failure) -> bool:
    if f.error.id == STALLED or f.vm_key is None:
        return True
    return not any(c["outcome"] == "succeeded" and c["end"] and c["end"] > f.until
                   for c in b.cycles_by_vm.get(f.vm_key, []))


def _severity(b: Bundle, f: Failure) -> str:
    """The error's severity while it lasts; a critical one that recovered, or slowness, is a warning."""
    sig = f.error.severity
    if f.error.id != SLOW and _still_failing(b, f):
        return sig
    return "warning" if sig == "critical" else sig


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _cause_title(b: Bundle, cause: str) -> str:
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


def _captures(b: Bundle, occurrences: list[dict]) -> dict[str, str]:
    out: dict[str, str] = {}
    for o in sorted(occurrences, key=lambda o: (o["ts"], o["member"], o["line"])):
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


def _outages(b: Bundle, judged: list[Judgement]) -> tuple[list[dict], dict[int, str]]:
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
        until = iso(end) if end else "the end of the bundle"
        what = _count(len(cycles), "failed cycle") if cycles else _count(len(members), "failure")
        summary = (f"{title[0].upper()}{title[1:]} from {iso(start)} to {until}; "
                   f"it explains {what} on {_count(len(vms), 'VM')}.")
        outages.append({"id": oid, "cause": cause, "start": iso(start), "end": iso(end), "summary": summary,
                        "vms": vms, "cycles": cycles, "evidence": _limit(entries)})
        for i in groups[key]:
            explains[i] = oid
    return outages, explains


def _verdicts(b: Bundle, judged: list[Judgement], explains: dict[int, str]) -> list[dict]:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, j in enumerate(judged):
        groups[(j.failure.vm_key, j.failure.error.id, j.cause)].append(i)
    out = []
    for (vm_key, error, cause), idx in groups.items():
        members = [judged[i] for i in idx]
        sig = members[0].failure.error
        occ = [o for j in members for o in j.failure.occurrences]
        times = [t for j in members for t in ([o["ts"] for o in j.failure.occurrences]
                                               or [j.failure.ts, j.failure.until])]
        first, last = min(times), max(times)
        cycles = sorted({c for j in members for c in j.failure.cycles})
        codes = sorted({o["code"] for o in occ if o.get("code")})
        best = min(members, key=lambda j: CONFIDENCE_RANK[j.confidence])
        # The outage that explains the verdict's latest explained failure.
        newest_first = sorted(idx, key=lambda i: judged[i].failure.ts, reverse=True)
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
                 "first_seen": iso(first), "last_seen": iso(last)}
        if vm_ids:
            facts["vm_id"] = vm_ids[0]
        out.append({
            "vm": vm, "error": error, "error_code": code,
            "cause": cause, "confidence": best.confidence, "severity": severity, "cycles": cycles,
            "first_seen": iso(first), "last_seen": iso(last),
            "summary": _summary(sig, facts),
            "remediation": list(best.remediation), "references": sorted(sig.references),
            "evidence": _limit(entries), "title": sig.title, "outage": outage,
        })
    return sorted(out, key=lambda v: ((v["vm"] or "").lower(), v["vm"] or "", v["error"], v["cause"]))


def _cycle_doc(c: dict, error: str | None) -> dict:
    return {"id": c["cycle"], "type": c["type"], "start": c["_start_iso"], "end": c["_end_iso"],
            "outcome": c["outcome"], "uploaded_bytes": c["uploaded_bytes"], "error": c["error"] or error,
            "duration_sec": None if c["duration_sec"] is None else round(c["duration_sec"], 3),
            "rate_mbps": None if c["rate_mbps"] is None else round(c["rate_mbps"], 3),
            "failed_state": c["failed_state"]}


def _vms(b: Bundle, judged: list[Judgement]) -> tuple[list[dict], list[str | None]]:
    """The document's VMs, and each one's key; their `tasks` are left empty (see decide)."""
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
    for r in (errors.sort("ts", "signature", "source", "member", "line", nulls_last=True)
              .select("vm_key", iso_expr("ts").alias("ts"), pl.col("signature").alias("error"), "source", "text")
              .to_dicts()):
        errors_by_vm[r.pop("vm_key")].append(r)
    keys = list(set(b.cycles_by_vm) | set(by_vm) | set(errors_by_vm))
    ids = defaultdict(set)
    for r in b.identities.filter(pl.col("vm_id").is_not_null()).to_dicts():
        ids[r["vm_key"]].add(r["vm_id"])
    for c in b.cycles:
        if c["vm_id"]:
            ids[c["vm_key"]].add(c["vm_id"])
    out = []
    for key in keys:
        cycles = b.cycles_by_vm.get(key, [])
        done = [c for c in cycles if c["outcome"] == "succeeded" and c["end"]]
        last_ok = max((c["end"] for c in done), default=None)
        ordered = sorted(cycles, key=lambda c: (c["start"] or c["end"], c["cycle"]))
        after = [c for c in ordered
                 if c["outcome"] == "failed" and (last_ok is None or (c["end"] or c["start"]) > last_ok)]
        loose = [j for j in by_vm[key] if not j.failure.cycles and j.failure.occurrences
                 and (last_ok is None or j.failure.ts > last_ok)]
        consecutive = len(after) + len(loose)
        health = _health(consecutive, {j.failure.error.id for j in by_vm[key]}, bool(cycles))
        out.append({
            "vm": b.name_of(key), "vm_ids": sorted(ids[key]), "host": b.host_of(key), "health": health,
            "last_successful_cycle_end": iso(last_ok), "consecutive_failures": consecutive,
            "cycles": [_cycle_doc(c, cycle_error.get(c["cycle"])) for c in ordered],
            "tasks": [],
            "errors": errors_by_vm.get(key, []),
        })
    order = sorted(range(len(out)), key=lambda i: ((out[i]["vm"] or "").lower(), out[i]["vm"] or ""))
    return [out[i] for i in order], [keys[i] for i in order]


def _health(consecutive_failures: int, errors: set[str], has_cycles: bool) -> str:
    if STALLED in errors or consecutive_failures >= 2:
        return "critical"
    if consecutive_failures == 1 or SLOW in errors:
        return "warning"
    return "healthy" if has_cycles else "unknown"


def _not_evaluated(b: Bundle) -> list[dict]:
    out = set()
    for sig in b.library.signatures.values():
        for m in sig.matchers:
            if not b.has_source(m.source):
                out.add((sig.id, m.source))
    used = {e for s in b.library.errors() for c in s.causes for e in c.evidence if e.startswith("detect.")}
    for det in used:
        for source in detectors.sources_of(det):
            if not b.has_source(source):
                out.add((det, source))
    return [{"signature": s, "source": src} for s, src in sorted(out)]
