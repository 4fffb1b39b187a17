"""The GPU fields of a launch request (issue 12): validated with their field named, stored on
the job and in its JSON, refused on a backend without the `gpus` capability; the GpuInfo
parsing and matching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.backends.local import LocalBackend
from awsjobs_lab.errors import InvalidRequest
from awsjobs_lab.gpus import GpuInfo, GpuNeed, meets, parse_gpu_info
from awsjobs_lab.models import Job
from awsjobs_lab.service import JobService
from awsjobs_lab.store import JobStore
from tests.server.helpers import parse_run_py

_parse = parse_run_py


def test_defaults_and_values_are_kept(tmp_path: Path) -> None:
    job = _parse(tmp_path)
    assert (job.gpus, job.gpu_memory_gib, job.gpu_model) == (0, 0.0, None)
    assert not job.gpu_need.wanted
    job = _parse(tmp_path, gpus=2, gpu_memory_gib=22.5, gpu_model="A10G")
    assert job.gpu_need == GpuNeed(2, 22.5, "A10G")
    record = job.to_dict()
    assert (record["gpus"], record["gpu_memory_gib"], record["gpu_model"]) == (2, 22.5, "A10G")
    assert Job.from_record(job.to_record()).gpu_need == job.gpu_need
    assert _parse(tmp_path, gpus=1, gpu_model="").gpu_model is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"gpus": -1}, "gpus: must be a whole number from 0 to 16"),
        ({"gpus": 17}, "gpus: must be a whole number from 0 to 16"),
        ({"gpus": 1.5}, "gpus: must be a whole number"),
        ({"gpus": True}, "gpus: must be a whole number"),
        ({"gpus": "1"}, "gpus: must be a whole number"),
        ({"gpu_memory_gib": -1}, "gpu_memory_gib: must be a number of GiB, 0 or more"),
        ({"gpu_memory_gib": "24"}, "gpu_memory_gib: must be a number"),
        ({"gpu_memory_gib": float("nan")}, "gpu_memory_gib: must be a number"),
        ({"gpu_model": "A10G; rm"}, "gpu_model: must be a GPU name"),
        ({"gpu_model": 4}, "gpu_model: must be a GPU name"),
        ({"gpu_model": "-T4"}, "gpu_model: must be a GPU name"),
    ],
)
def test_bad_values_are_refused_with_their_field(
    tmp_path: Path, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest, match="^" + message):
        _parse(tmp_path, **body)


async def test_a_backend_without_gpus_refuses_them(tmp_path: Path) -> None:
    (tmp_path / "run.py").write_text("pass\n")
    backend = LocalBackend(warm_notebook_runner=False)
    service = JobService(JobStore(tmp_path / "jobs.sqlite"), {"local": backend}, tmp_path)
    await service.start()
    try:
        with pytest.raises(InvalidRequest, match=r"^gpus: the 'local' backend has no GPUs"):
            await service.create_job({"path": "run.py", "gpus": 1})
        assert (await service.list_jobs())[0] == []
    finally:
        await service.close()


def _row(*gpus: tuple[int, int, str]) -> dict[str, Any]:
    entries = [{"Count": c, "MemoryInfo": {"SizeInMiB": m}, "Name": n} for c, m, n in gpus]
    return {"InstanceType": "g.x", "GpuInfo": {"Gpus": entries}}


def test_gpu_info_is_parsed_and_matched() -> None:
    assert parse_gpu_info({"InstanceType": "m7i.large"}) is None
    info = parse_gpu_info(_row((4, 22888, "L4")))
    assert info == GpuInfo(4, "L4", 22888)
    assert meets(info, GpuNeed(4, 22, "l4"))
    assert not meets(info, GpuNeed(5))
    assert not meets(info, GpuNeed(1, 23))
    assert not meets(info, GpuNeed(1, 0, "T4"))
    assert meets(None, GpuNeed()) and not meets(None, GpuNeed(1))
    mixed = parse_gpu_info(_row((1, 16384, "T4"), (1, 8192, "M60")))
    assert mixed == GpuInfo(2, "T4/M60", 8192)
    assert meets(mixed, GpuNeed(2, 8, "m60"))
