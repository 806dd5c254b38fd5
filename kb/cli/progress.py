"""An ingest's progress on screen: a bar on a terminal, periodic lines in a log (cron, CI), always on stderr.

Standard output stays for the report (and ``--json``), so a script can read it while a person, or a log file,
sees what the run is doing: each phase as it starts, and how far the reading has come.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack
from typing import TextIO

from kb.cli.logs import OUR_LOGGERS
from kb.cli.terminal import is_terminal, one_line
from kb.types import IngestPhase

LOG_INTERVAL = 15.0  # seconds between progress lines in a log
# Phases that come once per run (or per removal): always worth a line. The others recur with every batch.
ONCE = {"scanning", "loading models", "saving indexes", "removing"}


class LogProgress:
    """Plain lines for a log: one-off phases as they start, and the state of the run every ``interval`` seconds."""

    def __init__(self, stream: TextIO, interval: float = LOG_INTERVAL) -> None:
        self.stream = stream
        self.interval = interval
        self.started = time.monotonic()
        self.last_line = self.started
        self.done = self.total = 0
        self.current = ""

    def phase(self, name: IngestPhase, detail: str = "") -> None:
        self.current = f"{name} {one_line(detail)}".strip()
        if name in ONCE:
            self._line(self.current)
        else:
            self._maybe_line()

    def file(self, done: int, total: int, relpath: str) -> None:
        self.done, self.total = done, total
        self._maybe_line()

    def _maybe_line(self) -> None:
        if time.monotonic() - self.last_line >= self.interval:
            share = f" ({100 * self.done // self.total}%)" if self.total else ""
            self._line(f"{self.done}/{self.total} files read{share}, now {self.current}")

    def _line(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"kb: [{elapsed:5.0f} s] {text}", file=self.stream, flush=True)
        self.last_line = time.monotonic()


class BarProgress:
    """A progress bar for a person at a terminal: the bar counts files read, its label names the current phase."""

    def __init__(self, stream: TextIO) -> None:
        from tqdm import tqdm

        self.stream = stream
        self.bar = tqdm(total=0, unit="file", file=stream, dynamic_ncols=True, leave=True, desc="starting")

    def phase(self, name: IngestPhase, detail: str = "") -> None:
        self.bar.set_description_str(name, refresh=False)
        self.bar.set_postfix_str(one_line(detail)[-40:], refresh=True)

    def file(self, done: int, total: int, relpath: str) -> None:
        if self.bar.total != total:
            self.bar.reset(total=total)
        self.bar.set_postfix_str(one_line(relpath)[-40:], refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


class Progress:
    """The right progress for ``stream`` (a bar on a terminal, lines elsewhere), as a context manager.

    While a bar is shown, our log lines are written above it (``tqdm.write``), not into the middle of it.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.shown: BarProgress | LogProgress | None = None
        self._bar_shown = ExitStack()

    def __enter__(self) -> BarProgress | LogProgress:
        if not is_terminal(self.stream):
            self.shown = LogProgress(self.stream)
            return self.shown
        from tqdm.contrib.logging import logging_redirect_tqdm

        self.shown = bar = BarProgress(self.stream)
        self._bar_shown.callback(bar.close)
        self._bar_shown.enter_context(logging_redirect_tqdm([logging.getLogger(name) for name in OUR_LOGGERS]))
        return bar

    def __exit__(self, *_exc: object) -> None:
        self._bar_shown.close()
