"""Root-cause verdicts: for each failure, the cause whose evidence is present around it.

A failure is one error of one VM in one cycle (its repeated lines grouped). Each cause of the
error's signature names evidence ids: evidence signatures (matches) or the built-in detectors
below, for what no regex can see. Evidence counts when it falls in the cause's window around the
failure and in its scope (same VM, same ESXi host, whole appliance); a host- or appliance-wide
failure followed by a successful cycle before the failure recovered (a transient) and does not. Cause choice, confidence and
severity follow CATALOGUE.md's decision rules. Appliance-wide causes backed by an interval become
one outage that lists every VM and cycle it explains.

Detectors take a failure and a window and return a Finding (the lines they rest on, and the
interval of an appliance-wide condition) or nothing; `detect.vddk_67` may rule its cause out.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from statistics import median
from typing import Callable

import polars as pl

from analyzer import tables as T
from analyzer.cycles import CycleResult, with_vm_key
from analyzer.diagnostics import Diagnostics
from analyzer.signatures.model import Cause, Library, Signature

UNDETERMINED = "undetermined"
STALLED = "replication_stalled"
SLOW = "slow_replication"
ERROR_SOURCES = ("gateway_log", "portal_events")
VCENTER = ("vcenter_log", "vcenter_tasks", "vcenter_events")
CONFIDENCE_RANK = {"high": 0, "medium": 1, "low": 2}
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
MAX_EVIDENCE = 20  # lines shown per verdict / outage
REGROUP_GAP = timedelta(minutes=15)  # repeated lines of an error with no cycle form one failure
CYCLE_GRACE = timedelta(minutes=10)  # a portal event may follow its cycle's end
UNKNOWN_CYCLE_SPAN = timedelta(minutes=30)  # how long a failure with no known cycle is taken to have run
CLUSTER_GAP = timedelta(minutes=30)  # connectivity failures this close form one outage
RESTART_GRACE = timedelta(minutes=15)  # a cycle started this long after a recovery was not hit by it
STUCK_TASK_OPEN = timedelta(minutes=30)  # a snapshot task open this long (vCenter still logging) never ended
STUCK_PROGRESS = timedelta(minutes=10)  # progress unchanged this long at 95/99 %
STOP_BEFORE_GAP = timedelta(minutes=5)  # a stop line this close before a gap explains it
READ_ONLY_TASK_WORDS = ("query", "retrieve", "acquire", "browse")

# Detectors that find a cause by ruling the others out (low rate with no connectivity failure).
BY_EXCLUSION = {"detect.low_read_rate"}
# What each detector reads: a detector is only as good as the sources it looks at.
DETECTOR_SOURCES = {
    "detect.appliance_silence": ("gateway_log",),
    "detect.service_down": ("gateway_log",),
    "detect.low_read_rate": ("gateway_log",),
    "detect.overlapping_task": ("vcenter_tasks",),
    "detect.snapshot_task_stuck": ("vcenter_tasks",),
    "detect.host_parallel_disks": ("gateway_log",),
    "detect.appliance_saturated": ("gateway_log",),
    "detect.vddk_67": ("gateway_log",),
    "detect.kv_guest_user": ("portal_events",),
    "detect.kv_other_user": ("portal_events",),
    "detect.slow_cycle": ("gateway_log",),
    "detect.stalled": ("gateway_log",),
}
# Defaults of detector thresholds when no signature's [params] sets them.
DEFAULTS = {
    "low_rate_mbps": 5.0,
    "max_disks_per_host": 8.0,
    "slow_rate_fraction": 0.25,
    "slow_duration_factor": 4.0,
    "min_successful_cycles": 3.0,  # successful cycles needed for a median
    "silence_minutes": 15.0,  # no gateway record for this long is silence (heartbeats every 5 min)
    "stall_grace_minutes": 60.0,  # allowed lateness past the schedule
    "min_interval_h": 1.0,  # delta schedule: min(max(min, duration x fraction), max)
    "max_interval_h": 12.0,
    "interval_duration_fraction": 0.5,
}
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


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    ts = ts.astimezone(timezone.utc)
    if ts.microsecond:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Decision:
    vms: list[dict]  # doc["vms"]
    verdicts: list[dict]  # doc["verdicts"]
    outages: list[dict]  # doc["outages"]
    not_evaluated: list[dict]


@dataclass(frozen=True)
class Entry:
    """One line a finding rests on (an `evidence` item of the JSON)."""

    ts: datetime | None
    source: str
    member: str | None
    line: int | None
    text: str
    evidence: str  # signature or detector id, or the error id for the error's own lines
    note: str | None = None

    def key(self) -> tuple:
        return (self.ts or datetime.min.replace(tzinfo=timezone.utc), self.source, self.member or "",
                self.line or 0, self.evidence)

    def as_dict(self) -> dict:
        out = {"source": self.source, "member": self.member, "line": self.line, "ts": iso(self.ts),
               "text": self.text, "evidence": self.evidence}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Finding:
    evidence: str
    entries: tuple[Entry, ...]
    interval: tuple[datetime, datetime | None] | None = None  # appliance-wide condition


RULED_OUT = "ruled_out"


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

    def host(self, b: "Bundle") -> str | None:
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


def _rows(frame: pl.DataFrame) -> list[dict]:
    return frame.to_dicts() if frame.height else []


def _same_host(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return a.lower() == b.lower() or _short_host(a) == _short_host(b)


class Bundle:
    """Everything the detectors look at, indexed for time-window queries."""

    def __init__(self, tables: dict[str, pl.DataFrame], result: CycleResult, library: Library,
                 sources_present: set[str]):
        self.library = library
        self.present = set(sources_present)
        identities = _table(tables, "identities")
        self.identities = identities
        corrected = result.corrected
        self.end = result.bundle_end
        self.gateway = with_vm_key(_table(tables, "gateway_log"), identities).sort("ts", "member", "line")
        self.portal = _table(tables, "portal_events")
        self.tasks = corrected.get("vcenter_tasks", with_vm_key(_table(tables, "vcenter_tasks"), identities, "vm_name"))
        if "own" not in self.tasks.columns:
            self.tasks = self.tasks.with_columns(pl.lit(False).alias("own"))
        self.events = corrected.get("vcenter_events", _table(tables, "vcenter_events"))
        self.activity = corrected.get("activity", _table(tables, "activity"))
        matches = corrected.get("matches", _table(tables, "matches"))
        self.matches = self._keyed_matches(matches, _table(tables, "vcenter_log"))
        self.cycles = _rows(result.cycles.sort("start", "cycle", nulls_last=True))
        self.disks = result.disks
        self.disk_rates: dict[str, list[float]] = defaultdict(list)
        self.disk_last: dict[str, datetime] = {}
        for r in _rows(self.disks.group_by("cycle").agg(pl.col("rate_mbps").drop_nulls(),
                                                        pl.col("last_progress").max())):
            self.disk_rates[r["cycle"]] = r["rate_mbps"]
            self.disk_last[r["cycle"]] = r["last_progress"]
        self.tasks_by_vm: dict[str, list[dict]] = defaultdict(list)
        for t in _rows(self.tasks.filter(pl.col("vm_key").is_not_null())
                       .sort("start", "task_id", "member", "line", nulls_last=True)):
            self.tasks_by_vm[t["vm_key"]].append(t)

        self.names = self._names()
        self.hosts = {r["vm_key"]: r["host"] for r in _rows(
            identities.filter(pl.col("host").is_not_null()).sort("vm_key", "host")
            .unique("vm_key", keep="last"))}
        self.cycles_by_vm: dict[str, list[dict]] = defaultdict(list)
        for c in self.cycles:
            self.cycles_by_vm[c["vm_key"]].append(c)
            if c["host"] and c["vm_key"] not in self.hosts:
                self.hosts[c["vm_key"]] = c["host"]
        ok = [c for c in self.cycles if c["outcome"] == "succeeded" and c["start"] and c["end"]]
        self.recover_all = Recoveries([(c["start"], c["end"]) for c in ok])
        by_host = defaultdict(list)
        for c in ok:
            by_host[_short_host(c["host"] or self.host_of(c["vm_key"]))].append((c["start"], c["end"]))
        self.recover_host = {k: Recoveries(v) for k, v in by_host.items()}

        self.by_signature: dict[str, list[dict]] = defaultdict(list)
        # A row with an impossible timestamp keeps a null ts; it cannot sit in a window.
        for m in _rows(self.matches.filter((pl.col("kind") == "evidence") & pl.col("ts").is_not_null())):
            self.by_signature[m["signature"]].append(m)
        self.sig_ts = {k: [m["ts"] for m in v] for k, v in self.by_signature.items()}
        self._clusters: dict[str, list[tuple[datetime, datetime]]] = {}
        self.spans = self._spans(tables)
        self._gateway_points()
        self.gaps = self._silences()
        self.downs = self._service_down()
        self.host_load = self._host_load()
        self.portal_users = self._portal_users()
        coded = pl.concat([f.filter(pl.col("error_id").is_not_null()).select("member", "line", "error_id")
                           for f in (self.portal, self.gateway)])
        self.row_code = {(r["member"], r["line"]): r["error_id"] for r in _rows(coded)}
        # Key Vault failures happen while enabling replication: no VM owns them.
        self.vm_less = {s.id for s in library.errors()
                        if any(e.startswith("detect.kv_") for c in s.causes for e in c.evidence)}
        self.captures = {(r["member"], r["line"]): r["captures"] for r in _rows(
            self.matches.filter(pl.col("kind") == "error").select("member", "line", "captures"))}

    # -- identities ---------------------------------------------------------------------------
    def _keyed_matches(self, matches: pl.DataFrame, vcenter_log: pl.DataFrame) -> pl.DataFrame:
        """Fill the VM the matcher left empty: a portal row names it in `machine`; a vCenter line by
        a MoRef in its text, or through the task that shares its opID."""
        key = ["member", "line"]
        machine = (self.portal.select(*key, pl.col("machine").alias("_machine")).unique(key, keep="first"))
        op_ids = (pl.concat([vcenter_log.select(*key, "op_id"), self.events.select(*key, "op_id")])
                  .drop_nulls("op_id").unique(key, keep="first"))
        task_vm = (self.tasks.filter(pl.col("op_id").is_not_null() & pl.col("vm_id").is_not_null())
                   .sort("start").unique("op_id", keep="first").select("op_id", pl.col("vm_id").alias("_task_vm")))
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
        for r in _rows(self.identities.filter(pl.col("vm").is_not_null()).sort("vm_key", "vm")):
            names.setdefault(r["vm_key"], r["vm"])
        for c in self.cycles:
            names.setdefault(c["vm_key"], c["vm"])
        for r in _rows(self.matches.filter(pl.col("vm").is_not_null()).select("vm_key", "vm").unique()
                       .sort("vm_key", "vm")):
            names.setdefault(r["vm_key"], r["vm"])
        return names

    def name_of(self, vm_key: str | None) -> str | None:
        return None if vm_key is None else self.names.get(vm_key, vm_key)

    def host_of(self, vm_key: str | None) -> str | None:
        return self.hosts.get(vm_key) if vm_key else None

    # -- coverage -----------------------------------------------------------------------------
    def _spans(self, tables: dict[str, pl.DataFrame]) -> dict[str, tuple[datetime, datetime]]:
        """First and last record of each source family (gateway, vcenter, portal)."""
        points: dict[str, list[datetime]] = defaultdict(list)
        for r in _rows(self.activity.group_by("source").agg(pl.col("minute").min().alias("lo"),
                                                            pl.col("minute").max().alias("hi"))):
            family = _family(r["source"])
            points[family] += [r["lo"], r["hi"] + timedelta(seconds=59)]
        for family, frame, cols in (("gateway_log", self.gateway, ["ts"]),
                                    ("portal_events", self.portal, ["ts"]),
                                    ("vcenter", self.events, ["ts"]),
                                    ("vcenter", self.tasks, ["start", "end"])):
            for c in cols:
                points[family] += [v for v in (frame[c].min(), frame[c].max()) if v is not None]
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

    # -- gateway timeline ---------------------------------------------------------------------
    def _gateway_points(self) -> None:
        gw_activity = pl.col("source") == "gateway_log"
        gw_minutes = self.activity.filter(gw_activity)["minute"].to_list()
        self.gw = self.gateway.filter(pl.col("ts").is_not_null())
        self.gw_ts = self.gw["ts"].to_list()
        self.gw_points = sorted(set(self.gw_ts + gw_minutes + [m + timedelta(seconds=59) for m in gw_minutes]))
        other = self.activity.filter(~gw_activity)["minute"].to_list()
        other += self.portal["ts"].drop_nulls().to_list() + self.events["ts"].drop_nulls().to_list()
        other += self.tasks["start"].drop_nulls().to_list() + self.tasks["end"].drop_nulls().to_list()
        self.other_points = sorted(set(other))
        event = pl.col("event")
        self.lifecycle = _rows(self.gw.filter(event.is_in(["service_starting", "service_started",
                                                           "service_stopping", "service_stopped"])))
        self.heartbeats = _rows(self.gw.filter(event == "heartbeat"))
        self.vddk = _rows(self.gw.filter(event == "vddk"))
        self.criticals = _rows(self.gw.filter(pl.col("level") == "Critical"))
        progress = self.gw.filter(event == "disk_progress").group_by("vm_key", "cycle_id").agg(pl.all().last())
        self.last_progress = {(r["vm_key"], r["cycle_id"]): r for r in _rows(progress)}

    def last_gateway_row(self, at: datetime) -> dict | None:
        i = bisect.bisect_right(self.gw_ts, at)
        return self.gw.row(i - 1, named=True) if i else None

    def first_gateway_row(self, at: datetime) -> dict | None:
        i = bisect.bisect_left(self.gw_ts, at)
        return self.gw.row(i, named=True) if i < len(self.gw_ts) else None

    def others_during(self, lo: datetime, hi: datetime) -> int:
        return bisect.bisect_right(self.other_points, hi) - bisect.bisect_right(self.other_points, lo)

    def param(self, sig: Signature | None, name: str) -> float:
        if sig is not None and name in dict(sig.params):
            return sig.param(name, DEFAULTS[name])
        for s in sorted(self.library.signatures.values(), key=lambda s: s.id):
            if name in dict(s.params):
                return s.param(name, DEFAULTS[name])
        return DEFAULTS[name]

    def _silences(self) -> list[dict]:
        """Gaps in the gateway log while other sources go on; gaps that end in a stop line are
        service-down intervals, not silence."""
        limit = timedelta(minutes=self.param(None, "silence_minutes"))
        pts = self.gw_points
        gaps = [(a, b) for a, b in zip(pts, pts[1:]) if b - a > limit]
        if pts and self.end and self.end - pts[-1] > limit:
            gaps.append((pts[-1], None))
        out = []
        for a, b in gaps:
            hi = b or self.end
            if not self.others_during(a, hi):
                continue
            if any(a - STOP_BEFORE_GAP <= r["ts"] <= a for r in self.lifecycle
                   if r["event"] in ("service_stopping", "service_stopped")):
                continue  # a stopped service: see _service_down
            last = self.last_gateway_row(a)
            out.append({"start": a, "end": b, "last": last, "next": self.first_gateway_row(hi) if b else None})
        return out

    def _service_down(self) -> list[dict]:
        """Stop line .. next start line (or never came back); and heartbeat gaps while the log goes on."""
        out, down = [], None
        for r in self.lifecycle:
            if r["event"] in ("service_stopping", "service_stopped"):
                down = down or {"start": r["ts"], "stop": r}
            elif down:
                out.append({**down, "end": r["ts"], "back": r})
                down = None
        if down:
            out.append({**down, "end": None, "back": None})
        beats = self.heartbeats
        if len(beats) >= 3:
            spacing = median((b["ts"] - a["ts"]).total_seconds() for a, b in zip(beats, beats[1:]))
            limit = timedelta(seconds=max(3 * spacing, 15 * 60))
            pairs = list(zip(beats, beats[1:]))
            if self.end and self.end - beats[-1]["ts"] > limit:
                pairs.append((beats[-1], None))
            for a, b in pairs:
                hi = b["ts"] if b else self.end
                if hi - a["ts"] <= limit or any(d["start"] <= hi and (d["end"] is None or d["end"] >= a["ts"])
                                                for d in out):
                    continue
                # The log going on without heartbeats is a hung service; no log at all is silence.
                logged = bisect.bisect_left(self.gw_ts, hi) - bisect.bisect_right(self.gw_ts, a["ts"])
                if logged:
                    out.append({"start": a["ts"], "stop": a, "end": b["ts"] if b else None, "back": b,
                                "heartbeats": True})
        for d in out:  # the Critical record that often precedes a stop
            d["critical"] = next((r for r in reversed(self.criticals)
                                  if timedelta(0) <= d["start"] - r["ts"] <= timedelta(minutes=10)), None)
        return sorted(out, key=lambda d: d["start"])

    def _host_load(self) -> dict[str, tuple[list[datetime], list[int]]]:
        """Disks uploading at once per ESXi host: change points and the count after each."""
        hosts = pl.DataFrame([{"cycle": c["cycle"], "_host": _short_host(c["host"] or self.host_of(c["vm_key"]))}
                              for c in self.cycles], schema={"cycle": pl.Utf8, "_host": pl.Utf8})
        disks = (self.disks.join(hosts, on="cycle", how="left")
                 .filter(pl.col("_host").is_not_null() & pl.col("first_progress").is_not_null()))
        start = pl.col("first_progress")
        end = pl.max_horizontal(pl.coalesce("last_progress", start), start + pl.duration(minutes=1))
        changes = (pl.concat([disks.select("_host", start.alias("ts"), pl.lit(1).alias("d")),
                              disks.select("_host", end.alias("ts"), pl.lit(-1).alias("d"))])
                   .sort("_host", "ts", "d")
                   .with_columns(pl.col("d").cum_sum().over("_host").alias("n")))
        return {host: (group["ts"].to_list(), group["n"].to_list())
                for (host,), group in changes.group_by("_host", maintain_order=True)}

    def _portal_users(self) -> list[dict]:
        return _rows(self.portal.filter(pl.col("initiated_by").is_not_null() & pl.col("ts").is_not_null())
                     .sort("ts", "member", "line"))

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
            index = self.recover_host.get(_short_host(failure.host(self)))
        return bool(index and index.between(since, until))


def _short_host(host: str | None) -> str | None:
    return host.split(".")[0].lower() if host else None


def _family(source: str) -> str:
    return "vcenter" if source.startswith("vcenter") else source


def _table(tables: dict[str, pl.DataFrame], name: str) -> pl.DataFrame:
    frame = tables.get(name)
    return T.empty(name) if frame is None else T.conform(name, frame)


# --------------------------------------------------------------------------------------------
# Detectors


Detector = Callable[[Bundle, Failure, Cause, datetime, datetime], "Finding | str | None"]


def _gateway_entry(row: dict, evidence: str, note: str | None = None) -> Entry:
    text = row["message"] or ""
    return Entry(row["ts"], "gateway_log", row["member"], row["line"], text, evidence, note)


def _interval_hits(b: Bundle, f: Failure, lo: datetime, hi: datetime, start: datetime,
                   end: datetime | None) -> bool:
    """An outage [start, end] explains the failure unless it ended before the failing cycle began
    or a successful cycle ran after it, before the failure."""
    if start > hi or (end is not None and end < lo):
        return False
    if end is None:
        return True
    if f.start is not None and f.start > end + RESTART_GRACE:
        return False
    return not b.recovered("appliance", f, end, f.ts)


def detect_appliance_silence(b: Bundle, f: Failure, cause: Cause, lo: datetime, hi: datetime):
    for gap in reversed(b.gaps):
        if not _interval_hits(b, f, lo, hi, gap["start"], gap["end"]):
            continue
        end = gap["end"] or b.end
        minutes = round((end - gap["start"]).total_seconds() / 60)
        note = (f"no gateway records for {minutes} min ({iso(gap['start'])} to "
                f"{iso(gap['end']) if gap['end'] else 'the end of the bundle'}) while other sources kept logging")
        entries = [_gateway_entry(gap["last"], "detect.appliance_silence", "last record before the silence: " + note)] \
            if gap["last"] else []
        if gap["next"]:
            entries.append(_gateway_entry(gap["next"], "detect.appliance_silence", "first record after the silence"))
        return Finding("detect.appliance_silence", tuple(entries), (gap["start"], gap["end"]))
    return None


def detect_service_down(b: Bundle, f: Failure, cause: Cause, lo: datetime, hi: datetime):
    for down in reversed(b.downs):
        if not _interval_hits(b, f, lo, hi, down["start"], down["end"]):
            continue
        what = "heartbeats stopped" if down.get("heartbeats") else "the gateway service stopped"
        back = f"until {iso(down['end'])}" if down["end"] else "and did not come back within the bundle"
        entries = [_gateway_entry(down["stop"], "detect.service_down", f"{what} at {iso(down['start'])} {back}")]
        if down.get("critical"):
            entries.append(_gateway_entry(down["critical"], "detect.service_down", "Critical record before the stop"))
        if down["back"]:
            entries.append(_gateway_entry(down["back"], "detect.service_down", "service back"))
        return Finding("detect.service_down", tuple(entries), (down["start"], down["end"]))
    return None


def _connectivity_ids(library: Library) -> set[str]:
    return {e for s in library.errors() for c in s.causes if c.id.endswith("_unreachable")
            for e in c.evidence if not e.startswith("detect.")}


def detect_low_read_rate(b: Bundle, f: Failure, cause: Cause, lo: datetime, hi: datetime):
    c = f.cycle
    if c is None:
        return None
    threshold = b.param(f.error, "low_rate_mbps")
    rates = b.disk_rates.get(c["cycle"], [])
    rate = max(rates) if rates else c["rate_mbps"]
    if rate is None or rate >= threshold or not (c["uploaded_bytes"] or rates):
        return None
    for sig in _connectivity_ids(b.library):
        ts = b.sig_ts.get(sig, [])
        if bisect.bisect_right(ts, hi) > bisect.bisect_left(ts, lo):
            return None
    note = f"upload rate {rate:.2f} MB/s stayed under {threshold:g} MB/s with no connectivity failure"
    row = b.last_progress.get((c["vm_key"], c["cycle_id"]))
    entry = (_gateway_entry(row, "detect.low_read_rate", note) if row else
             Entry(c["start"], "gateway_log", c["member"], c["line"], f"cycle {c['cycle']}",
                   "detect.low_read_rate", note))
    return Finding("detect.low_read_rate", (entry,))


def _task_entry(t: dict, evidence: str, note: str) -> Entry:
    who = t["initiator"] or "an unknown initiator"
    span = f"{iso(t['start'])} to {iso(t['end']) if t['end'] else 'no end'}"
    target = t["vm_name"] or t["entity"] or t["vm_key"]
    text = f"{t['task_id'] or t['task_name'] or 'task'} {t['method']} on {target} by {who} ({span})"
    return Entry(t["start"], "vcenter_tasks", t["member"], t["line"], text, evidence, note)


def _vm_tasks(b: Bundle, vm_key: str | None) -> list[dict]:
    return b.tasks_by_vm.get(vm_key, []) if vm_key else []


def detect_overlapping_task(b: Bundle, f: Failure, cause: Cause, lo: datetime, hi: datetime):
    start = f.since
    end = (f.cycle["end"] if f.cycle and f.cycle["end"] else f.until)
    hits = []
    for t in _vm_tasks(b, f.vm_key):
        if t["own"] or t["start"] is None or any(w in (t["method"] or "").lower() for w in READ_ONLY_TASK_WORDS):
            continue
        if t["start"] <= end and (t["end"] is None or t["end"] >= start):
            hits.append(_task_entry(t, "detect.overlapping_task",
                                    f"overlaps the cycle; initiated by {t['initiator'] or 'unknown'}"))
    return Finding("detect.overlapping_task", tuple(hits)) if hits else None


def detect_snapshot_task_stuck(b: Bundle, f: Failure, cause: Cause, lo: datetime, hi: datetime):
    vc_last = b.spans.get("vcenter", (None, None))[1]
    hits = []
    for t in _vm_tasks(b, f.vm_key):
        if t["method"] != "vim.VirtualMachine.createSnapshot" or t["start"] is None or not lo <= t["start"] <= hi:
            continue
        progress = t["progress"]
        stuck_progress = (progress is not None and 95 <= progress < 100 and
                          (t["end"] is None or t["outcome"] == "failed" or
                           (t["progress_ts"] is not None and t["end"] - t["progress_ts"] >= STUCK_PROGRESS)))
        never_ended = t["end"] is None and vc_last is not None and vc_last - t["start"] >= STUCK_TASK_OPEN
        if stuck_progress:
            hits.append(_task_entry(t, "detect.snapshot_task_stuck", f"progress stopped at {progress} %"))
        elif never_ended:
            hits.append(_task_entry(t, "detect.snapshot_task_stuck", "the create-snapshot task never ended"))
    return Finding("detect.snapshot_task_stuck", tuple(hits)) if hits else None


def _host_peak(b: Bundle, f: Failure, start: datetime, end: datetime) -> tuple[int, datetime | None]:
    """Most disks uploading at once on the failure's host within [start, end], and when."""
    times, counts = b.host_load.get(_short_host(f.host(b)), ([], []))
    i, j = bisect.bisect_right(times, start), bisect.bisect_right(times, end)
    window = counts[max(i - 1, 0):j]
    if not window:
        return 0, None
    peak = max(window)
    return peak, times[max(i - 1, 0) + window.index(peak)]


