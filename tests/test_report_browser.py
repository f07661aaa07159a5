"""The HTML report in Debian's chromium (Playwright, no browser download).

Screenshots land in tests/artifacts/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from analyzer import pipeline
from analyzer.report import render
from tests.chromium import needs_chromium
from tests.test_report_pipeline import HOSTILE_HOST, HOSTILE_VM, hostile_bundle

HERE = Path(__file__).parent
ARTIFACTS = HERE / "artifacts"

pytestmark = [pytest.mark.browser, needs_chromium]


def load(name: str) -> dict:
    return json.loads((HERE / "fixtures" / f"analysis_{name}.json").read_text(encoding="utf-8"))


class Opened:
    """A report page plus everything it tried to say or fetch."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        self.requests: list[str] = []


@pytest.fixture
def open_report(browser, tmp_path):
    opened: list[Opened] = []

    def _open(doc: dict, name: str = "report") -> Opened:
        path = tmp_path / f"{name}.html"
        path.write_text(render(doc), encoding="utf-8")
        page = browser.new_page()
        o = Opened(page)
        page.on("console", lambda m: o.errors.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: o.errors.append(str(e)))
        page.on("request", lambda r: o.requests.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_selector("html[data-ready]")
        opened.append(o)
        return o

    yield _open
    for o in opened:
        o.page.close()


def shot(page, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


def visible_rows(page) -> list[str]:
    return page.eval_on_selector_all("#vm-table tbody tr:not([hidden])",
                                     "rows => rows.map(r => r.dataset.name)")


def lane_names(page) -> list[str]:
    return page.eval_on_selector_all("#tl-svg text.vm-label",
                                     "ts => ts.map(t => t.lastChild.textContent)")


# ---------------------------------------------------------------- the sample bundle

def test_sample_renders_without_console_errors_or_requests(open_report):
    o = open_report(load("sample"), "sample")
    page = o.page
    assert o.errors == []
    assert [u for u in o.requests if not u.startswith("file:")] == []
    assert lane_names(page) == ["APP01", "DB01", "FILE01", "WEB01", "WEB02", "LEGACY01"]
    assert page.locator("#tl-svg .bar").count() == 29
    assert page.locator("#tl-svg .bar.o-failed").count() == 5
    assert page.locator("#tl-svg .outage-band").count() == 1
    assert page.locator("#tl-svg .err-mark").count() == 5
    assert page.locator("#tl-svg .task-bad").count() == 2
    assert page.locator("article.card:visible").count() == 4
    assert page.locator("#tl-axis text").filter(has_text="2024-05-14").count() >= 1
    shot(page, "report_sample.png")


def test_click_cycle_shows_its_verdict_evidence_and_events(open_report):
    page = open_report(load("sample")).page
    page.locator('#tl-svg .bar.o-failed[data-v="3"]').first.click()  # WEB01#4
    detail = page.locator("#detail")
    assert detail.locator("h3").inner_text() == "WEB01#4"
    text = detail.inner_text()
    assert "Conflicting vCenter task" in text and "confidence high" in text
    assert "vpxd-12.log.gz:40630" in text  # evidence line cloned from the card
    assert "task-90020" in text and "vim.fault.TaskInProgress" in text  # the vCenter task
    assert "CONTOSO\\svc-backup" in text  # the overlapping backup task and who ran it
    assert page.locator("#tl-svg .bar.selected").count() == 1
    shot(page, "report_sample_cycle.png", full_page=False)


def test_cycle_explained_by_outage_points_at_the_outage_card(open_report):
    page = open_report(load("sample")).page
    page.locator('#tl-svg .bar.o-failed[data-v="0"]').first.click()  # APP01#17
    text = page.locator("#detail").inner_text()
    assert "explained by the appliance-wide outage" in text
    assert "Service asrgwy stopped." in text
    page.locator("#detail a", has_text="open the verdict card").first.click()
    assert page.locator("article.card.outage").evaluate("e => e.classList.contains('highlight')")


def test_hover_shows_details(open_report):
    page = open_report(load("sample")).page
    page.locator('#tl-svg .bar.o-failed[data-v="0"]').nth(1).hover()
    tip = page.locator(".tooltip")
    assert tip.is_visible()
    assert "APP01#18" in tip.inner_text() and "0.12 MB/s" in tip.inner_text()


def test_filter_by_health_error_and_search(open_report):
    page = open_report(load("sample")).page
    page.select_option("#f-health", "critical")
    assert visible_rows(page) == ["app01", "web01"]
    assert lane_names(page) == ["APP01", "WEB01"]
    assert "Showing 2 of 6 VMs" in page.inner_text("#f-status")
    page.select_option("#f-health", "")
    page.select_option("#f-error", "internal_another_task_in_progress")
    assert visible_rows(page) == ["web01"]
    assert page.locator("article.card:visible").count() == 1
    page.click("#f-clear")
    page.fill("#f-search", "web")
    assert sorted(visible_rows(page)) == ["web01", "web02"]
    assert lane_names(page) == ["WEB01", "WEB02"]
    page.fill("#f-search", "")
    page.locator(".chip[data-filter='cause'][data-value='gateway_service_down']").click()
    assert sorted(visible_rows(page)) == ["app01", "db01"]


def test_search_enter_jumps_to_the_vm(open_report):
    page = open_report(load("sample")).page
    page.fill("#f-search", "db01")
    page.press("#f-search", "Enter")
    assert page.locator("#detail h3").inner_text() == "DB01"
    assert page.locator("#tl-svg .lane-bg.selected").count() == 1
    assert page.locator("#vm-table tr.selected").get_attribute("data-name") == "db01"


def test_sort_the_vm_table(open_report):
    page = open_report(load("sample")).page
    page.click("#vm-table button[data-sort='cycles']")  # most cycles first
    counts = [int(x) for x in page.eval_on_selector_all("#vm-table tbody tr", "rs => rs.map(r => r.dataset.cycles)")]
    assert counts == sorted(counts, reverse=True) and counts[0] == 9
    page.click("#vm-table button[data-sort='cycles']")
    counts = [int(x) for x in page.eval_on_selector_all("#vm-table tbody tr", "rs => rs.map(r => r.dataset.cycles)")]
    assert counts == sorted(counts)
    page.click("#vm-table button[data-sort='name']")
    assert visible_rows(page) == sorted(visible_rows(page))


def test_zoom_and_pan_change_the_view(open_report):
    page = open_report(load("sample")).page
    before = page.inner_text("#tl-foot")
    bars = page.locator("#tl-svg .bar").count()
    for _ in range(3):
        page.click("#tl-zoom-in")
    page.wait_for_timeout(100)
    zoomed = page.inner_text("#tl-foot")
    assert zoomed != before and "1 h" in zoomed
    assert page.locator("#tl-svg .bar").count() < bars
    box = page.locator("#tl-lanes").bounding_box()
    page.mouse.move(box["x"] + 600, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + 300, box["y"] + 60, steps=5)
    page.mouse.up()
    page.wait_for_timeout(100)
    assert page.inner_text("#tl-foot") != zoomed
    page.click("#tl-reset")
    page.wait_for_timeout(100)
    assert page.locator("#tl-svg .bar").count() == bars


@pytest.mark.parametrize("tz", ["+09:00", "Asia/Seoul"])
def test_appliance_local_time_option(open_report, tz):
    doc = load("sample")
    doc["bundle"]["appliance_tz"] = tz
    page = open_report(doc).page
    assert page.locator("#tl-axis text", has_text="UTC").count() == 1
    page.check("#tl-local")
    page.wait_for_timeout(100)
    assert page.locator("#tl-axis text", has_text=f"Local {tz}").count() == 1
    assert f"({tz})" in page.inner_text("#tl-foot")
    page.locator('#tl-svg .bar.o-failed[data-v="0"]').first.click()  # APP01#17, 09:58Z
    assert f"2024-05-14 18:58:00 ({tz})" in page.inner_text("#detail")
    assert page.locator("#tl-axis text", has_text="18:00").count() == 1


def test_unknown_appliance_zone_leaves_the_option_off(open_report):
    doc = load("sample")
    doc["bundle"]["appliance_tz"] = "Mars/Olympus"
    page = open_report(doc).page
    assert page.locator("#tl-local").is_disabled()


def test_print_puts_verdicts_first_and_fits_the_timeline(open_report):
    page = open_report(load("sample")).page
    page.set_viewport_size({"width": 1032, "height": 700})  # A4 landscape minus margins
    page.emulate_media(media="print")
    page.wait_for_timeout(100)
    assert not page.locator(".toolbar").is_visible()
    assert not page.locator("#detail").is_visible()
    svg_width = page.evaluate("document.getElementById('tl-svg').getBoundingClientRect().width")
    assert svg_width <= page.evaluate("document.documentElement.clientWidth")
    order = page.evaluate("['summary','verdicts','timeline'].map(id => "
                          "document.getElementById(id).getBoundingClientRect().top)")
    assert order == sorted(order)
    assert page.locator(".card details[open]").count() == page.locator(".card details").count()
    shot(page, "report_sample_print.png")
    ARTIFACTS.mkdir(exist_ok=True)
    pdf = page.pdf(path=str(ARTIFACTS / "report_sample.pdf"), prefer_css_page_size=True)
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 2


# ---------------------------------------------------------------- hostile input

def test_injection_strings_stay_inert(open_report):
    o = open_report(load("hostile"), "hostile")
    page = o.page
    assert o.errors == []
    assert [u for u in o.requests if not u.startswith("file:")] == []
    hostile_vm = 'APP01"><img src=x onerror="window.__pwned=2">'
    assert hostile_vm in lane_names(page)
    # exercise everything that builds DOM from data: hover, click, panel, filters, print
    for bar in page.locator("#tl-svg .bar").all()[:12]:
        bar.hover()
    page.locator('#tl-svg .bar.o-failed').first.click()
    page.locator("#tl-svg .err-mark").first.click()
    page.locator("#tl-svg .task-ok").first.click()
    page.locator("#vm-table .vm-link").first.click()
    page.locator("#tl-svg text.health-note").first.hover()  # the hostile VM's portal note
    for summary in page.locator(":is(#recognised, #unexplained) details:not([open]) > summary").all():
        summary.click()
    assert page.locator("article.card.unrecognised").is_visible()
    assert "<script>window.__pwned=1</script>" in page.inner_text("article.card.unrecognised")
    assert "</script><script>window.__pwned=3</script>" in page.inner_text("#recognised")
    assert "' onmouseover='window.__pwned=4' x='" in page.inner_text("#unexplained")
    page.fill("#f-search", "<script>")
    page.fill("#f-search", "")
    page.emulate_media(media="print")
    page.emulate_media(media="screen")
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert page.evaluate("document.scripts.length") == 3  # data, messages, code
    assert "{{ 7*7 }}" in page.inner_text("body")
    assert o.errors == []
    shot(page, "report_hostile.png")


def test_pipeline_bundle_with_markup_in_logs_and_file_names(open_report, tmp_path):
    doc = pipeline.analyze(hostile_bundle(tmp_path)).doc
    o = open_report(doc, "pipeline-hostile")
    page = o.page
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    assert lane_names(page) == [HOSTILE_VM]
    assert HOSTILE_HOST in page.text_content("#tl-svg")
    page.locator("#tl-svg .bar.o-failed").first.click()
    page.locator("#tl-svg .bar.o-failed").first.hover()
    page.locator("details.affected summary").click()
    page.wait_for_timeout(100)
    assert dialogs == [] and o.errors == []
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    shot(page, "report_pipeline_hostile.png")


# ---------------------------------------------------------------- fleet scale

def fleet_doc(**kwargs) -> dict:
    path = HERE.parent / "benchmarks" / "bench_report.py"
    spec = importlib.util.spec_from_file_location("bench_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fleet_doc(**kwargs)


@pytest.mark.slow
def test_fleet_of_500_vms_stays_usable(open_report):
    doc = fleet_doc(vms=500, days=3)
    assert len(render(doc).encode()) < 5_000_000
    o = open_report(doc, "fleet")
    page = o.page
    assert o.errors == []
    drawn = len(lane_names(page))
    assert 0 < drawn < 120  # lanes are virtualised, not 500 at once
    assert page.locator("article.card:visible").count() == 24  # the rest behind "show all"
    page.fill("#f-search", "vm-0420")
    page.press("#f-search", "Enter")
    assert page.locator("#detail h3").inner_text() == "vm-0420"
    assert "vm-0420" in lane_names(page)
    page.click("#f-clear")
    page.select_option("#f-health", "critical")
    critical = sum(vm["health"] == "critical" for vm in doc["vms"])
    assert len(visible_rows(page)) == critical
    page.locator("#tl-lanes").evaluate("e => { e.scrollTop = e.scrollHeight; }")
    page.wait_for_timeout(200)
    assert lane_names(page)[-1] == max((vm["vm"] for vm in doc["vms"] if vm["health"] == "critical"
                                        and vm["host"] == "esx24.contoso.local"))
    page.click("#f-clear")
    page.click("#cards-more")
    assert page.locator("article.card:visible").count() > 24
    assert o.errors == []
    page.locator("#timeline").scroll_into_view_if_needed()
    shot(page, "report_fleet.png", full_page=False)


def test_filtering_while_scrolled_to_the_bottom_raises_no_script_error(open_report):
    # a filter that leaves fewer lanes than the scroll position reaches used to make the
    # virtualised timeline read past its last row ("Cannot read properties of undefined")
    o = open_report(fleet_doc(vms=60, days=2), "scrolled")
    page = o.page
    page.evaluate("(() => { const el = document.getElementById('tl-lanes');"
                  " el.scrollTop = el.scrollHeight; })()")
    page.wait_for_timeout(300)
    page.fill("#f-search", "vm-0001")
    page.wait_for_timeout(300)
    assert o.errors == []
    assert "vm-0001" in lane_names(page)


# ---------------------------------------------------------------- text sources: real excerpts

REAL = HERE / "fixtures" / "real"
REAL_EXCERPTS = ("vddk_log_nfc_connect_timeout_velero118.log", "portal_blade_110088_boot_diagnostics.txt",
                 "vmware_log_outofspace_vic6163.log")


def test_report_of_real_excerpts_shows_what_was_recognised(open_report, tmp_path):
    bundle = tmp_path / "ticket"
    bundle.mkdir()
    for name in REAL_EXCERPTS:
        (bundle / name).write_bytes((REAL / name).read_bytes())
    o = open_report(pipeline.analyze(bundle).doc, "real-excerpts")
    page = o.page
    assert o.errors == []
    assert [u for u in o.requests if not u.startswith("file:")] == []
    recognised = page.locator("#recognised")
    assert recognised.is_visible()
    assert recognised.locator("li.finding").count() == 2
    assert recognised.locator("li.finding", has_text="NFC connection to an ESXi host on port 902 failed").is_visible()
    assert recognised.locator("li.finding", has_text="A datastore of the VM ran out of space").is_visible()
    assert page.locator("#unexplained li.template", has_text="Nfc_BindAndEstablishAuthdCnx3").is_visible()
    card = page.locator("article.card.unrecognised")
    assert card.count() == 1 and card.is_visible()
    assert "not in the catalogue" in card.inner_text().lower()
    assert "Error ID 110088" in card.inner_text()
    assert "Select a different storage account" in card.inner_text()
    assert page.locator("#no-failure-source").count() == 0  # the pasted blade is portal events
    body = page.inner_text("body")
    assert "Invalid Date" not in body and "NaN" not in body
    shot(page, "report_real_excerpts.png")


def test_a_lone_vmware_log_still_makes_a_useful_report(open_report, tmp_path):
    bundle = tmp_path / "ticket"
    (bundle / "SQL02").mkdir(parents=True)
    (bundle / "SQL02" / "vmware.log").write_bytes((REAL / "vmware_log_outofspace_vic6163.log").read_bytes())
    (bundle / "mail.txt").write_bytes((REAL / "gateway_exception_memory_allocation.txt").read_bytes())
    o = open_report(pipeline.analyze(bundle).doc, "lone-vmware-log")
    page = o.page
    assert o.errors == []
    assert "replication health cannot be judged" in page.inner_text("#no-failure-source")
    assert page.locator("#recognised li.finding", has_text="A datastore of the VM ran out of space").is_visible()
    card = page.locator("article.card", has_text="Memory allocation failed")  # read from text with no time
    assert card.is_visible() and "time not given" in card.inner_text()
    body = page.inner_text("body")
    assert "Invalid Date" not in body and "NaN" not in body
    shot(page, "report_lone_vmware_log.png")


def test_timeless_verdicts_and_portal_health_in_the_timeline(open_report):
    from tests.test_report import text_doc

    o = open_report(text_doc(), "text-doc")
    page = o.page
    assert o.errors == []
    notes = page.eval_on_selector_all("#tl-svg text.health-note", "ts => ts.map(t => t.textContent)")
    assert notes == ["portal: critical · cycles: healthy"]
    lanes = lane_names(page)
    page.locator("#tl-svg text.vm-label").nth(lanes.index("WEB02")).click()
    detail = page.inner_text("#detail")
    assert "critical (portal: critical · cycles: healthy)" in detail
    assert "Internal error: Memory allocation failed" in detail and "time not given" in detail
    page.locator("#tl-svg text.vm-label").nth(lanes.index("WEB02")).hover()
    assert "portal: critical · cycles: healthy" in page.inner_text(".tooltip")
    assert "portal: critical · cycles: healthy" in page.inner_text("#vm-table tr[data-name='web02']")
    for when in ("screen", "print"):
        page.emulate_media(media=when)
        body = page.inner_text("body")
        assert "Invalid Date" not in body and "NaN" not in body
    page.emulate_media(media="screen")
    page.locator("#unexplained details.more-templates summary").click()
    assert page.locator("#unexplained li.template:visible").count() == 15
    assert o.errors == []
    shot(page, "report_text_doc.png")
