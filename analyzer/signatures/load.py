"""Read signature files (signatures/<id>.toml) into the dataclasses of model.py, and say
precisely what is wrong with the ones that cannot be read.

Validation runs in three layers, each reported as `Problem(file, key, message, hint)`:
structure (the JSON Schema of `json_schema()`, also published as signatures/schema.json for
editors), meaning within one file (regexes compile in polars' Rust engine, windows parse,
examples name real captures, ...), and meaning across the library (evidence ids resolve, shared
Error IDs are told apart by text, catalogue errors keep the catalogue's cause ids).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import string
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import jsonschema_rs
import polars as pl

from analyzer import tables
from analyzer.identity import clean_name
from analyzer.signatures.match import example_keys, full_regex, group_names
from analyzer.signatures.model import (
    ANY, CONFIDENCES, DETECTORS, SCOPES, SEVERITIES, SOURCES, TEXT_COLUMNS, Cause, Example, Library,
    Matcher, Signature,
)

if TYPE_CHECKING:
    import jsonschema

_PACKAGE = Path(__file__).resolve().parents[1]
# A wheel carries the library inside the package; a source checkout reads the repo's directory.
BUILTIN_DIR = next((d for d in (_PACKAGE / "_builtin_signatures", _PACKAGE.parent / "signatures")
                    if d.is_dir()), _PACKAGE.parent / "signatures")

_TIMEOUT_CAUSES = ("appliance_down", "gateway_service_down", "gateway_storage_unreachable",
                   "service_bus_unreachable", "event_hub_unreachable", "key_vault_unreachable")
# CATALOGUE.md parts A-C: error id -> its cause ids (a contract; `undetermined` is implicit).
# None: the error may take any catalogue cause.
CATALOGUE: dict[str, tuple[str, ...] | None] = {
    "key_vault_operation_failed": ("csp_remote_user", "access_policy_missing_for_user"),
    "dispose_artefacts_timed_out": _TIMEOUT_CAUSES,
    "disk_upload_timed_out": ("appliance_down", "gateway_service_down", "cache_storage_unreachable",
                              "service_bus_unreachable", "event_hub_unreachable",
                              "key_vault_unreachable", "vcenter_read_throttled"),
    "changed_blocks_fetch_failed": ("cbt_reset_by_storage_vmotion", "cbt_reset_or_corrupt"),
    "internal_server_refused_connection": ("vddk_known_issue",),
    "internal_invalid_snapshot_configuration": ("disk_removed_from_vm",),
    "internal_generate_snapshot_hung": ("snapshot_creation_stuck",),
    "internal_consolidate_disks_failed": ("disk_locked", "consolidation_failed"),
    "internal_another_task_in_progress": ("conflicting_vcenter_task", "vcenter_task_timeout"),
    "internal_operation_not_allowed": ("host_management_agent_down",),
    "internal_snapshot_disk_size_invalid": ("snapshot_disk_size_zero",),
    "internal_memory_allocation_failed": ("nfc_buffer_exhausted",),
    "no_disk_snapshots_found": ("disk_path_changed_by_storage_vmotion", "disk_detached"),
    "internal_file_larger_than_max": ("snapshot_file_too_large",),
    "internal_cannot_connect_to_host": ("esxi_host_network_unreachable",),
    "invalid_change_tracker": ("datastore_problem",),
    "unable_to_open_snapshot_file": ("datastore_out_of_space",),
    "host_connection_refused": ("esxi_hostname_unresolvable", "port_902_blocked"),
    "protection_readiness_snapshots_present": ("existing_snapshots_block_cbt",),
    "storage_account_not_found": ("storage_account_moved_or_deleted",),
    "state_container_not_found": ("replication_disabled",),
    "subscription_snapshot_throttled": ("subscription_snapshot_rate_limit",),
    "resync_snapshot_missing": ("resync_snapshot_deleted",),
    "insufficient_key_vault_permissions": ("key_vault_permissions_removed",),
    "disk_change_id_unavailable": ("cbt_disabled_or_independent_disk",),
    "rdm_physical_mode_disk": ("physical_mode_rdm",),
    "disk_download_timed_out": ("download_service_degraded",),
    "component_timed_out": _TIMEOUT_CAUSES,
    "change_tracking_reset": ("cbt_reset_by_storage_vmotion", "cbt_reset_or_corrupt"),
    "vmware_generic_failure": ("vmware_operation_failed",),
    "replication_stalled": None,
    "slow_replication": ("nfc_buffer_exhausted", "vcenter_read_throttled", "appliance_overloaded"),
}
CATALOGUE_CAUSES = frozenset(c for causes in CATALOGUE.values() for c in causes or ())

SUMMARY_FIELDS = ("vm", "vm_id", "host", "cause", "cause_title", "error_code")
_DURATION = re.compile(r"^([0-9]+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    key: str | None
    message: str
    hint: str | None = None
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        text = f"{self.severity}: {where}: {self.message}"
        return f"{text}\n    fix: {self.hint}" if self.hint else text


class SignatureError(Exception):
    """The library cannot be used; `problems` says where and why."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --- the JSON Schema (structure) --------------------------------------------------------------

