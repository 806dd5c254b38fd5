"""Killed ingests, searches during a reindex, and a folder full of bad input."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError

from ingestion.scan import IN_SOURCE
from kb import KnowledgeBase, containment
from kb.containment import REFUSED
from kb.storage.database import default_url
from kb.storage.models import Chunk, Document
from tests.concurrency import search_while_running
from tests.databases import Database
from tests.documents import pdf_bytes

SQLITE_WAIT = {"timeout": 30}
WORDS = ("harbour lantern copper meadow quarry falcon ember glacier orchard thistle pylon saffron "
         "tundra cobalt walnut basalt marigold cinder lagoon juniper").split()


def write_corpus(folder: Path, files: int, seed: int) -> dict[str, str]:
    """Files with several paragraphs each and one unique marker word, so completeness can be checked."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    markers = {}
    for number in range(files):
        marker = f"marker{number:04d}x"
        paragraphs = [" ".join(rng.choice(WORDS) for _ in range(60)) + "." for _ in range(3)]
        (folder / f"file{number:04d}.txt").write_text(f"{marker} " + "\n\n".join(paragraphs), encoding="utf-8")
        markers[f"file{number:04d}.txt"] = marker
    return markers


def environment(kb_dir: Path, model: Path, database: Database) -> dict[str, str]:
    return {**os.environ, "KB_HOME": str(kb_dir), "KB_TEXT_MODEL": str(model), "KB_DEVICE": "cpu",
            "KB_BATCH_SIZE": "2", **database.environment()}  # a commit every 16 chunks: many moments to be killed in


def count_documents(kb_dir: Path, database: Database) -> int:
    """Documents committed so far, read the way another process would."""
    if database.url() is None and not (kb_dir / "kb.sqlite").exists():
        return 0
    engine = create_engine(database.url() or default_url(kb_dir), connect_args=SQLITE_WAIT if database.url() is None
                           else {})
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM documents")).scalar_one()
    except DBAPIError:  # the schema is being created
        return 0
    finally:
        engine.dispose()


def assert_consistent(kb: KnowledgeBase) -> None:
    """What a killed run may leave: a stale index cache, a run marked running, and the temporary file of an index
    save it was killed in (its last step is an atomic rename; the next ingest deletes it). Nothing else."""
    allowed = {"index cache", "stuck runs", "temporary files"}
    assert {p.kind for p in kb.doctor().problems} <= allowed
    with kb.store.sessions() as session:
        per_document = session.execute(select(Chunk.document_id, func.count(), func.count(func.distinct(Chunk.ordinal)))
                                       .group_by(Chunk.document_id)).all()
        assert all(count == distinct for _, count, distinct in per_document)  # no duplicated chunks
    stats = kb.stats()
    if not stats.spaces:  # killed before the model was loaded
        assert stats.chunks == 0
        return
    assert stats.spaces[0].vectors == stats.chunks
    assert kb.store.index(kb.store.spaces()[0]).count == stats.chunks