def detect_host_parallel_disks(b: Bundle, f: Failure, cause: Cause, lo: datetime, hi: datetime):
    peak, at = _host_peak(b, f, lo, hi)
    limit = b.param(f.error, "max_disks_per_host")
    if peak <= limit:
        return None
    note = f"{peak} disks uploading at once on host {f.host(b)} at {iso(at)} (limit {limit:g})"
    c = f.cycle
    entry = (Entry(c["start"], "gateway_log", c["member"], c["line"], f"cycle {c['cycle']} on {f.host(b)}",
                   "detect.host_parallel_disks", note) if c else
             Entry(at, "gateway_log", None, None, note, "detect.host_parallel_disks"))
    return Finding("detect.host_parallel_disks", (entry,))


def detect_appliance_saturated(b: Bundle, f: Failure, cause: Cause, lo: datetime, hi: datetime):
    beats = [r for r in b.heartbeats if r["active_cycles"] is not None]
    if not beats:
        return None
    limit = max(r["active_cycles"] for r in beats)
    explicit = dict(f.error.params).get("max_active_cycles")
    limit = explicit if explicit is not None else limit
    hot = [r for r in beats if lo <= r["ts"] <= hi and (r["queued_cycles"] or 0) > 0 and r["active_cycles"] >= limit]
    if not hot:
        return None
    worst = max(hot, key=lambda r: (r["queued_cycles"], -r["ts"].timestamp()))
    note = f"{len(hot)} heartbeats with cycles queued at {limit:g} active cycles"
    return Finding("detect.appliance_saturated", (_gateway_entry(worst, "detect.appliance_saturated", note),))


