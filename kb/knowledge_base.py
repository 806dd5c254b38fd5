"""``KnowledgeBase``: the public face of a knowledge base directory."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Union

from kb import doctor, sources
from kb.arguments import fraction, search_filters, whole_number
from kb.config import CONFIG_FILE, Settings, load_settings, records_default_database, save_settings
from kb.containment import FileTooLargeError, NotRegularFileError, read_named_file
from kb.encoders import ClipEncoder, TextEncoder, clip_encoder, text_encoder
from kb.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    NotAnImageError,
    ScheduleError,
    SourceNotFoundError,
    SourceUnavailableError,
    WriterBusyError,
)
from kb.keywords import LATEST_VERSION, KeywordTokenizer, keyword_tokenizer, parse_scheme
from kb.postings import rebuild_postings
from kb.scheduler import Scheduler
from kb.spaces import EMBED_BATCH, EmbeddingSpace, buildable_spaces
from kb.storage.database import refuse_a_lost_database, schema_version
from kb.storage.models import INGESTED, utcnow
from kb.storage.store import Store
from kb.storage.urls import redact
from kb.types import (
    Answer,
    AskResult,
    DoctorReport,
    FailedFile,
    FileProgress,
    Filters,
    Hit,
    IngestProgress,
    IngestReport,
    Job,
    SearchMode,
    SourceInfo,
    SpaceStats,
    Stats,
)
from retrieval.evidence import interleaved, one_hit_per_evidence
from retrieval.query import readable_query
from retrieval.retriever import MAX_K, Retriever

if TYPE_CHECKING:
    from PIL.Image import Image

    from answering.reader import Readers

ImageQuery = Union[str, os.PathLike[str], bytes, "Image"]
FileCallback = Callable[[int, int, str], None]

log = logging.getLogger(__name__)
DEFAULT_HOME = ".kb"
MAX_JOBS = 1_000_000  # runs `jobs` lists at most: years of runs every few minutes



def knowledge_base_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Where a knowledge base lives: ``path``, else ``$KB_HOME``, else ``./.kb``."""
    return Path(path or os.environ.get("KB_HOME") or DEFAULT_HOME).expanduser().resolve()


