"""JobService: what the REST handlers call — create, list, get, stop and delete jobs, read a
log, describe the configuration, and the instance endpoints of a backend that has machines.

A job's lifecycle (launch, watch, stop, resume after a restart) is the `JobDriver`'s
(`driver.py`); this module validates, reads and forwards. Nothing here knows about HTTP;
nothing here knows about processes or EC2: backends say what they offer through
`Capabilities`, and the instance endpoints use any backend that implements `InstanceInventory`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import jobfiles, logs
from .backends.base import Backend, InstanceInventory
from .budget import SpendingCap
from .driver import JobDriver
from .driver_support import DriverOptions, Logger
from .errors import BackendNotConfigured, InvalidRequest
from .models import Job, JobState
from .patterns import INSTANCE_ID
from .requests import (
    MAX_CPUS,
    MAX_MEMORY_GIB,
    LaunchDefaults,
    check_cpus,
    check_gpus,
    check_instance_type,
    check_memory_gib,
    parse_launch_request,
    resolve_inside,
)
from .runners import supported_extensions
from .safeopen import NotRegularFile
from .store import DEFAULT_PAGE, JobStore

# Said when no enabled backend has an instance inventory; the app names the one to enable.
NO_INVENTORY = "No backend with instances is enabled on this server: add one to c.AWSJobs.backends"
# The reason a job records when its instance is terminated with `POST instances/stop`.
TERMINATED_FROM_INSTANCES = "stopped: its instance was terminated from the Instances view"


@dataclass(frozen=True)
class ServiceOptions(DriverOptions):
    """The driver's timings, plus what the request API needs."""

    defaults: LaunchDefaults = field(default_factory=LaunchDefaults)
    log_chunk_bytes: int = logs.DEFAULT_CHUNK_BYTES
    # The message of the instance endpoints when no enabled backend has an inventory.
    no_inventory_message: str = NO_INVENTORY
    # The spending cap (0: none): c.AWSJobs.max_active_instances and max_hourly_spend.
    max_active_instances: int = 0
    max_hourly_spend: float = 0.0
    # How long after the start the backends look for orphans (`_reconcile`). Not urgent (an
    # orphan keeps its hard lifetime; active jobs are resumed at once), and it costs CPU (the
    # EC2 client: a third of a second of botocore's data files parsed) that would otherwise
    # compete with the first requests and the first job's start (the warm runner, at the
    # jobs' priority, waits for any busy thread of the server).
    orphan_sweep_delay_seconds: float = 5.0


