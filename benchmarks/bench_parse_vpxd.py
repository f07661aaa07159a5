"""Parse throughput of the vpxd parser (and task pairing) on a large synthetic vpxd.log.

    PYTHONPATH=. python benchmarks/bench_parse_vpxd.py [MEGABYTES]   (default 200)

Repeats a block shaped like a busy vCenter 7/8 vpxd.log (LRO BEGIN/FINISH/ERROR with a fault
block, PropertyProvider progress, events, SQL with `-->` continuations, a few ESXi 8 and Windows
lines) to the requested size, parses it once, pairs its tasks, prints MB/s.
"""

from __future__ import annotations

import sys
import time

from analyzer.diagnostics import Diagnostics
from analyzer.parsers import vcenter_log
from analyzer.sources import ParseContext

BLOCK = """\
2024-05-14T10:21:33.100Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxdEvent opID=6820{i}] Event 55{i} : vim.event.TaskEvent : Task: Create virtual machine snapshot user=VSPHERE.LOCAL\\svc-backup
2024-05-14T10:21:33.123Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxLro opID=6820{i}] [VpxLRO] -- BEGIN task-{i} -- vm-{i} -- vim.VirtualMachine.createSnapshot -- 52b1c2d3-ab12-4c1d-9e8f-0a1b2c3d4e5f(52a9f0e1-1234-5678-9abc-def012345678)
2024-05-14T10:21:34.001Z verbose vpxd[7FE11CC03700] [Originator@6876 sub=PropertyProvider opID=6820{i}] RecordOp ASSIGN: info.progress, task-{i}. Applied change to temp map.
2024-05-14T10:21:35.412Z info vpxd[7FE11D104700] [Originator@6876 sub=MoCluster opID=HB-host-363@2022-389ab9b1] Host [vim.HostSystem:host-363,esx-2-121.contoso.local] has 1 HDCS resources
2024-05-14T10:21:36.000Z verbose vpxd[7FE11D104700] [Originator@6876 sub=Default] [VdbStatement]Executing SQL:
-->       INSERT INTO VPX_EVENT (EVENT_ID, CHAIN_ID, EVENT_TYPE)
-->         VALUES (?, ?, ?)
-->
2024-05-14T10:21:41.220Z info vpxd[7FE11CC03700] [Originator@6876 sub=vpxLro opID=6820{i}] [VpxLRO] -- FINISH task-{i}
2024-05-14T10:21:42.000Z info vpxd[7FE11CC03800] [Originator@6876 sub=vpxLro opID=7731{i}] [VpxLRO] -- BEGIN task-9{i} -- vm-{i} -- vim.VirtualMachine.consolidateDisks -- 52b1c2d3-ab12(52a9f0e1)
2024-05-14T10:21:49.000Z info vpxd[7FE11CC03800] [Originator@6876 sub=vpxLro opID=7731{i}] [VpxLRO] -- ERROR task-9{i} -- vm-{i} -- vim.VirtualMachine.consolidateDisks: vim.fault.TaskInProgress:
--> Result:
--> (vim.fault.TaskInProgress) {
-->    faultCause = (vmodl.MethodFault) null,
-->    msg = "Another task is already in progress."
--> }
--> Args:
2024-05-14T10:21:50.000Z warning vpxd[7FE11CC03900] [Originator@6876 sub=drmLogger opID=SWI-66b629ff] Exception was thrown when call vsan-performance-manager for cluster [vim.ClusterComputeResource:domain-c109,Cluster-52] perf metrics
2024-05-14T10:21:51.000Z info vpxd[7FE11CC03900] [Originator@6876 sub=SoapAdapter[0].HTTPService] Max buffered response size is 104857600 bytes
2024-05-14T10:21:52.000Z In(166) Hostd[1001392583]: [Originator@6876 sub=Vimsvc.TaskManager opID=6820{i}] Task Created : haTask-{i}-vim.VirtualMachine.createSnapshot-1234
2015-03-06T04:01:43.419-07:00 [13072 info 'commonvpxLro' opID=2408fce-ee] [VpxLRO] -- FINISH task-internal-{i}
"""


def build(megabytes: int) -> str:
    blocks, size, i = [], 0, 0
    while size < megabytes * 1_000_000:
        block = BLOCK.replace("{i}", str(10000 + i))
        blocks.append(block)
        size += len(block)
        i += 1
    return "".join(blocks)


def main() -> None:
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    text = build(megabytes)
    size_mb = len(text.encode()) / 1_000_000
    start = time.perf_counter()
    parsed = vcenter_log.parse(text, "bench/vpxd.log", ParseContext(vcenter="vcsa01"))
    parse_seconds = time.perf_counter() - start
    records = parsed.tables["vcenter_log"]
    start = time.perf_counter()
    tasks = vcenter_log.build_tasks(records.filter(vcenter_log.TASK_ROWS),
                                    parsed.tables["vcenter_events"], Diagnostics())
    pair_seconds = time.perf_counter() - start
    print(f"{size_mb:.0f} MB, {parsed.records} records, {parsed.unparsed} unparsed, "
          f"{parsed.tables['vcenter_events'].height} events: parse {parse_seconds:.2f} s, "
          f"{size_mb / parse_seconds:.1f} MB/s; {tasks.height} tasks paired in {pair_seconds:.2f} s")


if __name__ == "__main__":
    main()
