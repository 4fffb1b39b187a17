"""Launch phases (issue 15) of local jobs: `preparing` → `running` → `finishing`, each in the
history with its time, the phase cleared when the job ends, re-derived after a restart; and the
pure parts of `phases.py` (the durations of a finished job, a move clearing the phase)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab import phases
from awsjobs_lab.backends.local import LocalBackend
from awsjobs_lab.errors import StoreUnavailable
from awsjobs_lab.models import Job, JobState, Transition
from awsjobs_lab.requests import LaunchDefaults
from awsjobs_lab.service import JobService, ServiceOptions
from awsjobs_lab.store import JobStore
from tests.server.helpers import kill_processes_of, make_job, poll

S = JobState
# Runs until the file `go` appears in its folder.
WAITS = "import pathlib, time\nwhile not pathlib.Path('go').exists():\n    time.sleep(0.02)\n"


@pytest.fixture
async def make_service(tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "waits.py").write_text(WAITS)
    made: list[JobService] = []

    async def make() -> JobService:
        backend = LocalBackend(warm_notebook_runner=False)
        backend.root_dir = str(root)
        options = ServiceOptions(
            defaults=LaunchDefaults(backend="local"), retry_seconds=0.01, retry_max_seconds=0.05
        )
        service = JobService(JobStore(tmp_path / "jobs.sqlite"), {"local": backend}, root, options)
        await service.start()
        made.append(service)
        return service

    yield make
    ids = []
    for service in made:
        with contextlib.suppress(StoreUnavailable):  # a service the test closed itself
            ids += [j.id for j in (await service.store.list_jobs(limit=500))[0]]
        await service.close()
    kill_processes_of(ids)


def _phases(job: Job) -> list[tuple[str, str]]:
    return [(t.state.value, t.phase) for t in job.history if t.phase is not None]


async def _job_when(service: JobService, job_id: str, check: Callable[[Job], bool]) -> Job:
    found: list[Job] = []

    async def ready() -> bool:
        found[:] = [await service.get_job(job_id)]
        return check(found[0])

    await poll(ready, f"job {job_id} to match")
    return found[0]


async def test_a_local_job_goes_preparing_running_finishing(make_service: Any) -> None:
    service = await make_service()
    job = await service.create_job({"path": "waits.py"})
    running = await _job_when(service, job.id, lambda j: j.phase == phases.RUNNING)
    assert running.state is S.RUNNING and running.phase_since is not None
    assert running.to_dict()["phase"] == "running"

    (Path(service.root_dir) / "go").write_text("")
    done = await _job_when(service, job.id, lambda j: not j.is_active)
    assert done.state is S.SUCCEEDED
    assert done.phase is None and done.phase_since is None
    assert [p for _, p in _phases(done)] == ["preparing", "running", "finishing"]
    assert _phases(done)[0][0] == "launching"
    # Times in order; the moves are unchanged by the phase entries between them.
    assert all(a.at <= b.at for a, b in zip(done.history, done.history[1:], strict=False))
    assert [t.state.value for t in done.moves] == ["pending", "launching", "running", "succeeded"]
    spent = phases.phase_durations(done.history)
    assert list(spent) == ["preparing", "running", "finishing"]
    assert all(seconds >= 0 for seconds in spent.values())


async def test_a_stop_clears_the_phase(make_service: Any) -> None:
    service = await make_service()
    job = await service.create_job({"path": "waits.py"})
    await _job_when(service, job.id, lambda j: j.phase == phases.RUNNING)
    await service.stop_job(job.id)
    stopped = await _job_when(service, job.id, lambda j: j.state is S.STOPPED)
    assert stopped.phase is None and stopped.phase_since is None


async def test_a_reattached_job_has_its_phase_derived_again(make_service: Any) -> None:
    service = await make_service()
    job = await service.create_job({"path": "waits.py"})
    await _job_when(service, job.id, lambda j: j.phase == phases.RUNNING)
    await service.close()
    # As if the server had stopped before recording the phase: the restart derives it.
    store = JobStore(service.store.path)
    await store.open()
    await store.update(job.id, phase=phases.PREPARING, phase_since=1.0)
    await store.close()

    again = await make_service()
    running = await _job_when(again, job.id, lambda j: j.phase == phases.RUNNING)
    assert running.state is S.RUNNING and (running.phase_since or 0) > 1.0
    (Path(again.root_dir) / "go").write_text("")
    done = await _job_when(again, job.id, lambda j: not j.is_active)
    assert done.state is S.SUCCEEDED and done.phase is None


def test_durations_sum_over_attempts_and_end_at_a_move() -> None:
    history = [
        Transition(S.PENDING, 0.0, "created"),
        Transition(S.LAUNCHING, 1.0),
        Transition(S.LAUNCHING, 1.0, None, "requesting"),
        Transition(S.LAUNCHING, 3.0, None, "booting"),
        Transition(S.RUNNING, 10.0, "started"),  # launching → running keeps the phase
        Transition(S.RUNNING, 12.0, None, "running"),
        Transition(S.LAUNCHING, 20.0, "attempt 2 of 3"),  # a relaunch ends it
        Transition(S.LAUNCHING, 21.0, None, "requesting"),
        Transition(S.RUNNING, 22.0, "started"),
        Transition(S.RUNNING, 22.0, None, "running"),
        Transition(S.RUNNING, 30.0, None, "finishing"),
        Transition(S.SUCCEEDED, 31.0, "finished"),
    ]
    assert phases.phase_durations(history) == {
        "requesting": 3.0,
        "booting": 9.0,
        "running": 16.0,
        "finishing": 1.0,
    }
    # An active job's current phase counts until `until`.
    assert phases.phase_durations(history[:6], until=15.0)["running"] == 3.0


def test_entering_a_phase_only_while_launching_or_running() -> None:
    job = make_job(state=S.RUNNING)
    phases.enter("running", 5.0, job)
    phases.enter("running", 6.0, job)  # the same phase again: nothing new
    assert job.phase == "running" and job.phase_since == 5.0
    assert [t.to_dict() for t in job.history if t.phase] == [
        {"state": "running", "at": 5.0, "reason": None, "phase": "running"}
    ]
    job.state = S.STOPPING
    phases.enter("finishing", 7.0, job)
    assert job.phase == "running" and len(job.history) == 2

    clear = phases.clearing_on(S.STOPPED, None)
    assert clear is not None
    clear(job)
    assert job.phase is None and job.phase_since is None
    assert phases.clearing_on(S.RUNNING, None) is None  # launching → running keeps it
