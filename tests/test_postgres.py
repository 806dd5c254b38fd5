"""A knowledge base in PostgreSQL shared by machines: one writer anywhere, readers that see each commit at once."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from kb import KnowledgeBase
from kb.errors import ConfigurationError, WriterBusyError
from kb.storage.database import open_database
from kb.storage.lock import DatabaseWriterLock
from tests.concurrency import search_while_running
from tests.databases import PostgresServer

REPO = Path(__file__).resolve().parent.parent


def write_files(folder: Path, numbers: range) -> dict[str, str]:
    """One file per number, each with a unique marker word; returns {file name: marker}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(numbers.start)
    words = "harbour lantern copper meadow quarry falcon ember glacier orchard thistle".split()
    markers = {}
    for number in numbers:
        marker = f"marker{number:04d}q"
        text = f"{marker} " + " ".join(rng.choice(words) for _ in range(40)) + "."
        (folder / f"file{number:04d}.txt").write_text(text, encoding="utf-8")
        markers[f"file{number:04d}.txt"] = marker
    return markers


def open_kb(directory: Path, model: Path, url: str, **overrides: object) -> KnowledgeBase:
    return KnowledgeBase.open(directory, text_model=str(model), device="cpu", database_url=url, **overrides)


@pytest.mark.slow
def test_a_reader_elsewhere_sees_each_commit_without_a_rebuild(tmp_path: Path, tiny_text_model: Path,
                                                               postgres_server: PostgresServer) -> None:
    """Two knowledge base directories (two machines) on one database with pgvector: one process writes, the other
    searches throughout, and finds every new file as soon as it is committed, with no index of its own."""
    url = postgres_server.create("shared")
    folder = tmp_path / "docs"
    markers = write_files(folder, range(10))
    env = {**os.environ, "KB_HOME": str(tmp_path / "writer"), "KB_TEXT_MODEL": str(tiny_text_model),
           "KB_DEVICE": "cpu", "KB_DATABASE_URL": url, "KB_VECTOR_INDEX": "pgvector", "KB_BATCH_SIZE": "1"}
    command = [sys.executable, "-m", "kb.cli", "ingest", str(folder)]
    subprocess.run(command, env=env, check=True, capture_output=True, cwd=REPO)
    reader = open_kb(tmp_path / "reader", tiny_text_model, url, vector_index="pgvector")
    assert Path(reader.search(markers["file0003.txt"], k=1, mode="keyword")[0].path).name == "file0003.txt"
    markers |= write_files(folder, range(10, 40))
    writer = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              cwd=REPO)
    rng = random.Random(3)
    searches, errors = search_while_running(writer, reader, lambda: markers[rng.choice(sorted(markers))])
    assert writer.returncode == 0, writer.stderr.read()
    assert not errors, errors[:3]
    assert searches > 0
    # The same reader, never reopened: every committed file is found, by keyword and by its own text's vector.
    for name, marker in sorted(markers.items()):
        assert Path(reader.search(marker, k=1, mode="keyword")[0].path).name == name
    text = (folder / "file0031.txt").read_text(encoding="utf-8")
    assert Path(reader.search(text, k=1, mode="dense")[0].path).name == "file0031.txt"
    assert reader.stats().documents == 40
    assert not (tmp_path / "reader" / "indexes").exists()  # nothing was rebuilt or cached on the reader's side
    reader.close()


def test_one_writer_across_machines(tmp_path: Path, tiny_text_model: Path, postgres_server: PostgresServer) -> None:
    """The writer lock of a knowledge base in PostgreSQL is the database's, not a file beside one directory."""
    url = postgres_server.create("one_writer")
    first = open_kb(tmp_path / "one", tiny_text_model, url)
    second = open_kb(tmp_path / "two", tiny_text_model, url)
    folder = write_files(tmp_path / "docs", range(3)) and tmp_path / "docs"
    with first.store.writer_lock:
        with pytest.raises(WriterBusyError, match="another process"):
            second.ingest(folder)
    assert second.ingest(folder).added  # released: the other machine writes now
    assert not (tmp_path / "one" / "write.lock").exists() and not (tmp_path / "two" / "write.lock").exists()
    first.close()
    second.close()


