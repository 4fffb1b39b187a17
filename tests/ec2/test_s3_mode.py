"""The EC2 backend's S3 mode (issue 13) end to end, on the simulated AWS: moto's S3, and the
simulator's worker running the real boot script and S3-mode command with its `aws` shim
(tests/awssim/README.md), driven by the real JobService and store. No EFS: the worker's sandbox
mounts nothing, the job runs in its scratch folder and everything comes back through S3.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from ec2_helpers import set_state

from awsjobs_lab.aws.command_s3 import S3Locations, build_s3_commands
from awsjobs_lab.backends.ec2 import EC2Backend
from awsjobs_lab.backends.ec2.s3mode import S3Mode
from awsjobs_lab.errors import InvalidRequest, OverBudget
from awsjobs_lab.models import Job, JobState
from awsjobs_lab.requests import LaunchDefaults
from awsjobs_lab.service import JobService, ServiceOptions
from awsjobs_lab.staging import StagingArea
from awsjobs_lab.staging.snapshot import HASH_CACHE
from awsjobs_lab.store import JobStore
from tests.awssim.server import SimulatedAWS
from tests.awssim.support import eventually, launch, registered, state_of

BUCKET = "team-jobs"
WORKER_CLOCK = {
    "boot_seconds": 0.05,
    "agent_register_seconds": 0.05,
    "halt_delay_seconds": 0.05,
    "shutting_down_seconds": 0.05,
}
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": ["factor = 1\n"],
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "code",
            "metadata": {},
            "source": [
                "import csv\n",
                "rows = [int(x) for x in open('data/numbers.csv').read().split()]\n",
                "with open('scaled.csv', 'w', newline='') as f:\n",
                "    csv.writer(f).writerows([[r * factor] for r in rows])\n",
                "print('scaled', len(rows), 'rows by', factor)\n",
            ],
            "outputs": [],
            "execution_count": None,
        },
    ],
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}
# Prints, waits for a file the test writes (so the log is read while it runs), then writes.
SLOW = """import pathlib, time
print("started", flush=True)
while not pathlib.Path("go").exists():
    time.sleep(0.1)
pathlib.Path("result.txt").write_text("done")
print("finished", flush=True)
"""
COUNT = """print(len(open("data/numbers.csv").read().split()), "numbers")
"""
LONG = """import time
print("long job started", flush=True)
time.sleep(300)
"""
# Writes a file, then runs on until stopped.
PARTIAL = """import pathlib, time
pathlib.Path("partial.txt").write_text("half way")
print("wrote partial.txt", flush=True)
time.sleep(300)
"""
# Ignores SIGTERM: only the instance's termination ends it.
STUBBORN = """import pathlib, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pathlib.Path("stubborn.txt").write_text("never uploaded")
print("ignoring SIGTERM", flush=True)
time.sleep(300)
"""


@pytest.fixture
def worker(sim: SimulatedAWS) -> SimulatedAWS:
    """The simulator's worker on, with no EFS folder: nothing to mount, files through S3."""
    sim.configure({"clock": WORKER_CLOCK, "worker": {"enabled": True, "efs_root": None}})
    return sim


@pytest.fixture
async def bucket(worker: SimulatedAWS, aws: Any) -> Any:
    s3 = await aws("s3")
    await s3.create_bucket(Bucket=BUCKET)
    return s3


@pytest.fixture
def folder(root: Path) -> Path:
    work = root / "work"
    (work / "data").mkdir(parents=True, exist_ok=True)
    (work / "data" / "numbers.csv").write_text("1\n2\n3\n")
    (work / "analysis.ipynb").write_text(json.dumps(NOTEBOOK))
    (work / "slow.py").write_text(SLOW)
    (work / "long.py").write_text(LONG)
    (work / "count.py").write_text(COUNT)
    (work / "partial.py").write_text(PARTIAL)
    (work / "stubborn.py").write_text(STUBBORN)
    return work


