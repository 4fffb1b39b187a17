"""EventBridge Scheduler: the schedules that start EC2 workers with no server running.

- **A group per owner**, `awsjobs-<owner>`, tagged `awsjobs:managed=true` and `awsjobs:owner`.
  EventBridge Scheduler tags schedule groups only (a schedule takes no tags), so a schedule is
  recognised as ours by its group, its description (`awsjobs-lab schedule: <cron>`, which also
  keeps the five-field expression it was made from) and its target; one made elsewhere the
  same way (another server of the same owner, an infrastructure tool) is listed as ours.
- **The target** is the universal target for EC2 RunInstances
  (`arn:aws:scheduler:::aws-sdk:ec2:runInstances`), its input the RunInstances request as JSON
  (API parameter names, `UserData` base64-encoded), run with the execution role
  `c.EC2Backend.scheduler_role_arn`. RunInstances rather than CreateFleet: an instant fleet
  needs a launch template that lives as long as the schedule (one more thing to leak and to
  keep in step), and RunInstances takes the whole worker in one request. The input carries no
  ClientToken: a fixed token would make every firing after the first return the first one's
  instance.
- **No dead-letter queue**: a firing AWS could not perform after `RETRY_POLICY` is dropped
  (CloudWatch counts it in `InvocationDroppedCount`); nothing is left to clean up, and the next
  firing runs as usual. `FlexibleTimeWindow` is OFF: a run starts on time.
- **Deleting** a schedule deletes the group with it when it was the group's last one: nothing
  this tool created is left (no role, rule or template is ever created).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from . import tags
from .aws_cron import to_aws_cron
from .errors import error_code

__all__ = ["to_aws_cron"]

RUN_INSTANCES_TARGET = "arn:aws:scheduler:::aws-sdk:ec2:runInstances"
GROUP_PREFIX = "awsjobs-"
DESCRIPTION_PREFIX = "awsjobs-lab schedule: "
# AWS retries a failed firing (throttling, a 5xx, no capacity) with backoff; a run more than an
# hour late is dropped rather than started at an unexpected time.
RETRY_POLICY = {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600}
NOT_FOUND = "ResourceNotFoundException"
CONFLICT = "ConflictException"
MAX_GROUP_NAME = 64
# AWS refuses a StartDate more than 5 minutes in the past: an older start is not sent again.
START_DATE_SLACK_SECONDS = 60.0


def group_name(owner: str) -> str:
    """The owner's schedule group: `awsjobs-<owner>` in the characters AWS allows."""
    cleaned = re.sub(r"[^0-9A-Za-z_.-]", "_", owner or tags.UNKNOWN_OWNER)
    return (GROUP_PREFIX + cleaned)[:MAX_GROUP_NAME]


def group_tags(owner: str) -> dict[str, str]:
    return {tags.MANAGED: tags.TRUE, tags.OWNER: tags.owner_tag_value(owner) or tags.UNKNOWN_OWNER}


@dataclass(frozen=True)
class Definition:
    """One schedule as this tool writes it to AWS."""

    name: str
    owner: str
    cron: str  # the standard five fields
    timezone: str  # IANA
    enabled: bool
    run_instances: Mapping[str, Any]  # the RunInstances request (API names, UserData base64)
    role_arn: str
    start_at: float | None = None
    end_at: float | None = None

    @property
    def group(self) -> str:
        return group_name(self.owner)


@dataclass(frozen=True)
class Found:
    """One of our schedules as AWS describes it."""

    name: str
    cron: str
    timezone: str
    enabled: bool
    run_instances: dict[str, Any]
    start_at: float | None
    end_at: float | None


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc)


def request(definition: Definition, now: float) -> dict[str, Any]:
    """CreateSchedule's (and UpdateSchedule's: it replaces everything) arguments."""
    params: dict[str, Any] = {
        "Name": definition.name,
        "GroupName": definition.group,
        "ScheduleExpression": to_aws_cron(definition.cron),
        "ScheduleExpressionTimezone": definition.timezone,
        "Description": DESCRIPTION_PREFIX + definition.cron,
        "State": "ENABLED" if definition.enabled else "DISABLED",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": RUN_INSTANCES_TARGET,
            "RoleArn": definition.role_arn,
            "Input": json.dumps(definition.run_instances, sort_keys=True),
            "RetryPolicy": dict(RETRY_POLICY),
        },
    }
    if definition.start_at is not None and definition.start_at > now - START_DATE_SLACK_SECONDS:
        params["StartDate"] = _utc(definition.start_at)
    if definition.end_at is not None:
        params["EndDate"] = _utc(definition.end_at)
    return params


