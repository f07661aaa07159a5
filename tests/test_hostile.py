"""Hostile bundles through the command line, end to end (issue 7).

Every bundle here is built by the test (nothing large is committed). Each goes through
`analyze`, `inspect --json -` and one `batch` run, as a subprocess, and the tests check:
the exit code (0, or 3 with one line when nothing is usable), the diagnostic it earns, that no
traceback is printed, and that no file appears outside OUT (the working directory, TMPDIR and
the bundle's folder are snapshotted). Decompression bombs also run under a peak-memory probe.
Archive-level details (exact walker behaviour per limit) are tests/test_bundle.py's business.

The helpers at the top (bundle builders, `run_cli`, `tree`) are shared with test_redact.py and
test_injection.py.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jsonschema
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from isal import isal_zlib

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "analyzer" / "schema" / "analysis-v1.json").read_text())
MiB = 2**20

# A peak-memory probe around the real CLI: the process's own max RSS, written at exit. LIMITS
# (JSON) scales bundle limits down where the default would take minutes to reach (32 GiB total).
PROBE = """
import atexit, json, os, sys
def _peak():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking pytest process
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    with open(os.environ["PEAK_RSS_FILE"], "w") as f:
        f.write(str(kib * 1024))
atexit.register(_peak)
if os.environ.get("LIMITS"):
    from analyzer import bundle
    bundle.open_bundle.__defaults__ = (bundle.Limits(**json.loads(os.environ["LIMITS"])),
                                       *bundle.open_bundle.__defaults__[1:])
