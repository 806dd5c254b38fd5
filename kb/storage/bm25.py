"""BM25 in SQL: the figures it needs kept up to date by the write unit, and the top k read from the postings.

A search reads the corpus size, the average keyword length and its terms' document frequencies from two small
tables (``keyword_totals``, ``keyword_terms``) instead of scanning ``chunks`` and counting postings, and scores the
postings alone (each carries its chunk's keyword length). Without filters the documents are joined for the top k
only. A common term's postings are read only for the chunks its rarer companions found, whenever that cannot change
the top k (MaxScore: a chunk holding none of the rarer terms scores below the common terms' summed maximum).

With a ``PostingCache`` (the default: ``keyword_cache_mb``) a search without filters reads each term's postings
into arrays once per generation of the keyword index and sums them there instead: a question keeps several terms
past the stopwords, some in a large share of the chunks, and MaxScore cannot skip enough of them to spare SQL the
sort of every posting (see docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, and_, bindparam, case, delete, func, insert, select, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from kb.storage.filters import chunk_conditions
from kb.storage.models import Chunk, Document, KeywordTerm, KeywordTotals, Posting
from kb.storage.posting_cache import PostingCache, TermPostings
from kb.types import MODALITIES, Filters, Modality

K1 = 1.2
B = 0.75
BATCH = 500  # ids or terms per IN (...) list
# A common term's postings are skipped only when they outnumber the rarer terms' this many times (those are read
# twice, and each of their chunks is looked up in the common terms' postings).
PRUNING_GAIN = 2
# A pruned read is tried when the skipped terms' bound is under this many times the idf of the commonest term read
# in full: on the 200 queries of benchmarks/storage_scale.py the top k's last score then beat the bound in 113 of
# 150 tries at 100k chunks and 160 of 161 at 1M (against 136 of 600 at 100k for every split tried in turn).
LIKELY = 2.0
MARGIN = 1e-9  # relative: the MaxScore bound is compared with scores summed in SQL, rounded differently
READ_BATCH = 4096  # postings per fetch while a term's are read into arrays

Ranked = list[tuple[int, float]]


def idf(total: int, document_frequency: int) -> float:
    """BM25's idf, never negative (the "+1" form Lucene uses)."""
    return math.log(1 + (total - document_frequency + 0.5) / (document_frequency + 0.5))


@dataclass(frozen=True)
class Query:
    """One query's BM25 constants: the idf and document frequency of each term the corpus holds, the corpus's
    average keyword length, the attainable maximum (``(k1 + 1)`` times every term's idf, absent terms too), and the
    keyword index's generation they were read at."""

    idf: dict[str, float]
    frequencies: dict[str, int]
    average_length: float
    attainable: float
    generation: int

    def share(self) -> ColumnElement[float]:
        """A posting's share of its chunk's BM25."""
        length_norm = K1 * (1 - B + B * Posting.length / self.average_length)
        return case(self.idf, value=Posting.term) * Posting.tf * (K1 + 1) / (Posting.tf + length_norm)

    def score(self) -> ColumnElement[float]:
        """The chunk's BM25, summed over its postings of the query's terms."""
        return func.sum(self.share()).label("score")

    def bound(self, terms: Iterable[str]) -> float:
        """What a chunk holding only ``terms`` scores at most: each term's ``tf`` part stays below ``k1 + 1``."""
        return (K1 + 1) * sum(self.idf[term] for term in terms)


def prepare(session: Session, terms: Sequence[str]) -> Query | None:
    """The query's constants (one statement: a search on a loaded server waits on every round trip), None when no
    chunk holds any of its terms."""
    rows = session.execute(select(KeywordTerm.term, KeywordTerm.chunks, KeywordTotals.chunks, KeywordTotals.length,
                                  KeywordTotals.generation)
                           .join(KeywordTotals, KeywordTotals.id == 1)
                           .where(KeywordTerm.term.in_(terms), KeywordTerm.chunks > 0)).all()
    if not rows or not rows[0][2]:
        return None
    total, length, generation = int(rows[0][2]), int(rows[0][3]), int(rows[0][4])
    frequencies = {term: int(chunks) for term, chunks, _, _, _ in rows}
    every_idf = {term: idf(total, frequencies.get(term, 0)) for term in terms}
    return Query({term: value for term, value in every_idf.items() if term in frequencies}, frequencies,
                 float(length) / total or 1.0, (K1 + 1) * sum(every_idf.values()), generation)


