"""Every tag this tool writes or looks for, named once, and the helpers that spell them for AWS.

Job workers carry `awsjobs:managed=true`, `awsjobs:owner`, `awsjobs:job-id`, `awsjobs:role=job`
and their hourly price; image builders carry `awsjobs:role=image-builder` and the build's id
(so they are listed and may be stopped, but are never taken for a job's orphans); worker images
and their snapshots carry `awsjobs:image=true` with the versions installed. Every instance
carries `awsjobs:expires-at`, the UTC time after which `awsjobs sweep` may terminate it.
"""

from __future__ import annotations

import datetime as dt
import getpass
import re
from collections.abc import Mapping, Sequence
from typing import Any

NAME = "Name"
MANAGED = "awsjobs:managed"  # "true" on every instance and volume this tool launches
OWNER = "awsjobs:owner"  # who launched it (c.EC2Backend.owner, by default the OS user)
JOB_ID = "awsjobs:job-id"
ATTEMPT = "awsjobs:attempt"  # which attempt of its job an instance runs (1, 2, ...)
ROLE = "awsjobs:role"
HOURLY_PRICE = "awsjobs:hourly-price"
BUILD_ID = "awsjobs:build-id"  # one `awsjobs build-image` run
SCHEDULE = "awsjobs:schedule"  # the schedule whose run an instance is (EventBridge Scheduler)
EXPIRES_AT = "awsjobs:expires-at"  # the instance's deadline: UTC, ISO 8601
IMAGE = "awsjobs:image"  # "true" on worker images
BASE_AMI = "awsjobs:base-ami"
LAB_VERSION = "awsjobs:lab-version"
VERSION_PREFIX = "awsjobs:version:"  # + a component name ("python", "quarto", ...)

TRUE = "true"
ROLE_JOB = "job"
ROLE_IMAGE_BUILDER = "image-builder"
ROLE_SCHEDULED_RUN = "scheduled-run"  # started by AWS on a schedule: an orphan only when expired
UNKNOWN_OWNER = "unknown"

# AWS's limits on a tag, and the characters allowed in one everywhere (EC2 allows more).
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 256
_NOT_ALLOWED = re.compile(r"[^\w .:/=+\-@]")
_NOT_ALLOWED_IN_KEY_NAME = re.compile(r"[^\w.\-]")


def tag_value(value: str) -> str:
    """`value` with characters AWS refuses in a tag replaced by '_', cut to AWS's limit."""
    return _NOT_ALLOWED.sub("_", value)[:MAX_VALUE_LENGTH]


def version_key(component: str) -> str:
    """The image tag key of one installed component's version."""
    return (VERSION_PREFIX + _NOT_ALLOWED_IN_KEY_NAME.sub("_", component))[:MAX_KEY_LENGTH]


def user_name() -> str:
    """The OS user running this process ('unknown' when the OS cannot say)."""
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers), no $USER
        return UNKNOWN_OWNER


def expires_at_value(epoch: float) -> str:
    """The `awsjobs:expires-at` value of a deadline: UTC, ISO 8601, whole seconds
    (e.g. 2026-11-30T13:21:48Z)."""
    moment = dt.datetime.fromtimestamp(int(epoch), tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def owner_tag_value(owner: str) -> str:
    """The `awsjobs:owner` value for an owner setting ('' stays '': no owner check)."""
    return tag_value(owner)


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """`{"k": "v"}` as AWS's `[{"Key": "k", "Value": "v"}]`."""
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def tag_specifications(
    tags: Mapping[str, str], resource_types: Sequence[str] = ("instance", "volume")
) -> list[dict[str, Any]]:
    """RunInstances' `TagSpecifications`: the same tags on the instance and its volumes."""
    listed = tag_list(tags)
    return [{"ResourceType": kind, "Tags": listed} for kind in resource_types]


def tags_of(resource: Mapping[str, Any]) -> dict[str, str]:
    """A described resource's tags as a dict."""
    return {t["Key"]: t.get("Value", "") for t in resource.get("Tags", []) or []}


def tag_filter(key: str, *values: str) -> dict[str, Any]:
    """A Describe* filter: the tag `key` has one of `values`."""
    return {"Name": f"tag:{key}", "Values": list(values)}
