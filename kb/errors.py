"""The root of the errors the knowledge base raises on purpose: their messages are written for the user."""

from __future__ import annotations


class KbError(Exception):
    """A failure the user can act on (a missing model, a busy writer, a bad setting); the CLI prints its message
    in one line. Each subclass also derives from the built-in error it refines, so ``except LookupError`` and the
    like keep working."""


class SourceUnavailableError(KbError, OSError):
    """A source folder that is missing, unreadable, or empty where documents came from (an unmounted share): the
    run fails and removes nothing."""


class StorageError(KbError, OSError):
    """The knowledge base's files or database cannot be written (read-only, disk full): the message names the
    cause, and the original error is its ``__cause__``."""


class ConfigurationError(KbError, ValueError):
    """A setting that cannot work (a database URL that cannot be used, say)."""
