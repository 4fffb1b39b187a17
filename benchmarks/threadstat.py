"""What holds up a thread of the server, measured from inside it (never shipped):

- the calling thread's wait for a CPU, from `/proc/thread-self/schedstat` (Linux). Read twice
  per 5 ms tick by the probe and around every callback in the slow-callback pass, so each
  thread keeps its file open and re-reads it with `pread`: no path lookup, no open/close;
- garbage collections, timed by one `gc.callbacks` entry (`COLLECTIONS`): each holds the GIL,
  so no other thread, the event loop's included, runs during one.
"""

from __future__ import annotations

import gc
import os
import threading
import time

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


class Collections:
    """The process's garbage collections: the seconds of all so far, and (generation, seconds)
    of each since `clear_log` (bounded)."""

    LOG_LIMIT = 100_000

    def __init__(self) -> None:
        self.total = 0.0
        self.log: list[tuple[int, float]] = []
        self._since = 0.0

    def install(self) -> None:
        """Start timing (once: a second call changes nothing)."""
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)

    def clear_log(self) -> None:
        self.log = []

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._since = time.perf_counter()
            return
        seconds = time.perf_counter() - self._since
        self.total += seconds
        if len(self.log) < self.LOG_LIMIT:
            self.log.append((info["generation"], seconds))


COLLECTIONS = Collections()
