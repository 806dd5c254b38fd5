"""Reindex schedules: five-field cron expressions (read by cronsim) or fixed intervals, and when each is next due."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from cronsim import CronSim, CronSimError

from kb.errors import ScheduleError
from kb.storage.models import MAX_SCHEDULE_LENGTH

INTERVAL = re.compile(r"^(?:every\s+)?(\d+)\s*([smhd])$", re.IGNORECASE)
# What a person means as an interval, well formed or not: "every ..." or a number with a word after it.
LOOKS_LIKE_INTERVAL = re.compile(r"^(?:every\b.*|\d+\s*[a-z]+)$", re.IGNORECASE)
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A one-value range with a step ("5-5/2"): cronsim 2.x reads it as "5/2" (5 to the end), cron as just 5.
ONE_VALUE_STEP = re.compile(r"(?<![\d-])(\d+)-\1/\d+(?![\d-])")
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


def _cron_next(expression: str, after: datetime) -> datetime:
    """The first minute strictly after ``after`` that the five-field cron ``expression`` matches; as in cron, when
    both day fields are restricted a day matches if either does."""
    if len(expression.split()) != 5:
        raise ScheduleError(f"cron expression {expression[:80]!r} needs 5 fields (minute hour day month weekday)")
    try:
        return next(CronSim(ONE_VALUE_STEP.sub(r"\1", expression), after))
    except CronSimError as error:
        raise ScheduleError(f"cannot read the cron expression {expression[:80]!r}: {str(error).lower()}") from None
    except StopIteration:
        raise ScheduleError(f"the cron expression {expression[:80]!r} never fires") from None


def validate_schedule(text: str) -> str:
    """The schedule, normalised, if it can be understood (raises ``ScheduleError`` otherwise)."""
    text = " ".join(text.split())
    if len(text) > MAX_SCHEDULE_LENGTH:
        raise ScheduleError(f"a schedule is at most {MAX_SCHEDULE_LENGTH} characters; {text[:40]!r}... has "
                            f"{len(text)}")
    if interval_seconds(text) is None:
        _cron_next(text, datetime(2000, 1, 1))
    return text


def next_run(schedule: str, after: datetime) -> datetime:
    """When a source with ``schedule`` is next due after ``after`` (naive UTC in, naive UTC out)."""
    seconds = interval_seconds(schedule)
    if seconds is not None:
        return after + timedelta(seconds=seconds)
    return _cron_next(schedule, after)