def _epoch(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return None


def read(answer: Mapping[str, Any]) -> Found | None:
    """GetSchedule's answer as one of ours, or None when it is not ours."""
    description = str(answer.get("Description") or "")
    target = answer.get("Target") or {}
    if not description.startswith(DESCRIPTION_PREFIX) or target.get("Arn") != RUN_INSTANCES_TARGET:
        return None
    try:
        run_instances = json.loads(target.get("Input") or "")
    except ValueError:
        return None
    if not isinstance(run_instances, dict):
        return None
    return Found(
        name=str(answer.get("Name", "")),
        cron=description.removeprefix(DESCRIPTION_PREFIX).strip(),
        timezone=str(answer.get("ScheduleExpressionTimezone") or "UTC"),
        enabled=answer.get("State") != "DISABLED",
        run_instances=run_instances,
        start_at=_epoch(answer.get("StartDate")),
        end_at=_epoch(answer.get("EndDate")),
    )


async def ensure_group(scheduler: Any, owner: str) -> str:
    """The owner's group, created (tagged) if missing. Looked up first: a second
    CreateScheduleGroup must never be relied on to fail (an emulator may replace the group)."""
    name = group_name(owner)
    try:
        await scheduler.get_schedule_group(Name=name)
        return name
    except ClientError as exc:
        if error_code(exc) != NOT_FOUND:
            raise
    try:
        await scheduler.create_schedule_group(
            Name=name, Tags=tags.tag_list(group_tags(owner)), ClientToken=name
        )
    except ClientError as exc:
        if error_code(exc) != CONFLICT:  # made meanwhile by another server of this owner
            raise
    return name


async def put(scheduler: Any, definition: Definition, now: float) -> None:
    """Create the schedule, or replace it if it exists (idempotent)."""
    await ensure_group(scheduler, definition.owner)
    params = request(definition, now)
    try:
        await scheduler.create_schedule(**params, ActionAfterCompletion="NONE")
    except ClientError as exc:
        if error_code(exc) != CONFLICT:
            raise
        await scheduler.update_schedule(**params)


async def names(scheduler: Any, group: str) -> list[str]:
    """The names of the schedules in a group ([] when the group does not exist)."""
    found: list[str] = []
    token: str | None = None
    while True:
        page_args: dict[str, Any] = {"GroupName": group, "MaxResults": 100}
        if token:
            page_args["NextToken"] = token
        try:
            page = await scheduler.list_schedules(**page_args)
        except ClientError as exc:
            if error_code(exc) == NOT_FOUND:
                return []
            raise
        found += [
            str(s["Name"]) for s in page.get("Schedules") or [] if s.get("GroupName") == group
        ]
        token = page.get("NextToken")
        if not token:
            return found


async def get(scheduler: Any, owner: str, name: str) -> Found | None:
    """One of the owner's schedules, or None (missing, or not ours)."""
    try:
        answer = await scheduler.get_schedule(Name=name, GroupName=group_name(owner))
    except ClientError as exc:
        if error_code(exc) == NOT_FOUND:
            return None
        raise
    return read(answer)


async def list_ours(scheduler: Any, owner: str) -> list[Found]:
    """The owner's schedules in AWS (one GetSchedule each: ListSchedules omits the target)."""
    found = []
    for name in await names(scheduler, group_name(owner)):
        schedule = await get(scheduler, owner, name)
        if schedule is not None:
            found.append(schedule)
    return found


async def delete(scheduler: Any, owner: str, name: str) -> None:
    """Delete the schedule (gone already is fine), then its group if nothing is left in it."""
    group = group_name(owner)
    try:
        await scheduler.delete_schedule(Name=name, GroupName=group)
    except ClientError as exc:
        if error_code(exc) != NOT_FOUND:
            raise
    if await names(scheduler, group):
        return
    try:
        await scheduler.get_schedule_group(Name=group)  # (gone already: nothing to delete)
        await scheduler.delete_schedule_group(Name=group)
    except ClientError as exc:
        if error_code(exc) != NOT_FOUND:
            raise
