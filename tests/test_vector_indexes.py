"""The approximate vector indexes (FAISS HNSW, pgvector HNSW): searched through their index, complete under filters.

Stored vectors, no encoder: a few thousand random unit vectors written through the write unit as an ingest writes
them, each chunk in a document of its own so that a path filter picks exact chunks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import faiss
import numpy as np
import pytest
from sqlalchemy import event, text

from kb.config import Settings
from kb.storage import pgvector_index
from kb.storage.store import Store
from kb.types import Filters
from tests.databases import PostgresServer

DIMENSION = 16
COUNT = 3_000  # above pgvector_index.BULK_MIN_VECTORS: the first write builds the HNSW graph in one pass


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def add(store: Store, vectors: np.ndarray, first: int, removing: Sequence[int] = ()) -> list[int]:
    """One document and chunk per vector, named ``doc<number>.txt`` from ``first`` on, in one unit that first
    removes the chunks ``removing`` (as reindexing a changed file does); returns the chunk ids."""
    when = datetime(2026, 1, 1)
    with store.write() as unit:
        unit.delete_chunks(removing)
        space = unit.space("text") or unit.new_space("text", "random", "test", DIMENSION, True)
        source = unit.source("/docs", create=True)
        assert source is not None
        documents = unit.insert_documents([
            {"source_id": source.id, "path": f"/docs/doc{number}.txt", "relpath": f"doc{number}.txt",
             "file_type": "text", "size": 1, "mtime_ns": 0, "modified_at": when, "content_hash": str(number),
             "status": "ok", "error": None, "warnings": [], "title": None, "text": "", "pages": [],
             "ingested_at": when} for number in range(first, first + len(vectors))])
        chunk_ids = unit.insert_chunks([
            {"document_id": document_id, "ordinal": 0, "modality": "text", "text": "x", "text_hash": "x",
             "start": 0, "end": 0, "page": None, "tokens": 1, "keyword_length": 1} for document_id in documents])
        unit.add_vectors(space.id, chunk_ids, vectors)
    return chunk_ids


def search(store: Store, query: np.ndarray, k: int, filters: Filters | None = None) -> list[int]:
    space = store.spaces()[0]
    with store.read() as snapshot:
        return [chunk_id for chunk_id, _ in snapshot.dense_search(space, query, k, filters)]


def exact(ids: list[int], vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = vectors @ query
    return [ids[i] for i in np.lexsort((ids, -scores))[:k]]


@pytest.fixture
def pgvector_store(tmp_path: Path, postgres_server: PostgresServer) -> Iterator[Store]:
    url = postgres_server.create("hnsw")
    store = Store(tmp_path, Settings(database_url=url, vector_index="pgvector"))
    yield store
    store.close()
    postgres_server.drop(url)


def test_pgvector_searches_through_its_hnsw_index_and_filters_stay_complete(
        pgvector_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store = pgvector_store
    vectors = unit_vectors(COUNT, seed=1)
    ids = add(store, vectors, first=0)  # a bulk write: the index is dropped, rows copied, the graph built again
    space = store.spaces()[0]
    index = store.index(space)
    with store.read() as snapshot:
        plan = index.explain(snapshot.session, vectors[0], 10)
    assert f"Index Scan using ix_vectors_hnsw_{space.id}" in plan, plan
    assert index.count == COUNT
    # Each stored vector is its own nearest neighbour, found through the graph.
    assert all(search(store, vectors[i], 10)[0] == ids[i] for i in range(0, COUNT, 300))

    # A small write later goes into the existing graph row by row, and is found at once.
    extra = unit_vectors(5, seed=2)
    extra_ids = add(store, extra, first=COUNT)
    assert [search(store, vector, 1)[0] for vector in extra] == extra_ids

    # A filter few chunks pass is searched exactly: the same top 10 as numpy's.
    few = Filters(path_glob="doc1??.txt")  # doc100 ... doc199
    passing = list(range(100, 200))
    assert search(store, vectors[5], 10, few) == exact([ids[i] for i in passing], vectors[passing], vectors[5], 10)

    # Through the graph (as if many chunks passed), a filter that leaves fewer than k among the candidates is
    # searched again exactly: never a short answer while chunks pass.
    monkeypatch.setattr(pgvector_index, "EXACT_BELOW", 0)
    with store.read() as snapshot:
        assert "ix_vectors_hnsw" in index.explain(snapshot.session, vectors[0], 10, few)
    rare = Filters(path_glob=["doc7.txt", "doc2500.txt", "doc2999.txt"])
    assert sorted(search(store, vectors[0], 10, rare)) == sorted([ids[7], ids[2500], ids[2999]])
    found = search(store, vectors[150], 10, few)
    assert len(found) == 10 and found[0] == ids[150] and set(found) <= {ids[i] for i in passing}


def test_pgvector_searches_go_on_while_a_space_is_replaced(pgvector_store: Store) -> None:
    """A re-embed replaces every vector of a space in one transaction: meanwhile searches read the old vectors
    through the old index without waiting for the commit (taking that index off would lock them out until then),
    and after it the new vectors through the new space's index."""
    store = pgvector_store
    old, new = unit_vectors(COUNT, seed=6), unit_vectors(COUNT, seed=7)
    ids = add(store, old, first=0)
    found: list[list[int]] = []
    with store.write() as unit:
        space = unit.replace_space(unit.space("text"), "random", "again", DIMENSION, True)
        unit.add_vectors(space.id, ids, new)  # a bulk write into the replacing space
        searcher = threading.Thread(target=lambda: found.append(search(store, old[3], 1)))
        searcher.start()
        searcher.join(10)
        assert not searcher.is_alive(), "a search waited for the re-embed to commit"
    assert found == [[ids[3]]]
    assert search(store, new[3], 1) == [ids[3]]
    replaced = store.spaces()[0]
    with store.read() as snapshot:
        plan = store.index(replaced).explain(snapshot.session, new[0], 10)
        indexes = snapshot.session.scalars(text("SELECT indexname FROM pg_indexes WHERE indexname LIKE "
                                                "'ix_vectors_hnsw_%'")).all()
    assert f"Index Scan using ix_vectors_hnsw_{replaced.id}" in plan, plan
    assert indexes == [f"ix_vectors_hnsw_{replaced.id}"]  # the replaced space's index went with it


