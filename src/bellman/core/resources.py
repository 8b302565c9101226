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
