"""EC2 schedules: EventBridge Scheduler (moto's, through the simulated AWS) keeps them, the
simulator fires them as AWS does (the RunInstances target with its stored input), and the
worker runs the self-sufficient boot script in its sandbox with no server anywhere; a server
started afterwards imports the runs. The cron conversion table is here too."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from ec2_helpers import make_job

from awsjobs_lab.aws import instances, scheduler, tags
from awsjobs_lab.aws.aws_cron import to_aws_cron
from awsjobs_lab.aws.scheduled_boot import (
    RUN_TOKEN,
    instance_id_of_run,
    record_of_user_data,
    run_id_of_instance,
)
from awsjobs_lab.backends.ec2 import EC2Backend
from awsjobs_lab.backends.ec2.scheduled_worker import boot_script, run_template
from awsjobs_lab.backends.ec2.schedules import EC2Schedules
from awsjobs_lab.errors import BackendNotConfigured, InvalidRequest
from awsjobs_lab.models import Job, JobState
from awsjobs_lab.requests import LaunchDefaults
from awsjobs_lab.schedules.model import Schedule
from awsjobs_lab.schedules.service import ScheduleOptions, ScheduleService
from awsjobs_lab.service import JobService, ServiceOptions
from awsjobs_lab.store import JobStore
from tests.awssim.schedules import EXECUTION_ROLE_TRUST
from tests.awssim.server import SimulatedAWS
from tests.awssim.support import eventually

OWNER = "tester"
GROUP = "awsjobs-tester"

# -- the cron conversion ---------------------------------------------------------------------

CRON_TABLE = [
    ("0 6 * * 1-5", "cron(0 6 ? * 2-6 *)"),  # Monday to Friday: AWS counts Sunday as 1
    ("*/15 * * * *", "cron(0/15 * * * ? *)"),
    ("0 0 1 * *", "cron(0 0 1 * ? *)"),
    ("30 2 * * 0", "cron(30 2 ? * 1 *)"),  # Sunday is 0 ...
    ("30 2 * * 7", "cron(30 2 ? * 1 *)"),  # ... or 7
    ("0 9 * * sat,sun", "cron(0 9 ? * 1,7 *)"),
    ("0 9 * * 5-7", "cron(0 9 ? * 1,6,7 *)"),  # Friday to Sunday wraps round AWS's week
    ("0 0 * * */2", "cron(0 0 ? * 1/2 *)"),  # Sunday, Tuesday, Thursday, Saturday
    ("5/10 * * * *", "cron(5/10 * * * ? *)"),
    ("0 */6 * * *", "cron(0 0/6 * * ? *)"),
    ("0,30 8-18 * * MON-FRI", "cron(0,30 8-18 ? * 2-6 *)"),
    ("0 12 */2 * *", "cron(0 12 1/2 * ? *)"),
    ("0 0 * JAN-MAR *", "cron(0 0 * 1-3 ? *)"),
    ("0 0 L * *", "cron(0 0 L * ? *)"),
    ("0 0 * * 5#3", "cron(0 0 ? * 6#3 *)"),  # the third Friday
    ("0 0 * * 0-6", "cron(0 0 * * ? *)"),  # every day: day-of-week is AWS's `?`
    ("1,2,3,7 0 * * *", "cron(1-3,7 0 * * ? *)"),
]


@pytest.mark.parametrize(("expr", "aws"), CRON_TABLE)
def test_cron_as_aws_writes_it(expr: str, aws: str) -> None:
    assert to_aws_cron(expr) == aws


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("0 0 1-7 * 1", "both the day of the month and the day of the week"),
        ("0 6 * *", "five fields"),
        ("61 * * * *", "minute 61 is outside 0-59"),
        ("0 0 * * FUNDAY", "not a valid day of week"),
        ("0 0 5-1 * *", "runs backwards"),
        ("*/0 * * * *", "at least 1"),
    ],
)
def test_cron_aws_cannot_express_is_refused(expr: str, why: str) -> None:
    with pytest.raises(InvalidRequest, match=why):
        to_aws_cron(expr)


def test_run_ids_map_to_instance_ids_and_back() -> None:
    iid = "i-0123456789abcdef0"
    assert run_id_of_instance(iid) == "123456789abcdef0"
    assert instance_id_of_run(run_id_of_instance(iid)) == iid
    assert run_id_of_instance("i-1234abcd") == "000000001234abcd"


def test_a_start_date_in_the_past_is_not_sent_again() -> None:
    # AWS refuses a StartDate more than 5 minutes ago: an update of an old schedule omits it.
    definition = scheduler.Definition(
        name="n",
        owner=OWNER,
        cron="0 6 * * *",
        timezone="UTC",
        enabled=True,
        run_instances={},
        role_arn="arn:aws:iam::123456789012:role/r",
        start_at=1_000.0,
        end_at=9_000.0,
    )
    assert "StartDate" not in scheduler.request(definition, now=5_000.0)
    assert scheduler.request(definition, now=900.0)["StartDate"].timestamp() == 1_000.0
    assert scheduler.request(definition, now=5_000.0)["EndDate"].timestamp() == 9_000.0


def test_the_boot_script_is_valid_bash_within_the_user_data_cap(make_backend, root) -> None:
    backend = make_backend(scheduler_role_arn="arn:aws:iam::123456789012:role/r")
    schedule, job = nightly(root)
    template = run_template(job, schedule)
    script = boot_script(backend, template, schedule)
    checked = subprocess.run(["bash", "-n"], input=script.encode(), capture_output=True)
    assert checked.returncode == 0, checked.stderr
    assert template.log_path == f"work/hello.{RUN_TOKEN}.log"
    job.env = {"BIG": "x" * 20_000}
    with pytest.raises(InvalidRequest, match="16384"):
        boot_script(backend, run_template(job, schedule), schedule)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
async def scheduler_role(aws: Any) -> str:
    """The execution role (moto's IAM); the simulator refuses to fire without it."""
    iam = await aws("iam")
    made = await iam.create_role(
        RoleName="awsjobs-scheduler", AssumeRolePolicyDocument=json.dumps(EXECUTION_ROLE_TRUST)
    )
    return str(made["Role"]["Arn"])


@pytest.fixture
def backend(make_backend: Callable[..., EC2Backend], scheduler_role: str) -> EC2Backend:
    return make_backend(scheduler_role_arn=scheduler_role)


@pytest.fixture
def worker(sim: SimulatedAWS, root: Path) -> SimulatedAWS:
    """The simulated worker on: instances run their boot script; `root` stands for EFS."""
    sim.configure({"worker": {"enabled": True, "efs_root": str(root)}})
    return sim


def remote(backend: EC2Backend) -> EC2Schedules:
    schedules = backend.capabilities.schedules
    assert isinstance(schedules, EC2Schedules)
    return schedules


def nightly(root: Path, name: str = "nightly", **fields: Any) -> tuple[Schedule, Job]:
    job = make_job(root, "hello.py", state=JobState.PENDING)
    body = {"path": job.path, "backend": "ec2", "cpus": 2}
    values: dict[str, Any] = {
        "name": name,
        "owner": OWNER,
        "cron": "0 6 * * 1-5",
        "timezone": "Europe/Paris",
        "job": body,
    }
    values.update(fields)
    return Schedule(**values), job


async def instance_of(aws: Any, iid: str) -> dict[str, Any]:
    ec2 = await aws("ec2")
    answer = await ec2.describe_instances(InstanceIds=[iid])
    return dict(answer["Reservations"][0]["Instances"][0])


# -- CRUD in AWS -----------------------------------------------------------------------------


async def test_put_list_update_delete_in_eventbridge_scheduler(backend, root, aws):
    schedule, job = nightly(root, start_at=None, end_at=2_000_000_000.0)
    await remote(backend).put(schedule, job)

    client = await aws("scheduler")
    group = await client.get_schedule_group(Name=GROUP)
    found_tags = await client.list_tags_for_resource(ResourceArn=group["Arn"])
    assert {t["Key"]: t["Value"] for t in found_tags["Tags"]} == {
        tags.MANAGED: tags.TRUE,
        tags.OWNER: OWNER,
    }
    stored = await client.get_schedule(Name="nightly", GroupName=GROUP)
    assert stored["ScheduleExpression"] == "cron(0 6 ? * 2-6 *)"
    assert stored["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert stored["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert stored["State"] == "ENABLED"
    assert stored["EndDate"].timestamp() == 2_000_000_000.0
    target = stored["Target"]
    assert target["Arn"] == "arn:aws:scheduler:::aws-sdk:ec2:runInstances"
    assert target["RoleArn"] == backend.scheduler_role_arn
    assert target["RetryPolicy"] == scheduler.RETRY_POLICY
    request = json.loads(target["Input"])
    assert "ClientToken" not in request  # every firing launches its own instance
    assert request["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert request["MetadataOptions"]["HttpTokens"] == "required"
    instance_tags = {
        t["Key"]: t["Value"]
        for spec in request["TagSpecifications"]
        if spec["ResourceType"] == "instance"
        for t in spec["Tags"]
    }
    assert instance_tags[tags.SCHEDULE] == "nightly"
    assert instance_tags[tags.OWNER] == OWNER
    assert instance_tags[tags.MANAGED] == tags.TRUE
    assert instance_tags[tags.ROLE] == tags.ROLE_SCHEDULED_RUN
    assert tags.JOB_ID not in instance_tags  # the worker tags itself at boot
    script = base64.b64decode(request["UserData"]).decode()
    assert script.startswith("#!/bin/bash")
    assert (record_of_user_data(script) or {})["request"] == schedule.job

    [listed] = await remote(backend).list(OWNER)
    assert (listed.name, listed.cron, listed.timezone, listed.enabled) == (
        "nightly",
        "0 6 * * 1-5",
        "Europe/Paris",
        True,
    )
    assert listed.job == schedule.job and listed.end_at == 2_000_000_000.0

    schedule.enabled = False
    schedule.cron = "30 7 * * *"
    await remote(backend).put(schedule, job)  # an update: the same schedule, replaced
    stored = await client.get_schedule(Name="nightly", GroupName=GROUP)
    assert (stored["State"], stored["ScheduleExpression"]) == ("DISABLED", "cron(30 7 * * ? *)")
    assert [s.enabled for s in await remote(backend).list(OWNER)] == [False]

    await remote(backend).delete(OWNER, "nightly")
    await remote(backend).delete(OWNER, "nightly")  # idempotent
    assert await remote(backend).list(OWNER) == []


async def test_deleting_the_last_schedule_leaves_nothing_of_ours(backend, root, aws):
    first, job = nightly(root, "first")
    second, _ = nightly(root, "second")
    for schedule in (first, second):
        await remote(backend).put(schedule, job)
    client = await aws("scheduler")
    await remote(backend).delete(OWNER, "first")
    assert [s.name for s in await remote(backend).list(OWNER)] == ["second"]
    await client.get_schedule_group(Name=GROUP)  # still there for "second"

    await remote(backend).delete(OWNER, "second")
    groups = await client.list_schedule_groups()
    assert [g["Name"] for g in groups["ScheduleGroups"]] == ["default"]
    assert (await client.list_schedules())["Schedules"] == []
    ec2 = await aws("ec2")
    assert (await ec2.describe_launch_templates())["LaunchTemplates"] == []
    iam = await aws("iam")
    assert [r["RoleName"] for r in (await iam.list_roles())["Roles"]] == ["awsjobs-scheduler"]


async def test_a_schedule_made_elsewhere_with_our_marks_is_listed(backend, root, aws):
    made, job = nightly(root, "made-here")
    await remote(backend).put(made, job)
    client = await aws("scheduler")
    copy = await client.get_schedule(Name="made-here", GroupName=GROUP)
    await client.create_schedule(
        Name="made-elsewhere",
        GroupName=GROUP,
        ScheduleExpression="cron(0 8 ? * 2 *)",
        Description=scheduler.DESCRIPTION_PREFIX + "0 8 * * 1",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target=copy["Target"],
    )
    await client.create_schedule(  # in our group, but not ours: not listed
        Name="someone-elses",
        GroupName=GROUP,
        ScheduleExpression="rate(1 hour)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:lambda:us-east-1:123456789012:function:f", "RoleArn": "r"},
    )
    listed = {s.name: s for s in await remote(backend).list(OWNER)}
    assert sorted(listed) == ["made-elsewhere", "made-here"]
    assert listed["made-elsewhere"].cron == "0 8 * * 1"
    assert listed["made-elsewhere"].job["path"] == "work/hello.py"


async def test_schedules_are_refused_without_the_role_setting(make_backend, root):
    backend = make_backend()
    schedule, job = nightly(root)
    with pytest.raises(BackendNotConfigured, match=r"c\.EC2Backend\.scheduler_role_arn"):
        remote(backend).check(schedule)
    with pytest.raises(BackendNotConfigured, match=r"c\.EC2Backend\.scheduler_role_arn"):
        await remote(backend).put(schedule, job)


async def test_a_cron_aws_cannot_express_is_refused_before_anything_is_made(backend, root, aws):
    schedule, job = nightly(root, cron="0 0 1 * 1")
    with pytest.raises(InvalidRequest, match="day of the week"):
        await remote(backend).put(schedule, job)
    client = await aws("scheduler")
    assert [g["Name"] for g in (await client.list_schedule_groups())["ScheduleGroups"]] == [
        "default"
    ]


# -- firing with no server -------------------------------------------------------------------


@pytest.fixture
async def make_services(
    make_backend: Callable[..., EC2Backend], root: Path, tmp_path: Path, scheduler_role: str
) -> AsyncIterator[Callable[..., Awaitable[ScheduleService]]]:
    """A server's services (jobs and schedules) on the EC2 backend, started on demand: by
    default its user and c.EC2Backend.owner are both OWNER; `server_user` (the OS user),
    `data` (the job store's folder) and backend settings may differ."""
    made: list[ScheduleService] = []

    async def factory(
        server_user: str = OWNER, data: Path = tmp_path, **traits: Any
    ) -> ScheduleService:
        jobs = JobService(
            JobStore(data / "jobs.sqlite"),
            {"ec2": make_backend(scheduler_role_arn=scheduler_role, **traits)},
            root,
            ServiceOptions(
                defaults=LaunchDefaults(backend="ec2"), retry_seconds=0.01, retry_max_seconds=0.05
            ),
        )
        service = ScheduleService(
            jobs, ScheduleOptions(owner=server_user, import_interval_seconds=3600)
        )
        await jobs.start()
        made.append(service)
        return service

    yield factory
    for service in made:
        await service.close()
        await service.jobs.close()


async def fire(sim: SimulatedAWS, name: str = "nightly") -> str:
    [iid] = await asyncio.to_thread(sim.fire_schedule, GROUP, name)
    return str(iid)


async def test_a_fired_schedule_runs_with_no_server_and_is_imported_later(
    backend, worker, root, aws, make_services
):
    schedule, job = nightly(root)
    (root / "work" / "hello.py").write_text("print('hello from a schedule')\n")
    await remote(backend).put(schedule, job)
    await backend.close()  # from here on, no server and no backend exist

    iid = await fire(worker)
    run_id = run_id_of_instance(iid)
    exit_code = root / ".awsjobs" / "jobs" / run_id / "exit_code"

    async def gone() -> bool:
        state = (await instance_of(aws, iid))["State"]["Name"]
        return exit_code.exists() and state == "terminated"

    await eventually(gone, timeout=60)
    assert exit_code.read_text().strip() == "0"
    log = root / "work" / f"hello.{run_id}.log"
    assert "hello from a schedule" in log.read_text()
    instance = await instance_of(aws, iid)
    assert instance["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    found = tags.tags_of(instance)
    assert found[tags.JOB_ID] == run_id  # tagged by itself at boot
    assert found[tags.SCHEDULE] == "nightly"
    assert found[tags.EXPIRES_AT].endswith("Z")
    assert "shutdown -h now awsjobs: job finished" in worker.state()["instances"][0]["shim_calls"]

    service = await make_services()  # a server starts afterwards
    assert await service.import_runs() == 1
    assert await service.import_runs() == 0  # once
    imported = await service.jobs.get_job(run_id)
    assert imported.state is JobState.SUCCEEDED and imported.exit_code == 0
    assert imported.schedule == "nightly"
    assert imported.log_path == f"work/hello.{run_id}.log"
    assert imported.instance_id == iid
    assert "hello from a schedule" in (await service.jobs.read_log(run_id))["content"]


async def test_a_run_still_running_at_import_is_watched_and_stop_ends_it(
    backend, worker, root, aws, make_services
):
    schedule, job = nightly(root)
    (root / "work" / "hello.py").write_text(
        "import time\nprint('started', flush=True)\ntime.sleep(600)\n"
    )
    await remote(backend).put(schedule, job)
    iid = await fire(worker)
    run_id = run_id_of_instance(iid)
    log = root / "work" / f"hello.{run_id}.log"

    async def started() -> bool:
        return log.exists() and "started" in log.read_text()

    await eventually(started, timeout=60)
    service = await make_services()
    assert await service.import_runs() == 1
    running = await service.jobs.get_job(run_id)
    assert running.state is JobState.RUNNING and running.handle["instance_id"] == iid

    async def still_running() -> bool:  # reattached (no SSM command expected) and watched
        current = await service.jobs.get_job(run_id)
        return current.state is JobState.RUNNING and "self_run" in current.handle

    assert await eventually(still_running, timeout=60)
    await service.jobs.stop_job(run_id)

    async def stopped() -> bool:
        return (await service.jobs.get_job(run_id)).state is JobState.STOPPED

    await eventually(stopped, timeout=60)
    assert (await instance_of(aws, iid))["State"]["Name"] in ("shutting-down", "terminated")


async def test_a_run_imported_while_its_worker_boots_uses_the_schedule_record(
    backend, sim, root, aws, make_services
):
    # The worker is off: the instance runs nothing and writes no record, as while it boots.
    schedule, job = nightly(root)
    await remote(backend).put(schedule, job)
    iid = await fire(sim)
    service = await make_services()
    assert await service.import_runs() == 1
    imported = await service.jobs.get_job(run_id_of_instance(iid))
    assert imported.schedule == "nightly" and imported.instance_id == iid
    assert imported.log_path == f"work/hello.{imported.id}.log"
    await service.jobs.stop_job(imported.id)  # Stop terminates it: nothing left running

    async def gone() -> bool:
        return (await instance_of(aws, iid))["State"]["Name"] in ("shutting-down", "terminated")

    await eventually(gone, timeout=60)


async def test_a_disabled_schedule_does_not_fire(backend, sim, root):
    schedule, job = nightly(root, enabled=False)
    await remote(backend).put(schedule, job)
    with pytest.raises(ValueError, match="disabled"):
        sim.fire_schedule(GROUP, "nightly")


async def test_an_ec2_schedule_belongs_to_the_ec2_owner_not_the_os_user(
    worker, root, aws, make_services, tmp_path
):
    # The server runs as one OS user, c.EC2Backend.owner names another (as the ui-tests'
    # "galata"): the schedule's group, its runs' tags, the import and the API all say the
    # EC2 owner, the one the backend's instances (and its sweep and Instances view) use.
    team = {"server_user": "os-user", "owner": "ec2-team"}
    (root / "work" / "hello.py").write_text("print('hello from the team')\n")
    service = await make_services(**team)
    created = await service.create(
        {
            "name": "nightly",
            "cron": "0 6 * * 1-5",
            "timezone": "Europe/Paris",
            "job": {"path": "work/hello.py", "backend": "ec2", "cpus": 2},
        }
    )
    assert (created["owner"], created["remote"]) == ("ec2-team", True)

    client = await aws("scheduler")
    groups = [g["Name"] for g in (await client.list_schedule_groups())["ScheduleGroups"]]
    assert sorted(groups) == ["awsjobs-ec2-team", "default"]
    group = await client.get_schedule_group(Name="awsjobs-ec2-team")
    found_tags = await client.list_tags_for_resource(ResourceArn=group["Arn"])
    assert {t["Key"]: t["Value"] for t in found_tags["Tags"]}[tags.OWNER] == "ec2-team"

    [iid] = await asyncio.to_thread(worker.fire_schedule, "awsjobs-ec2-team", "nightly")
    run_id = run_id_of_instance(iid)
    exit_code = root / ".awsjobs" / "jobs" / run_id / "exit_code"

    async def done() -> bool:
        return exit_code.exists()

    await eventually(done, timeout=60)
    run_tags = tags.tags_of(await instance_of(aws, iid))
    assert (run_tags[tags.OWNER], run_tags[tags.SCHEDULE]) == ("ec2-team", "nightly")
    # Found by the filter the sweep and the Instances view use for this owner's instances.
    owned = await instances.describe_instances(
        await aws("ec2"), instances.managed_filters("ec2-team")
    )
    assert iid in owned

    await service.close()  # the server restarts
    await service.jobs.close()
    service = await make_services(**team)
    [shown] = await service.list_schedules()
    assert (shown["name"], shown["owner"], shown["remote"]) == ("nightly", "ec2-team", True)
    assert shown["error"] is None
    assert await service.import_runs() == 1
    imported = await service.jobs.get_job(run_id)
    assert imported.schedule == "nightly" and imported.instance_id == iid
    assert [r["job_id"] for r in (await service.get("nightly"))["runs"]] == [run_id]

    # A server with an empty job store finds it in AWS alone, under the same owner.
    (tmp_path / "elsewhere").mkdir()
    fresh = await make_services(data=tmp_path / "elsewhere", **team)
    [found] = await fresh.list_schedules()
    assert (found["name"], found["owner"]) == ("nightly", "ec2-team")
    assert found["job"]["path"] == "work/hello.py"
    assert await fresh.import_runs() == 1

    await service.delete("nightly")
    groups = [g["Name"] for g in (await client.list_schedule_groups())["ScheduleGroups"]]
    assert groups == ["default"]
