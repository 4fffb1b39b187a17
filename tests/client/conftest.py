"""Fixtures of the client/CLI/build-image tests.

- `jupyter_server_proc`: a REAL `jupyter server` subprocess (127.0.0.1, random port, a token,
  its own root, data and runtime dirs) with awsjobs-lab and the local backend.
- `moto_endpoint`: a clean moto (server mode on 127.0.0.1, in this process, so tests can reach
  its models: docs/aws-testing.md §4) for one test. Never real AWS: dummy credentials only. The
  moto server, the test-side `aws` clients and `moto_backend` come from tests/conftest.py.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator

import pytest
from client_support import ServerProc, start_server, stop_server
from moto_support import DUMMY_AWS_ENV, send_command_to_listed_instances_only


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


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials: nothing here can reach real AWS."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    for key, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def moto_endpoint(moto_server: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean moto for every test, with the SendCommand fan-out shim (docs/aws-testing.md §5)."""
    req = urllib.request.Request(moto_server + "/moto-api/reset", method="POST", data=b"")
    urllib.request.urlopen(req).read()
    send_command_to_listed_instances_only(monkeypatch)
    return moto_server
