"""Ingesting a folder incrementally: scan, skip what is unchanged, load, chunk, embed, write, remove what is gone."""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ingestion.chunking import Chunker, approximate_token_offsets, hf_token_offsets
from ingestion.isolation import FileRunner, StopRequested, file_runner
from ingestion.loaders import LoadError, file_loader
from ingestion.loaders.base import Limits
from ingestion.loaders.images import referenced_file
from ingestion.ocr import ocr_available
from ingestion.pictures import Picture
from ingestion.reading import FileJob, LoadFailed, ReadFailed, ReadSettings
from ingestion.scan import ScannedFile, ScanResult, scan
from kb.config import Settings
from kb.containment import inside
from kb.encoders.base import TextEncoder
from kb.encoders.clip import ClipEncoder
from kb.errors import ModelNotFoundError, RejectedDataError, SourceNotFoundError, SourceUnavailableError
from kb.keywords import KeywordTokenizer, TermBag, for_scheme, term_bag
from kb.mounts import (
    SourceMounts,
    holding_mount,
    is_mount_point,
    recorded_mounts,
    root_unmounted,
    to_record,
    unmounted_below,
    unmounted_inside,
)
from kb.sources import check_storable, too_many_missing
from kb.spaces import EmbeddingSpace
from kb.storage.models import INGESTED, TIME_RANGE_NS, Space, file_time, text_hash, utcnow
from kb.storage.store import IMAGE_SPACE_OFF, Store
from kb.storage.writing import WriteUnit
from kb.types import (
    CLIP_SPACE,
    TEXT_SPACE,
    ChunkSpan,
    ExtractedDocument,
    FailedFile,
    IngestProgress,
    IngestReport,
    ReferencedFile,
    SilentProgress,
)

log = logging.getLogger(__name__)
_SKIP_SENT = 256  # at most this many hashes of gone files go with each new file to the worker
_SHOWING_FILES = frozenset({"html", "markdown"})  # the types of document that show files of their folder


@dataclass
class _Known:
    id: int
    size: int
    mtime_ns: int
    content_hash: str
    status: str
    error: str | None
    source_id: int
    partial: bool  # failed, or read with warnings (only in part)
    # Files of the source it shows: [path, size, mtime_ns] as they were when it was read; None if it was read before
    # they were recorded (schema version 9)
    references: list[list[Any]] | None

    def shows_files(self, file_type: str) -> bool:
        """Whether it shows files of its folder; read before they were recorded, whether its type may."""
        return bool(self.references) if self.references is not None else file_type in _SHOWING_FILES

    def shows_changed_files(self, file_type: str) -> bool:
        """Whether a file it shows (a page's picture) changed, went or came since it was read; read before they
        were recorded, whether it may show any (it is read again, once)."""
        if self.references is None:
            return self.shows_files(file_type)
        return any(referenced_file(path) != ReferencedFile(path=path, size=size, mtime_ns=mtime_ns)
                   for path, size, mtime_ns in self.references)


@dataclass
class _Pending:
    """A loaded and chunked file waiting for its embeddings: text chunks, then pictures, are its units."""

    file: ScannedFile
    content_hash: str
    document: ExtractedDocument
    chunks: list[ChunkSpan]
    pictures: list[Picture]
    existing: _Known | None

    @property
    def units(self) -> int:
        return len(self.chunks) + len(self.pictures)

    @property
    def empty(self) -> bool:
        """Read, but without any text to index (its pictures, if any, are still kept for the image space)."""
        return not self.chunks and not self.described()

    def described(self) -> list[Picture]:
        """Pictures with a description: those have a vector in the text space and keyword postings."""
        return [picture for picture in self.pictures if picture.description]


@dataclass
class _Batch:
    """Documents waiting for their embeddings, written in one transaction once they hold ``chunks`` units or
    ``chars`` characters of text (chunks alone do not bound the memory: a document may be long and its chunks few)."""

    chunks: int
    chars: int
    items: list[_Pending] = field(default_factory=list)
    held_units: int = 0
    held_chars: int = 0

    def add(self, item: _Pending) -> bool:
        """Hold ``item``; True when the batch is full."""
        self.items.append(item)
        self.held_units += item.units
        self.held_chars += len(item.document.text)
        return self.held_units >= self.chunks or self.held_chars >= self.chars

    def take(self) -> list[_Pending]:
        """The documents held, the batch emptied."""
        items, self.items, self.held_units, self.held_chars = self.items, [], 0, 0
        return items