def _strings(description: str) -> dict:
    return {"type": "array", "items": {"type": "string"}, "description": description}


def _column_conditions(description: str) -> dict:
    return {"type": "object", "description": description,
            "additionalProperties": {"type": "array", "items": {"type": "string"}, "minItems": 1}}


def json_schema() -> dict:
    """The structure of a signature file, as JSON Schema (draft 2020-12).

    signatures/schema.json is this, written out (`bundle-analyzer signatures schema`).
    """
    duration = {"type": "string", "pattern": _DURATION.pattern,
                "description": 'a window like "30s", "15m", "6h" or "2d"'}
    steps = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
             "description": "remediation steps, one per string, specific: service, command, port, KB"}
    steps_ko = {**steps, "description": "Korean (--lang ko): one string per step of remediation, "
                "same count and order"}
    text_columns = {s: [c for c, t in tables.SCHEMAS[s].items() if c not in tables.PROVENANCE]
                    for s in SOURCES}
    per_source = [
        {"if": {"properties": {"source": {"const": s}}, "required": ["source"]},
         "then": {"properties": {
             "column": {"enum": cols},
             **{k: {"propertyNames": {"enum": cols}} for k in ("where", "contains", "exclude",
                                                                 "columns")}}}}
        for s, cols in text_columns.items()]
    # `any` reads each source's text column: no column of its own, no conditions on columns
    any_source = {"if": {"properties": {"source": {"const": ANY}}, "required": ["source"]},
                  "then": {"properties": {k: False for k in ("column", "where", "contains",
                                                             "exclude", "columns")}},
                  "else": {"required": ["column"]}}
    matcher = {
        "type": "object", "additionalProperties": False, "required": ["source"],
        "allOf": [*per_source, any_source],
        "properties": {
            "source": {"enum": [*SOURCES, ANY], "description": "the table this matcher reads; "
                       "\"any\": the free text of every source (" + ", ".join(
                           f"{s}.{c}" for s, c in TEXT_COLUMNS.items()) + ")"},
            "column": {"type": "string", "description": "the column literal and regex apply to"},
            "literal": {**_strings("prefilter: the column must contain one of these substrings; "
                                   "cheap, checked over the whole column"), "minItems": 1},
            "regex": {"type": "string", "minLength": 1,
                      "description": "Rust-regex (no look-around, no backreferences); named "
                                     "groups (?P<name>...) become captures"},
            "ignore_case": {"type": "boolean",
                            "description": "case-insensitive literal, regex, contains, exclude"},
            "where": _column_conditions("exact values: { level = [\"Error\", \"Critical\"] }"),
            "contains": _column_conditions("substrings, one of which must occur in that column"),
            "exclude": _column_conditions("substrings that veto the row when they occur"),
        },
    }
    cause = {
        "type": "object", "additionalProperties": False,
        "required": ["id", "evidence", "scope", "before", "after", "remediation"],
        "properties": {
            "id": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$",
                   "description": "the catalogue's cause id"},
            "evidence": _strings("evidence signature ids or detect.* ids; any one suffices"),
            "scope": {"enum": list(SCOPES), "description": "where evidence must be to count"},
            "before": duration, "after": duration,
            "confidence": {"enum": [c for c in CONFIDENCES if c != "low"],
                           "description": "confidence when the evidence is present"},
            "fallback": {"type": "boolean",
                         "description": "chosen (confidence low) when no cause has evidence"},
            "remediation": steps,
            "title_ko": {"type": "string", "minLength": 1, "description": "Korean (--lang ko): "
                         "the cause as a short noun phrase, the report's cause label"},
            "remediation_ko": steps_ko,
        },
    }
    example = {
        "type": "object", "additionalProperties": False, "required": ["source", "text"],
        "allOf": [*per_source, {**any_source, "else": {}}],
        "properties": {
            "source": {"enum": [*SOURCES, ANY], "description": "\"any\": the text is tried in "
                       "every source the signature's `source = \"any\"` matchers read"},
            "text": {"type": "string", "description": "the value of the matched column"},
            "captures": {"type": "object", "additionalProperties": {"type": "string"},
                         "description": "expected captures (a subset)"},
            "columns": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "values of other columns the conditions need"},
        },
    }
    counterexample = {**example, "properties": {k: v for k, v in example["properties"].items()
                                                if k != "captures"}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/bundle-analyzer/bundle-analyzer/signatures/schema.json",
        "title": "bundle-analyzer signature (one TOML file per known error or evidence)",
        "type": "object", "additionalProperties": False,
        "required": ["id", "title", "kind", "severity"],
        "properties": {
            "id": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$",
                   "description": "lower_snake_case, equal to the file name without .toml"},
            "title": {"type": "string", "minLength": 1, "description": "one line for people"},
            "title_ko": {"type": "string", "minLength": 1, "description": "Korean (--lang ko) title"},
            "kind": {"enum": ["error", "evidence"]},
            "severity": {"enum": list(SEVERITIES)},
            "codes": {"type": "array", "items": {"type": "string", "pattern": "^[0-9]+$"},
                      "description": 'portal Error IDs as strings: codes = ["1011"]'},
            "summary": {"type": "string", "description": "one sentence; may use "
                        + ", ".join("{%s}" % f for f in SUMMARY_FIELDS)},
            "summary_ko": {"type": "string", "minLength": 1, "description": "Korean (--lang ko) "
                           "summary, with the same placeholders as summary"},
            "scope": {"enum": list(SCOPES), "description": "evidence: what it can explain"},
            "references": {"type": "array", "items": {"type": "string", "pattern": "^https://"},
                           "description": "https links"},
            "match": {"type": "array", "items": matcher,
                      "description": "[[match]] blocks: where the signature shows"},
            "causes": {"type": "array", "items": cause, "description": "errors: [[causes]]"},
            "undetermined": {"type": "object", "additionalProperties": False,
                             "required": ["remediation"],
                             "properties": {"remediation": steps, "remediation_ko": steps_ko},
                             "description": "errors: the full diagnostic checklist"},
            "params": {"type": "object", "additionalProperties": {"type": "number"},
                       "description": "numeric thresholds read by built-in detectors"},
            "examples": {"type": "array", "items": example,
                         "description": "[[examples]]: texts that must match"},
            "counterexamples": {"type": "array", "items": counterexample,
                                "description": "[[counterexamples]]: near-misses that must not"},
        },
    }


