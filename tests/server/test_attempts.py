"""Attempts of a spot job (issue 12, recovery from interruption), without AWS: the request
fields and their validation, the attempt model (market of each attempt, summed cost, JSON), and
the driver relaunching an interrupted job on a fake spot backend (markers in the log, a Stop
during a relaunch, the spending cap refusing one). On the simulated AWS: tests/ec2/test_recovery.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from awsjobs_lab.backends.base import Backend, Capabilities, RecordHandle
from awsjobs_lab.budget import SpendingCap
from awsjobs_lab.errors import InvalidRequest, OverBudget
from awsjobs_lab.models import (
    ALLOWED_TRANSITIONS,
    Attempt,
    Job,
    JobState,
    Outcome,
    attempt_note,
    now,
)
from awsjobs_lab.requests import LaunchDefaults
from awsjobs_lab.service import JobService, ServiceOptions
from awsjobs_lab.store import JobStore
from tests.server.helpers import make_job, parse_run_py, poll

S = JobState
INTERRUPTED = Outcome(S.INTERRUPTED, error="AWS reclaimed spot instance i-1")


# -- the request fields ----------------------------------------------------------------------


def _parse(tmp_path: Path, **body: Any) -> Job:
    return parse_run_py(tmp_path, **body)


def test_defaults_and_values_are_kept(tmp_path: Path) -> None:
    job = _parse(tmp_path, spot=True)
    assert (job.on_interruption, job.max_attempts, job.attempts) == ("retry", 3, [])
    job = _parse(tmp_path, spot=True, on_interruption="on_demand", max_attempts=10)
    assert (job.on_interruption, job.max_attempts) == ("on_demand", 10)
    record = job.to_dict()
    assert (record["on_interruption"], record["max_attempts"], record["attempts"]) == (
        "on_demand",
        10,
        [],
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"on_interruption": "later"}, "on_interruption: must be one of 'fail', 'retry'"),
        ({"on_interruption": None}, "on_interruption: must be one of"),
        ({"max_attempts": 0}, "max_attempts: must be a whole number from 1 to 10"),
        ({"max_attempts": 11}, "max_attempts: must be a whole number from 1 to 10"),
        ({"max_attempts": 2.0}, "max_attempts: must be a whole number"),
        ({"max_attempts": True}, "max_attempts: must be a whole number"),
    ],
)
def test_bad_values_are_refused_with_their_field(
    tmp_path: Path, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest, match="^" + message.replace("(", r"\(")):
        _parse(tmp_path, spot=True, **body)


# -- the model -------------------------------------------------------------------------------


def _with_attempts(n: int, **fields: Any) -> Job:
    job = make_job(spot=True, **fields)
    for _ in range(n):
        job.open_attempt(True)
    return job


@pytest.mark.parametrize(
    ("policy", "max_attempts", "done", "expected"),
    [
        ("retry", 3, 1, True),  # attempt 2 of 3: spot again
        ("retry", 3, 2, False),  # attempt 3 of 3: the last one on on-demand
        ("retry", 3, 3, None),  # none left
        ("retry", 2, 1, False),
        ("on_demand", 3, 1, False),
        ("fail", 3, 1, None),
        ("retry", 1, 1, None),
    ],
)
def test_the_market_of_the_next_attempt(
    policy: str, max_attempts: int, done: int, expected: bool | None
) -> None:
    job = _with_attempts(done, on_interruption=policy, max_attempts=max_attempts)
    assert job.next_attempt_spot() is expected


def test_a_job_without_spot_gets_no_relaunch() -> None:
    job = make_job(spot=False)
    job.open_attempt(False)
    assert job.next_attempt_spot() is None


def test_cost_so_far_sums_the_attempts() -> None:
    job = make_job(spot=True)
    job.attempts = [
        Attempt(1, True, hourly_price=0.036, started_at=0.0, ended_at=100.0, cost=0.001),
        Attempt(2, False, hourly_price=0.36, started_at=200.0),
    ]
    assert job.cost_so_far(at=300.0) == pytest.approx(0.001 + 0.36 * 100 / 3600)
    job.end_attempt("succeeded", 300.0)
    assert job.attempts[1].cost == pytest.approx(0.01)
    assert job.attempts[1].outcome == "succeeded"
    assert job.cost_so_far(at=10_000.0) == pytest.approx(0.011)


def test_the_relaunch_edge_and_the_note() -> None:
    assert S.LAUNCHING in ALLOWED_TRANSITIONS[S.RUNNING]
    assert attempt_note(2, 3, False, after_interruption=True) == (
        "attempt 2 of 3 (spot interrupted, now on-demand)"
    )
    assert attempt_note(1, 3, True, after_interruption=False) == "attempt 1 of 3 (spot)"


def test_attempts_survive_the_store_record() -> None:
    job = _with_attempts(2)
    job.attempts[0].instance_id = "i-1"
    again = Job.from_record(job.to_record())
    assert again.attempts == job.attempts and again.attempt_number == 2


# -- the driver, on a fake spot backend ------------------------------------------------------


class SpotBackend(Backend):
    """Each launch records an instance of its own; each attempt ends as the test says."""

    id: ClassVar[str] = "spotty"
    label: ClassVar[str] = "Spotty"
    capabilities: ClassVar[Capabilities] = Capabilities(spot=True, hourly_price=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.launched: list[tuple[int, bool]] = []  # (attempt, spot) per launch
        self.hold_launch: asyncio.Event | None = None
        self.ends: dict[tuple[str, int], asyncio.Future[Outcome]] = {}
        self.stops: list[dict[str, Any]] = []

    def end(self, job_id: str, attempt: int, outcome: Outcome) -> None:
        self._future(job_id, attempt).set_result(outcome)

    def _future(self, job_id: str, attempt: int) -> asyncio.Future[Outcome]:
        key = (job_id, attempt)
        if key not in self.ends:
            self.ends[key] = asyncio.get_running_loop().create_future()
        return self.ends[key]

    async def launch(self, job: Job, record: RecordHandle) -> None:
        self.launched.append((job.attempt_number, job.spot))
        if self.hold_launch is not None and job.attempt_number > 1:
            await self.hold_launch.wait()
        await record(
            {"instance_id": f"i-{job.attempt_number}", "spot": job.spot},
            instance_type="m.large",
            hourly_price=0.1 if job.spot else 0.3,
            started_at=now(),
        )

    async def wait(self, job: Job) -> Outcome:
        return await asyncio.shield(self._future(job.id, job.attempt_number))

    async def stop(self, job: Job) -> None:
        self.stops.append(dict(job.handle))
        future = self._future(job.id, job.attempt_number)
        if not future.done():
            future.set_result(Outcome(S.STOPPED))

    async def reattach(self, job: Job) -> Outcome | None:
        return None


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[JobService]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "train.py").write_text("pass\n")
    backend = SpotBackend()
    backend.root_dir = str(root)
    made = JobService(
        JobStore(tmp_path / "jobs.sqlite"),
        {"spotty": backend},
        root,
        ServiceOptions(
            defaults=LaunchDefaults(backend="spotty"), retry_seconds=0.01, retry_max_seconds=0.05
        ),
    )
    await made.start()
    yield made
    await made.close()


def _backend(service: JobService) -> SpotBackend:
    backend = service.backends["spotty"]
    assert isinstance(backend, SpotBackend)
    return backend


async def _when(service: JobService, job_id: str, state: JobState, attempts: int) -> Job:
    async def check() -> Job | None:
        job = await service.get_job(job_id)
        return job if job.state is state and len(job.attempts) == attempts else None

    return await poll(check, f"job {job_id} {state.value} on attempt {attempts}")


async def test_relaunched_on_the_market_of_each_attempt(service: JobService, tmp_path: Path):
    backend = _backend(service)
    job = await service.create_job({"path": "train.py", "spot": True})
    await _when(service, job.id, S.RUNNING, 1)
    backend.end(job.id, 1, INTERRUPTED)
    await _when(service, job.id, S.RUNNING, 2)
    backend.end(job.id, 2, INTERRUPTED)
    await _when(service, job.id, S.RUNNING, 3)
    backend.end(job.id, 3, Outcome(S.SUCCEEDED, exit_code=0))
    done = await _when(service, job.id, S.SUCCEEDED, 3)
    assert backend.launched == [(1, True), (2, True), (3, False)]
    assert [a.instance_id for a in done.attempts] == ["i-1", "i-2", "i-3"]
    starts = [a.started_at or 0.0 for a in done.attempts]
    assert starts == sorted(starts) and len(set(starts)) == 3
    assert done.started_at == starts[0]  # the job's start is its first attempt's
    assert done.handle["instance_id"] == "i-3"
    log = (tmp_path / "root" / done.log_path).read_text()
    assert log == (
        "--- awsjobs: attempt 2 of 3 (spot interrupted, now spot) ---\n"
        "--- awsjobs: attempt 3 of 3 (spot interrupted, now on-demand) ---\n"
    )


async def test_a_stop_during_a_relaunch_stops_it(service: JobService):
    backend = _backend(service)
    backend.hold_launch = asyncio.Event()
    job = await service.create_job({"path": "train.py", "spot": True})
    await _when(service, job.id, S.RUNNING, 1)
    backend.end(job.id, 1, INTERRUPTED)
    await _when(service, job.id, S.LAUNCHING, 2)
    stopping = await service.stop_job(job.id)
    assert stopping.state is S.STOPPING
    await asyncio.sleep(0.05)
    assert backend.stops == []  # the stop waits for the launch in flight ...
    backend.hold_launch.set()
    stopped = await _when(service, job.id, S.STOPPED, 2)
    assert backend.stops and backend.stops[-1]["instance_id"] == "i-2"  # ... then ends it
    assert [a.outcome for a in stopped.attempts] == ["interrupted", "stopped"]


class _NoRoom:
    """A spending cap with no room left (its refusal wording is the real cap's)."""

    relaunch_refusal = SpendingCap.relaunch_refusal

    async def check(self, **_: Any) -> None:
        raise OverBudget("Not launched: the cap c.AWSJobs.max_active_instances is 1.")


async def test_the_spending_cap_can_refuse_a_relaunch(service: JobService):
    backend = _backend(service)
    service.driver.budget = _NoRoom()  # type: ignore[assignment]
    job = await service.create_job({"path": "train.py", "spot": True})
    await _when(service, job.id, S.RUNNING, 1)
    backend.end(job.id, 1, INTERRUPTED)
    done = await _when(service, job.id, S.INTERRUPTED, 1)
    assert "not relaunched: Not launched: the cap c.AWSJobs.max_active_instances" in (
        done.error or ""
    )
    assert backend.launched == [(1, True)]
