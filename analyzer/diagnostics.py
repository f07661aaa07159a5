"""Diagnostics: what the analyzer noticed about its input, pointed at the data.

Every stage appends to one `Diagnostics` collector. Repeated codes at the same location are
counted rather than listed, so a file with a million bad lines yields one diagnostic with samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SEVERITIES = ("error", "warning", "info")
MAX_SAMPLES = 5


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # error | warning | info
    code: str  # stable kebab-case id, e.g. "naive-timestamps", "unsafe-member"
    message: str
    location: str | None = None  # "member" or "member:line" or "signatures/x.toml: key"
    hint: str | None = None

    def as_dict(self) -> dict:
        out = {"severity": self.severity, "code": self.code, "message": self.message,
               "location": self.location}
        if self.hint:
            out["hint"] = self.hint
        return out


@dataclass
class Diagnostics:
    items: list[Diagnostic] = field(default_factory=list)
    _counts: dict[tuple[str, str | None], int] = field(default_factory=dict)

    def add(self, severity: str, code: str, message: str, location: str | None = None,
            hint: str | None = None) -> None:
        assert severity in SEVERITIES, severity
        key = (code, location)
        seen = self._counts.get(key, 0)
        self._counts[key] = seen + 1
        if seen < MAX_SAMPLES:
            self.items.append(Diagnostic(severity, code, message, location, hint))

    def extend(self, other: "Diagnostics") -> None:
        for d in other.items:
            self.add(d.severity, d.code, d.message, d.location, d.hint)

    def sorted(self) -> list[Diagnostic]:
        order = {s: i for i, s in enumerate(SEVERITIES)}
        return sorted(self.items, key=lambda d: (order[d.severity], d.code, d.location or "",
                                                  d.message))

    def __len__(self) -> int:
        return len(self.items)
