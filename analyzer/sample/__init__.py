"""Generated support bundles: `bundle-analyzer sample SCENARIO... -o DIR`.

An appliance replicating N VMs over D days (initial replication, then delta cycles on the
catalogue's schedule), with the failure a scenario names, written as a bundle that looks like one
from the field (gateway log, vpxd, portal events) plus `<name>.expected.json`: the verdicts a
correct analyzer must report. Deterministic: the same arguments give the same bytes.

    list_scenarios() -> [(name, description)]
    write_bundles(["healthy", "outage-storage"], Path("out"), vms=6, days=2, seed=1)
    parse_size("512MiB") -> 536870912
"""

from __future__ import annotations

import re
from pathlib import Path

from analyzer.sample.assemble import write_bundle
from analyzer.sample.catalogue import ERROR_IDS
from analyzer.sample.scenarios import SCENARIOS, build

__all__ = ["ERROR_IDS", "check", "list_scenarios", "parse_size", "write_bundles"]

_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "KIB": 1 << 10, "M": 1000**2, "MB": 1000**2, "MIB": 1 << 20,
          "G": 1000**3, "GB": 1000**3, "GIB": 1 << 30, "T": 1000**4, "TB": 1000**4, "TIB": 1 << 40}


def list_scenarios() -> list[tuple[str, str]]:
    """(name, one-line description) for every scenario, sorted by name."""
    return [(name, s.description) for name, s in sorted(SCENARIOS.items())]


def parse_size(text: str) -> int:
    """"512MiB", "1GiB", "200MB", "1.5G", "1048576" -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text or "")
    unit = m.group(2).upper() if m else None
    if not m or unit not in _UNITS:
        raise ValueError(f"cannot read size {text!r}: write a number with an optional unit, e.g. 512MiB, 1GiB, "
                         f"200MB or 1048576")
    return int(float(m.group(1)) * _UNITS[unit])


def check(names: list[str], vms: int, days: int, size: int | None = None) -> None:
    """ValueError (one line, naming the fix) unless write_bundles can make these bundles."""
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario {', '.join(map(repr, unknown))}: "
                         f"`bundle-analyzer sample --list` shows the {len(SCENARIOS)} names")
    if vms < 1 or days <= 0:
        raise ValueError("--vms must be at least 1 and --days greater than 0")
    if size is not None and size <= 0:
        raise ValueError("--size must be more than 0 bytes, e.g. 512MiB")


def write_bundles(names: list[str], out_dir: Path, vms: int = 6, days: int = 2, seed: int = 1,
                  size: int | None = None) -> list[Path]:
    """One bundle per scenario: out_dir/<name>.zip, plus out_dir/<name>.expected.json beside it."""
    check(names, vms, days, size)
    out_dir = Path(out_dir)
    paths = []
    for name in names:
        built = build(name, seed, vms, days, size)
        paths.append(write_bundle(name, built, out_dir, seed, size))
    return paths
