"""A cron expression read out for people: "at 06:00, Monday to Friday, Europe/Paris".

The common shapes get a sentence; anything else is read field by field, never wrongly. Expects
an expression `cron.parse_cron` accepted (five fields)."""

from __future__ import annotations

import re

DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
DAY_NUMBERS = {name[:3].lower(): index for index, name in enumerate(DAY_NAMES)}
MONTH_NUMBERS = {name[:3].lower(): index + 1 for index, name in enumerate(MONTH_NAMES)}
_PLAIN_LIST = re.compile(r"\d+(,\d+)*\Z")
_STEP = re.compile(r"\*/(\d+)\Z")
_RANGE = re.compile(r"(\d+)-(\d+)\Z")
MAX_LISTED_TIMES = 6


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _numbers(text: str, names: dict[str, int]) -> str:
    """`text` with names (mon, jan) replaced by their numbers."""
    return re.sub(r"[A-Za-z]+", lambda m: str(names[m.group(0).lower()]), text)


def _named_items(text: str, name_of: tuple[str, ...], first: int) -> str | None:
    """A list of numbers and ranges by name ("Monday to Friday"); None if it has steps."""
    parts: list[str] = []
    for item in text.split(","):
        single = re.fullmatch(r"\d+", item)
        span = _RANGE.match(item)
        if single:
            parts.append(name_of[(int(item) - first) % len(name_of)])
        elif span:
            low, high = (name_of[(int(g) - first) % len(name_of)] for g in span.groups())
            parts.append(f"{low} to {high}")
        else:
            return None
    return _and(parts)


def _time_phrase(minute: str, hour: str) -> str:
    if _PLAIN_LIST.match(minute) and _PLAIN_LIST.match(hour):
        times = sorted((int(h), int(m)) for h in hour.split(",") for m in minute.split(","))
        if len(times) <= MAX_LISTED_TIMES:
            return "at " + _and([f"{h:02d}:{m:02d}" for h, m in times])
    step = _STEP.match(minute)
    if _PLAIN_LIST.match(minute):
        count = len(minute.split(","))
        minutes = f"at minute{'s' if count > 1 else ''} {_and(minute.split(','))}"
    elif step:
        minutes = f"every {step.group(1)} minutes"
    elif minute == "*":
        minutes = "every minute"
    else:
        minutes = f"at minutes {minute}"
    if not _PLAIN_LIST.match(minute) and (hour == "*" or _RANGE.match(hour)):
        # "every 15 minutes" (all day), "every 15 minutes from 09:00 to 17:59"
        return minutes + _hours_phrase(hour).removeprefix("of every hour")
    return f"{minutes} {_hours_phrase(hour)}"


def _hours_phrase(hour: str) -> str:
    step = _STEP.match(hour)
    span = _RANGE.match(hour)
    if hour == "*":
        return "of every hour"
    if step:
        return f"of every {step.group(1)} hours"
    if span:
        low, high = (int(g) for g in span.groups())
        return f"of every hour from {low:02d}:00 to {high:02d}:59"
    if _PLAIN_LIST.match(hour):
        return "of hour" + ("s " if "," in hour else " ") + _and(hour.split(","))
    return f"of hours {hour}"


def _days_phrase(day: str, weekday: str) -> str | None:
    """None for every day."""
    phrases: list[str] = []
    if day != "*":
        if _PLAIN_LIST.match(day) or all(_RANGE.match(i) or i.isdigit() for i in day.split(",")):
            items = [i.replace("-", " to ") for i in day.split(",")]
            plural = len(items) > 1 or "-" in day
            phrases.append(f"on day{'s' if plural else ''} {_and(items)} of the month")
        else:
            phrases.append(f"on days of the month {day}")
    if weekday != "*":
        named = _named_items(_numbers(weekday, DAY_NUMBERS), DAY_NAMES, 0)
        if named is None:
            phrases.append(f"on days of the week {weekday}")
        elif "to" in named and "," not in weekday:
            phrases.append(named)
        else:
            phrases.append(f"on {named}")
    return " or ".join(phrases) if phrases else None


def describe(expr: str, tz: str) -> str:
    """The reading of `expr` in zone `tz`, e.g. "at 06:00, Monday to Friday, Europe/Paris"."""
    minute, hour, day, month, weekday = expr.split()
    parts = [_time_phrase(minute, hour)]
    days = _days_phrase(day, weekday)
    if days is None and month == "*":
        parts.append("every day")
    elif days is not None:
        parts.append(days)
    if month != "*":
        named = _named_items(_numbers(month, MONTH_NUMBERS), MONTH_NAMES, 1)
        parts.append(f"in {named}" if named else f"in months {month}")
    parts.append(tz)
    return ", ".join(parts)