def detect_vddk_67(b: Bundle, f: Failure, cause: Cause, lo: datetime, hi: datetime):
    lines = b.vddk
    if not lines:
        return None
    before = [r for r in lines if r["ts"] <= hi]
    row = before[-1] if before else lines[0]
    if (row["version"] or "").startswith("6.7"):
        return Finding("detect.vddk_67", (_gateway_entry(row, "detect.vddk_67", "VDDK 6.7 in use"),))
    return RULED_OUT if row["version"] else None


def _initiators(b: Bundle, f: Failure) -> list[dict]:
    lines = {(o["member"], o["line"]) for o in f.occurrences if o["source"] == "portal_events"}
    return [r for r in b.portal_users if (r["member"], r["line"]) in lines]


def _portal_entry(row: dict, evidence: str, note: str) -> Entry:
    return Entry(row["ts"], "portal_events", row["member"], row["line"],
                 f"Initiated by {row['initiated_by']}", evidence, note)


def _domain(user: str) -> str | None:
    return user.rsplit("@", 1)[1].lower() if "@" in user else None


def detect_kv_guest_user(b: Bundle, f: Failure, cause: Cause, lo: datetime, hi: datetime):
    # The tenant's domain is the one most initiators share; with no clear majority, only #EXT# tells.
    domains = Counter(d for d in (_domain(r["initiated_by"]) for r in b.portal_users
                                  if "#ext#" not in r["initiated_by"].lower()) if d).most_common()
    tenant = domains[0][0] if len(domains) > 1 and domains[0][1] > domains[1][1] else None
    hits = []
    for r in _initiators(b, f):
        user = r["initiated_by"]
        if "#ext#" in user.lower():
            hits.append(_portal_entry(r, "detect.kv_guest_user", "a guest (#EXT#) principal of the tenant"))
        elif tenant and _domain(user) and _domain(user) != tenant:
            hits.append(_portal_entry(r, "detect.kv_guest_user", f"a principal outside the tenant's domain {tenant}"))
    return Finding("detect.kv_guest_user", tuple(hits)) if hits else None


