"""What a job's worker instance is given: its RunInstances parameters (tags, image, placement),
its boot script and the SSM script that runs the job, from the backend's settings and the job.
Pure, apart from preparing the job's state folder and reading the clock once per launch."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ...aws import tags
from ...aws.command import build_commands
from ...aws.launch import LaunchSpec, run_instances_parameters
from ...aws.select import Candidate
from ...aws.userdata import build_user_data
from ...jobfiles import STARTED_FILE
from ...models import Job
from .choice import WorkerImage
from .settings import EC2Settings


def job_commands(settings: EC2Settings, job: Job, argv: list[str]) -> list[str]:
    """The job's SSM script, with absolute paths (the same on the server and the worker)."""
    root = PurePosixPath(settings.root_dir)
    return build_commands(
        job_id=job.id,
        argv=argv,
        cwd=str((root / job.path).parent),
        log_path=str(root / job.log_path),
        exit_code_path=settings.exit_code_path(job).as_posix(),
        env=job.env,
        attempt=job.attempt_number,
        watch_spot=job.spot,
    )


def launch_key(job: Job) -> str:
    """What one attempt's launch is known by (its idempotency tokens, the launcher's in-flight
    call): the job id for the first, `<job id>-a<n>` for a relaunch, so a new attempt never
    gets the answer AWS kept for the token of an earlier one."""
    n = job.attempt_number
    return job.id if n == 1 else f"{job.id}-a{n}"


def command_comment(job: Job) -> str:
    """SendCommand's `Comment`: the job id and its file's name, shown in the SSM console. It is
    a parameter SSM may resolve references in too, so the name keeps only plain characters."""
    name = re.sub(r"[^A-Za-z0-9._ -]", "_", PurePosixPath(job.path).name)
    return f"awsjobs {job.id} {name}"


@dataclass(frozen=True)
class WorkerBoot:
    """What one launch of a job gives its worker: the boot script, and the deadline the
    instance is tagged with (`awsjobs:expires-at`). Made once per launch, so every
    RunInstances call of that launch (botocore's retries, a retry with the same ClientToken)
    sends the same parameters."""

    script: str
    expires_at: float  # seconds since the epoch


def user_data(settings: EC2Settings, job: Job) -> WorkerBoot:
    """The worker's boot script (mount the shared file system, halt at the lifetime deadline,
    re-armed after a reboot) and its deadline, both in real minutes: the worker's own clock
    knows nothing of a shrunk test minute."""
    script = build_user_data(
        job_id=job.id,
        lifetime_minutes=job.max_lifetime_minutes,
        # Storage "s3": no file system to mount (the command fetches the job's files).
        efs_file_system_id="" if job.storage == "s3" else settings.efs_file_system_id,
        efs_access_point_id=settings.efs_access_point_id,
        efs_use_iam=settings.efs_use_iam,
        mount_path=settings.mount_path,
        region=settings.region,
        extra_commands=settings.extra_user_data,
    )
    return WorkerBoot(script, expires_at=time.time() + job.max_lifetime_minutes * 60.0)


def prepare_files(settings: EC2Settings, job: Job) -> None:
    """The job's state folder, without an exit code from an earlier run. Blocking."""
    settings.job_state_dir(job).mkdir(parents=True, exist_ok=True)
    settings.exit_code_path(job).unlink(missing_ok=True)
    (settings.job_state_dir(job) / STARTED_FILE).unlink(missing_ok=True)


def job_tags(
    settings: EC2Settings, job: Job, candidate: Candidate, expires_at: float
) -> dict[str, str]:
    """The tags of a job's instance and volume: ours, this owner's, this job's, its deadline."""
    name = PurePosixPath(job.path).name
    found = {
        **{str(k): str(v) for k, v in settings.extra_tags.items()},
        tags.NAME: tags.tag_value(f"awsjobs-{name}-{job.id}"),
        tags.JOB_ID: job.id,
        tags.ATTEMPT: str(job.attempt_number),
        tags.OWNER: settings.owner_tag or tags.UNKNOWN_OWNER,
        tags.MANAGED: tags.TRUE,
        tags.ROLE: tags.ROLE_JOB,
        tags.EXPIRES_AT: tags.expires_at_value(expires_at),
    }
    if candidate.hourly_price is not None:
        found[tags.HOURLY_PRICE] = f"{candidate.hourly_price:.6f}"
    return found


def run_parameters(
    settings: EC2Settings,
    job: Job,
    candidate: Candidate,
    boot: WorkerBoot,
    attempt: int,
    image: WorkerImage,
) -> dict[str, Any]:
    """RunInstances' arguments for the job's `attempt`-th candidate."""
    spec = LaunchSpec(
        image_id=image.image_id,
        instance_type=candidate.instance_type,
        user_data=boot.script,
        tags=job_tags(settings, job, candidate, boot.expires_at),
        client_token=f"awsjobs-{launch_key(job)}-{attempt}",
        root_device=image.root_device,
        root_volume_gib=max(settings.root_volume_gib, image.root_snapshot_gib),
        subnet_id=candidate.subnet_id,
        security_group_ids=settings.security_group_ids,
        instance_profile=settings.instance_profile,
        key_name=settings.key_name,
        spot=candidate.spot,
    )
    return run_instances_parameters(spec)
