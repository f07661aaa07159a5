"""Writing a bundle: a zip streamed member by member, nested vc-support tgz, gzip rotations, encodings.

Nothing here holds a whole log in memory: records arrive time-ordered from a merge of generators
and leave in 10-minute windows. Every byte is a function of the seed: zip and tar entries carry a
fixed date, gzip headers carry mtime 0 and no file name.
"""

from __future__ import annotations

import gzip
import heapq
import tarfile
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import polars as pl

from analyzer.sample import clock
from analyzer.sample.clock import MINUTE

ZIP_DATE = (2024, 5, 15, 9, 30, 0)
TAR_MTIME = 1715765400  # 2024-05-15T09:30:00Z
WINDOW = 10 * MINUTE
SPOOL = 32 << 20


class Encoder:
    """Text -> bytes for one member: newline style, BOM once at the start, the encoding."""

    def __init__(self, encoding: str = "utf-8", newline: str = "\n"):
        self.newline = newline
        self.started = False
        if encoding == "utf-16":
            self.bom, self.codec = b"\xff\xfe", "utf-16-le"
        elif encoding == "utf-8-sig":
            self.bom, self.codec = b"\xef\xbb\xbf", "utf-8"
        else:
            self.bom, self.codec = b"", encoding

    def __call__(self, text: str) -> bytes:
        if self.newline != "\n":
            text = text.replace("\n", self.newline)
        data = text.encode(self.codec, errors="replace")
        if not self.started:
            self.started = True
            return self.bom + data
        return data


class Container:
    """Where members go: the bundle zip, or a tgz nested in it."""

    def open(self, name: str) -> BinaryIO:  # pragma: no cover - interface
        raise NotImplementedError


class ZipContainer(Container):
    def __init__(self, path: Path, level: int, big: bool):
        self.zf = zipfile.ZipFile(path, "w", allowZip64=True)
        self.level = level
        self.big = big

    def info(self, name: str, stored: bool = False) -> zipfile.ZipInfo:
        zi = zipfile.ZipInfo(name, date_time=ZIP_DATE)
        zi.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        zi._compresslevel = None if stored else self.level  # per-member level (3.13 keeps this alias)
        zi.create_system = 3
        zi.external_attr = 0o644 << 16
        return zi

    @contextmanager
    def open(self, name: str, stored: bool = False) -> Iterator[BinaryIO]:
        with self.zf.open(self.info(name, stored), "w", force_zip64=self.big) as fh:
            yield fh

    def close(self) -> None:
        self.zf.close()


class _Spooled(Container):
    """Members spool to temporary files until close() writes them as one tgz, in the order written."""

    def __init__(self, tmp_dir: Path):
        self.tmp_dir = tmp_dir
        self.members: list[tuple[str, tempfile.SpooledTemporaryFile]] = []

    @contextmanager
    def open(self, name: str, stored: bool = False) -> Iterator[BinaryIO]:
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL, dir=self.tmp_dir)
        self.members.append((name, spool))
        yield spool

    def _write(self, raw: BinaryIO, level: int) -> None:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=level) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                for name, spool in self.members:
                    size = spool.tell()
                    spool.seek(0)
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = size, TAR_MTIME, 0o644
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    tar.addfile(info, spool)
                    spool.close()


class TgzBundle(_Spooled):
    """The bundle itself as a tgz (`tar czf` of a folder)."""

    def __init__(self, path: Path, level: int, tmp_dir: Path):
        super().__init__(tmp_dir)
        self.path, self.level = path, level

    def close(self) -> None:
        with open(self.path, "wb") as raw:
            self._write(raw, self.level)


class TarContainer(_Spooled):
    """A vc-support style tgz inside the bundle."""

    def __init__(self, parent: ZipContainer | TgzBundle, name: str, tmp_dir: Path):
        super().__init__(tmp_dir)
        self.parent, self.name = parent, name

    def close(self) -> None:
        with self.parent.open(self.name, stored=True) as raw:
            self._write(raw, self.parent.level)


@contextmanager
def text_member(container: Container, name: str, gz: bool = False) -> Iterator[BinaryIO]:
    """A member, gzip-compressed when it is a `.gz` rotation."""
    with container.open(name, stored=gz) as raw:  # deflating gzip data again gains nothing
        if gz:
            level = getattr(container, "level", None) or getattr(container, "parent").level
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=level) as fh:
                yield fh
        else:
            yield raw


def write_text(container: Container, name: str, text: str, encoding: str = "utf-8", newline: str = "\n") -> int:
    data = Encoder(encoding, newline)(text)
    with container.open(name) as fh:
        fh.write(data)
    return len(data)


# ---- log streams --------------------------------------------------------------------------------


