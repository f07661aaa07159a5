"""bundle-analyzer: why is Azure Migrate agentless replication of VMware VMs failing?"""

import os

__version__ = "0.1.0"

# Polars' allocator (jemalloc) reads this once, when polars is first imported (after this line
# for the CLI; a caller that imported polars first keeps its own). Polars adds it after its own
# defaults (dirty pages kept 0.5 s, then "muzzy" for 1 s, still counted in RSS). One arena for all
# threads: what the ingest's parse threads free is reused by the later stages instead of staying
# reserved per thread; idle pages go straight back to the system. On the 1 GiB fleet bundle the
# peak went from 964 to 898 MiB (medians of 5 runs), same wall time. A setting the user gives
# in the environment wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0")
