"""The one timer of local schedules: a sleep until the earliest next firing, re-armed whenever
a schedule changes. No polling per schedule: each wake asks the service to fire what is due
and to say when the next firing is.

The sleep is on the event loop's monotonic clock, which stands still while a laptop is
suspended; so it never sleeps longer than `max_sleep_seconds` before looking at the wall
clock again (a firing is then late by at most that, never lost).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from ..driver_support import Logger

Clock = Callable[[], float]
# Fires what is due at `now`; returns the wall-clock time of the next firing (None: none).
Tick = Callable[[float], Awaitable[float | None]]


class ScheduleTimer:
    def __init__(
        self, tick: Tick, clock: Clock, log: Logger, max_sleep_seconds: float = 60.0
    ) -> None:
        self.tick = tick
        self.clock = clock
        self.log = log
        self.max_sleep_seconds = max_sleep_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.next_at: float | None = None  # the firing it sleeps until (tests read it)
        self.ticks = 0  # wakes so far (tests wait on it)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="awsjobs-schedule-timer")

    def rearm(self) -> None:
        """A schedule changed (or the clock moved, in tests): look again now."""
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before the tick: a change during it wakes the next sleep
            try:
                self.next_at = await self.tick(self.clock())
            except Exception:
                # The store unavailable, a bug: never the end of every schedule.
                self.log.exception("awsjobs: the schedule timer failed; retrying")
                self.next_at = None
            self.ticks += 1
            delay = self.max_sleep_seconds
            if self.next_at is not None:
                delay = min(max(0.0, self.next_at - self.clock()), delay)
            # call_later rather than wait_for: 3.11's wait_for can swallow a cancel that
            # comes as the event is set (a re-arm during close), and never end.
            alarm = asyncio.get_running_loop().call_later(delay, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                alarm.cancel()
