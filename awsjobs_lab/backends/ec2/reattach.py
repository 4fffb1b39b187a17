"""After a server restart: an active EC2 job's instance found again (recorded, or by the job's
tags when the server stopped before recording it), and whether the job still runs on it or
how it ended.

Never a second instance: extra ones of the job are terminated, and one that was launched but
never given its command is terminated too (or, for an S3 job cut during its upload, its launch
is resumed on it). Where EC2 may not show an instance yet (eventual consistency), a
`BackendError` says so and the service tries again later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ...aws import instances, tags
from ...aws.monitor import classify
from ...errors import BackendError
from ...models import Job, JobState, Outcome
from .job_instances import JobInstances
from .scheduled_worker import SELF_RUN
from .settings import EC2Settings

# Finishes an S3 job's launch that a server stop cut during its upload (`s3_resume`).
ResumeLaunch = Callable[[Job, str], Awaitable[Outcome | None]]


class Reattacher:
    """The EC2 backend's look at a job's instances after a restart."""

    def __init__(
        self, settings: EC2Settings, job_instances: JobInstances, resume_launch: ResumeLaunch
    ) -> None:
        self.settings = settings
        self.job_instances = job_instances
        self.resume_launch = resume_launch

    async def outcome(self, job: Job) -> Outcome | None:
        """None if the job's instance is alive with its command, else how the job ended.
        AWS errors propagate; BackendError while its instance may not be visible yet."""
        settings = self.settings
        exit_code = await asyncio.to_thread(settings.read_exit_code, job)
        looked_at = time.time()
        found = await self.job_instances.of_job(job)
        iid = job.instance_id
        if iid and iid not in found and self.job_instances.may_be_new(job.started_at, looked_at):
            # Launched just before the restart: EC2 may not show it yet. Unknown, not gone;
            # the service retries reattach on BackendError.
            raise BackendError(f"instance {iid} of job {job.id} is not visible on EC2 yet")
        if iid is None and found:
            # The server stopped before the id was recorded: the newest tagged instance of
            # the job's current attempt (after a relaunch, an earlier attempt's is not it).
            current = str(job.attempt_number)
            ours = [i for i in found if tags.tags_of(found[i]).get(tags.ATTEMPT, "1") == current]
            iid = max(ours, key=lambda i: instances.launch_time(found[i]) or 0.0, default=None)
        instance = found.get(iid) if iid else None
        live = [i for i, inst in found.items() if instances.state_of(inst) in instances.UNFINISHED]
        extra = [i for i in live if i != iid]
        if extra:
            settings.log.warning(
                "awsjobs: job %s has extra instances %s; terminating", job.id, extra
            )
            await self.job_instances.terminate_confirmed(
                extra, {i: instances.launch_time(found[i]) for i in extra}
            )
        if exit_code is not None:
            if iid in live:
                await self.job_instances.terminate_confirmed([iid])
            return classify(instance, exit_code, now=time.time(), deadline=0.0)
        if iid is None:
            # The server stopped before the id was recorded. If RunInstances was sent (its
            # attempt is recorded first), EC2 may not list its instance yet (eventual
            # consistency): look again, by tag, until the window is over. The service retries
            # reattach on BackendError.
            attempt = job.handle.get("launch_attempt") or {}
            since = time.time() - float(attempt.get("at") or max(job.created_at, job.updated_at))
            window = settings.reattach_grace_seconds
            if attempt:
                window = max(window, settings.consistency_window_seconds)
            if since < window:
                raise BackendError(f"no instance of job {job.id} is visible yet")
            return Outcome(
                JobState.FAILED, error="the server stopped before an instance was launched"
            )
        return await self._of_instance(job, iid, instance)

    async def _of_instance(
        self, job: Job, iid: str, instance: dict[str, Any] | None
    ) -> Outcome | None:
        """A job without an exit code, on its instance: alive, or how it ended."""
        # A scheduled run's worker runs its job itself: no command is expected.
        self_run = bool(job.handle.get(SELF_RUN))
        if instances.state_of(instance) in instances.ALIVE:
            if (
                not self_run
                and not job.handle.get("command_id")
                and not await self.job_instances.has_command(iid)
            ):
                if job.storage == "s3" and job.state is JobState.LAUNCHING:
                    return await self.resume_launch(job, iid)  # its upload, then its command
                await self.job_instances.terminate_confirmed([iid])
                return Outcome(
                    JobState.FAILED,
                    error="the server stopped while the job was launching; its instance "
                    f"{iid} was terminated",
                )
            return None
        start = instances.launch_time(instance) if instance else None
        deadline = job.deadline(start, unit_seconds=self.settings.lifetime_unit_seconds)
        outcome = classify(instance, None, now=time.time(), deadline=deadline, instance_id=iid)
        if outcome is not None and instances.state_of(instance) in instances.HALTED:
            await self.job_instances.terminate_confirmed([iid])
        if (
            outcome is not None
            and outcome.state is JobState.FAILED
            and not self_run
            and not job.handle.get("command_id")
            and not await self.job_instances.has_command(iid)
        ):
            # Its command never went out, so the job never ran: say so, rather than blame
            # whoever ended the instance (most often this server itself, which gave up the
            # launch after an earlier restart and was stopped again before recording it).
            return Outcome(
                JobState.FAILED,
                error="the server stopped while the job was launching; the job never ran, "
                f"and its instance {iid} is {instances.state_of(instance) or 'gone'}",
            )
        if outcome is not None and outcome.state is JobState.FAILED:
            detail = await self.job_instances.command_detail(job, iid)
            if detail:
                outcome = Outcome(JobState.FAILED, error=f"{outcome.error}; {detail}")
        return outcome
