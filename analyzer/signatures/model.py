"""The in-memory form of a signature file (signatures/<id>.toml), shared by loader, matcher and
verdicts. The loader (load.py) validates TOML into these; nothing else parses TOML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

SOURCES = ("gateway_log", "portal_events", "vcenter_log", "vcenter_tasks", "vcenter_events", "text_log")
# `source = "any"` in a file: the matcher reads the free text of every source, each through its
# own text column (the loader makes one Matcher per source). Error texts reach pasted tickets,
# other tools' logs and ESXi logs as well as the appliance's own (CATALOGUE.md, "Where errors
# may show").
ANY = "any"
TEXT_COLUMNS = {
    "gateway_log": "message",
    "portal_events": "error_message",
    "vcenter_log": "message",
    "vcenter_tasks": "fault_message",
    "vcenter_events": "message",
    "text_log": "message",
}
SCOPES = ("vm", "host", "appliance")
CONFIDENCES = ("high", "medium", "low")
SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True)
class Detector:
    """A built-in detector: evidence no regex can see, which a cause names by its `detect.*` id.
    analyzer/detectors.py carries each out, in the function named after the id."""

    tables: tuple[str, ...]  # what it reads
    by_exclusion: bool = False  # finds its cause by ruling the others out


DETECTORS: dict[str, Detector] = {
    "detect.appliance_silence": Detector(("gateway_log",)),
    "detect.service_down": Detector(("gateway_log",)),
    # Low rate with no connectivity failure: throttling, unless another cause has its own evidence.
    "detect.low_read_rate": Detector(("gateway_log",), by_exclusion=True),
    "detect.overlapping_task": Detector(("vcenter_tasks",)),
    "detect.snapshot_task_stuck": Detector(("vcenter_tasks",)),
    "detect.host_parallel_disks": Detector(("gateway_log",)),
    "detect.appliance_saturated": Detector(("gateway_log",)),
    "detect.vddk_67": Detector(("gateway_log",)),
    "detect.kv_guest_user": Detector(("portal_events",)),
    "detect.kv_other_user": Detector(("portal_events",)),
    "detect.slow_cycle": Detector(("gateway_log",)),
    "detect.stalled": Detector(("gateway_log",)),
}


@dataclass(frozen=True)
class Matcher:
    """One way a signature shows in one source table.

    A row matches when every `where` and `contains` condition holds, no `exclude` substring
    occurs, the `column` contains any `literal` (when given) and `regex` (when given) matches.
    Named groups of `regex` become captures.
    """

    source: str  # one of SOURCES
    column: str  # column the literal/regex apply to
    literal: tuple[str, ...] = ()  # prefilter: any of these substrings (case-sensitive)
    regex: str | None = None  # Rust-regex compatible, named groups = captures
    ignore_case: bool = False  # applies to literal and regex
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (column, allowed values): exact match
    # Substring conditions on any column (case follows ignore_case). `exclude` stands in for the
    # negative look-ahead the Rust engine lacks, e.g. Service Bus failures that are not Event Hubs.
    contains: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (column, substrings): one must occur
    exclude: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (column, substrings): none may occur
    any_source: bool = False  # one of the matchers a `source = "any"` block became
    block: int = 0  # position of its [[match]] block in the file, from 1


@dataclass(frozen=True)
class Cause:
    id: str  # catalogue cause id
    evidence: tuple[str, ...]  # evidence signature ids or built-in detector ids; any one suffices
    scope: str  # vm | host | appliance: where evidence must be to count
    before: timedelta  # evidence window before the failure
    after: timedelta  # ...and after it (appliance silence spans the failure)
    confidence: str  # confidence when the evidence is present (high | medium)
    remediation: tuple[str, ...]
    fallback: bool = False  # chosen with confidence low when no cause has evidence
    title_ko: str = ""  # Korean: the cause as a short noun phrase, the report's cause label
    remediation_ko: tuple[str, ...] = ()  # Korean: one string per step of `remediation`, same order


@dataclass(frozen=True)
class Example:
    source: str  # a source, or ANY: the text goes through every source a `source = "any"` block reads
    text: str  # the value of the matcher's column (for gateway_log: the message)
    captures: tuple[tuple[str, str], ...] = ()  # expected captures (subset)
    columns: tuple[tuple[str, str], ...] = ()  # other column values the `where` needs
    matches: bool = True  # False for near-misses that must not match


@dataclass(frozen=True)
class Signature:
    id: str  # = file stem
    title: str
    kind: str  # error | evidence
    severity: str  # critical | warning | info
    codes: tuple[str, ...] = ()  # portal Error IDs
    summary: str = ""  # one sentence for people, may use {vm} {host} {cause} placeholders
    scope: str = "vm"  # for evidence: what it can explain
    matchers: tuple[Matcher, ...] = ()
    causes: tuple[Cause, ...] = ()  # errors only
    undetermined: tuple[str, ...] = ()  # errors: the full diagnostic checklist
    references: tuple[str, ...] = ()
    params: tuple[tuple[str, float], ...] = ()  # thresholds for built-in detectors
    examples: tuple[Example, ...] = ()
    path: str = ""  # the file it came from
    # Korean texts for `--lang ko` (empty when the file has none: reports then show the English)
    title_ko: str = ""
    summary_ko: str = ""  # same placeholders as `summary`
    undetermined_ko: tuple[str, ...] = ()  # one string per step of `undetermined`

    def param(self, name: str, default: float) -> float:
        return dict(self.params).get(name, default)

    def cause(self, cause_id: str) -> Cause | None:
        return next((c for c in self.causes if c.id == cause_id), None)


    def blocks(self) -> list[Matcher]:
        """The matchers as the file has them: one per [[match]] block (the first matcher of an
        `any` block stands for it)."""
        return list({m.block: m for m in reversed(self.matchers)}.values())[::-1]


@dataclass
class Library:
    signatures: dict[str, Signature] = field(default_factory=dict)
    digest: str = ""  # sha256 over the files, for batch caching

    def errors(self) -> list[Signature]:
        return [s for s in self.signatures.values() if s.kind == "error"]

    def evidence(self) -> list[Signature]:
        return [s for s in self.signatures.values() if s.kind == "evidence"]

    def by_code(self, code: str) -> list[Signature]:
        return [s for s in self.errors() if code in s.codes]
