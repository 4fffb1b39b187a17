"""The local backend when the server dies mid-launch: a job's process is found from what it left
in its state folder (lock, pid file), re-attached or stopped, or certain never to run; and a
store that cannot be written never leaves a job launching with its process running on."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.backends.local import LocalBackend, group_members
from awsjobs_lab.models import Job, JobState
from awsjobs_lab.requests import LaunchDefaults
from awsjobs_lab.service import JobService, ServiceOptions
from awsjobs_lab.store import JobStore
from tests.server.helpers import (
    kill_processes_of,
    make_job,
    poll,
    processes_of_job,
    stored_jobs,
)

S = JobState
LONG = "import time\nprint('started', flush=True)\ntime.sleep(600)\n"

# A server that is SIGKILLed at the KILL_AT-th handle record of a burst of launches: just
# after that job's process started, before its pid reached the store.
DYING_SERVER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from awsjobs_lab.backends.local import LocalBackend
    from awsjobs_lab.requests import LaunchDefaults
    from awsjobs_lab.service import JobService, ServiceOptions
    from awsjobs_lab.store import JobStore

    root, store_path, jobs, kill_at = Path(sys.argv[1]), Path(sys.argv[2]), *map(int, sys.argv[3:])

    class DyingStore(JobStore):
        records = 0

        async def update(self, job_id, handle=None, **fields):
            if handle and "pid" in handle:
                DyingStore.records += 1
                if DyingStore.records == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return await super().update(job_id, handle, **fields)

    async def main():
        backend = LocalBackend(warm_notebook_runner=False)
        backend.root_dir = str(root)
        options = ServiceOptions(defaults=LaunchDefaults(backend="local"))
        service = JobService(DyingStore(store_path), {"local": backend}, root, options)
        await service.start()
        for _ in range(jobs):
            await service.create_job({"path": "long.py"})
        await asyncio.sleep(600)

    asyncio.run(main())
    """
)

Factory = Callable[..., Any]


