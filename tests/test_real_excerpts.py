"""Each real excerpt of tests/fixtures/real, dropped alone into a folder bundle and analyzed as a
user would: it must be recognised as tests/fixtures/real/expected.toml says an engineer reads it.

Errors of the catalogue become verdicts (a pasted blade is portal events; any other text makes
verdicts when the bundle holds neither a gateway log nor portal events: CATALOGUE.md, "Where
errors may show"); errors outside the catalogue become `unrecognised_error` verdicts with their
id; evidence shows in `findings`. Nothing is met with silence.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from analyzer import pipeline

REAL = Path(__file__).parent / "fixtures" / "real"
EXCERPTS = tomllib.loads((REAL / "expected.toml").read_text(encoding="utf-8"))["excerpt"]


@pytest.mark.parametrize("excerpt", EXCERPTS, ids=[e["file"] for e in EXCERPTS])
def test_a_real_excerpt_alone_is_read_as_an_engineer_reads_it(tmp_path, excerpt):
    bundle = tmp_path / "ticket"
    bundle.mkdir()
    shutil.copy(REAL / excerpt["file"], bundle / excerpt["file"])
    doc = pipeline.analyze(bundle).doc

    verdicts = doc["verdicts"]
    errors = {v["error"] for v in verdicts if v["error"] != "unrecognised_error"}
    errors |= {f"unrecognised_error:{v['error_code']}" for v in verdicts if v["error"] == "unrecognised_error"}
    assert errors == set(excerpt["errors"]), [(v["vm"], v["error"], v["error_code"]) for v in verdicts]
    evidence = {f["signature"] for f in doc["findings"] if f["kind"] == "evidence"}
    assert set(excerpt["evidence"]) <= evidence, sorted(evidence)
    if "vm" in excerpt:
        named = {v["vm"] for v in verdicts} | {vm for f in doc["findings"] for vm in f["vms"]}
        assert excerpt["vm"] in named | {vm["vm"] for vm in doc["vms"]}
    read = doc["bundle"]["sources"]
    assert sum(s["records"] for s in read.values()) > 0, "the excerpt was met with silence"