@dataclass
class _Group:
    """A pending document with its units' vectors per space, ready to be stored.

    ``vectors[space id]`` rows follow the units that space holds: in the text space the chunks then the
    described pictures; in the CLIP space every chunk (CLIP text embedding) then every picture.
    """

    item: _Pending
    hashes: list[str]
    vectors: dict[int, np.ndarray]


class Ingestor:
    """Brings the knowledge base in line with a folder; unchanged files cost one stat each."""

    def __init__(self, store: Store, encoder: TextEncoder, keywords: KeywordTokenizer, settings: Settings,
                 progress: IngestProgress | None = None, should_stop: Callable[[], bool] | None = None,
                 clip: ClipEncoder | None = None, allow_removal: bool = False, reread: bool = False) -> None:
        self.store = store
        self.encoder = encoder
        self.keywords = keywords
        self.settings = settings
        self.progress = progress or SilentProgress()
        self.should_stop = should_stop or (lambda: False)
        self.clip = clip
        self.allow_removal = allow_removal
        self.reread = reread  # unchanged files that failed or were read only in part are read again
        self.chunker: Chunker | None = None
        self.clip_space: Space | None = None
        # Files gone this run by content hash: their path, file type and record. A new file with the same bytes is a
        # move only if read the same way (page.txt renamed page.html is markup now, and is loaded again).
        self._vanished: dict[str, tuple[str, str, _Known]] = {}
        self._vanished_by_kind: dict[tuple[str, int], set[str]] = defaultdict(set)  # their hashes by type and size
        self._root = Path()
        ocr = ocr_available(settings.ocr.mode)
        self.read_settings = ReadSettings(
            limits=Limits.from_settings(settings), max_bytes=int(settings.ingestion.max_file_mb * 2**20),
            follow_symlinks_outside=settings.ingestion.follow_symlinks_outside, ocr=ocr,
            ocr_embedded_images=settings.ocr.embedded_images, ocr_seconds=settings.ocr.file_seconds,
            ocr_wanted=settings.ocr.mode == "auto" and not ocr)
        self._unread_images = 0  # image files and scanned pages left unread because OCR is not installed

    def _build_chunker(self) -> Chunker:
        """A chunker counting tokens with the encoder's own tokenizer (approximate tokens if it has none)."""
        tokenizer = self.encoder.tokenizer
        offsets = hf_token_offsets(tokenizer) if tokenizer is not None else approximate_token_offsets
        return Chunker(max_tokens=self.settings.chunking.tokens, overlap_tokens=self.settings.chunking.overlap,
                       token_offsets=offsets)

    def run(self, root: Path, create: bool = True) -> IngestReport:
        """One run over the source folder ``root``: a registered source's path as stored (unless ``create``, one
        removed meanwhile is not brought back: ``SourceNotFoundError``), or a new one's real path.

        A root that is no longer its own real path (it, or a folder above it, was replaced by a symlink) is not
        followed: whoever can rename folders in a share must not point a scheduled run at files outside it.
        """
        check_storable(str(root))
        problem, advice = _unavailable(root)
        if problem:
            self._record_unavailable(root, problem)
            raise SourceUnavailableError(f"{problem}; {advice}")
        started = time.perf_counter()
        report = IngestReport(source=str(root))
        with self.store.writer_lock:
            source_id, run_id = self._start_run(root, create)
            report.run_id = run_id
            ingestion = self.settings.ingestion
            runner = file_runner(self.read_settings, ingestion.file_isolation, ingestion.file_timeout,
                                 ingestion.worker_memory_mb, self.should_stop)
            try:
                self._ingest(root, source_id, report, runner)
            except BaseException as error:
                # Recorded where possible; a second fault here (a read-only database, a full disk) must not
                # replace the error that ended the run. Ctrl-C is a stop request, not a failure: what was
                # committed is kept and the rest is for the next run.
                status, reason = (("interrupted", "interrupted (Ctrl-C) before every file was stored")
                                  if isinstance(error, KeyboardInterrupt) else
                                  ("failed", f"{type(error).__name__}: {error}"))
                _quietly(lambda: self._finish_run(run_id, report, status=status, error=reason))
                _quietly(lambda: self.store.save_caches(self.store.loaded_indexes()))
                raise
            finally:
                runner.close()
            report.seconds = time.perf_counter() - started
            self._finish_run(run_id, report, status="interrupted" if report.interrupted else "ok",
                             error="stopped on request before every file was stored" if report.interrupted else None)
            self._save_indexes_or_note(report)
        return report

    def _save_indexes_or_note(self, report: IngestReport) -> None:
        """Save the index caches after a run whose batches are all committed; one that cannot be written is a
        notice, not the run's failure."""
        indexes = self.store.loaded_indexes()
        if indexes:
            self.progress.phase("saving indexes")
        notice = self.store.save_caches(indexes)
        if notice is not None:
            log.warning("%s", notice)
            report.notices.append(notice)

    # -- run bookkeeping ------------------------------------------------------------------------------------

    def _start_run(self, root: Path, create: bool) -> tuple[int, int]:
        for leftover in self.store.abandoned_temporaries():  # a killed run's half-written cache, perhaps gigabytes
            leftover.unlink(missing_ok=True)
        with self.store.write() as unit:
            # We hold the writer lock, so a run still marked running was killed: say so in its record.
            unit.interrupt_running()
            source = unit.source(str(root), create=create)
            if source is None:  # removed while this run waited for the lock (`kb source remove`)
                raise SourceNotFoundError(f"the source {root} was removed before its run began; nothing was read")
            return source.id, unit.start_run(source.id)

    def _record_unavailable(self, root: Path, reason: str) -> None:
        """A registered source whose folder is gone (an unmounted share, say) or now a symlink gets a failed run,
        and keeps its documents: the folder's absence is not taken as every file's deletion."""
        with self.store.write() as unit:
            source = unit.source(str(root))
            if source is not None:
                unit.add_failed_run(source.id, reason)

    def _finish_run(self, run_id: int, report: IngestReport, status: str, error: str | None = None) -> None:
        with self.store.write() as unit:
            unit.finish_run(run_id, status, error, report.counts(), [f.model_dump() for f in report.failed])

    # -- the work -------------------------------------------------------------------------------------------

    def _models_ready(self, report: IngestReport) -> Chunker:
        """Load the models and check them against their spaces, once, when the first file needs reading: a run
        over unchanged files loads none, and a missing or mismatched model is the run's error, not every file's."""
        if self.chunker is None:
            self.progress.phase("loading models", self.encoder_name)
            self.store.space(TEXT_SPACE, self.encoder.identity())
            self.clip_space = self._open_clip_space(report)
            recorded = self.store.check_keyword_tokenizer(self.keywords.scheme)
            self.keywords = for_scheme(self.keywords, recorded)  # as the postings are now, not when it was opened
            self.chunker = self._build_chunker()
            self.progress.phase("reading")
        return self.chunker

    @property
    def encoder_name(self) -> str:
        return self.settings.text_encoder.model + ("" if self.clip is None else f" and CLIP {self.settings.clip.model}")

    def _ingest(self, root: Path, source_id: int, report: IngestReport, runner: FileRunner) -> None:
        self.progress.phase("scanning", str(root))
        self._root = root
        with self.store.read() as snapshot:
            records = {folder: recorded_mounts(stored) for folder, stored in snapshot.source_mounts().items()}
        root_mount = self._check_mounted(root, records.get(str(root)))
        scanned = scan(root, follow_symlinks_outside=self.settings.ingestion.follow_symlinks_outside,
                       exclude=self.store.directory)
        report.failed += scanned.failed
        report.skipped += scanned.skipped
        # Every document under this folder, whichever source first brought it in (sources may be nested).
        # The prefix is compared exactly: SQL LIKE would ignore case and mix up /Docs and /docs.
        prefix = str(root).rstrip(os.sep) + os.sep
        with self.store.read() as snapshot:
            known = {row.path: _Known(row.id, row.size, row.mtime_ns, row.content_hash, row.status, row.error,
                                      row.source_id, row.status not in INGESTED or bool(row.warnings),
                                      row.referenced_files)
                     for row in snapshot.documents_under(prefix)}
        self._check_available(root, scanned, len(known))
        seen = {str(f.path) for f in scanned.files}
        gone = {path: k for path, k in known.items() if path not in seen and scanned.covers(path)}
        # Names the scan skipped because their file is read under another (a link inside the folder, a hard link):
        # this source's documents under them go (as moves, where the other name is new). Another source's there,
        # or behind a link this scan does not follow, stay: that source reads them under these names (a nested
        # source's hard link; the outer source's link into a hidden folder, which the nested one refuses).
        aliased = {path for path in gone if scanned.aliased(path)}
        gone = {path: k for path, k in gone.items()
                if k.source_id == source_id or not (path in aliased or scanned.behind_link(path))}
        # A new file with the bytes of a vanished one is that file moved or renamed: its row follows it.
        self._vanished, self._vanished_by_kind = {}, defaultdict(set)
        for path, k in gone.items():
            if k.status in INGESTED:
                file_type = _file_type(path)
                self._vanished[k.content_hash] = (path, file_type, k)
                self._vanished_by_kind[file_type, k.size].add(k.content_hash)
        batch = _Batch(chunks=self.settings.batch_size * 8, chars=self.settings.ingestion.max_document_chars)
        total = len(scanned.files)
        self.progress.phase("reading", f"{total} files")
        try:
            for done, file in enumerate(scanned.files, start=1):
                self._check_stop()
                item = self._prepare(file, known.get(str(file.path)), source_id, report, runner)
                if item is not None and batch.add(item):
                    self._write(batch.take(), source_id, report)
                self.progress.file(done, total, file.relpath)
            self._write(batch.take(), source_id, report)
        except StopRequested:
            # Stopped while reading: what was read is committed, the stop not looked at again (less than a batch
            # to embed; reading may have taken minutes of OCR). Stopped while embedding: that batch was taken, and
            # is read again next time.
            report.interrupted = True
            self._write(batch.take(), source_id, report, stoppable=False)
        if self._unread_images:
            report.notices.append(f"OCR is not installed, so the text in {self._unread_images} image file(s) and "
                                  "scanned page(s) was not read; install the 'ocr' extra (rapidocr-onnxruntime)")
        if not report.interrupted:  # not every file was looked at, so absence proves nothing: remove nothing
            if not is_mount_point(root_mount):
                raise SourceUnavailableError(f"the share mounted at {root_mount} went away during the run; what "
                                             "was read before is kept, and nothing was removed")
            nested = [folder for folder in records if folder != str(root) and inside(folder, str(root))]
            lost = [folder for folder in nested if _unavailable(Path(folder))[0]]
            self._remove_gone(gone, scanned, unmounted_below(records, str(root)), lost, aliased, len(known), report)
        kept = set(known) - set(report.removed)
        self._record_mounts(source_id, root, root_mount, scanned, records.get(str(root)), kept)

    def _record_mounts(self, source_id: int, root: Path, root_mount: str, scanned: ScanResult,
                       recorded: SourceMounts | None, kept: set[str]) -> None:
        """Record the mounts this run found, and those recorded before, not mounted now, from which documents are
        still ``kept``."""
        holding = [folder for folder in unmounted_inside(recorded, str(root)) if any(inside(path, folder)
                                                                                     for path in kept)]
        with self.store.write() as unit:
            unit.record_mounts(source_id, to_record(str(root), root_mount, map(str, scanned.mounts),
                                                    holding).model_dump_json())

    def _remove_gone(self, gone: dict[str, _Known], scanned: ScanResult, unmounted: list[str], lost: list[str],
                     aliased: set[str], documents: int, report: IngestReport) -> None:
        """Remove the documents whose files are gone, except (unless removal is allowed) those that came from a
        folder now empty, a share ``unmounted`` now, or a nested source's folder ``lost`` (missing, or now a
        symlink: its own runs keep them), and all of them when too many are missing at once. Those stored under a
        name now ``aliased`` (its file read under another) are not missing: they go in any case."""
        moved = set(report.moved)
        still_gone = [(path, k.id) for path, k in gone.items() if path not in moved and path not in aliased]
        renamed = [(path, k.id) for path, k in gone.items() if path not in moved and path in aliased]
        if renamed:
            report.notices.append(f"{len(renamed)} document(s) stored under another name of a file now read under "
                                  "its own (a symlink inside the folder, a hard link) were removed")
            self._remove(renamed, report)
        if not self.allow_removal:
            lost = [folder for folder in lost if any(inside(path, folder) for path, _ in still_gone)]
            names = ", ".join(os.path.relpath(folder, self._root) for folder in lost)
            still_gone = _withhold(still_gone, lambda path: any(inside(path, folder) for folder in lost), report,
                                   f"came from the nested sources {names}, whose folders are missing or now "
                                   "symlinks, and were kept as their own runs keep them")
            still_gone = _withhold(still_gone, scanned.in_empty_folder, report, "came from folders that are now "
                                   "empty and were kept (unmounted shares?)")
            shares = [folder for folder in unmounted if any(inside(path, folder) for path, _ in still_gone)]
            names = ", ".join(os.path.relpath(folder, self._root) for folder in shares)
            still_gone = _withhold(still_gone, lambda path: any(inside(path, folder) for folder in shares), report,
                                   f"came from shares mounted here when they were last read ({names}), which are "
                                   "not mounted now, and were kept (mount them again)")
        if still_gone and not self.allow_removal and too_many_missing(len(still_gone), documents,
                                                                      self.settings.ingestion.max_removed_share):
            report.removal_withheld += [path for path, _ in still_gone]
            report.notices.append(
                f"{len(still_gone)} of the {documents} documents from this folder are missing and were kept: that "
                f"is over max_removed_share ({self.settings.ingestion.max_removed_share:.0%}), as when a share is "
                "partly unmounted; if the files really were deleted, run again allowing removal (kb ingest/reindex "
                "--allow-removal)")
        elif still_gone:
            self._remove(still_gone, report)

    def _check_mounted(self, root: Path, recorded: SourceMounts | None) -> str:
        """Fail the run, removing nothing, when the share that held the folder at its last run is not mounted now
        (the folder seen is the bare mount point's, stray files and all), unless removal was allowed. Returns the
        mount point holding the folder now."""
        share = root_unmounted(recorded)
        if share is not None and not self.allow_removal:
            raise SourceUnavailableError(
                f"the share mounted at {share} when {root} was last read is not mounted now; nothing was removed. "
                "If the folder now lives there for good, run again allowing removal (kb ingest/reindex "
                "--allow-removal)")
        return holding_mount(str(root))

    def _check_available(self, root: Path, scanned: ScanResult, documents: int) -> None:
        """Fail the run, removing nothing, when the folder cannot be read, or holds nothing at all while
        documents came from it (the bare mount point of an unmounted share) and removal was not allowed."""
        if root in scanned.unreadable_dirs:
            raise SourceUnavailableError(f"the folder {root} cannot be read; nothing was changed")
        if documents and not scanned.files and not scanned.failed and not scanned.skipped and not self.allow_removal:
            raise SourceUnavailableError(
                f"the folder {root} is empty, but {documents} document(s) came from it (an unmounted share?); "
                "nothing was removed. If its files really were deleted, run again allowing removal "
                "(kb ingest/reindex --allow-removal)")

    def _prepare(self, file: ScannedFile, known: _Known | None, source_id: int, report: IngestReport,
                 runner: FileRunner) -> _Pending | None:
        """Decide what a file needs; read, load and chunk it (through ``runner``) if it is new or changed."""
        path = str(file.path)
        loader = file_loader(file.path)
        if loader is None:
            reason = f"unsupported file type '{file.path.suffix or '(none)'}'"
            report.skipped.append(FailedFile(path=path, reason=reason))
            return None
        again = known is not None and (known.partial and self.reread or known.shows_changed_files(loader.file_type))
        if known is not None and not again and known.size == file.size and known.mtime_ns == file.mtime_ns and \
                file.mtime_ns not in TIME_RANGE_NS:  # a time kept at an end of the range proves nothing: hashed
            self._record_unchanged(known, path, report)
            return None
        max_mb = self.settings.ingestion.max_file_mb
        if file.size > int(max_mb * 1024 * 1024):
            self._record_failure(file, source_id, loader.file_type, "",
                                 f"file is {file.size / 2**20:.1f} MB, over the {max_mb:g} MB limit",
                                 known, report)
            return None
        job = FileJob(self._root, file.path, file.identity)
        try:
            fetched = runner.fetch(job, self._not_worth_loading(known, again, loader.file_type, file.size))
        except ReadFailed as error:  # refused, vanished, or not read in time: nothing recorded, the next run retries
            report.failed.append(FailedFile(path=path, reason=str(error)))
            return None
        except LoadFailed as error:
            self._record_failure(file, source_id, loader.file_type, error.content_hash, str(error), known, report)
            return None
        content_hash = fetched.content_hash
        if known is not None and not again and known.content_hash == content_hash and known.status in INGESTED:
            self._touch(known.id, file)
            report.unchanged.append(path)
            return None
        if known is None and content_hash in self._vanished and self._vanished[content_hash][1] == loader.file_type:
            old_path, _, moved = self._vanished.pop(content_hash)
            self._move(old_path, file, source_id)
            report.moved[old_path] = path
            if not moved.shows_files(loader.file_type):
                return None
            known = moved  # a page showing pictures is read again where it now stands: their paths may lead elsewhere
        chunker = self._models_ready(report)
        try:
            loaded = fetched.loaded or runner.load(job, content_hash)  # skipped as a move, and not one after all
            chunks = chunker.chunk(loaded.document)
        except ReadFailed as error:
            report.failed.append(FailedFile(path=path, reason=str(error)))
            return None
        except LoadError as error:
            self._record_failure(file, source_id, loader.file_type, content_hash, str(error), known, report)
            return None
        except StopRequested:
            raise
        except Exception as error:  # a chunker bug must cost one file, never the run
            reason = f"unexpected {type(error).__name__}: {error}"
            self._record_failure(file, source_id, loader.file_type, content_hash, reason, known, report)
            return None
        self._unread_images += loaded.unread_images
        return _Pending(file, content_hash, loaded.document, chunks, loaded.pictures, known)

    def _not_worth_loading(self, known: _Known | None, again: bool, file_type: str, size: int) -> frozenset[str]:
        """Hashes for which a read file need not be loaded: the one it had (unchanged bytes, touched) or, for a new
        path, those of the files of its type and ``size`` gone this run (a move; a folder of 300 files renamed
        loaded 44 again when any 256 gone were sent with each); a long list of them is not sent with every file."""
        if known is not None:
            return frozenset({known.content_hash} if known.status in INGESTED and not again else ())
        alike = self._vanished_by_kind.get((file_type, size), set())
        return frozenset(alike) if len(alike) <= _SKIP_SENT else frozenset()

    def _open_clip_space(self, report: IngestReport) -> Space | None:
        """The CLIP space, or None when it is turned off or its weights cannot be had. The first run without them
        says so in a short notice; the knowledge base keeps the whole reason for `kb stats` and `kb doctor`."""
        if self.clip is None:
            return None
        try:
            identity = self.clip.identity()
        except ModelNotFoundError as error:
            if self.store.record_notice(IMAGE_SPACE_OFF, f"the image space is off: {error}"):
                report.notices.append(f"the image space is off: {str(error).split(';')[0]}; images are found by "
                                      "their descriptions and OCR text (`kb stats` says how to turn it on)")
            return None
        self.store.record_notice(IMAGE_SPACE_OFF, None)
        return self.store.space(CLIP_SPACE, identity)

    def _record_unchanged(self, known: _Known, path: str, report: IngestReport) -> None:
        if known.status == "failed":
            report.failed.append(FailedFile(path=path, reason=f"{known.error} (unchanged since the last run)"))
        else:
            report.unchanged.append(path)

    def _move(self, old_path: str, file: ScannedFile, source_id: int) -> None:
        """Point a document at its new path; its chunks, vectors and postings stay as they are."""
        with self.store.write() as unit:
            unit.move_document(old_path, str(file.path), file.relpath, source_id, file.size, file.mtime_ns,
                               file_time(file.mtime_ns))

    def _touch(self, document_id: int, file: ScannedFile) -> None:
        with self.store.write() as unit:
            unit.touch_document(document_id, file.size, file.mtime_ns)

    def _record_failure(self, file: ScannedFile, source_id: int, file_type: str, content_hash: str, reason: str,
                        known: _Known | None, report: IngestReport) -> None:
        """Record why a file failed. A previously ingested version stays searchable (nothing is lost)."""
        report.failed.append(FailedFile(path=str(file.path), reason=reason))
        with self.store.write() as unit:
            try:
                with unit.savepoint():  # a reason the database rejects leaves the failure in the report only
                    if known is not None:
                        unit.record_failure(known.id, reason, file.size, file.mtime_ns, content_hash)
                        return
                    unit.add_failed_document(source_id=source_id, path=str(file.path), relpath=file.relpath,
                                             file_type=file_type, size=file.size, mtime_ns=file.mtime_ns,
                                             modified_at=file_time(file.mtime_ns), content_hash=content_hash,
                                             error=reason)
            except RejectedDataError:
                return

    def _check_stop(self) -> None:
        """Raise ``StopRequested`` when a stop was requested: between files, and while a batch is embedded."""
        if self.should_stop():
            raise StopRequested("stopped on request")

    def _write(self, pending: list[_Pending], source_id: int, report: IngestReport, stoppable: bool = True) -> None:
        """Embed a batch of documents and replace their rows, vectors and postings in one transaction; when
        ``stoppable``, a stop request is looked at between slices of the embedding (``StopRequested``).

        The batch is written in bulk; if the database rejects it, each document is retried in its own savepoint,
        so data one file's database rejects costs that file only.
        """
        if not pending:
            return
        text_space = self.store.space(TEXT_SPACE, self.encoder.identity())
        assert text_space is not None
        spaces = [text_space] + ([self.clip_space] if self.clip_space is not None else [])
        for space in spaces:
            self.store.index(space)  # current before the change, so the change can be applied in place
        self.progress.phase("embedding", f"{sum(item.units for item in pending)} chunks")
        groups = self._embed_groups(pending, text_space, report, self._check_stop if stoppable else lambda: None)
        written: list[_Pending] = []
        # A failing database (full, read-only, locked) is the run's error, never a file's: it is not caught here.
        with self.store.write() as unit:
            try:
                with unit.savepoint():
                    self._store_documents(unit, groups, source_id, text_space.id)
                written = pending
            except RejectedDataError:
                for group in groups:
                    try:
                        with unit.savepoint():
                            self._store_documents(unit, [group], source_id, text_space.id)
                    except RejectedDataError as error:
                        reason = f"could not be stored: {error}"
                        report.failed.append(FailedFile(path=str(group.item.file.path), reason=reason))
                        continue
                    written.append(group.item)
            removed = len(unit.changes.removed)
        for item in written:
            was_ingested = item.existing is not None and item.existing.status in INGESTED
            path = str(item.file.path)
            (report.updated if was_ingested else report.added).append(path)
            if item.empty:
                report.empty.append(path)
            if item.document.warnings:
                report.warnings[path] = item.document.warnings
        report.chunks_added += sum(item.units for item in written)
        report.chunks_removed += removed

    def _embed_groups(self, pending: list[_Pending], text_space: Space, report: IngestReport,
                      check: Callable[[], None]) -> list[_Group]:
        """Every unit's vectors in every space, each distinct text or picture encoded once per space; ``check`` is
        called between slices (it raises on a stop request)."""
        chunk_hashes = [[text_hash(chunk.text) for chunk in item.chunks] for item in pending]
        text_keys = [hashes + [p.description_hash for p in item.described()]
                     for item, hashes in zip(pending, chunk_hashes)]
        text_items = [[chunk.text for chunk in item.chunks] + [p.description for p in item.described()]
                      for item in pending]
        size = self.settings.batch_size
        embedded = [EmbeddingSpace(TEXT_SPACE, self.encoder).embed_reusing(self.store, text_space, text_keys,
                                                                           text_items, between=check, batch_size=size)]
        per_space = {text_space.id: embedded[0].vectors}
        if self.clip is not None and self.clip_space is not None:
            clip = EmbeddingSpace(CLIP_SPACE, self.clip)
            embedded += [clip.embed_reusing(self.store, self.clip_space, chunk_hashes,
                                            [[c.text for c in item.chunks] for item in pending], between=check,
                                            batch_size=size),
                         clip.embed_reusing(self.store, self.clip_space,
                                            [[p.image.sha256 for p in item.pictures] for item in pending],
                                            [[p.image.image for p in item.pictures] for item in pending], images=True,
                                            between=check, batch_size=size)]
            per_space[self.clip_space.id] = [np.concatenate(pair) for pair in zip(embedded[1].vectors,
                                                                                  embedded[2].vectors)]
        report.encoder_seconds += sum(part.encode_seconds for part in embedded)
        return [_Group(item, hashes, {space_id: vectors[i] for space_id, vectors in per_space.items()})
                for i, (item, hashes) in enumerate(zip(pending, chunk_hashes))]

    def _store_documents(self, unit: WriteUnit, groups: list[_Group], source_id: int, text_space_id: int) -> None:
        """Insert or replace documents with their chunks, pictures, postings and vectors, in bulk."""
        rows = [self._document_row(group.item, source_id) for group in groups]
        existing = [(group.item.existing.id, row) for group, row in zip(groups, rows) if group.item.existing]
        for document_id, _ in existing:
            unit.delete_document_content(document_id)
        unit.update_documents([{"id": document_id, **row} for document_id, row in existing])
        new_ids = iter(unit.insert_documents([row for group, row in zip(groups, rows) if not group.item.existing]))
        chunk_rows: list[dict[str, object]] = []
        bags: list[TermBag] = []
        for group in groups:
            item = group.item
            document_id = item.existing.id if item.existing else next(new_ids)
            units = [("text", chunk.text, chunk_hash, chunk.start, chunk.end, chunk.page, chunk.tokens)
                     for chunk, chunk_hash in zip(item.chunks, group.hashes)]
            units += [("image", p.description, p.description_hash, p.image.start, p.image.end, p.image.page, 0)
                      for p in item.pictures]
            for ordinal, (modality, text, unit_hash, start, end, page, tokens) in enumerate(units):
                bag = term_bag(self.keywords.tokenize(text))
                bags.append(bag)
                chunk_rows.append({"document_id": document_id, "ordinal": ordinal, "modality": modality,
                                   "text": text, "text_hash": unit_hash, "start": start, "end": end, "page": page,
                                   "tokens": tokens, "keyword_length": bag.length})
        if not chunk_rows:
            return
        all_ids = unit.insert_chunks(chunk_rows)
        unit.add_postings(all_ids, bags)
        ids = iter(all_ids)
        text_ids: list[int] = []
        clip_ids: list[int] = []
        image_rows: list[dict[str, object]] = []
        for group in groups:
            chunk_ids = [next(ids) for _ in group.item.chunks]
            picture_ids = [next(ids) for _ in group.item.pictures]
            pictures = group.item.pictures
            text_ids += chunk_ids + [chunk_id for chunk_id, p in zip(picture_ids, pictures) if p.description]
            clip_ids += chunk_ids + picture_ids
            image_rows += [{"chunk_id": chunk_id, "name": p.image.name, "width": p.image.width,
                            "height": p.image.height, "sha256": p.image.sha256, "preview": p.preview}
                           for chunk_id, p in zip(picture_ids, pictures)]
        unit.insert_images(image_rows)
        for space_id in groups[0].vectors:
            unit.add_vectors(space_id, text_ids if space_id == text_space_id else clip_ids,
                             np.concatenate([group.vectors[space_id] for group in groups]))

    @staticmethod
    def _document_row(item: _Pending, source_id: int) -> dict[str, object]:
        return dict(
            source_id=source_id, path=str(item.file.path), relpath=item.file.relpath,
            file_type=item.document.file_type, size=item.file.size, mtime_ns=item.file.mtime_ns,
            modified_at=file_time(item.file.mtime_ns), content_hash=item.content_hash,
            status="empty" if item.empty else "ok", error=None, warnings=item.document.warnings,
            title=item.document.title,
            text=item.document.text, pages=[[p.number, p.start, p.end] for p in item.document.pages],
            referenced_files=[[r.path, r.size, r.mtime_ns] for r in item.document.references], ingested_at=utcnow(),
        )

    def _remove(self, gone: list[tuple[str, int]], report: IngestReport) -> None:
        """Delete documents whose files are gone, from the database and every index."""
        self.progress.phase("removing", f"{len(gone)} documents")
        spaces = self.store.spaces()
        for space in spaces:
            self.store.index(space)
        with self.store.write() as unit:
            removed = unit.delete_documents([document_id for _, document_id in gone])
        report.removed += [path for path, _ in gone]
        report.chunks_removed += len(removed)