sys.argv = ["bundle-analyzer", *sys.argv[1:]]
from analyzer.cli import main
main()
"""


# ---------------------------------------------------------------------------------------------
# Bundle content


def gateway_log(vm: str = "APP01", vm_id: str = "vm-1042", extra: str = "", failure: str = "",
                day: str = "2024-05-14", error: str = "") -> str:
    """A gateway log in which `vm`'s delta cycle fails with DiskUploadTimedOut after the cache
    storage account became unreachable. `extra` lines go in before the failure, `failure`
    replaces the storage failure line, `error` the error tokens of the failed-cycle line."""
    t = f"{day}T10"
    error = error or ("errorId=1011 error=DiskUploadTimedOut message=\"The upload of data for disk "
                      f"[ds01] {vm}/{vm}.vmdk, 6000C29a of virtual machine {vm}; {vm_id} did not "
                      "complete within the expected time.\"")
    failure = failure or (f"{t}:05:00.000Z Error [7] Gateway.Service.Upload.BlobClient - Request to "
                          "https://migratelsa1329610309.blob.core.windows.net/replication/state.json "
                          "failed. System.Net.WebException: Unable to connect to the remote server")
    return "\n".join(line for line in [
        f"{t}:00:00.000Z Info [1] Gateway.Service.Host - Service asrgwy started.",
        f"{t}:00:01.000Z Info [1] Gateway.Service.Host - VDDK initialised. version=7.0.3 build=1",
        f"{t}:01:00.000Z Info [5] Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine"
        f" - Replication cycle started. vm={vm} vmId={vm_id} host=esx07.contoso.local cycleId=17"
        " type=DeltaReplication disks=1",
        f'{t}:02:00.000Z Info [5] Gateway.Service.Upload.DiskUploader - Disk upload progress. vm={vm} '
        f'cycleId=17 disk="[ds01] {vm}/{vm}.vmdk" diskId=6000C29a uploadedBytes=1000 '
        "totalBytes=2000000 rateMBps=40.0",
        extra,
        failure,
        *(f"{t}:{m}:00.000Z Info [1] Gateway.Service.Host - Heartbeat. activeCycles=1 queuedCycles=0"
          for m in (10, 15, 20, 25)),
        f"{t}:30:00.000Z Error [5] Gateway.Service.Upload.DiskUploader - Replication cycle failed. "
        f"vm={vm} cycleId=17 {error}",
        f"{t}:35:00.000Z Info [1] Gateway.Service.Host - Heartbeat. activeCycles=0 queuedCycles=0",
    ] if line) + "\n"


PORTAL_HEADER = ("Time,Severity,Event,Machine,Event type,Error ID,Error message,Possible causes,"
                 "Recommendation,Event code,Initiated by")


def portal_csv(*rows: str) -> str:
    return "\n".join([PORTAL_HEADER, *rows]) + "\n"


def portal_row(vm: str = "APP01", message: str = "The upload of data did not complete within the "
               "expected time.", time: str = "2024-05-14T10:30:05Z", initiated_by: str = "") -> str:
    quoted = '"' + message.replace('"', '""') + '"'
    return f"{time},Error,Replication cycle failed,{vm},,1011,{quoted},,,,{initiated_by}"


def vpxd_log(vm_id: str = "vm-1042", fault_msg: str = "Another task is already in progress.",
             before: str = "", extra: str = "") -> str:
    head = "2024-05-14T10:0{}:00.000Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxLro opID=op{}] "
    return "\n".join(line for line in [
        before,
        head.format(1, 1) + f"[VpxLRO] -- BEGIN task-88231 -- {vm_id} -- "
        "vim.VirtualMachine.createSnapshot -- 52b1c2d3",
        head.format(2, 1).replace(" info ", " error ") + f"[VpxLRO] -- ERROR task-88231 -- {vm_id} -- "
        "vim.VirtualMachine.createSnapshot: vim.fault.TaskInProgress:",
        "--> Result:",
        "--> (vim.fault.TaskInProgress) {",
        "-->    faultCause = (vmodl.MethodFault) null,",
        f'-->    msg = "{fault_msg}"',
        "--> }",
        extra,
    ] if line) + "\n"


TASK_HEADER = ("Task Name,Target,Status,Details,Initiator,Queued For,Start Time,Completion Time,"
               "Execution Time,Server")


def task_csv(*rows: str) -> str:
    return "\n".join([TASK_HEADER, *rows]) + "\n"


def task_row(vm: str = "APP01", details: str = "Another task is already in progress.",
             initiator: str = "VSPHERE.LOCAL\\\\svc-backup") -> str:
    quoted = '"' + details.replace('"', '""') + '"'
    return (f"Create virtual machine snapshot,{vm},Failed,{quoted},{initiator},3 ms,"
            "2024-05-14T10:10:00Z,2024-05-14T10:10:02Z,2 s,vcsa01.contoso.local")


# ---------------------------------------------------------------------------------------------
# Archives


def make_zip(path: Path, members: list[tuple[str, bytes | str]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 5, 14, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data.encode() if isinstance(data, str) else data)
    return path


def zip_bytes(members: list[tuple[str, bytes | str]]) -> bytes:
    buffer = io.BytesIO()
    make_zip(buffer, members)  # type: ignore[arg-type]
    return buffer.getvalue()


def make_tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes | str]],
             mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tf.addfile(entry)
                continue
            name, data = entry
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(raw), 1715644800
            tf.addfile(info, io.BytesIO(raw))
    return path


def link_entry(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def zeros_deflated(size: int, wbits: int = -15) -> bytes:
    """`size` zero bytes, deflated fast (isal level 1 still gives ~1000:1)."""
    deflate = isal_zlib.compressobj(1, isal_zlib.DEFLATED, wbits)
    block = bytes(16 * MiB)
    parts = [deflate.compress(block) for _ in range(size // len(block))]
    return b"".join(parts) + deflate.compress(bytes(size % len(block))) + deflate.flush()


def zeros_crc(size: int) -> int:
    crc, block = 0, bytes(16 * MiB)
    for _ in range(size // len(block)):
        crc = zlib.crc32(block, crc)
    return zlib.crc32(bytes(size % len(block)), crc)


def raw_zip(path: Path, entries: list[tuple[str, bytes, int, int]], copies: int = 1) -> Path:
    """A zip from already-deflated data: (name, deflated, crc32, uncompressed size) each, sizes
    declared honestly. `copies` > 1 lists the last entry that many times in the central
    directory, every copy pointing at the same data (the overlapping-entries bomb)."""
    out, central = io.BytesIO(), []
    for n, (name, data, crc, size) in enumerate(entries):
        raw_name = name.encode()
        offset = out.tell()
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x5821, crc,
                              len(data), size, len(raw_name), 0) + raw_name + data)
        for _ in range(copies - 1 if n == len(entries) - 1 else 0):
            central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0,
                                       0x5821, crc, len(data), size, len(raw_name), 0, 0, 0, 0, 0,
                                       offset) + raw_name)
        central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x5821,
                                   crc, len(data), size, len(raw_name), 0, 0, 0, 0, 0, offset)
                       + raw_name)
    start = out.tell()
    directory = b"".join(central)
    out.write(directory + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries),
                                      len(entries), len(directory), start, 0))
    path.write_bytes(out.getvalue())
    return path


# ---------------------------------------------------------------------------------------------
# Running the command line


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for a CLI run: a private TMPDIR, no bytecode written into the source tree."""
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmpdir), "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": str(ROOT), "COLUMNS": "200", **extra}


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, probe: bool = False,
            timeout: int = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", PROBE] if probe else [sys.executable, "-m", "analyzer"]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=cwd,
                          env=env or cli_env(cwd.parent), timeout=timeout)


def tree(*roots: Path) -> set[str]:
    """Every file, folder and link below the roots (links not followed)."""
    found = set()
    for root in roots:
        for folder, dirs, files in os.walk(root):
            found.update(os.path.join(folder, name) for name in dirs + files)
    return found


def outside(new: set[str], out: Path) -> list[str]:
    return sorted(p for p in new if not Path(p).is_relative_to(out))


def codes(doc: dict) -> set[str]:
    return {d["code"] for d in doc["diagnostics"]}


