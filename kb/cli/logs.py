"""Where log records go when the ``kb`` command runs: libraries' warnings to a log file, not the terminal.

Model libraries and pypdf warn about things the ingest report already says (a malformed PDF, an unused weight);
on a terminal that is noise. The command keeps them in ``<kb dir>/kb.log`` (rotated), shows the knowledge base's
own warnings on stderr, and on a terminal also its progress notes (which model it is loading, an index rebuild).
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from kb.cli.terminal import is_terminal

OUR_LOGGERS = ("kb", "ingestion", "retrieval", "answering", "training")
LOG_FILE = "kb.log"
LOG_BYTES = 2 * 2**20


_installed: list[tuple[logging.Logger, logging.Handler]] = []


def configure_logging(directory: Path | None) -> None:
    """Our warnings (and, on a terminal, notes) on stderr; every library's warnings in ``directory``'s log file.

    Calling it again (several commands in one process, as tests do) replaces what the last call installed.
    """
    for logger, old in _installed:
        logger.removeHandler(old)
    _installed.clear()
    logging.raiseExceptions = False  # a log file on a full disk must not print tracebacks over the real error
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if directory is not None:
        handler = logging.handlers.RotatingFileHandler(directory / LOG_FILE, maxBytes=LOG_BYTES, backupCount=1,
                                                       encoding="utf-8", delay=True)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        _installed.append((root, handler))
    screen = logging.StreamHandler(sys.stderr)
    screen.setLevel(logging.INFO if is_terminal(sys.stderr) else logging.WARNING)
    screen.setFormatter(logging.Formatter("kb: %(message)s"))
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        _installed.append((logger, screen))
        logger.propagate = directory is not None  # to the log file as well
    for logger, handler in _installed:
        logger.addHandler(handler)
