"""The AWS calls a capacity failure costs a launch, on the simulated AWS (`tests/awssim`).

The EC2 backend runs in this process against the simulator (AWS's delays off, the worker off),
with its calls counted at the aiobotocore client boundary. One on-demand launch is measured
with every pool available (the clean launch), then one with no capacity
(`InsufficientInstanceCapacity`) in the pool the clean launch got (the cheapest), then one
with none for the two cheapest types in every configured zone. A shortage costs the
launching calls (CreateFleet, RunInstances) of its launch minus the clean launch's, up to the
instance running (its SendCommand sent); the target is at most one extra call. Before EC2
Fleet, the launch walked its candidates with one RunInstances each: one call per refused
pool, then the one that launched.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ours import DUMMY_AWS
from .report import Report

SECTION = "aws (ours, simulated AWS)"
REGION = "us-east-1"
FAMILIES = ["m7i", "c7i", "c7a", "r7i"]  # small on purpose: moto serialises each type
LAUNCHING = ("RunInstances", "CreateFleet")
LAUNCH_CALLS = (
    "RunInstances",
    "CreateFleet",
    "CreateLaunchTemplate",
    "DescribeLaunchTemplates",
    "DeleteLaunchTemplate",
    "CreateTags",
)
REFUSED_TYPES = 2
SHORTAGE = "InsufficientInstanceCapacity"
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


@dataclass(frozen=True)
class Launched:
    """One measured launch: its pool and the EC2 calls it made."""

    instance_type: str
    zone: str
    calls: Counter[str]
    seconds: float

    @property
    def launching(self) -> int:
        """The calls that launch (CreateFleet, RunInstances): what a serial walk repeats."""
        return sum(self.calls[a] for a in LAUNCHING)

    @property
    def all_launch_calls(self) -> int:
        return sum(self.calls[a] for a in LAUNCH_CALLS)

    def detail(self) -> str:
        return ", ".join(f"{a} {self.calls[a]}" for a in LAUNCH_CALLS if self.calls[a])


async def _measure(report: Report, root: Path) -> None:
    from tests.awssim.server import SimulatedAWS

    (root / "work").mkdir(parents=True, exist_ok=True)
    (root / "work" / "job.sh").write_text("echo hello\n")
    with SimulatedAWS(INSTANT) as sim:
        sim.reset()
        from .aws import moto_setup

        setup = await moto_setup(sim.endpoint_url)
        backend = _backend(sim.endpoint_url, setup["subnets"], root)
        counted: Counter[str] = Counter()

        def count(model: Any, **_: Any) -> None:
            counted[model.name] += 1

        async def measured(rules: list[dict[str, str]]) -> Launched:
            sim.configure({"capacity": {"rules": rules}})
            counted.clear()
            started = time.monotonic()
            job = await _launch(backend, root)
            took = time.monotonic() - started
            zone = str(job.handle["availability_zone"])
            return Launched(str(job.instance_type), zone, Counter(counted), took)

        try:
            (await backend.clients.ec2()).meta.events.register("before-call.ec2", count)
            await _launch(backend, root)  # catalogue, subnets, image cached from here on
            clean = await measured([])
            cheapest = {"instance_type": clean.instance_type, "zone": clean.zone}
            one_pool = await measured([{"error": SHORTAGE, **cheapest}])
            preview = await backend.preview(memory_gib=4.0, cpus=2, spot=False)
            refused = preview["tried"]["types"][:REFUSED_TYPES]
            zones = len(preview["tried"]["zones"])
            wide = await measured([{"error": SHORTAGE, "instance_type": t} for t in refused])
        finally:
            await backend.close()
    _row(report, "the cheapest pool", 1, clean, one_pool)
    pools = REFUSED_TYPES * zones
    _row(
        report,
        f"the {pools} cheapest pools ({REFUSED_TYPES} types in {zones} zones)",
        pools,
        clean,
        wide,
    )


def _row(report: Report, refused: str, pools: int, clean: Launched, short: Launched) -> None:
    """The row of one shortage: extra launching calls, against a clean launch."""
    ratio = short.launching / clean.launching if clean.launching else float("nan")
    counts = (
        f"CreateFleet/RunInstances calls {short.launching} vs {clean.launching} in a clean "
        f"launch (ratio {ratio:.2f})"
    )
    print(f"  capacity: {refused} without capacity: {counts}", flush=True)
    report.limit_row(
        SECTION,
        f"AWS calls a capacity failure costs: extra CreateFleet/RunInstances calls until the "
        f"instance runs, {refused} without capacity",
        float(short.launching - clean.launching),
        1.0,
        unit="calls",
        strict=False,
        note=(
            f"{counts}; launched {short.instance_type} in {short.zone} instead of "
            f"{clean.instance_type} in {clean.zone}; every launch call {short.all_launch_calls} "
            f"({short.detail()}) vs {clean.all_launch_calls}; launch {short.seconds * 1000:.0f} "
            f"ms; a serial RunInstances walk: {pools} refused call{'s' if pools > 1 else ''} + 1"
        ),
    )