# ---------------------------------------------------------------------------------------------
# The hostile cases

ESCAPE = f"bundle-analyzer-escape-{uuid.uuid4().hex[:12]}"  # a name no run may create anywhere
GOOD = ("Logs/GatewayService.log", gateway_log())
LSA = "https://migratelsa1329610309.blob.core.windows.net/replication"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path]  # writes the bundle into a folder, returns its path
    exit: int = 0
    codes: frozenset[str] = frozenset()  # diagnostic codes the analysis must carry
    check: Callable[[dict], None] | None = None  # more assertions on the analysis JSON
    in_batch: bool = True


def has_verdict(vm: str = "APP01") -> Callable[[dict], None]:
    def check(doc: dict) -> None:
        assert any(v["vm"] == vm and v["error"] == "disk_upload_timed_out" for v in doc["verdicts"]), \
            [(v["vm"], v["error"]) for v in doc["verdicts"]]
    return check


def traversal(folder: Path) -> Path:
    log = gateway_log(vm="EVIL01", vm_id="vm-666")
    return make_zip(folder / "traversal.zip", [
        GOOD, (f"../../{ESCAPE}.log", log), (f"/tmp/{ESCAPE}-abs.log", log),
        (f"C:\\Windows\\Temp\\{ESCAPE}.log", log), (f"logs\\..\\..\\{ESCAPE}.log", log),
        (f"a/./../../{ESCAPE}.log", log)])


def tar_links(folder: Path) -> Path:
    return make_tar(folder / "links.tar", [
        GOOD,
        link_entry("Logs/passwd.log", "/etc/passwd", tarfile.SYMTYPE),
        link_entry("Logs/shadow.log", "/etc/shadow", tarfile.LNKTYPE),
        link_entry("Logs/up", "../../..", tarfile.SYMTYPE),
        (f"Logs/up/{ESCAPE}.log", gateway_log(vm="EVIL01")),  # through the link, if followed
        (f"../{ESCAPE}.log", "x"), (f"/tmp/{ESCAPE}-abs.log", "x"),
        link_entry("Logs/dev", "", tarfile.CHRTYPE),
        link_entry("Logs/fifo", "", tarfile.FIFOTYPE)])


def directory_links(folder: Path) -> Path:
    bundle = folder / "dir-bundle"
    (bundle / "Logs").mkdir(parents=True)
    (bundle / GOOD[0]).write_text(GOOD[1])
    (bundle / "Logs" / "passwd.log").symlink_to("/etc/passwd")
    (bundle / "root").symlink_to("/", target_is_directory=True)
    os.mkfifo(bundle / "Logs" / "pipe.log")
    return bundle


def zip_ratio_bomb(folder: Path, size: int = 1024 * MiB) -> Path:
    """1 GiB of zeros in 1 MB, sizes declared honestly (refused from the header)."""
    good = GOOD[1].encode()
    return raw_zip(folder / "ratio-bomb.zip", [
        (GOOD[0], zlib.compress(good)[2:-4], zlib.crc32(good), len(good)),
        ("Logs/bomb.log", zeros_deflated(size), zeros_crc(size), size)])


def gz_bomb_in_zip(folder: Path, size: int = 1024 * MiB) -> Path:
    """A gzip rotation inside the zip: no declared size, the limit must hold while inflating."""
    return make_zip(folder / "gz-bomb.zip", [GOOD, ("Logs/GatewayService.log.1.gz",
                                                    zeros_deflated(size, wbits=31))])


