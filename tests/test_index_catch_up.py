"""Another process's FAISS index catches up from the change log; removals are tombstones (HNSW cannot remove).

Stored vectors, no encoder: random unit vectors written through the write unit as an ingest writes them (the
helpers of ``test_vector_indexes``). What a caught-up index holds is compared with the ``vectors`` table, and what it
returns with an exact search of those vectors, with rebuilding and loading the cache made to fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest
from sqlalchemy import func, select

from kb.config import Settings
from kb.storage import faiss_index, writing
from kb.storage.faiss_index import FaissIndex
from kb.storage.models import SCHEMA_VERSION, Space, VectorChange
from kb.storage.store import Store
from kb.types import Filters
from tests.databases import Database, back_to_version_5, execute_sql
from tests.test_vector_indexes import DIMENSION, add, exact, search, unit_vectors

REPO = Path(__file__).resolve().parent.parent


def delete(store: Store, chunk_ids: list[int]) -> None:
    with store.write() as unit:
        unit.delete_chunks(chunk_ids)


def stored(store: Store) -> tuple[list[int], np.ndarray]:
    """Every chunk id with a vector in the text space, in order, and those vectors: what a fresh index holds."""
    with store.read() as snapshot:
        space = snapshot.spaces()[0]
        return snapshot.stored_vectors(space, snapshot.vector_ids(space))


def held(index: FaissIndex) -> tuple[list[int], np.ndarray]:
    """The chunk ids an index holds alive (its side index's included), in order, and their vectors as it keeps
    them."""
    found: dict[int, np.ndarray] = {}
    for part in (index.index, index.recent):
        labels = faiss.vector_to_array(part.id_map)
        live = labels[labels >= 0]
        if len(live):
            found.update(zip(live.tolist(), part.reconstruct_batch(live)))
    ids = sorted(found)
    return ids, np.array([found[i] for i in ids], dtype=np.float32).reshape(len(ids), DIMENSION)


def assert_like_a_fresh_index(store: Store, queries: np.ndarray) -> None:
    """The store's index holds exactly the stored vectors, and searching it gives the exact top 10 of them (the
    first hit, for an approximate index: each query is a stored vector)."""
    index = store.index(store.spaces()[0])
    ids, vectors = stored(store)
    got_ids, got_vectors = held(index)
    assert got_ids == ids and np.array_equal(got_vectors, vectors) and index.count == len(ids)
    hnsw = "HNSW" in index.factory
    for query in queries:
        expected = exact(ids, vectors, query, 10)
        assert (search(store, query, 10)[:1] if hnsw else search(store, query, 10)) == expected[: 1 if hnsw else 10]


def forbid_reloading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("the index was reloaded or rebuilt instead of caught up")

    monkeypatch.setattr(FaissIndex, "_rebuild", refuse)
    monkeypatch.setattr(FaissIndex, "_read_cache", refuse)


def count_rebuilds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    rebuild = FaissIndex._rebuild

    def counted(self: FaissIndex, *args: object) -> None:
        calls.append(1)
        rebuild(self, *args)

    monkeypatch.setattr(FaissIndex, "_rebuild", counted)
    return calls


@pytest.mark.databases("sqlite", "postgresql")
@pytest.mark.parametrize("factory", ["Flat", "HNSW32"])
def test_a_reader_catches_up_on_commits_without_reloading(tmp_path: Path, database: Database, factory: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(index_factory=factory, **database.settings())
    writer, reader = Store(tmp_path, settings), Store(tmp_path, settings)
    vectors = unit_vectors(600, seed=1)
    ids = add(writer, vectors, first=0)
    search(reader, vectors[0], 10)  # the reader builds its index
    forbid_reloading(monkeypatch)
    more = unit_vectors(50, seed=2)
    ids += add(writer, more, first=600)
    delete(writer, ids[100:140])
    assert_like_a_fresh_index(reader, np.concatenate([vectors[[0, 99, 100, 120, 599]], more[:3]]))
    # Several commits behind, with the largest chunk id removed and a chunk added again (SQLite gives it that id).
    delete(writer, [ids[-1]])
    again = unit_vectors(1, seed=3)
    new_id = add(writer, again, first=700)[0]
    assert new_id == ids[-1] or database.kind != "sqlite"
    ids += add(writer, unit_vectors(5, seed=4), first=701, removing=ids[200:210])
    assert_like_a_fresh_index(reader, np.concatenate([again, more[-1:], vectors[[200, 205, 300]]]))
    assert search(reader, again[0], 1) == [new_id]
    writer.close()
    reader.close()


def test_a_reader_catches_up_on_another_process_s_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(index_factory="HNSW32")
    reader = Store(tmp_path, settings)
    vectors = unit_vectors(500, seed=5)
    ids = add(reader, vectors, first=0)
    search(reader, vectors[0], 10)
    code = ("import sys; from pathlib import Path; from kb.config import Settings; from kb.storage.store import "
            "Store; from tests.test_index_catch_up import delete; from tests.test_vector_indexes import add, "
            "unit_vectors; store = Store(Path(sys.argv[1]), Settings(index_factory='HNSW32')); "
            "add(store, unit_vectors(30, seed=6), first=500); delete(store, list(range(10, 60))); store.close()")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=REPO)
    forbid_reloading(monkeypatch)
    assert_like_a_fresh_index(reader, np.concatenate([vectors[[5, 20, 100]], unit_vectors(30, seed=6)[:2]]))
    assert not set(search(reader, vectors[ids.index(20)], 10)) & set(range(10, 60))
    reader.close()


def test_a_search_begun_before_a_commit_searches_the_newer_index_as_it_is(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A read snapshot older than the in-memory index (a commit landed and was applied while a search ran) neither
    rebuilds the index backwards nor writes that older index over the newer cache file."""
    store = Store(tmp_path, Settings(index_factory="HNSW32"))
    vectors = unit_vectors(300, seed=11)
    ids = add(store, vectors, first=0)
    search(store, vectors[0], 5)
    space = store.spaces()[0]
    index = store.index(space)
    forbid_reloading(monkeypatch)
    with store.read() as older:
        older.generation(space)  # the snapshot is taken here
        newer = add(store, unit_vectors(1, seed=12), first=300)
        index.save()
        saved = index.meta_path.read_bytes()
        found = [chunk_id for chunk_id, _ in older.dense_search(space, vectors[7], 5)]
    assert found[0] == ids[7] and newer[0] not in found  # rows come from the older snapshot
    assert index.meta_path.read_bytes() == saved
    store.close()