@pytest.fixture
async def make_service(tmp_path: Path) -> AsyncIterator[Factory]:
    """`await make_service(store=None)`: a service on `tmp_path/root` with a local backend;
    on teardown every process of its jobs is killed, found by the job id in their env."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "long.py").write_text(LONG)
    made: list[JobService] = []

    async def factory(store: JobStore | None = None) -> JobService:
        backend = LocalBackend(stop_grace_seconds=3.0, warm_notebook_runner=False)
        backend.root_dir = str(root)
        service = JobService(
            store or JobStore(tmp_path / "jobs.sqlite"),
            {"local": backend},
            root,
            ServiceOptions(
                defaults=LaunchDefaults(backend="local"),
                retry_seconds=0.01,
                retry_max_seconds=0.1,
            ),
        )
        await service.start()
        made.append(service)
        return service

    yield factory
    for service in made:
        await service.close()
    # Safety net, whether or not a pid was recorded.
    kill_processes_of([job.id for job in await stored_jobs(tmp_path / "jobs.sqlite")])


async def state_of(
    service: JobService, job_id: str, *states: JobState, timeout: float = 120
) -> Job:
    async def check() -> Job | None:
        job = await service.get_job(job_id)
        return job if job.state in states else None

    names = "/".join(s.value for s in states)
    return await poll(check, f"job {job_id} to be {names}", timeout)


async def no_process_left(job_id: str) -> None:
    async def gone() -> bool:
        return not processes_of_job(job_id)

    await poll(gone, f"every process of job {job_id} to end")


def start_by_hand(service: JobService, job: Job) -> subprocess.Popen[bytes]:
    """Start `job`'s wrapper as the local backend does (its state folder made, then the
    wrapper), without recording anything: what a server killed right after the start leaves
    behind, or a wrapper forked before the server died that reaches its claim only later."""
    backend: LocalBackend = service.backends["local"]  # type: ignore[assignment]
    root = Path(backend.root_dir)
    backend.exit_code_path(job).parent.mkdir(parents=True, exist_ok=True)
    env = {"AWSJOBS_JOB_ID": job.id, "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, Path(job.path).name]
    log, cwd = root / job.log_path, (root / job.path).parent
    return backend._popen(argv, backend.exit_code_path(job), log, cwd, env, "0")


# -- a real SIGKILL during a burst of launches ----------------------------------------------


async def test_a_sigkill_between_start_and_record_leaves_no_process_unwatched(
    make_service: Factory, tmp_path: Path
) -> None:
    root, store_path = tmp_path / "root", tmp_path / "jobs.sqlite"
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DYING_SERVER, str(root), str(store_path), "5", "3"
    )
    assert await asyncio.wait_for(server.wait(), 120) == -9  # killed mid-burst
    jobs = {job.id: job for job in await stored_jobs(store_path)}
    try:
        unrecorded = [i for i, job in jobs.items() if "pid" not in job.handle]

        async def started() -> dict[str, list[int]]:  # every process started has exec'd
            found = {i: processes_of_job(i) for i in unrecorded}
            return found if sum(map(bool, found.values())) >= 1 else {}

        running_unrecorded = [i for i, pids in (await poll(started, "the job")).items() if pids]
        service = await make_service()  # the restart
        for job_id in running_unrecorded:  # found again, watched, stoppable
            job = await state_of(service, job_id, S.RUNNING)
            assert set(processes_of_job(job_id)) <= set(group_members(job.handle["pgid"]))
        for job_id in jobs:
            job = await state_of(service, job_id, S.RUNNING, S.FAILED)
            if job.state is S.FAILED:  # never started: and never will
                assert job.error == "the server stopped before the job's process was started"
                assert not processes_of_job(job_id)
            else:
                await service.stop_job(job_id)
        for job_id in jobs:
            await state_of(service, job_id, S.STOPPED, S.FAILED)
            await no_process_left(job_id)
    finally:
        kill_processes_of(list(jobs))


# -- the same window, set up by hand -------------------------------------------------------


async def insert(service: JobService, state: JobState) -> Job:
    job = make_job("long.py", state=state, stop_requested=state is S.STOPPING)
    await service.store.insert(job)
    return job


async def test_a_process_without_a_recorded_pid_is_reattached(make_service: Factory) -> None:
    first = await make_service()
    job = await insert(first, S.LAUNCHING)
    proc = start_by_hand(first, job)
    await first.close()  # the server "dies" with the job launching and no pid recorded
    try:
        second = await make_service()
        running = await state_of(second, job.id, S.RUNNING)
        assert (running.handle["pid"], running.handle["pgid"]) == (proc.pid, proc.pid)
        assert "found running after a server restart" in (running.moves[-1].reason or "")
        await second.stop_job(job.id)
        await state_of(second, job.id, S.STOPPED)
        await no_process_left(job.id)
    finally:
        proc.kill()
        proc.wait()


async def test_a_stop_of_a_process_without_a_recorded_pid_kills_it(make_service: Factory) -> None:
    first = await make_service()
    job = await insert(first, S.STOPPING)
    proc = start_by_hand(first, job)
    await first.close()
    try:
        second = await make_service()
        await state_of(second, job.id, S.STOPPED)
        await no_process_left(job.id)
        assert proc.wait(timeout=30) != 0
    finally:
        proc.kill()
        proc.wait()


async def test_a_job_given_up_as_never_started_never_runs(
    make_service: Factory, tmp_path: Path
) -> None:
    first = await make_service()
    job = await insert(first, S.LAUNCHING)
    job.path = "touch.py"
    (tmp_path / "root" / "touch.py").write_text("open('ran', 'w').close()\n")
    # The server died after making the job's state folder, before starting its wrapper.
    first.backends["local"].exit_code_path(job).parent.mkdir(parents=True)
    await first.close()
    second = await make_service()
    failed = await state_of(second, job.id, S.FAILED)
    assert failed.error == "the server stopped before the job's process was started"
    # A wrapper that was started but reached its claim only now: it runs nothing.
    late = start_by_hand(second, job)
    assert late.wait(timeout=60) == 0
    assert not (tmp_path / "root" / "ran").exists()
    assert not second.backends["local"].exit_code_path(job).exists()


# -- a store that cannot be written --------------------------------------------------------


class FullDisk(JobStore):
    """After a job moves to launching, the next `failures` writes fail as on a full disk."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures_after_launch = failures
        self.failures = 0

    def _write(self, fn: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return super()._write(fn)

    async def transition(self, job_id: str, target: JobState, *args: Any, **kw: Any) -> Job:
        job = await super().transition(job_id, target, *args, **kw)
        if target is S.LAUNCHING:
            self.failures = self.failures_after_launch
        return job


async def test_a_failed_store_write_never_leaves_a_job_launching(
    make_service: Factory, tmp_path: Path
) -> None:
    service = await make_service(FullDisk(tmp_path / "jobs.sqlite", failures=3))
    job = await service.create_job({"path": "long.py"})
    try:
        failed = await state_of(service, job.id, S.FAILED, timeout=30)
        assert "database or disk is full" in (failed.error or "")
        assert "free disk space" in (failed.error or "")
        await no_process_left(job.id)  # the process started before the record is ended
    finally:
        kill_processes_of([job.id])
