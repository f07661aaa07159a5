"""Importing analyzer sets polars' allocator before polars loads (analyzer/__init__.py)."""

import os
import subprocess
import sys


def _allocator_setting(env: dict) -> str:
    code = "import analyzer, os, polars; print(os.environ['_RJEM_MALLOC_CONF'])"
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"} | env
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_analyzer_sets_the_allocator_before_polars_loads_unless_the_user_did():
    # polars puts its defaults first; the last setting of a key wins
    assert _allocator_setting({}).endswith("narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0")
    mine = _allocator_setting({"_RJEM_MALLOC_CONF": "narenas:4"})
    assert mine.endswith("narenas:4") and "narenas:1" not in mine
