"""Starting OUR server (the awsjobs_lab extension from this checkout, plus the probe)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .servers import Server, start_server
from .util import REPO, Processes

# No section talks to real AWS: dummy credentials always, and unless a section points the
# server at its moto, every AWS endpoint is a closed local port.
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def data_path(base: Path) -> Path:
    return base / "home" / "awsjobs"


def start_ours(
    procs: Processes,
    base: Path,
    config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    app: str = "server",
) -> Server:
    server_config: dict[str, Any] = {
        "ServerApp": {"jpserver_extensions": {"awsjobs_lab": True, "benchmarks.probe": True}},
        "AWSJobs": {"data_path": str(data_path(base))},
    }
    for section, values in (config or {}).items():
        server_config.setdefault(section, {}).update(values)
    env_extra = {**DUMMY_AWS, "PYTHONPATH": str(REPO), **(env or {})}
    server = start_server(
        procs, "ours", Path(sys.executable), base, server_config, env_extra=env_extra, app=app
    )
    client = server.client()
    try:
        resp = client.get("/awsjobs/api/config", ok=False)
    finally:
        client.close()
    if resp.status != 200:
        procs.stop(server.proc)
        raise RuntimeError(
            f"the awsjobs_lab extension did not load (GET config: {resp.status}):\n"
            + server.tail(15)
        )
    return server
