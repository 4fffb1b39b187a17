"""The safety net that needs no server: terminate this owner's instances past their deadline.

Every instance this tool launches is tagged `awsjobs:expires-at` (UTC): a worker at its job's
maximum lifetime, an image builder at the longest its build may take. Each also halts itself
at that moment, but a halt can fail (a hung shutdown, a deadline lost some way nobody
foresaw), and the server that would have stopped it may be gone. The sweep asks AWS directly:
every managed instance of this owner that is not terminated yet and is past its deadline plus
a grace is terminated, and the termination confirmed. `awsjobs sweep` runs it from a terminal
or cron with the user's credentials; the server runs it at start and every
`c.EC2Backend.sweep_interval_seconds`.

Instances without the tag (launched by an older version) are left alone and reported, except
image builders, whose deadline is then their launch time plus `BUILDER_FALLBACK_SECONDS`.

The sweep also deletes this owner's launch templates (`aws.fleet`: one per launch, tagged like
its instance, deleted right after its CreateFleet) older than `TEMPLATE_MAX_AGE_SECONDS`: a
template is only needed during its launch's CreateFleet calls, so an old one was left by a
server killed between its creation and its deletion. It costs nothing and launches nothing by
itself, so a failure here is reported but does not fail the sweep.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from . import tags
from .errors import AWS_ERRORS, error_message
from .instances import (
    CONSISTENCY_WINDOW_SECONDS,
    UNFINISHED,
    describe_instances,
    launch_time,
    managed_filters,
    state_filter,
    state_of,
    terminate_and_check,
    timestamp,
)

# A launch template older than this is a crash's leftover: a launch uses its template for a
# few CreateFleet calls (with their uncertain-answer repeats), well under a minute.
TEMPLATE_MAX_AGE_SECONDS = 15 * 60.0
# An untagged image builder's deadline after its launch: more than a default build may take
# (`awsjobs build-image` tags its builders with their own, shorter, deadline).
BUILDER_FALLBACK_SECONDS = 4 * 3600.0


def deadline_of(instance: Mapping[str, Any]) -> float | None:
    """When the instance should be gone, in seconds since the epoch (None: unknown)."""
    found = tags.tags_of(instance)
    deadline = timestamp(found.get(tags.EXPIRES_AT))
    if deadline is None and found.get(tags.ROLE) == tags.ROLE_IMAGE_BUILDER:
        launched = launch_time(instance)
        if launched is not None:
            deadline = launched + BUILDER_FALLBACK_SECONDS
    return deadline


def is_expired(instance: Mapping[str, Any], now: float, grace_seconds: float = 0.0) -> bool:
    """Past its deadline plus `grace_seconds` (False when its deadline is unknown)."""
    deadline = deadline_of(instance)
    return deadline is not None and now > deadline + grace_seconds


@dataclass(frozen=True)
class ExpiredInstance:
    instance_id: str
    state: str
    role: str
    job_id: str | None
    expires_at: str  # UTC, ISO 8601

    @classmethod
    def of(cls, instance: Mapping[str, Any]) -> ExpiredInstance:
        found = tags.tags_of(instance)
        return cls(
            instance_id=str(instance["InstanceId"]),
            state=state_of(instance) or "",
            role=found.get(tags.ROLE, tags.ROLE_JOB),
            job_id=found.get(tags.JOB_ID),
            expires_at=tags.expires_at_value(deadline_of(instance) or 0.0),
        )


@dataclass
class SweepReport:
    """What a sweep found and did. `ok` unless a termination could not be confirmed."""

    dry_run: bool
    expired: list[ExpiredInstance] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)  # confirmed shutting down or gone
    unconfirmed: dict[str, str] = field(default_factory=dict)  # id → its state or the error
    without_deadline: list[str] = field(default_factory=list)  # untagged: left alone
    # Launch templates left by a crash: deleted (or, dry run, to delete); and those that could
    # not be listed or deleted (id, or "" for the listing → the error).
    launch_templates: list[str] = field(default_factory=list)
    launch_template_errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.unconfirmed

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


async def sweep_instances(
    ec2: Any,
    *,
    owner: str,
    grace_seconds: float,
    dry_run: bool = False,
    confirm_attempts: int = 3,
    confirm_delay: float = 1.0,
    consistency_window: float = CONSISTENCY_WINDOW_SECONDS,
    now: float | None = None,
) -> SweepReport:
    """Terminate (unless `dry_run`) and confirm this owner's managed instances that are not
    terminated and are past their deadline plus `grace_seconds` ('' owner: every owner's).
    Listing errors propagate; a failed termination is reported in `unconfirmed`. (An id EC2
    no longer knows counts as gone once its launch is `consistency_window` old.)"""
    now = time.time() if now is None else now
    filters = [*managed_filters(owner), state_filter(UNFINISHED)]
    found = await describe_instances(ec2, filters)
    report = SweepReport(dry_run=dry_run)
    for iid, instance in sorted(found.items()):
        if deadline_of(instance) is None:
            report.without_deadline.append(iid)
        elif is_expired(instance, now, grace_seconds):
            report.expired.append(ExpiredInstance.of(instance))
    ids = [e.instance_id for e in report.expired]
    if dry_run or not ids:
        return report
    try:
        alive = await terminate_and_check(
            ec2,
            ids,
            attempts=confirm_attempts,
            delay=confirm_delay,
            launched_at={i: t for i in ids if (t := launch_time(found[i])) is not None},
            window=consistency_window,
        )
    except AWS_ERRORS as exc:
        alive = {iid: error_message(exc) for iid in ids}
    report.unconfirmed = {iid: alive[iid] or "unknown" for iid in ids if iid in alive}
    report.terminated = [iid for iid in ids if iid not in alive]
    return report


async def old_launch_templates(
    ec2: Any, owner: str, max_age_seconds: float, now: float
) -> list[str]:
    """The ids of this owner's managed launch templates created more than `max_age_seconds`
    before `now` ('' owner: every owner's). Listing errors propagate."""
    old: list[str] = []
    paginator = ec2.get_paginator("describe_launch_templates")
    async for page in paginator.paginate(Filters=managed_filters(owner)):
        for template in page.get("LaunchTemplates") or []:
            created = timestamp(template.get("CreateTime"))
            if created is not None and now - created > max_age_seconds:
                old.append(str(template["LaunchTemplateId"]))
    return sorted(old)


async def sweep_launch_templates(
    ec2: Any,
    report: SweepReport,
    *,
    owner: str,
    max_age_seconds: float | None = None,
    now: float | None = None,
) -> None:
    """Delete (unless `report.dry_run`) this owner's launch templates older than
    `max_age_seconds` (default `TEMPLATE_MAX_AGE_SECONDS`), into `report`; AWS errors are
    recorded there, never raised."""
    now = time.time() if now is None else now
    max_age = TEMPLATE_MAX_AGE_SECONDS if max_age_seconds is None else max_age_seconds
    try:
        old = await old_launch_templates(ec2, owner, max_age, now)
    except AWS_ERRORS as exc:
        report.launch_template_errors[""] = error_message(exc)
        return
    if report.dry_run:
        report.launch_templates = old
        return
    for template_id in old:
        try:
            await ec2.delete_launch_template(LaunchTemplateId=template_id)
        except AWS_ERRORS as exc:
            report.launch_template_errors[template_id] = error_message(exc)
        else:
            report.launch_templates.append(template_id)
