"""Helpers of the EC2 backend tests (imported by the tests and conftest)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from simulated import halt

from awsjobs_lab.models import Job, JobState, new_job_id, now
from tests.awssim.server import SimulatedAWS


def make_job(root: Path, name: str = "hello.py", body: str | None = None, **fields: Any) -> Job:
    """A job for `work/<name>` (the file is written unless body is None and it exists)."""
    job_id = new_job_id()
    script = root / "work" / name
    if body is not None or not script.exists():
        script.write_text(body if body is not None else "print('hello from the worker')\n")
    values: dict[str, Any] = {
        "id": job_id,
        "path": f"work/{name}",
        "backend": "ec2",
        "state": JobState.LAUNCHING,
        "created_at": now(),
        "updated_at": now(),
        "memory_gib": 4.0,
        "cpus": 2,
        "spot": False,
        "max_lifetime_minutes": 60,
        "log_path": f"work/{Path(name).stem}.{job_id}.log",
    }
    values.update(fields)
    return Job(**values)


class Recorder:
    """A `record` callback that applies what it is given to the job, like the store does."""

    def __init__(self, job: Job, hold: Callable[[], Awaitable[None]] | None = None) -> None:
        self.job = job
        self.calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.hold = hold

    async def __call__(self, handle: dict[str, Any] | None = None, **fields: Any) -> None:
        self.calls.append((dict(handle or {}), dict(fields)))
        self.job.handle.update(handle or {})
        for key, value in fields.items():
            setattr(self.job, key, value)
        if self.hold is not None and "instance_id" in (handle or {}):
            await self.hold()


async def launch_tagged(ec2: Any, tags: dict[str, str]) -> str:
    """An instance launched from outside the backend, with these tags; its id."""
    made = await ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    return str(made["Instances"][0]["InstanceId"])


def set_state(sim: SimulatedAWS, instance_id: str, reason_code: str) -> None:
    """The instance goes down on AWS's side with this StateReason (simulated.halt)."""
    halt(sim, instance_id, reason_code)
