"""Errors of ``kb train``: each says what is wrong with the data or the output folder and what to do."""

from __future__ import annotations

from kb.errors import KbError


class TrainingDataError(KbError, ValueError):
    """The training data cannot be read, or holds no usable example."""


class OutputExistsError(KbError, FileExistsError):
    """The output folder already holds something and neither ``--overwrite`` nor ``--resume`` was given."""
