"""Input files of a training run: their hashes for the training card."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from kb.cards import DataFile
from training.errors import TrainingDataError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_file(path: Path, examples: int = 0) -> DataFile:
    """The card's record of one input file."""
    return DataFile(path=str(path.resolve()), sha256=sha256_file(path), examples=examples)


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The JSON objects of a JSONL file, one a line; blank lines are ignored, other lines counted as skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of line 1
    except (OSError, UnicodeDecodeError) as error:
        raise TrainingDataError(f"{path}: cannot be read as UTF-8 JSONL ({error})") from error
    rows, skipped = [], Counter[str]()
    # JSONL lines end at "\n" only (JSON strings may hold U+2028, U+0085...: splitlines() would cut them)
    for line in (line.removesuffix("\r") for line in text.split("\n")):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            skipped["not JSON"] += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            skipped["not a JSON object"] += 1
    return rows, skipped


def in_validation(skipped: Counter[str]) -> Counter[str]:
    """Reasons validation examples were left out, named apart from the training examples' on the card."""
    return Counter({f"validation: {reason}": count for reason, count in skipped.items()})