def search(session: Session, terms: Sequence[str], limit: int, filters: Filters | None = None,
           modalities: frozenset[Modality] | None = None, chunk_ids: Collection[int] | None = None,
           cache: PostingCache | None = None) -> Ranked:
    """Top ``limit`` chunks by BM25 of ``terms`` divided by the query's attainable maximum, among the chunks
    passing ``filters`` and ``modalities`` (or among ``chunk_ids``), best first, ties by chunk id; without filters
    summed from ``cache``'s arrays where one is given.

    The maximum is what a chunk would score with every term at unbounded frequency, so scores lie in [0, 1] and
    mean the same from query to query; that is what lets hybrid search weigh them against cosine similarities.
    """
    if not terms or limit <= 0:
        return []
    query = prepare(session, terms)
    if query is None:
        return []
    if chunk_ids is not None:  # in batches, each ranked on its own: a chunk's score does not depend on the others
        ids = sorted(set(chunk_ids))
        ranked = sorted((pair for start in range(0, len(ids), BATCH) for pair in _ranked(
            session, query, list(query.idf), limit, Posting.chunk_id.in_(ids[start : start + BATCH]))),
            key=lambda pair: (-pair[1], pair[0]))[:limit]
    elif (filters is None or filters.is_empty()) and (modalities is None or set(modalities) == set(MODALITIES)):
        ranked = _top(session, query, limit) if cache is None else _cached_top(session, query, limit, cache)
    else:
        ranked = _ranked(session, query, list(query.idf), limit, joined=chunk_conditions(filters, modalities))
    return [(chunk_id, score / query.attainable) for chunk_id, score in ranked]


def _ranked(session: Session, query: Query, terms: list[str], limit: int, *conditions: ColumnElement[bool],
            joined: list[ColumnElement[bool]] | None = None) -> Ranked:
    """Top ``limit`` (chunk id, BM25) of the chunks holding any of ``terms`` and passing ``conditions`` on the
    postings and ``joined`` (on chunks and documents, joined to every posting)."""
    score = query.score()
    statement = select(Posting.chunk_id, score).where(Posting.term.in_(terms), *conditions)
    if joined is not None:
        statement = statement.join(Chunk, Chunk.id == Posting.chunk_id) \
            .join(Document, Document.id == Chunk.document_id).where(*joined)
    statement = statement.group_by(Posting.chunk_id).order_by(score.desc(), Posting.chunk_id).limit(limit)
    return [(int(chunk_id), float(value)) for chunk_id, value in session.execute(statement)]


def _checked(session: Session, query: Query, terms: list[str], limit: int, rare: list[str] | None = None
             ) -> Ranked | None:
    """Top ``limit`` (chunk id, BM25) over the postings alone, then those chunks and their documents joined (in the
    same statement) to check that each is ingested; None if one is not (or has lost its chunk), which ingestion
    never leaves: then the chunks are joined to every posting. With ``rare``, only the chunks holding one of those
    terms are ranked: the other terms' postings are looked up for them alone."""
    if rare is None:
        parts = [select(Posting.chunk_id, query.share().label("share")).where(Posting.term.in_(terms))]
    else:
        holding = aliased(Posting)
        common = [term for term in terms if term not in rare]
        parts = [select(Posting.chunk_id, query.share().label("share")).where(Posting.term.in_(rare)),
                 select(Posting.chunk_id, query.share().label("share")).where(
                     Posting.term.in_(common), Posting.chunk_id.in_(select(holding.chunk_id)
                                                                    .where(holding.term.in_(rare))))]
    shares = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
    score = func.sum(shares.c.share).label("score")
    top = (select(shares.c.chunk_id, score).group_by(shares.c.chunk_id)
           .order_by(score.desc(), shares.c.chunk_id).limit(limit).subquery())
    statement = (select(top.c.chunk_id, top.c.score, and_(*chunk_conditions(None)).label("passing"))
                 .outerjoin(Chunk, Chunk.id == top.c.chunk_id).outerjoin(Document, Document.id == Chunk.document_id)
                 .order_by(top.c.score.desc(), top.c.chunk_id))
    rows = session.execute(statement).all()
    if not all(passing for _, _, passing in rows):
        return None
    return [(int(chunk_id), float(value)) for chunk_id, value, _ in rows]


