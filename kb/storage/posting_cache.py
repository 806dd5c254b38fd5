"""Keyword postings decoded into arrays and kept between searches, the least recently used dropped first to stay
within a budget of memory.

A question's common terms hold a large share of the chunks: scoring their postings in SQL sorts every one of them
at every search, while their arrays, once read, are summed in a few milliseconds. Entries are keyed by the keyword
index's generation (``keyword_totals.generation``, advanced in the transaction of every write of postings or
totals), so a search only ever scores the postings its own snapshot sees.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

MB = 2**20


@dataclass(frozen=True)
class TermPostings:
    """One term's postings at one generation: the chunks holding it, and each posting's BM25 share before the
    term's idf (its ``tf`` part, which depends on the generation's average chunk length)."""

    chunk_ids: np.ndarray  # int64
    shares: np.ndarray  # float64

    @property
    def nbytes(self) -> int:
        return int(self.chunk_ids.nbytes + self.shares.nbytes)


class PostingCache:
    """Thread-safe: the searches of one process share it."""

    def __init__(self, budget_mb: int) -> None:
        self.budget = budget_mb * MB
        self.held = 0  # bytes
        self._entries: OrderedDict[tuple[str, int], TermPostings] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, term: str, generation: int) -> TermPostings | None:
        with self._lock:
            postings = self._entries.get((term, generation))
            if postings is not None:
                self._entries.move_to_end((term, generation))
            return postings

    def put(self, term: str, generation: int, postings: TermPostings) -> None:
        """Keep ``postings`` unless they alone exceed the budget, dropping the least recently used to make room
        (entries of older generations are never used again and go first in time)."""
        if postings.nbytes > self.budget:
            return
        with self._lock:
            previous = self._entries.pop((term, generation), None)
            self.held -= previous.nbytes if previous is not None else 0
            while self._entries and self.held + postings.nbytes > self.budget:
                self.held -= self._entries.popitem(last=False)[1].nbytes
            self._entries[(term, generation)] = postings
            self.held += postings.nbytes