@dataclass
class Part:
    """One file of a rotated log: records with ms < until go here."""

    container: Container
    name: str
    until: int
    gz: bool = False


def merged(streams: Iterable[Iterable[tuple]]) -> Iterator[tuple]:
    return heapq.merge(*streams, key=itemgetter(0))


def write_log(records: Iterator[tuple], format_line, parts: list[Part], encoder_factory, padder=None) -> int:
    """Stream time-ordered records into rotated parts, one 10-minute window at a time (rotation
    boundaries fall on window boundaries). With a padder, filler is interleaved into every window
    up to `padder.end`. Returns the bytes written."""
    written = 0
    index = 0
    opened = None
    fh = encoder = None
    ms_buf: list[int] = []
    lines: list[str] = []

    def open_part(i: int) -> None:
        nonlocal opened, fh, encoder
        if opened is not None:
            opened.__exit__(None, None, None)
        opened = text_member(parts[i].container, parts[i].name, parts[i].gz)
        fh = opened.__enter__()
        encoder = encoder_factory()

    def rotate(window: int) -> None:
        nonlocal index
        while index + 1 < len(parts) and window >= parts[index].until:
            index += 1
            open_part(index)

    def emit(window: int) -> None:
        nonlocal written
        if padder is not None:
            text = padder.interleave(window, ms_buf, lines, written)
        else:
            text = "\n".join(lines) + "\n" if lines else ""
        if text:
            data = encoder(text)
            fh.write(data)
            written += len(data)
        ms_buf.clear()
        lines.clear()

    open_part(0)
    window = None if padder is None else padder.start - padder.start % WINDOW
    if window is not None:
        rotate(window)
    for rec in records:
        ms = rec[0]
        if window is None:
            window = ms - ms % WINDOW
            rotate(window)
        while ms >= window + WINDOW:
            emit(window)
            window += WINDOW
            if padder is None and ms >= window + WINDOW:
                window = ms - ms % WINDOW  # nothing to pad: jump over quiet windows
            rotate(window)
        ms_buf.append(ms)
        lines.append(format_line(rec))
    if window is not None:
        emit(window)
        if padder is not None:
            window += WINDOW
            while window < padder.end:
                rotate(window)
                emit(window)
                window += WINDOW
    opened.__exit__(None, None, None)
    return written


def crc(text: str) -> int:
    return zlib.crc32(text.encode())


# ---- line formats -------------------------------------------------------------------------------


def gateway_formatter(style: str, tz_min: int):
    """(ms, level, thread, component, message, detail) -> text; style z | offset | naive."""
    if style == "naive":
        def stamp(ms):
            return clock.iso(ms, tz_min, sep=" ", zone=None)
    elif style == "offset":
        def stamp(ms):
            return clock.iso(ms, tz_min)
    else:
        stamp = clock.iso

    def fmt(rec: tuple) -> str:
        ms, level, thread, component, message, detail = rec
        line = f"{stamp(ms)} {level} [{thread}] {component} - {message}"
        if detail:
            return line + "\n" + "\n".join(detail)
        return line

    return fmt


SUBS_OLD = {"vpxLro": "commonvpxLro", "vpxdEvent": "vpxdvpxdEvent", "PropertyProvider": "PropertyProvider",
            "Default": "Default", "MoCluster": "vpxdMoCluster", "vpxdHostCnx": "vpxdvpxdHostCnx"}


