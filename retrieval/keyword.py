"""BM25 keyword search over the ``postings`` table, in portable SQL, with filters applied in the same query."""

from __future__ import annotations

import math
from collections.abc import Collection

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from kb.keywords import KeywordTokenizer
from kb.storage.models import Chunk, Document, Posting
from kb.storage.store import MAX_TERM_LENGTH
from kb.types import Filters, Modality
from retrieval.filters import chunk_conditions

K1 = 1.2
B = 0.75


def _idf(total: int, document_frequency: int) -> float:
    """BM25's idf, never negative (the "+1" form Lucene uses)."""
    return math.log(1 + (total - document_frequency + 0.5) / (document_frequency + 0.5))


def keyword_search(session: Session, tokenizer: KeywordTokenizer, query: str, k: int,
                   filters: Filters | None = None,
                   modalities: frozenset[Modality] | None = None) -> list[tuple[int, float]]:
    """Top ``k`` (chunk id, score) for ``query``: BM25 divided by the query's attainable maximum.

    The maximum is what a chunk would score with every query term at unbounded frequency (the sum of the terms'
    ``idf * (k1 + 1)``, terms absent from the corpus included), so scores lie in [0, 1] and mean the same from
    query to query; that is what lets hybrid search weigh them against cosine similarities.
    """
    return _bm25(session, tokenizer, query, k, chunk_conditions(filters, modalities)) if k > 0 else []


def keyword_scores(session: Session, tokenizer: KeywordTokenizer, query: str,
                   chunk_ids: Collection[int]) -> list[tuple[int, float]]:
    """The same normalised BM25 for the given chunks only (those sharing no term with the query score 0 and are
    left out): the true keyword score of a candidate another retriever found."""
    ids = sorted(set(chunk_ids))
    return _bm25(session, tokenizer, query, len(ids), [Chunk.id.in_(ids)]) if ids else []


def _bm25(session: Session, tokenizer: KeywordTokenizer, query: str, limit: int,
          conditions: list) -> list[tuple[int, float]]:
    """Top ``limit`` chunks meeting ``conditions`` (on chunks joined with documents) by normalised BM25."""
    terms = sorted({term[:MAX_TERM_LENGTH] for term in tokenizer.tokenize(query)})
    if not terms:
        return []
    total, average_length = session.execute(
        select(func.count(Chunk.id), func.avg(Chunk.keyword_length))
    ).one()
    if not total:
        return []
    frequencies = dict(session.execute(
        select(Posting.term, func.count()).where(Posting.term.in_(terms)).group_by(Posting.term)
    ).all())
    if not frequencies:
        return []
    every_idf = {term: _idf(total, frequencies.get(term, 0)) for term in terms}
    attainable = (K1 + 1) * sum(every_idf.values())
    idf = {term: value for term, value in every_idf.items() if term in frequencies}
    length_norm = K1 * (1 - B + B * Chunk.keyword_length / float(average_length or 1.0))
    contribution = case(idf, value=Posting.term) * Posting.tf * (K1 + 1) / (Posting.tf + length_norm)
    score = func.sum(contribution).label("score")
    query_sql = (
        select(Posting.chunk_id, score)
        .join(Chunk, Chunk.id == Posting.chunk_id)
        .join(Document, Document.id == Chunk.document_id)
        .where(Posting.term.in_(list(idf)), *conditions)
        .group_by(Posting.chunk_id)
        .order_by(score.desc(), Posting.chunk_id)
        .limit(limit)
    )
    return [(int(chunk_id), float(value) / attainable) for chunk_id, value in session.execute(query_sql)]
