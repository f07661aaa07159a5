"""Misuse through the real command line (OUTPUT.md exit codes): a problem of the user's making is
exit 2 and one line naming it and the fix; an unusable bundle 3; invalid signatures 4; a bug 5
with a crash file. No command ends in a traceback, and none writes outside its output folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.tmpfs import tmpfs

ROOT = Path(__file__).resolve().parents[1]
HEALTHY = ROOT / "sample_bundles" / "healthy.zip"
UPLOAD_TIMEOUT = ROOT / "sample_bundles" / "case-disk-upload-timeout.zip"
MARKUP = "[/x]"
# as root, read_only_folder is a read-only mount; else a folder without write permission
READ_ONLY = "is not writable (Read-only file system)" if os.geteuid() == 0 else "is not writable"


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A private TMPDIR (where a crash file would land), no bytecode in the source tree."""
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmpdir), "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": str(ROOT), "COLUMNS": "80", **extra}


def run_cli(*args: str, cwd: Path, code: str | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "analyzer"]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=cwd,
                          env=cli_env(cwd), timeout=timeout)


def tree(root: Path) -> set[Path]:
    found = set()
    for folder, dirs, files in os.walk(root):
        found.update(Path(folder) / name for name in dirs + files)
    return found


@contextlib.contextmanager
def read_only_folder(where: Path) -> Iterator[Path]:
    """A folder nobody can write into: a read-only tmpfs when running as root (root ignores
    permission bits), else a folder without write permission."""
    if os.geteuid() == 0:
        with tmpfs(where, "ro,size=16k"):
            yield where
        return
    where.mkdir()
    where.chmod(0o555)
    try:
        yield where
    finally:
        where.chmod(0o755)


@dataclass
class Case:
    id: str
    args: Callable[[dict], list[str]]
    exit: int
    says: str  # the start of the one stderr line (for click's usage errors: of its last line)
    mentions: tuple[str, ...] = ()  # and what else that line must hold
    outputs: tuple[str, ...] = ()  # the only places (relative to the run's folder) it may write
    read_only: bool = False
    usage_block: bool = False  # click's own usage error: a short usage block, "Error:" last
    extra: dict = field(default_factory=dict)


