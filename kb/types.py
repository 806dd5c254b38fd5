"""Public data types that cross the ingestion, retrieval and answering pipelines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, computed_field, model_validator

from kb.text import NOT_TEXT, is_text

Modality = Literal["text", "image"]
SearchMode = Literal["hybrid", "dense", "keyword"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "dense", "keyword")
MODALITIES: tuple[Modality, ...] = ("text", "image")
TEXT_SPACE = "text"  # the name of the sentence-transformers embedding space
CLIP_SPACE = "clip"  # the shared image-text space: image embeddings and the CLIP text embeddings of chunks
# The document types loaders record, and the file suffixes a user may type for them in a filter.
FILE_TYPES = frozenset({"text", "markdown", "html", "pdf", "doc", "docx", "ppt", "pptx", "xls", "xlsx", "odt", "ods",
                        "odp", "epub", "eml", "mbox", "msg", "rtf", "csv", "tsv", "image"})
FILE_TYPE_ALIASES = {"txt": "text", "md": "markdown", "htm": "html", "xhtml": "html", "pps": "ppt", "xlt": "xls",
                     "docm": "docx", "dotx": "docx", "dotm": "docx", "pptm": "pptx", "ppsx": "pptx", "ppsm": "pptx",
                     "potx": "pptx", "potm": "pptx", "xlsm": "xlsx", "xltx": "xlsx", "xltm": "xlsx",
                     "wps": "doc", "wpt": "doc", "et": "xls", "ett": "xls", "dps": "ppt", "dpt": "ppt",
                     "jpg": "image", "jpeg": "image", "png": "image", "webp": "image", "gif": "image", "bmp": "image",
                     "tif": "image", "tiff": "image"}


def _utc_text(moment: datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


# A time the database recorded: naive UTC in Python (as it is stored), written with its offset in JSON, so that a
# script reading ``--json`` does not take it for local time.
UtcTime = Annotated[datetime, PlainSerializer(_utc_text, return_type=str, when_used="json")]


class Page(BaseModel):
    """A page of an extracted document: characters ``[start, end)`` of the document text."""

    number: int = Field(ge=1)
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class ExtractedImage(BaseModel):
    """An image a loader found (an image file itself, or one embedded in a document), decoded and guarded.

    ``image`` is an RGB ``PIL.Image`` already EXIF-rotated and bounded in size; ``width``/``height`` are the
    original's. ``[start, end)`` is the span of the document text the image belongs with: its caption or
    surrounding paragraph, or, after OCR, the text read from it (``start == end`` when there is none).
    ``alt`` and ``caption`` are descriptive texts that need not be part of the document text (HTML alt,
    DOCX description). ``scanned_page`` marks the image of a PDF page that has no text layer: OCR fills the page.
    ``ocr_text`` is the text OCR read in the image, until it is inserted into the document's text, and
    ``ocr_failure`` why OCR could not read it; OCR reads an embedded image as its loader keeps it, then cuts its
    picture to preview size, so that a long scan is never held at full size. A ``text_only`` scanned page lies past
    the document's allowance of pictures: OCR reads its text, and its picture (``image`` None once read) is not kept.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    image: Any = Field(exclude=True, repr=False)
    sha256: str
    name: str
    width: int
    height: int
    page: int | None = None
    start: int = 0
    end: int = 0
    alt: str | None = None
    caption: str | None = None
    scanned_page: bool = False
    text_only: bool = False
    ocr_text: str | None = Field(default=None, repr=False)
    ocr_failure: str | None = Field(default=None, repr=False)


class ReferencedFile(BaseModel):
    """A file of the source folder that a document shows but does not hold (an HTML or Markdown page's picture), as
    it was when the document was read (``size`` and ``mtime_ns`` -1: not there, or not readable), so that a change
    to it reads the document again."""

    path: str
    size: int = -1
    mtime_ns: int = -1


class ExtractedDocument(BaseModel):
    """What a loader gives back: the document's visible text, where each page lies in it, and its images.

    Chunk offsets and citations point into ``text``; ``pages`` is empty for formats without pages.
    """

    text: str
    file_type: str
    title: str | None = None
    pages: list[Page] = Field(default_factory=list)
    images: list[ExtractedImage] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    references: list[ReferencedFile] = Field(default_factory=list)

    def page_at(self, offset: int) -> int | None:
        """The page number holding character ``offset``, or None for page-less formats."""
        for page in self.pages:
            if page.start <= offset < page.end:
                return page.number
        return self.pages[-1].number if self.pages and offset >= self.pages[-1].end else None


