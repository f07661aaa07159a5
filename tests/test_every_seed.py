"""Every generated scenario at seeds 1-20 gives the verdicts its generator expects, as (VM, error,
cause) and, where the generator knows it, severity (scenarios must hold at every seed, not one).

1800-odd analyses, about two hours of CPU: skipped unless asked for by its marker,
`python -m pytest -m seeds tests/test_every_seed.py`. `scripts/score_scenarios.py` runs the same
(`score_one`) and prints recall, precision and cause accuracy over the disagreements.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from analyzer.sample.scenarios import SCENARIOS

SEEDS = range(1, 21)
NAMES = [name for name in sorted(SCENARIOS) if name != "fleet"]  # fleet is for scale (--size)
_SCORE = Path(__file__).resolve().parents[1] / "scripts" / "score_scenarios.py"


def score_one(name: str, seed: int) -> dict:
    spec = importlib.util.spec_from_file_location("score_scenarios", _SCORE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.score_one(name, seed)


@pytest.mark.slow
@pytest.mark.seeds
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", NAMES)
def test_the_scenario_gives_its_expected_verdicts_at_every_seed(request, name, seed):
    if "seeds" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("every scenario at every seed takes about two hours: run with -m seeds")
    result = score_one(name, seed)
    assert "crash" not in result, result.get("crash")
    want, got = set(map(tuple, result["want"])), set(map(tuple, result["got"]))
    assert (sorted(want - got, key=str), sorted(got - want, key=str)) == ([], []), "(missing, unexpected)"
    assert result["severity_wrong"] == []