def tgz_bomb(folder: Path, size: int = 1024 * MiB) -> Path:
    """A .tgz whose tar holds the good log, then 1 GiB of zeros: the gzip stream is the bomb."""
    good = GOOD[1].encode()
    tar = make_tar(folder / "good.tar", [GOOD]).read_bytes()
    (folder / "good.tar").unlink()
    header = tarfile.TarInfo("Logs/bomb.log")
    header.size = size
    deflate = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    parts = [deflate.compress(tar[:512 + (len(good) + 511) // 512 * 512]),
             deflate.compress(header.tobuf())]
    block = bytes(16 * MiB)
    parts += [deflate.compress(block) for _ in range(size // len(block))]
    parts.append(deflate.compress(bytes(1024)) + deflate.flush())
    path = folder / "bomb.tgz"
    path.write_bytes(b"".join(parts))
    return path


def overlap_bomb(folder: Path, size: int = 48 * MiB, copies: int = 200) -> Path:
    """200 directory entries sharing one stream of 48 MiB of zeros (under the ratio floor, so no
    ratio check applies to any one of them): 50 KB that would inflate to 9.4 GiB."""
    good = GOOD[1].encode()
    return raw_zip(folder / "overlap-bomb.zip", [
        (GOOD[0], zlib.compress(good)[2:-4], zlib.crc32(good), len(good)),
        ("Logs/kernel.log", zeros_deflated(size), zeros_crc(size), size)], copies=copies)


def nested_too_deep(folder: Path) -> Path:
    data = zip_bytes([("Logs/deep.log", gateway_log(vm="DEEP01"))])
    for level in range(5):
        data = zip_bytes([(f"level{level}.zip", data)])
    return make_zip(folder / "nested.zip", [GOOD, ("vc-support.zip", data)])


def encrypted(folder: Path) -> Path:
    raw = bytearray(zip_bytes([("Logs/secret.log", gateway_log(vm="LOCKED01")), GOOD]))
    local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
    raw[local + 6] |= 0x01  # the "encrypted" flag bit, local and central header
    raw[central + 8] |= 0x01
    path = folder / "encrypted.zip"
    path.write_bytes(bytes(raw))
    return path


def noise_log(size: int) -> str:
    """Incompressible text, so that a cut lands inside it."""
    return "".join(f"{uuid.UUID(int=i * 7919 + 13).hex}\n" for i in range(size // 33))


def truncated_tgz(folder: Path) -> Path:
    make_tar(folder / "full.tgz", [GOOD, ("Logs/noise.log", noise_log(400_000))], mode="w:gz")
    data = (folder / "full.tgz").read_bytes()
    (folder / "full.tgz").unlink()
    path = folder / "truncated.tgz"
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def truncated_zip(folder: Path) -> Path:
    data = zip_bytes([GOOD, ("Logs/noise.log", noise_log(400_000))])
    path = folder / "truncated.zip"
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def duplicates(folder: Path) -> Path:
    return make_zip(folder / "duplicates.zip", [
        GOOD, (GOOD[0], gateway_log(vm="APP02", vm_id="vm-2002", day="2024-05-15"))])


def huge_line(folder: Path) -> Path:
    long_failure = (f"2024-05-14T10:05:00.000Z Error [7] Gateway.Service.Upload.BlobClient - Request to "
                    f"{LSA}/x failed. System.Net.WebException: Unable to connect to the remote server "
                    + "x" * (20 * MiB))
    return make_zip(folder / "huge-line.zip", [
        ("Logs/GatewayService.log", gateway_log(failure=long_failure)),
        ("Logs/one-line.txt", "A" * (20 * MiB))])


def nul_bytes(folder: Path) -> Path:
    text = gateway_log().replace("Heartbeat.", "Heart\x00beat.")
    lines = text.split("\n")
    lines.insert(3, "\x00" * 4096)  # a crash leaves a block of NULs in a log
    return make_zip(folder / "nul.zip", [("Logs/GatewayService.log", "\n".join(lines))])


def invalid_utf8(folder: Path) -> Path:
    data = gateway_log().encode().replace(b"Heartbeat.", b"Heart\xff\xfe\x80beat.")
    return make_zip(folder / "bad-utf8.zip", [("Logs/GatewayService.log", data)])


def invalid_utf16(folder: Path) -> Path:
    data = gateway_log().encode("utf-16-le")
    cut = data.index("Heartbeat".encode("utf-16-le"))
    data = b"\xff\xfe" + data[:cut] + b"\x00\xd8" + data[cut:] + b"\x41"  # lone surrogate, odd end
    return make_zip(folder / "bad-utf16.zip", [("Logs/GatewayService.log", data)])


def unbalanced_csv(folder: Path) -> Path:
    rows = [portal_row(), '2024-05-14T10:31:00Z,Error,Replication cycle failed,APP01,,1011,"never closed,,,,',
            *(portal_row(time=f"2024-05-14T10:{m}:00Z") for m in range(32, 40))]
    return make_zip(folder / "unbalanced.zip", [GOOD, ("portal/events.csv", portal_csv(*rows))])


def million_columns(folder: Path) -> Path:
    header = PORTAL_HEADER + "," + ",".join(f"extra{i}" for i in range(1_000_000))
    return make_zip(folder / "wide.zip", [GOOD, ("portal/events.csv",
                                                 header + "\n" + portal_row() + "\n")])


def out_of_range_times(folder: Path) -> Path:
    bad = "\n".join(f"{ts} Error [7] Gateway.Service.X - Request to {LSA}/y failed. System.Net."
                    "WebException: Unable to connect to the remote server"
                    for ts in ("9999-12-31T23:59:59.999Z", "0001-01-01T00:00:00.000Z",
                               "2024-13-45T99:99:99.000Z", "1900-02-30 25:61:61.000"))
    portal = portal_csv(portal_row(time="12/31/9999, 11:59:59 PM"), portal_row(time="1/1/0001, 1:00:00 AM"),
                        portal_row(time="2024-02-30T10:00:00Z"))
    vpxd = vpxd_log(extra="9999-12-31T23:59:59.999Z info vpxd[7FE1] [Originator@6876 sub=x] late")
    return make_zip(folder / "times.zip", [("Logs/GatewayService.log", gateway_log(extra=bad)),
                                           ("portal/events.csv", portal), ("vpxd/vpxd-1.log", vpxd)])


def corrupt_gz_member(folder: Path) -> Path:
    return make_zip(folder / "corrupt-gz.zip", [
        GOOD, ("vpxd/vpxd-3.log.gz", b"\x1f\x8b\x08\x00" + bytes(range(256)) * 8)])


def long_names(folder: Path) -> Path:
    return make_zip(folder / "long-names.zip", [
        GOOD, ("a/" * 2000 + "GatewayService.log", gateway_log(vm="LONG01", day="2024-05-15"))])


def only_unsafe(folder: Path) -> Path:
    return make_zip(folder / "only-unsafe.zip", [(f"../{ESCAPE}.log", GOOD[1]),
                                                 (f"/{ESCAPE}.log", GOOD[1])])


def seven_zip(folder: Path) -> Path:
    path = folder / "case.7z.zip"
    path.write_bytes(b"7z\xbc\xaf\x27\x1c" + os.urandom(2048))
    return path


def empty_file(folder: Path) -> Path:
    path = folder / "empty.zip"
    path.write_bytes(b"")
    return path


def random_bytes(folder: Path) -> Path:
    path = folder / "random.tgz"
    path.write_bytes(bytes((i * 167 + 13) % 256 for i in range(4096)))
    return path


CASES = [
    Case("traversal", traversal, codes=frozenset({"unsafe-member"}), check=has_verdict()),
    Case("tar-links", tar_links, codes=frozenset({"unsafe-member"}), check=has_verdict()),
    Case("dir-links", directory_links, codes=frozenset({"unsafe-member"}), check=has_verdict()),
    Case("zip-ratio-bomb", zip_ratio_bomb, codes=frozenset({"decompression-limit"}), check=has_verdict()),
    Case("gz-bomb-in-zip", gz_bomb_in_zip, codes=frozenset({"decompression-limit"}), check=has_verdict()),
    Case("tgz-bomb", tgz_bomb, codes=frozenset({"decompression-limit"}), check=has_verdict()),
    Case("overlap-bomb", overlap_bomb, codes=frozenset({"decompression-limit"}), check=has_verdict()),
    Case("nested-too-deep", nested_too_deep, codes=frozenset({"nesting-too-deep"}), check=has_verdict()),
    Case("encrypted", encrypted, codes=frozenset({"encrypted-member"}), check=has_verdict()),
    Case("truncated-tgz", truncated_tgz, codes=frozenset({"archive-truncated"}), check=has_verdict()),
    Case("truncated-zip", truncated_zip, codes=frozenset({"archive-damaged"}), check=has_verdict()),
    Case("duplicates", duplicates, codes=frozenset({"duplicate-member"}), check=has_verdict("APP02")),
    Case("huge-line", huge_line, codes=frozenset({"truncated-values"}), check=has_verdict()),
    Case("nul-bytes", nul_bytes, codes=frozenset({"nul-bytes"}), check=has_verdict()),
    Case("invalid-utf8", invalid_utf8, codes=frozenset({"decoded-as-cp1252"}), check=has_verdict()),
    Case("invalid-utf16", invalid_utf16, codes=frozenset({"decode-errors"}), check=has_verdict()),
    Case("unbalanced-csv", unbalanced_csv, codes=frozenset({"unbalanced-quote"}), check=has_verdict()),
    Case("million-columns", million_columns, check=has_verdict()),
    Case("out-of-range-times", out_of_range_times, codes=frozenset({"bad-timestamps"}), check=has_verdict()),
    Case("corrupt-gz-member", corrupt_gz_member, codes=frozenset({"member-corrupt"}), check=has_verdict()),
    Case("long-names", long_names, check=has_verdict("LONG01")),
    Case("only-unsafe", only_unsafe, exit=3),
    Case("seven-zip", seven_zip, exit=3),
    Case("empty-file", empty_file, exit=3),
    Case("random-bytes", random_bytes, exit=3),
]
IDS = [c.name for c in CASES]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Every hostile bundle, built once into one folder (which is also the batch's input)."""
    import warnings

    folder = tmp_path_factory.mktemp("hostile-bundles")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name", on purpose
        return {case.name: case.build(folder) for case in CASES}


def escaped_files(*near: Path) -> list[Path]:
    """Files named after ESCAPE anywhere a traversal could have put them."""
    places = {Path("/"), Path("/tmp"), ROOT, *near, *(p.parent for p in near),
              *(p.parent.parent for p in near)}
    return sorted(f for place in places for f in place.glob(f"*{ESCAPE}*"))


def assert_one_line_error(result: subprocess.CompletedProcess, bundle: Path) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("unusable bundle:") and bundle.name in lines[0]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_analyze_hostile_bundle(case: Case, built: dict[str, Path], tmp_path: Path):
    bundle = built[case.name]
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    env = cli_env(tmp_path)
    watched = (tmp_path, bundle.parent)
    before = tree(*watched)
    result = run_cli("analyze", str(bundle), "-o", str(out), "--json", str(out / "a.json"),
                     cwd=work, env=env)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == case.exit, result.stderr
    assert outside(tree(*watched) - before, out) == []
    assert escaped_files(tmp_path, bundle.parent) == []
    if case.exit == 3:
        assert_one_line_error(result, bundle)
        assert not out.exists() or not any(out.iterdir())
        return
    doc = json.loads((out / "a.json").read_text(encoding="utf-8"))
    jsonschema.validate(doc, SCHEMA)
    assert case.codes <= codes(doc), sorted(codes(doc))
    for d in doc["diagnostics"]:
        if d["code"] in case.codes:
            assert d["message"] and d["location"], d
    if case.check:
        case.check(doc)
    html = next(out.glob("*.html")).read_text(encoding="utf-8")
    assert doc["bundle"]["sha256"] in html
    assert len(html) < 3 * MiB  # a 20 MB line or a bomb does not flow into the report


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_inspect_hostile_bundle(case: Case, built: dict[str, Path], tmp_path: Path):
    bundle = built[case.name]
    work = tmp_path / "work"
    work.mkdir()
    env = cli_env(tmp_path)
    before = tree(tmp_path, bundle.parent)
    result = run_cli("inspect", str(bundle), "--json", "-", cwd=work, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == case.exit, result.stderr
    assert tree(tmp_path, bundle.parent) - before == set()
    if case.exit == 3:
        assert_one_line_error(result, bundle)
        assert result.stdout == ""
        return
    doc = json.loads(result.stdout)
    assert case.codes <= codes(doc), sorted(codes(doc))
    assert doc["members"], doc


def test_batch_over_every_hostile_bundle(built: dict[str, Path], tmp_path: Path):
    """One batch over all of them: the unusable ones are listed as failed, none stops the rest."""
    folder = next(iter(built.values())).parent
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    env = cli_env(tmp_path)
    before = tree(tmp_path, folder)
    result = run_cli("batch", str(folder), "-o", str(out), "--jobs", "1", cwd=work, env=env,
                     timeout=600)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert outside(tree(tmp_path, folder) - before, out) == []
    assert escaped_files(tmp_path, folder) == []

    usable = {c.name for c in CASES if c.exit == 0}
    cache = json.loads((out / ".cache.json").read_text(encoding="utf-8"))
    failed = {Path(p).name for p in cache["failures"]}
    assert failed == {built[c.name].name for c in CASES if c.exit == 3}
    assert all("\n" not in f["message"] for f in cache["failures"].values())
    docs = [json.loads(line) for line in (out / "analysis.jsonl").read_text().splitlines()]
    assert sorted(d["bundle"]["name"] for d in docs) == sorted(built[n].name for n in usable)
    assert len(list(out.glob("*.html"))) == len(usable) + 1  # + index.html
    for export in ("events", "vcenter_tasks", "cycles", "verdicts"):
        assert len(list((out / "dataset" / export).glob("*.parquet"))) == len(usable), export
    verdicts = pl.read_csv(out / "verdicts.csv")
    assert verdicts.height >= len(usable)


# ---------------------------------------------------------------------------------------------
# Decompression bombs: peak memory of the real CLI, measured in its own process


def peak_rss(bundle: Path, tmp: Path, limits: dict | None = None) -> tuple[int, dict]:
    """(peak RSS in bytes, analysis JSON) of `analyze` on the bundle."""
    tmp.mkdir(parents=True, exist_ok=True)
    out, peak = tmp / "out", tmp / "peak"
    env = cli_env(tmp, PEAK_RSS_FILE=str(peak), LIMITS=json.dumps(limits or {}))
    result = run_cli("analyze", str(bundle), "-o", str(out), "--json", str(out / "a.json"),
                     cwd=tmp, env=env, probe=True)
    assert result.returncode == 0, result.stderr
    return int(peak.read_text()), json.loads((out / "a.json").read_text())


@pytest.fixture(scope="module")
def baseline_rss(tmp_path_factory) -> int:
    """Peak RSS of analyzing the plain good log: interpreter, polars and the pipeline."""
    tmp = tmp_path_factory.mktemp("baseline")
    rss, _ = peak_rss(make_zip(tmp / "good.zip", [GOOD]), tmp / "run")
    return rss


def total_bomb(folder: Path) -> Path:
    """24 members of 48 MiB of zeros each (1.1 GiB), every one under the ratio floor."""
    size = 48 * MiB
    data, crc = zeros_deflated(size), zeros_crc(size)
    good = GOOD[1].encode()
    return raw_zip(folder / "total-bomb.zip", [
        (GOOD[0], zlib.compress(good)[2:-4], zlib.crc32(good), len(good)),
        *((f"Logs/zeros-{i}.log", data, crc, size) for i in range(24))])


BOMBS = {  # name -> (builder, limits, inflated size the bomb claims)
    "zip-ratio-bomb": (zip_ratio_bomb, None, 1024 * MiB),
    "gz-bomb-in-zip": (gz_bomb_in_zip, None, 1024 * MiB),
    "tgz-bomb": (tgz_bomb, None, 1024 * MiB),
    "overlap-bomb": (overlap_bomb, None, 200 * 48 * MiB),
    # The default total limit is 32 GiB: minutes of inflating. The same code path is run with
    # max_total_bytes scaled down to 512 MiB (of the 1.1 GiB this bundle holds).
    "total-bomb": (total_bomb, {"max_total_bytes": 512 * MiB}, 24 * 48 * MiB),
}
BOMB_GROWTH_LIMIT = 256 * MiB


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bomb_peak_memory_is_bounded(name: str, baseline_rss: int, tmp_path: Path):
    build, limits, claimed = BOMBS[name]
    bundle = build(tmp_path)
    assert bundle.stat().st_size < claimed / 100
    rss, doc = peak_rss(bundle, tmp_path / "run", limits)
    grown = rss - baseline_rss
    print(f"{name}: {bundle.stat().st_size / MiB:.1f} MiB bundle claiming {claimed / MiB:.0f} MiB; "
          f"peak RSS {rss / MiB:.0f} MiB, {grown / MiB:+.0f} MiB over the baseline "
          f"({baseline_rss / MiB:.0f} MiB)")
    assert grown < BOMB_GROWTH_LIMIT, (rss, baseline_rss)
    assert "decompression-limit" in codes(doc)
    has_verdict()(doc)  # the good log beside the bomb is still analyzed


# ---------------------------------------------------------------------------------------------
# Property tests: arbitrary bytes through decode + sniff + every parser; generated records land
# in the right columns (the parsers' own tests cover arbitrary *text* for each parser).

from analyzer import bundle as bundle_module, sources, tables  # noqa: E402
from analyzer.diagnostics import Diagnostics  # noqa: E402
from analyzer.parsers import vcenter_log  # noqa: E402
from analyzer.parsers.vcenter_log import METHOD_NAMES  # noqa: E402

REGISTRY = sources.registry()
# Byte soup that looks like the real inputs: fragments of every format, BOMs, NULs, CR, junk.
FRAGMENTS = st.sampled_from([
    b"2024-05-14T10:21:33.512Z Info [12] Gateway.Service.X - ", b"vm=APP01 ", b'message="',
    b"Replication cycle failed. ", b"errorId=1011 ", b"\n", b"\r\n", b"\x00", b"\xff\xfe",
    b"\xfe\xff", b"\xef\xbb\xbf", b"\x80\x81", b'"', b",", b"\t", PORTAL_HEADER.encode() + b"\n",
    TASK_HEADER.encode() + b"\n", b"2024-05-14T10:21:33.123Z info vpxd[7FE1] [Originator@6876 sub=vpxLro opID=a] ",
    b"[VpxLRO] -- BEGIN task-1 -- vm-1 -- vim.VirtualMachine.createSnapshot -- x", b"--> ",
    b'msg = "', b"Error ID\n", b"Error Message\n", b'{"value": [', b"}", b"]", b"9999-99-99T99:99:99Z ",
])
SOUP = st.lists(st.one_of(FRAGMENTS, st.binary(max_size=40)), max_size=40).map(b"".join)


def check_parsed(parsed: sources.Parsed) -> None:
    for name, frame in parsed.tables.items():
        assert frame.schema == pl.Schema(tables.SCHEMAS[name]), name
        if "line" in frame.columns:
            assert frame["line"].null_count() == 0 and (frame["line"] >= 1).all(), name
    assert parsed.records >= 0 and parsed.unparsed >= 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=3000), SOUP))
def test_arbitrary_bytes_never_raise_in_decode_sniff_or_any_parser(raw: bytes):
    diags = Diagnostics()
    text = bundle_module.decode(raw, "m.log", diags)
    assert "\x00" not in text and "\r" not in text
    chosen = sources.sniff(text[: sources.SNIFF_CHARS], "m.log", REGISTRY)
    for source in REGISTRY:  # every parser, not only the one the sniffers chose
        check_parsed(source.parse(text, "m.log", sources.ParseContext(appliance_tz="+09:00")))
    if chosen is not None:
        parsed = chosen.parse(text, "m.log", sources.ParseContext())
        if "vcenter_log" in parsed.tables:
            vcenter_log.build_tasks(parsed.tables["vcenter_log"], parsed.tables["vcenter_events"],
                                    Diagnostics())


NAME = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.",
               min_size=1, max_size=15)
# Free text as it occurs in messages: quotes, commas, semicolons, non-ASCII, inner newlines.
FREE = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"),
                                      blacklist_characters="\x85") | st.just("\n"),
               min_size=1, max_size=60).map(str.strip).filter(bool)
WHEN = st.datetimes(min_value=__import__("datetime").datetime(2000, 1, 1),
                    max_value=__import__("datetime").datetime(2090, 12, 31))


def iso(when) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(WHEN, NAME, st.integers(1, 999999), FREE), min_size=1, max_size=8),
       order=st.randoms(use_true_random=False), upper=st.booleans(),
       extra=st.lists(NAME, max_size=3, unique=True))