def make_service(
    make_backend: Callable[..., EC2Backend],
    root: Path,
    tmp_path: Path,
    close_launch_timeout_seconds: float = 60.0,
    caps: dict[str, Any] | None = None,
    **traits: Any,
) -> JobService:
    settings: dict[str, Any] = {
        "efs_file_system_id": "",
        "s3_bucket": BUCKET,
        "worker_python": sys.executable,
        "launch_timeout_seconds": 20.0,
        "exit_code_grace_seconds": 20.0,  # the follower fetches the exit code meanwhile
        "s3_log_interval_seconds": 0.1,
    }
    settings.update(traits)
    return JobService(
        JobStore(tmp_path / "jobs.sqlite"),
        {"ec2": make_backend(**settings)},
        root,
        ServiceOptions(
            defaults=LaunchDefaults(backend="ec2"),
            retry_seconds=0.01,
            retry_max_seconds=0.05,
            close_launch_timeout_seconds=close_launch_timeout_seconds,
            **(caps or {}),
        ),
    )


@contextlib.asynccontextmanager
async def started(service: JobService) -> AsyncIterator[JobService]:
    await service.start()
    try:
        yield service
    finally:
        await service.close()


@pytest.fixture
async def service(
    bucket: Any,
    folder: Path,
    make_backend: Callable[..., EC2Backend],
    root: Path,
    tmp_path: Path,
) -> AsyncIterator[JobService]:
    async with started(make_service(make_backend, root, tmp_path)) as made:
        yield made


def backend_of(service: JobService) -> EC2Backend:
    backend = service.backends["ec2"]
    assert isinstance(backend, EC2Backend)
    return backend


async def until(service: JobService, job_id: str, check: Callable[[Job], bool], what: str) -> Job:
    """Monitor cycles until `check(job)` holds (many short turns, no timed assertion)."""
    job = await service.get_job(job_id)
    for _ in range(1500):
        await backend_of(service).monitor.run_cycle()
        job = await service.get_job(job_id)
        if check(job):
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(
        f"gave up waiting for {what}; the job: {job.to_dict()}; {worker_output(job)}"
    )


def worker_output(job: Job) -> str:
    """The end of what the job's command wrote on the worker (stderr, its log), for a failure."""
    if job.instance_id is None:
        return "no instance"
    sandbox = sandbox_of(job.instance_id)
    paths = [*sorted((sandbox / "agent").glob("command-*.err"))]
    paths.append(sandbox / "var/lib/awsjobs/state" / job.id / "log")
    return "; ".join(f"{p.name}: {p.read_text()[-2000:]!r}" for p in paths if p.exists())


def log_of(root: Path, job: Job) -> str:
    path = root / job.log_path
    return path.read_text() if path.exists() else ""