def detect_kv_other_user(b: Bundle, f: Failure, cause: Cause, lo: datetime, hi: datetime):
    if not b.portal_users:
        return None
    first = b.portal_users[0]
    note = f"not the user who first set up replication ({first['initiated_by']})"
    hits = [_portal_entry(r, "detect.kv_other_user", note)
            for r in _initiators(b, f) if r["initiated_by"].lower() != first["initiated_by"].lower()]
    if not hits:
        return None
    return Finding("detect.kv_other_user",
                   (*hits, _portal_entry(first, "detect.kv_other_user", "the user who first set up replication")))


def detect_slow_cycle(b: Bundle, f: Failure, cause: Cause, lo: datetime, hi: datetime):
    slow = _slow_cycle(b, f.vm_key, f.cycle) if f.cycle else None
    if not slow:
        return None
    c = f.cycle
    return Finding("detect.slow_cycle", (Entry(c["start"], "gateway_log", c["member"], c["line"],
                                               f"cycle {c['cycle']}", "detect.slow_cycle", slow),))


def detect_stalled(b: Bundle, f: Failure, cause: Cause, lo: datetime, hi: datetime):
    stall = _stall(b, f.vm_key)
    if not stall:
        return None
    last, due = stall
    return Finding("detect.stalled", (Entry(last["end"], "gateway_log", last["member"], last["line"],
                                            f"cycle {last['cycle']} completed", "detect.stalled",
                                            f"next cycle was due by {iso(due)}"),))


