"""What a backend that keeps its schedules outside this server offers (EC2: EventBridge
Scheduler), so they fire with the server stopped. `Capabilities.schedules` holds one."""

from __future__ import annotations

import builtins
from typing import Protocol, runtime_checkable

from ..models import Job
from .model import Schedule


@runtime_checkable
class RemoteSchedules(Protocol):
    @property
    def owner(self) -> str:
        """The owner its schedules are grouped and tagged under, the one its runs' machines
        are tagged with (for EC2, c.EC2Backend.owner): a remote schedule's owner."""
        ...

    def check(self, schedule: Schedule) -> None:
        """`InvalidRequest` if the remote service cannot express `schedule`,
        `BackendNotConfigured` (naming the setting) if it is not set up."""
        ...

    async def put(self, schedule: Schedule, job: Job) -> None:
        """Create or update (idempotent). `job` is the pending Job built from `schedule.job`
        (its resolved path, log path and resources)."""
        ...

    async def delete(self, owner: str, name: str) -> None:
        """Delete the schedule and everything it created; running jobs go on. Idempotent."""
        ...

    async def list(self, owner: str) -> list[Schedule]:
        """The owner's schedules found remotely (also those created elsewhere with our tags)."""
        ...

    async def import_runs(self, owner: str, known_job_ids: set[str]) -> builtins.list[Job]:
        """Runs the remote service started that are not in `known_job_ids`, as Jobs with
        `schedule` set, in their current state (running ones with the handle to watch them)."""
        ...
