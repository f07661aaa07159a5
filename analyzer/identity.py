"""One identity per VM, from every (name, MoRef) pair the bundle shows together.

    gateway  Replication cycle started. vm=APP01 vmId=vm-1042 host=esx07 vcenter=vcsa01  -> pair
    vpxd     ... [vim.VirtualMachine:vm-1042,APP01] ...                                    -> pair
    portal   Machine=app01          task CSV  Target=APP01          vpxd task  vm-1042   -> name / MoRef

  -> identities: vm_key (lowercased name, or `<vcenter>/<moref>` / `<moref>` when no name is known),
     vm (display name as first seen), vm_id (one row per MoRef), vcenter, host (last seen).

Names compare case-insensitively. MoRefs are only unique within one vCenter, so with several
vCenters in the bundle a MoRef is qualified by its vCenter. vCenters are compared by their first
DNS label, lowercased (`vcenter_key`): the gateway names `vcsa01.contoso.local` where the
vc-support archive is `vc-vcsa01-2024-05-14--10.21-12345.tgz`.
"""

from __future__ import annotations

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


def _vcenter_keys(*columns: pl.Series) -> pl.Expr:
    """vcenter_key of the `vcenter` column, as a lookup of these columns' distinct names: the
    expression's regexes then run once per name, not once per row."""
    names = pl.concat([c.rename("vcenter") for c in columns]).drop_nulls().unique()
    keys = names.to_frame().select(vcenter_key(pl.col("vcenter")))["vcenter"]
    return pl.col("vcenter").replace_strict(names, keys, default=None, return_dtype=pl.Utf8)


def _name_key(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.strip_chars() != "").then(expr.str.strip_chars().str.to_lowercase())


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
    ]).filter(pl.col("name").is_not_null() & pl.col("moref").is_not_null())
    pairs = pairs.with_columns(vc=_vcenter_keys(pairs["vcenter"]), key=_name_key(pl.col("name")))
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
             .sort("ts", nulls_last=False).group_by(key=_name_key(pl.col("vm")))
             .agg(host=pl.col("host").last()))
    vc_names = vcenters.select("vc", vc_name="vcenter")

    # each MoRef takes the name it was last seen with (a VM can be renamed)
    named = (pairs.sort("ts", nulls_last=False).group_by("vc", "moref")
             .agg(pl.col("key").last()))
    renamed = pairs.group_by("vc", "moref").agg(pl.col("key").n_unique()).filter(pl.col("key") > 1)
    if renamed.height:
        diags.add("info", "moref-renamed",
                  f"{renamed.height} MoRefs appear with more than one VM name; the latest name is "
                  f"used (e.g. {', '.join(renamed['moref'].head(3).to_list())})")

    named_rows = named.join(names, on="key", how="left").select(
        vm_key="key", vm="vm", vm_id="moref", vc="vc")
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
    """A pair without a vCenter (no vcenter= token) belongs to the one vCenter that has its MoRef."""
    owners = (morefs.drop_nulls("vc").select("vc", "moref").unique()
              .group_by("moref").agg(owner=pl.col("vc").first(), owners=pl.len())
              .filter(pl.col("owners") == 1).drop("owners"))
    return (pairs.join(owners, on="moref", how="left")
            .with_columns(vc=pl.coalesce("vc", "owner")).drop("owner"))


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
    ]).with_columns(pl.col("name").str.strip_chars()).with_columns(key=_name_key(pl.col("name")))
    return (seen.drop_nulls("key").sort("ts", "order", "row", nulls_last=True)
            .group_by("key", maintain_order=True).agg(vm=pl.col("name").first()).collect())


def resolve(frame: pl.DataFrame, identities: pl.DataFrame, name_col: str | None,
            id_col: str | None) -> pl.DataFrame:
    """`frame` with a `vm_key` column: by lowercased name, else by (vcenter, MoRef), else by a
    MoRef only one identity has, else the MoRef itself (qualified when the bundle has several
    vCenters and the frame says which)."""
    ids = identities.drop_nulls("vm_id").with_columns(_vc=vcenter_key(pl.col("vcenter")))
    several = ids["_vc"].drop_nulls().n_unique() > 1
    name = pl.col(name_col) if name_col else pl.lit(None, pl.Utf8)
    moref = pl.col(id_col) if id_col else pl.lit(None, pl.Utf8)
    vc = vcenter_key(pl.col("vcenter")) if "vcenter" in frame.columns else pl.lit(None, pl.Utf8)
    out = frame.with_columns(_name_key=_name_key(name), _moref=moref, _vc=vc)

    by_vc = ids.select("_vc", _moref="vm_id", _key_vc="vm_key").unique(["_vc", "_moref"])
    by_moref = (ids.group_by(_moref="vm_id").agg(_key_any=pl.col("vm_key").first(),
                                                 _keys=pl.col("vm_key").n_unique())
                .filter(pl.col("_keys") == 1).drop("_keys"))
    if not several:
        by_vc = by_vc.clear()  # a lone vCenter: the MoRef alone decides
    out = (out.join(by_vc, on=["_vc", "_moref"], how="left", maintain_order="left")
           .join(by_moref, on="_moref", how="left", maintain_order="left"))
    if several:  # a MoRef of a known other vCenter is not this one
        out = out.with_columns(_key_any=pl.when(pl.col("_vc").is_null()).then("_key_any"))
    qualified = pl.concat_str([pl.col("_vc"), pl.lit("/"), pl.col("_moref")]) if several else None
    fallback = pl.coalesce(qualified, pl.col("_moref")) if several else pl.col("_moref")
    return out.with_columns(
        vm_key=pl.coalesce("_name_key", "_key_vc", "_key_any", fallback)
    ).drop("_name_key", "_moref", "_vc", "_key_vc", "_key_any")
