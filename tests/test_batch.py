"""Batch analysis: many generated bundles (one corrupt), fleet page, exports, cache, Dask."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import shutil
import types
from pathlib import Path

import jsonschema
import polars as pl
import pytest
from rich.console import Console

from analyzer import batch, tables
from analyzer.batch import BatchResult, bundle_id, expand_inputs, run_batch, safe_stem
from analyzer.pipeline import Options

FLEET_SIZE = 50  # generated bundles, plus one corrupt


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def scenario_names(count: int) -> list[str]:
    from analyzer.sample import list_scenarios

    names = [name for name, _ in list_scenarios() if not name.startswith("fleet")]
    return names[:count]


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory) -> Path:
    """FLEET_SIZE small generated bundles over a few seeds, plus one corrupt zip."""
    from analyzer.sample import write_bundles

    root = tmp_path_factory.mktemp("fleet")
    drop = root / "bundles"
    drop.mkdir()
    names = scenario_names(FLEET_SIZE)
    seed = 1
    while len(list(drop.glob("s*-*"))) < FLEET_SIZE:  # generated bundles are zips, or tgz
        want = FLEET_SIZE - len(list(drop.glob("s*-*")))
        scratch = root / f"seed{seed}"
        for path in write_bundles(names[:want], scratch, vms=2, days=1, seed=seed):
            path.rename(drop / f"s{seed}-{path.name}")
        seed += 1
    (drop / "README.md").write_text("not a bundle: ignored in a folder of bundles")
    (drop / "corrupt-case.zip").write_bytes(bytes(range(256)) * 8)  # no archive at all
    return drop


@pytest.fixture(scope="module")
def first_run(fleet_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = run_batch([str(fleet_dir)], out, 2, Options(), None, quiet())
    return out, result


def docs_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "analysis.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- naming and input expansion

@pytest.mark.parametrize("name, stem", [
    ("case-1234.zip", "case-1234"),
    ("case.tar.gz", "case"),
    ("..", "bundle"),
    ("..zip", "bundle"),
    ("a\x00b\nc.tgz", "a_b_c"),
    ('"><img src=x onerror=alert(1)>.zip', "img_src_x_onerror_alert_1"),
    ("케이스.zip", "케이스"),
    ("x" * 300 + ".zip", "x" * 80),
])
def test_safe_stem(name, stem):
    assert safe_stem(name) == stem
    assert "/" not in safe_stem(name) and not safe_stem(name).startswith(".")


def test_bundle_id_is_stem_and_short_hash():
    assert bundle_id(Path("/x/../case 1.zip"), "ab" * 32) == "case_1-ababababab"


def test_expand_inputs(tmp_path):
    archives = tmp_path / "archives"
    archives.mkdir()
    for name in ("b.zip", "a.tgz"):
        (archives / name).write_bytes(b"PK\x03\x04")
    (archives / "a.expected.json").write_text("{}")
    (archives / "README.md").write_text("-")
    (archives / "extracted").mkdir()  # a directory bundle inside a folder of bundles
    dir_bundle = tmp_path / "case-dir"  # logs (and a nested vc-support tgz): one bundle
    dir_bundle.mkdir()
    (dir_bundle / "GatewayService.log").write_text("x")
    (dir_bundle / "vc-vcsa01.tgz").write_bytes(b"\x1f\x8b")

    paths, problems = expand_inputs([str(archives), str(dir_bundle), str(archives / "*.zip"),
                                     str(tmp_path / "missing.zip"), str(tmp_path / "*.nothing")])
    assert paths == [archives / "a.tgz", archives / "b.zip", archives / "extracted", dir_bundle]
    assert [p for p, _ in problems] == [str(tmp_path / "missing.zip"), str(tmp_path / "*.nothing")]


# ---------------------------------------------------------------- the batch

@pytest.mark.slow
def test_batch_analyzes_every_bundle_and_records_the_corrupt_one(fleet_dir, first_run):
    out, result = first_run
    assert isinstance(result, BatchResult)
    assert result.done == FLEET_SIZE and result.skipped == 0
    assert [Path(p).name for p, _ in result.failed] == ["corrupt-case.zip"]
    assert result.failed[0][1]  # a message saying why
    assert len(result.bundle_ids) == FLEET_SIZE
    for bundle in result.bundle_ids:
        assert (out / f"{bundle}.html").read_text().lstrip().lower().startswith("<!doctype html")
        assert (out / f"{bundle}.html").resolve().parent == out.resolve()


@pytest.mark.slow
def test_fleet_page_links_every_report_and_lists_the_failure(first_run):
    out, result = first_run
    page = (out / "index.html").read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in html.unescape(page)
    for bundle in result.bundle_ids:
        assert f'href="{bundle}.html"' in page
    assert "corrupt-case.zip" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    verdicts = [v for doc in docs_of(out) for v in doc["verdicts"]]
    for v in verdicts:  # every issue appears in the "by issue" table
        assert f"<code>{v['error']}</code>" in page and f"<code>{v['cause']}</code>" in page


@pytest.mark.slow
def test_exports_agree_with_the_analysis_documents(first_run):
    out, result = first_run
    docs = docs_of(out)
    assert sorted(d["bundle_id"] for d in docs) == result.bundle_ids
    schema = json.loads((Path(batch.__file__).parent / "schema" / "analysis-v1.json").read_text())
    for doc in docs:
        jsonschema.validate(doc, schema)  # the analysis JSON, plus one "bundle_id" key

    expected = sorted((d["bundle_id"], v["vm"] or "", v["error"], v["cause"])
                      for d in docs for v in d["verdicts"])
    assert expected, "the generated fleet should have failures to report"
    with (out / "verdicts.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((r["bundle_id"], r["vm"], r["error"], r["cause"]) for r in rows) == expected
    assert all(r["report"] == f"{r['bundle_id']}.html" for r in rows)

    dataset = out / "dataset"
    verdicts = pl.scan_parquet(dataset / "verdicts" / "*.parquet").collect()
    assert sorted(zip(verdicts["bundle_id"], verdicts["vm"].fill_null(""), verdicts["error"],
                      verdicts["cause"])) == expected
    cycles = pl.scan_parquet(dataset / "cycles" / "*.parquet").collect()
    assert cycles.columns[0] == "bundle_id" and "outcome" in cycles.columns
    doc_cycles = sum(len(vm["cycles"]) for d in docs for vm in d["vms"])
    assert cycles.height >= doc_cycles > 0
    assert set(cycles["bundle_id"]) <= set(result.bundle_ids)
    for table in ("events", "vcenter_tasks"):
        frame = pl.scan_parquet(dataset / table / "*.parquet").collect()
        assert frame.columns[0] == "bundle_id"
        assert sorted(p.stem for p in (dataset / table).glob("*.parquet")) == result.bundle_ids
    assert pl.scan_parquet(dataset / "vcenter_tasks" / "*.parquet").collect().height > 0


def test_json_files_and_jsonl_are_what_json_dumps_writes(first_run):
    out, result = first_run
    lines = (out / "analysis.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) - 1 == len(result.bundle_ids)
    for bundle, line in zip(sorted(result.bundle_ids), lines):
        data = (out / "json" / f"{bundle}.json").read_bytes()
        doc = json.loads(data)
        assert data == (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        assert line + b"\n" == data


@pytest.mark.slow
def test_rerun_skips_everything_and_rewrites_the_same_outputs(fleet_dir, first_run):
    out, first = first_run
    before = {name: (out / name).read_bytes()
              for name in ("index.html", "verdicts.csv", "analysis.jsonl")}
    reports = {p.name: p.stat().st_mtime_ns for p in out.glob("*.html") if p.name != "index.html"}

    again = run_batch([str(fleet_dir)], out, 2, Options(), None, quiet())

    assert (again.done, again.skipped) == (0, FLEET_SIZE)
    assert again.failed == first.failed  # the corrupt bundle is still listed, not retried
    assert again.bundle_ids == first.bundle_ids
    for name, data in before.items():
        assert (out / name).read_bytes() == data, name
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.html")
            if p.name != "index.html"} == reports


def test_changed_bundle_or_library_is_analyzed_again(tmp_path, monkeypatch):
    from analyzer.sample import write_bundles

    first, second = scenario_names(2)
    bundles = tmp_path / "in"
    paths = write_bundles([first, second], bundles, vms=2, days=1, seed=3)
    out = tmp_path / "out"
    one = run_batch([str(p) for p in paths], out, 1, Options(), None, quiet())
    assert one.done == 2

    # Same path, new content: analyzed again, the old report replaced.
    old_id = next(b for b in one.bundle_ids if b.startswith(safe_stem(paths[0].name)))
    shutil.copyfile(write_bundles([second], tmp_path / "other", vms=2, days=1, seed=4)[0],
                    paths[0])
    two = run_batch([str(p) for p in paths], out, 1, Options(), None, quiet())
    assert (two.done, two.skipped) == (1, 1)
    assert not (out / f"{old_id}.html").exists()
    assert len(docs_of(out)) == 2

    # A new signature library invalidates every cached result.
    monkeypatch.setattr(batch, "_library_digest", lambda options: "another library")
    three = run_batch([str(p) for p in paths], out, 1, Options(), None, quiet())
    assert (three.done, three.skipped) == (2, 0)


def test_the_same_bundle_in_two_folders_is_analyzed_once(tmp_path):
    from analyzer.sample import write_bundles

    source = write_bundles(scenario_names(1), tmp_path / "gen", vms=2, days=1, seed=6)[0]
    copy = tmp_path / "elsewhere" / source.name
    copy.parent.mkdir()
    shutil.copyfile(source, copy)
    result = run_batch([str(source), str(copy)], tmp_path / "out", 1, Options(), None, quiet())
    assert (result.done, result.skipped, result.failed) == (1, 1, [])


def test_hostile_file_name_stays_inside_out_and_inert(tmp_path):
    from analyzer.sample import write_bundles

    source = write_bundles(scenario_names(1), tmp_path / "gen", vms=2, days=1, seed=5)[0]
    hostile = tmp_path / "in" / '"><img src=x onerror=alert(1)>..zip'
    hostile.parent.mkdir()
    shutil.copyfile(source, hostile)
    out = tmp_path / "out"
    result = run_batch([str(hostile)], out, 1, Options(), None, quiet())
    assert result.done == 1, result.failed
    [bundle] = result.bundle_ids
    assert (out / f"{bundle}.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen", "in", "out"]
    page = (out / "index.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_fleet_groups_by_issue_host_and_appliance():
    from analyzer.report.fleet import fleet_view

    def verdict(vm, error, cause, first, last, severity="critical"):
        return {"vm": vm, "error": error, "cause": cause, "severity": severity,
                "first_seen": first, "last_seen": last}

    a = {"bundle": {"name": "a.zip"}, "vms": [{"vm": "APP01", "host": "esx1"},
                                              {"vm": "SQL02", "host": "esx2"}],
         "verdicts": [verdict("APP01", "disk_upload_timed_out", "gateway_service_down",
                              "2024-05-14T10:00:00Z", "2024-05-14T11:00:00Z"),
                      verdict("SQL02", "snapshot_failed", "undetermined",
                              "2024-05-13T09:00:00Z", "2024-05-13T09:30:00Z", "warning")]}
    b = {"bundle": {"name": "b.zip"}, "vms": [{"vm": "APP01", "host": "esx1"}],
         "verdicts": [verdict("APP01", "disk_upload_timed_out", "gateway_service_down",
                              "2024-05-12T08:00:00Z", "2024-05-12T08:10:00Z"),
                      verdict(None, "key_vault_failure", "undetermined", None, None)]}
    frames = pl.concat([batch.verdict_rows(a, "a-1", "appliance-one"),
                        batch.verdict_rows(b, "b-2", None)])
    bundles = {"a-1": {"name": "a.zip", "vms": 2, "health": {"critical": 2}},
               "b-2": {"name": "b.zip", "vms": 1, "health": {"warning": 1}}}
    view = fleet_view(bundles, frames, [("/in/bad.zip", "not an archive")])

    top = view["issues"][0]
    assert (top["error"], top["cause"], top["severity"]) == ("disk_upload_timed_out",
                                                             "gateway_service_down", "critical")
    assert top["vm_count"] == 2 and top["vms"] == ["APP01"] and top["bundles"] == ["a-1", "b-2"]
    assert (top["first_seen"], top["last_seen"]) == ("2024-05-12 08:00:00Z", "2024-05-14 11:00:00Z")
    hosts = {h["host"]: h for h in view["hosts"]}
    assert set(hosts) == {"esx1", "esx2", "(unknown host)"}
    assert hosts["esx1"]["issues"] == ["disk_upload_timed_out · gateway_service_down"]
    appliances = {g["appliance"]: g["bundles"] for g in view["appliances"]}
    assert appliances == {"appliance-one": ["a-1"], "b.zip": ["b-2"]}
    assert view["totals"] == {"bundles": 2, "failed": 1, "vms": 3, "verdicts": 4,
                              "severity": {"critical": 3, "warning": 1, "info": 0},
                              "health": {"critical": 2, "warning": 1}}


def test_csv_neutralises_spreadsheet_formulas(tmp_path):
    doc = {"bundle": {"name": "b.zip"}, "vms": [{"vm": "=cmd|' /C calc'!A0", "host": "@h"}],
           "verdicts": [{"vm": "=cmd|' /C calc'!A0", "error": "e", "cause": "c",
                         "severity": "critical", "summary": "+1", "cycles": ["-x"]}]}
    store = batch.Store(tmp_path)
    store._write_csv(batch.verdict_rows(doc, "b-1", None))
    row = next(csv.DictReader((tmp_path / "verdicts.csv").open(newline="")))
    assert row["vm"] == "'=cmd|' /C calc'!A0" and row["host"] == "'@h"
    assert row["summary"] == "'+1" and row["cycles"] == "'-x" and row["error"] == "e"


def test_unreadable_cache_is_ignored(tmp_path):
    (tmp_path / ".cache.json").write_text("{not json")
    assert batch.Store(tmp_path).bundles == {}


# ---------------------------------------------------------------- Dask

@pytest.mark.slow
def test_dask_cluster_gives_the_same_verdicts_as_local(fleet_dir, first_run, monkeypatch):
    distributed = pytest.importorskip("distributed")
    out, _ = first_run
    local = {d["bundle_id"]: d for d in docs_of(out)}
    chosen = sorted(fleet_dir.glob("s1-*.zip"))[:6] + [fleet_dir / "corrupt-case.zip"]
    dask_out = out.parent / "dask-out"
    # A worker in its own process, like a remote one: jobs and results cross a real wire.
    root = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH",
                       os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=None) as cluster:
        result = run_batch([str(p) for p in chosen], dask_out, None, Options(),
                           cluster.scheduler_address, quiet())
    assert result.done == 6 and [Path(p).name for p, _ in result.failed] == ["corrupt-case.zip"]

    def triples(doc):
        return sorted((v["vm"] or "", v["error"], v["cause"], v["confidence"])
                      for v in doc["verdicts"])

    remote = docs_of(dask_out)
    assert len(remote) == 6
    for doc in remote:
        assert triples(doc) == triples(local[doc["bundle_id"]])
    assert any(doc["verdicts"] for doc in remote)


def test_unreachable_scheduler_is_one_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    from analyzer.sample import write_bundles

    monkeypatch.setattr(batch, "SCHEDULER_TIMEOUT", "1s")
    bundle = write_bundles(scenario_names(1), tmp_path / "gen", vms=2, days=1, seed=8)[0]
    with pytest.raises(batch.SchedulerUnreachable, match="tcp://127.0.0.1:9"):
        run_batch([str(bundle)], tmp_path / "out", None, Options(), "tcp://127.0.0.1:9", quiet())


# ---------------------------------------------------------------- the fleet page in a browser

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")
def test_fleet_page_in_chromium_filters_and_fetches_nothing(first_run, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    out, result = first_run
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=CHROMIUM, args=args,
            viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            errors, requests = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            index = (out / "index.html").resolve().as_uri()
            page.goto(index)
            rows = page.locator("#bundles tbody tr")
            assert rows.count() == FLEET_SIZE
            target = result.bundle_ids[3]
            page.fill("#filter", target)
            visible = [r for r in rows.all() if r.is_visible()]
            assert len(visible) == 1 and target in visible[0].inner_text()
            page.fill("#filter", "")
            assert sum(r.is_visible() for r in rows.all()) == FLEET_SIZE
            artifacts = Path(__file__).parent / "artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "fleet.png"), full_page=False)
            with page.expect_navigation():
                page.click(f'#bundles a[href="{target}.html"]')
            assert page.url.endswith(f"/{target}.html")
        finally:
            context.close()
    assert errors == []
    assert all(url.startswith("file://") for url in requests), requests


@pytest.mark.parametrize("redact", [True, False])
def test_exported_tables_hold_text_where_the_analyzer_holds_categories(redact):
    tasks = tables.conform("vcenter_tasks", pl.DataFrame({"task_id": ["task-1"], "method": ["m"],
                                                           "member": ["vpxd.log"]}))
    assert tasks["method"].dtype == tables.CAT
    analysis = types.SimpleNamespace(doc={"vms": [], "verdicts": []}, tables={"vcenter_tasks": tasks})
    exported = pl.read_parquet(io.BytesIO(batch._export_frames(analysis, "b1", None, redact)["vcenter_tasks"]))
    assert exported["method"].dtype == pl.Utf8 and exported["member"].to_list() == ["vpxd.log"]
