"""The scenario generator: names, determinism, schedule, formats, expected verdicts, parseability."""

from __future__ import annotations

import io
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import polars as pl
import pytest

from analyzer import bundle, sources
from analyzer.diagnostics import Diagnostics
from analyzer.sample import ERROR_IDS, list_scenarios, parse_size, write_bundles
from analyzer.sample import catalogue as cat
from analyzer.sample.scenarios import SCENARIOS, build
from analyzer.sample.world import DELTA, INITIAL, interval_after

# CATALOGUE.md, copied here on purpose: the generator's set must follow the contract, not itself.
CATALOGUE_A = {
    "key_vault_operation_failed", "dispose_artefacts_timed_out", "disk_upload_timed_out",
    "changed_blocks_fetch_failed", "internal_server_refused_connection", "internal_invalid_snapshot_configuration",
    "internal_generate_snapshot_hung", "internal_consolidate_disks_failed", "internal_another_task_in_progress",
    "internal_operation_not_allowed", "internal_snapshot_disk_size_invalid", "internal_memory_allocation_failed",
}
CATALOGUE_B = {
    "no_disk_snapshots_found", "internal_file_larger_than_max", "internal_cannot_connect_to_host",
    "invalid_change_tracker", "unable_to_open_snapshot_file", "host_connection_refused",
    "protection_readiness_snapshots_present", "storage_account_not_found", "state_container_not_found",
    "subscription_snapshot_throttled", "resync_snapshot_missing", "insufficient_key_vault_permissions",
    "disk_change_id_unavailable", "rdm_physical_mode_disk", "disk_download_timed_out", "component_timed_out",
    "change_tracking_reset", "vmware_generic_failure",
}
CATALOGUE_C = {"replication_stalled", "slow_replication"}

# Small worlds keep the whole-suite tests quick; scenarios raise these where they need more.
SMALL = {"vms": 3, "days": 1}
NAMES = [name for name, _ in list_scenarios()]
GATEWAY_LINE = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}\.\d{3}(?:Z|[+-]\d{2}:\d{2})?) "
                          r"(Verbose|Info|Warning|Error|Critical) \[[^\]]+\] \S+ - ")