DETECTORS: dict[str, Detector] = {
    "detect.appliance_silence": detect_appliance_silence,
    "detect.service_down": detect_service_down,
    "detect.low_read_rate": detect_low_read_rate,
    "detect.overlapping_task": detect_overlapping_task,
    "detect.snapshot_task_stuck": detect_snapshot_task_stuck,
    "detect.host_parallel_disks": detect_host_parallel_disks,
    "detect.appliance_saturated": detect_appliance_saturated,
    "detect.vddk_67": detect_vddk_67,
    "detect.kv_guest_user": detect_kv_guest_user,
    "detect.kv_other_user": detect_kv_other_user,
    "detect.slow_cycle": detect_slow_cycle,
    "detect.stalled": detect_stalled,
}


def _signature_evidence(b: Bundle, f: Failure, cause: Cause, sig_id: str, lo: datetime, hi: datetime):
    ts = b.sig_ts.get(sig_id, [])
    candidates = b.by_signature.get(sig_id, [])[bisect.bisect_left(ts, lo):bisect.bisect_right(ts, hi)]
    host = f.host(b)
    if cause.scope == "appliance":
        # Connectivity failures are transient: one followed by a successful cycle before the
        # failure explains nothing. (A VM's relocate or fault is a change that stays: no such rule.)
        # Recovery only gets less likely for later matches: drop the recovered prefix at once.
        times = [m["ts"] for m in candidates]
        lo_i, hi_i = 0, bisect.bisect_left(times, f.ts)
        while lo_i < hi_i:
            mid = (lo_i + hi_i) // 2
            if b.recovered("appliance", f, times[mid], f.ts):
                lo_i = mid + 1
            else:
                hi_i = mid
        candidates = candidates[lo_i:]
    kept = []
    for m in candidates:
        if cause.scope == "vm" and (f.vm_key is None or m["vm_key"] != f.vm_key):
            continue
        if cause.scope == "host":
            m_host = m["host"] or b.host_of(m["vm_key"])
            if not (_same_host(m_host, host) or (m_host is None and m["vm_key"] and m["vm_key"] == f.vm_key)):
                continue
        if cause.scope == "host" and m["ts"] < f.ts and b.recovered("host", f, m["ts"], f.ts):
            continue  # a transient that recovered before the failure
        kept.append(m)
    if not kept:
        return None
    entries = tuple(Entry(m["ts"], m["source"], m["member"], m["line"], m["text"] or "", sig_id) for m in kept)
    interval = None
    if cause.scope == "appliance":
        last = max(m["ts"] for m in kept)
        interval = next(((a, z) for a, z in b.clusters(sig_id) if a <= last <= z), (last, last))
    return Finding(sig_id, entries, interval)


