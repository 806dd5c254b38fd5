"""Input files of a training run: their hashes for the training card."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kb.cards import DataFile
from kb.containment import read_named_file
from kb.text import is_text
from training.errors import TrainingDataError


@dataclass
class JsonlFile:
    """The JSON objects of a JSONL file, the lines left out by reason, and the hash of the bytes they came from.
    ``rows`` is read once, as it is parsed, and ``skipped`` is complete when it is exhausted: a file of millions of
    unusable lines (``{}``) never holds them all in memory."""

    rows: Iterator[dict[str, Any]]
    skipped: Counter[str]
    sha256: str


def data_file(path: Path, sha256: str, examples: int) -> DataFile:
    """The card's record of one input file, hashed from the bytes its examples were read from (read once: a file
    swapped between two reads would be recorded as what it became, not what trained the model)."""
    return DataFile(path=str(path.resolve()), sha256=sha256, examples=examples)


def read_jsonl(path: Path) -> JsonlFile:
    """The JSON objects of a JSONL file, one a line; blank lines are ignored, other lines counted as skipped."""
    try:
        raw = read_named_file(path)
        text = raw.decode("utf-8-sig")  # a byte-order mark is not part of line 1
    except (OSError, ValueError) as error:  # not a regular file, too large, not UTF-8
        raise TrainingDataError(f"{path}: cannot be read as UTF-8 JSONL ({error})") from error
    skipped = Counter[str]()
    return JsonlFile(_objects(text, skipped), skipped, hashlib.sha256(raw).hexdigest())


def _objects(text: str, skipped: Counter[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of ``text``'s lines, each parsed as it is reached; other non-blank lines counted."""
    for line in _lines(text):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, nested too deep, or a number too long to convert
            skipped["not JSON"] += 1
            continue
        if not isinstance(row, dict):
            skipped["not a JSON object"] += 1
        elif not is_text(row):
            skipped["a lone UTF-16 surrogate (not text)"] += 1
        else:
            yield row


def _lines(text: str) -> Iterator[str]:
    """``text``'s lines, one at a time (a list of them all took 50 bytes a line). JSONL lines end at "\n" only:
    JSON strings may hold U+2028, U+0085... that ``splitlines()`` would cut at."""
    start = 0
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        yield text[start:end].removesuffix("\r")
        start = end + 1


def in_validation(skipped: Counter[str]) -> Counter[str]:
    """Reasons validation examples were left out, named apart from the training examples' on the card."""
    return Counter({f"validation: {reason}": count for reason, count in skipped.items()})
