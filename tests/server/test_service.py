"""JobService: the driver, Stop in every active state, retries, deadlines, reconciliation."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from awsjobs_lab.backends.base import Backend, RecordHandle
from awsjobs_lab.backends.local import LocalBackend, group_members
from awsjobs_lab.errors import BackendError, BackendNotConfigured, Conflict, InvalidRequest
from awsjobs_lab.models import Job, JobState, Outcome
from awsjobs_lab.requests import LaunchDefaults
from awsjobs_lab.service import JobService, ServiceOptions
from awsjobs_lab.store import JobStore
from tests.server.helpers import kill_leftovers, make_job, poll, stored_jobs

S = JobState


class FakeBackend(Backend):
    """Launches block until released; the work ends when the test (or a stop) says so."""

    id: ClassVar[str] = "fake"
    label: ClassVar[str] = "Fake"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.release_launch = asyncio.Event()
        self.release_launch.set()
        self.launch_error: Exception | None = None
        self.wait_error: Exception | None = None
        self.stop_failures = 0
        self.calls: list[tuple[str, str]] = []
        self.stopped_handles: list[dict[str, Any]] = []
        self.ends: dict[str, asyncio.Future[Outcome]] = {}
        self.reattach_results: dict[str, Outcome | None] = {}

    def end(self, job_id: str, outcome: Outcome) -> None:
        future = self.ends.setdefault(job_id, asyncio.get_running_loop().create_future())
        if not future.done():
            future.set_result(outcome)

    async def launch(self, job: Job, record: RecordHandle) -> None:
        self.calls.append(("launch", job.id))
        await record({"token": job.id})
        await self.release_launch.wait()
        if self.launch_error:
            raise self.launch_error
        await record({"launched": True}, instance_type="fake.large")

    async def wait(self, job: Job) -> Outcome:
        self.calls.append(("wait", job.id))
        if self.wait_error:
            raise self.wait_error
        future = self.ends.setdefault(job.id, asyncio.get_running_loop().create_future())
        return await asyncio.shield(future)

    async def stop(self, job: Job) -> None:
        self.calls.append(("stop", job.id))
        if self.stop_failures:
            self.stop_failures -= 1
            raise BackendError("the API said no")
        self.stopped_handles.append(dict(job.handle))
        self.end(job.id, Outcome(S.FAILED, exit_code=-15, error="killed by SIGTERM"))

    async def reattach(self, job: Job) -> Outcome | None:
        self.calls.append(("reattach", job.id))
        return self.reattach_results.get(job.id)


Factory = Callable[..., Any]


@pytest.fixture
async def make_service(tmp_path: Path) -> AsyncIterator[Factory]:
    made: list[JobService] = []
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "x.py").write_text("print('x')\n")

    async def factory(backends: dict[str, Backend] | None = None, **options: Any) -> JobService:
        if backends is None:
            backends = {"fake": FakeBackend()}
        for backend in backends.values():
            backend.root_dir = str(tmp_path / "root")
        opts = {"retry_seconds": 0.01, "retry_max_seconds": 0.05, **options}
        service = JobService(
            JobStore(tmp_path / "jobs.sqlite"),
            backends,
            tmp_path / "root",
            ServiceOptions(defaults=LaunchDefaults(backend=next(iter(backends))), **opts),
        )
        await service.start()
        made.append(service)
        return service

    yield factory
    for service in made:
        await service.close()
    # Safety net: a failed test must not leave its processes behind.
    kill_leftovers(await stored_jobs(tmp_path / "jobs.sqlite", active_only=True))


async def state_of(service: JobService, job_id: str, *states: JobState) -> Job:
    async def check() -> Job | None:
        job = await service.get_job(job_id)
        return job if job.state in states else None

    return await poll(check, f"job {job_id} to be {'/'.join(s.value for s in states)}")


def states(job: Job) -> list[str]:
    return [t.state.value for t in job.history]


async def test_happy_path(make_service: Factory) -> None:
    service = await make_service()
    fake: FakeBackend = service.backends["fake"]
    job = await service.create_job({"path": "x.py"})
    assert job.state is S.PENDING
    await state_of(service, job.id, S.RUNNING)
    fake.end(job.id, Outcome(S.SUCCEEDED, exit_code=0))
    done = await state_of(service, job.id, S.SUCCEEDED)
    assert states(done) == ["pending", "launching", "running", "succeeded"]
    assert done.exit_code == 0 and done.started_at and done.finished_at
    assert done.handle == {"token": job.id, "launched": True}
    assert done.instance_type == "fake.large"


async def test_validation_errors_surface(make_service: Factory) -> None:
    service = await make_service()
    with pytest.raises(InvalidRequest, match="path"):
        await service.create_job({"path": "../x.py"})
    with pytest.raises(InvalidRequest, match="state"):
        await service.list_jobs(["nope"])


async def test_stop_while_launching_waits_for_the_launch(make_service: Factory) -> None:
    service = await make_service()
    fake: FakeBackend = service.backends["fake"]
    fake.release_launch.clear()
    job = await service.create_job({"path": "x.py"})
    await state_of(service, job.id, S.LAUNCHING)
    stopping = await service.stop_job(job.id)
    assert stopping.state is S.STOPPING and stopping.stop_requested
    await asyncio.sleep(0.1)
    assert ("stop", job.id) not in fake.calls  # never cut a launch half way
    assert (await service.get_job(job.id)).state is S.STOPPING
    fake.release_launch.set()
    done = await state_of(service, job.id, S.STOPPED)
    # The stop saw everything the launch recorded: nothing leaked.
    assert fake.stopped_handles == [{"token": job.id, "launched": True}]
    assert states(done) == ["pending", "launching", "stopping", "stopped"]


async def test_stop_while_launching_and_the_launch_fails(make_service: Factory) -> None:
    service = await make_service()
    fake: FakeBackend = service.backends["fake"]
    fake.release_launch.clear()
    fake.launch_error = BackendError("no capacity")
    job = await service.create_job({"path": "x.py"})
    await state_of(service, job.id, S.LAUNCHING)
    await service.stop_job(job.id)
    fake.release_launch.set()
    await state_of(service, job.id, S.STOPPED)
    assert ("stop", job.id) in fake.calls


async def test_stop_pending_needs_no_backend(make_service: Factory) -> None:
    service = await make_service()
    fake: FakeBackend = service.backends["fake"]
    job = make_job(backend="fake")
    await service.store.insert(job)  # pending, with no driver yet
    stopped = await service.stop_job(job.id)
    assert stopped.state is S.STOPPED and stopped.stop_requested
    assert fake.calls == []


async def test_stop_running_retries_until_confirmed(make_service: Factory) -> None:
    service = await make_service()
    fake: FakeBackend = service.backends["fake"]
    job = await service.create_job({"path": "x.py"})
    await state_of(service, job.id, S.RUNNING)
    fake.stop_failures = 3
    assert (await service.stop_job(job.id)).state is S.STOPPING
    assert (await service.stop_job(job.id)).state is S.STOPPING  # idempotent
    done = await state_of(service, job.id, S.STOPPED)
    assert fake.calls.count(("stop", job.id)) == 4
    assert done.error is None  # the retry note is cleared once the stop is confirmed
    assert states(done) == ["pending", "launching", "running", "stopping", "stopped"]
    assert (await service.stop_job(job.id)).state is S.STOPPED  # a finished job, as it is


async def test_stop_failing_keeps_the_job_stopping(make_service: Factory) -> None:
    service = await make_service()
    fake: FakeBackend = service.backends["fake"]
    job = await service.create_job({"path": "x.py"})
    await state_of(service, job.id, S.RUNNING)
    fake.stop_failures = 10**6

    await service.stop_job(job.id)

    async def retried() -> bool:
        return fake.calls.count(("stop", job.id)) >= 3

    await poll(retried, "stop retries")
    stuck = await service.get_job(job.id)
    assert stuck.state is S.STOPPING
    assert stuck.error and "the API said no" in stuck.error


async def test_outcome_racing_a_stop_ends_stopped(make_service: Factory) -> None:
    service = await make_service()
    fake: FakeBackend = service.backends["fake"]
    job = await service.create_job({"path": "x.py"})
    await state_of(service, job.id, S.RUNNING)
    fake.end(job.id, Outcome(S.FAILED, exit_code=1, error="exited with code 1"))
    await service.stop_job(job.id)
    final = await state_of(service, job.id, S.STOPPED, S.FAILED)
    # Either order is legal; never an illegal move and never left active.
    assert final.state in (S.STOPPED, S.FAILED)


async def test_launch_failure(make_service: Factory) -> None:
    service = await make_service()
    fake: FakeBackend = service.backends["fake"]
    fake.launch_error = BackendError("InsufficientInstanceCapacity")
    job = await service.create_job({"path": "x.py"})
    failed = await state_of(service, job.id, S.FAILED)
    assert failed.error == "InsufficientInstanceCapacity"
    assert failed.history[-1].reason == "launch failed: InsufficientInstanceCapacity"
    assert states(failed) == ["pending", "launching", "failed"]
    # What the launch had recorded before failing was stopped: nothing leaks.
    assert fake.stopped_handles == [{"token": job.id}]


async def test_driver_exception_fails_the_job_and_stops_its_work(make_service: Factory) -> None:
    service = await make_service()
    fake: FakeBackend = service.backends["fake"]
    fake.wait_error = RuntimeError("boom")
    job = await service.create_job({"path": "x.py"})
    failed = await state_of(service, job.id, S.FAILED)
    assert failed.error == "internal error: boom"
    assert ("stop", job.id) in fake.calls


async def test_wait_errors_from_the_backend_are_retried(make_service: Factory) -> None:
    service = await make_service()
    fake: FakeBackend = service.backends["fake"]
    fake.wait_error = BackendError("throttled")
    job = await service.create_job({"path": "x.py"})

    async def retried() -> bool:
        return fake.calls.count(("wait", job.id)) >= 3

    await poll(retried, "wait to be retried")
    assert (await service.get_job(job.id)).state is S.RUNNING
    fake.wait_error = None
    fake.end(job.id, Outcome(S.SUCCEEDED, exit_code=0))
    await state_of(service, job.id, S.SUCCEEDED)


async def test_a_backend_refusal_is_reported_as_is(make_service: Factory) -> None:
    service = await make_service()
    fake: FakeBackend = service.backends["fake"]
    fake.wait_error = BackendNotConfigured("The Fake backend is not configured any more")
    job = await service.create_job({"path": "x.py"})
    failed = await state_of(service, job.id, S.FAILED)
    assert failed.error == "The Fake backend is not configured any more"


async def test_lifetime_deadline_times_out(make_service: Factory) -> None:
    service = await make_service(lifetime_unit_seconds=0.2)
    fake: FakeBackend = service.backends["fake"]
    job = await service.create_job({"path": "x.py", "max_lifetime_minutes": 1})
    done = await state_of(service, job.id, S.TIMED_OUT)
    assert ("stop", job.id) in fake.calls
    assert done.error == "reached its max lifetime of 1 minute"
    assert states(done) == ["pending", "launching", "running", "timed_out"]


async def test_delete(make_service: Factory) -> None:
    service = await make_service()
    fake: FakeBackend = service.backends["fake"]
    job = await service.create_job({"path": "x.py"})
    await state_of(service, job.id, S.RUNNING)
    with pytest.raises(Conflict):
        await service.delete_job(job.id)
    fake.end(job.id, Outcome(S.SUCCEEDED, exit_code=0))
    await state_of(service, job.id, S.SUCCEEDED)
    await service.delete_job(job.id)
    assert (await service.list_jobs())[0] == []


async def test_close_never_stops_jobs_and_waits_for_launches(make_service: Factory) -> None:
    service = await make_service()
    fake: FakeBackend = service.backends["fake"]
    fake.release_launch.clear()
    job = await service.create_job({"path": "x.py"})
    await state_of(service, job.id, S.LAUNCHING)
    closing = asyncio.ensure_future(service.close())
    await asyncio.sleep(0.1)
    assert not closing.done()  # the launch in flight is let finish
    fake.release_launch.set()
    await closing
    assert ("stop", job.id) not in fake.calls
    store = JobStore(service.store.path)
    await store.open()
    left = await store.get(job.id)
    await store.close()
    assert left.state in (S.LAUNCHING, S.RUNNING) and left.handle.get("launched")


async def test_reconcile_after_restart(make_service: Factory, tmp_path: Path) -> None:
    first = await make_service()
    store = first.store
    alive = make_job(backend="fake", state=S.RUNNING, started_at=1.0e10)
    dead = make_job(backend="fake", state=S.RUNNING)
    booting = make_job(backend="fake", state=S.LAUNCHING)
    dying = make_job(backend="fake", state=S.STOPPING, handle={"token": "t"})
    waiting = make_job(backend="fake")
    orphan = make_job(backend="gone", state=S.RUNNING)
    for job in (alive, dead, booting, dying, waiting, orphan):
        await store.insert(job)
    await first.close()

    fake = FakeBackend()
    fake.reattach_results[dead.id] = Outcome(S.FAILED, exit_code=2, error="exited with code 2")
    second = await make_service({"fake": fake})

    failed = await state_of(second, dead.id, S.FAILED)
    assert failed.exit_code == 2 and "while the server was down" in failed.history[-1].reason
    assert (await state_of(second, dying.id, S.STOPPED)).state is S.STOPPED
    assert fake.stopped_handles and fake.stopped_handles[0] == {"token": "t"}
    gone = await state_of(second, orphan.id, S.FAILED)
    assert "'gone' is not enabled" in (gone.error or "")
    assert (await state_of(second, booting.id, S.RUNNING)).state is S.RUNNING
    await state_of(second, waiting.id, S.RUNNING)  # a pending job is launched now
    # The live one is watched again: its end is recorded.
    await state_of(second, alive.id, S.RUNNING)

    async def waited() -> bool:
        return ("wait", alive.id) in fake.calls

    await poll(waited, "the re-attached job to be waited on")
    fake.end(alive.id, Outcome(S.SUCCEEDED, exit_code=0))
    await state_of(second, alive.id, S.SUCCEEDED)


class SweepingBackend(FakeBackend):
    """Records the active jobs each orphan sweep was given."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.swept: list[list[str]] = []

    async def reconcile(self, active_jobs: list[Job]) -> dict[str, list[dict[str, Any]]]:
        self.swept.append(sorted(job.id for job in active_jobs))
        return {"orphans": [{"instance_id": "i-0123456789abcdef0"}]}


