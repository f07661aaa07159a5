"""Fleet-scale report: a synthetic 500-VM x 3-day analysis document, rendered and opened in Chromium.

    python benchmarks/bench_report.py [--vms 500] [--days 3] [--runs 3] [--no-browser]

Prints the render time, the page size (limit: 5 MB) and, in Debian's chromium, the time to first
render: from navigation start until the report script has drawn the timeline (`data-ready`), and
first contentful paint. The page is written to benchmarks/out/fleet-report.html (gitignored).
The browser tests import `fleet_doc` from here.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyzer.report import render  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START = datetime(2024, 5, 12, tzinfo=timezone.utc)
GW = "Logs/GatewayService.log"
REFERENCE = "https://learn.microsoft.com/azure/migrate/troubleshoot-replication-vmware"
ERRORS = [  # (error, code, cause, title, confidence)
    ("disk_upload_timed_out", "1011", "vcenter_read_throttled", "Disk upload timed out", "medium"),
    ("internal_another_task_in_progress", None, "conflicting_vcenter_task",
     "Another task is already in progress", "high"),
    ("changed_blocks_fetch_failed", None, "cbt_reset_or_corrupt",
     "Changed blocks could not be fetched", "low"),
    ("internal_memory_allocation_failed", None, "nfc_buffer_exhausted",
     "Memory allocation failed on the host", "high"),
    ("dispose_artefacts_timed_out", "181008", "undetermined", "Artefact disposal timed out", "low"),
]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cycle(cid: str, kind: str, start: datetime, dur: timedelta, end: datetime, outcome: str,
           error: str | None, rng: random.Random) -> dict:
    running = start + dur >= end  # the bundle ends before the cycle does
    return {"id": cid, "type": kind, "start": iso(start), "end": None if running else iso(start + dur),
            "outcome": "in_progress" if running else outcome,
            "uploaded_bytes": rng.randrange(10**7, 10**10), "error": error,
            "duration_sec": None if running else int(dur.total_seconds()),
            "rate_mbps": round(rng.uniform(0.5, 90), 1),
            "failed_state": ("UploadingDisks" if error == "disk_upload_timed_out" else "CreatingSnapshot")
            if error else None}


def _tasks(number: int, start: datetime, dur: timedelta, error: str | None) -> list[dict]:
    """The create-snapshot and remove-snapshot tasks of one cycle."""
    snapshot_failed = bool(error) and error != "disk_upload_timed_out"
    return [
        {"task_id": f"task-{number}", "method": "vim.VirtualMachine.createSnapshot",
         "start": iso(start + timedelta(seconds=20)), "end": iso(start + timedelta(seconds=50)),
         "outcome": "failed" if snapshot_failed else "succeeded",
         "fault_type": "vim.fault.TaskInProgress" if error == "internal_another_task_in_progress" else None,
         "initiator": "CONTOSO\\svc-azmigrate"},
        {"task_id": f"task-{number + 50}", "method": "vim.vm.Snapshot.remove",
         "start": iso(start + dur - timedelta(seconds=40)), "end": iso(start + dur - timedelta(seconds=5)),
         "outcome": "succeeded", "fault_type": None, "initiator": "CONTOSO\\svc-azmigrate"},
    ]


def _verdict(vm: str, failing: tuple, cycles: list[dict], failed_tail: int, n: int) -> dict:
    error, code, cause, title, confidence = failing
    return {"vm": vm, "error": error, "error_code": code, "cause": cause, "confidence": confidence,
            "severity": "critical" if failed_tail else "warning",
            "cycles": [c["id"] for c in cycles], "first_seen": cycles[0]["end"], "last_seen": cycles[-1]["end"],
            "summary": f"{title} on {vm}; see the evidence lines.",
            "remediation": [f"Step {k} for `{cause}`." for k in (1, 2, 3)], "references": [REFERENCE],
            "evidence": [{"source": "gateway_log", "member": GW, "line": 1000 * n + k, "ts": c["end"],
                          "text": f"{c['end']} Error [7] Gateway.Replication - Replication cycle failed. "
                                  f"vm={vm} error={error} sig=<redacted>"}
                         for k, c in enumerate(cycles[:4])],
            "title": title, "outage": None}


def _outage_verdict(vm: str, cycle: dict, evidence: list[dict]) -> dict:
    return {"vm": vm, "error": "disk_upload_timed_out", "error_code": "1011", "cause": "gateway_service_down",
            "confidence": "high", "severity": "warning", "cycles": [cycle["id"]],
            "first_seen": cycle["end"], "last_seen": cycle["end"],
            "summary": f"The gateway service was down while {vm} uploaded its disks.",
            "remediation": ["Check that the gateway service runs; start it if stopped.",
                            "Fix what stopped it (see the Critical records before the stop)."],
            "references": [REFERENCE], "evidence": evidence, "title": "Disk upload timed out",
            "outage": "outage-1"}


def fleet_doc(vms: int = 500, days: int = 3, seed: int = 7) -> dict:
    """An analysis document shaped like the pipeline's, big enough to test the report at scale.

    About 30 cycles per VM (two vCenter tasks each), one gateway outage on day 2 that fails most
    cycles running through it, and a fifth of the VMs failing at the end with one of ERRORS.
    """
    rng = random.Random(seed)
    end = START + timedelta(days=days)
    interval = timedelta(hours=days * 24 / 30) - timedelta(minutes=25)
    down = (START + timedelta(days=1, hours=9, minutes=2), START + timedelta(days=1, hours=9, minutes=58))
    outage_ev = [{"source": "gateway_log", "member": GW, "line": 400000 + k, "ts": iso(down[0]),
                  "text": f"{iso(down[0])} Info [1] Gateway.Service.Host - Service asrgwy {what}.",
                  "note": "the gateway service stopped"}
                 for k, what in enumerate(("stopping. reason=\"unhandled exception\"", "stopped"))]
    out_vms, verdicts, outage_cycles = [], [], []
    for n in range(vms):
        name, host = f"vm-{n:04d}", f"esx{n % 25:02d}.contoso.local"
        failing = ERRORS[n % len(ERRORS)] if rng.random() < 0.2 else None
        cycles, tasks, errors = [], [], []
        start = START + timedelta(minutes=rng.randrange(0, 120))
        while start < end - timedelta(minutes=30):
            dur = timedelta(minutes=rng.randrange(4, 40))
            cid = f"{name}#{len(cycles) + 1}"
            error = None
            if down[0] <= start + dur and start <= down[1] and rng.random() < 0.8:
                error = "disk_upload_timed_out"
            elif failing and start > end - timedelta(hours=10):
                error = failing[0]
            cycles.append(_cycle(cid, "delta" if cycles else "initial", start, dur, end,
                                 "failed" if error else "succeeded", error, rng))
            tasks += _tasks(n * 100 + len(cycles), start, dur, error)
            if error:
                errors.append({"ts": iso(start + dur), "error": error, "source": "gateway_log",
                               "text": f"Replication cycle failed. vm={name} cycleId={len(cycles)} error={error}"})
            if error == "disk_upload_timed_out":
                outage_cycles.append((name, cid))
                verdicts.append(_outage_verdict(name, cycles[-1], outage_ev))
            start += dur + interval
        failed_tail = next((k for k, c in enumerate(reversed(cycles)) if c["outcome"] != "failed"), len(cycles))
        in_outage = any(vm == name for vm, _ in outage_cycles)
        health = "critical" if failed_tail >= 2 else "warning" if failed_tail or in_outage else "healthy"
        ok = [c for c in cycles if c["outcome"] == "succeeded"]
        out_vms.append({"vm": name, "vm_ids": [f"vm-{1000 + n}"], "host": host, "health": health,
                        "last_successful_cycle_end": ok[-1]["end"] if ok else None,
                        "consecutive_failures": failed_tail, "cycles": cycles, "tasks": tasks, "errors": errors})
        own = [c for c in cycles if failing and c["error"] == failing[0]]
        if own:
            verdicts.append(_verdict(name, failing, own, failed_tail, n))
    verdicts.sort(key=lambda v: (v["vm"] or "", v["error"], v["cause"]))
    outage_vms = sorted({vm for vm, _ in outage_cycles})
    return {
        "schema": "bundle-analyzer/analysis/v1",
        "bundle": {"name": f"fleet-{vms}x{days}d.zip", "sha256": "0" * 64, "analyzed_at": iso(end),
                   "analyzer_version": "bench", "ticket": "BENCH-1",
                   "sources": {s: {"files": 4, "records": 10**6, "unparsed": 0, "first": iso(START), "last": iso(end)}
                               for s in ("gateway_log", "portal_events", "vcenter_tasks")},
                   "missing_sources": [], "clock_skew": {"seconds": -1.2, "basis": 900}, "appliance_tz": "+09:00"},
        "vms": out_vms,
        "verdicts": verdicts,
        "outages": [{"id": "outage-1", "cause": "gateway_service_down", "start": iso(down[0]), "end": iso(down[1]),
                     "summary": f"Gateway service was down; it explains {len(outage_cycles)} cycles on "
                                f"{len(outage_vms)} VMs.",
                     "vms": outage_vms, "cycles": sorted(c for _, c in outage_cycles), "evidence": outage_ev}],
        "not_evaluated": [],
        "diagnostics": [{"severity": "info", "code": "bench", "message": "synthetic document", "location": None}],
    }


def first_render_ms(html_path: Path, runs: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                   viewport={"width": 1400, "height": 900})
        for _ in range(runs):
            page = ctx.new_page()
            page.goto(html_path.as_uri())
            page.wait_for_selector("html[data-ready]")
            results.append({
                "ready_ms": float(page.get_attribute("html", "data-ready")),
                "fcp_ms": page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0]"
                                        " || {startTime: NaN}).startTime"),
                "lanes_drawn": page.locator("#tl-svg text.vm-label").count(),
                "bars_drawn": page.locator("#tl-svg .bar").count(),
            })
            page.close()
        ctx.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=500)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()

    doc = fleet_doc(args.vms, args.days)
    cycles = sum(len(vm["cycles"]) for vm in doc["vms"])
    tasks = sum(len(vm["tasks"]) for vm in doc["vms"])
    began = time.perf_counter()
    html = render(doc)
    render_s = time.perf_counter() - began
    out = ROOT / "benchmarks" / "out" / "fleet-report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    size = len(html.encode("utf-8"))
    print(f"document: {len(doc['vms'])} VMs, {cycles} cycles, {tasks} vCenter tasks, "
          f"{len(doc['verdicts'])} verdicts")
    print(f"render: {render_s:.2f} s   size: {size / 1e6:.2f} MB ({size} bytes, limit 5 MB)   -> {out}")
    if args.no_browser or not Path(CHROMIUM).exists():
        return
    runs = first_render_ms(out, args.runs)
    for r in runs:
        print(f"chromium: timeline drawn at {r['ready_ms']:.0f} ms, first contentful paint "
              f"{r['fcp_ms']:.0f} ms, {r['lanes_drawn']} lanes / {r['bars_drawn']} bars in the DOM")
    print(f"median time to first render: {statistics.median(r['ready_ms'] for r in runs):.0f} ms")


if __name__ == "__main__":
    main()
