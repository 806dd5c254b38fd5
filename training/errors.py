"""Errors of ``kb train``: each says what is wrong with the data or the output folder and what to do."""

from __future__ import annotations

from kb.errors import KbError


class TrainingDataError(KbError, ValueError):
    """The training data cannot be read, or holds no usable example."""


class OutputExistsError(KbError, FileExistsError):
    """The output folder already holds something and neither ``--overwrite`` nor ``--resume`` was given."""


def unreadable_checkpoint(what: str, error: BaseException) -> OutputExistsError:
    """The error for a checkpoint ``what`` that ``--resume`` cannot read back, quoting why in one line."""
    reason = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
    return OutputExistsError(f"{what} cannot be read back ({reason}); pass --overwrite to start again")
