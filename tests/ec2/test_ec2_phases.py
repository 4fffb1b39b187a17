"""Launch phases (issue 15) of EC2 jobs on the simulated AWS, its worker running the real boot
script and command text: `requesting` → `booting` → `preparing` → `running` → `finishing`, each
in the history with its time, null once the job ends; re-derived after a restart; SendCommand
at a steady cadence while the agent registers (counted in the simulator's record); a job whose
exit code appears is ruled by the monitor's look at the files, with no DescribeInstances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from awsjobs_lab import phases
from awsjobs_lab.backends.ec2 import EC2Backend
from awsjobs_lab.models import Job, JobState
from awsjobs_lab.requests import LaunchDefaults
from awsjobs_lab.service import JobService, ServiceOptions
from awsjobs_lab.store import JobStore
from tests.awssim.server import SimulatedAWS
from tests.awssim.support import eventually

# Slow enough that every phase is seen; the mount takes a while too (clock.mount_seconds).
CLOCK = {
    "boot_seconds": 0.3,
    "agent_register_seconds": 0.6,
    "mount_seconds": 0.2,
    "halt_delay_seconds": 0.05,
    "shutting_down_seconds": 0.05,
}
# Runs until the file `go` appears beside it.
WAITS = (
    "import pathlib, time\n"
    "while not (pathlib.Path(__file__).parent / 'go').exists():\n"
    "    time.sleep(0.02)\n"
)
CADENCE = 0.1  # ssm_retry_seconds of these tests
# SendCommand refused as while the agent registers (AWS's answer), until a test lifts it.
NOT_REGISTERED = {"service": "ssm", "action": "SendCommand", "error": "InvalidInstanceId"}


@pytest.fixture
def worker(sim: SimulatedAWS, root: Path) -> SimulatedAWS:
    sim.configure({"clock": CLOCK, "worker": {"enabled": True, "efs_root": str(root)}})
    return sim


@pytest.fixture
async def make_service(
    worker: SimulatedAWS, make_backend: Callable[..., EC2Backend], root: Path, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[JobService]]]:
    (root / "work" / "waits.py").write_text(WAITS)
    made: list[JobService] = []

    async def make() -> JobService:
        backend = make_backend(
            launch_timeout_seconds=30.0, ssm_retry_seconds=CADENCE, ssm_retry_max_seconds=5.0
        )
        service = JobService(
            JobStore(tmp_path / "jobs.sqlite"),
            {"ec2": backend},
            root,
            ServiceOptions(
                defaults=LaunchDefaults(backend="ec2"), retry_seconds=0.01, retry_max_seconds=0.05
            ),
        )
        await service.start()
        made.append(service)
        return service

    yield make
    for service in made:
        await service.close()


def _backend(service: JobService) -> EC2Backend:
    backend = service.backends["ec2"]
    assert isinstance(backend, EC2Backend)
    return backend


async def _until(service: JobService, job_id: str, check: Callable[[Job], bool], what: str) -> Job:
    """Look at the job files (the monitor's look between cycles) until `check(job)` holds;
    many short turns, no timed assertion."""
    for _ in range(1500):
        await _backend(service).monitor.look_at_files()
        job = await service.get_job(job_id)
        if check(job):
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}; the job: {job.to_dict()}")


def _phase_entries(job: Job) -> list[tuple[str, str | None]]:
    return [(t.state.value, t.phase) for t in job.history if t.phase is not None]


async def test_phases_advance_and_end_null(
    make_service: Callable[..., Awaitable[JobService]], worker: SimulatedAWS, root: Path
) -> None:
    service = await make_service()
    # The agent refuses the command until the booting phase has been seen (a fault rule): a
    # registration of a second could pass between two looks on a loaded machine.
    worker.configure({"faults": [NOT_REGISTERED]})
    job = await service.create_job({"path": "work/waits.py"})
    seen: list[str] = []

    def note(j: Job, phase: str) -> bool:
        if j.phase and (not seen or seen[-1] != j.phase):
            seen.append(j.phase)
        return j.phase == phase

    await _until(service, job.id, lambda j: note(j, phases.BOOTING), "the booting phase")
    worker.configure({"faults": []})
    running = await _until(service, job.id, lambda j: note(j, phases.RUNNING), "the running one")
    assert running.state is JobState.RUNNING and running.phase_since is not None
    assert phases.BOOTING in seen  # the agent registers well after the launch returns

    (root / "work" / "go").write_text("")
    done = await _until(service, job.id, lambda j: not j.is_active, "the job to end")
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.phase is None and done.phase_since is None
    assert _phase_entries(done) == [
        ("launching", "requesting"),
        ("launching", "booting"),
        ("launching", "preparing"),
        ("running", "running"),
        ("running", "finishing"),
    ]
    assert all(a.at <= b.at for a, b in zip(done.history, done.history[1:], strict=False))
    assert [t.state.value for t in done.moves] == ["pending", "launching", "running", "succeeded"]
    spent = phases.phase_durations(done.history)
    assert list(spent) == ["requesting", "booting", "preparing", "running", "finishing"]


async def test_send_command_keeps_a_steady_cadence_until_the_agent_registers(
    make_service: Callable[..., Awaitable[JobService]], worker: SimulatedAWS
) -> None:
    service = await make_service()
    backend = _backend(service)
    pauses: list[float] = []
    steady = backend.command_sender.pause

    def recorded(failures: int) -> float:
        pauses.append(steady(failures))
        return pauses[-1]

    backend.command_sender.pause = recorded  # type: ignore[method-assign]
    # Refused a few times for sure (a fault rule, as while the agent registers): on a loaded
    # machine the registration could come before a second attempt.
    worker.configure({"faults": [NOT_REGISTERED]})
    job = await service.create_job({"path": "work/waits.py"})

    async def refused_thrice() -> bool:
        return worker.record.faults_by_action["ssm:SendCommand:InvalidInstanceId"] >= 3

    await eventually(refused_thrice)
    worker.configure({"faults": []})
    await _until(
        service,
        job.id,
        lambda j: j.phase == phases.PREPARING or j.phase == phases.RUNNING,
        "the command",
    )
    record = worker.record.to_json()
    sends = record["calls"]["ssm:SendCommand"]
    refused = record["faults_by_action"].get("ssm:SendCommand:InvalidInstanceId", 0)
    # Refused while the instance booted and its agent registered, then accepted once.
    assert sends == refused + 1 and refused >= 2
    # A steady cadence, not a growing backoff: never a pause longer than two cadences (the
    # double one comes before an attempt that first asks EC2 whether the instance is gone).
    assert pauses and max(pauses) <= 2 * CADENCE
    # At most one SendCommand per cadence while waiting: the attempts after the first are
    # spaced by the pauses, so there are no more of them than pauses.
    assert sends == len(pauses) + 1
    (Path(backend.root_dir) / "work" / "go").write_text("")
    await _until(service, job.id, lambda j: not j.is_active, "the job to end")


async def test_a_finished_job_is_ruled_between_cycles_without_describing(
    make_service: Callable[..., Awaitable[JobService]], worker: SimulatedAWS, root: Path
) -> None:
    service = await make_service()
    job = await service.create_job({"path": "work/waits.py"})
    await _until(service, job.id, lambda j: j.phase == phases.RUNNING, "the running phase")
    describes = worker.record.to_json()["calls"].get("ec2:DescribeInstances", 0)
    (root / "work" / "go").write_text("")
    done = await _until(service, job.id, lambda j: not j.is_active, "the job to end")
    assert done.state is JobState.SUCCEEDED
    calls = worker.record.to_json()["calls"]
    assert calls.get("ec2:DescribeInstances", 0) == describes  # one TerminateInstances only
    assert calls["ec2:TerminateInstances"] >= 1


async def test_a_reattached_job_has_its_phase_derived_again(
    make_service: Callable[..., Awaitable[JobService]], root: Path
) -> None:
    service = await make_service()
    job = await service.create_job({"path": "work/waits.py"})
    await _until(service, job.id, lambda j: j.phase == phases.RUNNING, "the running phase")
    await service.close()
    # As if the server had stopped before it saw the script start: the restart derives it.
    store = JobStore(service.store.path)
    await store.open()
    await store.update(job.id, phase=phases.PREPARING, phase_since=1.0)
    await store.close()

    again = await make_service()
    running = await _until(again, job.id, lambda j: j.phase == phases.RUNNING, "the phase again")
    assert running.state is JobState.RUNNING and (running.phase_since or 0) > 1.0
    (root / "work" / "go").write_text("")
    done = await _until(again, job.id, lambda j: not j.is_active, "the job to end")
    assert done.state is JobState.SUCCEEDED and done.phase is None
