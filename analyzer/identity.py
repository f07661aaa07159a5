"""One identity per VM, from every (name, MoRef) pair the bundle shows together.

    gateway  Replication cycle started. vm=APP01 vmId=vm-1042 host=esx07 vcenter=vcsa01  -> pair
    vpxd     ... [vim.VirtualMachine:vm-1042,APP01] ...                                    -> pair
    portal   Machine=app01          task CSV  Target=APP01          vpxd task  vm-1042   -> name / MoRef

  -> identities: vm_key (lowercased name, or `<vcenter>/<moref>` / `<moref>` when no name is known),
     vm (display name as first seen), vm_id (one row per MoRef), vcenter, host (last seen).

Names compare case-insensitively, and as `clean_name` leaves them: quotes and brackets around a
name are not part of it (`'ERP08'`, `[ERP08]`), and documentation placeholders (`VMName`,
`<VM name>`, `%VMName;`) name no VM. MoRefs are only unique within one vCenter, so with several
vCenters in the bundle a MoRef is qualified by its vCenter. vCenters are compared by their first
DNS label, lowercased (`vcenter_key`): the gateway names `vcsa01.contoso.local` where the
vc-support archive is `vc-vcsa01-2024-05-14--10.21-12345.tgz`.

Two VMs of one name under different vCenters stay two VMs: their key is `<vcenter>/<name>` and
their display name `APP01 (vcsa01)`, so their cycle ids (`APP01 (vcsa01)#17`) cannot collide. A
row that gives such a name without its vCenter is placed by its MoRef, or (gateway) by the
vCenter of its cycle's start line; a row that gives none of them keeps the bare name
(`unsettled`), which no identity has.

`build` makes the identities once per bundle; `resolve` gives any frame's rows their `vm_key`, and
every later stage keys VMs through it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl

from analyzer import tables
from analyzer.diagnostics import Diagnostics

UNRESOLVED_SAMPLES = 10
_VM_IN_VPXD = r"vim\.VirtualMachine:(?P<moref>vm-\d+),(?P<name>[^\]]+)\]"


def vcenter_key(expr: pl.Expr) -> pl.Expr:
    """`VCSA01.contoso.local` -> `vcsa01`; a vc-support archive stem
    `vc-vcsa01.contoso.local-2024-05-14--10.21-12345` -> `vcsa01`; IP addresses stay whole."""
    text = (expr.cast(pl.Utf8).str.strip_chars().str.to_lowercase()
            .str.replace(r"^vc-(.+?)-\d{4}-\d{2}-\d{2}(?:--.*)?$", "${1}"))
    return (pl.when(text.str.contains(r"^\d+\.\d+\.\d+\.\d+$")).then(text)
            .otherwise(text.str.extract(r"^([^.]+)", 1)))


def _lookup(names: pl.Series, column: str, rule) -> pl.Expr:
    """rule(`column`) as a lookup of these names: the rule's regexes run once per distinct name,
    not once per row (a week's gateway lines name 300 VMs 700 000 times)."""
    names = names.cast(pl.Utf8).drop_nulls().unique()
    done = names.to_frame(column).select(rule(pl.col(column))).to_series()
    return pl.col(column).cast(pl.Utf8).replace_strict(names, done, default=None, return_dtype=pl.Utf8)


def _vcenter_keys(*columns: pl.Series) -> pl.Expr:
    """vcenter_key of the `vcenter` column, as a lookup of these columns' names."""
    return _lookup(pl.concat([c.cast(pl.Utf8) for c in columns]), "vcenter", vcenter_key)


_QUOTED = r"^['\"`\u2018\u2019\u201c\u201d]\s*(.*?)\s*['\"`\u2018\u2019\u201c\u201d]$"
# one pair of brackets around the whole name, holding no bracket of its kind: `<script>x</script>`
# or `[a] b [c]` keep theirs
_BRACKETED = r"^(?:\[\s*([^\[\]]*?)\s*\]|\(\s*([^()]*?)\s*\)|<\s*([^<>]*?)\s*>|\{\s*([^{}]*?)\s*\})$"
# What documentation and templates put where a VM name goes: <vm>, <VM name>, %VMName;, {vm},
# VMName, VMId, DiskPath, HostName (quotes around them already stripped).
PLACEHOLDER = r"(?i)^(?:<[^<>]*>|%\w+;?|\{\w*\}|vm[ _]?name|vm[ _]?id|disk[ _]?path|host[ _]?name)$"


def clean_name(expr: pl.Expr) -> pl.Expr:
    """A VM name as written, without quotes or brackets around it; null for a placeholder."""
    unquoted = expr.cast(pl.Utf8).str.strip_chars().str.replace(_QUOTED, "${1}")
    bare = unquoted.str.replace(_BRACKETED, "${1}${2}${3}${4}").str.replace(_QUOTED, "${1}")
    placeholder = unquoted.str.contains(PLACEHOLDER) | bare.str.contains(PLACEHOLDER)
    return pl.when(~placeholder & (bare != "")).then(bare)


def _name_key(expr: pl.Expr) -> pl.Expr:
    return clean_name(expr).str.to_lowercase()


def _per_name(frame: pl.DataFrame | pl.LazyFrame, column: str, rule=_name_key) -> pl.Expr:
    """rule(`column`) (a name's key, or clean_name), as a lookup of the frame's distinct names."""
    return _lookup(frame.lazy().select(pl.col(column).cast(pl.Utf8).unique()).collect().to_series(), column, rule)


def build(frames: dict[str, pl.DataFrame], diags: Diagnostics) -> pl.DataFrame:
    def table(name: str, *columns: str) -> pl.DataFrame:
        frame = frames.get(name)
        frame = tables.conform(name, frame) if frame is not None else tables.empty(name)
        # only the columns read below (as text): later filters and joins then copy those alone
        return tables.as_text(frame.lazy().select(columns)).collect()

    gateway = table("gateway_log", "ts", "vm", "vm_id", "host", "vcenter")
    portal = table("portal_events", "ts", "machine")
    tasks = table("vcenter_tasks", "start", "vcenter", "vm_id", "vm_name")
    vpxd = table("vcenter_log", "ts", "vcenter", "message", "detail")

    # the first name each vCenter is seen by (the first row of each distinct name comes first)
    seen = pl.concat([f.lazy().select("vcenter").drop_nulls().unique(maintain_order=True)
                      for f in (gateway, tasks, vpxd)]).unique(maintain_order=True).collect()
    vc_key = _vcenter_keys(seen["vcenter"])
    vcenters = (seen.select(vc=vc_key, vcenter="vcenter")
                .drop_nulls().unique("vc", keep="first", maintain_order=True))
    several = vcenters.height > 1
    single = vcenters["vc"][0] if vcenters.height == 1 else None

    pairs = pl.concat([
        gateway.select("ts", "vcenter", name="vm", moref="vm_id"),
        _vpxd_pairs(vpxd),
    ])
    pairs = pairs.with_columns(name=_per_name(pairs, "name", clean_name))
    pairs = pairs.filter(pl.col("name").is_not_null() & pl.col("moref").is_not_null())
    pairs = pairs.with_columns(vc=_vcenter_keys(pairs["vcenter"]), key=_per_name(pairs, "name"))
    morefs = pl.concat([
        gateway.lazy().filter(pl.col("vm").is_null()).select("vcenter", moref="vm_id"),
        tasks.lazy().select("vcenter", moref="vm_id"),
    ]).drop_nulls("moref").unique().collect()
    morefs = morefs.with_columns(vc=_vcenter_keys(morefs["vcenter"]))
    if several:
        pairs = _place_in_vcenter(pairs, morefs)
    else:
        pairs = pairs.with_columns(vc=pl.lit(single, pl.Utf8))
        morefs = morefs.with_columns(vc=pl.lit(single, pl.Utf8))

    names = _names(gateway, portal, tasks, pairs)
    hosts = (gateway.select("ts", "vm", "host").filter(pl.col("host").is_not_null() & pl.col("vm").is_not_null())
             .sort("ts", nulls_last=False).group_by(key=_per_name(gateway, "vm"))
             .agg(host=pl.col("host").last()))
    vc_names = vcenters.select("vc", vc_name="vcenter")

    # each MoRef takes the name it was last seen with (a VM can be renamed)
    named = (pairs.sort("ts", nulls_last=False).group_by("vc", "moref")
             .agg(pl.col("key").last()))
    # a name in several vCenters is several VMs: each keyed and shown with its vCenter
    shared = _shared_names(named) if several else set()
    if shared:
        # a pair that could not be placed in a vCenter cannot say which of them it is
        named = named.filter(pl.col("vc").is_not_null() | ~pl.col("key").is_in(list(shared)))
        diags.add("info", "vm-name-in-several-vcenters",
                  f"{len(shared)} VM names belong to VMs of more than one vCenter; each is told apart by "
                  f"its vCenter, as in `NAME (vcenter)` (e.g. {', '.join(sorted(shared)[:3])})")
    renamed = pairs.group_by("vc", "moref").agg(pl.col("key").n_unique()).filter(pl.col("key") > 1)
    if renamed.height:
        diags.add("info", "moref-renamed",
                  f"{renamed.height} MoRefs appear with more than one VM name; the latest name is "
                  f"used (e.g. {', '.join(renamed['moref'].head(3).to_list())})")

    is_shared = pl.col("key").is_in(list(shared))
    named_rows = named.join(names, on="key", how="left").select(
        vm_key=pl.when(is_shared).then(pl.format("{}/{}", "vc", "key")).otherwise("key"),
        vm=pl.when(is_shared).then(pl.format("{} ({})", "vm", "vc")).otherwise("vm"),
        vm_id="moref", vc="vc")
    unnamed = (morefs.select("vc", "moref").unique()
               .join(named.select("vc", "moref"), on=["vc", "moref"], how="anti", nulls_equal=True))
    # a MoRef whose vCenter is unknown is named when any vCenter's pair names it
    unnamed = pl.concat([
        unnamed.filter(pl.col("vc").is_not_null()),
        unnamed.filter(pl.col("vc").is_null()).join(named.select("moref"), on="moref", how="anti"),
    ]).sort("vc", "moref", nulls_last=True)
    unnamed_rows = unnamed.select(
        vm_key=(pl.concat_str([pl.col("vc"), pl.lit("/"), pl.col("moref")]) if several
                else pl.col("moref")).fill_null(pl.col("moref")),
        vm=pl.lit(None, pl.Utf8), vm_id="moref", vc="vc")
    name_only = names.join(named.select("key").unique(), on="key", how="anti").select(
        vm_key="key", vm="vm", vm_id=pl.lit(None, pl.Utf8), vc=pl.lit(None, pl.Utf8))
    hosts = hosts.filter(~is_shared)  # a shared name's host is its MoRef's (below)

    gateway_vc = _vcenter_keys(gateway["vcenter"]) if several else pl.lit(single, pl.Utf8)
    moref_hosts = (gateway.select("ts", "vcenter", "vm_id", "host")
                   .filter(pl.col("host").is_not_null() & pl.col("vm_id").is_not_null())
                   .sort("ts", nulls_last=False).group_by(vc=gateway_vc, vm_id="vm_id")
                   .agg(moref_host=pl.col("host").last()))
    identities = (
        pl.concat([named_rows, name_only, unnamed_rows])
        .join(hosts.rename({"key": "vm_key"}), on="vm_key", how="left")
        .join(moref_hosts, on=["vc", "vm_id"], how="left", nulls_equal=True)
        .join(vc_names, on="vc", how="left")
        .with_columns(host=pl.coalesce("host", "moref_host"), vcenter=pl.coalesce("vc_name", "vc"))
        .sort("vm_key", "vm_id", nulls_last=True)
    )

    if unnamed.height:
        sample = sorted(unnamed_rows["vm_key"].to_list())[:UNRESOLVED_SAMPLES]
        more = f" and {unnamed.height - len(sample)} more" if unnamed.height > len(sample) else ""
        diags.add("info", "unresolved-moref",
                  f"{unnamed.height} VM MoRefs could not be tied to a VM name: "
                  f"{', '.join(sample)}{more}",
                  hint="their vCenter tasks are shown by MoRef; a gateway cycle-start line of the "
                       "VM (vm= with vmId=) ties them to a name")
    return tables.conform("identities", identities)


def _vpxd_pairs(vpxd: pl.DataFrame) -> pl.DataFrame:
    text = pl.concat_str([pl.col("message"), pl.col("detail").fill_null("")], separator="\n")
    found = (vpxd.filter(text.str.contains("vim.VirtualMachine:vm-", literal=True))
             .select("ts", "vcenter", pair=text.str.extract_all(_VM_IN_VPXD)).explode("pair")
             .drop_nulls("pair"))
    parts = pl.col("pair").str.extract_groups(_VM_IN_VPXD)
    return found.select("ts", "vcenter", name=parts.struct.field("name").str.strip_chars(),
                        moref=parts.struct.field("moref"))


def _place_in_vcenter(pairs: pl.DataFrame, morefs: pl.DataFrame) -> pl.DataFrame:
    """A pair without a vCenter (no vcenter= token) belongs to the one vCenter that has its MoRef,
    else to the one vCenter where the same name and MoRef are seen together."""
    owners = (pl.concat([morefs.select("vc", "moref"), pairs.select("vc", "moref")])
              .drop_nulls("vc").unique()
              .group_by("moref").agg(owner=pl.col("vc").first(), owners=pl.len())
              .filter(pl.col("owners") == 1).drop("owners"))
    same = (pairs.drop_nulls("vc").group_by("key", "moref")
            .agg(same=pl.col("vc").first(), places=pl.col("vc").n_unique())
            .filter(pl.col("places") == 1).drop("places"))
    return (pairs.join(owners, on="moref", how="left").join(same, on=["key", "moref"], how="left")
            .with_columns(vc=pl.coalesce("vc", "owner", "same")).drop("owner", "same"))


def _shared_names(named: pl.DataFrame) -> set[str]:
    """Name keys that name VMs (MoRefs) of more than one vCenter."""
    per_name = named.drop_nulls("vc").group_by("key").agg(pl.col("vc").n_unique())
    return set(per_name.filter(pl.col("vc") > 1)["key"].to_list())


def _names(gateway: pl.DataFrame, portal: pl.DataFrame, tasks: pl.DataFrame,
           pairs: pl.DataFrame) -> pl.DataFrame:
    """Every VM name, keyed lowercased, with its display form as first seen: earliest time, then
    gateway, portal, tasks, pairs, then row."""
    def first_seen(frame: pl.DataFrame, ts: str, name: str, order: int) -> pl.LazyFrame:
        # each distinct name once, at its earliest row: the sort below then orders hundreds of
        # names, not every row of the gateway log
        earliest = pl.col("ts", "row").sort_by("ts", "row", nulls_last=True).first()
        return (frame.lazy().select(ts=ts, name=name).with_row_index("row").drop_nulls("name")
                .group_by("name").agg(earliest).with_columns(order=pl.lit(order)))

    seen = pl.concat([
        first_seen(gateway, "ts", "vm", 0),
        first_seen(portal, "ts", "machine", 1),
        first_seen(tasks, "start", "vm_name", 2),
        first_seen(pairs, "ts", "name", 3),
    ]).with_columns(clean_name(pl.col("name")).alias("name")).with_columns(key=_name_key(pl.col("name")))
    return (seen.drop_nulls("key").sort("ts", "order", "row", nulls_last=True)
            .group_by("key", maintain_order=True).agg(vm=pl.col("name").first()).collect())


def resolve(frame: pl.DataFrame | pl.LazyFrame, identities: pl.DataFrame, name_col: str | None = "vm",
            id_col: str | None = "vm_id", cycle_col: str | None = None) -> pl.DataFrame | pl.LazyFrame:
    """`frame` (eager or lazy) with a `vm_key` column, read from its name, MoRef and `vcenter` columns.

    A name one vCenter alone has decides; else the (vCenter, MoRef) pair; a name several vCenters
    share is placed by the row's vCenter, by its MoRef, or by the vCenter the same name's cycle
    `cycle_col` started in (gateway rows); else a MoRef only one identity has (of the row's
    vCenter when it names one); else the MoRef itself, qualified by the vCenter when the bundle
    has several. A shared name that none of these place stays the bare name (see `unsettled`)."""
    columns = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    ids = identities.select("vm_key", "vm_id", _vc=vcenter_key(pl.col("vcenter")))
    with_moref = ids.drop_nulls("vm_id")
    several = with_moref["_vc"].drop_nulls().n_unique() > 1
    shared = shared_names(identities)
    name = _per_name(frame, name_col) if name_col and name_col in columns else pl.lit(None, pl.Utf8)
    moref = pl.col(id_col).cast(pl.Utf8) if id_col and id_col in columns else pl.lit(None, pl.Utf8)
    if not several and not shared:
        # one vCenter: the name, else the MoRef's identity; an expression, not a join, so that a
        # large frame's columns are neither copied nor rechunked
        first = with_moref.sort("vm_key").unique("vm_id", keep="first")
        by_moref = moref.replace_strict(first["vm_id"], first["vm_key"], default=None, return_dtype=pl.Utf8)
        return frame.with_columns(vm_key=pl.coalesce(name, by_moref, moref))

    vc = vcenter_key(pl.col("vcenter")) if "vcenter" in columns else pl.lit(None, pl.Utf8)
    out = frame.lazy().with_columns(_name=name, _moref=moref, _vc=vc)

    def join(left: pl.LazyFrame, right: pl.DataFrame | pl.LazyFrame, on: list[str]) -> pl.LazyFrame:
        return left.join(right.lazy(), on=on, how="left", maintain_order="left")

    by_vc = with_moref.select("_vc", _moref="vm_id", _k_vc="vm_key").unique(["_vc", "_moref"])
    by_moref = (with_moref.group_by(_moref="vm_id").agg(_k_any=pl.col("vm_key").first(),
                                                        _keys=pl.col("vm_key").n_unique())
                .filter(pl.col("_keys") == 1).drop("_keys"))
    out = join(join(out, by_vc, ["_vc", "_moref"]), by_moref, ["_moref"])
    if several:  # a MoRef of a known other vCenter is not this one
        out = out.with_columns(_k_any=pl.when(pl.col("_vc").is_null()).then("_k_any"))
    is_shared = pl.col("_name").is_in(list(shared))
    placed: list[str] = []
    if shared:
        own = (ids.filter(pl.col("vm_key").str.contains("/", literal=True))
               .with_columns(_name=pl.col("vm_key").str.split("/").list.last())
               .filter(pl.col("_name").is_in(list(shared))))
        by_vc_name = own.select("_name", "_vc", _k_vc_name="vm_key").unique(["_name", "_vc"])
        by_pair = (own.drop_nulls("vm_id").select("_name", _moref="vm_id", _k_pair="vm_key")
                   .unique(["_name", "_moref"]))
        out = join(join(out, by_vc_name, ["_name", "_vc"]), by_pair, ["_name", "_moref"])
        placed = ["_k_vc_name", "_k_pair"]
        if cycle_col and cycle_col in columns and "ts" in columns:
            out = _by_cycle(out, is_shared, pl.coalesce("_k_vc", *placed), cycle_col)
            placed.append("_k_cycle")
    qualified = pl.concat_str([pl.col("_vc"), pl.lit("/"), pl.col("_moref")]) if several else pl.col("_moref")
    out = out.with_columns(vm_key=pl.coalesce(
        pl.when(~is_shared).then("_name"), "_k_vc", *placed, "_k_any",
        pl.when(is_shared).then("_name"), qualified, "_moref",
    ))
    out = out.drop([c for c in out.collect_schema().names() if c.startswith("_") and c not in columns])
    return out if isinstance(frame, pl.LazyFrame) else out.collect()


def _by_cycle(out: pl.LazyFrame, is_shared: pl.Expr, key: pl.Expr, cycle_col: str) -> pl.LazyFrame:
    """`_k_cycle`: the VM of a shared name's cycle line. A cycle's start line names its vCenter and
    MoRef; its other lines only the name and the cycle id, which two such VMs may both be at. A VM
    runs one cycle at a time, so its cycle lasts from its start line to the VM's next start: a
    line belongs to the one VM whose cycle of that id was running at the line's time (none or
    two: it stays unplaced)."""
    starts = (out.filter(is_shared & pl.col(cycle_col).is_not_null() & key.is_not_null())
              .group_by("_name", _cycle=pl.col(cycle_col), _k_cycle=key).agg(_from=pl.col("ts").min())
              .sort("_from").with_columns(_until=pl.col("_from").shift(-1).over("_k_cycle")))
    rows = out.with_row_index("_row")
    owners = (rows.filter(is_shared & pl.col(cycle_col).is_not_null() & key.is_null())
              .select("_row", "_name", "ts", _cycle=pl.col(cycle_col))
              .join(starts, on=["_name", "_cycle"])
              .filter((pl.col("_from") <= pl.col("ts")) & (pl.col("_until").is_null() | (pl.col("ts") < pl.col("_until"))))
              .group_by("_row").agg(pl.col("_k_cycle").first(), _owners=pl.col("_k_cycle").n_unique())
              .filter(pl.col("_owners") == 1).select("_row", "_k_cycle"))
    return rows.join(owners, on="_row", how="left", maintain_order="left").drop("_row")


def shared_names(identities: pl.DataFrame) -> set[str]:
    """Name keys that VMs of several vCenters share (their identities' keys are `<vcenter>/<name>`)."""
    keys = identities.filter(pl.col("vm").is_not_null() & pl.col("vm_key").str.contains("/", literal=True))
    return set(keys["vm_key"].str.split("/").list.last().to_list())


def unsettled(identities: pl.DataFrame) -> dict[str, list[str]]:
    """Each shared name's bare key (what `resolve` leaves on a row it cannot place), with the keys
    of the VMs it may be."""
    shared = shared_names(identities)
    out: dict[str, list[str]] = {}
    for key in sorted(identities["vm_key"].drop_nulls().unique().to_list()):
        _, _, name = key.partition("/")
        if name in shared:
            out.setdefault(name, []).append(key)
    return out


SETTLE_GRACE = timedelta(minutes=10)  # a report of a failure may follow its cycle's end


def settle(frame: pl.DataFrame, identities: pl.DataFrame, cycles: pl.DataFrame, ts_col: str = "ts") -> pl.DataFrame:
    """Rows `resolve` left on a shared name (a portal event's Machine, an error text naming the VM)
    go to the one VM of that name whose replication cycle failed just before the row's time, else
    to the one whose cycle ran at that time; with none or several such VMs the row keeps the bare
    name. `cycles`: vm_key, start, end, outcome (tables.CYCLES)."""
    open_names = unsettled(identities)
    if not open_names or not frame.height:
        return frame
    frame = frame.with_row_index("_r")
    rows = frame.filter(pl.col("vm_key").is_in(list(open_names)) & pl.col(ts_col).is_not_null()).select(
        "_r", "vm_key", _ts=ts_col)
    candidates = pl.DataFrame([(name, key) for name, keys in open_names.items() for key in keys],
                              schema={"vm_key": pl.Utf8, "_cand": pl.Utf8}, orient="row")
    never = datetime.max.replace(tzinfo=timezone.utc)
    spans = cycles.select(_cand="vm_key", _a=pl.coalesce("start", "end"), _z=pl.col("end").fill_null(never),
                          _failed=pl.col("outcome") == "failed")
    ts = pl.col("_ts")
    failed_then = pl.col("_failed") & ((pl.col("_z") - ts).abs() <= SETTLE_GRACE)
    running = (pl.col("_a") - SETTLE_GRACE <= ts) & (ts <= pl.col("_z") + SETTLE_GRACE)
    hits = (rows.join(candidates, on="vm_key").join(spans, on="_cand")
            .with_columns(_tier=pl.when(failed_then).then(0).when(running).then(1)).drop_nulls("_tier"))
    best = hits.filter(pl.col("_tier") == pl.col("_tier").min().over("_r"))
    chosen = (best.group_by("_r").agg(pl.col("_cand").first(), _n=pl.col("_cand").n_unique())
              .filter(pl.col("_n") == 1).drop("_n"))
    return (frame.join(chosen, on="_r", how="left", maintain_order="left")
            .with_columns(vm_key=pl.coalesce("_cand", "vm_key")).drop("_r", "_cand"))