async def test_the_orphan_sweep_waits_then_counts_jobs_submitted_meanwhile(
    make_service: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = asyncio.Event()
    delays: list[float] = []

    async def gated(self: JobService) -> None:
        delays.append(self.options.orphan_sweep_delay_seconds)
        await gate.wait()

    monkeypatch.setattr(JobService, "_wait_before_orphan_sweep", gated)
    backend = SweepingBackend()
    service = await make_service({"fake": backend})

    async def waiting() -> bool:
        return bool(delays)

    await poll(waiting, "the sweep to wait")
    assert delays == [ServiceOptions().orphan_sweep_delay_seconds] and backend.swept == []
    job = await service.create_job({"path": "x.py"})  # submitted while the sweep waits
    gate.set()

    async def swept() -> bool:
        return bool(backend.swept)

    await poll(swept, "the sweep")
    assert backend.swept == [[job.id]]  # its work is not an orphan
    assert service.orphans["fake"] == [{"instance_id": "i-0123456789abcdef0"}]


# -- the same, with real processes ------------------------------------------------------------

LONG = "import time\nprint('started', flush=True)\ntime.sleep(600)\n"


async def test_local_jobs_survive_a_restart(make_service: Factory, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "long.py").write_text(LONG)
    first = await make_service({"local": LocalBackend(stop_grace_seconds=3.0)})
    keep = await first.create_job({"path": "long.py"})
    lose = await first.create_job({"path": "long.py"})
    halt = await first.create_job({"path": "long.py"})
    jobs = {j.id: await state_of(first, j.id, S.RUNNING) for j in (keep, lose, halt)}
    for job in jobs.values():

        async def printed(job: Job = job) -> bool:
            return "started" in (root / job.log_path).read_text()

        await poll(printed, "the job to start")
    await first.close()  # the server stops: the jobs go on
    pgids = {job_id: job.handle["pgid"] for job_id, job in jobs.items()}
    assert all(group_members(pgid) for pgid in pgids.values())

    # While the server is down: one job dies, one is mid-stop.
    os.killpg(pgids[lose.id], signal.SIGKILL)

    async def lost() -> bool:
        return not group_members(pgids[lose.id])

    await poll(lost, "the killed job to be gone")
    store = JobStore(first.store.path)
    await store.open()
    await store.transition(halt.id, S.STOPPING, "stop requested", stop_requested=True)
    await store.close()

    second = await make_service({"local": LocalBackend(stop_grace_seconds=3.0)})
    dead = await state_of(second, lose.id, S.FAILED)
    assert dead.error == "the process ended while the server was down, without an exit code"
    await state_of(second, halt.id, S.STOPPED)
    assert not group_members(pgids[halt.id])
    assert (await second.get_job(keep.id)).state is S.RUNNING
    await second.stop_job(keep.id)
    await state_of(second, keep.id, S.STOPPED)
    assert not group_members(pgids[keep.id])
