"""Report injection, end to end: markup, script and template syntax in every source of a bundle
(gateway log lines and VM names, portal CSV, vpxd faults, the vSphere task CSV, member names,
bundle.toml's ticket, the bundle's own file name) render as text in the HTML report and the fleet
page, stay inert on the terminal, and cannot become spreadsheet formulas in verdicts.csv.

The report's own tests (test_report*.py) feed hostile analysis documents to the renderer; this
file goes through the command line with a real bundle, as a customer's bundle would.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tests.chromium import needs_chromium
from tests.test_hostile import (cli_env, gateway_log, make_zip, portal_csv, portal_row, run_cli,
                                task_csv, task_row, vpxd_log)

HERE = Path(__file__).parent
ARTIFACTS = HERE / "artifacts"

PWN = "window.__pwned=1"
# VM names (the gateway's vm= token takes no spaces unquoted)
VM_SCRIPT = "<script>alert(1)</script>"
VM_TEMPLATE = "{{7*7}}"
VM_SVG = f"<svg/onload={PWN}>"
VM_FORMULA = "=HYPERLINK(\"http://x\")"
VM_MARKUP = "[/x][link=file:///etc/passwd]ANSI\x1b[2J\x1b]0;pwned\x07"
VMS = [(VM_SCRIPT, "vm-1001"), (VM_TEMPLATE, "vm-1002"), (VM_SVG, "vm-1003"),
       (VM_FORMULA, "vm-1004"), (VM_MARKUP, "vm-1005")]
# A VM whose verdict rests on vCenter evidence, so vpxd and task-CSV text reach the report.
VM_VCENTER, VM_VCENTER_ID = "<i>VC01</i>", "vm-1006"
MEMBER = f'Logs/"><img src=x onerror={PWN}>{{{{ 7*7 }}}}.log'
LOG_TEXT = f"</script><script>{PWN}</script><b>bold</b>{{{{ 7*7 }}}}${{7*7}}"
PORTAL_MACHINE = f"<img src=x onerror={PWN}>"
PORTAL_TEXT = f"<iframe src=javascript:alert(5)></iframe> {{{{ 7*7 }}}} did not complete within the expected time."
FAULT_TEXT = f"<a href=javascript:alert(6)>Another task</a> is already in progress. {{{{ 7*7 }}}}"
TICKET = f"<script>{PWN}</script>{{{{ 7*7 }}}}"
BUNDLE_NAME = f'case"><img src=x onerror={PWN}>{{{{7*7}}}}.zip'
# Literal strings a reader must see as text somewhere in the report
SHOWN = [VM_SCRIPT, VM_TEMPLATE, VM_SVG, "{{ 7*7 }}", "<b>bold</b>", PORTAL_MACHINE]

LSA = "https://migratelsa1329610309.blob.core.windows.net/replication"
# A VDDK client log: a recognised NFC failure (a finding) and a line no signature knows (unexplained)
VDDK_MEMBER = f"vddk/<img src=x onerror={PWN}>vixDiskLib.log"
NFC_TEXT = f"[NFC ERROR]NfcNewAuthdConnectionEx: Failed to connect to server esx07.contoso.local:902 {LOG_TEXT}"
ODD_TEXT = f"Replica checksum mismatch <svg/onload={PWN}> {{{{ 7*7 }}}}"
VDDK_LOG = (f"2024-05-14T10:06:00.000Z| host-27| W115: {NFC_TEXT}\n"
            f"2024-05-14T10:06:01.000Z| host-27| E110: {ODD_TEXT}\n")
# An error outside the catalogue, with its causes and recommendation as the portal gives them
OUTSIDE_TEXT = f"<iframe src=javascript:alert(7)></iframe> Boot diagnostics storage is not available {{{{ 7*7 }}}}"
OUTSIDE_CAUSE = f"<script>{PWN}</script> moved or deleted"
OUTSIDE_ACTION = "' onmouseover='window.__pwned=4' x=' pick another account"


def injection_bundle(folder: Path) -> Path:
    logs = []
    failure = ("2024-05-14T10:05:00.000Z Error [7] Gateway.Service.Upload.BlobClient - Request to "
               f"{LSA}/{LOG_TEXT} failed. System.Net.WebException: Unable to connect to the remote server")
    for vm, vm_id in VMS:  # the same day for every VM: one storage outage explains them all
        logs.append(gateway_log(vm=vm, vm_id=vm_id, failure=failure))
    logs.append(gateway_log(vm=VM_VCENTER, vm_id=VM_VCENTER_ID, failure=failure, error=(
        'message="An internal error occurred. [Another task is already in progress]"')))
    outside = ",".join(['2024-05-14T10:32:00Z', "Error", "Enable replication", VM_TEMPLATE, "", "110088",
                        *('"' + t.replace('"', '""') + '"' for t in (OUTSIDE_TEXT, OUTSIDE_CAUSE, OUTSIDE_ACTION)),
                        "", ""])
    portal = portal_csv(portal_row(vm=PORTAL_MACHINE, message=PORTAL_TEXT),
                        portal_row(vm=VM_SCRIPT, message=PORTAL_TEXT, time="2024-05-14T10:31:00Z"), outside)
    vpxd = vpxd_log(vm_id=VM_VCENTER_ID, fault_msg=FAULT_TEXT.replace('"', "'"))
    tasks = task_csv(task_row(vm=VM_VCENTER, details=FAULT_TEXT, initiator=TICKET))
    toml = 'ticket = "' + TICKET.replace('"', '\\"') + '"\n'
    return make_zip(folder / BUNDLE_NAME, [
        ("bundle.toml", toml), (MEMBER, "".join(logs)), ("portal/events.csv", portal),
        ("vc/vpxd-1.log", vpxd), ("tasks.csv", tasks), (VDDK_MEMBER, VDDK_LOG)])


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict:
    """One analyze, one inspect and one batch over the injection bundle."""
    tmp = tmp_path_factory.mktemp("injection")
    bundles = tmp / "in"
    bundles.mkdir()
    bundle = injection_bundle(bundles)
    env = cli_env(tmp)
    analyze = run_cli("analyze", str(bundle), "-o", str(tmp / "out"), "--json",
                      str(tmp / "out" / "a.json"), cwd=tmp, env=env)
    inspect = run_cli("inspect", str(bundle), cwd=tmp, env=env)
    batch = run_cli("batch", str(bundles), "-o", str(tmp / "fleet"), "--jobs", "1", cwd=tmp, env=env)
    for name, result in (("analyze", analyze), ("inspect", inspect), ("batch", batch)):
        assert result.returncode == 0 and "Traceback" not in result.stderr, (name, result.stderr)
    [report] = (tmp / "out").glob("*.html")
    return {"tmp": tmp, "analyze": analyze, "inspect": inspect, "batch": batch, "report": report,
            "doc": json.loads((tmp / "out" / "a.json").read_text(encoding="utf-8")),
            "fleet": tmp / "fleet" / "index.html", "fleet_out": tmp / "fleet"}


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def test_every_hostile_string_reached_the_analysis(outputs):
    """Otherwise the tests below would prove nothing."""
    doc = outputs["doc"]
    names = {vm["vm"] for vm in doc["vms"]}
    assert {vm for vm, _ in VMS} <= names
    assert doc["bundle"]["ticket"] == TICKET and doc["bundle"]["name"] == BUNDLE_NAME
    text = "\n".join(strings(doc))
    for literal in (MEMBER, LOG_TEXT, "{{ 7*7 }}", PORTAL_MACHINE, TICKET):
        assert literal in text, literal
    assert any(v["vm"] == VM_VCENTER and v["cause"] == "conflicting_vcenter_task"
               for v in doc["verdicts"]), [(v["vm"], v["cause"]) for v in doc["verdicts"]]
    assert {v["vm"] for v in doc["verdicts"]} >= {vm for vm, _ in VMS}
    nfc = next(f for f in doc["findings"] if f["signature"] == "nfc_connect_failed")
    assert [(e["member"], e["text"]) for e in nfc["examples"]] == [(VDDK_MEMBER, NFC_TEXT)]
    assert [t["example"]["text"] for t in doc["unexplained"] if t["example"]["member"] == VDDK_MEMBER] == [ODD_TEXT]
    [outside] = [v for v in doc["verdicts"] if v["error"] == "unrecognised_error" and v["error_code"] == "110088"]
    assert (outside["summary"], outside["stated_causes"], outside["remediation"]) == (
        OUTSIDE_TEXT, [OUTSIDE_CAUSE], [OUTSIDE_ACTION.strip()])


def test_report_source_holds_no_markup_from_the_bundle(outputs):
    html = outputs["report"].read_text(encoding="utf-8")
    for raw in ("<script>alert", f"<script>{PWN}", "<img src=x", "<svg/onload", "<iframe",
                "<a href=javascript", "<b>bold</b>", "</script><script>"):
        assert raw not in html, raw
    assert html.count("<script") == 3  # the page's own: the JSON data, its words, the timeline script
    assert "{{ 7*7 }}" in html and "{{7*7}}" in html


def test_terminal_output_is_inert(outputs):
    for name in ("analyze", "inspect", "batch"):
        err = outputs[name].stderr
        assert "\x1b" not in err and "\x07" not in err, name  # no escape sequence from the data
    assert "[/x][link=file:///etc/passwd]ANSI\\x1b[2J" in outputs["analyze"].stderr
    assert VM_SCRIPT in outputs["analyze"].stderr


def test_verdicts_csv_cells_cannot_be_formulas(outputs):
    frame = pl.read_csv(outputs["fleet_out"] / "verdicts.csv", infer_schema_length=0)
    cells = [c for row in frame.rows() for c in row if c]
    assert not [c for c in cells if c[0] in "=+-@\t\r"]
    assert "'" + VM_FORMULA in cells


# ---------------------------------------------------------------- in the browser



class Watched:
    """A page and everything it said: console messages, page errors, dialogs, requests."""

    def __init__(self, browser, path: Path):
        self.events: list[str] = []
        self.requests: list[str] = []
        page = self.page = browser.new_page()
        page.on("console", lambda m: self.events.append(f"console {m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.events.append(f"pageerror: {e}"))
        page.on("dialog", lambda d: (self.events.append(f"dialog: {d.message}"), d.dismiss()))
        page.on("request", lambda r: self.requests.append(r.url))
        page.goto(path.as_uri())

    def inert(self) -> None:
        page = self.page
        assert self.events == []
        assert [u for u in self.requests if not u.startswith("file:")] == []
        assert page.evaluate("window.__pwned") is None
        assert page.evaluate("document.querySelectorAll('img, iframe, object, embed, a[href^=\"javascript\"]').length") == 0
        assert page.evaluate("[...document.querySelectorAll('*')].filter(e => [...e.attributes]"
                             ".some(a => a.name.startsWith('on'))).length") == 0


def visible_text(page) -> str:
    """The body's text plus SVG text (timeline labels are not in innerText everywhere)."""
    return page.evaluate("document.body.innerText + '\\n' + [...document.querySelectorAll('svg text')]"
                         ".map(t => t.textContent).join('\\n')")


