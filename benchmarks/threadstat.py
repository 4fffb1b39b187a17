"""The calling thread's wait for a CPU, from `/proc/thread-self/schedstat` (Linux).

Read twice per 5 ms tick by the probe and around every callback in the slow-callback pass, so
each thread keeps its file open and re-reads it with `pread`: no path lookup, no open/close.
"""

from __future__ import annotations

import os
import threading

_FILES = threading.local()


def run_delay() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (0 if unknown)."""
    fd = getattr(_FILES, "fd", None)
    try:
        if fd is None:
            fd = _FILES.fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        return int(os.pread(fd, 128, 0).split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0
