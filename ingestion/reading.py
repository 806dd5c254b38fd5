"""One file's work with hostile input: the contained read, then the load into text and pictures (OCR included).

This is the part of an ingest that a hostile file can make slow, hungry or stuck, so it runs where it can be
stopped (``ingestion.isolation``); its inputs and results are small, picklable values.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingestion.loaders import LoadError, file_loader
from ingestion.loaders.base import Limits
from ingestion.ocr import OcrEngine, OcrTime, PreparedAsKept, RapidOcrEngine, apply_ocr
from ingestion.pictures import Picture, pictures_of
from kb.containment import FileTooLargeError, RefusedFileError, read_inside
from kb.types import ExtractedDocument


@dataclass(frozen=True)
class ReadSettings:
    """What reading and loading need from the knowledge base's settings."""

    limits: Limits
    max_bytes: int
    follow_symlinks_outside: bool = False
    ocr: bool = False  # read the text in image files and scanned pages
    ocr_embedded_images: bool = False
    ocr_seconds: float = math.inf  # of OCR per file (``ocr_file_seconds``)
    ocr_wanted: bool = False  # OCR is off only because it is not installed: count what it would have read


@dataclass(frozen=True)
class FileJob:
    """A scanned file to read: where, and the (device, inode) the scan saw."""

    root: Path
    path: Path
    identity: tuple[int, int]


@dataclass
class Loaded:
    """A loaded file: its document, its pictures ready to store, and whether OCR would have read more."""

    document: ExtractedDocument
    pictures: list[Picture]
    unread_images: bool = False


@dataclass
class Fetched:
    """A file read and, unless its hash was one the caller had no use for loading, loaded."""

    content_hash: str
    loaded: Loaded | None = None


class ReadFailed(LoadError):
    """The file could not be read at all (refused, vanished, over the size limit): nothing is recorded for it,
    the next run tries again."""


class LoadFailed(LoadError):
    """The file was read (``content_hash``) but could not be loaded: its failure is recorded."""

    def __init__(self, reason: str, content_hash: str) -> None:
        super().__init__(reason)
        self.content_hash = content_hash


def fetch(reader: FileReader, job: FileJob, skip: frozenset[str], on_read: Callable[[str], None]) -> Fetched:
    """Read ``job`` and, unless its hash is in ``skip`` (unchanged, or a moved file), load it, in one go;
    ``on_read`` hears the hash as soon as it is known. A load failure raises ``LoadError`` after ``on_read``."""
    content_hash = reader.read(job)
    on_read(content_hash)
    if content_hash in skip:
        return Fetched(content_hash)
    return Fetched(content_hash, reader.load(job))


class FileReader:
    """Reads a file under the containment rule and keeps its bytes for the load that may follow.

    ``on_ocr`` is called with True as each image's OCR begins and with False as it ends: the worker tells the
    ingest, whose time budget is per step (reading and loading together, and each image OCR reads on its own), so
    that a long scan is not cut short.
    """

    def __init__(self, settings: ReadSettings, on_ocr: Callable[[bool], None] = lambda reading: None) -> None:
        self.settings = settings
        self.on_ocr = on_ocr
        self._ocr: OcrEngine | None = None
        self._job: FileJob | None = None
        self._data = b""

    def read(self, job: FileJob) -> str:
        """The SHA-256 of the file's bytes (kept for ``load``); ``ReadFailed`` says why there are none."""
        self._job, self._data = None, b""
        try:
            data = read_inside(job.root, job.path, self.settings.max_bytes, job.identity,
                               allow_outside=self.settings.follow_symlinks_outside)
        except RefusedFileError as error:
            # The scanned path itself lies in the folder: saying it is gone tells nothing about anything outside.
            reason = str(error) if os.path.lexists(job.path) else "vanished before it could be read"
            raise ReadFailed(reason) from error
        except FileTooLargeError as error:
            raise ReadFailed(str(error)) from error
        self._job, self._data = job, data
        return hashlib.sha256(data).hexdigest()

    def load(self, job: FileJob) -> Loaded:
        """The document in the bytes ``read`` kept for ``job``, OCR applied, pictures cut to preview size."""
        if self._job != job:
            raise ReadFailed("the file was not read before loading")
        data, self._data = self._data, b""
        loader = file_loader(job.path)
        if loader is None:
            raise LoadError(f"unsupported file type '{job.path.suffix or '(none)'}'")
        prepared = self._prepared()
        document = loader.load(job.path, data, self.settings.limits, job.root, prepared)
        del data
        unread = self._read_text_in_images(document, prepared.clock)
        self.settings.limits.check_chars(len(document.text))
        return Loaded(document, pictures_of(document), unread)

    def _prepared(self) -> PreparedAsKept:
        """What reads the text in a document's images (with OCR on) and cuts them down as its loader keeps them."""
        if self.settings.ocr and self._ocr is None:
            self._ocr = RapidOcrEngine()
        return PreparedAsKept(self._ocr, embedded=self.settings.ocr_embedded_images, step=self._ocr_step,
                              clock=OcrTime(self.settings.ocr_seconds))

    @contextmanager
    def _ocr_step(self) -> Iterator[None]:
        """One image's OCR, told to ``on_ocr`` as it begins and as it ends."""
        self.on_ocr(True)
        try:
            yield
        finally:
            self.on_ocr(False)

    def _read_text_in_images(self, document: ExtractedDocument, clock: OcrTime) -> bool:
        """OCR image files and scanned pages into the text (what the loader's reading did not read yet, on the same
        ``clock``); True when OCR is wanted, not installed, and would have read something here. An image file left
        unread says so in a warning, so that ``reread`` reads it again once OCR is installed (a scan already says its
        pages have no text layer)."""
        if self._ocr is not None:
            apply_ocr(document, self._ocr, embedded=self.settings.ocr_embedded_images, step=self._ocr_step,
                      clock=clock)
            return False
        if not self.settings.ocr_wanted:
            return False
        if document.file_type == "image":
            document.warnings.append("the text in this image was not read: OCR is not installed")
            return True
        return any(image.scanned_page for image in document.images)
