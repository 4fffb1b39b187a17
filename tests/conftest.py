"""Fixtures shared by the suites that talk to moto (tests/ec2, tests/client). Each suite
defines `moto_endpoint`: a clean moto for one test (how it is cleaned differs by suite)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from moto_support import ClientFactory, moto_clients, moto_model, moto_server_on_localhost


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server on 127.0.0.1 for the session, in this process."""
    with moto_server_on_localhost() as url:
        yield url


@pytest.fixture
def moto_backend(moto_endpoint: str) -> Callable[[str], Any]:
    """In-process access to moto's models: `moto_backend("ec2")` (call it each time)."""
    return moto_model


@pytest.fixture
async def aws(moto_endpoint: str) -> AsyncIterator[ClientFactory]:
    """Test-side clients for assertions: `ec2 = await aws("ec2")`."""
    async with moto_clients(moto_endpoint) as make:
        yield make