def members(path: Path) -> dict[str, bytes]:
    """A generated bundle's members; `<name>.zip` stands for `<name>.tgz` when the scenario writes a tgz."""
    if not path.exists() and path.with_suffix(".tgz").exists():
        with tarfile.open(path.with_suffix(".tgz")) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def expected(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.expected.json").read_text(encoding="utf-8"))


def gateway_text(files: dict[str, bytes]) -> str:
    parts = [data for name, data in sorted(files.items()) if "GatewayService" in name or name == "notes.txt"]
    return "\n".join(p.decode("utf-8") if not p[:2] == b"\x1f\x8b" else __import__("gzip").decompress(p).decode()
                     for p in parts)


# ---- names and the catalogue ---------------------------------------------------------------------------


def test_error_ids_are_the_catalogues():
    assert ERROR_IDS == CATALOGUE_A | CATALOGUE_B | CATALOGUE_C


def test_every_error_and_cause_has_a_scenario():
    for spec in cat.ERRORS.values():
        for cause in spec.causes:
            assert f"{spec.id}--{cause}" in SCENARIOS, (spec.id, cause)
        if spec.no_evidence_cause() == cat.UNDETERMINED or spec.id == "internal_server_refused_connection":
            assert f"{spec.id}--undetermined" in SCENARIOS, spec.id
    assert {name.split("--")[0] for name in SCENARIOS if "--" in name} == ERROR_IDS


def test_list_scenarios_sorted_one_line_each():
    listed = list_scenarios()
    assert [n for n, _ in listed] == sorted(n for n, _ in listed)
    assert all(d and "\n" not in d for _, d in listed)
    for name in ("healthy", "fleet", "outage-gateway-service", "outage-appliance-down", "outage-storage",
                 "herring-transient-recovered", "herring-other-vm-error", "herring-quiet-restart", "format-vpxd55",
                 "format-win5x", "format-naive-tz", "format-utf16-events", "format-json-events",
                 "format-text-events", "format-renamed", "format-nested-gz"):
        assert name in SCENARIOS


def test_no_evidence_rule_follows_the_catalogue():
    assert cat.ERRORS["changed_blocks_fetch_failed"].no_evidence_cause() == "cbt_reset_or_corrupt"
    assert cat.ERRORS["internal_snapshot_disk_size_invalid"].no_evidence_cause() == "snapshot_disk_size_zero"
    assert cat.ERRORS["disk_upload_timed_out"].no_evidence_cause() == cat.UNDETERMINED
    assert cat.ERRORS["internal_server_refused_connection"].no_evidence_cause(vddk_rules_out=True) == \
        cat.UNDETERMINED


def test_unknown_scenario_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="no-such-scenario"):
        write_bundles(["healthy", "no-such-scenario"], tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("text, value", [("512MiB", 512 << 20), ("1GiB", 1 << 30), ("200MB", 200_000_000),
                                         ("1048576", 1048576), ("1.5k", 1500), (" 2 gib ", 2 << 30)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "MiB", "12 parsecs", "-1GiB", "1e9"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


# ---- determinism ---------------------------------------------------------------------------------------


def test_same_bytes_whatever_the_hash_seed(tmp_path):
    """No set or dict order leaks into the output: two interpreters with different hash seeds agree."""
    code = ("import sys; from pathlib import Path; from analyzer.sample import write_bundles; "
            "write_bundles(['herring-other-vm-error'], Path(sys.argv[1]), vms=3, days=1, seed=4)")
    root = Path(__file__).resolve().parents[1]
    for n in ("1", "2"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / n)], check=True, cwd=root,
                       env={**os.environ, "PYTHONHASHSEED": n})
    assert (tmp_path / "1/herring-other-vm-error.zip").read_bytes() == \
        (tmp_path / "2/herring-other-vm-error.zip").read_bytes()


def test_same_seed_same_bytes(tmp_path):
    names = ["format-nested-gz", "outage-storage"]
    a = write_bundles(names, tmp_path / "a", seed=7, **SMALL)
    b = write_bundles(names, tmp_path / "b", seed=7, **SMALL)
    c = write_bundles(names[:1], tmp_path / "c", seed=8, **SMALL)
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes()
        assert (pa.parent / f"{pa.stem}.expected.json").read_bytes() == \
            (pb.parent / f"{pb.stem}.expected.json").read_bytes()
    assert a[0].read_bytes() != c[0].read_bytes()


# ---- every scenario --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_bundles(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenarios")
    write_bundles([n for n in NAMES if n != "fleet"], out, seed=3, **SMALL)
    write_bundles(["fleet"], out, seed=3, vms=30, days=1)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_every_scenario_writes_a_bundle(all_bundles, name):
    path = all_bundles / f"{name}.zip"
    files = members(path)
    doc = expected(all_bundles, name)
    assert doc["scenario"] == name and doc["seed"] == 3
    verdicts = doc["verdicts"]
    assert verdicts == sorted(verdicts, key=lambda v: (v["vm"] or "", v["error"], v["cause"]))
    assert all(v["error"] in ERROR_IDS for v in verdicts)
    assert any(name.endswith(".csv") or name.endswith(".json") or name.endswith(".txt") for name in files)
    if "--" in name:  # an error x cause scenario: its own verdict, and nothing else
        error, cause = name.split("--")
        assert {(v["error"], v["cause"]) for v in verdicts} == {(error, cause)}
        vms = {v["vm"] for v in verdicts}
        assert vms == {None} if error == "key_vault_operation_failed" else None not in vms
    elif name == "healthy":
        assert verdicts == []


def test_expected_verdicts_name_vms_of_the_bundle(all_bundles):
    for name in NAMES:
        text = "\n".join(data.decode("utf-8", "replace") for data in members(all_bundles / f"{name}.zip").values())
        for v in expected(all_bundles, name)["verdicts"]:
            if v["vm"]:  # the gateway's vm= token, or the Machine label of pasted error details;
                # "APP01 (vcsa01)": the VM APP01 of vCenter vcsa01, when two vCenters have an APP01
                vm = re.escape(re.sub(r" \(\w+\)$", "", v["vm"]))
                assert re.search(rf"vm={vm}[ \r]|^Machine\n{vm}$", text, re.M), (name, v)


def test_herrings_expect_what_the_herring_does_not_explain(all_bundles):
    pairs = {n: {(v["error"], v["cause"]) for v in expected(all_bundles, n)["verdicts"]}
             for n in ("herring-transient-recovered", "herring-other-vm-error", "herring-quiet-restart")}
    assert pairs["herring-transient-recovered"] == {("disk_upload_timed_out", "undetermined")}
    assert pairs["herring-other-vm-error"] == {("internal_another_task_in_progress", "undetermined")}
    assert pairs["herring-quiet-restart"] == {("disk_upload_timed_out", "vcenter_read_throttled")}
    restart = gateway_text(members(all_bundles / "herring-quiet-restart.zip"))
    assert restart.count("Service asrgwy stopping.") == 1 and restart.count("Service asrgwy starting.") == 2


def test_outages_fail_several_vms(all_bundles):
    for name in ("outage-gateway-service", "outage-appliance-down", "outage-storage"):
        vms = {v["vm"] for v in expected(all_bundles, name)["verdicts"]}
        assert len(vms) >= 2, name


# ---- what the logs look like -------------------------------------------------------------------------------


def test_gateway_lines_follow_the_envelope_in_time_order(all_bundles):
    files = members(all_bundles / "disk_upload_timed_out--cache_storage_unreachable.zip")
    for name, data in files.items():
        if "GatewayService" not in name:
            continue
        text = data.decode("utf-8")
        assert "\r\n" in text  # written on Windows
        stamps = []
        for line in text.split("\r\n"):
            if not line or line.startswith((" ", "---", "System.")):
                continue
            m = GATEWAY_LINE.match(line)
            assert m, line
            stamps.append(m.group(1))
        assert stamps == sorted(stamps)


def test_gateway_carries_the_formats_shapes_and_secrets(all_bundles):
    text = gateway_text(members(all_bundles / "disk_upload_timed_out--cache_storage_unreachable.zip"))
    for shape in ("Service asrgwy starting. version=", "VDDK initialised. version=7.0.3 build=",
                  "Heartbeat. activeCycles=", "Replication cycle started. ", "State changed. ",
                  "from=Queued to=CreatingSnapshot", "to=WaitingForArtefactsDisposalPreCycle",
                  "to=QueryingChangedBlocks", "to=UploadingDisks", "to=ReleasingSnapshot", "to=ConsolidatingDisks",
                  "to=Completed", "Disk upload progress. ", "Replication cycle completed. ", "durationSec=",
                  "Replication cycle failed. ", "errorId=1011 error=DiskUploadTimedOut",
                  ".blob.core.windows.net/", "Unable to connect to the remote server", "sig=", "   at "):
        assert shape in text, shape
    assert re.search(r"https://migratelsa\d+\.blob\.core\.windows\.net", text)
    bus = gateway_text(members(all_bundles / "dispose_artefacts_timed_out--service_bus_unreachable.zip"))
    assert "SharedAccessKey=" in bus and ".servicebus.windows.net" in bus
    hub = gateway_text(members(all_bundles / "dispose_artefacts_timed_out--event_hub_unreachable.zip"))
    assert "EventHub" in hub and "ServiceBusCommunicationException" in hub
    store = gateway_text(members(all_bundles / "dispose_artefacts_timed_out--gateway_storage_unreachable.zip"))
    assert "AccountKey=" in store and re.search(r"migrategwsa\d+\.blob\.core\.windows\.net", store)
    vault = gateway_text(members(all_bundles / "disk_upload_timed_out--key_vault_unreachable.zip"))
    assert ".vault.azure.net/" in vault


def test_vddk_version_follows_the_scenario(all_bundles):
    known = gateway_text(members(all_bundles / "internal_server_refused_connection--vddk_known_issue.zip"))
    other = gateway_text(members(all_bundles / "internal_server_refused_connection--undetermined.zip"))
    assert "VDDK initialised. version=6.7.0 build=8250137" in known
    assert "version=6.7" not in other and "VDDK initialised. version=7.0.3" in other
    assert "An internal error occurred. [Server Refused Connection]" in known


def vpxd_text(files: dict[str, bytes], encoding: str = "utf-8") -> str:
    return "\n".join(data.decode(encoding) for name, data in sorted(files.items()) if "vpxd" in name)


def test_vpxd_tasks_faults_progress_and_initiators(all_bundles):
    text = vpxd_text(members(all_bundles / "internal_another_task_in_progress--conflicting_vcenter_task.zip"))
    assert re.search(r"^\S+Z info vpxd\[[0-9A-F]+\] \[Originator@6876 sub=vpxLro opID=\w+\] \[VpxLRO\] -- BEGIN "
                     r"task-\d+ -- vm-\d+ -- vim\.VirtualMachine\.createSnapshot -- ", text, re.M)
    assert re.search(r"\[VpxLRO\] -- BEGIN task-\d+ -- snapshot-\d+ -- vim\.vm\.Snapshot\.remove", text)
    assert "vim.VirtualMachine.consolidateDisks" in text and "vim.VirtualMachine.queryChangedDiskAreas" in text
    assert "-- ERROR task-" in text and '-->    msg = "Another task is already in progress."' in text
    assert re.search(r"RecordOp ASSIGN: info\.progress, task-\d+ = \d+", text)
    assert "[vim.event.TaskEvent] [info] [CONTOSO\\svc-veeam] [DC01]" in text
    assert "[Task: Create virtual machine snapshot]" in text
    assert re.search(r"Event \d+ : com\.vmware\.vc\.VmDiskConsolidatedEvent : ", text)
    begins = re.findall(r"-- BEGIN (task-\d+)", text)
    ends = re.findall(r"-- (?:FINISH|ERROR) (task-\d+)", text)
    assert len(begins) == len(set(begins)) and set(ends) <= set(begins)


def test_hung_snapshot_sits_at_95(all_bundles):
    text = vpxd_text(members(all_bundles / "internal_generate_snapshot_hung--snapshot_creation_stuck.zip"))
    stuck = re.findall(r"info\.progress, (task-\d+) = 95", text)
    assert stuck and f"FINISH {stuck[-1]}" not in text and f"ERROR {stuck[-1]}" not in text


def test_format_variants(all_bundles):
    files = members(all_bundles / "format-vpxd55.zip")
    assert re.search(r"^\d{4}-\d\d-\d\dT[\d:.]+-07:00 \[7F[0-9A-F]+ info 'commonvpxLro' opID=\w+\] \[VpxLRO\]",
                     vpxd_text(files), re.M)

    files = members(all_bundles / "format-win5x.zip")
    raw = b"".join(data for name, data in files.items() if "vpxd" in name)
    assert b"m\xfcller" in raw and b"\r\n" in raw  # cp1252, CRLF
    assert re.search(r"^\[\d{4}-\d\d-\d\d [\d:.]+ \d{5} info 'commonvpxLro'", raw.decode("cp1252"), re.M)
    assert b'vcenter_tz = "+02:00"' in files["bundle.toml"]

    files = members(all_bundles / "format-naive-tz.zip")
    assert b'appliance_tz = "+09:00"' in files["bundle.toml"]
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} Info \[", gateway_text(files), re.M)

    files = members(all_bundles / "format-utf16-events.zip")
    csv_bytes = next(data for name, data in files.items() if name.endswith(".csv"))
    assert csv_bytes[:2] == b"\xff\xfe"
    text = csv_bytes[2:].decode("utf-16-le")
    assert text.startswith("Time,Severity,Event,Machine,Event type,Error ID,Error message,Possible causes,"
                           "Recommendation,Event code,Initiated by")
    assert "복제 주기 실패" in text and re.search(r"\d{4}\. \d{1,2}\. \d{1,2}\. 오[전후] ", text)

    files = members(all_bundles / "format-json-events.zip")
    events = json.loads(files["portal/az-event-list.json"])
    assert isinstance(events, list) and events[0]["properties"]["healthErrors"]

    files = members(all_bundles / "format-text-events.zip")
    text = files["portal/error-details.txt"].decode()
    assert "Error ID\n1011\nError Message\nThe upload of data for disk " in text and "First Seen At\n" in text

    files = members(all_bundles / "format-renamed.zip")
    assert {"notes.txt", "logs/vcenter-dump.txt", "export (1).csv"} <= set(files)

    files = members(all_bundles / "format-nested-gz.zip")
    (tgz,) = [n for n in files if re.fullmatch(r"vc-vcsa01-\d{4}-\d\d-\d\d--09\.30-\d+\.tgz", n)]
    with tarfile.open(fileobj=io.BytesIO(files[tgz])) as tar:
        names = tar.getnames()
    assert any(re.fullmatch(r"var/log/vmware/vpxd/vpxd-\d+\.log\.gz", n) for n in names)
    assert any(re.fullmatch(r"var/log/vmware/vpxd/vpxd-\d+\.log", n) for n in names)
    assert any(n.endswith(".log.1.gz") for n in files)


def test_clock_skew_between_appliance_and_vcenter():
    for name in ("healthy", "format-vpxd55"):
        skew = abs(build(name, 5, 3, 1).world.skew)
        assert 30_000 <= skew <= 181_000


# ---- the schedule -------------------------------------------------------------------------------------------


def test_schedule_follows_catalogue_part_c():
    built = build("healthy", 11, 6, 2)
    by_vm: dict[str, list] = {}
    for c in built.cycles:
        by_vm.setdefault(c.vm.name, []).append(c)
    initial_seen = False
    for cycles in by_vm.values():
        assert [c.cid for c in cycles] == list(range(cycles[0].cid, cycles[0].cid + len(cycles)))
        for prev, nxt in zip(cycles, cycles[1:]):
            assert prev.outcome == "succeeded"
            gap = nxt.due - prev.end
            if prev.type == INITIAL:
                initial_seen = True
                assert nxt.type == DELTA and 0 < gap <= 30_000  # the first delta right after
            else:
                assert gap == interval_after(prev.end - prev.due)
    assert initial_seen


def test_initial_replication_takes_hours_and_deltas_minutes():
    built = build("healthy", 11, 6, 2)
    initial = [c.end - c.due for c in built.cycles if c.type == INITIAL]
    deltas = sorted(c.end - c.due for c in built.cycles if c.type == DELTA)
    assert initial and min(initial) > 30 * 60_000
    assert deltas[len(deltas) // 2] < 15 * 60_000


# ---- size padding ----------------------------------------------------------------------------------------------


def test_size_pads_to_the_requested_volume(tmp_path):
    size = parse_size("24MiB")
    (path,) = write_bundles(["fleet"], tmp_path, vms=12, days=1, seed=2, size=size)
    with zipfile.ZipFile(path) as zf:
        total = 0
        for info in zf.infolist():
            data = zf.read(info)
            if info.filename.endswith(".tgz"):
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    for m in tar.getmembers():
                        blob = tar.extractfile(m).read()
                        total += len(__import__("gzip").decompress(blob)) if m.name.endswith(".gz") else len(blob)
            elif info.filename.endswith(".gz"):
                total += len(__import__("gzip").decompress(data))
            else:
                total += len(data)
    assert 0.9 * size <= total <= 1.15 * size


# ---- parsing: zero unparsed lines in every format ------------------------------------------------------------


def unparsed_members(paths) -> list[str]:
    """Members that are not recognised, hold unparsed lines, or (logs) hold no record at all."""
    problems = []
    for path in paths:
        diags = Diagnostics()
        found = list(bundle.open_bundle(path, diags))
        config = next((tomllib.loads(m.data.decode()) for m in found if m.path == "bundle.toml"), {})
        ctx = sources.ParseContext(appliance_tz=config.get("appliance_tz"), portal_tz=config.get("portal_tz"),
                                   vcenter_tz=config.get("vcenter_tz"))
        for m in found:
            if m.path == "bundle.toml":
                continue
            text = bundle.decode(m.data, m.path, diags)
            source = sources.sniff(text[:sources.SNIFF_CHARS], m.path)
            if source is None:
                problems.append(f"{path.name}!{m.path}: not recognised")
                continue
            parsed = source.parse(text, m.path, ctx)
            empty = not parsed.records and source.name != "portal_events"  # an empty event export is fine
            if parsed.unparsed or empty:
                problems.append(f"{path.name}!{m.path}: {parsed.records} records, {parsed.unparsed} unparsed")
    return problems


def test_every_member_parses_without_unparsed_lines(all_bundles):
    problems = unparsed_members(sorted(all_bundles.glob("*.zip")))
    assert not problems, "\n".join(problems)


def test_padded_bundles_parse_without_unparsed_lines(tmp_path):
    paths = write_bundles(["format-win5x", "format-naive-tz", "format-vpxd55"], tmp_path, vms=2, days=1,
                          size=parse_size("3MiB"))
    problems = unparsed_members(paths)
    assert not problems, "\n".join(problems)


# ---- ESXi and VDDK logs ------------------------------------------------------------------------------------

VMWARE7 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\| vmx\| [IWE]\d{3}: \S")
VMWARE8 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?:In|Wa|Er)\(\d\d\) vmx - \S")
HOSTD7 = re.compile(r"^\S+Z (?:verbose|info|warning|error) hostd\[\d+\] \[Originator@6876 sub=\S+(?: opID=\S+ user=vpxuser)?\] \S")
HOSTD8 = re.compile(r"^\S+Z (?:Db|In|Wa|Er)\(16\d\) Hostd\[\d+\]: \[Originator@6876 sub=\S+(?: opID=\S+ user=vpxuser)?\] \S")
VDDK = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\| host-\d+\| [IWE]\d{3}: \S")
VM_SUPPORT = re.compile(r"esx-(esx\d\d\.contoso\.local)-\d{4}-\d\d-\d\d--\d\d\.\d\d-\d+\.tgz")


def esxi_files(path: Path) -> dict[str, str]:
    """The bundle's ESXi and VDDK logs as text, vm-support members as <archive>!/<path>."""
    out = {}
    for name, data in members(path).items():
        if VM_SUPPORT.fullmatch(name):
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for inner in tar.getmembers():
                    out[f"{name}!/{inner.name}"] = tar.extractfile(inner).read().decode("utf-8")
        elif name.startswith(("esxi/", "vddk/")) or "/VDDK/" in name:
            out[name] = data.decode("utf-8")
    return out


# scenario -> (where the ESXi logs are, ESXi version, VDDK log, a text of the cause in each log)
ESXI_SCENARIOS = {
    "internal_consolidate_disks_failed--disk_locked": ("vm-support", 7, False, {
        "vmware.log": "(Failed to lock the file)", "hostd.log": "since it is locked"}),
    "unable_to_open_snapshot_file--datastore_out_of_space": ("loose", 8, False, {
        "vmware.log": "[msg.hbacommon.outofspace] There is no more space for virtual disk",
        "hostd.log": "Insufficient disk space on datastore 'ds0"}),
    "host_connection_refused--port_902_blocked": ("", 7, True, {
        ".log": "Cnx_Connect: Error message: Failed to connect to server esx0"}),
    "internal_memory_allocation_failed--nfc_buffer_exhausted": ("vm-support", 8, True, {
        "hostd.log": "[NFC ERROR] NfcFssrvr_DiskOpen: Failed to allocate the requested",
        "vixDiskLib-2024-05-14.log": "received NFC error 5 from server: Failed to allocate the requested 2097176 bytes"}),
    "changed_blocks_fetch_failed--cbt_reset_or_corrupt": ("loose", 7, False, {
        "vmware.log": "Change tracking invalid or disk in use.", "hostd.log": "vim.hostd.vmsvc.cbt.cannotGetChanges"}),
}


@pytest.mark.parametrize("name", sorted(ESXI_SCENARIOS))
def test_esxi_and_vddk_logs_trace_the_failures_they_explain(all_bundles, name):
    where, version, vddk, texts = ESXI_SCENARIOS[name]
    files = esxi_files(all_bundles / f"{name}.zip")
    failed = {v["vm"] for v in expected(all_bundles, name)["verdicts"]}
    vmware_logs = [n for n in files if n.endswith("/vmware.log")]
    hostd_logs = [n for n in files if n.endswith("/hostd.log")]
    if where == "vm-support":
        assert all("!/" in n for n in vmware_logs + hostd_logs) and hostd_logs
        assert all(re.search(r"!/vmfs/volumes/ds\d\d/\w+/vmware\.log$", n) for n in vmware_logs)
        assert all(n.endswith("!/var/run/log/hostd.log") for n in hostd_logs)
    elif where == "loose":
        assert {n.split("/")[1] for n in vmware_logs} == failed  # esxi/<vm>/vmware.log
        assert hostd_logs and all(re.fullmatch(r"esxi/esx\d\d/hostd\.log", n) for n in hostd_logs)
    else:
        assert not vmware_logs and not hostd_logs
    assert any("VDDK/vixDiskLib-" in n for n in files) == vddk
    layouts = {"vmware.log": VMWARE8 if version == 8 else VMWARE7, "hostd.log": HOSTD8 if version == 8 else HOSTD7,
               "vixDiskLib": VDDK}
    for n, text in files.items():
        shape = next(rx for key, rx in layouts.items() if key in n)
        assert all(shape.match(line) for line in text.splitlines()), n
        stamps = [line[:24] for line in text.splitlines()]
        assert stamps == sorted(stamps), n
    for suffix, cause_text in texts.items():
        assert any(n.endswith(suffix) and cause_text in t for n, t in files.items()), (suffix, cause_text)
    for n in vmware_logs:  # a VM's log: its name, and mostly everyday lines
        lines = files[n].splitlines()
        assert f'displayName = "{n.split("/")[-2]}"' in files[n]
        assert sum("SnapshotVMX_TakeSnapshot start" in line for line in lines) >= 3


def test_esxi_background_lines_match_no_signature(tmp_path):
    """The lines of the failure are recognised, and only they: the everyday lines match nothing."""
    from analyzer import pipeline

    [path] = write_bundles(["changed_blocks_fetch_failed--cbt_reset_or_corrupt"], tmp_path, seed=2)
    matches = pipeline.analyze(path).tables["matches"]
    got = {(m, n) for m, n in matches.select(pl.col("member").cast(pl.Utf8), "line").iter_rows()
           if m.startswith("esxi/")}
    cbt = ("Change tracking invalid", "cbt.cannotGetChanges")
    want = {(m, n) for m, text in esxi_files(path).items() for n, line in enumerate(text.splitlines(), 1)
            if any(t in line for t in cbt)}
    assert want and got == want
    assert set(matches.filter(pl.col("member").cast(pl.Utf8).str.starts_with("esxi/"))["signature"]) == {"cbt_fault"}


def strip_members(path: Path, out: Path, drop) -> Path:
    """A copy of the bundle zip without the members `drop(name)` picks."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if not drop(info.filename):
                dst.writestr(info, src.read(info))
    return out


def test_the_vm_support_archive_decides_the_cause(tmp_path):
    from analyzer import pipeline

    [path] = write_bundles(["esxi-cbt-vm-support"], tmp_path, seed=1)
    want = [(v["vm"], v["error"], v["cause"]) for v in expected(tmp_path, "esxi-cbt-vm-support")["verdicts"]]
    assert [(e, c) for _, e, c in want] == [("change_tracking_reset", "cbt_reset_or_corrupt")]
    doc = pipeline.analyze(path).doc
    [verdict] = doc["verdicts"]
    assert (verdict["vm"], verdict["error"], verdict["cause"], verdict["confidence"]) == (*want[0], "high")
    assert any(VM_SUPPORT.match(e["member"]) and e["member"].endswith("/vmware.log") and e["evidence"] == "cbt_fault"
               for e in verdict["evidence"])
    without = pipeline.analyze(strip_members(path, tmp_path / "no-esxi.zip", VM_SUPPORT.fullmatch)).doc
    assert [(v["error"], v["cause"]) for v in without["verdicts"]] == [("change_tracking_reset", "undetermined")]


def test_pasted_only_bundle_holds_pasted_errors_and_loose_logs(tmp_path):
    from analyzer import pipeline

    [path] = write_bundles(["pasted-only"], tmp_path, seed=2)
    files = members(path)
    assert not [n for n in files if "GatewayService" in n or "vpxd" in n or n.endswith(".csv")]
    pasted = files["ticket/portal-error-details.txt"].decode()
    assert "Error Message\nAn error occurred while taking a snapshot: Unable to open the snapshot file." in pasted
    assert {n.split("/")[0] for n in files} == {"bundle.toml", "ticket", "esxi", "vddk"}
    doc = pipeline.analyze(path).doc
    want = {(v["vm"], v["error"], v["cause"]) for v in expected(tmp_path, "pasted-only")["verdicts"]}
    assert {(v["vm"], v["error"], v["cause"]) for v in doc["verdicts"]} == want
    assert {v["confidence"] for v in doc["verdicts"]} == {"high"}  # the vmware.log's out-of-space question
    assert {"portal_events", "text"} <= set(doc["bundle"]["sources"]) and "gateway_log" not in doc["bundle"]["sources"]
    without = pipeline.analyze(strip_members(path, tmp_path / "no-esxi.zip", lambda n: n.startswith("esxi/"))).doc
    assert {v["confidence"] for v in without["verdicts"]} == {"low"}  # the single cause, with no evidence


@pytest.mark.parametrize("seed", [2, 3])
def test_overload_is_expected_only_where_heartbeats_show_a_queue(tmp_path, seed):
    """CATALOGUE "Appliance saturation": queued cycles over the judged cycle's window (an hour before
    it to its end; two heartbeats in a row) are the evidence. A VM whose judged cycle (part C: the
    running one past four times the median, else the last completed) met no queue is slow from its
    big delta alone, not expected overloaded (seed 2 expected all eight)."""
    name = "slow_replication--appliance_overloaded"
    [path] = write_bundles([name], tmp_path, seed=seed)
    when = {}
    lines = gateway_text(members(path)).splitlines()
    rows = [(ts, rest) for line in lines if (m := re.match(r"^(\S+) \w+ \[\d+\] \S+ - (.*)", line))
            for ts, rest in [(when.setdefault(m[1], pl.Series([m[1]]).str.to_datetime().item()), m[2])]]
    rows.sort(key=lambda r: r[0])
    end = rows[-1][0]
    runs, run = [], []
    for ts, text in rows:
        if (m := re.match(r"Heartbeat\. activeCycles=\d+ queuedCycles=(\d+)", text)):
            if int(m[1]):
                run.append(ts)
            elif run:
                runs.append(run)
                run = []
    runs.append(run)
    started, done = {}, {}
    for ts, text in rows:
        cycle = (re.search(r"\bvm=(\w+)", text) or [None, None])[1], (re.search(r"\bcycleId=(\d+)", text) or [0, 0])[1]
        if text.startswith("Replication cycle started.") and "type=InitialReplication" not in text:
            started[cycle] = ts
        elif text.startswith("Replication cycle completed.") and cycle in started:
            done[cycle] = (started[cycle], ts)
    causes = {v["vm"]: v["cause"] for v in expected(tmp_path, name)["verdicts"]}
    assert causes
    for vm, cause in causes.items():
        spans = sorted(span for (v, _), span in done.items() if v == vm)
        running = [t for (v, c), t in started.items() if v == vm and (v, c) not in done]
        median = statistics.median(b - a for a, b in spans)
        judged = (running[-1], end) if running and end - running[-1] > 4 * median else spans[-1]
        lo = judged[0] - pl.select(pl.duration(hours=1)).item()
        queued = any(len(r) >= 2 and any(lo <= t <= judged[1] for t in r) for r in runs)
        assert cause == ("appliance_overloaded" if queued else "undetermined"), vm