class VcenterFormatter:
    """vpxd records -> lines in one layout, with the vCenter clock and global numbering of tasks/events."""

    def __init__(self, layout: str, skew: int, tz_min: int, seed_text: str):
        self.layout, self.skew, self.tz = layout, skew, tz_min
        base = crc(seed_text)
        self.next_task = 88000 + base % 9000
        self.next_snap = 700 + base % 300
        self.next_event = 4517000 + base % 90000
        self.tasks: dict[tuple, str] = {}
        self.snaps: dict[tuple, str] = {}
        if layout == "win5x":
            self.threads = [f"{(base >> i) % 9000 + 1000:05d}" for i in range(0, 24, 2)]
        elif layout == "vpxd55":
            self.threads = [f"7F{(base * (i + 3)) % 0xFFFFFFFF:08X}00" for i in range(12)]
        else:
            self.threads = [f"7FE{(base * (i + 7)) % 0xFFFFFFF:07X}00"[:12] for i in range(12)]

    def task_id(self, key: tuple) -> str:
        tid = self.tasks.get(key)
        if tid is None:
            prefix = "lro" if key[0] == "lro" else "task"
            tid = f"{prefix}-{self.next_task}"
            self.next_task += 1 + (self.next_task % 3 == 0)
            self.tasks[key] = tid
        return tid

    def __call__(self, rec: tuple) -> str:
        ms, level, sub, opid, message, detail, task_key, snap_key, flags = rec
        vc_ms = ms + self.skew
        if flags:
            if flags & 1:
                message = message.replace("{task}", self.task_id(task_key))
            if flags & 2:
                snap = self.snaps.get(snap_key)
                if snap is None:
                    snap = self.snaps[snap_key] = f"snapshot-{self.next_snap}"
                    self.next_snap += 1
                message = message.replace("{snap}", snap)
            if flags & 4:
                message = message.replace("{ev}", str(self.next_event))
                self.next_event += 1
            if flags & 8:
                message = message.replace("{created}", clock.iso(vc_ms)[:-1] + f"{(ms * 7) % 1000:03d}Z")
            if flags & 16:
                self.tasks.pop(task_key, None)
        thread = self.threads[crc(opid or sub) % len(self.threads)]
        if self.layout == "vpxd65":
            meta = f"[Originator@6876 sub={sub} opID={opid}]" if opid else f"[Originator@6876 sub={sub}]"
            line = f"{clock.iso(vc_ms)} {level} vpxd[{thread}] {meta} {message}"
        elif self.layout == "vpxd55":
            op = f" opID={opid}" if opid else ""
            line = f"{clock.iso(vc_ms, self.tz)} [{thread} {level} '{SUBS_OLD.get(sub, sub)}'{op}] {message}"
        else:
            op = f" opID={opid}" if opid else ""
            stamp = clock.iso(vc_ms, self.tz, sep=" ", zone=None)
            line = f"[{stamp} {thread} {level} '{SUBS_OLD.get(sub, sub)}'{op}] {message}"
        if detail:
            return line + "\n" + "\n".join(f"--> {d}" if d else "-->" for d in detail)
        return line


# ---- padding ------------------------------------------------------------------------------------


class Padder:
    """Realistic filler to reach a requested volume: one block of a few thousand lines, built once,
    replayed window after window with shifted timestamps (polars does the formatting)."""

    BLOCK = 4096

    def __init__(self, budget: int, start: int, end: int, bodies: list[str], stamp: str, offset_ms: int = 0,
                 prefix: str = "", seed: int = 0):
        self.budget, self.start, self.end = budget, start, end
        n = len(bodies)
        step = WINDOW // self.BLOCK
        # spread offsets over the window, a little jittered but sorted
        self.offsets = pl.Series("o", [i * step + (i * 7919 + seed) % step for i in range(self.BLOCK)],
                                 dtype=pl.Int64)
        self.bodies = pl.Series("b", [bodies[(i * 31 + seed) % n] for i in range(self.BLOCK)])
        self.stamp, self.offset_ms, self.prefix = stamp, offset_ms, prefix
        self.avg = sum(len(prefix) + 24 + len(b) + 1 for b in self.bodies.to_list()) / self.BLOCK

    def lines(self, window_start: int, n: int) -> pl.DataFrame:
        reps = -(-n // self.BLOCK)
        idx = pl.Series("i", [(k * self.BLOCK) // max(1, n) for k in range(n)] if n <= self.BLOCK else
                        [k % self.BLOCK for k in range(n)], dtype=pl.Int64)
        frame = pl.DataFrame({"o": self.offsets.gather(idx % self.BLOCK), "b": self.bodies.gather(idx % self.BLOCK),
                              "r": idx // self.BLOCK if reps > 1 else pl.Series("r", [0] * n, dtype=pl.Int64)})
        frame = frame.with_columns(ms=pl.col("o") + window_start + pl.col("r"))
        return frame.select(
            "ms",
            line=pl.concat_str([
                pl.lit(self.prefix),
                pl.from_epoch(pl.col("ms") + self.offset_ms, time_unit="ms").dt.strftime(self.stamp),
                pl.col("b")]))

    def interleave(self, window_start: int, ms: list[int], lines: list[str], written: int) -> str:
        span = max(1, self.end - self.start)
        target = self.budget * min(1.0, (window_start + WINDOW - self.start) / span)
        real = sum(len(x) + 1 for x in lines)
        n = int(max(0.0, target - written - real) / self.avg)
        if window_start >= self.end:
            n = 0
        if n == 0:
            return "\n".join(lines) + "\n" if lines else ""
        pad = self.lines(window_start, n)
        if lines:
            frame = pl.concat([pl.DataFrame({"ms": pl.Series(ms, dtype=pl.Int64), "line": lines}), pad])
            frame = frame.sort("ms", maintain_order=True)
        else:
            frame = pad
        return frame["line"].str.join("\n").item() + "\n"
