"""The byte progress bar: drawn on a terminal only, each member's name redacted once."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from analyzer import cli
from analyzer.pipeline import Options


def test_a_member_name_is_redacted_once_however_many_chunks_it_reports(monkeypatch):
    monkeypatch.setattr(cli, "console", Console(file=io.StringIO(), force_terminal=True))
    redacted = []
    monkeypatch.setattr(cli, "_redacted", lambda text, options: redacted.append(text) or text.replace("hunter2", "***"))

    def walk(bundle, options, progress):
        for done in range(2000):
            progress(done, "logs/password=hunter2.log")
        progress(2000, "vpxd.log")
        return "walked"

    assert cli._run_with_progress(walk, Path("b.zip"), Options()) == "walked"
    assert redacted == ["logs/password=hunter2.log", "vpxd.log"]


def test_without_a_terminal_the_walk_is_not_called_back(monkeypatch):
    monkeypatch.setattr(cli, "console", Console(file=io.StringIO(), force_terminal=False))
    given = []
    cli._run_with_progress(lambda bundle, options, progress: given.append(progress), Path("b.zip"), Options())
    assert given == [None]
