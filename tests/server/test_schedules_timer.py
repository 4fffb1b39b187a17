"""Local schedules fire on time, on a clock the test moves (never minutes of sleep): the one
timer sleeps until the next firing; missed runs at start fire once within the grace, older
ones are recorded `missed`; a refused fire is a failed run and the timer goes on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.schedules.service import ScheduleOptions, ScheduleService
from awsjobs_lab.service import JobService
from tests.server.helpers import poll

# 2031-03-04 10:01:00 UTC: one minute after a five-minute mark (the test's "now").
T0 = datetime(2031, 3, 4, 10, 1, tzinfo=timezone.utc).timestamp()
EVERY_5 = {"cron": "*/5 * * * *", "timezone": "UTC"}


class Clock:
    """The wall clock the schedules see; the test moves it."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def script(jp_root_dir: Path) -> str:
    (jp_root_dir / "ok.py").write_text("print('ok')\n")
    return "ok.py"


Factory = Callable[..., ScheduleService]


@pytest.fixture
async def make_schedules(service: JobService) -> AsyncIterator[Factory]:
    """ScheduleServices of owner "tester" (the server's own, of the OS user, ignores them)
    on the server's job service, closed at the end."""
    made: list[ScheduleService] = []

    def make(clock: Clock, grace_seconds: float = 3600.0) -> ScheduleService:
        options = ScheduleOptions(
            owner="tester", default_timezone="UTC", missed_run_grace_seconds=grace_seconds
        )
        schedules = ScheduleService(service, options, clock=clock)
        made.append(schedules)
        return schedules

    yield make
    for schedules in made:
        await schedules.close()


async def _ticked(schedules: ScheduleService, after: int) -> None:
    async def check() -> bool:
        return schedules.timer.ticks > after

    await poll(check, "the timer to wake")


async def _runs(schedules: ScheduleService, name: str, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        runs = (await schedules.get(name))["runs"]
        return runs if len(runs) >= count else None

    found: list[dict[str, Any]] = await poll(check, f"{count} run(s) of {name}")
    return found


async def _move_clock(schedules: ScheduleService, clock: Clock, at: float) -> None:
    ticks = schedules.timer.ticks
    clock.at = at
    schedules.timer.rearm()
    await _ticked(schedules, ticks)


async def test_a_local_schedule_fires_on_time(make_schedules: Factory, script: str) -> None:
    clock = Clock(T0)
    schedules = make_schedules(clock)
    await schedules.start()
    await schedules.create({"name": "every5", **EVERY_5, "job": {"path": script}})
    await _ticked(schedules, 0)

    # The timer sleeps until 10:05 (no polling in between) ...
    async def armed() -> bool:
        return schedules.timer.next_at == T0 + 240

    await poll(armed, "the timer armed for 10:05")
    # ... nothing fires a second before ...
    await _move_clock(schedules, clock, T0 + 239)
    assert (await schedules.get("every5"))["runs"] == []
    # ... and one run at 10:05, then the timer sleeps until 10:10.
    await _move_clock(schedules, clock, T0 + 240)
    runs = await _runs(schedules, "every5", 1)
    assert len(runs) == 1
    job = await schedules.jobs.get_job(runs[0]["job_id"])
    assert job.schedule == "every5"
    assert job.path == script
    assert schedules.timer.next_at == T0 + 540


async def test_with_no_grace_a_run_a_little_late_is_on_time(
    make_schedules: Factory, script: str
) -> None:
    clock = Clock(T0)
    schedules = make_schedules(clock, grace_seconds=0.0)
    await schedules.start()
    await schedules.create({"name": "nograce", **EVERY_5, "job": {"path": script}})
    await _move_clock(schedules, clock, T0 + 241)  # the timer woke a second late
    runs = await _runs(schedules, "nograce", 1)
    assert runs[0]["job_id"] is not None


async def test_a_paused_schedule_does_not_fire(make_schedules: Factory, script: str) -> None:
    clock = Clock(T0)
    schedules = make_schedules(clock)
    await schedules.start()
    await schedules.create({"name": "paused", **EVERY_5, "enabled": False, "job": {"path": script}})
    await _move_clock(schedules, clock, T0 + 240)
    assert (await schedules.get("paused"))["runs"] == []
    assert schedules.timer.next_at is None


async def test_missed_runs_at_start(make_schedules: Factory, script: str) -> None:
    """The server was down from 10:01 to 10:33: 10:05 ... 10:30 were missed. The newest
    (3 minutes old, within the hour of grace) fires once; the others are recorded missed."""
    clock = Clock(T0)
    schedules = make_schedules(clock)
    await schedules.create({"name": "catchup", **EVERY_5, "job": {"path": script}})
    clock.at = T0 + 32 * 60
    await schedules.start()
    runs = await _runs(schedules, "catchup", 6)
    jobs = [run for run in runs if run["job_id"]]
    missed = [run for run in runs if run["state"] == "missed"]
    assert len(jobs) == 1
    assert sorted(run["scheduled_for"] for run in missed) == [
        T0 + minutes * 60 for minutes in (4, 9, 14, 19, 24)
    ]
    assert (await schedules.store.get("tester", "catchup")).last_fired_at == T0 + 29 * 60


async def test_a_missed_run_older_than_the_grace_is_recorded(
    make_schedules: Factory, script: str
) -> None:
    clock = Clock(T0)
    schedules = make_schedules(clock, grace_seconds=120.0)
    await schedules.create({"name": "late", **EVERY_5, "job": {"path": script}})
    clock.at = T0 + 8 * 60  # 10:09: the 10:05 run is 4 minutes old, the grace is 2
    await schedules.start()
    runs = await _runs(schedules, "late", 1)
    assert runs == [
        {
            "job_id": None,
            "state": "missed",
            "created_at": runs[0]["created_at"],
            "scheduled_for": T0 + 240,
            "finished_at": runs[0]["created_at"],
            "error": None,
        }
    ]


async def test_a_refused_fire_is_a_failed_run(
    make_schedules: Factory, script: str, jp_root_dir: Path
) -> None:
    clock = Clock(T0)
    schedules = make_schedules(clock)
    await schedules.start()
    await schedules.create({"name": "gone", **EVERY_5, "job": {"path": script}})
    (jp_root_dir / script).unlink()
    await _move_clock(schedules, clock, T0 + 240)
    runs = await _runs(schedules, "gone", 1)
    assert runs[0]["state"] == "failed"
    assert "does not exist" in runs[0]["error"]
    # The timer goes on: it sleeps until 10:10.
    assert schedules.timer.next_at == T0 + 540