@cache
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema  # for the files jsonschema-rs finds wrong: 50 ms to import otherwise

    return jsonschema.Draft202012Validator(json_schema())


@cache
def _quick_validator():
    return jsonschema_rs.validator_for(json_schema())


def _schema_errors(raw: dict) -> list[jsonschema.ValidationError]:
    """What the schema finds wrong in `raw`. jsonschema-rs tells a valid file apart about 150
    times faster (55 signatures: 1 ms against 140 ms, at every run); jsonschema words the
    problems of an invalid one, and decides alone what jsonschema-rs cannot read."""
    try:
        if _quick_validator().is_valid(raw):
            return []
    except Exception:  # noqa: BLE001 - a value jsonschema-rs does not take (a TOML date...)
        pass
    return list(_validator().iter_errors(raw))


def _key(path: Iterable) -> str | None:
    """['match', 1, 'regex'] -> "match[2].regex" (array positions counted from 1, as in the file)."""
    out = ""
    for part in path:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _describe(value) -> str:
    kinds = {str: "a string", bool: "true/false", int: "a number", float: "a number",
             list: "an array", dict: "a table"}
    return kinds.get(type(value), type(value).__name__)


def _schema_problem(file: str, err: jsonschema.ValidationError) -> Problem:
    key, schema, value = _key(err.absolute_path), err.schema, err.instance
    if schema is False:  # a key that `source = "any"` leaves no room for
        return Problem(file, key, "source = \"any\" reads the text column of every source: it takes "
                       "no column, where, contains, exclude or columns",
                       "drop them, or write one [[match]] block per source")
    hint = schema.get("description") if isinstance(schema, dict) else None
    if err.validator == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(value) - set(known))
        name = extra[0] if extra else "?"
        close = difflib.get_close_matches(name, known, n=1)
        return Problem(file, _key([*err.absolute_path, name]), f"unknown key '{name}'",
                       f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(known))
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in value]
        name = missing[0] if missing else "?"
        return Problem(file, _key([*err.absolute_path, name]), f"missing required key '{name}'",
                       _validator().schema["properties"].get(name, {}).get("description")
                       if not err.absolute_path else None)
    if err.validator == "type":
        want = {"string": "a string", "array": "an array", "object": "a table", "number": "a number",
                "boolean": "true or false"}.get(err.validator_value, err.validator_value)
        return Problem(file, key, f"expected {want}, got {_describe(value)} ({value!r:.60})", hint)
    if err.validator == "enum":
        allowed = [str(a) for a in err.validator_value]
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = (f"did you mean '{close[0]}'? " if close else "") + "allowed: " + ", ".join(allowed)
        if "propertyNames" in err.absolute_schema_path:  # a column name used as a table key
            return Problem(file, _key([*err.absolute_path, value]),
                           f"'{value}' is not a column of this source", hint)
        if err.absolute_path and err.absolute_path[-1] == "column":
            return Problem(file, key, f"'{value}' is not a column of this source", hint)
        return Problem(file, key, f"{value!r} is not an allowed value", hint)
    if err.validator == "pattern":
        return Problem(file, key, f"{value!r} has the wrong form", hint)
    if err.validator in ("minItems", "minLength"):
        return Problem(file, key, "must not be empty", hint)
    return Problem(file, key, err.message, hint)


