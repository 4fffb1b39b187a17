"""ScheduleService: what the schedule handlers call (create, list, get, patch, delete, run now,
preview), the timer of local schedules and the import of remote schedules' runs.

A schedule of a backend whose capabilities have `schedules` (EC2) lives in that remote
service and fires without this server: create/patch/delete go there, the list merges what is
found there, and its runs are imported as jobs. Any other schedule is local: the one timer
fires it while the server runs; at start, a run missed while the server was down fires once if
it is younger than the grace, and is otherwise recorded `missed`.

One owner rule: a remote schedule belongs to its backend's owner (`RemoteSchedules.owner`, the
one its runs' instances are tagged with: c.EC2Backend.owner), which groups and tags it in AWS
and finds its runs; a local schedule belongs to the server's user (`ScheduleOptions.owner`).
The store keeps each under its owner; the API's `owner` field says it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..driver_support import Logger, describe_error
from ..errors import AWSJobsError, Conflict
from ..models import Job, now
from ..service import JobService
from . import cron, model
from .model import Schedule, ScheduleNotFound
from .remote import RemoteSchedules
from .requests import changed_schedule, check_name, new_schedule
from .store import ScheduleStore
from .timer import Clock, ScheduleTimer

RUNS_SHOWN = 10  # runs in `GET schedules/{name}`
MISSED_RECORDED = 10  # firings missed in one absence that are recorded, newest first
# A firing this late is on time whatever the grace: the timer wakes a little after the time, and
# up to its longest sleep late after a suspend (timer.py).
ON_TIME_SECONDS = 120.0


@dataclass(frozen=True)
class ScheduleOptions:
    owner: str  # the owner of local schedules (the OS user); remote ones have their backend's
    default_timezone: str = "UTC"
    missed_run_grace_seconds: float = 3600.0  # c.AWSJobs.missed_run_grace_minutes
    import_interval_seconds: float = 60.0  # how often remote schedules' runs are imported
    # The first import makes the backend's AWS client (about 0.1 s of the event loop's time,
    # and botocore's data files parsed in a thread): not in the server's first seconds, when
    # the user's first requests and the warm runner's start are under way.
    first_import_delay_seconds: float = 5.0


class ScheduleService:
    def __init__(
        self,
        jobs: JobService,
        options: ScheduleOptions,
        clock: Clock | None = None,
        log: Logger | None = None,
    ) -> None:
        self.jobs = jobs
        self.options = options
        self.clock: Callable[[], float] = clock or now
        self.log = log or logging.getLogger(__name__)
        self.store = ScheduleStore(jobs.store)
        self.timer = ScheduleTimer(self._tick, lambda: self.clock(), self.log)
        self._import_task: asyncio.Task[None] | None = None
        self._started = False

    @property
    def owner(self) -> str:
        """The owner of local schedules."""
        return self.options.owner

    def describe_config(self) -> dict[str, float]:
        """`GET config` `schedules`: what the launch dialog tells of local schedules."""
        minutes = self.options.missed_run_grace_seconds / 60.0
        return {"missed_run_grace_minutes": int(minutes) if minutes.is_integer() else minutes}

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the job service, the timer (its first tick handles missed runs) and the
        import of remote runs. Idempotent."""
        if self._started:
            return
        await self.jobs.start()
        if self._started:
            return
        self._started = True
        self.timer.start()
        if self._remotes():
            self._import_task = asyncio.create_task(self._import_loop(), name="awsjobs-import")

    async def close(self) -> None:
        await self.timer.close()
        if self._import_task is not None:
            self._import_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._import_task
            self._import_task = None

    # -- the API -----------------------------------------------------------------------------

    def preview(self, cron: str | None, timezone: str | None) -> dict[str, Any]:
        """`GET schedule-preview`: the reading and next runs of an expression."""
        return model.preview(cron or "", timezone or self.options.default_timezone, self.clock())

    async def create(self, body: Any) -> dict[str, Any]:
        at = self.clock()
        schedule = new_schedule(body, self.owner, self.options.default_timezone, at)
        job = await self._check_job(schedule)
        remote = self._remote_of(schedule)
        schedule.owner = self._owner_of(schedule)
        if await self._stored(schedule.name) is not None:  # any owner's: names are the API's ids
            raise Conflict(f"a schedule named {schedule.name!r} already exists")
        if remote is not None:
            remote.check(schedule)
            if any(s.name == schedule.name for s in await self._remote_list(remote)):
                raise Conflict(f"a schedule named {schedule.name!r} already exists")
            await self.store.insert(schedule)
            try:
                await remote.put(schedule, job)
            except BaseException:
                await self.store.delete(schedule.owner, schedule.name)
                raise
        else:
            await self.store.insert(schedule)
            self.timer.rearm()
        return self._view(schedule, at)

    async def list_schedules(self) -> list[dict[str, Any]]:
        at = self.clock()
        views = []
        for schedule in await self._all():
            view = self._view(schedule, at)
            runs = await self.store.runs(schedule.owner, schedule.name, 1)
            view["last_run"] = runs[0] if runs else None
            views.append(view)
        return views

    async def get(self, name: str) -> dict[str, Any]:
        schedule = await self._find(name)
        view = self._view(schedule, self.clock())
        view["runs"] = await self.store.runs(schedule.owner, schedule.name, RUNS_SHOWN)
        return view

    async def patch(self, name: str, body: Any) -> dict[str, Any]:
        current = await self._find(name)
        at = self.clock()
        schedule = changed_schedule(current, body, at)
        job = await self._check_job(schedule)
        remote = self._remote_of(schedule)
        schedule.owner = self._owner_of(schedule)
        if remote is not None:
            remote.check(schedule)
            await remote.put(schedule, job)
        old_remote = self._remote_of(current)
        if old_remote is not None and (old_remote is not remote or current.owner != schedule.owner):
            await old_remote.delete(current.owner, name)  # it moved (another backend or owner)
        if current.owner != schedule.owner:  # kept under its new owner only
            with contextlib.suppress(ScheduleNotFound):
                await self.store.delete(current.owner, name)
        await self.store.put(schedule)
        self.timer.rearm()
        return self._view(schedule, at)

    async def delete(self, name: str) -> None:
        """Delete the schedule (and, for a remote one, what it created there). Jobs it
        started go on."""
        schedule = await self._find(name)
        remote = self._remote_of(schedule)
        if remote is not None:
            await remote.delete(schedule.owner, schedule.name)
        with contextlib.suppress(ScheduleNotFound):  # one found only remotely
            await self.store.delete(schedule.owner, schedule.name)
        self.timer.rearm()

    async def run_now(self, name: str) -> Job:
        """Start one run now, through the job service (its budget checks apply)."""
        schedule = await self._find(name)
        return await self.jobs.create_job(dict(schedule.job), schedule=schedule.name)

    # -- reading -----------------------------------------------------------------------------

    def _view(self, schedule: Schedule, at: float) -> dict[str, Any]:
        view = schedule.to_dict(at)
        view["remote"] = self._remote_of(schedule) is not None
        return view

    async def _check_job(self, schedule: Schedule) -> Job:
        """The schedule's job body checked exactly as `POST jobs`; fills in its backend."""
        job, backend = await self.jobs.check_job(schedule.job)
        schedule.job["backend"] = backend.id
        return job

    def _remotes(self) -> dict[str, RemoteSchedules]:
        return {
            backend_id: backend.capabilities.schedules
            for backend_id, backend in self.jobs.backends.items()
            if backend.capabilities.schedules is not None
        }

    def _remote_of(self, schedule: Schedule) -> RemoteSchedules | None:
        return self._remotes().get(schedule.backend())

    def _owner_of(self, schedule: Schedule) -> str:
        """The owner rule: a remote schedule's is its backend's, a local one's the server's."""
        remote = self._remote_of(schedule)
        return remote.owner if remote is not None else self.owner

    def _owners(self) -> list[str]:
        """Every owner whose schedules this server shows: its own, then its backends'."""
        owners = [self.owner, *(remote.owner for remote in self._remotes().values())]
        return list(dict.fromkeys(owners))

    async def _stored(self, name: str) -> Schedule | None:
        """The stored schedule of that name, whichever owner it is kept under."""
        for owner in self._owners():
            with contextlib.suppress(ScheduleNotFound):
                return await self.store.get(owner, name)
        return None

    async def _remote_list(self, remote: RemoteSchedules) -> list[Schedule]:
        try:
            return await remote.list(remote.owner)
        except AWSJobsError as err:
            self.log.warning("awsjobs: cannot list remote schedules: %s", err)
            return []

    async def _all(self) -> list[Schedule]:
        """The store's schedules merged with those found remotely (these win: they are what
        fires; one created elsewhere shows up too)."""
        merged = {s.name: s for o in self._owners() for s in await self.store.of_owner(o)}
        for remote in self._remotes().values():
            for found in await self._remote_list(remote):
                known = merged.get(found.name)
                if known is not None and not found.job:
                    found.job = known.job
                merged[found.name] = found
        return [merged[name] for name in sorted(merged)]

    async def _find(self, name: str) -> Schedule:
        check_name_or_404(name)
        stored = await self._stored(name)
        if stored is not None:
            return stored
        for schedule in await self._all():
            if schedule.name == name:
                return schedule
        raise ScheduleNotFound(f"no schedule {name!r}")

    # -- local schedules: the timer's tick ---------------------------------------------------

    async def _tick(self, at: float) -> float | None:
        """Fire (or record as missed) every local firing due at `at`; the next firing."""
        earliest: float | None = None
        for schedule in await self.store.of_owner(self.owner):
            if not schedule.enabled or self._remote_of(schedule) is not None:
                continue
            try:
                await self._catch_up(schedule, at)
                upcoming = schedule.upcoming(max(at, schedule.last_fired_at or at), 1)
            except AWSJobsError as err:  # e.g. its zone vanished from this machine's tzdata
                self.log.warning("awsjobs: schedule %s cannot fire: %s", schedule.name, err)
                continue
            if upcoming and (earliest is None or upcoming[0] < earliest):
                earliest = upcoming[0]
        return earliest

    async def _catch_up(self, schedule: Schedule, at: float) -> None:
        """Handle the firings due since the last one: the newest fires if younger than the
        grace (on time, it is), older ones are recorded `missed`."""
        since = schedule.last_fired_at or schedule.created_at
        due = cron.previous_runs(
            schedule.spec(), at, since, MISSED_RECORDED, schedule.start_at, schedule.end_at
        )
        if not due:
            return
        newest = due[0]

        def fired(fresh: Schedule) -> None:
            fresh.last_fired_at = newest

        # Recorded before the fire: a crash in between loses one run rather than doubling it.
        schedule = await self.store.update(schedule.owner, schedule.name, fired)
        for missed in reversed(due[1:]):
            await self.store.record_event(schedule.owner, schedule.name, "missed", missed)
        if at - newest > max(self.options.missed_run_grace_seconds, ON_TIME_SECONDS):
            await self.store.record_event(schedule.owner, schedule.name, "missed", newest)
            return
        await self._fire(schedule, newest)

    async def _fire(self, schedule: Schedule, scheduled_for: float) -> None:
        """Start one run; a refusal (budget, a file gone) is recorded as a failed run."""
        try:
            await self.jobs.create_job(dict(schedule.job), schedule=schedule.name)
        except AWSJobsError as err:
            error = describe_error(err)
        except Exception as err:
            self.log.exception("awsjobs: schedule %s could not start its run", schedule.name)
            error = f"internal error: {describe_error(err)}"
        else:
            return
        self.log.warning("awsjobs: schedule %s: run refused: %s", schedule.name, error)
        await self.store.record_event(schedule.owner, schedule.name, "failed", scheduled_for, error)

    # -- remote schedules: importing their runs ----------------------------------------------

    async def _import_loop(self) -> None:
        await asyncio.sleep(self.options.first_import_delay_seconds)
        while True:
            await self.import_runs()
            await asyncio.sleep(self.options.import_interval_seconds)

    async def import_runs(self) -> int:
        """Insert the runs remote schedules started that the store lacks, and drive the
        active ones like any job (Stop works). Returns how many were imported."""
        imported = 0
        for backend_id, remote in self._remotes().items():
            try:
                known = await self.store.scheduled_job_ids()
                found = await remote.import_runs(remote.owner, known)
            except Exception as err:
                self.log.warning("awsjobs: cannot import %s schedule runs: %s", backend_id, err)
                continue
            for job in found:
                imported += await self._import_one(job, known)
        return imported

    async def _import_one(self, job: Job, known: set[str]) -> int:
        if job.id in known or job.state.value == "pending":  # a pending job would be launched
            return 0
        await self.jobs.store.insert(job)
        known.add(job.id)
        if job.is_active:
            self.jobs.driver.start(job.id, resume=True)
        return 1


def check_name_or_404(name: str) -> None:
    """A malformed name in a path is a missing schedule, said with the rule."""
    try:
        check_name(name)
    except AWSJobsError:
        raise ScheduleNotFound(
            f"no schedule {name[:70]!r}: a schedule name is 1 to 64 letters, digits, '-' or '_'"
        ) from None
