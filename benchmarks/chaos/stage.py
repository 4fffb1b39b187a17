"""The stage of a chaos run: the simulated AWS in this process, our Jupyter server as a
subprocess with its EC2 backend on it, and the server's crash (SIGKILL) and restart on the
same store.

The simulator runs in-process so the run can watch every call as it is served (`tap`) and
kill the server at the exact moment a call is applied. Only 127.0.0.1 is used; dummy
credentials only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from tests.awssim import SimulatedAWS

from ..ours import DUMMY_AWS, start_ours
from ..servers import Server, log
from ..util import Client, Processes
from . import timing


class Stage:
    """The simulator and the server. `crash()` SIGKILLs the server (from any thread);
    `restart()` starts it again on the same store and server root."""

    def __init__(self, procs: Processes, base: Path, seed: int) -> None:
        self.procs = procs
        self.base = base
        self.root = base / "root"  # the server root, standing for EFS on the workers too
        self.root.mkdir(parents=True, exist_ok=True)
        sandbox = base / "sandboxes"
        sandbox.mkdir(parents=True, exist_ok=True)
        self.aws = SimulatedAWS(timing.simulator_config(seed, str(sandbox), str(self.root)))
        self.server: Server | None = None
        self.crashes = 0
        self.starts = 0  # servers started so far: which storage the next one has
        self._config: dict[str, Any] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self.aws.start()
        subnets = _prepare_account(self.aws.endpoint_url)
        self._config = timing.app_config(self.aws.endpoint_url, subnets, str(self.base / "cache"))
        self.restart()

    def restart(self) -> Server:
        """Start the server (again) on the same store; waits until its API answers. Its
        storage alternates (`timing.STORAGES`), so S3 and EFS jobs both meet every fault."""
        self._config["EC2Backend"]["storage"] = timing.STORAGES[self.starts % 2]
        self.starts += 1
        server = start_ours(
            self.procs, self.base, self._config, env={"AWS_ENDPOINT_URL": self.aws.endpoint_url}
        )
        with self._lock:
            self.server = server
        return server

    def crash(self) -> bool:
        """SIGKILL the server now (a crash: nothing of it runs on). False if it was down."""
        with self._lock:
            server = self.server
            if server is None or server.proc.poll() is not None:
                return False
            os.kill(server.pid, signal.SIGKILL)
            self.crashes += 1
            self.server = None
        _reap(server.proc)
        return True

    @property
    def storage(self) -> str:
        """The storage of the server running now (of the last one started)."""
        return str(self._config.get("EC2Backend", {}).get("storage", ""))

    @property
    def up(self) -> bool:
        with self._lock:
            return self.server is not None

    def client(self) -> Client:
        with self._lock:
            if self.server is None:
                raise RuntimeError("the server is down")
            return self.server.client(timeout=30.0)

    def server_log_tail(self, lines: int = 40) -> str:
        with self._lock:
            return self.server.tail(lines) if self.server is not None else ""

    def stop(self) -> None:
        with self._lock:
            server, self.server = self.server, None
        if server is not None:
            self.procs.stop(server.proc)
        self.aws.stop()


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log(f"server {proc.pid} did not die after SIGKILL")


def _prepare_account(endpoint_url: str) -> list[str]:
    """What a site has before the app runs: an instance profile for the workers. Returns a
    default subnet in each of two zones."""
    import boto3

    kwargs: dict[str, Any] = {
        "region_name": timing.REGION,
        "endpoint_url": endpoint_url,
        "aws_access_key_id": DUMMY_AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": DUMMY_AWS["AWS_SECRET_ACCESS_KEY"],
    }
    ec2 = boto3.client("ec2", **kwargs)
    iam = boto3.client("iam", **kwargs)
    iam.create_instance_profile(InstanceProfileName=timing.INSTANCE_PROFILE)
    boto3.client("s3", **kwargs).create_bucket(Bucket=timing.BUCKET)
    found = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    zones = {s["AvailabilityZone"]: s["SubnetId"] for s in found["Subnets"]}
    return [zones[zone] for zone in sorted(zones)][:2]
