"""Cron expressions, parsed in this one place: validation, the next and previous firings, and a
reading for people ("at 06:00, Monday to Friday, Europe/Paris").

Standard five fields (minute hour day-of-month month day-of-week), Vixie cron's meaning: when
both day fields are restricted, a day matching either fires. Times are computed in the
schedule's IANA zone (croniter on zone-aware datetimes), so "0 6 * * *" stays at 06:00 across
daylight-saving changes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from ..errors import InvalidRequest
from .reading import DAY_NUMBERS, MONTH_NUMBERS, describe

__all__ = ["CronSpec", "describe", "next_runs", "parse_cron", "previous_runs", "zone_of"]

MIN_INTERVAL_MINUTES = 5  # a schedule may not fire more often than this
NEVER_FIRES_YEARS = 5  # one that does not fire within this many years is refused

FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_NUMERIC_FIELD = re.compile(r"[0-9*/,-]+\Z")
_NAMED_FIELD = re.compile(r"[0-9A-Za-z*/,-]+\Z")
EXAMPLE = "'0 6 * * 1-5' (06:00, Monday to Friday)"


@dataclass(frozen=True)
class CronSpec:
    """A validated expression (its fields single-spaced) and its time zone."""

    expr: str
    timezone: str
    zone: ZoneInfo


def zone_of(name: object) -> ZoneInfo:
    """The IANA zone `name`, or `InvalidRequest`."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("timezone: must be an IANA time zone name such as Europe/Paris")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidRequest(
            f"timezone: unknown time zone {name[:64]!r} (an IANA name such as Europe/Paris)"
        ) from None


def local_zone_name() -> str:
    """This machine's IANA zone name (TZ, /etc/timezone, the /etc/localtime link), else UTC.
    Blocking (small file reads): called once, when the app starts."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    try:
        target = os.readlink("/etc/localtime")
        candidates.append(target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "")
    except OSError:
        pass
    for name in candidates:
        try:
            zone_of(name)
            return name
        except InvalidRequest:
            continue
    return "UTC"


def _check_field(index: int, text: str) -> None:
    """Characters of a standard field only (no @daily, L, W, # or seconds); names only for
    months and days of the week."""
    named = index >= 3
    if not (_NAMED_FIELD if named else _NUMERIC_FIELD).match(text):
        raise InvalidRequest(
            f"cron: the {FIELD_NAMES[index]} field {text[:40]!r} may hold only digits, * , - /"
            + (" and three-letter names" if named else "")
        )
    names = MONTH_NUMBERS if index == 3 else DAY_NUMBERS
    for word in re.findall(r"[A-Za-z]+", text):
        if word.lower() not in names:
            raise InvalidRequest(f"cron: {word!r} is not a {FIELD_NAMES[index]} name")


def _expanded(expr: str) -> list[list[int]]:
    """croniter's expanded fields, '*' spelt out, or `InvalidRequest`."""
    try:
        fields = croniter(expr).expanded
    except (CroniterError, ValueError) as err:
        raise InvalidRequest(f"cron: {expr!r} is not valid: {err}") from None
    full = (range(60), range(24), range(1, 32), range(1, 13), range(7))
    return [
        list(full[i]) if values == ["*"] else [int(v) for v in values]
        for i, values in enumerate(fields)
    ]


def _shortest_gap_minutes(minutes: list[int], hours: list[int]) -> int:
    """The shortest time between two firings within a day and across midnight (as if the
    next day fires too: a safe over-estimate of how often it fires)."""
    times = sorted({h * 60 + m for h in hours for m in minutes})
    gaps = [b - a for a, b in itertools.pairwise(times)]
    gaps.append(24 * 60 - times[-1] + times[0])
    return min(gaps)


def parse_cron(expr: object, tz: object) -> CronSpec:
    """Validate a five-field expression in zone `tz`; `InvalidRequest` (the message starts
    with the field) when malformed, when it never fires, or fires more often than every
    `MIN_INTERVAL_MINUTES` minutes."""
    if not isinstance(expr, str):
        raise InvalidRequest(f"cron: must be a string of five fields, e.g. {EXAMPLE}")
    fields = expr.split()
    if len(fields) != 5:
        raise InvalidRequest(
            "cron: must have five fields (minute hour day-of-month month day-of-week), "
            f"e.g. {EXAMPLE}; got {len(fields)}"
        )
    for index, text in enumerate(fields):
        _check_field(index, text)
    zone = zone_of(tz)
    spec = CronSpec(" ".join(fields), str(tz), zone)
    expanded = _expanded(spec.expr)
    gap = _shortest_gap_minutes(expanded[0], expanded[1])
    if gap < MIN_INTERVAL_MINUTES:
        raise InvalidRequest(
            f"cron: {spec.expr!r} fires every {gap} minute{'s' if gap > 1 else ''}; a schedule "
            f"may fire at most every {MIN_INTERVAL_MINUTES} minutes"
        )
    if not next(_walk(spec, datetime.now(timezone.utc).timestamp()), None):
        raise InvalidRequest(
            f"cron: {spec.expr!r} never fires (no date within {NEVER_FIRES_YEARS} years)"
        )
    return spec


def _walk(spec: CronSpec, start: float, backwards: bool = False) -> Iterator[float]:
    """Firings strictly after `start` in order (or before it, newest first), until none
    within `NEVER_FIRES_YEARS`."""
    it = croniter(
        spec.expr,
        datetime.fromtimestamp(start, spec.zone),
        max_years_between_matches=NEVER_FIRES_YEARS,
    )
    step = it.get_prev if backwards else it.get_next
    while True:
        try:
            yield float(step(float))
        except CroniterBadDateError:
            return


def next_runs(
    spec: CronSpec,
    after: float,
    count: int,
    start_at: float | None = None,
    end_at: float | None = None,
) -> list[float]:
    """Up to `count` firings strictly after `after` (epoch seconds), none before `start_at`
    nor after `end_at`."""
    begin = after if start_at is None else max(after, start_at - 1.0)
    runs: list[float] = []
    for at in _walk(spec, begin):
        if len(runs) >= count or (end_at is not None and at > end_at):
            break
        if start_at is None or at >= start_at:
            runs.append(at)
    return runs


def previous_runs(
    spec: CronSpec,
    before: float,
    after: float,
    count: int,
    start_at: float | None = None,
    end_at: float | None = None,
) -> list[float]:
    """Up to `count` firings in (`after`, `before`], newest first, within start/end."""
    if end_at is not None:
        before = min(before, end_at)
    if start_at is not None:
        after = max(after, start_at - 1e-3)
    runs: list[float] = []
    for at in _walk(spec, before + 1e-3, backwards=True):  # `before` included
        if len(runs) >= count or at <= after:
            break
        runs.append(at)
    return runs
