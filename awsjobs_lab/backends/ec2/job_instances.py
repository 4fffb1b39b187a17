"""A job's instances on AWS: find them (recorded or tagged with the job's id), terminate them
and confirm they are gone, and ask SSM about the job's command on them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping

from ...aws import instances, ssm, tags
from ...aws.clients import AWSClients, backoff_delay
from ...aws.errors import AWS_ERRORS, error_message
from ...aws.instances import UNFINISHED
from ...aws.monitor import outcome_for_command
from ...errors import BackendError
from ...models import Job
from .settings import EC2Settings

CLEANUP_RETRY_MAX_SECONDS = 60.0


class JobInstances:
    """Per-job AWS actions of the EC2 backend (Stop, reattach after a restart, launch cleanup)."""

    def __init__(self, settings: EC2Settings, clients: AWSClients) -> None:
        self.settings = settings
        self.clients = clients

    async def of_job(self, job: Job) -> instances.Instances:
        """Every instance of this job: the recorded one and any tagged with its id. AWS
        errors propagate."""
        ec2 = await self.clients.ec2()
        found = await instances.describe_instances(
            ec2,
            [tags.tag_filter(tags.JOB_ID, job.id), tags.tag_filter(tags.MANAGED, tags.TRUE)],
        )
        iid = job.instance_id
        if iid and iid not in found:
            found.update(await instances.describe_ids(ec2, [iid]))
        return found

    def may_be_new(self, launched_at: float | None, looked_at: float) -> bool:
        """Whether EC2 may not have known an instance launched then when a look that missed
        it was sent (`looked_at`, epoch seconds; eventual consistency). Judged at the send,
        not the answer: a slow answer to an early look proves nothing about the window."""
        return instances.may_be_new(
            launched_at, self.settings.consistency_window_seconds, looked_at
        )

    def unfinished(
        self, job: Job, found: instances.Instances, looked_at: float
    ) -> dict[str, float | None]:
        """The job's instances that may need terminating (id → launch time): those found (by
        a look sent at `looked_at`) that are not terminated, and its recorded instance when
        EC2 may not have shown it yet."""
        out = {
            i: instances.launch_time(inst)
            for i, inst in found.items()
            if instances.state_of(inst) != "terminated"
        }
        iid = job.instance_id
        if iid and iid not in found and self.may_be_new(job.started_at, looked_at):
            out[iid] = job.started_at
        return out

    async def terminate_confirmed(
        self, ids: Iterable[str], launched_at: Mapping[str, float | None] | None = None
    ) -> None:
        """Terminate and confirm (BackendError if that cannot be confirmed yet). `launched_at`:
        when each was launched (missing or None: just now, as for an id RunInstances just
        returned), to tell an id EC2 does not know yet from one it has forgotten."""
        ids = sorted(set(ids))
        when = launched_at or {}
        await instances.terminate_confirmed(
            await self.clients.ec2(),
            ids,
            attempts=self.settings.stop_confirm_attempts,
            delay=self.settings.stop_confirm_delay_seconds,
            launched_at={i: when.get(i) or time.time() for i in ids},
            window=self.settings.consistency_window_seconds,
        )

    async def terminate_until_confirmed(self, ids: list[str], job_id: str) -> str | None:
        """Terminate and confirm, retried with backoff for up to
        `launch_cleanup_timeout_seconds`: a failed launch must not leave its instance running,
        so its job reads failed only after this. None once confirmed, else what stood in the
        way (see `cleanup_note`)."""
        settings = self.settings
        give_up_at = time.monotonic() + settings.launch_cleanup_timeout_seconds
        failures = 0
        while True:
            try:
                await self.terminate_confirmed(ids)
                return None
            except BackendError as exc:
                problem = str(exc)
            if time.monotonic() >= give_up_at:
                settings.log.warning(
                    "awsjobs: job %s: gave up terminating %s: %s", job_id, ids, problem
                )
                return problem
            failures += 1
            await asyncio.sleep(self._cleanup_pause(failures))

    async def sweep(self, job: Job, *, since: float) -> str:
        """After an uncertain RunInstances (sent at `since`): look for the job's instances by
        its tag until EC2 must list any launch of then (the consistency window), terminating
        and confirming each one found. Says what was found and done."""
        settings = self.settings
        give_up_at = time.monotonic() + settings.launch_cleanup_timeout_seconds
        terminated: list[str] = []
        looks = 0
        while True:
            looked_at = time.time()
            try:
                found = await self.of_job(job)
            except AWS_ERRORS as exc:
                if time.monotonic() < give_up_at:
                    looks += 1
                    await asyncio.sleep(self._cleanup_pause(looks))
                    continue
                return (
                    f"could not look for an instance it may have launched "
                    f"({error_message(exc)}); if one runs, it halts itself at the job's "
                    "lifetime deadline: check `awsjobs instances`"
                )
            live = sorted(i for i, inst in found.items() if instances.state_of(inst) in UNFINISHED)
            if live:
                problem = await self.terminate_until_confirmed(live, job.id)
                if problem is not None:
                    return cleanup_note(", ".join(live), problem)
                terminated += live
            if not self.may_be_new(since, looked_at):
                break  # this look was sent after the window: EC2 listed any launch of then
            looks += 1
            await asyncio.sleep(self._cleanup_pause(looks))
        if not terminated:
            return "no instance of the job was found, so none was launched"
        return f"{cleanup_note(', '.join(terminated), None)} (it was launched all the same)"

    def _cleanup_pause(self, failures: int) -> float:
        return backoff_delay(
            failures, self.settings.cleanup_retry_seconds, CLEANUP_RETRY_MAX_SECONDS
        )

    async def terminate_quietly(self, ids: list[str], job_id: str) -> bool:
        """Terminate and confirm, logging instead of raising. True once confirmed."""
        try:
            await self.terminate_confirmed(ids)
            return True
        except Exception as exc:
            self.settings.log.warning(
                "awsjobs: could not confirm termination of %s (job %s): %s", ids, job_id, exc
            )
            return False

    async def cancel_command(self, command_id: str, iid: str | None) -> None:
        # Best effort: TerminateInstances is what makes Stop safe. (moto has no CancelCommand.)
        try:
            await ssm.cancel(await self.clients.ssm(), command_id, iid)
        except Exception as exc:
            self.settings.log.info("awsjobs: CancelCommand %s: %s (ignored)", command_id, exc)

    async def has_command(self, iid: str) -> bool:
        """Whether the job's command was ever sent to the instance (by this or an earlier
        server process)."""
        return await ssm.find_command(await self.clients.ssm(), iid) is not None

    async def command_detail(self, job: Job, iid: str) -> str | None:
        """Why the job's command ended, from SSM (None if unknown or still running)."""
        command_id = job.handle.get("command_id")
        if not command_id:
            return None
        try:
            inv = await ssm.get_invocation(await self.clients.ssm(), command_id, iid)
        except AWS_ERRORS:
            return None
        if inv is None or inv.get("Status") in ssm.COMMAND_RUNNING:
            return None
        return outcome_for_command(inv).error


def cleanup_note(instance_id: str, problem: str | None) -> str:
    """What became of a failed launch's instance, truthfully, for the job's error."""
    if problem is None:
        return f"instance {instance_id} was terminated"
    return (
        f"could not terminate instance {instance_id} ({problem}); it may still be running "
        "until it halts itself at the job's lifetime deadline: check `awsjobs instances`"
    )
