"""Storage at scale: FAISS Flat and FAISS HNSW (SQLite) against pgvector HNSW (PostgreSQL), in one run.

N chunks of real text (the wiki distractors' summaries, 40-word windows at shifting offsets: the text repeated with
variations) with their keyword postings, and their vectors: ``--vectors encoder``, the configured text encoder's,
queried with real questions (xquad-en's, minus the titles held out with squad2-dev-part), embedded once and cached
under ``--vector-cache``; or a fast stand-in for the encoder (``text``: each chunk's words projected at random,
queried with four of a chunk's words or, with ``--questions``, those questions' words; ``clustered``: random vectors
around 1,000 centres), ``--dim`` 384 as all-MiniLM. Everything is written through the catalog's write unit exactly
as an ingest writes it, ``--commit`` chunks per commit. Printed per index: ingest throughput; search p50/p95 for
dense (query encoding excluded), dense with a path filter, keyword (BM25 summed from the posting cache, each query
once, so the first use of a term reads it from SQL; then the memory the cache holds and, as the peer, every search
in SQL), both in one snapshot (the two searches of hybrid) and the whole hybrid search a user runs
(``Retriever.search``: the true-score completion, fusion and the hits' rows too); recall@10 against an exact numpy
search (ties counted as ann-benchmarks counts them) at each ``--ef`` (``hnsw_ef_search``); another process's first
search after a commit that replaces a 10-chunk document (its own ``Store``: one with its FAISS index loaded catches
up from the change log; a fresh one loads the cache, one commit old and caught up, or at the commit's generation;
pgvector has nothing to do); the index's size. Query encoding, excluded from the search times, is measured apart
with the default text encoder on the same queries. ``--backends`` picks which of the three to load. PostgreSQL comes
from ``pgserver`` (the test extra). Figures: docs/benchmarks.md.

    nice -n 10 python -m benchmarks.storage_scale --chunks 100000
    nice -n 19 python -m benchmarks.storage_scale --chunks 100000 --vectors encoder --backends hnsw pgvector \
        --measure recall dense --ef 40 64 100 200 400
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import faiss
import numpy as np
import scipy.sparse

from benchmarks.squad_corpus import DATASETS, squad_questions, squad_titles
from kb.config import Settings
from kb.encoders.base import EncoderIdentity, TextEncoder
from kb.encoders.factory import text_encoder
from kb.keywords import SimpleTokenizer, keyword_length
from kb.storage.faiss_index import FaissIndex
from kb.storage.models import Space
from kb.storage.pgvector_index import PgvectorIndex
from kb.storage.reading import Snapshot
from kb.storage.store import Store
from kb.types import Filters
from retrieval.retriever import Retriever
from tests.peak_memory import peak_mb

DOCUMENT_CHUNKS = 100  # chunks per document
WINDOW = 40  # words per chunk
WHEN = datetime(2026, 1, 1)
FILTER = Filters(path_glob="doc1*.txt")  # doc1, doc10-19, doc100-199, ...: about a tenth of the documents


def clustered_vectors(count: int, dimension: int, seed: int) -> np.ndarray:
    """Unit vectors around 1,000 random centres: neighbours exist, as in real text."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dimension)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), count)] + 0.6 * rng.standard_normal((count, dimension),
                                                                                        dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def text_vectors(terms: list[list[str]], vocabulary: dict[str, int], weights: np.ndarray, dimension: int,
                 seed: int) -> np.ndarray:
    """A fast stand-in for a text encoder: every term a fixed random direction, a text the idf-weighted sum of its
    terms' directions, normalised (a random projection of its bag of words). Texts that share words are near."""
    directions = np.random.default_rng(seed).standard_normal((len(vocabulary), dimension), dtype=np.float32)
    ids = np.fromiter((vocabulary.get(term, -1) for words in terms for term in words), dtype=np.int64)
    rows = np.repeat(np.arange(len(terms)), [len(words) for words in terms])
    known = ids >= 0
    bags = scipy.sparse.csr_matrix((weights[ids[known]], (rows[known], ids[known])),
                                   shape=(len(terms), len(vocabulary)), dtype=np.float32)
    vectors = np.asarray(bags @ directions, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def idf(terms: list[list[str]]) -> tuple[dict[str, int], np.ndarray]:
    """Every term's number, and its inverse document frequency among the chunks."""
    frequencies = Counter(term for words in terms for term in set(words))
    vocabulary = {term: number for number, term in enumerate(sorted(frequencies))}
    counts = np.array([frequencies[term] for term in sorted(frequencies)], dtype=np.float32)
    return vocabulary, np.log(len(terms) / counts).astype(np.float32)


def encoder_vectors(encoder: TextEncoder, texts: list[str], cache: Path) -> np.ndarray:
    """The encoder's vectors of the first ``len(texts)`` chunks: read from ``cache``, where a file is named by the
    chunk count and the encoder's identity, else made and saved there. Each distinct text is embedded once (1M
    chunks hold about 342k), and those of the largest smaller count cached for the same encoder are reused: the
    chunks are the same from the first on. Embedding takes an hour at 1M chunks, so each batch of 10,000 is saved as
    it is made and a stopped run resumes from the batches saved."""
    fingerprint = encoder.identity().fingerprint[:16]
    path = cache / f"wiki-{WINDOW}w-{len(texts)}-{fingerprint}.npy"
    if path.exists():
        print(f"chunk vectors ({encoder.identity().model}) read from {path}", flush=True)
        return np.load(path)
    known: dict[str, np.ndarray] = {}
    cached = ((int(found.name.split("-")[2]), found) for found in cache.glob(f"wiki-{WINDOW}w-*-{fingerprint}.npy"))
    smaller = sorted((count, found) for count, found in cached if count < len(texts))
    if smaller:
        count, found = smaller[-1]
        known = dict(zip(texts[:count], np.load(found), strict=True))
        print(f"vectors of the first {count} chunks read from {found}", flush=True)
    missing = list(dict.fromkeys(text for text in texts if text not in known))
    batches = cache / f"{path.stem}-batches-{hashlib.sha256(chr(0).join(missing).encode()).hexdigest()[:12]}"
    batches.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for start in range(0, len(missing), 10_000):
        batch = missing[start : start + 10_000]
        saved = batches / f"{start:07d}.npy"
        if saved.exists():
            known.update(zip(batch, np.load(saved), strict=True))
            continue
        vectors = encoder.encode(batch)
        save_whole(saved, vectors)
        known.update(zip(batch, vectors, strict=True))
        print(f"  embedded {start + len(batch)} of {len(missing)} texts in {time.perf_counter() - started:.0f} s",
              flush=True)
    seconds = time.perf_counter() - started
    print(f"embedding {len(missing)} distinct texts of {len(texts)} chunks ({encoder.identity().model}, batches of "
          f"{Settings().batch_size}): {seconds:.0f} s", flush=True)
    vectors = np.stack([known[text] for text in texts]).astype(np.float32)
    save_whole(path, vectors)
    shutil.rmtree(batches)
    return vectors


def save_whole(path: Path, vectors: np.ndarray) -> None:
    """Save ``vectors`` at ``path`` whole or not at all: a run stopped while writing leaves no file that looks
    complete."""
    partial = path.with_suffix(".partial.npy")
    np.save(partial, vectors)
    partial.replace(path)


def dev_questions(data: Path, count: int) -> list[str]:
    """``count`` xquad-en questions (dev questions, the titles it shares with the held-out squad2-dev-part left
    out), drawn at random."""
    held_out = squad_titles(data / DATASETS["squad2-dev-part"]) if (data / DATASETS["squad2-dev-part"]).exists() \
        else set()
    questions = squad_questions(data / DATASETS["xquad-en"], held_out)
    return random.Random(4).sample(questions, min(count, len(questions)))


def chunk_texts(data: Path, count: int) -> list[str]:
    """``count`` 40-word windows of the wiki summaries, each passage read again at a new offset on every pass."""
    passages = [entry["extract"].split() for entry in
                json.loads((data / "wiki-distractors" / "summaries_en-us.json").read_text(encoding="utf-8")).values()]
    passages = [words for words in passages if len(words) >= WINDOW]
    texts = []
    for number in range(count):
        words = passages[number % len(passages)]
        start = (7 * (number // len(passages))) % (len(words) - WINDOW + 1)
        texts.append(" ".join(words[start : start + WINDOW]))
    return texts


def document_row(source_id: int, name: str) -> dict[str, object]:
    return {"source_id": source_id, "path": f"/bench/{name}", "relpath": name, "file_type": "text", "size": 1,
            "mtime_ns": 0, "modified_at": WHEN, "content_hash": name, "status": "ok", "error": None, "warnings": [],
            "title": None, "text": "", "pages": [], "ingested_at": WHEN}


def add_chunks(store: Store, first: int, vectors: np.ndarray, texts: list[str], terms: list[list[str]],
               names: list[str], removing: range = range(0)) -> None:
    """One write unit: documents ``names`` (``DOCUMENT_CHUNKS`` chunks each), their chunks, vectors, postings,
    after removing the chunks ``removing``."""
    with store.write() as unit:
        unit.delete_chunks(removing)
        space = unit.space("text") or unit.new_space("text", "random-projection", "bench", vectors.shape[1], True)
        source = unit.source("/bench", create=True)
        assert source is not None
        document_ids = unit.insert_documents([document_row(source.id, name) for name in names])
        chunk_ids = unit.insert_chunks([
            {"document_id": document_ids[i // DOCUMENT_CHUNKS], "ordinal": i % DOCUMENT_CHUNKS, "modality": "text",
             "text": texts[i], "text_hash": str(first + i), "start": 0, "end": len(texts[i]), "page": None,
             "tokens": len(terms[i]), "keyword_length": keyword_length(terms[i])} for i in range(len(vectors))])
        unit.add_vectors(space.id, chunk_ids, vectors)
        unit.add_postings(chunk_ids, terms)


def load(store: Store, vectors: np.ndarray, texts: list[str], terms: list[list[str]], commit: int) -> None:
    for start in range(0, len(vectors), commit):
        end = min(start + commit, len(vectors))
        names = [f"doc{number}.txt" for number in range(start // DOCUMENT_CHUNKS, -(-end // DOCUMENT_CHUNKS))]
        add_chunks(store, start, vectors[start:end], texts[start:end], terms[start:end], names)


Search = Callable[[Snapshot], list[tuple[int, float]]]


def kth_best_scores(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Each query's exact ``k``-th best inner product over all vectors, computed in blocks with numpy."""
    best = np.full((len(queries), k), -np.inf, dtype=np.float32)
    for start in range(0, len(vectors), 100_000):
        merged = np.concatenate([best, queries @ vectors[start : start + 100_000].T], axis=1)
        best = -np.partition(-merged, k - 1, axis=1)[:, :k]
    return best.min(axis=1)


def recall_at(found: list[list[int]], vectors: np.ndarray, queries: np.ndarray, kth: np.ndarray, k: int) -> float:
    """Recall@k as ann-benchmarks counts it: a hit is right when it is at least as near as the exact ``k``-th
    neighbour. The text repeats (1M chunks hold about 340,000 distinct texts), so the true top ``k`` holds exact
    copies of one another and counting ids would fault an index for returning one copy instead of another. Chunk
    ids are 1, 2, ... in load order."""
    loaded = [[i for i in ids[:k] if i <= len(vectors)] for ids in found]  # not the ten a "reader" run adds
    right = [int(np.sum(vectors[np.asarray(ids, dtype=np.int64) - 1] @ query >= threshold - 1e-5)) if ids else 0
             for ids, query, threshold in zip(loaded, queries, kth, strict=True)]
    return float(np.mean(right)) / k


def timed_calls(calls: list[Callable[[], object]]) -> list[float]:
    """Seconds per call."""
    times = []
    for call in calls:
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def dense(space: Space, query: np.ndarray, k: int, filters: Filters | None = None) -> Search:
    return lambda snapshot: snapshot.dense_search(space, query, k, filters)


def dense_and_keyword(space: Space, query: np.ndarray, terms: list[str], depth: int) -> Search:
    return lambda snapshot: snapshot.dense_search(space, query, depth) + snapshot.bm25(terms, depth)


class StoredQueryVectors:
    """The text encoder's place in a whole search, answered from the query vectors computed beforehand, so that
    query encoding (timed apart) stays out of the figures as the target asks."""

    def __init__(self, queries: list[str], vectors: np.ndarray) -> None:
        self.vectors = dict(zip(queries, vectors, strict=True))
        self.dimension = vectors.shape[1]

    def identity(self) -> EncoderIdentity:
        return EncoderIdentity(model="random-projection", fingerprint="bench", dimension=self.dimension)

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vectors[text] for text in texts])


def timed(store: Store, queries: list[Search]) -> tuple[list[float], list[list[int]]]:
    """Seconds per query (each in its own read snapshot) and the chunk ids each returned."""
    times, results = [], []
    for query in queries:
        started = time.perf_counter()
        with store.read() as snapshot:
            found = query(snapshot)
        times.append(time.perf_counter() - started)
        results.append([chunk_id for chunk_id, _ in found])
    return times, results


def first_search_after_commit(writer: Store, reader_factory: Callable[[], Store], query: np.ndarray, save: bool,
                              commit: int) -> tuple[float, float]:
    """Another process (its own Store) has searched; the writer commits a changed document (10 chunks of the load
    removed, 10 added, as reindexing a changed file does; ``save``: then saves its cache). Seconds of that reader's
    next search and of a fresh process's first search."""
    reader = reader_factory()
    space = reader.spaces()[0]
    timed(reader, [dense(space, query, 10)])
    writer.index(writer.spaces()[0])
    extra = clustered_vectors(10, space.dimension, seed=99)
    add_chunks(writer, 0, extra, ["extra"] * 10, [["extra"]] * 10, [f"extra{time.time_ns()}.txt"],
               removing=range(10 * commit + 1, 10 * commit + 11))
    if save:
        for index in writer.loaded_indexes():
            index.save()
    caught_up = timed(reader, [dense(space, query, 10)])[0][0]
    reader.close()
    fresh = reader_factory()
    loaded = timed(fresh, [dense(space, query, 10)])[0][0]
    fresh.close()
    return caught_up, loaded


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(share * len(values)))]


def milliseconds(values: list[float]) -> str:
    return f"p50 {1000 * statistics.median(values):.1f} ms, p95 {1000 * percentile(values, 0.95):.1f} ms"


def index_size_mb(store: Store) -> float:
    """What the space's index takes: the FAISS index in each process's memory, pgvector's on the server."""
    index = store.index(store.spaces()[0])
    if isinstance(index, PgvectorIndex):
        return index.size_bytes() / 2**20
    assert isinstance(index, FaissIndex)
    return len(faiss.serialize_index(index.index)) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--commit", type=int, default=5_000, help="chunks per commit while loading")
    parser.add_argument("--ef", type=int, nargs="+", default=[40, 100, 200, 400],
                        help="hnsw_ef_search values for recall@10 (the first ef is the setting of the timings)")
    parser.add_argument("--hnsw", default="HNSW32", help="the FAISS HNSW index_factory string")
    parser.add_argument("--ef-construction", type=int, help="hnsw_ef_construction for both graphs (unset: each "
                        "library's own, FAISS 40, pgvector 64)")
    parser.add_argument("--vectors", choices=("encoder", "text", "clustered"), default="text", help=(
        "encoder: the configured text encoder's vectors, queried with xquad-en's dev questions (--queries at most "
        "1,090); text: each chunk's words projected at random (near texts are near vectors); clustered: random "
        "vectors around 1,000 centres, nearly equidistant within a cluster (a hard case for HNSW)"))
    parser.add_argument("--questions", action="store_true", help=(
        "with text or clustered vectors too, the keyword searches run xquad-en's dev questions instead of four of "
        "a chunk's words (text vectors: a question's words projected as a chunk's are): real questions' keyword "
        "and hybrid timings without an hour of encoding at 1M chunks"))
    parser.add_argument("--vector-cache", type=Path, default=Path(tempfile.gettempdir()) / "kb-encoder-vectors",
                        help="where --vectors encoder keeps the chunks' vectors between runs (one .npy per chunk "
                             "count and encoder)")
    parser.add_argument("--measure", nargs="+",
                        choices=("dense", "filter", "keyword", "hybrid", "search", "recall", "reader"),
                        default=["dense", "filter", "keyword", "hybrid", "search", "recall", "reader"], help=(
                            "what to time: hybrid is its two searches, search the whole hybrid search a user runs "
                            "(Retriever.search, k 10: both searches, the true-score completion, fusion, the hits' "
                            "rows; query encoding excluded); filter and reader cost minutes at 1M chunks (the "
                            "filtered HNSW search runs exactly, another process rebuilds its FAISS index from SQL)"))
    parser.add_argument("--backends", nargs="+", choices=("flat", "hnsw", "pgvector"),
                        default=["flat", "hnsw", "pgvector"], help="which indexes to load and time")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--keep", type=Path, help=(
        "load into this folder and keep it (the PostgreSQL server's data too); a later run with the same --chunks, "
        "--dim and --vectors measures what is there instead of loading again (a 1M-chunk load takes 15-40 min); a "
        "stopped load is cleared and started over"))
    args = parser.parse_args()
    if args.commit % DOCUMENT_CHUNKS:
        parser.error(f"--commit must be a multiple of {DOCUMENT_CHUNKS}, the chunks of one document: a document is "
                     "written whole in one commit")
    if not (args.data / "wiki-distractors").is_dir():
        raise SystemExit(f"the wiki distractors are not under {args.data}: pass --data (see shared/data/README.md)")
    import pgserver

    texts = chunk_texts(args.data, args.chunks)
    tokenizer = SimpleTokenizer()
    terms = [tokenizer.tokenize(text) for text in texts]
    rng = np.random.default_rng(2)
    sources = rng.integers(0, args.chunks, args.queries)
    picker = random.Random(3)
    keyword_queries = [picker.sample(sorted(set(terms[i])), min(4, len(set(terms[i])))) for i in sources]
    query_texts = [" ".join(words) for words in keyword_queries]
    encoder = text_encoder(Settings())
    if args.vectors == "encoder" or args.questions:  # queries: real questions, their keyword search on their terms
        query_texts = dev_questions(args.data, args.queries)
        keyword_queries = [tokenizer.tokenize_query(question) for question in query_texts]
    if args.vectors == "encoder":
        vectors = encoder_vectors(encoder, texts, args.vector_cache)
        queries = encoder.encode(query_texts)
    elif args.vectors == "text":  # queries: the words of each keyword query, encoded the same way
        vocabulary, weights = idf(terms)
        vectors = text_vectors(terms, vocabulary, weights, args.dim, seed=1)
        queries = text_vectors(keyword_queries, vocabulary, weights, args.dim, seed=1)
    else:  # queries: stored vectors nudged
        vectors = clustered_vectors(args.chunks, args.dim, seed=1)
        queries = vectors[sources] + 0.3 * rng.standard_normal((args.queries, args.dim), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    depth = Settings().fusion.candidates
    ef = args.ef[0]
    encoder.encode(["warm up"])
    encoding = timed_calls([lambda query=query: encoder.encode([query]) for query in query_texts])
    print(f"query encoding ({encoder.identity().model}, one query at a time, excluded below): "
          f"{milliseconds(encoding)}", flush=True)
    loaded_as = {"chunks": args.chunks, "dim": args.dim, "vectors": args.vectors}
    with tempfile.TemporaryDirectory(prefix="kb-storage-scale-") as folder:
        root = args.keep or Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(root / "pg", cleanup_mode="stop")
        server.psql("CREATE DATABASE bench;")  # psql reports an existing one and goes on
        url = f"postgresql+psycopg://postgres@/bench?host={root / 'pg'}"
        for kind in ("flat", "hnsw", "pgvector"):
            (root / kind).mkdir(parents=True, exist_ok=True)
        cache_mb = Settings().keywords.cache_mb
        every_backend: dict[str, tuple[str, Callable[..., Store]]] = {
            "flat": ("FAISS Flat (SQLite)", lambda ef=ef, cache=cache_mb: Store(root / "flat", Settings(
                keyword_cache_mb=cache))),
            "hnsw": (f"FAISS {args.hnsw} (SQLite)", lambda ef=ef, cache=cache_mb: Store(root / "hnsw", Settings(
                index_factory=args.hnsw, hnsw_ef_search=ef, hnsw_ef_construction=args.ef_construction,
                keyword_cache_mb=cache))),
            "pgvector": ("pgvector HNSW (PostgreSQL)", lambda ef=ef, cache=cache_mb: Store(
                root / "pgvector", Settings(database_url=url, vector_index="pgvector", hnsw_ef_search=ef,
                hnsw_ef_construction=args.ef_construction, keyword_cache_mb=cache))),
        }
        backends = {kind: every_backend[kind] for kind in args.backends}
        kth = kth_best_scores(vectors, queries, 10)
        for kind, (name, factory) in backends.items():
            marker = root / kind / "loaded.json"
            kept = marker.is_file() and json.loads(marker.read_text()) == loaded_as
            if not kept:  # what an earlier, stopped or different load left goes first
                shutil.rmtree(root / kind)
                (root / kind).mkdir()
                if kind == "pgvector":
                    server.psql("DROP DATABASE bench WITH (FORCE);")
                    server.psql("CREATE DATABASE bench;")
            store = factory()
            started = time.perf_counter()
            if not kept:
                load(store, vectors, texts, terms, args.commit)
                marker.write_text(json.dumps(loaded_as))
            loaded = time.perf_counter() - started
            space = store.spaces()[0]
            started = time.perf_counter()
            store.index(space)  # FAISS builds (HNSW: the graph) at its first search; pgvector has nothing to do
            built = time.perf_counter() - started
            how = f"kept from an earlier run in {root / kind}" if kept else \
                f"{args.commit} per commit, loaded in {loaded:.0f} s ({args.chunks / loaded:.0f} chunks/s)"
            print(f"{name}: {args.chunks} chunks x {vectors.shape[1]}, {how}; index built at first search: {built:.1f} s; "
                  f"index {index_size_mb(store):.0f} MB", flush=True)
            timed(store, [dense(space, query, 10) for query in queries[:3]])  # warm: PostgreSQL's caches
            searches: dict[str, list[Search]] = {
                "dense": [dense(space, query, 10) for query in queries],
                "dense, path filter": [dense(space, query, 10, FILTER) for query in queries],
                "keyword": [lambda snapshot, t=t: snapshot.bm25(t, depth) for t in keyword_queries],
                f"dense + keyword (depth {depth})": [dense_and_keyword(space, query, words, depth)
                                                     for query, words in zip(queries, keyword_queries)],
            }
            chosen = dict(zip(("dense", "filter", "keyword", "hybrid"), searches.items(), strict=True))
            timings = [f"{label} {milliseconds(timed(store, runs)[0])}" for kind, (label, runs) in chosen.items()
                       if kind in args.measure]
            if "keyword" in args.measure:  # the peer: every search scored in SQL, as with keyword_cache_mb 0
                held = store.posting_cache.held / 2**20 if store.posting_cache else 0
                timings.append(f"posting cache {held:.0f} MB of {cache_mb}")
                uncached = factory(cache=0)
                in_sql = timed(uncached, searches["keyword"])[0]
                timings.append(f"keyword in SQL (no posting cache) {milliseconds(in_sql)}")
                uncached.close()
            if "search" in args.measure:
                retriever = Retriever(store, StoredQueryVectors(query_texts, queries), tokenizer, store.settings)
                retriever.search(query_texts[0], k=10)  # records the keyword tokenizer: a write, not a search
                whole = timed_calls([lambda q=q: retriever.search(q, k=10) for q in query_texts])
                timings.append(f"whole hybrid search (k 10) {milliseconds(whole)}")
            if timings:
                print(f"  {'; '.join(timings)}", flush=True)
            if "recall" in args.measure:
                for index in store.loaded_indexes():  # each ef reopens the store: from this cache, not from SQL
                    index.save()
                recalls = []
                for value in args.ef if not name.startswith("FAISS Flat") else args.ef[:1]:
                    store.close()
                    store = factory(ef=value)
                    space = store.spaces()[0]
                    times, results = timed(store, [dense(space, query, 10) for query in queries])
                    recall = recall_at(results, vectors, queries, kth, 10)
                    recalls.append(f"ef {value}: {recall:.3f} (p50 {1000 * statistics.median(times):.1f} ms)")
                print(f"  recall@10 against exact: {'; '.join(recalls)}", flush=True)
            if "reader" in args.measure:
                caught_up, behind = first_search_after_commit(store, factory, queries[0], False, 0)
                caught_up_again, current = first_search_after_commit(store, factory, queries[1], True, 1)
                print(f"  another process's first search after a commit: {1000 * caught_up:.0f} ms, "
                      f"{1000 * caught_up_again:.0f} ms (its index loaded: caught up); a fresh process's "
                      f"{1000 * behind:.0f} ms (cache one commit old, caught up), {1000 * current:.0f} ms (the "
                      f"writer's cache saved after the commit)",
                      flush=True)
            store.close()
        print(f"peak memory of this process: {peak_mb():.0f} MB")
        server.cleanup()


if __name__ == "__main__":
    main()
