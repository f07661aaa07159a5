"""The drop folder: complete bundles only, each analyzed once, bad ones skipped, clean stop."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from analyzer.errors import UserError
from analyzer.pipeline import Options
from analyzer.watch import ready_bundles, watch

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 180  # seconds: a bound for waiting on a background thread, not a timing assertion


def make_bundle(tmp_path: Path, seed: int = 7) -> Path:
    from analyzer.sample import list_scenarios, write_bundles

    name = next(n for n, _ in list_scenarios() if not n.startswith("fleet"))
    return write_bundles([name], tmp_path / f"gen{seed}", vms=2, days=1, seed=seed)[0]


def wait_for(condition, what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.1)


def test_a_bundle_is_ready_after_two_polls_with_no_change(tmp_path):
    drop, out = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    seen = {}
    bundle = drop / "case.zip"
    bundle.write_bytes(make_bundle(tmp_path).read_bytes())
    assert ready_bundles(drop, out, seen) == []  # first sight
    assert ready_bundles(drop, out, seen) == [bundle]  # unchanged since: complete
    assert ready_bundles(drop, out, seen) == []  # handled once

    with bundle.open("ab") as fh:  # rewritten: analyzed again once it settles
        fh.write(b"\0")
    assert ready_bundles(drop, out, seen) == []
    assert ready_bundles(drop, out, seen) == [bundle]


def test_a_zip_still_being_written_is_not_ready(tmp_path):
    drop, out = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    data = make_bundle(tmp_path).read_bytes()
    partial = drop / "slow.zip"
    partial.write_bytes(data[: len(data) // 2])  # the writer stalls half way
    seen = {}
    for _ in range(4):
        assert ready_bundles(drop, out, seen) == []
    with partial.open("ab") as fh:
        fh.write(data[len(data) // 2:])
    assert ready_bundles(drop, out, seen) == []
    assert ready_bundles(drop, out, seen) == [partial]


def test_partial_hidden_and_non_bundle_files_are_ignored(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    data = make_bundle(tmp_path).read_bytes()
    for name in ("copy.zip.part", ".hidden.zip", "download.crdownload"):
        (drop / name).write_bytes(data)
    (drop / "notes.md").write_text("hello")
    out = drop / "out"  # OUT inside the drop folder is not a bundle either
    out.mkdir()
    seen = {}
    assert ready_bundles(drop, out, seen) == [] and ready_bundles(drop, out, seen) == []


def test_watch_analyzes_a_bundle_dropped_while_it_runs(tmp_path):
    drop, out = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    data = make_bundle(tmp_path).read_bytes()
    stop = threading.Event()
    log = io.StringIO()
    thread = threading.Thread(target=watch, args=(drop, out, Options(), Console(file=log)),
                              kwargs={"stop": stop, "poll": 0.2}, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)  # watching an empty folder
        target = drop / "dropped-case.zip"
        with target.open("wb") as fh:  # written in two steps with a pause, like a slow copy
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(1.0)
            fh.write(data[len(data) // 2:])
        (drop / "broken.zip").write_bytes(b"PK\x03\x04 this is no archive")

        def cache():
            path = out / ".cache.json"
            return json.loads(path.read_text()) if path.exists() else {}

        wait_for(lambda: any(e["path"] == str(target) for e in cache().get("bundles", {}).values())
                 and str(drop / "broken.zip") in cache().get("failures", {}), "both bundles")
        [bundle] = [b for b, e in cache()["bundles"].items() if e["path"] == str(target)]
        assert (out / f"{bundle}.html").exists()
        # the cache is saved before the fleet page is rewritten: wait for the page itself
        wait_for(lambda: f'href="{bundle}.html"' in (out / "index.html").read_text()
                 and "broken.zip" in (out / "index.html").read_text(), "the fleet page")
    finally:
        stop.set()
        thread.join(DEADLINE)
    assert not thread.is_alive()
    text = log.getvalue()
    assert "analyzed dropped-case.zip" in text and "skipped broken.zip" in text
    assert text.count("dropped-case.zip") == 1  # analyzed once, not on every poll


def test_ctrl_c_stops_cleanly(tmp_path):
    drop, out = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    code = ("import sys; from pathlib import Path; from rich.console import Console;"
            "from analyzer.watch import watch; from analyzer.pipeline import Options;"
            "watch(Path(sys.argv[1]), Path(sys.argv[2]), Options(), Console(), poll=0.1)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(drop), str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(lambda: proc.poll() is not None or (out.exists()), "the watcher to start")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Stopped watching." in stdout and "Traceback" not in stderr


def test_watch_refuses_a_missing_folder(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        watch(tmp_path / "nope", tmp_path / "out", Options(), Console(file=io.StringIO()))


def test_a_file_gone_between_listing_and_opening_is_skipped_not_fatal(tmp_path, monkeypatch):
    import analyzer.watch as watching

    drop, out = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    bundle = drop / "case.zip"
    bundle.write_bytes(make_bundle(tmp_path).read_bytes())
    seen = {}
    assert ready_bundles(drop, out, seen) == []
    signature = watching._signature

    def then_gone(path):  # the file is deleted right after it was looked at
        found = signature(path)
        path.unlink()
        return found

    monkeypatch.setattr(watching, "_signature", then_gone)
    assert ready_bundles(drop, out, seen) == []
    monkeypatch.setattr(watching, "_signature", signature)
    assert ready_bundles(drop, out, seen) == [] and seen == {}  # forgotten once gone


def test_a_file_that_cannot_be_read_is_handed_over_once_it_stays_so(tmp_path, monkeypatch):
    drop, out = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    bundle = drop / "locked.zip"
    bundle.write_bytes(make_bundle(tmp_path).read_bytes())
    opened = Path.open

    def refuse(self, *args, **kwargs):
        if self.name == "locked.zip":
            raise PermissionError(13, "Permission denied", str(self))
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)  # root reads anything: refused here instead
    seen = {}
    polls = [ready_bundles(drop, out, seen, give_up_polls=3) for _ in range(5)]
    assert polls == [[], [], [], [bundle], []]  # waited, then handed over to be reported once


def test_watch_survives_a_bundle_that_vanishes_while_it_runs(tmp_path):
    drop, out = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    stream = io.StringIO()
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(drop, out, Options(), Console(file=stream, width=200)),
                              kwargs={"stop": stop, "poll": 0.05}, daemon=True)
    thread.start()
    data = make_bundle(tmp_path).read_bytes()
    for n in range(20):  # dropped and taken back before it settles, again and again
        flicker = drop / f"flicker-{n}.zip"
        flicker.write_bytes(data)
        time.sleep(0.03)
        flicker.unlink()
    (drop / "stays.zip").write_bytes(data)
    wait_for(lambda: "stays.zip" in stream.getvalue(), "the bundle that stayed")
    stop.set()
    thread.join(DEADLINE)
    assert not thread.is_alive()
    assert "analyzed stays.zip" in stream.getvalue() and "Traceback" not in stream.getvalue()
