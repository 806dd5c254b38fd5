"""One writer at a time: a ``filelock`` lock file (SQLite) or a PostgreSQL advisory lock, released by the operating
system or the server when its holder dies."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from kb.errors import DatabaseUnreachableError, LockFileError, StorageError, WriterBusyError


class WriterLock:
    """Exclusive lock on ``<kb dir>/write.lock`` (``flock`` on Unix, ``msvcrt`` on Windows), holding the writer's
    pid; a killed holder leaves no stale lock behind. Not reentrant: a second acquire in the same thread is busy,
    as in another process. The file is never followed through a symlink (that would write into the link's target)
    and is never anything but a regular file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = FileLock(path, mode=0o600)

    def acquire(self, wait: bool = False) -> None:
        self._refuse_unusual_file()
        if self._lock.is_locked:
            raise WriterBusyError(f"this process (pid {os.getpid()}) is already writing to this knowledge base")
        try:
            self._lock.acquire(blocking=wait)
        except Timeout:
            raise WriterBusyError(f"another process (pid {self._holder()}) is writing to this knowledge base") from None
        except OSError as error:
            if error.errno == errno.ELOOP:  # swapped for a symlink since the check: refused by O_NOFOLLOW
                self._refuse_unusual_file()
            raise StorageError(f"cannot open the writer lock {self.path}: {error.strerror}") from error
        if _fallback_marker_pid(self._lock) is not None:
            return  # no flock here (Lustre -o noflock, some FUSE mounts): filelock's own marker names the holder
        try:
            self._write_pid()
        except BaseException:
            self._lock.release()
            raise

    def _refuse_unusual_file(self) -> None:
        """A clear error when the lock path is a symlink or not a regular file (a FIFO would block, a device...)."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISLNK(mode):
            raise LockFileError(f"{self.path} is a symlink; the writer lock refuses to follow it (remove it)")
        if not stat.S_ISREG(mode):
            raise LockFileError(f"{self.path} is not a regular file; the writer lock refuses to use it (remove it)")

    def _open(self, flags: int) -> int:
        """The lock file opened without following a symlink and without blocking, checked to be a regular file."""
        try:
            fd = os.open(self.path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            self._refuse_unusual_file()
            raise StorageError(f"cannot open the writer lock {self.path}: {error.strerror}") from error
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self._refuse_unusual_file()
        return fd

    def _write_pid(self) -> None:
        fd = self._open(os.O_WRONLY)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    def _holder(self) -> str:
        """The pid the holder wrote, or "unknown" (it may be between taking the lock and writing it)."""
        marked = _fallback_marker_pid(self._lock)
        if marked is not None:
            return str(marked)
        try:
            fd = self._open(os.O_RDONLY)
        except (StorageError, LockFileError):
            return "unknown"
        try:
            return "".join(filter(str.isdigit, os.read(fd, 64).decode(errors="replace"))) or "unknown"
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.release()


def _fallback_marker_pid(lock: FileLock) -> int | None:
    """The holder's pid in the marker file filelock falls back to where ``flock`` is not implemented, or None when
    the lock is a kernel lock. Overwriting that marker would hide a dead holder and block every writer for good."""
    try:
        return lock.pid  # filelock 4 raises AttributeError unless the lock fell back to its marker file
    except AttributeError:
        return None


class DatabaseWriterLock:
    """One writer across machines for a knowledge base in PostgreSQL: a session-level advisory lock, held on a
    connection of its own and released by the server when that connection ends (a killed holder included)."""

    KEY = 0x6B625F7772  # "kb_wr": one knowledge base per database

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None

    def acquire(self, wait: bool = False) -> None:
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            if wait:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self.KEY})
            elif not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.KEY}).scalar():
                raise WriterBusyError(f"another process is writing to this knowledge base{self._holder(connection)}")
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def _holder(self, connection: Connection) -> str:
        """The busy message's " (database session PID from ADDRESS)" for the writer holding this database's lock,
        or "" (it just let go). An advisory lock on one bigint shows in ``pg_locks`` as classid (high half), objid
        (low half) and objsubid 1, in the database it was taken in: another database of the server has its own."""
        holder = connection.execute(text(
            "SELECT a.client_addr, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid = CAST(:high AS oid) AND l.objid = CAST(:low AS oid) LIMIT 1"),
            {"high": self.KEY >> 32, "low": self.KEY & 0xFFFFFFFF}).first()
        if holder is None:
            return ""
        return f" (database session {holder.pid}" + (f" from {holder.client_addr})" if holder.client_addr else ")")

    def release(self) -> None:
        """Let go of the lock. A connection the server already dropped (it stopped mid-run) held it no longer: the
        server let go with the session, and the error that ended the run is the one to tell, not this one."""
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.KEY})
            except DatabaseUnreachableError:  # a dropped connection, as the database's error hook names it
                pass
            except DBAPIError as error:
                if not error.connection_invalidated:
                    raise
            finally:
                self._connection.close()
                self._connection = None

    def __enter__(self) -> DatabaseWriterLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.release()
