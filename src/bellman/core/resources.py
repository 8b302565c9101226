"""Memory bounds: a buffer whose size a user sets is checked against the memory this machine has available
before it is allocated, so a mistyped size is a clear error instead of the kernel killing the process."""

from __future__ import annotations

import os

SHARE = 0.8  # the share of the available memory one allocation may take


class ResourceError(ValueError):
    """An allocation larger than this machine can hold."""


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux's MemAvailable; else all physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(what: str, nbytes: int, setting: str) -> None:
    """Raise a ResourceError naming ``what``, its size and the ``setting`` to lower if ``nbytes`` exceeds
    ``SHARE`` of the available memory."""
    limit = SHARE * available_memory()
    if nbytes > limit:
        raise ResourceError(f"{what} needs {nbytes / 2**30:,.1f} GiB, more than {SHARE:.0%} of the "
                            f"{limit / SHARE / 2**30:,.1f} GiB this machine has available; lower {setting}")


M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 * 2**20  # the largest M_MMAP_THRESHOLD glibc accepts on 64-bit machines


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep the memory a process frees for its next allocations (process-wide; returns
    whether it could). By default blocks over a (dynamic) threshold are mapped from the kernel and unmapped
    when freed, and the heap's free top is given back, so every training step's activations land on fresh
    pages, each faulted in and zeroed by the kernel on first touch: on a CPU that made the autograd forward of
    a 135M-parameter model's GRPO batch take 1.8x its no-grad forward (1.1x with this). Here blocks up to
    32 MiB come from the heap and it is never trimmed, so later steps reuse the pages earlier ones touched;
    the price is that the process keeps its peak memory (mallopt(3): M_MMAP_THRESHOLD, M_TRIM_THRESHOLD = -1,
    M_TOP_PAD). Other C libraries: nothing is changed."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(k, v) == 1 for k, v in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX), (M_TRIM_THRESHOLD, -1),
                                               (M_TOP_PAD, 256 * 2**20)))
