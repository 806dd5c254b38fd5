"""BM25 in SQL gives exactly the scores of the textbook formula over the chunks' terms: after writes and deletes
(which keep the document frequencies and totals it reads), with common terms' postings skipped where that cannot
change the top k, under filters, for given chunks, and in a knowledge base migrated from schema version 4.

Stored chunks, no encoder: terms written through the write unit as an ingest writes them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event

from kb.config import Settings
from kb.doctor import examine
from kb.keywords import keyword_tokenizer, term_bag
from kb.storage import bm25, reading
from kb.storage.models import SCHEMA_VERSION
from kb.storage.store import Store
from kb.types import Filters
from tests.databases import Database, back_to_version_4_keywords, back_to_version_6, execute_sql

pytestmark = pytest.mark.databases("sqlite", "postgresql")

CHUNKS_PER_DOCUMENT = 10
WHEN = datetime(2026, 1, 1)
RARE = ["zeta", "omega"]  # each in 20 chunks, beside common words: the common words' postings can be skipped


def corpus(count: int, seed: int) -> list[list[str]]:
    """Chunks of 5 to 30 words from a Zipf-like vocabulary of 300 (a few words in most chunks, most in few)."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"w{number}" for number in range(300)]
    weights = 1 / np.arange(1, 301)
    chunks = [list(rng.choice(vocabulary, size=rng.integers(5, 31), p=weights / weights.sum())) for _ in range(count)]
    for offset, word in enumerate(RARE):
        for number in range(offset, count, count // 20):
            chunks[number].append(word)
    return chunks


def write(store: Store, first_document: int, chunks: list[list[str]]) -> dict[int, list[str]]:
    """Documents ``doc<n>.txt`` of ``CHUNKS_PER_DOCUMENT`` chunks each; returns the chunks' terms by id."""
    with store.write() as unit:
        source = unit.source("/docs", create=True)
        assert source is not None
        names = [f"doc{first_document + n}.txt" for n in range(-(-len(chunks) // CHUNKS_PER_DOCUMENT))]
        documents = unit.insert_documents([
            {"source_id": source.id, "path": f"/docs/{name}", "relpath": name, "file_type": "text", "size": 1,
             "mtime_ns": 0, "modified_at": WHEN, "content_hash": name, "status": "ok", "error": None,
             "warnings": [], "title": None, "text": "", "pages": [], "ingested_at": WHEN} for name in names])
        ids = unit.insert_chunks([
            {"document_id": documents[i // CHUNKS_PER_DOCUMENT], "ordinal": i % CHUNKS_PER_DOCUMENT,
             "modality": "text", "text": " ".join(terms), "text_hash": str(i), "start": 0, "end": 0, "page": None,
             "tokens": len(terms), "keyword_length": len(terms)} for i, terms in enumerate(chunks)])
        unit.add_postings(ids, [term_bag(terms) for terms in chunks])
    return dict(zip(ids, chunks, strict=True))


def reference(chunks: dict[int, list[str]], terms: list[str]) -> dict[int, float]:
    """Normalised BM25 of every chunk holding a term, from the formula (k1 1.2, b 0.75, Lucene's idf)."""
    average = sum(len(words) for words in chunks.values()) / len(chunks)
    frequency = Counter(term for words in chunks.values() for term in set(words))
    idf = {term: math.log(1 + (len(chunks) - frequency[term] + 0.5) / (frequency[term] + 0.5)) for term in terms}
    attainable = 2.2 * sum(idf.values())
    scores = {}
    for chunk_id, words in chunks.items():
        counts = Counter(words)
        if any(counts[term] for term in terms):
            scores[chunk_id] = sum(idf[term] * counts[term] * 2.2 / (counts[term] + 1.2 * (0.25 + 0.75 * len(words)
                                   / average)) for term in terms if counts[term]) / attainable
    return scores


def assert_top(found: list[tuple[int, float]], expected: dict[int, float], k: int) -> None:
    """``found`` is the top ``k`` of ``expected``: the same scores in order, each chunk's own score, and every
    chunk above the last score (equal scores may be cut either way)."""
    ranked = sorted(expected.values(), reverse=True)[:k]
    assert [score for _, score in found] == pytest.approx(ranked, abs=1e-12)
    assert all(expected[chunk_id] == pytest.approx(score, abs=1e-12) for chunk_id, score in found)
    scores = [score for _, score in found]
    assert scores == sorted(scores, reverse=True)
    if found:
        above = {chunk_id for chunk_id, score in expected.items() if score > found[-1][1] + 1e-12}
        assert above <= {chunk_id for chunk_id, _ in found}


QUERIES = [["zeta", "w0", "w1"], ["omega", "w2", "w0", "w5"], ["w3", "w40"], ["w7"], ["zeta", "omega"],
           ["w250", "w0", "absent"], ["absent"]]


@pytest.fixture
def store(tmp_path: Path, database: Database) -> Iterator[Store]:
    opened = Store(tmp_path, Settings(**database.settings()))
    yield opened
    opened.close()


def search(store: Store, terms: list[str], k: int, filters: Filters | None = None) -> list[tuple[int, float]]:
    with store.read() as snapshot:
        return snapshot.bm25(sorted(terms), k, filters)


@pytest.mark.parametrize(("gain", "cache_mb"), [(0, 0), (bm25.PRUNING_GAIN, 0), (math.inf, 0), (bm25.PRUNING_GAIN, 64)],
                         ids=["sql-prune-whenever-sound", "sql-default", "sql-never", "cached"])
def test_scores_are_the_formulas_through_writes_and_deletes(tmp_path: Path, database: Database, gain: float,
                                                            cache_mb: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """In SQL (MaxScore's pruning always tried where sound, as by default, or never) and summed from the posting
    cache, which is read again after every write and not between."""
    store = Store(tmp_path, Settings(**database.settings(), keyword_cache_mb=cache_mb))
    monkeypatch.setattr(bm25, "PRUNING_GAIN", gain)
    pruned = []  # per read of the postings in SQL without filters: whether the common terms' postings were skipped
    checked = bm25._checked
    monkeypatch.setattr(bm25, "_checked", lambda session, query, terms, limit, rare=None: pruned.append(
        rare is not None) or checked(session, query, terms, limit, rare))
    read = []  # the terms whose postings were read into arrays
    read_postings = bm25._read_postings
    monkeypatch.setattr(bm25, "_read_postings", lambda session, query, term: read.append(term) or read_postings(
        session, query, term))
    chunks = write(store, 0, corpus(400, seed=1))
    chunks |= write(store, 40, corpus(200, seed=2))

    def check() -> None:
        read.clear()
        for _ in range(2):
            for terms in QUERIES:
                pruned.clear()
                found = search(store, terms, 5)
                assert_top(found, reference(chunks, terms), 5)
                if gain == 0 and terms[0] in RARE and len(terms) > 2:
                    assert pruned[-1]  # the answer read the common words' postings of the rarer words' chunks only
                if gain == math.inf:
                    assert True not in pruned
                assert not (cache_mb and pruned)
        # each term held by a chunk is read once (both rounds, since the last write) when there is a cache
        held = {term for words in chunks.values() for term in words}
        assert sorted(read) == (sorted({term for terms in QUERIES for term in terms} & held) if cache_mb else [])

    check()
    # Deletes (documents and single chunks) and a rewrite of the keyword index keep the figures BM25 reads.
    with store.read() as snapshot:
        documents = [i for i, path, _ in snapshot.document_files() if Path(path).name in {"doc1.txt", "doc42.txt"}]
    with store.write() as unit:
        removed = unit.delete_documents(documents) + unit.delete_chunks([max(chunks)])
    assert len(removed) == 2 * CHUNKS_PER_DOCUMENT + 1
    for chunk_id in removed:
        del chunks[chunk_id]
    check()
    rewritten = {chunk_id: words[len(words) // 2 :] for chunk_id, words in chunks.items()}
    with store.write() as unit:
        ids = sorted(rewritten)
        for start in range(0, len(ids), 128):
            part = ids[start : start + 128]
            unit.replace_postings(part, [term_bag(rewritten[i]) for i in part], first=start == 0)
    chunks = rewritten
    check()
    store.close()


def test_filters_and_given_chunks_score_the_same(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = write(store, 0, corpus(400, seed=3))
    terms = ["zeta", "w0", "w1", "w4"]
    expected = reference(chunks, terms)
    few = Filters(path_glob="doc1*.txt")  # doc1, doc10-doc19: 110 of 400 chunks
    passing = {chunk_id for number, chunk_id in enumerate(chunks)
               if str(number // CHUNKS_PER_DOCUMENT).startswith("1")}
    assert_top(search(store, terms, 8, few), {i: s for i, s in expected.items() if i in passing}, 8)
    given = sorted(chunks)[::7]
    with store.read() as snapshot:
        found = snapshot.bm25(sorted(terms), len(given), chunk_ids=given)
    assert_top(found, {i: s for i, s in expected.items() if i in given}, len(given))
    # Given chunks are read in batches (a statement takes a bounded number of parameters): the same top, the same
    # rows, whether they take one statement or many.
    with store.read() as snapshot:
        rows = snapshot.hit_rows(given)
    monkeypatch.setattr(bm25, "BATCH", 7)
    monkeypatch.setattr(reading, "BATCH", 7)
    parameters: list[int] = []
    engine = store.sessions.kw["bind"]

    def count(connection: object, cursor: object, statement: str, values: object, *args: object) -> None:
        parameters.append(len(values) if isinstance(values, (tuple, list, dict)) else 0)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with store.read() as snapshot:
            assert snapshot.bm25(sorted(terms), len(given), chunk_ids=given) == found
            assert snapshot.bm25(sorted(terms), 5, chunk_ids=given) == found[:5]
            assert snapshot.hit_rows(given) == rows and len(rows) == len(given)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(given) == 58 and 0 < max(parameters) < 40  # 7 ids and the terms' figures per statement
    monkeypatch.undo()
    # A chunk of a document that failed is left out (none is stored that way by ingestion: checked all the same).
    top = search(store, terms, 3)
    execute_sql(store.url, "UPDATE documents SET status = 'failed' WHERE id = (SELECT document_id FROM chunks "
                f"WHERE id = {top[0][0]})")
    document_of = {chunk_id: number // CHUNKS_PER_DOCUMENT for number, chunk_id in enumerate(chunks)}
    failed = document_of[top[0][0]]
    assert_top(search(store, terms, 3), {i: s for i, s in expected.items() if document_of[i] != failed}, 3)


def test_a_version_4_database_gains_the_keyword_figures_and_keeps_its_scores(tmp_path: Path,
                                                                            database: Database) -> None:
    store = Store(tmp_path, Settings(**database.settings()))
    chunks = write(store, 0, corpus(300, seed=4))
    before = {tuple(terms): search(store, terms, 5) for terms in QUERIES}
    store.close()
    execute_sql(store.url, *back_to_version_4_keywords(database.kind),
                "UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    migrated = Store(tmp_path, Settings(**database.settings()))
    with migrated.read() as snapshot:
        assert snapshot.meta("schema_version") == str(SCHEMA_VERSION)
    for terms in QUERIES:
        found = search(migrated, terms, 5)
        assert [chunk_id for chunk_id, _ in found] == [chunk_id for chunk_id, _ in before[tuple(terms)]]
        assert_top(found, reference(chunks, terms), 5)
    # and it goes on counting: a new document's terms are found with their new frequencies
    chunks |= write(migrated, 100, corpus(50, seed=5))
    assert_top(search(migrated, QUERIES[0], 5), reference(chunks, QUERIES[0]), 5)
    migrated.close()


def test_cached_postings_follow_another_process_writes_and_a_version_6_database(tmp_path: Path,
                                                                                database: Database) -> None:
    """Postings cached by one process are not used once another has written (the keyword index's generation, which
    a version 6 database gains at 0, has moved on)."""
    store = Store(tmp_path, Settings(**database.settings()))
    chunks = write(store, 0, corpus(300, seed=7))
    store.close()
    execute_sql(store.url, *back_to_version_6(), "UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    searching = Store(tmp_path, Settings(**database.settings()))
    for terms in QUERIES:
        assert_top(search(searching, terms, 5), reference(chunks, terms), 5)
    assert searching.posting_cache is not None and searching.posting_cache.held > 0
    writing = Store(tmp_path, Settings(**database.settings()))
    before = dict(chunks)
    with searching.read() as snapshot:  # a snapshot open across another process's commit sees the state before
        assert_top(snapshot.bm25(sorted(QUERIES[1]), 5), reference(before, QUERIES[1]), 5)
        chunks |= write(writing, 100, corpus(100, seed=8))  # new chunks, new frequencies and a new average length
        assert_top(snapshot.bm25(sorted(QUERIES[0]), 5), reference(before, QUERIES[0]), 5)
    with writing.read() as snapshot:
        documents = [i for i, path, _ in snapshot.document_files() if Path(path).name == "doc3.txt"]
    with writing.write() as unit:
        for chunk_id in unit.delete_documents(documents):
            del chunks[chunk_id]
    writing.close()
    for terms in QUERIES:
        assert_top(search(searching, terms, 5), reference(chunks, terms), 5)
    searching.close()


def test_doctor_finds_and_recounts_damaged_keyword_figures(store: Store) -> None:
    chunks = write(store, 0, corpus(300, seed=6))
    assert "keyword figures" not in {problem.kind for problem in examine(store, [], keyword_tokenizer("simple"), lambda: 0, 0.0).problems}
    execute_sql(store.url, "UPDATE keyword_terms SET chunks = chunks + 7 WHERE term = 'zeta'",
                "DELETE FROM keyword_terms WHERE term = 'omega'",
                "INSERT INTO keyword_terms (term, chunks) VALUES ('ghost', 3)",
                "UPDATE keyword_totals SET length = length + 100")
    expected = reference(chunks, ["zeta", "w0"])
    assert not all(expected[chunk_id] == pytest.approx(score, abs=1e-6)
                   for chunk_id, score in search(store, ["zeta", "w0"], 5))  # the damage moves the scores
    found = [p for p in examine(store, [], keyword_tokenizer("simple"), lambda: 0, 0.0).problems if p.kind == "keyword figures"]
    assert [(p.detail.split()[0], p.repaired) for p in found] == [("4", False)]
    repaired = [p for p in examine(store, [], keyword_tokenizer("simple"), lambda: 0, 0.0, repair=True).problems if p.kind == "keyword figures"]
    assert [p.repaired for p in repaired] == [True]
    assert "keyword figures" not in {problem.kind for problem in examine(store, [], keyword_tokenizer("simple"), lambda: 0, 0.0).problems}
    for terms in QUERIES:
        assert_top(search(store, terms, 5), reference(chunks, terms), 5)
