"""Faults: a batch killed half way (SIGINT, SIGKILL) and run again, a full disk, a failed bundle's
traceback. Every output is whole or absent; nothing finished is analyzed twice."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from analyzer import batch, pipeline
from analyzer.output import OutputError, write_atomic
from analyzer.pipeline import Options
from tests.tmpfs import tmpfs

ROOT = Path(__file__).resolve().parents[1]
HEALTHY = ROOT / "sample_bundles" / "healthy.zip"
BUNDLES = 5
DEADLINE = 300  # seconds: a bound for waiting on a child process, not a timing assertion


def cli_env(tmp: Path) -> dict[str, str]:
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmpdir), "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": str(ROOT), "COLUMNS": "120"}


def run_cli(*args: str, cwd: Path, code: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "analyzer"]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=cwd,
                          env=cli_env(cwd), timeout=DEADLINE)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    from analyzer.sample import list_scenarios, write_bundles

    folder = tmp_path_factory.mktemp("fault-bundles")
    names = [name for name, _ in list_scenarios() if not name.startswith("fleet")][:BUNDLES]
    write_bundles(names, folder, vms=2, days=1, seed=11)
    return folder


# ---------------------------------------------------------------- what "whole" means

class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.closed = False

    def handle_endtag(self, tag):
        self.closed = self.closed or tag == "html"


def assert_whole(out: Path, temporary_allowed: bool = False) -> None:
    """Every file in OUT reads as what it is; no temporary file is left, unless allowed."""
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if re.fullmatch(r"\..+\.\d+\.tmp", path.name):
            assert temporary_allowed, f"left behind: {path}"
            continue
        if path.suffix == ".html":
            page = _Page()
            page.feed(path.read_text(encoding="utf-8"))
            assert page.closed, f"cut short: {path}"
        elif path.suffix == ".json":
            json.loads(path.read_bytes())
        elif path.suffix == ".jsonl":
            for line in path.read_bytes().splitlines():
                json.loads(line)
        elif path.suffix == ".parquet":
            pl.read_parquet(path)
        elif path.suffix == ".csv":
            pl.read_csv(path)


def finished_files(out: Path) -> set[str]:
    """The bundles whose outputs are all on disk."""
    ids = {p.stem for p in (out / "json").glob("*.json")}
    return {b for b in ids if all(p.exists() for p in batch.Store(out)._files(b))}


def counts(stderr: str) -> tuple[int, int, int]:
    found = re.search(r"(\d+) analyzed, (\d+) unchanged, (\d+) failed", stderr)
    assert found, stderr
    return tuple(int(n) for n in found.groups())


# ---------------------------------------------------------------- a batch killed half way

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_killed_batch_leaves_whole_files_and_loses_no_finished_work(sig, bundles, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "analyzer", "batch", str(bundles), "-o", str(out), "--jobs", "1"]
    child = subprocess.Popen(command, cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + DEADLINE
    # two bundles noted as done, three to go (their JSON alone is written before they are noted:
    # a kill between the two, once seen, left one bundle noted)
    while len(batch.Store(out).bundles) < 2:
        assert child.poll() is None, "the batch ended before it could be interrupted"
        assert time.monotonic() < end, "the batch made no progress"
        time.sleep(0.02)
    child.send_signal(sig)
    _, stderr = child.communicate(timeout=DEADLINE)
    if sig == signal.SIGINT:
        assert child.returncode == 130, stderr
        assert stderr.strip().splitlines()[-1] == "interrupted: stopped before the end"
        assert "Traceback" not in stderr
    else:
        assert child.returncode == -signal.SIGKILL
    assert_whole(out, temporary_allowed=sig == signal.SIGKILL)  # a kill may leave a temp file
    finished = set(batch.Store(out).bundles)  # what the cache and its journal say is done
    on_disk = finished_files(out)
    assert finished <= on_disk and len(on_disk - finished) <= 1  # at most the one being noted
    assert 2 <= len(finished) < BUNDLES
    untouched = {b: (out / "json" / f"{b}.json").stat().st_mtime_ns for b in finished}

    again = run_cli("batch", str(bundles), "-o", str(out), "--jobs", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert counts(again.stderr) == (BUNDLES - len(finished), len(finished), 0)
    assert {b: (out / "json" / f"{b}.json").stat().st_mtime_ns for b in finished} == untouched
    assert_whole(out)
    assert len(batch.Store(out).bundles) == BUNDLES == len(finished_files(out))
    assert len((out / "analysis.jsonl").read_bytes().splitlines()) == BUNDLES
    assert not (out / batch.JOURNAL_FILE).exists()  # folded into the cache at the end


def test_a_ctrl_c_a_library_swallows_still_stops_an_in_process_batch(monkeypatch):
    """polars may turn a KeyboardInterrupt raised inside its call into an error of its own: the
    bundle then comes back failed. The batch must stop all the same and not record that result."""
    def swallowing(path, bundle_id, options, name=None, exports=True):
        if bundle_id == "b2":
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # the handler raises here
            except KeyboardInterrupt:
                return batch.BundleResult(path, bundle_id, error="TypeError: not a Polars data type")
        return batch.BundleResult(path, bundle_id)

    monkeypatch.setattr(batch, "analyze_bundle", swallowing)
    jobs = [batch._Job(f"/b{n}.zip", f"b{n}", f"k{n}", "0") for n in (1, 2, 3)]
    recorded = []
    with pytest.raises(KeyboardInterrupt):
        batch._run_local(jobs, 1, Options(), lambda job, result: recorded.append(job.bundle_id))
    assert recorded == ["b1"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_the_journal_keeps_what_finished_and_skips_a_torn_line(tmp_path):
    store = batch.Store(tmp_path)
    store.record(batch.BundleResult("/in/a.zip", "a-1", doc={"vms": []}, html="<html></html>"),
                 "key-a", "sha-a")
    store.record(batch.BundleResult("/in/b.zip", "b-2", error="broken", cacheable_error=True,
                                    details="Traceback ..."), "key-b", "sha-b")
    with open(tmp_path / batch.JOURNAL_FILE, "ab") as journal:
        journal.write(b'{"version": 1, "bundle": "c-3", "ent')  # a kill in the middle of a line
    reread = batch.Store(tmp_path)  # no save(): only the journal knows
    assert set(reread.bundles) == {"a-1"} and reread.bundles["a-1"]["key"] == "key-a"
    assert reread.cached_failure("/in/b.zip", "key-b") == ("broken", tmp_path / "errors" / "b-sha-b.txt")


# ---------------------------------------------------------------- the cache key

def test_a_changed_analyzer_analyzes_again(bundles, tmp_path, monkeypatch):
    out = tmp_path / "out"
    quiet = Console(file=io.StringIO())
    first = batch.run_batch([str(bundles)], out, 1, Options(), None, quiet)
    assert (first.done, first.skipped) == (BUNDLES, 0)
    assert re.fullmatch(r"[0-9a-f]{64}", batch.code_digest())
    same = batch.run_batch([str(bundles)], out, 1, Options(), None, quiet)
    assert (same.done, same.skipped) == (0, BUNDLES)
    monkeypatch.setattr(batch, "code_digest", lambda: "0" * 64)  # same version, other code
    changed = batch.run_batch([str(bundles)], out, 1, Options(), None, quiet)
    assert (changed.done, changed.skipped) == (BUNDLES, 0)


# ---------------------------------------------------------------- a failed bundle's traceback

def test_a_failed_bundle_keeps_its_traceback_in_errors(bundles, tmp_path, monkeypatch):
    victim = sorted(bundles.glob("*.zip"))[0]
    analyze = pipeline.analyze

    def analyze_or_crash(path, *args, **kwargs):
        if Path(path).name == victim.name:
            raise RuntimeError("a bug met in this bundle")
        return analyze(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "analyze", analyze_or_crash)
    out, stream = tmp_path / "out", io.StringIO()
    result = batch.run_batch([str(bundles)], out, 1, Options(), None, Console(file=stream, width=400))
    assert result.done == BUNDLES - 1
    [(path, message)] = result.failed
    assert path == str(victim) and message == "RuntimeError: a bug met in this bundle"
    [details] = (out / "errors").iterdir()
    assert result.details == {str(victim): details}
    text = details.read_text()
    assert text.startswith(f"{victim}\nRuntimeError: a bug met in this bundle\n")
    assert "Traceback (most recent call last)" in text and "analyze_or_crash" in text
    assert f"(details: {details})" in stream.getvalue()  # the terminal names it
    assert f'href="errors/{details.name}"' in (out / "index.html").read_text()

    monkeypatch.setattr(pipeline, "analyze", analyze)  # fixed: the next run clears it
    fixed = batch.run_batch([str(bundles)], out, 1, Options(), None, Console(file=io.StringIO()))
    assert (fixed.done, fixed.failed) == (1, []) and not details.exists()


# ---------------------------------------------------------------- writing whole files

def test_a_write_that_fails_keeps_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("the old report")

    def half_then_fail(out):
        out.write(b"<html>half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="no space left on the device"):
        write_atomic(target, half_then_fail, "-o")
    assert target.read_text() == "the old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_a_dead_process_temporary_file_is_swept_a_live_one_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".index.html.{dead}.tmp"
    live = tmp_path / f".index.html.{os.getppid()}.tmp"
    stale.write_text("half")
    live.write_text("being written")
    write_atomic(tmp_path / "other.json", "{}")
    assert not stale.exists() and live.exists()


# ---------------------------------------------------------------- a full disk

def small_disk(where: Path):
    """A 64 KiB tmpfs: a report does not fit."""
    return tmpfs(where, "size=64k")


def test_analyze_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    with small_disk(tmp_path / "small") as small:
        result = run_cli("analyze", str(HEALTHY), "-o", str(small), cwd=tmp_path)
        left = sorted(small.iterdir())
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: -o {small}/healthy.html: no space left on the device — free some space or write "
        "the results somewhere else"]
    assert left == []


def test_batch_onto_a_full_disk_is_one_line_and_leaves_only_whole_files(bundles, tmp_path):
    with small_disk(tmp_path / "small") as small:
        result = run_cli("batch", str(bundles), "-o", str(small / "fleet"), "--jobs", "1", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"error: -o {small}/fleet/") and "no space left on the device" in line
        assert "Traceback" not in result.stderr
        assert_whole(small / "fleet")


FULL_AFTER_10_KB = """
import builtins, errno, sys
import analyzer.output as output

class Tight:
    def __init__(self, f):
        self.f, self.n = f, 0
    def write(self, data):
        self.n += len(data)
        if self.n > 10_000:
            raise OSError(errno.ENOSPC, "No space left on device", self.f.name)
        return self.f.write(data)
    def writelines(self, chunks):
        for chunk in chunks:
            self.write(chunk)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()
    def __getattr__(self, name):
        return getattr(self.f, name)

def tight_open(path, mode="r", *args, **kwargs):
    real = builtins.open(path, mode, *args, **kwargs)
    return Tight(real) if "w" in mode else real

output.open = tight_open
from analyzer import cli
cli.main(sys.argv[1:])
"""


def test_a_disk_that_fills_while_writing_is_one_line_and_leaves_nothing(tmp_path):
    """The same as a tmpfs, anywhere: every write stops with ENOSPC after 10 kB."""
    out = tmp_path / "out"
    result = run_cli("analyze", str(HEALTHY), "-o", str(out), "--json", str(out / "a.json"),
                     cwd=tmp_path, code=FULL_AFTER_10_KB)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: -o {out}/healthy.html: no space left on the device — free some space or write "
        "the results somewhere else"]
    assert list(out.iterdir()) == []