# --- one file ---------------------------------------------------------------------------------

def _duration(text: str) -> timedelta:
    number, unit = _DURATION.match(text).groups()
    return timedelta(**{_UNITS[unit]: int(number)})


def _pairs(table: dict | None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((k, tuple(v)) for k, v in (table or {}).items())


@cache
def regex_problem(pattern: str) -> str | None:
    """Why polars' Rust engine refuses `pattern`, in words; None when it compiles."""
    try:
        pl.Series([""], dtype=pl.Utf8).str.contains(pattern)
    except Exception as exc:  # polars raises ComputeError with the Rust parser's text
        text = str(exc)
        if "look-around" in text:
            return ("uses look-around ((?=…), (?!…), (?<=…), (?<!…)), which polars' Rust regex "
                    "engine does not support")
        if "backreference" in text:
            return "uses a backreference (\\1, (?P=name)), which polars' Rust regex engine does not support"
        detail = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("error:")),
                      text.splitlines()[0] if text else "")
        return f"does not compile in polars' Rust regex engine ({detail})"
    return None


def _check_matcher(file: str, key: str, m: Matcher) -> list[Problem]:
    out = []
    schema = tables.SCHEMAS[m.source]
    if (m.literal or m.regex) and schema[m.column] != tables.STR:
        out.append(Problem(file, f"{key}.column", f"'{m.column}' of {m.source} is not text; "
                           "literal and regex need a text column",
                           "compare non-text columns with where = { column = [\"value\"] }"))
    if m.regex is not None:
        why = regex_problem(full_regex(m.regex, m.ignore_case))
        if why:
            out.append(Problem(file, f"{key}.regex", f"the regex {why}",
                               "rewrite without it: split the case into two [[match]] blocks, "
                               "or veto rows with exclude = { column = [\"text\"] }"))
    if not (m.literal or m.regex or m.where or m.contains):
        out.append(Problem(file, key, "this matcher has no literal, regex, where or contains: "
                           "it would match every row", "add a literal (and a regex for captures)"))
    elif m.regex and not (m.literal or m.where):
        out.append(Problem(file, f"{key}.literal", "regex without a literal prefilter: it runs "
                           "over every row of the column", "add literal = [\"a fixed substring "
                           "every match contains\"]", "warning"))
    return out


def _check_examples(file: str, sig: Signature) -> list[Problem]:
    out = []
    captures_by_source: dict[str, set[str]] = {}
    for m in sig.matchers:
        if m.regex and not regex_problem(full_regex(m.regex, m.ignore_case)):
            captures_by_source.setdefault(m.source, set()).update(group_names(m.regex, m.ignore_case))
    for key, ex in example_keys(sig):
        reads = [m for m in sig.matchers if m.source == ex.source or (ex.source == ANY and m.any_source)]
        if not reads:
            out.append(Problem(file, f"{key}.source", f"no [[match]] block reads {ex.source}",
                               "use the source of one of the [[match]] blocks"))
            continue
        known = set().union(*(captures_by_source.get(m.source, set()) for m in reads))
        for name, _ in ex.captures:
            if name not in known:
                out.append(Problem(file, f"{key}.captures.{name}",
                                   f"'{name}' is not a named group of any {ex.source} regex",
                                   "named groups: " + (", ".join(sorted(known)) or "none")))
    shown = {ex.source for ex in sig.examples if ex.matches}
    if sig.matchers and not shown:
        out.append(Problem(file, "examples", "no [[examples]]: nothing shows the matchers work",
                           "add a real line that must match", "warning"))
    elif unshown := sorted({ANY if m.any_source else m.source for m in sig.matchers} - shown):
        out += [Problem(file, "examples", f"no example for the {source} matchers",
                        f"add an [[examples]] block with source = \"{source}\"", "warning")
                for source in unshown]
    return out


def _placeholders(text: str) -> set[str]:
    """The {names} of a summary template; ValueError when a brace is malformed."""
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def _check_summary(file: str, summary: str, key: str = "summary") -> list[Problem]:
    try:
        names = _placeholders(summary)
    except ValueError as exc:
        return [Problem(file, key, f"bad placeholder: {exc}", "write {vm}; a literal brace is {{")]
    unknown = sorted(names - set(SUMMARY_FIELDS))
    return [Problem(file, key, f"unknown placeholder {{{unknown[0]}}}",
                    "placeholders: " + ", ".join("{%s}" % f for f in SUMMARY_FIELDS))] if unknown else []


_HANGUL = re.compile("[\uac00-\ud7a3]")
# A particle whose form follows the last sound of the word before it (은/는, 이/가, 을/를, 과/와,
# 으로/로) cannot follow a placeholder: the value (a VM or host name) is not known in advance.
_SOUND_PARTICLE = re.compile(r"\}(은|는|이|가|을|를|과|와|으로|로)(?![\w(])")


