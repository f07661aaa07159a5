"""Matching throughput: the full signature library over a large generated gateway-log table,
against a per-line Python `re` loop with the same matchers.

    python benchmarks/bench_match.py [--mb 200] [--python-mb 4] [--error-rate 0.002]

The table repeats a block of everyday gateway records (progress, state changes, heartbeats, blob
commits, token renewals, ...) in which a small share of rows are the library's own gateway
examples and near-misses, so the prefilter has real candidates to pass on. MB counts the bytes of
the text columns the matchers read (message + detail). The Python loop runs over a slice and is
scaled; both sides must find the same (row, signature) pairs on that slice.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer import tables  # noqa: E402
from analyzer.signatures import load_library, match  # noqa: E402

MB = 1_000_000
T0 = datetime(2024, 5, 14, tzinfo=timezone.utc)


def everyday(rng: random.Random, n: int) -> dict:
    vm = f"APP{rng.randint(1, 400):03d}"
    cycle = rng.randint(1, 900)
    kind = rng.random()
    if kind < 0.55:
        total = rng.choice([2, 40, 120, 500]) * 1024**3
        done = rng.randint(0, total)
        msg = (f'Disk upload progress. vm={vm} cycleId={cycle} disk="[ds{rng.randint(1, 9):02d}] {vm}/{vm}_1.vmdk" '
               f"diskId=6000C29a-{rng.randint(0, 0xffff):04x} uploadedBytes={done} totalBytes={total} "
               f"rateMBps={rng.uniform(5, 90):.1f}")
        return {"level": "Info", "component": "Gateway.Service.DataPlane.DiskUploader", "message": msg,
                "event": "disk_progress", "vm": vm}
    if kind < 0.70:
        states = ["Queued", "CreatingSnapshot", "WaitingForArtefactsDisposalPreCycle", "QueryingChangedBlocks",
                  "UploadingDisks", "ReleasingSnapshot", "ConsolidatingDisks", "Completed"]
        k = rng.randrange(len(states) - 1)
        return {"level": "Info", "component": "Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine",
                "message": f"State changed. vm={vm} cycleId={cycle} from={states[k]} to={states[k + 1]}",
                "event": "state_changed", "vm": vm}
    if kind < 0.80:
        return {"level": "Verbose", "component": "Gateway.Service.DataPlane.CacheStorageClient",
                "message": f'Committed block list. vm={vm} blob="https://migratelsa1329610309.blob.core.windows.net/'
                           f'vm-{rng.randint(1000, 9999)}-2000/{rng.randint(1, 99999):08d}.vhd?sv=2021-08-06&sig=REDACTED"'
                           f" blocks={rng.randint(1, 4000)}"}
    if kind < 0.85:
        return {"level": "Info", "component": "Gateway.Service.Health.HeartbeatPublisher",
                "message": f"Heartbeat. activeCycles={rng.randint(0, 40)} queuedCycles={rng.randint(0, 5)}",
                "event": "heartbeat"}
    if kind < 0.90:
        return {"level": "Info", "component": "Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine",
                "message": f"Replication cycle completed. vm={vm} cycleId={cycle} durationSec={rng.randint(60, 9000)} "
                           f"uploadedBytes={rng.randint(0, 10**11)}", "event": "cycle_completed", "vm": vm}
    if kind < 0.95:
        return {"level": "Verbose", "component": "Gateway.Service.Azure.AadTokenProvider",
                "message": "Access token renewed. resource=https://vault.azure.net expiresInSec=3599"}
    return {"level": "Warning", "component": "Gateway.Service.Health.ResourceMonitor",
            "message": f"Memory usage high. workingSetMB={rng.randint(6000, 15000)} threshold=6144"}


def interesting_rows(library) -> list[dict]:
    """The library's gateway examples and near-misses as table rows."""
    rows = []
    for sig in library.signatures.values():
        columns = {m.column for m in sig.matchers if m.source == "gateway_log"}
        for ex in sig.examples:
            if ex.source == "gateway_log":
                rows.append({"level": "Error", **{c: ex.text for c in columns}, **dict(ex.columns)})
    return rows


