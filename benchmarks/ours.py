"""Starting OUR server (the awsjobs_lab extension from this checkout, plus the probe)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from .servers import Server, start_server
from .util import REPO, Processes, io_counters, wait_until

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


def wait_for_start_up_work(server: Server, answered: float, quiet_bytes: int = 0) -> None:
    """Wait until the server's delayed start-up work is over (`answered`: when the server first
    answered, time.monotonic()). A few seconds after the start, its orphan sweep and first
    import of remote schedules' runs make the EC2 client, reading botocore's data files
    (1.3 MB) and building the client: a measurement taken meanwhile counts that once-per-start
    work in whichever request or tick it falls. Over once the server reads at most
    `quiet_bytes` in a second (the probe's tick, when running, reads /proc: about 30 KB/s)."""
    from awsjobs_lab.schedules.service import ScheduleOptions
    from awsjobs_lab.service import ServiceOptions

    delays = (
        ServiceOptions.orphan_sweep_delay_seconds,
        ScheduleOptions.first_import_delay_seconds,
    )
    time.sleep(max(0.0, answered + max(delays) + 1.0 - time.monotonic()))
    last = io_counters(server.pid)["rchar"]

    def quiet_for_a_second() -> bool:
        nonlocal last
        time.sleep(1.0)
        before, last = last, io_counters(server.pid)["rchar"]
        return last - before <= quiet_bytes

    wait_until(quiet_for_a_second, timeout=30, interval=0, what="the server's reads to stop")
