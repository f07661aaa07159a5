"""The built-in library keeps each column's prefilter small enough to stay fast.

match.py's prefilter runs one Aho-Corasick search per column over the union of the literals of all
matchers reading it. The Rust automaton behind polars' `str.contains_any` is a DFA for up to 100
patterns and a slower automaton beyond: measured on 100 MB of generated gateway messages, 100
literals took 0.26 s of CPU and 101 took 0.37 s. Every `source = "any"` block adds its literals to
the gateway log's message column, so this is where the limit bites first.
"""

from __future__ import annotations

from analyzer.signatures import load_library

DFA_PATTERN_LIMIT = 100


def test_no_column_has_more_prefilter_literals_than_the_dfa_takes():
    literals: dict[tuple[str, str], set[str]] = {}
    for sig in load_library().signatures.values():
        for m in sig.matchers:
            literals.setdefault((m.source, m.column), set()).update(m.literal)
    over = {f"{s}.{c}": len(v) for (s, c), v in literals.items() if len(v) > DFA_PATTERN_LIMIT}
    assert not over, (f"{over}: more than {DFA_PATTERN_LIMIT} distinct literals; give blocks one short "
                      "literal their regex narrows (signatures/README.md, 'Matching any text')")
