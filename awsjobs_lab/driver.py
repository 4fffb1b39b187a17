"""JobDriver: one job's lifecycle, and the one place where a job's transitions are decided.

A *driver* task per job takes it `pending → launching → running → <outcome>`: it calls
`backend.launch`, then races `backend.wait` against the job's lifetime deadline. A spot attempt
that AWS reclaims, with an attempt left, goes `running → launching` again (`recovery.py`): a new
instance for the same job, its log continued; the lifetime counts from the first attempt.
A *stopper* task per job finishes a Stop: it waits for an in-flight launch to end (a launch is never
cancelled half way: that could leak an instance), then calls `backend.stop` until the backend
confirms, retrying with backoff, and records `stopped`.

Every state change goes through `_move`, that is `JobStore.transition` with the state the
driver expects the job to be in; the store refuses any other move, so a Stop and an outcome
racing each other always end in `stopped`, never in an illegal move. An outcome is recorded only
from `running`. When a move is refused, whoever moved the job first finishes it.

Nothing here knows about HTTP, processes or EC2; the request API (`service.py`) calls `submit`,
`stop`, `resume` and `close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from .backends.base import Backend
from .budget import SpendingCap
from .driver_support import (
    Backoff,
    DriverOptions,
    DriverTasks,
    Logger,
    describe_error,
    move,
)
from .errors import AWSJobsError, BackendError, StoreUnavailable
from .models import ACTIVE_STATES, Job, JobState, Outcome, now
from .phases import PhaseRecorder
from .recovery import (
    Relaunch,
    close_unlaunched_attempt,
    final_interruption,
    mark_log,
    plan_relaunch,
    refused_relaunch,
    relaunch_failed,
)
from .store import JobChange, JobStore

T = TypeVar("T")

_PENDING = frozenset({JobState.PENDING})
_LAUNCHING = frozenset({JobState.LAUNCHING})
_RUNNING = frozenset({JobState.RUNNING})
_STOPPING = frozenset({JobState.STOPPING})
# The states in which a job's work is ours to stop when its driver fails.
_DRIVEN = frozenset({JobState.PENDING, JobState.LAUNCHING, JobState.RUNNING})


class JobDriver:
    """Drives every active job of `store` on its backend (id → enabled backend)."""

    def __init__(
        self,
        store: JobStore,
        backends: Mapping[str, Backend],
        options: DriverOptions,
        log: Logger,
        budget: SpendingCap | None = None,
    ) -> None:
        self.store = store
        self.backends = backends
        self.options = options
        self.log = log
        # The spending cap a relaunch after an interruption is checked against (None: none).
        self.budget = budget
        self.tasks = DriverTasks(options, log)
        # Backends report their jobs' phases here: one store write per change (`phases.py`).
        self.phases = PhaseRecorder(store, log)
        for backend in backends.values():
            backend.phases = self.phases
            backend.save_job = store.update  # e.g. the S3 mode's transfer progress
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._stoppers: dict[str, asyncio.Task[None]] = {}
        # Job id → set once no launch is (or can be) in flight for that job.
        self._launch_gates: dict[str, asyncio.Event] = {}

    # -- what the service calls ----------------------------------------------------------------

    async def submit(self, job: Job) -> None:
        """Persist a new job as pending and start driving it (returns at once)."""
        await self.store.insert(job)
        self.start(job.id)

    def resume(self, active: Iterable[Job]) -> None:
        """After a server start: drive again every job the store holds as active."""
        for job in active:
            self.start(job.id, resume=True)

    def start(self, job_id: str, resume: bool = False) -> None:
        """Start the job's driver task unless it has one (or the driver is closed)."""
        if self.tasks.closed or job_id in self._drivers:
            return
        task = self.spawn(self._run(job_id, resume), f"awsjobs-driver-{job_id}")
        self._drivers[job_id] = task
        task.add_done_callback(lambda _: self._drivers.pop(job_id, None))

    async def stop(self, job_id: str, reason: str = "stop requested") -> Job:
        """Ask a job to stop; returns at once with the job `stopping` (or as it is if it has
        already finished). Idempotent. `reason` is recorded with the move to `stopping`."""
        job = await self.store.get(job_id)
        if job.state.is_terminal:
            return job
        if job.state is JobState.PENDING and job_id not in self._launch_gates:
            # Nothing was launched and nothing is launching: no backend call needed.
            stopped = await self._move(
                job_id,
                JobState.STOPPED,
                "stopped before it was launched",
                _PENDING,
                stop_requested=True,
            )
            if stopped is not None:
                return stopped
            job = await self.store.get(job_id)
        if job.state is not JobState.STOPPING and job.state.is_active:
            stopping = await self._move(
                job_id, JobState.STOPPING, reason, ACTIVE_STATES, stop_requested=True
            )
            job = stopping or await self.store.get(job_id)
        if job.state is JobState.STOPPING:
            backend = self.backends.get(job.backend)
            if backend is not None:
                backend.request_stop(job_id)  # an in-flight launch gives up early
            self._ensure_stopper(job_id)
        return job

    # -- stopping ------------------------------------------------------------------------------

    def _ensure_stopper(self, job_id: str) -> None:
        if self.tasks.closed or job_id in self._stoppers:
            return
        task = self.spawn(self._run_stopper(job_id), f"awsjobs-stop-{job_id}")
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
                self.start(job_id)  # fails it: the backend is not enabled
                return
            await self._stop_confirmed(job, backend)
            await self._move(
                job_id, JobState.STOPPED, "stopped", _STOPPING, durable=True, error=None
            )
        except asyncio.CancelledError:
            raise  # server stopping: the job stays stopping and the stop resumes on restart
        except Exception:
            self.log.exception("awsjobs: the stop of job %s failed", job_id)

    async def _stop_confirmed(self, job: Job, backend: Backend) -> None:
        """`backend.stop` until it confirms, with backoff; the job keeps its state meanwhile."""
        backoff = Backoff(self.options)
        while True:
            try:
                await backend.stop(job)
                return
            except Exception as err:
                message = f"stop not confirmed yet, retrying: {describe_error(err)}"
                self.log.warning("awsjobs: job %s: %s", job.id, message)
                with contextlib.suppress(Exception):
                    await self.store.update(job.id, error=message)
            await backoff.sleep()
            job = await self.store.get(job.id)

    # -- driving -------------------------------------------------------------------------------

    async def _run(self, job_id: str, resume: bool) -> None:
        try:
            await self._drive(job_id, resume)
        except asyncio.CancelledError:
            raise  # server stopping: the job stays as it is and is resumed on the next start
        except AWSJobsError as err:  # a backend refusing: its message is for the user
            self.log.warning("awsjobs: job %s failed: %s", job_id, err)
            await self._fail(job_id, describe_error(err))
        except Exception as err:
            self.log.exception("awsjobs: the driver of job %s failed", job_id)
            await self._fail(job_id, f"internal error: {describe_error(err)}")

    async def _drive(self, job_id: str, resume: bool) -> None:
        job = await self.store.get(job_id)
        backend = self.backends.get(job.backend)
        if backend is None:
            message = (
                f"its backend {job.backend!r} is not enabled on this server "
                "(c.AWSJobs.backends); it can no longer be watched or stopped from here"
            )
            await self._move(job_id, JobState.FAILED, message, ACTIVE_STATES, error=message)
            return
        if job.state is JobState.STOPPING:
            self._ensure_stopper(job_id)
            return
        running: Job | None = job
        if job.state is JobState.PENDING:
            running = await self._launch(job, backend)
        elif resume:
            running = await self._reattach(job, backend)
        while running is not None and running.state is JobState.RUNNING:
            running = await self._watch(running, backend)  # a relaunched job: watched again

    async def _launch(self, job: Job, backend: Backend) -> Job | None:
        """pending → launching → (launch) → running. None if the job went elsewhere."""

        def first_attempt(fresh: Job) -> None:
            fresh.open_attempt(fresh.spot)

        reason = f"launching on {backend.label or backend.id}"
        return await self._start_attempt(job.id, backend, _PENDING, reason, first_attempt)

    async def _start_attempt(
        self,
        job_id: str,
        backend: Backend,
        expected: frozenset[JobState],
        reason: str,
        change: JobChange,
    ) -> Job | None:
        """→ launching (with `change`: the attempt opened) → (launch) → running. None if the
        job went elsewhere (a Stop: its stopper finishes it) or the launch failed."""
        gate = asyncio.Event()
        self._launch_gates[job_id] = gate

        def open_gate(_: object = None) -> None:
            gate.set()
            if self._launch_gates.get(job_id) is gate:
                del self._launch_gates[job_id]

        try:
            launching = await self._move(
                job_id, JobState.LAUNCHING, reason, expected, change=change
            )
        except BaseException:
            open_gate()
            raise
        if launching is None:
            open_gate()
            return None  # stopped before it could launch
        error = await self._run_launch(launching, backend, open_gate)
        if error:
            # Whatever the launch had started is stopped (nothing leaks); after a Stop, the
            # stopper finishes the job instead. A relaunch that fails: the run stays interrupted.
            if launching.attempt_number > 1:
                await self._fail(job_id, relaunch_failed(launching, error), interrupted=True)
            else:
                await self._fail(job_id, error, reason=f"launch failed: {error}")
            return None
        fresh = await self.store.get(job_id)
        started_at = fresh.started_at or now()

        def started(job: Job) -> None:
            job.fill_attempt()

        return await self._move(
            job_id,
            JobState.RUNNING,
            "started",
            _LAUNCHING,
            durable=True,
            started_at=started_at,
            change=started,
        )  # None: stopped meanwhile, the stopper takes over

    async def _run_launch(
        self, job: Job, backend: Backend, on_done: Callable[[object], None]
    ) -> str:
        """Run `backend.launch` as a task of its own, shielded: cancelling the driver (the
        server stopping) never cuts a launch half way. The error text, or "" on success. The
        backend sees the current attempt's market as the job's `spot`."""
        relaunch = job.attempt_number > 1

        async def record(handle: Mapping[str, Any] | None = None, **fields: Any) -> None:
            change = None
            if relaunch and "started_at" in fields:
                # The job's start stays its first attempt's (its lifetime and elapsed time
                # count from there); this attempt's start is the attempt's.
                attempt_start = fields.pop("started_at")

                def change(fresh: Job) -> None:
                    fresh.fill_attempt(started_at=attempt_start)

            await self.store.update(job.id, handle=handle, change=change, **fields)

        if job.attempts:
            job = dataclasses.replace(job, spot=job.attempts[-1].spot)
        launch = self.tasks.spawn_launch(backend.launch(job, record), f"awsjobs-launch-{job.id}")
        launch.add_done_callback(on_done)
        try:
            await asyncio.shield(launch)
        except asyncio.CancelledError:
            if not launch.done() or self.tasks.closed:
                # We are cancelled (the launch goes on: close() lets it finish), or close()
                # cut the launch: the job stays launching and is resumed on the next start.
                raise
            return "the launch was cancelled"
        except Exception as err:
            return describe_error(err)
        return ""

    async def _reattach(self, job: Job, backend: Backend) -> Job | None:
        """After a restart: re-attach a launching/running job. None once it is finished."""
        backoff = Backoff(self.options)
        while True:
            known = dict(job.handle)
            try:
                outcome = await backend.reattach(job)
                break
            except BackendError as err:
                self.log.warning("awsjobs: cannot re-attach job %s yet: %s", job.id, err)
                await backoff.sleep()
                job = await self.store.get(job.id)
        if job.handle != known:
            # The backend found the work by other means (no handle had been recorded before
            # the server stopped): saved first, so Stop and the next restart find it too.
            await self.store.update(job.id, handle=job.handle)
        if job.state is JobState.LAUNCHING:
            # The launch had gone far enough to be found again: it is running (or has run).
            running = await self._move(
                job.id,
                JobState.RUNNING,
                "found running after a server restart",
                _LAUNCHING,
                started_at=job.started_at or now(),
            )
            if running is None:
                return None  # a Stop came first: its stopper finishes the job
            job = running
        if outcome is None:
            return job
        return await self._record_outcome(
            job.id, outcome, "ended while the server was down", backend
        )

    async def _watch(self, job: Job, backend: Backend) -> Job | None:
        """Race `backend.wait` against the lifetime deadline, then record how it ended. A
        `BackendError` from `wait` (AWS unreachable for a while) is retried with backoff.
        The job relaunched after an interruption (running again), else None."""
        deadline = job.deadline(unit_seconds=self.options.lifetime_unit_seconds)
        backoff = Backoff(self.options)
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
                await self._time_out(job, backend)
                return None
            try:
                outcome = waiter.result()
            except BackendError as err:
                self.log.warning("awsjobs: waiting on job %s failed, retrying: %s", job.id, err)
                await backoff.sleep(at_most=max(0.0, deadline - now()))
                job = await self.store.get(job.id)
                if job.state is not JobState.RUNNING:
                    return None  # a Stop is under way: its stopper finishes the job
                continue
            return await self._record_outcome(job.id, outcome, backend=backend)

    async def _time_out(self, job: Job, backend: Backend) -> None:
        """The lifetime ran out: stop the work (confirmed), then record `timed_out`."""
        current = await self.store.get(job.id)
        if current.state is not JobState.RUNNING:
            return  # a Stop is under way: its stopper finishes the job
        await self._stop_confirmed(current, backend)
        minutes = job.max_lifetime_minutes
        message = f"reached its max lifetime of {minutes} minute{'s' if minutes != 1 else ''}"
        await self._move(job.id, JobState.TIMED_OUT, message, _RUNNING, durable=True, error=message)

    async def _record_outcome(
        self, job_id: str, outcome: Outcome, context: str = "", backend: Backend | None = None
    ) -> Job | None:
        """How the work ended, from `running` only (a Stop that won the race finishes it).
        An interruption with an attempt left relaunches the job instead: the job running
        again is returned (None otherwise)."""
        if outcome.state is JobState.INTERRUPTED and backend is not None:
            job = await self.store.get(job_id)
            plan = plan_relaunch(job, outcome)
            if plan is not None:
                refusal = await self.budget.relaunch_refusal(job) if self.budget else None
                if refusal is None:
                    return await self._relaunch(job, plan, outcome, backend)
                outcome = refused_relaunch(outcome, refusal)
            else:
                outcome = final_interruption(job, outcome)
        reason = outcome.error or ("finished" if outcome.state is JobState.SUCCEEDED else "")
        if context:
            reason = f"{reason} ({context})" if reason else context
        await self._move(
            job_id,
            outcome.state,
            reason or outcome.state.value,
            _RUNNING,
            durable=True,
            exit_code=outcome.exit_code,
            error=outcome.error,
        )
        return None

    async def _relaunch(
        self, job: Job, plan: Relaunch, outcome: Outcome, backend: Backend
    ) -> Job | None:
        """running → launching → running on a new instance, the log marked first. The old
        instance is gone (the backend confirms it before it reports the interruption)."""
        self.log.info("awsjobs: job %s interrupted; %s", job.id, plan.note)
        await mark_log(backend.root_dir, job, plan.log_line)
        reason = f"{plan.note}: {outcome.error or 'spot interrupted'}"
        return await self._start_attempt(job.id, backend, _RUNNING, reason, plan.begin())

    async def _fail(
        self, job_id: str, error: str, reason: str | None = None, interrupted: bool = False
    ) -> None:
        """Mark a job failed (`interrupted`: a relaunch that failed) after an error, stopping
        whatever work it has (best effort, once) so nothing keeps running unwatched. A stopping
        job is left to its stopper. While the store cannot be read or written, retried: a job
        is never left launching for ever."""
        backoff = Backoff(self.options)
        while True:
            try:
                await self._fail_once(job_id, error, reason, interrupted)
                return
            except StoreUnavailable as err:
                self.log.warning("awsjobs: job %s: cannot record its failure yet: %s", job_id, err)
            except Exception:
                self.log.exception("awsjobs: could not mark job %s failed", job_id)
                return
            await backoff.sleep()

    async def _fail_once(
        self, job_id: str, error: str, reason: str | None, interrupted: bool
    ) -> None:
        job = await self.store.get(job_id)
        if job.state not in _DRIVEN:
            return
        backend = self.backends.get(job.backend)
        if backend is not None and job.handle:
            try:
                await backend.stop(job)
            except Exception as err:
                self.log.warning("awsjobs: could not stop failed job %s: %s", job_id, err)
                error += f" (its work may still be running: {describe_error(err)})"
        target = JobState.INTERRUPTED if interrupted else JobState.FAILED
        closing = close_unlaunched_attempt if interrupted else None
        await self._move(
            job_id, target, reason or error, {job.state}, durable=True, error=error, change=closing
        )

    async def _move(
        self,
        job_id: str,
        target: JobState,
        reason: str,
        expected: Iterable[JobState],
        durable: bool = False,
        **fields: Any,
    ) -> Job | None:
        """The one way the driver changes a job's state (`driver_support.move`)."""
        return await move(
            self.store, self.options, self.log, job_id, target, reason, expected, durable, **fields
        )

    # -- the driver's own tasks ----------------------------------------------------------------

    async def close(self) -> None:
        """Let in-flight launches finish (a while), then cancel and await every task. Never
        stops a job: jobs outlive the server and are resumed on the next start."""
        await self.tasks.close()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """A task that `close` cancels and awaits."""
        return self.tasks.spawn(coro, name)