def _evidence_sources(b: Bundle, evidence_id: str) -> set[str]:
    if evidence_id.startswith("detect."):
        return set(DETECTOR_SOURCES.get(evidence_id, ()))
    sig = b.library.signatures.get(evidence_id)
    return {m.source for m in sig.matchers} if sig else set()


# --------------------------------------------------------------------------------------------
# Choosing the cause


def judge(b: Bundle, f: Failure, diags: Diagnostics) -> Judgement:
    sig = f.error
    present: list[tuple[int, Cause, list[Finding]]] = []
    ruled_out: set[str] = set()
    unchecked: dict[str, set[str]] = {}
    since = f.start or f.ts
    for order, cause in enumerate(sig.causes):
        lo, hi = f.ts - cause.before, f.until + cause.after
        findings, checked = [], not cause.evidence
        for eid in cause.evidence:
            sources = _evidence_sources(b, eid)
            if any(b.covers(s, since, f.ts) for s in sources):
                checked = True
            else:
                unchecked.setdefault(cause.id, set()).update(sources)
            if eid.startswith("detect."):
                detector = DETECTORS.get(eid)
                got = detector(b, f, cause, lo, hi) if detector else None
            else:
                got = _signature_evidence(b, f, cause, eid, lo, hi)
            if got == RULED_OUT:
                ruled_out.add(cause.id)
            elif got is not None:
                findings.append(got)
        if checked:
            unchecked.pop(cause.id, None)
        if findings:
            present.append((order, cause, findings))
    if present:
        # A cause found only by exclusion yields to any cause with evidence of its own.
        def rank(p: tuple[int, Cause, list[Finding]]) -> tuple:
            by_exclusion = all(fd.evidence in BY_EXCLUSION for fd in p[2])
            return CONFIDENCE_RANK[p[1].confidence], by_exclusion, p[0]
        order, cause, findings = min(present, key=rank)
        return Judgement(f, cause.id, cause.confidence, findings, cause.remediation)
    if unchecked:
        missing = sorted({_family(s) for v in unchecked.values() for s in v})
        for source in missing:
            what = "does not cover" if b.has_source(source) else "is missing from the bundle, so it does not cover"
            diags.add("warning", "source-does-not-cover",
                      f"{source} {what} {iso(since)} to {iso(f.ts)}, when {b.name_of(f.vm_key) or 'the appliance'} "
                      f"failed with {sig.id}: the cause cannot be told from what this source would show",
                      source, "collect the logs of that period (older rotations) to tell the cause")
        return Judgement(f, UNDETERMINED, "low", [], sig.undetermined)
    candidates = [c for c in sig.causes if c.id not in ruled_out]
    if len(sig.causes) == 1 and candidates:
        return Judgement(f, candidates[0].id, "low", [], candidates[0].remediation)
    fallback = next((c for c in candidates if c.fallback), None)
    if fallback:
        return Judgement(f, fallback.id, "low", [], fallback.remediation)
    return Judgement(f, UNDETERMINED, "low", [], sig.undetermined)


