"""Ingesting a folder incrementally: scan, skip what is unchanged, load, chunk, embed, write, remove what is gone."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ingestion.chunking import Chunker, approximate_token_offsets, hf_token_offsets
from ingestion.loaders import LoadError, loader_for
from ingestion.scan import ScannedFile, scan
from kb.config import Settings
from kb.encoders.base import TextEncoder
from kb.keywords import KeywordTokenizer
from kb.storage.models import Chunk, Document, Run, Source, file_time, text_hash, utcnow
from kb.storage.store import Store
from kb.types import TEXT_SPACE, ChunkSpan, ExtractedDocument, FailedFile, IngestReport

Progress = Callable[[int, int, str], None]
# What a database may raise on one document's data (an unstorable string, a constraint): that file fails alone.
STORAGE_ERRORS = (SQLAlchemyError, UnicodeError, ValueError)


@dataclass
class _Known:
    id: int
    size: int
    mtime_ns: int
    content_hash: str
    status: str
    error: str | None


@dataclass
class _Pending:
    """A loaded and chunked file waiting for its embeddings."""

    file: ScannedFile
    content_hash: str
    document: ExtractedDocument
    chunks: list[ChunkSpan]
    existing: _Known | None


@dataclass
class _Group:
    """A pending document with its chunks' vectors and text hashes, ready to be stored."""

    item: _Pending
    vectors: np.ndarray
    hashes: list[str]


