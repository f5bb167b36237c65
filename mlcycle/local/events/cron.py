"""EventBridge schedule expressions: ``rate(...)``, ``cron(...)`` (AWS's six fields) and ``at(...)``."""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_AT = re.compile(r"^at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {name.upper(): number for number, name in enumerate(calendar.month_abbr) if name}
_WEEKDAYS = {name: number for number, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}
#: A cron expression that matches nothing within this many days never fires.
_CRON_SEARCH_DAYS = 366 * 8


@dataclass(frozen=True)
class CronExpression:
    """AWS's six-field cron: minutes hours day-of-month month day-of-week year.

    Supported: ``*``, ``?``, lists, ranges, steps, month and weekday names, ``L`` in day-of-month, ``nL``
    (last weekday n of the month) and ``n#k`` (k-th weekday n) in day-of-week; weekdays run 1=SUN..7=SAT.
    ``W`` (nearest weekday) is rejected rather than approximated.
    """

    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int]
    day_matches: Callable[[date], bool] = field(compare=False)

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        fields = text.split()
        if len(fields) != 6:
            raise ValueError(f"cron({text}) must have 6 fields, not {len(fields)}")
        minute, hour, day_of_month, month, day_of_week, year = fields
        if (day_of_month == "?") == (day_of_week == "?"):
            raise ValueError(f"cron({text}): exactly one of day-of-month and day-of-week must be '?'")
        return cls(
            minutes=_cron_field(minute, 0, 59),
            hours=_cron_field(hour, 0, 23),
            months=_cron_field(month, 1, 12, _MONTHS),
            years=_cron_field(year, 1970, 2199),
            day_matches=_day_matcher(day_of_month, day_of_week),
        )

    def next_after(self, after: datetime) -> datetime | None:
        """The first matching minute strictly after ``after`` (naive, in the expression's time zone)."""
        start = (after + timedelta(minutes=1)).replace(second=0, microsecond=0)
        day = start.date()
        for _ in range(_CRON_SEARCH_DAYS):
            if day.year in self.years and day.month in self.months and self.day_matches(day):
                earliest = (start.hour, start.minute) if day == start.date() else (0, 0)
                times = (
                    (h, m) for h in sorted(self.hours) for m in sorted(self.minutes) if (h, m) >= earliest
                )
                first = next(times, None)
                if first is not None:
                    return datetime.combine(day, clock_time(*first))
            day += timedelta(days=1)
        return None


def _cron_field(text: str, low: int, high: int, names: Mapping[str, int] | None = None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = (_cron_value(value, names) for value in base.split("-", 1))
        else:
            first = _cron_value(base, names)
            last = high if step_text else first
        if not low <= first <= last <= high or step < 1:
            raise ValueError(f"cron field {text!r} is outside {low}-{high} or malformed")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _cron_value(text: str, names: Mapping[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ValueError(f"unsupported cron value {text!r}")
    return int(text)


def _day_matcher(day_of_month: str, day_of_week: str) -> Callable[[date], bool]:
    if day_of_month != "?":
        return _day_of_month_matcher(day_of_month)
    return _day_of_week_matcher(day_of_week)


def _day_of_month_matcher(text: str) -> Callable[[date], bool]:
    if text == "L":
        return lambda day: day.day == calendar.monthrange(day.year, day.month)[1]
    if "W" in text:
        raise ValueError(f"cron day-of-month {text!r}: 'W' is not supported by the embedded AWS")
    days = _cron_field(text, 1, 31)
    return lambda day: day.day in days


def _day_of_week_matcher(text: str) -> Callable[[date], bool]:
    if text.endswith("L"):  # nL: the last weekday n of the month
        weekday = _cron_value(text[:-1], _WEEKDAYS)
        return lambda day: _aws_weekday(day) == weekday and (day + timedelta(days=7)).month != day.month
    if "#" in text:  # n#k: the k-th weekday n of the month
        weekday_text, _, nth = text.partition("#")
        weekday = _cron_value(weekday_text, _WEEKDAYS)
        return lambda day: _aws_weekday(day) == weekday and (day.day - 1) // 7 + 1 == int(nth)
    weekdays = _cron_field(text, 1, 7, _WEEKDAYS)
    return lambda day: _aws_weekday(day) in weekdays


def _aws_weekday(day: date) -> int:
    """1=Sunday .. 7=Saturday (Python's weekday() is 0=Monday)."""
    return (day.weekday() + 1) % 7 + 1


def next_fire(expression: str, after: datetime, zone: str = "UTC") -> datetime | None:
    """When a schedule expression next fires strictly after ``after`` (aware); None if never again."""
    if rate := _RATE.match(expression):
        unit = rate.group(2).rstrip("s")
        return after + timedelta(seconds=int(rate.group(1)) * _UNIT_SECONDS[unit])
    tz = ZoneInfo(zone)
    local_after = after.astimezone(tz).replace(tzinfo=None)
    if cron := _CRON.match(expression):
        local = CronExpression.parse(cron.group(1)).next_after(local_after)
    elif at := _AT.match(expression):
        moment = datetime.fromisoformat(at.group(1))
        local = moment if moment > local_after else None
    else:
        raise ValueError(f"unsupported schedule expression {expression!r}")
    return local.replace(tzinfo=tz).astimezone(UTC) if local is not None else None
