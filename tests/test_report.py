"""The HTML report without a browser: structure, escaping, offline-ness, tolerance of odd input."""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analyzer.report import render, view
from analyzer.report.page import CSP, code_spans, script_json, static, unpacked_json

FIXTURES = Path(__file__).parent / "fixtures"
PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror="window.__pwned=2">',
    "{{ 7*7 }}",
    "</script><script>window.__pwned=3</script>",
    "' onmouseover='window.__pwned=4' x='",
)


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"analysis_{name}.json").read_text(encoding="utf-8"))


class Page(HTMLParser):
    """Collects what a browser would act on: tags, attributes, script bodies, text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict, str]] = []
        self.texts: list[str] = []
        self._script: dict | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)
        else:
            self.texts.append(data)

    def ids(self) -> list[str]:
        return [a["id"] for _, a in self.tags if a.get("id")]

    def text(self) -> str:
        return " ".join(self.texts)


def assert_inert(html: str) -> Page:
    """Everything a browser would run or fetch is ours; log-derived strings are only text."""
    page = Page(html)
    fetching = {"img", "image", "iframe", "frame", "object", "embed", "link", "base", "form",
                "audio", "video", "source", "use"}
    assert [t for t, _ in page.tags if t in fetching] == []
    handlers = [(t, k) for t, a in page.tags for k in a if k.lower().startswith("on")]
    assert handlers == []
    assert [a for a, _ in page.scripts] == [{"type": "application/gzip", "id": "data",
                                             "data-encoding": "gzip+base64"},
                                            {"type": "application/json", "id": "messages"}, {}]
    data_body, code_body = page.scripts[0][1], page.scripts[-1][1]
    json.loads(page.scripts[1][1])  # the messages block too
    assert code_body.strip() == static("report.js").strip()
    assert re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", data_body)  # base64 only: nothing can end the script
    unpacked_json(data_body)  # the data block stayed one intact JSON value
    for tag, attrs in page.tags:
        for name in ("href", "src", "action", "xlink:href", "formaction"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)
    return page


# ---------------------------------------------------------------- the sample bundle

@pytest.fixture(scope="module")
def sample_html() -> str:
    return render(load("sample"))


def test_page_is_self_contained_and_offline(sample_html):
    assert_inert(sample_html)
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP.replace(chr(39), "&#39;")}">' \
        in sample_html
    assert "default-src 'none'" in CSP and "connect-src" not in CSP
    assert not re.search(r"url\((?!#)", sample_html)
    assert "@import" not in sample_html and "<link" not in sample_html
    assert static("report.css") in sample_html


def test_script_builds_dom_without_html_parsing():
    code = static("report.js")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setTimeout(\"", "createContextualFragment"):
        assert sink not in code


def test_header_shows_bundle_facts(sample_html):
    text = Page(sample_html).text()
    for expected in ("case-2405140010001234.zip", "2405140010001234",
                     "3f6c1e0a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e",
                     "2024-05-15 08:00:00Z", "bundle-analyzer 0.1.0",
                     "vCenter 2.4 s ahead of the appliance", "57 pairs", "+09:00"):
        assert expected in text
    assert "missing" not in text.split("Sources in the bundle")[1].split("Find VM")[0]


def test_outage_card_comes_first_and_explains_its_verdicts_once(sample_html):
    page = Page(sample_html)
    card_ids = [a["id"] for t, a in page.tags if t == "article"]
    assert card_ids[0].startswith("o-")
    # 5 verdicts, 2 of them explained by the outage: 1 outage card + 3 own cards
    assert len(card_ids) == 4
    outage = sample_html.split(f'id="{card_ids[0]}"')[1].split("</article>")[0]
    assert "2 cycles</strong> on <strong>2 VMs" in outage
    assert "APP01#17" in outage and "DB01#5" in outage
    # the outage's remediation is listed once even though two verdicts carry it
    assert outage.count("Sign in to the appliance") == 1


def test_own_cards_are_sorted_critical_first(sample_html):
    page = Page(sample_html)
    severities = [a["class"].split("sev-")[1] for t, a in page.tags
                  if t == "article" and "outage" not in a["class"]]
    assert severities == ["critical", "critical", "warning"]


def test_card_shows_error_cause_confidence_evidence_remediation(sample_html):
    card = sample_html.split("Disk upload timed out</h3>")[1].split("</article>")[0]
    assert "Error ID 1011" in card
    assert "vcenter_read_throttled" in card and "medium" in card
    assert "Logs/GatewayService.log:91544" in card
    assert "2024-05-14 11:40:00Z" in card
    assert "Move the VM to a less loaded host" in card
    assert "troubleshoot-replication-vmware#error-id-1011" in card


def test_timeline_data_is_compact_and_complete(sample_html):
    page = Page(sample_html)
    data = unpacked_json(page.scripts[0][1])
    assert [vm[0] for vm in data["vms"]] == ["APP01", "DB01", "FILE01", "WEB01", "WEB02",
                                              "LEGACY01"]  # by host, host-less last
    assert sum(len(c) for c in data["cycles"]) == 29
    app01 = data["cycles"][0]
    failed = [c for c in app01 if data["outcomes"][c[2]] == "failed"]
    assert [c[4] for c in failed] == ["APP01#17", "APP01#18"]
    # APP01#17 is explained through the outage, APP01#18 by its own verdict
    first, second = (data["findings"][c[10][0]] for c in failed)
    assert first[0].startswith("o-") and "outage" in first[5]
    assert second[2] == "vcenter_read_throttled"
    assert data["outages"][0][1] - data["outages"][0][0] == 45 * 60
    file01 = data["cycles"][2][0]
    assert file01[1] == -1 and data["outcomes"][file01[2]] == "in_progress"


def test_filters_offer_what_the_bundle_holds(sample_html):
    options = re.findall(r'<option value="([^"]*)">', sample_html)
    assert "disk_upload_timed_out" in options
    assert "conflicting_vcenter_task" in options and "gateway_service_down" in options
    assert 'id="f-search" list="vm-names"' in sample_html


def test_vm_table_has_one_row_per_vm_with_sort_keys(sample_html):
    rows = re.findall(r'<tr data-vm="(\d+)" data-name="([^"]*)"[^>]*data-health="(\d)"',
                      sample_html)
    assert len(rows) == 6
    assert [name for _, name, _ in rows][:2] == ["app01", "web01"]  # critical first
    assert [int(h) for _, _, h in rows] == sorted(int(h) for _, _, h in rows)


def test_evidence_notes_and_outage_verdict_lines_are_shown():
    doc = load("sample")
    doc["outages"][0]["evidence"][2]["note"] = "the service stopped"
    failure = {"source": "gateway_log", "member": "Logs/GatewayService.log", "line": 88300,
               "ts": "2024-05-14T10:58:00Z", "text": "Replication cycle failed. vm=APP01 cycleId=17",
               "note": "the error"}
    doc["verdicts"][1]["evidence"].append(failure)
    html = render(doc)
    outage = html.split('class="card outage')[1].split("</article>")[0]
    assert '<span class="note">the service stopped</span>' in outage
    # the explained verdict's own line is listed with it, the shared outage lines are not repeated
    assert "Logs/GatewayService.log:88300" in outage
    assert outage.count("Logs/GatewayService.log:88191") == 1


def test_fixtures_follow_the_analysis_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema_path = Path(__file__).parents[1] / "analyzer" / "schema" / "analysis-v1.json"
    if not schema_path.exists():
        pytest.skip("no analysis schema in this tree")
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(load("sample"))
    jsonschema.Draft202012Validator(schema).validate(text_doc())


# ---------------------------------------------------------------- hostile input

def test_hostile_strings_stay_text():
    doc = load("hostile")
    html = render(doc)
    page = assert_inert(html)
    text = page.text()
    for payload in PAYLOADS:
        assert payload in text
    for raw in ("<script>window", "<img src=x", "</script><script>"):
        assert raw not in html
    # Jinja did not evaluate the template syntax inside data
    assert "both failed cycles. {{ 7*7 }}" in text


def test_hostile_data_block_cannot_close_its_script():
    html = render(load("hostile"))
    body = html.split('<script type="application/gzip" id="data" data-encoding="gzip+base64">')[1].split("</script>")[0]
    assert re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", body)
    data = unpacked_json(body)
    assert any("</script><script>" in e[3] for row in data["errors"] for e in row)


def test_missing_source_reads_not_evaluated():
    text = Page(render(load("hostile"))).text()
    row = text.split("vCenter tasks (vpxd / task export)")[1].split("Find VM")[0]
    assert "missing" in row and "not evaluated" in row and "snapshot_creation_stuck" in row


FREE_TEXT_SKIP = {"health", "outcome", "type", "confidence", "severity", "schema", "start", "end",
                  "ts", "first", "last", "first_seen", "last_seen", "analyzed_at",
                  "last_successful_cycle_end"}


POISON = PAYLOADS + ("`<img src=x onerror=alert(1)>`",)  # backticks become <code> spans


def poison(node, key=None):
    """Appends a payload to every free-text string of the document."""
    if isinstance(node, dict):
        return {k: poison(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [poison(v, key) for v in node]
    if isinstance(node, str) and key not in FREE_TEXT_SKIP:
        return node + POISON[len(node) % len(POISON)]
    return node


def test_every_free_text_field_is_escaped():
    html = render(poison(load("sample")))
    assert_inert(html)
    assert "window.__pwned" in html  # the payloads are there, as text


def test_code_spans_escape_inside_and_outside():
    assert code_spans("Run `Get-Service asrgwy` now") == "Run <code>Get-Service asrgwy</code> now"
    assert code_spans("a `<script>` & b") == "a <code>&lt;script&gt;</code> &amp; b"
    assert code_spans("odd ` <b>") == "odd ` &lt;b&gt;"


def test_script_json_escapes_markup_characters():
    out = script_json({"t": "</script><!-- & \u2028"})
    assert "<" not in out and ">" not in out and "&" not in out and "\u2028" not in out
    assert json.loads(out) == {"t": "</script><!-- & \u2028"}


# ---------------------------------------------------------------- odd input degrades

@pytest.mark.parametrize("doc", [
    {},
    {"schema": "bundle-analyzer/analysis/v1", "bundle": None, "vms": None, "verdicts": "x"},
    {"vms": [{"vm": "A", "cycles": [{"id": "A#1", "start": "not a time", "end": 5}],
              "tasks": [{"start": None}], "errors": [7]}],
     "verdicts": [{"vm": "A", "error": None, "evidence": [{"line": None}], "outage": "nope"}],
     "outages": [{"id": "nope"}], "diagnostics": [{"severity": None}]},
], ids=["empty", "wrong-types", "broken-values"])
def test_odd_documents_render(doc):
    html = render(doc)
    assert_inert(html)
    assert html.rstrip().endswith("</html>")


def test_minimal_output_md_document_renders_without_extensions():
    doc = load("sample")
    for vm in doc["vms"]:
        for key in ("consecutive_failures", "tasks", "errors"):
            vm.pop(key)
    for v in doc["verdicts"]:
        v.pop("title"), v.pop("outage")
    for key in ("ticket", "missing_sources", "clock_skew", "appliance_tz"):
        doc["bundle"].pop(key)
    for key in ("outages", "not_evaluated"):
        doc.pop(key)
    page = assert_inert(render(doc))
    assert sum(1 for t, _ in page.tags if t == "article") == 5  # no outage: every verdict a card
    assert "Disk upload timed out" in page.text()  # title made from the error id


def test_no_verdicts_says_so_and_names_missing_sources():
    doc = load("hostile")
    doc["verdicts"], doc["outages"] = [], []
    assert "No failure was found in this bundle, but 1 source is missing" in render(doc)


def test_render_is_deterministic():
    doc = load("sample")
    assert render(copy.deepcopy(doc)) == render(doc)


# ---------------------------------------------------------------- view helpers

@pytest.mark.parametrize("value, expected", [
    ("2024-05-14T10:21:33Z", "2024-05-14 10:21:33Z"),
    ("2024-05-14T19:21:33.512+09:00", "2024-05-14 10:21:33Z"),
    ("2024-05-14T10:21:33.0705652Z", "2024-05-14 10:21:33Z"),
    ("yesterday", "yesterday"),
    (None, "—"),
])
def test_show_time(value, expected):
    assert view.show_time(value) == expected


@pytest.mark.parametrize("seconds, expected", [
    (0, "0 s"), (59, "59 s"), (812, "13 min 32 s"), (3600, "1 h"), (90061, "1 d 1 h"), (None, "—"),
])
def test_show_duration(seconds, expected):
    assert view.show_duration(seconds) == expected


@pytest.mark.parametrize("ident, expected", [
    ("disk_upload_timed_out", "Disk upload timed out"),
    ("vcenter_read_throttled", "vCenter read throttled"),
    ("esxi_host_network_unreachable", "ESXi host network unreachable"),
    ("cbt_reset_by_storage_vmotion", "CBT reset by storage vmotion"),
    (None, ""),
])
def test_humanize(ident, expected):
    assert view.humanize(ident) == expected


def test_show_bytes():
    assert view.show_bytes(734003200) == "700.0 MiB"
    assert view.show_bytes(0) == "0 B"
    assert view.show_bytes(None) == "—"


# ---------------------------------------------------------------- what was recognised, what was not

def text_doc() -> dict:
    """The sample document with what text sources add: findings, unexplained templates, an error
    outside the catalogue, a verdict read from text that gives no time, and a VM whose portal
    health and cycle history disagree."""
    doc = load("sample")
    doc["findings"] = [
        {"signature": "nfc_connect_failed", "kind": "evidence", "title": "NFC connection to an ESXi host on port 902 failed",
         "count": 7, "first_seen": "2024-05-14T09:00:00Z", "last_seen": "2024-05-14T09:30:00Z", "vms": ["APP01", "DB01"],
         "examples": [{"source": "text_log", "member": "vddk/vixDiskLib.log", "line": 12, "ts": "2024-05-14T09:00:00Z",
                       "text": "[NFC ERROR]NfcNewAuthdConnectionEx: Failed to connect to server esx07:902"}]},
        {"signature": "disk_upload_timed_out", "kind": "error", "count": 3, "first_seen": "2024-05-14T10:40:00Z",
         "last_seen": "2024-05-14T12:10:00Z", "vms": ["APP01"], "examples": []},
        {"signature": "cbt_fault", "kind": "evidence", "count": 1, "first_seen": None, "last_seen": None, "vms": [],
         "examples": [{"source": "text_log", "member": "notes.txt", "line": 3, "ts": None,
                       "text": "vim.hostd.vmsvc.cbt.noEpoch"}]},
    ]
    doc["unexplained"] = [
        {"template": f"Disk <n> of <name> failed step {n}", "count": n, "first_seen": "2024-05-14T09:00:00Z",
         "last_seen": "2024-05-14T10:00:00Z", "sources": ["text_log"],
         "example": {"member": "esx-esx07/var/run/log/hostd.log", "line": 100 + n, "text": f"Disk 2 of APP01 failed step {n}"}}
        for n in (2, 15, 1, 9, 4, 13, 3, 12, 5, 11, 6, 10, 7, 14, 8)
    ]
    doc["verdicts"].append({
        "vm": None, "error": "unrecognised_error", "error_code": "110088", "cause": "undetermined",
        "confidence": "low", "severity": "critical", "cycles": [], "first_seen": "2024-05-14T03:00:00Z",
        "last_seen": "2024-05-14T03:00:00Z",
        "summary": "The storage account 'migratelsa1' is not available for boot diagnostics.",
        "stated_causes": ["The storage account was moved to a different resource group or was deleted."],
        "remediation": ["Select a different storage account and retry the operation."], "references": [],
        "evidence": [{"source": "portal_events", "member": "ticket.txt", "line": 2, "ts": "2024-05-14T03:00:00Z",
                      "text": "The storage account 'migratelsa1' is not available for boot diagnostics."}],
        "title": "Error 110088 (not in the catalogue)", "outage": None})
    doc["verdicts"].append({
        "vm": "WEB02", "error": "internal_memory_allocation_failed", "error_code": None, "cause": "nfc_buffer_exhausted",
        "confidence": "medium", "severity": "critical", "cycles": [], "first_seen": None, "last_seen": None,
        "summary": "Memory allocation failed while reading the disks of WEB02.", "remediation": ["vMotion the VM."],
        "references": [], "evidence": [{"source": "text_log", "member": "mail.txt", "line": 1, "ts": None,
                                         "text": "The operation failed with the error 'Memory allocation failed. Out of memory.'"}],
        "title": "Internal error: Memory allocation failed", "outage": None})
    web02 = next(vm for vm in doc["vms"] if vm["vm"] == "WEB02")
    web02.update(health="critical", health_basis="portal", derived_health="healthy")
    web02["errors"].append({"ts": None, "error": "internal_memory_allocation_failed", "source": "text_log",
                            "text": "Memory allocation failed. Out of memory."})
    return doc


def section(html: str, dom_id: str) -> str:
    return html.split(f'<section id="{dom_id}"')[1].split("</section>")[0]


def test_recognised_panel_lists_every_finding_errors_first():
    html = render(text_doc())
    panel = section(html, "recognised")
    text = Page(panel).text()
    signatures = re.findall(r'data-signature="([^"]+)"', panel)
    assert signatures == ["disk_upload_timed_out", "nfc_connect_failed", "cbt_fault"]
    assert "NFC connection to an ESXi host on port 902 failed" in text  # the library's title
    assert "CBT fault" in text  # no title in the document: the id, humanized
    assert "× 7" in text and "2024-05-14 09:00:00Z → 2024-05-14 09:30:00Z" in text
    assert "APP01" in text and "DB01" in text
    assert "vddk/vixDiskLib.log:12" in text and "Failed to connect to server esx07:902" in text
    assert "notes.txt:3" in text and "time not given" in text  # the cbt line has no time
    assert "1 example line of 7" in text


def test_unexplained_panel_is_largest_first_and_folds_the_rest():
    html = render(text_doc())
    panel = section(html, "unexplained")
    shown, folded = panel.split('<details class="more-templates">')
    counts = [int(n) for n in re.findall(r'<span class="pill">× (\d+)</span>', shown)]
    assert counts == list(range(15, 5, -1))
    assert re.findall(r'<span class="pill">× (\d+)</span>', folded) == ["5", "4", "3", "2", "1"]
    assert "5 more templates" in folded
    text = Page(shown).text()
    assert "Disk &lt;n&gt; of &lt;name&gt; failed step 15" in shown  # the template, escaped
    assert "esx-esx07/var/run/log/hostd.log:115" in text and "Disk 2 of APP01 failed step 15" in text
    assert "· other text ·" in text  # its source, by its label
    assert "(120 lines)" in Page(html).text()


def test_unrecognised_error_card_says_not_in_the_catalogue_and_shows_it_as_given():
    html = render(text_doc())
    card = html.split('unrecognised" id=')[1].split("</article>")[0]
    text = Page(card).text()
    assert "not in the catalogue" in text
    assert "Error ID 110088" in text
    assert "is not available for boot diagnostics." in text
    assert "The storage account was moved to a different resource group or was deleted." in text
    assert "Select a different storage account and retry the operation." in text
    assert "the catalogue does not know this error" in text and "Undetermined" not in text
    assert card.count('class="stated-causes"') == 1 and card.count('class="given-remediation"') == 1
    assert '<option value="unrecognised_error">Errors not in the catalogue (1)</option>' in html


def test_a_verdict_with_no_time_says_time_not_given_and_draws_nothing():
    html = render(text_doc())
    card = html.split("Internal error: Memory allocation failed</h3>")[1].split("</article>")[0]
    assert '<dd class="seen">time not given</dd>' in card
    assert "mail.txt:1</span> <time>time not given</time>" in card
    data = unpacked_json(Page(html).scripts[0][1])
    web02 = [vm[0] for vm in data["vms"]].index("WEB02")
    assert all(isinstance(e[0], int) for row in data["errors"] for e in row)
    assert len(data["errors"][web02]) == 0  # its only error has no time: no mark
    assert len(data["vms"][web02][5]) == 1  # but the lane knows its verdict (detail panel)


def test_portal_health_and_cycle_history_that_disagree_are_both_shown():
    html = render(text_doc())
    row = html.split('data-name="web02"')[1].split("</tr>")[0]
    assert "portal: critical · cycles: healthy" in row
    data = unpacked_json(Page(html).scripts[0][1])
    lanes = {vm[0]: vm for vm in data["vms"]}
    assert lanes["WEB02"][8] == "portal: critical · cycles: healthy"
    assert lanes["APP01"][8] == ""


def test_a_bundle_without_failure_sources_says_health_cannot_be_judged():
    doc = text_doc()
    assert "replication health cannot be judged" not in render(doc)
    doc["bundle"]["sources"] = {"text": {"files": 1, "records": 7, "unparsed": 0, "first": None, "last": None}}
    doc["verdicts"] = doc["outages"] = []
    html = render(doc)
    banner = Page(html.split('id="no-failure-source"')[1].split("</div>")[0]).text()
    assert "No gateway log or portal events: replication health cannot be judged." in banner
    verdicts = Page(section(html, "verdicts")).text()
    assert "No verdict" in verdicts and "3 signatures recognised, 15 unexplained message templates" in verdicts
    assert "No failure was found" not in html


def test_a_lone_vmware_log_through_the_pipeline(tmp_path):
    from analyzer import pipeline

    bundle = tmp_path / "ticket"
    (bundle / "APP01").mkdir(parents=True)
    (bundle / "APP01" / "vmware.log").write_bytes((FIXTURES / "real" / "vmware_log_outofspace_vic6163.log").read_bytes())
    html = render(pipeline.analyze(bundle).doc)
    page = assert_inert(html)
    assert "replication health cannot be judged" in page.text()
    recognised = Page(section(html, "recognised")).text()
    assert "A datastore of the VM ran out of space" in recognised
    assert "APP01/vmware.log:5" in recognised and "There is no more space for virtual disk" in recognised


def test_the_template_compiled_in_the_background_gives_the_same_page(monkeypatch):
    import analyzer.report as report_module
    from analyzer.report import page

    doc = load("sample")
    page.environment.cache_clear()
    plain = render(doc)
    page.environment.cache_clear()
    report_module.prepare()  # the command line starts it before the analysis
    assert render(doc) == plain
    assert report_module.TEMPLATE in {name for _, name in page.environment().cache}


def test_a_template_the_background_cannot_compile_fails_the_render_not_the_run(monkeypatch):
    import threading

    import jinja2

    import analyzer.report as report_module
    from analyzer.report import page

    page.environment.cache_clear()
    monkeypatch.setattr(report_module, "TEMPLATE", "no-such-template.html.j2")
    raised = []
    monkeypatch.setattr(threading, "excepthook", raised.append)
    report_module.prepare()
    for thread in threading.enumerate():
        if thread.name == "report-template":
            thread.join()
    assert raised == []  # no traceback from the background thread
    with pytest.raises(jinja2.TemplateNotFound):
        render(load("sample"))
    page.environment.cache_clear()