class ChunkSpan(BaseModel):
    """A chunk of a document: ``text == document.text[start:end]``, on ``page`` when the format has pages."""

    start: int
    end: int
    text: str
    page: int | None = None
    tokens: int = 0


class ImageInfo(BaseModel):
    """What an image hit shows: the image's name in its file (the file name, "page 3 image 2", a DOCX media
    part, an HTML src), its original size, the hash of its bytes, and its image chunk (for its preview)."""

    name: str
    width: int
    height: int
    sha256: str
    chunk_id: int


class Place(BaseModel):
    """Another place of the same document holding the same passage or picture as a hit (folded into it)."""

    page: int | None
    start: int
    end: int
    chunk_id: int


class Hit(BaseModel):
    """One search result with everything needed to cite it.

    A text hit's ``text`` is ``document_text[start:end]``. An image hit (``modality="image"``) carries ``image``;
    its ``text`` is the image's description (alt text, caption, surrounding or OCR text) and ``[start, end)`` the
    span of the document text it belongs with; ``path`` is the image file or the document that embeds it.

    One hit is one piece of evidence: a text hit found together with the image its text belongs to (a photographed
    sign and its OCR text, a scanned page and its text, a figure and its caption's paragraph) carries that image
    in ``image`` (its ``chunk_id`` names the image chunk); the same passage or picture repeated in a document is
    one hit, the other places listed in ``repeats``.
    """

    path: str
    page: int | None
    start: int
    end: int
    text: str
    score: float
    modality: Modality = "text"
    chunk_id: int
    document_id: int
    title: str | None = None
    dense_score: float | None = None
    keyword_score: float | None = None
    clip_score: float | None = None
    rerank_score: float | None = Field(default=None, description="the cross-encoder's probability, when a reranker "
                                       "read the hit (``score`` is then its blend with ``fused_score``)")
    fused_score: float | None = Field(default=None, description="the fused score before reranking")
    matched_query: str | None = Field(default=None, description="the English gloss of a Chinese question, when it "
                                      "was that gloss that found the hit (see cross_lingual)")
    image: ImageInfo | None = None
    repeats: list[Place] = Field(default_factory=list)


class Citation(BaseModel):
    """Where an answer was read: ``document_text[start:end] == text``, inside the cited passage. ``text`` is this
    reading's wording; the answer's ``text`` is its most probable reading's, the same after SQuAD normalisation
    (case, articles, punctuation) for every source.

    ``start``/``end`` are the answer's character offsets in the document's extracted text (the ``documents.text``
    column); ``passage`` is the retrieved chunk, ``document_text[passage_start:passage_end]``, on ``page``.
    ``score`` is this occurrence's own probability; the answer's score is the sum over its sources.
    """

    path: str
    page: int | None
    start: int
    end: int
    passage: str
    passage_start: int
    passage_end: int
    score: float
    chunk_id: int
    document_id: int
    title: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def text(self) -> str:
        """The cited characters."""
        return self.passage[self.start - self.passage_start : self.end - self.passage_start]

    def highlighted(self, before: str = ">>>", after: str = "<<<") -> str:
        """The passage with the answer marked."""
        left, right = self.start - self.passage_start, self.end - self.passage_start
        return f"{self.passage[:left]}{before}{self.passage[left:right]}{after}{self.passage[right:]}"


class Answer(BaseModel):
    """An extracted answer: its text, a probability in [0, 1] comparable across passages, and its evidence."""

    text: str
    score: float = Field(ge=0, le=1)
    sources: list[Citation]
    images: list[Hit] = Field(default_factory=list,
                              description="images retrieved for the question or linked to the cited passages")


AskStatus = Literal["answered", "no_answer", "no_evidence", "reader_unavailable"]


