import functools
import subprocess
from pathlib import Path

import pytest

from tests.chromium import ARGS, CHROMIUM


@functools.cache
def chromium_version() -> str:
    if not Path(CHROMIUM).exists():
        return f"chromium: {CHROMIUM} not found (browser tests skipped)"
    try:
        run = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return f"chromium: {CHROMIUM} --version failed: {e}"
    return f"chromium: {run.stdout.strip() or f'no version printed (exit {run.returncode})'} ({CHROMIUM})"


def pytest_report_header(config):
    """Which chromium the browser tests run on, so a CI log shows it next to any failure."""
    return chromium_version()


def pytest_terminal_summary(terminalreporter, config):
    if config.get_verbosity() < 0:  # -q hides the header; the README and CI run with -q
        terminalreporter.write_line(chromium_version())


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A Playwright browser context on Debian's chromium with a fresh profile, one per module."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=CHROMIUM, args=ARGS,
            viewport={"width": 1400, "height": 900})
        yield context
        context.close()
