"""`bundle-analyzer signatures …` through typer's test runner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from analyzer.signatures.cli import app

runner = CliRunner()

BROKEN = '''
id = "widget_noise"
kind = "evidence"
title = "Widget noise"
severity = "info"
scope = "vm"

[[match]]
source = "gateway_log"
column = "message"
literal = ["Widget"]
regex = \'\'\'Widget (?P<state>noisy) at (?P<level>\\d+) dB\'\'\'

[[examples]]
source = "gateway_log"
text = "Widget noisy at loud dB"
'''


def test_list_json_has_the_contract_fields():
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)
    by_id = {i["id"]: i for i in items}
    assert {"id", "kind", "title", "codes", "severity"} <= set(items[0])
    assert by_id["disk_upload_timed_out"]["codes"] == ["1011"]
    assert by_id["cbt_fault"]["kind"] == "evidence"
    assert sum(i["kind"] == "error" for i in items) == 32


def test_list_table():
    result = runner.invoke(app, ["list"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    assert "disk_upload_timed_out" in result.stdout and "32 errors" in result.stdout


def test_show_one_signature():
    result = runner.invoke(app, ["show", "host_connection_refused"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Error IDs: 1022" in out
    assert "cause port_902_blocked" in out and "Test-NetConnection" in out
    assert "6h before" in out


def test_show_unknown_id_suggests():
    result = runner.invoke(app, ["show", "disk_upload_timeout"])
    assert result.exit_code == 2
    assert "disk_upload_timed_out" in result.output


def test_lint_builtin_passes_and_broken_dir_exits_4(tmp_path):
    assert runner.invoke(app, ["lint"]).exit_code == 0
    (tmp_path / "widget_noise.toml").write_text(BROKEN.replace('severity = "info"', 'severity = "loud"'))
    result = runner.invoke(app, ["lint", str(tmp_path)])
    assert result.exit_code == 4
    assert "widget_noise.toml: severity" in result.output and "'loud' is not an allowed value" in result.output


def test_test_shows_how_far_the_regex_got(tmp_path):
    (tmp_path / "widget_noise.toml").write_text(BROKEN)
    result = runner.invoke(app, ["test", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 4
    assert "FAIL" in result.stdout
    assert "got as far as 'Widget noisy at '" in result.stdout
    assert "1 failed" in result.stdout


def test_test_builtin_passes():
    result = runner.invoke(app, ["test"])
    assert result.exit_code == 0, result.stdout
    assert " 0 failed" in result.stdout


def test_invalid_extra_dir_exits_4(tmp_path):
    (tmp_path / "widget_noise.toml").write_text(BROKEN.replace('kind = "evidence"', 'kind = "nope"'))
    result = runner.invoke(app, ["list", "--signatures", str(tmp_path)])
    assert result.exit_code == 4
    assert "'nope' is not an allowed value" in result.output


def test_schema_command_prints_json_schema():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["$schema"].endswith("2020-12/schema")