async def live_instances(aws: Any) -> list[str]:
    ec2 = await aws("ec2")
    found = await ec2.describe_instances()
    return [
        i["InstanceId"]
        for r in found["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    ]


async def keys_under(s3: Any, prefix: str) -> list[str]:
    listed = await s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [row["Key"] for row in listed.get("Contents", [])]


def area_of(job: Job) -> StagingArea:
    recorded = job.handle["s3_area"]
    return StagingArea(BUCKET, recorded["prefix"], recorded["owner"], job.id)


async def test_a_notebook_with_parameters_runs_and_its_outputs_come_back(
    service: JobService, folder: Path, root: Path, bucket: Any, aws: Any
) -> None:
    pytest.importorskip("papermill")
    job = await service.create_job({"path": "work/analysis.ipynb", "parameters": {"factor": 10}})
    assert job.storage == "s3"
    done = await until(service, job.id, lambda j: j.state.is_terminal, "the notebook to end")
    assert done.state is JobState.SUCCEEDED, done.to_dict()
    assert (folder / "scaled.csv").read_text().split() == ["10", "20", "30"]
    executed = json.loads((folder / f"analysis.{job.id}.ipynb").read_text())
    printed = json.dumps(executed["cells"])
    assert "scaled 3 rows by 10" in printed
    assert "[awsjobs] exit code 0" in log_of(root, done)
    assert done.progress is None and done.notes == []
    assert (folder / "data" / "numbers.csv").read_text() == "1\n2\n3\n"  # untouched
    assert await live_instances(aws) == []
    area = area_of(done)
    assert await keys_under(bucket, area.exit_code) == [area.exit_code]
    await service.delete_job(job.id)
    assert await keys_under(bucket, area.root) == []


async def test_the_log_is_readable_while_it_runs(
    service: JobService, folder: Path, root: Path, aws: Any
) -> None:
    job = await service.create_job({"path": "work/slow.py"})
    running = await until(
        service, job.id, lambda j: "started" in log_of(root, j), "the log to show the start"
    )
    assert running.state is JobState.RUNNING  # read while it ran
    assert "finished" not in log_of(root, running)
    # Its first log part marked it started: the monitor's look at its files says `running`.
    running = await until(service, job.id, lambda j: j.phase == "running", "its running phase")
    await let_it_finish(service, running)
    done = await until(service, job.id, lambda j: j.state.is_terminal, "the job to end")
    assert done.state is JobState.SUCCEEDED, done.to_dict()
    assert (folder / "result.txt").read_text() == "done"
    assert "finished" in log_of(root, done)
    assert await live_instances(aws) == []


async def let_it_finish(service: JobService, running: Job) -> None:
    """`slow.py` waits for `go` in its scratch folder on the worker (not on the server)."""
    assert running.instance_id is not None
    scratch = sandbox_of(running.instance_id) / "var/lib/awsjobs/work" / running.id
    (scratch / "go").write_text("")


# The folder's one simulated AWS, remembered for helpers that take no fixtures. (Not
# `from conftest import ...`: in a whole-suite run that name is another folder's conftest.)
_simulator: list[SimulatedAWS] = []


@pytest.fixture(autouse=True)
def remember_the_simulator(simulator: SimulatedAWS) -> None:
    _simulator[:] = [simulator]


def sandbox_of(instance_id: str) -> Path:
    return _simulator[0].sandbox(instance_id)


async def count_sent_bytes(service: JobService) -> list[int]:
    """Bytes of every PutObject / UploadPart body the server's S3 client sends to the job's
    inputs and blobs (not the manifest), appended to the answer as they go."""
    sent: list[int] = []
    s3 = await backend_of(service).clients.s3()

    def count(params: dict[str, Any], **_: Any) -> None:
        body = params.get("Body")
        if not str(params.get("Key", "")).endswith("manifest.json") and body is not None:
            sent.append(len(body) if isinstance(body, (bytes, bytearray)) else -1)

    s3.meta.events.register("provide-client-params.s3.PutObject", count)
    s3.meta.events.register("provide-client-params.s3.UploadPart", count)
    return sent


async def test_a_second_run_of_the_folder_sends_only_the_changed_file(
    service: JobService, folder: Path, root: Path
) -> None:
    (folder / "big.bin").write_bytes(b"x" * 300_000)
    (root / "logs").mkdir()
    sent = await count_sent_bytes(service)
    # (its log outside the folder: a log beside the script would be a new input next time)
    first = await service.create_job({"path": "work/count.py", "log_path": "logs/first.log"})
    done = await until(service, first.id, lambda j: j.state.is_terminal, "the first run")
    assert "3 numbers" in log_of(root, done)
    assert sum(sent) >= 300_000 and -1 not in sent
    sent.clear()
    (folder / "data" / "numbers.csv").write_text("1\n2\n3\n4\n")
    second = await service.create_job({"path": "work/count.py", "log_path": "logs/second.log"})
    done = await until(service, second.id, lambda j: j.state.is_terminal, "the second run")
    assert "4 numbers" in log_of(root, done)
    assert sent == [len("1\n2\n3\n4\n")]  # the edited file; the rest copied inside S3


async def test_a_conflicting_edit_is_kept_and_the_panel_is_told(
    service: JobService, folder: Path, root: Path, aws: Any
) -> None:
    (folder / "result.txt").write_text("before")
    job = await service.create_job({"path": "work/slow.py"})
    running = await until(service, job.id, lambda j: "started" in log_of(root, j), "the start")
    (folder / "result.txt").write_text("edited by the user while the job ran")
    await let_it_finish(service, running)
    done = await until(service, job.id, lambda j: j.state.is_terminal, "the job to end")
    assert (folder / "result.txt").read_text() == "edited by the user while the job ran"
    assert (folder / f"result.{job.id}.txt").read_text() == "done"
    assert done.notes == [
        f"result.txt changed since the job started: the job's version is result.{job.id}.txt"
    ]


async def test_a_folder_over_the_cap_is_refused_before_anything_launches(
    bucket: Any,
    folder: Path,
    make_backend: Callable[..., EC2Backend],
    root: Path,
    tmp_path: Path,
    aws: Any,
) -> None:
    (folder / "huge.bin").write_bytes(b"\0" * (2 * 1024 * 1024))
    async with started(make_service(make_backend, root, tmp_path, s3_max_upload_mib=1)) as made:
        with pytest.raises(InvalidRequest, match=r"huge\.bin"):
            await made.create_job({"path": "work/slow.py"})
        assert (await made.list_jobs())[0] == []
        assert await live_instances(aws) == []


def kept_per_job(s3mode: S3Mode) -> dict[str, object]:
    """What the S3 mode holds by job (its dicts and sets, and its graceful end's), if any."""
    holders = [vars(s3mode), vars(s3mode.end_gracefully)]
    return {
        name: value
        for attributes in holders
        for name, value in attributes.items()
        if isinstance(value, (dict, set)) and value
    }


async def test_jobs_only_checked_or_refused_after_the_check_leave_nothing_kept(
    bucket: Any,
    folder: Path,
    make_backend: Callable[..., EC2Backend],
    root: Path,
    tmp_path: Path,
    aws: Any,
) -> None:
    # A schedule's save checks its job and never creates it; the spending cap refuses a POST
    # after its check. The check keeps nothing for a launch that never comes: the snapshot is
    # the launch's own, and the check reads no file (no hash cache written).
    caps = {"max_hourly_spend": 0.0001}  # under any price: every POST is a 409
    async with started(make_service(make_backend, root, tmp_path, caps=caps)) as made:
        s3mode = backend_of(made).s3mode
        for _ in range(5):
            await made.check_job({"path": "work/slow.py"})
        with pytest.raises(OverBudget):
            await made.create_job({"path": "work/count.py"})
        assert kept_per_job(s3mode) == {}
        assert not (root / HASH_CACHE).exists()
        assert (await made.list_jobs())[0] == []
        assert await live_instances(aws) == []


async def test_stop_while_it_runs_ends_its_instance(
    service: JobService, root: Path, aws: Any
) -> None:
    job = await service.create_job({"path": "work/long.py"})
    await until(service, job.id, lambda j: "long job started" in log_of(root, j), "the start")
    await service.stop_job(job.id)
    done = await until(service, job.id, lambda j: j.state.is_terminal, "the stop")
    assert done.state is JobState.STOPPED
    assert await live_instances(aws) == []


async def test_stop_during_the_upload_launches_nothing_that_lives(
    service: JobService, folder: Path, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from awsjobs_lab.backends.ec2 import s3mode

    gate = asyncio.Event()
    original = s3mode.upload_inputs

    async def slow_upload(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await original(*args, **kwargs)

    monkeypatch.setattr(s3mode, "upload_inputs", slow_upload)
    job = await service.create_job({"path": "work/long.py"})
    await until(service, job.id, lambda j: j.instance_id is not None, "its instance")
    await service.stop_job(job.id)
    done = await until(service, job.id, lambda j: j.state.is_terminal, "the stop")
    assert done.state is JobState.STOPPED
    assert "command_id" not in done.handle  # the job's command never went out
    assert await live_instances(aws) == []


async def test_a_restart_mid_run_reattaches_and_brings_the_outputs_back(
    bucket: Any,
    folder: Path,
    make_backend: Callable[..., EC2Backend],
    root: Path,
    tmp_path: Path,
    aws: Any,
) -> None:
    first = make_service(make_backend, root, tmp_path)
    await first.start()
    job = await first.create_job({"path": "work/slow.py"})
    running = await until(first, job.id, lambda j: "started" in log_of(root, j), "the start")
    await first.close()  # the server goes away; the job goes on
    await let_it_finish(first, running)
    async with started(make_service(make_backend, root, tmp_path)) as second:
        done = await until(second, job.id, lambda j: j.state.is_terminal, "the job to end")
        assert done.state is JobState.SUCCEEDED, done.to_dict()
        assert (folder / "result.txt").read_text() == "done"
        assert log_of(root, done).splitlines().count("started") == 1  # no part twice
        assert "finished" in log_of(root, done)
        assert await live_instances(aws) == []


def test_storage_follows_the_settings_and_the_message_names_what_is_missing() -> None:
    assert EC2Backend(efs_file_system_id="fs-1").storage == "efs"
    assert EC2Backend(s3_bucket="b").storage == "s3"
    assert EC2Backend(efs_file_system_id="fs-1", s3_bucket="b").storage == "efs"
    assert EC2Backend(efs_file_system_id="fs-1", storage="s3").missing_settings() == [
        "image_id",
        "subnet_ids",
        "s3_bucket",
        "instance_profile_name",
    ]
    problem = EC2Backend().configuration_problem() or ""
    assert "c.EC2Backend.efs_file_system_id" in problem
    assert "c.EC2Backend.s3_bucket" in problem  # the way without EFS is named too
    s3_only = EC2Backend(s3_bucket="b", root_dir="/anywhere", efs_mount_path="/elsewhere")
    assert s3_only.mount_problem() is None  # no shared file system to be inside of


def test_the_worker_script_is_valid_shell_and_uses_only_what_the_shim_implements(
    tmp_path: Path,
) -> None:
    lines = build_s3_commands(
        job_id="0123456789abcdef",
        argv=["python3", "it's {x}.py"],
        locations=S3Locations("s3://b/p/in/", "s3://b/p/out/", "s3://b/p/log/", "s3://b/p/x"),
        region="eu-west-1",
        env={"NAME": "a 'quoted' $value"},
        attempt=2,
        watch_spot=True,
    )
    script = tmp_path / "command.sh"
    script.write_text("\n".join(lines) + "\n")
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    calls = [line.split("aws ", 1)[1] for line in lines if "aws s3" in line]
    assert calls and all(call.startswith("s3 cp --only-show-errors") for call in calls)
    with pytest.raises(InvalidRequest):
        build_s3_commands(
            job_id="../etc",
            argv=["x"],
            locations=S3Locations("s3://b/in/", "s3://b/out/", "s3://b/log/", "s3://b/x"),
            region="eu-west-1",
        )


async def test_a_failed_upload_fails_the_job_and_ends_its_instance(
    service: JobService, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from awsjobs_lab.backends.ec2 import s3mode
    from awsjobs_lab.errors import BackendError

    async def failing_upload(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.2)  # the instance is launched meanwhile
        raise BackendError("PutObject s3://team-jobs/...: AccessDenied")

    monkeypatch.setattr(s3mode, "upload_inputs", failing_upload)
    job = await service.create_job({"path": "work/long.py"})
    done = await until(service, job.id, lambda j: j.state.is_terminal, "the failure")
    assert done.state is JobState.FAILED
    assert "uploading the job's files failed" in (done.error or "")
    assert "AccessDenied" in (done.error or "")
    assert "command_id" not in done.handle
    assert await live_instances(aws) == []


async def test_stop_sends_sigterm_and_brings_back_what_the_job_made(
    service: JobService, folder: Path, root: Path, sim: SimulatedAWS, aws: Any
) -> None:
    job = await service.create_job({"path": "work/partial.py"})
    await until(service, job.id, lambda j: "wrote partial.txt" in log_of(root, j), "the file")
    await service.stop_job(job.id)
    done = await until(service, job.id, lambda j: j.state.is_terminal, "the stop")
    assert done.state is JobState.STOPPED
    assert (folder / "partial.txt").read_text() == "half way"  # uploaded after SIGTERM
    assert "[awsjobs] exit code 143" in log_of(root, done)  # the end of its log too
    assert await signal_commands(aws, done) == 1
    assert await live_instances(aws) == []


async def test_a_job_that_ignores_sigterm_is_ended_after_the_grace(
    bucket: Any,
    folder: Path,
    make_backend: Callable[..., EC2Backend],
    root: Path,
    tmp_path: Path,
    sim: SimulatedAWS,
    aws: Any,
) -> None:
    made = make_service(make_backend, root, tmp_path, s3_stop_grace_seconds=1.0)
    async with started(made) as service:
        job = await service.create_job({"path": "work/stubborn.py"})
        await until(service, job.id, lambda j: "ignoring SIGTERM" in log_of(root, j), "start")
        await service.stop_job(job.id)
        done = await until(service, job.id, lambda j: j.state.is_terminal, "the stop")
        assert done.state is JobState.STOPPED
        assert await signal_commands(aws, done) == 1  # SIGTERM was asked for
        assert await live_instances(aws) == []  # terminated all the same: no leak
        assert not (folder / "stubborn.txt").exists()  # nothing was uploaded
        assert "[awsjobs] exit code" not in log_of(root, done)


async def test_a_restart_during_the_upload_resumes_the_launch_on_the_same_instance(
    bucket: Any,
    folder: Path,
    make_backend: Callable[..., EC2Backend],
    root: Path,
    tmp_path: Path,
    sim: SimulatedAWS,
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from awsjobs_lab.backends.ec2 import s3mode

    original = s3mode.upload_inputs

    async def hangs(*args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()  # the first server goes away in the middle of it

    monkeypatch.setattr(s3mode, "upload_inputs", hangs)
    first = make_service(make_backend, root, tmp_path, close_launch_timeout_seconds=0.05)
    await first.start()
    job = await first.create_job({"path": "work/count.py"})
    await until(
        first,
        job.id,
        # (booting: reported once its instance is recorded, the upload still going)
        lambda j: j.phase == "booting" and j.progress is not None,
        "the upload under way on a launched instance",
    )
    await first.close()  # no Stop: the job stays launching, its instance boots on
    assert await live_instances(aws) == [job_instance(sim)]
    monkeypatch.setattr(s3mode, "upload_inputs", original)
    async with started(make_service(make_backend, root, tmp_path)) as second:
        done = await until(second, job.id, lambda j: j.state.is_terminal, "the job to end")
        assert done.state is JobState.SUCCEEDED, done.to_dict()
        assert "3 numbers" in log_of(root, done)
        assert done.progress is None
        assert len(sim.record.instances) == 1  # the launch went on: no second instance
        assert await live_instances(aws) == []


async def signal_commands(aws: Any, job: Job) -> int:
    """How many graceful-stop commands (SIGTERM to the job) were sent to the job's instance."""
    listed = await (await aws("ssm")).list_commands(InstanceId=job.instance_id)
    return sum(1 for c in listed["Commands"] if c["Comment"] == f"awsjobs stop {job.id}")


def job_instance(sim: SimulatedAWS) -> str:
    """The one instance the simulator has launched."""
    (only,) = sim.record.instances
    return only


async def test_a_spot_interruption_uploads_what_the_job_made_before_the_reclaim(
    service: JobService,
    folder: Path,
    root: Path,
    worker: SimulatedAWS,
    bucket: Any,
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWSJOBS_SPOT_POLL_SECONDS", "0.1")  # the workers' notice watcher
    # AWS: two minutes. Here AWS reclaims the instance once the outputs are in S3 (set_state),
    # not after a delay the worker's uploads could outlast on a loaded machine.
    worker.configure({"clock": {"spot_notice_seconds": 600}})
    job = await service.create_job({"path": "work/partial.py", "spot": True, "max_attempts": 1})
    running = await until(
        service, job.id, lambda j: "wrote partial.txt" in log_of(root, j), "the file"
    )
    assert running.instance_id is not None
    worker.interrupt_spot(running.instance_id)

    async def uploaded() -> list[str]:
        return await keys_under(bucket, area_of(running).outputs)

    await eventually(uploaded, timeout=120)
    set_state(worker, running.instance_id, "Server.SpotInstanceTermination")
    done = await until(service, job.id, lambda j: j.state.is_terminal, "the interruption")
    assert done.state is JobState.INTERRUPTED, done.to_dict()
    assert (folder / "partial.txt").read_text() == "half way"  # uploaded after the notice
    assert await live_instances(aws) == []


# Boots ready, its deadline not written yet (the test writes it, see below).
NEAR_DEADLINE_BOOT = """#!/bin/bash
mkdir -p /run/awsjobs /var/lib/awsjobs
touch /run/awsjobs/ready
"""


async def test_the_worker_sends_sigterm_before_its_deadline_and_uploads_then_halts(
    worker: SimulatedAWS, bucket: Any, aws: Any
) -> None:
    await bucket.put_object(Bucket=BUCKET, Key="w/in/run.sh", Body=b"echo made > made.txt\n")
    lines = build_s3_commands(
        job_id="0123456789abcdef",
        argv=["bash", "-c", "bash run.sh; echo waiting; sleep 60"],
        locations=S3Locations(
            f"s3://{BUCKET}/w/in/",
            f"s3://{BUCKET}/w/out/",
            f"s3://{BUCKET}/w/log/",
            f"s3://{BUCKET}/w/exit_code",
        ),
        region="us-east-1",
        term_before_deadline=5,
    )
    ec2, ssm = await aws("ec2"), await aws("ssm")
    iid = await launch(
        ec2, UserData=NEAR_DEADLINE_BOOT, InstanceInitiatedShutdownBehavior="terminate"
    )
    await registered(worker, iid)
    # The boot script's deadline, a few seconds away (what `shutdown -h +N` stands for here),
    # written just before the command goes out rather than at boot: on a loaded machine the
    # boot and the registration could use up most of a few seconds, and a SIGTERM before the
    # job has made its file would leave nothing to upload.
    deadline = worker.sandbox(iid) / "var/lib/awsjobs/deadline"
    deadline.write_text(f"{int(time.time()) + 15}\n")
    await ssm.send_command(
        InstanceIds=[iid], DocumentName="AWS-RunShellScript", Parameters={"commands": lines}
    )

    async def halted() -> bool:
        return await state_of(ec2, iid) == "terminated"

    await eventually(halted, timeout=60)  # it halted itself, after its uploads
    assert await keys_under(bucket, "w/out/") == ["w/out/made.txt"]
    assert await keys_under(bucket, "w/exit_code") == []  # as at the deadline: timed out
    parts = [await body_of(bucket, key) for key in await keys_under(bucket, "w/log/")]
    log = b"".join(parts).decode()
    assert "the maximum lifetime ends in 5 s: SIGTERM sent to the job" in log
    assert "not recorded; the instance halts at its maximum lifetime" in log


async def body_of(s3: Any, key: str) -> bytes:
    answer = await s3.get_object(Bucket=BUCKET, Key=key)
    async with answer["Body"] as stream:
        data: bytes = await stream.read()
    return data
