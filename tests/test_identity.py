from __future__ import annotations

from datetime import datetime, timezone

import polars as pl

from analyzer import identity, tables
from analyzer.diagnostics import Diagnostics


def at(minute: int) -> datetime:
    return datetime(2024, 5, 14, 10, minute, tzinfo=timezone.utc)


def gateway(*rows: tuple) -> pl.DataFrame:
    """rows of (minute, vm, vm_id, vcenter, host)."""
    return tables.conform("gateway_log", pl.DataFrame(
        [(at(m), vm, vm_id, vc, host) for m, vm, vm_id, vc, host in rows],
        schema=["ts", "vm", "vm_id", "vcenter", "host"], orient="row"))


def vpxd_tasks(*rows: tuple) -> pl.DataFrame:
    """rows of (minute, vm_id, vcenter, vm_name)."""
    return tables.conform("vcenter_tasks", pl.DataFrame(
        [(at(m), vm_id, vc, name) for m, vm_id, vc, name in rows],
        schema=["start", "vm_id", "vcenter", "vm_name"], orient="row"))


def portal(*machines: str) -> pl.DataFrame:
    return tables.conform("portal_events", pl.DataFrame(
        {"ts": [at(0)] * len(machines), "machine": list(machines)}))


def build(**frames) -> tuple[pl.DataFrame, Diagnostics]:
    diags = Diagnostics()
    ids = identity.build(frames, diags)
    assert ids.schema == pl.Schema(tables.IDENTITIES)
    return ids, diags


def rows(ids: pl.DataFrame) -> list[tuple]:
    return [tuple(r) for r in ids.select("vm_key", "vm", "vm_id", "vcenter", "host").iter_rows()]


def test_names_and_morefs_from_every_source_one_vcenter():
    ids, diags = build(
        gateway_log=gateway((1, "APP01", "vm-1042", None, "esx07"), (5, "app01", None, None, "esx08"),
                            (2, "DB01", "vm-7", None, None)),
        portal_events=portal("App01", "WEB01"),
        vcenter_tasks=vpxd_tasks((3, "vm-1042", "vcsa01", None), (4, "vm-999", "vcsa01", None),
                                 (6, None, None, "web01")),
    )
    assert rows(ids) == [
        ("app01", "App01", "vm-1042", "vcsa01", "esx08"),  # display name as first seen (portal)
        ("db01", "DB01", "vm-7", "vcsa01", None),
        ("vm-999", None, "vm-999", "vcsa01", None),  # one vCenter: the bare MoRef is the key
        ("web01", "WEB01", None, None, None),
    ]
    unresolved = [d for d in diags.items if d.code == "unresolved-moref"]
    assert len(unresolved) == 1 and "vm-999" in unresolved[0].message
    assert "vm-1042" not in unresolved[0].message


def test_two_vcenters_reusing_a_moref():
    ids, diags = build(
        gateway_log=gateway((1, "APP01", "vm-1042", "vcsa01.contoso.local", "esx1"),
                            (2, "DB01", "vm-1042", "vcsa02.contoso.local", "esx9")),
        vcenter_tasks=vpxd_tasks((3, "vm-1042", "vcsa01", None), (3, "vm-1042", "vcsa02", None),
                                 (4, "vm-55", "vcsa02", None)),
    )
    assert rows(ids) == [
        ("app01", "APP01", "vm-1042", "vcsa01.contoso.local", "esx1"),
        ("db01", "DB01", "vm-1042", "vcsa02.contoso.local", "esx9"),
        ("vcsa02/vm-55", None, "vm-55", "vcsa02.contoso.local", None),
    ]
    tasks = vpxd_tasks((3, "vm-1042", "vcsa01", None), (3, "vm-1042", "VCSA02", None),
                       (4, "vm-55", "vcsa02", None), (5, "vm-1042", None, None),
                       (6, "vm-77", "vcsa01", None))
    keys = identity.resolve(tasks, ids, "vm_name", "vm_id")["vm_key"].to_list()
    # a MoRef without a vCenter is ambiguous here: it stays the bare MoRef
    assert keys == ["app01", "db01", "vcsa02/vm-55", "vm-1042", "vcsa01/vm-77"]
    assert [d.code for d in diags.items] == ["unresolved-moref"]


def test_gateway_pair_without_vcenter_goes_to_the_vcenter_that_has_the_moref():
    ids, _ = build(
        gateway_log=gateway((1, "APP01", "vm-5", None, None)),
        vcenter_tasks=vpxd_tasks((3, "vm-5", "vcA", None), (3, "vm-6", "vcB", None)),
    )
    assert ("app01", "APP01", "vm-5", "vcA", None) in rows(ids)
    assert all(key != "vca/vm-5" for key in ids["vm_key"])


