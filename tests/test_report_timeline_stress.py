"""The virtualised timeline of a generated 300-VM report, driven through scroll, zoom, filter (down to
no row and back), clicks, resizes and print in Debian's chromium: no script error at any step, and the
lanes drawn always cover the visible part of the list."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer import pipeline
from analyzer.report import render
from analyzer.sample import write_bundles
from tests.chromium import needs_chromium
from tests.test_report_browser import lane_names, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]

VMS = 300


@pytest.fixture(scope="module")
def fleet_report(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("fleet300")
    [bundle] = write_bundles(["fleet"], out, vms=VMS, days=2, seed=1)
    doc = pipeline.analyze(bundle).doc
    path = out / "fleet300.html"
    path.write_text(render(doc), encoding="utf-8")
    return path, doc


class Timeline:
    """One report page, what it reported on the console, and the checks run after every step."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def settle(self) -> None:
        """Two animation frames: every redraw a step queued has run."""
        self.page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")

    def step(self, name: str) -> list[str]:
        self.settle()
        assert self.errors == [], f"after {name}"
        return lane_names(self.page)

    def scroll_lanes(self, top: str) -> None:
        self.page.evaluate(f"(() => {{ const l = document.getElementById('tl-lanes'); l.scrollTop = {top}; }})()")

    def geometry(self) -> dict:
        return self.page.evaluate("""() => {
            const l = document.getElementById('tl-lanes'), s = document.getElementById('tl-svg');
            const top = parseFloat(s.style.top || '0');
            return { drawnTop: top, drawnBottom: top + Number(s.getAttribute('height')),
                     viewTop: l.scrollTop, viewBottom: Math.min(l.scrollTop + l.clientHeight, l.scrollHeight),
                     laneWidth: l.clientWidth, svgWidth: Number(s.getAttribute('width')) };
        }""")

    def assert_view_covered(self, name: str) -> None:
        g = self.geometry()
        assert g["drawnTop"] <= g["viewTop"] and g["drawnBottom"] >= g["viewBottom"], (name, g)
        assert g["svgWidth"] == max(480, g["laneWidth"]), (name, g)

    def foot(self) -> str:
        return self.page.inner_text("#tl-foot")


def lane_order(doc: dict) -> list[str]:
    """VM names top to bottom: grouped by ESXi host (VMs without one last), then by name."""
    vms = sorted(doc["vms"], key=lambda v: (v["host"] is None, (v["host"] or "").lower(), v["vm"].lower()))
    return [vm["vm"] for vm in vms]