def _top(session: Session, query: Query, limit: int) -> Ranked:
    """Top ``limit`` (chunk id, BM25) of the ingested chunks, scored from the postings alone, the common terms'
    postings skipped where they cannot change the result.

    Terms rarest first: the chunks holding one of the first terms are scored in full (the common terms' postings
    looked up for them). If the ``limit``-th of them scores above what the remaining terms can give a chunk holding
    only those, no other chunk can enter: that is the answer; otherwise every posting is read. The split is tried
    only where it is likely to hold and to pay (see ``LIKELY`` and ``PRUNING_GAIN``).
    """
    terms = sorted(query.idf, key=lambda term: (query.frequencies[term], term))
    for cut in range(1, len(terms)):
        rare, common = terms[:cut], terms[cut:]
        candidates = sum(query.frequencies[term] for term in rare)
        if candidates < limit or query.bound(common) >= LIKELY * query.idf[rare[-1]]:
            continue  # too few chunks to fill the top, or a chunk holding common terms only would likely enter
        if sum(query.frequencies[term] for term in common) < PRUNING_GAIN * candidates:
            break  # the lookups would cost about what reading the common terms' postings does
        ranked = _checked(session, query, terms, limit, rare)
        if ranked is not None and len(ranked) == limit and ranked[-1][1] > query.bound(common) * (1 + MARGIN):
            return ranked
        break
    ranked = _checked(session, query, terms, limit)
    return ranked if ranked is not None else _ranked(session, query, terms, limit, joined=chunk_conditions(None))


def _read_postings(session: Session, query: Query, term: str) -> TermPostings:
    """A term's postings with their shares at the query's generation, read through the driver's own cursor in the
    search's transaction (SQLAlchemy's rows cost as much again at 100k postings, and many alive at once make
    Python's garbage collector walk the whole heap)."""
    connection = session.connection()
    placeholder = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"SELECT chunk_id, tf, length FROM {Posting.__tablename__} WHERE term = {placeholder}",
                       (term,))
        parts = [np.array(rows, dtype=np.float64) for rows in iter(lambda: cursor.fetchmany(READ_BATCH), [])]
    except Exception as error:
        from kb.storage.database import raw_cursor_damage  # (database.py imports this module)

        raise raw_cursor_damage(connection.engine, error) or error
    finally:
        cursor.close()
    rows = np.concatenate(parts) if parts else np.empty((0, 3))
    tf, length = rows[:, 1], rows[:, 2]
    shares = tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / query.average_length))
    return TermPostings(rows[:, 0].astype(np.int64), shares)


def _cached_top(session: Session, query: Query, limit: int, cache: PostingCache) -> Ranked:
    """Top ``limit`` (chunk id, BM25) summed from the terms' cached arrays (read into the cache where missing),
    then checked to be ingested chunks as ``_checked`` checks them (else ranked in SQL with the joins)."""
    chunk_ids, scores = [], []
    for term, value in query.idf.items():
        postings = cache.get(term, query.generation)
        if postings is None:
            postings = _read_postings(session, query, term)
            cache.put(term, query.generation, postings)
        chunk_ids.append(postings.chunk_ids)
        scores.append(value * postings.shares)
    found, inverse = np.unique(np.concatenate(chunk_ids), return_inverse=True)
    totals = np.bincount(inverse, np.concatenate(scores), minlength=len(found))
    if len(found) > limit:  # every chunk at the limit-th score or above, ties included, then ordered
        kept = np.flatnonzero(totals >= np.partition(totals, len(totals) - limit)[len(totals) - limit])
        found, totals = found[kept], totals[kept]
    order = np.lexsort((found, -totals))[:limit]
    ranked = [(int(found[i]), float(totals[i])) for i in order]
    ingested = session.scalar(select(func.count()).select_from(Chunk).join(Document, Document.id == Chunk.document_id)
                              .where(Chunk.id.in_([chunk_id for chunk_id, _ in ranked]), *chunk_conditions(None)))
    return ranked if ingested == len(ranked) else \
        _ranked(session, query, list(query.idf), limit, joined=chunk_conditions(None))


# -- kept by the write unit ----------------------------------------------------------------------------------------


def advance(session: Session) -> None:
    """The keyword index's generation advanced: postings or totals are changing in this transaction, so arrays
    cached at the current generation will not be used by a search that sees the change."""
    session.execute(update(KeywordTotals).where(KeywordTotals.id == 1).values(
        generation=KeywordTotals.generation + 1))