class JobService:
    """Owns the store, the backends (id → enabled backend) and the driver of their jobs."""

    def __init__(
        self,
        store: JobStore,
        backends: Mapping[str, Backend],
        root_dir: Path,
        options: ServiceOptions | None = None,
        log: Logger | None = None,
    ) -> None:
        self.store = store
        self.backends = dict(backends)
        self.root_dir = Path(root_dir)
        self.options = options or ServiceOptions()
        self.log = log or logging.getLogger(__name__)
        self.budget = SpendingCap(
            store,
            self.options.max_active_instances,
            self.options.max_hourly_spend,
            priced_backends=[
                backend_id
                for backend_id, backend in self.backends.items()
                if backend.capabilities.hourly_price
            ],
        )
        self.driver = JobDriver(store, self.backends, self.options, self.log, budget=self.budget)
        self._start_lock = asyncio.Lock()
        # Backend id → what its last reconcile found running for no active job.
        self.orphans: dict[str, list[dict[str, Any]]] = {}
        self._started = False
        self._closed = False

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, start the backends, resume every active job. Idempotent."""
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            await self.store.open()
            for backend in self.backends.values():
                try:
                    await backend.start()
                except Exception:
                    self.log.exception("awsjobs: the %s backend failed to start", backend.id)
            active = await self.store.list_active()
            self.driver.resume(active)
            for backend in self.backends.values():
                self.driver.spawn(self._reconcile(backend), f"awsjobs-reconcile-{backend.id}")
            self._started = True

    async def _reconcile(self, backend: Backend) -> None:
        """Look for work of `backend` that no active job owns (e.g. an instance launched just
        before a crash). In the background, a few seconds after the start: AWS being slow must
        never delay the server, nor this sweep its first requests. The active jobs are read
        after the wait: a job submitted meanwhile owns its work."""
        await self._wait_before_orphan_sweep()
        try:
            active = [job for job in await self.store.list_active() if job.backend == backend.id]
            report = await backend.reconcile(active)
        except Exception as err:
            self.log.warning("awsjobs: could not look for orphans of %s: %s", backend.id, err)
            return
        self.orphans[backend.id] = report.get("orphans", [])

    async def _wait_before_orphan_sweep(self) -> None:
        await asyncio.sleep(self.options.orphan_sweep_delay_seconds)

    async def close(self) -> None:
        """Close the driver (its tasks; never a job: jobs outlive the server and are resumed
        on the next start), then the backends and the store."""
        if self._closed:
            return
        self._closed = True
        await self.driver.close()
        for backend in self.backends.values():
            try:
                await backend.close()
            except Exception:
                self.log.exception("awsjobs: the %s backend failed to close", backend.id)
        await self.store.close()

    # -- configuration -----------------------------------------------------------------------

    def describe_config(self) -> dict[str, Any]:
        """`GET config`: the backends with their capabilities, defaults, limits and file types,
        so the front end hard-codes none of them."""
        defaults = self.options.defaults
        return {
            "backends": [b.describe() for b in self.backends.values()],
            "default_backend": defaults.backend,
            "defaults": {
                "memory_gib": defaults.memory_gib,
                "cpus": defaults.cpus,
                "spot": defaults.spot,
                "max_lifetime_minutes": defaults.max_lifetime_minutes,
                "max_allowed_lifetime_minutes": defaults.max_allowed_lifetime_minutes,
            },
            "limits": {
                "memory_gib": MAX_MEMORY_GIB,
                "cpus": MAX_CPUS,
                "max_lifetime_minutes": defaults.max_allowed_lifetime_minutes,
            },
            # Whether a backend with machines of its own (the cloud) can launch jobs now.
            "aws_configured": any(
                b.capabilities.instances and b.is_configured() for b in self.backends.values()
            ),
            "extensions": supported_extensions(),
        }

    async def config_now(self) -> dict[str, Any]:
        """`GET config` as served: `describe_config` plus the spending cap's current figures
        (`budget`), which change as jobs start and end."""
        return {**self.describe_config(), "budget": await self.budget.figures()}

    # -- jobs --------------------------------------------------------------------------------

    async def create_job(self, body: Any, schedule: str | None = None) -> Job:
        """Validate, persist as pending, start driving it, and return at once. `schedule`
        names the schedule that fired it, if any."""
        job, backend = await self.check_job(body)
        job.schedule = schedule
        if not (self.budget.enabled and self.budget.counts(backend.id)):
            await self.driver.submit(job)
            return job
        price = await self._launch_price(backend, job)
        async with self.budget.admit(job.id, price):  # OverBudget: nothing inserted
            await self.driver.submit(job)
        return job

    async def check_job(self, body: Any) -> tuple[Job, Backend]:
        """A `POST jobs` body validated into a pending Job (not stored) and its backend."""
        job = await asyncio.to_thread(  # it stats files: off the loop (the root may be NFS)
            parse_launch_request,
            body,
            root_dir=self.root_dir,
            backends=list(self.backends),
            defaults=self.options.defaults,
        )
        backend = self.backends[job.backend]
        if job.gpu_need.wanted and not backend.capabilities.gpus:
            raise InvalidRequest(f"gpus: the {job.backend!r} backend has no GPUs to offer")
        backend.validate(job)
        problem = backend.configuration_problem()
        if problem:
            raise BackendNotConfigured(problem)
        await backend.check_request(job)
        return job, backend

    async def _launch_price(self, backend: Backend, job: Job) -> float | None:
        """The hourly price `job` would launch at, from its backend's preview; None when no
        spend cap needs it or the backend cannot say (the job then counts as an instance)."""
        if self.budget.max_hourly_spend is None or not isinstance(backend, InstanceInventory):
            return None
        preview = await backend.preview(
            memory_gib=job.memory_gib,
            cpus=job.cpus,
            spot=job.spot,
            instance_type=job.requested_instance_type,
            gpus=job.gpu_need,
        )
        price = preview.get("choice", {}).get("hourly_price")
        return float(price) if isinstance(price, (int, float)) else None

    async def get_job(self, job_id: str) -> Job:
        return await self.store.get(job_id)

    @staticmethod
    def _wanted_states(states: Iterable[str] | None, limit: int) -> set[JobState]:
        """The states a list asks for (empty: all); checks the page size too."""
        wanted: set[JobState] = set()
        for name in states or ():
            try:
                wanted.add(JobState(name))
            except ValueError:
                known = ", ".join(s.value for s in JobState)
                raise InvalidRequest(f"state: unknown state {name!r}; known: {known}") from None
        if limit < 1:
            raise InvalidRequest("limit: must be a whole number of at least 1")
        return wanted

    async def list_jobs(
        self,
        states: Iterable[str] | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
        schedule: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Newest first; `schedule`: only the jobs that schedule started."""
        wanted = self._wanted_states(states, limit)
        return await self.store.list_jobs(wanted or None, limit, cursor, schedule=schedule)

    async def list_jobs_json(
        self,
        states: Iterable[str] | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
        schedule: str | None = None,
    ) -> bytes:
        """`list_jobs` as the REST answer's JSON bytes, encoded off the event loop."""
        wanted = self._wanted_states(states, limit)
        return await self.store.list_jobs_json(wanted or None, limit, cursor, schedule=schedule)

    async def stop_job(self, job_id: str) -> Job:
        """Ask a job to stop; returns at once with the job `stopping` (or as it is if it has
        already finished). Idempotent. The driver decides and finishes the stop."""
        return await self.driver.stop(job_id)

    async def delete_job(self, job_id: str) -> None:
        """Forget a finished job (`Conflict` while active) and its state files; the log and
        outputs are the user's files and stay. What its backend keeps elsewhere goes too."""
        job = await self.store.get(job_id)
        await self.store.delete(job_id)
        backend = self.backends.get(job.backend)
        if backend is not None:
            try:
                await backend.forget(job)
            except Exception as err:  # the job is gone; a lifecycle rule ends what is left
                self.log.warning("awsjobs: removing job %s: %s", job_id, err)
        folder = jobfiles.job_state_dir(self.root_dir, job_id)
        await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)

    async def read_log(
        self, job_id: str, offset: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        cap = self.options.log_chunk_bytes
        if offset < 0:
            raise InvalidRequest("offset: must be a whole number of at least 0")
        if limit is not None and limit < 1:
            raise InvalidRequest("limit: must be a whole number of at least 1")
        job = await self.store.get(job_id)
        final = job.state.is_terminal

        def resolve_and_read() -> logs.LogChunk:
            # The log may have been replaced by a symlink since the job was validated.
            path = resolve_inside(self.root_dir.resolve(), job.log_path, "log_path")
            return logs.read_chunk(path, offset, min(limit or cap, cap), final=final)

        try:  # one hop off the loop for both: resolving stats every folder of the path too
            chunk = await asyncio.to_thread(resolve_and_read)
        except NotRegularFile:
            raise InvalidRequest(f"log_path: {job.log_path!r} is not a regular file") from None
        except OSError as err:  # unreadable, or a link swapped in since it was resolved
            reason = err.strerror or str(err)
            raise InvalidRequest(f"log_path: cannot read {job.log_path!r}: {reason}") from None
        return {**chunk.to_dict(), "complete": final and chunk.eof}

    # -- instances (a backend with an `InstanceInventory`) -----------------------------------

    def _inventory(self) -> InstanceInventory:
        """The enabled backend whose machines the instance endpoints show and end."""
        for backend in self.backends.values():
            if backend.capabilities.instances and isinstance(backend, InstanceInventory):
                problem = backend.configuration_problem()
                if problem:
                    raise BackendNotConfigured(problem)
                return backend
        raise BackendNotConfigured(self.options.no_inventory_message)

    async def preview_instance(
        self,
        *,
        memory_gib: float,
        cpus: int,
        spot: bool,
        instance_type: str | None,
        gpus: int = 0,
        gpu_memory_gib: float = 0.0,
        gpu_model: str | None = None,
    ) -> dict[str, Any]:
        """The instance type a job would get, its price and the other candidates."""
        return await self._inventory().preview(
            memory_gib=check_memory_gib(memory_gib),
            cpus=check_cpus(cpus),
            spot=spot,
            instance_type=check_instance_type(instance_type),
            gpus=check_gpus(gpus, gpu_memory_gib, gpu_model),
        )

    async def list_instances(self) -> list[dict[str, Any]]:
        """This tool's instances that are not terminated; `orphan` marks one whose job is not
        active here (nothing watches it: terminate it, or it halts at its max lifetime)."""
        rows = await self._inventory().list_instances()
        active = {job.id for job in await self.store.list_active()}
        return [
            {**row, "orphan": bool(row.get("job_id")) and row.get("job_id") not in active}
            for row in rows
        ]

    async def terminate_instances(self, instance_ids: list[str]) -> list[str]:
        """Terminate instances of this tool (`Forbidden`, nothing touched, if any is not).
        An active job whose instance is among them is stopped first, through the driver's
        stop, so it ends `stopped` with that reason rather than failed when its worker dies."""
        for instance_id in instance_ids:
            if not INSTANCE_ID.match(instance_id):
                raise InvalidRequest(f"instance_ids: {instance_id!r} is not an EC2 instance id")
        inventory = self._inventory()
        for job_id in await self._active_jobs_on(inventory, instance_ids):
            await self.driver.stop(job_id, reason=TERMINATED_FROM_INSTANCES)
        return await inventory.terminate_instances(list(instance_ids))

    async def _active_jobs_on(
        self, inventory: InstanceInventory, instance_ids: list[str]
    ) -> list[str]:
        """The active jobs running on these instances; none unless every id is one of this
        owner's live instances, so a request the inventory refuses stops no job."""
        rows = {row["instance_id"]: row for row in await inventory.list_instances()}
        if any(instance_id not in rows for instance_id in instance_ids):
            return []
        active = {job.id for job in await self.store.list_active()}
        owners = (rows[instance_id].get("job_id") for instance_id in instance_ids)
        return list(dict.fromkeys(job_id for job_id in owners if job_id in active))
