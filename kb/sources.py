"""Sources (folders kept up to date) with their schedules, and the history of runs."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

from ingestion.scan import valid_name
from ingestion.schedule import next_run, validate_schedule
from kb.errors import InvalidRequestError, ScheduleError, SourceNotFoundError, SourceUnavailableError
from kb.storage.models import MAX_PATH_BYTES, utcnow
from kb.storage.store import Store
from kb.types import FailedFile, Job, SourceInfo

log = logging.getLogger(__name__)

REMOVAL_FLOOR = 10  # fewer missing documents than this are always removed: a folder tidied by hand
CLOCK_LEEWAY = timedelta(minutes=1)  # a next run further ahead of the schedule than this was set by a fast clock
UNUSABLE_SCHEDULE = (ScheduleError, OverflowError)  # a stored schedule an older version let through


def too_many_missing(missing: int, documents: int, share: float) -> bool:
    """Whether ``missing`` of a source's ``documents`` is too many to remove in one go without being told to:
    more than ``share`` of them (and at least ``REMOVAL_FLOOR``), as when part of a share is unmounted."""
    return missing >= REMOVAL_FLOOR and missing > share * documents


def resolve(path: str | os.PathLike[str]) -> str:
    """``path`` made absolute, its links resolved; one holding a NUL, which no system call takes, is refused."""
    if "\0" in os.fspath(path):
        raise InvalidRequestError(f"the folder path {os.fspath(path)!r} holds a NUL character, which no path can")
    return str(Path(path).expanduser().resolve())


def find_source(store: Store, folder: str | os.PathLike[str]) -> str | None:
    """The registered source that ``folder`` names, as stored and as `kb source list` shows it: the path as given
    (made absolute), else as it resolves; None when neither is a source.

    The path as given comes first: a stored folder that has since become a symlink resolves elsewhere, and must
    still be found to be run (which refuses it), rescheduled or removed.
    """
    resolved = resolve(folder)
    with store.read() as snapshot:
        stored = set(snapshot.source_paths())
    given = os.path.abspath(Path(folder).expanduser())
    return next((path for path in (given, resolved) if path in stored), None)


def source_path(store: Store, folder: str | os.PathLike[str]) -> str:
    """``find_source``, for a command that needs an existing source: raises ``SourceNotFoundError`` otherwise."""
    found = find_source(store, folder)
    if found is None:
        raise _no_source(folder)
    return found


def _no_source(folder: str | os.PathLike[str]) -> SourceNotFoundError:
    return SourceNotFoundError(f"no source {folder}; `kb source list` shows them, `kb source add` or `kb ingest` "
                               "adds one")


def check_storable(folder: str) -> None:
    """Refuse, before anything is written, a source folder whose path no database can store: not UTF-8, or longer
    than ``MAX_PATH_BYTES`` (PostgreSQL's limit, kept on SQLite too)."""
    if not valid_name(folder):
        raise SourceUnavailableError(f"{folder!r} is not valid UTF-8; no database can store its paths")
    size = len(folder.encode("utf-8"))
    if size > MAX_PATH_BYTES:
        raise InvalidRequestError(f"the folder path {folder[:60]!r}... is {size:,} bytes long; a source folder's path "
                                  f"is at most {MAX_PATH_BYTES:,} bytes (UTF-8): move it to a shorter path")


def add_source(store: Store, path: str | Path, schedule: str | None) -> SourceInfo:
    """Register a folder (or change its schedule); it is first due now, so the scheduler ingests it at once."""
    folder = resolve(path)
    check_storable(folder)
    if not Path(folder).is_dir():
        raise NotADirectoryError(f"{path} is not a folder")
    normalised = validate_schedule(schedule) if schedule is not None else None  # "" is refused, not unscheduled
    with store.write() as unit:
        source = unit.source(folder, create=True)
        assert source is not None
        source.schedule = normalised
        source.next_run_at = utcnow() if normalised else None
    return next(info for info in list_sources(store) if info.path == folder)


def remove_source(store: Store, path: str | os.PathLike[str]) -> int:
    """Forget a source (by the path `kb source list` shows, or one that resolves to it) and delete its documents
    everywhere, but for those another source's folder holds (they pass to it); returns how many were deleted."""
    folder = source_path(store, path)
    with store.writer_lock:
        with store.write() as unit:
            source = unit.source(folder)
            if source is None:  # removed by another process meanwhile
                raise _no_source(folder)
            removed = unit.delete_source(source)
        notice = store.save_caches(store.index(space) for space in store.spaces())  # as an ingest leaves them
        if notice is not None:
            log.warning("%s", notice)
        return removed


def list_sources(store: Store) -> list[SourceInfo]:
    with store.read() as snapshot:
        return [SourceInfo(path=source.path, schedule=source.schedule, next_run_at=source.next_run_at,
                           documents=documents, last_status=last.status if last else None,
                           last_finished_at=last.finished_at if last else None)
                for source, documents, last in snapshot.sources()]


def due_sources(store: Store, now: datetime) -> list[str]:
    """Paths of scheduled sources whose next run is at or before ``now``."""
    with store.read() as snapshot:
        return snapshot.due_sources(now)


def catch_up_with_the_clock(store: Store, now: datetime) -> None:
    """Bring a next run later than its schedule allows from ``now`` to the schedule's next time from now: it was set
    by a clock that ran ahead and was then set back, and the source would wait for the clock to catch up (a day
    fast, a day without runs). A stored schedule that cannot be used is left to ``schedule_next`` to refuse."""
    with store.read() as snapshot:  # a minute's leeway: clocks of two machines differ (a cron slot just run)
        ahead = [(path, due) for path, schedule, planned in snapshot.schedules()
                 if (due := _next_or_none(schedule, now + CLOCK_LEEWAY)) is not None and planned > due]
    if ahead:
        with store.write() as unit:
            for path, due in ahead:
                source = unit.source(path)
                if source is not None:
                    source.next_run_at = due


def _next_or_none(schedule: str, after: datetime) -> datetime | None:
    """``next_run``, or None for a stored schedule that cannot be used (``schedule_next`` says so)."""
    try:
        return next_run(schedule, after)
    except UNUSABLE_SCHEDULE:
        return None


def next_due(store: Store) -> datetime | None:
    with store.read() as snapshot:
        return snapshot.next_due()


def schedule_next(store: Store, path: str, after: datetime) -> None:
    """Set a scheduled source's next run from its schedule (a missed run is not repeated); ``path`` is the source's
    as stored (``find_source``). A source that is not there raises ``SourceNotFoundError``: left as it was, a due
    source would be run again at every poll.

    A stored schedule that cannot be used (written by an older version that let absurd intervals through) stops
    the source from being scheduled, and raises ``ScheduleError`` saying so, rather than failing every poll.
    """
    with store.write() as unit:
        source = unit.source(path) if valid_name(path) else None  # no source is stored under a path not UTF-8
        if source is None:
            raise _no_source(path)
        if not source.schedule:
            return
        try:
            source.next_run_at = next_run(source.schedule, after)
            return
        except UNUSABLE_SCHEDULE as error:
            source.next_run_at = None
            problem, schedule = error, source.schedule
    raise ScheduleError(f"the schedule {schedule[:40]!r} of {path} cannot be used ({problem}); the source is no longer "
                        "scheduled: set a schedule again with `kb source add`") from problem


def jobs(store: Store, limit: int = 20) -> list[Job]:
    """The most recent runs, newest first."""
    with store.read() as snapshot:
        rows = snapshot.runs(limit)
        return [Job(id=run.id, source=path, started_at=run.started_at, finished_at=run.finished_at,
                    status=run.status, counts=run.counts or {}, error=run.error,
                    failures=[FailedFile(**failure) for failure in run.failures or []]) for run, path in rows]