def test_renamed_vm_takes_the_latest_name():
    ids, diags = build(gateway_log=gateway((1, "OLD-NAME", "vm-3", None, None),
                                           (9, "NEW-NAME", "vm-3", None, None)))
    assert ids.filter(pl.col("vm_id") == "vm-3")["vm_key"].to_list() == ["new-name"]
    assert ("old-name", "OLD-NAME", None, None, None) in rows(ids)
    assert "moref-renamed" in [d.code for d in diags.items]


def test_display_name_is_the_earliest_then_the_first_row_of_the_spellings():
    ids, _ = build(gateway_log=gateway((2, "APP01", None, None, None), (1, "app01 ", None, None, None),
                                       (1, "App01", None, None, None), (1, "APP01", None, None, None)),
                   portal_events=portal("aPP01"))  # minute 0
    assert rows(ids) == [("app01", "aPP01", None, None, None)]
    ids, _ = build(gateway_log=gateway((2, "APP01", None, None, None), (1, "app01 ", None, None, None),
                                       (1, "App01", None, None, None), (1, "APP01", None, None, None)))
    assert rows(ids) == [("app01", "app01", None, None, None)]
    # at the same time the gateway comes before the portal
    ids, _ = build(gateway_log=gateway((0, "App01", None, None, None)), portal_events=portal("APP01"))
    assert rows(ids) == [("app01", "App01", None, None, None)]


def test_vpxd_messages_naming_a_vm_give_pairs():
    log = tables.conform("vcenter_log", pl.DataFrame({
        "ts": [at(1)], "vcenter": ["vcsa01"],
        "message": ["Reconfigured [vim.VirtualMachine:vm-88,SQL 01] on [vim.HostSystem:host-1,x]"]}))
    ids, diags = build(vcenter_log=log, vcenter_tasks=vpxd_tasks((2, "vm-88", "vcsa01", None)))
    assert rows(ids) == [("sql 01", "SQL 01", "vm-88", "vcsa01", None)]
    assert diags.items == []


def test_resolve_by_name_case_insensitive_and_by_moref():
    ids, _ = build(gateway_log=gateway((1, "APP01", "vm-1042", None, "esx07")))
    frame = pl.DataFrame({"machine": ["app01", " App01 ", None, None, None],
                          "moref": [None, None, "vm-1042", "vm-9", None]})
    out = identity.resolve(frame, ids, "machine", "moref")
    assert out["vm_key"].to_list() == ["app01", "app01", "app01", "vm-9", None]
    assert out.columns == ["machine", "moref", "vm_key"]
    assert identity.resolve(frame.select("machine"), ids, "machine", None)["vm_key"][0] == "app01"


def test_empty_bundle():
    ids, diags = build()
    assert ids.height == 0 and diags.items == []
    out = identity.resolve(pl.DataFrame({"vm": ["X"]}), ids, "vm", None)
    assert out["vm_key"].to_list() == ["x"]


def test_unresolved_diagnostic_is_sampled():
    ids, diags = build(vcenter_tasks=vpxd_tasks(*[(1, f"vm-{n}", "vc", None) for n in range(50)]))
    assert ids.height == 50
    (diag,) = diags.items
    assert diag.code == "unresolved-moref" and diag.message.startswith("50 VM MoRefs")
    assert "and 40 more" in diag.message


def test_gateway_fqdn_and_vc_support_archive_name_are_one_vcenter():
    ids, diags = build(
        gateway_log=gateway((1, "APP01", "vm-1042", "vcsa01.contoso.local", None)),
        vcenter_tasks=vpxd_tasks((3, "vm-1042", "vc-vcsa01-2024-05-14--10.21-12345", None)),
    )
    assert rows(ids) == [("app01", "APP01", "vm-1042", "vcsa01.contoso.local", None)]
    assert diags.items == []


def test_names_lose_quotes_and_brackets_and_placeholders_name_no_vm():
    names = ["'ERP08'", "[ERP08]", " \"ERP08\" ", "‘ERP08’", "ERP08", "VMName", "<VM name>", "<vm>", "%VMName;",
             "'%HostName;'", "VMId", "DiskPath", "{vm}", "''", None]
    cleaned = pl.DataFrame({"n": names}).select(identity.clean_name(pl.col("n")))["n"].to_list()
    assert cleaned == ["ERP08"] * 5 + [None] * 10


