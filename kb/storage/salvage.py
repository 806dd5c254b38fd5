"""A SQLite database whose damage lies only in its indexes, rebuilt: every table's rows copied by SQLite itself from
the table's own tree (never through an index, bytes and types as stored) into a new file, each index made again from
them. It is done only where no index that can still be read holds more entries than its table (a table that lost
rows), and the damaged file is kept beside the new one. Where a table's own pages are damaged, no copy can be trusted
and nothing is written: a backup, or ingesting the sources again, is the way back then."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from kb.atomic import TEMPORARY_SUFFIX
from kb.errors import DatabaseUnreadableError, KbError, StorageError
from kb.storage.database import BUSY_TIMEOUT_S

# What writing the new file can fail on, the damaged one aside: the disk, or a process holding the database.
NOT_DAMAGE = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY,
              sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
WAL = "-wal"  # SQLite's write-ahead log beside a database, named after it (its "-shm" index is made again)


class TableDamage(Exception):
    """A table that cannot be read whole, or lost rows an index still records."""


def rebuild_from_tables(database: Path) -> Path:
    """Rebuild ``database`` (closed by every connection of this process; a regular file, not a link) from its
    tables' rows and put the new file in its place; returns where the damaged file (and its write-ahead log) was
    kept. Raises ``DatabaseUnreadableError`` when a table cannot be read whole, ``StorageError`` when the new file
    cannot be written (a full disk) or a writer holds the database, leaving ``database`` as it was.

    SQLite's write lock on the damaged file is held from before the copy until the new file is in its place (taken,
    nothing written), so no other process's write goes into the old file unseen: one waiting finds the file
    replaced when it gets the lock (``Store.write`` checks), and stops."""
    rebuilt = database.with_name(f"{database.name}.{os.getpid()}.rebuilt{TEMPORARY_SUFFIX}")  # a killed run's is found
    rebuilt.unlink(missing_ok=True)
    with closing(sqlite3.connect(database, isolation_level=None, timeout=BUSY_TIMEOUT_S)) as lock:
        try:
            lock.execute("BEGIN IMMEDIATE")
            _copy_tables(database, rebuilt)
            _same_owner_and_mode(database, rebuilt)
        except BaseException as error:
            rebuilt.unlink(missing_ok=True)
            if isinstance(error, (sqlite3.Error, TableDamage)):
                raise _refusal(database, error) from error
            raise
        kept = _kept_name(database)
        try:
            _keep(database, kept)
            log = database.with_name(database.name + WAL)
            if log.exists():  # kept with its file, and gone from beside the new one, into which it would be played
                if log.stat().st_size:
                    _keep(log, kept.with_name(kept.name + WAL))
                log.unlink()
            database.with_name(database.name + "-shm").unlink(missing_ok=True)
            os.replace(rebuilt, database)
        except OSError as error:  # no room for a copy where the file system has no second names, say
            rebuilt.unlink(missing_ok=True)
            raise StorageError(f"cannot put the rebuilt database in the place of {database}: {error}") from error
        _sync_folder(database.parent)
        lock.execute("ROLLBACK")  # (SQLite finds its file moved: nothing is played back or removed on closing)
    return kept


def _refusal(database: Path, error: sqlite3.Error | TableDamage) -> KbError:
    """Why the rebuild stopped: the disk or another process (``StorageError``), or the tables themselves."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if code in NOT_DAMAGE:
        why = {sqlite3.SQLITE_FULL: " (it needs as much free space as the database takes)",
               sqlite3.SQLITE_BUSY: " (another process is writing to it: repair again when it is done)"}.get(code, "")
        return StorageError(f"cannot rebuild the database {database} beside it: {error}{why}")
    return DatabaseUnreadableError(f"the database {database} cannot be rebuilt from its tables: a table's own pages "
                                   f"are damaged ({error})")


def _same_owner_and_mode(original: Path, copy: Path) -> None:
    """The copy with the original's permissions (a database holds every document's text; 0600 stays 0600) and, where
    this process may set it, its owner."""
    status = original.stat()
    os.chmod(copy, stat.S_IMODE(status.st_mode))
    try:
        os.chown(copy, status.st_uid, status.st_gid)
    except OSError:
        pass  # not root: the copy is this process's, as anything it writes


def _keep(path: Path, kept: Path) -> None:
    """``path`` also under the name ``kept``: a second name where the file system has them, else a copy."""
    try:
        os.link(path, kept)
    except OSError:
        shutil.copy2(path, kept)


