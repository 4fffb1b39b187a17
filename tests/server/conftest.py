"""Shared fixtures: a Jupyter server (auth required) with the extension, its store in a temp dir,
scripts in `jp_root_dir`, and helpers that poll without timed assertions."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

# pytest-jupyter's server fixtures, for this folder only (a `pytest_plugins` entry would load them,
# and their autouse fixtures, for every test of the repository). Its two hooks that run coroutine
# tests on a loop of their own are left out: pytest-asyncio runs every test and fixture here, and
# `jp_asyncio_loop` below hands pytest-jupyter that same loop, so the server, the HTTP client and
# the test share one event loop.
from pytest_jupyter.jupyter_server import *  # noqa: F403

from awsjobs_lab.service import JobService
from tests.server.helpers import kill_leftovers

del pytest_pycollect_makeitem, pytest_pyfunc_call  # noqa: F821


@pytest.fixture
async def _test_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@pytest.fixture(autouse=True)
def jp_asyncio_loop(_test_loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    """pytest-asyncio's loop of this test (it closes it; pytest-jupyter's own would too)."""
    return _test_loop


@pytest.fixture
def awsjobs_config() -> dict[str, Any]:
    """Extra `c.AWSJobs.*` settings; a test module overrides this fixture to change them."""
    return {}


@pytest.fixture
def jp_server_config(tmp_path: Path, awsjobs_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"awsjobs_lab": True, "jupyter_server_terminals": False},
            "allow_unauthenticated_access": False,
        },
        "AWSJobs": {
            "data_path": str(tmp_path / "awsjobs-data"),
            "stop_retry_seconds": 0.05,
            **awsjobs_config,
        },
        "LocalBackend": {"stop_grace_seconds": 3.0},
    }


@pytest.fixture
async def service(jp_serverapp: Any) -> AsyncIterator[JobService]:
    """The running server's JobService, started; on teardown every process group a test left
    behind is killed (tests stop their own jobs; this is only a safety net)."""
    svc: JobService = jp_serverapp.web_app.settings["awsjobs_service"]
    await svc.start()
    yield svc
    with contextlib.suppress(Exception):
        kill_leftovers(await svc.store.list_active())


Fetch = Callable[..., Awaitable[Any]]


@pytest.fixture
def api(jp_fetch: Any, service: JobService) -> Fetch:
    """`await api("GET", "jobs", params=..., body=...)` → (status, decoded JSON or None).
    Never raises on HTTP errors, so tests check statuses."""

    async def call(method: str, *parts: str, body: Any = None, **kwargs: Any) -> Any:
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if method in ("POST", "PUT", "PATCH") and body is None:
            body = b""
        response = await jp_fetch(
            "awsjobs", "api", *parts, method=method, body=body, raise_error=False, **kwargs
        )
        text = response.body.decode() if response.body else ""
        return response.code, (json.loads(text) if text else None)

    return call
