"""A SQLite database whose damage lies only in its indexes, rebuilt: every table's rows read from the table itself
(never through an index) into a new file, and each index made again from them. Nothing the tables hold is lost;
the damaged file is kept beside the new one. Where a table's own pages are damaged, no copy can be trusted and
nothing is written: a backup, or ingesting the sources again, is the way back then."""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

from kb.errors import DatabaseUnreadableError, StorageError
from kb.storage.database import is_damage

BATCH = 10_000  # rows copied at a time
REBUILT_SUFFIX = ".rebuilt"  # the new file while it is written
LOG_SUFFIXES = ("-wal", "-shm")  # SQLite's files beside a database in WAL mode, named after it


class TableDamage(Exception):
    """A copy that lost rows or fails SQLite's check: a table was not read whole."""


def rebuild_from_tables(database: Path) -> Path:
    """Rebuild ``database`` (closed by every connection of this process) from its tables' rows and put the new
    file in its place; returns where the damaged file (and its write-ahead log) was kept. Raises
    ``DatabaseUnreadableError`` when a table cannot be read whole, ``StorageError`` when the new file cannot be
    written (a full disk), leaving ``database`` as it was either way."""
    rebuilt = database.with_name(database.name + REBUILT_SUFFIX)
    rebuilt.unlink(missing_ok=True)
    try:
        _copy_tables(database, rebuilt)
    except (sqlite3.Error, UnicodeDecodeError, TableDamage) as error:
        rebuilt.unlink(missing_ok=True)
        if isinstance(error, TableDamage) or is_damage(error):
            raise DatabaseUnreadableError(f"the database {database} cannot be rebuilt from its tables: a table's own "
                                          f"pages are damaged ({error})") from error
        raise StorageError(f"cannot rebuild the database {database} beside it: {error} (it needs as much free space "
                           "as it takes)") from error
    kept = database.with_name(f"{database.name}.damaged-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
    _keep(database, kept)
    for suffix in LOG_SUFFIXES:  # a log left beside the new file would be played into it
        log = database.with_name(database.name + suffix)
        if log.exists():
            _keep(log, kept.with_name(kept.name + suffix))
            log.unlink()
    os.replace(rebuilt, database)
    _sync_folder(database.parent)
    return kept


def _copy_tables(source_path: Path, target_path: Path) -> None:
    """Every table's rows (with their rowids) into a new file holding the same schema, the indexes made after the
    rows; the copy is checked whole and row counts compared before it is used."""
    with closing(sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)) as source, \
            closing(sqlite3.connect(target_path)) as target:
        schema = source.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                                "AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index', rowid").fetchall()
        target.execute(f"PRAGMA user_version = {int(source.execute('PRAGMA user_version').fetchone()[0])}")
        for kind, name, sql in schema:
            target.execute(sql)
            if kind == "table":
                _copy_rows(source, target, name, "WITHOUT ROWID" not in sql.upper())
        target.commit()
        faults = [row[0] for row in target.execute("PRAGMA integrity_check(5)")]
        if faults != ["ok"]:
            raise TableDamage(f"the copy fails its check: {faults}")
    with open(target_path, "rb") as handle:
        os.fsync(handle.fileno())


def _copy_rows(source: sqlite3.Connection, target: sqlite3.Connection, table: str, rowid: bool) -> None:
    """The rows of ``table`` read from its own tree (``NOT INDEXED``), their rowids kept where it has them."""
    quoted = '"' + table.replace('"', '""') + '"'
    columns = [row[1] for row in source.execute(f"PRAGMA table_info({quoted})")]
    names = (["rowid"] if rowid else []) + ['"' + column.replace('"', '""') + '"' for column in columns]
    rows = source.execute(f"SELECT {', '.join(names)} FROM {quoted} NOT INDEXED")
    insert = f"INSERT INTO {quoted} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    copied = 0
    while batch := rows.fetchmany(BATCH):
        target.executemany(insert, batch)
        copied += len(batch)
    (counted,) = source.execute(f"SELECT count(*) FROM {quoted} NOT INDEXED").fetchone()
    if counted != copied:
        raise TableDamage(f"{table}: {copied} rows copied of {counted}")


def _keep(path: Path, kept: Path) -> None:
    """``path`` also under the name ``kept``: a second name where the file system has them, else a copy."""
    try:
        os.link(path, kept)
    except OSError:
        shutil.copyfile(path, kept)


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
