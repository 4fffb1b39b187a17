"""EC2 schedules in S3 mode: saved, the schedule's inputs go to its S3 area; fired by the
simulator (EventBridge Scheduler's RunInstances target) with no server and no backend anywhere,
the worker runs the self-sufficient boot script in its sandbox with no EFS: it downloads the
schedule's inputs, runs the job, writes its log, outputs and exit code to the run's area and
terminates. A server started afterwards imports the run, its log and its outputs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import test_s3_mode as s3_mode
import test_schedules_ec2 as on_efs
from test_schedules_ec2 import OWNER, fire, instance_of, nightly, remote

from awsjobs_lab.aws.scheduled_boot import run_id_of_instance
from awsjobs_lab.aws.userdata import MAX_USER_DATA_BYTES
from awsjobs_lab.backends.ec2 import EC2Backend
from awsjobs_lab.backends.ec2.scheduled_s3 import ScheduleArea, run_area_record
from awsjobs_lab.backends.ec2.scheduled_worker import boot_script, run_template
from awsjobs_lab.errors import InvalidRequest
from awsjobs_lab.models import JobState
from awsjobs_lab.staging import StagingArea
from tests.awssim.support import eventually

BUCKET = s3_mode.BUCKET
PREFIX = "awsjobs/tester/"
S3_SETTINGS: dict[str, Any] = {
    "efs_file_system_id": "",
    "s3_bucket": BUCKET,
    "worker_python": sys.executable,
    "s3_log_interval_seconds": 0.1,
    "exit_code_grace_seconds": 20.0,
}
# Reads an input, writes an output and changes a file the user edits after the save.
REPORT = """import pathlib
rows = pathlib.Path("data/numbers.txt").read_text().split()
pathlib.Path("total.txt").write_text(str(sum(int(r) for r in rows)))
pathlib.Path("notes.txt").write_text("written by the run")
print("summed", len(rows), "numbers", flush=True)
"""


# The EFS tests' fixtures (the execution role, servers started on demand) and the S3 mode's
# (the simulated worker with no EFS folder, the bucket).
scheduler_role = on_efs.scheduler_role
make_services = on_efs.make_services
worker = s3_mode.worker
bucket = s3_mode.bucket


@pytest.fixture
def backend(make_backend: Any, scheduler_role: str) -> EC2Backend:
    return make_backend(scheduler_role_arn=scheduler_role, **S3_SETTINGS)


@pytest.fixture
def folder(root: Path) -> Path:
    work = root / "work"
    (work / "data").mkdir(parents=True, exist_ok=True)
    (work / "data" / "numbers.txt").write_text("1 2 3\n")
    (work / "notes.txt").write_text("the user's notes\n")
    return work


async def keys_under(s3: Any, prefix: str) -> list[str]:
    listed = await s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(row["Key"] for row in listed.get("Contents", []))


async def text_of(s3: Any, key: str) -> str:
    answer = await s3.get_object(Bucket=BUCKET, Key=key)
    async with answer["Body"] as body:
        data: bytes = await body.read()
    return data.decode()


def test_the_s3_boot_script_is_valid_bash_within_the_user_data_cap(make_backend, root) -> None:
    backend = make_backend(scheduler_role_arn="arn:aws:iam::123456789012:role/r", **S3_SETTINGS)
    schedule, job = nightly(root)
    job.storage = "s3"
    template = run_template(job, schedule, run_area_record(backend, OWNER))
    script = boot_script(backend, template, schedule)
    checked = subprocess.run(["bash", "-n"], input=script.encode(), capture_output=True)
    assert checked.returncode == 0, checked.stderr
    assert len(script.encode()) < MAX_USER_DATA_BYTES
    assert f"s3://{BUCKET}/{PREFIX}schedules/nightly/in/" not in script  # encoded, as values
    assert "mount -t efs" not in script
    job.env = {"BIG": "x" * 12_000}
    with pytest.raises(InvalidRequest, match="16384"):
        boot_script(backend, run_template(job, schedule, run_area_record(backend, OWNER)), schedule)


async def test_saving_uploads_the_inputs_and_saving_again_refreshes_them(
    backend, bucket, folder, root
):
    schedule, job = nightly(root)
    (folder / "hello.py").write_text(REPORT)
    await remote(backend).put(schedule, job)
    area = ScheduleArea(BUCKET, "awsjobs/", OWNER, "nightly")
    assert area.inputs == f"{PREFIX}schedules/nightly/in/"
    assert await keys_under(bucket, area.inputs) == [
        f"{area.inputs}data/numbers.txt",
        f"{area.inputs}hello.py",
        f"{area.inputs}notes.txt",
    ]
    (folder / "data" / "numbers.txt").write_text("4 5\n")
    (folder / "notes.txt").unlink()
    await remote(backend).put(schedule, job)  # a PATCH saves it again: the files as now
    assert await text_of(bucket, f"{area.inputs}data/numbers.txt") == "4 5\n"
    assert f"{area.inputs}notes.txt" not in await keys_under(bucket, area.inputs)

    await remote(backend).delete(OWNER, "nightly")
    assert await keys_under(bucket, area.root) == []  # nothing of the schedule is left
    assert await remote(backend).list(OWNER) == []


async def test_saving_a_schedule_reads_its_folder_once(
    make_services, bucket, folder, root, monkeypatch
):
    # The save checks the job (the folder's size: no file read), then uploads one snapshot.
    from awsjobs_lab.staging import snapshot as snapshot_module

    (folder / "hello.py").write_text(REPORT)
    opened: list[str] = []
    real_open = snapshot_module.open_regular

    def counting(path: Path) -> int:
        if path.name != ".awsjobsignore":  # its rules, read by each walk of the folder
            opened.append(path.relative_to(folder).as_posix())
        return real_open(path)

    monkeypatch.setattr(snapshot_module, "open_regular", counting)
    service = await make_services(**S3_SETTINGS)
    body = {"path": "work/hello.py", "backend": "ec2", "cpus": 2}
    await service.create({"name": "nightly", "cron": "0 6 * * 1-5", "job": body})
    assert sorted(opened) == ["data/numbers.txt", "hello.py", "notes.txt"]
    area = ScheduleArea(BUCKET, "awsjobs/", OWNER, "nightly")
    assert len(await keys_under(bucket, area.inputs)) == 3


async def test_a_schedule_that_cannot_be_saved_leaves_no_inputs(
    backend, bucket, folder, root, monkeypatch
):
    from awsjobs_lab.aws import scheduler
    from awsjobs_lab.errors import BackendError

    async def refused(*args: Any, **kwargs: Any) -> None:
        raise BackendError("CreateSchedule: AccessDenied")

    monkeypatch.setattr(scheduler, "put", refused)
    schedule, job = nightly(root)
    with pytest.raises(BackendError, match="AccessDenied"):
        await remote(backend).put(schedule, job)
    assert await keys_under(bucket, f"{PREFIX}schedules/") == []


async def test_a_schedule_in_s3_mode_runs_with_no_server_and_is_imported_later(
    backend, worker, bucket, folder, root, aws, make_services
):
    schedule, job = nightly(root)
    (folder / "hello.py").write_text(REPORT)
    await remote(backend).put(schedule, job)
    (folder / "notes.txt").write_text("edited after the save\n")  # kept when the run is back
    await backend.close()  # from here on, no server and no backend exist

    iid = await fire(worker)
    run_id = run_id_of_instance(iid)
    run = StagingArea(BUCKET, "awsjobs/", OWNER, run_id)

    async def ended() -> bool:
        state = (await instance_of(aws, iid))["State"]["Name"]
        return run.exit_code in await keys_under(bucket, run.root) and state == "terminated"

    await eventually(ended, timeout=60)
    assert (await text_of(bucket, run.exit_code)).strip() == "0"
    instance = await instance_of(aws, iid)
    assert instance["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    assert not (folder / "total.txt").exists()  # nothing came to the server's side yet
    assert not (root / ".awsjobs" / "jobs" / run_id).exists()

    service = await make_services(**S3_SETTINGS)  # a server starts afterwards
    assert await service.import_runs() == 1
    assert await service.import_runs() == 0  # once
    imported = await service.jobs.get_job(run_id)
    assert imported.state is JobState.SUCCEEDED and imported.exit_code == 0
    assert (imported.schedule, imported.storage, imported.instance_id) == ("nightly", "s3", iid)
    assert imported.log_path == f"work/hello.{run_id}.log"
    log = (await service.jobs.read_log(run_id))["content"]
    assert "summed 3 numbers" in log and "[awsjobs] exit code 0" in log
    assert (folder / "total.txt").read_text() == "6"  # its output, beside the script
    assert (folder / "notes.txt").read_text() == "edited after the save\n"  # kept
    assert (folder / f"notes.{run_id}.txt").read_text() == "written by the run"
    assert imported.notes == [
        f"notes.txt changed since the job started: the job's version is notes.{run_id}.txt"
    ]

    await service.delete("nightly")  # the schedule's inputs go; its run's area stays ...
    assert await keys_under(bucket, f"{PREFIX}schedules/") == []
    assert run.exit_code in await keys_under(bucket, run.root)
    await service.jobs.delete_job(run_id)  # ... until its job is removed
    assert await keys_under(bucket, run.root) == []
    assert await service.import_runs() == 0  # and a removed run is not imported again


async def test_a_run_still_running_at_import_is_followed_to_its_end(
    backend, worker, bucket, folder, root, aws, make_services
):
    (folder / "hello.py").write_text(
        "import pathlib, time\nprint('started', flush=True)\n"
        "while not pathlib.Path('go').exists():\n    time.sleep(0.1)\n"
        "pathlib.Path('done.txt').write_text('done')\n"
    )
    schedule, job = nightly(root)
    await remote(backend).put(schedule, job)
    iid = await fire(worker)
    run_id = run_id_of_instance(iid)
    run = StagingArea(BUCKET, "awsjobs/", OWNER, run_id)

    async def started() -> bool:
        return bool(await keys_under(bucket, run.log_parts))

    await eventually(started, timeout=60)
    service = await make_services(**S3_SETTINGS)
    assert await service.import_runs() == 1
    running = await service.jobs.get_job(run_id)
    assert running.state is JobState.RUNNING and running.handle["instance_id"] == iid
    scratch = worker.sandbox(iid) / "var/lib/awsjobs/work" / run_id
    await asyncio.to_thread((scratch / "go").write_text, "")
    backend_of_service = service.jobs.backends["ec2"]
    assert isinstance(backend_of_service, EC2Backend)

    async def succeeded() -> bool:
        await backend_of_service.monitor.run_cycle()
        return (await service.jobs.get_job(run_id)).state is JobState.SUCCEEDED

    await eventually(succeeded, timeout=60)
    assert (folder / "done.txt").read_text() == "done"
    assert "started" in (await service.jobs.read_log(run_id))["content"]
    assert (await instance_of(aws, iid))["State"]["Name"] in ("shutting-down", "terminated")
