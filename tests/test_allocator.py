"""The command line sets polars' allocator before polars loads (cli.tune_process); importing
analyzer leaves it to polars."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUNED = ("from analyzer import cli; cli.tune_process(['analyze', 'case.zip']); import os, polars; "
         "print(os.environ['_RJEM_MALLOC_CONF'])")
IMPORTED = "import os, analyzer, analyzer.pipeline, polars; print(os.environ['_RJEM_MALLOC_CONF'])"


def _allocator_setting(code: str, env: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"} | env
    return subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_command_line_sets_the_allocator_before_polars_loads_unless_the_user_did():
    # polars puts its defaults first; the last setting of a key wins
    assert _allocator_setting(TUNED, {}).endswith("narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0")
    mine = _allocator_setting(TUNED, {"_RJEM_MALLOC_CONF": "narenas:4"})
    assert mine.endswith("narenas:4") and "narenas:1" not in mine


def test_importing_analyzer_leaves_the_allocator_to_polars():
    assert "narenas" not in _allocator_setting(IMPORTED, {})
