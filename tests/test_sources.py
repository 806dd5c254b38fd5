"""Sources on schedules, the scheduler, reindex runs, the job history and the doctor."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from kb import SourceUnavailableError, sources  # the error as the API exports it
from kb.errors import (
    DatabaseUnreadableError,
    InvalidRequestError,
    ScheduleError,
    SourceNotFoundError,
    StorageError,
    WriterBusyError,
)
from kb.scheduler import RETRY_SECONDS, Scheduler
from kb.spaces import STOP_CHECK_BATCH
from kb.storage.faiss_index import FaissIndex
from kb.storage.models import MAX_PATH_BYTES, utcnow
from kb.types import IngestReport
from tests.databases import execute_sql
from tests.test_knowledge_base import DOCS, counting, vector_counts, write_docs

pytestmark = pytest.mark.databases()


def test_sources_reindex_and_jobs(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    info = kb.add_source(folder, "*/30 * * * *")
    assert info.schedule == "*/30 * * * *" and info.next_run_at is not None
    with pytest.raises(ValueError):
        kb.add_source(folder, "every tuesday")
    [report] = kb.reindex()
    assert len(report.added) == 4
    (folder / "history.txt").write_text("The river was renamed in 1950.", encoding="utf-8")
    [report] = kb.reindex(folder)
    assert len(report.updated) == 1
    with pytest.raises(SourceNotFoundError):
        kb.reindex(tmp_path)
    jobs = kb.jobs()
    assert [job.status for job in jobs] == ["ok", "ok"] and jobs[0].counts["updated"] == 1
    assert kb.sources()[0].documents == 4 and kb.sources()[0].last_status == "ok"
    assert kb.remove_source(folder) == 4
    assert kb.stats().documents == 0 and vector_counts(kb) == (0, 0) and not kb.sources()
    assert kb.doctor().problems == []  # the index caches were brought up to date with the removal


def test_the_run_history_is_bounded(kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each run stored every failure again and no run was ever forgotten: 50,000 failing files grew the database by
    4.8 MB a run. A run keeps its first failures (its counts have them all), a source its newest runs."""
    import kb.storage.writing

    monkeypatch.setattr(kb.storage.writing, "MAX_RUN_FAILURES", 2)
    monkeypatch.setattr(kb.storage.writing, "RUNS_KEPT", 3)
    folder = write_docs(tmp_path / "docs", {**DOCS, **{f"empty{n}.txt": "" for n in range(3)}})
    other = write_docs(tmp_path / "other")
    knowledge_base = kb_factory()
    knowledge_base.ingest(other)
    for _ in range(5):
        knowledge_base.ingest(folder)
    jobs = knowledge_base.jobs()
    assert [job.source for job in jobs] == [str(folder)] * 3 + [str(other)]
    assert all(len(job.failures) == 2 and job.counts["failed"] == 3 for job in jobs[:3])


