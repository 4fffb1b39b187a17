"""What a scheduled run's worker is given, fixed when its schedule is saved: the RunInstances
request EventBridge Scheduler sends at each firing (tags, image, placement, the self-sufficient
boot script of `aws.scheduled_boot`) and the run record the worker leaves on the shared file
system, or in S3 mode in the run's area (`scheduled_s3`). Built from the ordinary worker's
pieces (`worker.py`); pure.

The run's id is known only at boot, so the job is written with `RUN_TOKEN` for its id: in its
log path (`<stem>.<run id>.log`, or the schedule's own log path with `.<run id>` before its
suffix), its state folder, a notebook's output name and its argv.
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import PurePosixPath
from typing import Any

from ... import jobfiles
from ...aws import tags
from ...aws.scheduled_boot import (
    INSTANCE_TOKEN,
    RUN_TOKEN,
    STARTED_TOKEN,
    ScheduledRun,
    build_scheduled_user_data,
)
from ...aws.select import Candidate
from ...models import Job, JobState
from ...runners import build_command
from ...schedules.model import Schedule
from . import worker
from .choice import WorkerImage
from .scheduled_s3 import run_area_record, scheduled_s3
from .settings import EC2Settings

SELF_RUN = "self_run"  # in a job's handle: its worker runs the job itself (no SSM command)
# The tags a job's worker gets that a scheduled run's learns at boot, or never has.
_NOT_AT_CREATION = (tags.JOB_ID, tags.ATTEMPT, tags.EXPIRES_AT)


def _with_run_id(path: str | None, job_id: str) -> str | None:
    """A path of the job with the run's id (RUN_TOKEN) in place of the job's id; one without
    the id gets `.<run id>` before its suffix, so that runs never share a file."""
    if not path:
        return path
    if job_id in path:
        return path.replace(job_id, RUN_TOKEN)
    pure = PurePosixPath(path)
    return str(pure.with_name(f"{pure.stem}.{RUN_TOKEN}{pure.suffix}"))


def run_template(job: Job, schedule: Schedule, s3_area: dict[str, str] | None = None) -> Job:
    """The job every run of the schedule performs, with RUN_TOKEN for its id; in S3 mode,
    `s3_area` is its area's bucket, prefix and owner (as a job's handle records them)."""
    handle: dict[str, Any] = {"instance_id": INSTANCE_TOKEN, SELF_RUN: True}
    if s3_area is not None:
        handle["s3_area"] = s3_area
    return dataclasses.replace(
        job,
        id=RUN_TOKEN,
        state=JobState.RUNNING,
        schedule=schedule.name,
        log_path=_with_run_id(job.log_path, job.id) or job.log_path,
        output_path=_with_run_id(job.output_path, job.id),
        handle=handle,
        history=[],
        attempts=[],
    )


def run_record(template: Job, schedule: Schedule) -> dict[str, Any]:
    """What the worker writes to `.awsjobs/jobs/<run id>/run.json` (tokens replaced at boot),
    and what the schedule's request carries for `list`: the schedule and the run's job."""
    return {
        "schedule": schedule.name,
        "owner": schedule.owner,
        "request": schedule.job,  # the POST jobs body, as the schedule keeps it
        "job": template.to_record(),
        "instance_id": INSTANCE_TOKEN,
        "started_at": STARTED_TOKEN,
    }


def scheduled_tags(
    settings: EC2Settings, schedule: Schedule, job: Job, candidate: Candidate
) -> dict[str, str]:
    """A scheduled run's instance and volume tags at creation: the tool's (so the sweep and the
    Instances view see it), its schedule, the role that keeps it from being taken for an orphan
    while it lives (it ends itself); its job id and deadline come at boot."""
    found = worker.job_tags(settings, job, candidate, 0.0)
    for key in _NOT_AT_CREATION:
        found.pop(key, None)
    name = PurePosixPath(job.path).name
    found[tags.NAME] = tags.tag_value(f"awsjobs-{name}-{schedule.name}")
    found[tags.ROLE] = tags.ROLE_SCHEDULED_RUN
    found[tags.SCHEDULE] = schedule.name
    return found


def boot_script(settings: EC2Settings, template: Job, schedule: Schedule) -> str:
    """The scheduled run's whole boot script; in S3 mode (its template's storage), the one
    that downloads the schedule's inputs and writes to the run's area."""
    s3 = template.storage == "s3"
    root = PurePosixPath(settings.root_dir)
    argv = build_command(template, python=settings.worker_python)
    return build_scheduled_user_data(
        ScheduledRun(
            schedule=schedule.name,
            argv=argv,
            cwd=str((root / template.path).parent),
            log_path=str(root / template.log_path),
            exit_code_path=jobfiles.exit_code_path(settings.root_dir, RUN_TOKEN).as_posix(),
            state_dir=(root / jobfiles.STATE_DIR.as_posix()).as_posix(),
            env=template.env,
            record=run_record(template, schedule),
            lifetime_minutes=template.max_lifetime_minutes,
            region=settings.region,
            efs_file_system_id=settings.efs_file_system_id,
            efs_access_point_id=settings.efs_access_point_id,
            efs_use_iam=settings.efs_use_iam,
            mount_path=settings.mount_path,
            extra_commands=settings.extra_user_data,
            watch_spot=template.spot,
            s3=scheduled_s3(settings, schedule.owner, schedule.name) if s3 else None,
        )
    )


def run_instances_input(
    settings: EC2Settings,
    schedule: Schedule,
    job: Job,
    candidate: Candidate,
    image: WorkerImage,
) -> dict[str, Any]:
    """The RunInstances request of every firing, in the API's names: the ordinary worker's
    parameters, with the scheduled run's boot script (base64, as the API takes it) and tags, and
    no ClientToken (one fixed token would make every firing return the first one's instance)."""
    s3_area = run_area_record(settings, schedule.owner) if job.storage == "s3" else None
    template = run_template(job, schedule, s3_area)
    script = boot_script(settings, template, schedule)
    params = worker.run_parameters(
        settings, job, candidate, worker.WorkerBoot(script, 0.0), 0, image
    )
    params.pop("ClientToken", None)
    params["UserData"] = base64.b64encode(script.encode("utf-8")).decode("ascii")
    params["TagSpecifications"] = tags.tag_specifications(
        scheduled_tags(settings, schedule, job, candidate)
    )
    return params
