"""One writer at a time: an advisory lock file that the operating system releases when its holder dies."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType

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
