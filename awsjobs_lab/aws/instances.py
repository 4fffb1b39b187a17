"""EC2 instances: describe them (by filters, by ids), terminate them, and confirm they are gone.

EC2's instance states fall in three groups here: ALIVE (running or about to), HALTED (stopped:
it bills its volume, and a job on it is over), GONE (shutting down or terminated: done).

EC2 is eventually consistent: for a while after RunInstances, the id it returned may answer
`InvalidInstanceID.NotFound` and be missing from DescribeInstances. An id EC2 does not know
is therefore *unknown* while it may be that new (launched within the consistency window, or
at an unknown time), and counts as gone only after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Iterable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from ..errors import BackendError
from . import tags
from .errors import AWS_ERRORS, aws_errors, error_code

ALIVE = frozenset({"pending", "running"})
HALTED = frozenset({"stopping", "stopped"})
GONE = frozenset({"shutting-down", "terminated"})
UNFINISHED = ALIVE | HALTED  # not (yet) shutting down: it may still need terminating
# Not terminated: what is listed as this tool's live instances.
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
MISSING = "missing"  # what `terminate` reports for an id EC2 does not know
UNKNOWN = "unknown"  # an id EC2 does not know *yet*, as far as anyone can tell
# How long after RunInstances EC2 may not know the id it returned (AWS documents no bound;
# minutes at worst in practice). The backend's setting: c.EC2Backend.consistency_window_seconds.
CONSISTENCY_WINDOW_SECONDS = 300.0
NOT_FOUND_CODES = ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed")
MAX_FILTER_VALUES = 200
TERMINATE_CHUNK = 1000

Instances = dict[str, dict[str, Any]]


def state_of(instance: Mapping[str, Any] | None) -> str | None:
    if instance is None:
        return None
    return str(instance.get("State", {}).get("Name", "")) or None


def timestamp(value: Any) -> float | None:
    """A time as AWS gives it (datetime, or ISO text) in seconds since the epoch."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return float(value.timestamp())
    if isinstance(value, str) and value:
        with contextlib.suppress(ValueError):
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def launch_time(instance: Mapping[str, Any]) -> float | None:
    return timestamp(instance.get("LaunchTime"))


def state_filter(states: Iterable[str]) -> dict[str, Any]:
    return {"Name": "instance-state-name", "Values": sorted(states)}


def managed_filters(owner: str) -> list[dict[str, Any]]:
    """DescribeInstances filters for the instances this tool launched (for this owner)."""
    filters = [tags.tag_filter(tags.MANAGED, tags.TRUE)]
    if owner:
        filters.append(tags.tag_filter(tags.OWNER, owner))
    return filters


async def describe_instances(ec2: Any, filters: list[dict[str, Any]]) -> Instances:
    """Every instance matching `filters`, by id (paginated, 1000 per page)."""
    out: Instances = {}
    paginator = ec2.get_paginator("describe_instances")
    async for page in paginator.paginate(Filters=filters, PaginationConfig={"PageSize": 1000}):
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                out[instance["InstanceId"]] = instance
    return out


async def describe_ids(ec2: Any, ids: Iterable[str]) -> Instances:
    """Instances by id; unknown ids are simply absent (a filter, not InstanceIds, which would
    fail the whole call on one unknown id)."""
    ids = sorted(set(ids))
    out: Instances = {}
    for start in range(0, len(ids), MAX_FILTER_VALUES):
        chunk = ids[start : start + MAX_FILTER_VALUES]
        out.update(await describe_instances(ec2, [{"Name": "instance-id", "Values": chunk}]))
    return out


async def is_gone(ec2: Any, instance_id: str) -> bool:
    """True if the instance is halted or gone; False while alive or if EC2 cannot say."""
    try:
        found = await describe_ids(ec2, [instance_id])
    except AWS_ERRORS:
        return False
    return state_of(found.get(instance_id)) in GONE | HALTED


