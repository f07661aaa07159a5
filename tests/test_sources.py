"""The source registry and the table of sources, forms and tables at the top of sources.py."""

from __future__ import annotations

import re

from analyzer import sources, tables


def _documented() -> list[tuple[str, str, str, tuple[str, ...]]]:
    rows = []
    for line in sources.__doc__.splitlines():
        m = re.fullmatch(r"    (\w+)\s+(\w+)\s+parsers/(\w+)\s+(\w[\w, ]*)", line)
        if m:
            rows.append((m[1], m[2], m[3], tuple(m[4].split(", "))))
    return rows


def test_the_table_in_sources_doc_is_the_registry_in_order():
    declared = [(s.name, s.form, s.parse.__module__.rsplit(".", 1)[-1], s.tables) for s in sources.registry()]
    assert _documented() == declared


def test_every_form_is_declared_once_and_fills_known_tables():
    forms = [s.form for s in sources.registry()]
    assert len(forms) == len(set(forms))
    for source in sources.registry():
        assert source.tables and set(source.tables) <= set(tables.SCHEMAS), source.form


def test_sniff_takes_the_first_form_that_recognises_the_head():
    head = "Task Name,Target,Status\nCreate virtual machine snapshot,APP01,Completed\n"
    assert sources.sniff(head, "tasks.csv").form == "task_csv"
    # any other text is read as text (FORMATS.md section 6); only binary stays unrecognised
    assert sources.sniff("nothing to see\n", "notes.txt").form == "text"
    assert sources.sniff("\x00\x01\x02\x03PK\x05\x06\x00\x00", "blob.bin") is None


def test_a_source_present_makes_every_table_its_forms_fill_present():
    assert sources.tables_of({"vcenter_tasks"}) == {"vcenter_tasks", "vcenter_log", "vcenter_events", "activity"}
    assert sources.tables_of({"gateway_log", "portal_events"}) == {
        "gateway_log", "activity", "portal_events", "replication_status", "appliance_resources", "text_log"}
    assert sources.tables_of(()) == set()
    assert set(tables.VCENTER) <= sources.tables_of({"vcenter_tasks"})
