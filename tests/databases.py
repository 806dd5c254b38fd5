"""The databases tests run on: SQLite files, and a real PostgreSQL 16 with pgvector started by pip's ``pgserver``."""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, text

if TYPE_CHECKING:
    import pgserver

# SQLite with FAISS; PostgreSQL with FAISS; PostgreSQL with pgvector (vectors searched inside the database).
DATABASES = ("sqlite", "postgresql", "pgvector")


def _start(folder: Path, attempts: int = 3) -> pgserver.PostgresServer:
    """Start (or find running) the server in ``folder``. pgserver gives ``pg_ctl`` ten seconds, which a loaded
    machine can exceed while the server goes on starting: then look again."""
    import pgserver

    for attempt in range(attempts):
        try:
            return pgserver.get_server(folder, cleanup_mode="stop")
        except (subprocess.SubprocessError, OSError):
            pgserver.PostgresServer._instances.pop(folder.resolve(), None)  # forget the half-started handle
            if attempt == attempts - 1:
                raise
            time.sleep(5)
    raise AssertionError("unreachable")


class PostgresServer:
    """One real PostgreSQL 16 with pgvector (pip's ``pgserver``) for the test session; a fresh database per use."""

    def __init__(self, folder: Path) -> None:
        self.server = _start(folder)
        self.socket = folder
        self.admin = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        self._numbers = itertools.count()
        with self.admin.connect() as connection:  # a throwaway server: durability against power loss not needed
            for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
                connection.execute(text(f"ALTER SYSTEM SET {setting}"))
            connection.execute(text("SELECT pg_reload_conf()"))

    def url(self, database: str) -> str:
        # No password (the socket is the test run's own): the URL holds no secret, so kb.json records it.
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket}"

    def create(self, label: str) -> str:
        """A new empty database; returns its URL."""
        name = f"t{next(self._numbers)}_{re.sub(r'[^a-z0-9]+', '_', label.lower())}"[:60]
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.split("/")[-1].split("?")[0]
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        self.admin.dispose()
        self.server.cleanup()


class Database:
    """Where a test's knowledge bases keep their SQL: SQLite files in their folders (the default), or one fresh
    PostgreSQL database per knowledge base name (``pgvector``: with the vector index in PostgreSQL too)."""

    def __init__(self, kind: str, server: PostgresServer | None, label: str) -> None:
        self.kind = kind
        self.server = server
        self.label = label
        self._urls: dict[str, str] = {}

    def url(self, name: str = "kb") -> str | None:
        """The database URL of the knowledge base ``name`` (the same on every call), None for SQLite's default."""
        if self.server is None:
            return None
        if name not in self._urls:
            self._urls[name] = self.server.create(f"{self.label}_{name}")
        return self._urls[name]

    def settings(self, name: str = "kb") -> dict[str, str]:
        """The settings that put the knowledge base ``name`` in this database."""
        url = self.url(name)
        chosen = {"database_url": url} if url else {}
        return {**chosen, "vector_index": "pgvector"} if self.kind == "pgvector" else chosen

    def environment(self, name: str = "kb") -> dict[str, str]:
        """Variables a ``kb`` command needs to reach the knowledge base ``name``."""
        return {f"KB_{key.upper()}": value for key, value in self.settings(name).items()}

    def close(self) -> None:
        """Drop this test's PostgreSQL databases (after its knowledge bases closed)."""
        if self.server is not None:
            for url in self._urls.values():
                self.server.drop(url)


def execute_sql(url: str, *statements: str) -> None:
    """Run statements on a knowledge base's database from outside, as damage or an older version would."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def back_to_version_8() -> list[str]:
    """Statements that take a database back to schema version 8: no files recorded that documents show."""
    return ["ALTER TABLE documents DROP COLUMN referenced_files"]


def back_to_version_7() -> list[str]:
    """Statements that take a database back to schema version 7 (through version 8): no mounts recorded for the
    sources."""
    return [*back_to_version_8(), "ALTER TABLE sources DROP COLUMN mounts"]


def back_to_version_6() -> list[str]:
    """Statements that take a database back to schema version 6 (through version 7): no generation of the keyword
    index."""
    return [*back_to_version_7(), "ALTER TABLE keyword_totals DROP COLUMN generation"]


def back_to_version_5() -> list[str]:
    """Statements that take a database back to schema version 5 (through version 6): no change log of the
    vectors."""
    return [*back_to_version_6(), "DROP TABLE vector_changes", "ALTER TABLE spaces DROP COLUMN logged_from"]


def back_to_version_4_keywords(kind: str) -> list[str]:
    """Statements that take a database of kind ``kind`` back to schema version 4 (through version 5): its keyword
    index's postings without their chunk's length (on PostgreSQL a primary key without included columns), no
    keyword figures."""
    key = kind != "sqlite"
    return [*back_to_version_5(), "DROP TABLE keyword_terms", "DROP TABLE keyword_totals",
            *(["ALTER TABLE postings DROP CONSTRAINT postings_pkey"] if key else []),
            "ALTER TABLE postings DROP COLUMN length",
            *(["ALTER TABLE postings ADD PRIMARY KEY (term, chunk_id)"] if key else [])]


def back_to_version_1(kind: str) -> list[str]:
    """Statements that take a database of kind ``kind`` back to schema version 1: no schedules, chunk text hashes,
    images or keyword figures, and on PostgreSQL 32-bit file sizes and times (so: a database without documents)."""
    narrow = ["ALTER TABLE documents ALTER COLUMN size TYPE INTEGER, ALTER COLUMN mtime_ns TYPE INTEGER"]
    return ["DROP INDEX ix_chunks_text_hash", "DROP TABLE images", *back_to_version_4_keywords(kind),
            *(f"ALTER TABLE {table} DROP COLUMN {column}"
              for table, column in (("chunks", "text_hash"), ("sources", "schedule"), ("sources", "next_run_at"))),
            *(narrow if kind != "sqlite" else []), "UPDATE meta SET value = '1' WHERE key = 'schema_version'"]