def _korean_texts(sig: Signature) -> list[tuple[str, str]]:
    """(key, text) of every Korean text of the signature, keyed as in the file."""
    out = [("title_ko", sig.title_ko), ("summary_ko", sig.summary_ko)]
    for n, cause in enumerate(sig.causes, 1):
        out.append((f"causes[{n}].title_ko", cause.title_ko))
        out += [(f"causes[{n}].remediation_ko[{i}]", t) for i, t in enumerate(cause.remediation_ko, 1)]
    out += [(f"undetermined.remediation_ko[{i}]", t) for i, t in enumerate(sig.undetermined_ko, 1)]
    return [(k, t) for k, t in out if t]


def _missing_korean(sig: Signature) -> list[str]:
    """The keys whose Korean text a signature lacks (a Korean report shows those in English)."""
    missing = [k for k, english, korean in (("title_ko", sig.title, sig.title_ko),
                                            ("summary_ko", sig.summary, sig.summary_ko)) if english and not korean]
    for n, cause in enumerate(sig.causes, 1):
        missing += [f"causes[{n}].{k}" for k, have in (("title_ko", cause.title_ko),
                                                       ("remediation_ko", cause.remediation_ko)) if not have]
    if sig.undetermined and not sig.undetermined_ko:
        missing.append("undetermined.remediation_ko")
    return missing


def _check_korean(file: str, sig: Signature) -> list[Problem]:
    """Korean texts (title_ko, summary_ko, remediation_ko) mirror the English ones they stand for."""
    out = []
    if sig.summary_ko:
        out += _check_summary(file, sig.summary_ko, "summary_ko")
        try:
            english, korean = _placeholders(sig.summary), _placeholders(sig.summary_ko)
        except ValueError:
            english = korean = set()  # reported by _check_summary
        if english != korean and not out:
            out.append(Problem(file, "summary_ko", "placeholders differ from summary's: "
                               f"summary has {_braced(english)}, summary_ko has {_braced(korean)}",
                               "use the same placeholders, each where the Korean sentence needs it"))
    steps = [(f"causes[{n}]", c.remediation, c.remediation_ko) for n, c in enumerate(sig.causes, 1)]
    steps.append(("undetermined", sig.undetermined, sig.undetermined_ko))
    for key, english, korean in steps:
        if korean and len(korean) != len(english):
            out.append(Problem(file, f"{key}.remediation_ko", f"{len(korean)} Korean step(s) for "
                               f"{len(english)} English step(s)",
                               "one Korean string per remediation step, in the same order"))
    for key, text in _korean_texts(sig):
        if not _HANGUL.search(text):
            out.append(Problem(file, key, "has no Korean (Hangul) letters", "write it in Korean; "
                               "keep commands, ids and product names as they are", "warning"))
        elif particle := _SOUND_PARTICLE.search(text):
            out.append(Problem(file, key, f"the particle '{particle.group(1)}' after a placeholder "
                               "depends on the value's last sound", "rephrase (e.g. '{vm}의', "
                               "'{vm}에서') or write both forms: '을(를)', '이(가)'", "warning"))
    missing = _missing_korean(sig)
    if missing and not _korean_texts(sig):
        out.append(Problem(file, None, "no Korean texts: a Korean report (--lang ko) shows this "
                           "signature in English", "add " + ", ".join(dict.fromkeys(
                               re.sub(r"\[\d+\]", "[]", k) for k in missing))
                           + " (signatures/README.md, \"Korean texts\")", "warning"))
    else:
        out += [Problem(file, key, "missing: a Korean report (--lang ko) shows the English here",
                        "add the Korean text beside the English one", "warning") for key in missing]
    return out


def _braced(names: set[str]) -> str:
    return ", ".join("{%s}" % n for n in sorted(names)) or "none"


