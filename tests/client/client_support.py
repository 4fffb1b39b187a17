"""Helpers of the client/CLI tests: a real `jupyter server` subprocess and small job scripts.

(A uniquely named module, not conftest: the test folders have no __init__.py.)
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto_support import DUMMY_AWS_ENV as AWS_ENV

REPO = Path(__file__).resolve().parents[2]
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
        return subprocess_env(
            JUPYTER_SERVER_URL=self.url,
            JUPYTER_TOKEN=self.token,
            JUPYTER_RUNTIME_DIR=str(self.runtime_dir),
        )

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
        "--allow-root",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
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


# Small job scripts run on the local backend.

HELLO = 'print("hello from job")\n'
FAIL = 'import sys\nprint("about to fail", flush=True)\nsys.exit(3)\n'
LINES = (
    'import time\nfor i in range(1, 6):\n    print(f"line {i}", flush=True)\n    time.sleep(0.1)\n'
)
# Runs until stopped (10 minutes at most, well past any test).
LONG = (
    'import time\nfor i in range(3000):\n    print(f"tick {i}", flush=True)\n    time.sleep(0.2)\n'
)


def write_scripts(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("hello.py", HELLO),
        ("fail.py", FAIL),
        ("lines.py", LINES),
        ("long.py", LONG),
    ):
        (folder / name).write_text(text)
