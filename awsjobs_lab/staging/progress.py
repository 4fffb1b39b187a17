"""How far a transfer got, for the panel: bytes and files done of the total, per phase.

Transfers report through a `ProgressThrottle`, so the callback runs at once (nothing done
yet: the panel shows the phase and its total from the start), then at most about twice a second
however many parts complete, and always once at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

UPLOADING_INPUTS = "uploading_inputs"
DOWNLOADING_OUTPUTS = "downloading_outputs"
REPORT_INTERVAL_SECONDS = 0.5


@dataclass
class Progress:
    phase: str  # UPLOADING_INPUTS | DOWNLOADING_OUTPUTS
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[Progress], None]


def ignore_progress(_progress: Progress) -> None:
    """A callback for callers that do not follow progress."""


class ProgressThrottle:
    """Counts a transfer's bytes and files; calls `callback` with a copy when made (0 done),
    then at most every `interval` seconds, and at `finish()`."""

    def __init__(
        self,
        phase: str,
        bytes_total: int,
        files_total: int,
        callback: ProgressCallback,
        interval: float = REPORT_INTERVAL_SECONDS,
    ) -> None:
        self.progress = Progress(phase, 0, bytes_total, 0, files_total)
        self._callback = callback
        self._interval = interval
        self._last = time.monotonic()
        self._emit(self._last)  # at once: the phase and its total before the first file is done

    def add(self, nbytes: int = 0, files: int = 0) -> None:
        self.progress.bytes_done += nbytes
        self.progress.files_done += files
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._emit(now)

    def finish(self) -> None:
        self._last = time.monotonic()
        self._emit(self._last)  # at once: the phase and its total before the first file is done

    def _emit(self, now: float) -> None:
        self._last = now
        p = self.progress
        self._callback(Progress(p.phase, p.bytes_done, p.bytes_total, p.files_done, p.files_total))
