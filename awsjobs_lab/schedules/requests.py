"""Validation of a schedule's body (`POST schedules`, `PATCH schedules/{name}`) into a Schedule.

Every error is an `InvalidRequest` (HTTP 400) whose message starts with the field. The `job`
field is checked by the job service exactly as `POST jobs` (the service awaits that part)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import InvalidRequest
from ..patterns import SCHEDULE_NAME
from . import cron
from .model import Schedule, parse_iso

FIELDS = frozenset({"name", "cron", "timezone", "start_at", "end_at", "enabled", "job"})
NAME_RULE = "1 to 64 letters, digits, '-' or '_'"


def check_name(name: object, field: str = "name") -> str:
    """`name` if it is a schedule name, else `InvalidRequest` starting with `field`."""
    if not isinstance(name, str) or not SCHEDULE_NAME.match(name):
        shown = repr(name[:70]) if isinstance(name, str) else "this"
        raise InvalidRequest(f"{field}: {shown} is not a schedule name ({NAME_RULE})")
    return name


def _check_body(body: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    if "job" in body and not isinstance(body["job"], dict):
        raise InvalidRequest("job: must be an object with the fields of POST jobs")
    return body


def _apply(schedule: Schedule, body: dict[str, Any]) -> None:
    """Set the fields `body` has on `schedule`, then check the whole (cron in its zone,
    start before end)."""
    for name in ("cron", "timezone"):
        if name in body:
            setattr(schedule, name, body[name])
    spec = cron.parse_cron(schedule.cron, schedule.timezone)
    schedule.cron = spec.expr
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise InvalidRequest("enabled: must be true or false")
        schedule.enabled = body["enabled"]
    for name in ("start_at", "end_at"):
        if name in body:
            value = body[name]
            setattr(schedule, name, None if value is None else parse_iso(value, name, spec.zone))
    start, end = schedule.start_at, schedule.end_at
    if start is not None and end is not None and end <= start:
        raise InvalidRequest("end_at: must be after start_at")
    if "job" in body:
        schedule.job = dict(body["job"])


def new_schedule(body: Any, owner: str, default_timezone: str, at: float) -> Schedule:
    """A new Schedule from a `POST schedules` body (its `job` still to be checked)."""
    body = _check_body(body, FIELDS)
    for required in ("name", "cron", "job"):
        if required not in body:
            raise InvalidRequest(f"{required}: required")
    schedule = Schedule(
        name=check_name(body["name"]),
        owner=owner,
        cron="",
        timezone=default_timezone,
        job={},
        created_at=at,
        updated_at=at,
    )
    _apply(schedule, body)
    return schedule


def changed_schedule(current: Schedule, body: Any, at: float) -> Schedule:
    """`current` with a `PATCH` body's fields (a copy; its `job`, if given, still to be
    checked). Firings before `at` of the changed schedule are not missed runs."""
    body = _check_body(body, FIELDS)
    if "name" in body and body["name"] != current.name:
        raise InvalidRequest("name: a schedule cannot be renamed (create a new one)")
    schedule = dataclasses.replace(current, job=dict(current.job))
    _apply(schedule, body)
    schedule.updated_at = at
    schedule.last_fired_at = max(current.last_fired_at or 0.0, at)
    return schedule
