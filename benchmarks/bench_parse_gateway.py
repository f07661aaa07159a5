"""Parse throughput of the gateway log parser on a large synthetic log.

    python benchmarks/bench_parse_gateway.py [MEGABYTES]   (default 200)

Repeats a realistic block of mixed lines (cycles, progress, heartbeats, .NET failures with stack
traces, naive and zoned times) to the requested size, parses it once, prints MB/s.
"""

from __future__ import annotations

import sys
import time

from analyzer.parsers import gateway_log
from analyzer.sources import ParseContext

BLOCK = """\
2024-05-14T10:21:33.512Z Info [12] Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine - Replication cycle started. vm=APP{i} vmId=vm-{i} host=esx07.contoso.local cycleId={i} type=DeltaReplication disks=2
2024-05-14T10:21:33.530Z Info [12] Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine - State changed. vm=APP{i} cycleId={i} from=Queued to=CreatingSnapshot
2024-05-14T10:21:34.001Z Info [12] Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine - Creating snapshot. vm=APP{i} vmId=vm-{i}
2024-05-14T10:21:41.220Z Info [12] Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine - Snapshot created. vm=APP{i} durationMs=7219
2024-05-14T10:21:41.300Z Verbose [14] Gateway.Service.Telemetry.ResourceUsage - Resource usage sampled. cpuPercent=23 memoryMB=4096
2024-05-14T10:22:41.300Z Info [15] Gateway.Service.Upload.DiskUploader - Disk upload progress. vm=APP{i} cycleId={i} disk="[ds01] APP{i}/APP{i}_1.vmdk" diskId=6000C29a-1d2e-4f5a uploadedBytes=734003200 totalBytes=2147483648 rateMBps=41.7
2024-05-14 19:23:00.000 Info [3] Gateway.Service.Host - Heartbeat. activeCycles=12 queuedCycles=3
2024-05-14T10:23:12.004Z Warning [21] Gateway.Service.Transport.BlobClient - Request to https://migratelsa1329610309.blob.core.windows.net/cache/x?sig=REDACTED failed. System.Net.WebException: Unable to connect to the remote server
   at System.Net.HttpWebRequest.GetResponse()
   at Gateway.Service.Transport.BlobClient.PutBlock(String id)
--- End of inner exception stack trace ---
2024-05-14T10:30:02.118Z Error [31] Gateway.Service.Upload.DiskUploader - Replication cycle failed. vm=APP{i} cycleId={i} errorId=1011 error=DiskUploadTimedOut message="The upload of data for disk [ds01] APP{i}/APP{i}_1.vmdk, 6000C29a of virtual machine APP{i}; vm-{i} did not complete within the expected time."
2024-05-14T10:30:02.200Z Info [12] Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine - Removing snapshot. vm=APP{i} name=AzureMigrate-{i}
2024-05-14T10:30:09.000Z Error [12] Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine - GatewayErrorHandling.GatewayServiceException: The operation failed with the error 'An internal error occurred. [Another task is already in progress]'
2024-05-14T10:31:00.000Z Info [9] Gateway.Service.Config.Settings - Configuration reloaded from C:\\ProgramData\\Microsoft Azure\\Config\\gateway.json
"""


def build(megabytes: float, template: str = BLOCK) -> str:
    """`template` repeated to `megabytes`, `{i}` numbered through 500 VMs."""
    blocks, size, i = [], 0, 0
    while size < megabytes * 1_000_000:
        block = template.replace("{i}", str(1000 + i % 500))
        blocks.append(block)
        size += len(block)
        i += 1
    return "".join(blocks)


def main() -> None:
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    text = build(megabytes)
    size_mb = len(text.encode()) / 1_000_000
    start = time.perf_counter()
    parsed = gateway_log.parse(text, "bench/GatewayService.log", ParseContext())
    seconds = time.perf_counter() - start
    print(f"{size_mb:.0f} MB, {parsed.records} records, {parsed.unparsed} unparsed: "
          f"{seconds:.2f} s, {size_mb / seconds:.1f} MB/s")


if __name__ == "__main__":
    main()
