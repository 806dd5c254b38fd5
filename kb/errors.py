"""The root of the errors the knowledge base raises on purpose: their messages are written for the user."""

from __future__ import annotations


class KbError(Exception):
    """A failure the user can act on (a missing model, a busy writer, a bad setting); the CLI prints its message
    in one line. Each subclass also derives from the built-in error it refines, so ``except LookupError`` and the
    like keep working."""


class ModelNotFoundError(KbError, RuntimeError):
    """A model could not be loaded: the message says which, where it was looked for, and how to provide it."""


class BackendUnavailableError(ModelNotFoundError):
    """The configured backend (encoder, CLIP or reader) needs a package that is not installed; the message says
    which and how."""


class MissingDependencyError(KbError, ImportError):
    """An optional package that a feature needs is not installed; the message names the extra to install."""


class EncoderMismatchError(KbError, RuntimeError):
    """A space is being opened with an encoder other than the one that built it."""


class WriterBusyError(KbError, RuntimeError):
    """Another process is writing to this knowledge base."""


class SchemaError(KbError, RuntimeError):
    """The database was written by an incompatible version of this program."""


class SourceNotFoundError(KbError, LookupError):
    """No source with that path."""


class NotAnImageError(KbError, LookupError):
    """An image preview was asked for a chunk that is not an image."""


class ImageSearchUnavailable(KbError, RuntimeError):
    """A search by image needs the CLIP space and its model, and one of them is missing."""


class ScheduleError(KbError, ValueError):
    """A schedule that cannot be understood or never fires."""


class InvalidRequestError(KbError, ValueError):
    """A request the knowledge base cannot take as given: an empty query, an unknown search mode or modality."""


class ConfigurationError(KbError, ValueError):
    """A setting that cannot work: an unknown keyword tokenizer, an invalid index factory string, a ``kb.json``
    written by a newer version, a database URL that cannot be used."""


class LockFileError(KbError, RuntimeError):
    """The writer lock file is a symlink or not a regular file: it is never followed or truncated."""


class SourceUnavailableError(KbError, OSError):
    """A source folder that is missing, unreadable, or empty where documents came from (an unmounted share): the
    run fails and removes nothing."""


class StorageError(KbError, OSError):
    """The knowledge base's files or database cannot be written (read-only, disk full): the message names the
    cause, and the original error is its ``__cause__``."""


class DatabaseUnreadableError(KbError, RuntimeError):
    """The database cannot be opened or read: unreachable, or a SQLite file that is damaged or no database (then the
    message says to restore it from a backup)."""


class DatabaseUnreachableError(KbError, ConnectionError):
    """The database server stopped answering after the knowledge base opened (restarting, a network cut): the
    request fails in one line, and the next one connects again. Passing trouble, unlike a damaged database."""


class RejectedDataError(KbError, ValueError):
    """The database refused one piece of data (a string it cannot store, a constraint): that item fails alone."""