def test_timeline_of_300_vms_survives_scroll_zoom_filter_click_resize_print(browser, fleet_report):
    path, doc = fleet_report
    page = browser.new_page()
    try:
        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto(path.as_uri())
        page.wait_for_selector("html[data-ready]")
        tl = Timeline(page)
        order = lane_order(doc)
        assert len(order) == VMS

        lanes = tl.step("load")
        assert 0 < len(lanes) < VMS and lanes[0] == order[0]  # virtualised: not all 300 at once
        assert tl.foot().startswith(f"{VMS} lanes")
        tl.assert_view_covered("load")

        # ---- scroll to the end, then back up with the wheel in steps, then to the top
        page.locator("#timeline").scroll_into_view_if_needed()
        tl.scroll_lanes("l.scrollHeight")
        lanes = tl.step("scroll to the end")
        assert lanes[-1] == order[-1] and order[0] not in lanes
        tl.assert_view_covered("scroll to the end")
        box = page.locator("#tl-lanes").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + min(100, box["height"] / 2))
        for n in range(6):
            page.mouse.wheel(0, -1400)
            tl.step(f"wheel up {n}")
            tl.assert_view_covered(f"wheel up {n}")
        tl.scroll_lanes("0")
        lanes = tl.step("scroll back to the top")
        assert lanes[0] == order[0]

        # ---- zoom in and out (buttons, keyboard, ctrl + wheel), then the whole bundle
        whole = tl.foot()
        for _ in range(4):
            page.click("#tl-zoom-in")
        tl.step("zoom in")
        assert tl.foot() != whole
        page.focus("#tl-lanes")
        page.keyboard.press("-")
        page.keyboard.down("Control")
        page.mouse.wheel(0, 300)
        page.keyboard.up("Control")
        tl.step("zoom out")
        page.click("#tl-zoom-out")
        page.click("#tl-reset")
        tl.step("whole bundle")
        assert tl.foot() == whole

        # ---- filter to no row while scrolled half-way down, use the empty timeline, then restore
        tl.scroll_lanes("l.scrollHeight / 2")
        tl.step("scroll half-way")
        page.fill("#f-search", "no-such-vm")
        assert tl.step("filter to nothing") == []
        assert tl.foot().startswith("0 lanes")
        assert page.locator("#tl-axis text", has_text="no VM matches the filter").count() == 1
        assert "Showing 0 of 300 VMs" in page.inner_text("#f-status")
        page.locator("#tl-lanes").dispatch_event("scroll")
        page.click("#tl-zoom-in")
        page.click("#tl-reset")
        assert tl.step("scroll and zoom with no row") == []
        page.fill("#f-search", "")
        lanes = tl.step("filter restored")
        assert len(lanes) > 0 and lanes[0] == order[0]
        tl.assert_view_covered("filter restored")

        # ---- a click queues a redraw; a filter leaving no row lands before the next frame
        page.evaluate("""name => {
            [...document.querySelectorAll('#vm-table .vm-link')].find(b => b.textContent === name).click();
            const s = document.getElementById('f-search');
            s.value = 'no-such-vm';
            s.dispatchEvent(new Event('input'));
        }""", order[250])
        assert tl.step("click then filter to nothing in one frame") == []
        page.fill("#f-search", "")
        assert len(tl.step("filter restored again")) > 0

        # ---- scrolled to the end, a filter leaving a few lanes
        tl.scroll_lanes("l.scrollHeight")
        tl.step("scroll to the end again")
        page.select_option("#f-health", "critical")
        critical = sorted(vm["vm"] for vm in doc["vms"] if vm["health"] == "critical")
        assert sorted(tl.step("critical only")) == critical
        tl.assert_view_covered("critical only")
        page.click("#f-clear")
        assert len(tl.step("filters cleared")) > 0

        # ---- click a cycle named by a verdict card, then a failed bar, then a lane label
        links = page.locator("article.card .cycle-link:visible")
        assert links.count() > 0
        link = links.first
        cycle = link.inner_text()
        link.click()
        tl.step("cycle link")
        assert page.locator("#detail h3").inner_text() == cycle
        assert page.locator("#tl-svg .bar.selected").count() == 1
        page.locator("#tl-svg .bar.o-failed").first.click()
        tl.step("failed bar")
        assert "Outcome\nfailed" in page.inner_text("#detail")
        label = page.locator("#tl-svg text.vm-label").first
        label.click()
        tl.step("lane label")
        assert page.locator("#tl-svg .lane-bg.selected").count() == 1

        # ---- resize small and large
        for size in ({"width": 480, "height": 360}, {"width": 2400, "height": 1500}, {"width": 1400, "height": 900}):
            page.set_viewport_size(size)
            assert len(tl.step(f"viewport {size}")) > 0
            tl.assert_view_covered(f"viewport {size}")

        # ---- print: every lane; back on screen: virtualised again
        page.emulate_media(media="print")
        assert len(tl.step("print")) == VMS
        page.emulate_media(media="screen")
        lanes = tl.step("screen")
        assert 0 < len(lanes) < VMS
        tl.assert_view_covered("screen")

        tl.scroll_lanes("l.scrollHeight * 0.6")
        tl.step("final scroll")
        page.locator("#timeline").scroll_into_view_if_needed()
        shot(page, "report_fleet300_timeline.png", full_page=False)
        assert tl.errors == []
    finally:
        page.close()