B = str(HEALTHY)
CASES = [
    # bad option values, markup in them included
    Case("appliance-tz-markup", lambda c: ["analyze", B, "-o", "out", "--appliance-tz", MARKUP], 2,
         "error: --appliance-tz: unknown time zone '[/x]'", ("+09:00",)),
    Case("portal-tz-markup", lambda c: ["analyze", B, "-o", "out", "--portal-tz", f"Mars{MARKUP}"], 2,
         "error: --portal-tz: unknown time zone 'Mars[/x]'"),
    Case("vcenter-tz-unknown", lambda c: ["inspect", B, "--vcenter-tz", "Mars/Olympus"], 2,
         "error: --vcenter-tz: unknown time zone 'Mars/Olympus'"),
    Case("fail-on-markup", lambda c: ["analyze", B, "-o", "out", "--fail-on", MARKUP], 2,
         "error: --fail-on takes critical or warning, not '[/x]'"),
    Case("jobs-0", lambda c: ["batch", B, "-o", "out", "--jobs", "0"], 2,
         "error: --jobs must be at least 1, not 0"),
    Case("vms-negative", lambda c: ["sample", "healthy", "-o", "gen", "--vms", "-1"], 2,
         "error: --vms must be at least 1"),
    Case("days-negative", lambda c: ["sample", "healthy", "-o", "gen", "--days", "-2"], 2,
         "error: --vms must be at least 1 and --days greater than 0"),
    Case("size-negative", lambda c: ["sample", "healthy", "-o", "gen", "--size", "-5"], 2,
         "error: cannot read size '-5'"),
    Case("size-zero", lambda c: ["sample", "healthy", "-o", "gen", "--size", "0"], 2,
         "error: --size must be more than 0 bytes"),
    Case("size-markup", lambda c: ["sample", "healthy", "-o", "gen", "--size", MARKUP], 2,
         "error: cannot read size '[/x]'"),
    Case("scenario-markup", lambda c: ["sample", MARKUP, "-o", "gen"], 2,
         "error: unknown scenario '[/x]'", ("sample --list",)),
    Case("sample-without-out", lambda c: ["sample", "healthy"], 2,
         "error: give one or more scenarios and -o DIR"),
    Case("serve-max-upload-markup", lambda c: ["serve", "--max-upload", MARKUP], 2,
         "error: --max-upload: cannot read size '[/x]'"),
    Case("serve-max-upload-zero", lambda c: ["serve", "--max-upload", "0"], 2,
         "error: --max-upload must be more than 0 bytes"),
    Case("serve-port-out-of-range", lambda c: ["serve", "--port", "70000"], 2,
         "error: --port takes a number from 0 to 65535, not 70000"),
    Case("serve-jobs-0", lambda c: ["serve", "--jobs", "0"], 2, "error: --jobs must be at least 1"),
    Case("serve-port-in-use", lambda c: ["serve", "--port", str(c["busy_port"]), "-o", "out"], 2,
         "error: cannot listen on 127.0.0.1 port", ("pick another --port",), outputs=("out",)),
    Case("debug-without-command", lambda c: ["--debug"], 2, "error: name a command"),
    # missing or unreadable inputs, markup in their names
    Case("missing-bundle", lambda c: ["analyze", "nope.zip"], 2,
         "error: nope.zip: no such file or folder", ("give the path of a bundle",)),
    Case("missing-bundle-markup", lambda c: ["analyze", f"nope{MARKUP}.zip", "-o", f"o{MARKUP}"], 2,
         "error: nope[/x].zip: no such file or folder"),
    Case("inspect-missing", lambda c: ["inspect", "nope.zip", "--json", "-"], 2,
         "error: nope.zip: no such file or folder"),
    Case("batch-nothing-found", lambda c: ["batch", "nope*.zip", "gone.zip", "-o", "out"], 2,
         "error: no bundle found (nope*.zip: no file matches this pattern; gone.zip: no such file or "
         "directory)"),
    Case("watch-missing-folder", lambda c: ["watch", "nope", "-o", "out"], 2,
         "error: nope: not a folder"),
    Case("signatures-missing-folder", lambda c: ["analyze", B, "-o", "out", "--signatures", "nope"], 2,
         "error: --signatures nope: not a folder"),
    # a file where a folder is expected
    Case("out-is-a-file", lambda c: ["analyze", B, "-o", c["file"]], 2,
         "error: -o ", ("is in the way: a file where a folder is needed",)),
    Case("batch-out-is-a-file", lambda c: ["batch", B, "-o", c["file"]], 2,
         "error: -o ", ("a file where a folder is needed",)),
    Case("json-under-a-file", lambda c: ["analyze", B, "-o", "out", "--json", f"{c['file']}/a.json"], 2,
         "error: --json ", ("a file where a folder is needed",), outputs=("out",)),
    Case("dump-tables-is-a-file", lambda c: ["analyze", B, "-o", "out", "--dump-tables", c["file"]], 2,
         "error: --dump-tables ", ("a file where a folder is needed",), outputs=("out",)),
    Case("watch-a-file", lambda c: ["watch", c["file"]], 2, "error: ", ("not a folder",)),
    Case("signatures-is-a-file", lambda c: ["analyze", B, "-o", "out", "--signatures", c["file"]], 2,
         "error: --signatures ", ("not a folder",)),
    # a folder where a file is expected: an output path that is an existing folder
    Case("json-is-a-folder", lambda c: ["analyze", B, "-o", "out", "--json", c["folder"]], 2,
         "error: --json ", ("is a folder — give a file name",), outputs=("out",)),
    Case("inspect-json-is-a-folder", lambda c: ["inspect", B, "--json", c["folder"]], 2,
         "error: --json ", ("is a folder",)),
    Case("schema-out-is-a-folder", lambda c: ["signatures", "schema", "-o", c["folder"]], 2,
         "error: -o ", ("is a folder",)),
    # outputs that cannot be written
    Case("out-under-proc", lambda c: ["analyze", B, "-o", "/proc/nope"], 2,
         "error: -o /proc/nope: /proc/nope cannot be created (No such file or directory)"),
    Case("json-under-proc", lambda c: ["analyze", B, "-o", "out", "--json", "/proc/nope/a.json"], 2,
         "error: --json /proc/nope/a.json: /proc/nope cannot be created", outputs=("out",)),
    Case("inspect-json-under-proc", lambda c: ["inspect", B, "--json", "/proc/nope/a.json"], 2,
         "error: --json /proc/nope/a.json: /proc/nope cannot be created"),
    Case("batch-out-under-proc", lambda c: ["batch", B, "-o", "/proc/nope"], 2,
         "error: -o /proc/nope: /proc/nope cannot be created"),
    Case("sample-out-under-proc", lambda c: ["sample", "healthy", "-o", "/proc/nope"], 2,
         "error: -o /proc/nope: /proc/nope cannot be created"),
    Case("watch-out-under-proc", lambda c: ["watch", c["folder"], "-o", "/proc/nope"], 2,
         "error: -o /proc/nope: /proc/nope cannot be created"),
    Case("serve-out-under-proc", lambda c: ["serve", "-o", "/proc/nope"], 2,
         "error: -o /proc/nope: /proc/nope cannot be created"),
    Case("schema-out-under-proc", lambda c: ["signatures", "schema", "-o", "/proc/nope/s.json"], 2,
         "error: -o /proc/nope/s.json: /proc/nope cannot be created"),
    Case("json-into-read-only", lambda c: ["analyze", B, "-o", "out", "--json", f"{c['ro']}/a.json"], 2,
         "error: --json ", (READ_ONLY, "choose a place you can write to"), outputs=("out",),
         read_only=True),
    Case("out-read-only", lambda c: ["analyze", B, "-o", c["ro"]], 2,
         "error: -o ", (READ_ONLY,), read_only=True),
    Case("batch-out-read-only", lambda c: ["batch", B, "-o", f"{c['ro']}/fleet"], 2,
         "error: -o ", (READ_ONLY,), read_only=True),
    Case("inspect-json-read-only", lambda c: ["inspect", B, "--json", f"{c['ro']}/i.json"], 2,
         "error: --json ", (READ_ONLY,), read_only=True),
    # click's own usage errors: a short usage block whose last line says it
    Case("unknown-command", lambda c: ["frobnicate"], 2, "Error: No such command 'frobnicate'.",
         usage_block=True),
    Case("unknown-command-markup", lambda c: [MARKUP], 2, "Error: No such command '[/x]'.",
         usage_block=True),
    Case("missing-argument", lambda c: ["analyze"], 2, "Error: Missing argument", usage_block=True),
    Case("unknown-option", lambda c: ["analyze", B, "--vms", "3"], 2, "Error: No such option: --vms",
         usage_block=True),
    Case("not-a-number", lambda c: ["sample", "healthy", "-o", "gen", "--vms", "abc"], 2,
         "Error: Invalid value for '--vms'", usage_block=True),
    Case("extra-argument", lambda c: ["inspect", B, "extra"], 2, "Error: Got unexpected extra argument",
         usage_block=True),
    # not the user's making, nor a bug
    Case("unusable-bundle", lambda c: ["analyze", c["junk"], "-o", "out"], 3,
         f"unusable bundle: ", ("junk[_x].zip",), outputs=("out",)),
    Case("invalid-signatures", lambda c: ["analyze", B, "-o", "out", "--signatures", c["bad_sigs"]], 4,
         "invalid signatures: ", outputs=("out",)),
]