def build(library, target_mb: float, error_rate: float, seed: int = 1) -> pl.DataFrame:
    rng = random.Random(seed)
    special = interesting_rows(library)
    block_rows = 20_000
    rows = [rng.choice(special) if rng.random() < error_rate else everyday(rng, n) for n in range(block_rows)]
    block = tables.conform("gateway_log", pl.DataFrame(rows, infer_schema_length=None))
    block_mb = text_bytes(block) / MB
    frame = pl.concat([block] * max(1, round(target_mb / block_mb)))
    return frame.with_columns(
        member=pl.lit("GatewayService.log"), line=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
        ts=pl.lit(T0) + pl.duration(milliseconds=pl.int_range(pl.len()) * 50))


def text_bytes(frame: pl.DataFrame) -> int:
    return int(frame.select(pl.col("message").str.len_bytes().sum() + pl.col("detail").str.len_bytes().sum()
                            .fill_null(0)).item())


def python_loop(library, rows: list[dict], literal_prefilter: bool) -> set[tuple[int, str]]:
    """Per line, per matcher: the same conditions with Python's `re` (the naive approach)."""
    compiled = []
    for sig in library.signatures.values():
        for m in sig.matchers:
            if m.source != "gateway_log":
                continue
            flags = re.IGNORECASE if m.ignore_case else 0
            pattern = m.regex or ("|".join(map(re.escape, m.literal)) if m.literal else None)
            lower = (lambda s: s.lower()) if m.ignore_case else (lambda s: s)
            compiled.append((sig.id, m, re.compile(pattern, flags) if pattern else None,
                             [lower(x) for x in m.literal], lower,
                             [(c, [lower(x) for x in v]) for c, v in m.contains],
                             [(c, [lower(x) for x in v]) for c, v in m.exclude]))
    found = set()
    for n, row in enumerate(rows):
        for sid, m, rx, literals, lower, contains, exclude in compiled:
            if (n, sid) in found:
                continue
            text = row[m.column]
            if text is None or any(str(row[c]) not in v for c, v in m.where):
                continue
            if literal_prefilter and literals and not any(x in lower(text) for x in literals):
                continue
            if any(not any(x in lower(row[c] or "") for x in v) for c, v in contains):
                continue
            if any(any(x in lower(row[c] or "") for x in v) for c, v in exclude):
                continue
            if m.regex and m.literal and not literal_prefilter:  # literal is part of the condition
                if not any(x in lower(text) for x in literals):
                    continue
            if rx is None or rx.search(text):
                found.add((n, sid))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200.0, help="size of the table's text, MB")
    parser.add_argument("--python-mb", type=float, default=4.0, help="slice for the Python loop, MB")
    parser.add_argument("--error-rate", type=float, default=0.002, help="share of interesting rows")
    args = parser.parse_args()

    library = load_library()
    matchers = sum(m.source == "gateway_log" for s in library.signatures.values() for m in s.matchers)
    frame = build(library, args.mb, args.error_rate)
    size = text_bytes(frame) / MB
    print(f"library: {len(library.signatures)} signatures, {matchers} gateway_log matchers")
    print(f"table: {frame.height:,} rows, {size:.1f} MB of text")

    match(library, "gateway_log", frame.head(1000))  # warm up (regex compilation caches)
    start = time.perf_counter()
    found = match(library, "gateway_log", frame)
    polars_s = time.perf_counter() - start
    polars_rate = size / polars_s
    print(f"polars matcher: {polars_s:.2f} s, {polars_rate:.1f} MB/s, {found.height:,} matches")

    rows_per_mb = frame.height / size
    piece = frame.head(int(rows_per_mb * args.python_mb))
    piece_mb = text_bytes(piece) / MB
    rows = piece.to_dicts()
    expected = {(n - 1, sid) for n, sid in match(library, "gateway_log", piece).select("line", "signature").rows()}
    for label, prefilter in (("Python re per line", False), ("Python re per line + literal check", True)):
        start = time.perf_counter()
        got = python_loop(library, rows, prefilter)
        took = time.perf_counter() - start
        rate = piece_mb / took
        same = "same matches" if got == expected else f"DIFFERENT matches ({len(got)} vs {len(expected)})"
        print(f"{label}: {took:.2f} s on {piece_mb:.1f} MB, {rate:.2f} MB/s "
              f"(polars is {polars_rate / rate:.0f}x faster); {same}")


if __name__ == "__main__":
    main()
