"""Helpers of the server tests: polling without timed assertions, jobs built in memory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.backends.local import LocalBackend, group_members
from awsjobs_lab.backends.procfs import all_pids, pids_with_environ, proc_stat
from awsjobs_lab.errors import Conflict
from awsjobs_lab.models import Job, JobState, Transition, new_job_id, now
from awsjobs_lab.requests import LaunchDefaults, parse_launch_request
from awsjobs_lab.store import MAX_PAGE, JobStore

# Generous: a loaded 2-core CI machine can take many seconds to start Python or papermill.
WAIT_SECONDS = 120.0


async def poll(
    check: Callable[[], Awaitable[Any]], what: str, timeout: float = WAIT_SECONDS
) -> Any:
    """Call `check` until it returns something truthy; fail with `what` after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.02
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def assert_error(code: int, body: Any, status: int, *words: str) -> None:
    """An error answer: `status`, the JSON `{"message", "reason"}` (never a traceback), and
    each of `words` in its message."""
    assert code == status, body
    assert set(body) == {"message", "reason"}, body
    for word in words:
        assert word in body["message"], body


async def open_after_a_kill(store: JobStore, seconds: float = 5.0) -> None:
    """Open `store` right after its server was SIGKILLed. A child that server was starting
    holds the store's lock between its fork and its exec (the lock fd closes on exec), so for
    a moment the lock is not free yet; a later open would simply find it free."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            await store.open()
            return
        except Conflict:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def stored_jobs(path: Path, active_only: bool = False) -> list[Job]:
    """The jobs of the store file at `path` (a safety net's view, after the services closed)."""
    store = JobStore(path)
    await open_after_a_kill(store)
    try:
        if active_only:
            return await store.list_active()
        return (await store.list_jobs(limit=MAX_PAGE))[0]
    finally:
        await store.close()


def parse_run_py(tmp_path: Path, **body: Any) -> Job:
    """A launch request for `run.py` (written in `tmp_path`, the root) with these fields,
    validated with the default settings and the backends local and ec2."""
    (tmp_path / "run.py").write_text("pass\n")
    return parse_launch_request(
        {"path": "run.py", **body},
        root_dir=tmp_path,
        backends=["local", "ec2"],
        defaults=LaunchDefaults(),
    )


def make_job(path: str = "script.py", backend: str = "local", **fields: Any) -> Job:
    at = fields.pop("created_at", None) or now()
    job_id = fields.pop("id", None) or new_job_id()
    values: dict[str, Any] = {
        "id": job_id,
        "path": path,
        "backend": backend,
        "state": JobState.PENDING,
        "created_at": at,
        "updated_at": at,
        "memory_gib": 4.0,
        "cpus": 1,
        "spot": False,
        "max_lifetime_minutes": 240,
        "log_path": f"{path.rsplit('.', 1)[0]}.{job_id}.log",
        "history": [Transition(JobState.PENDING, at, "created")],
    }
    values.update(fields)
    return Job(**values)


class Recorder:
    """Stands in for the service's `record` callback: keeps what a backend records."""

    def __init__(self) -> None:
        self.handle: dict[str, Any] = {}
        self.fields: dict[str, Any] = {}

    async def __call__(self, handle: dict[str, Any] | None = None, **fields: Any) -> None:
        self.handle.update(handle or {})
        self.fields.update(fields)


def kill_leftovers(jobs: list[Job]) -> None:
    """Safety net of local-backend tests: never leave a job's process group behind."""
    for job in jobs:
        pgid = job.handle.get("pgid")
        if isinstance(pgid, int) and group_members(pgid):
            os.killpg(pgid, signal.SIGKILL)


async def launch(backend: LocalBackend, jobs: list[Job], job: Job) -> Recorder:
    """Launch `job`, remembered in `jobs` (for `kill_leftovers`); what it recorded."""
    jobs.append(job)
    rec = Recorder()
    await backend.launch(job, rec)
    return rec


def children_of(pid: int) -> list[tuple[int, str]]:
    """(pid, state letter) of the processes whose parent is `pid`, zombies included."""
    found = []
    for child in all_pids():
        stat = proc_stat(child)
        if stat is not None and stat.ppid == pid:
            found.append((child, stat.state))
    return found


def processes_of_job(job_id: str) -> list[int]:
    """Live processes whose environment holds `AWSJOBS_JOB_ID=<job_id>` (the wrapper, the
    job): found whether or not any pid was ever recorded."""
    return pids_with_environ(f"AWSJOBS_JOB_ID={job_id}")


def kill_processes_of(job_ids: list[str]) -> None:
    """Safety net when pids may never have been recorded: kill by the job id in the env."""
    for job_id in job_ids:
        for pid in processes_of_job(job_id):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
