"""The posting cache stays within its memory budget, dropping the least recently used terms first, and keeps each
generation of a term apart."""

from __future__ import annotations

import numpy as np

from kb.storage.posting_cache import MB, PostingCache, TermPostings


def postings(count: int) -> TermPostings:
    return TermPostings(np.arange(count, dtype=np.int64), np.ones(count))


def test_the_least_recently_used_terms_go_first_and_the_budget_holds() -> None:
    cache = PostingCache(1)
    quarter = MB // 4 // 16  # postings of 16 bytes each: a quarter of the budget
    for term in ("a", "b", "c"):
        cache.put(term, 1, postings(quarter))
    assert cache.get("a", 1) is not None  # now the most recently used
    cache.put("d", 1, postings(3 * quarter))  # needs room: "b" then "c" go, "a" stays
    assert [cache.get(term, 1) is not None for term in "abcd"] == [True, False, False, True]
    assert cache.held == 4 * quarter * 16 == cache.budget
    assert cache.get("a", 2) is None  # another generation's postings are not these
    cache.put("e", 1, postings(MB))  # larger than the whole budget: not kept, nothing dropped for it
    assert cache.get("e", 1) is None and cache.get("a", 1) is not None
    cache.put("a", 1, postings(quarter))  # the same entry again is counted once
    assert cache.held == 4 * quarter * 16
