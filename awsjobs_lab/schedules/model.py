"""The Schedule: a job body fired on a cron expression in a time zone.

A schedule's runs are ordinary jobs whose `schedule` field names it. Times are epoch seconds
inside; the API speaks ISO 8601 for `start_at`/`end_at` and the next runs (in UTC and in the
schedule's zone), epoch seconds for `created_at`/`updated_at`/`last_fired_at` as jobs do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import InvalidRequest, NotFound
from . import cron as cronlib

NEXT_RUNS_SHOWN = 3


class ScheduleNotFound(NotFound):
    pass


def iso_utc(at: float) -> str:
    """'2025-01-06T05:00:00Z'."""
    return datetime.fromtimestamp(at, timezone.utc).isoformat().replace("+00:00", "Z")


def iso_local(at: float, zone: ZoneInfo) -> str:
    """'2025-01-06T06:00:00+01:00'."""
    return datetime.fromtimestamp(at, zone).isoformat()


def parse_iso(value: object, name: str, zone: ZoneInfo) -> float:
    """ISO 8601 text to epoch seconds; without an offset it is a time in `zone`."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name}: must be an ISO 8601 date and time, e.g. 2025-01-06T06:00")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest(
            f"{name}: {value[:40]!r} is not an ISO 8601 date and time, e.g. 2025-01-06T06:00"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.timestamp()


def run_times(at: float, zone: ZoneInfo) -> dict[str, str]:
    """One firing as the API shows it: `{"utc": ..., "local": ...}`."""
    return {"utc": iso_utc(at), "local": iso_local(at, zone)}


def preview(expr: str, tz: str, now: float, count: int = NEXT_RUNS_SHOWN) -> dict[str, Any]:
    """`GET schedule-preview`: the reading and the next firings of an expression."""
    spec = cronlib.parse_cron(expr, tz)
    return {
        "description": cronlib.describe(spec.expr, spec.timezone),
        "next_runs": [run_times(at, spec.zone) for at in cronlib.next_runs(spec, now, count)],
    }


@dataclass
class Schedule:
    name: str  # unique per owner; patterns.SCHEDULE_NAME
    owner: str
    cron: str  # standard five fields
    timezone: str  # IANA
    job: dict[str, Any]  # the POST jobs body, validated, with `backend` filled in
    enabled: bool = True
    start_at: float | None = None
    end_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    last_fired_at: float | None = None  # local schedules: the last firing run or recorded
    error: str | None = None  # a remote schedule this server cannot read: why

    def backend(self) -> str:
        return str(self.job.get("backend", ""))

    def spec(self) -> cronlib.CronSpec:
        return cronlib.parse_cron(self.cron, self.timezone)

    def upcoming(self, now: float, count: int = NEXT_RUNS_SHOWN) -> list[float]:
        """The next firings after `now` (none while disabled)."""
        if not self.enabled:
            return []
        return cronlib.next_runs(self.spec(), now, count, self.start_at, self.end_at)

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Schedule:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self, now: float) -> dict[str, Any]:
        """The API's JSON, with `description` and `next_runs` (UTC and local ISO 8601)."""
        data = self.to_record()
        try:
            spec = self.spec()
            data["description"] = cronlib.describe(spec.expr, spec.timezone)
            data["next_runs"] = [run_times(at, spec.zone) for at in self.upcoming(now)]
        except InvalidRequest as err:
            data["description"] = f"cron {self.cron} ({err})"
            data["next_runs"] = []
        zone = _zone_or_utc(self.timezone)
        for name in ("start_at", "end_at"):
            value = data[name]
            data[name] = None if value is None else iso_local(value, zone)
        data["backend"] = self.backend()
        return data


def _zone_or_utc(name: str) -> ZoneInfo:
    try:
        return cronlib.zone_of(name)
    except InvalidRequest:
        return ZoneInfo("UTC")
