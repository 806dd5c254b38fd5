"""Which texts repeat the validation side's passages: what must not reach training (no paragraph on both sides)."""

from __future__ import annotations

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
        self._runs: set[int] = set()  # hashes of every RUN-character stretch of the passages
        for passage in filter(None, dict.fromkeys(map(_squash, passages))):
            self._runs.update(hash(passage[start : start + RUN]) for start in range(max(1, len(passage) - RUN + 1)))

    def __call__(self, text: str) -> bool:
        squashed = _squash(text)
        step = STEP if len(squashed) >= RUN + STEP else 1
        return any(hash(squashed[start : start + RUN]) in self._runs
                   for start in range(0, max(1, len(squashed) - RUN + 1), step))
