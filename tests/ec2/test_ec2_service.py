"""The EC2 backend driven by the real JobService and store, against moto: the wiring of
launch → wait → outcome, Stop, and a server restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from ec2_helpers import launch_tagged

from awsjobs_lab.backends.ec2 import EC2Backend
from awsjobs_lab.errors import InvalidRequest
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
    assert [t.state.value for t in done.moves] == ["pending", "launching", "running", "succeeded"]
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


async def _service_with(
    make_backend: Callable[..., EC2Backend], root: Path, tmp_path: Path, **traits: Any
) -> JobService:
    service = JobService(
        JobStore(tmp_path / "jobs.sqlite"),
        {"ec2": make_backend(**traits)},
        root,
        ServiceOptions(
            defaults=LaunchDefaults(backend="ec2"), retry_seconds=0.01, retry_max_seconds=0.05
        ),
    )
    await service.start()
    return service


async def test_stop_while_the_worker_is_not_yet_reachable_ends_promptly(
    make_backend, root, tmp_path, faults, aws
):
    # The SSM agent never registers, and the launch would wait an hour for it: Stop must not
    # wait for that. The service tells the backend (request_stop) before it waits for the
    # launch, so the launch gives up, terminates its instance, and the job reads stopped.
    faults.always("ssm", "SendCommand", "InvalidInstanceId")
    (root / "work" / "hello.py").write_text("print('hello')\n")
    service = await _service_with(make_backend, root, tmp_path, launch_timeout_seconds=3600.0)
    try:
        job = await service.create_job({"path": "work/hello.py", "backend": "ec2"})

        async def instance_recorded() -> Job | None:
            current = await service.get_job(job.id)
            return current if current.handle.get("instance_id") else None

        launching = await _until(instance_recorded, "the instance id to be recorded")
        assert launching.state is JobState.LAUNCHING
        assert (await service.stop_job(job.id)).state is JobState.STOPPING
        stopped = await _in_state(service, job.id, JobState.STOPPED)
        assert stopped.state is JobState.STOPPED
        iid = launching.handle["instance_id"]
        assert await _instance_state(aws, iid) in ("shutting-down", "terminated")
    finally:
        await service.close()


async def test_unknown_instance_type_is_refused_before_the_job_exists(make_backend, root, tmp_path):
    (root / "work" / "hello.py").write_text("print('hello')\n")
    service = await _service_with(make_backend, root, tmp_path)
    try:
        with pytest.raises(InvalidRequest, match=r"instance_type|instance type"):
            await service.create_job(
                {"path": "work/hello.py", "backend": "ec2", "instance_type": "zz9.huge"}
            )
        jobs, _ = await service.list_jobs()
        assert jobs == []
    finally:
        await service.close()


async def test_orphans_are_found_on_start_and_marked_in_the_instance_list(
    make_backend, root, tmp_path, aws
):
    # An instance of ours whose job the store does not know (say, launched just before a
    # crash that lost the job): found by the reconcile that start() runs in the background.
    tags = {"awsjobs:managed": "true", "awsjobs:owner": "tester", "awsjobs:job-id": "0" * 16}
    iid = await launch_tagged(await aws("ec2"), tags)
    service = await _service_with(make_backend, root, tmp_path)
    try:

        async def reconciled() -> list[dict[str, Any]] | None:
            return service.orphans.get("ec2")

        orphans = await _until(reconciled, "the start-up reconcile")
        assert [o["instance_id"] for o in orphans] == [iid]
        rows = await service.list_instances()
        assert [(r["instance_id"], r["orphan"]) for r in rows] == [(iid, True)]
        assert await _instance_state(aws, iid) == "running"  # terminate_orphans is off
    finally:
        await service.close()
