"""Starting the two Jupyter servers the benchmarks talk to, each in its own temp root.

Both listen on 127.0.0.1 with a random token. Each gets its own Jupyter config/data/runtime
directories, so neither reads the user's settings or writes into the user's data directory.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .util import REPO, WORK, Client, Processes, free_port

PEER_VENV = WORK / "peer-venv"
PEER_REQUIREMENTS = ["jupyter_scheduler==2.12.1", "jupyterlab"]
OURS_PYTHON = Path(sys.executable)

HELLO_NOTEBOOK: dict[str, Any] = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "hello",
            "metadata": {},
            "outputs": [],
            "source": ["print('hello')"],
        }
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_peer_venv() -> Path:
    """The peer's own venv (jupyter_scheduler 2.12.1 + jupyterlab), created once and reused."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".requirements"
    wanted = "\n".join(PEER_REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    log(f"creating the peer venv {PEER_VENV.relative_to(REPO)} ({', '.join(PEER_REQUIREMENTS)})")
    WORK.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *PEER_REQUIREMENTS,
        ],
        check=True,
        timeout=600,
    )
    stamp.write_text(wanted)
    return python


def package_version(python: Path, dist: str) -> str:
    out = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return out.stdout.strip() or "missing"


@dataclass
class Server:
    """One running Jupyter server."""

    name: str
    root: Path  # the server's root_dir (the notebooks live here)
    home: Path  # config/data/runtime dirs and the server's own log
    port: int
    token: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def client(self, timeout: float = 60.0) -> Client:
        return Client(self.port, self.token, timeout)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_server(
    procs: Processes,
    name: str,
    python: Path,
    base: Path,
    server_config: dict[str, Any],
    env_extra: dict[str, str] | None = None,
    app: str = "server",
    timeout: float = 90.0,
) -> Server:
    """Start `jupyter <app>` from `python`'s venv with the given config (written as
    `jupyter_server_config.json` in a private config dir) and wait until its API answers."""
    root = base / "root"
    home = base / "home"
    for sub in (root, home / "config", home / "data", home / "runtime", home / "ipython"):
        sub.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    port = free_port()
    config: dict[str, Any] = {
        "ServerApp": {
            "ip": "127.0.0.1",
            "port": port,
            "port_retries": 0,
            "open_browser": False,
            "root_dir": str(root),
            "allow_remote_access": False,
            "allow_root": True,  # the dev container runs as root
        },
        "IdentityProvider": {"token": token},
    }
    for section, values in server_config.items():
        config.setdefault(section, {}).update(values)
    (home / "config" / "jupyter_server_config.json").write_text(json.dumps(config, indent=1))
    env = procs.env(
        {
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_DATA_DIR": str(home / "data"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "IPYTHONDIR": str(home / "ipython"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            **(env_extra or {}),
        }
    )
    log_path = home / "server.log"
    module = {"server": "jupyter_server", "lab": "jupyterlab"}[app]
    argv = [str(python), "-m", module]
    proc = procs.start(argv, cwd=root, env=env, log=log_path)
    server = Server(name, root, home, port, token, proc, log_path)
    client = server.client(timeout=5.0)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} server exited ({proc.returncode}):\n{server.tail()}")
            try:
                if client.get("/api/status", ok=False).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name} server did not answer in {timeout:.0f} s:\n{server.tail()}"
                )
            time.sleep(0.1)
    finally:
        client.close()
    return server
