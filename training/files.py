"""Input files of a training run: their hashes for the training card."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from answering.squad_eval import is_text
from kb.cards import DataFile
from kb.containment import read_named_file
from training.errors import TrainingDataError


def sha256_file(path: Path) -> str:
    try:
        return hashlib.sha256(read_named_file(path)).hexdigest()
    except (OSError, ValueError) as error:  # not a regular file, or too large
        raise TrainingDataError(f"{path}: {error}") from error


def data_file(path: Path, examples: int = 0) -> DataFile:
    """The card's record of one input file."""
    return DataFile(path=str(path.resolve()), sha256=sha256_file(path), examples=examples)


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The JSON objects of a JSONL file, one a line; blank lines are ignored, other lines counted as skipped."""
    try:
        text = read_named_file(path).decode("utf-8-sig")  # a byte-order mark is not part of line 1
    except (OSError, ValueError) as error:  # not a regular file, too large, not UTF-8
        raise TrainingDataError(f"{path}: cannot be read as UTF-8 JSONL ({error})") from error
    rows, skipped = [], Counter[str]()
    # JSONL lines end at "\n" only (JSON strings may hold U+2028, U+0085...: splitlines() would cut them)
    for line in (line.removesuffix("\r") for line in text.split("\n")):
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
            rows.append(row)
    return rows, skipped


def in_validation(skipped: Counter[str]) -> Counter[str]:
    """Reasons validation examples were left out, named apart from the training examples' on the card."""
    return Counter({f"validation: {reason}": count for reason, count in skipped.items()})
