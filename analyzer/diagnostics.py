"""Diagnostics: what the analyzer noticed about its input, pointed at the data.

Every stage appends to one `Diagnostics` collector. Repeats are counted, never dropped: the same
code at the same location keeps MAX_SAMPLES samples, and the last of them counts the repeats
beyond (`count`). A diagnostic about one line (`add_line`) is grouped per code and member: one
diagnostic with the count and the first lines, so a file with a million bad lines yields one.

`incomplete_reasons` says, from the diagnostics, whether the analysis saw all of the bundle
(OUTPUT.md: `bundle.complete`); INCOMPLETE is the one table of the codes that mean it did not.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from analyzer.i18n import Messages, messages

SEVERITIES = ("error", "warning", "info")
MAX_SAMPLES = 5


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # error | warning | info
    code: str  # stable kebab-case id, e.g. "naive-timestamps", "unsafe-member"
    message: str
    location: str | None = None  # "member" or "member:line" or "signatures/x.toml: key"
    hint: str | None = None
    count: int = 1  # the occurrences this entry stands for: itself and the repeats folded in
    lines: tuple[int, ...] = ()  # add_line: the group's first lines (location: member:first)

    def as_dict(self) -> dict:
        out = {"severity": self.severity, "code": self.code, "message": self.message,
               "location": self.location}
        if self.hint:
            out["hint"] = self.hint
        if self.count > 1:
            out["count"] = self.count
            if self.lines:
                out["lines"] = list(self.lines)
        return out


@dataclass
class Diagnostics:
    items: list[Diagnostic] = field(default_factory=list)
    _kept: dict[tuple, list[int]] = field(default_factory=dict)  # group -> indexes in items

    def add(self, severity: str, code: str, message: str, location: str | None = None,
            hint: str | None = None) -> None:
        self.put(Diagnostic(severity, code, message, location, hint))

    def add_line(self, severity: str, code: str, message: str, member: str, line: int,
                 hint: str | None = None) -> None:
        """A diagnostic about one line of a member: grouped with the others of its code in that
        member (the first one's message, the count, the first MAX_SAMPLES lines)."""
        self.put(Diagnostic(severity, code, message, f"{member}:{line}", hint, lines=(line,)))

    def put(self, d: Diagnostic) -> None:
        """Keep `d` (with the count and lines it carries), folded into its group."""
        assert d.severity in SEVERITIES, d.severity
        if d.lines:
            key = ("lines", d.code, d.location[: -len(f":{d.lines[0]}")])
        else:
            key = (d.code, d.location)
        kept = self._kept.setdefault(key, [])
        same = next((i for i in kept if d.lines or _same(self.items[i], d)), None)
        if same is None and len(kept) >= MAX_SAMPLES:
            same = kept[-1]  # the last sample counts what is not kept
        if same is None:
            kept.append(len(self.items))
            self.items.append(d)
            return
        into = self.items[same]
        self.items[same] = replace(into, count=into.count + d.count,
                                   lines=(into.lines + d.lines)[:MAX_SAMPLES])

    def extend(self, other: "Diagnostics") -> None:
        for d in other.items:
            self.put(d)

    def sorted(self) -> list[Diagnostic]:
        order = {s: i for i, s in enumerate(SEVERITIES)}
        return sorted(self.items, key=lambda d: (order[d.severity], d.code, d.location or "",
                                                  d.message))

    def __len__(self) -> int:
        return len(self.items)


def _same(a: Diagnostic, b: Diagnostic) -> bool:
    return (a.severity, a.message, a.hint) == (b.severity, b.message, b.hint)


# ------------------------------------------------------------------ what makes results incomplete

# The codes that mean some of the bundle was not read, or not read as it is (a time zone
# assumed), or that a source does not cover a failure: the results may miss or misplace
# something. Each one's reason, with {n} for the count, is `incomplete.<code>` in the message
# catalogue (analyzer/i18n). Codes about single values or lines (unparsed-lines, bad-timestamps,
# truncated-values, decode-errors) leave the rest whole.
INCOMPLETE = (
    "parser-failed", "member-truncated", "member-corrupt", "member-unreadable", "unsupported-member",
    "encrypted-member", "unsafe-member", "decompression-limit", "nesting-too-deep", "too-many-members",
    "archive-damaged", "archive-truncated", "csv-abandoned", "malformed-csv", "invalid-json",
    "naive-timestamps", "bad-time-zone", "source-does-not-cover", "missing-columns", "vm-lines-unplaced",
)
# Codes that make results incomplete at this severity only (as a warning, the rows are kept).
INCOMPLETE_ONLY_AS = {"missing-columns": "error"}


def incomplete_reasons(diagnostics: list[Diagnostic]) -> list[str]:
    """Why the results are incomplete, one short sentence per kind of cause, sorted; [] when
    nothing says so. In English: the document's `bundle.incomplete_reasons`."""
    return incomplete_reasons_in([d.as_dict() for d in diagnostics], messages("en"))


def incomplete_reasons_in(diagnostics: list[dict], m: Messages) -> list[str]:
    """The same reasons in `m`'s language, from the document's diagnostics."""
    counts: dict[str, int] = {}
    for d in diagnostics:
        code = d.get("code")
        if code in INCOMPLETE and INCOMPLETE_ONLY_AS.get(code, d.get("severity")) == d.get("severity"):
            counts[code] = counts.get(code, 0) + int(d.get("count") or 1)
    return sorted({m.text(f"incomplete.{code}", n=n) for code, n in counts.items()})
