"""The signature library on the real excerpts of tests/fixtures/real, independent of any parser.

Each excerpt is read as text_log rows, one per line as written (the generic text source's fallback
for a member with no timestamp layout). The signatures found must be the errors and evidence that
tests/fixtures/real/expected.toml says an engineer would recognise: no more, no fewer. Errors outside
the catalogue (`unrecognised_error:<id>`) are not the library's to find. Where the oracle names a
cause instead of an evidence id, any evidence signature listed for that cause counts.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import polars as pl
import pytest

from analyzer import tables
from analyzer.signatures import load_library, match

REAL = Path(__file__).parent / "fixtures" / "real"
EXCERPTS = tomllib.loads((REAL / "expected.toml").read_text(encoding="utf-8"))["excerpt"]


@pytest.fixture(scope="module")
def library():
    return load_library()


def _evidence_of_cause(library, cause_id: str) -> set[str]:
    return {e for sig in library.errors() for c in sig.causes if c.id == cause_id for e in c.evidence
            if not e.startswith("detect.")}


@pytest.mark.parametrize("excerpt", EXCERPTS, ids=[e["file"] for e in EXCERPTS])
def test_a_real_excerpt_yields_what_an_engineer_reads_in_it(library, excerpt):
    lines = (REAL / excerpt["file"]).read_text(encoding="utf-8").splitlines()
    frame = tables.conform("text_log", pl.DataFrame({
        "member": [excerpt["file"]] * len(lines), "line": range(1, len(lines) + 1), "message": lines}))
    found = match(library, "text_log", frame)
    got = {kind: set(found.filter(pl.col("kind") == kind)["signature"]) for kind in ("error", "evidence")}

    assert got["error"] == {e for e in excerpt["errors"] if not e.startswith("unrecognised_error:")}
    for wanted in excerpt["evidence"]:
        accepted = {wanted} if wanted in library.signatures else _evidence_of_cause(library, wanted)
        assert got["evidence"] & accepted, f"{wanted} not recognised; found {sorted(got['evidence'])}"
    explained = set().union(*({w} if w in library.signatures else _evidence_of_cause(library, w)
                              for w in excerpt["evidence"]))
    assert got["evidence"] <= explained, f"unexpected evidence {sorted(got['evidence'] - explained)}"