# --------------------------------------------------------------------------------------------
# Failures from errors


def _occurrences(b: Bundle, diags: Diagnostics) -> list[dict]:
    """Error matches on gateway/portal rows, plus failed-cycle lines no signature recognised
    (their Error ID names the error when only one signature has it)."""
    errors = b.matches.filter((pl.col("kind") == "error") & pl.col("source").is_in(ERROR_SOURCES)
                              & pl.col("ts").is_not_null())
    errors = errors.filter(pl.col("signature").is_in(list(b.library.signatures)))
    occ = _rows(errors.select("signature", "source", "ts", "vm_key", "member", "line", "text"))
    matched = {(o["member"], o["line"]) for o in occ}
    failed = _rows(b.gateway.filter((pl.col("event") == "cycle_failed") & pl.col("ts").is_not_null()))
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
    groups: dict[tuple, list[dict]] = {}
    loose: dict[tuple, list[list[dict]]] = defaultdict(list)
    for o in _occurrences(b, diags):
        cycle = _cycle_for(b, o["vm_key"], o["ts"])
        if cycle is not None:
            groups.setdefault((o["vm_key"], o["signature"], cycle["cycle"]), []).append(o)
            o["_cycle"] = cycle
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
        cycle = occ[0]["_cycle"]
        ts = cycle["end"] if cycle["outcome"] == "failed" and cycle["end"] else occ[0]["ts"]
        out.append(Failure(b.library.signatures[sig], vm_key, cycle, ts, max(ts, occ[-1]["ts"]), occ, [cycle_id]))
    for (vm_key, sig), runs in loose.items():
        for occ in runs:
            out.append(Failure(b.library.signatures[sig], vm_key, None, occ[0]["ts"], occ[-1]["ts"], occ))
    return sorted(out, key=lambda f: (f.vm_key or "", f.error.id, f.ts))


# --------------------------------------------------------------------------------------------
# Conditions with no error event: judged at the end of the bundle


def _upload_rate(b: Bundle, c: dict) -> float | None:
    """MB/s while uploading: the disks' reported rates, else bytes over the whole cycle."""
    rates = b.disk_rates.get(c["cycle"])
    return sum(rates) / len(rates) if rates else c["rate_mbps"]


def _slow_cycle(b: Bundle, vm_key: str, cycle: dict) -> str | None:
    """Why `cycle` is slow against the VM's successful cycles of its type, or None.

    A running cycle is judged by how long it has run so far (until the appliance's last record)."""
    sig = b.library.signatures.get(SLOW)
    done = [c for c in b.cycles_by_vm.get(vm_key, []) if c["outcome"] == "succeeded" and c["type"] == cycle["type"]]
    if len([c for c in done if c is not cycle]) < b.param(sig, "min_successful_cycles"):
        return None
    fraction, factor = b.param(sig, "slow_rate_fraction"), b.param(sig, "slow_duration_factor")
    rates = [r for r in (_upload_rate(b, c) for c in done) if r]
    rate = _upload_rate(b, cycle)
    if cycle["outcome"] == "succeeded" and rates and rate is not None and rate < fraction * median(rates):
        return f"upload rate {rate:.2f} MB/s is under {fraction:g} x the VM's median {median(rates):.2f} MB/s"
    durations = [c["duration_sec"] for c in done if c["duration_sec"] is not None]
    duration = cycle["duration_sec"]
    if cycle["outcome"] == "in_progress" and cycle["start"] and b.gw_points:
        duration = (b.gw_points[-1] - cycle["start"]).total_seconds()
    if durations and duration is not None and duration > factor * median(durations):
        return f"took {duration / 60:.0f} min, over {factor:g} x the VM's median {median(durations) / 60:.0f} min"
    return None


def _stall(b: Bundle, vm_key: str) -> tuple[dict, datetime] | None:
    """(last successful cycle, when the next was due) when no cycle completed in time."""
    sig = b.library.signatures.get(STALLED)
    cycles = b.cycles_by_vm.get(vm_key, [])
    done = [c for c in cycles if c["outcome"] == "succeeded" and c["end"]]
    if not done or b.end is None:
        return None
    last = max(done, key=lambda c: c["end"])
    if last["type"] == "final_delta":
        return None  # migrated: no more cycles are due
    if last["type"] in ("initial", "resync"):
        interval = timedelta(0)  # the first delta starts right after
    else:
        length = (last["end"] - last["start"]).total_seconds() if last["start"] else 0
        lowest, highest = b.param(sig, "min_interval_h") * 3600, b.param(sig, "max_interval_h") * 3600
        interval = timedelta(seconds=min(max(lowest, length * b.param(sig, "interval_duration_fraction")), highest))
    due = last["end"] + interval
    grace = timedelta(minutes=b.param(sig, "stall_grace_minutes"))
    if b.end - due <= grace:
        return None
    # A cycle still uploading (progress in the last grace period) is slow, not stalled.
    for c in cycles:
        if c["outcome"] == "in_progress" and c["start"] and c["start"] >= last["end"]:
            seen = b.disk_last.get(c["cycle"])
            if seen and b.end - seen <= grace:
                return None
    return last, due


