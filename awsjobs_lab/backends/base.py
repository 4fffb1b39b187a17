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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from traitlets import Float, Unicode
from traitlets.config import LoggingConfigurable

from .. import jobfiles
from ..errors import BackendError, BackendNotConfigured
from ..gpus import NO_GPU, GpuNeed
from ..models import Job, Outcome
from ..phases import PhaseSink
from ..schedules.remote import RemoteSchedules

__all__ = [
    "Backend",
    "BackendError",
    "BackendNotConfigured",
    "Capabilities",
    "InstanceInventory",
    "RecordHandle",
]

# record(handle_updates, **job_field_updates): persist backend facts on the job right away.
# Job field updates allowed: instance_type, hourly_price, command, output_path, started_at.
RecordHandle = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Capabilities:
    """What a backend offers beyond launch/wait/stop. Served in `GET config`, so the front end
    shows only the fields and views that apply, and a new backend needs no front-end change."""

    spot: bool = False  # the `spot` request field means something (cheaper, may be reclaimed)
    instance_types: bool = False  # `instance_type` is honoured; `GET instance-types` previews
    instances: bool = False  # it implements `InstanceInventory` (`GET instances`, terminate)
    hourly_price: bool = False  # its jobs have an hourly price and a cost so far
    gpus: bool = False  # `gpus`, `gpu_memory_gib`, `gpu_model` are honoured
    # Its schedules live outside this server and fire without it (EC2: EventBridge Scheduler);
    # None: they are local (fire while the server runs). Served as a bool.
    schedules: RemoteSchedules | None = None

    def to_dict(self) -> dict[str, bool]:
        return {**asdict(replace(self, schedules=None)), "schedules": self.schedules is not None}


@runtime_checkable
class InstanceInventory(Protocol):
    """A backend that runs jobs on machines it can list and end (EC2): the instance preview
    before launch, the list of this tool's machines, and terminating them from the UI."""

    async def preview(
        self,
        *,
        memory_gib: float,
        cpus: int,
        spot: bool,
        instance_type: str | None,
        gpus: GpuNeed = NO_GPU,
    ) -> dict[str, Any]:
        """The instance type a job would get, its price and the other candidates."""
        ...

    async def list_instances(self) -> list[dict[str, Any]]:
        """This tool's machines that are not gone, each with its `job_id` (if any)."""
        ...

    async def terminate_instances(self, ids: list[str]) -> list[str]:
        """Terminate machines of this tool (`Forbidden`, nothing touched, if any is not)."""
        ...


class Backend(LoggingConfigurable):
    """Base class of backends. Subclasses are traitlets-configurable (`c.LocalBackend.x = ...`)."""

    id: ClassVar[str] = ""
    label: ClassVar[str] = ""
    # A class default; a backend may hold its own per instance (EC2: its remote schedules).
    capabilities: Capabilities = Capabilities()

    # Absolute path of the Jupyter server root; set by the app. Job paths are relative to it.
    root_dir = Unicode("").tag(config=False)
    # Seconds in one minute of `max_lifetime_minutes` (60; tests shrink it); set by the app.
    lifetime_unit_seconds = Float(60.0).tag(config=False)
    # Where the backend reports its jobs' phases (`phases.py`); the driver sets its recorder.
    phases: PhaseSink = PhaseSink()
    # Saves fields of one of its jobs outside `launch` (`JobStore.update`: the job id, `handle=`,
    # fields), e.g. a transfer's progress; the driver sets it. None: a backend on its own.
    save_job: Callable[..., Awaitable[Any]] | None = None

    def job_state_dir(self, job: Job) -> Path:
        """`<root>/.awsjobs/jobs/<id>/`: small files the job's worker writes (its exit code),
        on the shared file system for EC2, so status needs no per-job AWS call."""
        return jobfiles.job_state_dir(self.root_dir, job.id)

    def exit_code_path(self, job: Job) -> Path:
        return jobfiles.exit_code_path(self.root_dir, job.id)

    def read_exit_code(self, job: Job) -> int | None:
        """The job's recorded exit code, or None while it has none. Blocking: a file read."""
        return jobfiles.read_exit_code(self.exit_code_path(job))

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
        return {
            "id": self.id,
            "label": self.label,
            "configured": self.is_configured(),
            "capabilities": self.capabilities.to_dict(),
        }

    def prepare(self) -> None:
        """Called once when the extension loads, before the event loop runs: begin what takes
        long to get ready (a process), so that it overlaps the rest of the server's start.
        No loop work here; `start` follows."""

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

    async def forget(self, job: Job) -> None:
        """The job was removed: delete what the backend keeps for it elsewhere (EC2's S3 mode:
        its staging area). Best effort: the service logs a failure."""

    async def reattach(self, job: Job) -> Outcome | None:
        """After a server restart: None if the work is still alive (the service then calls
        `wait`), else the Outcome that ended it while the server was away."""
        raise NotImplementedError