class KnowledgeBase:
    """A knowledge base in a directory: ingest folders into it, search it, ask it questions.

    Open it with :meth:`open` (creating the directory if missing); use it as a context manager so the database
    and index files are closed cleanly.
    """

    def __init__(self, directory: Path, settings: Settings) -> None:
        self.directory = directory
        self.settings = settings
        self.encoder: TextEncoder = text_encoder(settings)  # first: a backend not installed fails before any opening
        self.store = Store(directory, settings)
        self.clip: ClipEncoder | None = clip_encoder(settings)
        self.retriever = Retriever(self.store, self.encoder, self._indexed_keywords(), settings, self.clip)
        self._readers: Readers | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> KnowledgeBase:
        """Open (or create) the knowledge base at ``path`` (default ``$KB_HOME`` or ``./.kb``).

        ``overrides`` are settings (see :class:`kb.config.Settings`); a new knowledge base records its settings
        in ``kb.json`` so it reopens with the same models and options.
        """
        directory = knowledge_base_dir(path)
        directory.mkdir(parents=True, exist_ok=True)
        settings = load_settings(directory, overrides)
        if not (directory / CONFIG_FILE).exists():
            # Recorded before the database exists: a process killed in between leaves no database whose
            # settings are unknown (and later opened with other ones).
            save_settings(directory, settings)
        elif settings.database_url is None and records_default_database(directory):
            refuse_a_lost_database(directory)
        return cls(directory, settings)

    # -- writing --------------------------------------------------------------------------------------------

    def ingest(self, folder: str | os.PathLike[str], progress: IngestProgress | FileCallback | None = None,
               should_stop: Callable[[], bool] | None = None, allow_removal: bool = False,
               reread: bool = False) -> IngestReport:
        """Bring the knowledge base in line with ``folder``: add new files, replace changed, drop removed.

        ``progress`` is an :class:`kb.types.IngestProgress` (phases and files) or a plain
        ``callback(done, total, relpath)`` called as each file has been read. ``should_stop`` is polled between
        files and while one is read: when it returns True the run commits what it has, removes nothing, and is
        recorded as interrupted; so is a run ended by Ctrl-C (``KeyboardInterrupt``, raised again), and either
        leaves a scheduled source due. A folder that is empty or unreadable where documents came from fails the
        run, and more than ``max_removed_share`` of its documents missing at once are kept (the report says so),
        unless ``allow_removal``: an unmounted share is not every file deleted. A registered source whose path has
        become a symlink, or lies behind one, fails its run too: a source folder is never followed through one.
        ``reread`` reads again the unchanged files that failed or were read only in part (after OCR was installed
        or a limit raised); otherwise an unchanged file is never read again.
        """
        from ingestion.pipeline import Ingestor

        if progress is not None and not isinstance(progress, IngestProgress):
            progress = FileProgress(progress)
        # A registered source runs under its path as stored, even where that path has become a symlink (the run
        # refuses it); a new folder becomes a source under its real path.
        registered = sources.find_source(self.store, folder)
        reschedule, report = True, None
        try:
            ingestor = Ingestor(self.store, self.encoder, self.keywords, self.settings, progress, should_stop,
                                clip=self.clip, allow_removal=allow_removal, reread=reread)
            report = ingestor.run(Path(registered or sources.resolve(folder)), create=registered is None)
            self.retriever.keywords = ingestor.keywords  # in the version the run found the postings in
            return report
        except (WriterBusyError, KeyboardInterrupt, SourceNotFoundError):
            # Another writer is at work, or the user pressed Ctrl-C (which, like a stop request, keeps what was
            # committed): a scheduled source stays due. One removed meanwhile has no schedule left to set.
            reschedule = False
            raise
        finally:
            # Any run of a scheduled source, by hand or by the scheduler, that ended or failed (even before it
            # began) is its run; one stopped on request (a scheduler shut down) saw only part of the folder, and
            # stays due so that the next start finishes it.
            if reschedule and registered is not None and not (report is not None and report.interrupted):
                try:
                    sources.schedule_next(self.store, registered, utcnow())
                except (ScheduleError, SourceNotFoundError) as error:  # an unusable stored schedule, a source
                    log.error("%s", error)  # removed meanwhile: said, never raised over the run's own outcome

    def add_source(self, folder: str | os.PathLike[str], schedule: str | None = None) -> SourceInfo:
        """Keep ``folder`` up to date: ``schedule`` is a cron expression ("*/30 * * * *") or an interval
        ("every 15m", "2h"). A scheduled source is due at once; ``run_scheduler`` or ``kb scheduler`` runs it."""
        return sources.add_source(self.store, folder, schedule)

    def remove_source(self, folder: str | os.PathLike[str]) -> int:
        """Forget a source and delete its documents everywhere, but for those another source's folder holds (they
        pass to the innermost such source); returns how many documents were deleted."""
        return sources.remove_source(self.store, folder)

    def sources(self) -> list[SourceInfo]:
        return sources.list_sources(self.store)

    def reindex(self, folder: str | os.PathLike[str] | None = None,
                progress: IngestProgress | FileCallback | None = None,
                allow_removal: bool = False, reread: bool = False) -> list[IngestReport]:
        """One run now, for one source (by the path `kb source list` shows, or one that resolves to it) or every
        registered source (``allow_removal``, ``reread``: see ``ingest``). Over every source, one that cannot be
        read (an unmounted share) is reported as failed, its documents kept, and the sources after it still run."""
        if folder is not None:
            return [self.ingest(sources.source_path(self.store, folder), progress, allow_removal=allow_removal,
                                reread=reread)]
        reports = []
        for path in [info.path for info in self.sources()]:
            try:
                reports.append(self.ingest(sources.source_path(self.store, path), progress,
                                           allow_removal=allow_removal, reread=reread))
            except SourceNotFoundError:  # removed while an earlier source ran: not brought back
                continue
            except SourceUnavailableError as error:
                reports.append(IngestReport(source=path, failed=[FailedFile(path=path, reason=str(error))]))
        return reports

    def jobs(self, limit: int = 20) -> list[Job]:
        """The ``limit`` most recent ingest and reindex runs, newest first."""
        # SQL would take a negative limit as none at all, and one past 64 bits as an overflow
        return sources.jobs(self.store, whole_number(limit, "the number of runs shown (limit, --limit)", MAX_JOBS))

    def scheduler(self, poll_seconds: float = 30.0,
                  on_report: Callable[[IngestReport], None] | None = None) -> Scheduler:
        """A scheduler over this knowledge base: ``.run()`` until ``.stop()``, or ``.run_pending()`` once."""
        return Scheduler(self.store, self._run_scheduled, poll_seconds, on_report)

    def _run_scheduled(self, folder: str, *, should_stop: Callable[[], bool]) -> IngestReport:
        """``ingest`` of a source the scheduler found due; one removed since (while an earlier source ran) raises
        ``SourceNotFoundError`` instead of being brought back as a new folder."""
        return self.ingest(sources.source_path(self.store, folder), should_stop=should_stop)

    def doctor(self, repair: bool = False) -> DoctorReport:
        """Check that the database, the vector and keyword indexes and the files agree; fix them if ``repair``."""
        report = doctor.examine(self.store, self.spaces(), keyword_tokenizer(self.settings.keywords.tokenizer),
                                self.reembed_locked, self.settings.ingestion.max_removed_share, repair)
        self.retriever.keywords = self._indexed_keywords()  # a repair may have rebuilt the postings anew
        return report

    def reembed(self, batch_size: int = EMBED_BATCH) -> int:
        """Rebuild every chunk's vectors (text space, and CLIP space when its model loads) and keyword postings
        with the configured encoders and keyword tokenizer.

        One transaction: until it commits, searches see the old spaces. Returns the number of chunks.
        """
        with self.store.writer_lock:
            return self.reembed_locked(batch_size)

    def reembed_locked(self, batch_size: int = EMBED_BATCH) -> int:
        """``reembed`` for a caller that already holds the writer lock."""
        spaces = self.spaces()  # models loaded before the write transaction begins
        with self.store.write() as unit:
            for space in spaces:
                identity = space.encoder.identity()
                facts = (identity.model, identity.fingerprint, identity.dimension, identity.normalized)
                stored = unit.space(space.name) or unit.new_space(space.name, *facts)
                stored = unit.replace_space(stored, *facts)
                space.fill(unit, stored, unit.read.member_ids(space.name), batch_size)
            keywords = keyword_tokenizer(self.settings.keywords.tokenizer)
            chunks = rebuild_postings(unit, keywords, batch_size)
            # Recorded before the commit: a kb.json that cannot be written (a full disk) rolls the new vectors
            # back, and a kill between the two leaves kb.json naming the new models, which a reembed completes.
            save_settings(self.directory, self.settings)
        self.retriever.keywords = keywords
        for stored in self.store.spaces():
            self.store.index(stored)
        return chunks

    def _indexed_keywords(self) -> KeywordTokenizer:
        """The configured keyword tokenizer in the version the keyword index was built with, so questions are cut
        as its documents were; the latest for a new index or one built by another tokenizer or a newer version
        (refused by keyword search, so that dense search and doctor still work)."""
        configured, recorded = self.settings.keywords.tokenizer, self.store.keyword_tokenizer()
        name, version = parse_scheme(recorded) if recorded else (configured, LATEST_VERSION)
        return keyword_tokenizer(configured, version if name == configured and version <= LATEST_VERSION
                                 else LATEST_VERSION)  # a newer version is refused by keyword search, not here

    @property
    def keywords(self) -> KeywordTokenizer:
        """The keyword tokenizer questions are cut with (and documents indexed with), as the postings were made."""
        return self.retriever.keywords

    def spaces(self) -> list[EmbeddingSpace]:
        """The embedding spaces that can be built here (the CLIP space only when its model loads)."""
        return buildable_spaces(self.encoder, self.clip)

    # -- reading --------------------------------------------------------------------------------------------

    def search(self, query: str | None = None, k: int = 5, mode: SearchMode = "hybrid",
               filters: Filters | dict[str, Any] | None = None, modalities: Iterable[str] | None = None,
               image: ImageQuery | None = None) -> list[Hit]:
        """The ``k`` chunks and images that best match ``query``, or ``image`` (a path, an image file's bytes or
        a PIL image).

        ``modalities`` restricts the results to ``{"text"}`` or ``{"image"}`` (both by default). Every hit has its
        file, page and character offsets; an image hit also has ``hit.image`` (see :meth:`image_preview`).
        """
        filters = search_filters(filters)
        if (query is None) == (image is None):
            raise InvalidRequestError("search with a query or an image, not both or neither")
        if image is not None:
            space = self.retriever.image_space()
            return self.retriever.search_image(space, self._query_image(image), k=k, filters=filters,
                                               modalities=modalities)
        assert query is not None
        return self.retriever.search(query, k=k, mode=mode, filters=filters, modalities=modalities)

    def image_preview(self, hit: Hit | int) -> bytes:
        """The stored JPEG preview of the image a hit shows or carries (or of an image chunk id)."""
        chunk_id = (hit.image.chunk_id if hit.image is not None else hit.chunk_id) if isinstance(hit, Hit) else hit
        with self.store.read() as snapshot:  # an id past what SQL holds (32 bits on PostgreSQL) names no image either
            preview = snapshot.image_preview(chunk_id) if isinstance(chunk_id, int) and 0 < chunk_id < 2**31 else None
        if preview is None:
            raise NotAnImageError(f"chunk {chunk_id} is not an image of this knowledge base")
        return preview

    def _query_image(self, image: ImageQuery) -> Image:
        """An image to search with, decoded with the same guards as ingested images; a path is read only if it is a
        regular file of at most ``max_file_mb``, as an image file ingested (a FIFO or ``/dev/zero`` is refused at
        once); a PIL image is refused before it is decoded when it has no pixels or more than an ingested one may,
        and read as its file would be."""
        from PIL import Image

        from ingestion.loaders.images import decode_image, upright_rgb

        limits = self.settings.ingestion
        if isinstance(image, Image.Image):
            width, height = image.size  # known before a lazily opened image is decoded
            if not 0 < width * height <= limits.max_image_pixels:
                raise InvalidRequestError(f"cannot search by a {width}x{height} image: it must have from 1 to "
                                          f"{limits.max_image_pixels:,} pixels (max_image_pixels)")
            # Read as its file would be (transparency on white, 16 bits scaled, upright by its EXIF), from a copy:
            # the caller's picture is not shrunk or decoded in its place.
            return upright_rgb(image.copy())[0]
        if isinstance(image, (bytearray, memoryview)):
            image = bytes(image)
        if isinstance(image, bytes):
            if len(image) > limits.max_file_mb * 2**20:
                raise InvalidRequestError(f"cannot search by an image of {len(image):,} bytes: more than max_file_mb")
            return decode_image(image, "the query image", max_pixels=limits.max_image_pixels).image
        if not isinstance(image, (str, os.PathLike)):
            raise InvalidRequestError(f"search by image takes a path, an image file's bytes or a PIL image, not "
                                      f"{type(image).__name__}")
        try:
            path = Path(image)
        except TypeError as error:  # a PathLike that returns bytes
            raise InvalidRequestError(f"cannot search by this image: {error}") from None
        if "\0" in str(path):
            raise InvalidRequestError("cannot search by this image: its path holds a NUL character")
        try:
            data = read_named_file(path, int(limits.max_file_mb * 2**20))
        except (NotRegularFileError, FileTooLargeError) as error:
            raise InvalidRequestError(f"{path}: cannot search by this image: {error}") from error
        return decode_image(data, path.name, max_pixels=limits.max_image_pixels).image

    def ask(self, question: str, k: int = 5, top_k: int = 3, mode: SearchMode = "hybrid",
            filters: Filters | dict[str, Any] | None = None, threshold: float | None = None) -> AskResult:
        """Answers to ``question`` read from the ``k`` best passages, best first, each citing its sources.

        The result behaves as the list of answers (``answers[0]`` is the best) and carries the ranked
        ``evidence``: the passages read and the images ranked among the ``k`` best hits. Each answer's
        ``images`` are those images plus the images that belong with the passages it cites. The result is
        empty when no answer scores ``threshold`` (default ``reader_no_answer_threshold``) or more; when the
        reader model cannot be loaded it is empty too, with ``status="reader_unavailable"``, a ``message``
        saying what to do, and the evidence still ranked.
        """
        whole_number(top_k, "the number of answers (top_k, --answers)", MAX_K)
        if threshold is not None:
            fraction(threshold, "threshold")  # as reader_no_answer_threshold: NaN would never answer
        question = readable_query(question, "question")  # as far as any stage reads it, once
        passages = self.search(question, k=k, mode=mode, filters=filters, modalities={"text"})
        pictures = self.search(question, k=k, mode=mode, filters=filters, modalities={"image"})
        ranked = interleaved(passages, pictures)
        images = [hit for hit in ranked[:k] if hit.modality == "image"]
        evidence = one_hit_per_evidence([hit for place, hit in enumerate(ranked)
                                         if hit.modality != "image" or place < k])
        if not passages:
            return AskResult(question=question, evidence=evidence, status="no_evidence",
                             message="no passage matches the question")
        try:
            reader = self.readers.for_question(question)
            reading = reader.run(question, passages, top_k=top_k, threshold=threshold)
        except ModelNotFoundError as error:
            return AskResult(question=question, evidence=evidence, status="reader_unavailable", message=str(error))
        for answer in reading.answers:
            answer.images = self._answer_images(answer, images)
        return AskResult(question=question, answers=reading.answers, evidence=evidence,
                         no_answer_score=reading.no_answer_score, best_score=reading.best_score,
                         threshold=reading.threshold,
                         status="answered" if reading.answers else "no_answer")

    @property
    def readers(self) -> Readers:
        """The extractive readers, one per model; each loads its model on its first question."""
        if self._readers is None:
            from answering.reader import Readers

            self._readers = Readers(self.settings)
        return self._readers

    def _answer_images(self, answer: Answer, retrieved: list[Hit]) -> list[Hit]:
        """The retrieved images, then those that belong with the answer's cited passages, each once."""
        linked = self.retriever.images_near(source.chunk_id for source in answer.sources)
        seen = {hit.chunk_id for hit in retrieved}
        return retrieved + [hit for hit in linked if hit.chunk_id not in seen]

    def stats(self) -> Stats:
        """Counts of sources, documents, chunks and vectors, and the spaces' encoders."""
        index = "pgvector HNSW" if self.store.vector_index == "pgvector" else self.settings.index.factory
        with self.store.read() as snapshot:
            documents = snapshot.documents_by_status()
            spaces = [
                SpaceStats(name=space.name, model=space.model, dimension=space.dimension,
                           generation=space.generation, index_factory=index,
                           vectors=snapshot.vector_count(space))
                for space in snapshot.spaces()
            ]
            return Stats(
                path=str(self.directory),
                database=redact(self.store.url),
                schema_version=schema_version(self.store.sessions),
                sources=snapshot.source_paths(),
                documents=sum(documents.get(status, 0) for status in INGESTED),
                failed_documents=documents.get("failed", 0),
                empty=snapshot.empty_documents(),
                warnings=snapshot.document_warnings(),
                failed=[FailedFile(path=path, reason=error or "unknown") for path, error in
                        snapshot.failed_documents()],
                unread=[FailedFile(path=path, reason=reason) for path, reason in snapshot.unread_files()],
                notices=self.store.notices(),
                chunks=snapshot.count("chunks"),
                images=snapshot.count("images"),
                file_types=snapshot.file_types(),
                spaces=spaces,
                last_run=snapshot.last_finished(),
            )

    # -- lifetime -------------------------------------------------------------------------------------------

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
