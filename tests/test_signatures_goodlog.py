"""Goodlog: on a healthy generated bundle no error signature fires (Sigma's goodlog idea).

Needs the scenario generator (analyzer/sample.py) and the pipeline; skipped until they exist.
"""

from __future__ import annotations

import pytest

sample = pytest.importorskip("analyzer.sample", reason="scenario generator not available yet")
pipeline = pytest.importorskip("analyzer.pipeline")
if not hasattr(sample, "write_bundles"):
    pytest.skip("analyzer.sample.write_bundles not available yet", allow_module_level=True)


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
