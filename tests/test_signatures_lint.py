"""One broken signature per validator, each with the message it must produce."""

from __future__ import annotations

import copy
import functools
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.signatures import SignatureError, lint, load_library

EVIDENCE = '''
id = "ev_disk_gone"
kind = "evidence"
title = "A disk went away"
title_ko = "디스크가 사라짐"
severity = "warning"
scope = "vm"

[[match]]
source = "gateway_log"
column = "message"
literal = ["went away"]
regex = \'\'\'disk (?P<disk>\\S+) went away\'\'\'

[[examples]]
source = "gateway_log"
text = "disk d1 went away"
captures = { disk = "d1" }

[[counterexamples]]
source = "gateway_log"
text = "disk d1 came back"
'''

ERROR = '''
id = "err_widget"
kind = "error"
title = "Widget failed"
title_ko = "위젯 실패"
severity = "critical"
codes = ["9001"]
summary = "Widget of {vm} failed."
summary_ko = "{vm}의 위젯이 실패했습니다."

[[match]]
source = "portal_events"
column = "error_id"
where = { error_id = ["9001"] }

[[match]]
source = "gateway_log"
column = "message"
literal = ["Widget failed"]
regex = \'\'\'Widget failed for (?P<vm>\\w+)\'\'\'
where = { level = ["Error"] }

[[causes]]
id = "gateway_service_down"
title_ko = "위젯 서비스가 멈춤"
remediation_ko = ["`Start-Service asrgwy`로 서비스를 시작하세요."]
evidence = ["detect.service_down", "ev_disk_gone"]
scope = "appliance"
before = "2h"
after = "15m"
remediation = ["Start-Service asrgwy"]

[undetermined]
remediation = ["check everything"]
remediation_ko = ["모든 것을 확인하세요."]

[[examples]]
source = "gateway_log"
text = "Widget failed for APP01"
captures = { vm = "APP01" }
columns = { level = "Error" }

[[examples]]
source = "portal_events"
text = "whatever"
columns = { error_id = "9001" }

[[counterexamples]]
source = "gateway_log"
text = "Widget failed for APP01"
columns = { level = "Info" }
'''


def _write(directory, files: dict[str, str]):
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def test_the_valid_pair_lints_clean(tmp_path):
    problems = lint(_write(tmp_path, {"ev_disk_gone.toml": EVIDENCE, "err_widget.toml": ERROR}))
    assert problems == [], "\n".join(map(str, problems))


