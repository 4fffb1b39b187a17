"""SSM Run Command: send a script to an instance (waiting for its agent to register), read how
the command ended, cancel it.

A new instance's SSM agent needs a while to register; until then SendCommand answers
`InvalidInstanceId`. Retrying SendCommand at a steady cadence is that wait with one call fewer
than polling DescribeInstanceInformation first (which moto does not serve either: see
docs/aws-testing.md §2). The cadence does not grow: the command is accepted within one pause of
the registration (a backoff growing to 15 s cost up to 15 s of every launch); only SSM's
throttling answers back off, exponentially. Under a policy conditioned on the instance's tags
(`ssm:resourceTag/...`), SendCommand to an instance whose agent has not registered yet may
answer `AccessDeniedException` instead (AWS documents neither way): a caller may give that a
window of its own, after which the denial is real and propagates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeGuard

from botocore.exceptions import BotoCoreError, ClientError

from .errors import AWS_ERRORS, error_code, is_throttling

DOCUMENT = "AWS-RunShellScript"
# AWS-RunShellScript accepts executionTimeout from 60 s up to 172800 s (48 h).
MAX_EXECUTION_TIMEOUT = 172800
MIN_EXECUTION_TIMEOUT = 60
# How long the agent may take to pick a command up (not how long it runs).
DELIVERY_TIMEOUT_SECONDS = 600
# An invocation's Status (GetCommandInvocation) after which the command runs no more, and
# while it may still run. The StatusDetails say more, in AWS's own words with spaces:
# https://docs.aws.amazon.com/systems-manager/latest/userguide/monitor-commands.html
COMMAND_DONE = frozenset(
    {"Success", "Failed", "TimedOut", "Cancelled", "Cancelling", "Undeliverable", "Terminated"}
)
EXECUTION_TIMED_OUT = "Execution Timed Out"  # Status TimedOut: the script ran too long
DELIVERY_TIMED_OUT = "Delivery Timed Out"  # Status TimedOut: never reached the agent
UNDELIVERABLE = "Undeliverable"  # the instance was gone or its agent unreachable
TERMINATED = "Terminated"  # SSM ended it (its parent command's error limit)
COMMAND_RUNNING = frozenset({"Pending", "InProgress", "Delayed"})
# GetCommandInvocation's answers while SSM has no invocation for the instance (yet).
NO_INVOCATION_CODES = frozenset({"InvocationDoesNotExist", "InvalidCommandId"})
NOT_REGISTERED_CODE = "InvalidInstanceId"
ACCESS_DENIED_CODE = "AccessDeniedException"


class AgentNotRegistered(Exception):
    """SendCommand kept answering InvalidInstanceId until the timeout: the instance's SSM
    agent never registered (no instance profile, no route to SSM, no agent on the image)."""


def execution_timeout(remaining_seconds: float) -> int:
    return int(max(MIN_EXECUTION_TIMEOUT, min(MAX_EXECUTION_TIMEOUT, remaining_seconds)))


def shell_script_parameters(
    *, instance_id: str, commands: list[str], execution_seconds: float, comment: str
) -> dict[str, Any]:
    """Keyword arguments of `ssm.send_command` running `commands` (AWS-RunShellScript) on one
    instance (never a fan-out target), for at most `execution_seconds`."""
    return {
        "InstanceIds": [instance_id],
        "DocumentName": DOCUMENT,
        "Comment": comment[:100],
        "Parameters": {
            "commands": commands,
            "executionTimeout": [str(execution_timeout(execution_seconds))],
        },
        "TimeoutSeconds": DELIVERY_TIMEOUT_SECONDS,
    }


def is_done(invocation: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """Whether a command invocation has ended (None: SSM has none yet)."""
    return invocation is not None and invocation.get("Status") in COMMAND_DONE


async def send_until_registered(
    ssm: Any,
    instance_id: str,
    parameters: Callable[[], dict[str, Any]],
    *,
    timeout_seconds: float,
    pause: Callable[[int], float],
    throttled_pause: Callable[[int], float] | None = None,
    give_up: Callable[[int], Awaitable[bool]] | None = None,
    on_first_wait: Callable[[], None] | None = None,
    access_denied_grace_seconds: float = 0.0,
) -> str | None:
    """SendCommand to one instance, retried while its agent is not registered (or SSM throttles).

    `parameters()` gives SendCommand's arguments for each attempt (a timeout may shrink);
    `pause(n)` the seconds to wait after the n-th failed attempt, `throttled_pause(n)` (default:
    `pause`) after the n-th throttling answer in a row; `give_up(n)` is asked before
    each attempt after n failures: True ends the wait with None (a Stop came, the instance went
    away). After a failure before any answer (network), a command SSM did accept is adopted
    rather than sent twice. `AccessDeniedException` is retried like `InvalidInstanceId` for
    `access_denied_grace_seconds` after the first attempt, then propagates (also when the
    timeout ends a wait whose last answer was that denial). Raises `AgentNotRegistered` after
    `timeout_seconds`; other AWS errors propagate. Returns the command id.
    """
    started = time.monotonic()
    attempt = 0
    throttled = 0  # throttling answers in a row
    while True:
        if give_up is not None and await give_up(attempt):
            return None
        try:
            resp = await ssm.send_command(**parameters())
            return str(resp["Command"]["CommandId"])
        except ClientError as exc:
            if not _while_registering(exc, time.monotonic() - started, access_denied_grace_seconds):
                raise
            failure: Exception = exc
        except BotoCoreError as exc:
            # The call may have reached SSM: adopt a command it accepted.
            existing = await find_command(ssm, instance_id)
            if existing:
                return existing
            failure = exc
        attempt += 1
        if time.monotonic() - started >= timeout_seconds:
            if error_code(failure) == ACCESS_DENIED_CODE:
                raise failure  # the caller reports a denial as one, not as a missing agent
            raise AgentNotRegistered(f"{instance_id}: {failure}") from failure
        if attempt == 1 and on_first_wait is not None:
            on_first_wait()
        throttled = throttled + 1 if is_throttling(failure) else 0
        if throttled and throttled_pause is not None:
            await asyncio.sleep(throttled_pause(throttled))
        else:
            await asyncio.sleep(pause(attempt))


def _while_registering(exc: ClientError, elapsed: float, access_denied_grace: float) -> bool:
    """Whether SendCommand's error may only mean "the agent is not registered yet" (or "slow
    down"), so it is worth another attempt `elapsed` seconds after the first."""
    code = error_code(exc)
    if code == ACCESS_DENIED_CODE:
        return elapsed < access_denied_grace
    return code == NOT_REGISTERED_CODE or is_throttling(exc)


async def find_command(ssm: Any, instance_id: str, document: str = DOCUMENT) -> str | None:
    """The id of a command of `document` sent to the instance, or None (also if SSM fails)."""
    try:
        resp = await ssm.list_commands(InstanceId=instance_id)
    except AWS_ERRORS:
        return None
    for cmd in resp.get("Commands", []):
        if instance_id in cmd.get("InstanceIds", []) and cmd.get("DocumentName") == document:
            return str(cmd["CommandId"])
    return None


async def get_invocation(ssm: Any, command_id: str, instance_id: str) -> dict[str, Any] | None:
    """The command's invocation on the instance (its status, output, response code), or None
    while SSM has none. Other AWS errors propagate."""
    try:
        resp = await ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    except ClientError as exc:
        if error_code(exc) in NO_INVOCATION_CODES:
            return None
        raise
    return dict(resp)


async def cancel(ssm: Any, command_id: str, instance_id: str | None) -> None:
    """CancelCommand (for the one instance, when known). AWS errors propagate."""
    kwargs: dict[str, Any] = {"CommandId": command_id}
    if instance_id:
        kwargs["InstanceIds"] = [instance_id]
    await ssm.cancel_command(**kwargs)
