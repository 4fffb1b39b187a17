"""Fixtures of the client/CLI/build-image tests.

- `jupyter_server_proc`: a REAL `jupyter server` subprocess (127.0.0.1, random port, a token,
  its own root, data and runtime dirs) with awsjobs-lab and the local backend.
- `moto_server`/`moto_endpoint`: moto in server mode on 127.0.0.1 (port 0), in this process so
  tests can reach its models (AWS-TESTING.md §4). Never real AWS: dummy credentials only.
"""

from __future__ import annotations

import contextlib
import os
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from client_support import AWS_ENV, REGION, ServerProc, start_server, stop_server


@pytest.fixture(scope="module")
def jupyter_server_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """One real Jupyter server (local backend) per test module."""
    server = start_server(tmp_path_factory.mktemp("jpserver"))
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def server(jupyter_server_proc: ServerProc, monkeypatch: pytest.MonkeyPatch) -> ServerProc:
    """The module's server, found by this process through JUPYTER_SERVER_URL/JUPYTER_TOKEN."""
    for key in list(os.environ):
        if key.startswith("JUPYTER_SERVER") or key == "JUPYTER_TOKEN":
            monkeypatch.delenv(key)
    monkeypatch.setenv("JUPYTER_SERVER_URL", jupyter_server_proc.url)
    monkeypatch.setenv("JUPYTER_TOKEN", jupyter_server_proc.token)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jupyter_server_proc.runtime_dir))
    monkeypatch.chdir(jupyter_server_proc.root)
    return jupyter_server_proc


# ------------------------------------------------------------------------------------------
# moto
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials: nothing here can reach real AWS."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def moto_endpoint(moto_server: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean moto for every test, with the SendCommand fan-out shim (AWS-TESTING.md §5)."""
    from moto.ssm import models as ssm_models

    req = urllib.request.Request(moto_server + "/moto-api/reset", method="POST", data=b"")
    urllib.request.urlopen(req).read()
    original = ssm_models.Command._get_instance_ids_from_targets
    monkeypatch.setattr(
        ssm_models.Command,
        "_get_instance_ids_from_targets",
        lambda self: original(self) if self.targets else [],
    )
    return moto_server


@pytest.fixture
def moto_backend() -> Callable[[str], Any]:
    """In-process access to moto's models; call it each time (a reset replaces them)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.iam.models import iam_backends
    from moto.ssm.models import ssm_backends

    def get(service: str) -> Any:
        if service == "iam":
            return iam_backends[DEFAULT_ACCOUNT_ID]["global"]
        tables: dict[str, Any] = {"ec2": ec2_backends, "ssm": ssm_backends}
        return tables[service][DEFAULT_ACCOUNT_ID][REGION]

    return get


@pytest.fixture
async def aws(moto_endpoint: str) -> Any:
    """Client factory for assertions: `ec2 = await aws("ec2")`."""
    from aiobotocore.session import get_session
    from botocore.config import Config

    session = get_session()
    async with contextlib.AsyncExitStack() as stack:

        async def make(service: str) -> Any:
            return await stack.enter_async_context(
                session.create_client(
                    service,
                    region_name=REGION,
                    endpoint_url=moto_endpoint,
                    config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
                )
            )

        yield make
