"""The driver's plumbing, apart from the lifecycle it serves (`driver.py`): its options, the
backoff of everything it retries, the one way it moves a job's state in the store, and the set
of background tasks it owns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import StoreUnavailable
from .models import InvalidTransition, Job, JobState
from .phases import clearing_on
from .store import JobStore

T = TypeVar("T")

Logger = logging.Logger | logging.LoggerAdapter[Any]


@dataclass(frozen=True)
class DriverOptions:
    # Seconds in one minute of `max_lifetime_minutes` (60; tests shrink it).
    lifetime_unit_seconds: float = 60.0
    # Backoff of retried stops, waits and re-attachments: first delay, doubled up to the max.
    retry_seconds: float = 2.0
    retry_max_seconds: float = 60.0
    # On server stop, how long to let in-flight launches finish before cancelling them.
    close_launch_timeout_seconds: float = 60.0


def describe_error(err: BaseException) -> str:
    return str(err) or type(err).__name__


class Backoff:
    """Delays of a retried call: `retry_seconds`, doubled each time, at most the max."""

    def __init__(self, options: DriverOptions) -> None:
        self.delay = options.retry_seconds
        self.max = options.retry_max_seconds

    async def sleep(self, at_most: float | None = None) -> None:
        await asyncio.sleep(self.delay if at_most is None else min(self.delay, at_most))
        self.delay = min(self.delay * 2, self.max)


async def move(
    store: JobStore,
    options: DriverOptions,
    log: Logger,
    job_id: str,
    target: JobState,
    reason: str,
    expected: Iterable[JobState],
    durable: bool = False,
    **fields: Any,
) -> Job | None:
    """Move a job to `target` from one of `expected`, with `fields`. None if the job had moved
    elsewhere (the state machine refused). `durable` (the driver's own tasks, never a
    request): while the store cannot be written, retry with backoff rather than leave the job
    in its state for ever. A move out of `launching`/`running` ends the job's phase."""
    fields["change"] = clearing_on(target, fields.get("change"))
    backoff = Backoff(options)
    while True:
        try:
            return await store.transition(job_id, target, reason, expected=expected, **fields)
        except InvalidTransition:
            return None
        except StoreUnavailable as err:
            if not durable:
                raise
            log.warning(
                "awsjobs: job %s: cannot record %s yet, retrying: %s", job_id, target.value, err
            )
        await backoff.sleep()


class DriverTasks:
    """Every background task of the driver. `close` lets launches in flight finish for a
    while (a launch cut half way could leak an instance), then cancels and awaits the rest."""

    def __init__(self, options: DriverOptions, log: Logger) -> None:
        self.options = options
        self.log = log
        self.closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._launches: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """A task that `close` cancels and awaits."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def spawn_launch(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """A launch: `close` waits for it (up to `close_launch_timeout_seconds`) first."""
        task = self.spawn(coro, name)
        self._launches.add(task)
        task.add_done_callback(self._launches.discard)
        return task

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._launches:
            _, late = await asyncio.wait(
                set(self._launches), timeout=self.options.close_launch_timeout_seconds
            )
            if late:
                self.log.warning("awsjobs: %d launch(es) still in flight at shutdown", len(late))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
