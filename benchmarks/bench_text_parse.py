"""Parse throughput of the generic text source (text_log) against the gateway log parser on the
same amount of text.

    python benchmarks/bench_text_parse.py [MEGABYTES] [--runs N]   (default 200 MB, 3 runs)

gateway   bench_parse_gateway's synthetic log (cycles, progress, heartbeats, .NET stack traces),
          parsed with every record kept (ctx.keep None), and with the Keep the pipeline derives
          from the signature library (the parser then fully parses only the rows it keeps)
text      the same size split over four members in real layouts, each in one layout as a real
          member is: a VDDK client log (pipe form, lines of velero-plugin-for-vsphere issue 118),
          an ESXi 8 vmware.log, syslog-forwarded ESXi hostd/vpxa lines and a log4j log with
          stack traces

Both get their text as plain UTF-8 bytes, as the pipeline hands them over. Prints the median of
the runs in MB/s (1 MB = 10^6 bytes of text).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_parse_gateway import build  # noqa: E402

from analyzer import pipeline  # noqa: E402
from analyzer.parsers import gateway_log, text_log  # noqa: E402
from analyzer.signatures import load_library  # noqa: E402
from analyzer.sources import ParseContext  # noqa: E402

REAL = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "real"

VMWARE_LOG = """\
2023-12-05T17:42:40.666Z In(05) vmx vim-cmd-09-a45d SnapshotVMX_TakeSnapshot start: 'snap-{i}', deviceState=0, lazy=0, quiesced=0
2023-12-05T17:42:40.680Z In(05) vcpu-0 vim-cmd-09-a45d SnapshotVMXTakeSnapshotWork: Initiated snapshot 'snap-{i}': {i}
2023-12-05T17:42:41.585Z In(05) vmx - SnapshotVMXTakeSnapshotComplete: Done with snapshot 'snap-{i}': {i}
2023-12-05T17:42:41.600Z Wa(03) vmx - DISKLIB-CTK: Could not open change tracking file "/vmfs/volumes/ds01/APP{i}/APP{i}-ctk.vmdk": Could not open/create change tracking file.
2023-12-05T17:42:41.700Z Er(02) vmx - DISKLIB-LIB_BLOCKTRACK: Could not open change tracker /vmfs/volumes/ds01/APP{i}/APP{i}-ctk.vmdk: Change tracking invalid or disk in use.
2023-12-05T17:42:42.001Z In(05) vcpu-0 - AIOGNRC: Failed to open '/vmfs/devices/vsan/4e692365' : Could not find the file (60003) (0x2013).
"""
SYSLOG = """\
May  7 17:07:09 esx07 Hostd: [error] [Originator@6876 sub=Vmsvc.vm:/vmfs/volumes/ds01/APP{i}/APP{i}.vmx opID=a{i}] Unable to access file [ds01] APP{i}/APP{i}.vmdk since it is locked
May  7 17:07:09 esx07 Vpxa: info vpxa[2099001] [Originator@6876 sub=vpxLro opID=b{i}] [VpxLRO] -- FINISH lro-{i}
May  7 17:07:10 esx07 Hostd: [info] [Originator@6876 sub=Libs opID=c{i}] NFC: Received NFC error 5 from server: Failed to allocate the requested 2097176 bytes
May  7 17:07:11 esx08 vmkernel: cpu3:2099331)WARNING: NFS: 1227: Lost connection to the server 10.0.4.17 mount point /vol/ds02
"""
LOG4J = """\
2024-02-10 17:05:02,505 INFO  [kvm.storage.LibvirtStorageAdaptor] (agentRequest-Handler-2:null) (logid:cdaf{i}) Trying to fetch storage pool {i} from libvirt
2024-02-10 17:05:02,508 ERROR [c.c.a.ApiAsyncJobDispatcher] (API-Job-Executor-78:ctx-299e1e51 job-{i}) Unexpected exception while executing CreateVMSnapshotCmd
java.lang.RuntimeException: Unexpected exception
        at com.cloud.vm.snapshot.VMSnapshotManagerImpl.createVMSnapshot(VMSnapshotManagerImpl.java:482)
        at sun.reflect.GeneratedMethodAccessor1021.invoke(Unknown Source)
2024-02-10 17:05:07,076 WARN  [kvm.storage.LibvirtStorageAdaptor] (agentRequest-Handler-4:null) (logid:92a3{i}) Asking libvirt to refresh storage pool {i}
"""


def repeat(block: str, megabytes: float) -> bytes:
    return build(megabytes, block).encode()


def text_members(megabytes: float) -> dict[str, bytes]:
    vddk = (REAL / "parsers-velero-118-vixdisklib.log").read_text(encoding="utf-8")
    quarter = megabytes / 4
    return {"vddk/vixDiskLib-1.log": repeat(vddk, quarter),
            "esx/vmfs/volumes/ds01/APP01/vmware.log": repeat(VMWARE_LOG, quarter),
            "syslog/esx-hosts.log": repeat(SYSLOG, quarter),
            "cloudstack/management-server.log": repeat(LOG4J, quarter)}


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def median_mbps(size: int, runs: int, work) -> tuple[float, list[float]]:
    seconds = [timed(work) for _ in range(runs)]
    return size / 1e6 / statistics.median(seconds), seconds


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("megabytes", nargs="?", type=float, default=200)
    args.add_argument("--runs", type=int, default=3)
    options = args.parse_args()

    gateway = build(options.megabytes).encode()
    keep = pipeline._keep(load_library(), "gateway_log")
    members = text_members(options.megabytes)
    text_size = sum(len(t) for t in members.values())

    def parse_text() -> None:
        for member, data in members.items():
            text_log.parse(data, member, ParseContext())

    rows = [
        ("gateway (every record)", len(gateway), lambda: gateway_log.parse(
            gateway, "GatewayService.log", ParseContext())),
        ("gateway (pipeline Keep)", len(gateway), lambda: gateway_log.parse(
            gateway, "GatewayService.log", ParseContext(keep=keep))),
        ("text (4 layouts)", text_size, parse_text),
    ]
    rows += [(f"  text: {member.rsplit('/', 1)[-1]}", len(data),
              lambda m=member, d=data: text_log.parse(d, m, ParseContext()))
             for member, data in members.items()]
    print(f"{options.runs} runs each; MB/s of the median run")
    print("| parser | MB | MB/s (median) | seconds per run |")
    print("|---|---|---|---|")
    for name, size, work in rows:
        mbps, seconds = median_mbps(size, options.runs, work)
        print(f"| {name} | {size / 1e6:.0f} | {mbps:.1f} | "
              f"{', '.join(f'{s:.2f}' for s in seconds)} |", flush=True)


if __name__ == "__main__":
    main()
