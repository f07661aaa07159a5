"""Bundle ingestion: every archive kind, nesting, hostile members, limits, decoding.

Every archive is built inside the test, in tmp_path.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from isal import isal_zlib

import analyzer.bundle as bundle_module
from analyzer.bundle import Limits, decode, file_sha256, open_bundle
from analyzer.diagnostics import Diagnostics


def unusable():
    from analyzer.bundle import UnusableBundle

    return UnusableBundle


# --- builders ---------------------------------------------------------------------------------


def log_text(tag: str, lines: int = 20) -> bytes:
    return "".join(f"2024-05-14T10:21:{i % 60:02d}.000Z Info [1] {tag} - line {i}\n"
                   for i in range(lines)).encode()


def make_zip(path: Path, entries: list[tuple[str, bytes]], **kw) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are wanted in one test
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, **kw) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


def zip_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def tar_bytes(entries: list[tuple[str, bytes] | tarfile.TarInfo], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tf.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def walk(path: Path, limits: Limits = Limits()) -> tuple[list, Diagnostics]:
    """The members and diagnostics of a walk. Each test walks twice, the second time with its
    members streamed (open_bundle's stream_over), which must give the same members and
    diagnostics, or raise the same error."""
    diags = Diagnostics()
    try:
        members = list(open_bundle(path, diags, limits))
    except Exception as exc:
        with pytest.raises(type(exc)) as streamed_error:
            streamed_walk(path, limits)
        assert str(streamed_error.value) == str(exc)
        raise
    streamed, streamed_diags = streamed_walk(path, limits)
    assert [(m.path, m.container, len(m.data)) for m in streamed] == [
        (m.path, m.container, len(m.data)) for m in members]
    assert streamed == members
    assert [d.as_dict() for d in streamed_diags.items] == [d.as_dict() for d in diags.items]
    return members, diags


def streamed_walk(path: Path, limits: Limits) -> tuple[list, Diagnostics]:
    """A walk with members of more than 64 bytes streamed, each read to its end as it comes."""
    diags = Diagnostics()
    members = []
    for member in open_bundle(path, diags, limits, stream_over=64):
        try:
            members.append(bundle_module.whole(member))
        except bundle_module.MemberDropped:
            pass
    return members, diags


def codes(diags: Diagnostics) -> list[str]:
    return [d.code for d in diags.items]


def by_code(diags: Diagnostics, code: str) -> list:
    return [d for d in diags.items if d.code == code]


# --- archive kinds ----------------------------------------------------------------------------


def test_zip_members_in_archive_order(tmp_path):
    entries = [("logs/b.log", log_text("b")), ("logs/a.log", log_text("a")), ("c.txt", b"c\n")]
    members, diags = walk(make_zip(tmp_path / "case.zip", entries))
    assert [(m.path, m.data, m.container) for m in members] == [(n, d, None) for n, d in entries]
    assert diags.items == []


def test_zip64_forced(tmp_path):
    path = tmp_path / "case64.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for name in ("gw.log", "vpxd.log"):
            with zf.open(name, "w", force_zip64=True) as f:
                f.write(log_text(name))
    with zipfile.ZipFile(path) as zf:  # the fixture really is zip64
        assert all(info.extract_version >= zipfile.ZIP64_VERSION for info in zf.infolist())
    members, diags = walk(path)
    assert [(m.path, m.data) for m in members] == [("gw.log", log_text("gw.log")),
                                                  ("vpxd.log", log_text("vpxd.log"))]
    assert diags.items == []


def test_plain_tar_and_tgz(tmp_path):
    entries = [("var/log/a.log", log_text("a")), ("var/log/b.log.1", log_text("b"))]
    for name, gz in (("case.tar", False), ("case.tgz", True)):
        members, diags = walk(write(tmp_path / name, tar_bytes(entries, gz=gz)))
        assert [(m.path, m.data, m.container) for m in members] == [
            (n, d, None) for n, d in entries]
        assert diags.items == []


def test_single_gz_bundle_keeps_its_name(tmp_path):
    path = write(tmp_path / "vpxd-12.log.gz", gzip.compress(log_text("v")))
    members, diags = walk(path)
    assert [(m.path, m.data) for m in members] == [("vpxd-12.log.gz", log_text("v"))]
    assert diags.items == []


def test_kind_comes_from_magic_bytes_not_name(tmp_path):
    zip_named_tgz = make_zip(tmp_path / "bundle.tar.gz", [("a.log", b"zip content\n")])
    tar_named_zip = write(tmp_path / "bundle.zip", tar_bytes([("b.log", b"tar content\n")]))
    assert [m.data for m in walk(zip_named_tgz)[0]] == [b"zip content\n"]
    assert [m.data for m in walk(tar_named_zip)[0]] == [b"tar content\n"]


def test_directory_bundle_sorted_with_nested_archive(tmp_path):
    root = tmp_path / "bundle"
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    write(root / "z.log", b"z\n")
    write(root / "b" / "x.log", b"x\n")
    write(root / "a" / "y.log.1", b"y\n")
    write(root / "a" / "vc.tgz", tar_bytes([("vpxd.log", b"v\n")], gz=True))
    members, diags = walk(root)
    assert [(m.path, m.data, m.container) for m in members] == [
        ("a/vc.tgz!/vpxd.log", b"v\n", "a/vc.tgz"),
        ("a/y.log.1", b"y\n", None),
        ("b/x.log", b"x\n", None),
        ("z.log", b"z\n", None),
    ]
    assert diags.items == []


def test_gz_rotations_inflated_including_multi_member(tmp_path):
    multi = gzip.compress(b"first part\n") + gzip.compress(b"second part\n")
    entries = [("vpxd-12.log.gz", gzip.compress(log_text("v"))), ("hostd.0.gz", multi),
               ("vpxd-13.log.1", b"plain rotation\n")]
    members, diags = walk(write(tmp_path / "case.tar", tar_bytes(entries)))
    assert [(m.path, m.data) for m in members] == [
        ("vpxd-12.log.gz", log_text("v")),
        ("hostd.0.gz", b"first part\nsecond part\n"),
        ("vpxd-13.log.1", b"plain rotation\n"),
    ]
    assert diags.items == []


def test_nesting_zip_in_tgz_in_zip_paths(tmp_path):
    inner_zip = zip_bytes([("var/log/vmware/vpxd/vpxd-3.log.gz", gzip.compress(b"vpxd\n"))])
    tgz = tar_bytes([("inner.zip", inner_zip), ("vpxd.log", b"top of tgz\n")], gz=True)
    path = make_zip(tmp_path / "case.zip", [("vc-vcsa01.tgz", tgz), ("gw.log", b"gw\n")])
    members, diags = walk(path)
    assert [(m.path, m.data, m.container) for m in members] == [
        ("vc-vcsa01.tgz!/inner.zip!/var/log/vmware/vpxd/vpxd-3.log.gz", b"vpxd\n",
         "vc-vcsa01.tgz!/inner.zip"),
        ("vc-vcsa01.tgz!/vpxd.log", b"top of tgz\n", "vc-vcsa01.tgz"),
        ("gw.log", b"gw\n", None),
    ]
    assert diags.items == []


def test_gzip_wrapped_tar_member_is_walked_whatever_its_name(tmp_path):
    tgz = tar_bytes([("in.log", b"inside\n")], gz=True)
    members, _ = walk(make_zip(tmp_path / "case.zip", [("renamed.bin", tgz)]))
    assert [(m.path, m.container) for m in members] == [("renamed.bin!/in.log", "renamed.bin")]


def test_nesting_deeper_than_limit_is_skipped(tmp_path):
    level2 = zip_bytes([("deep.log", b"deep\n")])
    level1 = tar_bytes([("level2.zip", level2), ("ok.log", b"ok\n")], gz=True)
    path = make_zip(tmp_path / "case.zip", [("level1.tgz", level1)])
    members, diags = walk(path, Limits(max_depth=1))
    assert [m.path for m in members] == ["level1.tgz!/ok.log"]
    [deep] = by_code(diags, "nesting-too-deep")
    assert deep.location == "level1.tgz!/level2.zip"
    assert [m.path for m in walk(path, Limits(max_depth=2))[0]] == [
        "level1.tgz!/level2.zip!/deep.log", "level1.tgz!/ok.log"]


# --- hostile members --------------------------------------------------------------------------


def test_zip_unsafe_names_refused(tmp_path):
    entries = [("../evil.log", b"x"), ("/etc/passwd", b"x"), ("C:\\Windows\\x.log", b"x"),
               ("\\\\server\\share\\x.log", b"x"), ("a/../../b.log", b"x"), ("good.log", b"ok\n"),
               ("./dot/ok.log", b"dot\n")]
    members, diags = walk(make_zip(tmp_path / "case.zip", entries))
    assert [(m.path, m.data) for m in members] == [("good.log", b"ok\n"), ("dot/ok.log", b"dot\n")]
    assert codes(diags) == ["unsafe-member"] * 5


def test_zip_symlink_member_refused(tmp_path):
    path = tmp_path / "case.zip"
    with zipfile.ZipFile(path, "w") as zf:
        link = zipfile.ZipInfo("link.log")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("real.log", "real\n")
    members, diags = walk(path)
    assert [m.path for m in members] == ["real.log"]
    [unsafe] = by_code(diags, "unsafe-member")
    assert unsafe.location == "link.log" and "symlink" in unsafe.message


def test_tar_links_devices_and_climbing_names_refused(tmp_path):
    def special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        return info

    entries = [special("sym.log", tarfile.SYMTYPE, "/etc/passwd"),
               special("hard.log", tarfile.LNKTYPE, "good.log"),
               special("dev/sda", tarfile.BLKTYPE), special("dev/tty", tarfile.CHRTYPE),
               special("pipe", tarfile.FIFOTYPE), ("../../escape.log", b"x"),
               ("/abs.log", b"x"), ("good.log", b"good\n")]
    members, diags = walk(write(tmp_path / "case.tar", tar_bytes(entries)))
    assert [m.path for m in members] == ["good.log"]
    unsafe = by_code(diags, "unsafe-member")
    assert [d.location for d in unsafe] == ["sym.log", "hard.log", "dev/sda", "dev/tty", "pipe",
                                            "../../escape.log", "/abs.log"]


def test_directory_symlinks_and_fifos_not_followed(tmp_path):
    outside = write(tmp_path / "secret.txt", b"secret\n")
    root = tmp_path / "bundle"
    root.mkdir()
    write(root / "gw.log", b"gw\n")
    (root / "link.log").symlink_to(outside)
    (root / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(root / "pipe")  # opening it for reading would block the walk
    members, diags = walk(root)
    assert [(m.path, m.data) for m in members] == [("gw.log", b"gw\n")]
    assert sorted(d.location for d in by_code(diags, "unsafe-member")) == [
        "link.log", "linkdir", "pipe"]


def test_encrypted_zip_member_skipped(tmp_path):
    raw = bytearray(zip_bytes([("secret.log", b"secret\n"), ("open.log", b"open\n")]))
    # set the "encrypted" flag bit of the first member, in its local and central headers
    local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
    raw[local + 6] |= 0x01
    raw[central + 8] |= 0x01
    members, diags = walk(write(tmp_path / "case.zip", bytes(raw)))
    assert [m.path for m in members] == ["open.log"]
    [enc] = by_code(diags, "encrypted-member")
    assert enc.location == "secret.log"


def test_duplicate_names_get_a_suffix(tmp_path):
    path = make_zip(tmp_path / "case.zip", [("a.log", b"one\n"), ("a.log", b"two\n"),
                                             ("a.log", b"three\n")])
    members, diags = walk(path)
    assert [(m.path, m.data) for m in members] == [("a.log", b"one\n"), ("a.log (2)", b"two\n"),
                                                  ("a.log (3)", b"three\n")]
    assert [d.location for d in by_code(diags, "duplicate-member")] == ["a.log (2)", "a.log (3)"]


# --- decompression bombs and limits -----------------------------------------------------------


def write_zeros_gz(path: Path, size: int) -> Path:
    deflate = isal_zlib.compressobj(1, wbits=31)
    block = bytes(16 * 2**20)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(deflate.compress(block))
        f.write(deflate.flush())
    return path


def test_zip_bomb_by_ratio_refused_without_inflating(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("zeros.log", "w") as f:
            block = bytes(8 * 2**20)
            for _ in range(25):  # 200 MiB of zeros, about 200 KiB compressed
                f.write(block)
        zf.writestr("ok.log", "ok\n")
    assert path.stat().st_size < 1 * 2**20
    members, diags = walk(path)
    assert [m.path for m in members] == ["ok.log"]
    [bomb] = by_code(diags, "decompression-limit")
    assert bomb.location == "zeros.log" and "ratio" in bomb.message


def test_gz_member_ratio_enforced_while_inflating(tmp_path):
    gz = write_zeros_gz(tmp_path / "zeros.gz", 96 * 2**20).read_bytes()
    path = write(tmp_path / "case.tar", tar_bytes([("zeros.log.gz", gz), ("ok.log", b"ok\n")]))
    members, diags = walk(path, Limits(max_ratio=50))
    assert [m.path for m in members] == ["ok.log"]
    [bomb] = by_code(diags, "decompression-limit")
    assert bomb.location == "zeros.log.gz" and "50:1" in bomb.message
    # zeros deflate about 1026:1; a higher limit lets the member through whole
    assert [len(m.data) for m in walk(path, Limits(max_ratio=1100))[0]] == [96 * 2**20, 3]


def test_member_size_limit_declared_and_streamed(tmp_path):
    big = b"x" * 5000
    entries = [("declared-big.log", big), ("inflates-big.log.gz", gzip.compress(big)),
               ("small.log", b"small\n")]
    members, diags = walk(write(tmp_path / "case.tar", tar_bytes(entries)),
                          Limits(max_member_bytes=4000))
    assert [m.path for m in members] == ["small.log"]
    assert [d.location for d in by_code(diags, "decompression-limit")] == [
        "declared-big.log", "inflates-big.log.gz"]


def test_total_limit_stops_the_whole_walk(tmp_path):
    entries = [(f"m{i}.log", bytes([65 + i]) * 4000) for i in range(5)]
    members, diags = walk(make_zip(tmp_path / "case.zip", entries),
                          Limits(max_total_bytes=10_000))
    assert [m.path for m in members] == ["m0.log", "m1.log"]
    [stop] = by_code(diags, "decompression-limit")
    assert stop.severity == "error" and stop.location == "m2.log"


def test_tgz_stream_ratio_limit_skips_rest_of_archive(tmp_path):
    tgz = tmp_path / "bomb.tgz"
    zeros = 96 * 2**20
    with tarfile.open(tgz, "w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo("first.log")
        info.size = 6
        tf.addfile(info, io.BytesIO(b"first\n"))
        info = tarfile.TarInfo("zeros.bin")
        info.size = zeros
        tf.addfile(info, io.BytesIO(bytes(zeros)))
        info = tarfile.TarInfo("after.log")
        info.size = 6
        tf.addfile(info, io.BytesIO(b"after\n"))
    members, diags = walk(tgz, Limits(max_ratio=50))
    assert [m.path for m in members] == ["first.log"]
    [bomb] = by_code(diags, "decompression-limit")
    assert bomb.location == "bomb.tgz" and "50:1" in bomb.message


def test_too_many_members_stops(tmp_path):
    entries = [(f"m{i}.log", b"x\n") for i in range(6)]
    members, diags = walk(write(tmp_path / "case.tgz", tar_bytes(entries, gz=True)),
                          Limits(max_members=3))
    assert [m.path for m in members] == ["m0.log", "m1.log", "m2.log"]
    assert codes(diags) == ["too-many-members"]
    members, diags = walk(make_zip(tmp_path / "case.zip", [("first.log", b"1\n"),
                                                           ("inner.zip", zip_bytes(entries))]),
                          Limits(max_members=4))
    assert [m.path for m in members] == ["first.log"]  # the inner zip's count is checked first
    assert codes(diags) == ["too-many-members"]


def test_bomb_peak_memory_stays_bounded(tmp_path):
    """A 1 GiB-of-zeros rotation with members limited to 256 MiB: memory stops near the limit.

    The ratio limit is lifted so that the member size limit is the one that trips (zeros deflate
    about 1026:1, which the default ratio limit would catch at 64 MiB already)."""
    gz = write_zeros_gz(tmp_path / "zeros.gz", 2**30)
    path = tmp_path / "bomb.tar"
    with tarfile.open(path, "w") as tf:
        tf.add(gz, arcname="vpxd-1.log.gz")
        info = tarfile.TarInfo("ok.log")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"ok\n"))
    script = """
import json, resource, sys
from pathlib import Path
from analyzer.bundle import Limits, open_bundle
from analyzer.diagnostics import Diagnostics
diags = Diagnostics()
before = next(int(line.split()[1]) for line in open("/proc/self/status")
              if line.startswith("VmRSS:"))
limits = Limits(max_member_bytes=256 * 2**20, max_ratio=1e6)
paths = [m.path for m in open_bundle(Path(sys.argv[1]), diags, limits)]
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would report the (large)
# pytest process this one was forked from
peak = next(int(line.split()[1]) for line in open("/proc/self/status")
            if line.startswith("VmHWM:"))
print(json.dumps({"paths": paths, "diags": [(d.code, d.message) for d in diags.items],
                  "before_kib": before, "peak_kib": peak}))
"""
    root = Path(bundle_module.__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, check=True)
    result = json.loads(done.stdout)
    assert result["paths"] == ["ok.log"]
    [(code, message)] = result["diags"]
    assert code == "decompression-limit" and "max_member_bytes" in message
    print(f"peak RSS {result['peak_kib'] / 1024:.0f} MiB, "
          f"grown {(result['peak_kib'] - result['before_kib']) / 1024:.0f} MiB")
    grown_mib = (result["peak_kib"] - result["before_kib"]) / 1024
    assert grown_mib < 256 + 48, grown_mib
    assert result["peak_kib"] / 1024 < 256 + 150


# --- damaged archives -------------------------------------------------------------------------


def noisy_text(seed: int, size: int) -> bytes:
    """Text that does not compress much, so that cutting an archive lands inside its data."""
    return hashlib.shake_256(str(seed).encode()).hexdigest(size // 2).encode()


def test_truncated_tgz_yields_members_before_the_cut(tmp_path):
    entries = [(f"m{i}.log", noisy_text(i, 40_000)) for i in range(4)]
    full = tar_bytes(entries, gz=True)
    path = write(tmp_path / "cut.tgz", full[: len(full) * 6 // 10])
    members, diags = walk(path)
    complete = [m for m in members if not by_code(diags, "member-truncated")
                or m.path != members[-1].path]
    assert [m.path for m in members][:2] == ["m0.log", "m1.log"]
    for m in complete:
        assert m.data == dict(entries)[m.path]
    assert len(by_code(diags, "archive-truncated")) == 1
    for cut in by_code(diags, "member-truncated"):  # a cut member keeps a true prefix
        [m] = [m for m in members if m.path == cut.location]
        assert dict(entries)[m.path].startswith(m.data)


def test_truncated_plain_tar_reports_the_cut(tmp_path):
    full = tar_bytes([("a.log", noisy_text(1, 3000)), ("b.log", noisy_text(2, 3000))])
    members, diags = walk(write(tmp_path / "cut.tar", full[:2048]))  # a's header + 1.5 KiB
    assert [m.path for m in members] == ["a.log"]
    assert members[0].data == noisy_text(1, 3000)[:1536]
    assert set(codes(diags)) == {"member-truncated", "archive-truncated"}


def test_truncated_zip_salvaged_from_local_headers(tmp_path):
    entries = [(f"m{i}.log", noisy_text(i, 20_000)) for i in range(4)]
    full = zip_bytes(entries)
    path = write(tmp_path / "cut.zip", full[: len(full) * 6 // 10])
    members, diags = walk(path)
    assert [m.path for m in members][:2] == ["m0.log", "m1.log"]
    assert members[0].data == entries[0][1] and members[1].data == entries[1][1]
    assert len(by_code(diags, "archive-damaged")) == 1


def test_zip_with_broken_central_directory_salvaged(tmp_path):
    entries = [("a.log", log_text("a")), ("b.log", log_text("b")), ("c.log", b"")]
    raw = bytearray(zip_bytes(entries))
    cd = raw.find(b"PK\x01\x02")
    raw[cd:cd + 4] = b"XXXX"
    members, diags = walk(write(tmp_path / "broken.zip", bytes(raw)))
    assert [(m.path, m.data) for m in members] == entries
    assert codes(diags) == ["archive-damaged"]


def test_streamed_zip64_without_directory_salvaged(tmp_path):
    """Zips written to a pipe put sizes in data descriptors after the data (flag bit 3)."""

    class Pipe(io.RawIOBase):
        def __init__(self):
            self.buf = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.buf += b
            return len(b)

    pipe = Pipe()
    entries = [(f"m{i}.log", noisy_text(i, 20_000)) for i in range(3)] + [("s.log", b"s\n")]
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            with zf.open(name, "w", force_zip64=True) as f:
                f.write(data)
    raw = bytes(pipe.buf)
    members, diags = walk(write(tmp_path / "piped.zip", raw[:raw.find(b"PK\x01\x02")]))
    assert [(m.path, m.data) for m in members] == entries
    assert codes(diags) == ["archive-damaged"]


def test_corrupt_gz_member_yields_prefix_or_is_skipped(tmp_path):
    text = noisy_text(7, 400_000)
    gz = bytearray(gzip.compress(text))
    gz[len(gz) // 2] ^= 0xFF
    entries = [("cut.log.gz", gzip.compress(text)[:-5000]), ("bad.log.gz", bytes(gz)),
               ("garbage.gz", b"\x1f\x8b" + b"\xff" * 50), ("ok.log", b"ok\n")]
    members, diags = walk(write(tmp_path / "case.tar", tar_bytes(entries)))
    got = {m.path: m.data for m in members}
    assert set(got) >= {"cut.log.gz", "ok.log"} and "garbage.gz" not in got
    assert 0 < len(got["cut.log.gz"]) < len(text) and text.startswith(got["cut.log.gz"])
    if "bad.log.gz" in got:
        assert text.startswith(got["bad.log.gz"][:1000])
    truncated = {d.location for d in by_code(diags, "member-truncated")}
    assert "cut.log.gz" in truncated
    assert [d.location for d in by_code(diags, "member-corrupt")] == ["garbage.gz"]


def test_unreadable_nested_archive_is_one_diagnostic(tmp_path):
    path = make_zip(tmp_path / "case.zip", [("inner.zip", b"PK\x03\x04" + b"\x00" * 10),
                                             ("ok.log", b"ok\n")])
    members, diags = walk(path)
    assert [m.path for m in members] == ["ok.log"]
    assert [d.location for d in diags.items] == ["inner.zip"]


def _fuzz_seeds() -> dict[str, bytes]:
    inner = zip_bytes([("a.log", log_text("a")), ("b.log.gz", gzip.compress(log_text("b")))])
    members = [("x.log", log_text("x")), ("in.zip", inner), ("r.gz", gzip.compress(b"r\n" * 99))]
    return {"zip": zip_bytes(members), "tar": tar_bytes(members),
            "tgz": tar_bytes(members, gz=True), "gz": gzip.compress(log_text("g"))}


FUZZ_SEEDS = _fuzz_seeds()


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(sorted(FUZZ_SEEDS)),
       flips=st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), max_size=8),
       keep=st.integers(1, 2**20))
def test_damaged_archives_never_crash(tmp_path_factory, kind, flips, keep):
    """Flipped bytes and cut files give diagnostics or UnusableBundle, never another error."""
    raw = bytearray(FUZZ_SEEDS[kind])
    for at, value in flips:
        raw[at % len(raw)] = value
    path = write(tmp_path_factory.getbasetemp() / "fuzzed.bin", bytes(raw[:keep]))
    try:
        members, _ = walk(path, Limits(max_total_bytes=2**26))
    except unusable():
        return
    assert all(isinstance(m.data, bytes) for m in members)


def test_zip_entry_with_empty_name_is_ignored(tmp_path):
    path = tmp_path / "case.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo(""), b"no name\n")
        zf.writestr("ok.log", b"ok\n")
    members, diags = walk(path)
    assert [m.path for m in members] == ["ok.log"]
    assert diags.items == []


# --- unusable bundles -------------------------------------------------------------------------


@pytest.mark.parametrize("content, words", [
    (hashlib.shake_256(b"junk").digest(4096).replace(b"PK", b"pk").replace(b"\x1f\x8b", b"__"),
     "not a zip"),
    (b"", "empty"),
    (b"7z\xbc\xaf\x27\x1c" + bytes(100), "7-Zip"),
])
def test_unusable_files_raise_at_once(tmp_path, content, words):
    path = write(tmp_path / "case.zip", content)
    with pytest.raises(unusable()) as err:
        open_bundle(path, Diagnostics())
    message = str(err.value)
    assert "\n" not in message and str(path) in message and words in message and " — " in message


def test_missing_path_raises(tmp_path):
    with pytest.raises(unusable(), match="no such file"):
        open_bundle(tmp_path / "nope.zip", Diagnostics())


def test_empty_zip_and_empty_directory_are_unusable(tmp_path):
    """Decision: a bundle with no member to read is unusable, not an empty analysis."""
    make_zip(tmp_path / "empty.zip", [])
    (tmp_path / "emptydir").mkdir()
    for path in (tmp_path / "empty.zip", tmp_path / "emptydir"):
        with pytest.raises(unusable(), match="contains no files"):
            walk(path)


def test_archive_with_only_refused_members_is_unusable(tmp_path):
    diags = Diagnostics()
    path = make_zip(tmp_path / "case.zip", [("../a.log", b"x"), ("/b.log", b"x")])
    with pytest.raises(unusable(), match="none of its 2 members"):
        list(open_bundle(path, diags))
    assert codes(diags) == ["unsafe-member", "unsafe-member"]


def test_zip_damaged_beyond_salvage_is_unusable(tmp_path):
    junk = b"PK\x05\x06" + bytes(range(200))  # an end record, and no local header anywhere
    with pytest.raises(unusable(), match="damaged zip"):
        walk(write(tmp_path / "bad.zip", junk))


# --- nothing touches the disk -----------------------------------------------------------------

_WRITES: list | None = None


def _audit(event: str, args: tuple) -> None:
    if _WRITES is None:
        return
    if event == "open":
        _path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing:
            _WRITES.append((event, args))
    elif event in ("os.mkdir", "os.rename", "os.symlink", "os.link", "shutil.copyfile",
                   "tempfile.mkstemp", "tempfile.mkdtemp", "os.truncate"):
        _WRITES.append((event, args))


sys.addaudithook(_audit)


def test_walking_writes_nothing_anywhere(tmp_path, monkeypatch):
    global _WRITES
    cut = tar_bytes([("a.log", noisy_text(1, 50_000)), ("b.log", b"b\n")], gz=True)
    nested = make_zip(tmp_path / "nested.zip", [
        ("vc.tgz", tar_bytes([("x.log.gz", gzip.compress(b"x\n")), ("../up", b"u")], gz=True)),
        ("cut.tgz", cut[: len(cut) // 2]), ("plain.log", b"p\n")])
    root = tmp_path / "dir"
    root.mkdir()
    write(root / "a.log", b"a\n")
    bundles = [nested, write(tmp_path / "t.tar", tar_bytes([("t.log", b"t\n")])),
               write(tmp_path / "r.log.gz", gzip.compress(b"r\n")), root,
               write(tmp_path / "cut.zip", zip_bytes([("c.log", noisy_text(3, 9000))])[:3000])]
    workdir, tmpdir = tmp_path / "cwd", tmp_path / "tmp"
    workdir.mkdir()
    tmpdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    snapshot = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    _WRITES = []
    try:
        seen = [[m.path for m in walk(b)[0]] for b in bundles]
        writes = list(_WRITES)
    finally:
        _WRITES = None
    assert all(seen) and "vc.tgz!/x.log.gz" in seen[0]
    assert writes == []
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == snapshot
    assert list(workdir.iterdir()) == [] and list(tmpdir.iterdir()) == []


def test_walk_is_deterministic(tmp_path):
    path = make_zip(tmp_path / "case.zip", [
        ("vc.tgz", tar_bytes([("b.log", b"b"), ("a.log", b"a")], gz=True)), ("z.log", b"z")])
    first = [(m.path, m.data) for m in walk(path)[0]]
    assert first == [(m.path, m.data) for m in walk(path)[0]]
    assert [p for p, _ in first] == ["vc.tgz!/b.log", "vc.tgz!/a.log", "z.log"]


# --- decode -----------------------------------------------------------------------------------

SAMPLE = "2024-05-14 10:21:33 Info 서버 APP01 — café\nsecond line\n"


@pytest.mark.parametrize("raw", [
    SAMPLE.encode("utf-8"),
    b"\xef\xbb\xbf" + SAMPLE.encode("utf-8"),
    b"\xff\xfe" + SAMPLE.encode("utf-16-le"),
    b"\xfe\xff" + SAMPLE.encode("utf-16-be"),
    SAMPLE.encode("utf-16-le"),  # no BOM: found by the NUL pattern
    SAMPLE.encode("utf-16-be"),
])
def test_decode_encodings(raw):
    diags = Diagnostics()
    assert decode(raw, "m.log", diags) == SAMPLE
    assert diags.items == []


def test_decode_line_endings():
    diags = Diagnostics()
    assert decode(b"a\r\nb\rc\n\r\nd", "m", diags) == "a\nb\nc\n\nd"
    assert decode("x\r\ny\r\n".encode("utf-16-le"), "m", diags) == "x\ny\n"
    assert diags.items == []


def test_decode_cp1252_fallback_maps_undefined_bytes():
    diags = Diagnostics()
    raw = "caf\xe9 \u20ac ".encode("cp1252") + bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D]) + b"\r\n"
    assert decode(raw, "old.log", diags) == "café € \x81\x8d\x8f\x90\x9d\n"
    [d] = diags.items
    assert (d.code, d.location) == ("decoded-as-cp1252", "old.log")


def test_decode_removes_nuls_with_diagnostic():
    diags = Diagnostics()
    assert decode(b"ab\x00\x00c\n" + b"\x00" * 100, "pre.log", diags) == "abc\n"
    [d] = diags.items
    assert d.code == "nul-bytes" and "102" in d.message


def test_decode_utf8_cut_mid_character_stays_utf8():
    diags = Diagnostics()
    raw = "서버 log\n서".encode("utf-8")[:-1]
    assert decode(raw, "cut.log", diags) == "서버 log\n\ufffd"
    assert codes(diags) == ["decode-errors"]


def test_decode_large_member_is_not_copied_needlessly():
    raw = b"x" * (50 * 2**20)
    text = decode(raw, "big.log", Diagnostics())
    assert len(text) == len(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_decode_never_raises(raw):
    text = decode(raw, "fuzz", Diagnostics())
    assert "\r" not in text and "\x00" not in text


# --- hashing ----------------------------------------------------------------------------------


def test_file_sha256_of_file_and_directory(tmp_path):
    path = write(tmp_path / "case.zip", b"some bytes")
    assert file_sha256(path) == hashlib.sha256(b"some bytes").hexdigest()
    root = tmp_path / "d"
    (root / "sub").mkdir(parents=True)
    write(root / "a.log", b"a")
    write(root / "sub" / "b.log", b"b")
    first = file_sha256(root)
    (root / "link").symlink_to(root / "a.log")  # links are not followed, nor hashed
    assert file_sha256(root) == first
    write(root / "sub" / "b.log", b"B")
    changed = file_sha256(root)
    assert changed != first
    (root / "sub" / "b.log").rename(root / "sub" / "c.log")
    assert file_sha256(root) != changed


def test_salvage_can_be_interrupted_cleanly(tmp_path):
    entries = [(f"m{i}.log", noisy_text(i, 20_000)) for i in range(4)]
    full = zip_bytes(entries)
    path = write(tmp_path / "cut.zip", full[: len(full) * 6 // 10])
    members, diags = walk(path, Limits(max_total_bytes=30_000))  # stops inside the salvage
    assert [m.path for m in members] == ["m0.log"]
    assert by_code(diags, "decompression-limit")[0].severity == "error"
    walker = open_bundle(path, Diagnostics())
    assert next(walker).path == "m0.log"
    walker.close()  # a consumer that stops early releases the archive without error


def test_nested_tar_and_tgz_are_walked_as_read_not_gathered(tmp_path, monkeypatch):
    inner = tar_bytes([("vpxd.log", b"v\n" * 1000), ("vpxd-1.log", b"w\n")], gz=True)
    gathered = []
    collect = bundle_module._Walker._collect
    monkeypatch.setattr(bundle_module._Walker, "_collect", staticmethod(
        lambda *args: (lambda out: (gathered.append(len(out[0])), out)[1])(collect(*args))))
    diags = Diagnostics()
    members = list(open_bundle(make_zip(tmp_path / "case.zip", [("vc.tgz", inner),
                                                                ("gw.log", b"gw\n")]), diags))
    assert [m.path for m in members] == ["vc.tgz!/vpxd.log", "vc.tgz!/vpxd-1.log", "gw.log"]
    assert len(inner) not in gathered and sorted(gathered) == [2, 3, 2000]  # the members alone
    assert diags.items == []


def test_outer_tar_stays_in_step_after_a_nested_tar(tmp_path):
    """The walk of a tar inside a tar stops at the inner end-of-archive blocks and leaves the rest
    of the member unread; the outer walk must still find the next header."""
    inner = tar_bytes([("in.log", b"inside\n")]) + bytes(20 * 1024)  # trailing zero records
    outer = tar_bytes([("inner.tar", inner), ("after.log", b"after\n")], gz=True)
    members, diags = walk(write(tmp_path / "case.tgz", outer))
    assert [(m.path, m.data) for m in members] == [("inner.tar!/in.log", b"inside\n"),
                                                   ("after.log", b"after\n")]
    assert diags.items == []


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.sampled_from([b"A", b"\xc3", b"\xa9", b"\xe2\x82\xac", b"\xf0", b"\x9f",
                                      b"\x98\x80", b"\xff", b"\xed\xa0\x80", "서".encode()]),
                     max_size=60).map(b"".join),
       window=st.integers(1, 9))
def test_utf8_is_validated_window_by_window_as_a_whole_decode_would(data, window):
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bundle_module, "UTF8_WINDOW", window)
        assert bundle_module._valid_utf8(data) is valid


@pytest.mark.parametrize("name, stem", [
    ("case.zip", "case"), ("case.TAR.GZ", "case"), ("vc-vcsa01.tgz", "vc-vcsa01"), ("a.tar", "a"),
    ("vpxd-3.log.gz", "vpxd-3.log"), ("notes.txt", "notes.txt"), (".zip", ".zip"), ("x.tar.gz.zip", "x.tar.gz"),
])
def test_archive_stem_drops_one_archive_suffix(name, stem):
    assert bundle_module.archive_stem(name) == stem
