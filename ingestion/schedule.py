"""Reindex schedules: five-field cron expressions or fixed intervals, and when each is next due."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from kb.errors import ScheduleError

INTERVAL = re.compile(r"^(?:every\s+)?(\d+)\s*([smhd])$", re.IGNORECASE)
# What a person means as an interval, well formed or not: "every ..." or a number with a word after it.
LOOKS_LIKE_INTERVAL = re.compile(r"^(?:every\b.*|\d+\s*[a-z]+)$", re.IGNORECASE)
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# (name, lowest, highest) of the five cron fields, in order.
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
SEARCH_LIMIT = timedelta(days=5 * 366)
MAX_INTERVAL = timedelta(days=366)  # longer intervals are typing mistakes, and overflow date arithmetic



def interval_seconds(text: str) -> int | None:
    """``"every 15m"`` / ``"15m"`` / ``"2h"`` / ``"1d"`` as seconds, or None if ``text`` is not an interval."""
    match = INTERVAL.match(text.strip())
    if not match:
        if LOOKS_LIKE_INTERVAL.match(text.strip()):
            raise ScheduleError(f"cannot read the interval {text!r}: give a number and a unit, s, m, h or d "
                                "(30s, 15m, 2h, 1d)")
        return None
    number = match.group(1).lstrip("0") or "0"
    seconds = int(number) * UNIT_SECONDS[match.group(2).lower()] if len(number) <= 12 else None
    if seconds is None or seconds > MAX_INTERVAL.total_seconds():
        raise ScheduleError(f"interval {text[:40]!r} is longer than {MAX_INTERVAL.days} days")
    if seconds <= 0:
        raise ScheduleError(f"interval {text[:40]!r} must be positive")
    return seconds


def _parse_field(text: str, name: str, lowest: int, highest: int) -> frozenset[int]:
    """One cron field (``*``, ``5``, ``1-5``, ``*/15``, ``0-30/10``, lists of these) as the values it allows."""
    values: set[int] = set()
    for part in text.split(","):
        base, has_step, step_text = part.partition("/")
        if has_step and (not step_text.isdigit() or int(step_text) == 0):
            raise ScheduleError(f"bad step in cron {name} field {text!r}")
        step = int(step_text) if has_step else 1
        if base == "*":
            first, last = lowest, highest
        elif re.fullmatch(r"\d+-\d+", base):
            first, last = (int(v) for v in base.split("-"))
        elif base.isdigit():
            first = int(base)
            last = highest if has_step else first
        else:
            raise ScheduleError(f"cannot read cron {name} field {text!r}")
        if not lowest <= first <= last <= highest:
            raise ScheduleError(f"cron {name} field {text!r} is outside {lowest}-{highest}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


class CronSchedule:
    """A standard five-field cron expression: minute hour day-of-month month day-of-week.

    Supports ``*``, lists, ranges and steps. As in cron, when both day fields are restricted a day matches if
    either does.
    """

    def __init__(self, expression: str) -> None:
        parts = expression.split()
        if len(parts) != 5:
            raise ScheduleError(f"cron expression {expression!r} needs 5 fields (minute hour day month weekday)")
        self.minutes, self.hours, self.days, self.months, weekdays = (
            _parse_field(part, *spec) for part, spec in zip(parts, CRON_FIELDS))
        self.weekdays = frozenset(day % 7 for day in weekdays)  # 0 and 7 are both Sunday
        self.days_restricted = parts[2] != "*"
        self.weekdays_restricted = parts[4] != "*"

    def _day_matches(self, moment: datetime) -> bool:
        day_ok = moment.day in self.days
        weekday_ok = (moment.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment``."""
        candidate = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = moment + SEARCH_LIMIT
        while candidate <= limit:
            if candidate.month not in self.months:
                first_of_month = candidate.replace(day=1, hour=0, minute=0)
                candidate = (first_of_month + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(candidate):
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0)
            elif candidate.hour not in self.hours:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0)
            elif candidate.minute not in self.minutes:
                candidate += timedelta(minutes=1)
            else:
                return candidate
        raise ScheduleError("the cron expression never fires")


def validate_schedule(text: str) -> str:
    """The schedule, normalised, if it can be understood (raises ``ScheduleError`` otherwise)."""
    text = " ".join(text.split())
    if interval_seconds(text) is None:
        CronSchedule(text).next_after(datetime(2000, 1, 1))
    return text


def next_run(schedule: str, after: datetime) -> datetime:
    """When a source with ``schedule`` is next due after ``after`` (naive UTC in, naive UTC out)."""
    seconds = interval_seconds(schedule)
    if seconds is not None:
        return after + timedelta(seconds=seconds)
    return CronSchedule(schedule).next_after(after)