def test_generated_portal_csv_rows_land_in_their_columns(rows, order, upper, extra):
    columns = ["Time", "Machine", "Error ID", "Error message", "Severity", "Event"]
    columns += [f"x-{e}" for e in extra]
    order.shuffle(columns)
    header = [c.upper() if upper else c for c in columns]
    values = {"Severity": "Error", "Event": "Replication cycle failed"}
    data = [[{"Time": iso(t), "Machine": vm, "Error ID": str(code), "Error message": msg,
              **values}.get(c, "extra") for c in columns] for t, vm, code, msg in rows]
    text = csv_text(header, data)
    source = sources.sniff(text, "events.csv", REGISTRY)
    assert source is not None and source.form == "events_csv"
    parsed = source.parse(text, "events.csv", sources.ParseContext())
    frame = parsed.tables["portal_events"]
    assert frame.select("machine", "error_id", "error_message").rows() == \
        [(vm, str(code), msg) for _, vm, code, msg in rows]
    assert frame["ts"].dt.replace_time_zone(None).to_list() == [t for t, *_ in rows]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks=st.lists(st.tuples(st.integers(1, 10**8), st.integers(1, 10**6),
                                st.sampled_from(sorted(METHOD_NAMES)), st.booleans(),
                                FREE.filter(lambda s: '"' not in s and "\\" not in s and "\n" not in s)),
                      min_size=1, max_size=6, unique_by=lambda t: t[0]),
       when=WHEN)
