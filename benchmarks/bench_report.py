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


def fleet_doc(vms: int = 500, days: int = 3, seed: int = 7) -> dict:
    """An analysis document shaped like the pipeline's, big enough to test the report at scale."""
    rng = random.Random(seed)
    end = START + timedelta(days=days)
    outage = (START + timedelta(days=1, hours=9, minutes=2), START + timedelta(days=1, hours=9, minutes=58))
    outage_ev = [{"source": "gateway_log", "member": GW, "line": 400000 + n, "ts": iso(outage[0] + timedelta(seconds=n)),
                  "text": f"{iso(outage[0])} Info [1] Gateway.Service.Host - Service asrgwy {w}."}
                 for n, w in enumerate(("stopping. reason=\"unhandled exception\"", "stopped"))]
    out_vms, verdicts, outage_vms, outage_cycles = [], [], [], []
    for n in range(vms):
        name = f"vm-{n:04d}"
        host = f"esx{n % 25:02d}.contoso.local"
        interval = timedelta(hours=days * 24 / 30) - timedelta(minutes=25)
        t = START + timedelta(minutes=rng.randrange(0, 120))
        cycles, tasks, errors = [], [], []
        fate = rng.random()
        failing = ERRORS[n % len(ERRORS)] if fate < 0.2 else None
        cycle_no = 1
        while t < end - timedelta(minutes=30):
            dur = timedelta(minutes=rng.randrange(4, 40))
            cid = f"{name}#{cycle_no}"
            outcome, error, state = "succeeded", None, None
            if outage[0] <= t + dur and t <= outage[1] and rng.random() < 0.8:
                outcome, error, state = "failed", "disk_upload_timed_out", "UploadingDisks"
                outage_vms.append(name)
                outage_cycles.append(cid)
                verdicts.append({"vm": name, "error": "disk_upload_timed_out", "error_code": "1011",
                                 "cause": "gateway_service_down", "confidence": "high", "severity": "warning",
                                 "cycles": [cid], "first_seen": iso(t + dur), "last_seen": iso(t + dur),
                                 "summary": f"The gateway service was down while {name} uploaded its disks.",
                                 "remediation": ["Check that the gateway service runs; start it if stopped.",
                                                 "Fix what stopped it (see the Critical records before the stop)."],
                                 "references": ["https://learn.microsoft.com/azure/migrate/troubleshoot-replication-vmware"],
                                 "evidence": outage_ev, "title": "Disk upload timed out", "outage": "outage-1"})
            elif failing and t > end - timedelta(hours=10):
                outcome, error, state = "failed", failing[0], "CreatingSnapshot"
            if cycle_no == 1:
                kind = "initial"
            else:
                kind = "delta"
            last = t + dur >= end
            cycles.append({"id": cid, "type": kind, "start": iso(t), "end": None if last else iso(t + dur),
                           "outcome": "in_progress" if last else outcome,
                           "uploaded_bytes": rng.randrange(10**7, 10**10), "error": error,
                           "duration_sec": None if last else int(dur.total_seconds()),
                           "rate_mbps": round(rng.uniform(0.5, 90), 1), "failed_state": state})
            tasks.append({"task_id": f"task-{n * 100 + cycle_no}", "method": "vim.VirtualMachine.createSnapshot",
                          "start": iso(t + timedelta(seconds=20)), "end": iso(t + timedelta(seconds=50)),
                          "outcome": "error" if error and error != "disk_upload_timed_out" else "success",
                          "fault_type": "vim.fault.TaskInProgress" if error == "internal_another_task_in_progress" else None,
                          "initiator": "CONTOSO\\svc-azmigrate"})
            tasks.append({"task_id": f"task-{n * 100 + cycle_no + 50}", "method": "vim.vm.Snapshot.remove",
                          "start": iso(t + dur - timedelta(seconds=40)), "end": iso(t + dur - timedelta(seconds=5)),
                          "outcome": "success", "fault_type": None, "initiator": "CONTOSO\\svc-azmigrate"})
            if error:
                errors.append({"ts": iso(t + dur), "error": error, "source": "gateway_log",
                               "text": f"Replication cycle failed. vm={name} cycleId={cycle_no} error={error}"})
            cycle_no += 1
            t += dur + interval
        failed_tail = 0
        for c in reversed(cycles):
            if c["outcome"] != "failed":
                break
            failed_tail += 1
        ok = [c for c in cycles if c["outcome"] == "succeeded"]
        health = "critical" if failed_tail >= 2 else "warning" if failed_tail == 1 or name in outage_vms else "healthy"
        if fate > 0.995:
            health = "unknown"
        out_vms.append({"vm": name, "vm_ids": [f"vm-{1000 + n}"], "host": host, "health": health,
                        "last_successful_cycle_end": ok[-1]["end"] if ok else None,
                        "consecutive_failures": failed_tail, "cycles": cycles, "tasks": tasks, "errors": errors})
        own = [c for c in cycles if c["error"] and c["error"] == (failing or [None])[0]]
        if failing and own:
            error, code, cause, title, confidence = failing
            verdicts.append({"vm": name, "error": error, "error_code": code, "cause": cause,
                             "confidence": confidence, "severity": "critical" if failed_tail else "warning",
                             "cycles": [c["id"] for c in own], "first_seen": own[0]["end"], "last_seen": own[-1]["end"],
                             "summary": f"{title} on {name}; see the evidence lines.",
                             "remediation": [f"Step {k} for {cause}." for k in (1, 2, 3)],
                             "references": ["https://learn.microsoft.com/azure/migrate/troubleshoot-replication-vmware"],
                             "evidence": [{"source": "gateway_log", "member": GW, "line": 1000 * n + k,
                                           "ts": c["end"], "text": f"{c['end']} Error [7] Gateway.Replication - "
                                           f"Replication cycle failed. vm={name} error={error} sig=[REDACTED]"}
                                          for k, c in enumerate(own[:4])],
                             "title": title, "outage": None})
    verdicts.sort(key=lambda v: (v["vm"] or "", v["error"], v["cause"]))
    return {
        "schema": "bundle-analyzer/analysis/v1",
        "bundle": {"name": f"fleet-{vms}x{days}d.zip", "sha256": "0" * 64, "analyzed_at": iso(end),
                   "analyzer_version": "bench", "ticket": "BENCH-1",
                   "sources": {s: {"files": 4, "records": 10**6, "unparsed": 0, "first": iso(START), "last": iso(end)}
                               for s in ("gateway_log", "portal_events", "vcenter_tasks")},
                   "missing_sources": [], "clock_skew": {"seconds": -1.2, "basis": 900}, "appliance_tz": "+09:00"},
        "vms": out_vms,
        "verdicts": verdicts,
        "outages": [{"id": "outage-1", "cause": "gateway_service_down", "start": iso(outage[0]), "end": iso(outage[1]),
                     "summary": f"Gateway service was down; it explains {len(outage_cycles)} cycles on "
                                f"{len(set(outage_vms))} VMs.",
                     "vms": sorted(set(outage_vms)), "cycles": sorted(outage_cycles), "evidence": outage_ev}],
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
