"""Which texts repeat the validation side's passages: what must not reach training (no paragraph on both sides)."""

from __future__ import annotations

from array import array
from collections.abc import Iterable

RUN = 120  # characters (whitespace squashed) that two texts must share to count as overlapping
STEP = 40  # a text is looked up every STEP characters, so any shared stretch of RUN + STEP is found


def _squash(text: str) -> str:
    return " ".join(text.split())


class PassageOverlap:
    """Tells whether a text shares a stretch of RUN + STEP characters with any of ``passages`` (whitespace ignored):
    a passage itself, a piece of one, or a chunk that runs across one. Texts and passages shorter than RUN are
    compared whole."""

    def __init__(self, passages: Iterable[str]) -> None:
        import numpy as np

        runs = array("q")  # hashes of every RUN-character stretch of the passages, 8 bytes each (a set took ~90)
        for passage in filter(None, dict.fromkeys(map(_squash, passages))):
            runs.extend(hash(passage[start : start + RUN]) for start in range(max(1, len(passage) - RUN + 1)))
        self._runs = np.frombuffer(runs, dtype=np.int64)  # the array's own memory, sorted in place for binary search
        self._runs.sort()  # (np.unique took 10 s and 600 MB for 10 million stretches; repeats do no harm)

    def __call__(self, text: str) -> bool:
        import numpy as np

        squashed = _squash(text)
        step = STEP if len(squashed) >= RUN + STEP else 1
        if not len(self._runs):
            return False
        looked_up = np.fromiter((hash(squashed[start : start + RUN])
                                 for start in range(0, max(1, len(squashed) - RUN + 1), step)), dtype=np.int64)
        found = np.minimum(np.searchsorted(self._runs, looked_up), len(self._runs) - 1)
        return bool((self._runs[found] == looked_up).any())
