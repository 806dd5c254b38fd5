"""One writer at a time: an advisory lock file (SQLite) or a PostgreSQL advisory lock, released by the operating
system or the server when its holder dies."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType

from sqlalchemy import Connection, Engine, text

from kb.errors import LockFileError, StorageError, WriterBusyError


class WriterLock:
    """Exclusive ``flock`` on ``<kb dir>/write.lock``; a killed holder leaves no stale lock behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait: bool = False) -> None:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = "".join(filter(str.isdigit, os.read(fd, 64).decode(errors="replace"))) or "unknown"
            os.close(fd)
            raise WriterBusyError(f"another process (pid {holder}) is writing to this knowledge base") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def _open(self) -> int:
        """The lock file, created if missing; never through a symlink (it would truncate the link's target) and
        never anything but a regular file."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise LockFileError(f"{self.path} is a symlink; the writer lock refuses to follow it (remove it)") \
                    from None
            raise StorageError(f"cannot open the writer lock {self.path}: {error.strerror}") from error
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise LockFileError(f"{self.path} is not a regular file; the writer lock refuses to use it (remove it)")
        return fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.release()


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
                holder = connection.execute(text(
                    "SELECT a.client_addr, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = :low LIMIT 1"),
                    {"low": self.KEY & 0xFFFFFFFF}).first()
                where = "" if holder is None else f" (database session {holder.pid}" + \
                    (f" from {holder.client_addr})" if holder.client_addr else ")")
                raise WriterBusyError(f"another process is writing to this knowledge base{where}")
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.KEY})
            finally:
                self._connection.close()
                self._connection = None

    def __enter__(self) -> DatabaseWriterLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.release()
