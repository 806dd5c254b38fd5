"""The scheduler: runs due reindex jobs until stopped, one writer at a time across processes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

from kb.errors import DatabaseUnreadableError, InvalidRequestError, SourceNotFoundError, WriterBusyError
from kb.sources import catch_up_with_the_clock, due_sources, next_due
from kb.storage.models import utcnow
from kb.storage.store import Store
from kb.types import IngestReport

log = logging.getLogger(__name__)
MAX_POLL_SECONDS = 86_400.0  # a day: a longer sleep only delays seeing a source another process scheduled
MIN_POLL_SECONDS = 0.05  # a shorter one polls the database without rest (1e-6 took 90% of a core)
RETRY_SECONDS = 10.0  # a source left due (another writer busy, a run that could not be recorded) is tried again
T = TypeVar("T")


class Reindex(Protocol):
    """How the scheduler reindexes one source folder (``KnowledgeBase.ingest``); ``should_stop`` ends it early."""

    def __call__(self, folder: str, *, should_stop: Callable[[], bool]) -> IngestReport: ...


class Scheduler:
    """Polls for due sources and reindexes them; ``stop()`` (e.g. from a SIGTERM handler) ends it cleanly.

    A stop request also reaches a reindex in progress, which commits what it has, removes nothing, and is
    recorded as interrupted. A source whose run fails is rescheduled as usual; the failure is in ``kb jobs``.
    """

    def __init__(self, store: Store, reindex: Reindex, poll_seconds: float = 30.0,
                 on_report: Callable[[IngestReport], None] | None = None) -> None:
        # Not 0, tiny or NaN (a scheduler that never sleeps would poll the database without end), nor infinite (no
        # sleep takes it).
        if not MIN_POLL_SECONDS <= poll_seconds <= MAX_POLL_SECONDS:
            raise InvalidRequestError(f"the poll interval must be a number of seconds from {MIN_POLL_SECONDS:g} to "
                                      f"{MAX_POLL_SECONDS:,.0f} (a day), not {poll_seconds}")
        self.store = store
        self.reindex = reindex
        self.poll_seconds = poll_seconds
        self.on_report = on_report
        self._stop = threading.Event()
        self._deferred = False  # a due source may be left for the next poll (another writer busy, a failed run)

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run_pending(self) -> list[IngestReport]:
        """Reindex every source that is due now."""
        reports = []
        self._deferred = False
        self.store.check_database_file()  # deleted under a scheduler that runs for days: it ends, in one line
        self._poll(lambda: catch_up_with_the_clock(self.store, utcnow()), None)
        for path in self._poll(lambda: due_sources(self.store, utcnow()), []):
            if self.stopped:
                break
            try:
                report = self.reindex(path, should_stop=self._stop.is_set)
            except WriterBusyError:
                log.info("another writer is busy; %s is tried again in %g s", path, self._retry_seconds)
                self._deferred = True
                continue
            except SourceNotFoundError:
                log.info("%s was removed since it was found due; skipped", path)
                continue
            except Exception as error:  # the run is recorded as failed; the scheduler keeps going
                log.error("reindex of %s failed: %s", path, error)
                # Rescheduled as usual, unless even that failed (a full disk): then not again at once.
                self._deferred = self._deferred or path in self._poll(lambda: due_sources(self.store, utcnow()), [])
            else:
                reports.append(report)
                if self.on_report:
                    self.on_report(report)
        return reports

    @property
    def _retry_seconds(self) -> float:
        """How long a source left due waits: ``RETRY_SECONDS``, or the poll interval when that is shorter."""
        return min(self.poll_seconds, RETRY_SECONDS)

    def run(self) -> None:
        """Run due jobs until ``stop()``; sleeps until the next source is due (at most ``poll_seconds``). A poll the
        database cannot answer (a PostgreSQL server restarting) is logged and asked again at the next: the scheduler
        outlives it, as it outlives a failed run."""
        while not self.stopped:
            self.run_pending()
            self._stop.wait(self._wait())

    def _wait(self) -> float:
        """Seconds to sleep: until the next source is due, at most ``poll_seconds``; a source left due is tried
        again after ``RETRY_SECONDS`` (not at once, which spun on a full disk; not after a day-long poll)."""
        if self._deferred:
            return self._retry_seconds
        upcoming = self._poll(lambda: next_due(self.store), None)
        if upcoming is None:
            return self.poll_seconds
        return min(self.poll_seconds, max(0.2, (upcoming - utcnow()).total_seconds()))

    def _poll(self, ask: Callable[[], T], otherwise: T) -> T:
        """What the database answers ``ask``, or ``otherwise`` when it cannot answer now (a PostgreSQL server
        restarting): logged, and asked again at the next poll. A damaged database is no passing trouble: it ends
        the scheduler with its one line."""
        try:
            return ask()
        except DatabaseUnreadableError:
            raise
        except Exception as error:  # noqa: BLE001 - the driver's connection errors are not the knowledge base's
            log.error("the knowledge base could not be polled (asked again in %g s): %s", self.poll_seconds, error)
            return otherwise
