"""Storage "s3": a graceful end for a running job, so a Stop (or the server's lifetime
timeout) still brings back what the job has made so far.

SSM's CancelCommand is no help: on Linux the agent kills the command's process group with
SIGKILL (amazon-ssm-agent, `executers_unix.go`), and the AWS documentation only promises that it
*attempts* to cancel. So before the backend cancels and terminates as usual, `GracefulEnd`:

1. sends a short command of its own (`command_s3.build_s3_signal_commands`) that delivers
   SIGTERM to the job as its script recorded it; the script, which traps TERM, then uploads the
   outputs and the rest of the log and writes `exit_code` last;
2. waits up to `s3_stop_grace_seconds` for that `exit_code` (taken by the log follower's `sync`,
   which also takes the last log parts), or for the instance to have halted by itself;
3. returns either way: the caller terminates the instance (a worker that ignores SIGTERM, or
   whose agent is gone, is ended all the same; the grace only delays it).

The worker's own lifetime deadline does the same without the server: its script sends SIGTERM
to the job `lifetime_term_seconds` before the boot script's hard shutdown (`command_s3`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ...aws import instances, ssm
from ...aws.clients import AWSClients
from ...aws.command_s3 import build_s3_signal_commands
from ...aws.errors import AWS_ERRORS, error_message
from ...aws.monitor import DEADLINE_SLACK_SECONDS
from ...errors import BackendError
from ...models import Job
from .settings import EC2Settings

log = logging.getLogger(__name__)

SIGNAL_EXECUTION_SECONDS = 60  # the signal command itself ends at once
# How often, while waiting, EC2 is asked whether the instance has halted by itself (every
# n-th look at S3): a worker whose lifetime watcher fired first writes no exit code.
GONE_CHECK_EVERY = 5
# The worker's own SIGTERM comes this long at most before its hard shutdown, so that the halt
# after its upload still reads as the lifetime's end (the monitor's slack before a deadline).
LIFETIME_TERM_MAX_SECONDS = DEADLINE_SLACK_SECONDS - 30.0


def lifetime_term_seconds(settings: EC2Settings, job: Job) -> int:
    """How long before the worker's lifetime deadline its script sends SIGTERM to the job
    (0: never): the stop grace, at most `LIFETIME_TERM_MAX_SECONDS` and half the lifetime
    (the worker's minutes are real ones)."""
    lifetime = job.max_lifetime_minutes * 60.0
    return int(min(settings.s3_stop_grace_seconds, LIFETIME_TERM_MAX_SECONDS, lifetime / 2))


class GracefulEnd:
    """SIGTERM to a running S3 job, then a bounded wait for its outputs (see the module)."""

    def __init__(
        self,
        settings: EC2Settings,
        clients: AWSClients,
        look: Callable[[Job], Awaitable[int | None]],
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.look = look  # one look at the job's log parts and exit code (S3Mode.sync)
        self._done: set[str] = set()  # a Stop retried (termination unconfirmed) waits no more

    async def __call__(self, job: Job) -> bool:
        """True once the worker has ended the job by itself (its exit code is in, or its
        instance halted); False when it did not within the grace, or could not be asked."""
        iid, command_id = job.instance_id, job.handle.get("command_id")
        grace = self.settings.s3_stop_grace_seconds
        if not iid or not command_id or grace <= 0 or job.id in self._done:
            return False
        self._done.add(job.id)
        if await self._exit_code_in(job):
            return True  # it had ended already
        if not await self._signal(job, iid):
            return False
        return await self._wait(job, iid, time.monotonic() + grace)

    async def _signal(self, job: Job, iid: str) -> bool:
        parameters = ssm.shell_script_parameters(
            instance_id=iid,
            commands=build_s3_signal_commands(job.id),
            execution_seconds=SIGNAL_EXECUTION_SECONDS,
            comment=f"awsjobs stop {job.id}",
        )
        try:
            await (await self.clients.ssm()).send_command(**parameters)
        except AWS_ERRORS as exc:  # its agent gone, SSM unreachable: terminate at once
            log.info("awsjobs: job %s: no graceful stop (%s)", job.id, error_message(exc))
            return False
        log.info("awsjobs: job %s: SIGTERM sent; waiting for its outputs", job.id)
        return True

    async def _wait(self, job: Job, iid: str, until: float) -> bool:
        looks = 0
        while time.monotonic() < until:
            await asyncio.sleep(min(self.settings.s3_log_interval_seconds, 2.0))
            if await self._exit_code_in(job):
                return True
            looks += 1
            if looks % GONE_CHECK_EVERY == 0 and await instances.is_gone(
                await self.clients.ec2(), iid
            ):
                return True
        log.info("awsjobs: job %s: no exit code within the stop's grace", job.id)
        return False

    async def _exit_code_in(self, job: Job) -> bool:
        try:
            return await self.look(job) is not None
        except BackendError as exc:  # S3 unreachable for a moment: the next look tries again
            log.info("awsjobs: job %s: %s", job.id, exc)
            return False
