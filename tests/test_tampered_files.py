"""Files the knowledge base reads besides its sources: an image named to search by, and what others can plant in
the knowledge-base folder (the index cache, ``kb.json``, ``kb.sqlite``). A FIFO, a device, a symlink, a huge or
damaged file there ends in one clear line or a rebuild, never a hang, an exhausted memory or a traceback."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from kb.cli import main
from kb.errors import (
    ConfigurationError,
    DatabaseUnreadableError,
    ImageSearchUnavailable,
    InvalidRequestError,
    KbError,
)
from kb.sources import add_source
from kb.storage import salvage
from tests.test_hostile_operations import errors
from tests.test_knowledge_base import write_docs
from tests.test_multimodal import write_folder


@contextmanager
def bounded(seconds: int, what: str) -> Iterator[None]:
    """Fail the test, rather than hang it, when the body blocks for more than ``seconds``."""
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail(f"{what} hung"))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_query_image_that_is_not_a_small_regular_file_is_refused_at_once(
        image_kb, kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_folder(tmp_path / "docs")
    kb = image_kb()
    kb.ingest(folder)
    os.mkfifo(tmp_path / "pipe.png")  # read_bytes() waited for a writer forever
    with open(tmp_path / "huge.png", "wb") as huge:  # sparse: over max_file_mb, the limit of an ingested image file
        huge.truncate(int(kb.settings.ingestion.max_file_mb * 2**20) + 1)
    refused = {tmp_path / "pipe.png": "not a readable regular file", Path("/dev/zero"): "not a readable regular file",
               tmp_path: "not a readable regular file",
               tmp_path / "huge.png": f"over the {kb.settings.ingestion.max_file_mb:g} MB limit"}
    with bounded(60, "a search by image"):
        for path, said in refused.items():
            with pytest.raises(InvalidRequestError, match=said) as raised:
                kb.search(image=path)
            assert str(raised.value).startswith(f"{path}: cannot search by this image")
        assert kb.search(image=folder / "photo-1.png", k=1)  # a real picture still searches
        kb.close()
        monkeypatch.setenv("KB_DEVICE", "cpu")
        capsys.readouterr()
        assert main(["--kb", str(tmp_path / "kb"), "search", "--image", "/dev/zero"]) == 2
        assert errors(capsys.readouterr().err) == [
            "kb: error: /dev/zero: cannot search by this image: not a readable regular file (missing, unreadable, "
            "a folder, a FIFO or a device)"]
        # Without an image space nothing is read: the FIFO is not even opened.
        with pytest.raises(ImageSearchUnavailable, match="turned off"):
            kb_factory("off", clip_model="none").search(image=tmp_path / "pipe.png")


def test_a_query_image_of_any_other_kind_is_refused_in_one_line_and_bytes_are_read_as_a_file(
        image_kb, tmp_path: Path) -> None:
    """A web front end's likely inputs: an upload's bytes search as its file does; a number, a stream, a NUL in a
    path, a PIL image of no pixels or of more than an ingested image may have (opened lazily: not decoded) were
    TypeErrors, a ZeroDivisionError, or a decoding of 81 megapixels."""
    from PIL import Image

    folder = write_folder(tmp_path / "docs")
    kb = image_kb()
    kb.ingest(folder)
    photo = folder / "photo-1.png"
    assert kb.search(image=photo.read_bytes(), k=1)[0].path == kb.search(image=photo, k=1)[0].path
    with pytest.raises(KbError):
        kb.search(image=b"not an image at all")
    huge = tmp_path / "huge.png"
    side = int(kb.settings.ingestion.max_image_pixels ** 0.5) + 1
    Image.new("L", (side, side)).save(huge)
    refused = [(5, "takes a path, an image file's bytes or a PIL image, not int"),
               (io.BytesIO(photo.read_bytes()), "not BytesIO"), ("a\0b.png", "holds a NUL character"),
               (Image.new("RGB", (0, 0)), "0x0 image"),
               (Image.open(huge), f"{side}x{side} image: .*\\(max_image_pixels\\)")]
    for image, said in refused:
        with pytest.raises(InvalidRequestError, match=said):
            kb.search(image=image)
    picture = Image.new("RGB", (3000, 2000), (200, 30, 30))
    assert kb.search(image=picture, k=1) and picture.size == (3000, 2000)  # the caller's, not shrunk in place
    kb.close()


def _plant(path: Path, what: str) -> None:
    """Put ``what`` in the place of ``path``: a symlink to /dev/zero, a FIFO, a sparse file of a terabyte (read
    whole, it could not be held), or JSON nested 200,000 deep."""
    path.unlink(missing_ok=True)
    if what == "deep":
        path.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    elif what == "/dev/zero":
        path.symlink_to("/dev/zero")
    elif what == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as sparse:
            sparse.truncate(1 << 40)


@pytest.mark.parametrize("planted", ["text.faiss=/dev/zero", "text.faiss=fifo", "text.faiss=sparse",
                                     "text.json=/dev/zero", "text.json=fifo", "text.json=sparse", "text.json=deep"])
def test_a_file_planted_for_the_index_cache_is_damage_the_search_rebuilds(planted: str, kb_factory,
                                                                          tmp_path: Path) -> None:
    kb_factory().ingest(write_docs(tmp_path / "docs"))
    kb_factory().close()
    name, what = planted.split("=")
    cache = tmp_path / "kb" / "indexes" / name
    _plant(cache, what)
    with bounded(60, "a search over a planted cache file"):
        kb = kb_factory()
        assert kb.search("margrave", k=1, mode="dense")
    assert cache.is_file() and not cache.is_symlink() and cache.stat().st_size < 1 << 20  # rebuilt and saved
    assert not kb.doctor().problems


def test_an_index_folder_replaced_by_a_symlink_is_neither_written_nor_cleaned_through(kb_factory,
                                                                                        tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb_factory().ingest(folder)
    kb_factory().close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    leftover = elsewhere / "notes.123456789.x.tmp"  # looks like a killed save's: a run deleted it
    leftover.write_text("someone else's file", encoding="utf-8")
    os.utime(leftover, (0, 0))
    shutil.rmtree(tmp_path / "kb" / "indexes")
    (tmp_path / "kb" / "indexes").symlink_to(elsewhere)
    kb = kb_factory()
    assert kb.search("margrave", k=1, mode="dense")
    (folder / "new.txt").write_text("A new note about lanterns.", encoding="utf-8")
    report = kb.ingest(folder)
    assert any("is a symlink; the index cache is not written through it" in notice for notice in report.notices)
    assert [entry.name for entry in elsewhere.iterdir()] == [leftover.name]


@pytest.mark.parametrize(("what", "said"), [
    ("/dev/zero", "cannot be read as settings: not a regular file (a symlink, a FIFO or a device"),
    ("fifo", "cannot be read as settings: not a regular file (a symlink, a FIFO or a device"),
    ("sparse", "cannot be read as settings: file is 1048576.0 MB, over the 4 MB limit"),
    ("deep", "is not readable JSON (maximum recursion depth exceeded")])
def test_a_settings_file_planted_in_the_knowledge_base_is_one_line(what: str, said: str, kb_factory, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    kb_factory().close()
    _plant(tmp_path / "kb" / "kb.json", what)
    with bounded(60, "opening a knowledge base with a planted kb.json"):
        with pytest.raises(ConfigurationError, match=re.escape(said)):
            kb_factory()
        capsys.readouterr()
        assert main(["--kb", str(tmp_path / "kb"), "stats"]) == 2
    [error] = errors(capsys.readouterr().err)
    assert error.startswith(f"kb: error: {tmp_path / 'kb' / 'kb.json'} {said}")


def _damage(database: Path, how: str) -> None:
    """Damage the SQLite file ``database`` as a crash, a bad disk or a hand could (its write-ahead log gone too,
    which would otherwise still hold the pages)."""
    with closing(sqlite3.connect(database)) as connection:  # where the chunks table starts (page numbers from 1)
        (chunks_page,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'chunks'").fetchone()
    for log in database.parent.glob(f"{database.name}-*"):
        log.unlink()
    data = bytearray(database.read_bytes())
    if how == "truncated":
        database.write_bytes(data[:8192])
    elif how == "header":
        database.write_bytes(data[:100])
    elif how == "flipped":  # the schema's page
        data[100:4096] = bytes(byte ^ 0xFF for byte in data[100:4096])
        database.write_bytes(data)
    elif how == "stored text":  # no page damaged: a word's bytes no longer UTF-8, met when a search reads it
        database.write_bytes(bytes(data).replace(b"margrave", b"\xff" * 8))
    elif how == "chunks page":  # the database opens well; the first query of the chunks meets the damage
        start, end = (chunks_page - 1) * 4096, chunks_page * 4096
        data[start:end] = bytes(byte ^ 0xFF for byte in data[start:end])
        database.write_bytes(data)
    elif how == "postings page":  # met by the keyword search, which reads postings through the driver's own cursor
        _zero_page_of(database, "postings")
    elif how == "emptied":  # opened, it was a new empty database, called healthy, answering nothing
        database.write_bytes(b"")
    elif how == "deleted":
        database.unlink()
    else:
        _plant(database, how)


@pytest.mark.parametrize("how", ["truncated", "header", "flipped", "chunks page", "postings page", "stored text",
                                 "fifo", "/dev/zero", "emptied", "deleted"])
def test_a_damaged_database_is_one_line_naming_it(how: str, kb_factory, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    knowledge_base = kb_factory()
    knowledge_base.ingest(write_docs(tmp_path / "docs"))
    knowledge_base.close()  # no connection left holding the write-ahead log's shared memory
    database = tmp_path / "kb" / "kb.sqlite"
    _damage(database, how)
    monkeypatch.setenv("KB_DEVICE", "cpu")
    capsys.readouterr()
    with bounded(60, "opening a damaged database"):
        met_later = how in ("chunks page", "postings page", "stored text")  # only by what reads it: a search
        for command in ([["search", "margrave"]] if met_later else (["stats"], ["search", "margrave"], ["doctor"])):
            assert main(["--kb", str(tmp_path / "kb"), *command]) == 2, command
            [error] = errors(capsys.readouterr().err)
            shown = "/dev/zero" if how == "/dev/zero" else str(database)  # the file the link leads to
            assert error.startswith(f"kb: error: the database {shown} is damaged or not a SQLite database (")
            assert error.endswith("restore it from a backup, or move the knowledge base aside and ingest its sources "
                                  "again")


def test_a_knowledge_base_without_its_sqlite_file_is_refused_only_where_it_recorded_one(
        kb_factory, tmp_path: Path) -> None:
    """A new knowledge base in a folder that already holds an ``indexes`` folder and a ``write.lock`` is made as
    usual, and one whose settings do not record the default database (a server's URL holding a password is never
    recorded) is not called damaged for lacking a SQLite file."""
    folder = tmp_path / "kb"
    (folder / "indexes").mkdir(parents=True)
    (folder / "write.lock").touch()
    knowledge_base = kb_factory()
    knowledge_base.ingest(write_docs(tmp_path / "docs"))
    knowledge_base.close()
    for leftover in folder.glob("kb.sqlite*"):
        leftover.unlink()
    with pytest.raises(DatabaseUnreadableError, match="missing or empty, yet the knowledge base was written to"):
        kb_factory()
    recorded = json.loads((folder / "kb.json").read_text())
    del recorded["database_url"]  # as for a server's URL with a password: given through KB_DATABASE_URL each time
    (folder / "kb.json").write_text(json.dumps(recorded))
    assert kb_factory().stats().documents == 0  # (the URL forgotten: an empty SQLite file, as before)


@pytest.mark.parametrize(("change", "said"), [
    ("DROP TABLE postings", "its table postings is gone"),
    ("DROP TABLE images", "its table images is gone"),  # (a check called this one healthy; searches failed)
    ("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'", "its schema version is 'abc', not a number"),
    ("UPDATE meta SET value = '⁹' WHERE key = 'schema_version'", "its schema version is '⁹', not a number"),
    ("UPDATE spaces SET generation = 'x'",  # (a TypeError deep in every search)
     "changed from outside this program: spaces.generation: 1 value(s) not of its type (id=1: 'x')"),
    ("UPDATE spaces SET generation = ''", "changed from outside this program: spaces.generation: 1 value(s) not of "
     "its type (id=1: '')"),
    ("UPDATE spaces SET normalized = 'yes'", "changed from outside this program: spaces.normalized: 1 value(s) not "
     "of its type (id=1: 'yes')"),
    ("UPDATE sources SET path = path || char(0)", "changed from outside this program: sources.path: 1 value(s) not "
     "of its type (id=1: ...'"),
    ("ALTER TABLE spaces DROP COLUMN logged_from", "changed from outside this program: spaces.logged_from: the "
     "column is gone")])
def test_a_schema_altered_from_outside_is_one_line_naming_it(change: str, said: str, kb_factory, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A table dropped or the schema version overwritten by hand: every command was a traceback, or `kb doctor`
    called the knowledge base healthy."""
    knowledge_base = kb_factory()
    knowledge_base.ingest(write_docs(tmp_path / "docs"))
    knowledge_base.close()
    database = tmp_path / "kb" / "kb.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute(change)
    capsys.readouterr()
    for command in (["doctor"], ["doctor", "--repair"], ["search", "margrave"]):
        assert main(["--kb", str(tmp_path / "kb"), *command]) == 2, command
        (line,) = errors(capsys.readouterr().err)
        assert line.startswith(f"kb: error: the database {database} is damaged ({said}") and line.endswith(
            "); restore it from a backup, or move the knowledge base aside and ingest its sources again")


