"""Ingesting a folder incrementally: scan, skip what is unchanged, load, chunk, embed, write, remove what is gone."""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ingestion.chunking import Chunker, approximate_token_offsets, hf_token_offsets
from ingestion.loaders import LoadError, loader_for
from ingestion.scan import ScannedFile, scan
from kb.config import Settings
from kb.encoders.base import TextEncoder
from kb.keywords import KeywordTokenizer
from kb.storage.models import Chunk, Document, Posting, Run, Source, Vector, file_time, utcnow
from kb.storage.store import Store
from kb.types import TEXT_SPACE, ChunkSpan, ExtractedDocument, FailedFile, IngestReport

Progress = Callable[[int, int, str], None]
MAX_TERM_LENGTH = 128


@dataclass
class _Pending:
    """A loaded and chunked file waiting for its embeddings."""

    file: ScannedFile
    content_hash: str
    document: ExtractedDocument
    chunks: list[ChunkSpan]
    existing_id: int | None


@dataclass
class _Known:
    id: int
    size: int
    mtime_ns: int
    content_hash: str
    status: str
    error: str | None


class Ingestor:
    """Brings the knowledge base in line with a folder; unchanged files cost one stat each."""

    def __init__(self, store: Store, encoder: TextEncoder, keywords: KeywordTokenizer, settings: Settings,
                 progress: Progress | None = None) -> None:
        self.store = store
        self.encoder = encoder
        self.keywords = keywords
        self.settings = settings
        self.progress = progress
        self.chunker: Chunker | None = None

    def _build_chunker(self) -> Chunker:
        """A chunker counting tokens with the encoder's own tokenizer (approximate tokens if it has none)."""
        tokenizer = self.encoder.tokenizer
        offsets = hf_token_offsets(tokenizer) if tokenizer is not None else approximate_token_offsets
        return Chunker(max_tokens=self.settings.chunk_tokens, overlap_tokens=self.settings.chunk_overlap,
                       token_offsets=offsets)

    def run(self, folder: Path) -> IngestReport:
        root = folder.expanduser().resolve()
        if not root.is_dir():
            raise NotADirectoryError(f"{folder} is not a folder")
        started = time.perf_counter()
        report = IngestReport(source=str(root))
        with self.store.writer_lock:
            source_id, run_id = self._start_run(root)
            report.run_id = run_id
            try:
                self._ingest(root, source_id, report)
            except BaseException as error:
                self._finish_run(run_id, report, status="failed", error=f"{type(error).__name__}: {error}")
                raise
            finally:
                for index in self.store.loaded_indexes():
                    index.save()
            report.seconds = time.perf_counter() - started
            self._finish_run(run_id, report, status="ok")
        return report

    # -- run bookkeeping ------------------------------------------------------------------------------------

    def _start_run(self, root: Path) -> tuple[int, int]:
        with self.store.sessions.begin() as session:
            source = session.scalar(select(Source).where(Source.path == str(root)))
            if source is None:
                source = Source(path=str(root))
                session.add(source)
                session.flush()
            run = Run(source_id=source.id)
            session.add(run)
            session.flush()
            return source.id, run.id

    def _finish_run(self, run_id: int, report: IngestReport, status: str, error: str | None = None) -> None:
        with self.store.sessions.begin() as session:
            run = session.get(Run, run_id)
            assert run is not None
            run.status, run.error, run.finished_at = status, error, utcnow()
            run.counts = {name: len(getattr(report, name)) for name in
                          ("added", "updated", "unchanged", "removed", "failed", "skipped")}
            run.failures = [f.model_dump() for f in report.failed]

    # -- the work -------------------------------------------------------------------------------------------

    def _ingest(self, root: Path, source_id: int, report: IngestReport) -> None:
        # Load the model and check it against the space before touching any file: a missing or mismatched
        # model is the run's error, not every file's.
        self.store.space(TEXT_SPACE, self.encoder.identity())
        self.chunker = self._build_chunker()
        scanned = scan(root, follow_symlinks_outside=self.settings.follow_symlinks_outside)
        report.failed += scanned.failed
        report.skipped += scanned.skipped
        # Every document under this folder, whichever source first brought it in (sources may be nested).
        with self.store.sessions() as session:
            known = {
                row.path: _Known(row.id, row.size, row.mtime_ns, row.content_hash, row.status, row.error)
                for row in session.execute(
                    select(Document.path, Document.id, Document.size, Document.mtime_ns, Document.content_hash,
                           Document.status, Document.error)
                    .where(Document.path.startswith(str(root) + os.sep, autoescape=True)))
            }
        pending: list[_Pending] = []
        pending_chunks = 0
        batch_chunks = max(self.settings.batch_size * 4, 256)
        total = len(scanned.files)
        for done, file in enumerate(scanned.files, start=1):
            item = self._prepare(file, known.get(str(file.path)), source_id, report)
            if item is not None:
                pending.append(item)
                pending_chunks += len(item.chunks)
                if pending_chunks >= batch_chunks:
                    self._write(pending, source_id, report)
                    pending, pending_chunks = [], 0
            if self.progress:
                self.progress(done, total, file.relpath)
        self._write(pending, source_id, report)
        seen = {str(f.path) for f in scanned.files}
        gone = [(path, k.id) for path, k in known.items() if path not in seen and scanned.covers(path)]
        if gone:
            self._remove(gone, report)

    def _prepare(self, file: ScannedFile, known: _Known | None, source_id: int,
                 report: IngestReport) -> _Pending | None:
        """Decide what a file needs; load and chunk it if it is new or changed."""
        path = str(file.path)
        loader = loader_for(file.path)
        if loader is None:
            report.skipped.append(FailedFile(path=path, reason=f"unsupported file type '{file.path.suffix or '(none)'}'"))
            return None
        if known is not None and known.size == file.size and known.mtime_ns == file.mtime_ns:
            self._record_unchanged(known, path, report)
            return None
        limit = int(self.settings.max_file_mb * 1024 * 1024)
        if file.size > limit:
            self._record_failure(file, source_id, loader.file_type, "",
                                 f"file is {file.size / 2**20:.1f} MB, over the {self.settings.max_file_mb:g} MB limit",
                                 known, report)
            return None
        try:
            data = file.path.read_bytes()
        except FileNotFoundError:
            report.failed.append(FailedFile(path=path, reason="vanished before it could be read"))
            return None
        except OSError as error:
            self._record_failure(file, source_id, loader.file_type, "", f"cannot read: {error.strerror}", known, report)
            return None
        content_hash = hashlib.sha256(data).hexdigest()
        if known is not None and known.content_hash == content_hash and known.status == "ok":
            self._touch(known.id, file)
            report.unchanged.append(path)
            return None
        try:
            document = loader.load(file.path, data)
            assert self.chunker is not None
            chunks = self.chunker.chunk(document)
        except LoadError as error:
            self._record_failure(file, source_id, loader.file_type, content_hash, str(error), known, report)
            return None
        except Exception as error:  # a loader bug must cost one file, never the run
            reason = f"unexpected {type(error).__name__}: {error}"
            self._record_failure(file, source_id, loader.file_type, content_hash, reason, known, report)
            return None
        return _Pending(file, content_hash, document, chunks, known.id if known else None)

    def _record_unchanged(self, known: _Known, path: str, report: IngestReport) -> None:
        if known.status == "failed":
            report.failed.append(FailedFile(path=path, reason=f"{known.error} (unchanged since the last run)"))
        else:
            report.unchanged.append(path)

    def _touch(self, document_id: int, file: ScannedFile) -> None:
        with self.store.sessions.begin() as session:
            document = session.get(Document, document_id)
            assert document is not None
            document.mtime_ns, document.size = file.mtime_ns, file.size

    def _record_failure(self, file: ScannedFile, source_id: int, file_type: str, content_hash: str, reason: str,
                        known: _Known | None, report: IngestReport) -> None:
        """Record why a file failed. A previously ingested version stays searchable (nothing is lost)."""
        report.failed.append(FailedFile(path=str(file.path), reason=reason))
        with self.store.sessions.begin() as session:
            if known is not None:
                document = session.get(Document, known.id)
                assert document is not None
                document.error = reason
                if document.status == "failed":
                    document.size, document.mtime_ns, document.content_hash = file.size, file.mtime_ns, content_hash
                return
            session.add(Document(
                source_id=source_id, path=str(file.path), relpath=file.relpath, file_type=file_type, size=file.size,
                mtime_ns=file.mtime_ns, modified_at=file_time(file.mtime_ns),
                content_hash=content_hash, status="failed", error=reason, warnings=[], text="", pages=[]))

    def _write(self, pending: list[_Pending], source_id: int, report: IngestReport) -> None:
        """Embed a batch of documents and replace their rows, vectors and postings in one transaction."""
        if not pending:
            return
        texts = [chunk.text for item in pending for chunk in item.chunks]
        encode_started = time.perf_counter()
        vectors = self.encoder.encode(texts)
        report.encoder_seconds += time.perf_counter() - encode_started
        space = self.store.space(TEXT_SPACE, self.encoder.identity())
        assert space is not None
        index = self.store.index(space)
        removed: list[int] = []
        added: list[int] = []
        with self.store.sessions.begin() as session:
            for item in pending:
                document_id = self._upsert_document(session, item, source_id, removed)
                added += self._insert_chunks(session, document_id, item.chunks)
                (report.updated if item.existing_id else report.added).append(str(item.file.path))
            session.execute(insert(Vector), [
                {"space_id": space.id, "chunk_id": chunk_id, "vector": vector.tobytes()}
                for chunk_id, vector in zip(added, vectors)])
            previous, generation = self.store.bump_generation(session, space.id)
        index.apply(np.asarray(added, dtype=np.int64), vectors, np.asarray(removed, dtype=np.int64),
                    generation, previous)
        report.chunks_added += len(added)
        report.chunks_removed += len(removed)

    def _upsert_document(self, session: Session, item: _Pending, source_id: int, removed: list[int]) -> int:
        values = dict(
            source_id=source_id, path=str(item.file.path), relpath=item.file.relpath,
            file_type=item.document.file_type, size=item.file.size, mtime_ns=item.file.mtime_ns,
            modified_at=file_time(item.file.mtime_ns), content_hash=item.content_hash,
            status="ok", error=None, warnings=item.document.warnings, title=item.document.title,
            text=item.document.text, pages=[[p.number, p.start, p.end] for p in item.document.pages],
            ingested_at=utcnow(),
        )
        if item.existing_id is None:
            document = Document(**values)
            session.add(document)
            session.flush()
            return document.id
        removed += self.store.delete_document_content(session, item.existing_id)
        document = session.get(Document, item.existing_id)
        assert document is not None
        for name, value in values.items():
            setattr(document, name, value)
        return document.id

    def _insert_chunks(self, session: Session, document_id: int, chunks: list[ChunkSpan]) -> list[int]:
        if not chunks:
            return []
        terms = [self.keywords.tokenize(chunk.text) for chunk in chunks]
        rows = [
            {"document_id": document_id, "ordinal": i, "modality": "text", "text": c.text, "start": c.start,
             "end": c.end, "page": c.page, "tokens": c.tokens, "keyword_length": len(t)}
            for i, (c, t) in enumerate(zip(chunks, terms))
        ]
        ids = list(session.scalars(insert(Chunk).returning(Chunk.id, sort_by_parameter_order=True), rows))
        postings = [
            {"term": term[:MAX_TERM_LENGTH], "chunk_id": chunk_id, "tf": tf}
            for chunk_id, chunk_terms in zip(ids, terms)
            for term, tf in Counter(t[:MAX_TERM_LENGTH] for t in chunk_terms).items()
        ]
        if postings:
            session.execute(insert(Posting), postings)
        return ids

    def _remove(self, gone: list[tuple[str, int]], report: IngestReport) -> None:
        """Delete documents whose files are gone, from the database and every index."""
        indexes = {space.id: self.store.index(space) for space in self.store.spaces()}
        with self.store.sessions.begin() as session:
            removed = self.store.delete_documents(session, [document_id for _, document_id in gone])
            bumps = {space_id: self.store.bump_generation(session, space_id) for space_id in indexes}
        removed_ids = np.asarray(removed, dtype=np.int64)
        for space_id, index in indexes.items():
            previous, generation = bumps[space_id]
            index.apply(np.zeros(0, dtype=np.int64), np.zeros((0, index.dimension), dtype=np.float32),
                        removed_ids, generation, previous)
        report.removed += [path for path, _ in gone]
        report.chunks_removed += len(removed)
