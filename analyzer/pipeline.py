"""The stage order. Only this module knows it.

bundle -> members -> source tables -> matches -> cycles -> verdicts -> analysis document

Members are processed one at a time: each is parsed, matched against the signatures of its
source, then reduced to the rows later stages need (structured events, warnings and errors,
matched rows) plus a per-minute activity count. So memory follows the largest member, not the
bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from analyzer.diagnostics import Diagnostics


@dataclass(frozen=True)
class Options:
    signatures: tuple[Path, ...] = ()  # extra signature dirs, override built-ins by id
    appliance_tz: str | None = None
    portal_tz: str | None = None
    vcenter_tz: str | None = None
    redact: bool = True
    dump_tables: Path | None = None


@dataclass
class Analysis:
    doc: dict  # the analysis JSON of OUTPUT.md (plus extensions), already redacted
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    members: list[dict] = field(default_factory=list)  # inspect: path, source, form, records, ...
    diagnostics: Diagnostics = field(default_factory=Diagnostics)


class UnusableBundle(Exception):
    """Nothing in the bundle can be read. The message is one line naming the file and the fix."""
