"""Input files of a training run: their hashes for the training card."""

from __future__ import annotations

import hashlib
from pathlib import Path

from kb.cards import DataFile


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_file(path: Path, examples: int = 0) -> DataFile:
    """The card's record of one input file."""
    return DataFile(path=str(path.resolve()), sha256=sha256_file(path), examples=examples)
