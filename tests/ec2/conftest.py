"""Fixtures of the EC2 backend tests: the simulated AWS (tests/awssim, moto in server mode on
127.0.0.1 with the simulator in front), in this process, with AWS's delays off by default.

Never real AWS: dummy credentials are set before any session exists, every EC2/SSM client
points at the simulator, `AWS_ENDPOINT_URL` points at it as a safety net, and the Pricing client
points at a closed local port unless a test puts an `AioStubber` in front of it (moto has no
pricing backend). The test-side `aws` clients and `moto_backend` come from tests/conftest.py.
What these tests rely on: tests/ec2/README.md; the simulator's switches: tests/awssim/README.md.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from moto_support import DUMMY_AWS_ENV, REGION, ClientFactory

os.environ.update(DUMMY_AWS_ENV)
os.environ.pop("AWS_PROFILE", None)

from moto.core.responses import ActionResult
from simulated import Faults, defaults, instant_boot, simulated_aws

from awsjobs_lab.backends.ec2 import EC2Backend
from tests.awssim.server import SimulatedAWS

# Families kept small on purpose: moto serialises ~3.5 ms per instance type.
TEST_FAMILIES = ["m7i", "c7i", "c7a", "r7i"]
CLOSED_PORT_URL = "http://127.0.0.1:9"  # nothing listens: a pricing call fails at once


# One simulated AWS for this folder's tests, started by the first that needs it and stopped
# when the run leaves this folder (`pytest_runtest_teardown` below). It patches moto's
# dispatcher for the whole process while it runs, so it must be gone before tests elsewhere use
# moto their own way, in whatever order the folders run. (pytest's "package" scope does not end
# with this folder: it has no __init__.py.)
_running: list[contextlib.ExitStack] = []
_shared: list[SimulatedAWS] = []


@pytest.fixture
def simulator() -> SimulatedAWS:
    if not _shared:
        stack = contextlib.ExitStack()
        _shared.append(stack.enter_context(simulated_aws()))
        _running.append(stack)
    return _shared[0]


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    here = Path(__file__).parent
    if _running and (nextitem is None or here not in nextitem.path.parents):
        _shared.clear()
        _running.pop().close()


@pytest.fixture
def sim(simulator: SimulatedAWS, monkeypatch: pytest.MonkeyPatch) -> SimulatedAWS:
    """A clean simulated AWS for this test, AWS's delays off (tests/ec2/simulated.py). No
    ~1300 default AMIs in the fresh EC2 backend (made during the test): any image id launches."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    simulator.configure(defaults(simulator))
    simulator.reset()
    instant_boot(monkeypatch)
    return simulator


@pytest.fixture
def moto_endpoint(sim: SimulatedAWS, monkeypatch: pytest.MonkeyPatch) -> str:
    """The clean simulated AWS's URL (moto behind it: `moto_backend` reaches its models)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", sim.endpoint_url)
    return sim.endpoint_url


@pytest.fixture
async def subnets(aws: ClientFactory) -> dict[str, str]:
    """Availability zone → moto's default subnet in it."""
    ec2 = await aws("ec2")
    resp = await ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    return {s["AvailabilityZone"]: s["SubnetId"] for s in resp["Subnets"]}


@pytest.fixture
async def instance_profile(aws: ClientFactory) -> str:
    """The workers' instance profile (moto checks that it exists)."""
    iam = await aws("iam")
    await iam.create_instance_profile(InstanceProfileName="awsjobs-worker")
    return "awsjobs-worker"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The server root, on 'EFS' (a temp dir standing for the shared file system)."""
    path = tmp_path / "efs" / "home"
    (path / "work").mkdir(parents=True)
    return path


@pytest.fixture
async def make_backend(
    moto_endpoint: str, root: Path, tmp_path: Path, subnets: dict[str, str], instance_profile: str
) -> AsyncIterator[Callable[..., EC2Backend]]:
    """Backends wired to moto, configured like a real site, with test-speed timings."""
    made: list[EC2Backend] = []

    def make(**traits: Any) -> EC2Backend:
        settings: dict[str, Any] = {
            "endpoint_url": moto_endpoint,
            "pricing_endpoint_url": CLOSED_PORT_URL,
            "region": REGION,
            "image_id": "ami-12c6146b",
            "subnet_ids": [subnets["us-east-1a"], subnets["us-east-1b"]],
            "security_group_ids": [],
            "efs_file_system_id": "fs-0123456789abcdef0",
            "instance_profile_name": instance_profile,
            "owner": "tester",
            "allowed_families": TEST_FAMILIES,
            "cache_dir": str(tmp_path / "cache"),
            "monitor_interval_seconds": 3600.0,  # tests drive cycles with run_cycle()
            "command_check_interval_seconds": 3600.0,
            "exit_code_grace_seconds": 0.0,
            "launch_timeout_seconds": 5.0,
            "ssm_retry_seconds": 0.01,
            "ssm_retry_max_seconds": 0.05,
            "stop_confirm_delay_seconds": 0.0,
            "cleanup_retry_seconds": 0.01,
            "reattach_grace_seconds": 0.0,
        }
        settings.update(traits)
        backend = EC2Backend(**settings)
        backend.root_dir = str(root)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


# -- fault injection: the simulator's fault rules --------------------------------------------
@pytest.fixture
def faults(sim: SimulatedAWS) -> Faults:
    return Faults(sim)


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's standard-mode retry delays set to 0 (aiobotocore reuses the class), for
    every test: retried calls (e.g. the unreachable Price List API) cost no sleep."""
    import botocore.retries.standard

    monkeypatch.setattr(
        botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0
    )


@pytest.fixture
def seed_spot(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], str]:
    """Spot prices moto will answer ((type, zone) → price); moto's own are all 0.00001.
    docs/aws-testing.md §4.4: the price is a constant in moto's response layer, so patch that."""
    from moto.ec2.responses.spot_instances import SpotInstances

    seed: dict[tuple[str, str], str] = {}

    def seeded(self: Any) -> Any:
        types = self._get_param("InstanceTypes", [])
        f = self._filters_from_querystring()
        rows = [
            {
                "InstanceType": t,
                "AvailabilityZone": az,
                "SpotPrice": p,
                "ProductDescription": "Linux/UNIX",
                "Timestamp": "2026-11-25T00:00:00.000Z",
            }
            for (t, az), p in seed.items()
            if (not types or t in types)
            and (not f.get("availability-zone") or az in f["availability-zone"])
            and (not f.get("instance-type") or t in f["instance-type"])
        ]
        return ActionResult({"SpotPriceHistory": rows})

    monkeypatch.setattr(SpotInstances, "describe_spot_price_history", seeded)
    return seed
