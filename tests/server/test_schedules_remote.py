"""Schedules of a backend that keeps them elsewhere (`Capabilities.schedules`, EC2's
EventBridge Scheduler in production; a fake here): create/patch/delete go there, the list
merges what is found there, its runs are imported and watched like any job, and the local
timer never fires them."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from awsjobs_lab.backends.base import Backend, Capabilities, RecordHandle
from awsjobs_lab.errors import BackendNotConfigured, Conflict, InvalidRequest
from awsjobs_lab.models import Job, JobState, Outcome
from awsjobs_lab.requests import LaunchDefaults
from awsjobs_lab.schedules.model import Schedule
from awsjobs_lab.schedules.service import ScheduleOptions, ScheduleService
from awsjobs_lab.service import JobService, ServiceOptions
from awsjobs_lab.store import JobStore
from tests.server.helpers import make_job, poll

BODY = {"name": "nightly", "cron": "0 2 * * *", "timezone": "UTC", "job": {"path": "x.py"}}


class FakeRemote:
    # Not the server's user ("me"): the backend's owner (c.EC2Backend.owner in production).
    owner = "cloud-owner"

    def __init__(self) -> None:
        self.schedules: dict[str, Schedule] = {}
        self.owners_asked: set[str] = set()
        self.put_jobs: list[Job] = []
        self.runs: list[Job] = []
        self.problem: str | None = None
        self.deleted: list[str] = []
        self.imports = 0  # import_runs calls

    def check(self, schedule: Schedule) -> None:
        if self.problem:
            raise BackendNotConfigured(self.problem)

    async def put(self, schedule: Schedule, job: Job) -> None:
        self.schedules[schedule.name] = schedule
        self.put_jobs.append(job)

    async def delete(self, owner: str, name: str) -> None:
        self.owners_asked.add(owner)
        self.deleted.append(name)
        self.schedules.pop(name, None)

    async def list(self, owner: str) -> builtins.list[Schedule]:
        self.owners_asked.add(owner)
        return list(self.schedules.values())

    async def import_runs(self, owner: str, known_job_ids: set[str]) -> builtins.list[Job]:
        self.imports += 1
        self.owners_asked.add(owner)
        return [job for job in self.runs if job.id not in known_job_ids]


class CloudBackend(Backend):
    """Jobs run until stopped; a stop ends them."""

    id: ClassVar[str] = "cloud"
    label: ClassVar[str] = "Cloud"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ends: dict[str, asyncio.Future[Outcome]] = {}
        self.reattached: list[str] = []

    def _end(self, job_id: str) -> asyncio.Future[Outcome]:
        return self.ends.setdefault(job_id, asyncio.get_running_loop().create_future())

    async def launch(self, job: Job, record: RecordHandle) -> None:
        await record({"token": job.id})

    async def wait(self, job: Job) -> Outcome:
        return await asyncio.shield(self._end(job.id))

    async def stop(self, job: Job) -> None:
        if not self._end(job.id).done():
            self._end(job.id).set_result(Outcome(JobState.FAILED, exit_code=-15))

    async def reattach(self, job: Job) -> Outcome | None:
        self.reattached.append(job.id)
        return None


class PlainBackend(CloudBackend):
    """A backend whose schedules are local (the server's timer fires them)."""

    id: ClassVar[str] = "plain"
    label: ClassVar[str] = "Plain"


def schedule_service(tmp_path: Path, remote: FakeRemote, **options: Any) -> ScheduleService:
    """A schedule service over a backend whose schedules are `remote`'s (and a plain one)."""
    (tmp_path / "root").mkdir(parents=True, exist_ok=True)
    (tmp_path / "root" / "x.py").write_text("print('x')\n")
    backend = CloudBackend()
    backend.capabilities = Capabilities(schedules=remote)  # type: ignore[misc]
    backend.root_dir = str(tmp_path / "root")
    plain = PlainBackend()
    plain.root_dir = backend.root_dir
    jobs = JobService(
        JobStore(tmp_path / "jobs.sqlite"),
        {"cloud": backend, "plain": plain},
        tmp_path / "root",
        ServiceOptions(defaults=LaunchDefaults(backend="cloud"), retry_seconds=0.01),
    )
    return ScheduleService(jobs, ScheduleOptions(owner="me", **options))


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[ScheduleService, FakeRemote]]:
    remote = FakeRemote()
    schedules = schedule_service(tmp_path, remote, import_interval_seconds=3600)
    await schedules.start()
    yield schedules, remote
    await schedules.close()
    await schedules.jobs.close()


async def test_runs_are_first_imported_shortly_after_the_start(tmp_path: Path) -> None:
    """The first import makes the backend's AWS client: not in the server's first moments,
    then every `import_interval_seconds`. (Two services: a slow machine never makes the
    first look "before the delay" late enough to see an import.)"""
    waiting, importing = FakeRemote(), FakeRemote()
    services = [
        schedule_service(tmp_path / "waiting", waiting, first_import_delay_seconds=3600),
        schedule_service(
            tmp_path / "importing",
            importing,
            first_import_delay_seconds=0.05,
            import_interval_seconds=0.05,
        ),
    ]
    for schedules in services:
        await schedules.start()
    try:
        await asyncio.sleep(0.2)
        assert waiting.imports == 0

        async def imported_twice() -> bool:
            return importing.imports >= 2

        await poll(imported_twice, "the first imports")
    finally:
        for schedules in services:
            await schedules.close()
            await schedules.jobs.close()