@pytest.mark.browser
@needs_chromium
def test_report_in_chromium_runs_no_script_from_the_bundle(outputs, browser):
    watched = Watched(browser, outputs["report"])
    page = watched.page
    page.wait_for_selector("html[data-ready]")
    # everything that builds DOM from data: hover, click, detail panel, filters, search
    for bar in page.locator("#tl-svg .bar").all()[:10]:
        bar.hover()
    for selector in ("#tl-svg .bar", "#tl-svg .err-mark", "#tl-svg .task-bad", "#vm-table .vm-link",
                     "article.card"):
        for node in page.locator(selector).all()[:3]:
            node.click(force=True)  # marks may overlap; the click still reaches the page
    page.fill("#f-search", "<script>")
    page.fill("#f-search", "")
    watched.inert()
    assert page.evaluate("document.scripts.length") == 3  # data, words, code
    text = visible_text(page)
    for literal in SHOWN + [VDDK_MEMBER, NFC_TEXT, ODD_TEXT, OUTSIDE_TEXT, OUTSIDE_CAUSE]:
        assert literal in text, literal
    assert page.locator("article.card.unrecognised").count() == 1
    for payload in (MEMBER, LOG_TEXT, TICKET, BUNDLE_NAME):  # where the template sat, no 49
        assert payload.replace("{{ 7*7 }}", "49").replace("{{7*7}}", "49") not in text, payload
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "injection_report.png"), full_page=True)
    page.close()


@pytest.mark.browser
@needs_chromium
def test_fleet_page_in_chromium_runs_no_script_from_the_bundle(outputs, browser):
    watched = Watched(browser, outputs["fleet"])
    page = watched.page
    page.wait_for_load_state("load")
    for row in page.locator("tr").all()[:20]:
        row.hover()
    watched.inert()
    text = visible_text(page)
    assert VM_SCRIPT in text and BUNDLE_NAME in text
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "injection_fleet.png"), full_page=True)
    page.close()
