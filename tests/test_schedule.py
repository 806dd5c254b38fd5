"""Cron expressions and intervals: when a source is next due."""

from __future__ import annotations

from datetime import datetime

import pytest

from ingestion.schedule import next_run, validate_schedule
from kb.errors import ScheduleError

SATURDAY = datetime(2026, 11, 28, 22, 13, 30)


@pytest.mark.parametrize(("schedule", "expected"), [
    ("*/30 * * * *", datetime(2026, 11, 28, 22, 30)),
    ("0 2 * * *", datetime(2026, 11, 29, 2, 0)),
    ("0 9 * * 1-5", datetime(2026, 11, 30, 9, 0)),  # the next weekday is Monday
    ("0 12 * * 0", datetime(2026, 11, 29, 12, 0)),
    ("0 12 * * 7", datetime(2026, 11, 29, 12, 0)),  # 7 is Sunday too
    ("15 8 1 * *", datetime(2026, 12, 1, 8, 15)),
    ("0 0 29 2 *", datetime(2028, 2, 29, 0, 0)),
    ("5,35 */6 * * *", datetime(2026, 11, 29, 0, 5)),
    ("0 0 1 * 1", datetime(2026, 11, 30, 0, 0)),  # both day fields restricted: either matches
    ("0 0 1 * */2", datetime(2026, 12, 1, 0, 0)),  # as in cron, a day field starting with * is no restriction
    ("0 20-20/3 * * *", datetime(2026, 11, 29, 20, 0)),  # a one-value range stays one value (not 20 and 23)
    ("30 8 * * MON-FRI", datetime(2026, 11, 30, 8, 30)),
    ("every 15m", datetime(2026, 11, 28, 22, 28, 30)),
    ("2h", datetime(2026, 11, 29, 0, 13, 30)),
    ("every 1d", datetime(2026, 11, 29, 22, 13, 30)),
])
def test_next_run(schedule: str, expected: datetime) -> None:
    assert next_run(validate_schedule(schedule), SATURDAY) == expected


@pytest.mark.parametrize("bad", ["* * *", "61 * * * *", "*/0 * * * *", "0 0 31 2 *", "every 0m", "hourly", "a b c d e"])
def test_bad_schedules_are_clear_errors(bad: str) -> None:
    with pytest.raises(ScheduleError, match="cron|interval"):
        validate_schedule(bad)
