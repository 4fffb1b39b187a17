"""A standard five-field cron expression as EventBridge Scheduler writes it.

AWS's `cron(minutes hours day-of-month month day-of-week year)` differs from cron(8) in three
ways that matter here:

- one of day-of-month and day-of-week must be `?`: AWS cannot say "the 1st, or any Monday"
  (cron(8)'s rule when both are restricted), nor "the 1st if it is a Monday"; such an
  expression is refused with a message;
- days of the week are numbered 1 (Sunday) to 7 (Saturday), where cron(8) has 0 (or 7) for
  Sunday to 6 for Saturday;
- a step is written `start/step` (`0/15`), not `*/15`.

Each field is expanded to the set of values it allows and written back in AWS's syntax
(`*`, `start/step`, or ranges and single values), so every spelling of a field cron(8)
accepts (names, lists, ranges, steps on ranges) comes out in a form AWS takes. Day-of-month
`L`, `LW`, `15W` and day-of-week `5#3` (the third Friday), `5L` (the last Friday), which AWS
also has, are passed through with the day renumbered.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InvalidRequest

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_DOM_SPECIAL = re.compile(r"(L|LW|([1-9]|[12][0-9]|3[01])W)\Z")
_DOW_SPECIAL = re.compile(r"([0-7]|SUN|MON|TUE|WED|THU|FRI|SAT)(#[1-5]|L)\Z")


@dataclass(frozen=True)
class Field:
    name: str
    low: int
    high: int
    names: Sequence[str] = ()  # the names of low, low+1, ... (months, days)


MINUTE = Field("minute", 0, 59)
HOUR = Field("hour", 0, 23)
DAY_OF_MONTH = Field("day of month", 1, 31)
MONTH = Field("month", 1, 12, MONTHS)
DAY_OF_WEEK = Field("day of week", 0, 7, DAYS)  # 7 is Sunday too


def _refuse(expr: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"cron {expr!r}: {why}")


def _value(text: str, field: Field, expr: str) -> int:
    upper = text.upper()
    if upper in field.names:
        return field.low + list(field.names).index(upper)
    if not text.isdigit():
        raise _refuse(expr, f"{text!r} is not a valid {field.name}")
    number = int(text)
    if not field.low <= number <= field.high:
        raise _refuse(expr, f"{field.name} {number} is outside {field.low}-{field.high}")
    return number


def _expand_part(part: str, field: Field, expr: str) -> set[int]:
    """One comma-separated part: `*`, `a`, `a-b`, each with an optional `/step`."""
    span, _, step_text = part.partition("/")
    if step_text and not step_text.isdigit():
        raise _refuse(expr, f"{step_text!r} is not a valid step")
    step = int(step_text) if step_text else 1
    if step < 1:
        raise _refuse(expr, "a step must be at least 1")
    if span == "*":
        first, last = field.low, field.high
    elif "-" in span:
        start, _, end = span.partition("-")
        first, last = _value(start, field, expr), _value(end, field, expr)
        if last < first:
            raise _refuse(expr, f"the {field.name} range {span!r} runs backwards")
    else:
        first = _value(span, field, expr)
        last = field.high if step_text else first  # `5/15`: from 5 to the end, as cron(8)
    return set(range(first, last + 1, step))


def expand(text: str, field: Field, expr: str) -> set[int]:
    """The values a field allows."""
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise _refuse(expr, f"empty item in the {field.name} field")
        values |= _expand_part(part, field, expr)
    return values


def _runs(values: list[int]) -> list[str]:
    """Sorted values as `a-b` runs (three or more in a row) and single values."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"{values[i]}-{values[j]}")
        else:
            out.extend(str(v) for v in values[i : j + 1])
        i = j + 1
    return out


def write(values: set[int], low: int, high: int) -> str:
    """A set of values of a field spanning low..high in AWS's syntax."""
    ordered = sorted(values)
    if ordered == list(range(low, high + 1)):
        return "*"
    if len(ordered) > 2:
        step = ordered[1] - ordered[0]
        if (
            step > 1
            and ordered == list(range(ordered[0], high + 1, step))
            and ordered[0] < low + step
        ):
            return f"{ordered[0]}/{step}"
    return ",".join(_runs(ordered))


def _aws_day(day: int) -> int:
    """cron(8)'s day of the week (0 or 7 = Sunday) as AWS's (1 = Sunday ... 7 = Saturday)."""
    return day % 7 + 1


def _day_of_week(text: str, expr: str) -> str | None:
    """AWS's day-of-week field, or None when the field does not restrict the days."""
    special = _DOW_SPECIAL.match(text.upper())
    if special:
        return f"{_aws_day(_value(special.group(1), DAY_OF_WEEK, expr))}{special.group(2)}"
    days = {_aws_day(d) for d in expand(text, DAY_OF_WEEK, expr)}
    return None if len(days) == 7 else write(days, 1, 7)


def _day_of_month(text: str, expr: str) -> str | None:
    """AWS's day-of-month field, or None when the field does not restrict the days."""
    if _DOM_SPECIAL.match(text.upper()):
        return text.upper()
    days = expand(text, DAY_OF_MONTH, expr)
    return None if len(days) == 31 else write(days, 1, 31)


def to_aws_cron(expr: str) -> str:
    """`"0 6 * * 1-5"` → `"cron(0 6 ? * 2-6 *)"`. InvalidRequest for what is not five cron
    fields, or what AWS cannot express (both days restricted)."""
    fields = expr.split()
    if len(fields) != 5:
        raise _refuse(expr, "a cron expression has five fields: minute hour day month weekday")
    minute, hour, dom, month, dow = fields
    minutes = write(expand(minute, MINUTE, expr), 0, 59)
    hours = write(expand(hour, HOUR, expr), 0, 23)
    months = write(expand(month, MONTH, expr), 1, 12)
    days_of_month = _day_of_month(dom, expr)
    days_of_week = _day_of_week(dow, expr)
    if days_of_month is not None and days_of_week is not None:
        raise _refuse(
            expr,
            "AWS EventBridge Scheduler cannot run a schedule restricted by both the day of "
            "the month and the day of the week (one of them must be '*'); make two schedules",
        )
    if days_of_week is None:
        return f"cron({minutes} {hours} {days_of_month or '*'} {months} ? *)"
    return f"cron({minutes} {hours} ? {months} {days_of_week} *)"
