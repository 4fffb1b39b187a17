"""One aiobotocore session for the process and its clients, each created once and reused.

Never a blocking boto3 call on the event loop: everything here is aiobotocore. Clients are
created lazily (the first call that needs one) under a lock, and closed together by `close()`.
Creating one reads botocore's data files for the service (megabytes of JSON for EC2): they are
read in a worker thread first, and what the client leaves behind, which lives as long as the
process, is then kept out of the garbage collector's way (`gc_tuning.freeze_long_lived`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from aiobotocore.session import AioSession, get_session
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import DataNotFoundError

from ..gc_tuning import freeze_long_lived

# The Price List API is served from a few regions only; us-east-1 answers for every region.
PRICING_REGION = "us-east-1"


_SESSION: AioSession | None = None


def shared_session() -> AioSession:
    """The process's one AioSession (it caches parsed service models: creating clients from a
    fresh session costs hundreds of milliseconds each)."""
    global _SESSION
    if _SESSION is None:
        _SESSION = get_session()
    return _SESSION


# The data files botocore parses to create a client (the service's API and endpoint rules,
# and once per session the endpoints, partitions and default settings of every service) and
# its paginators (the first `get_paginator` lists botocore's data folders). Parsed on the loop,
# EC2's held it about 160 ms, and 30 to 120 ms more under load; parsed before, 20 ms in all.
SERVICE_DATA_FILES = ("service-2", "endpoint-rule-set-1", "paginators-1")
SESSION_DATA_FILES = ("endpoints", "partitions", "sdk-default-configuration")


def load_client_data(session: AioSession, service: str) -> None:
    """Parse the data files a client of `service` needs into the session's cache, and name its
    methods. Blocking: in a worker thread. A file botocore does not have is left for
    `create_client` to report."""
    loader = session.get_component("data_loader")
    for kind in SERVICE_DATA_FILES:
        with contextlib.suppress(DataNotFoundError):
            loader.load_service_model(service, kind)
    for name in SESSION_DATA_FILES:
        with contextlib.suppress(DataNotFoundError):
            loader.load_data(name)
    with contextlib.suppress(DataNotFoundError):
        name_methods(loader.load_service_model(service, "service-2"))


def name_methods(service_model: dict[str, Any]) -> None:
    """Turn each operation's name into its method's (DescribeInstances: describe_instances),
    into botocore's cache of those names: making the client class does it for every operation
    (807 for EC2), and that was half of the client's making on the loop (10 of 20 ms)."""
    for operation in service_model.get("operations", {}):
        xform_name(operation)


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in [base/2, min(cap, base * 2**attempt)]."""
    upper = min(cap, base * (2 ** max(0, attempt)))
    return random.uniform(min(base / 2, upper), upper)


class AWSClients:
    """The EC2, SSM, S3 and Pricing clients of one backend.

    `endpoint_url` (e.g. moto in tests) applies to EC2, SSM and S3; when empty, botocore's own
    resolution applies, which honours `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`.
    The Pricing client has its own endpoint, a short timeout and at most two attempts: prices
    are optional and a slow Price List API must never stall a launch.
    """

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str = "",
        pricing_endpoint_url: str = "",
        max_attempts: int = 4,
        session: AioSession | None = None,
    ) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self.pricing_endpoint_url = pricing_endpoint_url
        self.max_attempts = max_attempts
        self._session = session or shared_session()
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    def _config(self, service: str) -> tuple[str, str | None, Config]:
        if service == "pricing":
            config = Config(
                retries={"mode": "standard", "total_max_attempts": 2},
                connect_timeout=3,
                read_timeout=10,
            )
            return PRICING_REGION, self.pricing_endpoint_url or None, config
        config = Config(
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
            connect_timeout=10,
            read_timeout=30,
            max_pool_connections=20,
        )
        return self.region, self.endpoint_url or None, config

    async def get(self, service: str) -> Any:
        """The client for `service` ('ec2', 'ssm', 's3' or 'pricing'), created on first use."""
        client = self._clients.get(service)
        if client is not None:
            return client
        async with self._lock:
            client = self._clients.get(service)
            if client is None:
                region, endpoint, config = self._config(service)
                kwargs: dict[str, Any] = {"region_name": region, "config": config}
                if endpoint:
                    kwargs["endpoint_url"] = endpoint
                await asyncio.to_thread(load_client_data, self._session, service)
                client = await self._stack.enter_async_context(
                    self._session.create_client(service, **kwargs)
                )
                self._clients[service] = client
                freeze_long_lived()
            return client

    async def ec2(self) -> Any:
        return await self.get("ec2")

    async def ssm(self) -> Any:
        return await self.get("ssm")

    async def s3(self) -> Any:
        """The jobs' staging bucket's client (storage 's3'): parallel transfers share its pool."""
        return await self.get("s3")

    async def pricing(self) -> Any:
        return await self.get("pricing")

    def created(self) -> dict[str, Any]:
        """The clients created so far (tests register event hooks on them)."""
        return dict(self._clients)

    async def close(self) -> None:
        async with self._lock:
            self._clients.clear()
            stack, self._stack = self._stack, contextlib.AsyncExitStack()
        await stack.aclose()