def test_a_removal_whose_index_cache_cannot_be_saved_is_still_a_removal(kb_factory, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The documents are deleted in one commit; a cache that cannot be saved after it (a full disk) is the next
    search's to rebuild, not an error saying the removal failed (a retry then found no such source)."""
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.ingest(folder)

    def disk_full(*args: object) -> None:
        raise StorageError("cannot write text.faiss: No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(FaissIndex, "save", disk_full)
        assert kb.remove_source(folder) == len(DOCS)
    assert not kb.sources() and not kb.search("vacation days", mode="dense")
    stale = ["index cache"] if kb.store.vector_index == "faiss" else []  # pgvector keeps no cache
    assert [problem.kind for problem in kb.doctor(repair=True).problems] == stale and not kb.doctor().problems


def test_scheduler_runs_due_sources_and_reschedules(kb_factory, tmp_path: Path) -> None:
    due = write_docs(tmp_path / "due")
    manual = write_docs(tmp_path / "manual", {"x.txt": "manual source"})
    kb = kb_factory()
    kb.add_source(due, "every 1h")
    kb.add_source(manual)  # no schedule: never run by the scheduler
    reports = kb.scheduler().run_pending()
    assert [r.source for r in reports] == [str(due.resolve())]
    next_run_at = next(s for s in kb.sources() if s.path == str(due.resolve())).next_run_at
    assert next_run_at is not None and next_run_at > utcnow()
    assert kb.scheduler().run_pending() == []  # nothing due any more


def due_at(kb, folder: Path):
    return next(s for s in kb.sources() if s.path == str(folder.resolve())).next_run_at


def test_a_run_that_fails_before_it_starts_is_rescheduled_and_one_stopped_stays_due(
        kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ingestion import pipeline

    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.add_source(folder, "every 1h")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("OCR is on and rapidocr is not installed")

    with monkeypatch.context() as patched:
        patched.setattr(pipeline.Ingestor, "__init__", broken)
        assert kb.scheduler().run_pending() == []
    assert due_at(kb, folder) > utcnow()  # rescheduled: not retried at every poll
    kb.add_source(folder, "every 1h")  # due again
    report = kb.ingest(folder, should_stop=lambda: True)  # a scheduler stopped mid-run
    assert report.interrupted and due_at(kb, folder) <= utcnow()  # the next start finishes the folder


@pytest.mark.parametrize("error", [WriterBusyError("another process is writing"),
                                   StorageError("the database cannot be written: database or disk is full")])
def test_a_source_left_due_is_tried_again_after_a_pause(kb_factory, tmp_path: Path, error: Exception) -> None:
    """Another writer busy, or a run that could not even be recorded (a full disk, so the source stays due): tried
    again after RETRY_SECONDS, not at once (119 tries in 30 s on a full disk) nor after a day-long poll."""
    kb = kb_factory()
    kb.add_source(write_docs(tmp_path / "docs"), "every 1h")
    attempts: list[str] = []

    def failing(path: str, should_stop: object) -> None:
        attempts.append(path)
        raise error

    scheduler = Scheduler(kb.store, failing, poll_seconds=86_400)
    waits: list[float] = []

    class Stop:  # records the scheduler's sleep instead of sleeping, and stops it after one
        def is_set(self) -> bool:
            return bool(waits)

        def wait(self, seconds: float) -> None:
            waits.append(seconds)

    scheduler._stop = Stop()  # type: ignore[assignment]
    scheduler.run()
    assert len(attempts) == 1 and waits == [RETRY_SECONDS]
    for never_sleeps in (0, -5, 1e-6, float("nan"), float("inf")):  # would poll the database without end, or fail
        with pytest.raises(InvalidRequestError, match="poll"):
            Scheduler(kb.store, failing, poll_seconds=never_sleeps)


def test_a_source_removed_while_an_earlier_one_runs_is_not_brought_back(kb_factory, tmp_path: Path) -> None:
    """The scheduler, and `kb reindex` of every source, list the sources first: one removed while an earlier one
    runs (hours, on a large share) was run as a new folder, and came back unscheduled with its documents."""
    first, second = write_docs(tmp_path / "a", {"x.txt": "Notes on lighthouses."}), write_docs(tmp_path / "b")
    kb = kb_factory()
    for folder in (first, second):
        kb.add_source(folder, "every 1h")
    ran: list[str] = []

    def removing_the_second(path: str, *, should_stop: Callable[[], bool]) -> IngestReport:
        ran.append(path)
        if len(ran) == 1:
            kb.remove_source(second)
        return kb._run_scheduled(path, should_stop=should_stop)

    reports = Scheduler(kb.store, removing_the_second).run_pending()
    assert [report.source for report in reports] == [str(first)] and len(ran) == 2
    assert [source.path for source in kb.sources()] == [str(first)] and kb.stats().documents == 1
    kb.add_source(second, None)
    original = kb.ingest

    def removing_while_reindexing(folder: str, *args: object, **kwargs: object) -> IngestReport:
        if folder == str(first):
            kb.remove_source(second)
        return original(folder, *args, **kwargs)

    kb.ingest = removing_while_reindexing  # type: ignore[method-assign]
    assert [report.source for report in kb.reindex()] == [str(first)]
    assert [source.path for source in kb.sources()] == [str(first)]


@pytest.mark.databases("sqlite")
def test_a_scheduler_whose_database_is_deleted_ends_in_one_line(kb_factory, tmp_path: Path) -> None:
    """`rm -rf` of the knowledge base under a running scheduler: it used to run on into the deleted file, every run
    reported ok, and to recreate the folder with only its lock and indexes."""
    kb = kb_factory()
    kb.add_source(write_docs(tmp_path / "docs"), "every 1h")
    scheduler = kb.scheduler()
    assert len(scheduler.run_pending()) == 1
    for leftover in (tmp_path / "kb").glob("kb.sqlite*"):
        leftover.unlink()
    with pytest.raises(DatabaseUnreadableError, match="was deleted or replaced while this process ran"):
        scheduler.run_pending()


def test_a_next_run_set_by_a_clock_that_ran_ahead_is_brought_back(kb_factory, tmp_path: Path) -> None:
    """The clock ran a day fast at the last run, then was set right: the source runs on its schedule from now, not
    a day later."""
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.add_source(folder, "every 1h")
    kb.reindex(folder)
    ahead = (utcnow() + timedelta(days=1)).isoformat(sep=" ")
    execute_sql(kb.store.url, f"UPDATE sources SET next_run_at = '{ahead}'")
    assert kb.scheduler().run_pending() == []
    assert utcnow() < due_at(kb, folder) <= utcnow() + timedelta(hours=1) + sources.CLOCK_LEEWAY


def test_a_source_removed_while_its_run_waits_is_not_brought_back(kb_factory, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler found the source, then `kb source remove` ran before the run took the writer lock."""
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.add_source(folder, "every 1h")
    found = sources.find_source(kb.store, folder)
    kb.remove_source(folder)
    monkeypatch.setattr(sources, "find_source", lambda store, path: found)
    with pytest.raises(SourceNotFoundError, match="removed before its run began"):
        kb.reindex(folder)
    assert not kb.sources() and not kb.stats().documents

def test_a_stopped_run_commits_what_it_has_and_removes_nothing(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.ingest(folder)
    (folder / "history.txt").unlink()
    (folder / "new.txt").write_text("A new file about lighthouses.", encoding="utf-8")
    seen: list[str] = []
    report = kb.ingest(folder, progress=lambda done, total, path: seen.append(path),
                       should_stop=lambda: "new.txt" in seen)  # a stop once new.txt is read, before the next file
    assert report.interrupted and not report.removed and [Path(p).name for p in report.added] == ["new.txt"]
    assert kb.search("margrave", mode="keyword")  # the deletion waits for a complete run
    assert kb.search("lighthouses", mode="keyword")  # what was read before the stop is committed
    assert kb.jobs()[0].status == "interrupted"
    report = kb.ingest(folder)
    assert [Path(p).name for p in report.removed] == ["history.txt"] and not report.added


def test_a_stop_while_a_batch_is_embedded_takes_effect_within_one_slice(kb_factory, tmp_path: Path) -> None:
    """A stop request during embedding is seen between slices of STOP_CHECK_BATCH items, not after the batch (a
    file of 1,400 chunks held a SIGTERM for 47 s); what was read but not committed is read again next time."""
    long = " ".join(f"Sentence {n} is about the harbour lanterns of the old town." for n in range(2_000))
    folder = write_docs(tmp_path / "docs", {"long.txt": long, "short.txt": "A short note about lighthouses."})
    kb = kb_factory()
    encoder = counting(kb)
    report = kb.ingest(folder, should_stop=lambda: encoder.texts > 0)
    assert report.interrupted and encoder.texts == STOP_CHECK_BATCH and kb.stats().documents == 0
    assert kb.jobs()[0].status == "interrupted"
    assert len(kb.ingest(folder).added) == 2


def test_a_missing_source_folder_fails_the_run_and_keeps_its_documents(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "share")
    kb = kb_factory()
    kb.add_source(folder, "every 5m")
    kb.scheduler().run_pending()
    folder.rename(tmp_path / "unmounted")
    with pytest.raises(SourceUnavailableError):
        kb.reindex(folder)
    assert kb.jobs()[0].status == "failed" and "missing" in kb.jobs()[0].error
    assert kb.stats().documents == 4
    report = kb.doctor()
    assert [p.kind for p in report.problems] == ["source folder missing"]


def test_doctor_finds_and_repairs(kb_factory, database, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.ingest(folder)
    kb.close()
    # Damage of the kind bugs and crashes leave, foreign keys unchecked (SQLite's default outside the program).
    unchecked = ["SET session_replication_role = replica"] if database.kind != "sqlite" else []
    execute_sql(kb.store.url, *unchecked,
                "INSERT INTO postings (term, chunk_id, tf, length) VALUES ('ghost', 99999, 1, 1)",
                "INSERT INTO runs (started_at, status, counts, failures) "
                "VALUES ('2026-01-01 00:00:00', 'running', '{}', '[]')",
                "DELETE FROM vectors WHERE chunk_id = (SELECT min(chunk_id) FROM vectors)")
    (folder / "history.txt").unlink()
    (tmp_path / "kb" / "indexes").mkdir(exist_ok=True)  # pgvector keeps no cache, but a leftover is still found
    (tmp_path / "kb" / "indexes" / f"text.faiss.{ended_process()}.k1ll3d.tmp").write_bytes(b"partial")
    kb = kb_factory()
    found = kb.doctor()
    kinds = {p.kind for p in found.problems}
    caches = {"index cache"} if database.kind != "pgvector" else set()  # pgvector: nothing cached to go stale
    assert kinds == {"stuck runs", "orphan postings", "missing vectors", "files gone", "temporary files"} | caches
    assert not found.healthy
    repaired = kb.doctor(repair=True)
    assert repaired.healthy and {p.kind for p in repaired.problems} == kinds
    assert kb.doctor().problems == []
    db_count, index_count = vector_counts(kb)
    assert db_count == index_count == kb.stats().chunks == 3
    assert not kb.search("margrave", mode="keyword")


def test_doctor_embeds_malformed_vectors_again(kb_factory, database, tmp_path: Path) -> None:
    """Vectors damaged from outside (float32 bytes of the wrong length with the FAISS cache gone; with pgvector
    also a NULL embedding) are reported as such, not as a cache problem, and the repair embeds them again; a dense
    search meanwhile finds the other chunks instead of failing."""
    kb = kb_factory()
    kb.ingest(write_docs(tmp_path / "docs"))
    kb.close()
    damage = ["UPDATE vectors SET vector = substr(vector, 1, 8) WHERE chunk_id = (SELECT min(chunk_id) FROM vectors)"]
    if database.kind == "pgvector":
        damage.append("UPDATE vectors SET embedding = NULL WHERE chunk_id = (SELECT max(chunk_id) FROM vectors)")
    execute_sql(kb.store.url, *damage)
    if database.kind == "sqlite":  # a NaN vector of the right length was never found, and no check saw it
        with sqlite3.connect(tmp_path / "kb" / "kb.sqlite") as connection:
            (vector,) = connection.execute("SELECT vector FROM vectors ORDER BY chunk_id DESC").fetchone()
            connection.execute("UPDATE vectors SET vector = ? WHERE chunk_id = (SELECT max(chunk_id) FROM vectors)",
                               (np.full(len(vector) // 4, np.nan, dtype=np.float32).tobytes(),))
        damage.append("NaN")
    shutil.rmtree(tmp_path / "kb" / "indexes", ignore_errors=True)
    kb = kb_factory()
    if database.kind == "pgvector":
        assert len(kb.search("vacation days", k=4, mode="dense")) == 3
    found = kb.doctor()
    caches = {"index cache"} if database.kind != "pgvector" else set()
    assert {p.kind for p in found.problems} == {"malformed vectors"} | caches
    [malformed] = [p for p in found.problems if p.kind == "malformed vectors"]
    assert malformed.detail.startswith(f"{len(damage)} vector(s)")
    repaired = kb.doctor(repair=True)
    # the deleted vectors are then missing ones, embedded again by that step
    assert repaired.healthy and {p.kind for p in repaired.problems} == {"malformed vectors", "missing vectors"} | caches
    assert kb.doctor().problems == []
    assert vector_counts(kb) == (4, 4)
    assert len(kb.search("vacation days", k=4, mode="dense")) == 4


def test_a_folder_path_or_schedule_too_long_to_store_is_refused_before_anything_is_written(
        kb_factory, tmp_path: Path) -> None:
    """A folder path longer than PostgreSQL's unique index can hold, or a schedule longer than its column, is a
    clear error naming the limit on every database (PostgreSQL said "the database cannot be written", or raised
    its own DataError), and nothing is recorded."""
    deep = tmp_path / "docs"
    while len(str(deep).encode()) <= MAX_PATH_BYTES:
        deep /= "d" * 200
    deep.mkdir(parents=True)
    (deep / "deep.txt").write_text("A deep file about copper.", encoding="utf-8")
    kb = kb_factory()
    with pytest.raises(InvalidRequestError, match=f"at most {MAX_PATH_BYTES:,} bytes"):
        kb.ingest(deep)
    with pytest.raises(InvalidRequestError, match=f"at most {MAX_PATH_BYTES:,} bytes"):
        kb.add_source(deep, "every 1h")
    every_minute = " ".join(",".join(map(str, values)) for values in (range(60), range(24), range(1, 32))) + " * *"
    with pytest.raises(ScheduleError, match="at most 256 characters"):
        kb.add_source(tmp_path / "docs", every_minute)
    assert kb.sources() == [] and kb.jobs() == []


def ended_process() -> int:
    """The id of a process that has exited (its owner killed, as far as a leftover file can tell)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_next_ingest_deletes_a_killed_saves_leftovers_but_not_a_live_saves(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.ingest(folder)
    indexes = kb.directory / "indexes"
    indexes.mkdir(exist_ok=True)
    killed = indexes / f"text.faiss.{ended_process()}.a1b2c3d4.tmp"  # as write_atomic names them
    old = indexes / "text.faiss.x9y8z7w6.tmp"  # an older version's name, no process id: judged by its age
    live = indexes / f"text.faiss.{os.getpid()}.e5f6g7h8.tmp"  # a save this process is making now
    planted = indexes / f"text.faiss.{10**20}.z0z0z0z0.tmp"  # no process has such a number (os.kill overflowed)
    superscript = indexes / "text.faiss.²³.z0z0z0z0.tmp"  # digits to str.isdigit, none to int()
    for path in (killed, old, live, planted, superscript):
        path.write_bytes(b"half a cache")
    backup = kb.directory / "backup.tmp"  # a folder so named is no save's (deleting it failed every repair)
    backup.mkdir()
    for path in (old, backup):
        os.utime(path, (time.time() - 2 * 3600, time.time() - 2 * 3600))
    assert {p.kind for p in kb.doctor().problems} == {"temporary files"}
    kb.ingest(folder)
    assert not killed.exists() and not old.exists() and not planted.exists() and live.exists() and backup.is_dir()
    assert superscript.exists()  # no process named: judged by its age, an hour
    assert kb.doctor(repair=True).problems == []


def test_doctor_repairs_an_encoder_mismatch_by_reembedding(kb_factory, tmp_path: Path) -> None:
    kb = kb_factory()
    kb.ingest(write_docs(tmp_path / "docs"))
    kb.close()
    execute_sql(kb.store.url, "UPDATE spaces SET fingerprint = 'another-model'")
    kb = kb_factory()
    assert [p.kind for p in kb.doctor().problems] == ["encoder mismatch"]
    assert kb.doctor(repair=True).healthy
    assert kb.search("duchy margrave", k=1, mode="dense")


def test_scheduler_command_stops_cleanly_on_sigterm(tmp_path: Path, tiny_text_model: Path, database) -> None:
    folder = write_docs(tmp_path / "docs")
    env = {**os.environ, "KB_TEXT_MODEL": str(tiny_text_model), "KB_DEVICE": "cpu", "KB_HOME": str(tmp_path / "kb"),
           **database.environment()}
    kb = [sys.executable, "-m", "kb.cli"]
    subprocess.run([*kb, "source", "add", str(folder), "--every", "1h"], env=env, check=True, capture_output=True)
    process = subprocess.Popen([*kb, "scheduler", "--poll", "1"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        output = ""
        while "4 added" not in output and time.monotonic() < deadline:
            output += process.stdout.readline()
        assert "4 added" in output
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0 and "scheduler stopped" in rest


def test_a_source_whose_folder_became_a_symlink_fails_as_stored_and_is_rescheduled(kb_factory, tmp_path: Path) -> None:
    """Its run is the stored source's (failed, nothing read through the link, rescheduled: not run at every poll);
    the path `kb source list` shows still reindexes and removes it."""
    folder = write_docs(tmp_path / "share")
    stored = str(folder.resolve())
    kb = kb_factory()
    kb.add_source(folder, "every 1h")
    kb.scheduler().run_pending()
    folder.rename(tmp_path / "moved")
    folder.symlink_to(tmp_path / "moved", target_is_directory=True)
    with kb.store.write() as unit:
        unit.source(stored).next_run_at = utcnow()  # due again
    assert kb.scheduler().run_pending() == []
    [info] = kb.sources()  # no second source under the link's target
    assert info.path == stored and info.last_status == "failed" and info.next_run_at > utcnow()
    assert "symlink" in kb.jobs()[0].error and kb.stats().documents == 4
    with pytest.raises(SourceNotFoundError):  # scheduling a path no source has is an error, not a silent no-op
        sources.schedule_next(kb.store, str(tmp_path / "moved"), utcnow())
    with pytest.raises(SourceUnavailableError, match="never followed through a symlink"):
        kb.reindex(stored)
    assert kb.remove_source(stored) == 4 and not kb.sources()


def test_a_source_or_a_folder_in_it_swapped_for_a_symlink_during_the_scan_is_never_walked(
        kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race a share's users can win: a folder checked, then swapped for a link before it is listed. Nothing
    outside is walked or named, and nothing indexed is removed (the scan followed the link: 5 of 5 removed)."""
    import ingestion.scan
    from kb.types import SilentProgress

    folder = write_docs(tmp_path / "share", {**DOCS, "sub/inner.txt": "The inner note names the lantern room."})
    outside = write_docs(tmp_path / "outside", {"secret.txt": "Not for the knowledge base."})
    kb = kb_factory()
    indexed = len(kb.ingest(folder).added)
    opened = ingestion.scan._open

    def sub_swapped(target: ingestion.scan._Folder, root_descriptor: int) -> int:
        if target.path == folder / "sub" and not target.path.is_symlink():  # its parent listed, itself not yet
            target.path.rename(tmp_path / "sub.old")
            target.path.symlink_to(outside, target_is_directory=True)
        return opened(target, root_descriptor)

    monkeypatch.setattr(ingestion.scan, "_open", sub_swapped)
    report = kb.ingest(folder)
    assert not report.removed and kb.stats().documents == indexed
    assert [f.path for f in report.failed] == [str(folder / "sub")] and not report.skipped
    monkeypatch.undo()

    class RootSwapped(SilentProgress):
        def phase(self, name: str, detail: str = "") -> None:
            if name == "scanning":  # checked by the run, not yet opened by the scan
                folder.rename(tmp_path / "share.old")
                folder.symlink_to(outside, target_is_directory=True)

    with pytest.raises(SourceUnavailableError, match="without following a symlink"):
        kb.ingest(folder, progress=RootSwapped())
    assert kb.stats().documents == indexed and "secret" not in kb.jobs()[0].error


def test_a_run_of_the_outer_source_keeps_a_nested_source_s_documents_while_its_folder_is_lost(
        kb_factory, tmp_path: Path) -> None:
    """A nested source whose folder is missing or now a symlink keeps its documents in its own runs: a run of the
    folder around it keeps them too (it removed them, 6 of 18 being under max_removed_share), until removal is
    allowed."""
    docs = {f"note{n}.txt": f"Note {n} is about the harbour." for n in range(12)}
    docs |= {f"{sub}/{name}{n}.txt": f"{sub} file {n} about the lighthouse." for sub, name in (("sub", "b"),
                                                                                               ("sub2", "c"))
             for n in range(3)}
    folder = write_docs(tmp_path / "docs", docs)
    kb = kb_factory()
    for nested in (folder / "sub", folder / "sub2"):
        kb.add_source(nested, "every 1h")
        kb.reindex(str(nested.resolve()))
    kb.ingest(folder)
    (folder / "sub").rename(tmp_path / "sub-moved")
    (folder / "sub").symlink_to(tmp_path / "sub-moved", target_is_directory=True)
    (folder / "sub2").rename(tmp_path / "sub2-away")
    report = kb.ingest(folder)
    assert not report.removed and len(report.removal_withheld) == 3 and kb.stats().documents == 18
    assert any("nested sources sub2," in notice for notice in report.notices)  # sub's lie behind a link it skips
    assert len(kb.ingest(folder, allow_removal=True).removed) == 3 and kb.stats().documents == 15  # sub's: its own


def test_removing_one_of_two_nested_sources_keeps_the_documents_the_other_holds(kb_factory, tmp_path: Path) -> None:
    """A document belongs to the run that wrote it last; removing its source hands it to another source whose folder
    holds it (they were deleted, unsearchable until that source's next run embedded them again)."""
    folder = write_docs(tmp_path / "x", {**DOCS, "sub/north.txt": "The north gate opens at dawn.",
                                          "sub/south.txt": "The south gate closes at dusk."})
    kb = kb_factory()
    kb.ingest(folder)  # the outer source writes all six
    kb.add_source(folder / "sub", "every 1h")
    assert len(kb.reindex(str(folder / "sub"))[0].unchanged) == 2
    assert kb.remove_source(folder) == 4 and kb.stats().documents == 2
    assert {Path(hit.path).name for hit in kb.search("gate", mode="keyword")} == {"north.txt", "south.txt"}
    [hit] = kb.search("gate", mode="keyword", filters={"path_glob": "north.txt"})  # relative to its new source
    kb.ingest(folder)  # the outer source again: its four back, the inner's two left to it
    assert kb.remove_source(folder / "sub") == 0 and kb.stats().documents == 6
    assert kb.remove_source(folder) == 6 and kb.stats().documents == 0


def test_the_scheduler_outlives_a_poll_the_database_cannot_answer(kb_factory, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL server restarting under `kb scheduler` ended it with a traceback at its next poll; the poll is
    logged and tried again, and the due source still runs."""
    import kb.scheduler

    folder = write_docs(tmp_path / "docs")
    knowledge_base = kb_factory()
    knowledge_base.add_source(folder, "every 1h")
    polls, due = [], kb.scheduler.due_sources

    def server_away_once(*args: object) -> list[str]:
        polls.append(len(polls))
        if len(polls) == 1:
            raise ConnectionError("terminating connection due to administrator command")
        return due(*args)

    monkeypatch.setattr(kb.scheduler, "due_sources", server_away_once)
    scheduler = knowledge_base.scheduler(poll_seconds=0.05, on_report=lambda report: scheduler.stop())
    scheduler.run()  # returns once the source's run is reported
    assert len(polls) >= 2 and knowledge_base.stats().documents == 4


def test_ctrl_c_is_an_interrupted_run_that_leaves_the_source_due(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.add_source(folder, "every 1h")

    def ctrl_c(done: int, total: int, path: str) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        kb.ingest(folder, progress=ctrl_c)
    assert kb.jobs()[0].status == "interrupted" and "Ctrl-C" in kb.jobs()[0].error
    assert due_at(kb, folder) <= utcnow()  # the next run finishes the folder
    assert len(kb.ingest(folder).added) == 4
