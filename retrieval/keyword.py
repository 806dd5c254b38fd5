"""BM25 keyword search: the query's terms made by the knowledge base's tokenizer, scored by the snapshot in SQL."""

from __future__ import annotations

from collections.abc import Collection

from kb.keywords import KeywordTokenizer
from kb.storage.reading import Snapshot
from kb.storage.writing import MAX_TERM_LENGTH
from kb.types import Filters, Modality

MAX_QUERY_TERMS = 1024  # each term is three parameters of a statement, and a statement takes a bounded number


def query_terms(tokenizer: KeywordTokenizer, query: str) -> list[str]:
    """The distinct terms of ``query`` as the keyword index stores them: the first ``MAX_QUERY_TERMS`` of a query
    as long as a pasted document (the text encoder reads only its start too). A query is cut into terms once per
    search, however deep the search looks."""
    distinct = dict.fromkeys(term[:MAX_TERM_LENGTH] for term in tokenizer.tokenize_query(query))
    return sorted(list(distinct)[:MAX_QUERY_TERMS])


def keyword_search(snapshot: Snapshot, terms: list[str], k: int, filters: Filters | None = None,
                   modalities: frozenset[Modality] | None = None) -> list[tuple[int, float]]:
    """Top ``k`` (chunk id, score) for a query's ``terms`` (``query_terms``): BM25 divided by the query's
    attainable maximum, in [0, 1]."""
    return snapshot.bm25(terms, k, filters, modalities)


def keyword_scores(snapshot: Snapshot, terms: list[str], chunk_ids: Collection[int]) -> list[tuple[int, float]]:
    """The same normalised BM25 for the given chunks only (those sharing no term with the query score 0 and are
    left out): the true keyword score of a candidate another retriever found."""
    ids = set(chunk_ids)
    return snapshot.bm25(terms, len(ids), chunk_ids=ids) if ids else []