class AskResult(BaseModel):
    """What ``KnowledgeBase.ask`` returns: the answers, best first, and the evidence they were read from.

    It behaves as the list of answers (``result[0]``, ``len(result)``, ``for answer in result``), empty when the
    knowledge base holds no answer. ``status`` says why it is empty: ``no_answer`` (the reader abstained; the
    ``no_answer_score`` or the threshold won), ``no_evidence`` (nothing retrieved) or ``reader_unavailable`` (the
    reader model could not be loaded; ``message`` says what to do). ``evidence`` is always the ranked retrieval.
    """

    question: str
    answers: list[Answer] = Field(default_factory=list)
    evidence: list[Hit] = Field(default_factory=list)
    status: AskStatus
    no_answer_score: float | None = Field(default=None, description="probability the passages hold no answer")
    best_score: float | None = Field(default=None, description="the reader's best answer's score, kept or not")
    threshold: float | None = Field(default=None, description="the no-answer threshold answers had to reach")
    message: str | None = None

    def __len__(self) -> int:
        return len(self.answers)

    def __getitem__(self, index: int) -> Answer:
        return self.answers[index]

    def __iter__(self) -> Iterator[Answer]:  # type: ignore[override]  # iterate answers, like the list it stands for
        return iter(self.answers)

    def __bool__(self) -> bool:
        return bool(self.answers)


class FailedFile(BaseModel):
    """A file that could not be ingested, and why."""

    path: str
    reason: str


IngestPhase = Literal["scanning", "loading models", "reading", "embedding", "saving indexes", "removing"]


@runtime_checkable
class IngestProgress(Protocol):
    """Receives an ingest's progress: each phase as it starts (``detail`` says what it works on), and each file
    as it has been read (``done`` of ``total``)."""

    def phase(self, name: IngestPhase, detail: str = "") -> None: ...

    def file(self, done: int, total: int, relpath: str) -> None: ...


class SilentProgress:
    """Progress that nobody watches."""

    def phase(self, name: IngestPhase, detail: str = "") -> None:
        pass

    def file(self, done: int, total: int, relpath: str) -> None:
        pass


class FileProgress(SilentProgress):
    """Adapts a plain ``callback(done, total, relpath)``, called as each file has been read."""

    def __init__(self, callback: Callable[[int, int, str], None]) -> None:
        self.callback = callback

    def file(self, done: int, total: int, relpath: str) -> None:
        self.callback(done, total, relpath)


class IngestReport(BaseModel):
    """What one ingest run did to the knowledge base."""

    run_id: int | None = None
    source: str
    added: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    moved: dict[str, str] = Field(default_factory=dict, description="old path -> new path, nothing re-embedded")
    failed: list[FailedFile] = Field(default_factory=list)
    skipped: list[FailedFile] = Field(default_factory=list)
    empty: list[str] = Field(default_factory=list,
                             description="added or updated files that hold no text (a scan without OCR, say)")
    warnings: dict[str, list[str]] = Field(default_factory=dict,
                                           description="added or updated files read only in part, with why")
    chunks_added: int = 0
    chunks_removed: int = 0
    seconds: float = 0.0
    encoder_seconds: float = 0.0
    interrupted: bool = False
    removal_withheld: list[str] = Field(default_factory=list, description="documents whose files are missing but "
                                        "were kept: too many at once (max_removed_share), see notices")
    notices: list[str] = Field(default_factory=list, description="what this run could not do, and why")

    def read_nothing(self) -> bool:
        """Files were tried and every one failed: the run did not do its job (a folder of only broken files, or a
        share whose files cannot be read)."""
        return bool(self.failed) and not (self.added or self.updated or self.unchanged or self.moved)

    def counts(self) -> dict[str, int]:
        """How many files each outcome had (``empty`` and ``warnings`` count files among the added and updated)."""
        return {name: len(getattr(self, name)) for name in
                ("added", "updated", "unchanged", "removed", "moved", "failed", "skipped", "empty", "warnings")}

    def summary(self) -> str:
        """One line a person reads at the end of a run: every outcome that happened, nothing that did not."""
        counts = self.counts()
        outcomes = [f"{counts[name]} {name}" for name in ("added", "updated", "unchanged", "removed", "moved",
                                                          "failed", "skipped") if counts[name] or name == "added"]
        partial = [f"{counts[name]} {label}" for name, label in (("empty", "empty"), ("warnings", "with warnings"))
                   if counts[name]]
        parts = [", ".join(outcomes), *([", ".join(partial)] if partial else []),
                 f"{self.chunks_added} chunks embedded in {self.seconds:.1f} s"]
        if self.interrupted:
            parts.append("stopped before every file was stored")
        return "; ".join(parts)


MAX_PATH_GLOBS = 100  # path globs one search takes: each is two conditions of its statement
MAX_PATH_GLOB_CHARS = 4096  # a path glob's length: Linux's PATH_MAX


