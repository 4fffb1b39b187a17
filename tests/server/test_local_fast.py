"""LocalBackend's process starts: off the event loop, bounded, at a lower priority, reaped.

Nothing here is timed: every check is structural, or polls until a state is reached."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.backends import local
from awsjobs_lab.backends.local import LocalBackend, group_members
from awsjobs_lab.backends.priority import job_niceness, job_priority
from awsjobs_lab.errors import BackendError
from awsjobs_lab.models import Job, JobState
from tests.server.helpers import WAIT_SECONDS, children_of, kill_leftovers, launch, make_job, poll


@pytest.fixture
async def plain(tmp_path: Path) -> AsyncIterator[tuple[LocalBackend, list[Job]]]:
    """A backend without the warm runner (start() not called)."""
    b = LocalBackend(stop_grace_seconds=2.0, poll_seconds=0.2)
    b.root_dir = str(tmp_path)
    jobs: list[Job] = []
    yield b, jobs
    kill_leftovers(jobs)


# -- starting processes ------------------------------------------------------------------


async def test_popen_runs_in_a_worker_thread_without_a_child_watcher(
    plain: tuple[LocalBackend, list[Job]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, jobs = plain
    threads: list[threading.Thread] = []
    real_popen = subprocess.Popen

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        return real_popen(*args, **kwargs)

    async def no_asyncio_subprocess(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("asyncio subprocesses start a child watcher per job")

    monkeypatch.setattr(local.subprocess, "Popen", spy)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", no_asyncio_subprocess)
    (tmp_path / "ok.py").write_text("print('ok')\n")
    job = make_job("ok.py")
    rec = await launch(backend, jobs, job)
    assert threads and threading.main_thread() not in threads
    assert rec.handle["pid"] == rec.handle["pgid"]
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    assert outcome.state is JobState.SUCCEEDED


async def test_concurrent_launches_are_bounded(
    plain: tuple[LocalBackend, list[Job]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, jobs = plain
    backend.max_concurrent_launches = 2
    gate = threading.Event()
    inside = 0
    most = 0
    lock = threading.Lock()
    real = backend._popen

    def slow_popen(*args: Any) -> Any:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        gate.wait(WAIT_SECONDS)
        try:
            return real(*args)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(backend, "_popen", slow_popen)
    (tmp_path / "ok.py").write_text("print('ok')\n")
    batch = [make_job("ok.py") for _ in range(5)]
    tasks = [asyncio.ensure_future(launch(backend, jobs, job)) for job in batch]

    async def two_inside() -> bool:
        return inside == 2

    await poll(two_inside, "two launches to be starting")
    await asyncio.sleep(0.1)  # the others had every chance to enter: they must be waiting
    assert most == 2 and not any(task.done() for task in tasks)
    gate.set()
    await asyncio.gather(*tasks)
    assert most == 2
    for job in batch:
        outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
        assert outcome.state is JobState.SUCCEEDED


async def test_a_stop_while_waiting_for_a_slot_starts_nothing(
    plain: tuple[LocalBackend, list[Job]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, jobs = plain
    backend.max_concurrent_launches = 1
    gate = threading.Event()
    real = backend._popen

    def blocked_popen(*args: Any) -> Any:
        gate.wait(WAIT_SECONDS)
        return real(*args)

    monkeypatch.setattr(backend, "_popen", blocked_popen)
    (tmp_path / "ok.py").write_text("print('ok')\n")
    first, second = make_job("ok.py"), make_job("ok.py")
    one = asyncio.ensure_future(launch(backend, jobs, first))
    two = asyncio.ensure_future(launch(backend, jobs, second))

    async def queued() -> bool:
        return second.id in backend._queued

    await poll(queued, "the second launch to wait for a slot")
    backend.request_stop(second.id)
    gate.set()
    await one
    with pytest.raises(BackendError):
        await two
    assert "pid" not in second.handle
    assert (await backend.wait(first)).state is JobState.SUCCEEDED
    assert not backend._stop_requested and not backend._queued


async def test_jobs_run_at_a_lower_priority_in_the_servers_session(
    plain: tuple[LocalBackend, list[Job]], tmp_path: Path
) -> None:
    """A group of its own (Stop's killpg), but our session: on Linux a session of its own is
    an autogroup of its own, where the job's niceness would not count against ours."""
    backend, jobs = plain
    backend.niceness = 3
    (tmp_path / "nice.py").write_text(PRIORITY_SCRIPT)
    job = make_job("nice.py")
    rec = await launch(backend, jobs, job)
    assert (await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)).state is JobState.SUCCEEDED
    log = (tmp_path / job.log_path).read_text()
    assert f"niceness {job_niceness(3)}\n" in log
    assert job_niceness(3) == min(19, os.nice(0) + 3)
    assert "idle policy True\n" in log
    assert f"session {os.getsid(0)} group {rec.handle['pgid']}\n" in log
    assert rec.handle["pgid"] != os.getpgid(0)


PRIORITY_SCRIPT = (
    "import os\nprint('niceness', os.nice(0))\n"
    "print('idle policy', os.sched_getscheduler(0) == os.SCHED_IDLE)\n"
    "print('session', os.getsid(0), 'group', os.getpgid(0))\n"
)


async def test_the_idle_policy_can_be_turned_off(
    plain: tuple[LocalBackend, list[Job]], tmp_path: Path
) -> None:
    backend, jobs = plain
    backend.idle_policy = False
    (tmp_path / "nice.py").write_text(PRIORITY_SCRIPT)
    job = make_job("nice.py")
    await launch(backend, jobs, job)
    assert (await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)).state is JobState.SUCCEEDED
    log = (tmp_path / job.log_path).read_text()
    assert "idle policy False\n" in log and f"niceness {job_niceness(19)}\n" in log


def test_jobs_default_to_the_lowest_priority() -> None:
    backend = LocalBackend()
    assert backend.niceness == 19 and backend.idle_policy is True
    assert job_niceness(19) == 19
    assert job_priority(19, True) == "19,idle" and job_priority(19, False) == "19"


async def test_no_zombie_is_left_after_jobs_end(
    plain: tuple[LocalBackend, list[Job]], tmp_path: Path
) -> None:
    backend, jobs = plain
    (tmp_path / "ok.py").write_text("print('ok')\n")
    (tmp_path / "bad.py").write_text("raise SystemExit(3)\n")
    batch = [make_job("ok.py"), make_job("bad.py"), make_job("ok.py")]
    for job in batch:
        await launch(backend, jobs, job)
    outcomes = [await asyncio.wait_for(backend.wait(job), WAIT_SECONDS) for job in batch]
    assert [o.exit_code for o in outcomes] == [0, 3, 0]
    pids = {job.handle["pid"] for job in batch}
    assert not [child for child in children_of(os.getpid()) if child[0] in pids]
    assert not backend._children


async def test_a_stopped_job_is_reaped(
    plain: tuple[LocalBackend, list[Job]], tmp_path: Path
) -> None:
    backend, jobs = plain
    (tmp_path / "long.py").write_text("import time\ntime.sleep(600)\n")
    job = make_job("long.py")
    await launch(backend, jobs, job)
    await backend.stop(job)
    assert not group_members(job.handle["pgid"])
    assert job.handle["pid"] not in [pid for pid, _ in children_of(os.getpid())]
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    assert outcome.state is JobState.FAILED
