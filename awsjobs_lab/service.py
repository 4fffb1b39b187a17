"""JobService: launches, drives, stops and reconciles jobs on any backend.

One *driver* task per job takes it `pending → launching → running → <outcome>`: it calls
`backend.launch`, then races `backend.wait` against the job's lifetime deadline. One *stopper*
task per job finishes a Stop: it waits for an in-flight launch to end (a launch is never
cancelled half way: that could leak an instance), then calls `backend.stop` until the backend
confirms, retrying with backoff, and records `stopped`.

Every state change goes through `JobStore.transition`, which refuses moves the state machine
does not allow; the driver records an outcome only from the state it expects (`running`), so a
Stop and an outcome racing each other always end in `stopped`, never in an illegal move.

Nothing here knows about HTTP; nothing here knows about processes or EC2.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from . import logs
from .backends.base import Backend
from .errors import (
    AWSJobsError,
    BackendError,
    BackendNotConfigured,
    InvalidRequest,
)
from .models import ACTIVE_STATES, InvalidTransition, Job, JobState, Outcome, now
from .patterns import INSTANCE_ID
from .requests import (
    MAX_CPUS,
    MAX_MEMORY_GIB,
    LaunchDefaults,
    check_cpus,
    check_instance_type,
    check_memory_gib,
    parse_launch_request,
    resolve_inside,
)
from .runners import supported_extensions
from .store import DEFAULT_PAGE, JobStore

T = TypeVar("T")

_RUNNING = frozenset({JobState.RUNNING})


@dataclass(frozen=True)
class ServiceOptions:
    defaults: LaunchDefaults = field(default_factory=LaunchDefaults)
    log_chunk_bytes: int = logs.DEFAULT_CHUNK_BYTES
    # Seconds in one minute of `max_lifetime_minutes` (60; tests shrink it).
    lifetime_unit_seconds: float = 60.0
    # Backoff of retried stops and re-attachments: first delay, doubled up to the max.
    retry_seconds: float = 2.0
    retry_max_seconds: float = 60.0
    # On server stop, how long to let in-flight launches finish before cancelling them.
    close_launch_timeout_seconds: float = 60.0


def _describe(err: BaseException) -> str:
    return str(err) or type(err).__name__


class JobService:
    """Owns the store and the backends (id → enabled backend)."""

    def __init__(
        self,
        store: JobStore,
        backends: Mapping[str, Backend],
        root_dir: Path,
        options: ServiceOptions | None = None,
        log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self.store = store
        self.backends = dict(backends)
        self.root_dir = Path(root_dir)
        self.options = options or ServiceOptions()
        self.log = log or logging.getLogger(__name__)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._stoppers: dict[str, asyncio.Task[None]] = {}
        # Job id → set once no launch is (or can be) in flight for that job.
        self._launch_gates: dict[str, asyncio.Event] = {}
        self._launches: set[asyncio.Task[None]] = set()
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
            for job in active:
                self._start_driver(job.id, resume=True)
            for backend in self.backends.values():
                mine = [job for job in active if job.backend == backend.id]
                self._spawn(self._reconcile(backend, mine), f"awsjobs-reconcile-{backend.id}")
            self._started = True

    async def _reconcile(self, backend: Backend, active: list[Job]) -> None:
        """Look for work of `backend` that no active job owns (e.g. an instance launched just
        before a crash). In the background: AWS being slow must never delay the server."""
        try:
            report = await backend.reconcile(active)
        except Exception as err:
            self.log.warning("awsjobs: could not look for orphans of %s: %s", backend.id, err)
            return
        self.orphans[backend.id] = report.get("orphans", [])

    async def close(self) -> None:
        """Cancel and await every task; close backends and store. Never stops a job: jobs
        outlive the server and are re-attached on the next start."""
        if self._closed:
            return
        self._closed = True
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
        for backend in self.backends.values():
            try:
                await backend.close()
            except Exception:
                self.log.exception("awsjobs: the %s backend failed to close", backend.id)
        await self.store.close()

    def _spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- requests ----------------------------------------------------------------------------

    def describe_config(self) -> dict[str, Any]:
        defaults = self.options.defaults
        ec2 = self.backends.get("ec2")
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
            "aws_configured": bool(ec2 is not None and ec2.is_configured()),
            "extensions": supported_extensions(),
        }

    async def create_job(self, body: Any) -> Job:
        """Validate, persist as pending, start driving it, and return at once."""
        job = await asyncio.to_thread(  # it stats files: off the loop (the root may be NFS)
            parse_launch_request,
            body,
            root_dir=self.root_dir,
            backends=list(self.backends),
            defaults=self.options.defaults,
        )
        backend = self.backends[job.backend]
        backend.validate(job)
        problem = backend.configuration_problem()
        if problem:
            raise BackendNotConfigured(problem)
        await backend.check_request(job)
        await self.store.insert(job)
        self._start_driver(job.id)
        return job

    def _ec2(self) -> Any:
        """The EC2 backend, for its own endpoints (instance preview, list, terminate)."""
        backend = self.backends.get("ec2")
        if backend is None:
            raise BackendNotConfigured(
                'The EC2 backend is not enabled on this server: add "ec2" to c.AWSJobs.backends'
            )
        problem = backend.configuration_problem()
        if problem:
            raise BackendNotConfigured(problem)
        return backend

    async def preview_instance(
        self, *, memory_gib: float, cpus: int, spot: bool, instance_type: str | None
    ) -> dict[str, Any]:
        """The instance type a job would get, its price and the other candidates."""
        result = await self._ec2().preview(
            memory_gib=check_memory_gib(memory_gib),
            cpus=check_cpus(cpus),
            spot=spot,
            instance_type=check_instance_type(instance_type),
        )
        return cast(dict[str, Any], result)

    async def list_instances(self) -> list[dict[str, Any]]:
        """This tool's instances that are not terminated; `orphan` marks one whose job is not
        active here (nothing watches it: terminate it, or it halts at its max lifetime)."""
        rows = cast(list[dict[str, Any]], await self._ec2().list_instances())
        active = {job.id for job in await self.store.list_active()}
        return [
            {**row, "orphan": bool(row.get("job_id")) and row.get("job_id") not in active}
            for row in rows
        ]

    async def terminate_instances(self, instance_ids: list[str]) -> list[str]:
        """Terminate instances of this tool (`Forbidden`, nothing touched, if any is not)."""
        for instance_id in instance_ids:
            if not INSTANCE_ID.match(instance_id):
                raise InvalidRequest(f"instance_ids: {instance_id!r} is not an EC2 instance id")
        return cast(list[str], await self._ec2().terminate_instances(list(instance_ids)))

    async def get_job(self, job_id: str) -> Job:
        return await self.store.get(job_id)

    @staticmethod
    def _wanted_states(states: Iterable[str] | None) -> set[JobState]:
        wanted: set[JobState] = set()
        for name in states or ():
            try:
                wanted.add(JobState(name))
            except ValueError:
                known = ", ".join(s.value for s in JobState)
                raise InvalidRequest(f"state: unknown state {name!r}; known: {known}") from None
        return wanted

    async def list_jobs(
        self,
        states: Iterable[str] | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        wanted = self._wanted_states(states)
        if limit < 1:
            raise InvalidRequest("limit: must be a whole number of at least 1")
        return await self.store.list_jobs(wanted or None, limit, cursor)

    async def list_jobs_json(
        self,
        states: Iterable[str] | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> bytes:
        """`list_jobs` as the REST answer's JSON bytes, encoded off the event loop."""
        wanted = self._wanted_states(states)
        if limit < 1:
            raise InvalidRequest("limit: must be a whole number of at least 1")
        return await self.store.list_jobs_json(wanted or None, limit, cursor)

    async def delete_job(self, job_id: str) -> None:
        """Forget a finished job (`Conflict` while active) and its state files; the log and
        outputs are the user's files and stay."""
        job = await self.store.get(job_id)
        await self.store.delete(job_id)
        backend = self.backends.get(job.backend)
        folder = (
            backend.job_state_dir(job)
            if backend is not None
            else self.root_dir / ".awsjobs" / "jobs" / job.id
        )
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
        # The log may have been replaced by a symlink since the job was validated.
        path = await asyncio.to_thread(
            resolve_inside, self.root_dir.resolve(), job.log_path, "log_path"
        )
        chunk = await logs.read_log(path, offset, min(limit or cap, cap), final=final)
        return {**chunk.to_dict(), "complete": final and chunk.eof}

    async def stop_job(self, job_id: str) -> Job:
        """Ask a job to stop; returns at once with the job `stopping` (or as it is if it has
        already finished). Idempotent."""
        job = await self.store.get(job_id)
        if job.state.is_terminal:
            return job
        if job.state is JobState.PENDING and job_id not in self._launch_gates:
            # Nothing was launched and nothing is launching: no backend call needed.
            with contextlib.suppress(InvalidTransition):
                return await self.store.transition(
                    job_id,
                    JobState.STOPPED,
                    "stopped before it was launched",
                    expected={JobState.PENDING},
                    stop_requested=True,
                )
            job = await self.store.get(job_id)
        if job.state is not JobState.STOPPING and job.state.is_active:
            try:
                job = await self.store.transition(
                    job_id, JobState.STOPPING, "stop requested", stop_requested=True
                )
            except InvalidTransition:
                job = await self.store.get(job_id)
        if job.state is JobState.STOPPING:
            backend = self.backends.get(job.backend)
            if backend is not None:
                backend.request_stop(job_id)  # an in-flight launch gives up early
            self._ensure_stopper(job_id)
        return job

    # -- driving -----------------------------------------------------------------------------

    def _start_driver(self, job_id: str, resume: bool = False) -> None:
        if self._closed or job_id in self._drivers:
            return
        task = self._spawn(self._run_driver(job_id, resume), f"awsjobs-driver-{job_id}")
        self._drivers[job_id] = task
        task.add_done_callback(lambda _: self._drivers.pop(job_id, None))

    async def _run_driver(self, job_id: str, resume: bool) -> None:
        try:
            await self._drive(job_id, resume)
        except asyncio.CancelledError:
            raise  # server stopping: the job stays as it is and is resumed on the next start
        except AWSJobsError as err:  # a backend refusing: its message is for the user
            self.log.warning("awsjobs: job %s failed: %s", job_id, err)
            await self._fail(job_id, _describe(err))
        except Exception as err:
            self.log.exception("awsjobs: the driver of job %s failed", job_id)
            await self._fail(job_id, f"internal error: {_describe(err)}")

    async def _fail(self, job_id: str, error: str, reason: str | None = None) -> None:
        """Mark a job failed after an error, stopping whatever work it has (best effort, once)
        so nothing keeps running unwatched. A stopping job is left to its stopper."""
        try:
            job = await self.store.get(job_id)
            if job.state not in (JobState.PENDING, JobState.LAUNCHING, JobState.RUNNING):
                return
            backend = self.backends.get(job.backend)
            if backend is not None and job.handle:
                try:
                    await backend.stop(job)
                except Exception as err:
                    self.log.warning("awsjobs: could not stop failed job %s: %s", job_id, err)
                    error += f" (its work may still be running: {_describe(err)})"
            await self.store.transition(
                job_id, JobState.FAILED, reason or error, expected={job.state}, error=error
            )
        except InvalidTransition:
            pass
        except Exception:
            self.log.exception("awsjobs: could not mark job %s failed", job_id)

    async def _drive(self, job_id: str, resume: bool) -> None:
        job = await self.store.get(job_id)
        backend = self.backends.get(job.backend)
        if backend is None:
            message = (
                f"its backend {job.backend!r} is not enabled on this server "
                "(c.AWSJobs.backends); it can no longer be watched or stopped from here"
            )
            with contextlib.suppress(InvalidTransition):
                await self.store.transition(
                    job_id, JobState.FAILED, message, expected=ACTIVE_STATES, error=message
                )
            return
        if job.state is JobState.STOPPING:
            self._ensure_stopper(job_id)
            return
        if job.state is JobState.PENDING:
            launched = await self._launch(job, backend)
            if launched is None:
                return
            job = launched
        elif resume:
            resumed = await self._resume(job, backend)
            if resumed is None:
                return
            job = resumed
        if job.state is JobState.RUNNING:
            await self._watch(job, backend)

    async def _launch(self, job: Job, backend: Backend) -> Job | None:
        """pending → launching → (launch) → running. None if the job went elsewhere."""
        job_id = job.id
        gate = asyncio.Event()
        self._launch_gates[job_id] = gate

        def open_gate(_: object = None) -> None:
            gate.set()
            if self._launch_gates.get(job_id) is gate:
                del self._launch_gates[job_id]

        try:
            job = await self.store.transition(
                job_id,
                JobState.LAUNCHING,
                f"launching on {backend.label or backend.id}",
                expected={JobState.PENDING},
            )
        except InvalidTransition:
            open_gate()
            return None  # stopped before it could launch
        except BaseException:
            open_gate()
            raise

        async def record(handle: Mapping[str, Any] | None = None, **fields: Any) -> None:
            await self.store.update(job_id, handle=handle, **fields)

        launch = self._spawn(backend.launch(job, record), f"awsjobs-launch-{job_id}")
        self._launches.add(launch)
        launch.add_done_callback(self._launches.discard)
        launch.add_done_callback(open_gate)
        try:
            await asyncio.shield(launch)
        except asyncio.CancelledError:
            if not launch.done():
                raise  # we are cancelled; the launch goes on (close() lets it finish)
            error = "the launch was cancelled"
        except Exception as err:
            error = _describe(err)
        else:
            error = ""
        if error:
            # Whatever the launch had started is stopped (nothing leaks); after a Stop, the
            # stopper finishes the job instead.
            await self._fail(job_id, error, reason=f"launch failed: {error}")
            return None
        fresh = await self.store.get(job_id)
        try:
            return await self.store.transition(
                job_id,
                JobState.RUNNING,
                "started",
                expected={JobState.LAUNCHING},
                started_at=fresh.started_at or now(),
            )
        except InvalidTransition:
            return None  # stopped meanwhile: the stopper takes over

    async def _resume(self, job: Job, backend: Backend) -> Job | None:
        """After a restart: re-attach a launching/running job. None once it is finished."""
        delay = self.options.retry_seconds
        while True:
            try:
                outcome = await backend.reattach(job)
                break
            except BackendError as err:
                self.log.warning("awsjobs: cannot re-attach job %s yet: %s", job.id, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.options.retry_max_seconds)
                job = await self.store.get(job.id)
        if job.state is JobState.LAUNCHING:
            # The launch had gone far enough to be found again: it is running (or has run).
            try:
                job = await self.store.transition(
                    job.id,
                    JobState.RUNNING,
                    "found running after a server restart",
                    expected={JobState.LAUNCHING},
                    started_at=job.started_at or now(),
                )
            except InvalidTransition:
                return None  # a Stop came first: its stopper finishes the job
        if outcome is None:
            return job
        await self._record_outcome(job.id, outcome, "ended while the server was down")
        return None

    async def _record_outcome(self, job_id: str, outcome: Outcome, context: str = "") -> None:
        reason = outcome.error or ("finished" if outcome.state is JobState.SUCCEEDED else "")
        if context:
            reason = f"{reason} ({context})" if reason else context
        with contextlib.suppress(InvalidTransition):  # a Stop won the race: stopper finishes
            await self.store.transition(
                job_id,
                outcome.state,
                reason or outcome.state.value,
                expected=_RUNNING,
                exit_code=outcome.exit_code,
                error=outcome.error,
            )

    async def _watch(self, job: Job, backend: Backend) -> None:
        """Race `backend.wait` against the lifetime deadline, then record how it ended. A
        `BackendError` from `wait` (AWS unreachable for a while) is retried with backoff."""
        start = job.started_at if job.started_at is not None else job.created_at
        deadline = start + job.max_lifetime_minutes * self.options.lifetime_unit_seconds
        delay = self.options.retry_seconds
        while True:
            waiter = asyncio.ensure_future(backend.wait(job))
            try:
                done, _ = await asyncio.wait({waiter}, timeout=max(0.0, deadline - now()))
            except asyncio.CancelledError:
                waiter.cancel()
                raise
            if waiter not in done:
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await waiter
                break
            try:
                outcome = waiter.result()
            except BackendError as err:
                self.log.warning("awsjobs: waiting on job %s failed, retrying: %s", job.id, err)
                await asyncio.sleep(min(delay, max(0.0, deadline - now())))
                delay = min(delay * 2, self.options.retry_max_seconds)
                job = await self.store.get(job.id)
                if job.state is not JobState.RUNNING:
                    return  # a Stop is under way: its stopper finishes the job
                continue
            await self._record_outcome(job.id, outcome)
            return
        current = await self.store.get(job.id)
        if current.state is not JobState.RUNNING:
            return  # a Stop is under way: its stopper finishes the job
        minutes = job.max_lifetime_minutes
        await self._stop_confirmed(current, backend)
        message = f"reached its max lifetime of {minutes} minute{'s' if minutes != 1 else ''}"
        with contextlib.suppress(InvalidTransition):
            await self.store.transition(
                job.id, JobState.TIMED_OUT, message, expected=_RUNNING, error=message
            )

    # -- stopping ----------------------------------------------------------------------------

    def _ensure_stopper(self, job_id: str) -> None:
        if self._closed or job_id in self._stoppers:
            return
        task = self._spawn(self._run_stopper(job_id), f"awsjobs-stop-{job_id}")
        self._stoppers[job_id] = task
        task.add_done_callback(lambda _: self._stoppers.pop(job_id, None))

    async def _run_stopper(self, job_id: str) -> None:
        try:
            gate = self._launch_gates.get(job_id)
            if gate is not None:
                await gate.wait()  # never cut a launch half way: stop what it started
            job = await self.store.get(job_id)
            if job.state is not JobState.STOPPING:
                return
            backend = self.backends.get(job.backend)
            if backend is None:
                self._start_driver(job_id)  # fails it: the backend is not enabled
                return
            await self._stop_confirmed(job, backend)
            with contextlib.suppress(InvalidTransition):
                await self.store.transition(
                    job_id,
                    JobState.STOPPED,
                    "stopped",
                    expected={JobState.STOPPING},
                    error=None,
                )
        except asyncio.CancelledError:
            raise  # server stopping: the job stays stopping and the stop resumes on restart
        except Exception:
            self.log.exception("awsjobs: the stop of job %s failed", job_id)

    async def _stop_confirmed(self, job: Job, backend: Backend) -> None:
        """`backend.stop` until it confirms, with backoff; the job keeps its state meanwhile."""
        delay = self.options.retry_seconds
        while True:
            try:
                await backend.stop(job)
                return
            except Exception as err:
                message = f"stop not confirmed yet, retrying: {_describe(err)}"
                self.log.warning("awsjobs: job %s: %s", job.id, message)
                with contextlib.suppress(Exception):
                    await self.store.update(job.id, error=message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.retry_max_seconds)
            job = await self.store.get(job.id)