async def terminate(ec2: Any, ids: Iterable[str]) -> dict[str, str]:
    """TerminateInstances; id → state after the call ('shutting-down', 'terminated', or
    'missing' for an id EC2 no longer knows). Raises on other errors."""
    ids = sorted(set(ids))
    result: dict[str, str] = {}
    for start in range(0, len(ids), TERMINATE_CHUNK):
        chunk = ids[start : start + TERMINATE_CHUNK]
        try:
            resp = await ec2.terminate_instances(InstanceIds=chunk)
        except ClientError as exc:
            if error_code(exc) not in NOT_FOUND_CODES:
                raise
            if len(chunk) == 1:
                result[chunk[0]] = MISSING
                continue
            for one in chunk:  # one unknown id fails the batch: go one by one
                result.update(await terminate(ec2, [one]))
            continue
        for row in resp.get("TerminatingInstances", []):
            result[row["InstanceId"]] = str(row.get("CurrentState", {}).get("Name", ""))
    return result


def may_be_new(launched_at: float | None, window: float, looked_at: float) -> bool:
    """Whether EC2 may not have known an instance launched at `launched_at` (epoch seconds;
    None: unknown) when a call that missed it was sent (`looked_at`), so that NotFound or
    "not listed" means unknown rather than gone. The send, not the answer: an answer can
    arrive after the window and still describe EC2 from before its end."""
    if launched_at is None:
        return True
    return looked_at - launched_at < window


def _unconfirmed(
    ids: Iterable[str],
    answered: Mapping[str, str],
    found: Instances,
    launched_at: Mapping[str, float],
    window: float,
    looked_at: float,
) -> dict[str, str]:
    """Of `ids`, those not yet confirmed shutting down or terminated (id → state or UNKNOWN),
    from TerminateInstances' answer and a DescribeInstances after it, both sent from
    `looked_at` on (a slow answer to an early call proves nothing about the window)."""
    left: dict[str, str] = {}
    for i in ids:
        state = state_of(found.get(i)) or answered.get(i, MISSING)
        if state in GONE:
            continue
        if state != MISSING:
            left[i] = state
        elif may_be_new(launched_at.get(i), window, looked_at):
            left[i] = UNKNOWN
    return left


async def terminate_and_check(
    ec2: Any,
    ids: Iterable[str],
    *,
    attempts: int = 3,
    delay: float = 1.0,
    launched_at: Mapping[str, float] | None = None,
    window: float = CONSISTENCY_WINDOW_SECONDS,
) -> dict[str, str]:
    """TerminateInstances and DescribeInstances, up to `attempts` times (`delay` apart), until
    each instance is shutting down or terminated. An id EC2 does not know counts as gone only
    when `launched_at` (id → epoch seconds) puts its launch more than `window` ago; otherwise
    it is UNKNOWN, and TerminateInstances is asked again. Returns the ids not confirmed yet
    (id → state or UNKNOWN): empty once all are. AWS errors propagate."""
    left = dict.fromkeys(sorted(set(ids)), "")
    for attempt in range(max(1, attempts)):
        if not left:
            break
        if attempt:
            await asyncio.sleep(delay)
        looked_at = time.time()
        answered = await terminate(ec2, left)
        found = await describe_ids(ec2, left)
        left = _unconfirmed(left, answered, found, launched_at or {}, window, looked_at)
    return left


async def terminate_confirmed(
    ec2: Any,
    ids: Iterable[str],
    *,
    attempts: int = 3,
    delay: float = 1.0,
    launched_at: Mapping[str, float] | None = None,
    window: float = CONSISTENCY_WINDOW_SECONDS,
) -> None:
    """`terminate_and_check`, raising `BackendError` if AWS fails or the instances are not
    confirmed gone yet (the caller retries)."""
    ids = sorted(set(ids))
    with aws_errors(f"terminating {', '.join(ids)}"):
        left = await terminate_and_check(
            ec2, ids, attempts=attempts, delay=delay, launched_at=launched_at, window=window
        )
    if left:
        states = ", ".join(
            f"{i} is {'not known to EC2 yet' if s == UNKNOWN else s}" for i, s in left.items()
        )
        raise BackendError(f"termination not confirmed yet: {states}")
