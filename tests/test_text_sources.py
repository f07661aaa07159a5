"""Text beyond the three fixed sources, through the whole pipeline: where an error text counts as
a failure and where only as a finding (CATALOGUE.md, "Where errors may show"), year-less times,
ESXi scope from vm-support archives, members that are not text or yield nothing, errors with no
time."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import polars as pl

from analyzer import pipeline

SAMPLES = Path(__file__).resolve().parents[1] / "sample_bundles"
MEMORY = ("GatewayErrorHandling.GatewayServiceException: The operation failed with the error "
          "'Memory allocation failed. Out of memory.'")
LOCKED_HOSTD = ("2024-05-14T10:05:00.120Z info hostd[2101] [Originator@6876 sub=Vmsvc.vm:/vmfs/volumes/ds1/APP01/"
                "APP01.vmx opID=abc-1] Failed to lock the file /vmfs/volumes/ds1/APP01/APP01-000001.vmdk")


def _folder(tmp_path: Path, files: dict[str, str | bytes], base: str | None = None) -> Path:
    root = tmp_path / "bundle"
    root.mkdir(parents=True)
    if base:
        with zipfile.ZipFile(SAMPLES / base) as zf:
            zf.extractall(root)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return root


def _triples(doc: dict) -> set[tuple]:
    return {(v["vm"], v["error"], v["cause"]) for v in doc["verdicts"]}


def _finding(doc: dict, signature: str) -> dict:
    return next(f for f in doc["findings"] if f["signature"] == signature)


def test_an_error_text_beside_a_gateway_log_is_a_finding_not_a_verdict(tmp_path):
    doc = pipeline.analyze(_folder(tmp_path, {"mail/notes.txt": MEMORY}, base="healthy.zip")).doc
    assert not any(v["error"] == "internal_memory_allocation_failed" for v in doc["verdicts"])
    found = _finding(doc, "internal_memory_allocation_failed")
    assert (found["kind"], found["count"]) == ("error", 1)
    assert found["examples"][0]["member"] == "mail/notes.txt"


def test_with_no_gateway_log_nor_portal_events_a_vmware_log_error_is_a_verdict_for_its_vm(tmp_path):
    log = ("2024-05-14T10:00:00.000Z| vmx| I125: DICT displayName = \"APP01\"\n"
           "2024-05-14T10:01:02.000Z| vmx| W115: Memory allocation failed. Out of memory.\n")
    doc = pipeline.analyze(_folder(tmp_path, {"vmfs/volumes/ds1/app01-folder/vmware.log": log})).doc
    [verdict] = doc["verdicts"]
    assert (verdict["vm"], verdict["error"], verdict["first_seen"]) == (
        "APP01", "internal_memory_allocation_failed", "2024-05-14T10:01:02Z")
    assert doc["bundle"]["sources"]["text"]["files"] == 1


def test_yearless_syslog_times_take_the_year_of_the_bundles_other_records(tmp_path):
    syslog = "May 14 10:00:00 esx07 Hostd: [error] Failed to lock the file /vmfs/volumes/ds1/APP01/APP01.vmdk\n"
    doc = pipeline.analyze(_folder(tmp_path, {"esx07-syslog.log": syslog}, base="healthy.zip")).doc
    assert _finding(doc, "file_locked_fault")["first_seen"] == "2024-05-14T10:00:00Z"
    alone = pipeline.analyze(_folder(tmp_path / "alone", {"esx07-syslog.log": syslog}))
    assert _finding(alone.doc, "file_locked_fault")["first_seen"] is None  # no year anywhere: unknown
    assert "yearless-times" in {d["code"] for d in alone.doc["diagnostics"]}


def test_a_vm_support_archive_scopes_its_hostd_lines_to_its_host(tmp_path):
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tf:
        data = (LOCKED_HOSTD + "\n").encode()
        info = tarfile.TarInfo("esx-esx07.contoso.local-2024-05-14--10.21-4242/var/run/log/hostd.log")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    root = _folder(tmp_path, {"esx-esx07.contoso.local-2024-05-14--10.21-4242.tgz": inner.getvalue()})
    analysis = pipeline.analyze(root)
    matches = analysis.tables["matches"].filter(pl.col("signature") == "file_locked_fault")
    assert matches.select("source", "host").rows() == [("vcenter_log", "esx07.contoso.local")]
    assert _finding(analysis.doc, "file_locked_fault")["first_seen"] == "2024-05-14T10:05:00.120Z"


def test_binary_and_empty_members_are_said_out_loud(tmp_path):
    root = _folder(tmp_path, {"dump.bin": bytes(range(256)) * 8, "empty.log": "\n\n   \n", "ok.txt": MEMORY})
    diagnostics = {(d["code"], d["location"]) for d in pipeline.analyze(root).doc["diagnostics"]}
    assert ("unrecognised-member", "dump.bin") in diagnostics
    assert ("no-records", "empty.log") in diagnostics


def test_an_error_with_no_time_takes_evidence_from_anywhere_in_its_scope_at_medium_confidence(tmp_path):
    blade = ("Error ID\n\nError Message\nAn internal error occurred. [Failed to consolidate the disks on VM "
             "APP01: Unable to access file since it is locked.]\nMachine\nAPP01\n")
    log = ("2024-05-14T10:00:00.000Z| vmx| I125: DICT displayName = \"APP01\"\n"
           "2024-05-14T10:01:02.000Z| vmx| I125: Failed to lock the file APP01-000001.vmdk\n")
    doc = pipeline.analyze(_folder(tmp_path, {"ticket/error.txt": blade,
                                              "vmfs/volumes/ds1/APP01/vmware.log": log})).doc
    [verdict] = [v for v in doc["verdicts"] if v["error"] == "internal_consolidate_disks_failed"]
    assert (verdict["vm"], verdict["cause"], verdict["confidence"]) == ("APP01", "disk_locked", "medium")
    assert verdict["first_seen"] is None
    assert any(e["member"] == "vmfs/volumes/ds1/APP01/vmware.log" for e in verdict["evidence"])
