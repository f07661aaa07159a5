"""Worst-case regex time on adversarial lines: is any regex super-linear?

    python benchmarks/bench_regex_safety.py [SMALL_MB LARGE_MB] [--top N]   (default 1 4, top 15)

Every regex that runs over log text is timed as the analyzer runs it, on one line made of one
unit repeated to SMALL_MB and to LARGE_MB megabytes:

- signature matchers (signatures/*.toml): `str.contains` and `str.extract_groups`;
- redaction rules (analyzer/redact.py): `str.replace_all`;
- parser regexes that walk a whole line: `extract_groups` / `extract_all` as the parsers use them.

Units: one character of each class (letters, digits, spaces, punctuation, quotes, non-ASCII), each
literal of the regex, chains of its literals with the last one left out (near-matches), and the
signature's own examples cut short. Linear work scales with the size ratio (4x for 1 vs 4 MB);
quadratic work would scale with its square (16x). Prints the slowest cases and the worst ratio.
The loose test in tests/test_regex_safety.py runs the same sweep at smaller sizes.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from typing import Callable

import polars as pl

MB = 1_000_000
# One of each character class the regexes distinguish.
CHARS = tuple("aZ0 \t.-_'\"/:=;,&[](){}<>\\@%+*|#!?é가") + ("\u00a0",)


@dataclass(frozen=True)
class Case:
    name: str  # where the regex comes from
    pattern: str
    ops: tuple[str, ...]  # contains | extract_groups | extract_all | replace_all
    samples: tuple[str, ...] = ()  # texts that match (near-misses are cut from them)
    replacement: str = ""


def library_cases() -> list[Case]:
    from analyzer.signatures import load_library
    from analyzer.signatures.match import full_regex

    cases = []
    for sig in sorted(load_library().signatures.values(), key=lambda s: s.id):
        for n, m in enumerate(sig.matchers, 1):
            if not m.regex:
                continue
            samples = tuple(ex.text for ex in sig.examples if ex.matches and ex.source == m.source)
            cases.append(Case(f"signature {sig.id} match[{n}]", full_regex(m.regex, m.ignore_case),
                              ("contains", "extract_groups"), samples))
    return cases


def redaction_cases() -> list[Case]:
    from analyzer.redact import RULES

    samples = ("https://a.blob.core.windows.net/c?sv=1&sig=AbC%2B&se=2", 'password="x y"',
               "SharedAccessKey=Zm9v=", "Bearer eyJhbGciOi.eyJzdWIiOi.sig", "https://u:p@h/",
               "AccountKey=" + "A" * 86 + "==", "SharedKey acct:Zm9vYmFy=")
    return [Case(f"redact rule {n}", pattern, ("replace_all",), samples, replacement)
            for n, (pattern, replacement) in enumerate(RULES, 1)]


def parser_cases() -> list[Case]:
    from analyzer import identity
    from analyzer.parsers import gateway_log, timeparse, vcenter_log

    line = ("2024-05-14T10:21:33.512Z Info [12] Gateway.Service.X - Replication cycle started. "
            'vm=APP01 vmId=vm-1042 message="a \\"b\\" c" cycleId=17')
    vpxd = ("2024-05-14T10:21:33.123Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxLro "
            "opID=68209c6d] [VpxLRO] -- BEGIN task-88231 -- vm-1042 -- vim.VirtualMachine.createSnapshot -- 52b1")
    return [
        Case("gateway_log header", gateway_log._HEADER, ("extract_groups",), (line,)),
        Case("gateway_log tokens", gateway_log._TOKEN, ("extract_all",), (line,)),
        Case("vcenter_log meta", vcenter_log._META, ("extract_groups",), (vpxd,)),
        Case("vcenter_log lro", vcenter_log._LRO, ("extract_groups",), (vpxd[95:],)),
        Case("vcenter_log fault msg", vcenter_log._FAULT_MSG, ("extract_groups",),
             ('msg = "Another task is \\"already\\" in progress."',)),
        Case("vcenter_log syslog event", vcenter_log._EVENT_SYSLOG, ("extract_groups",),
             ("Event [1] [1-1] [2024-05-14T10:21:33Z] [VmMigratedEvent] [info] [u] [dc] [1] [m]",)),
        Case("identity vm in vpxd", identity._VM_IN_VPXD, ("extract_all",), (vpxd,)),
        Case("timeparse iso", timeparse._ISO, ("extract_groups",), ("2024-05-14 10:21:33.512 +09:00",)),
    ]


def all_cases() -> list[Case]:
    return library_cases() + redaction_cases() + parser_cases()


def literals(pattern: str) -> list[str]:
    """Literal runs of a pattern (as Python's parser reads it), longest first."""
    try:
        parsed = re._parser.parse(pattern)  # type: ignore[attr-defined]
    except Exception:  # syntax only Rust knows: fall back to word-like runs
        return sorted(set(re.findall(r"[A-Za-z][A-Za-z ]{3,}", pattern)), key=len, reverse=True)
    found: list[str] = []

    def walk(items) -> None:
        run = []
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                run.append(chr(arg))
                continue
            if len(run) >= 2:
                found.append("".join(run))
            run = []
            if name == "SUBPATTERN":
                walk(arg[-1])
            elif name == "BRANCH":
                for branch in arg[1]:
                    walk(branch)
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                walk(arg[2])
            elif name in ("ATOMIC_GROUP",):
                walk(arg)
        if len(run) >= 2:
            found.append("".join(run))

    walk(parsed)
    return sorted(dict.fromkeys(found), key=len, reverse=True)


def units(case: Case, max_literals: int = 8) -> list[tuple[str, str]]:
    """(label, unit) pairs to repeat into adversarial lines."""
    out = [(f"char {c!r}", c) for c in CHARS]
    lits = literals(case.pattern)[:max_literals]
    for lit in lits:
        out.append((f"literal {lit[:30]!r}", lit))
        out.append((f"literal+space {lit[:30]!r}", lit + " "))
    if len(lits) >= 2:
        out.append(("all literals but the last", " ".join(lits[:-1]) + " "))
        out.append(("all literals", " ".join(lits)))
    for n, sample in enumerate(case.samples[:3], 1):
        out.append((f"sample {n} without its last 5 chars", sample[:-5]))
        out.append((f"sample {n}, first half", sample[: max(1, len(sample) // 2)]))
        out.append((f"sample {n}", sample + " "))
    return list(dict((label, unit) for label, unit in out if unit).items())


def line_of(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def operation(case: Case, op: str) -> Callable[[pl.Series], object]:
    p = case.pattern
    return {
        "contains": lambda s: s.str.contains(p),
        "extract_groups": lambda s: s.str.extract_groups(p),
        "extract_all": lambda s: s.str.extract_all(p),
        "replace_all": lambda s: s.str.replace_all(p, case.replacement),
    }[op]


def timed(run: Callable[[pl.Series], object], series: pl.Series, repeat: int) -> float:
    run(pl.Series(["x"]))  # compiles the regex (polars caches it), so the first size pays no extra
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run(series)
        best = min(best, time.perf_counter() - start)
    return best


@dataclass
class Result:
    case: str
    op: str
    unit: str
    small: float  # seconds
    large: float

    @property
    def ratio(self) -> float:
        return self.large / max(self.small, 1e-6)


def sweep(cases: list[Case], small: int, large: int, repeat: int = 1,
          progress: Callable[[str], None] | None = None) -> list[Result]:
    results = []
    for case in cases:
        if progress:
            progress(case.name)
        for label, unit in units(case):
            lines = (pl.Series([line_of(unit, small)]), pl.Series([line_of(unit, large)]))
            for op in case.ops:
                run = operation(case, op)
                results.append(Result(case.name, op, label, timed(run, lines[0], repeat),
                                      timed(run, lines[1], repeat)))
    return results


def retime(results: list[Result], cases: list[Case], small: int, large: int,
           repeat: int = 3) -> None:
    """Time these results again, best of `repeat`, so that noise does not rank them."""
    by_name = {c.name: c for c in cases}
    for r in results:
        case = by_name[r.case]
        unit = dict(units(case))[r.unit]
        run = operation(case, r.op)
        r.small = timed(run, pl.Series([line_of(unit, small)]), repeat)
        r.large = timed(run, pl.Series([line_of(unit, large)]), repeat)


def suspects(results: list[Result], top: int, floor: float = 0.005) -> list[Result]:
    """The slowest runs and the steepest ones (among runs long enough to time)."""
    slowest = sorted(results, key=lambda r: r.large, reverse=True)[:top]
    steepest = sorted((r for r in results if r.large > floor), key=lambda r: r.ratio,
                      reverse=True)[:top]
    return list({id(r): r for r in slowest + steepest}.values())


def main(argv: list[str]) -> None:
    top = 15
    if "--top" in argv:
        i = argv.index("--top")
        top = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    small_mb, large_mb = (float(argv[0]), float(argv[1])) if len(argv) >= 2 else (1.0, 4.0)
    small, large = int(small_mb * MB), int(large_mb * MB)
    cases = all_cases()
    started = time.perf_counter()
    results = sweep(cases, small, large, progress=lambda n: print(f"  {n}", file=sys.stderr))
    checked = suspects(results, top)
    retime(checked, cases, small, large)
    print(f"{len(cases)} regexes, {len(results)} (regex, op, unit) runs at {small_mb:g} MB and "
          f"{large_mb:g} MB in {time.perf_counter() - started:.0f} s; {len(checked)} slowest and "
          "steepest timed again (best of 3)")
    print(f"{'case':<52} {'op':<15} {'unit':<40} {small_mb:>6g}MB {large_mb:>6g}MB  ratio")
    for r in sorted(checked, key=lambda r: r.large, reverse=True):
        print(f"{r.case[:52]:<52} {r.op:<15} {r.unit[:40]:<40} {r.small * 1e3:6.1f}ms "
              f"{r.large * 1e3:6.1f}ms  {r.ratio:5.1f}")
    timed_enough = [r for r in checked if r.large > 0.005]
    if timed_enough:
        worst = max(timed_enough, key=lambda r: r.ratio)
        slowest = max(checked, key=lambda r: r.large)
        print(f"slowest: {slowest.large * 1e3:.0f} ms at {large_mb:g} MB ({slowest.case}, "
              f"{slowest.op}, {slowest.unit})")
        print(f"steepest (runs over 5 ms): {worst.ratio:.1f}x ({worst.case}, {worst.op}, "
              f"{worst.unit}); linear = {large / small:g}x, quadratic = {(large / small) ** 2:g}x")


if __name__ == "__main__":
    main(sys.argv[1:])