def test_the_vector_index_is_recorded_and_checked(tmp_path: Path, tiny_text_model: Path,
                                                  postgres_server: PostgresServer) -> None:
    url = postgres_server.create("recorded")
    kb = open_kb(tmp_path / "kb", tiny_text_model, url, vector_index="pgvector")
    kb.ingest(write_files(tmp_path / "docs", range(3)) and tmp_path / "docs")
    kb.close()
    with pytest.raises(ConfigurationError, match="indexed with 'pgvector'"):
        open_kb(tmp_path / "elsewhere", tiny_text_model, url, vector_index="faiss")
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        KnowledgeBase.open(tmp_path / "lite", text_model=str(tiny_text_model), vector_index="pgvector")


def test_the_busy_message_names_this_knowledge_bases_writer(postgres_server: PostgresServer) -> None:
    """Two knowledge bases in two databases of one server each have a writer: a second writer of one is told the
    database session of that one's writer, never the other's (the lock's key is the same in every database)."""
    engines = [create_engine(postgres_server.create(name)) for name in ("writer_elsewhere", "writer_here")]
    elsewhere, here = (DatabaseWriterLock(engine) for engine in engines)
    elsewhere.acquire()  # taken first: the one a lookup by key alone finds
    here.acquire()
    sessions = [lock._connection.execute(text("SELECT pg_backend_pid()")).scalar() for lock in (elsewhere, here)]
    with pytest.raises(WriterBusyError, match=rf"\(database session {sessions[1]}\)"):
        DatabaseWriterLock(engines[1]).acquire()
    for lock, engine in zip((elsewhere, here), engines):
        lock.release()
        engine.dispose()


def test_a_server_that_stops_answering_after_opening_fails_each_request_in_one_line(
        tmp_path: Path, tiny_text_model: Path, postgres_server: PostgresServer,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Searches, ask and the command line raised SQLAlchemy's OperationalError with a traceback when the server
    went away after the knowledge base opened (here: its database stops taking connections and drops them); now
    one line each, and the next request after it is back answers again."""
    from kb.cli import main
    from kb.errors import DatabaseUnreachableError

    url = postgres_server.create("goes_away")
    name = make_url(url).database
    markers = write_files(tmp_path / "docs", range(3))
    kb = open_kb(tmp_path / "kb", tiny_text_model, url)
    kb.ingest(tmp_path / "docs")
    marker = markers["file0001.txt"]
    monkeypatch.setenv("KB_TEXT_MODEL", str(tiny_text_model))
    monkeypatch.setenv("KB_DEVICE", "cpu")
    cli = ["--kb", str(tmp_path / "kb"), "search", marker]
    opened = KnowledgeBase.open  # the command line's knowledge base opens, then the server goes away

    def open_then_lose(*args: object, **kwargs: object) -> KnowledgeBase:
        knowledge_base = opened(*args, **kwargs)
        set_connections(False)
        return knowledge_base

    def set_connections(allowed: bool) -> None:
        with postgres_server.admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
            if not allowed:
                connection.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                                        f"'{name}' AND pid <> pg_backend_pid()"))

    set_connections(False)
    for request in (lambda: kb.search(marker), lambda: kb.search(marker, mode="keyword"), lambda: kb.ask(marker)):
        with pytest.raises(DatabaseUnreachableError, match="(lost the connection|cannot connect) to the database .* "
                                                           "not currently accepting connections"):
            request()
    set_connections(True)
    assert Path(kb.search(marker, k=1, mode="keyword")[0].path).name == "file0001.txt"
    kb.close()
    monkeypatch.setattr(KnowledgeBase, "open", open_then_lose)
    capsys.readouterr()
    assert main(cli) == 2
    error = capsys.readouterr().err
    assert re.match("kb: error: (lost the connection|cannot connect) to the database", error) and "Traceback" not in error
    set_connections(True)
    engine = open_database(url).kw["bind"]  # the writer's lock, held on a connection the server then drops
    lock = DatabaseWriterLock(engine)
    lock.acquire()
    set_connections(False)
    lock.release()  # quietly: the server let go of the lock with the session (it raised the hook's error)
    set_connections(True)
    engine.dispose()
