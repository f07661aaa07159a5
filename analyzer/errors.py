"""The one error a command reports as the user's to fix rather than as a bug (OUTPUT.md, exit 2)."""

from __future__ import annotations


class UserError(Exception):
    """A problem of the user's making: a bad option value, a missing input, an output place that
    cannot take the results. Its message is one line that names the problem and the fix."""
