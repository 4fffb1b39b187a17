"""Helpers of the simulator's own tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.awssim.server import SimulatedAWS

REGION = "us-east-1"
IMAGE = "ami-12c6146b"
# Test-speed clock: AWS's minutes in tenths of a second.
FAST: dict[str, Any] = {
    "clock": {
        "boot_seconds": 0.1,
        "agent_register_seconds": 0.1,
        "shutting_down_seconds": 0.1,
        "halt_delay_seconds": 0.05,
        "reboot_seconds": 0.1,
        "spot_notice_seconds": 0.2,
    }
}

Clients = Callable[..., Awaitable[Any]]


async def launch(ec2: Any, **params: Any) -> str:
    """One instance's id (m5.large, on-demand unless told)."""
    request: dict[str, Any] = {
        "ImageId": IMAGE,
        "MinCount": 1,
        "MaxCount": 1,
        "InstanceType": "m5.large",
    }
    request.update(params)
    answer = await ec2.run_instances(**request)
    return str(answer["Instances"][0]["InstanceId"])


async def describe(ec2: Any, instance_id: str) -> dict[str, Any]:
    answer = await ec2.describe_instances(InstanceIds=[instance_id])
    return dict(answer["Reservations"][0]["Instances"][0])


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 60.0, interval: float = 0.05
) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds (generous:
    on a loaded 2-core CI machine a call can take seconds, a worker's Python start more)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)


async def state_of(ec2: Any, instance_id: str) -> str:
    return str((await describe(ec2, instance_id))["State"]["Name"])


async def registered(sim: SimulatedAWS, instance_id: str) -> None:
    """Wait until the instance's SSM agent is online."""

    async def online() -> bool:
        return bool(sim.simulator.machine(instance_id).agent_seen)

    await eventually(online)
