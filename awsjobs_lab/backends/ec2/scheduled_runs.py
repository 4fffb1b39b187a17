"""The runs EventBridge Scheduler started, as jobs: found by their instances (tag
`awsjobs:schedule`), and by the record each run leaves on the shared file system
(`.awsjobs/jobs/<run id>/run.json`, with its `exit_code` beside it; in S3 mode in its area:
`scheduled_s3`) once its instance is no longer listed. A run with an exit code is imported
finished; any other as running, with its instance in its handle (and no SSM command): the
service's driver then reattaches and watches it like any job (the exit-code file, the
instance's end), and Stop terminates its instance.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import jobfiles
from ...aws import instances, tags
from ...aws.scheduled_boot import INSTANCE_TOKEN, RUN_RECORD_FILE, RUN_TOKEN, STARTED_TOKEN
from ...models import Attempt, Job, JobState, Transition, now
from ...patterns import JOB_ID
from ...safeopen import read_small_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One run found: its id, its record (tokens replaced), and what EC2 says of its instance
    (None once the instance is no longer listed)."""

    run_id: str
    record: dict[str, Any]
    instance: Mapping[str, Any] | None = None


def completed_record(
    record: Mapping[str, Any], run_id: str, instance_id: str, started_at: float
) -> dict[str, Any]:
    """A record as it comes from a schedule's boot script, with its tokens replaced as the
    worker replaces them at boot."""
    text = json.dumps(record)
    for token, value in (
        (RUN_TOKEN, run_id),
        (INSTANCE_TOKEN, instance_id),
        (STARTED_TOKEN, f"{started_at:.0f}"),
    ):
        text = text.replace(token, value)
    completed: dict[str, Any] = json.loads(text)
    return completed


def record_of_text(text: str | bytes) -> dict[str, Any] | None:
    """A run's record from its file's text, or None (not JSON, or not a run's)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("job"), dict) else None


def read_record(folder: Path) -> dict[str, Any] | None:
    """A run's record from its folder, or None (none, unreadable, or not a run's)."""
    try:
        return record_of_text(read_small_text(folder / RUN_RECORD_FILE))
    except OSError:
        return None


def runs_on_disk(root: str, owner: str, skip: set[str]) -> list[Run]:
    """The runs recorded under `<root>/.awsjobs/jobs/` by this owner, but those in `skip`.
    Blocking (the shared file system): call it in a thread."""
    state_dir = Path(root) / jobfiles.STATE_DIR
    try:
        folders = [p for p in state_dir.iterdir() if JOB_ID.match(p.name) and p.name not in skip]
    except OSError:
        return []
    found = []
    for folder in folders:
        record = read_record(folder)
        if record is not None and record.get("owner") == owner:
            found.append(Run(folder.name, record))
    return found


def _started_at(run: Run) -> float:
    launched = instances.launch_time(run.instance) if run.instance else None
    try:
        recorded = float(run.record.get("started_at", ""))
    except (TypeError, ValueError):
        recorded = None
    return launched or recorded or now()


def _attempt(run: Run, job: Job, started: float) -> Attempt:
    instance = run.instance or {}
    found = tags.tags_of(instance)
    price = found.get(tags.HOURLY_PRICE)
    return Attempt(
        number=1,
        spot=job.spot,
        instance_id=str(run.record.get("instance_id") or "") or None,
        instance_type=instance.get("InstanceType") or job.instance_type,
        availability_zone=(instance.get("Placement") or {}).get("AvailabilityZone"),
        hourly_price=float(price) if price else None,
        started_at=started,
    )


def job_of_run(run: Run, backend_id: str, exit_code: int | None, finished_at: float) -> Job:
    """The run as a job: finished when it has an exit code, else running (to be watched)."""
    job = Job.from_record(dict(run.record["job"]))
    started = _started_at(run)
    attempt = _attempt(run, job, started)
    job.id = run.run_id
    job.backend = backend_id
    job.schedule = str(run.record.get("schedule") or job.schedule or "")
    job.created_at = job.started_at = started
    job.updated_at = now()
    job.instance_type = attempt.instance_type
    job.hourly_price = attempt.hourly_price
    job.handle = {**job.handle, "instance_id": attempt.instance_id}
    job.attempts = [attempt]
    job.state = JobState.RUNNING
    job.history = [Transition(JobState.RUNNING, started, f"started by schedule {job.schedule}")]
    if exit_code is not None:
        outcome = jobfiles.outcome_from_exit_code(exit_code)
        job.state, job.exit_code, job.error = outcome.state, outcome.exit_code, outcome.error
        job.finished_at = finished_at
        job.end_attempt(outcome.state.value, finished_at)
        job.history.append(Transition(outcome.state, finished_at, outcome.error))
    return job


def finished_at_of(root: str, run_id: str) -> float:
    """When a run wrote its exit code (its file's time), else now. Blocking."""
    try:
        return jobfiles.exit_code_path(root, run_id).stat().st_mtime
    except OSError:
        return now()
