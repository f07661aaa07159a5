"""The log parsers with a Keep: they may leave out records that hold none of its literals, but
every count, the activity per minute, first/last and the diagnostics stay those of a full parse,
and every record they return is the full parse's record."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from analyzer import ingest, signatures, tables
from analyzer.diagnostics import Diagnostics
from analyzer.parsers import gateway_log, vcenter_log
from analyzer.parsers.lines import read_lines, split_lines
from analyzer.sources import Keep, ParseContext

ROOT = Path(__file__).resolve().parents[2]
ENGINE = "Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine"
GATEWAY = {
    "event": f"2024-05-14T10:21:{{s}}.512Z Info [12] {ENGINE} - State changed. vm=APP01 cycleId=17 from=A to=B",
    "filler": "2024-05-14T10:21:{s}.100Z Verbose [7] Gateway.Service.Azure.Bus - Polled for work items. pending=2",
    "naive": "2024-05-14 10:22:{s}.000 Info [3] Gateway.Service.Host - Resource usage. cpuPercent=4",
    "offset": "2024-05-14T19:23:{s}.000+09:00 Verbose [3] Gateway.Service.Host - Buffer pool statistics.",
    "warning": "2024-05-14T10:24:{s}.000Z WARNING [3] Gateway.X - Slow read. vm=APP02",
    "leap": "2024-05-14T10:25:60.000Z Verbose [3] Gateway.X - A leap second.",
    "bad": "2024-13-45T10:25:{s}.000Z Verbose [3] Gateway.X - Impossible date.",
    "old": "1601-01-01T00:00:{s}Z Verbose [3] Gateway.X - Before 1970.",
    "trace": "   at Gateway.Service.Transport.BlobClient.PutBlock(String id)",
    "hit in trace": "   at Gateway.Service.Upload() Unable to connect to the remote server",
    "junk": "some text that is no record",
    "stamp junk": "2024-05-14T10:26:00Z not an envelope",
    "blank": "",
    "long": "2024-05-14T10:27:{s}.000Z Verbose [3] Gateway.X - " + "x" * 70_000,
}
VPXD = {
    "lro": "2024-05-14T10:21:{s}.123Z info vpxd[7FE1] [Originator@6876 sub=vpxLro opID=a1] [VpxLRO] -- BEGIN task-1 -- vm-1 -- vim.VirtualMachine.createSnapshot -- x",
    "filler": "2024-05-14T10:21:{s}.500Z verbose vpxd[7FE2] [Originator@6876 sub=Default opID=b2] [VpxVmomi] Invoke done: waitForUpdatesEx",
    "event": "2024-05-14T10:22:{s}.000Z info vpxd[7FE3] [Originator@6876 sub=vpxdEvent opID=c3] Event 5512 : vim.event.TaskEvent : Task: Remove snapshot user=VSPHERE.LOCAL\\svc",
    "warning": "2024-05-14T10:23:{s}.000Z warning vpxd[7FE4] [Originator@6876 sub=MoCluster opID=d4] Host is slow",
    "offset": "2015-03-06T04:01:{s}.419-07:00 [13072 info 'commonvpxLro' opID=2408fce-ee] a 5.5 line",
    "win": "[2012-04-16 21:42:{s}.096 02584 info 'App'] a Windows line",
    "esxi": "2024-05-14T10:24:{s}.000Z Wa(180) Hostd[1050748]: [Originator@6876 sub=Vimsvc opID=e5] esxi warning",
    "generic": "2024-05-14 10:25:{s},123 INFO some service started",
    "leap": "2024-05-14T10:26:60.000Z verbose vpxd[7FE5] [Originator@6876 sub=Default opID=f6] leap",
    "bad": "2024-02-30T10:27:{s}.000Z verbose vpxd[7FE6] [Originator@6876 sub=Default opID=f7] no such day",
    "zebra": "2024-05-14T10:28:{s}.000 Zebra vpxd[7FE7] [Originator@6876 sub=Default opID=f8] level starts with Z",
    "more": "--> msg = \"Another task is already in progress.\"",
    "more filler": "--> a continuation",
    "junk": "text before any record",
    "blank": "",
}


def _keep(table: str) -> Keep:
    keep = ingest._keep(signatures.load_library(()), table)
    assert keep is not None and keep.literals and keep.ignore_case
    return keep


def _text(shapes: dict[str, str], names: list[str], newline: str = "\n") -> str:
    return newline.join(shapes[n].replace("{s}", f"{i % 60:02d}") for i, n in enumerate(names))


def _same_but_fewer(module, table: str, text: str, keep: Keep, **ctx) -> tuple[int, int]:
    full = module.parse(text, "m.log", ParseContext(**ctx))
    some = module.parse(text, "m.log", ParseContext(keep=keep, **ctx))
    assert (some.records, some.unparsed, some.first, some.last) == (
        full.records, full.unparsed, full.first, full.last)
    assert some.diagnostics.items == full.diagnostics.items
    assert_frame_equal(some.tables["activity"], full.tables["activity"])
    kept, every = some.tables[table], full.tables[table]
    assert kept.schema == pl.Schema(tables.SCHEMAS[table])
    assert_frame_equal(kept, every.join(kept.select("line"), on="line", how="semi"))
    # nothing _reduce or a signature would keep is left out
    library = signatures.load_library(())
    matched = signatures.match(library, table, every)
    wanted = ingest._reduce(table, every, matched["line"])
    assert wanted.join(kept, on="line", how="anti").is_empty()
    return kept.height, every.height


@pytest.mark.parametrize("tz", [None, "+09:00", "America/New_York"])
def test_gateway_keep_gives_the_full_parse_for_what_matters(tz):
    names = [n for n in GATEWAY for _ in range(3)] + ["filler"] * 40 + ["event", "trace"]
    kept, every = _same_but_fewer(gateway_log, "gateway_log", _text(GATEWAY, names, "\r\n"),
                                  _keep("gateway_log"), appliance_tz=tz)
    assert kept < every


@pytest.mark.parametrize("tz", [None, "-07:00"])
def test_vpxd_keep_gives_the_full_parse_for_what_matters(tz):
    names = ["junk", "more"] + [n for n in VPXD for _ in range(3)] + ["filler"] * 40 + ["lro"]
    kept, every = _same_but_fewer(vcenter_log, "vcenter_log", _text(VPXD, names),
                                  _keep("vcenter_log"), vcenter_tz=tz)
    assert kept < every


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(GATEWAY)), max_size=60), st.sampled_from(["\n", "\r\n"]))
def test_gateway_keep_on_any_mix(names, newline):
    _same_but_fewer(gateway_log, "gateway_log", _text(GATEWAY, names, newline),
                    _keep("gateway_log"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(VPXD)), max_size=60))
def test_vpxd_keep_on_any_mix(names):
    _same_but_fewer(vcenter_log, "vcenter_log", _text(VPXD, names), _keep("vcenter_log"))


def test_a_column_not_cut_from_the_line_gives_no_keep():
    assert gateway_log.keep_where("cycle_id", ("17",)) is None  # a number: "017" reads 17
    assert gateway_log.keep_where("error", ('say "hi"',)) is None  # quoted values are unescaped
    assert gateway_log.keep_literals("error_message", ("a\nb",)) is None
    assert vcenter_log.keep_where("layout", ("vpxd65",)) is None
    assert vcenter_log.keep_literals("vcenter", ("vcsa01",)) is None
    assert gateway_log.keep_where("error_id", ("1011",)).literals == ("errorId=1011", 'errorId="1011')
    assert vcenter_log.keep_where("level", ("error",)) == Keep(("Er(",), ("error",))


@pytest.mark.parametrize("text", ["", "\n", "a", "a\n", "a\r\nb\r\n", "a\rb\n", "x\r", "a\x00b\n\n",
                                  "\n\nx", "x\n\n", "\ufeffa\nb", "é\r\n\r\n"])
def test_lines_read_like_str_split(text):
    lines = [part.removesuffix("\r") for part in text.split("\n")]
    frame = split_lines(text)
    assert frame["text"].to_list() == lines
    assert frame["line"].to_list() == list(range(1, len(lines) + 1))
    expected = lines[:-1] if text.endswith("\n") else lines if text else []
    assert read_lines(text)["text"].to_list() == expected


def test_ingest_with_and_without_keep_gives_the_same_tables(monkeypatch):
    bundle = ROOT / "sample_bundles" / "case-disk-upload-timeout.zip"
    if not bundle.exists():
        pytest.skip("sample_bundles/ not generated")
    library = signatures.load_library(())

    def read():
        found = ingest.ingest(bundle, {}, library, Diagnostics())
        return found, {name: tables.load(name, parts) for name, parts in found.parts.items()}

    kept, kept_frames = read()
    monkeypatch.setattr(ingest, "_keep", lambda library, table: None)
    full, full_frames = read()
    assert kept.members == full.members and kept.stats == full.stats
    for name, frame in full_frames.items():
        assert_frame_equal(kept_frames[name], frame, check_row_order=name != "activity")


@pytest.mark.parametrize("name", ["backup-task-conflict.zip", "snapshot-hung.zip"])
def test_kept_task_lines_pair_into_the_tasks_of_the_full_parse(name):
    """The ingest keeps vpxd task lines as vcenter_task_lines, not as vcenter_log rows; paired,
    they give the tasks that every record of every member gives."""
    path = ROOT / "sample_bundles" / name
    if not path.exists():
        pytest.skip("sample_bundles/ not generated")
    from analyzer import bundle as bundles
    library = signatures.load_library(())
    found = ingest.ingest(path, {}, library, Diagnostics())
    kept_log = tables.load("vcenter_log", found.parts["vcenter_log"])
    events = tables.load("vcenter_events", found.parts["vcenter_events"])
    assert kept_log.filter(vcenter_log.TASK_ROWS & (pl.col("level") == "info")).height == 0
    paired = vcenter_log.pair_tasks(tables.load("vcenter_task_lines", found.parts["vcenter_task_lines"]),
                                    events, Diagnostics())

    every = []
    for member in bundles.open_bundle(path, Diagnostics()):
        text = bundles.decode(member.data, member.path, Diagnostics())
        if vcenter_log.sniff(text[:65536], member.path):
            ctx = ParseContext(**ingest._scope_of(member))
            every.append(vcenter_log.parse(text, member.path, ctx).tables["vcenter_log"])
    full = vcenter_log.build_tasks(tables.concat("vcenter_log", every), events, Diagnostics())
    assert paired.height > 0
    assert_frame_equal(paired, full)
