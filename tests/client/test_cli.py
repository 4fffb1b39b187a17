"""The `awsjobs` command, as a subprocess (`python -m awsjobs_lab.cli`), against a real Jupyter
server with the local backend: exit codes, --json, tables, errors without tracebacks, and Ctrl-C
during --follow that stops following, never the job."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from client_support import ServerProc, free_port, subprocess_env, wait_until, write_scripts

SUBCOMMANDS = [
    "run",
    "list",
    "show",
    "logs",
    "stop",
    "instances",
    "stop-instances",
    "build-image",
    "sweep",
]


@pytest.fixture
def sub(server: ServerProc) -> Path:
    folder = server.root / "clisub"
    write_scripts(folder)
    return folder


def awsjobs(
    *args: str, env: dict[str, str], cwd: Path, check_no_traceback: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "awsjobs_lab.cli", *args],
        env=env,
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=240,
    )
    if check_no_traceback:
        assert "Traceback" not in result.stderr, result.stderr
    return result


def test_help_on_every_subcommand(server: ServerProc) -> None:
    result = awsjobs("--help", env=server.env, cwd=server.root)
    assert result.returncode == 0
    assert "exit status" in result.stdout
    for name in SUBCOMMANDS:
        result = awsjobs(name, "--help", env=server.env, cwd=server.root)
        assert result.returncode == 0, name
        assert "examples:" in result.stdout, name
    run_help = awsjobs("run", "--help", env=server.env, cwd=server.root).stdout
    for option in ("--memory", "--cpu", "--spot", "--log-file", "--wait", "--follow"):
        assert option in run_help


def test_run_wait_exit_codes_and_json(server: ServerProc, sub: Path) -> None:
    ok = awsjobs("run", "hello.py", "--memory", "2", "--cpu", "1", "--wait", "--json",
                 env=server.env, cwd=sub)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    job = json.loads(ok.stdout)
    assert job["state"] == "succeeded"
    assert job["path"] == "clisub/hello.py"  # relative to the cwd, sent relative to the root
    assert job["memory_gib"] == 2

    failed = awsjobs("run", "fail.py", "--wait", env=server.env, cwd=sub)
    assert failed.returncode == 1
    assert "failed" in failed.stderr and "exit code 3" in failed.stderr

    started = awsjobs("run", "hello.py", "--log-file", "out.log", env=server.env, cwd=sub)
    assert started.returncode == 0
    job_id = started.stdout.strip()
    assert len(job_id) == 16
    assert "clisub/out.log" in started.stderr


def test_run_follow_prints_the_log(server: ServerProc, sub: Path) -> None:
    result = awsjobs("run", "lines.py", "--follow", "--poll", "0.1", env=server.env, cwd=sub)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(f"line {i}\n" for i in range(1, 6))
    assert "succeeded" in result.stderr
    assert "[awsjobs] running: running\n" in result.stderr  # phase changes, as they happen


def test_list_show_logs(server: ServerProc, sub: Path) -> None:
    job = json.loads(awsjobs("run", "hello.py", "--wait", "--json", env=server.env, cwd=sub).stdout)

    listed = awsjobs("list", "--json", env=server.env, cwd=sub)
    assert listed.returncode == 0
    assert job["id"] in [j["id"] for j in json.loads(listed.stdout)]

    table = awsjobs("list", "--state", "succeeded", env=server.env, cwd=sub)
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "STATE", "BACKEND", "PATH", "CREATED", "ELAPSED",
                              "INSTANCE", "COST"]  # fmt: skip
    assert any(r.startswith(job["id"]) and "succeeded" in r for r in rows)
    running = awsjobs("list", "--state", "running", "--json", env=server.env, cwd=sub)
    assert job["id"] not in running.stdout

    shown = awsjobs("show", job["id"], env=server.env, cwd=sub)
    assert "state:" in shown.stdout and "succeeded" in shown.stdout
    phases = next(line for line in shown.stdout.splitlines() if line.startswith("phases:"))
    assert [p.split()[0] for p in phases.split(":", 1)[1].split(",")] == [
        "preparing", "running", "finishing"
    ]  # fmt: skip

    logs = awsjobs("logs", job["id"], env=server.env, cwd=sub)
    assert logs.returncode == 0
    assert logs.stdout == "hello from job\n"


def test_stop(server: ServerProc, sub: Path) -> None:
    job_id = awsjobs("run", "long.py", env=server.env, cwd=sub).stdout.strip()
    wait_until(lambda: server.api("GET", f"jobs/{job_id}")["state"] == "running")
    stopped = awsjobs("stop", job_id, "--wait", "--poll", "0.1", env=server.env, cwd=sub)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"Job {job_id}: stopped"
    again = awsjobs("stop", job_id, "--json", env=server.env, cwd=sub)
    assert json.loads(again.stdout)["state"] == "stopped"


def test_ctrl_c_during_follow_stops_following_not_the_job(server: ServerProc, sub: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "awsjobs_lab.cli", "run", "long.py", "--follow", "--poll", "0.1"],
        env=server.env,
        cwd=str(sub),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    job_id = ""
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the job's first log line: it is running and followed
        assert first.startswith("tick ")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130
        assert "Traceback" not in err
        assert "keeps running" in err
        job_id = err.split("Started job ", 1)[1].split()[0]
        assert f"awsjobs stop {job_id}" in err
        # The job is still running after the CLI is gone.
        assert server.api("GET", f"jobs/{job_id}")["state"] == "running"
        follow = subprocess.Popen(
            [sys.executable, "-m", "awsjobs_lab.cli", "logs", job_id, "-f", "--poll", "0.1"],
            env=server.env,
            cwd=str(sub),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follow.stdout is not None
        assert follow.stdout.readline() == "tick 0\n"
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=120)
        assert follow.returncode == 130
        assert "keeps running" in err
        assert server.api("GET", f"jobs/{job_id}")["state"] == "running"
    finally:
        if proc.poll() is None:
            proc.kill()
        if job_id:
            server.api("POST", f"jobs/{job_id}/stop")


def test_server_error_message_without_traceback(server: ServerProc, sub: Path) -> None:
    result = awsjobs("run", "missing.py", env=server.env, cwd=sub)
    assert result.returncode == 3
    assert "path: 'clisub/missing.py' does not exist (HTTP 400)" in result.stderr

    result = awsjobs("logs", "0123456789abcdef", env=server.env, cwd=sub)
    assert result.returncode == 3
    assert "HTTP 404" in result.stderr

    result = awsjobs("stop-instances", "bogus", env=server.env, cwd=sub)
    assert result.returncode == 3
    assert "HTTP 400" in result.stderr


def test_bad_arguments(server: ServerProc, sub: Path, tmp_path: Path) -> None:
    assert awsjobs("run", env=server.env, cwd=sub).returncode == 2
    assert awsjobs("run", "hello.py", "--memory", "lots", env=server.env, cwd=sub).returncode == 2
    bad = awsjobs("run", "x.ipynb", "--param", "novalue", env=server.env, cwd=sub)
    assert bad.returncode == 2
    assert "--param must be KEY=VALUE" in bad.stderr
    outside = tmp_path / "o.py"
    outside.write_text("print(1)\n")
    result = awsjobs("run", str(outside), env=server.env, cwd=sub)
    assert result.returncode == 2
    assert "outside the Jupyter server root" in result.stderr


def test_no_server_found(tmp_path: Path) -> None:
    env = subprocess_env(JUPYTER_RUNTIME_DIR=str(tmp_path))
    result = awsjobs("list", env=env, cwd=tmp_path)
    assert result.returncode == 3
    assert "No running Jupyter server with awsjobs-lab was found" in result.stderr

    env = subprocess_env(JUPYTER_SERVER_URL=f"http://127.0.0.1:{free_port()}/", JUPYTER_TOKEN="x")
    result = awsjobs("list", env=env, cwd=tmp_path)
    assert result.returncode == 3
    assert "did not answer" in result.stderr


def test_found_from_runtime_dir(server: ServerProc, sub: Path) -> None:
    """No JUPYTER_SERVER_URL: the server is found from its jpserver file."""
    env = subprocess_env(JUPYTER_RUNTIME_DIR=str(server.runtime_dir))
    result = awsjobs("run", "hello.py", "--wait", "--json", env=env, cwd=sub)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["path"] == "clisub/hello.py"


def test_jupyter_awsjobs(server: ServerProc, sub: Path, tmp_path: Path) -> None:
    """`jupyter awsjobs ...` runs `jupyter-awsjobs` from PATH (here a stand-in for the
    console script that `pip install` creates)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "jupyter-awsjobs"
    shim.write_text(
        f"#!{sys.executable}\nimport sys\nfrom awsjobs_lab.cli import main\nsys.exit(main())\n"
    )
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env: dict[str, Any] = dict(server.env)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_core.command", "awsjobs", "list", "--json"],
        env=env,
        cwd=str(sub),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)
    helped = subprocess.run(
        [str(shim), "--help"], env=env, capture_output=True, text=True, timeout=120
    )
    assert helped.stdout.startswith("usage: jupyter awsjobs")


def test_ctrl_c_during_wait_leaves_the_job_running(server: ServerProc, sub: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "awsjobs_lab.cli", "run", "long.py", "--wait", "--poll", "0.1"],
        env=server.env,
        cwd=str(sub),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    job_id = ""
    try:
        assert proc.stderr is not None
        started = proc.stderr.readline()  # "Started job <id> ...": it is now waiting
        job_id = started.split("Started job ", 1)[1].split()[0]
        wait_until(lambda: server.api("GET", f"jobs/{job_id}")["state"] == "running")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130
        assert "Traceback" not in err
        assert f"awsjobs stop {job_id}" in err
        assert server.api("GET", f"jobs/{job_id}")["state"] == "running"
    finally:
        if proc.poll() is None:
            proc.kill()
        if job_id:
            server.api("POST", f"jobs/{job_id}/stop")


def test_build_image_without_credentials_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in subprocess_env().items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    }
    env.update(
        AWS_EC2_METADATA_DISABLED="true",  # never ask an instance metadata service
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        # Nothing listens there: even with credentials no request could reach AWS.
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
    )
    result = awsjobs("build-image", "--region", "us-east-1", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "awsjobs build-image: AWS:" in result.stderr
    assert "credentials" in result.stderr.lower()