def count_chunks(session: Session, chunks: int, length: int) -> None:
    """Chunks added (positive) or removed (negative), with the sum of their keyword lengths."""
    if chunks or length:
        session.execute(update(KeywordTotals).where(KeywordTotals.id == 1).values(
            chunks=KeywordTotals.chunks + chunks, length=KeywordTotals.length + length,
            generation=KeywordTotals.generation + 1))


def count_terms(session: Session, added: Counter[str]) -> None:
    """Postings added: each term's document frequency raised by its count (terms in order, so two writers never
    wait on each other's rows crosswise)."""
    if not added:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = KeywordTerm.__table__  # Core: one executemany (the ORM would send a statement per term)
    statement = dialect.insert(table)
    statement = statement.on_conflict_do_update(index_elements=[table.c.term],
                                                set_={"chunks": table.c.chunks + statement.excluded.chunks})
    session.execute(statement, [{"term": term, "chunks": count} for term, count in sorted(added.items())])
    advance(session)


def uncount_postings(session: Session, condition: ColumnElement[bool]) -> None:
    """Postings matching ``condition`` are about to be deleted: their terms' document frequencies lowered, and the
    terms left in no chunk forgotten."""
    removed = sorted(session.execute(select(Posting.term, func.count()).where(condition)
                                     .group_by(Posting.term)).all())
    if not removed:
        return
    advance(session)
    terms = KeywordTerm.__table__.c  # Core: the ORM would read a list of parameters as updates by primary key
    session.execute(update(KeywordTerm.__table__).where(terms.term == bindparam("gone_term"))
                    .values(chunks=terms.chunks - bindparam("gone")),
                    [{"gone_term": term, "gone": count} for term, count in removed])
    for start in range(0, len(removed), BATCH):
        part = [term for term, _ in removed[start : start + BATCH]]
        session.execute(delete(KeywordTerm).where(KeywordTerm.term.in_(part), KeywordTerm.chunks <= 0))


def uncount_chunks(session: Session, chunk_ids: Sequence[int]) -> None:
    """Chunks about to be deleted (at most ``BATCH``): their postings' terms and their lengths uncounted."""
    uncount_postings(session, Posting.chunk_id.in_(chunk_ids))
    count, length = session.execute(select(func.count(), func.coalesce(func.sum(Chunk.keyword_length), 0))
                                    .where(Chunk.id.in_(chunk_ids))).one()
    count_chunks(session, -int(count), -int(length))


def drift(session: Session) -> int:
    """How many of the figures kept by the write unit disagree with ``chunks`` and the postings of stored chunks:
    terms whose document frequency is wrong, missing or left over, plus one for wrong totals (damage from outside,
    or a bug)."""
    kept = select(Posting.term).join(Chunk, Chunk.id == Posting.chunk_id)  # orphan postings are a problem apart
    counted = kept.add_columns(func.count().label("chunks")).group_by(Posting.term).subquery()
    wrong = session.scalar(select(func.count()).select_from(counted)
                           .outerjoin(KeywordTerm, KeywordTerm.term == counted.c.term)
                           .where(KeywordTerm.chunks.is_(None) | (KeywordTerm.chunks != counted.c.chunks))) or 0
    left_over = session.scalar(select(func.count()).select_from(KeywordTerm).where(
        ~kept.where(Posting.term == KeywordTerm.term).exists())) or 0
    totals = session.execute(select(KeywordTotals.chunks, KeywordTotals.length)).one_or_none()
    actual = tuple(session.execute(select(func.count(), func.coalesce(func.sum(Chunk.keyword_length), 0))
                                   .select_from(Chunk)).one())
    return int(wrong) + int(left_over) + int(totals is None or tuple(totals) != actual)


def recount(session: Session) -> None:
    """Both tables computed afresh from ``chunks`` and ``postings`` (a new or migrated database, a rebuild), the
    generation left to the caller (``advance``: migration 5 runs this before the column exists)."""
    session.execute(delete(KeywordTerm))
    session.execute(insert(KeywordTerm).from_select(["term", "chunks"], select(Posting.term, func.count())
                                                    .group_by(Posting.term)))
    chunks, length = session.execute(select(func.count(), func.coalesce(func.sum(Chunk.keyword_length), 0))
                                     .select_from(Chunk)).one()
    totals = {"chunks": int(chunks), "length": int(length)}
    if not session.execute(update(KeywordTotals).where(KeywordTotals.id == 1).values(**totals)).rowcount:
        session.execute(insert(KeywordTotals).values(id=1, **totals))