@pytest.fixture
def places(tmp_path: Path) -> dict:
    (tmp_path / "tmpdir").mkdir()
    (tmp_path / "a-file.txt").write_text("not a folder\n")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "junk[_x].zip").write_bytes(b"not an archive, not a log either" * 20)
    bad = tmp_path / "bad-sigs"
    bad.mkdir()
    (bad / "broken.toml").write_text('id = "broken"\nkind = "nonsense"\n')
    return {"file": str(tmp_path / "a-file.txt"), "folder": str(tmp_path / "a-folder"),
            "junk": str(tmp_path / "junk[_x].zip"), "bad_sigs": str(bad),
            "ro": str(tmp_path / "read-only")}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_misuse_is_one_clear_line(case: Case, places: dict, tmp_path: Path):
    with contextlib.ExitStack() as stack:
        if case.read_only:
            stack.enter_context(read_only_folder(Path(places["ro"])))
        busy = socket.socket()
        stack.callback(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        args = case.args({**places, "busy_port": busy.getsockname()[1]})
        before = tree(tmp_path)
        result = run_cli(*args, cwd=tmp_path)
        created = tree(tmp_path) - before

    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == case.exit, output
    lines = result.stderr.strip().splitlines()
    if case.usage_block:
        assert 1 < len(lines) <= 5 and lines[0].startswith("Usage: "), result.stderr
        last = lines[-1]
    elif case.exit == 4:  # the problems follow, one line each
        last = lines[0]
    else:
        assert len(lines) == 1, result.stderr
        last = lines[0]
    assert last.startswith(case.says), last
    for fragment in case.mentions:
        assert fragment in last, last
    allowed = [tmp_path / place for place in case.outputs]
    strays = sorted(p for p in created if not any(p == a or a in p.parents for a in allowed))
    assert strays == [], strays  # no crash file in TMPDIR either
    for place in allowed:  # an output folder made for a run that stopped stays empty
        assert not place.exists() or case.exit != 2 or not any(place.iterdir())


def test_markup_in_every_name_is_shown_as_it_is(tmp_path: Path):
    """A bundle, output folder and JSON path named with rich markup: analyzed, printed verbatim."""
    bundle = tmp_path / "case[red]x[bold].zip"  # a file name cannot hold the / of [/x]
    shutil.copyfile(UPLOAD_TIMEOUT, bundle)
    out = f"out{MARKUP}"  # a folder out[ holding a folder x]
    result = run_cli("analyze", bundle.name, "-o", out, "--json", f"{out}/a[red].json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("case[red]x[bold].zip  VMs 6")  # the name, not styled, not eaten
    assert f"report: {out}/case_red_x_bold_.html" in result.stderr
    doc = json.loads((tmp_path / out / "a[red].json").read_text())
    assert doc["bundle"]["name"] == bundle.name
    assert sorted(p.name for p in (tmp_path / out).iterdir()) == ["a[red].json", "case_red_x_bold_.html"]


# ---------------------------------------------------------------- an internal error (a bug)

BOOM = """
import sys
import analyzer.pipeline

def boom(*args, **kwargs):
    raise RuntimeError("boom [/x] in the pipeline\\nsecond line")

analyzer.pipeline.analyze = analyzer.pipeline.inspect = boom
from analyzer import cli
cli.main(sys.argv[1:])
"""


def test_an_internal_error_is_exit_5_one_line_and_a_crash_file(tmp_path: Path):
    result = run_cli("analyze", str(HEALTHY), "-o", "out", cwd=tmp_path, code=BOOM)
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    crash = sorted((tmp_path / "out").glob("bundle-analyzer-crash-*.txt"))
    assert len(crash) == 1, sorted((tmp_path / "out").iterdir())
    assert line == (f"internal error: RuntimeError: boom [/x] in the pipeline second line — this is "
                    f"a bug; the traceback is in out/{crash[0].name} (please report it with that file)")
    report = crash[0].read_text()
    assert report.startswith("bundle-analyzer ") and "internal error: RuntimeError: boom" in report
    assert f"command: bundle-analyzer analyze {HEALTHY} -o out" in report
    assert "Traceback (most recent call last)" in report and ", in boom\n" in report
    assert not any((tmp_path / "tmpdir").iterdir())


def test_an_internal_error_without_an_output_folder_goes_to_the_temp_folder(tmp_path: Path):
    result = run_cli("inspect", str(HEALTHY), cwd=tmp_path, code=BOOM)
    assert result.returncode == 5
    [line] = result.stderr.strip().splitlines()
    [crash] = (tmp_path / "tmpdir").glob("bundle-analyzer-crash-*.txt")
    assert f"the traceback is in {crash}" in line
    assert "RuntimeError: boom" in crash.read_text()


def test_debug_prints_the_traceback_too(tmp_path: Path):
    result = run_cli("--debug", "analyze", str(HEALTHY), "-o", "out", cwd=tmp_path, code=BOOM)
    assert result.returncode == 5
    lines = result.stderr.splitlines()
    assert lines[0].startswith("internal error: RuntimeError: boom [/x]")
    assert "Traceback (most recent call last):" in lines[1:]
    assert lines[-2:] == ["RuntimeError: boom [/x] in the pipeline", "second line"]
