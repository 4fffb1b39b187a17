"""The spending cap (issue 12) with the real EC2 backend, service and store on the simulated
AWS: a launch over either cap is refused with OverBudget (409 `budget`) and launches nothing
(no launch call reaches AWS, no instance exists); under the caps a job launches; the figures
count what is running; a GPU job's price is a GPU type's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from simulated import Faults

from awsjobs_lab.backends.ec2 import EC2Backend
from awsjobs_lab.errors import OverBudget
from awsjobs_lab.models import Job, JobState
from awsjobs_lab.requests import LaunchDefaults
from awsjobs_lab.service import JobService, ServiceOptions
from awsjobs_lab.store import JobStore

# The EC2 calls that start instances (RunInstances, or CreateFleet for a fleet launch).
LAUNCH_CALLS = (("ec2", "RunInstances"), ("ec2", "CreateFleet"))
BODY = {"path": "work/hello.py", "backend": "ec2", "cpus": 2}

MakeService = Callable[..., Awaitable[JobService]]


@pytest.fixture
async def make_service(
    make_backend: Callable[..., EC2Backend], root: Path, tmp_path: Path
) -> AsyncIterator[MakeService]:
    made: list[JobService] = []
    (root / "work" / "hello.py").write_text("print('hello')\n")

    async def factory(backend: dict[str, Any] | None = None, **caps: Any) -> JobService:
        options = ServiceOptions(
            defaults=LaunchDefaults(backend="ec2"),
            retry_seconds=0.01,
            retry_max_seconds=0.05,
            **caps,
        )
        service = JobService(
            JobStore(tmp_path / "jobs.sqlite"),
            {"ec2": make_backend(**(backend or {}))},
            root,
            options,
        )
        await service.start()
        made.append(service)
        return service

    yield factory
    for service in made:
        await service.close()


def launch_calls(faults: Faults) -> int:
    calls = faults.calls
    return sum(calls.get(key, 0) for key in LAUNCH_CALLS)


async def live_instances(aws: Any) -> list[str]:
    ec2 = await aws("ec2")
    resp = await ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return [i["InstanceId"] for r in resp["Reservations"] for i in r["Instances"]]


async def running(service: JobService, job_id: str) -> Job:
    for _ in range(2000):  # event-loop turns, not a timed assertion
        job = await service.get_job(job_id)
        if job.state is JobState.RUNNING:
            return job
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} never ran")


async def test_over_the_instance_cap_launches_nothing(
    make_service: MakeService, faults: Faults, aws: Any
) -> None:
    service = await make_service(max_active_instances=1)
    first = await service.create_job(BODY)
    await running(service, first.id)
    before = launch_calls(faults)
    assert before >= 1  # the first job's launch was counted
    with pytest.raises(OverBudget, match="max_active_instances is 1") as refused:
        await service.create_job(BODY)
    assert refused.value.status == 409 and refused.value.reason == "budget"
    assert "1 instance is active now, and this job would add 1" in str(refused.value)
    assert launch_calls(faults) == before
    jobs, _ = await service.list_jobs()
    assert [j.id for j in jobs] == [first.id]
    assert len(await live_instances(aws)) == 1


async def test_over_the_spend_cap_says_the_figures(
    make_service: MakeService, faults: Faults, aws: Any
) -> None:
    probe = await make_service()
    preview = await probe.preview_instance(memory_gib=4.0, cpus=2, spot=False, instance_type=None)
    price = float(preview["choice"]["hourly_price"])
    await probe.close()

    service = await make_service(max_hourly_spend=round(price * 1.5, 6))
    first = await service.create_job(BODY)  # under the cap
    launched = await running(service, first.id)
    assert launched.hourly_price == pytest.approx(price)
    before = launch_calls(faults)
    assert before >= 1  # the first job's launch was counted
    with pytest.raises(OverBudget) as refused:
        await service.create_job(BODY)
    message = str(refused.value)
    assert f"max_hourly_spend is ${price * 1.5:.4f}/h" in message
    assert f"the spend is ${price:.4f}/h now" in message
    assert f"this job would add ${price:.4f}/h" in message
    assert launch_calls(faults) == before
    assert len(await live_instances(aws)) == 1

    budget = (await service.config_now())["budget"]
    assert budget["active_instances"] == 1
    assert budget["hourly_spend"] == pytest.approx(price)
    assert budget["max_hourly_spend"] == pytest.approx(price * 1.5)
    assert budget["spend_today"] >= 0.0


async def test_under_both_caps_jobs_launch(make_service: MakeService, aws: Any) -> None:
    service = await make_service(max_active_instances=2, max_hourly_spend=100.0)
    jobs = [await service.create_job(BODY) for _ in range(2)]
    for job in jobs:
        await running(service, job.id)
    assert len(await live_instances(aws)) == 2
    assert (await service.config_now())["budget"]["active_instances"] == 2


async def test_a_gpu_job_is_priced_as_a_gpu_type(
    make_service: MakeService,
    faults: Faults,
    aws: Any,
    seed_spot: dict[tuple[str, str], str],
) -> None:
    # Spot: both types priced by the seeded spot history (on demand: the test below).
    for zone in ("us-east-1a", "us-east-1b"):
        seed_spot[("c7i.large", zone)] = "0.0300"
        seed_spot[("g4dn.xlarge", zone)] = "0.2000"
    families = {"allowed_families": ["c7i", "g4dn"]}
    cpu_body = {**BODY, "spot": True}
    probe = await make_service(families)
    cpu = await probe.preview_instance(memory_gib=4.0, cpus=2, spot=True, instance_type=None)
    gpu = await probe.preview_instance(
        memory_gib=4.0, cpus=2, spot=True, instance_type=None, gpus=1
    )
    await probe.close()
    assert (cpu["choice"]["instance_type"], gpu["choice"]["instance_type"]) == (
        "c7i.large",
        "g4dn.xlarge",
    )
    assert gpu["choice"]["gpus"] == 1 and cpu["choice"]["gpus"] == 0

    service = await make_service(families, max_hourly_spend=0.1)  # between the two prices
    with pytest.raises(OverBudget) as refused:
        await service.create_job({**cpu_body, "gpus": 1})
    assert refused.value.status == 409 and refused.value.reason == "budget"
    assert "this job would add $0.2000/h" in str(refused.value)
    assert launch_calls(faults) == 0
    assert not await live_instances(aws)
    jobs, _ = await service.list_jobs()
    assert jobs == []

    passed = await running(service, (await service.create_job(cpu_body)).id)
    assert passed.instance_type == "c7i.large" and passed.hourly_price == pytest.approx(0.03)
    assert len(await live_instances(aws)) == 1


async def test_an_on_demand_gpu_job_is_priced_from_the_bundled_table_when_pricing_fails(
    make_service: MakeService, faults: Faults, aws: Any
) -> None:
    # The Price List API is unreachable here (conftest: a closed port) and nothing is cached:
    # the bundled table prices the GPU type, so the spending cap can refuse the job.
    from awsjobs_lab.aws import catalog

    families = {"allowed_families": ["c7i", "g4dn"]}
    service = await make_service(families, max_hourly_spend=0.3)  # over c7i.large, under g4dn
    preview = await service.preview_instance(
        memory_gib=4.0, cpus=2, spot=False, instance_type=None, gpus=1
    )
    choice = preview["choice"]
    assert choice["instance_type"] == "g4dn.xlarge" and choice["gpus"] == 1
    assert choice["price_source"].startswith("bundled (us-east-1 prices of ")
    bundled, _, _ = catalog.load_bundled_prices()
    assert choice["hourly_price"] == bundled["g4dn.xlarge"] == pytest.approx(0.526)

    with pytest.raises(OverBudget) as refused:
        await service.create_job({**BODY, "gpus": 1, "spot": False})
    assert "this job would add $0.5260/h" in str(refused.value)
    assert launch_calls(faults) == 0
    assert not await live_instances(aws)
