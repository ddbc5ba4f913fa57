"""Keep freed memory in the process: no page faults for large per-step temporaries.

glibc's ``malloc`` hands blocks above its mmap threshold (at most 32 MiB) to the kernel with
``mmap`` and returns them with ``munmap`` on free, so every such block a training step allocates
again (a wide KAN layer's ``(out, in * (1 + n))`` fused weight and its gradient: 38 MiB at
1024 -> 1024 with G = 5, 100 MiB at G = 20; an optimizer's temporaries of a parameter that size)
is faulted in page by page on first touch. On the shared 2-core development VM that cost 4 us
per 4 KiB page: writing a fresh 38 MiB tensor took 39-46 ms instead of 9-15 ms (measured with
``ru_minflt``: 9217 faults per call). An MLP of the same parameter count has smaller matrices and
stays under the threshold, so the cost falls on the KAN side of a comparison.

:func:`keep_freed_memory` makes glibc serve every block from its heap and keep freed memory for
reuse (``mallopt(M_MMAP_MAX, 0)`` and ``M_TRIM_THRESHOLD``), the same effect as running under
jemalloc or tcmalloc (``LD_PRELOAD``) or with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``. It is a
process-wide choice with a cost (the process keeps its peak heap instead of returning it to the
system), so kanzoo never makes it by itself: call it at the start of a training script, or pass
``--keep-freed-memory`` to the benchmarks, which then apply it to every candidate alike.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["freed_memory_kept", "keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_state = {"applied": False}


_INT_MAX = 2**31 - 1


def keep_freed_memory(trim_threshold: int = _INT_MAX) -> bool:
    """Make glibc ``malloc`` keep freed memory in the process (see the module docstring).

    Args:
        trim_threshold: Bytes of free memory at the top of the heap kept before glibc returns
            any to the system (``mallopt`` takes a C int: at most and by default 2 GiB - 1).

    Returns:
        ``True`` when applied (Linux with glibc), ``False`` elsewhere (nothing changed).
    """
    is_int = isinstance(trim_threshold, int) and not isinstance(trim_threshold, bool)
    if not is_int or not 0 <= trim_threshold <= _INT_MAX:
        raise ValueError(f"trim_threshold must be an int in [0, {_INT_MAX}], got {trim_threshold!r}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    _state["applied"] = _state["applied"] or ok
    return ok


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` has been applied in this process."""
    return _state["applied"]