class Ingestor:
    """Brings the knowledge base in line with a folder; unchanged files cost one stat each."""

    def __init__(self, store: Store, encoder: TextEncoder, keywords: KeywordTokenizer, settings: Settings,
                 progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> None:
        self.store = store
        self.encoder = encoder
        self.keywords = keywords
        self.settings = settings
        self.progress = progress
        self.should_stop = should_stop or (lambda: False)
        self.chunker: Chunker | None = None
        self._vanished: dict[str, str] = {}

    def _build_chunker(self) -> Chunker:
        """A chunker counting tokens with the encoder's own tokenizer (approximate tokens if it has none)."""
        tokenizer = self.encoder.tokenizer
        offsets = hf_token_offsets(tokenizer) if tokenizer is not None else approximate_token_offsets
        return Chunker(max_tokens=self.settings.chunk_tokens, overlap_tokens=self.settings.chunk_overlap,
                       token_offsets=offsets)

    def run(self, folder: Path) -> IngestReport:
        root = folder.expanduser().resolve()
        if not root.is_dir():
            self._record_missing_folder(root)
            raise NotADirectoryError(f"{folder} is not a folder; nothing was changed")
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
            self._finish_run(run_id, report, status="interrupted" if report.interrupted else "ok",
                             error="stopped on request before every file was seen" if report.interrupted else None)
        return report

    # -- run bookkeeping ------------------------------------------------------------------------------------

    def _start_run(self, root: Path) -> tuple[int, int]:
        with self.store.write() as session:
            # We hold the writer lock, so a run still marked running was killed: say so in its record.
            session.execute(update(Run).where(Run.status == "running")
                            .values(status="interrupted", error="the process stopped before the run finished"))
            source = session.scalar(select(Source).where(Source.path == str(root)))
            if source is None:
                source = Source(path=str(root))
                session.add(source)
                session.flush()
            run = Run(source_id=source.id)
            session.add(run)
            session.flush()
            return source.id, run.id

    def _record_missing_folder(self, root: Path) -> None:
        """A registered source whose folder is gone (an unmounted share, say) gets a failed run, and keeps its
        documents: the folder's absence is not taken as every file's deletion."""
        with self.store.write() as session:
            source_id = session.scalar(select(Source.id).where(Source.path == str(root)))
            if source_id is not None:
                session.add(Run(source_id=source_id, status="failed", finished_at=utcnow(),
                                error=f"{root} is missing or not a folder"))

    def _finish_run(self, run_id: int, report: IngestReport, status: str, error: str | None = None) -> None:
        with self.store.write() as session:
            run = session.get(Run, run_id)
            assert run is not None
            run.status, run.error, run.finished_at = status, error, utcnow()
            run.counts = {name: len(getattr(report, name)) for name in
                          ("added", "updated", "unchanged", "removed", "moved", "failed", "skipped")}
            run.failures = [f.model_dump() for f in report.failed]

    # -- the work -------------------------------------------------------------------------------------------

    def _ingest(self, root: Path, source_id: int, report: IngestReport) -> None:
        # Load the model and check it against the space before touching any file: a missing or mismatched
        # model is the run's error, not every file's.
        self.store.space(TEXT_SPACE, self.encoder.identity())
        self.store.check_keyword_tokenizer(self.keywords.name)
        self.chunker = self._build_chunker()
        scanned = scan(root, follow_symlinks_outside=self.settings.follow_symlinks_outside)
        report.failed += scanned.failed
        report.skipped += scanned.skipped
        # Every document under this folder, whichever source first brought it in (sources may be nested).
        # The prefix is compared exactly: SQL LIKE would ignore case and mix up /Docs and /docs.
        prefix = str(root) + os.sep
        with self.store.sessions() as session:
            known = {
                row.path: _Known(row.id, row.size, row.mtime_ns, row.content_hash, row.status, row.error)
                for row in session.execute(
                    select(Document.path, Document.id, Document.size, Document.mtime_ns, Document.content_hash,
                           Document.status, Document.error)
                    .where(func.substr(Document.path, 1, len(prefix)) == prefix))
            }
        seen = {str(f.path) for f in scanned.files}
        gone = {path: k for path, k in known.items() if path not in seen and scanned.covers(path)}
        # A new file with the bytes of a vanished one is that file moved or renamed: its row follows it.
        self._vanished = {k.content_hash: path for path, k in gone.items() if k.status == "ok"}
        pending: list[_Pending] = []
        pending_chunks = 0
        batch_chunks = self.settings.batch_size * 8  # chunks per commit
        total = len(scanned.files)
        for done, file in enumerate(scanned.files, start=1):
            if self.should_stop():
                report.interrupted = True
                break
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
        if report.interrupted:  # not every file was seen, so absence proves nothing: remove nothing
            return
        moved = set(report.moved)
        still_gone = [(path, k.id) for path, k in gone.items() if path not in moved]
        if still_gone:
            self._remove(still_gone, report)

    def _prepare(self, file: ScannedFile, known: _Known | None, source_id: int,
                 report: IngestReport) -> _Pending | None:
        """Decide what a file needs; load and chunk it if it is new or changed."""
        path = str(file.path)
        loader = loader_for(file.path)
        if loader is None:
            reason = f"unsupported file type '{file.path.suffix or '(none)'}'"
            report.skipped.append(FailedFile(path=path, reason=reason))
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
        if known is None and content_hash in self._vanished:
            old_path = self._vanished.pop(content_hash)
            self._move(old_path, file, source_id)
            report.moved[old_path] = path
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
        return _Pending(file, content_hash, document, chunks, known)

    def _record_unchanged(self, known: _Known, path: str, report: IngestReport) -> None:
        if known.status == "failed":
            report.failed.append(FailedFile(path=path, reason=f"{known.error} (unchanged since the last run)"))
        else:
            report.unchanged.append(path)

    def _move(self, old_path: str, file: ScannedFile, source_id: int) -> None:
        """Point a document at its new path; its chunks, vectors and postings stay as they are."""
        with self.store.write() as session:
            document = session.scalar(select(Document).where(Document.path == old_path))
            assert document is not None
            document.path, document.relpath, document.source_id = str(file.path), file.relpath, source_id
            document.size, document.mtime_ns, document.modified_at = file.size, file.mtime_ns, file_time(file.mtime_ns)

    def _touch(self, document_id: int, file: ScannedFile) -> None:
        with self.store.write() as session:
            document = session.get(Document, document_id)
            assert document is not None
            document.mtime_ns, document.size, document.error = file.mtime_ns, file.size, None

    def _record_failure(self, file: ScannedFile, source_id: int, file_type: str, content_hash: str, reason: str,
                        known: _Known | None, report: IngestReport) -> None:
        """Record why a file failed. A previously ingested version stays searchable (nothing is lost)."""
        report.failed.append(FailedFile(path=str(file.path), reason=reason))
        with self.store.write() as session:
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
        """Embed a batch of documents and replace their rows, vectors and postings in one transaction.

        The batch is written in bulk; if the database rejects it, each document is retried in its own savepoint,
        so data one file's database rejects costs that file only.
        """
        if not pending:
            return
        space = self.store.space(TEXT_SPACE, self.encoder.identity())
        assert space is not None
        self.store.index(space)  # current before the change, so the change can be applied in place
        texts = [chunk.text for item in pending for chunk in item.chunks]
        hashes = [text_hash(text) for text in texts]
        vectors = self._embed(texts, hashes, space.id, report)
        bounds = np.cumsum([0] + [len(item.chunks) for item in pending])
        groups = [_Group(item, vectors[bounds[i] : bounds[i + 1]], hashes[bounds[i] : bounds[i + 1]])
                  for i, item in enumerate(pending)]
        written: list[_Pending] = []
        removed: list[int] = []
        added_ids: list[int] = []
        with self.store.write() as session:
            try:
                with session.begin_nested():
                    removed, added_ids = self._store_documents(session, groups, source_id, space.id)
                written = pending
            except STORAGE_ERRORS:
                for group in groups:
                    try:
                        with session.begin_nested():
                            item_removed, item_added = self._store_documents(session, [group], source_id, space.id)
                    except STORAGE_ERRORS as error:
                        reason = f"could not be stored: {error}"
                        report.failed.append(FailedFile(path=str(group.item.file.path), reason=reason))
                        continue
                    removed += item_removed
                    added_ids += item_added
                    written.append(group.item)
            touched = [s.id for s in self.store.spaces()] if removed else [space.id]
            bumps = self.store.bump_generations(session, touched)
        kept = [group.vectors for group in groups if group.item in written]
        added = np.concatenate(kept) if kept else np.zeros((0, space.dimension), np.float32)
        self.store.apply_committed(bumps, {space.id: (np.asarray(added_ids, dtype=np.int64), added)}, removed)
        for item in written:
            was_ingested = item.existing is not None and item.existing.status == "ok"
            (report.updated if was_ingested else report.added).append(str(item.file.path))
        report.chunks_added += len(added_ids)
        report.chunks_removed += len(removed)

    def _embed(self, texts: list[str], hashes: list[str], space_id: int, report: IngestReport) -> np.ndarray:
        """Vectors for ``texts``; a text already embedded in the space, or repeated in the batch, is encoded once."""
        vectors = self.store.vectors_by_text_hash(space_id, set(hashes))
        missing = {h: text for h, text in zip(hashes, texts) if h not in vectors}
        if missing:
            encode_started = time.perf_counter()
            encoded = self.encoder.encode(list(missing.values()))
            report.encoder_seconds += time.perf_counter() - encode_started
            vectors.update(zip(missing, encoded))
        if not texts:
            return np.zeros((0, self.encoder.identity().dimension), dtype=np.float32)
        return np.stack([vectors[h] for h in hashes])

    def _store_documents(self, session: Session, groups: list[_Group], source_id: int,
                         space_id: int) -> tuple[list[int], list[int]]:
        """Insert or replace documents with their chunks, postings and vectors; returns (removed, added) ids."""
        rows = [self._document_row(group.item, source_id) for group in groups]
        existing = [(group.item.existing.id, row) for group, row in zip(groups, rows) if group.item.existing]
        removed: list[int] = []
        for document_id, _ in existing:
            removed += self.store.delete_document_content(session, document_id)
        if existing:
            session.execute(update(Document), [{"id": document_id, **row} for document_id, row in existing])
        new_rows = [row for group, row in zip(groups, rows) if not group.item.existing]
        new_ids = iter(session.scalars(insert(Document).returning(Document.id, sort_by_parameter_order=True),
                                       new_rows).all() if new_rows else [])
        chunk_rows: list[dict[str, object]] = []
        terms: list[list[str]] = []
        for group in groups:
            document_id = group.item.existing.id if group.item.existing else next(new_ids)
            for ordinal, (chunk, chunk_hash) in enumerate(zip(group.item.chunks, group.hashes)):
                chunk_terms = self.keywords.tokenize(chunk.text)
                terms.append(chunk_terms)
                chunk_rows.append({"document_id": document_id, "ordinal": ordinal, "modality": "text",
                                   "text": chunk.text, "text_hash": chunk_hash, "start": chunk.start,
                                   "end": chunk.end, "page": chunk.page, "tokens": chunk.tokens,
                                   "keyword_length": len(chunk_terms)})
        if not chunk_rows:
            return removed, []
        chunk_ids = list(session.scalars(insert(Chunk).returning(Chunk.id, sort_by_parameter_order=True), chunk_rows))
        self.store.insert_postings(session, chunk_ids, terms)
        self.store.insert_vectors(session, space_id, chunk_ids, np.concatenate([group.vectors for group in groups]))
        return removed, chunk_ids

    @staticmethod
    def _document_row(item: _Pending, source_id: int) -> dict[str, object]:
        return dict(
            source_id=source_id, path=str(item.file.path), relpath=item.file.relpath,
            file_type=item.document.file_type, size=item.file.size, mtime_ns=item.file.mtime_ns,
            modified_at=file_time(item.file.mtime_ns), content_hash=item.content_hash,
            status="ok", error=None, warnings=item.document.warnings, title=item.document.title,
            text=item.document.text, pages=[[p.number, p.start, p.end] for p in item.document.pages],
            ingested_at=utcnow(),
        )

    def _remove(self, gone: list[tuple[str, int]], report: IngestReport) -> None:
        """Delete documents whose files are gone, from the database and every index."""
        spaces = self.store.spaces()
        for space in spaces:
            self.store.index(space)
        with self.store.write() as session:
            removed = self.store.delete_documents(session, [document_id for _, document_id in gone])
            bumps = self.store.bump_generations(session, [space.id for space in spaces])
        self.store.apply_committed(bumps, {}, removed)
        report.removed += [path for path, _ in gone]
        report.chunks_removed += len(removed)
