"""The AWS calls a capacity failure costs a launch, on the simulated AWS (`tests/awssim`).

The EC2 backend runs in this process against the simulator (AWS's delays off, the worker off),
with its calls counted at the aiobotocore client boundary. One launch is measured with every
pool available, then one with no capacity (`InsufficientInstanceCapacity`) for the two cheapest
types in every configured zone: the launch calls of the second minus those of the first are
what the shortage cost. Before EC2 Fleet, the launch walked its candidates with one
RunInstances each: one call per refused pool, then the one that launched.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .ours import DUMMY_AWS
from .report import Report

SECTION = "aws (ours, simulated AWS)"
REGION = "us-east-1"
FAMILIES = ["m7i", "c7i", "c7a", "r7i"]  # small on purpose: moto serialises each type
LAUNCH_CALLS = (
    "RunInstances",
    "CreateFleet",
    "CreateLaunchTemplate",
    "DescribeLaunchTemplates",
    "DeleteLaunchTemplate",
    "CreateTags",
)
REFUSED_TYPES = 2
INSTANT = {
    "clock": {
        "tick_seconds": 0.02,
        "boot_seconds": 0.0,
        "agent_register_seconds": 0.0,
        "shutting_down_seconds": 0.0,
    },
    "worker": {"enabled": False},
}


def run(report: Report, tmp: Path) -> None:
    os.environ.update({k: v for k, v in DUMMY_AWS.items() if k != "AWS_ENDPOINT_URL"})
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    asyncio.run(_measure(report, tmp / "capacity"))


def _backend(endpoint: str, subnets: list[str], root: Path) -> Any:
    from awsjobs_lab.backends.ec2 import EC2Backend

    backend = EC2Backend(
        endpoint_url=endpoint,
        pricing_endpoint_url="http://127.0.0.1:9",  # no Pricing API: the bundled prices
        region=REGION,
        image_id="ami-12c6146b",
        subnet_ids=subnets,
        efs_file_system_id="fs-0123456789abcdef0",
        instance_profile_name="awsjobs-bench-worker",
        owner="bench",
        allowed_families=FAMILIES,
        cache_dir=str(root.parent / "cache"),
        ssm_retry_seconds=0.01,
        ssm_retry_max_seconds=0.05,
    )
    backend.root_dir = str(root)
    return backend


async def _launch(backend: Any, root: Path) -> Any:
    """One on-demand job launched to its SendCommand; the job."""
    from awsjobs_lab.models import Job, JobState, new_job_id, now

    job_id = new_job_id()
    job = Job(
        id=job_id,
        path="work/job.sh",
        backend="ec2",
        state=JobState.LAUNCHING,
        created_at=now(),
        updated_at=now(),
        memory_gib=4.0,
        cpus=2,
        spot=False,
        max_lifetime_minutes=60,
        log_path=f"work/job.{job_id}.log",
    )

    async def record(handle: dict[str, Any] | None = None, **fields: Any) -> None:
        job.handle.update(handle or {})
        for key, value in fields.items():
            setattr(job, key, value)

    await backend.launch(job, record)
    return job


async def _measure(report: Report, root: Path) -> None:
    from tests.awssim.server import SimulatedAWS

    (root / "work").mkdir(parents=True, exist_ok=True)
    (root / "work" / "job.sh").write_text("echo hello\n")
    with SimulatedAWS(INSTANT) as sim:
        sim.reset()
        from .aws import moto_setup  # here: aws runs this module

        setup = await moto_setup(sim.endpoint_url)
        backend = _backend(sim.endpoint_url, setup["subnets"], root)
        counted: Counter[str] = Counter()

        def count(model: Any, **_: Any) -> None:
            counted[model.name] += 1

        try:
            (await backend.clients.ec2()).meta.events.register("before-call.ec2", count)
            await _launch(backend, root)  # catalogue, subnets, image cached from here on
            counted.clear()
            plain = await _launch(backend, root)
            baseline = sum(counted[a] for a in LAUNCH_CALLS)
            preview = await backend.preview(memory_gib=4.0, cpus=2, spot=False)
            refused = preview["tried"]["types"][:REFUSED_TYPES]
            rules = [{"error": "InsufficientInstanceCapacity", "instance_type": t} for t in refused]
            sim.configure({"capacity": {"rules": rules}})
            counted.clear()
            started = time.monotonic()
            short = await _launch(backend, root)
            took = time.monotonic() - started
            shortage = sum(counted[a] for a in LAUNCH_CALLS)
            detail = ", ".join(f"{a} {counted[a]}" for a in LAUNCH_CALLS if counted[a])
            pools_refused = REFUSED_TYPES * len(preview["tried"]["zones"])
        finally:
            await backend.close()
    report.limit_row(
        SECTION,
        f"AWS calls a capacity failure costs: extra launch calls when the {pools_refused} "
        f"cheapest pools ({REFUSED_TYPES} types in {pools_refused // REFUSED_TYPES} zones) have "
        "no capacity",
        float(shortage - baseline),
        2.0,
        unit="calls",
        strict=False,
        note=(
            f"launched {short.instance_type} in {short.handle['availability_zone']} instead of "
            f"{plain.instance_type}; launch calls {shortage} ({detail}) vs {baseline} with "
            f"capacity; launch {took * 1000:.0f} ms; before (one RunInstances per candidate): "
            f"{pools_refused} refused calls + 1, and past c.EC2Backend.max_launch_attempts = 3 "
            "the launch failed"
        ),
    )
