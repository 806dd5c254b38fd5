"""Running ``FileReader`` where a hostile file cannot hold the ingest: a worker process with a time and memory budget.

A helper process (the "zygote") imports the loaders once per ingesting process and forks a fresh worker on request,
in milliseconds; one worker serves a run's files one at a time. The ingest waits for each answer in short slices:
a file over its ``file_timeout`` (for reading and loading it, and again for each image its OCR reads), or a stop
request (SIGTERM to the scheduler), kills the worker at once, whatever it is blocked in, and the next file gets a
new one. The worker's memory is capped with ``RLIMIT_DATA``, so a file
that would need more fails with ``MemoryError`` instead of taking the machine down. Workers die with the zygote,
and the zygote when the ingesting process goes away.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ingestion.loaders import LoadError
from ingestion.reading import Fetched, FileJob, FileReader, Loaded, LoadFailed, ReadFailed, ReadSettings, fetch
from kb.errors import KbError, MissingDependencyError, ModelNotFoundError

_POLL_SECONDS = 0.05  # how often a waiting ingest looks for a stop request
_PR_SET_PDEATHSIG = 1


class FileBudget:
    """The time one file may take (``timeout`` seconds, from ``now``): reading and loading it share one budget, whose
    clock stops while OCR reads an image, and each image OCR reads has a budget of its own."""

    def __init__(self, timeout: float, now: float) -> None:
        self.timeout = timeout
        self.deadline = now + timeout
        self.reading = False  # OCR is reading an image
        self._loading_left = timeout

    def ocr(self, reading: bool, now: float) -> None:
        """OCR began (``reading``) or finished reading an image at ``now``."""
        if reading and not self.reading:
            self._loading_left = max(self.deadline - now, 0.0)
        self.deadline, self.reading = now + (self.timeout if reading else self._loading_left), reading

    def doing(self, read: bool) -> str:
        """What the file was doing when its time ran out: reading it (until it was ``read``), loading it, or OCR."""
        return "reading" if not read else "reading the text in an image" if self.reading else "loading"


class StopRequested(KbError, InterruptedError):
    """The run was asked to stop while a file was being read; the file is left for the next run."""


class FileRunner(Protocol):
    """Reads and loads files for an ingest: in this process, or in a worker that can be stopped.

    ``fetch`` reads a file and loads it unless its hash is in ``skip``; it raises ``ReadFailed`` when the file
    could not be read (nothing to record) and ``LoadFailed`` when it was read but not loaded. ``load`` loads the
    file the last ``fetch`` read, for a caller that skipped it and changed its mind.
    """

    def fetch(self, job: FileJob, skip: frozenset[str]) -> Fetched: ...

    def load(self, job: FileJob, content_hash: str) -> Loaded: ...

    def close(self) -> None: ...


class InProcessRunner:
    """``FileReader`` in the ingest's own process: no time or memory budget beyond the loaders' own limits."""

    def __init__(self, settings: ReadSettings) -> None:
        self.reader = FileReader(settings)

    def fetch(self, job: FileJob, skip: frozenset[str]) -> Fetched:
        read: list[str] = []
        return _one_file(lambda: fetch(self.reader, job, skip, read.append), lambda: read[0] if read else None)

    def load(self, job: FileJob, content_hash: str) -> Loaded:
        return _one_file(lambda: self.reader.load(job), lambda: content_hash)

    def close(self) -> None:
        pass


class WorkerRunner:
    """``FileReader`` in a worker process, each call within ``timeout`` seconds and ``memory_mb`` of memory."""

    def __init__(self, settings: ReadSettings, timeout: float, memory_mb: int,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.settings = settings
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.should_stop = should_stop
        self._connection: Connection | None = None
        self._pid = 0
        self._pidfd: int | None = None

    def start(self) -> None:
        """Start the worker, if it is not running: the first file that needs reading does (a run over unchanged
        files starts none)."""
        if self._connection is not None:
            return
        self._connection, self._pid, self._pidfd = _zygote().fork()
        self._connection.send((self.settings, self.memory_mb))

    def fetch(self, job: FileJob, skip: frozenset[str]) -> Fetched:
        result: Fetched = self._call(("fetch", job, skip), None)
        return result

    def load(self, job: FileJob, content_hash: str) -> Loaded:
        result: Loaded = self._call(("load", job), content_hash)
        return result

    def _call(self, request: tuple[Any, ...], content_hash: str | None) -> Any:
        """Send ``request`` and wait for its answer, within the time budget, watching for a stop request.

        The worker says the file's hash as soon as it has read it: a failure after that is the file's (recorded,
        ``LoadFailed``), one before it a failure to read (``ReadFailed``). It says when each image's OCR begins and
        ends: reading and loading share one ``timeout``, whose clock stops while an image is read, and each image
        read gets ``timeout`` of its own (the reader stops a file's OCR once it has read for ``ocr_file_seconds``).
        """
        self.start()
        assert self._connection is not None
        try:
            self._connection.send(request)
        except (BrokenPipeError, ConnectionError):
            self._kill()
            raise ReadFailed("the loader process stopped before reading the file") from None
        budget = FileBudget(self.timeout, time.monotonic())
        while True:
            if self._connection.poll(_POLL_SECONDS):
                try:
                    status, value = self._connection.recv()
                except (EOFError, ConnectionError):
                    self._kill()
                    raise _failure("the loader process crashed", content_hash) from None
                if status == "read":
                    content_hash = value
                    continue
                if status == "ocr":
                    budget.ocr(value, time.monotonic())
                    continue
                return self._result(status, value, content_hash)
            if self.should_stop():
                self._kill()
                raise StopRequested("stopped on request while a file was being read")
            if time.monotonic() >= budget.deadline:
                self._kill()
                doing = budget.doing(content_hash is not None)
                raise _failure(f"over budget: {doing} took more than {self.timeout:g} s (file_timeout)", content_hash)

    def _result(self, status: str, value: Any, content_hash: str | None) -> Any:
        if status == "ok":
            return value
        if status == "environment":
            raise value
        if status == "memory":
            self._kill()  # a process that ran out of memory is not trusted with the next file
            value = f"over budget: loading needs more than {self.memory_mb} MB of memory (worker_memory_mb)"
        raise ReadFailed(value) if status == "unread" else _failure(value, content_hash)

    def _kill(self) -> None:
        """Stop the worker at once; a process stuck in the kernel dies when it leaves it, unwaited for."""
        if self._connection is None:
            return
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            else:
                os.kill(self._pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it had already exited
        self.close()

    def close(self) -> None:
        """Let the worker go: it exits when its connection closes."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def _failure(reason: str, content_hash: str | None) -> LoadError:
    """A file that failed after its bytes were read is the file's failure; before, a failure to read it."""
    return ReadFailed(reason) if content_hash is None else LoadFailed(reason, content_hash)


_Result = TypeVar("_Result")
# What this machine lacks (the OCR models, a package) is the run's error, said once, not a failure of every file.
ENVIRONMENT_ERRORS = (ModelNotFoundError, MissingDependencyError)


def _reason(error: Exception) -> str:
    """Why a file failed, for the report: a ``LoadError`` says it; any other error is a loader bug, named."""
    return str(error) if isinstance(error, LoadError) else f"unexpected {type(error).__name__}: {error}"


def _one_file(work: Callable[[], _Result], content_hash: Callable[[], str | None]) -> _Result:
    """``work`` on one file in this process: any error but the environment's fails that file only (with its hash,
    once read), as in a worker."""
    try:
        return work()
    except (ReadFailed, *ENVIRONMENT_ERRORS):
        raise
    except Exception as error:  # a loader bug must cost one file, never the run
        raise _failure(_reason(error), content_hash()) from error


def file_runner(settings: ReadSettings, isolate: bool, timeout: float, memory_mb: int,
                should_stop: Callable[[], bool]) -> FileRunner:
    """A worker with the budget when ``isolate`` (the default), else reading in this process."""
    if isolate:
        return WorkerRunner(settings, timeout, memory_mb, should_stop)
    return InProcessRunner(settings)


def serve(connection: Connection) -> None:
    """A worker's loop: take (settings, memory budget), then answer ("fetch", job, skip) and ("load", job)
    requests until the connection closes.

    Answers are (status, value): "read" with the file's hash as soon as it is read (a fetch goes on), then "ok"
    with the result, "unread" or "failed" with the reason, "environment" with an error of this machine's (the
    run's, raised again by the ingest), or "memory" when the file needed more than the budget.
    """
    try:
        settings, memory_mb = connection.recv()
    except (EOFError, ConnectionError):
        return
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    reader = FileReader(settings, on_ocr=lambda reading: connection.send(("ocr", reading)))
    while True:
        try:
            request = connection.recv()
        except (EOFError, ConnectionError):
            return
        try:
            if request[0] == "fetch":
                answer: tuple[str, Any] = ("ok", fetch(reader, request[1], request[2],
                                                       lambda found: connection.send(("read", found))))
            else:
                answer = ("ok", reader.load(request[1]))
        except MemoryError:
            answer = ("memory", None)
        except ReadFailed as error:
            answer = ("unread", str(error))
        except ENVIRONMENT_ERRORS as error:
            answer = ("environment", error)
        except Exception as error:  # a loader bug must cost one file, never the run
            answer = ("failed", _reason(error))
        try:
            connection.send(answer)
        except MemoryError:
            connection.send(("memory", None))


class _Zygote:
    """The helper process that forks workers: started once per ingesting process, with the loaders imported."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parent.parent)  # so it imports this very copy of the code
        path = os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"from ingestion.isolation import zygote_main; zygote_main({theirs.fileno()})"],
            pass_fds=[theirs.fileno()], env={**os.environ, "PYTHONPATH": path}, stdin=subprocess.DEVNULL)
        theirs.close()
        self.control = ours
        self.lock = threading.Lock()
        self.owner = os.getpid()

    def alive(self) -> bool:
        """Running, and this process's own (a forked child of the ingesting process starts its own)."""
        return self.owner == os.getpid() and self.process.poll() is None

    def fork(self) -> tuple[Connection, int, int | None]:
        """A new worker: (its connection, its pid, a pidfd to signal it with where the OS has them)."""
        ours, theirs = socket.socketpair()
        try:
            with self.lock:
                socket.send_fds(self.control, [b"fork"], [theirs.fileno()])
                message, fds, _, _ = socket.recv_fds(self.control, 64, 1)
        except OSError as error:
            ours.close()
            raise LoadError(f"the loader process could not be started: {error.strerror}") from None
        finally:
            theirs.close()
        if not message:
            ours.close()
            raise LoadError("the loader process could not be started (its helper exited)")
        return Connection(ours.detach()), int(message), fds[0] if fds else None


_ZYGOTE: _Zygote | None = None
_ZYGOTE_LOCK = threading.Lock()


def _zygote() -> _Zygote:
    global _ZYGOTE
    with _ZYGOTE_LOCK:
        if _ZYGOTE is None or not _ZYGOTE.alive():
            _ZYGOTE = _Zygote()
        return _ZYGOTE


def zygote_main(control_fd: int) -> None:
    """The helper's loop: for each received socket, fork a worker serving it, and answer with its pid (and a
    pidfd); exit when the ingesting process closes the control socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the ingest decides
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps exited workers
    # What libraries say about a file's oddities is noise on the ingest's terminal; its report says what matters.
    warnings.simplefilter("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    control = socket.socket(fileno=control_fd)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 64, 1)
        except OSError:
            return
        if not message or not fds:
            return
        pid = os.fork()
        if pid == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _die_with_parent()
            try:
                serve(Connection(fds[0]))
            finally:
                os._exit(0)
        os.close(fds[0])
        try:
            pidfd = [os.pidfd_open(pid)] if hasattr(os, "pidfd_open") else []
        except OSError:  # already gone, or an OS without pidfds
            pidfd = []
        socket.send_fds(control, [str(pid).encode()], pidfd)
        for descriptor in pidfd:
            os.close(descriptor)


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the zygote exits, even mid-read (elsewhere, closed sockets end it)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