async def test_create_patch_delete_go_to_the_remote(
    setup: tuple[ScheduleService, FakeRemote],
) -> None:
    schedules, remote = setup
    created = await schedules.create(dict(BODY))
    assert created["remote"] is True
    assert remote.schedules["nightly"].cron == "0 2 * * *"
    assert remote.put_jobs[0].path == "x.py"
    assert remote.put_jobs[0].state is JobState.PENDING
    with pytest.raises(Conflict):
        await schedules.create(dict(BODY))

    await schedules.patch("nightly", {"cron": "0 3 * * *"})
    assert remote.schedules["nightly"].cron == "0 3 * * *"
    assert len(remote.put_jobs) == 2

    await schedules.delete("nightly")
    assert remote.deleted == ["nightly"]
    assert await schedules.list_schedules() == []


async def test_not_configured_is_refused_and_nothing_kept(
    setup: tuple[ScheduleService, FakeRemote],
) -> None:
    schedules, remote = setup
    remote.problem = "EC2 schedules need c.EC2Backend.scheduler_role_arn"
    with pytest.raises(BackendNotConfigured, match="scheduler_role_arn"):
        await schedules.create(dict(BODY))
    assert remote.schedules == {}
    assert await schedules.list_schedules() == []
    with pytest.raises(InvalidRequest, match="path"):
        await schedules.create({**BODY, "job": {"path": "missing.py"}})


async def test_a_schedule_created_elsewhere_shows_up(
    setup: tuple[ScheduleService, FakeRemote],
) -> None:
    schedules, remote = setup
    remote.schedules["elsewhere"] = Schedule(
        name="elsewhere",
        owner="me",
        cron="30 4 * * 1",
        timezone="Europe/Paris",
        job={"path": "x.py", "backend": "cloud"},
    )
    listed = await schedules.list_schedules()
    assert [s["name"] for s in listed] == ["elsewhere"]
    assert listed[0]["description"] == "at 04:30, on Monday, Europe/Paris"
    shown = await schedules.get("elsewhere")
    assert shown["remote"] is True
    await schedules.delete("elsewhere")
    assert remote.deleted == ["elsewhere"]


async def test_imported_runs_are_watched_and_can_be_stopped(
    setup: tuple[ScheduleService, FakeRemote],
) -> None:
    schedules, remote = setup
    await schedules.create(dict(BODY))
    run = make_job("x.py", backend="cloud", state=JobState.RUNNING, schedule="nightly")
    run.handle = {"token": "aws"}
    done = make_job("x.py", backend="cloud", state=JobState.SUCCEEDED, schedule="nightly")
    remote.runs = [run, done]
    assert await schedules.import_runs() == 2
    assert await schedules.import_runs() == 0  # known now: never twice
    backend: CloudBackend = schedules.jobs.backends["cloud"]  # type: ignore[assignment]

    async def watched() -> bool:
        return run.id in backend.reattached

    await poll(watched, "the imported run to be re-attached")
    runs = (await schedules.get("nightly"))["runs"]
    assert {r["job_id"] for r in runs} == {run.id, done.id}
    await schedules.jobs.stop_job(run.id)

    async def stopped() -> bool:
        return (await schedules.jobs.get_job(run.id)).state is JobState.STOPPED

    await poll(stopped, "the imported run to be stopped")


async def test_the_local_timer_never_fires_a_remote_schedule(
    setup: tuple[ScheduleService, FakeRemote],
) -> None:
    schedules, _ = setup
    await schedules.create(dict(BODY))
    assert await schedules._tick(schedules.clock() + 3 * 86400) is None
    assert (await schedules.get("nightly"))["runs"] == []


async def test_a_remote_schedule_belongs_to_its_backends_owner(
    setup: tuple[ScheduleService, FakeRemote],
) -> None:
    schedules, remote = setup
    created = await schedules.create(dict(BODY))
    assert created["owner"] == "cloud-owner"  # not the server's user
    assert remote.schedules["nightly"].owner == "cloud-owner"
    [kept] = await schedules.store.of_owner("cloud-owner")
    assert kept.name == "nightly"
    assert await schedules.store.of_owner("me") == []
    local = await schedules.create(
        {**BODY, "name": "here", "job": {"path": "x.py", "backend": "plain"}}
    )
    assert local["owner"] == "me" and local["remote"] is False

    listed = {s["name"]: s["owner"] for s in await schedules.list_schedules()}
    assert listed == {"here": "me", "nightly": "cloud-owner"}
    assert (await schedules.get("nightly"))["owner"] == "cloud-owner"
    await schedules.import_runs()
    assert remote.owners_asked == {"cloud-owner"}
    # Names are the API's ids: one name across owners.
    with pytest.raises(Conflict):
        await schedules.create({**BODY, "name": "here"})
    with pytest.raises(Conflict):
        await schedules.create({**BODY, "job": {"path": "x.py", "backend": "plain"}})


async def test_a_schedule_moved_between_backends_changes_owner(
    setup: tuple[ScheduleService, FakeRemote],
) -> None:
    schedules, remote = setup
    await schedules.create({**BODY, "job": {"path": "x.py", "backend": "plain"}})
    moved = await schedules.patch("nightly", {"job": {"path": "x.py", "backend": "cloud"}})
    assert (moved["owner"], moved["remote"]) == ("cloud-owner", True)
    assert remote.schedules["nightly"].owner == "cloud-owner"
    assert await schedules.store.of_owner("me") == []
    back = await schedules.patch("nightly", {"job": {"path": "x.py", "backend": "plain"}})
    assert (back["owner"], back["remote"]) == ("me", False)
    assert remote.deleted == ["nightly"] and remote.owners_asked == {"cloud-owner"}
    assert [s.name for s in await schedules.store.of_owner("me")] == ["nightly"]
    assert await schedules.store.of_owner("cloud-owner") == []
    assert [s["name"] for s in await schedules.list_schedules()] == ["nightly"]
