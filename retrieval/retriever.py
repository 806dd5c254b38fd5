"""Retrieval across modalities: text chunks and images fused into one ranked list of citable hits."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from kb.arguments import whole_number
from kb.config import Settings
from kb.encoders.base import TextEncoder
from kb.encoders.clip import ClipEncoder
from kb.encoders.factory import export_cache
from kb.errors import ImageSearchUnavailable, InvalidRequestError, ModelNotFoundError
from kb.keywords import KeywordTokenizer, for_scheme
from kb.language import question_language
from kb.storage.models import Space
from kb.storage.reading import Snapshot
from kb.storage.store import Store
from kb.types import CLIP_SPACE, MODALITIES, SEARCH_MODES, TEXT_SPACE, Filters, Hit, ImageInfo, Modality, SearchMode
from retrieval.calibration import Backgrounds, Typical, align, merge_by_standard_score
from retrieval.dense import dense_scores
from retrieval.evidence import best_of_both, one_hit_per_evidence
from retrieval.fusion import reciprocal_rank_fusion, relative_score_fusion, weighted_score_fusion
from retrieval.keyword import keyword_scores, keyword_search, query_terms
from retrieval.query import cut_query, readable_query
from retrieval.rerank import CrossEncoderReranker, reranker_enabled
from retrieval.translation import english_gloss

log = logging.getLogger(__name__)
CLIP_RETRY_SECONDS = 300.0
QUERY_CACHE = 64  # recent query texts whose text-space vectors are kept
DEEPEST = 4096  # candidates per list a search reads at most, looking deeper for hits that repeats folded away
MAX_K = 10_000  # hits a search returns at most: its candidate ids stay within one SQL statement's parameters
Ranked = list[tuple[int, float]]



def modality_set(modalities: str | Iterable[str] | None) -> frozenset[Modality]:
    """The modalities a search returns (all by default; one may be named alone); an unknown one is an error."""
    given = [modalities] if isinstance(modalities, str) else modalities if modalities is not None else MODALITIES
    names = list(given) if isinstance(given, Iterable) else [given]
    if not all(isinstance(name, str) for name in names):
        raise InvalidRequestError(f"modalities must be names, some of {', '.join(MODALITIES)} (got "
                                  f"{repr(modalities)[:40]})")
    wanted = frozenset(names)
    unknown = wanted - set(MODALITIES)
    if unknown or not wanted:
        raise InvalidRequestError(f"unknown modalities {sorted(unknown)}; use some of {', '.join(MODALITIES)}")
    return wanted  # type: ignore[return-value]  # checked against MODALITIES above


class Retriever:
    """Finds the chunks and images that answer a query.

    A text query is matched in the text space (``dense``), by BM25 (``keyword``) or both fused (``hybrid``, the
    default); images are found by their descriptions the same way and, through the CLIP space, by what they show.
    An image query is matched in the CLIP space against images and text chunks alike.
    """

    def __init__(self, store: Store, encoder: TextEncoder, keywords: KeywordTokenizer, settings: Settings,
                 clip: ClipEncoder | None = None) -> None:
        self.store = store
        self.encoder = encoder
        self.keywords = keywords
        self.settings = settings
        self.clip = clip
        self.backgrounds = Backgrounds()
        # A question is often searched twice in a row (ask: its passages, then its images): encode it once.
        self._query_vector = lru_cache(maxsize=QUERY_CACHE)(lambda text: self.encoder.encode([text])[0])
        # Likewise its keyword terms (a long Chinese question took seconds to segment), per tokenizer.
        self._query_terms = lru_cache(maxsize=QUERY_CACHE)(lambda keywords, text: tuple(query_terms(keywords, text)))
        self._clip_retry_at = 0.0  # after a failed CLIP load, text searches skip CLIP until then
        self.reranker = CrossEncoderReranker(settings.reranker.model, settings.device, settings.reranker.backend,
                                             export_cache(settings)) if reranker_enabled(settings.reranker.model) \
            else None

    def search(self, query: str, k: int = 5, mode: SearchMode = "hybrid", filters: Filters | None = None,
               modalities: Iterable[str] | None = None) -> list[Hit]:
        query = readable_query(query)
        _check_k(k)
        if mode not in SEARCH_MODES:
            raise InvalidRequestError(f"unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)}")
        wanted = modality_set(modalities)
        if mode != "dense":
            self.keywords = for_scheme(self.keywords, self.store.check_keyword_tokenizer(self.keywords.scheme))
        language = question_language(query)
        hits = self._search(query, k, mode, filters, wanted, language)
        gloss = english_gloss(query) if self.settings.cross_lingual.enabled else None
        if gloss is not None:  # searched as the question is: its words are the question's, not an English sentence
            gloss = cut_query(gloss)  # and cut as it is (each 客 of a long one glossed "guest ": 17 times longer)
            glossed = self._search(gloss, k, mode, filters, wanted, language)
            weight = self.settings.cross_lingual.weight
            hits = best_of_both(hits, [hit.model_copy(update={"matched_query": gloss, "score": hit.score * weight})
                                       for hit in glossed])
        if self.reranker is not None:
            hits = self.reranker.rerank(query, hits, self.settings.reranker.weight, self.settings.reranker.candidates)
        return hits[:k]

    def _search(self, query: str, k: int, mode: SearchMode, filters: Filters | None, wanted: frozenset[Modality],
                language: str | None) -> list[Hit]:
        """The hits for one query text, fused with the keyword weight of ``language``, best first, as many as the
        reranker (if any) reads."""
        wanted_hits = max(k, self.settings.reranker.candidates) if self.reranker is not None else k
        # Deeper than the hits wanted: candidates for fusion, and spare hits for those that fold into others (see
        # evidence.py), deeper still when repeats fill the lists (_deepened).
        depth = max(2 * wanted_hits, self.settings.fusion.candidates)
        if wanted == {"image"}:  # ask's search for images: in a knowledge base of text, nothing to encode the query for
            with self.store.read() as snapshot:
                if "image" not in snapshot.chunk_modalities():
                    return []
        text_space = self.store.space(TEXT_SPACE, self.encoder.identity(), create=False) if mode != "keyword" else None
        clip_space = self._clip_space() if mode != "keyword" and "image" in wanted else None
        # The query is encoded first, so that the snapshot below is as short as a read can be.
        vector = self._query_vector(query) if text_space is not None else None
        terms = list(self._query_terms(self.keywords, query)) if mode != "dense" else []
        clip_vector = self.clip.encode([query])[0] if vector is not None and clip_space is not None and \
            self.clip is not None else None
        # One read transaction: the indexes, the keyword postings and the chunk rows all come from one snapshot,
        # so a search during a reindex sees the state before or after a commit, never a mix.
        with self.store.read() as snapshot:
            stored = snapshot.chunk_modalities()
            if not stored & wanted:  # ask's search for images in a knowledge base of text: nothing to look through
                return []
            if stored <= wanted:  # nothing to leave out: search unfiltered, several times faster
                wanted = frozenset(MODALITIES)

            def candidates(depth: int) -> tuple[list[Hit], bool]:
                signals = _Signals()
                if text_space is not None and vector is not None:
                    signals.text = snapshot.dense_search(text_space, vector, depth, filters, wanted)
                    if clip_space is not None and clip_vector is not None:
                        # Images matched by what they show join the dense list on its scale, so every fusion treats
                        # a CLIP match like a text-space match; an image found both ways keeps its better dense score.
                        signals.clip_vector = clip_vector
                        signals.clip = snapshot.dense_search(clip_space, clip_vector, depth, filters,
                                                             frozenset({"image"}))
                        signals.clip_scale = (self.backgrounds.typical(snapshot, clip_space, clip_vector, "image"),
                                              self.backgrounds.typical(snapshot, text_space, vector, "text"))
                if mode != "dense":
                    signals.keyword = keyword_search(snapshot, terms, depth, filters, wanted)
                full = any(len(found) >= depth for found in (signals.text, signals.clip, signals.keyword))
                if mode == "hybrid" and self.settings.fusion.true_scores:
                    self._complete(snapshot, signals, terms, text_space, vector, clip_space)
                dense = signals.dense()
                ranked = self._fuse(mode, dense, signals.keyword, language)
                return self._hits(snapshot, ranked, dict(dense), dict(signals.keyword), dict(signals.clip)), full

            return _deepened(candidates, wanted_hits, depth)

    def _complete(self, snapshot: Snapshot, signals: _Signals, terms: list[str], text_space: Space | None,
                  vector: np.ndarray | None, clip_space: Space | None) -> None:
        """Give every fusion candidate its true score on every signal: a candidate one retriever found but the
        other did not rank high enough is scored by that other one too (its cosine from its stored vectors, its
        BM25 in SQL), so an exact identifier found by keyword alone is not fused with a dense score of 0."""
        candidates = {chunk_id for chunk_id, _ in signals.text + signals.clip + signals.keyword}
        if text_space is not None and vector is not None:
            signals.text += dense_scores(snapshot, text_space, vector, candidates - {i for i, _ in signals.text})
            if clip_space is not None and signals.clip_vector is not None:
                signals.clip += dense_scores(snapshot, clip_space, signals.clip_vector,
                                             candidates - {i for i, _ in signals.clip}, modality="image")
        signals.keyword += keyword_scores(snapshot, terms, candidates - {i for i, _ in signals.keyword})
        signals.keyword.sort(key=lambda pair: (-pair[1], pair[0]))

    def image_space(self) -> Space:
        """The CLIP space a search by image runs in, its model loaded; else ``ImageSearchUnavailable`` saying why.
        Asked before the query image is read, so a search that cannot run reads nothing."""
        space = self._clip_space(retry=True)  # asked for explicitly: look for the model again
        if space is None or self.clip is None:
            raise ImageSearchUnavailable(self._clip_unavailable_reason())
        return space

    def search_image(self, space: Space, image: object, k: int = 5, filters: Filters | None = None,
                     modalities: Iterable[str] | None = None) -> list[Hit]:
        """Images and text chunks near ``image`` (an RGB ``PIL.Image``) in the CLIP ``space`` (``image_space()``).

        Image-to-image similarities run far higher than image-to-text ones (CLIP's modality gap), so each
        modality's results are standardised against their own background before they are merged: a hit's
        ``score`` is its standard score, comparable across the two (its cosine when a modality has too few vectors
        for a background; see calibration.py).
        """
        _check_k(k)
        wanted = modality_set(modalities)
        assert self.clip is not None  # image_space() gave the space
        vector = self.clip.encode_images([image])[0]
        with self.store.read() as snapshot:

            def candidates(depth: int) -> tuple[list[Hit], bool]:
                found = {modality: snapshot.dense_search(space, vector, depth, filters, frozenset({modality}))
                         for modality in sorted(wanted)}
                ranked = merge_by_standard_score([(pairs, self.backgrounds.typical(snapshot, space, vector, modality))
                                                  for modality, pairs in found.items()])
                clip_scores = {chunk_id: score for pairs in found.values() for chunk_id, score in pairs}
                full = any(len(pairs) >= depth for pairs in found.values())
                return self._hits(snapshot, ranked, {}, {}, clip_scores), full

            return _deepened(candidates, k, 2 * k)

    def images_near(self, chunk_ids: Iterable[int]) -> list[Hit]:
        """Images that belong with these text chunks: in the same document, their span overlapping the chunk's (an
        image with an empty span, placed between two texts, belongs with the chunk it sits in)."""
        ids = sorted(set(chunk_ids))
        if not ids:
            return []
        with self.store.read() as snapshot:
            rows = snapshot.images_near(ids)
            return self._hits(snapshot, [(chunk_id, 0.0) for chunk_id in rows], {}, {}, {})

    def _fuse(self, mode: SearchMode, dense: Ranked, keyword: Ranked, language: str | None = None) -> Ranked:
        if mode == "dense":
            return dense
        if mode == "keyword":
            return keyword
        fusion = self.settings.fusion
        weight = fusion.keyword_weights_by_language.get(language or "", fusion.keyword_weight)
        calibrated = weighted_score_fusion([dense, keyword], [1.0 - weight, weight])
        if fusion.method == "calibrated":
            return calibrated
        # Rank and min-max fusions tie often (the best of one list and the worst of the other): with true scores
        # such ties go to the stronger evidence, as the calibrated fusion of the same scores measures it.
        tie_break = dict(calibrated) if fusion.true_scores else None
        if fusion.method == "rrf":
            return reciprocal_rank_fusion([dense, keyword], k=fusion.rrf_k, tie_break=tie_break)
        return relative_score_fusion([dense, keyword], tie_break=tie_break)

    def _clip_space(self, retry: bool = False) -> Space | None:
        """The CLIP space if the knowledge base has one and its model loads; otherwise images are found by their
        descriptions only. After a failed load, text searches skip CLIP for ``CLIP_RETRY_SECONDS`` unless ``retry``."""
        if self.clip is None or (not retry and time.monotonic() < self._clip_retry_at):
            return None
        if not self.store.has_space(CLIP_SPACE):  # never built (no weights at ingest): `kb stats` says so
            return None
        try:
            return self.store.space(CLIP_SPACE, self.clip.identity(), create=False)
        except ModelNotFoundError as error:
            # The space exists but its weights are gone: worth a warning, though not on every text search.
            self._clip_retry_at = time.monotonic() + CLIP_RETRY_SECONDS
            reason = str(error).split(";")[0]
            log.warning("images are matched by their descriptions only: %s", reason)
            return None

    def _clip_unavailable_reason(self) -> str:
        if self.clip is None:
            return "the image space is turned off (clip_model is 'none'); set KB_CLIP_MODEL and run `kb reembed`"
        try:
            self.clip.identity()
        except ModelNotFoundError as error:
            return f"searching by image needs the CLIP model: {error}"
        return "this knowledge base has no image space yet: ingest a folder with the CLIP model available"

    @staticmethod
    def _hits(snapshot: Snapshot, ranked: Ranked, dense: dict[int, float], keyword: dict[int, float],
              clip: dict[int, float]) -> list[Hit]:
        if not ranked:
            return []
        rows = snapshot.hit_rows([chunk_id for chunk_id, _ in ranked])
        hits = []
        for chunk_id, score in ranked:
            row = rows.get(chunk_id)
            if row is None:  # not in this snapshot (cannot happen for a consistent index; kept as a guard)
                continue
            image = ImageInfo(name=row.name, width=row.width, height=row.height, sha256=row.sha256,
                              chunk_id=chunk_id) \
                if row.name is not None else None
            hits.append(Hit(path=row.path, page=row.page, start=row.start, end=row.end, text=row.text, score=score,
                            modality=row.modality, chunk_id=chunk_id, document_id=row.document_id, title=row.title,
                            dense_score=dense.get(chunk_id), keyword_score=keyword.get(chunk_id),
                            clip_score=clip.get(chunk_id), image=image))
        return hits


@dataclass
class _Signals:
    """What each retriever scored for one query: text-space cosines, CLIP cosines of images (with the query's
    typical similarities in the CLIP and text spaces, to align them; None where a space has no background for
    the modality, and CLIP scores stay cosines), and normalised BM25."""

    text: Ranked = field(default_factory=list)
    clip: Ranked = field(default_factory=list)
    clip_vector: np.ndarray | None = None
    clip_scale: tuple[Typical | None, Typical | None] | None = None
    keyword: Ranked = field(default_factory=list)

    def dense(self) -> Ranked:
        """One dense list on the text scale: text-space cosines and aligned CLIP scores, the better of the two. A
        negative cosine is no evidence: without a keyword match such a chunk is not a hit at all."""
        merged = _best_of(self.text, align(self.clip, *self.clip_scale)) if self.clip_scale is not None else \
            sorted(self.text, key=lambda pair: (-pair[1], pair[0]))
        return [(chunk_id, score) for chunk_id, score in merged if score > 0]


def _check_k(k: object) -> None:
    """``k`` refused unless 1 to ``MAX_K``: a search reads twice ``k`` candidates from each list, and every one is a
    parameter of the statement that fetches them (PostgreSQL takes 65,535 at most)."""
    whole_number(k, "k", MAX_K)


def _deepened(candidates: Callable[[int], tuple[list[Hit], bool]], wanted: int, depth: int) -> list[Hit]:
    """The best ``wanted`` hits after one hit per piece of evidence (evidence.py), from ``candidates(depth)``: the
    hits of candidate lists ``depth`` deep, and whether one of those lists was full. Repeats (a blank page sixty
    times, a logo on every page) can fill every list and fold into one hit: while fewer than ``wanted`` are left
    and a list was full, the search looks twice as deep, up to ``DEEPEST``."""
    while True:
        hits, full = candidates(depth)
        kept = one_hit_per_evidence(hits)
        if len(kept) >= wanted or not full or depth >= DEEPEST:
            return kept[:wanted]
        depth = min(2 * depth, DEEPEST)


def _best_of(ranked: Ranked, extra: Ranked) -> Ranked:
    """Merge two calibrated lists; an item in both keeps its better score (its strongest evidence)."""
    best = dict(ranked)
    for item, score in extra:
        if score > best.get(item, float("-inf")):
            best[item] = score
    return sorted(best.items(), key=lambda pair: (-pair[1], pair[0]))


__all__ = ["ImageSearchUnavailable", "Retriever", "modality_set"]
