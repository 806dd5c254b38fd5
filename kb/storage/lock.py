"""One writer at a time: a ``filelock`` lock file that the operating system releases when its holder dies."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from kb.errors import LockFileError, StorageError, WriterBusyError


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
