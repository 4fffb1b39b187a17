"""moto for the AWS tests, in one place: a moto server on 127.0.0.1 in this process, dummy
credentials, the moto shim every suite needs, in-process access to moto's models, and
test-side clients. Never real AWS. What moto serves, lacks and how to reach its state:
docs/aws-testing.md (and tests/ec2/README.md for what these tests rely on).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

REGION = "us-east-1"
# Set before any session exists, so nothing can reach real AWS with a real identity.
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}

ClientFactory = Callable[[str], Awaitable[Any]]


@contextlib.contextmanager
def moto_server_on_localhost() -> Iterator[str]:
    """A moto server (all services) on 127.0.0.1, a free port; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def send_command_to_listed_instances_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto bug (docs/aws-testing.md §5): SendCommand without Targets fans out to every
    instance in the region. With this shim a command reaches only the InstanceIds passed, so
    targeting mistakes show."""
    from moto.ssm import models as ssm_models

    original = ssm_models.Command._get_instance_ids_from_targets
    monkeypatch.setattr(
        ssm_models.Command,
        "_get_instance_ids_from_targets",
        lambda self: original(self) if self.targets else [],
    )


def moto_model(service: str) -> Any:
    """moto's in-process model of 'ec2', 'ssm' or 'iam' (docs/aws-testing.md §4). Ask each
    time: a reset replaces the models."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.iam.models import iam_backends
    from moto.ssm.models import ssm_backends

    if service == "iam":
        return iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    tables: dict[str, Any] = {"ec2": ec2_backends, "ssm": ssm_backends}
    return tables[service][DEFAULT_ACCOUNT_ID][REGION]


@contextlib.asynccontextmanager
async def moto_clients(endpoint: str) -> AsyncIterator[ClientFactory]:
    """Test-side clients of moto (`ec2 = await make("ec2")`), one attempt each, closed on exit."""
    from botocore.config import Config

    from awsjobs_lab.aws.clients import shared_session

    session = shared_session()  # one session: it caches the parsed service models
    async with contextlib.AsyncExitStack() as stack:

        async def make(service: str) -> Any:
            return await stack.enter_async_context(
                session.create_client(
                    service,
                    region_name=REGION,
                    endpoint_url=endpoint,
                    config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
                )
            )

        yield make
