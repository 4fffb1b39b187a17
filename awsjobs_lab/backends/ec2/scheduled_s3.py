"""EC2 schedules in S3 mode (`c.EC2Backend.storage = "s3"`): a scheduled run needs nothing from
the server, so the files it runs on are staged when the schedule is saved.

- **The schedule's inputs**: the snapshot of the script's folder, uploaded when the schedule is
  saved (and again at every save) to `<prefix><owner>/schedules/<name>/in/` with its manifest,
  by the staging library (the owner's `blobs/` shared with jobs: unchanged content is copied
  inside S3). A run uses the files as of the last save. Deleted with the schedule.
- **A run's area**: `<prefix><owner>/<run id>/`, the layout a job's area has (`staging.area`):
  the worker writes its record `run.json` and the schedule's manifest there at boot, then its
  log parts, outputs and exit code as any S3-mode job, so the follower, the outputs' download
  and the area's removal with the job are the S3 mode's own (`s3mode`).
- **Finding runs** once their instance is gone: the owner's areas are listed (one
  ListObjectsV2 by `/`), and those with a run record are runs; the others are jobs' (read once
  per server, then remembered).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...aws.command_s3 import S3Locations
from ...aws.errors import aws_errors
from ...aws.s3 import head_object, is_not_found, read_object
from ...aws.scheduled_boot import RUN_RECORD_FILE, RUN_TOKEN, STAND_IN_ID, ScheduledS3
from ...errors import BackendError
from ...jobfiles import outcome_from_exit_code
from ...models import Job, now
from ...patterns import JOB_ID, SCHEDULE_NAME
from ...schedules.model import Schedule
from ...staging import StagingArea, delete_area, ignore_progress, snapshot_folder, upload_inputs
from ...staging.area import normalise_prefix, owner_segment
from .s3mode import S3Mode
from .scheduled_runs import Run, record_of_text
from .settings import EC2Settings

SCHEDULES_FOLDER = "schedules/"  # under the owner's root: one folder per schedule


@dataclass(frozen=True)
class ScheduleArea(StagingArea):
    """A schedule's inputs: `job_id` holds the schedule's name, and its root is
    `<prefix><owner>/schedules/<name>/` (`in/`, `manifest.json`)."""

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("a staging area needs a bucket")
        if not SCHEDULE_NAME.match(self.job_id):
            raise ValueError(f"not a schedule name: {self.job_id!r}")
        object.__setattr__(self, "prefix", normalise_prefix(self.prefix))
        object.__setattr__(self, "owner", owner_segment(self.owner))

    @property
    def root(self) -> str:
        return f"{self.owner_root}{SCHEDULES_FOLDER}{self.job_id}/"


def schedule_area(settings: EC2Settings, owner: str, name: str) -> ScheduleArea:
    return ScheduleArea(settings.s3_bucket, settings.s3_prefix, owner, name)


def run_area_record(settings: EC2Settings, owner: str) -> dict[str, str]:
    """A run's area as a job's handle records it (`s3mode.S3Mode.area`)."""
    return {"bucket": settings.s3_bucket, "prefix": settings.s3_prefix, "owner": owner}


def scheduled_s3(settings: EC2Settings, owner: str, name: str) -> ScheduledS3:
    """The URLs a scheduled run's worker uses, `RUN_TOKEN` standing for the run's id."""
    inputs = schedule_area(settings, owner, name)
    run = StagingArea(settings.s3_bucket, settings.s3_prefix, owner, STAND_IN_ID)

    def of_run(key: str) -> str:
        return run.url(f"{run.owner_root}{RUN_TOKEN}/{key[len(run.root) :]}")

    return ScheduledS3(
        locations=S3Locations(
            inputs=inputs.url(inputs.inputs),
            outputs=of_run(run.outputs),
            log_parts=of_run(run.log_parts),
            exit_code=of_run(run.exit_code),
        ),
        record=of_run(run.root + RUN_RECORD_FILE),
        manifest_from=inputs.url(inputs.manifest),
        manifest_to=of_run(run.manifest),
    )


# -- the schedule's inputs -------------------------------------------------------------------


async def upload_schedule_inputs(s3mode: S3Mode, s3: Any, schedule: Schedule, job: Job) -> None:
    """The snapshot of the job's folder into the schedule's area (`TooLarge` over the cap)."""
    root = Path(s3mode.settings.root_dir)
    snapshot = await asyncio.to_thread(
        snapshot_folder, s3mode.folder(job), root, max_bytes=s3mode.max_bytes
    )
    area = schedule_area(s3mode.settings, schedule.owner, schedule.name)
    await upload_inputs(s3, area, snapshot, s3mode.max_bytes, ignore_progress)


async def delete_schedule_inputs(settings: EC2Settings, s3: Any, owner: str, name: str) -> int:
    """Delete the schedule's area; how many objects."""
    return await delete_area(s3, schedule_area(settings, owner, name))


# -- its runs ------------------------------------------------------------------------------


async def _area_ids(s3: Any, bucket: str, owner_root: str) -> list[str]:
    """The job ids that have an area under the owner's root."""
    found = []
    with aws_errors(f"listing s3://{bucket}/{owner_root}"):
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket, Prefix=owner_root, Delimiter="/"):
            for row in page.get("CommonPrefixes", []) or []:
                name = str(row["Prefix"])[len(owner_root) :].rstrip("/")
                if JOB_ID.match(name):
                    found.append(name)
    return found


async def _read_record(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """A run's record, None when the area has none (a job's)."""
    try:
        text = await read_object(s3, bucket, key)
    except BackendError as exc:
        if exc.__cause__ is not None and is_not_found(exc.__cause__):
            return None
        raise
    return record_of_text(text)


class RunsInS3:
    """The runs recorded in the owner's areas; the areas found to be jobs' are remembered."""

    def __init__(self, settings: EC2Settings) -> None:
        self.settings = settings
        self._not_runs: set[str] = set()

    async def find(self, s3: Any, owner: str, skip: set[str]) -> list[Run]:
        bucket = self.settings.s3_bucket
        root = StagingArea(bucket, self.settings.s3_prefix, owner, STAND_IN_ID)
        runs = []
        for run_id in await _area_ids(s3, bucket, root.owner_root):
            if run_id in skip or run_id in self._not_runs:
                continue
            key = f"{root.owner_root}{run_id}/{RUN_RECORD_FILE}"
            record = await _read_record(s3, bucket, key)
            if record is None or record.get("owner") != owner:
                self._not_runs.add(run_id)
                continue
            runs.append(Run(run_id, record))
        return runs


async def finished_at(s3: Any, area: StagingArea) -> float:
    """When the run wrote its exit code (its object's time), else now."""
    head = await head_object(s3, area.bucket, area.exit_code)
    modified = (head or {}).get("LastModified")
    return modified.timestamp() if modified is not None else now()


async def bring_back(s3mode: S3Mode, job: Job) -> None:
    """A finished run's log and outputs beside its script, as for a job that ends (conflicts
    kept, said in its notes), before it is stored: what `finish` saves goes onto `job`."""

    async def onto_job(_job_id: str, handle: dict[str, Any] | None = None, **fields: Any) -> None:
        if handle:
            job.handle = {**job.handle, **handle}
        for name, value in fields.items():
            setattr(job, name, value)

    if job.exit_code is not None:
        await s3mode.finish(job, outcome_from_exit_code(job.exit_code), onto_job)


def is_s3_run(run: Run) -> bool:
    job = run.record.get("job")
    return isinstance(job, dict) and job.get("storage") == "s3"
