"""keep_freed_memory: large blocks stop being faulted in again on every allocation.

Checked in a fresh process (the setting is process-wide) by counting minor page faults
(``ru_minflt``) of repeated 64 MiB allocations, before and after the call.
"""

import subprocess
import sys
import textwrap

import pytest

from kanzoo.layers import keep_freed_memory

SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    from kanzoo.layers import freed_memory_kept, keep_freed_memory

    def faults_per_alloc():
        for _ in range(10):  # warm up: the heap grows to its steady size over the first blocks
            torch.empty(1 << 24).fill_(1.0)  # 64 MiB, above glibc's largest mmap threshold
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            torch.empty(1 << 24).fill_(1.0)
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5

    default = faults_per_alloc()
    assert not freed_memory_kept()
    applied = keep_freed_memory()
    kept = faults_per_alloc()
    print(default, kept, applied, freed_memory_kept())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_large_allocations_stop_faulting_after_keep_freed_memory():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    default, kept, applied, flag = out.stdout.split()
    if applied != "True":
        pytest.skip("not glibc: mallopt unavailable")
    assert flag == "True"
    # 64 MiB in 4 KiB pages is 16384 faults per fresh mapping (fewer with transparent huge pages).
    assert float(default) > 1000, default
    assert float(kept) < 0.05 * float(default), (default, kept)


@pytest.mark.parametrize("bad", [-1, 2**31, 1.5, True, "1"])
def test_bad_trim_threshold_is_refused(bad):
    with pytest.raises(ValueError, match="trim_threshold"):
        keep_freed_memory(bad)
