"""LocalBackend: detached process groups, exit codes through the wrapper, stop, re-attach."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.backends.local import LocalBackend, group_members, is_alive
from awsjobs_lab.models import Job, JobState
from tests.server.helpers import WAIT_SECONDS, Recorder, kill_leftovers, make_job, poll


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[LocalBackend]:
    b = LocalBackend(stop_grace_seconds=2.0, poll_seconds=0.2)
    b.root_dir = str(tmp_path)
    started: list[Job] = []
    b.launch = _tracking(b.launch, started)  # type: ignore[method-assign]
    yield b
    kill_leftovers(started)  # safety net: never leave a process behind


def _tracking(launch: Any, started: list[Job]) -> Any:
    async def wrapped(job: Job, record: Any) -> None:
        started.append(job)
        await launch(job, record)

    return wrapped


def script(tmp_path: Path, name: str, text: str) -> Job:
    (tmp_path / name).write_text(text)
    return make_job(name)


async def run(backend: LocalBackend, job: Job) -> Recorder:
    rec = Recorder()
    await backend.launch(job, rec)
    return rec


async def test_success_with_output_env_and_cwd(backend: LocalBackend, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    job = script(
        tmp_path,
        "d/ok.py",
        "import os\nprint('hello', os.environ['GREETING'], os.environ['AWSJOBS_JOB_ID'])\n"
        "print(os.getcwd())\n",
    )
    job.env = {"GREETING": "bonjour"}
    job.log_path = "d/ok.log"
    rec = await run(backend, job)
    assert rec.fields["command"] == [sys.executable, "ok.py"]
    assert rec.handle["pid"] == rec.handle["pgid"] > 0
    assert isinstance(rec.handle["start_time"], int)
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    assert outcome.state is JobState.SUCCEEDED and outcome.exit_code == 0
    log = (tmp_path / "d/ok.log").read_text()
    assert f"hello bonjour {job.id}\n" in log
    assert str((tmp_path / "d").resolve()) in log
    assert (tmp_path / ".awsjobs" / "jobs" / job.id / "exit_code").read_text() == "0\n"


async def test_failure_exit_code(backend: LocalBackend, tmp_path: Path) -> None:
    job = script(tmp_path, "bad.py", "import sys\nprint('oops', file=sys.stderr)\nsys.exit(3)\n")
    await run(backend, job)
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    assert (outcome.state, outcome.exit_code, outcome.error) == (
        JobState.FAILED,
        3,
        "exited with code 3",
    )
    assert "oops" in (tmp_path / job.log_path).read_text()


async def test_killed_by_a_signal(backend: LocalBackend, tmp_path: Path) -> None:
    job = script(tmp_path, "die.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    await run(backend, job)
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    assert (outcome.state, outcome.exit_code, outcome.error) == (
        JobState.FAILED,
        -9,
        "killed by SIGKILL",
    )


async def test_missing_interpreter_is_reported(backend: LocalBackend, tmp_path: Path) -> None:
    job = script(tmp_path, "x.qmd", "# quarto\n")  # `quarto` is not installed here
    await run(backend, job)
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    assert outcome.state is JobState.FAILED and outcome.exit_code == 127
    assert "cannot run 'quarto'" in (tmp_path / job.log_path).read_text()


@pytest.mark.parametrize("name", ["a;rm -rf ~.py", "-rf.py", 'it\'s "quoted" $(x).py', "ü ☃.py"])
async def test_hostile_names_run_as_file_names(
    backend: LocalBackend, tmp_path: Path, name: str
) -> None:
    job = script(tmp_path, name, "import sys\nprint('ran', sys.argv[0])\n")
    await run(backend, job)
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    assert outcome.state is JobState.SUCCEEDED, (tmp_path / job.log_path).read_text()
    expected = f"./{name}" if name.startswith("-") else name
    assert (tmp_path / job.log_path).read_text() == f"ran {expected}\n"


LONG = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "print('started', child.pid, flush=True)\n"
    "time.sleep(600)\n"
)


async def started(tmp_path: Path, job: Job) -> None:
    async def printed() -> bool:
        return "started" in (tmp_path / job.log_path).read_text()

    await poll(printed, "the job to print 'started'")


async def test_stop_kills_the_whole_group(backend: LocalBackend, tmp_path: Path) -> None:
    job = script(tmp_path, "long.py", LONG)
    rec = await run(backend, job)
    await started(tmp_path, job)
    pgid = rec.handle["pgid"]
    assert len(group_members(pgid)) == 3  # wrapper, script, grandchild
    waiter = asyncio.ensure_future(backend.wait(job))
    await backend.stop(job)
    assert group_members(pgid) == []
    outcome = await asyncio.wait_for(waiter, WAIT_SECONDS)
    assert outcome.state is JobState.FAILED  # what wait sees; the service records "stopped"
    await backend.stop(job)  # idempotent


async def test_stop_escalates_to_sigkill(backend: LocalBackend, tmp_path: Path) -> None:
    job = script(
        tmp_path,
        "stubborn.py",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('started', flush=True)\ntime.sleep(600)\n",
    )
    backend.stop_grace_seconds = 0.5
    rec = await run(backend, job)
    await started(tmp_path, job)
    await backend.stop(job)
    assert group_members(rec.handle["pgid"]) == []


async def test_stop_of_a_never_launched_job_is_a_no_op(backend: LocalBackend) -> None:
    await backend.stop(make_job())


async def test_reattach_and_wait_after_a_restart(backend: LocalBackend, tmp_path: Path) -> None:
    job = script(
        tmp_path,
        "slow.py",
        "import sys, time\nprint('started', flush=True)\n"
        "while not __import__('os').path.exists('go'): time.sleep(0.05)\nsys.exit(5)\n",
    )
    await run(backend, job)
    await started(tmp_path, job)
    # A new backend (a restarted server) knows the job only from its persisted handle.
    fresh = LocalBackend(poll_seconds=0.2)
    fresh.root_dir = str(tmp_path)
    assert await fresh.reattach(job) is None
    waiter = asyncio.ensure_future(fresh.wait(job))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    (tmp_path / "go").write_text("")
    outcome = await asyncio.wait_for(waiter, WAIT_SECONDS)
    assert (outcome.state, outcome.exit_code) == (JobState.FAILED, 5)
    again = await fresh.reattach(job)
    assert again is not None and again.exit_code == 5


async def test_reattach_dead_without_exit_code(backend: LocalBackend, tmp_path: Path) -> None:
    job = script(
        tmp_path, "gone.py", "print('started', flush=True)\nimport time\ntime.sleep(600)\n"
    )
    rec = await run(backend, job)
    await started(tmp_path, job)
    os.killpg(rec.handle["pgid"], signal.SIGKILL)  # the wrapper dies too: no exit code file

    async def dead() -> bool:
        return not is_alive(rec.handle["pid"], rec.handle["start_time"])

    await poll(dead, "the process group to die")
    fresh = LocalBackend()
    fresh.root_dir = str(tmp_path)
    outcome = await fresh.reattach(job)
    assert outcome is not None and outcome.state is JobState.FAILED
    assert outcome.error == "the process ended while the server was down, without an exit code"


async def test_reattach_guards_against_pid_reuse(backend: LocalBackend, tmp_path: Path) -> None:
    other = await asyncio.create_subprocess_exec("sleep", "600", start_new_session=True)
    try:
        job = make_job(handle={"pid": other.pid, "pgid": other.pid, "start_time": 1})
        (tmp_path / ".awsjobs" / "jobs" / job.id).mkdir(parents=True)
        (tmp_path / ".awsjobs" / "jobs" / job.id / "exit_code").write_text("0\n")
        # The pid is alive but started at another time: not the job's process any more.
        outcome = await backend.reattach(job)
        assert outcome is not None and outcome.state is JobState.SUCCEEDED
        await backend.stop(job)  # must not signal the unrelated process
        assert other.returncode is None and group_members(other.pid) == [other.pid]
    finally:
        other.kill()
        await other.wait()


async def test_reattach_without_a_pid(backend: LocalBackend) -> None:
    outcome = await backend.reattach(make_job(state=JobState.LAUNCHING))
    assert outcome is not None and outcome.state is JobState.FAILED
