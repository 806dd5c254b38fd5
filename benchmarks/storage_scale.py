"""Storage at scale: dense search over N chunks with the FAISS cache (SQLite) against pgvector HNSW (PostgreSQL).

Stored vectors, not an encoder: N chunks get clustered random unit vectors (``--dim``, 384 as all-MiniLM), written
through the catalog's write unit exactly as an ingest writes them. Printed, for both backends in the same run:
dense search p50/p95 (query encoding excluded: queries are stored vectors nudged), recall@10 of pgvector's HNSW
against exact search, and another process's first search after a commit (its own ``Store``: FAISS rebuilds or
reloads its index, pgvector has nothing to do). PostgreSQL comes from ``pgserver`` (the test extra).

    nice -n 10 python -m benchmarks.storage_scale --chunks 100000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from kb.config import Settings
from kb.storage.store import Store

DOCUMENT_CHUNKS = 100  # chunks per document
BATCH = 5_000  # chunks per commit while loading


def clustered_vectors(count: int, dimension: int, seed: int) -> np.ndarray:
    """Unit vectors around 1,000 random centres: neighbours exist, as in real text."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dimension)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), count)] + 0.6 * rng.standard_normal((count, dimension),
                                                                                        dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def load(store: Store, vectors: np.ndarray) -> int:
    """Documents, chunks and vectors through the write unit; returns the space id."""
    with store.write() as unit:
        space = unit.new_space("text", "random-projection", "bench", vectors.shape[1], True)
        source = unit.source("/bench", create=True)
        assert source is not None
        source_id = source.id
    for start in range(0, len(vectors), BATCH):
        part = vectors[start : start + BATCH]
        with store.write() as unit:
            documents = [{"source_id": source_id, "path": f"/bench/doc{number}.txt", "relpath": f"doc{number}.txt",
                          "file_type": "text", "size": 1, "mtime_ns": 0, "modified_at": _epoch(),
                          "content_hash": str(number), "status": "ok", "error": None, "warnings": [], "title": None,
                          "text": "", "pages": [], "ingested_at": _epoch()}
                         for number in range(start // DOCUMENT_CHUNKS, (start + len(part)) // DOCUMENT_CHUNKS)]
            document_ids = unit.insert_documents(documents)
            chunks = [{"document_id": document_ids[i // DOCUMENT_CHUNKS], "ordinal": i % DOCUMENT_CHUNKS,
                       "modality": "text", "text": f"chunk {start + i}", "text_hash": str(start + i), "start": 0,
                       "end": 0, "page": None, "tokens": 2, "keyword_length": 2} for i in range(len(part))]
            unit.add_vectors(space.id, unit.insert_chunks(chunks), part)
    return space.id


def _epoch():  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime(2026, 1, 1)


def search_times(store: Store, queries: np.ndarray, k: int) -> tuple[list[float], list[list[int]]]:
    space = store.spaces()[0]
    times, results = [], []
    for query in queries:
        started = time.perf_counter()
        with store.read() as snapshot:
            found = snapshot.dense_search(space, query, k)
        times.append(time.perf_counter() - started)
        results.append([chunk_id for chunk_id, _ in found])
    return times, results


def first_search_after_commit(writer: Store, reader_factory, queries: np.ndarray, save: bool) -> float:  # type: ignore[no-untyped-def]
    """Another process (its own Store) has searched; the writer commits 10 vectors; its next search's time."""
    reader = reader_factory()
    search_times(reader, queries[:1], 10)
    space = writer.spaces()[0]
    writer.index(space)
    extra = clustered_vectors(10, space.dimension, seed=99)
    with writer.write() as unit:
        document_id = unit.insert_documents([{"source_id": 1, "path": f"/bench/extra{time.time_ns()}.txt",
                                              "relpath": "extra.txt", "file_type": "text", "size": 1, "mtime_ns": 0,
                                              "modified_at": _epoch(), "content_hash": "x", "status": "ok",
                                              "error": None, "warnings": [], "title": None, "text": "", "pages": [],
                                              "ingested_at": _epoch()}])[0]
        ids = unit.insert_chunks([{"document_id": document_id, "ordinal": i, "modality": "text", "text": "extra",
                                   "text_hash": "x", "start": 0, "end": 0, "page": None, "tokens": 1,
                                   "keyword_length": 1} for i in range(10)])
        unit.add_vectors(space.id, ids, extra)
    if save:
        for index in writer.loaded_indexes():
            index.save()
    seconds = search_times(reader, queries[1:2], 10)[0][0]
    reader.close()
    return seconds


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(share * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    import pgserver

    vectors = clustered_vectors(args.chunks, args.dim, seed=1)
    rng = np.random.default_rng(2)
    queries = vectors[rng.integers(0, len(vectors), args.queries)] + 0.3 * rng.standard_normal(
        (args.queries, args.dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory(prefix="kb-storage-scale-") as folder:
        root = Path(folder)
        server = pgserver.get_server(root / "pg", cleanup_mode="stop")
        server.psql("CREATE DATABASE bench;")
        url = f"postgresql+psycopg://postgres@/bench?host={root / 'pg'}"
        backends = {
            "faiss Flat (SQLite)": lambda: Store(root / "faiss", Settings()),
            "pgvector HNSW (PostgreSQL)": lambda: Store(root / "pgvector",
                                                        Settings(database_url=url, vector_index="pgvector")),
        }
        results: dict[str, list[list[int]]] = {}
        for name, factory in backends.items():
            (root / name.split()[0]).mkdir()
            store = factory()
            started = time.perf_counter()
            load(store, vectors)
            loaded = time.perf_counter() - started
            search_times(store, queries[:3], 10)  # warm: FAISS builds its index, PostgreSQL its caches
            times, results[name] = search_times(store, queries, 10)
            rebuild = first_search_after_commit(store, factory, queries, save=False)
            reload = first_search_after_commit(store, factory, queries, save=True)
            print(f"{name}: {args.chunks} chunks x {args.dim} loaded in {loaded:.0f} s "
                  f"({args.chunks / loaded:.0f} chunks/s); dense search p50 {1000 * statistics.median(times):.1f} ms,"
                  f" p95 {1000 * percentile(times, 0.95):.1f} ms; another process's first search after a commit: "
                  f"{1000 * rebuild:.0f} ms (no cache saved), {1000 * reload:.0f} ms (cache saved)", flush=True)
            store.close()
        exact, approximate = results["faiss Flat (SQLite)"], results["pgvector HNSW (PostgreSQL)"]
        recall = np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approximate, exact)])
        print(f"pgvector HNSW recall@10 against exact (FAISS Flat): {recall:.3f} over {args.queries} queries")
        server.cleanup()


if __name__ == "__main__":
    main()
