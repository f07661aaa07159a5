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


def _fix_mmap_threshold(size: int = 256 << 10) -> None:
    """Have glibc's malloc serve every block of `size` bytes or more with a mapping of its own.

    By default glibc raises that threshold (up to 32 MiB) each time such a block is freed, so
    that later blocks of the size come from the heap, where what is freed between long-lived
    blocks stays counted in RSS. The ingest allocates and frees many 1-16 MiB blocks (chunks,
    slices) between the kept rows it stores. On the 1 GiB fleet bundle the analyze peak went
    from 537-554 to 497-501 MiB (GNU time, 2 runs each, alternating), for about 1.5 s more
    system time (fresh pages are zeroed). The user's own MALLOC_MMAP_THRESHOLD_ wins; libcs
    other than glibc are left alone.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, size)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


_fix_mmap_threshold()
