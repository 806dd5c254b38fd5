"""Opening the SQL database: SQLite in WAL mode by default, any SQLAlchemy URL otherwise, schema version checked."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, select, text
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.exc import ArgumentError, DatabaseError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kb.errors import ConfigurationError, DatabaseUnreachableError, DatabaseUnreadableError, SchemaError
from kb.storage import bm25
from kb.storage.column_types import NOT_UTF8, SMALL_TABLES, mistyped_values, not_utf8
from kb.storage.filters import SQLITE_LOWER, unicode_lower
from kb.storage.models import SCHEMA_VERSION, VERSION_TABLE, Base, Meta
from kb.storage.urls import redact

IMMEDIATE = "kb_begin_immediate"  # execution option: this transaction will write (see Store.write)
SCHEMA_LOCK = 0x6B625F7363  # "kb_sc": the advisory lock of schema changes on PostgreSQL
WRITE_LOCK = 0x6B625F7775  # "kb_wu": the advisory lock of write units on PostgreSQL (their BEGIN IMMEDIATE)
_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}  # primary result codes (an I/O error may be a full disk)
_UNDECODABLE = "Could not decode to UTF-8"  # sqlite3's error for stored text whose bytes were damaged
BUSY_TIMEOUT_S = 30.0  # how long a SQLite connection waits for another's lock before "database is locked"


DATABASE_FILE = "kb.sqlite"  # in the knowledge base's folder, unless database_url names another database
# Made by the first write, after the database: that database existed.
WRITTEN_MARKS = {"write.lock": "its writer's lock file", "indexes": "its index caches' folder"}


# What a message about a damaged database tells the user to do: no repair writes into a damaged file.
WAY_BACK = "restore it from a backup, or move the knowledge base aside and ingest its sources again"


def default_url(kb_dir: Path) -> str:
    """The URL of the knowledge base's own SQLite file, its path quoted: a folder named ``a?b`` or ``100%`` was
    read as a URL's query or escapes, and opened another (new, empty) database or none."""
    return URL.create("sqlite", database=str((kb_dir / DATABASE_FILE).resolve())).render_as_string(hide_password=False)


