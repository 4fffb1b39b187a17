"""Sending a job's command to its freshly launched instance: `SendCommand`, retried while the
instance's SSM agent registers, at a steady cadence (`aws.ssm.send_until_registered`).

The wait gives up early when a Stop comes or EC2 says the instance is gone; when the agent
never registers or AWS refuses the command, the instance is terminated before the error is
raised, so a failed launch leaves nothing billable behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ...aws import instances, ssm
from ...aws.clients import AWSClients, backoff_delay
from ...aws.errors import AWS_ERRORS, error_code, error_message
from ...errors import BackendError
from ...models import Job
from . import worker
from .job_instances import JobInstances, cleanup_note
from .settings import EC2Settings

# While SendCommand waits for the agent, longer than an agent usually takes to register (boot
# and registration: about a minute), every 5th failure EC2 is asked whether the instance is
# gone (terminated from outside, a failed boot): the wait then ends early.
GONE_CHECK_AFTER_SECONDS = 60.0
GONE_CHECK_EVERY = 5


def access_denied_message(exc: Exception, region: str, grace_seconds: float) -> str:
    """What a SendCommand still denied after the registration window means, and which IAM
    statements to check (README, "IAM permissions of the Jupyter server")."""
    return (
        f"SendCommand failed: {error_message(exc)}, still past the window given to the "
        "instance's SSM agent to register (c.EC2Backend.ssm_access_denied_grace_seconds = "
        f"{grace_seconds:g}). Check that the server's IAM policy allows ssm:SendCommand on the "
        f"instance ARN arn:aws:ec2:{region}:ACCOUNT:instance/* with the condition "
        "ssm:resourceTag/awsjobs:managed = true (statement CommandsOnlyOnOurWorkers), and on the "
        f"document arn:aws:ssm:{region}::document/{ssm.DOCUMENT} (statement TheShellScriptDocument)"
    )


class CommandSender:
    """The EC2 backend's SendCommand of a job's script (a first launch, or one resumed after a
    restart)."""

    def __init__(
        self,
        settings: EC2Settings,
        clients: AWSClients,
        job_instances: JobInstances,
        stopping: Callable[[str], bool],
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.job_instances = job_instances
        self.stopping = stopping  # whether a Stop of this job id came (the backend's word)

    async def send(self, job: Job, iid: str, commands: list[str], launched_at: float) -> str | None:
        """SendCommand the job's script, retried while the instance's SSM agent registers.
        None if the instance went away meanwhile (the monitor then rules) or a Stop came."""
        settings = self.settings
        deadline = job.deadline(launched_at, unit_seconds=settings.lifetime_unit_seconds)
        ec2 = await self.clients.ec2()
        comment = worker.command_comment(job)

        async def give_up(failures: int) -> bool:
            if self.stopping(job.id):
                return True
            return self.checks_gone(failures) and await instances.is_gone(ec2, iid)

        try:
            return await ssm.send_until_registered(
                await self.clients.ssm(),
                iid,
                lambda: ssm.shell_script_parameters(
                    instance_id=iid,
                    commands=commands,
                    execution_seconds=deadline - time.time(),
                    comment=comment,
                ),
                timeout_seconds=settings.launch_timeout_seconds,
                pause=self.pause,
                throttled_pause=lambda n: backoff_delay(
                    n, settings.ssm_retry_seconds, settings.ssm_retry_max_seconds
                ),
                give_up=give_up,
                access_denied_grace_seconds=settings.ssm_access_denied_grace_seconds,
            )
        except ssm.AgentNotRegistered as exc:
            problem = await self.job_instances.terminate_until_confirmed([iid], job.id)
            raise BackendError(
                f"instance {iid} did not accept the job's command through SSM within "
                f"{settings.launch_timeout_seconds:g} s (is the SSM agent on the AMI, and does "
                "the instance profile allow AmazonSSMManagedInstanceCore? can the subnet reach "
                f"SSM?); {cleanup_note(iid, problem)}"
            ) from exc
        except AWS_ERRORS as exc:
            problem = await self.job_instances.terminate_until_confirmed([iid], job.id)
            failed = f"SendCommand failed: {error_message(exc)}"
            if error_code(exc) == ssm.ACCESS_DENIED_CODE:
                failed = access_denied_message(
                    exc, settings.region, settings.ssm_access_denied_grace_seconds
                )
            raise BackendError(f"{failed}; {cleanup_note(iid, problem)}") from exc

    def pause(self, failures: int) -> float:
        """Seconds between SendCommand attempts while the agent registers: a steady cadence
        (the command is accepted within one pause of the registration), twice as long before
        an attempt that first asks EC2 whether the instance is gone (`checks_gone`), so the
        launch makes at most one AWS call per `ssm_retry_seconds` on average."""
        return self.settings.ssm_retry_seconds * (2 if self.checks_gone(failures) else 1)

    def checks_gone(self, failures: int) -> bool:
        """Whether the attempt after `failures` refusals first asks EC2 if the instance is gone:
        never within the first minute (the usual boot and registration: no pause doubled
        there), then every 5th."""
        waited = failures * self.settings.ssm_retry_seconds
        return waited >= GONE_CHECK_AFTER_SECONDS and failures % GONE_CHECK_EVERY == 0
