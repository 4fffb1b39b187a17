"""The contract every backend fulfils. The job service drives all backends the same way:

    handle = await backend.launch(job, record)  # returns once the work has started
    outcome = await backend.wait(job)           # returns when the work ended on its own
    await backend.stop(job)                     # idempotent; returns once the work is gone

`launch` calls `record(...)` as soon as it learns anything that Stop would need (a pid, an
instance id), so that a Stop that arrives mid-launch, or a server restart, can always find the
work again. Nothing here knows about HTTP; nothing above the backends knows about EC2 or processes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from ..errors import BackendError, BackendNotConfigured
from ..models import Job, Outcome

__all__ = ["Backend", "BackendError", "BackendNotConfigured", "RecordHandle"]

# record(handle_updates, **job_field_updates): persist backend facts on the job right away.
# Job field updates allowed: instance_type, hourly_price, command, output_path, started_at.
RecordHandle = Callable[..., Awaitable[None]]


class Backend(LoggingConfigurable):
    """Base class of backends. Subclasses are traitlets-configurable (`c.LocalBackend.x = ...`)."""

    id: ClassVar[str] = ""
    label: ClassVar[str] = ""

    # Absolute path of the Jupyter server root; set by the app. Job paths are relative to it.
    root_dir = Unicode("").tag(config=False)

    def job_state_dir(self, job: Job) -> Path:
        """`<root>/.awsjobs/jobs/<id>/`: small files the job's worker writes (its exit code),
        on the shared file system for EC2, so status needs no per-job AWS call."""
        return Path(self.root_dir) / ".awsjobs" / "jobs" / job.id

    def is_configured(self) -> bool:
        """Whether jobs can be launched on this backend now."""
        return True

    def configuration_problem(self) -> str | None:
        """None when configured, else a sentence saying what to set (shown to users as is),
        e.g. "The EC2 backend is not configured: set c.EC2Backend.subnet_ids"."""
        if self.is_configured():
            return None
        name = type(self).__name__
        return f"The {self.label or self.id} backend is not configured: set its c.{name}.* options"

    def describe(self) -> dict[str, Any]:
        """Facts for `GET /awsjobs/api/config` (never secrets)."""
        return {"id": self.id, "label": self.label, "configured": self.is_configured()}

    async def start(self) -> None:
        """Called once when the server extension starts (create clients, start loops)."""

    async def close(self) -> None:
        """Called once when the server stops (cancel loops, close clients). Never stops jobs."""

    def validate(self, job: Job) -> None:
        """Raise `InvalidRequest`/`BackendNotConfigured` with a clear message if this backend
        cannot run `job`."""

    async def check_request(self, job: Job) -> None:
        """The slower part of validation (it may ask AWS), awaited before a job is accepted so
        that, e.g., an unknown instance type is a 400 rather than a failed job."""

    def request_stop(self, job_id: str) -> None:
        """A Stop was asked for: make an in-flight `launch` of this job give up as soon as it
        can (terminating what it started). Called before the service waits for the launch."""

    async def reconcile(self, active_jobs: list[Job]) -> dict[str, list[dict[str, Any]]]:
        """On server start, after the active jobs are known: find (and, if so configured,
        end) work of this backend that belongs to none of them. Returns
        `{"orphans": [...], "terminated": [...]}`."""
        return {"orphans": [], "terminated": []}

    async def launch(self, job: Job, record: RecordHandle) -> None:
        """Start the work. Call `record` with the handle as soon as it is known."""
        raise NotImplementedError

    async def wait(self, job: Job) -> Outcome:
        """Wait until the work ends on its own and say how. Must work from `job.handle`
        alone (after a server restart), without busy polling per job."""
        raise NotImplementedError

    async def stop(self, job: Job) -> None:
        """Stop the work and confirm it is gone. Idempotent. Raise `BackendError` if it
        cannot be confirmed (the service keeps the job in STOPPING and retries)."""
        raise NotImplementedError

    async def reattach(self, job: Job) -> Outcome | None:
        """After a server restart: None if the work is still alive (the service then calls
        `wait`), else the Outcome that ended it while the server was away."""
        raise NotImplementedError