@pytest.mark.parametrize("factory", ["Flat", "HNSW32"])
def test_added_vectors_wait_in_a_side_index_until_saved_or_past_its_limit(tmp_path: Path, factory: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A loaded index is not grown by a catch-up (growing copies it: about a second at 1M vectors); what was
    added is searched from the side index, alone, mixed with the index's hits, and under filters."""
    settings = Settings(index_factory=factory)
    writer, reader = Store(tmp_path, settings), Store(tmp_path, settings)
    vectors = unit_vectors(500, seed=13)
    ids = add(writer, vectors, first=0)
    search(reader, vectors[0], 10)
    index = reader.index(reader.spaces()[0])
    assert isinstance(index, FaissIndex)
    forbid_reloading(monkeypatch)
    more = unit_vectors(40, seed=14)
    ids += add(writer, more, first=500, removing=ids[:10])
    assert_like_a_fresh_index(reader, np.concatenate([more[[0, 39]], vectors[[10, 250, 499]]]))
    assert (index.index.ntotal, index.recent.ntotal, index.count) == (500, 40, 530)
    mixed = Filters(path_glob="doc5*.txt")  # doc5 and doc50-59 in the index, doc500-539 in the side index
    passing = [i for i, number in enumerate(range(540)) if str(number).startswith("5")]
    every = np.concatenate([vectors, more])
    for query in (more[3], vectors[55]):
        assert search(reader, query, 10, mixed) == exact([ids[i] for i in passing], every[passing], query, 10)
    monkeypatch.setattr(faiss_index, "EXACT_BELOW", 0)  # an HNSW index's filtered search through its graph
    assert set(search(reader, more[3], 10, mixed)) <= {ids[i] for i in passing}

    monkeypatch.setattr(faiss_index, "RECENT_LIMIT", 50)  # past the limit: merged into the index
    ids += add(writer, unit_vectors(20, seed=15), first=540)
    assert_like_a_fresh_index(reader, np.concatenate([more[[1]], vectors[[499]]]))
    assert (index.index.ntotal, index.recent.ntotal) == (560, 0)
    add(writer, unit_vectors(5, seed=16), first=560)
    search(reader, vectors[0], 1)
    assert index.recent.ntotal == 5
    index.save()  # the saved cache holds the side index's vectors
    assert (index.index.ntotal, index.recent.ntotal, index.count) == (565, 0, 555)
    monkeypatch.undo()
    rebuilds = count_rebuilds(monkeypatch)
    reopened = Store(tmp_path, settings)
    assert_like_a_fresh_index(reopened, vectors[[20, 30]])
    assert rebuilds == []
    for store in (reopened, reader, writer):
        store.close()


def test_hnsw_removals_are_tombstones_never_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(index_factory="HNSW32")
    store = Store(tmp_path, settings)
    vectors = unit_vectors(1000, seed=7)
    ids = add(store, vectors, first=0)
    index = store.index(store.spaces()[0])
    assert isinstance(index, FaissIndex)
    rebuilds = count_rebuilds(monkeypatch)
    removed = list(range(100, 300, 2))  # positions: a tenth of the index, half of documents 100 to 299
    delete(store, [ids[i] for i in removed])
    assert (index.tombstones, index.count, index.index.ntotal) == (100, 900, 1000)
    for i in removed[:20]:  # unfiltered: a removed vector's own query does not find it
        assert ids[i] not in search(store, vectors[i], 10)
    few = Filters(path_glob="doc1??.txt")  # documents 100 to 199: searched exactly, from the vectors the graph keeps
    passing = [i for i in range(100, 200) if i not in removed]
    assert search(store, vectors[150], 10, few) == exact([ids[i] for i in passing], vectors[passing], vectors[150], 10)
    monkeypatch.setattr(faiss_index, "EXACT_BELOW", 0)  # the same filter through the graph
    found = search(store, vectors[150], 10, few)
    assert len(found) == 10 and set(found) <= {ids[i] for i in passing}
    assert rebuilds == []
    monkeypatch.undo()
    rebuilds = count_rebuilds(monkeypatch)

    # The largest chunk id removed and used again (SQLite reuses it): the new vector is found, never the old one.
    delete(store, [ids[-1]])
    again = unit_vectors(1, seed=8)
    assert add(store, again, first=1000) == [ids[-1]]
    only = Filters(path_glob="doc1000.txt")
    assert search(store, again[0], 1) == [ids[-1]]
    with store.read() as snapshot:
        (chunk_id, score), = snapshot.dense_search(store.spaces()[0], vectors[-1], 5, only)
    assert chunk_id == ids[-1] and score == pytest.approx(float(again[0] @ vectors[-1]), abs=1e-5)

    # Tombstones survive a save and load of the cache (in the checksummed index file).
    index.save()
    reopened = Store(tmp_path, settings)
    loaded = reopened.index(reopened.spaces()[0])
    assert isinstance(loaded, FaissIndex) and (loaded.tombstones, loaded.count) == (101, 900)
    assert ids[removed[0]] not in search(reopened, vectors[removed[0]], 10)
    assert search(reopened, vectors[-1], 5, only) == [ids[-1]]
    reopened.close()
    assert rebuilds == []

    # Past a quarter of the index the graph is rebuilt, without its tombstones.
    delete(store, [ids[i] for i in range(500, 800)])
    assert index.generation == -1
    assert_like_a_fresh_index(store, vectors[[0, 499, 800]])
    assert rebuilds == [1] and index.tombstones == 0 and index.index.ntotal == index.count == 600
    store.close()


def test_flat_indexes_compact_their_tombstones_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path, Settings())
    vectors = unit_vectors(400, seed=9)
    ids = add(store, vectors, first=0)
    index = store.index(store.spaces()[0])
    assert isinstance(index, FaissIndex)
    forbid_reloading(monkeypatch)
    delete(store, ids[:90])
    assert (index.tombstones, index.count) == (90, 310)
    delete(store, ids[90:110])  # past a quarter: removed from the index at once
    assert (index.tombstones, index.index.ntotal) == (0, 290)
    assert_like_a_fresh_index(store, vectors[[0, 100, 200, 399]])
    store.close()