def _configure_sqlite(engine: Engine) -> None:
    """WAL (readers never blocked by the writer) and real transactions: Python's sqlite3 begins none before a
    SELECT, so without an explicit BEGIN each query of a search would see a different state."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event below emits BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        dbapi_connection.create_function(SQLITE_LOWER, 1, unicode_lower, deterministic=True)
        dbapi_connection.create_function(NOT_UTF8, 1, not_utf8, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(IMMEDIATE)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @event.listens_for(engine, "handle_error")
    def _on_damage(context: ExceptionContext) -> None:
        """A page or a text found damaged by a query after the database opened well: the same one line as at
        opening, from any search, report or run, instead of a traceback."""
        if is_damage(context.original_exception):
            raise _unreadable(engine, str(engine.url), context.original_exception)


def _report_lost_server(engine: Engine, url: str) -> None:
    """A server that goes away after the database opened (stopped, restarting, cut off) fails a search, a report or
    a run in one line instead of a driver's traceback; the pool's check before use connects again afterwards."""

    @event.listens_for(engine, "handle_error")
    def _on_lost(context: ExceptionContext) -> None:
        # The pool's check of a pooled connection (a dead one is replaced, no error), and Ctrl-C (its own ending)
        if context.is_pre_ping or not isinstance(context.original_exception, Exception):
            return
        cause = " ".join(str(context.original_exception).split())
        if context.is_disconnect:
            raise DatabaseUnreachableError(f"lost the connection to the database {redact(url)}: {cause}")
        if context.connection is None and isinstance(context.sqlalchemy_exception, OperationalError):
            raise DatabaseUnreachableError(f"cannot connect to the database {redact(url)}: {cause}")


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch to WAL, trying again for up to ``BUSY_TIMEOUT_S``: a connection that meets another switching a new
    database's journal mode is told "database is locked" at once (SQLite skips the busy handler there, as it does
    where waiting could deadlock), so processes opening a new knowledge base together would fail by chance."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def refuse_a_lost_database(directory: Path) -> None:
    """Raise ``DatabaseUnreadableError`` when the knowledge base in ``directory``, whose settings record the default
    SQLite database, was written to (its writer's lock file or index caches' folder is there) but its SQLite file is
    gone or empty: opened, it would be a new empty database, which every check called healthy and every search
    answered with nothing."""
    database = directory / DATABASE_FILE
    try:
        status = database.stat()
        lost = stat.S_ISREG(status.st_mode) and status.st_size == 0  # (a device or a FIFO: the opening says)
    except FileNotFoundError:
        lost = True
    except OSError:
        return  # (the opening says what)
    written = [name for mark, name in WRITTEN_MARKS.items() if (directory / mark).exists()]
    if lost and written:
        raise DatabaseUnreadableError(f"the database {database} is damaged or not a SQLite database (missing or "
                                      f"empty, yet the knowledge base was written to: {written[0]} is there); "
                                      f"{WAY_BACK}")


def open_database(url: str) -> sessionmaker[Session]:
    """Connect, create the schema on an empty database, migrate an old one, refuse a newer one.

    Processes that open one new or old database at the same moment take turns (``schema_transaction``): the first
    creates or migrates, the others find it done. The URL appears in messages only with its secrets hidden.
    """
    try:  # a server's pooled connections are checked before use: after a restart they are dead, not the server
        engine = create_engine(url, pool_pre_ping=make_url(url).get_backend_name() != "sqlite")
    except (ArgumentError, ValueError) as error:
        raise ConfigurationError(f"cannot use the database URL {redact(url)}: {type(error).__name__}") from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    factory = sessionmaker(engine, expire_on_commit=False)
    try:
        with factory() as session:
            current = _recorded_version(session, url) == SCHEMA_VERSION
            damage = changed_from_outside(session, SMALL_TABLES) if current else None
        if damage:
            raise damage
        if not current:
            with schema_transaction(factory) as session:
                _create_or_migrate(session, url)
    except (DatabaseError, UnicodeDecodeError) as error:  # UnicodeDecodeError: SQLite's text from damaged pages
        engine.dispose()
        raise _unreadable(engine, url, error) from error
    except DatabaseUnreadableError:  # raised by the error hook
        engine.dispose()
        raise
    if engine.dialect.name != "sqlite":
        _report_lost_server(engine, url)  # once open: a server down at the start cannot be opened, as said above
    return factory


def is_damage(error: BaseException) -> bool:
    """Whether a SQLite error says the file is damaged or no database: a corrupt page, a header that is not
    SQLite's, or stored text that is not UTF-8 any more."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    return code in _DAMAGED or isinstance(error, UnicodeDecodeError) or str(error).startswith(_UNDECODABLE)


def raw_cursor_damage(engine: Engine, error: Exception) -> DatabaseUnreadableError | None:
    """For a query read through the driver's own cursor (past SQLAlchemy's error hook): the one line for a SQLite
    file found damaged, as any other query gives it; None for other errors."""
    if engine.dialect.name == "sqlite" and is_damage(error):
        return _unreadable(engine, str(engine.url), error)
    return None


