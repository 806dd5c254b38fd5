"""Files each holding one unique identifier among common words: what users search for by exact code."""

from __future__ import annotations

import random
import string
from pathlib import Path

COMMON_WORDS = ["customer", "delivery", "invoice", "payment", "warehouse", "shipment", "account", "product", "service",
                "request", "update", "status", "team", "office", "week", "month", "report", "price", "item"]
COMMON_WORD = "order"  # in every file, so a query can add a word that matches everything


def identifier(rng: random.Random) -> str:
    """A code like ``zq094x``: two letters, three digits, a letter."""
    letters = string.ascii_lowercase
    return "".join(rng.choices(letters, k=2)) + "".join(rng.choices(string.digits, k=3)) + rng.choice(letters)


def write_coded_files(folder: Path, count: int = 300, seed: int = 14) -> dict[str, str]:
    """``count`` files "Record <code>. <twelve common words, 'order' among them>."; returns {code: file name}."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    codes: dict[str, str] = {}
    while len(codes) < count:
        value = identifier(rng)
        if value in codes:
            continue
        name = f"record-{len(codes):03d}.txt"
        words = rng.sample(COMMON_WORDS, 12)
        words.insert(rng.randrange(len(words)), COMMON_WORD)
        (folder / name).write_text(f"Record {value}. " + " ".join(words).capitalize() + ".", encoding="utf-8")
        codes[value] = name
    return codes
