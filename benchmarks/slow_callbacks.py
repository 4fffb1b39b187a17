"""Inside OUR server during the `loop` benchmark (never shipped): asyncio's slow-callback report,
counted and attributed.

In debug mode asyncio times every callback and logs `Executing <handle> took N seconds` when
one runs longer than `loop.slow_callback_duration`. That report is kept, and the rest of debug
mode's bookkeeping is not: asked `loop.get_debug()`, every handle, future and task records where
it was made (a stack summary, empty or not), thousands of objects more in a pass, which the
garbage collector then walks (the older collections of a pass took 8 to 15 ms with them, 1 to
3 ms without: pauses of the benchmark's own making, landing in whichever callback allocates).
The loop's `_debug` flag, which `_run_once` reads to time callbacks, is set; `get_debug()`,
which the bookkeeping asks, answers no while the pass lasts.

The handle alone rarely says whose code was slow (a task's step names its outermost coroutine,
often tornado's), so a sampler thread looks at the loop thread's stack while one callback has
been running for a while; each report gets the innermost frame of `awsjobs_lab` seen then
(ours), else the innermost frame seen at all. On a shared machine a callback can take 5 ms
without doing anything slow (other processes had the cores), so every callback's CPU time and
wait for a CPU are measured too (`Handle._run` wrapped while the pass lasts).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
import time
from collections import Counter
from types import FrameType
from typing import Any

from .threadstat import COLLECTIONS, run_delay

SLOW = 0.005  # seconds: asyncio's slow-callback threshold during the benchmark
SAMPLE_EVERY = 0.001  # seconds between the sampler's looks at the running callback
OURS = "/awsjobs_lab/"
BENCH = "/benchmarks/"
TASK_CORO = re.compile(r"coro=<([\w.]+)\(\)")  # a task's coroutine, in its repr


def _site(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename
    short = path[path.rfind(OURS) + 1 :] if OURS in path else path.rsplit("/", 2)[-1]
    return f"{short}:{frame.f_lineno} {code.co_name}"


def _where(frame: FrameType | None) -> tuple[str | None, str | None]:
    """(the innermost frame of ours, the innermost frame) of a stack; nothing when it is this
    benchmark's own code (it reads /proc around each callback, releasing the GIL: a sampler
    waiting for the GIL sees it there more often than it runs)."""
    if frame is not None and BENCH in frame.f_code.co_filename:
        return None, None
    innermost = _site(frame) if frame is not None else None
    while frame is not None:
        if OURS in frame.f_code.co_filename:
            return _site(frame), innermost
        frame = frame.f_back
    return None, innermost


class _Sampler(threading.Thread):
    """Samples the loop thread's stack while the same callback runs longer than a millisecond
    or two (`loop._current_handle`, set by asyncio in debug mode)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread_id: int) -> None:
        super().__init__(name="bench-slow-callbacks", daemon=True)
        self.loop = loop
        self.thread_id = thread_id
        self.halt = threading.Event()
        self.handle: object | None = None
        self.samples: list[tuple[str | None, str | None]] = []

    def run(self) -> None:
        since = 0.0
        while not self.halt.wait(SAMPLE_EVERY):
            handle = getattr(self.loop, "_current_handle", None)
            if handle is None or handle is not self.handle:
                self.handle, self.samples, since = handle, [], time.monotonic()
                continue
            if time.monotonic() - since >= 2 * SAMPLE_EVERY:
                self.samples.append(_where(sys._current_frames().get(self.thread_id)))

    def taken_during(self, handle: object | None) -> list[tuple[str | None, str | None]]:
        return list(self.samples) if handle is not None and handle is self.handle else []


class _LastCallback:
    """The callback that just ran: how long it took (without this probe's reads around it),
    the loop thread's CPU time during it, and its wait for a CPU."""

    handle: object | None = None
    seconds = 0.0
    cpu = 0.0
    queued = 0.0
    collecting = 0.0  # seconds of garbage collection inside it


LAST = _LastCallback()
_ORIGINAL_RUN = asyncio.Handle._run


