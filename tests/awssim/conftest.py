"""Fixtures of the simulator's own tests: one simulator for the session, reset per test."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
os.environ.pop("AWS_PROFILE", None)

from aiobotocore.session import AioSession, get_session
from botocore.config import Config

from tests.awssim.config import SimConfig
from tests.awssim.server import SimulatedAWS
from tests.awssim.support import FAST, REGION, Clients


@pytest.fixture(scope="package")
def simulated_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedAWS]:
    """Package scope: it patches moto's dispatcher for the whole process while it runs, so it
    must be gone before other test folders use moto their own way."""
    config = SimConfig.from_json(FAST)
    config.worker.sandbox_dir = str(tmp_path_factory.mktemp("awssim"))
    with SimulatedAWS(config) as aws:
        yield aws


@pytest.fixture
def sim(simulated_aws: SimulatedAWS, monkeypatch: pytest.MonkeyPatch) -> SimulatedAWS:
    """A clean simulator with the default switches (and the fast clock) for this test.
    No ~1300 default AMIs in the fresh EC2 backend (read when it is made, during the test):
    the tests launch with any image id."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    defaults = SimConfig.from_json(FAST).to_json()
    defaults["worker"]["sandbox_dir"] = simulated_aws.config.worker.sandbox_dir
    simulated_aws.configure(defaults)
    simulated_aws.reset()
    return simulated_aws


@pytest.fixture(scope="session")
def aio_session() -> AioSession:
    return get_session()


@pytest.fixture
async def aws(sim: SimulatedAWS, aio_session: AioSession) -> AsyncIterator[Clients]:
    """`ec2 = await aws("ec2")`: a client on the simulator; one attempt unless told."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(service: str, attempts: int = 1, **config: Any) -> Any:
            retries = {"mode": "standard", "total_max_attempts": attempts}
            return await stack.enter_async_context(
                aio_session.create_client(
                    service,
                    region_name=REGION,
                    endpoint_url=sim.endpoint_url,
                    config=Config(retries=retries, **config),
                )
            )

        yield make


@pytest.fixture
def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's retry backoff set to 0 (aiobotocore reuses the class)."""
    import botocore.retries.standard

    monkeypatch.setattr(
        botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0
    )