def test_generated_vpxd_tasks_land_in_their_columns(tasks, when):
    head = (f"{iso(when)[:-4]}Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxLro "
            "opID=op-{n}] ")
    lines = []
    for n, (task, vm, method, failed, msg) in enumerate(tasks):
        lines.append(head.format(n=n) + f"[VpxLRO] -- BEGIN task-{task} -- vm-{vm} -- {method} -- x")
        if failed:
            lines += [head.format(n=n).replace(" info ", " error ")
                      + f"[VpxLRO] -- ERROR task-{task} -- vm-{vm} -- {method}: vim.fault.Timedout:",
                      "--> Result:", "--> (vim.fault.Timedout) {", f'-->    msg = "{msg}"', "--> }"]
        else:
            lines.append(head.format(n=n) + f"[VpxLRO] -- FINISH task-{task}")
    text = "\n".join(lines) + "\n"
    source = sources.sniff(text, "vpxd.log", REGISTRY)
    assert source is not None and source.form == "vpxd_log"
    parsed = source.parse(text, "vpxd.log", sources.ParseContext())
    built = vcenter_log.build_tasks(parsed.tables["vcenter_log"], parsed.tables["vcenter_events"],
                                   Diagnostics())
    got = {r["task_id"]: r for r in built.iter_rows(named=True)}
    assert sorted(got) == sorted(f"task-{t[0]}" for t in tasks)
    for task, vm, method, failed, msg in tasks:
        row = got[f"task-{task}"]
        assert (row["vm_id"], row["method"], row["outcome"]) == \
            (f"vm-{vm}", method, "failed" if failed else "succeeded")
        assert row["fault_message"] == (msg if failed else None)
        assert row["fault_type"] == ("vim.fault.Timedout" if failed else None)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(st.sampled_from(sorted(METHOD_NAMES)), NAME, FREE, NAME, WHEN),
                     min_size=1, max_size=8),
       order=st.randoms(use_true_random=False))
def test_generated_task_csv_rows_land_in_their_columns(rows, order):
    columns = ["Task Name", "Target", "Status", "Details", "Initiator", "Start Time"]
    order.shuffle(columns)
    data = [[{"Task Name": METHOD_NAMES[method], "Target": vm, "Status": "Failed", "Details": details,
              "Initiator": f"VSPHERE.LOCAL\\{who}", "Start Time": iso(when)}[c] for c in columns]
            for method, vm, details, who, when in rows]
    text = csv_text(columns, data)
    source = sources.sniff(text, "tasks.csv", REGISTRY)
    assert source is not None and source.form == "task_csv"
    frame = source.parse(text, "tasks.csv", sources.ParseContext()).tables["vcenter_tasks"]
    assert frame.select("method", "vm_name", "outcome", "fault_message", "initiator").rows() == \
        [(method, vm, "failed", details, f"VSPHERE.LOCAL\\{who}") for method, vm, details, who, _ in rows]
    assert frame["start"].dt.replace_time_zone(None).to_list() == [r[4] for r in rows]
