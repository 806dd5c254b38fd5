"""The validation split every kind shares: whole groups (articles, documents, images) held out in a seeded order."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable


def held_out_groups(groups: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The groups to hold out: taken in an order set by ``seed`` alone (not by the order of the data) until they
    hold ``fraction`` of the examples (``groups`` names each example's group); at least one group stays to train."""
    counts = Counter(groups)
    wanted = fraction * sum(counts.values())
    held: set[str] = set()
    taken = 0
    for group in sorted(counts, key=lambda key: hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()):
        if taken >= wanted or len(held) + 1 >= len(counts):
            break
        held.add(group)
        taken += counts[group]
    return held
