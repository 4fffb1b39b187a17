"""Storage "s3": a launch cut short by a server stop (or kill), resumed after the restart.

An S3 job's launch lasts as long as its upload (the instance boots meanwhile, and the command
goes out only once the inputs are in S3), so a server stop often falls inside it. On the next
start `EC2Backend.reattach` finds the job `launching` with its instance alive (recorded, or
found by its job tag: never a second one) and no command sent. Instead of ending it, as a bare
launch is ended, `resume_launch` finishes it on that instance: the upload again (idempotent:
what is already in S3 is not sent twice, the progress shows meanwhile), then the job's command.
A Stop during the resumed upload ends it as during a first launch (the instance terminated).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ... import phases
from ...errors import BackendError
from ...models import Job, JobState, Outcome
from ...runners import build_command

if TYPE_CHECKING:
    from .backend import EC2Backend


async def resume_launch(backend: EC2Backend, job: Job, iid: str) -> Outcome | None:
    """Upload the job's inputs and send its command to its (alive) instance `iid`: None once
    the command is out (the job then runs, as after any restart), else how it ended."""

    async def record(handle: dict[str, Any] | None = None, **fields: Any) -> None:
        job.handle.update(handle or {})
        if backend.save_job is not None:
            await backend.save_job(job.id, handle=handle, **fields)

    argv = build_command(job, python=backend.worker_python)
    launched_at = job.started_at or time.time()
    if job.instance_id != iid:  # found by its tag: recorded, so Stop and a restart find it
        await record({"instance_id": iid}, command=argv, started_at=launched_at)
    backend.log.info("awsjobs: job %s: resuming its launch on %s (upload, command)", job.id, iid)
    await backend.phases.report(job.id, phases.BOOTING)
    upload = backend.s3mode.start_upload(job, record)
    try:
        uploaded = await backend.s3mode.uploaded(
            upload, iid, lambda: backend.job_instances.terminate_until_confirmed([iid], job.id)
        )
    except BackendError as exc:  # its instance is terminated
        return Outcome(JobState.FAILED, error=str(exc))
    finally:
        upload.cancel()
    if not uploaded:
        return Outcome(JobState.STOPPED, error="stopped on request")
    try:
        command_id = await backend.command_sender.send(
            job, iid, backend.s3mode.commands(job, argv), launched_at
        )
    except BackendError as exc:  # its instance is terminated
        return Outcome(JobState.FAILED, error=str(exc))
    if command_id is not None:  # (None: stopped, or the instance went away: the monitor rules)
        await record({"command_id": command_id})
    return None
