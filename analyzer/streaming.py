"""A large member parsed as it is read: members read ahead in a thread, a streamed member's
chunks pumped through a queue, its text cut into slices at record starts, the slices parsed a
few at a time, and their diagnostics merged as if the member had been parsed whole.

ingest.py decides what is streamed and parses each slice; this module only moves the bytes.
"""

from __future__ import annotations

import queue
import re
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from analyzer import bundle
from analyzer.diagnostics import Diagnostics

SLICE_BYTES = 16 << 20  # large log members are parsed in slices of about this size
SLICE_THREADS = 2  # slices parsed at once
READ_AHEAD = True  # read the next member while this one is parsed
STREAM_OVER = 1 << 20  # larger members are parsed as they are read, not first held whole
STREAM_QUEUE = 4  # chunks (bundle.CHUNK) read ahead of a streamed member's parsing
_LOOKAHEAD = 64 << 10  # see stream_slices


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def read_ahead(members: Iterator[bundle.Member]) -> Iterator[bundle.Member]:
    """The members, each next one read (inflated) in a thread while this one is parsed. The
    reader waits until a member is taken before it reads another: one member more in memory.
    A streamed member's rest is read in that thread too, STREAM_QUEUE chunks ahead of its parse."""
    if not READ_AHEAD:
        yield from members
        return
    handoff: queue.Queue = queue.Queue()
    taken = threading.Semaphore(0)
    stop = threading.Event()

    def read() -> None:
        try:
            for member in members:
                if member.rest is not None:  # read here, into a queue the parser takes from
                    chunks: queue.Queue = queue.Queue(STREAM_QUEUE)
                    handoff.put(replace(member, rest=_received(chunks)))
                    _pump(member.rest, chunks, stop)
                else:
                    handoff.put(member)
                del member
                taken.acquire()
                if stop.is_set():
                    return
            handoff.put(None)
        except BaseException as exc:  # the walker's own errors reach the caller
            handoff.put(_Failed(exc))

    threading.Thread(target=read, name="bundle-reader", daemon=True).start()
    try:
        while (item := handoff.get()) is not None:
            if isinstance(item, _Failed):
                raise item.exc
            taken.release()
            yield item
            del item
    finally:
        stop.set()
        taken.release()


def _pump(rest: Iterator[bytes], chunks: queue.Queue, stop: threading.Event) -> None:
    """Read a streamed member's rest into `chunks`, then None; what breaks it goes there too."""
    def put(item) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    try:
        for chunk in rest:
            if not put(chunk):
                return
    except bundle.MemberDropped as exc:
        put(_Failed(exc))
        return
    except BaseException as exc:
        put(_Failed(exc))
        raise
    put(None)


def _received(chunks: queue.Queue) -> Iterator[bytes]:
    while (item := chunks.get()) is not None:
        if isinstance(item, _Failed):
            raise item.exc
        yield item


def in_threads(work, items: Iterator[tuple]) -> Iterator:
    """work(*item) for each item, in order, SLICE_THREADS at a time: polars releases the GIL, and
    the string kernels of one slice use one core."""
    if SLICE_THREADS < 2:
        yield from (work(*item) for item in items)
        return
    with ThreadPoolExecutor(SLICE_THREADS) as pool:
        running: deque = deque()
        for item in items:
            running.append(pool.submit(work, *item))
            del item  # a slice is held by its task only
            if len(running) >= SLICE_THREADS:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()


def slices(text: str | bytes, record_start) -> Iterator[tuple[str | bytes, int]]:
    """(piece, number of its first line): pieces of about SLICE_BYTES, each cut before a line
    `record_start` finds (without the newline between them), or the whole text."""
    if not isinstance(text, bytes) or record_start is None:
        yield text, 1
        return
    start, line = 0, 1
    while len(text) - start > SLICE_BYTES:
        cut = record_start.search(text, start + SLICE_BYTES)
        if cut is None:
            break
        newline = cut.start()
        yield text[start:newline - (text[newline - 1] == 13)], line  # 13: the CR of CRLF
        line += text.count(b"\n", start, newline) + 1
        start = newline + 1
    yield (text[start:] if start else text), line


def stream_slices(first: bytes, rest: Iterator[bytes],
                   record_start) -> Iterator[tuple[bytes, int, bool]]:
    """The pieces slices cuts from first + rest, reading the rest only as far as the next cut
    needs: (piece, number of its first line, whether it is the last). A cut is taken only once
    _LOOKAHEAD bytes past it are read, so that it falls where it would in the whole text. Each
    byte is copied once into its piece; only the few chunks around a cut are joined to find it."""
    held, size = [first], len(first)  # chunks read but not yet cut
    line, ended = 1, False
    while True:
        tail = cut = None
        if size > SLICE_BYTES:
            keep, tail = _split_at(held, SLICE_BYTES)
            cut = record_start.search(tail)
        if cut is None or (not ended and cut.end() + _LOOKAHEAD > len(tail)):
            if ended:
                yield b"".join(held), line, True
                return
            if size <= SLICE_BYTES:
                need = SLICE_BYTES + _LOOKAHEAD - size
            else:  # a cut near the end needs a little more; none at all, half as much again
                need = _LOOKAHEAD if cut is not None else size // 2  # (linear time)
            for chunk in rest:
                held.append(chunk)
                size += len(chunk)
                need -= len(chunk)
                if need <= 0:
                    break
            else:
                ended = True
            continue
        newline = cut.start()
        keep = [part for part in (*keep, tail[:newline]) if part]
        if keep and keep[-1].endswith(b"\r"):
            keep[-1] = keep[-1][:-1]  # the CR of CRLF
        piece = b"".join(keep)
        del keep
        yield piece, line, False
        line += piece.count(b"\n") + 1
        del piece
        held = [tail[newline + 1:]]
        size = len(held[0])


def _split_at(chunks: list[bytes], at: int) -> tuple[list[bytes], bytes]:
    """The chunks' bytes before offset `at` (whole chunks, then a part of one) and after it, joined."""
    before, offset = [], 0
    for i, chunk in enumerate(chunks):
        if offset + len(chunk) > at:
            if at > offset:
                before.append(chunk[:at - offset])
            return before, b"".join([chunk[at - offset:], *chunks[i + 1:]])
        before.append(chunk)
        offset += len(chunk)
    return before, b""


def merge_slice_diagnostics(parts: list[Diagnostics]) -> Diagnostics:
    """The slices' diagnostics as one parse of the whole member gives them: a code each slice
    reports once becomes one diagnostic whose leading count is the sum; its location and
    samples are the first slice's. Anything else is kept as it is."""
    groups: dict[tuple[str, str], list[list]] = {}
    for i, part in enumerate(parts):
        for d in part.items:
            groups.setdefault((d.severity, d.code), [[] for _ in parts])[i].append(d)
    merged = Diagnostics()
    for per_slice in groups.values():
        items = [d for found in per_slice for d in found]
        counts = [re.match(r"\d+(?= )", d.message) for d in items]
        if any(len(found) > 1 for found in per_slice):
            for d in items:
                merged.put(d)
            continue
        first = items[0]
        if len(items) > 1 and all(counts):
            message = f"{sum(int(m.group()) for m in counts)}{first.message[counts[0].end():]}"
            first = replace(first, message=message)
        merged.put(first)
    return merged
