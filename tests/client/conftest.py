"""Fixtures of the client/CLI/build-image tests.

- `jupyter_server_proc`: a REAL `jupyter server` subprocess (127.0.0.1, random port, a token,
  its own root, data and runtime dirs) with awsjobs-lab and the local backend.
- `moto_server`/`moto_endpoint`: moto in server mode on 127.0.0.1 (port 0), in this process so
  tests can reach its models (AWS-TESTING.md §4). Never real AWS: dummy credentials only.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
# Generous bound for a server to come up on a loaded 2-core box: a safety net, not an assertion.
STARTUP_LIMIT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_", "AWS_"))}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    env.update(AWS_ENV)
    env.pop("AWS_PROFILE", None)
    env.update(extra)
    return env


@dataclass
class ServerProc:
    url: str
    token: str
    root: Path
    runtime_dir: Path
    data_path: Path
    proc: subprocess.Popen[bytes]
    log_file: Path
    extra_args: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """Environment for a CLI subprocess that finds this server by URL."""
        return subprocess_env(JUPYTER_SERVER_URL=self.url, JUPYTER_TOKEN=self.token)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.url}awsjobs/api/{path}",
            data=data if data is not None else (b"" if method == "POST" else None),
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def server_log(self) -> str:
        return self.log_file.read_text(errors="replace")


def start_server(tmp: Path, extra_args: list[str] | None = None, **env: str) -> ServerProc:
    root = tmp / "root"
    runtime = tmp / "runtime"
    data = tmp / "data"
    for d in (root, runtime, data):
        d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = secrets.token_hex(16)
    log_file = tmp / "server.log"
    args = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        "--no-browser",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.runtime_dir={runtime}",
        '--ServerApp.jpserver_extensions={"awsjobs_lab": True}',
        f"--AWSJobs.data_path={data}",
        *(extra_args or []),
    ]
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=subprocess_env(JUPYTER_RUNTIME_DIR=str(runtime), **env),
            cwd=str(tmp),
            start_new_session=True,
        )
    server = ServerProc(
        url=f"http://127.0.0.1:{port}/",
        token=token,
        root=root,
        runtime_dir=runtime,
        data_path=data,
        proc=proc,
        log_file=log_file,
        extra_args=extra_args or [],
    )
    deadline = time.monotonic() + STARTUP_LIMIT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter server exited early:\n{server.server_log()}")
        try:
            server.api("GET", "config")
            # The jpserver file is written after the HTTP server listens; wait for it too.
            if list(runtime.glob("jpserver-*.json")):
                return server
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(f"jupyter server did not answer:\n{server.server_log()}")
        time.sleep(0.2)


def stop_server(server: ServerProc) -> None:
    if server.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=30)


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


def wait_until(
    predicate: Callable[[], Any], limit: float = STARTUP_LIMIT, step: float = 0.1
) -> Any:
    """Poll `predicate` until it is truthy (a safety bound, never a timing assertion)."""
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {limit} s")
        time.sleep(step)


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
