import pytest

from tests.chromium import ARGS, CHROMIUM


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
