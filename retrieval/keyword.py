"""BM25 keyword search over the ``postings`` table, in portable SQL, with filters applied in the same query."""

from __future__ import annotations

import math

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from kb.keywords import KeywordTokenizer
from kb.storage.models import Chunk, Document, Posting
from kb.types import Filters
from retrieval.filters import document_conditions

K1 = 1.2
B = 0.75


def keyword_search(session: Session, tokenizer: KeywordTokenizer, query: str, k: int,
                   filters: Filters | None = None) -> list[tuple[int, float]]:
    """Top ``k`` (chunk id, score) for ``query``: BM25 divided by the query's attainable maximum.

    The maximum is what a chunk would score with every query term at unbounded frequency (the sum of the terms'
    ``idf * (k1 + 1)``, terms absent from the corpus included), so scores lie in [0, 1] and mean the same from
    query to query; that is what lets hybrid search weigh them against cosine similarities.
    """
    terms = sorted(set(tokenizer.tokenize(query)))
    if not terms or k <= 0:
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
    idf = {term: math.log(1 + (total - df + 0.5) / (df + 0.5)) for term, df in frequencies.items()}
    attainable = (K1 + 1) * sum(math.log(1 + (total - frequencies.get(t, 0) + 0.5) / (frequencies.get(t, 0) + 0.5))
                                for t in terms)
    length_norm = K1 * (1 - B + B * Chunk.keyword_length / float(average_length or 1.0))
    contribution = case(idf, value=Posting.term) * Posting.tf * (K1 + 1) / (Posting.tf + length_norm)
    score = func.sum(contribution).label("score")
    query_sql = (
        select(Posting.chunk_id, score)
        .join(Chunk, Chunk.id == Posting.chunk_id)
        .join(Document, Document.id == Chunk.document_id)
        .where(Posting.term.in_(list(idf)), *document_conditions(filters))
        .group_by(Posting.chunk_id)
        .order_by(score.desc(), Posting.chunk_id)
        .limit(k)
    )
    return [(int(chunk_id), float(value) / attainable) for chunk_id, value in session.execute(query_sql)]