def test_a_fresh_process_loads_an_older_cache_and_catches_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = Store(tmp_path, Settings())
    vectors = unit_vectors(300, seed=10)
    ids = add(writer, vectors, first=0)
    writer.index(writer.spaces()[0]).save()
    delete(writer, ids[:20])
    add(writer, unit_vectors(10, seed=11), first=300)
    monkeypatch.setattr(FaissIndex, "_rebuild", lambda *_: pytest.fail("rebuilt instead of caught up"))
    reader = Store(tmp_path, Settings())
    assert_like_a_fresh_index(reader, vectors[[0, 25, 299]])
    writer.close()
    reader.close()


@pytest.mark.databases("sqlite", "postgresql")
def test_past_the_log_or_across_a_replacement_the_reader_rebuilds(tmp_path: Path, database: Database,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(index_factory="HNSW32", **database.settings())
    writer, reader = Store(tmp_path, settings), Store(tmp_path, settings)
    monkeypatch.setattr(writing, "LOG_GENERATIONS", 2)
    vectors = unit_vectors(300, seed=12)
    ids = add(writer, vectors, first=0)
    search(reader, vectors[0], 10)
    rebuilds = count_rebuilds(monkeypatch)
    for number in range(3):  # three commits: the reader's generation leaves the log
        delete(writer, ids[10 * number : 10 * number + 10])
    with writer.sessions() as session:
        space = session.scalar(select(Space))
        assert space is not None and space.logged_from == space.generation - 2
        assert set(session.scalars(select(VectorChange.generation).distinct())) == {space.generation - 1,
                                                                                     space.generation}
    assert_like_a_fresh_index(reader, vectors[[0, 30, 299]])
    assert rebuilds == [1]

    with writer.write() as unit:  # every vector replaced (as ``kb reembed`` does)
        space = unit.space("text")
        assert space is not None
        unit.replace_space(space, "random", "other", DIMENSION, True)
        unit.add_vectors(space.id, ids[30:], unit_vectors(270, seed=13))
    with writer.sessions() as session:
        assert session.scalar(select(func.count()).select_from(VectorChange)) == 0
    assert_like_a_fresh_index(reader, unit_vectors(270, seed=13)[[0, 100]])
    assert rebuilds == [1, 1]
    writer.close()
    reader.close()


@pytest.mark.databases("sqlite", "postgresql")
def test_a_version_5_database_gains_the_change_log(tmp_path: Path, database: Database,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(**database.settings())
    store = Store(tmp_path, settings)
    vectors = unit_vectors(200, seed=14)
    ids = add(store, vectors, first=0)
    store.close()
    execute_sql(store.url, *back_to_version_5(), "UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    writer, reader = Store(tmp_path, settings), Store(tmp_path, settings)
    with reader.read() as snapshot:
        assert snapshot.meta("schema_version") == str(SCHEMA_VERSION)
        space = snapshot.spaces()[0]
        assert space.logged_from == space.generation == 1
    search(reader, vectors[0], 10)
    forbid_reloading(monkeypatch)
    delete(writer, ids[:5])
    assert_like_a_fresh_index(reader, vectors[[0, 5, 199]])
    writer.close()
    reader.close()
