"""Fixtures of the client/CLI/build-image tests.

- `jupyter_server_proc`: a REAL `jupyter server` subprocess (127.0.0.1, random port, a token,
  its own root, data and runtime dirs) with awsjobs-lab and the local backend.
- `moto_endpoint`: a clean moto (server mode on 127.0.0.1, in this process, so tests can reach
  its models: docs/aws-testing.md §4) for one test. Never real AWS: dummy credentials only. The
  moto server, the test-side `aws` clients and `moto_backend` come from tests/conftest.py.
- `simulated_aws`: the simulated AWS of tests/awssim (moto behind eventual consistency, a
  worker that runs the boot script and the SSM command text, reboots) for one test: it patches
  moto's dispatcher while it runs, so it never outlives the test.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_support import ServerProc, start_server, stop_server
from moto_support import DUMMY_AWS_ENV, send_command_to_listed_instances_only

from tests.awssim import SimulatedAWS


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
    create_image_tags_snapshots(monkeypatch)
    return moto_server


# Test speed: AWS's minutes in tenths of a second (tests/awssim/README.md, "The switches").
FAST_CLOCK = {
    "boot_seconds": 0.1,
    "agent_register_seconds": 0.1,
    "shutting_down_seconds": 0.1,
    "halt_delay_seconds": 0.05,
    "reboot_seconds": 0.1,
}


@pytest.fixture
def simulated_aws(
    aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SimulatedAWS]:
    """A clean simulated AWS for this test, fast clock, the worker's sandboxes in tmp_path."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    create_image_tags_snapshots(monkeypatch)
    config = {"clock": FAST_CLOCK, "worker": {"sandbox_dir": str(tmp_path / "awssim")}}
    with SimulatedAWS(config) as aws:
        aws.reset()
        yield aws


def create_image_tags_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2 answers CreateImage's `snapshot` TagSpecifications with NotImplementedError (an
    HTTP 500; tests/awssim passes it through); AWS tags the new image's snapshots. This tags the
    AMI's snapshot (moto makes one per AMI) as AWS would."""
    from moto.ec2.models.amis import AmiBackend

    original = AmiBackend.create_image

    def create_image(
        self: Any,
        instance_id: str,
        name: str,
        description: str,
        tag_specifications: list[dict[str, Any]],
    ) -> Any:
        for_snapshot = [s for s in tag_specifications if s["ResourceType"] == "snapshot"]
        for_image = [s for s in tag_specifications if s["ResourceType"] != "snapshot"]
        ami = original(self, instance_id, name, description, tag_specifications=for_image)
        for spec in for_snapshot:
            ami.ebs_snapshot.add_tags({t["Key"]: t["Value"] for t in spec["Tags"]})
        return ami

    monkeypatch.setattr(AmiBackend, "create_image", create_image)