def test_pgvector_graph_builds_ask_for_memory_up_to_the_setting(
        tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A company's server may give a build more memory (or less) than the default: the setting caps what is asked."""
    monkeypatch.setattr(pgvector_index, "BUILD_MEMORY_PER_VECTOR", 2**20)  # as if each vector needed 1 MB of graph
    url = postgres_server.create("memory")
    store = Store(tmp_path, Settings(database_url=url, vector_index="pgvector", pgvector_build_memory_mb=100))
    asked: list[str] = []
    event.listen(store.sessions.kw["bind"], "before_cursor_execute",
                 lambda *args: asked.append(args[2]) if "maintenance_work_mem" in args[2] else None)
    vectors = unit_vectors(COUNT, seed=4)
    ids = add(store, vectors, first=0)  # a bulk write: built in one pass
    assert asked[-1].endswith("'100MB'"), asked  # the build of 3,000 "1 MB" vectors (the empty space's asked 64)
    assert search(store, vectors[9], 1) == [ids[9]]
    store.close()
    postgres_server.drop(url)


def test_hnsw_graphs_are_built_with_the_ef_construction_set(tmp_path: Path, postgres_server: PostgresServer) -> None:
    """A large knowledge base needs a better graph than the libraries' defaults build (recall at 1M chunks): the
    setting reaches FAISS's graph, kept in its cache, and pgvector's index; unset, each library's own applies."""
    vectors = unit_vectors(COUNT, seed=5)
    for ef_construction, expected in ((None, 40), (80, 80)):
        folder = tmp_path / f"faiss-{ef_construction}"
        folder.mkdir()
        settings = Settings(index_factory="HNSW32", hnsw_ef_construction=ef_construction)
        store = Store(folder, settings)
        ids = add(store, vectors, first=0)
        store.index(store.spaces()[0]).save()
        store.close()
        reopened = Store(folder, settings)
        graph = faiss.downcast_index(reopened.index(reopened.spaces()[0]).index.index)
        assert graph.hnsw.efConstruction == expected
        assert search(reopened, vectors[42], 1) == [ids[42]]
        reopened.close()
    url = postgres_server.create("construction")
    (tmp_path / "pgvector").mkdir()
    store = Store(tmp_path / "pgvector", Settings(database_url=url, vector_index="pgvector", hnsw_ef_construction=80))
    ids = add(store, vectors, first=0)  # a bulk write: the graph built in one pass, with the setting
    with store.read() as snapshot:
        definitions = snapshot.session.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname LIKE "
                                                    "'ix_vectors_hnsw_%'")).scalars().all()
    assert len(definitions) == 1 and "ef_construction='80'" in definitions[0], definitions
    assert search(store, vectors[42], 1) == [ids[42]]
    store.close()
    postgres_server.drop(url)


def test_faiss_hnsw_is_an_option_of_the_faiss_cache(tmp_path: Path) -> None:
    store = Store(tmp_path, Settings(index_factory="HNSW32", hnsw_ef_search=64))
    vectors = unit_vectors(COUNT, seed=3)
    ids = add(store, vectors, first=0)
    index = store.index(store.spaces()[0])
    assert isinstance(faiss.downcast_index(index.index.index), faiss.IndexHNSWFlat) and index.count == COUNT
    assert all(search(store, vectors[i], 10)[0] == ids[i] for i in range(0, COUNT, 300))
    few = Filters(path_glob="doc1??.txt")
    passing = list(range(100, 200))
    assert search(store, vectors[5], 10, few) == exact([ids[i] for i in passing], vectors[passing], vectors[5], 10)
    store.close()