def _check_kind(file: str, raw: dict, sig: Signature) -> list[Problem]:
    out = []
    if sig.kind == "evidence":
        for key in ("causes", "undetermined", "codes"):
            if key in raw:
                out.append(Problem(file, key, f"evidence signatures have no '{key}'",
                                   "move it to the error this evidence explains, or set kind = \"error\""))
        if "scope" not in raw:
            out.append(Problem(file, "scope", "evidence needs a scope: what it can explain",
                               'scope = "vm" (a task on the VM), "host" (NFC, host connection) or '
                               '"appliance" (service, Azure endpoints)'))
        if not sig.matchers:
            out.append(Problem(file, "match", "evidence with no [[match]] block can never be found",
                               "add a [[match]] block"))
        return out
    if not sig.causes:
        out.append(Problem(file, "causes", "an error needs at least one [[causes]] block",
                           "list the catalogue's causes with their evidence"))
    if not sig.undetermined:
        out.append(Problem(file, "undetermined.remediation", "missing remediation for `undetermined`",
                           "add [undetermined] remediation = [the full diagnostic checklist]"))
    if not sig.matchers and not sig.params:
        out.append(Problem(file, "match", "an error with no [[match]] block is raised only by a "
                           "detector, which reads its thresholds from [params]; both are missing",
                           "add [[match]] blocks, or [params] for the detector"))
    seen: set[str] = set()
    for n, cause in enumerate(sig.causes, 1):
        key = f"causes[{n}]"
        if cause.id == "undetermined":
            out.append(Problem(file, f"{key}.id", "'undetermined' is implicit",
                               "put its checklist under [undetermined] remediation"))
        if cause.id in seen:
            out.append(Problem(file, f"{key}.id", f"cause '{cause.id}' is listed twice",
                               "merge the two blocks"))
        seen.add(cause.id)
        if not cause.evidence and not (cause.fallback or len(sig.causes) == 1):
            out.append(Problem(file, f"{key}.evidence", "a cause with no evidence can never be "
                               "chosen among several", "give it evidence, or set fallback = true"))
    if sum(c.fallback for c in sig.causes) > 1:
        out.append(Problem(file, "causes", "more than one cause has fallback = true",
                           "keep one fallback"))
    return out


@lru_cache(maxsize=1024)
def parse_signature(data: bytes, stem: str, file: str) -> tuple[Signature | None, tuple[Problem, ...]]:
    """One signature file's bytes -> (Signature or None, problems). Never raises on bad content.

    A pure function of the bytes, so the repeated loads of a batch (one per bundle) reuse it.
    """
    try:
        raw = tomllib.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        return None, (Problem(file, None, f"not UTF-8 text: {exc}", "save the file as UTF-8"),)
    except tomllib.TOMLDecodeError as exc:
        return None, (Problem(file, None, f"not valid TOML: {exc}",
                              "regexes are easiest in '''…''' literal strings (no escaping)"),)
    problems = sorted({_schema_problem(file, e) for e in _schema_errors(raw)})
    if problems:
        return None, tuple(problems)
    if raw["id"] != stem:
        problems.append(Problem(file, "id", f"id '{raw['id']}' differs from the file name '{stem}'",
                                f"rename the file to {raw['id']}.toml or set id = \"{stem}\""))
    sig = _build(raw, file)
    for m in sig.blocks():
        problems += _check_matcher(file, f"match[{m.block}]", m)
    problems += _check_kind(file, raw, sig)
    problems += _check_summary(file, sig.summary)
    problems += _check_korean(file, sig)
    problems += _check_examples(file, sig)
    return sig, tuple(problems)


def _matchers(raw: dict, block: int) -> list[Matcher]:
    """One [[match]] block as Matchers: one, or one per source for `source = "any"`."""
    common = dict(literal=tuple(raw.get("literal", ())), regex=raw.get("regex"),
                  ignore_case=raw.get("ignore_case", False), where=_pairs(raw.get("where")),
                  contains=_pairs(raw.get("contains")), exclude=_pairs(raw.get("exclude")),
                  block=block)
    if raw["source"] == ANY:
        return [Matcher(source=source, column=column, any_source=True, **common)
                for source, column in TEXT_COLUMNS.items()]
    return [Matcher(source=raw["source"], column=raw["column"], **common)]


def _build(raw: dict, file: str) -> Signature:
    matchers = tuple(m for n, block in enumerate(raw.get("match", ()), 1) for m in _matchers(block, n))
    causes = tuple(Cause(
        id=c["id"], evidence=tuple(c["evidence"]), scope=c["scope"], before=_duration(c["before"]),
        after=_duration(c["after"]), confidence=c.get("confidence", "high"),
        remediation=tuple(c["remediation"]), fallback=c.get("fallback", False),
        title_ko=c.get("title_ko", ""), remediation_ko=tuple(c.get("remediation_ko", ())),
    ) for c in raw.get("causes", ()))
    examples = tuple(Example(
        source=e["source"], text=e["text"], captures=tuple(e.get("captures", {}).items()),
        columns=tuple(e.get("columns", {}).items()), matches=matches,
    ) for key, matches in (("examples", True), ("counterexamples", False))
        for e in raw.get(key, ()))
    return Signature(
        id=raw["id"], title=raw["title"], kind=raw["kind"], severity=raw["severity"],
        codes=tuple(raw.get("codes", ())), summary=raw.get("summary", ""),
        scope=raw.get("scope", "vm"), matchers=matchers, causes=causes,
        undetermined=tuple(raw.get("undetermined", {}).get("remediation", ())),
        references=tuple(raw.get("references", ())),
        params=tuple((k, float(v)) for k, v in raw.get("params", {}).items()),
        examples=examples, path=file, title_ko=raw.get("title_ko", ""),
        summary_ko=raw.get("summary_ko", ""),
        undetermined_ko=tuple(raw.get("undetermined", {}).get("remediation_ko", ())),
    )


# --- a directory, the library -----------------------------------------------------------------