@pytest.mark.slow
@pytest.mark.databases("sqlite", "pgvector")  # PostgreSQL with faiss adds nothing here that these two miss
def test_ingest_killed_at_random_moments_recovers_completely(tmp_path: Path, tiny_text_model: Path,
                                                             database: Database) -> None:
    folder = tmp_path / "docs"
    markers = write_corpus(folder, 120, seed=1)
    env = environment(tmp_path / "kb", tiny_text_model, database)
    rng = random.Random(7)
    documents_after_kill = []
    for attempt in range(6):
        before = count_documents(tmp_path / "kb", database)
        process = subprocess.Popen([sys.executable, "-m", "kb.cli", "ingest", str(folder)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if attempt == 0:
            time.sleep(rng.uniform(1.0, 4.0))  # while starting up
        else:  # once it is committing: somewhere inside a batch, a commit or an index save
            deadline = time.monotonic() + 120
            while (count_documents(tmp_path / "kb", database) <= before and process.poll() is None
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.0))
        process.kill()
        process.wait()
        with KnowledgeBase.open(tmp_path / "kb", text_model=str(tiny_text_model), device="cpu",
                            **database.settings()) as kb:
            assert_consistent(kb)
            documents_after_kill.append(kb.stats().documents)
        # The folder changes between runs too: a file edited, a file removed.
        (folder / f"file{attempt:04d}.txt").write_text(f"{markers[f'file{attempt:04d}.txt']} edited", encoding="utf-8")
    assert any(0 < count < len(markers) for count in documents_after_kill), documents_after_kill  # killed mid-run
    (folder / "file0100.txt").unlink()
    del markers["file0100.txt"]
    done = subprocess.run([sys.executable, "-m", "kb.cli", "ingest", str(folder)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with KnowledgeBase.open(tmp_path / "kb", text_model=str(tiny_text_model), device="cpu",
                            **database.settings()) as kb:
        assert kb.doctor().problems == []  # the killed runs' records closed, their leftovers deleted
        assert_consistent(kb)
        with kb.store.sessions() as session:
            paths = sorted(Path(p).name for p in session.scalars(select(Document.path)))
        assert paths == sorted(markers)  # nothing lost, nothing twice, the removed file gone
        for name in ("file0000.txt", "file0003.txt", "file0119.txt"):
            hits = kb.search(markers[name], k=1, mode="keyword")
            assert Path(hits[0].path).name == name
        assert "edited" in kb.search(markers["file0001.txt"], k=1, mode="keyword")[0].text


@pytest.mark.slow
@pytest.mark.databases("sqlite", "pgvector")
def test_searches_during_a_reindex_never_fail(tmp_path: Path, tiny_text_model: Path, database: Database) -> None:
    folder = tmp_path / "docs"
    write_corpus(folder, 40, seed=2)
    env = environment(tmp_path / "kb", tiny_text_model, database)
    subprocess.run([sys.executable, "-m", "kb.cli", "ingest", str(folder)], env=env, check=True, capture_output=True)
    write_corpus(folder, 90, seed=3)  # rewrites the 40 files and adds 50: a reindex with many commits
    writer = subprocess.Popen([sys.executable, "-m", "kb.cli", "ingest", str(folder)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with KnowledgeBase.open(tmp_path / "kb", text_model=str(tiny_text_model), device="cpu",
                            **database.settings()) as kb:
        searches, errors = search_while_running(writer, kb, lambda: "harbour lantern copper")
    assert writer.returncode == 0, writer.stderr.read()
    assert not errors, errors[:3]
    assert searches > 5


def test_a_folder_of_bad_input_is_reported_and_the_rest_ingested(kb_factory, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    good = pdf_bytes([["A good page about anchors."]])
    (folder / "good.pdf").write_bytes(good)
    (folder / "truncated.pdf").write_bytes(good[: len(good) // 2])
    (folder / "random.pdf").write_bytes(random.Random(1).randbytes(5000))
    (folder / "random.docx").write_bytes(random.Random(2).randbytes(5000))
    with zipfile.ZipFile(folder / "bomb.docx", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (600 * 2**20))  # 600 MB of zeros, about 0.6 MB zipped
    (folder / "zero.txt").write_bytes(b"")
    (folder / "big.txt").write_bytes(b"a" * 7 * 2**20)
    (folder / "utf16.txt").write_text("UTF-16 text about bridges.", encoding="utf-16")
    (folder / "chinese.txt").write_bytes("知识库应该能够读取简体中文的文件。".encode("gb18030"))
    (folder / "one-line.md").write_text("word " * 1_000_000, encoding="utf-8")  # a single 5 MB line
    (folder / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "locked.txt").write_text("secret", encoding="utf-8")
    original = os.open

    def open_file(path: str, flags: int, *args: object, **kwargs: object) -> int:  # root reads every file,
        if path == "locked.txt":                                                    # so unreadability is simulated
            raise PermissionError(13, "Permission denied")
        return original(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(containment.os, "open", open_file)
    kb = kb_factory(max_file_mb=6, file_isolation=False)  # the patched open runs in this process
    report = kb.ingest(folder)
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert sorted(Path(p).name for p in report.added) == ["chinese.txt", "good.pdf", "one-line.md", "utf16.txt"]
    assert "PDF" in failed["truncated.pdf"] and "PDF" in failed["random.pdf"]
    assert "DOCX" in failed["random.docx"] and "zip bomb" in failed["bomb.docx"]
    assert failed["zero.txt"] == "empty file" and "limit" in failed["big.txt"]
    assert failed["locked.txt"] == REFUSED and "image" in failed["truncated.png"]
    assert [(Path(f.path).name, f.reason) for f in report.skipped] == [("loop", IN_SOURCE)]
    assert kb.search("anchors", k=1, mode="keyword")[0].path.endswith("good.pdf")
    assert kb.search("bridges", k=1, mode="keyword")[0].path.endswith("utf16.txt")
    assert kb.search("简体中文", k=1, mode="keyword")[0].path.endswith("chinese.txt")


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_a_cache_that_cannot_be_saved_leaves_a_committed_run_recorded_and_searchable(
        kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk when the index cache is saved, after every batch committed: the run is ``ok`` with a notice,
    not left ``running`` behind an error, and a fresh process finds what it added (rebuilding the cache)."""
    from kb.storage import faiss_index

    write_corpus(tmp_path / "docs", 3, seed=5)
    knowledge_base = kb_factory()
    knowledge_base.ingest(tmp_path / "docs")
    (tmp_path / "docs" / "late.txt").write_text("zebrafinch lantern meadow", encoding="utf-8")

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(faiss_index, "write_atomic", disk_full)
    report = knowledge_base.ingest(tmp_path / "docs")
    assert [Path(path).name for path in report.added] == ["late.txt"] and any("could not be saved" in notice for notice in report.notices)
    assert [job.status for job in knowledge_base.jobs()] == ["ok", "ok"]
    monkeypatch.undo()
    reopened = kb_factory()
    assert "late.txt" in {Path(hit.path).name for hit in reopened.search("zebrafinch", k=3, mode="keyword")}


def test_index_metadata_that_is_json_but_no_object_is_rebuilt_not_raised(kb_factory, tmp_path: Path) -> None:
    """``null`` or ``[]`` in an index cache's metadata file (a damaged save) is a cache to rebuild, as a truncated
    one is: search and doctor keep working."""
    markers = write_corpus(tmp_path / "docs", 3, seed=6)
    kb_factory().ingest(tmp_path / "docs")
    for meta in (tmp_path / "kb" / "indexes").glob("*.json"):
        meta.write_text("[]", encoding="utf-8")
    reopened = kb_factory()
    hits = reopened.search(markers["file0001.txt"], k=1, mode="dense")
    assert len(hits) == 1  # the tiny test model's vectors carry no meaning: that it searches is the point
    reopened.doctor(repair=True)  # reads the same metadata: it raised AttributeError on a list
    assert len(reopened.search(markers["file0002.txt"], k=1, mode="dense")) == 1
