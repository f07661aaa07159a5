"""Korean texts of signatures (title_ko, summary_ko, [[causes]] title_ko and remediation_ko,
[undetermined] remediation_ko): what lint holds them to, what the built-in library keeps, and
that files without them still load and analyze."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from analyzer import pipeline
from analyzer.signatures import BUILTIN_DIR, CATALOGUE, cause_titles_ko, lint, load_library
from analyzer.signatures.load import SUMMARY_FIELDS
from analyzer.verdicts import CAUSE_TITLES, UNDETERMINED
from tests.test_signatures_lint import ERROR, EVIDENCE, _edit, _write

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = load_library()

# What a translation keeps as written: `commands`, KB numbers, ports and other numbers, *.domains,
# Windows and ESXi paths, file and dotted names (vmware.log, cbt.noEpoch). Boundaries are ASCII
# so a Korean particle glued to a token ("vmware.log에서") does not hide it.
_W = "[A-Za-z0-9_]"
_KEPT = re.compile(
    r"`[^`]+`|KB \d+|(?<![A-Za-z0-9_.\\/-])(?:\d{3,}|\*\.[a-z.]*[a-z]"
    rf"|[A-Za-z]:\\(?:{_W}+\\)*{_W}+(?:\.{_W}+)?|/[a-z]+(?:/[A-Za-z0-9_.-]+)*{_W}"
    rf"|[a-z][A-Za-z0-9_-]*(?:\.[a-zA-Z]{_W}*)+)(?!{_W})")


def _steps():
    for sig in LIBRARY.errors():
        for cause in sig.causes:
            yield from ((f"{sig.id}/{cause.id}/{n}", en, ko) for n, (en, ko) in
                        enumerate(zip(cause.remediation, cause.remediation_ko), 1))
        yield from ((f"{sig.id}/undetermined/{n}", en, ko) for n, (en, ko) in
                    enumerate(zip(sig.undetermined, sig.undetermined_ko), 1))


def test_korean_steps_keep_commands_ids_ports_and_paths():
    checked = 0
    for where, english, korean in _steps():
        kept = set(_KEPT.findall(english))
        assert kept <= set(_KEPT.findall(korean)), f"{where}: {sorted(kept - set(_KEPT.findall(korean)))}"
        checked += len(kept)
    assert checked > 150  # the pattern finds what it is meant to find
    assert {"`Start-Service asrgwy`", "KB 1003490", "902", "*.servicebus.windows.net", "vmware.log",
            "/etc/vmware/hostd/config.xml"} <= set(_KEPT.findall(" ".join(en for _, en, _ in _steps())))


def test_korean_summaries_fill_in_like_the_english():
    facts = {f: f"<{f}>" for f in SUMMARY_FIELDS}
    for sig in LIBRARY.signatures.values():
        if sig.summary:
            korean = sig.summary_ko.format_map(facts)
            assert "{" not in korean and re.search("[가-힣]", korean), sig.id
            assert {f for f in facts.values() if f in sig.summary.format_map(facts)} == \
                {f for f in facts.values() if f in korean}, sig.id


def test_a_cause_has_one_korean_label_across_signatures():
    labels: dict[str, set[str]] = {}
    for sig in LIBRARY.errors():
        for cause in sig.causes:
            labels.setdefault(cause.id, set()).add(cause.title_ko)
    assert {c: t for c, t in labels.items() if len(t) > 1} == {}


def test_every_cause_id_a_report_can_show_has_a_korean_label():
    titles = cause_titles_ko(LIBRARY)
    wanted = {c for causes in CATALOGUE.values() for c in causes or ()} | set(CAUSE_TITLES) | {UNDETERMINED}
    assert wanted - set(titles) == set()
    assert titles[UNDETERMINED] and titles["gateway_service_down"] == "게이트웨이 서비스가 실행되지 않음"


def test_a_user_directory_retitles_its_causes(tmp_path):
    directory = _write(tmp_path, {"err_widget.toml": ERROR, "ev_disk_gone.toml": EVIDENCE})
    assert cause_titles_ko(load_library([directory]))["gateway_service_down"] == \
        cause_titles_ko(LIBRARY)["gateway_service_down"]  # the built-in label comes first by id order
    library = load_library([directory], builtin=False)
    assert cause_titles_ko(library)["gateway_service_down"] == "위젯 서비스가 멈춤"


def _without_korean(text: str) -> str:
    """A signature file as written before Korean fields existed: every *_ko key taken out."""
    text = re.sub(r"(?m)^remediation_ko = \[(?:.*\]\n|\n(?:  .*\n)*?\]\n)", "", text)
    return re.sub(r'(?m)^(?:title|summary)_ko = ".*"\n', "", text)


# --- lint ---------------------------------------------------------------------------------------

CASES = [
    ("summary-ko-unknown-placeholder", _edit(ERROR, "{vm}의 위젯", "{machine}의 위젯"),
     "summary_ko", "unknown placeholder {machine}", "error"),
    ("summary-ko-other-placeholders", _edit(ERROR, "{vm}의 위젯", "{host}의 위젯"),
     "summary_ko", "placeholders differ from summary's: summary has {vm}, summary_ko has {host}", "error"),
    ("summary-ko-bad-brace", _edit(ERROR, "{vm}의 위젯", "{vm의 위젯"),
     "summary_ko", "bad placeholder", "error"),
    ("cause-steps-count", _edit(ERROR, 'remediation_ko = ["`Start-Service asrgwy`로 서비스를 시작하세요."]',
                                'remediation_ko = ["`Start-Service asrgwy`로 서비스를 시작하세요.", "또 하나"]'),
     "causes[1].remediation_ko", "2 Korean step(s) for 1 English step(s)", "error"),
    ("undetermined-steps-count", _edit(ERROR, 'remediation = ["check everything"]',
                                       'remediation = ["check everything", "and again"]'),
     "undetermined.remediation_ko", "1 Korean step(s) for 2 English step(s)", "error"),
    ("empty-title-ko", _edit(ERROR, 'title_ko = "위젯 실패"', 'title_ko = ""'),
     "title_ko", "must not be empty", "error"),
    ("misspelt-key", _edit(ERROR, 'title_ko = "위젯 실패"', 'titel_ko = "위젯 실패"'),
     "titel_ko", "unknown key 'titel_ko'", "error"),
    ("english-in-korean", _edit(ERROR, 'title_ko = "위젯 실패"', 'title_ko = "Widget failed"'),
     "title_ko", "has no Korean (Hangul) letters", "warning"),
    ("particle-after-placeholder", _edit(ERROR, "{vm}의 위젯", "{vm}이 위젯"),
     "summary_ko", "the particle '이' after a placeholder", "warning"),
    ("partly-korean", _edit(ERROR, 'title_ko = "위젯 서비스가 멈춤"\n', ""),
     "causes[1].title_ko", "missing: a Korean report (--lang ko) shows the English here", "warning"),
    ("no-korean-at-all", _without_korean(ERROR),
     None, "no Korean texts: a Korean report (--lang ko) shows this signature in English", "warning"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_lint_holds_the_korean_texts(tmp_path, case):
    name, error_text, key, fragment, severity = case
    problems = lint(_write(tmp_path, {"err_widget.toml": error_text, "ev_disk_gone.toml": EVIDENCE}))
    hits = [p for p in problems if fragment in p.message and p.key == key and p.file.endswith("err_widget.toml")]
    assert hits, f"expected {severity} at {key!r} with {fragment!r}; got:\n" + "\n".join(map(str, problems))
    assert hits[0].severity == severity
    if severity == "warning":
        assert [p for p in problems if p.severity == "error"] == []


# --- files without Korean -------------------------------------------------------------------------

def test_a_user_directory_without_korean_loads_lints_and_analyzes(tmp_path):
    """Korean is optional outside the built-in library: English-only files load, lint with one
    warning each, and analyze as before (a Korean report shows their English)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    for sid in ("disk_upload_timed_out", "cache_storage_unreachable"):
        text = _without_korean((BUILTIN_DIR / f"{sid}.toml").read_text(encoding="utf-8"))
        raw = tomllib.loads(text)
        assert not [k for table in (raw, raw.get("undetermined", {}), *raw.get("causes", ()))
                    for k in table if k.endswith("_ko")]
        (mine / f"{sid}.toml").write_text(text, encoding="utf-8")

    problems = lint(mine)
    assert [p.severity for p in problems] == ["warning", "warning"], "\n".join(map(str, problems))
    assert all(p.message.startswith("no Korean texts") for p in problems)

    library = load_library([mine])
    upload = library.signatures["disk_upload_timed_out"]
    assert (upload.title_ko, upload.summary_ko, upload.undetermined_ko) == ("", "", ())
    assert all(c.title_ko == "" and c.remediation_ko == () for c in upload.causes)
    assert library.signatures["disk_change_id_unavailable"].title_ko  # built-ins keep theirs

    bundle = ROOT / "sample_bundles" / "case-disk-upload-timeout.zip"
    doc = pipeline.analyze(bundle, pipeline.Options(signatures=(mine,))).doc
    assert {(v["error"], v["cause"]) for v in doc["verdicts"]} == {("disk_upload_timed_out", "cache_storage_unreachable")}
    assert all(v["remediation"] == list(upload.cause("cache_storage_unreachable").remediation) for v in doc["verdicts"])
