"""The control API over HTTP, and the simulator as its own process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.awssim.server import SimulatedAWS, control
from tests.awssim.support import Clients, eventually, launch, state_of

REPO = Path(__file__).resolve().parents[2]


def http_status(url: str, route: str, payload: dict[str, object] | None = None) -> int:
    try:
        control(url, route, payload)
    except urllib.error.HTTPError as error:
        return error.code
    return 200


def moto_reset(url: str) -> object:
    request = urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


async def test_switches_and_levers_over_http(sim: SimulatedAWS, aws: Clients) -> None:
    url = sim.endpoint_url
    config = control(url, "config", {"clock": {"spot_notice_seconds": 0.1}})
    assert config["clock"]["spot_notice_seconds"] == 0.1
    ec2 = await aws("ec2")
    instance_id = await launch(ec2, InstanceMarketOptions={"MarketType": "spot"})
    assert control(url, f"interrupt/{instance_id}", {}) == {"status": "ok"}

    async def terminated() -> bool:
        return await state_of(ec2, instance_id) == "terminated"

    await eventually(terminated)
    state = control(url, "state")
    assert state["record"]["events"] == {"spot-interruption": 1}
    assert state["record"]["calls"]["ec2:RunInstances"] == 1
    assert state["instances"][0]["state"] == "terminated"
    assert http_status(url, "config", {"no_such_switch": 1}) == 400
    assert http_status(url, "reboot/i-0123456789abcdef0", {}) == 404
    assert http_status(url, "nothing-here", {}) == 404


async def test_moto_reset_resets_the_simulator_too(sim: SimulatedAWS, aws: Clients) -> None:
    await launch(await aws("ec2"))
    assert await asyncio.to_thread(moto_reset, sim.endpoint_url) == {"status": "ok"}
    assert sim.record.instances == {}
    assert control(sim.endpoint_url, "state")["instances"] == []


@pytest.fixture
def simulator_process() -> Iterator[str]:
    config = json.dumps({"clock": {"boot_seconds": 0.1}})
    env = dict(os.environ, MOTO_EC2_LOAD_DEFAULT_AMIS="false")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.awssim", "--port", "0", "--config", config],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        yield url
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_as_its_own_process(simulator_process: str) -> None:
    url = simulator_process
    assert control(url, "config")["clock"]["boot_seconds"] == 0.1
    control(url, "config", {"faults": [{"action": "DescribeRegions", "error": "InternalError"}]})
    assert control(url, "state")["config"]["faults"][0]["error"] == "InternalError"
    assert control(url, "reset", {}) == {"status": "ok"}
