"""`POST instances/stop` as the panel's Instances view uses it, on the simulated AWS: a job whose
instance is terminated this way ends `stopped` with the reason, through the driver's stop; an
orphan is terminated without touching any job; a refused request stops no job."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from ec2_helpers import launch_tagged

from awsjobs_lab.backends.ec2 import EC2Backend
from awsjobs_lab.errors import Forbidden
from awsjobs_lab.models import Job, JobState
from awsjobs_lab.requests import LaunchDefaults
from awsjobs_lab.service import TERMINATED_FROM_INSTANCES, JobService, ServiceOptions
from awsjobs_lab.store import JobStore
from tests.awssim.support import eventually, state_of

GONE = ("shutting-down", "terminated")


@pytest.fixture
async def service(
    make_backend: Callable[..., EC2Backend], root: Path, tmp_path: Path
) -> AsyncIterator[JobService]:
    (root / "work" / "hello.py").write_text("print('hello')\n")
    svc = JobService(
        JobStore(tmp_path / "jobs.sqlite"),
        {"ec2": make_backend()},
        root,
        ServiceOptions(
            defaults=LaunchDefaults(backend="ec2"), retry_seconds=0.01, retry_max_seconds=0.05
        ),
    )
    await svc.start()
    yield svc
    await svc.close()


async def _in_state(service: JobService, job_id: str, state: JobState) -> Job:
    async def check() -> Job | None:
        job = await service.get_job(job_id)
        return job if job.state is state else None

    found: Job = await eventually(check, timeout=60.0)
    return found


async def test_a_job_whose_instance_is_terminated_ends_stopped_with_the_reason(service, aws):
    job = await service.create_job({"path": "work/hello.py", "backend": "ec2"})
    running = await _in_state(service, job.id, JobState.RUNNING)
    iid = running.handle["instance_id"]
    (row,) = await service.list_instances()
    assert (row["instance_id"], row["job_id"], row["orphan"]) == (iid, job.id, False)

    assert await service.terminate_instances([iid]) == [iid]

    stopped = await _in_state(service, job.id, JobState.STOPPED)
    reasons = [(t.state, t.reason) for t in stopped.history]
    assert (JobState.STOPPING, TERMINATED_FROM_INSTANCES) in reasons
    assert stopped.stop_requested
    assert await state_of(await aws("ec2"), iid) in GONE


async def test_an_orphan_is_terminated_and_no_job_changes(service, aws):
    job = await service.create_job({"path": "work/hello.py", "backend": "ec2"})
    await _in_state(service, job.id, JobState.RUNNING)
    tags = {"awsjobs:managed": "true", "awsjobs:owner": "tester", "awsjobs:job-id": "0" * 16}
    orphan = await launch_tagged(await aws("ec2"), tags)
    rows = {r["instance_id"]: r for r in await service.list_instances()}
    assert rows[orphan]["orphan"] is True

    assert await service.terminate_instances([orphan]) == [orphan]

    assert await state_of(await aws("ec2"), orphan) in GONE
    assert (await service.get_job(job.id)).state is JobState.RUNNING


async def test_a_refused_request_stops_no_job(service, aws):
    job = await service.create_job({"path": "work/hello.py", "backend": "ec2"})
    running = await _in_state(service, job.id, JobState.RUNNING)
    stranger = await launch_tagged(
        await aws("ec2"), {"awsjobs:managed": "true", "awsjobs:owner": "someone-else"}
    )

    with pytest.raises(Forbidden):
        await service.terminate_instances([running.handle["instance_id"], stranger])

    assert (await service.get_job(job.id)).state is JobState.RUNNING
    assert await state_of(await aws("ec2"), stranger) == "running"
    assert stranger not in {r["instance_id"] for r in await service.list_instances()}