def _measured_run(handle: asyncio.Handle) -> None:  # while the pass lasts, Handle._run
    # asyncio's timing of a callback includes this wrapper, and each /proc read gives up the
    # GIL: with busy worker threads, getting it back can take the 5 ms switch interval. The
    # callback's own time is therefore taken between the reads.
    cpu, queued = time.thread_time(), run_delay()
    collecting = COLLECTIONS.total
    start = time.perf_counter()
    try:
        _ORIGINAL_RUN(handle)
    finally:
        LAST.seconds = time.perf_counter() - start
        LAST.collecting = COLLECTIONS.total - collecting
        LAST.handle = handle
        LAST.cpu = time.thread_time() - cpu
        LAST.queued = run_delay() - queued


def _report_slow_callbacks(loop: asyncio.AbstractEventLoop, on: bool) -> None:
    """asyncio's slow-callback report on or off, without the rest of debug mode (the module's
    docstring says why): `_run_once` times callbacks when `loop._debug` is set; handles,
    futures and tasks record their origin when `loop.get_debug()` says so (the C ones call the
    method too), so an attribute of the loop's own answers no while the report is on."""
    setattr(loop, "_debug", on)  # noqa: B010 (asyncio's own flag, read by _run_once)
    if on:
        setattr(loop, "get_debug", lambda: False)  # noqa: B010 (the loop's own, not its class's)
    else:
        vars(loop).pop("get_debug", None)


class SlowCallbacks(logging.Handler):
    """Collects asyncio's slow-callback reports (a handler on the `asyncio` logger)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.reports: list[dict[str, Any]] = []
        self._sampler: _Sampler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stop()
        self.reports = []
        self._loop = loop
        loop.slow_callback_duration = SLOW
        setattr(asyncio.Handle, "_run", _measured_run)  # noqa: B010 (a method swapped)
        COLLECTIONS.install()
        _report_slow_callbacks(loop, True)
        logging.getLogger("asyncio").addHandler(self)
        self._sampler = _Sampler(loop, threading.get_ident())
        self._sampler.start()

    def stop(self) -> None:
        """Back to normal (a no-op unless started)."""
        if self._sampler is None or self._loop is None:
            return
        self._sampler.halt.set()
        self._sampler = None
        _report_slow_callbacks(self._loop, False)
        logging.getLogger("asyncio").removeHandler(self)
        setattr(asyncio.Handle, "_run", _ORIGINAL_RUN)  # noqa: B010 (the method back)

    def emit(self, record: logging.LogRecord) -> None:
        if not record.msg.startswith("Executing ") or not isinstance(record.args, tuple):
            return
        handle_text, seconds = record.args[0], record.args[1]
        if not isinstance(seconds, float):
            return
        # Still the current handle while asyncio logs about it.
        current = getattr(self._loop, "_current_handle", None)
        samples = self._sampler.taken_during(current) if self._sampler else []
        ours = Counter(s[0] for s in samples if s[0])
        anywhere = Counter(s[1] for s in samples if s[1])
        # Ours: most of the samples were in our code (or in what it called).
        mine = sum(ours.values()) * 2 >= len(samples) > 0
        if not samples and OURS in str(handle_text):  # not sampled: the handle names us
            task = TASK_CORO.search(str(handle_text))
            ours[f"{task[1] if task else 'a callback'} (not sampled)"] += 1
            mine = True
        measured = LAST.handle is current and current is not None
        self.reports.append(
            {
                "seconds": float(seconds),
                # the callback alone, without this probe's reads around it
                "own_seconds": LAST.seconds if measured else float(seconds),
                "cpu": LAST.cpu if measured else None,
                "queued": LAST.queued if measured else None,
                "collecting": LAST.collecting if measured else None,
                "handle": str(handle_text)[:300],
                "ours": ours.most_common(1)[0][0] if mine else None,
                "where": anywhere.most_common(1)[0][0] if anywhere else None,
                "samples": len(samples),
            }
        )


REPORTS = SlowCallbacks()
