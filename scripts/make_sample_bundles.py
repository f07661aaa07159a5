"""Regenerate sample_bundles/: the committed example bundles, their expected verdicts and the README.

    python scripts/make_sample_bundles.py            # rewrite sample_bundles/
    python scripts/make_sample_bundles.py --check    # exit 1 when the committed files differ

This script is the only thing that writes sample_bundles/. Each bundle is a generated scenario
(analyzer.sample) written with the defaults (6 VMs, 2 days, seed 1) under a friendlier name.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyzer.sample import write_bundles  # noqa: E402
from analyzer.sample.scenarios import SCENARIOS  # noqa: E402

OUT = ROOT / "sample_bundles"
SEED, VMS, DAYS = 1, 6, 2
MAX_BYTES = 1 << 20

# (file stem, scenario, what a reader sees in it)
BUNDLES = [
    ("case-disk-upload-timeout", "disk_upload_timed_out--cache_storage_unreachable",
     "Uploads of every VM time out while the cache storage account (migratelsa…) is unreachable for 2.5 hours: "
     "one appliance-wide cause for several VMs."),
    ("healthy", "healthy",
     "Six VMs replicating without a failure: initial replications, hourly deltas, background noise. "
     "Nothing to report."),
    ("dispose-service-down", "dispose_artefacts_timed_out--gateway_service_down",
     "The gateway service crashes (Critical, stopping, stopped) while a cycle waits for artefact disposal; "
     "181008 follows."),
    ("backup-task-conflict", "internal_another_task_in_progress--conflicting_vcenter_task",
     "A backup product's snapshot task (CONTOSO\\svc-veeam) overlaps each cycle of one VM: "
     "'Another task is already in progress'."),
    ("upload-timeout-undetermined", "disk_upload_timed_out--undetermined",
     "One huge delta at the usual rate times out; no outage, no throttling, no connectivity failure."),
    ("outage-appliance-down", "outage-appliance-down",
     "The appliance goes silent for 100 minutes at its busiest; in-flight cycles fail with 1011 or 181008. "
     "vpxd inside a nested vc-support tgz with .gz rotations."),
    ("herring-quiet-restart", "herring-quiet-restart",
     "A service restart in a quiet period, hours before one VM's disk reads crawl: the restart explains nothing."),
    ("key-vault-guest-user", "key_vault_operation_failed--csp_remote_user",
     "Enabling replication fails on Key Vault; the portal export names a guest (#EXT#) partner admin."),
    ("snapshot-hung", "internal_generate_snapshot_hung--snapshot_creation_stuck",
     "A createSnapshot task sits at 95 % and never finishes; the cycle fails with Generate Snapshot Hung."),
    ("stalled-service-gone", "replication_stalled--gateway_service_down",
     "The service stops in a quiet moment eight hours before the end and never returns: every VM stalls."),
    ("format-win5x-storage-vmotion", "format-win5x",
     "vCenter 5.x on Windows (naive local times, cp1252, CRLF, bundle.toml vcenter_tz): a Storage vMotion, "
     "then changed blocks cannot be fetched."),
    ("format-korean-utf16-events", "format-utf16-events",
     "Events exported by the Korean portal as UTF-16 CSV: the gateway storage account is unreachable."),
    ("format-nested-gz-host-down", "format-nested-gz",
     "A host stops responding; snapshots of its VMs fail. Gateway and vpxd rotations as .gz, vpxd in a nested "
     "tgz, events as JSON."),
    ("esxi-vm-support-cbt", "esxi-cbt-vm-support",
     "Changed block tracking is reset on one VM and vCenter shows only a file fault on its -ctk.vmdk. The "
     "host's vm-support archive (`esx-<host>-<date>--09.30-<n>.tgz`: hostd.log, the VM's vmware.log) says change "
     "tracking is invalid: that decides the cause (without the archive it is undetermined)."),
    ("pasted-only-datastore-full", "pasted-only",
     "No gateway log, vpxd or portal export: the portal's error details pasted as text, and loose ESXi 8 logs "
     "(the VM's vmware.log, the host's hostd.log) and the VDDK client log. The vmware.log's out-of-space question "
     "gives the cause high confidence."),
]


def verdict_text(verdicts: list[dict]) -> str:
    if not verdicts:
        return "none"
    pairs: dict[tuple[str, str], list[str]] = {}
    for v in verdicts:
        pairs.setdefault((v["error"], v["cause"]), []).append(v["vm"] or "no VM")
    return "; ".join(f"`{error}` / `{cause}` ({', '.join(vms)})" for (error, cause), vms in sorted(pairs.items()))


def readme(rows: list[tuple[str, str, str, list[dict], int]]) -> str:
    lines = [
        "# sample_bundles",
        "",
        "Generated support bundles, small enough to keep in git, each with the verdicts a correct analyzer",
        "must report (`<name>.expected.json`, the `verdicts` part of the analysis JSON).",
        "",
        "```",
        "bundle-analyzer analyze sample_bundles/case-disk-upload-timeout.zip",
        "```",
        "",
        "Do not edit these files: `python scripts/make_sample_bundles.py` rewrites all of them (scenario, seed "
        f"{SEED}, {VMS} VMs, {DAYS} days). `bundle-analyzer sample --list` shows every scenario the generator knows;",
        "`bundle-analyzer sample SCENARIO -o DIR` writes any of them.",
        "",
        "| file | scenario | what it shows | expected verdicts (error / cause, VMs) | size |",
        "|---|---|---|---|---|",
    ]
    for stem, scenario, what, verdicts, size in rows:
        lines.append(f"| `{stem}.zip` | `{scenario}` | {what} | {verdict_text(verdicts)} | {size // 1024} KB |")
    lines += ["", "All times in the bundles are in May 2024; nothing in them comes from a real customer.", ""]
    return "\n".join(lines)


def build(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stem, scenario, what in BUNDLES:
            assert scenario in SCENARIOS, scenario
            (zip_path,) = write_bundles([scenario], Path(tmp), vms=VMS, days=DAYS, seed=SEED)
            size = zip_path.stat().st_size
            if size >= MAX_BYTES:
                raise SystemExit(f"{stem}: {size} bytes, over the 1 MB a committed sample may take")
            shutil.copyfile(zip_path, target / f"{stem}.zip")
            shutil.copyfile(Path(tmp) / f"{scenario}.expected.json", target / f"{stem}.expected.json")
            verdicts = json.loads((target / f"{stem}.expected.json").read_text(encoding="utf-8"))["verdicts"]
            rows.append((stem, scenario, what, verdicts, size))
    (target / "README.md").write_text(readme(rows), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = parser.parse_args()
    if not args.check:
        for old in OUT.glob("*"):
            if old.suffix in (".zip", ".json", ".md"):
                old.unlink()
        build(OUT)
        print(f"wrote {len(BUNDLES)} bundles to {OUT}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        fresh = {p.name: p.read_bytes() for p in Path(tmp).iterdir()}
    committed = {p.name: p.read_bytes() for p in OUT.iterdir() if p.suffix in (".zip", ".json", ".md")}
    differ = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
    for name in differ:
        print(f"differs: sample_bundles/{name}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
