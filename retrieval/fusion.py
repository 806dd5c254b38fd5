"""Fusing ranked lists from different retrievers whose scores live on different scales."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Ranked = Sequence[tuple[int, float]]


def _ordered(fused: dict[int, float], tie_break: Mapping[int, float] | None = None) -> list[tuple[int, float]]:
    """Best first; equal scores ordered by ``tie_break`` (higher first) when given, then by id."""
    second = tie_break or {}
    return sorted(fused.items(), key=lambda pair: (-pair[1], -second.get(pair[0], 0.0), pair[0]))


def reciprocal_rank_fusion(lists: Sequence[Ranked], k: int = 60,
                           tie_break: Mapping[int, float] | None = None) -> list[tuple[int, float]]:
    """RRF: each list contributes ``1 / (k + rank)``; scale-free, so raw scores need no calibration."""
    fused: dict[int, float] = {}
    for ranked in lists:
        for rank, (item, _score) in enumerate(ranked, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return _ordered(fused, tie_break)


def relative_score_fusion(lists: Sequence[Ranked], weights: Sequence[float] | None = None,
                          tie_break: Mapping[int, float] | None = None) -> list[tuple[int, float]]:
    """Min-max normalise each list's scores to [0, 1], then add them with ``weights`` (equal by default)."""
    weights = weights or [1.0 / len(lists)] * len(lists)
    fused: dict[int, float] = {}
    for ranked, weight in zip(lists, weights):
        if not ranked:
            continue
        scores = [score for _, score in ranked]
        low, high = min(scores), max(scores)
        span = high - low
        for item, score in ranked:
            normalised = (score - low) / span if span > 0 else 1.0
            fused[item] = fused.get(item, 0.0) + weight * normalised
    return _ordered(fused, tie_break)


def weighted_score_fusion(lists: Sequence[Ranked], weights: Sequence[float]) -> list[tuple[int, float]]:
    """Weighted sum of scores that are already calibrated to [0, 1] (cosine similarity, normalised BM25).

    Unlike min-max scaling, a weak best match stays weak: a chunk sharing one common word with the query does
    not get the keyword list's full weight just because it is that list's top result.
    """
    fused: dict[int, float] = {}
    for ranked, weight in zip(lists, weights):
        for item, score in ranked:
            fused[item] = fused.get(item, 0.0) + weight * max(score, 0.0)
    return _ordered(fused)
