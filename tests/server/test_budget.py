"""The spending cap (issue 12): c.AWSJobs.max_active_instances and max_hourly_spend refuse a
launch with 409 `budget` and launch nothing; GET config reports the caps and the figures.

Over the API with a fake priced backend standing in for EC2 (as test_api.py's), and the
`SpendingCap` itself on a store (pending prices, excluded jobs, today's spend)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from awsjobs_lab.backends.base import Backend, Capabilities, RecordHandle
from awsjobs_lab.budget import SpendingCap, local_midnight
from awsjobs_lab.errors import Conflict, OverBudget
from awsjobs_lab.gpus import GpuNeed
from awsjobs_lab.models import Job, JobState, Outcome, now
from awsjobs_lab.service import JobService
from awsjobs_lab.store import JobStore
from tests.server.helpers import assert_error, make_job, poll

PRICE = 0.6


class FakePricedBackend(Backend):
    """Stands in for EC2: an instance inventory whose preview prices the job; a launch records
    that price at once; the work runs until stopped."""

    id: ClassVar[str] = "ec2"
    label: ClassVar[str] = "AWS EC2"
    capabilities: ClassVar[Capabilities] = Capabilities(
        spot=True, instance_types=True, instances=True, hourly_price=True
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.previews: list[dict[str, Any]] = []
        self.launched: list[str] = []
        self.ends: dict[str, asyncio.Event] = {}

    async def preview(self, **kwargs: Any) -> dict[str, Any]:
        self.previews.append(kwargs)
        choice = {"instance_type": "m7i.large", "hourly_price": PRICE, "spot": kwargs["spot"]}
        return {"choice": choice, "candidates": [choice]}

    async def list_instances(self) -> list[dict[str, Any]]:
        return []

    async def terminate_instances(self, ids: list[str]) -> list[str]:
        return ids

    async def launch(self, job: Job, record: RecordHandle) -> None:
        self.launched.append(job.id)
        await record({"instance_id": "i-0123456789abcdef0"}, hourly_price=PRICE, started_at=now())

    async def wait(self, job: Job) -> Outcome:
        await self.ends.setdefault(job.id, asyncio.Event()).wait()
        return Outcome(JobState.SUCCEEDED, exit_code=0)

    async def stop(self, job: Job) -> None:
        self.ends.setdefault(job.id, asyncio.Event()).set()


@pytest.fixture
def fake(service: JobService, monkeypatch: pytest.MonkeyPatch) -> FakePricedBackend:
    backend = FakePricedBackend()
    monkeypatch.setitem(service.backends, "ec2", backend)  # the driver shares the mapping
    return backend


@pytest.fixture
def script(jp_root_dir: Path) -> str:
    (jp_root_dir / "train.py").write_text("print('training')\n")
    return "train.py"


async def running(api: Any, job_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        _, job = await api("GET", "jobs", job_id)
        return job if job["state"] == "running" else None

    job: dict[str, Any] = await poll(check, f"job {job_id} to run")
    return job


async def stop_all(api: Any, ids: list[str]) -> None:
    for job_id in ids:
        await api("POST", "jobs", job_id, "stop")


class TestInstanceCap:
    @pytest.fixture
    def awsjobs_config(self) -> dict[str, Any]:
        return {"max_active_instances": 1}

    async def test_second_launch_is_refused_and_launches_nothing(
        self, api: Any, fake: FakePricedBackend, script: str
    ) -> None:
        code, first = await api("POST", "jobs", body={"path": script, "backend": "ec2"})
        assert code == 201, first
        await running(api, first["id"])
        code, reply = await api("POST", "jobs", body={"path": script, "backend": "ec2"})
        assert_error(code, reply, 409, "max_active_instances is 1", "1 instance is active now")
        assert reply["reason"] == "budget"
        assert "this job would add 1" in reply["message"]
        _, page = await api("GET", "jobs")
        assert [j["id"] for j in page["jobs"]] == [first["id"]]  # nothing inserted
        assert fake.launched == [first["id"]]
        assert fake.previews == []  # no spend cap: no preview needed
        await stop_all(api, [first["id"]])

    async def test_concurrent_launches_do_not_both_pass(
        self, api: Any, fake: FakePricedBackend, script: str
    ) -> None:
        body = {"path": script, "backend": "ec2"}
        replies = await asyncio.gather(*(api("POST", "jobs", body=body) for _ in range(3)))
        codes = sorted(code for code, _ in replies)
        assert codes == [201, 409, 409], replies
        created = [reply["id"] for code, reply in replies if code == 201]
        assert all(r["reason"] == "budget" for c, r in replies if c == 409)

        async def launched() -> list[str]:
            return fake.launched

        await poll(launched, "the launch")
        assert fake.launched == created
        await stop_all(api, created)

    async def test_local_jobs_do_not_count(
        self, api: Any, fake: FakePricedBackend, script: str
    ) -> None:
        code, first = await api("POST", "jobs", body={"path": script, "backend": "ec2"})
        assert code == 201
        code, local = await api("POST", "jobs", body={"path": script, "backend": "local"})
        assert code == 201, local
        await stop_all(api, [first["id"], local["id"]])


class TestSpendCap:
    @pytest.fixture
    def awsjobs_config(self) -> dict[str, Any]:
        return {"max_hourly_spend": 1.0}

    async def test_over_the_spend_cap_says_the_figures(
        self, api: Any, fake: FakePricedBackend, script: str
    ) -> None:
        body = {"path": script, "backend": "ec2", "cpus": 2, "spot": True}
        code, first = await api("POST", "jobs", body=body)  # $0.60/h of $1/h: under the cap
        assert code == 201, first
        assert fake.previews == [
            {"memory_gib": 4.0, "cpus": 2, "spot": True, "instance_type": None, "gpus": GpuNeed()}
        ]
        await running(api, first["id"])
        code, reply = await api("POST", "jobs", body=body)
        assert_error(
            code,
            reply,
            409,
            "max_hourly_spend is $1.0000/h",
            "the spend is $0.6000/h now",
            "this job would add $0.6000/h",
        )
        assert reply["reason"] == "budget"
        assert fake.launched == [first["id"]]
        await stop_all(api, [first["id"]])

    async def test_config_reports_the_caps_and_figures(
        self, api: Any, fake: FakePricedBackend, script: str
    ) -> None:
        code, config = await api("GET", "config")
        assert code == 200
        assert config["budget"] == {
            "active_instances": 0,
            "hourly_spend": 0.0,
            "spend_today": 0.0,
            "max_active_instances": None,
            "max_hourly_spend": 1.0,
        }
        _, job = await api("POST", "jobs", body={"path": script, "backend": "ec2"})
        await running(api, job["id"])
        _, config = await api("GET", "config")
        budget = config["budget"]
        assert (budget["active_instances"], budget["hourly_spend"]) == (1, PRICE)
        assert budget["spend_today"] >= 0.0
        await stop_all(api, [job["id"]])


async def test_no_caps_by_default(api: Any) -> None:
    code, config = await api("GET", "config")
    assert code == 200
    assert config["budget"]["max_active_instances"] is None
    assert config["budget"]["max_hourly_spend"] is None


@pytest.mark.parametrize("setting", ["max_active_instances", "max_hourly_spend"])
def test_negative_caps_are_refused(setting: str) -> None:
    from awsjobs_lab.app import AWSJobs

    with pytest.raises(ValueError, match="no cap"):
        AWSJobs(**{setting: -1})


# -- the SpendingCap on a store ----------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    opened = JobStore(tmp_path / "jobs.sqlite")
    await opened.open()
    yield opened
    await opened.close()


def ec2_job(state: JobState = JobState.RUNNING, **fields: Any) -> Job:
    return make_job(backend="ec2", state=state, **fields)


async def test_pending_jobs_count_with_their_admitted_price(store: JobStore) -> None:
    cap = SpendingCap(store, 0, 1.0, priced_backends=["ec2"])
    job = ec2_job(JobState.PENDING)
    async with cap.admit(job.id, 0.7):
        await store.insert(job)
    assert (await cap.figures())["hourly_spend"] == 0.7
    with pytest.raises(OverBudget, match=r"now \(over 1 active instance\)"):
        await cap.check(adding_instances=1, adding_hourly=0.4)
    # Its launch records the real price, which wins over the admitted one.
    await store.update(job.id, hourly_price=0.2)
    assert (await cap.figures())["hourly_spend"] == 0.2
    await cap.check(adding_instances=1, adding_hourly=0.8)  # exactly on the cap: allowed


async def test_a_relaunch_excludes_its_own_job(store: JobStore) -> None:
    cap = SpendingCap(store, 1, None, priced_backends=["ec2"])
    job = ec2_job(hourly_price=0.3)
    await store.insert(job)
    with pytest.raises(OverBudget) as refused:
        await cap.check(adding_instances=1, adding_hourly=0.3)
    assert isinstance(refused.value, Conflict) and refused.value.status == 409
    await cap.check(adding_instances=1, adding_hourly=0.3, exclude_job=job.id)


async def test_other_backends_and_finished_jobs_do_not_count(store: JobStore) -> None:
    cap = SpendingCap(store, 1, None, priced_backends=["ec2"])
    await store.insert(make_job(backend="local", state=JobState.RUNNING))
    await store.insert(ec2_job(JobState.SUCCEEDED, hourly_price=5.0))
    await cap.check(adding_instances=1, adding_hourly=None)
    assert (await cap.figures())["active_instances"] == 0


async def test_an_unknown_price_over_a_full_spend_cap_is_refused(store: JobStore) -> None:
    cap = SpendingCap(store, None, 0.5, priced_backends=["ec2"])
    job = ec2_job(hourly_price=0.4)
    await store.insert(job)
    await cap.check(adding_instances=1, adding_hourly=None)  # under the cap
    await store.update(job.id, hourly_price=0.5)
    with pytest.raises(OverBudget, match="an instance of unknown price"):
        await cap.check(adding_instances=1, adding_hourly=None)


async def test_spend_today_sums_the_jobs_created_today(store: JobStore) -> None:
    cap = SpendingCap(store, None, None, priced_backends=["ec2"])
    midnight = local_midnight(now())
    today = midnight + 60
    yesterday = midnight - 7200
    await store.insert(
        ec2_job(
            JobState.SUCCEEDED,
            created_at=today,
            started_at=today,
            finished_at=today + 1800,
            hourly_price=2.0,
        )
    )
    await store.insert(
        ec2_job(
            JobState.SUCCEEDED,
            created_at=yesterday,
            started_at=yesterday,
            finished_at=yesterday + 3600,
            hourly_price=4.0,
        )
    )
    figures = await cap.figures()
    assert figures["spend_today"] == 1.0  # half an hour at $2/h; yesterday's job is not today's
    assert figures["max_active_instances"] is None and figures["max_hourly_spend"] is None
