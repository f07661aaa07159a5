"""Goodlog: on a healthy generated bundle no error signature fires (Sigma's goodlog idea)."""

from __future__ import annotations

import pytest

from analyzer import pipeline, sample


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 7])
def test_no_error_signature_fires_on_a_healthy_bundle(tmp_path, seed):
    bundle = next(p for p in sample.write_bundles(["healthy"], tmp_path, vms=6, days=2, seed=seed)
                  if p.suffix == ".zip")
    analysis = pipeline.analyze(bundle)
    assert analysis.doc["bundle"]["sources"]["gateway_log"]["records"] > 0, "the healthy bundle has no gateway records"
    matches = analysis.tables["matches"]
    fired = matches.filter(matches["kind"] == "error")
    assert fired.height == 0, fired.select("signature", "source", "member", "line", "text").head(10)
