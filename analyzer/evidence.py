"""What verdicts and detectors share: the case being judged (Case, indexed once per bundle), the
failure judged in it (Failure), and what evidence is found for a cause (Finding, made of Entry
lines, or RULED_OUT).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import polars as pl

from analyzer import identity, tables
from analyzer.cycles import CycleResult
from analyzer.parsers.timeparse import to_iso, to_iso_expr
from analyzer.redact import redact_columns
from analyzer.signatures.model import TEXT_COLUMNS, Library, Signature

# the conditions judged with no error event, by their signature ids
STALLED = "replication_stalled"
SLOW = "slow_replication"
RULED_OUT = "ruled_out"  # a detector's answer when what it sees excludes its cause
UNKNOWN_CYCLE_SPAN = timedelta(minutes=30)  # how long a failure with no known cycle is taken to have run
CLUSTER_GAP = timedelta(minutes=30)  # connectivity failures this close form one outage
FAILURE_TABLES = ("gateway_log", "portal_events")  # where replication failures are reported


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
        out = {"source": self.source, "member": self.member, "line": self.line, "ts": to_iso(self.ts),
               "text": self.text, "evidence": self.evidence}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Finding:
    evidence: str
    entries: tuple[Entry, ...]
    interval: tuple[datetime, datetime | None] | None = None  # appliance-wide condition
    # How it was found, for verdicts.confidence_of: `observed` at the times of its lines (or `at`),
    # `standing` (a state that holds until changed, e.g. the VDDK version in use), `guess` (an
    # inference such as the earliest initiator taken as the Key Vault's creator).
    basis: str = "observed"
    at: tuple[datetime, ...] = ()  # when what it shows held, where its lines' times do not say


@dataclass(frozen=True)
class Undecided:
    """A detector's answer when the bundle's shape lacks the fact it needs (real vpxd logs a task's
    progress without its value): it says so instead of deciding from nothing."""

    evidence: str
    reason: str
    location: str | None = None


@dataclass
class Failure:
    error: Signature
    vm_key: str | None
    cycle: dict | None  # CYCLES row
    ts: datetime | None  # when it failed (the window is anchored here); None: text with no time
    until: datetime | None  # end of the failing span (stalled / slow conditions last)
    occurrences: list[dict] = field(default_factory=list)  # error match rows
    cycles: list[str] = field(default_factory=list)  # cycle ids it covers

    @property
    def start(self) -> datetime | None:
        return self.cycle["start"] if self.cycle else None

    def host(self, b: Case) -> str | None:
        """The ESXi host the failing cycle ran on (the VM's last known host otherwise)."""
        return (self.cycle["host"] if self.cycle else None) or b.host_of(self.vm_key)

    @property
    def timeless(self) -> bool:
        """Read from text that gives no time (a pasted error, documentation): no window to judge in."""
        return self.ts is None

    @property
    def since(self) -> datetime | None:
        """Since when the failing work ran: its cycle's start, else a guess before the failure
        (a stall: since the next cycle was due)."""
        if self.start is not None:
            return self.start
        if self.ts is None:
            return None
        return self.ts if self.error.id == STALLED else self.ts - UNKNOWN_CYCLE_SPAN


class Recoveries:
    """Successful cycles, to ask: did one run entirely after `since` and end by `until`?"""

    def __init__(self, spans: pl.DataFrame):
        """`spans`: the cycles' start and end columns (neither null)."""
        # as microseconds since 1970: a list of ints is read from the frame at once
        spans = spans.select(pl.col("start", "end").dt.epoch("us")).sort("start", "end")
        self.starts = spans["start"].to_list()
        # the earliest end of the cycles from each start on
        self.min_end_from = spans["end"].reverse().cum_min().reverse().to_list()

    def between(self, since: datetime, until: datetime) -> bool:
        i = bisect.bisect_left(self.starts, _microseconds(since))
        return i < len(self.starts) and self.min_end_from[i] <= _microseconds(until)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _microseconds(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


class CyclesByVm(Mapping):
    """vm_key -> the VM's cycles as dicts (CYCLE_FIELDS), in the order of the frame given; each
    VM's made when first asked for."""

    def __init__(self, frame: pl.DataFrame):
        self._parts = frame.partition_by("vm_key", as_dict=True, maintain_order=True)
        self._made: dict[str | None, list[dict]] = {}

    def __getitem__(self, vm_key: str | None) -> list[dict]:
        if vm_key not in self._made:
            self._made[vm_key] = self._parts[(vm_key,)].to_dicts()
        return self._made[vm_key]

    def __iter__(self) -> Iterator[str | None]:
        return (vm_key for (vm_key,) in self._parts)

    def __len__(self) -> int:
        return len(self._parts)


class Case:
    """The case being judged: one bundle's rows, matches and cycles, indexed for the window and
    scope questions verdicts and detectors ask. (Not bundle.py's bundle, the archive: what was
    read from it.) `signals`, what the detectors read, is indexed by verdicts.decide once the
    case is built."""

    def __init__(self, frames: dict[str, pl.DataFrame], result: CycleResult, library: Library,
                 tables_present: set[str], lang: str = "en"):
        self.library = library
        self.lang = lang  # the document's language: its Korean texts are built only for "ko"
        self.present = set(tables_present)  # the tables the bundle's sources fill (sources.tables_of)
        self.identities = _table(frames, "identities")
        corrected = result.corrected
        self.end = result.bundle_end
        # Lazy (the table may be a scan of its stored parts, pipeline._SCANNED): each reader
        # collects its rows and columns. Not sorted as a whole: rows read in time order are
        # sorted where read.
        self.gateway = identity.resolve(_table(frames, "gateway_log").lazy(), self.identities, cycle_col="cycle_id")
        self.portal = _table(frames, "portal_events")
        self.status = _table(frames, "replication_status")  # the portal's own view of each VM
        self.tasks = (corrected["vcenter_tasks"] if "vcenter_tasks" in corrected
                      else identity.resolve(_table(frames, "vcenter_tasks"), self.identities, "vm_name"))
        if "own" not in self.tasks.columns:
            self.tasks = self.tasks.with_columns(pl.lit(False).alias("own"))
        # lazy, as the gateway: it may be a scan (pipeline._SCANNED)
        self.events = (corrected["vcenter_events"] if "vcenter_events" in corrected
                       else _table(frames, "vcenter_events")).lazy()
        self.activity = corrected["activity"] if "activity" in corrected else _table(frames, "activity")
        matches = corrected["matches"] if "matches" in corrected else _table(frames, "matches")
        # a shared VM name with nothing else to place it: the VM whose cycle ran then
        self.matches = identity.settle(self._keyed_matches(matches, _table(frames, "vcenter_log")),
                                       self.identities, result.cycles)
        # Every cycle, in order, with its disks' rates and last progress (the detectors'): what is
        # asked of all cycles is asked of these columns; a VM's cycles become dicts when first
        # asked for (cycles_by_vm): a fleet has tens of thousands, its failures are on a few VMs.
        per_disk = result.disks.group_by("cycle").agg(pl.col("rate_mbps").drop_nulls().alias("disk_rates"),
                                                      pl.col("last_progress").max().alias("disk_last"))
        self.cycle_frame = (result.cycles.join(per_disk, on="cycle", how="left")
                            .sort("start", "cycle", nulls_last=True).select(*CYCLE_FIELDS))
        self.cycles_by_vm = CyclesByVm(self.cycle_frame)
        self.disks = result.disks
        # Each VM's tasks in order, as row numbers of self.tasks (a VM's run: self._task_runs):
        # the tasks stay in the frame; rows become dicts only for the document and the detectors.
        by_vm = self.tasks.select(pl.arg_sort_by(tables.text_rank(self.tasks, "vm_key"), "start", "task_id",
                                                 tables.text_rank(self.tasks, "member"), "line", nulls_last=True))
        # null keys sort last: no VM's tasks
        self._task_order = by_vm.to_series().head(self.tasks.height - self.tasks["vm_key"].null_count())
        order = self.tasks.select(pl.col("vm_key").gather(self._task_order))
        runs = order.group_by("vm_key", maintain_order=True).len()
        ends = runs["len"].cum_sum().to_list()
        self._task_runs = {k: (e - n, e) for k, n, e in zip(runs["vm_key"].to_list(), runs["len"].to_list(), ends)}
        self._tasks_of: dict[str, list[dict]] = {}

        self.names = self._names()
        # The portal's replication status, per VM (its latest row): health and when it last synced.
        # A name two vCenters share cannot say which VM it is: left out.
        status = identity.resolve(self.status.filter(pl.col("server").is_not_null()), self.identities, "server", None)
        status = (status.filter(~pl.col("vm_key").is_in(list(identity.unsettled(self.identities))))
                  .sort("last_sync", "line", nulls_last=False).unique("vm_key", keep="last"))
        self.portal_status: dict[str, dict] = {r["vm_key"]: r for r in status.to_dicts()}
        self.hosts = {r["vm_key"]: r["host"] for r in (
            self.identities.filter(pl.col("host").is_not_null()).sort("vm_key", "host")
            .unique("vm_key", keep="last").to_dicts())}
        # a VM no identity places on a host: the host of its first cycle that names one
        first_host = (self.cycle_frame.filter(pl.col("host").is_not_null() & (pl.col("host") != ""))
                      .group_by("vm_key", maintain_order=True).agg(pl.col("host").first()))
        for vm_key, host in zip(first_host["vm_key"].to_list(), first_host["host"].to_list()):
            self.hosts.setdefault(vm_key, host)
        ok = self.cycle_frame.filter((pl.col("outcome") == "succeeded") & pl.col("start").is_not_null()
                                     & pl.col("end").is_not_null()).select("start", "end", "vm_key", "host")
        self.recover_all = Recoveries(ok)
        self.recover_host = {host: Recoveries(spans) for (host,), spans in
                             self.with_short_host(ok).group_by("_host")}

        self.by_signature: dict[str, list[dict]] = defaultdict(list)
        # A row with no time (an impossible timestamp, a text with none) cannot sit in a window:
        # it counts only for a failure that has no time either.
        self.timeless_by_signature: dict[str, list[dict]] = defaultdict(list)
        for m in self.matches.filter(pl.col("kind") == "evidence").to_dicts():
            (self.by_signature if m["ts"] is not None else self.timeless_by_signature)[m["signature"]].append(m)
        self.sig_ts = {k: [m["ts"] for m in v] for k, v in self.by_signature.items()}
        self._clusters: dict[str, list[tuple[datetime, datetime]]] = {}
        self.spans = self._spans()
        # CATALOGUE "Where errors may show": with a gateway log or portal events, errors are taken
        # from them (an error text elsewhere is a finding); with neither, from any text.
        self.error_tables = (FAILURE_TABLES if "gateway_log" in self.spans or self.portal.height
                             else tuple(TEXT_COLUMNS))
        coded = pl.concat([f.lazy().filter(pl.col("error_id").is_not_null())
                           .select(pl.col("member").cast(pl.Utf8), "line", pl.col("error_id").cast(pl.Utf8))
                           for f in (self.portal, self.gateway)]).collect()
        self.row_code = dict(zip(_row_keys(coded), coded["error_id"].to_list()))
        # Key Vault failures happen while enabling replication: no VM owns them.
        self.vm_less = {s.id for s in library.errors()
                        if any(e.startswith("detect.kv_") for c in s.causes for e in c.evidence)}
        errors = self.matches.filter(pl.col("kind") == "error")
        self.captures = dict(zip(_row_keys(errors), errors["captures"].to_list()))
        self.signals = None  # detectors.Signals

    def release_records(self) -> None:
        """Let go of the RECORD_TABLES' rows (and what indexes them): judging is done."""
        self.gateway = self.events = None
        self.signals = None

    def release_cycles(self) -> None:
        """Let go of the cycles (and their dicts): the document's VMs are built."""
        self.cycle_frame = self.cycles_by_vm = None
        self.recover_all = self.recover_host = None

    # -- identities ---------------------------------------------------------------------------
    def _keyed_matches(self, matches: pl.DataFrame, vcenter_log: pl.DataFrame) -> pl.DataFrame:
        """Fill the VM the matcher left empty: a portal row names it in `machine`; a vCenter line by
        a MoRef in its text, else through the task that shares its opID; a vCenter task's match is
        its task's VM (a snapshot removal is tied to its VM by cycles._tie_tasks); a gateway line of
        a name two vCenters share is its gateway row's VM (placed by its cycle)."""
        key = ["member", "line"]
        machine = (self.portal.select(*key, pl.col("machine").alias("_machine")).unique(key, keep="first"))
        # Only the matched lines' opIDs and their tasks: the logs have hundreds of thousands of rows.
        op_ids = (pl.concat([vcenter_log.lazy().select(*key, "op_id"), self.events.select(*key, "op_id")])
                  .join(matches.lazy().select(key).unique(), on=key, how="semi", maintain_order="left")
                  .drop_nulls("op_id").unique(key, keep="first").collect())
        task_vm = (self.tasks.lazy().select("op_id", "vm_key", "start")
                   .filter(pl.col("op_id").is_not_null() & pl.col("vm_key").is_not_null())
                   .join(op_ids.lazy().select("op_id").unique(), on="op_id", how="semi")
                   .sort("start").unique("op_id", keep="first").select("op_id", pl.col("vm_key").alias("_op_key"))
                   .collect())
        from_vcenter = pl.col("source").is_in(list(tables.VCENTER))
        filled = (matches.join(machine, on=key, how="left")
                  .with_columns(
                      pl.coalesce("vm", "_machine").alias("vm"),
                      pl.coalesce("vm_id", pl.when(from_vcenter).then(pl.col("text").str.extract(r"\b(vm-\d+)\b", 1)))
                      .alias("vm_id"))
                  .drop("_machine"))
        keyed = identity.resolve(filled, self.identities)
        source = pl.col("source")
        own_row = {  # the VM of the row a match was made on, where that row knows it better
            "vcenter_tasks": self.tasks.lazy().select(pl.col("member").cast(pl.Utf8), "line", "vm_key"),
        }
        if identity.unsettled(self.identities):
            own_row["gateway_log"] = self.gateway.select(pl.col("member").cast(pl.Utf8), "line", "vm_key")
        for name, rows in own_row.items():
            rows = (rows.join(matches.lazy().filter(source == name).select(key).unique(), on=key, how="semi")
                    .unique(key, keep="first").rename({"vm_key": f"_{name}"}).collect())
            keyed = keyed.join(rows, on=key, how="left", maintain_order="left")
        keyed = (keyed.join(op_ids, on=key, how="left", maintain_order="left")
                 .join(task_vm, on="op_id", how="left", maintain_order="left"))
        keyed = keyed.with_columns(vm_key=pl.coalesce(
            *(pl.when(source == name).then(f"_{name}") for name in own_row),
            pl.when(from_vcenter & pl.col("vm_id").is_null()).then("_op_key"), "vm_key"))
        keyed = keyed.drop([c for c in keyed.columns if c.startswith("_") or c == "op_id"])
        return keyed.sort("ts", "member", "line", "signature", nulls_last=True)

    def _names(self) -> dict[str, str]:
        names = {}
        for r in self.identities.filter(pl.col("vm").is_not_null()).sort("vm_key", "vm").to_dicts():
            names.setdefault(r["vm_key"], r["vm"])
        first = self.cycle_frame.group_by("vm_key", maintain_order=True).agg(pl.col("vm").first())
        for vm_key, vm in zip(first["vm_key"].to_list(), first["vm"].to_list()):
            names.setdefault(vm_key, vm)
        for r in (self.matches.filter(pl.col("vm").is_not_null()).select("vm_key", "vm").unique()
                  .sort("vm_key", "vm").to_dicts()):
            names.setdefault(r["vm_key"], r["vm"])
        for server in self.status.filter(pl.col("server").is_not_null()).sort("line")["server"].to_list():
            names.setdefault(server.lower(), server)
        return names

    def name_of(self, vm_key: str | None) -> str | None:
        return None if vm_key is None else self.names.get(vm_key, vm_key)

    def host_of(self, vm_key: str | None) -> str | None:
        return self.hosts.get(vm_key) if vm_key else None

    def with_short_host(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` (vm_key, host) with `_host`: short_host(host or host_of(vm_key)), as columns."""
        known = pl.DataFrame({"vm_key": list(self.hosts), "_known": list(self.hosts.values())},
                             schema={"vm_key": pl.Utf8, "_known": pl.Utf8})
        host = pl.col("host").cast(pl.Utf8)
        host = pl.when(host.is_not_null() & (host != "")).then(host).otherwise("_known")
        return (frame.join(known, on="vm_key", how="left", maintain_order="left")
                .with_columns(_host=pl.when(host != "").then(host.str.split(".").list.first().str.to_lowercase()))
                .drop("_known"))

    def tasks_of(self, vm_key: str | None) -> list[dict]:
        """The VM's vCenter tasks (rows of self.tasks) by start."""
        if not vm_key or vm_key not in self._task_runs:
            return []
        if vm_key not in self._tasks_of:
            lo, hi = self._task_runs[vm_key]
            self._tasks_of[vm_key] = self.tasks[self._task_order[lo:hi]].to_dicts()
        return self._tasks_of[vm_key]

    def task_table(self, redact: bool) -> pl.DataFrame:
        """Every VM's tasks in order (by VM, then start), their texts as the document shows them."""
        frame = self.tasks.select(pl.col("vm_key", "member", "line", "start", "end", "task_id", "method", "outcome",
                                         "fault_type", "initiator").gather(self._task_order))
        frame = frame.with_columns(pl.col(c).cast(pl.Utf8) for c in ("member", "task_id", "method", "outcome",
                                                                     "fault_type", "initiator"))
        return redact_columns(frame, ("task_id", "method", "outcome", "fault_type", "initiator"), redact)

    @staticmethod
    def task_docs(tasks: pl.DataFrame) -> dict[str, list[dict]]:
        """Each VM's tasks (rows of task_table, in its order) as the document lists them."""
        frame = tasks.select("vm_key", "task_id", "method", to_iso_expr("start").alias("start"),
                             to_iso_expr("end").alias("end"), "outcome", "fault_type", "initiator")
        columns = [interned_list(frame[c]) for c in frame.columns]
        out: dict[str, list[dict]] = {}
        for k, a, b, c, d, e, f, g in zip(*columns):
            out.setdefault(k, []).append({"task_id": a, "method": b, "start": c, "end": d, "outcome": e,
                                          "fault_type": f, "initiator": g})
        return out

    # -- coverage -----------------------------------------------------------------------------
    def _spans(self) -> dict[str, tuple[datetime, datetime]]:
        """First and last record of each source family (gateway, vcenter, portal)."""
        points: dict[str, list[datetime]] = defaultdict(list)
        for r in self.activity.group_by("source").agg(pl.col("minute").min().alias("lo"),
                                                      pl.col("minute").max().alias("hi")).to_dicts():
            family = family_of(r["source"])
            points[family] += [r["lo"], r["hi"] + timedelta(seconds=59)]
        for family, frame, cols in (("gateway_log", self.gateway, ["ts"]),
                                    ("portal_events", self.portal, ["ts"]),
                                    ("vcenter", self.events, ["ts"]),
                                    ("vcenter", self.tasks, ["start", "end"])):
            for c in cols:
                points[family] += [v for v in tables.span(frame, c) if v is not None]
        return {f: (min(p), max(p)) for f, p in points.items() if p}

    def covers(self, table: str, since: datetime, until: datetime) -> bool:
        """Whether the source of `table` was logging over the failure [since, until]. The gateway
        must have started by `since`: a gateway log that stops before is silence, not missing
        coverage."""
        family = family_of(table)
        if not self.has_table(table) or family not in self.spans:
            return False
        first, last = self.spans[family]
        if family == "gateway_log":
            return first <= since
        return first <= until and last >= since

    def has_table(self, table: str) -> bool:
        """Whether the bundle holds a source that fills `table`."""
        return table in self.present

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


def short_host(host: str | None) -> str | None:
    return host.split(".")[0].lower() if host else None


# A cycle as verdicts and detectors read it: a row of CYCLES, and its disks' upload rates (a list)
# and last progress.
CYCLE_FIELDS = ("vm_key", "vm", "vm_id", "host", "cycle", "cycle_id", "type", "start", "end", "outcome",
                "failed_state", "error", "uploaded_bytes", "duration_sec", "rate_mbps", "member", "line",
                "disk_rates", "disk_last")


def interned_list(column: pl.Series) -> list:
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


def family_of(source: str) -> str:
    return "vcenter" if source.startswith("vcenter") else source


def _table(frames: dict[str, pl.DataFrame], name: str) -> pl.DataFrame:
    frame = frames.get(name)
    return tables.empty(name) if frame is None else tables.conform(name, frame)
