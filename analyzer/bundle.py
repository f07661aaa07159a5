"""Open a support bundle safely and walk its members, in memory only.

A bundle is a .zip (zip64 too), .tar, .tar.gz/.tgz, a single .gz or a directory; the kind is taken
from magic bytes, never the name. Archives inside it (zip, tar, tgz) are walked recursively up to
`Limits.max_depth`; a .gz member that is not a tar (a log rotation such as `vpxd-12.log.gz`) is
inflated and keeps its .gz name. Nested paths are joined with "!/":

    vc-vcsa01.tgz!/var/log/vmware/vpxd/vpxd-3.log.gz

Nothing is ever extracted to disk. Only the current member (plus the bytes of the nested archive
being walked) is held in memory, and every inflating loop counts its output chunk by chunk, so a
decompression bomb stops at the limit instead of filling memory. Asked to (`stream_over`), the
walk yields a large member streamed: its first part, then the rest as the caller reads it.

Choices worth knowing:
- A member whose data breaks off (truncated or corrupt gzip/zip/tar data) is yielded with what was
  read before the damage and a `member-truncated` diagnostic; if nothing was read it is skipped
  with `member-corrupt`. A log cut short is still evidence.
- A bundle that yields no member at all (empty zip, empty directory, everything refused or
  unreadable) raises `UnusableBundle`: there is nothing to analyze.
- Directory bundles: symlinks, devices and fifos are refused, never followed or opened.
- Depth: the bundle itself is depth 0, an archive inside it depth 1, and so on to max_depth.
- Diagnostic codes: unsafe-member, encrypted-member, unsupported-member, decompression-limit,
  too-many-members, nesting-too-deep, archive-truncated, archive-damaged, member-corrupt,
  member-truncated, member-unreadable, duplicate-member; decode adds decoded-as-cp1252,
  decode-errors, nul-bytes.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import mmap
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from isal import igzip_lib, isal_zlib

from analyzer.diagnostics import Diagnostics

MiB = 2**20
CHUNK = 1 * MiB  # output chunk of every inflating loop
IN_CHUNK = 64 * 1024  # compressed input per step; small, so the ratio estimate stays close
RATIO_FLOOR = 64 * MiB  # the ratio limit applies only once a member's output passes this
HEAD = 64 * 1024  # bytes looked at to recognise a nested archive

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
GZIP_MAGIC = b"\x1f\x8b"
UNSUPPORTED_MAGICS = {  # recognised only to say what the file is
    b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive",
    b"Rar!\x1a\x07": "a RAR archive",
    b"BZh": "a bzip2 file",
    b"\xfd7zXZ\x00": "an xz file",
    b"\x28\xb5\x2f\xfd": "a zstd file",
    b"MSCF": "a Windows cabinet file",
}
REPACK = "repack it as .zip or .tar.gz"
# The names archives go by. The kind of a bundle or member is taken from its bytes; the name
# serves to name what is inside (a report, a vCenter) and to spot bundles in a folder.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".tar", ".gz")


@dataclass(frozen=True)
class Limits:
    max_depth: int = 3  # nested archive depth (zip in tgz in zip ...)
    max_total_bytes: int = 32 * 2**30  # total uncompressed bytes over the whole bundle
    max_member_bytes: int = 4 * 2**30  # one member uncompressed
    # uncompressed/compressed per member, once its output > 64 MiB. Logs deflate 3-40:1; deflate
    # itself tops out near 1030:1, so a limit of 1000 let a bomb of zeros through to its end.
    max_ratio: float = 200.0
    max_members: int = 200_000


@dataclass(frozen=True)
class Member:
    path: str  # path inside the bundle, nested archives joined with "!/"
    data: bytes  # decompressed content (gzip rotations inflated); of a streamed member, its start
    container: str | None  # path of the innermost nested archive holding it, None at top level
    rest: Iterator[bytes] | None = None  # a streamed member's remaining chunks (see open_bundle)


class UnusableBundle(Exception):
    """Nothing in the bundle can be read. The message is one line naming the file and the fix."""


class MemberDropped(Exception):
    """Raised by a streamed member's `rest` when a limit stops its reading: the member is skipped
    (a diagnostic says why), as it would be unstreamed, so what was read of it must be dropped."""


def whole(member: Member) -> Member:
    """The member with all its content in `data` (reads a streamed member's rest)."""
    if member.rest is None:
        return member
    out = io.BytesIO()
    out.write(member.data)
    for chunk in member.rest:
        out.write(chunk)
    return Member(member.path, out.getvalue(), member.container)


# ---------------------------------------------------------------------------------------------
# Public API


def archive_stem(name: str) -> str:
    """`name` without its archive suffix (any case); a name that is only a suffix stays whole."""
    lower = name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def open_bundle(path: Path, diags: Diagnostics, limits: Limits = Limits(),
                stream_over: int | None = None) -> Iterator[Member]:
    """Members of the bundle at `path`, in archive order (directories: sorted paths).

    With `stream_over`, a plain member larger than that many bytes comes streamed: `data` holds
    its first part and `rest` yields the other chunks as they are inflated. The caller reads
    `rest` to its end before it asks for the next member (the walk drains what is left); `rest`
    raises MemberDropped when a limit stops the member. Archives and gzip files are never
    streamed themselves; their members may be.

    Raises UnusableBundle at once when the path is missing or not a known kind, and at the end
    of iteration when not one member could be read.
    """
    path = Path(path)
    kind = _bundle_kind(path)
    return _Walker(path, diags, limits, stream_over).run(kind)


def decode(data: bytes, member: str, diags: Diagnostics) -> str:
    """Text of a member: BOM/UTF-16/UTF-8/cp1252 detection, LF line ends, no NULs. Never raises."""
    try:
        text = _decode_bytes(data, member, diags)
    except Exception as exc:  # a decoder bug must not stop the analysis of other members
        diags.add("warning", "decode-errors", f"could not decode text ({exc}); undecodable bytes "
                  "replaced", member)
        text = bytes(data).decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        count = text.count("\x00")
        text = text.replace("\x00", "")
        diags.add("info", "nul-bytes", f"removed {count} NUL characters", member)
    return text


def plain_utf8(data: bytes) -> bytes | None:
    """`data` itself when it is what `decode` would return, encoded as UTF-8, apart from line
    ends: valid UTF-8, no BOM, no UTF-16, no NUL, no CR at the very end. Lets a log parser hand
    the bytes straight to polars instead of decoding and re-encoding them; the line reader
    drops the CR of CRLF and finds lone CRs itself (counting CRs here would cost more than
    reading the lines)."""
    if data.startswith(tuple(bom for bom, _ in BOMS)) or _utf16_without_bom(data[:4096]):
        return None
    return plain_utf8_piece(data, last=True)


def plain_utf8_piece(data: bytes, last: bool) -> bytes | None:
    """plain_utf8 for a piece of a member whose start passed it (a streamed member's slice):
    valid UTF-8, no NUL, and, in the last piece, no CR at the very end."""
    if not data.isascii() and not _valid_utf8(data):
        return None
    if b"\x00" in data or (last and data.endswith(b"\r")):
        return None
    return data


UTF8_WINDOW = 64 * 1024


def _valid_utf8(data: bytes) -> bool:
    """Whether `data` is valid UTF-8, checked UTF8_WINDOW bytes at a time: decoding it at once
    would build a string as large as the data (up to four times larger with wide characters)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for at in range(0, len(view), UTF8_WINDOW):
            decoder.decode(view[at:at + UTF8_WINDOW])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def peek_root_file(path: Path, name: str, max_bytes: int = 1 << 20) -> bytes | None:
    """A small file at the bundle root (or in its single top folder), read before the walk.

    Zip and directory bundles only: a tar must be read through to find a member, so there the
    file is seen in archive order instead.
    """
    path = Path(path)
    try:
        if path.is_dir():
            for candidate in [path / name, *(p / name for p in sorted(path.iterdir()) if p.is_dir())]:
                if candidate.is_file() and not candidate.is_symlink():
                    if candidate.stat().st_size <= max_bytes:
                        return candidate.read_bytes()
            return None
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    parts = info.filename.strip("/").split("/")
                    if parts[-1] == name and len(parts) <= 2 and info.file_size <= max_bytes \
                            and not info.flag_bits & 0x1:
                        return zf.read(info)
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    return None


def file_sha256(path: Path) -> str:
    """SHA-256 of a bundle file; of a directory, over its sorted relative paths and contents.

    A directory's symlinks and special files are left out (they are never read).
    """
    path = Path(path)
    digest = hashlib.sha256()
    if not path.is_dir():
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                digest.update(block)
        return digest.hexdigest()
    for rel, kind in _dir_entries(path):
        if kind != "file":
            continue
        name = rel.encode("utf-8", "surrogateescape")
        try:
            fd = _open_regular(path / rel)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            digest.update(b"%d:%s\x00%d\x00" % (len(name), name, size))
            for block in iter(lambda: f.read(CHUNK), b""):
                digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Kinds


def _bundle_kind(path: Path) -> str:
    if not path.exists() and not path.is_symlink():
        raise UnusableBundle(f"{path}: no such file or directory — check the path")
    if path.is_dir():
        return "dir"
    if not path.is_file():
        raise UnusableBundle(f"{path}: not a regular file or directory — pass the bundle file or "
                        "the folder it was unpacked into")
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD)
    except OSError as exc:
        raise UnusableBundle(f"{path}: cannot be read ({exc.strerror}) — check the file "
                        "permissions") from None
    if not head:
        raise UnusableBundle(f"{path}: the file is empty — the download or copy probably failed; "
                        "fetch the bundle again")
    kind = _kind_of(head)
    if kind == "zip" or (kind is None and zipfile.is_zipfile(path)):
        return "zip"  # is_zipfile also finds zips with a prefix (self-extracting archives)
    if kind is not None:
        return kind
    for magic, what in UNSUPPORTED_MAGICS.items():
        if head.startswith(magic):
            raise UnusableBundle(f"{path}: {what}, which is not supported — {REPACK}")
    raise UnusableBundle(f"{path}: not a zip, tar, tar.gz or gzip file (starts with "
                    f"{head[:8].hex(' ')}) — pass the support bundle archive or the folder it "
                    "was unpacked into")


def _kind_of(head: bytes) -> str | None:
    """zip | tar | tgz (gzip holding a tar) | gz | None for anything else."""
    if head.startswith(ZIP_MAGICS):
        return "zip"
    if head.startswith(GZIP_MAGIC):
        return "tgz" if _is_tar(_gunzip_head(head)) else "gz"
    if _is_tar(head):
        return "tar"
    return None


def _is_tar(block: bytes) -> bool:
    if len(block) < 512:
        return False
    if block[257:262] == b"ustar":
        return True
    try:  # old v7 tar: no magic, only a header checksum
        stored = int(block[148:156].replace(b"\x00", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    return stored in tarfile.calc_chksums(block[:512]) and block[0] != 0


def _gunzip_head(head: bytes) -> bytes:
    try:
        return igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP).decompress(head, 512)
    except Exception:  # damaged gzip: not a tar; the member read reports the damage
        return b""


# ---------------------------------------------------------------------------------------------
# Reading with limits


class _StopWalk(Exception):
    """The whole bundle walk must stop (total size or member count exceeded)."""


class _Refused(Exception):
    """This member breaks a limit: skip it, keep walking."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class _Damaged(Exception):
    """The data breaks off here; what was read before is still good."""


class _ArchiveLimit(Exception):
    """A compressed tar stream hit a bomb limit: the rest of that archive is skipped."""


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class _Progress:
    """Compressed bytes consumed so far by a gunzip loop (for the ratio check)."""

    def __init__(self) -> None:
        self.consumed = 0

    def read_so_far(self) -> int:
        return self.consumed


# A member's compressed size for the ratio check: fixed, or (better) how much of it has been
# read so far. Against the whole size, a 1 MB gzip of zeros only tripped 1000:1 after inflating
# ~1 GB into memory; against what was read, it trips as soon as its output passes RATIO_FLOOR.
Compressed = int | Callable[[], int] | None


def _read_so_far(compressed: int | Callable[[], int]) -> int:
    return compressed() if callable(compressed) else compressed


def _gunzip(read: Callable[[int], bytes], progress: _Progress) -> Iterator[bytes]:
    """Inflated chunks of a gzip stream, multi-member included. Raises _Damaged when it breaks."""
    buf = b""
    members = 0
    while True:
        if not buf:
            buf = read(IN_CHUNK)
            progress.consumed += len(buf)
            if not buf:
                if members == 0:
                    raise _Damaged("no gzip data")
                return
        if not buf.startswith(GZIP_MAGIC):
            if members == 0:
                raise _Damaged("not gzip data")
            while buf and not buf.strip(b"\x00"):  # NUL padding after the last member is harmless
                buf = read(IN_CHUNK)
                progress.consumed += len(buf)
            if not buf:
                return
            raise _Damaged("unexpected non-gzip data after the compressed stream")
        inflater = igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
        try:
            while True:
                out = inflater.decompress(buf, CHUNK)
                buf = b""
                if out:
                    yield out
                if inflater.eof:
                    buf = inflater.unused_data
                    break
                if inflater.needs_input:
                    buf = read(IN_CHUNK)
                    progress.consumed += len(buf)
                    if not buf:
                        raise _Damaged("gzip data ends early (file truncated)")
        except (igzip_lib.IsalError, ValueError, EOFError) as exc:
            raise _Damaged(f"corrupt gzip data ({exc})") from None
        members += 1


def _reader(data: bytes) -> Callable[[int], bytes]:
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        chunk = data[pos:pos + n]
        pos += len(chunk)
        return chunk

    return read


def _file_chunks(f: io.BufferedIOBase | io.RawIOBase, what: str) -> Iterator[bytes]:
    """Chunks of a member's file object (zip, tar or file); read errors become _Damaged."""
    while True:
        try:
            chunk = f.read(CHUNK)
        except (_ArchiveLimit, _StopWalk):
            raise
        except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError,
                ValueError) as exc:
            raise _Damaged(f"{what} data is damaged ({exc})") from None
        except Exception as exc:  # bz2/lzma decoder errors inside zip members
            raise _Damaged(f"{what} data is damaged ({type(exc).__name__}: {exc})") from None
        if not chunk:
            return
        yield chunk