def _label(path: Path) -> str:
    """Paths inside the repo or the package read as signatures/<file>; others as given."""
    try:
        return str(Path("signatures") / path.relative_to(BUILTIN_DIR))
    except ValueError:
        return str(path)


def load_dir(directory: Path) -> tuple[list[Signature], list[Problem], dict[str, bytes]]:
    """Every *.toml under `directory` (sub-directories too, sorted)."""
    if not directory.is_dir():
        return [], [Problem(str(directory), None, "not a directory",
                            "pass the directory that holds the *.toml signature files")], {}
    sigs, problems, contents, seen = [], [], {}, {}
    for path in sorted(directory.rglob("*.toml")):
        label = _label(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(Problem(label, None, f"cannot read the file: {exc}", None))
            continue
        sig, found = parse_signature(data, path.stem, label)
        problems += found
        if sig is None:
            continue
        if sig.id in seen:
            problems.append(Problem(label, "id", f"id '{sig.id}' is also used by {seen[sig.id]}",
                                    "give each signature its own id"))
            continue
        seen[sig.id] = label
        sigs.append(sig)
        contents[sig.id] = data
    if not sigs and not problems:
        problems.append(Problem(str(directory), None, "no *.toml signature files here",
                                "signature files are named <id>.toml", "warning"))
    return sigs, problems, contents


def check_library(library: Library, only: set[str] | None = None) -> list[Problem]:
    """Cross-file checks; `only` limits the report to those signature ids."""
    sigs = {k: s for k, s in library.signatures.items() if only is None or k in only}
    out = [problem for sig in sigs.values() for n, cause in enumerate(sig.causes, 1)
           for ev in cause.evidence if (problem := _evidence_problem(library, sig, n, ev))]
    for sig in sigs.values():
        out += _check_catalogue(sig)
    return out + _check_shared_codes(library, sigs)


def _evidence_problem(library: Library, sig: Signature, n: int, ev: str) -> Problem | None:
    """What is wrong with evidence id `ev` of the n-th cause, if anything."""
    key = f"causes[{n}].evidence"
    if ev.startswith("detect."):
        if ev in DETECTORS:
            return None
        close = difflib.get_close_matches(ev, DETECTORS, n=1)
        return Problem(sig.path, key, f"unknown detector '{ev}'", f"did you mean '{close[0]}'?"
                       if close else "detectors: " + ", ".join(DETECTORS))
    target = library.signatures.get(ev)
    if target is None:
        close = difflib.get_close_matches(ev, [s.id for s in library.evidence()], n=1)
        return Problem(sig.path, key, f"unknown evidence id '{ev}'", f"did you mean '{close[0]}'?"
                       if close else f"create signatures/{ev}.toml with kind = \"evidence\"")
    if target.kind != "evidence":
        return Problem(sig.path, key, f"'{ev}' is an error, not evidence",
                       "point at an evidence signature or a detect.* id")
    return None


def _check_catalogue(sig: Signature) -> list[Problem]:
    if sig.kind != "error":
        return []
    have = [c.id for c in sig.causes]
    if sig.id not in CATALOGUE:
        return [Problem(sig.path, "causes", f"cause '{c}' is not a catalogue cause id; the JSON "
                        "output will carry it as written", "reuse a catalogue cause id where one "
                        "fits", "warning") for c in have if c not in CATALOGUE_CAUSES]
    want = CATALOGUE[sig.id]
    if want is None:
        return [Problem(sig.path, "causes", f"'{c}' is not a catalogue cause id",
                        "this error takes the causes of the other catalogue errors")
                for c in have if c not in CATALOGUE_CAUSES]
    out = []
    missing = [c for c in want if c not in have]
    extra = [c for c in have if c not in want]
    if missing:
        out.append(Problem(sig.path, "causes", f"missing catalogue cause(s): {', '.join(missing)}",
                           "ids are a contract of the JSON output: add a [[causes]] block for each"))
    if extra:
        out.append(Problem(sig.path, "causes", f"not a cause of '{sig.id}' in the catalogue: "
                           f"{', '.join(extra)}", "catalogue causes: " + ", ".join(want)))
    return out


def _bare_code_matcher(m: Matcher) -> bool:
    return m.column == "error_id" and not (m.literal or m.regex or m.contains) and \
        all(col == "error_id" for col, _ in m.where)


def _check_shared_codes(library: Library, sigs: dict[str, Signature]) -> list[Problem]:
    owners: dict[str, list[str]] = {}
    for sig in library.errors():
        for code in sig.codes:
            owners.setdefault(code, []).append(sig.id)
    out = []
    for sig in sigs.values():
        for m in sig.blocks():
            shared = {v for col, vals in m.where if col == "error_id" for v in vals
                      if len(owners.get(v, [])) > 1}
            if shared and _bare_code_matcher(m):
                code = sorted(shared)[0]
                others = ", ".join(o for o in owners[code] if o != sig.id)
                out.append(Problem(sig.path, f"match[{m.block}]", f"Error ID {code} is shared with "
                                   f"{others}: matching the code alone would claim both",
                                   "add the literal text that tells them apart"))
    return out


def digest(contents: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for sid in sorted(contents):
        h.update(sid.encode() + b"\0" + hashlib.sha256(contents[sid]).digest())
    return h.hexdigest()


def collect(dirs: Sequence[Path]) -> tuple[Library, list[Problem]]:
    """Load `dirs` in order, later ids overriding earlier ones; no cross-file checks."""
    library, problems, contents = Library(), [], {}
    for directory in dirs:
        sigs, found, data = load_dir(Path(directory))
        problems += found
        for sig in sigs:
            if sig.id in library.signatures:
                problems.append(Problem(sig.path, "id", f"overrides {library.signatures[sig.id].path}",
                                        None, "warning"))
            library.signatures[sig.id] = sig
        contents.update(data)
    library.signatures = dict(sorted(library.signatures.items()))
    library.digest = digest(contents)
    return library, problems


_CAUSE_TITLES_KO = Path(__file__).with_name("causes.ko.toml")


@cache
def _cause_titles_file() -> dict[str, str]:
    return tomllib.loads(_CAUSE_TITLES_KO.read_text(encoding="utf-8"))["causes"]


def cause_titles_ko(library: Library) -> dict[str, str]:
    """Korean cause labels by cause id, for reports in Korean (outages, indexes: where only the
    id is at hand; a verdict's own label is its cause block's title_ko). Each id's label is the
    title_ko of its [[causes]] blocks, the first in signature id order; causes.ko.toml beside this
    module labels the ids no block carries (`undetermined`). An id in neither has no Korean label."""
    blocks: dict[str, str] = {}
    for sig in library.errors():
        for cause in sig.causes:
            if cause.title_ko:
                blocks.setdefault(cause.id, cause.title_ko)
    return {**_cause_titles_file(), **blocks}


def load_library(extra_dirs: Sequence[Path] = (), builtin: bool = True) -> Library:
    """The built-in library plus `extra_dirs` (which add signatures or override them by id).

    Raises SignatureError listing every problem of error severity.
    """
    library, problems = collect([*([BUILTIN_DIR] if builtin else []), *extra_dirs])
    problems += check_library(library)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise SignatureError(sorted(errors))
    return library


# What is left of a captured VM name once identity.clean_name has dropped the quotes and brackets
# around it must look like one: no spaces, quotes, brackets or template marks.
NOT_A_VM_NAME = r"[\s'\"`\u2018\u2019\u201c\u201d\[\](){}<>%;]"


def _vm_captures(results) -> list[Problem]:
    """A `vm` capture of an example that is still no VM name once normalised the way identity
    compares names (a placeholder, which the normaliser turns into no VM, is fine)."""
    captured = [r for r in results if r.ok and r.example.matches and r.vm is not None]
    if not captured:
        return []
    cleaned = pl.Series([r.vm for r in captured]).to_frame("vm").select(clean_name(pl.col("vm")))["vm"]
    return [Problem(r.path, r.key, f"captures {r.vm!r} as the VM, which is no VM name even as {name!r}",
                    "narrow the regex's vm group to the name itself (quotes and brackets around it may "
                    "stay)", "warning")
            for r, name in zip(captured, cleaned.to_list()) if name is not None and re.search(NOT_A_VM_NAME, name)]


def lint(dirs: Sequence[Path] | Path | None = None) -> list[Problem]:
    """Every check, examples included, over `dirs` (default: the built-in library).

    Evidence ids may point into the built-in library, so a directory of additions lints alone.
    """
    from analyzer.signatures.match import run_examples

    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    dirs = [Path(d) for d in dirs] if dirs else [BUILTIN_DIR]
    linted, problems = collect(dirs)
    with_builtin = any(d.resolve() == BUILTIN_DIR.resolve() for d in dirs)
    context = Library(dict(linted.signatures)) if with_builtin else \
        Library({**collect([BUILTIN_DIR])[0].signatures, **linted.signatures})
    problems += check_library(context, only=set(linted.signatures))
    broken = {p.file for p in problems if p.severity == "error"}  # their matchers may not even run
    runnable = {sid for sid, sig in linted.signatures.items() if sig.path not in broken}
    results = run_examples(linted, only=runnable)
    for result in results:
        if not result.ok:
            what = "matches, but it must not" if not result.example.matches else "does not match"
            problems.append(Problem(result.path, result.key, f"{what}: {result.detail}",
                                    "fix the matcher, or the example if the text is not real"))
    problems += _vm_captures(results)
    if with_builtin:
        problems += [Problem("signatures", None, f"catalogue error '{e}' has no signature",
                             f"create signatures/{e}.toml") for e in CATALOGUE
                     if e not in linted.signatures]
    return sorted(set(problems), key=lambda p: (p.file, p.key or "", p.severity, p.message))
