"""The EC2 backend driven by the real JobService and store, against moto: the wiring of
launch → wait → outcome, Stop, and a server restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.backends.ec2 import EC2Backend
from awsjobs_lab.models import Job, JobState
from awsjobs_lab.requests import LaunchDefaults
from awsjobs_lab.service import JobService, ServiceOptions
from awsjobs_lab.store import JobStore


async def _until(check: Callable[[], Awaitable[Any]], what: str, tries: int = 2000) -> Any:
    """Poll without a timed assertion: a generous number of event-loop turns."""
    for _ in range(tries):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
async def make_service(
    make_backend: Callable[..., EC2Backend], root: Path, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[JobService]]]:
    made: list[JobService] = []
    (root / "work" / "hello.py").write_text("print('hello')\n")

    async def factory() -> JobService:
        backend = make_backend()
        service = JobService(
            JobStore(tmp_path / "jobs.sqlite"),
            {"ec2": backend},
            root,
            ServiceOptions(
                defaults=LaunchDefaults(backend="ec2"), retry_seconds=0.01, retry_max_seconds=0.05
            ),
        )
        await service.start()
        made.append(service)
        return service

    yield factory
    for service in made:
        await service.close()


async def _in_state(service: JobService, job_id: str, *states: JobState) -> Job:
    async def check() -> Job | None:
        job = await service.get_job(job_id)
        return job if job.state in states else None

    result: Job = await _until(check, f"job {job_id} in {states}")
    return result


async def _finish(service: JobService, job: Job, code: int, *states: JobState) -> Job:
    backend: EC2Backend = service.backends["ec2"]  # type: ignore[assignment]
    path = backend.job_state_dir(job) / "exit_code"
    path.write_text(f"{code}\n")

    async def check() -> Job | None:
        await backend.monitor.run_cycle()
        current = await service.get_job(job.id)
        return current if current.state in states else None

    result: Job = await _until(check, f"job {job.id} to finish")
    return result


async def _instance_state(aws: Any, iid: str) -> str:
    ec2 = await aws("ec2")
    resp = await ec2.describe_instances(InstanceIds=[iid])
    return str(resp["Reservations"][0]["Instances"][0]["State"]["Name"])


async def test_job_runs_to_success(make_service, aws):
    service = await make_service()
    job = await service.create_job({"path": "work/hello.py", "backend": "ec2", "cpus": 2})
    running = await _in_state(service, job.id, JobState.RUNNING)
    assert running.instance_type and running.handle["instance_id"]
    assert running.handle["command_id"]
    assert running.command == ["python3", "hello.py"]
    done = await _finish(service, running, 0, JobState.SUCCEEDED)
    assert done.exit_code == 0
    assert [t.state.value for t in done.history] == ["pending", "launching", "running", "succeeded"]
    assert await _instance_state(aws, done.handle["instance_id"]) in ("shutting-down", "terminated")


async def test_stop_through_the_service(make_service, aws):
    service = await make_service()
    job = await service.create_job({"path": "work/hello.py", "backend": "ec2"})
    running = await _in_state(service, job.id, JobState.RUNNING)
    await service.stop_job(job.id)
    stopped = await _in_state(service, job.id, JobState.STOPPED)
    assert stopped.state is JobState.STOPPED
    assert await _instance_state(aws, running.handle["instance_id"]) in (
        "shutting-down",
        "terminated",
    )


async def test_job_survives_a_server_restart(make_service, aws):
    first = await make_service()
    job = await first.create_job({"path": "work/hello.py", "backend": "ec2"})
    await _in_state(first, job.id, JobState.RUNNING)
    await first.close()

    second = await make_service()  # reattach: the instance is alive, so it is watched again
    running = await _in_state(second, job.id, JobState.RUNNING)
    done = await _finish(second, running, 5, JobState.FAILED)
    assert done.exit_code == 5 and done.error == "exited with code 5"