def _peek(chunks: Iterator[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
    """The first `size` bytes of the chunks (fewer if they end or break off first), and the
    chunks from the start again. Damage met while peeking comes out of the second iterator."""
    taken: list[bytes] = []
    got = 0
    damage: _Damaged | None = None
    try:
        while got < size:
            chunk = next(chunks, None)
            if chunk is None:
                break
            taken.append(chunk)
            got += len(chunk)
    except _Damaged as exc:
        damage = exc

    def again() -> Iterator[bytes]:
        yield from taken
        if damage is not None:
            raise damage
        yield from chunks
    return b"".join(taken)[:size], again()


class _ChunkStream(io.RawIOBase):
    """Counted chunks (see _Walker._counted) read as a file, for a nested tar walked as it is read.
    A limit met on the way ends the archive (_ArchiveLimit), as in _GunzipStream."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        if not self._pending:
            chunk = self._next_chunk()
            if not chunk:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(target), len(self._pending))
        target[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _next_chunk(self) -> bytes:
        """The next chunk, b"" at the end."""
        try:
            return next(self._chunks, b"")
        except _Refused as refused:
            raise _ArchiveLimit(refused.message.replace("; skipped", "; rest of it skipped")) from None


class _GunzipStream(_ChunkStream):
    """A gzip stream read as a file (for tarfile), with the bundle's bomb limits on its output.

    Tar members inside have no compressed size of their own, so the ratio is checked here, on the
    whole stream. Damage ends the stream early and is remembered in `damage`.
    """

    def __init__(self, read: Callable[[int], bytes], limits: Limits):
        self.progress = _Progress()
        super().__init__(_gunzip(read, self.progress))
        self.limits = limits
        self.produced = 0
        self.damage: str | None = None

    def _next_chunk(self) -> bytes:
        try:
            chunk = next(self._chunks, b"")
        except _Damaged as exc:
            self.damage = str(exc)
            return b""
        self.produced += len(chunk)
        self._check()
        return chunk

    def _check(self) -> None:
        out, limits = self.produced, self.limits
        if out > limits.max_total_bytes:
            raise _ArchiveLimit(f"compressed archive inflates past "
                                f"{_size(limits.max_total_bytes)} (max_total_bytes); rest of "
                                "it skipped")
        if out > RATIO_FLOOR and out > limits.max_ratio * max(self.progress.consumed, 1):
            raise _ArchiveLimit(f"compressed archive inflates more than "
                                f"{limits.max_ratio:.0f}:1 (max_ratio) — looks like a "
                                "decompression bomb; rest of it skipped")


# ---------------------------------------------------------------------------------------------
# Names


def _clean_name(name: str) -> tuple[str, str | None]:
    """(normalised relative path, reason it is unsafe or None)."""
    slashed = name.replace("\\", "/")
    if slashed.startswith("/"):
        return slashed, "absolute path"
    if len(slashed) >= 2 and slashed[1] == ":" and slashed[0].isalpha():
        return slashed, "absolute Windows path (drive letter)"
    parts = [p for p in slashed.split("/") if p not in ("", ".")]
    if ".." in parts:
        return slashed, "path climbs out of the archive ('..' component)"
    return "/".join(parts), None


# ---------------------------------------------------------------------------------------------
# The walk


class _Walker:
    def __init__(self, path: Path, diags: Diagnostics, limits: Limits,
                 stream_over: int | None = None):
        self.path, self.diags, self.limits = path, diags, limits
        self.stream_over = stream_over
        self.label = path.name or str(path)  # location of bundle-level diagnostics
        self.total = 0
        self.entries = 0
        self.yielded = 0
        self.skipped = 0
        self.seen: dict[str, int] = {}
        self.fatal: str | None = None  # why the top-level archive could not be read

    # --- top level

    def run(self, kind: str) -> Iterator[Member]:
        try:
            if kind == "dir":
                yield from self._walk_dir()
            elif kind == "gz":
                yield from self._top_gz()
            else:
                yield from self._walk_archive(kind, None, 0, self.path)
        except _StopWalk:
            pass
        if self.yielded == 0:
            raise UnusableBundle(self._nothing_readable())

    def _nothing_readable(self) -> str:
        if self.fatal:
            return f"{self.path}: {self.fatal} — fetch the bundle again or {REPACK}"
        if self.skipped:
            return (f"{self.path}: none of its {self.skipped} members could be used (see the "
                    "diagnostics) — collect the logs again")
        return f"{self.path}: contains no files — check that the right bundle was attached"

    def _top_gz(self) -> Iterator[Member]:
        with open(self.path, "rb") as f:
            progress = _Progress()
            yield from self._read_member(self.path.name, None, _gunzip(f.read, progress),
                                         progress.read_so_far, nested_depth=None)

    # --- bookkeeping

    def _count_entry(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_members:
            self.diags.add("error", "too-many-members",
                           f"more than {self.limits.max_members} members (max_members); "
                           "the rest of the bundle is skipped", self.label)
            raise _StopWalk

    def _skip(self, code: str, message: str, location: str | None,
              hint: str | None = None) -> None:
        self.skipped += 1
        self.diags.add("warning", code, message, location, hint)

    def _emit(self, path: str, data: bytes, container: str | None) -> Member:
        self.yielded += 1
        return Member(self._unique(path), data, container)

    def _unique(self, path: str) -> str:
        n = self.seen.get(path, 0) + 1
        self.seen[path] = n
        if n > 1:
            renamed = f"{path} ({n})"
            self.diags.add("info", "duplicate-member", f"a second member named {path!r} is "
                           f"listed as {renamed!r}", renamed)
            path = renamed
            self.seen[path] = self.seen.get(path, 0) + 1
        return path

    def _stream(self, path: str, first: bytes, chunks: Iterator[bytes],
                container: str | None) -> Iterator[Member]:
        """Yield a member too large to hold whole: its first part, the rest read by the caller.
        What the rest meets is what _read_member would make of it: damage keeps what was read,
        a member limit skips the member, a bundle limit ends the walk."""
        path = self._unique(path)
        self.yielded += 1
        read = len(first)
        stopped: Exception | None = None

        def rest() -> Iterator[bytes]:
            nonlocal read, stopped
            try:
                for chunk in chunks:
                    read += len(chunk)
                    yield chunk
            except _Damaged as exc:
                self.diags.add("warning", "member-truncated", f"{exc}; kept the first "
                               f"{_size(read)} read before the damage", path)
            except _Refused as refused:
                self.yielded -= 1
                self._skip(refused.code, refused.message, path)
                raise MemberDropped(refused.message) from None
            except (_StopWalk, _ArchiveLimit) as exc:  # raised again below, in the walk itself
                self.yielded -= 1
                stopped = exc
                raise MemberDropped(str(exc) or "the bundle's limits stop the walk here") from None

        stream = rest()
        yield Member(path, first, container, stream)
        for _ in stream:  # what the caller left unread
            pass
        if stopped is not None:
            raise stopped

    def _counted(self, chunks: Iterable[bytes], where: str, compressed: Compressed) -> Iterator[bytes]:
        """A member's chunks, counted against the limits as they are read."""
        limits = self.limits
        size = 0
        for chunk in chunks:
            size += len(chunk)
            self.total += len(chunk)
            if self.total > limits.max_total_bytes:
                self.diags.add("error", "decompression-limit",
                               f"the bundle inflates past {_size(limits.max_total_bytes)} "
                               "(max_total_bytes); stopped reading here", where)
                raise _StopWalk
            if size > limits.max_member_bytes:
                raise _Refused("decompression-limit", f"member inflates past "
                               f"{_size(limits.max_member_bytes)} (max_member_bytes); "
                               "skipped")
            if (compressed is not None and size > RATIO_FLOOR
                    and size > limits.max_ratio * max(_read_so_far(compressed), 1)):
                raise _Refused("decompression-limit", f"member inflates more than "
                               f"{limits.max_ratio:.0f}:1 (max_ratio) — looks like a "
                               "decompression bomb; skipped")
            yield chunk

    @staticmethod
    def _collect(chunks: Iterator[bytes], up_to: int | None = None) -> tuple[bytes, str | None, bool]:
        """Gather counted chunks (see _counted): (data, damage or None, whether more are left
        to read). With `up_to`, gathering stops once data holds more than that many bytes."""
        out = io.BytesIO()
        try:
            for chunk in chunks:
                out.write(chunk)
                if up_to is not None and out.tell() > up_to:
                    return out.getvalue(), None, True
        except _Damaged as exc:
            return out.getvalue(), str(exc), False
        return out.getvalue(), None, False  # getvalue() shares BytesIO's buffer: no second copy

    def _read_member(self, path: str, container: str | None, chunks: Iterable[bytes],
                     compressed: Compressed, nested_depth: int | None) -> Iterator[Member]:
        """Read one member; yield it, or the members of the archive it is.

        nested_depth: depth the member would have as a nested archive; None = never nested.
        A nested tar or tgz is walked as it is read, not gathered first (a vc-support tgz is tens
        of MB, and its members are read one by one anyway).
        """
        counted = self._counted(chunks, path, compressed)
        try:
            head, counted = _peek(counted, HEAD)
            kind = _kind_of(head) if nested_depth is not None else None
            if kind in ("tar", "tgz") and nested_depth <= self.limits.max_depth:
                # what the walk leaves unread of a tar member, the outer tar's next() skips
                yield from self._walk_archive(kind, path, nested_depth, _ChunkStream(counted))
                return
            data, damage, more = self._collect(counted, self.stream_over if kind is None else None)
        except _Refused as refused:
            self._skip(refused.code, refused.message, path)
            return
        if more:
            yield from self._stream(path, data, counted, container)
            return
        if damage:
            if not data:
                self._skip("member-corrupt", f"unreadable: {damage}; skipped", path,
                           "the file was damaged when the bundle was made or copied")
                return
            self.diags.add("warning", "member-truncated", f"{damage}; kept the first "
                           f"{_size(len(data))} read before the damage", path)
        if nested_depth is None:
            yield self._emit(path, data, container)
            return
        kind = _kind_of(data[:HEAD])
        if kind == "gz":
            progress = _Progress()
            yield from self._read_member(path, container, _gunzip(_reader(data), progress),
                                         progress.read_so_far, nested_depth=None)
        elif kind is not None:
            if nested_depth > self.limits.max_depth:
                self._skip("nesting-too-deep", f"archive nested deeper than "
                           f"{self.limits.max_depth} levels (max_depth); skipped", path)
                return
            yield from self._walk_archive(kind, path, nested_depth, data)
        else:
            yield self._emit(path, data, container)

    # --- archives

    def _walk_archive(self, kind: str, label: str | None, depth: int,
                      source: Path | bytes) -> Iterator[Member]:
        """Walk a zip/tar/tgz; `label` is its member path (None for the bundle itself)."""
        if kind == "zip":
            walk = self._walk_zip(label, depth, source)
        else:
            walk = self._walk_tar(kind, label, depth, source)
        try:
            failure = yield from walk
        except _ArchiveLimit as limit:
            self._skip("decompression-limit", str(limit), label or self.label)
            return
        if failure and label is None:
            self.fatal = failure
        elif failure:
            self._skip("member-corrupt", f"nested archive unreadable ({failure}); skipped", label)

    def _prefix(self, label: str | None) -> str:
        return "" if label is None else f"{label}!/"

    def _walk_zip(self, label: str | None, depth: int,
                  source: Path | bytes) -> Iterator[Member]:
        """Returns why, when the zip could not be read at all."""
        where = label or self.label
        declared = _zip_declared_entries(source)
        if declared is not None and declared > self.limits.max_members - self.entries:
            self.diags.add("error", "too-many-members", f"the zip lists {declared} members; "
                           f"more than {self.limits.max_members} in all (max_members); "
                           "the rest of the bundle is skipped", where)
            raise _StopWalk
        try:
            zf = zipfile.ZipFile(source if isinstance(source, Path) else io.BytesIO(source))
        except Exception as exc:  # any malformed directory: try the local headers instead
            return (yield from self._salvage_zip(label, depth, source, str(exc)))
        with zf:
            overlapping = _overlapping_entries(zf.infolist())
            for info in zf.infolist():
                if id(info) in overlapping:
                    self._count_entry()
                    self._skip("decompression-limit", "member's data overlaps the next member's "
                               "(entries sharing compressed data: a zip-bomb construction); skipped",
                               self._prefix(label) + info.filename)
                    continue
                yield from self._zip_member(zf, info, label, depth)

    def _zip_member(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str | None,
                    depth: int) -> Iterator[Member]:
        self._count_entry()
        name, unsafe = _clean_name(info.filename)
        path = self._prefix(label) + name
        if unsafe:
            self._skip("unsafe-member", f"refused {info.filename!r}: {unsafe}",
                       self._prefix(label) + info.filename)
            return
        if not name or info.is_dir():
            return
        mode = info.external_attr >> 16 if info.create_system == 3 else 0
        if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
            what = "symlink" if stat.S_ISLNK(mode) else "special file"
            self._skip("unsafe-member", f"refused {what} (not followed)", path)
            return
        if info.flag_bits & 0x1:
            self._skip("encrypted-member", "member is password-protected; skipped", path,
                       "ask for the bundle again without a password")
            return
        limits = self.limits
        if info.file_size > limits.max_member_bytes:
            self._skip("decompression-limit", f"member declares {_size(info.file_size)}, more "
                       f"than {_size(limits.max_member_bytes)} (max_member_bytes); skipped", path)
            return
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR and ratio > limits.max_ratio:
            self._skip("decompression-limit", f"member declares a {ratio:.0f}:1 compression "
                       f"ratio, more than {limits.max_ratio:.0f}:1 (max_ratio) — looks like a "
                       "decompression bomb; skipped", path)
            return
        try:
            f = zf.open(info)
        except NotImplementedError as exc:
            self._skip("unsupported-member", f"{exc}; skipped", path,
                       "re-create the zip with standard (deflate) compression")
            return
        except Exception as exc:  # bad local header, undecodable name, ...
            self._skip("member-corrupt", f"unreadable ({exc}); skipped", path)
            return
        with f:
            # zipfile's private count of compressed bytes left; without it, the declared size
            read = lambda: info.compress_size - getattr(f, "_compress_left", 0)  # noqa: E731
            yield from self._read_member(path, label, _file_chunks(f, "zip member"), read,
                                         nested_depth=depth + 1)

    def _salvage_zip(self, label: str | None, depth: int, source: Path | bytes,
                     why: str) -> Iterator[Member]:
        """A zip whose central directory is unreadable (often: a cut download). Walk the local
        file headers instead, in file order."""
        where = label or self.label
        if isinstance(source, Path):
            with open(source, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return (yield from self._salvage_zip_buffer(label, depth, mm, why, where))
        return (yield from self._salvage_zip_buffer(label, depth, source, why, where))

    def _salvage_zip_buffer(self, label: str | None, depth: int, buf: bytes | mmap.mmap,
                            why: str, where: str) -> Iterator[Member]:
        found = 0
        for entry in _local_headers(buf):
            found += 1
            if found == 1:
                self.diags.add("warning", "archive-damaged", f"zip directory unreadable ({why}); "
                               "members recovered from their local headers", where,
                               "the zip is probably truncated; ask for the original file")
            yield from self._salvaged_member(entry, label, depth)
        return None if found else f"damaged zip ({why}) with no readable member"

    def _salvaged_member(self, entry: _LocalEntry, label: str | None,
                         depth: int) -> Iterator[Member]:
        self._count_entry()
        name, unsafe = _clean_name(entry.name)
        path = self._prefix(label) + name
        if unsafe:
            self._skip("unsafe-member", f"refused {entry.name!r}: {unsafe}",
                       self._prefix(label) + entry.name)
            return
        if name == "" or entry.name.endswith(("/", "\\")):
            return
        if entry.problem:
            code = "encrypted-member" if entry.problem.startswith("password") else "member-corrupt"
            self._skip(code, f"{entry.problem}; skipped", path)
            return
        yield from self._read_member(path, label, entry.chunks(), entry.compressed,
                                     nested_depth=depth + 1)

    def _walk_tar(self, kind: str, label: str | None, depth: int,
                  source: Path | bytes | _ChunkStream) -> Iterator[Member]:
        """Returns why, when the tar could not be read at all."""
        where = label or self.label
        with (open(source, "rb") if isinstance(source, Path) else
              source if isinstance(source, _ChunkStream) else io.BytesIO(source)) as raw:
            stream: io.RawIOBase | io.BufferedIOBase = raw
            gz = None
            if kind == "tgz":
                gz = stream = _GunzipStream(raw.read, self.limits)
            problems: list[str] = []
            try:
                tf = tarfile.open(fileobj=stream, mode="r|", tarinfo=_recording_tarinfo(problems))
            except (_ArchiveLimit, _StopWalk):
                raise
            except Exception as exc:  # any malformed first header
                damage = gz.damage if gz is not None and gz.damage else str(exc)
                return f"unreadable tar ({damage})"
            with tf:
                while True:
                    try:
                        info = tf.next()
                    except (_ArchiveLimit, _StopWalk):
                        raise
                    except Exception as exc:  # a damaged header: the members before it stand
                        problems.append(str(exc))
                        break
                    if info is None:
                        break
                    tf.members.clear()  # tarfile keeps every header; bounded memory instead
                    yield from self._tar_member(tf, info, label, depth)
            damage = (gz.damage if gz is not None else None) or (problems[0] if problems else None)
            if damage:
                self.diags.add("warning", "archive-truncated", f"the tar stream breaks off "
                               f"({damage}); members after that point are missing", where,
                               "the archive was probably cut during upload or copy")
        return None

    def _tar_member(self, tf: tarfile.TarFile, info: tarfile.TarInfo, label: str | None,
                    depth: int) -> Iterator[Member]:
        self._count_entry()
        name, unsafe = _clean_name(info.name)
        path = self._prefix(label) + name
        if unsafe:
            self._skip("unsafe-member", f"refused {info.name!r}: {unsafe}",
                       self._prefix(label) + info.name)
            return
        if info.isdir() or not name:
            return
        if not info.isreg():
            what = ("symlink" if info.issym() else "hardlink" if info.islnk() else
                    "device file" if info.ischr() or info.isblk() else
                    "fifo" if info.isfifo() else f"tar entry of type {info.type!r}")
            self._skip("unsafe-member", f"refused {what} (not followed)", path)
            return
        if info.size > self.limits.max_member_bytes:
            self._skip("decompression-limit", f"member declares {_size(info.size)}, more than "
                       f"{_size(self.limits.max_member_bytes)} (max_member_bytes); skipped", path)
            return
        yield from self._read_member(path, label, _tar_chunks(tf, info), None,
                                     nested_depth=depth + 1)

    # --- directories

    def _walk_dir(self) -> Iterator[Member]:
        for rel, kind in _dir_entries(self.path, self._dir_error):
            self._count_entry()
            if kind != "file":
                self._skip("unsafe-member", f"refused {kind} (not followed)", rel)
                continue
            try:
                fd = _open_regular(self.path / rel)
            except OSError as exc:
                self._skip("member-unreadable", f"cannot be read ({exc.strerror or exc}); "
                           "skipped", rel)
                continue
            with os.fdopen(fd, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > self.limits.max_member_bytes:
                    self._skip("decompression-limit", f"file is {_size(size)}, more than "
                               f"{_size(self.limits.max_member_bytes)} (max_member_bytes); "
                               "skipped", rel)
                    continue
                yield from self._read_member(rel, None, _file_chunks(f, "file"), None,
                                             nested_depth=1)

    def _dir_error(self, rel: str, exc: OSError) -> None:
        self._skip("member-unreadable", f"folder cannot be listed ({exc.strerror or exc}); "
                   "skipped", rel or ".")


# ---------------------------------------------------------------------------------------------
# Helpers for the walk


def _dir_entries(root: Path,
                 on_error: Callable[[str, OSError], None] | None = None) -> list[tuple[str, str]]:
    """(relative posix path, file | symlink | special file) of every non-directory, sorted.
    Symlinked folders are listed as symlinks, not entered."""
    found: list[tuple[str, str]] = []
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        try:
            with os.scandir(root / rel_dir if rel_dir else root) as it:
                entries = list(it)
        except OSError as exc:
            if on_error:
                on_error(rel_dir, exc)
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                if entry.is_symlink():
                    found.append((rel, "symlink"))
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    found.append((rel, "file"))
                else:
                    found.append((rel, "special file"))
            except OSError as exc:
                if on_error:
                    on_error(rel, exc)
    found.sort()
    return found


def _tar_chunks(tf: tarfile.TarFile, info: tarfile.TarInfo) -> Iterator[bytes]:
    """A tar member's data, read from the stream itself so that a cut archive still gives the
    bytes before the cut (tarfile's own reader drops the whole short read)."""
    if info.issparse():
        yield from _file_chunks(tf.extractfile(info), "tar member")
        return
    left = info.size
    while left:
        want = min(CHUNK, left)
        try:
            chunk = tf.fileobj.read(want)
        except (_ArchiveLimit, _StopWalk):
            raise
        except Exception as exc:
            raise _Damaged(f"tar member data is damaged ({exc})") from None
        if chunk:
            yield chunk
        if len(chunk) < want:
            raise _Damaged("tar data ends early (file truncated)")
        left -= len(chunk)


def _open_regular(path: Path) -> int:
    """Open without following a symlink or blocking on a fifo swapped in since the listing."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(0, "not a regular file")
    return fd


def _recording_tarinfo(problems: list[str]) -> type[tarfile.TarInfo]:
    """A TarInfo class that notes why a header could not be read. tarfile silently ends the
    walk on a bad or cut header; we want to tell a clean end from damage."""

    class RecordingTarInfo(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf, encoding, errors):
            try:
                return super().frombuf(buf, encoding, errors)
            except tarfile.EOFHeaderError:
                raise  # the zero block that ends a well-formed tar
            except tarfile.HeaderError as exc:
                problems.append(str(exc) or type(exc).__name__)
                raise

    return RecordingTarInfo


def _overlapping_entries(infos: list[zipfile.ZipInfo]) -> set[int]:
    """ids of entries whose data runs into the next entry's local header. Many directory entries
    pointing at one compressed stream inflate it again and again (a "total" bomb: 1 MB read as
    tens of GB); Python's zipfile rejects them only from 3.12. The end used is a lower bound (the
    local extra field is not counted), so honest zips are never flagged."""
    by_offset = sorted(infos, key=lambda i: i.header_offset)
    flagged = set()
    for info, following in zip(by_offset, by_offset[1:]):
        name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")
        end = info.header_offset + 30 + len(name) + info.compress_size
        if end > following.header_offset:
            flagged.add(id(info))
    return flagged


def _zip_declared_entries(source: Path | bytes) -> int | None:
    """Entry count from the zip's end record, read before zipfile builds a ZipInfo for each."""
    try:
        if isinstance(source, Path):
            with open(source, "rb") as f:
                end = zipfile._EndRecData(f)
        else:
            end = zipfile._EndRecData(io.BytesIO(source))
    except Exception:  # private helper; if it changes or fails, zipfile itself decides
        return None
    return end[zipfile._ECD_ENTRIES_TOTAL] if end else None


LOCAL_SIG = b"PK\x03\x04"
LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


@dataclass
class _LocalEntry:
    name: str
    compressed: int | None
    problem: str | None
    chunks: Callable[[], Iterator[bytes]]


def _local_headers(buf: bytes | mmap.mmap) -> Iterator[_LocalEntry]:
    """Entries of a zip found by scanning for local file headers (stored and deflate only).

    The buffer is sliced, never viewed: a memoryview would keep an mmap from closing."""
    pos = buf.find(LOCAL_SIG)
    while pos != -1 and pos + LOCAL_HEADER.size <= len(buf):
        (_, _, flags, method, _, _, _, csize, usize, name_len,
         extra_len) = LOCAL_HEADER.unpack_from(buf, pos)
        name_at = pos + LOCAL_HEADER.size
        start = name_at + name_len + extra_len
        if start > len(buf):
            return
        name = buf[name_at:name_at + name_len].decode("utf-8" if flags & 0x800 else "cp437",
                                                      "replace")
        if 0xFFFFFFFF in (csize, usize):
            csize = _zip64_local_csize(buf[start - extra_len:start], csize, usize)
        end = start + csize if csize is not None and not flags & 0x8 else None
        problem = None
        if flags & 0x1:
            problem = "password-protected member"
        elif method not in (0, 8):
            problem = f"compression method {method} cannot be recovered from a damaged zip"
        elif method == 0 and end is None:
            problem = "stored member of unknown size in a damaged zip"
        stop = len(buf) if end is None else min(end, len(buf))
        ended_at: list[int] = []  # where an unknown-size deflate stream turned out to end
        if problem:
            chunks = lambda: iter(())  # noqa: E731
        elif method == 0:
            chunks = lambda s=start, e=stop: _stored_chunks(buf, s, e)  # noqa: E731
        else:
            chunks = lambda s=start, e=stop: _raw_deflate_chunks(buf, s, e, ended_at)  # noqa: E731
        yield _LocalEntry(name, csize, problem, chunks)
        nxt = end if end is not None else (ended_at[0] if ended_at else pos + 4)
        pos = buf.find(LOCAL_SIG, nxt)


def _zip64_local_csize(extra: bytes, csize: int, usize: int) -> int | None:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        if tag == 0x0001:
            fields = extra[pos + 4:pos + 4 + size]
            values = [struct.unpack_from("<Q", fields, i)[0] for i in range(0, len(fields) - 7, 8)]
            if usize == 0xFFFFFFFF and values:
                values.pop(0)
            if csize == 0xFFFFFFFF:
                return values[0] if values else None
            return csize
        pos += 4 + size
    return None


def _stored_chunks(buf: bytes | mmap.mmap, start: int, stop: int) -> Iterator[bytes]:
    for at in range(start, stop, CHUNK):
        yield buf[at:min(at + CHUNK, stop)]


def _raw_deflate_chunks(buf: bytes | mmap.mmap, start: int, stop: int,
                        ended_at: list[int]) -> Iterator[bytes]:
    inflater = isal_zlib.decompressobj(wbits=-15)
    pos = start
    try:
        while not inflater.eof:
            if inflater.unconsumed_tail:
                out = inflater.decompress(inflater.unconsumed_tail, CHUNK)
            elif pos < stop:
                out = inflater.decompress(buf[pos:min(pos + IN_CHUNK, stop)], CHUNK)
                pos = min(pos + IN_CHUNK, stop)
            else:
                raise _Damaged("deflate data ends early (file truncated)")
            if out:
                yield out
    except (isal_zlib.error, ValueError) as exc:
        raise _Damaged(f"corrupt deflate data ({exc})") from None
    ended_at.append(pos - len(inflater.unused_data))


# ---------------------------------------------------------------------------------------------
# Text


def _cp1252_undefined(exc: UnicodeDecodeError) -> tuple[str, int]:
    # 0x81 0x8D 0x8F 0x90 0x9D have no cp1252 character; Windows maps them to the same C1 code point
    return "".join(chr(b) for b in exc.object[exc.start:exc.end]), exc.end


codecs.register_error("bundle-cp1252-c1", _cp1252_undefined)

BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _decode_bytes(data: bytes, member: str, diags: Diagnostics) -> str:
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return _decode_strict_or_replace(memoryview(data)[len(bom):], encoding, member, diags)
    utf16 = _utf16_without_bom(data[:4096])
    if utf16:
        return _decode_strict_or_replace(data, utf16, member, diags)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":  # a multi-byte character cut at the very end
            diags.add("info", "decode-errors", "the last character is cut off; replaced", member)
            return data.decode("utf-8", "replace")
        first_bad = exc.start
    diags.add("info", "decoded-as-cp1252", f"not valid UTF-8 (byte {first_bad}); read as "
              "Windows-1252", member)
    return data.decode("cp1252", "bundle-cp1252-c1")


def _decode_strict_or_replace(data: bytes | memoryview, encoding: str, member: str,
                              diags: Diagnostics) -> str:
    try:
        return str(data, encoding)
    except UnicodeDecodeError as exc:
        diags.add("warning", "decode-errors", f"invalid {encoding} at byte {exc.start}; "
                  "undecodable bytes replaced", member)
        return str(data, encoding, "replace")


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 text of mostly ASCII characters has NULs at every other byte."""
    pairs = len(head) // 2
    if pairs < 2:
        return None
    even_nuls = head[0:pairs * 2:2].count(0)
    odd_nuls = head[1:pairs * 2:2].count(0)
    if odd_nuls >= 0.4 * pairs and even_nuls <= 0.1 * pairs:
        return "utf-16-le"
    if even_nuls >= 0.4 * pairs and odd_nuls <= 0.1 * pairs:
        return "utf-16-be"
    return None
