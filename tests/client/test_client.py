"""The Python API (`awsjobs_lab.client`) against a real Jupyter server with the local backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from client_support import (
    REPO,
    ServerProc,
    free_port,
    start_server,
    stop_server,
    wait_until,
    write_scripts,
)

from awsjobs_lab import client
from awsjobs_lab.client import (
    AWSJobsAPIError,
    InvalidRequest,
    JobNotFound,
    JobWaitTimeout,
    ServerNotFound,
)


@pytest.fixture
def sub(server: ServerProc, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder under the server root with the test scripts; the current directory."""
    folder = server.root / "sub"
    write_scripts(folder)
    monkeypatch.chdir(folder)
    return folder


def _running(job: client.Job) -> bool:
    return job.refresh().state == "running"


def test_import_needs_no_tornado_or_jupyter_server() -> None:
    code = (
        "import sys, awsjobs_lab.client, awsjobs_lab.cli\n"
        "bad = [m for m in ('tornado', 'jupyter_server', 'aiobotocore') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_run_wait_log_relative_path(sub: Path) -> None:
    job = client.run_job("hello.py", memory=2, cpu=1, log_file="hello.log")
    assert job.path == "sub/hello.py"
    assert job.log_path == "sub/hello.log"
    assert job.backend == "local"
    assert job.data["memory_gib"] == 2
    assert job.memory_gib == 2 and job.cpus == 1 and job.spot is False  # server fields
    with pytest.raises(AttributeError):
        _ = job.no_such_field
    assert job.wait(poll=0.1) == "succeeded"
    assert job.exit_code == 0
    assert "".join(job.log()) == "hello from job\n"
    assert (sub / "hello.log").read_text() == "hello from job\n"
    # The same job, seen from the list and by id (one store, one source of truth).
    assert job.id in [j.id for j in client.list_jobs()]
    assert client.get_job(job.id).state == "succeeded"
    assert job.id in [j.id for j in client.list_jobs(state="succeeded")]
    assert job.id not in [j.id for j in client.list_jobs(state=["running", "pending"])]


def test_defaults_are_the_servers(sub: Path, server: ServerProc) -> None:
    job = client.run_job("hello.py")
    defaults = server.api("GET", "config")["defaults"]
    assert job.data["memory_gib"] == defaults["memory_gib"]
    assert job.data["cpus"] == defaults["cpus"]
    assert job.data["max_lifetime_minutes"] == defaults["max_lifetime_minutes"]
    assert job.log_path == f"sub/hello.{job.id}.log"
    job.wait(poll=0.1)


def test_follow_yields_every_line_and_ends(sub: Path) -> None:
    job = client.run_job("lines.py", env={"GREETING": "x"})
    chunks = list(job.log(follow=True, poll=0.05))
    assert "".join(chunks) == "".join(f"line {i}\n" for i in range(1, 6))
    assert job.state == "succeeded"  # refreshed at the end of the log
    # The offset is kept: nothing new after the end.
    assert list(job.log()) == []
    assert job.read_log().endswith("line 5\n")


def test_failed_job(sub: Path) -> None:
    job = client.run_job("fail.py")
    assert job.wait(poll=0.1) == "failed"
    assert job.exit_code == 3
    assert not job.succeeded


def test_stop_and_wait_timeout_never_stops(sub: Path) -> None:
    job = client.run_job(sub / "long.py")  # an absolute path works too
    assert job.path == "sub/long.py"
    wait_until(lambda: _running(job))
    with pytest.raises(JobWaitTimeout) as info:
        job.wait(timeout=0.2, poll=0.05)
    assert isinstance(info.value, TimeoutError)
    assert job.id in str(info.value)
    assert job.refresh().state == "running"  # waiting ran out; the job did not stop
    stopped = client.stop_job(job.id)
    assert stopped.state in ("stopping", "stopped")
    assert job.wait(poll=0.1) == "stopped"
    # Idempotent: a finished job is returned as it is.
    assert job.stop().state == "stopped"


def test_server_error_message_reaches_the_caller(sub: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        client.run_job("missing.py")
    assert info.value.status == 400
    assert "missing.py" in info.value.message
    assert "does not exist" in info.value.message
    assert isinstance(info.value, ValueError)

    with pytest.raises(InvalidRequest) as info:
        client.run_job("hello.py", cpu=0)
    assert info.value.message.startswith("cpus:")


def test_unknown_job_is_job_not_found(server: ServerProc) -> None:
    with pytest.raises(JobNotFound) as info:
        client.get_job("0123456789abcdef")
    assert info.value.status == 404
    with pytest.raises(JobNotFound) as info:
        client.stop_job("not-a-job-id")
    assert "not-a-job-id" in info.value.message
    assert "<html" not in info.value.message.lower()


def test_path_outside_the_root_is_refused_before_any_request(
    sub: Path, server: ServerProc, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.py"
    outside.write_text("print(1)\n")
    before = len(client.list_jobs())
    with pytest.raises(ValueError, match="outside the Jupyter server root"):
        client.run_job(outside)
    with pytest.raises(ValueError, match="outside"):
        client.run_job("../../elsewhere.py")
    with pytest.raises(ValueError, match="outside"):
        client.run_job("hello.py", log_file=tmp_path / "x.log")
    assert len(client.list_jobs()) == before


def test_bad_token_is_forbidden(server: ServerProc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_TOKEN", "wrong")
    with pytest.raises(AWSJobsAPIError) as info:
        client.list_jobs()
    assert info.value.status == 403


def test_no_server_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: ServerProc
) -> None:
    monkeypatch.delenv("JUPYTER_SERVER_URL")
    monkeypatch.delenv("JUPYTER_TOKEN")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "empty"))
    with pytest.raises(ServerNotFound) as info:
        client.list_jobs()
    assert str(info.value) == client.NO_SERVER_MESSAGE
    assert "JUPYTER_SERVER_URL" in str(info.value)


def test_url_that_does_not_answer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:

    monkeypatch.setenv("JUPYTER_SERVER_URL", f"http://127.0.0.1:{free_port()}/")
    monkeypatch.setenv("JUPYTER_TOKEN", "x")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(ServerNotFound, match="did not answer"):
        client.list_jobs()


def test_discovery_from_runtime_dir(
    server: ServerProc, sub: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No JUPYTER_SERVER_URL: the jpserver files are read. A dead server's file and a live but
    silent one (with a deeper, better-matching root) are skipped; the answering one is used."""
    monkeypatch.delenv("JUPYTER_SERVER_URL")
    monkeypatch.delenv("JUPYTER_TOKEN")
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (real,) = server.runtime_dir.glob("jpserver-*.json")
    (runtime / real.name).write_text(real.read_text())

    silent = {
        "url": f"http://127.0.0.1:{free_port()}/",
        "token": "t",
        "root_dir": str(sub),
        "pid": os.getpid(),
    }
    (runtime / "jpserver-999991.json").write_text(json.dumps(silent))
    dead = {**silent, "pid": 2**22 + 12345}
    (runtime / "jpserver-999992.json").write_text(json.dumps(dead))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))

    found = client.connect("hello.py")
    assert found.server.url == server.url
    assert found.server.root_dir == str(server.root)
    job = client.run_job("hello.py")
    assert job.path == "sub/hello.py"
    assert job.wait(poll=0.1) == "succeeded"
    assert client.get_job(job.id).id == job.id  # no script: any answering server

    # A script under no running server's root: a clear ValueError, not "no server".
    elsewhere = tmp_path / "other.py"
    elsewhere.write_text("print(1)\n")
    with pytest.raises(ValueError, match="not under the root of any running Jupyter server"):
        client.run_job(elsewhere)


def test_url_server_root_from_its_jpserver_file(server: ServerProc, sub: Path) -> None:
    # JUPYTER_SERVER_URL is set (fixture); the root comes from the matching jpserver file.
    found = client.connect()
    assert found.server.root_dir == str(server.root)
    assert found.server_path("lines.py") == "sub/lines.py"


def test_url_server_without_known_root(
    server: ServerProc, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))  # no jpserver file to learn from
    found = client.connect()
    assert found.server.root_dir is None
    assert found.server_path("sub/hello.py") == "sub/hello.py"  # as given, root-relative
    with pytest.raises(ValueError, match="JUPYTER_SERVER_ROOT"):
        found.server_path("/abs/hello.py")
    with pytest.raises(InvalidRequest, match="set JUPYTER_SERVER_ROOT"):
        client.run_job("no-such-script.py")
    monkeypatch.setenv("JUPYTER_SERVER_ROOT", str(server.root))
    assert client.connect().server_path(server.root / "sub" / "hello.py") == "sub/hello.py"


def test_instances_without_ec2(server: ServerProc) -> None:
    """The local-only server: the instance endpoints answer with a clear error, as exceptions."""
    with pytest.raises(AWSJobsAPIError) as info:
        client.list_job_instances()
    assert info.value.status in (400, 502)
    assert info.value.message
    with pytest.raises(AWSJobsAPIError) as info:
        client.stop_instances(["not-an-id"])
    assert info.value.status == 400


def test_two_servers_script_picks_its_root_and_job_ids_are_found(
    server: ServerProc, sub: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two running servers (no JUPYTER_SERVER_URL): a script goes to the server whose root
    holds it; a job id is looked up on each answering server until one has it."""
    other = start_server(tmp_path / "other")
    try:
        write_scripts(other.root)
        runtime = tmp_path / "runtime"
        runtime.mkdir()
        for source in (server.runtime_dir, other.runtime_dir):
            for f in source.glob("jpserver-*.json"):
                (runtime / f.name).write_text(f.read_text())
        monkeypatch.delenv("JUPYTER_SERVER_URL")
        monkeypatch.delenv("JUPYTER_TOKEN")
        monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))

        here = client.run_job("hello.py")  # cwd: <first root>/sub
        there = client.run_job(other.root / "hello.py")
        assert here.client.server.url == server.url
        assert there.client.server.url == other.url
        assert there.path == "hello.py"

        monkeypatch.chdir(tmp_path)  # under neither root
        assert client.get_job(here.id).id == here.id
        assert client.get_job(there.id).id == there.id
        assert client.stop_job(there.id).id == there.id
        with pytest.raises(JobNotFound):
            client.get_job("0123456789abcdef")
    finally:
        stop_server(other)