def _unavailable(root: Path) -> tuple[str, str]:
    """Why a source folder cannot be read now (missing, not a folder, or a symlink or behind one), and what to do;
    ("", "") when it can."""
    try:
        real: Path | None = root.resolve()
        is_folder = root.is_dir()
    except (OSError, RuntimeError):  # a folder on the way that cannot be searched; a symlink loop
        real, is_folder = None, False
    if real is not None and real != root:
        return (f"{root} is now a symlink, or lies behind one, to {real}",
                f"a source folder is never followed through a symlink, so nothing was changed: `kb source add {real}` "
                f"registers the folder it leads to, `kb source remove {root}` forgets this one")
    if not is_folder:
        return f"{root} is missing or not a folder", "nothing was changed"
    return "", ""


def _withhold(gone: list[tuple[str, int]], keep: Callable[[str], bool], report: IngestReport,
              why: str) -> list[tuple[str, int]]:
    """``gone`` less the documents ``keep`` holds on to, which are reported withheld, with ``why`` in a notice."""
    kept, rest = [], []
    for path, document_id in gone:
        (kept if keep(path) else rest).append((path, document_id))
    if kept:
        report.removal_withheld += [path for path, _ in kept]
        report.notices.append(f"{len(kept)} document(s) {why}; if their files really were deleted, run again "
                              "allowing removal (kb ingest/reindex --allow-removal)")
    return rest


def _quietly(action: Callable[[], object]) -> None:
    """Run a clean-up step on the way out of a failed run; its own failure is noted, never raised over the first
    (recording the run, saving an index cache: the database rebuilds a cache that could not be saved)."""
    try:
        action()
    except Exception as error:
        log.info("after the run failed, a clean-up step failed too: %s: %s", type(error).__name__, error)


def _file_type(path: str) -> str:
    """The file type ``path``'s loader reads it as ("" for none)."""
    loader = file_loader(path)
    return loader.file_type if loader is not None else ""
