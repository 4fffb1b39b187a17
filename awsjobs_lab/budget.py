"""The spending cap: `c.AWSJobs.max_active_instances` and `c.AWSJobs.max_hourly_spend`.

Both are summed over this server's active jobs on the backends whose jobs have an hourly price
(`Capabilities.hourly_price`): pending and launching jobs (an instance is coming), running jobs
and stopping ones (billed until the instance is confirmed gone). A job whose price is not
recorded yet counts with the price it was admitted with (the preview's, kept in memory); after a
server restart, until its launch records a price, it counts as an instance only.

A launch (and a relaunch after an interruption) asks `check` first and is refused with
`OverBudget` (409, reason `budget`) when it would pass either cap. `admit` holds one lock over
the check and the caller's insert, so two concurrent launches cannot both pass a cap of 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import OverBudget
from .models import Job, now
from .store import MAX_PAGE, JobStore

# Prices are compared to the cap to a millionth of a dollar: float sums must not refuse a
# launch that lands exactly on the cap.
_PRICE_EPSILON = 1e-6


@dataclass(frozen=True)
class _Spend:
    """What this server's priced active jobs use now."""

    instances: int
    hourly: float


def _no_cap(value: float | None) -> float | None:
    """None for "no cap" (0 or None), else the cap."""
    return value if value else None


def local_midnight(at: float) -> float:
    """The start of the server's local day that holds `at` (seconds since the epoch)."""
    day = datetime.datetime.fromtimestamp(at).date()
    return datetime.datetime.combine(day, datetime.time.min).timestamp()


def _passes(hourly: float, adding: float | None, cap: float) -> bool:
    """Whether adding `adding` USD/h to `hourly` passes `cap`. An unknown price costs
    something: it passes a cap that is already reached."""
    if adding is None:
        return hourly >= cap - _PRICE_EPSILON
    return hourly + adding > cap + _PRICE_EPSILON


def _dollars(value: float) -> str:
    return f"${value:.4f}/h"


class SpendingCap:
    """c.AWSJobs.max_active_instances / c.AWSJobs.max_hourly_spend over this server's
    launching and running instances (0 or None: no cap)."""

    def __init__(
        self,
        store: JobStore,
        max_active_instances: int | None,
        max_hourly_spend: float | None,
        *,
        priced_backends: Iterable[str] | None = None,
    ) -> None:
        self.store = store
        self.max_active_instances = int(max_active_instances) if max_active_instances else None
        self.max_hourly_spend = _no_cap(max_hourly_spend)
        # Ids of the backends whose jobs run on priced instances (None: every backend's).
        self.priced_backends = None if priced_backends is None else frozenset(priced_backends)
        self._lock = asyncio.Lock()
        # Job id → the hourly price it was admitted with, until its launch records its own.
        self._admitted: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        """Whether either cap is set."""
        return self.max_active_instances is not None or self.max_hourly_spend is not None

    def counts(self, backend_id: str) -> bool:
        """Whether jobs of this backend count against the caps."""
        return self.priced_backends is None or backend_id in self.priced_backends

    async def check(
        self, *, adding_instances: int, adding_hourly: float | None, exclude_job: str | None = None
    ) -> None:
        """Raise OverBudget (a Conflict, HTTP 409, reason "budget") whose message says the cap,
        the current figure and what the job would add, if adding would pass either cap."""
        async with self._lock:
            await self._check(adding_instances, adding_hourly, exclude_job)

    @contextlib.asynccontextmanager
    async def admit(self, job_id: str, adding_hourly: float | None) -> AsyncIterator[None]:
        """`async with cap.admit(job.id, price): <insert the job>`: the check and the insert
        under one lock (OverBudget before the body runs if the job would pass a cap)."""
        async with self._lock:
            await self._check(1, adding_hourly, None)
            yield
            if adding_hourly is not None:
                self._admitted[job_id] = adding_hourly

    async def relaunch_refusal(self, job: Job) -> str | None:
        """Why one more instance for `job` (a new attempt after an interruption, at the price
        of its last one) would pass a cap; None when it may launch."""
        last = job.attempts[-1].hourly_price if job.attempts else job.hourly_price
        try:
            await self.check(adding_instances=1, adding_hourly=last, exclude_job=job.id)
        except OverBudget as err:
            return str(err)
        return None

    async def figures(self) -> dict[str, Any]:
        """{"active_instances", "hourly_spend", "spend_today", "max_active_instances",
        "max_hourly_spend"} (a cap is None when not set)."""
        spend = await self._current(None)
        return {
            "active_instances": spend.instances,
            "hourly_spend": round(spend.hourly, 6),
            "spend_today": round(await self._spend_today(), 6),
            "max_active_instances": self.max_active_instances,
            "max_hourly_spend": self.max_hourly_spend,
        }

    # -- the figures ----------------------------------------------------------------------------

    async def _check(
        self, adding_instances: int, adding_hourly: float | None, exclude_job: str | None
    ) -> None:
        if not self.enabled:
            return
        spend = await self._current(exclude_job)
        problem = self._instances_problem(spend, adding_instances) or self._spend_problem(
            spend, adding_hourly
        )
        if problem:
            raise OverBudget(f"Not launched: {problem}.")

    def _instances_problem(self, spend: _Spend, adding: int) -> str | None:
        cap = self.max_active_instances
        if cap is None or spend.instances + adding <= cap:
            return None
        return (
            f"the cap c.AWSJobs.max_active_instances is {cap}; {spend.instances} "
            f"{'instance is' if spend.instances == 1 else 'instances are'} active now, and "
            f"this job would add {adding}"
        )

    def _spend_problem(self, spend: _Spend, adding: float | None) -> str | None:
        cap = self.max_hourly_spend
        if cap is None or not _passes(spend.hourly, adding, cap):
            return None
        added = "an instance of unknown price" if adding is None else _dollars(adding)
        return (
            f"the cap c.AWSJobs.max_hourly_spend is {_dollars(cap)}; the spend is "
            f"{_dollars(spend.hourly)} now (over {spend.instances} active "
            f"{'instance' if spend.instances == 1 else 'instances'}), and this job would add "
            f"{added}"
        )

    async def _current(self, exclude_job: str | None) -> _Spend:
        """This server's priced active jobs (less `exclude_job`): instances and hourly spend."""
        active = [
            job
            for job in await self.store.list_active()
            if self.counts(job.backend) and job.id != exclude_job
        ]
        self._forget_settled(active)
        hourly = sum(self._hourly_price(job) for job in active)
        return _Spend(instances=len(active), hourly=hourly)

    def _hourly_price(self, job: Job) -> float:
        if job.hourly_price is not None:
            return job.hourly_price
        return self._admitted.get(job.id, 0.0)

    def _forget_settled(self, active: list[Job]) -> None:
        """Drop admitted prices of jobs that ended or have recorded their own price."""
        waiting = {job.id for job in active if job.hourly_price is None}
        for job_id in [i for i in self._admitted if i not in waiting]:
            del self._admitted[job_id]

    async def _spend_today(self) -> float:
        """The cost so far of the priced jobs created since the server's local midnight (a
        job created yesterday counts on yesterday). Newest first, page by page, until a page
        reaches yesterday: the store decodes the records in its own thread."""
        at = now()
        midnight = local_midnight(at)
        total = 0.0
        cursor: str | None = None
        while True:
            jobs, cursor = await self.store.list_jobs(limit=MAX_PAGE, cursor=cursor)
            for job in jobs:
                if job.created_at < midnight:
                    return total
                if self.counts(job.backend):
                    total += job.cost_so_far(at) or 0.0
            if cursor is None:
                return total