# (case, error file text, evidence file text, expected key, expected message fragment, severity)
CASES = [
    ("toml-syntax", ERROR + "\nbroken = [", EVIDENCE, None, "not valid TOML", "error"),
    ("unknown-key", _edit(ERROR, 'severity = "critical"', 'severity = "critical"\nsevrity = "x"'), EVIDENCE,
     "sevrity", "unknown key 'sevrity'", "error"),
    ("wrong-type", _edit(ERROR, 'codes = ["9001"]', "codes = [9001]"), EVIDENCE,
     "codes[1]", "expected a string, got a number", "error"),
    ("missing-key", _edit(ERROR, 'title = "Widget failed"\n', ""), EVIDENCE,
     "title", "missing required key 'title'", "error"),
    ("bad-enum", _edit(ERROR, 'kind = "error"', 'kind = "errror"'), EVIDENCE,
     "kind", "'errror' is not an allowed value", "error"),
    ("unknown-column", _edit(ERROR, 'column = "message"', 'column = "mesage"'), EVIDENCE,
     "match[2].column", "'mesage' is not a column of this source", "error"),
    ("unknown-where-column", _edit(ERROR, 'where = { level = ["Error"] }', 'where = { lvl = ["Error"] }'),
     EVIDENCE, "match[2].where.lvl", "'lvl' is not a column of this source", "error"),
    ("unknown-source", _edit(ERROR, 'source = "portal_events"\ncolumn', 'source = "portal"\ncolumn'),
     EVIDENCE, "match[1].source", "'portal' is not an allowed value", "error"),
    ("id-not-stem", _edit(ERROR, 'id = "err_widget"', 'id = "err_widgets"'), EVIDENCE,
     "id", "differs from the file name", "error"),
    ("look-around", _edit(ERROR, "Widget failed for (?P<vm>\\w+)", "Widget failed for (?!x)(?P<vm>\\w+)"),
     EVIDENCE, "match[2].regex", "uses look-around", "error"),
    ("backreference", _edit(ERROR, "Widget failed for (?P<vm>\\w+)", "Widget (\\w+) \\1 for (?P<vm>\\w+)"),
     EVIDENCE, "match[2].regex", "uses a backreference", "error"),
    ("regex-syntax", _edit(ERROR, "Widget failed for (?P<vm>\\w+)", "Widget failed for (?P<vm>\\w+"),
     EVIDENCE, "match[2].regex", "does not compile in polars' Rust regex engine", "error"),
    ("literal-on-number", _edit(ERROR, 'column = "message"', 'column = "cycle_id"'), EVIDENCE,
     "match[2].column", "'cycle_id' of gateway_log is not text", "error"),
    ("matches-everything", _edit(ERROR, 'column = "error_id"\nwhere = { error_id = ["9001"] }',
                                 'column = "error_id"'), EVIDENCE,
     "match[1]", "it would match every row", "error"),
    ("regex-without-literal", ERROR, _edit(EVIDENCE, 'literal = ["went away"]\n', ""),
     "match[1].literal", "regex without a literal prefilter", "warning"),
    ("bad-window", _edit(ERROR, 'before = "2h"', 'before = "2 hours"'), EVIDENCE,
     "causes[1].before", "has the wrong form", "error"),
    ("empty-remediation", _edit(ERROR, 'remediation = ["Start-Service asrgwy"]', "remediation = []"),
     EVIDENCE, "causes[1].remediation", "must not be empty", "error"),
    ("missing-undetermined", _edit(ERROR, '[undetermined]\nremediation = ["check everything"]\n'
                                   'remediation_ko = ["모든 것을 확인하세요."]\n', ""),
     EVIDENCE, "undetermined.remediation", "missing remediation for `undetermined`", "error"),
    ("error-without-causes", ERROR[:ERROR.index("[[causes]]")] + ERROR[ERROR.index("[undetermined]"):],
     EVIDENCE, "causes", "an error needs at least one [[causes]] block", "error"),
    ("undetermined-as-cause", _edit(ERROR, 'id = "gateway_service_down"', 'id = "undetermined"'), EVIDENCE,
     "causes[1].id", "'undetermined' is implicit", "error"),
    ("two-fallbacks", _edit(ERROR, 'remediation = ["Start-Service asrgwy"]',
                            'remediation = ["a"]\nfallback = true\n\n[[causes]]\nid = "appliance_down"\n'
                            'evidence = ["detect.appliance_silence"]\nscope = "appliance"\nbefore = "1h"\n'
                            'after = "0s"\nfallback = true\nremediation = ["b"]'), EVIDENCE,
     "causes", "more than one cause has fallback = true", "error"),
    ("cause-without-evidence", _edit(ERROR, 'remediation = ["Start-Service asrgwy"]',
                                     'remediation = ["a"]\n\n[[causes]]\nid = "appliance_down"\n'
                                     'evidence = []\nscope = "appliance"\nbefore = "1h"\nafter = "0s"\n'
                                     'remediation = ["b"]'), EVIDENCE,
     "causes[2].evidence", "can never be chosen among several", "error"),
    ("unknown-evidence", _edit(ERROR, '"ev_disk_gone"]', '"ev_disk_gon"]'), EVIDENCE,
     "causes[1].evidence", "unknown evidence id 'ev_disk_gon'", "error"),
    ("unknown-detector", _edit(ERROR, '"detect.service_down"', '"detect.service_dwn"'), EVIDENCE,
     "causes[1].evidence", "unknown detector 'detect.service_dwn'", "error"),
    ("evidence-is-an-error", _edit(ERROR, '"ev_disk_gone"]', '"disk_upload_timed_out"]'), EVIDENCE,
     "causes[1].evidence", "'disk_upload_timed_out' is an error, not evidence", "error"),
    ("non-catalogue-cause", _edit(ERROR, 'id = "gateway_service_down"', 'id = "widget_broke"'), EVIDENCE,
     "causes", "'widget_broke' is not a catalogue cause id", "warning"),
    ("example-fails", _edit(ERROR, 'text = "Widget failed for APP01"\ncaptures',
                            'text = "Widget failed: APP01"\ncaptures'), EVIDENCE,
     "examples[1]", "does not match: match[2]: regex: got as far as 'Widget failed'", "error"),
    ("counterexample-matches", _edit(ERROR, 'columns = { level = "Info" }', 'columns = { level = "Error" }'),
     EVIDENCE, "counterexamples[1]", "matches, but it must not", "error"),
    ("wrong-capture-value", _edit(ERROR, 'captures = { vm = "APP01" }', 'captures = { vm = "APP02" }'),
     EVIDENCE, "examples[1]", "vm: expected 'APP02', got 'APP01'", "error"),
    ("capture-not-a-group", _edit(ERROR, 'captures = { vm = "APP01" }', 'captures = { vmm = "APP01" }'),
     EVIDENCE, "examples[1].captures.vmm", "'vmm' is not a named group", "error"),
    ("example-source-unread", _edit(ERROR, 'source = "gateway_log"\ntext', 'source = "vcenter_log"\ntext'),
     EVIDENCE, "examples[1].source", "no [[match]] block reads vcenter_log", "error"),
    ("summary-placeholder", _edit(ERROR, "Widget of {vm} failed.", "Widget of {machine} failed."), EVIDENCE,
     "summary", "unknown placeholder {machine}", "error"),
    ("detector-error-without-params", ERROR[:ERROR.index("[[match]]")] + ERROR[ERROR.index("[[causes]]"):
                                                                              ERROR.index("[[examples]]")],
     EVIDENCE, "match", "raised only by a detector", "error"),
    ("evidence-without-scope", ERROR, _edit(EVIDENCE, 'scope = "vm"\n', ""),
     "scope", "evidence needs a scope", "error"),
    ("any-with-column", ERROR, _edit(EVIDENCE, 'source = "gateway_log"\ncolumn = "message"', 'source = "any"\ncolumn = "message"'),
     "match[1]", "takes no column, where, contains, exclude or columns", "error"),
    ("any-example-misses-a-source", ERROR,
     _edit(_edit(EVIDENCE, 'source = "gateway_log"\ncolumn = "message"', 'source = "any"'),
           'source = "gateway_log"\ntext = "disk d1 went away"', 'source = "any"\ntext = "disk d1 went  away"'),
     "examples[1]", "does not match: in gateway_log: match[1]: literal", "error"),
    ("any-counterexample-matches", ERROR,
     _edit(_edit(EVIDENCE, 'source = "gateway_log"\ncolumn = "message"', 'source = "any"'),
           'source = "gateway_log"\ntext = "disk d1 came back"', 'source = "any"\ntext = "disk d9 went away"'),
     "counterexamples[1]", "matches, but it must not", "error"),
    ("any-matcher-without-any-example", ERROR,
     _edit(EVIDENCE, '[[examples]]', '[[match]]\nsource = "any"\nliteral = ["vanished"]\n\n[[examples]]'),
     "examples", "no example for the any matchers", "warning"),
    ("evidence-with-causes", ERROR, EVIDENCE + '\n[[causes]]\nid = "x"\nevidence = ["y"]\nscope = "vm"\n'
     'before = "1h"\nafter = "1h"\nremediation = ["z"]\n', "causes", "evidence signatures have no 'causes'", "error"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_validator(tmp_path, case):
    name, error_text, evidence_text, key, fragment, severity = case
    directory = _write(tmp_path, {"err_widget.toml": error_text, "ev_disk_gone.toml": evidence_text})
    problems = lint(directory)
    hits = [p for p in problems if fragment in p.message and p.key == key]
    assert hits, f"expected {severity} at {key!r} with {fragment!r}; got:\n" + "\n".join(map(str, problems))
    assert hits[0].severity == severity
    assert hits[0].file.endswith(".toml")
    if severity == "error":
        with pytest.raises(SignatureError) as raised:
            load_library([directory]) if name not in ("example-fails", "counterexample-matches",
                                                      "wrong-capture-value", "any-example-misses-a-source",
                                                      "any-counterexample-matches") else _raise_for(problems)
        assert raised.value.problems


def _raise_for(problems):
    """Examples run in lint and `signatures test`, not on every load (loads stay fast)."""
    raise SignatureError([p for p in problems if p.severity == "error"])


def test_hints_say_how_to_fix(tmp_path):
    text = _edit(ERROR, 'severity = "critical"', 'sevrity = "critical"')
    problems = lint(_write(tmp_path, {"err_widget.toml": text, "ev_disk_gone.toml": EVIDENCE}))
    unknown = next(p for p in problems if p.key == "sevrity")
    assert unknown.hint == "did you mean 'severity'?"
    missing = next(p for p in problems if p.key == "severity")
    assert "missing required key" in missing.message


def test_shared_error_id_needs_text(tmp_path):
    sibling = _edit(_edit(ERROR, 'id = "err_widget"', 'id = "err_gadget"'), "Widget failed", "Gadget failed")
    directory = _write(tmp_path, {"err_widget.toml": ERROR, "err_gadget.toml": sibling,
                                  "ev_disk_gone.toml": EVIDENCE})
    problems = [p for p in lint(directory) if "is shared with" in p.message]
    assert {p.file.rsplit("/", 1)[-1] for p in problems} == {"err_widget.toml", "err_gadget.toml"}
    assert problems[0].key == "match[1]"


def test_duplicate_ids_in_one_directory(tmp_path):
    directory = _write(tmp_path, {"a/ev_disk_gone.toml": EVIDENCE, "b/ev_disk_gone.toml": EVIDENCE,
                                  "err_widget.toml": ERROR})
    problems = lint(directory)
    assert any("is also used by" in p.message and p.severity == "error" for p in problems)


def test_catalogue_error_keeps_its_causes(tmp_path):
    text = _edit(_edit(ERROR, 'id = "err_widget"', 'id = "internal_generate_snapshot_hung"'),
                 'codes = ["9001"]\n', "")
    text = text.replace('"9001"', '"9002"')
    directory = _write(tmp_path, {"internal_generate_snapshot_hung.toml": text, "ev_disk_gone.toml": EVIDENCE})
    messages = [p.message for p in lint(directory)]
    assert "missing catalogue cause(s): snapshot_creation_stuck" in messages
    assert any(m.startswith("not a cause of 'internal_generate_snapshot_hung' in the catalogue: "
                            "gateway_service_down") for m in messages)


def test_extra_directory_overrides_builtin_by_id(tmp_path):
    override = _edit(EVIDENCE, 'id = "ev_disk_gone"', 'id = "cbt_fault"')
    directory = _write(tmp_path, {"cbt_fault.toml": override, "err_widget.toml": ERROR.replace(
        '"ev_disk_gone"', '"cbt_fault"')})
    library = load_library([directory])
    assert library.signatures["cbt_fault"].title == "A disk went away"
    assert library.signatures["cbt_fault"].path.endswith("cbt_fault.toml")
    assert "err_widget" in library.signatures
    assert library.digest != load_library().digest
    assert "disk_upload_timed_out" in library.signatures  # built-ins stay


def test_missing_directory_is_reported(tmp_path):
    with pytest.raises(SignatureError) as raised:
        load_library([tmp_path / "nope"])
    assert "not a directory" in raised.value.problems[0].message


ANY_EVIDENCE = _edit(_edit(_edit(EVIDENCE, 'source = "gateway_log"\ncolumn = "message"', 'source = "any"'),
                           'source = "gateway_log"\ntext = "disk d1 went away"', 'source = "any"\ntext = "disk d1 went away"'),
                     'source = "gateway_log"\ntext = "disk d1 came back"', 'source = "any"\ntext = "disk d1 came back"')


def test_any_block_reads_the_text_column_of_every_source(tmp_path):
    from analyzer.signatures.model import TEXT_COLUMNS

    directory = _write(tmp_path, {"ev_disk_gone.toml": ANY_EVIDENCE, "err_widget.toml": ERROR})
    assert lint(directory) == []
    sig = load_library([directory]).signatures["ev_disk_gone"]
    assert {(m.source, m.column) for m in sig.matchers} == set(TEXT_COLUMNS.items())
    assert all(m.any_source and m.block == 1 for m in sig.matchers)
    assert [m.block for m in sig.blocks()] == [1]


def test_a_vm_capture_that_is_no_vm_name_once_normalised_is_flagged(tmp_path):
    """Captured VM names are compared as identity.clean_name leaves them: quotes and brackets around
    the name go, placeholders become no VM. What is still no name after that is a regex to narrow."""
    greedy = _edit(_edit(ERROR, "regex = '''Widget failed for (?P<vm>\\w+)'''", "regex = '''Widget failed for (?P<vm>.+?)(?: now)?$'''"),
                   '''text = "Widget failed for APP01"
captures = { vm = "APP01" }''', '''text = "Widget failed for 'APP01' [esx07] now"
captures = { vm = "'APP01' [esx07]" }''')
    greedy += '''
[[examples]]
source = "gateway_log"
text = "Widget failed for 'ERP08'"
columns = { level = "Error" }

[[examples]]
source = "gateway_log"
text = "Widget failed for <VM name>"
columns = { level = "Error" }

[[examples]]
source = "gateway_log"
text = "Widget failed for %VMName; now"
columns = { level = "Error" }
'''
    directory = _write(tmp_path, {"ev_disk_gone.toml": EVIDENCE, "err_widget.toml": greedy})
    flagged = [p for p in lint(directory) if "no VM name" in p.message]
    assert [(p.key, p.severity) for p in flagged] == [("examples[1]", "warning")], flagged
    assert "'APP01' [esx07]" in flagged[0].message and "narrow" in flagged[0].hint


# --------------------------------------------------------------------------------------------
# jsonschema-rs tells valid files apart, jsonschema words the problems (load._schema_errors):
# the two must agree on which files are valid, or a problem would go unsaid.

@functools.cache
def _documents() -> list[dict]:  # each test copies the one it changes (_mutated)
    from analyzer.signatures.load import BUILTIN_DIR
    return [tomllib.loads(p.read_text(encoding="utf-8")) for p in sorted(BUILTIN_DIR.glob("*.toml"))]


_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False)
                       | st.text(max_size=8) | st.sampled_from(["vm", "error", "1h", "any", "gateway_log"]),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                    max_size=3), max_leaves=6)


def _mutated(doc: dict, data) -> dict:
    """The document with one value somewhere replaced, removed, or a key added."""
    doc = copy.deepcopy(doc)
    node = doc
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        if isinstance(node[key], (dict, list)) and node[key] and data.draw(st.booleans()):
            node = node[key]
            continue
        action = data.draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            node[key] = data.draw(_VALUES)
        elif action == "remove":
            del node[key]
        elif isinstance(node, dict):
            node[data.draw(st.text(min_size=1, max_size=6))] = data.draw(_VALUES)
        else:
            node.append(data.draw(_VALUES))
        break
    return doc


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_both_schema_validators_agree_on_every_mutated_signature(data):
    from analyzer.signatures.load import _quick_validator, _validator
    documents = _documents()
    doc = _mutated(documents[data.draw(st.integers(0, len(documents) - 1))], data)
    assert _quick_validator().is_valid(doc) == (not list(_validator().iter_errors(doc)))


def test_both_schema_validators_find_every_builtin_signature_valid():
    from analyzer.signatures.load import _quick_validator, _validator
    for doc in _documents():
        assert _quick_validator().is_valid(doc) and not list(_validator().iter_errors(doc))