def _zero_page_of(database: Path, name: str) -> int:
    """Overwrite with zeros the root page of the table or index ``name`` (its write-ahead log played in first)."""
    with closing(sqlite3.connect(database)) as connection:
        (page,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)).fetchone()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(database.read_bytes())
    data[(page - 1) * 4096: page * 4096] = bytes(4096)
    database.write_bytes(data)
    return page


def test_doctor_rebuilds_a_database_whose_damage_lies_in_an_index_from_its_tables(
        kb_factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An index's page overwritten: every check passed ("no problems found") while searches by file type failed.
    SQLite's own check finds it; the repair writes nothing into the damaged file but rebuilds the database from its
    tables' rows in a new one, every row kept, and keeps the damaged file beside it. A process that held the
    knowledge base open is stopped at its next read or write, which would have gone into the kept file."""
    knowledge_base = kb_factory()
    knowledge_base.ingest(write_docs(tmp_path / "docs"))
    knowledge_base.close()
    database = tmp_path / "kb" / "kb.sqlite"
    with closing(sqlite3.connect(database)) as connection:
        before = {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                  for table in ("documents", "chunks", "postings", "vectors", "keyword_terms")}
    page = _zero_page_of(database, "ix_documents_file_type")
    damaged = database.read_bytes()
    found = (f"damaged database: SQLite's check of the file finds: Page {page}: btreeInitPage() returns error code "
             "11")
    capsys.readouterr()
    assert main(["--kb", str(tmp_path / "kb"), "search", "margrave", "--type", "txt"]) == 2
    assert "; `kb doctor --repair` rebuilds it where only its indexes are damaged and it still opens; else restore " \
        "it from a backup" in capsys.readouterr().err
    assert main(["--kb", str(tmp_path / "kb"), "doctor"]) == 1
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"found     {found}; `--repair` rebuilds it from its tables' rows, which holds where only its indexes are "
        "damaged (the damaged file is kept); else restore it from a backup, or move the knowledge base aside and "
        "ingest its sources again", "run `kb doctor --repair` to fix what can be fixed"]
    database.chmod(0o600)
    holder = kb_factory()  # a process holding the knowledge base open (a server, the scheduler) during the repair
    assert main(["--kb", str(tmp_path / "kb"), "doctor", "--repair"]) == 0
    for use in (lambda: holder.ingest(tmp_path / "docs"), lambda: holder.search("margrave")):
        with pytest.raises(DatabaseUnreadableError, match="was deleted or replaced while this process ran; start it"):
            use()  # not written into the damaged file, now kept aside, where nothing reads it
    [kept] = database.parent.glob("kb.sqlite.damaged-*[0-9]Z")
    assert capsys.readouterr().out.splitlines()[0] == (
        f"repaired  {found}; rebuilt from its tables' rows, with every row an index still readable records (the "
        f"damaged file is kept as {kept.name}); what follows was checked on the rebuilt file and not repaired: run "
        "`kb doctor --repair` again for it")
    assert kept.read_bytes() == damaged and not list(database.parent.glob("*.tmp"))
    assert stat.S_IMODE(database.stat().st_mode) == 0o600  # as the damaged file was: it holds every document's text
    with closing(sqlite3.connect(database)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert before == {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                          for table in before}
    assert main(["--kb", str(tmp_path / "kb"), "search", "margrave", "--type", "txt"]) == 0
    assert "history.txt" in capsys.readouterr().out
    assert main(["--kb", str(tmp_path / "kb"), "doctor"]) == 0


def test_a_write_that_waits_for_the_rebuild_goes_into_neither_file_unseen(kb_factory, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A write another process began while the damaged file was being copied went into the old file, which the
    rebuild then put aside: reported done, found in neither. It now waits for the rebuild's lock, finds the file
    replaced, and fails saying so."""
    knowledge_base = kb_factory()
    knowledge_base.ingest(write_docs(tmp_path / "docs"))
    knowledge_base.close()
    database = tmp_path / "kb" / "kb.sqlite"
    with closing(sqlite3.connect(database)) as connection:
        sources = connection.execute("SELECT count(*) FROM sources").fetchone()
    _zero_page_of(database, "ix_documents_file_type")
    writer = kb_factory()
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            add_source(writer.store, tmp_path / "docs", None)
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - what the waiting writer met, for the test to read
            outcome.append(error)

    copy_tables = salvage._copy_tables

    def copy_while_a_writer_waits(source: Path, target: Path) -> None:
        thread.start()
        time.sleep(1.0)  # the writer is waiting for SQLite's write lock by now
        copy_tables(source, target)

    thread = threading.Thread(target=write)
    monkeypatch.setattr(salvage, "_copy_tables", copy_while_a_writer_waits)
    assert main(["--kb", str(tmp_path / "kb"), "doctor", "--repair"]) == 0
    thread.join(60)
    [error] = outcome
    assert isinstance(error, DatabaseUnreadableError) and "was deleted or replaced while this process ran" in str(error)
    for path in (database, *database.parent.glob("kb.sqlite.damaged-*[0-9]Z")):
        with closing(sqlite3.connect(path)) as connection:
            assert connection.execute("SELECT count(*) FROM sources").fetchone() == sources  # nor reported added


def test_doctor_does_not_rebuild_a_table_that_lost_rows_its_other_index_still_records(
        kb_factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A table page that lost a row is well formed, so SQLite's quick check passes it; an index that still records
    the row tells. Rebuilt, the row would be gone for good (and the doctor's next checks would delete its chunks)."""
    knowledge_base = kb_factory()
    knowledge_base.ingest(write_docs(tmp_path / "docs"))
    knowledge_base.close()
    database = tmp_path / "kb" / "kb.sqlite"
    with closing(sqlite3.connect(database)) as connection:  # the row deleted while its index is hidden from SQLite
        connection.execute("PRAGMA writable_schema = ON")
        hidden = connection.execute("SELECT * FROM sqlite_master WHERE name = 'ix_documents_file_type'").fetchone()
        connection.execute("DELETE FROM sqlite_master WHERE name = 'ix_documents_file_type'")
        connection.commit()
    with closing(sqlite3.connect(database)) as connection:
        connection.execute("DELETE FROM documents WHERE id = (SELECT max(id) FROM documents)")
        connection.commit()
    with closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA writable_schema = ON")
        connection.execute("INSERT INTO sqlite_master VALUES (?, ?, ?, ?, ?)", hidden)
        connection.commit()
    _zero_page_of(database, "ix_chunks_text_hash")
    damaged = database.read_bytes()
    capsys.readouterr()
    assert main(["--kb", str(tmp_path / "kb"), "doctor", "--repair"]) == 1
    found, _ = capsys.readouterr().out.splitlines()
    said = re.search(r"cannot be rebuilt from its tables: a table's own pages are damaged \(documents holds (\d+) "
                     r"rows where its index ix_documents_file_type records (\d+)\)", found)
    assert said and int(said[2]) == int(said[1]) + 1
    assert database.read_bytes() == damaged


def test_doctor_does_not_rebuild_a_database_whose_tables_are_damaged(kb_factory, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A table's own page overwritten: no copy of it can be trusted, so the repair says so and leaves the file."""
    knowledge_base = kb_factory()
    knowledge_base.ingest(write_docs(tmp_path / "docs"))
    knowledge_base.close()
    database = tmp_path / "kb" / "kb.sqlite"
    _zero_page_of(database, "runs")
    damaged = database.read_bytes()
    capsys.readouterr()
    assert main(["--kb", str(tmp_path / "kb"), "doctor", "--repair"]) == 1
    found, last = capsys.readouterr().out.splitlines()
    assert found.startswith("found     damaged database: SQLite's check of the file finds: ")
    assert f"; the database {database} cannot be rebuilt from its tables: a table's own pages are damaged (" in found
    assert found.endswith("restore it from a backup, or move the knowledge base aside and ingest its sources again")
    assert last == "what is found and not repaired needs what its line says"
    assert database.read_bytes() == damaged and sorted(path.name for path in database.parent.iterdir()) == [
        "indexes", "kb.json", "kb.sqlite", "write.lock"]


def _ingested_then_changed(kb_factory, tmp_path: Path, change: str) -> None:
    """A knowledge base at ``tmp_path / "kb"`` with the test documents, then ``change`` made to it from outside."""
    knowledge_base = kb_factory()
    knowledge_base.ingest(write_docs(tmp_path / "docs"))
    knowledge_base.close()
    with closing(sqlite3.connect(tmp_path / "kb" / "kb.sqlite")) as connection, connection:
        connection.execute(change)


@pytest.mark.parametrize(("change", "said"), [
    ("UPDATE documents SET warnings = '{bad' WHERE id = 1", "documents.warnings: 1 value(s) not of its type (id=1: "
     "'{bad')"),
    ("UPDATE documents SET path = path || char(0) || 'x' WHERE id = 1", "documents.path: 1 value(s) not of its type "
     "(id=1: ...'"),
    ("UPDATE runs SET started_at = 'garbage'", "runs.started_at: 1 value(s) not of its type (id=1: 'garbage')"),
    ("UPDATE runs SET started_at = '2026-02-30 10:00:00.000000'", "runs.started_at: 1 value(s) not of its type (id=1: "
     "'2026-02-30 10:00:00.000000')"),  # a date SQLite reads, Python does not
    ("UPDATE runs SET failures = '[1]'", "runs.failures: 1 value(s) not of its type (id=1: '[1]')"),  # JSON, not a list
    ("UPDATE runs SET failures = '[{\"x\": 1}]'", "runs.failures: 1 value(s) not of its type (id=1: '[{\"x\": 1}]')"),
    ("UPDATE chunks SET start = 'abc' WHERE id = 2", "chunks.start: 1 value(s) not of its type (id=2: 'abc')"),
    ("UPDATE vectors SET vector = 'abc' WHERE chunk_id = 2", "vectors.vector: 1 value(s) not of its type (space_id=1, "
     "chunk_id=2: 'abc')"),
    ("UPDATE chunks SET text = x'00ff' WHERE id = 3", "chunks.text: 1 value(s) not of its type (id=3: a blob)"),
    ("UPDATE chunks SET text = CAST(x'48ff' AS TEXT) WHERE id = 3", "chunks.text: 1 value(s) not of its type (id=3: "
     "'H\ufffd')"),  # bytes that are not UTF-8: every search that read it called the database damaged, the doctor not
    ("UPDATE keyword_terms SET term = CAST(x'ff61' AS TEXT) WHERE term = 'margrav'", "keyword_terms.term: 1 value(s) "
     "not of its type (term=\ufffda: '\ufffda')"),  # the key itself damaged: named as it is shown
    ("ALTER TABLE runs DROP COLUMN error", "runs.error: the column is gone")])
def test_doctor_finds_values_written_from_outside_into_columns_of_another_type(
        change: str, said: str, kb_factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite keeps text in an integer column, JSON that does not parse, a NUL inside a path: `kb doctor` failed
    with a traceback on each of the first three. It names the column, the row and the value, and repairs nothing
    (what the value was is not known here)."""
    _ingested_then_changed(kb_factory, tmp_path, change)
    capsys.readouterr()
    for repair in ([], ["--repair"]):
        assert main(["--kb", str(tmp_path / "kb"), "doctor", *repair]) == 1
        found, last = capsys.readouterr().out.splitlines()
        assert found.startswith(f"found     damaged database: changed from outside this program: {said}") and \
            found.endswith(
            "; restore it from a backup, or move the knowledge base aside and ingest its sources again")
        assert last == "what is found and not repaired needs what its line says"


@pytest.mark.parametrize(("change", "command", "said"), [
    ("UPDATE keyword_terms SET chunks = 'x' WHERE term = 'margrav'", ["search", "margrave"],
     "keyword_terms.chunks: 1 value(s) not of its type (term=margrav: 'x')"),
    ("UPDATE chunks SET start = 'abc'", ["search", "margrave"], "chunks.start: 4 value(s) not of its type (id=1: "
     "'abc')"),
    ("UPDATE runs SET counts = '{\"added\": \"x\"}'", ["jobs"], "runs.counts: 1 value(s) not of its type (id=1: "
     "'{\"added\": \"x\"}')")])
def test_a_read_that_meets_a_value_written_from_outside_is_one_line_naming_it(
        change: str, command: list[str], said: str, kb_factory, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The tables a search or a listing reads are too large to check at every opening: a value of another type
    found there failed the command with a traceback from deep inside it. The read that fails on one now checks the
    database and names it, as the doctor does."""
    _ingested_then_changed(kb_factory, tmp_path, change)
    capsys.readouterr()
    assert main(["--kb", str(tmp_path / "kb"), *command]) == 2
    [error] = errors(capsys.readouterr().err)
    assert error == (f"kb: error: the database {tmp_path / 'kb' / 'kb.sqlite'} is damaged (changed from outside "
                     f"this program: {said}); restore it from a backup, or move the knowledge base aside and ingest "
                     "its sources again")


def test_an_io_error_on_a_regular_database_file_is_not_called_damage(tmp_path: Path) -> None:
    """A full disk fails SQLite's opening with an I/O error (the write-ahead log's shared memory cannot be made): the
    file is sound, so the line points at the disk, not at a backup (a FIFO's I/O error is damage: not a database)."""
    from sqlalchemy import create_engine

    from kb.storage.database import _unreadable

    database = tmp_path / "kb.sqlite"
    database.write_bytes(b"")
    full = sqlite3.OperationalError("disk I/O error")
    full.sqlite_errorcode = sqlite3.SQLITE_IOERR_SHMOPEN
    said = str(_unreadable(create_engine(f"sqlite:///{database}"), f"sqlite:///{database}", full))
    assert said == (f"cannot read the database {database} (disk I/O error): check the disk's free space, quota "
                    "and health")
    database.unlink()
    os.mkfifo(database)
    said = str(_unreadable(create_engine(f"sqlite:///{database}"), f"sqlite:///{database}", full))
    assert said.startswith(f"the database {database} is damaged or not a SQLite database (disk I/O error)")


def test_an_own_file_growing_while_it_is_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted file kept growing (a writer filling the disk) was read on to its end past its size limit."""
    import kb.containment

    path = tmp_path / "kb.json"
    path.write_bytes(b"{}" + b" " * 100)
    real_fstat = os.fstat

    def smaller(descriptor: int) -> os.stat_result:  # its size when opened; 10 bytes came since
        status = list(real_fstat(descriptor))
        status[6] -= 10  # st_size
        return os.stat_result(status)

    monkeypatch.setattr(kb.containment.os, "fstat", smaller)
    with pytest.raises(kb.containment.FileTooLargeError, match="grew past its 92 bytes"):
        kb.containment.read_own_file(path, 4096)


@pytest.mark.parametrize("dimension", [0, 2**40, 2**63 - 1])
def test_a_space_dimension_written_from_outside_is_repaired_by_embedding_again(
        dimension: int, kb_factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The largest (four times it overflows SQL's integers) failed `kb doctor` with an OverflowError, and without
    --repair the index check then failed inside FAISS."""
    knowledge_base = kb_factory()
    knowledge_base.ingest(write_docs(tmp_path / "docs"))
    knowledge_base.close()
    with closing(sqlite3.connect(tmp_path / "kb" / "kb.sqlite")) as connection, connection:
        connection.execute("UPDATE spaces SET dimension = ? WHERE name = 'text'", (dimension,))
    capsys.readouterr()
    assert main(["--kb", str(tmp_path / "kb"), "doctor"]) == 1
    assert f"found     malformed vectors: 4 vector(s) in space 'text' cannot be used (not its {dimension} " \
        in capsys.readouterr().out
    assert main(["--kb", str(tmp_path / "kb"), "doctor", "--repair"]) == 0
    assert main(["--kb", str(tmp_path / "kb"), "doctor"]) == 0
    assert "no problems found" in capsys.readouterr().out.splitlines()


def test_every_column_of_the_schema_is_checked_for_values_of_another_type() -> None:
    """A column of a type the check does not know would be passed over in silence."""
    from kb.storage.column_types import wrong_value
    from kb.storage.models import Base

    unchecked = [f"{table.name}.{column.name}" for table in Base.metadata.tables.values() for column in table.columns
                 if wrong_value(table, column) is None]
    assert unchecked == []


@pytest.mark.parametrize(("repairable", "last"), [
    ([False, True], "run `kb doctor --repair` to fix what can be fixed"),
    ([False, False], "what is found and not repaired needs what its line says")])
def test_doctor_suggests_a_repair_only_where_one_can_help(repairable: list[bool], last: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from kb.cli import show
    from kb.types import DoctorReport, Problem

    show.doctor(DoctorReport(problems=[Problem(kind=f"kind {n}", detail="-", repairable=value)
                                       for n, value in enumerate(repairable)]), repaired=False)
    assert capsys.readouterr().out.splitlines()[-1] == last


def test_a_knowledge_base_in_a_folder_named_like_a_url_keeps_its_database_inside(kb_factory, tmp_path: Path) -> None:
    """The folder's path went into a SQLite URL unquoted: `?` began a query and `%` an escape, so a knowledge base
    in `100% a?b#c` opened a new empty database elsewhere (`100% a`) or none."""
    knowledge_base = kb_factory("100% a?b#c")
    assert knowledge_base.ingest(write_docs(tmp_path / "docs")).added
    knowledge_base.close()
    assert (tmp_path / "100% a?b#c" / "kb.sqlite").stat().st_size > 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["100% a?b#c", "docs"]
    assert kb_factory("100% a?b#c").search("margrave")