def end_of_bundle_conditions(b: Bundle, failures: list[Failure]) -> list[Failure]:
    out = []
    last_failure: dict[str, datetime] = {}
    for f in failures:
        if f.vm_key is not None:
            last_failure[f.vm_key] = max(last_failure.get(f.vm_key, f.ts), f.ts)
    for vm_key, cycles in sorted(b.cycles_by_vm.items()):
        done = [c["end"] for c in cycles if c["outcome"] == "succeeded" and c["end"]]
        since = max(done) if done else None
        if vm_key in last_failure and (since is None or last_failure[vm_key] >= since):
            continue  # an error verdict covers this period
        stalled = b.library.signatures.get(STALLED)
        stall = _stall(b, vm_key) if stalled else None
        if stall:
            last, due = stall
            after = [c for c in cycles if c["start"] and c["start"] >= last["end"]]
            out.append(Failure(stalled, vm_key, after[-1] if after else None, due, b.end, [],
                               [c["cycle"] for c in after]))
            continue
        # The last completed cycle, or one still running past the slow limit, tells the VM's pace now.
        slow_sig = b.library.signatures.get(SLOW)
        ended = [c for c in cycles if c["outcome"] == "succeeded" and c["start"]]
        running = [c for c in cycles if c["outcome"] == "in_progress" and c["start"]]
        for c in ([running[-1]] if running else []) + ([ended[-1]] if ended else []):
            if slow_sig and _slow_cycle(b, vm_key, c):
                out.append(Failure(slow_sig, vm_key, c, c["start"], c["end"] or b.end, [], [c["cycle"]]))
                break
    return out


# --------------------------------------------------------------------------------------------
# The document


def _still_failing(b: Bundle, f: Failure) -> bool:
    if f.error.id == STALLED:
        return True
    if f.vm_key is None:
        return True
    return not any(c["outcome"] == "succeeded" and c["end"] and c["end"] > f.until
                   for c in b.cycles_by_vm.get(f.vm_key, []))


def _severity(b: Bundle, f: Failure) -> str:
    sig = f.error.severity
    if f.error.id == SLOW:
        return "warning" if sig == "critical" else sig
    if _still_failing(b, f):
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
    return {"id": c["cycle"], "type": c["type"], "start": iso(c["start"]), "end": iso(c["end"]),
            "outcome": c["outcome"], "uploaded_bytes": c["uploaded_bytes"], "error": c["error"] or error,
            "duration_sec": None if c["duration_sec"] is None else round(c["duration_sec"], 3),
            "rate_mbps": None if c["rate_mbps"] is None else round(c["rate_mbps"], 3),
            "failed_state": c["failed_state"]}


def _vms(b: Bundle, judged: list[Judgement]) -> list[dict]:
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
    for r in _rows(errors.sort("ts", "signature", "source", "member", "line", nulls_last=True)):
        errors_by_vm[r["vm_key"]].append({"ts": iso(r["ts"]), "error": r["signature"], "source": r["source"],
                                          "text": r["text"]})
    keys = set(b.cycles_by_vm) | set(by_vm) | set(errors_by_vm)
    ids = defaultdict(set)
    for r in _rows(b.identities.filter(pl.col("vm_id").is_not_null())):
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
        errors_judged = {j.failure.error.id for j in by_vm[key]}
        if STALLED in errors_judged or consecutive >= 2:
            health = "critical"
        elif consecutive == 1 or SLOW in errors_judged:
            health = "warning"
        elif cycles:
            health = "healthy"
        else:
            health = "unknown"
        tasks = _vm_tasks(b, key)
        out.append({
            "vm": b.name_of(key), "vm_ids": sorted(ids[key]), "host": b.host_of(key), "health": health,
            "last_successful_cycle_end": iso(last_ok), "consecutive_failures": consecutive,
            "cycles": [_cycle_doc(c, cycle_error.get(c["cycle"])) for c in ordered],
            "tasks": [{"task_id": t["task_id"], "method": t["method"], "start": iso(t["start"]), "end": iso(t["end"]),
                       "outcome": t["outcome"], "fault_type": t["fault_type"], "initiator": t["initiator"]}
                      for t in tasks],
            "errors": errors_by_vm.get(key, []),
        })
    return sorted(out, key=lambda v: ((v["vm"] or "").lower(), v["vm"] or ""))


def _not_evaluated(b: Bundle) -> list[dict]:
    out = set()
    for sig in b.library.signatures.values():
        for m in sig.matchers:
            if not b.has_source(m.source):
                out.add((sig.id, m.source))
    used = {e for s in b.library.errors() for c in s.causes for e in c.evidence if e.startswith("detect.")}
    for det in used:
        for source in DETECTOR_SOURCES.get(det, ()):
            if not b.has_source(source):
                out.add((det, source))
    return [{"signature": s, "source": src} for s, src in sorted(out)]


def decide(tables: dict[str, pl.DataFrame], cycles: CycleResult, library: Library, diags: Diagnostics,
           sources_present: set[str]) -> Decision:
    b = Bundle(tables, cycles, library, sources_present)
    failures = failures_from_errors(b, diags)
    failures += end_of_bundle_conditions(b, failures)
    judged = [judge(b, f, diags) for f in failures]
    outages, explains = _outages(b, judged)
    return Decision(vms=_vms(b, judged), verdicts=_verdicts(b, judged, explains), outages=outages,
                    not_evaluated=_not_evaluated(b))