def _copy_tables(source: Path, target: Path) -> None:
    """The schema, then every table's rows with their rowids, then the indexes, written into ``target`` in one
    transaction that reads one snapshot of ``source``; checked whole before it is used."""
    with closing(sqlite3.connect(f"file:{quote(str(target))}", uri=True, isolation_level=None,
                                 timeout=BUSY_TIMEOUT_S)) as connection:
        connection.execute("PRAGMA journal_mode = OFF")  # a new file: one killed midway is deleted, never read
        connection.execute("ATTACH DATABASE ? AS damaged", (f"file:{quote(str(source))}?mode=ro",))
        schema = connection.execute("SELECT type, name, sql FROM damaged.sqlite_master WHERE sql IS NOT NULL AND "
                                    "name NOT LIKE 'sqlite_%' ORDER BY type = 'index', rowid").fetchall()
        for index, table in connection.execute("SELECT name, tbl_name FROM damaged.sqlite_master "
                                               "WHERE type = 'index'").fetchall():  # a constraint's too
            _check_rows_kept(connection, index, table)  # before the copy's transaction: damage met ends that
        connection.execute("BEGIN")
        for kind, name, sql in schema:
            if kind == "table":
                connection.execute(sql)
                _copy_rows(connection, name, rowid="WITHOUT ROWID" not in sql.upper())
        for kind, _, sql in schema:
            if kind == "index":
                connection.execute(sql)
        (version,) = connection.execute("PRAGMA damaged.user_version").fetchone()
        connection.execute(f"PRAGMA main.user_version = {int(version)}")
        connection.execute("COMMIT")
        connection.execute("DETACH DATABASE damaged")
        faults = [row[0] for row in connection.execute("PRAGMA integrity_check(5)")]
        if faults != ["ok"]:
            raise TableDamage(f"the copy fails its check: {'; '.join(faults)}")
    with open(target, "rb") as handle:
        os.fsync(handle.fileno())


def _copy_rows(connection: sqlite3.Connection, table: str, rowid: bool) -> None:
    """The rows of ``table`` read from its own tree (``NOT INDEXED``), their rowids kept where it has them; naming
    the columns keeps SQLite from copying the table's indexes with it (its transfer of whole trees)."""
    quoted = _quoted(table)
    columns = [_quoted(row[1]) for row in connection.execute(f"PRAGMA damaged.table_info({quoted})")]
    names = ", ".join((["rowid"] if rowid else []) + columns)
    connection.execute(f"INSERT INTO main.{quoted} ({names}) SELECT {names} FROM damaged.{quoted} NOT INDEXED")
    (copied,) = connection.execute(f"SELECT count(*) FROM main.{quoted}").fetchone()
    (counted,) = connection.execute(f"SELECT count(*) FROM damaged.{quoted} NOT INDEXED").fetchone()
    if copied != counted:
        raise TableDamage(f"{table}: {copied} rows copied of {counted}")


def _check_rows_kept(connection: sqlite3.Connection, index: str, table: str) -> None:
    """Refuse when the damaged file's ``index`` of ``table``, where it can still be read, holds more entries than
    the table has: the table lost rows (SQLite's quick check reads each tree alone, not whether they agree)."""
    try:  # a condition on the index's first column, or SQLite counts on whichever index is smallest
        column = connection.execute(f"PRAGMA damaged.index_info({_quoted(index)})").fetchone()[2]
        if column is None:
            return  # an index on an expression
        where = f"{_quoted(column)} IS NULL OR {_quoted(column)} IS NOT NULL"
        (entries,) = connection.execute(f"SELECT count(*) FROM damaged.{_quoted(table)} INDEXED BY {_quoted(index)} "
                                        f"WHERE {where}").fetchone()
    except (sqlite3.DatabaseError, TypeError):
        return  # the damaged index itself (or one its query cannot use): made again from the table
    (rows,) = connection.execute(f"SELECT count(*) FROM damaged.{_quoted(table)} NOT INDEXED").fetchone()
    if entries > rows:
        raise TableDamage(f"{table} holds {rows} rows where its index {index} records {entries}")


def _kept_name(database: Path) -> Path:
    """A name beside ``database`` for the damaged file, by the time of the rebuild, that no file has yet."""
    stamp = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    kept, number = database.with_name(f"{database.name}.damaged-{stamp}"), 1
    while kept.exists() or kept.with_name(kept.name + WAL).exists():
        number += 1
        kept = database.with_name(f"{database.name}.damaged-{stamp}-{number}")
    return kept


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