def test_name_keys_looked_up_by_distinct_name_equal_the_keys_computed_per_row():
    names = ["'ERP08'", "[ERP08]", "ERP08", "erp08", "VMName", "<script>alert(1)</script>", "  App 01 ",
             "ſtorage", "데이터베이스01", "", None] * 3
    for dtype in (pl.Utf8, pl.Categorical()):
        frame = pl.DataFrame({"vm": pl.Series(names, dtype=dtype)})
        for rule in (identity._name_key, identity.clean_name):
            per_row = frame.select(rule(pl.col("vm")))["vm"].to_list()
            for given in (frame, frame.lazy()):
                looked_up = given.lazy().select(identity._per_name(given, "vm", rule)).collect()["vm"].to_list()
                assert looked_up == per_row
        keys = frame.select(identity._name_key(pl.col("vm")))["vm"].to_list()
        assert keys[:4] == ["erp08"] * 4 and keys[4] is None


def test_brackets_inside_a_name_are_part_of_it():
    names = ["<script>alert(1)</script>", "[a] b [c]", "(ERP08)", "{ ERP08 }", "<ERP 08>", "a<b>"]
    cleaned = pl.DataFrame({"n": names}).select(identity.clean_name(pl.col("n")))["n"].to_list()
    assert cleaned == ["<script>alert(1)</script>", "[a] b [c]", "ERP08", "ERP08", None, "a<b>"]


def test_a_name_two_vcenters_share_is_two_vms_told_apart_by_their_vcenter():
    gw = gateway((1, "APP01", "vm-100", "vcsa01.contoso.local", "esx01"), (2, "APP01", "vm-300", "vcsa02.contoso.local", "esx05"),
                 (3, "ADM01", "vm-100", "vcsa02.contoso.local", "esx06"))
    ids, diags = build(gateway_log=gw)
    assert rows(ids) == [
        ("adm01", "ADM01", "vm-100", "vcsa02.contoso.local", "esx06"),
        ("vcsa01/app01", "APP01 (vcsa01)", "vm-100", "vcsa01.contoso.local", "esx01"),
        ("vcsa02/app01", "APP01 (vcsa02)", "vm-300", "vcsa02.contoso.local", "esx05"),
    ]
    assert any(d.code == "vm-name-in-several-vcenters" for d in diags.items)
    assert identity.unsettled(ids) == {"app01": ["vcsa01/app01", "vcsa02/app01"]}
    # a task by (vCenter, MoRef); a line by name and MoRef; a portal row by name alone stays unsettled
    frame = pl.DataFrame({"vm": [None, "app01", "APP01", "ADM01"], "vm_id": ["vm-100", "vm-300", None, None],
                          "vcenter": ["vc-vcsa02-2024-05-14--10.21-1", None, None, None]})
    assert identity.resolve(frame, ids)["vm_key"].to_list() == ["adm01", "vcsa02/app01", "app01", "adm01"]


def test_gateway_lines_of_a_shared_name_follow_the_cycle_running_at_their_time():
    rows_ = [  # (minute, vm, vm_id, vcenter, cycle_id): two APP01s at the same cycle ids, at other times
        (0, "APP01", "vm-100", "vcsa01", 17), (1, "APP01", None, None, 17), (5, "APP01", None, None, 17),
        (8, "APP01", "vm-100", "vcsa01", 18), (10, "APP01", "vm-300", "vcsa02", 17), (11, "APP01", None, None, 17),
        (21, "APP01", "vm-300", "vcsa02", 18), (22, "APP01", None, None, 18),
    ]
    gw = tables.conform("gateway_log", pl.DataFrame(
        [(at(m), vm, moref, vc, cid) for m, vm, moref, vc, cid in rows_],
        schema=["ts", "vm", "vm_id", "vcenter", "cycle_id"], orient="row"))
    ids, _ = build(gateway_log=gw)
    keys = identity.resolve(gw.lazy(), ids, cycle_col="cycle_id").collect()["vm_key"].to_list()
    # a VM's cycle lasts until its next start: at minute 22 both VMs may be in their cycle 18
    assert keys == ["vcsa01/app01", "vcsa01/app01", "vcsa01/app01", "vcsa01/app01", "vcsa02/app01", "vcsa02/app01",
                    "vcsa02/app01", "app01"]


def test_a_row_of_a_shared_name_settles_on_the_vm_whose_cycle_failed_then():
    gw = gateway((1, "APP01", "vm-100", "vcsa01", "esx01"), (2, "APP01", "vm-300", "vcsa02", "esx05"))
    ids, _ = build(gateway_log=gw)
    cycles = pl.DataFrame({"vm_key": ["vcsa01/app01", "vcsa02/app01", "vcsa02/app01"],
                           "start": [at(10), at(12), at(40)], "end": [at(20), at(30), at(46)],
                           "outcome": ["failed", "succeeded", "succeeded"]})
    rows_ = pl.DataFrame({"vm_key": ["app01", "app01", "app01", "sql01"], "ts": [at(21), at(45), at(59), at(21)]})
    settled = identity.settle(rows_, ids, cycles)["vm_key"].to_list()
    assert settled == ["vcsa01/app01", "vcsa02/app01", "app01", "sql01"]