def test_wait_and_follow_ride_out_a_server_that_is_briefly_away(
    server: ServerProc, sub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wait()/log(follow=True) retry while the server does not answer (a restart: jobs survive
    it), instead of failing the caller's loop."""
    job = client.run_job("lines.py")
    real_request = client.Client.request
    outages = {"left": 4}

    def flaky(self: client.Client, method: str, path: str, **kw: Any) -> Any:
        if outages["left"] > 0 and method == "GET" and path.startswith("jobs/"):
            outages["left"] -= 1
            raise ServerNotFound("The Jupyter server did not answer (test)")
        return real_request(self, method, path, **kw)

    monkeypatch.setattr(client, "RECONNECT_PAUSE", 0.01)
    monkeypatch.setattr(client.Client, "request", flaky)
    text = "".join(job.log(follow=True, poll=0.05))
    assert text == "".join(f"line {i}\n" for i in range(1, 6))
    outages["left"] = 2
    assert job.wait(poll=0.05) == "succeeded"
    assert outages["left"] == 0

    monkeypatch.setattr(client, "RECONNECT_SECONDS", 0.0)
    outages["left"] = 1
    with pytest.raises(ServerNotFound):
        job.wait(poll=0.05)


def test_http_proxy_is_not_used_for_a_local_server(
    server: ServerProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert isinstance(client.list_jobs(), list)