def _unreadable(engine: Engine, url: str, error: Exception) -> DatabaseUnreadableError:
    """One line naming the database and what the driver said; for a SQLite file that is damaged or is no database
    (truncated, overwritten, a FIFO or a device in its place), that a backup is the way back."""
    cause = getattr(error, "orig", None) or error
    if engine.dialect.name != "sqlite":
        return DatabaseUnreadableError(f"cannot open the database {redact(url)}: {cause}")
    where = engine.url.database or redact(url)
    if is_damage(cause) or not _regular_or_absent(where):  # a FIFO or a device read as a database: an I/O error
        said = "stored text that is not UTF-8 any more" if str(cause).startswith(_UNDECODABLE) else cause
        pages = getattr(cause, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_CORRUPT and \
            Path(where).name == DATABASE_FILE  # a page of a knowledge base's own file (the doctor rebuilds no other)
        rebuild = "`kb doctor --repair` rebuilds it where only its indexes are damaged and it still opens; else " \
            if pages else ""
        return DatabaseUnreadableError(f"the database {where} is damaged or not a SQLite database ({said}); "
                                       f"{rebuild}{WAY_BACK}")
    if getattr(cause, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_IOERR:
        return DatabaseUnreadableError(f"cannot read the database {where} ({cause}): check the disk's free space, "
                                       "quota and health")
    return DatabaseUnreadableError(f"cannot open the database {where}: {cause}")


def _regular_or_absent(path: str) -> bool:
    """Whether ``path`` is a regular file or nothing (a new database): not a FIFO, a device or a folder."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True


@contextmanager
def schema_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction that alone may change the schema or what is recorded at creation: on SQLite it takes the
    write lock at BEGIN, on PostgreSQL an advisory lock held until it ends. Whoever waited looks again inside it."""
    with factory.begin() as session:
        take_turn(session, SCHEMA_LOCK)
        yield session


def take_turn(session: Session, key: int) -> None:
    """Make the session's new transaction wait for, then exclude, every other that takes its turn the same way:
    on SQLite BEGIN IMMEDIATE (the database's one write lock), on PostgreSQL the advisory lock ``key`` held until
    the transaction ends. Without it two transactions that read, then insert the same row both insert. Either
    waits at most ``BUSY_TIMEOUT_S`` (then OperationalError), so a search's small write never hangs behind a long
    re-embed."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL lock_timeout = '{int(BUSY_TIMEOUT_S * 1000)}ms'"))
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
    else:
        session.connection(execution_options={IMMEDIATE: True})


def _recorded_version(session: Session, url: str) -> int | None:
    """The schema version of the database, None when it is empty; a newer or a foreign schema is refused."""
    tables = set(inspect(session.connection()).get_table_names())
    if "meta" not in tables:
        if tables & {*Base.metadata.tables, VERSION_TABLE}:
            raise SchemaError(f"{redact(url)} holds tables but no schema version; it was not made by this program")
        return None
    recorded = session.scalar(select(Meta.value).where(Meta.key == "schema_version")) or "0"
    if not (recorded.isascii() and recorded.isdigit()) or len(recorded) > 9:
        raise _altered(url, f"its schema version is {recorded[:40]!r}, not a number")
    version = int(recorded)
    if version > SCHEMA_VERSION:
        raise SchemaError(f"this knowledge base has schema version {version}, newer than this program's "
                          f"{SCHEMA_VERSION}; upgrade the program to open it")
    if version == SCHEMA_VERSION and (missing := sorted(set(Base.metadata.tables) - tables)):
        raise _altered(url, f"its table {missing[0]} is gone" if len(missing) == 1 else
                       f"its tables {', '.join(missing)} are gone")
    return version


def changed_from_outside(session: Session, tables: Iterable[str] | None = None) -> DatabaseUnreadableError | None:
    """The one line for values of ``tables`` (default: all) written from outside this program, of another type
    than their column's (``kb.storage.column_types``); None when there are none."""
    found = mistyped_values(session, tables)
    return _altered(str(session.get_bind().url), "changed from outside this program: " + "; ".join(found)) \
        if found else None


def _altered(url: str, what: str) -> DatabaseUnreadableError:
    """The one line for a database whose schema was altered from outside (a table dropped, its version overwritten):
    every command failed on it with a traceback, or a check called it healthy."""
    parsed = make_url(url)
    where = parsed.database if parsed.get_backend_name() == "sqlite" and parsed.database else redact(url)
    return DatabaseUnreadableError(f"the database {where} is damaged ({what}); {WAY_BACK}")


def _create_or_migrate(session: Session, url: str) -> None:
    """Inside ``schema_transaction``: the schema created on an empty database, or migrated by Alembic's revisions;
    ``meta.schema_version`` set in the same transaction."""
    version = _recorded_version(session, url)
    if version == SCHEMA_VERSION:  # whoever held the lock before did it
        return
    from kb.storage import migrations  # Alembic is imported only to change the schema: opening stays cheap

    if version is None:
        Base.metadata.create_all(session.connection())
        bm25.recount(session)
        migrations.stamp_newest(session.connection())
    else:
        migrations.upgrade(session.connection(), version)
    session.merge(Meta(key="schema_version", value=str(SCHEMA_VERSION)))


def schema_version(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(Meta.value).where(Meta.key == "schema_version")) or 0)


def copy_rows(session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
              types: Sequence[str] | None = None) -> None:
    """Rows into a PostgreSQL table with one ``COPY`` (binary when ``types`` names the columns' types) inside the
    session's transaction: executemany sends a statement per row. A row the database rejects raises SQLAlchemy's
    error, as an insert would (so a savepoint treats it like any rejected data)."""
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN" + (" WITH (FORMAT BINARY)" if types else "")
    driver = session.connection().connection.driver_connection
    dbapi = session.get_bind().dialect.loaded_dbapi  # psycopg
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            if types:
                copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)
    except dbapi.Error as error:  # psycopg's own error: raised as SQLAlchemy's, as any other statement's would be
        raise DBAPIError.instance(statement, None, error, dbapi.Error) from error