class Filters(BaseModel):
    """Typed search filters, applied in SQL. Unknown filter names are an error, never silently ignored.

    ``path_glob`` uses shell-style ``*`` and ``?`` (``*`` also crosses ``/``) and is matched against the path
    relative to its source folder and against the absolute path, case-insensitively, accents composed or apart
    (NFC or NFD, as a Mac writes names) alike. ``file_types`` takes document types (text, markdown, html, pdf,
    docx) or suffixes (txt, md, ...).
    """

    model_config = ConfigDict(extra="forbid")

    path_glob: str | list[str] | None = None
    file_types: list[str] | None = None
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    ingested_after: datetime | None = None
    ingested_before: datetime | None = None

    @model_validator(mode="after")
    def _refuse_unmatchable_globs(self) -> Filters:
        """Globs a database can take: each a condition of one statement (SQLite's expression tree stops at a depth of
        1,000, reached by 1,001 globs), no longer than a path can be (SQLite refuses a pattern of 50,000 bytes), and
        text without a NUL (PostgreSQL refuses one; no path holds one) or a lone surrogate (no database stores one)."""
        globs = [self.path_glob] if isinstance(self.path_glob, str) else self.path_glob or []
        if len(globs) > MAX_PATH_GLOBS:
            raise ValueError(f"path_glob gives {len(globs):,} globs; at most {MAX_PATH_GLOBS}")
        if any(len(glob) > MAX_PATH_GLOB_CHARS for glob in globs):
            raise ValueError(f"a path_glob is longer than any path ({MAX_PATH_GLOB_CHARS:,} characters)")
        if any("\x00" in glob for glob in globs):
            raise ValueError("path_glob holds a NUL character (\\x00), which no path contains")
        if not is_text(globs):
            raise ValueError(f"path_glob holds {NOT_TEXT}")
        return self

    @model_validator(mode="after")
    def _normalise_types(self) -> Filters:
        if self.file_types is not None:
            types = {FILE_TYPE_ALIASES.get(t, t) for t in (t.lower().lstrip(".") for t in self.file_types)}
            unknown = types - FILE_TYPES
            if unknown:
                raise ValueError(f"unknown file types {sorted(unknown)}; known: {', '.join(sorted(FILE_TYPES))}")
            self.file_types = sorted(types)  # each once: 300,000 of one were as many SQL parameters, too many
        return self

    def is_empty(self) -> bool:
        return all(value is None for value in self.model_dump().values())


class SpaceStats(BaseModel):
    name: str
    model: str
    dimension: int
    vectors: int
    generation: int
    index_factory: str


class Stats(BaseModel):
    """A knowledge base at a glance."""

    path: str
    database: str
    schema_version: int
    sources: list[str]
    documents: int = Field(description="documents read, empty ones included")
    failed_documents: int
    empty: list[str] = Field(default_factory=list, description="documents read that hold no text")
    warnings: dict[str, list[str]] = Field(default_factory=dict, description="documents read only in part, and why")
    failed: list[FailedFile] = Field(default_factory=list, description="every failed document, with why")
    unread: list[FailedFile] = Field(default_factory=list, description="what each source's last run could not make "
                                     "a document of, with why: a file name not valid UTF-8, a path too long, a "
                                     "folder it could not list (as that run recorded them: its first 1,000 failures)")
    notices: list[str] = Field(default_factory=list, description="what the knowledge base cannot do for now")
    chunks: int
    images: int = Field(description="image chunks: image files and images inside documents")
    file_types: dict[str, int]
    spaces: list[SpaceStats]
    last_run: UtcTime | None = None


class SourceInfo(BaseModel):
    """A folder the knowledge base keeps up to date, and when it is next due."""

    path: str
    schedule: str | None
    next_run_at: UtcTime | None
    documents: int
    last_status: str | None = None
    last_finished_at: UtcTime | None = None


class Job(BaseModel):
    """One ingest or reindex run, as recorded in the database."""

    id: int
    source: str | None
    started_at: UtcTime
    finished_at: UtcTime | None
    status: str
    counts: dict[str, int]
    failures: list[FailedFile]
    error: str | None


class Problem(BaseModel):
    """One inconsistency ``doctor`` found, and whether ``--repair`` fixed it."""

    kind: str
    detail: str
    repaired: bool = False
    repairable: bool = Field(default=True, description="False where ``--repair`` cannot fix it (a damaged database)")


class DoctorReport(BaseModel):
    """The problems found (each repaired or not), and notes that need no repair (empty documents, notices)."""

    problems: list[Problem] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(problem.repaired for problem in self.problems)
