"""GPU requests (issue 12) on the simulated AWS: the instance types chosen have the GPUs asked
for, as moto's DescribeInstanceTypes describes them (`GpuInfo`); without a GPU request no
accelerated type is chosen; an impossible request is a 400 with a clear message."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.backends.ec2 import EC2Backend
from awsjobs_lab.errors import InvalidRequest
from awsjobs_lab.gpus import GpuNeed
from awsjobs_lab.models import JobState
from awsjobs_lab.requests import LaunchDefaults
from awsjobs_lab.service import JobService, ServiceOptions
from awsjobs_lab.store import JobStore


async def _gpu_info(aws: Any, instance_type: str) -> dict[str, Any]:
    """What the (simulated) AWS itself says of a type's GPUs."""
    ec2 = await aws("ec2")
    resp = await ec2.describe_instance_types(InstanceTypes=[instance_type])
    info: dict[str, Any] = resp["InstanceTypes"][0].get("GpuInfo") or {}
    return info


def _meets_per_aws(info: dict[str, Any], count: int, memory_gib: float, model: str | None) -> bool:
    gpus = info.get("Gpus") or []
    return (
        sum(g["Count"] for g in gpus) >= count
        and all(g["MemoryInfo"]["SizeInMiB"] >= memory_gib * 1024 for g in gpus)
        and (model is None or any(g["Name"].lower() == model.lower() for g in gpus))
    )


@pytest.mark.parametrize(
    ("count", "memory_gib", "model"),
    [(1, 0.0, None), (1, 16.0, "t4"), (1, 20.0, "L4"), (4, 20.0, None), (8, 0.0, None)],
)
async def test_every_candidate_has_the_gpus_asked_for(make_backend, aws, count, memory_gib, model):
    backend = make_backend(allowed_families=[])
    need = GpuNeed(count, memory_gib, model)
    out = await backend.preview(memory_gib=1, cpus=1, spot=False, gpus=need)
    assert out["candidates"]
    for candidate in out["candidates"]:
        info = await _gpu_info(aws, candidate["instance_type"])
        assert _meets_per_aws(info, count, memory_gib, model), candidate
        assert candidate["gpus"] >= count
        assert candidate["gpu_memory_gib"] >= memory_gib
        if model:
            assert candidate["gpu_model"].lower() == model.lower()


async def test_without_gpus_no_accelerated_type_is_chosen(make_backend, aws):
    backend = make_backend(allowed_families=[])
    for spot in (False, True):
        out = await backend.preview(memory_gib=1, cpus=4, spot=spot)
        for candidate in out["candidates"]:
            assert candidate["gpus"] == 0 and candidate["gpu_model"] is None
            assert await _gpu_info(aws, candidate["instance_type"]) == {}


async def test_impossible_gpu_requests_are_400s(make_backend):
    backend = make_backend(allowed_families=[])
    with pytest.raises(InvalidRequest, match=r"16 GPUs \(T4\)"):
        await backend.preview(memory_gib=1, cpus=1, spot=False, gpus=GpuNeed(16, 0, "T4"))
    with pytest.raises(InvalidRequest, match="with 500 GiB each"):
        await backend.preview(memory_gib=1, cpus=1, spot=False, gpus=GpuNeed(1, 500))
    # A named type must have them too.
    with pytest.raises(InvalidRequest, match=r"m7i\.large does not have 1 GPU"):
        await backend.preview(
            memory_gib=1, cpus=1, spot=False, instance_type="m7i.large", gpus=GpuNeed(1)
        )
    named = await backend.preview(
        memory_gib=1, cpus=1, spot=False, instance_type="g6.xlarge", gpus=GpuNeed(1, 20, "L4")
    )
    assert named["choice"]["gpu_model"] == "L4"
    assert named["choice"]["gpus"] == 1


async def test_a_gpu_job_launches_on_a_type_that_meets_it(
    make_backend: Any, root: Path, tmp_path: Path, aws: Any
) -> None:
    backend: EC2Backend = make_backend(allowed_families=[])
    (root / "work" / "train.py").write_text("print('train')\n")
    service = JobService(
        JobStore(tmp_path / "jobs.sqlite"),
        {"ec2": backend},
        root,
        ServiceOptions(defaults=LaunchDefaults(backend="ec2"), retry_seconds=0.01),
    )
    await service.start()
    try:
        body = {"path": "work/train.py", "gpus": 1, "gpu_memory_gib": 20, "gpu_model": "l4"}
        job = await service.create_job(body)
        assert (job.gpus, job.gpu_memory_gib, job.gpu_model) == (1, 20.0, "l4")
        for _ in range(2000):
            job = await service.get_job(job.id)
            if job.state is not JobState.PENDING and job.state is not JobState.LAUNCHING:
                break
            await asyncio.sleep(0.01)
        assert job.state is JobState.RUNNING, job.error
        assert job.instance_type
        assert _meets_per_aws(await _gpu_info(aws, job.instance_type), 1, 20, "L4")
        assert job.to_dict()["gpu_model"] == "l4"
        with pytest.raises(InvalidRequest, match=r"and 2 GPUs \(T4x\); ask for less"):
            await service.create_job({"path": "work/train.py", "gpus": 2, "gpu_model": "T4x"})
    finally:
        await service.close()
