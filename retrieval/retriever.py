"""Hybrid retrieval: dense and keyword results fused into one ranked list of citable hits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.config import Settings
from kb.encoders.base import TextEncoder
from kb.keywords import KeywordTokenizer
from kb.storage.models import Chunk, Document
from kb.storage.store import Store
from kb.types import SEARCH_MODES, Filters, Hit, SearchMode
from retrieval.dense import dense_search
from retrieval.fusion import reciprocal_rank_fusion, relative_score_fusion, weighted_score_fusion
from retrieval.keyword import keyword_search


class Retriever:
    """Finds the chunks that answer a query: ``dense``, ``keyword`` or fused ``hybrid`` (the default)."""

    def __init__(self, store: Store, encoder: TextEncoder, keywords: KeywordTokenizer, settings: Settings) -> None:
        self.store = store
        self.encoder = encoder
        self.keywords = keywords
        self.settings = settings

    def search(self, query: str, k: int = 5, mode: SearchMode = "hybrid", filters: Filters | None = None) -> list[Hit]:
        if k <= 0:
            raise ValueError("k must be positive")
        if mode not in SEARCH_MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)}")
        if mode != "dense":
            self.store.check_keyword_tokenizer(self.keywords.name)
        depth = max(k, self.settings.fusion_candidates) if mode == "hybrid" else k
        # One read transaction: the index, the keyword postings and the chunk rows all come from one snapshot,
        # so a search during a reindex sees the state before or after a commit, never a mix.
        with self.store.sessions() as session:
            dense = dense_search(self.store, session, self.encoder, query, depth, filters) if mode != "keyword" else []
            keyword = keyword_search(session, self.keywords, query, depth, filters) if mode != "dense" else []
            if mode == "dense":
                ranked = dense
            elif mode == "keyword":
                ranked = keyword
            elif self.settings.fusion == "rrf":
                ranked = reciprocal_rank_fusion([dense, keyword], k=self.settings.rrf_k)
            elif self.settings.fusion == "relative":
                ranked = relative_score_fusion([dense, keyword])
            else:
                weight = self.settings.keyword_weight
                ranked = weighted_score_fusion([dense, keyword], [1.0 - weight, weight])
            return self._hits(session, ranked[:k], dict(dense), dict(keyword))

    @staticmethod
    def _hits(session: Session, ranked: list[tuple[int, float]], dense: dict[int, float],
              keyword: dict[int, float]) -> list[Hit]:
        if not ranked:
            return []
        ids = [chunk_id for chunk_id, _ in ranked]
        rows = {
            row.id: row for row in session.execute(
                select(Chunk.id, Chunk.document_id, Chunk.text, Chunk.start, Chunk.end, Chunk.page,
                       Chunk.modality, Document.path, Document.title)
                .join(Document, Document.id == Chunk.document_id)
                .where(Chunk.id.in_(ids)))
        }
        hits = []
        for chunk_id, score in ranked:
            row = rows.get(chunk_id)
            if row is None:  # not in this snapshot (cannot happen for a consistent index; kept as a guard)
                continue
            hits.append(Hit(path=row.path, page=row.page, start=row.start, end=row.end, text=row.text, score=score,
                            modality=row.modality, chunk_id=chunk_id, document_id=row.document_id, title=row.title,
                            dense_score=dense.get(chunk_id), keyword_score=keyword.get(chunk_id)))
        return hits
