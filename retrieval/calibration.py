"""Putting similarities from different spaces on one scale before they are fused.

A cosine similarity means different things in different spaces: all-MiniLM puts a good text match near 0.6,
CLIP puts a good caption-to-image match near 0.3 and an image near a copy of itself at 1.0. What carries over
is how unusual a score is *for this query*: its standard score against the query's similarities to a fixed
sample of the space's distinct vectors (the "background"). Two scores with the same standard score are equally strong
evidence, so a CLIP score is moved onto the text scale as ``text_mean + z * text_std`` of the query's own text
background, and results from several CLIP lists are merged by ``z``.

A background is drawn only from vectors of the same modality: in the CLIP space an image and a text chunk come from
different towers and sit far apart (the modality gap), so texts say nothing about what is typical for images. A
modality with fewer than ``MIN_SAMPLE`` distinct vectors has no background (a handful cannot say how widely
similarities vary), and scores that would be moved by it stay raw cosines: a few photos beside many texts, or a
folder of photos alone, are still found, at the similarity CLIP gave them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from kb.storage.models import Space
from kb.storage.reading import Snapshot
from kb.types import Modality

SAMPLE_SIZE = 512  # background vectors per space and modality
OVERDRAW = 4  # vectors read per background vector wanted, so that repeats can be dropped
MIN_SAMPLE = 8  # fewer distinct vectors than this and a modality has no background: scores stay cosines
MIN_STD = 0.01  # a spread below this (near-identical background) would turn tiny differences into huge z
REUSED_FOR = 50  # commits a sample drawn from a large space stays in use: redrawing reads every vector id
LARGE = OVERDRAW * SAMPLE_SIZE  # vectors in a space whose sample a few commits cannot make unrepresentative


@dataclass(frozen=True)
class Typical:
    """A query's typical similarity in one space and how widely it varies."""

    mean: float
    std: float

    def z(self, score: float) -> float:
        return (score - self.mean) / self.std


class Backgrounds:
    """Background samples per space and modality, drawn from the database and kept until the space changes (a
    sample of a large space: until ``REUSED_FOR`` commits later, so that searches during an ingest do not each
    read every vector id again)."""

    def __init__(self) -> None:
        self._samples: dict[tuple[int, str | None], tuple[int, int, np.ndarray]] = {}
        self._lock = threading.Lock()

    def typical(self, snapshot: Snapshot, space: Space, query: np.ndarray,
                modality: Modality | None = None) -> Typical | None:
        """Mean and spread of ``query``'s similarities to the background of ``modality`` (all when None); None when
        it has fewer than ``MIN_SAMPLE`` distinct vectors."""
        sample = self._sample(snapshot, space, modality)
        if len(sample) < MIN_SAMPLE:
            return None
        similarities = sample @ query.astype(np.float32)
        return Typical(float(similarities.mean()), max(float(similarities.std()), MIN_STD))

    def _sample(self, snapshot: Snapshot, space: Space, modality: Modality | None) -> np.ndarray:
        """Up to ``SAMPLE_SIZE`` distinct vectors spread evenly over the space's chunks (of one modality)."""
        generation = snapshot.generation(space)
        key = (space.id, modality)
        with self._lock:
            cached = self._samples.get(key)
        if cached is not None:
            drawn_at, drawn_from, kept = cached
            if drawn_at == generation or (drawn_from >= LARGE and abs(generation - drawn_at) < REUSED_FOR):
                return kept
        ids = snapshot.vector_ids(space, modality)
        # Over-draw, then drop repeats: a logo on every page must not make the background look uniform.
        _, vectors = snapshot.stored_vectors(space, ids[:: max(1, len(ids) // (OVERDRAW * SAMPLE_SIZE))])
        _, first = np.unique(vectors, axis=0, return_index=True)
        distinct = vectors[np.sort(first)]
        sample = distinct[:: max(1, -(-len(distinct) // SAMPLE_SIZE))]
        with self._lock:
            self._samples[key] = (generation, len(ids), sample)
        return sample

def align(ranked: list[tuple[int, float]], source: Typical | None,
          target: Typical | None) -> list[tuple[int, float]]:
    """Scores from the ``source`` space moved onto the ``target`` space's scale by their standard scores; left as
    they are when either has no background."""
    if source is None or target is None:
        return list(ranked)
    return [(item, target.mean + source.z(score) * target.std) for item, score in ranked]


def merge_by_standard_score(lists: list[tuple[list[tuple[int, float]], Typical | None]]) -> list[tuple[int, float]]:
    """Lists from one space's different modalities, each with its background, merged best first by standard score;
    by raw cosine when one has no background (a raw cosine and a standard score are not on one scale)."""
    merged: list[tuple[int, float]] = []
    for ranked, typical in lists:
        if typical is None:
            merged = [pair for found, _ in lists for pair in found]
            break
        merged += [(item, typical.z(score)) for item, score in ranked]
    return sorted(merged, key=lambda pair: (-pair[1], pair[0]))
