"""The signature library: TOML files under signatures/ that say how known errors and the
evidence for their causes show in each source. See signatures/README.md."""

from analyzer.signatures.load import (
    BUILTIN_DIR, CATALOGUE, DETECTORS, Problem, SignatureError, cause_titles_ko, lint, load_library,
)
from analyzer.signatures.match import ExampleResult, match, run_examples
from analyzer.signatures.model import Library, Signature

__all__ = [
    "BUILTIN_DIR", "CATALOGUE", "DETECTORS", "ExampleResult", "Library", "Problem",
    "Signature", "SignatureError", "cause_titles_ko", "lint", "load_library", "match", "run_examples",
]
