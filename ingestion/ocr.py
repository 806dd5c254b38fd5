"""OCR: text read from image files, scanned PDF pages and (optionally) embedded images joins the document text.

The engine is rapidocr-onnxruntime (PP-OCRv4 Chinese+English models shipped inside the package, CPU). Inserted text
follows the PDF loader's conventions: paragraphs and pages are separated by a blank line, and every page span,
image span and later citation still points at the same characters after an insertion.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ingestion.layout import TextBox, page_orientation, reading_order, straightened
from ingestion.loaders.base import Stopwatch, clean_text
from ingestion.pictures import cut_to_preview
from kb import optional
from kb.errors import KbError, ModelNotFoundError
from kb.types import ExtractedDocument, ExtractedImage, Page

_PARAGRAPH = "\n\n"
_NO_TEXT_LAYER = re.compile(r"^(\d+) of (\d+) pages have no text layer \(scanned\?\)$")
FLIPPED_SCORE = 0.9  # rapidocr turns a line it classifies upside down with more confidence (its cls_thresh)


class OcrError(KbError, RuntimeError):
    """OCR of one image failed; the message is the reason, fit for a document warning."""


class OcrEngine(Protocol):
    """Reads the text in an image, in reading order, as clean text ("" when there is none)."""

    def read(self, image: Image.Image) -> str: ...


class RapidOcrEngine:
    """OCR with rapidocr-onnxruntime, built on first use (thread-safe) and run one image at a time (onnxruntime
    already uses every core). Images are downscaled to ``max_side`` pixels on their longest side; pieces read with
    a confidence below ``min_score`` are dropped."""

    def __init__(self, min_score: float = 0.5, max_side: int = 2000) -> None:
        self.min_score = min_score
        self.max_side = max_side
        self._engine: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        rapidocr = optional.require("rapidocr_onnxruntime", "OCR", instead="or set KB_OCR=off", error=ModelNotFoundError)
        logging.getLogger("RapidOCR").setLevel(logging.WARNING)
        try:
            engine = rapidocr.RapidOCR(text_score=0.0)  # every line kept, as the classifier saw them: see read
        except Exception as error:  # a broken install or missing model file inside the package
            raise ModelNotFoundError(f"rapidocr-onnxruntime could not load its models ({error}); reinstall it "
                                     "or set KB_OCR=off") from error
        if callable(getattr(engine, "text_cls", None)):
            engine.text_cls = _LineClassifier(engine.text_cls)
        return engine

    def read(self, image: Image.Image) -> str:
        boxes = self.boxes(image)
        return reading_order(boxes, page_orientation(boxes))

    def boxes(self, image: Image.Image) -> list[TextBox]:
        """The pieces of text rapidocr finds in the image, in no particular order (``read`` orders them)."""
        pixels = self._pixels(image)
        with self._lock:
            if self._engine is None:
                self._engine = self._build()
            classifier = getattr(self._engine, "text_cls", None)
            classifier = classifier if isinstance(classifier, _LineClassifier) else None
            if classifier is not None:
                classifier.upside_down = []
            try:
                result, _ = self._engine(pixels)
            except MemoryError:  # the file is over the memory budget: that is the reason
                raise
            except Exception as error:  # onnxruntime and OpenCV raise many types on odd inputs
                raise OcrError(f"OCR failed: {str(error) or type(error).__name__}") from error
            upside_down = classifier.upside_down if classifier is not None else []
        result = list(result or ())
        if len(upside_down) != len(result):  # the lines and the classifier's verdicts do not pair up
            upside_down = [False] * len(result)
        kept = [(points, text, flipped) for (points, text, score), flipped in zip(result, upside_down)
                if float(score) >= self.min_score]
        return [_text_box(points, text, flipped)
                for points, (_, text, flipped) in zip(straightened([points for points, _, _ in kept]), kept)]

    def _pixels(self, image: Image.Image) -> np.ndarray:
        """The image as the contiguous BGR uint8 array rapidocr expects for numpy input, at most ``max_side``."""
        image = image.convert("RGB")
        if max(image.size) > self.max_side:
            scale = self.max_side / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.LANCZOS)
        return np.ascontiguousarray(np.asarray(image)[:, :, ::-1])


class _LineClassifier:
    """rapidocr's line classifier, noting which lines it found upside down (and turned), in the order of the lines
    rapidocr returns (every line, as none is dropped by score): its result does not say, and a page's orientation
    needs it. What it returns passes through unchanged."""

    def __init__(self, classify: Callable[[Any], Any]) -> None:
        self.classify = classify
        self.threshold = float(getattr(classify, "cls_thresh", FLIPPED_SCORE))
        self.upside_down: list[bool] = []

    def __call__(self, crops: Any) -> Any:
        result = self.classify(crops)
        try:
            self.upside_down = [("180" in str(label) and float(score) > self.threshold) for label, score in result[1]]
        except (TypeError, ValueError, IndexError):  # another rapidocr's shape: the orientation is not told
            self.upside_down = []
        return result


def _text_box(points: Sequence[Sequence[float]], text: str, upside_down: bool) -> TextBox:
    xs, ys = [point[0] for point in points], [point[1] for point in points]
    return TextBox(text=text, left=min(xs), top=min(ys), bottom=max(ys), right=max(xs), upside_down=upside_down)


def ocr_available(mode: str) -> bool:
    """Whether the ``ocr`` setting turns OCR on here: "off" never, "auto" when rapidocr-onnxruntime is installed,
    "on" always, or a ``ModelNotFoundError`` that says how to install it."""
    if mode == "off":
        return False
    if mode not in ("auto", "on"):
        raise ValueError(f"ocr must be auto, on or off, got {mode!r}")
    if mode == "on":
        optional.require_installed(["rapidocr_onnxruntime"], "ocr=on", instead="or set KB_OCR=off",
                                   error=ModelNotFoundError)
    return optional.installed("rapidocr_onnxruntime")  # found without importing it: that costs seconds


def insert_text(document: ExtractedDocument, offset: int, text: str, page: Page | None = None) -> tuple[int, int]:
    """Insert ``text`` into ``document.text`` at ``offset`` as a paragraph of its own, on ``page``, and shift every
    page and image span after it; returns where ``text`` now lies.

    A blank line is added before and after ``text`` where a neighbour needs one. ``page`` (one of
    ``document.pages``) holds the new text: an empty page becomes exactly ``text``, a non-empty one grows; pages
    after it move (an empty one at ``offset`` to the end of ``text``, as the PDF loader places empty pages). Image
    spans keep their text; one that strictly contains ``offset`` grows to hold the insertion. Images on pages after
    ``page`` move with their page; an empty span at ``offset`` whose page now begins after it moves to where its
    page begins (an empty ``page`` now begins with ``text``), so every image stays inside its page.
    """
    before, after = document.text[:offset], document.text[offset:]
    prefix = _PARAGRAPH[: max(0, 2 - _trailing_newlines(before))] if before else ""
    suffix = _PARAGRAPH[: max(0, 2 - _leading_newlines(after))] if after else ""
    inserted = prefix + text + suffix
    length = len(inserted)
    start, end = offset + len(prefix), offset + len(prefix) + len(text)
    document.text = before + inserted + after

    def moved(position: int) -> int:
        return position + length if position > offset else position

    def later(span_start: int, span_end: int) -> tuple[int, int]:
        """A span on a later page: moved past the insertion, or right after ``text`` if empty at ``offset``."""
        return (span_start + length, span_end + length) if span_end > offset else (end, end)

    for other in document.pages:
        if page is None:
            other.start, other.end = moved(other.start), moved(other.end)
        elif other.number > page.number:
            other.start, other.end = later(other.start, other.end)
        elif other is page:
            other.start, other.end = (start, end) if page.start == page.end else (
                min(moved(page.start), start), max(moved(page.end), end))
    homes = {other.number: other for other in document.pages}
    for image in document.images:
        home = homes.get(image.page) if image.page is not None else None
        if image.start == image.end == offset and home is not None and home.start > offset:
            image.start = image.end = home.start
        elif page is not None and image.page is not None and image.page > page.number:
            image.start, image.end = later(image.start, image.end)
        else:  # a span starting at ``offset`` has its text after the insertion, unless it is empty
            starts_after = image.start > offset or image.start == offset < image.end
            image.start, image.end = image.start + length if starts_after else image.start, moved(image.end)
    return start, end


def _trailing_newlines(text: str) -> int:
    return len(text) - len(text.rstrip("\n"))


def _leading_newlines(text: str) -> int:
    return len(text) - len(text.lstrip("\n"))


def _wanted(image: ExtractedImage, embedded: bool, image_file: bool = False) -> bool:
    """Whether OCR reads this image: an image file's own, a scanned page's, or any with ``embedded``."""
    return image_file or image.scanned_page or embedded


OcrStep = Callable[[], AbstractContextManager[object]]  # holds one image's OCR: a step of the file's time budget


class OcrTime:
    """The seconds one file's OCR may take (``ocr_file_seconds``), each image's whole step counted (a scanned page's
    decoding with its reading), and those spent: once they are, the file's other images and scanned pages are left
    unread, so that a scan of thousands of pages (each read within the ``file_timeout`` of its own step) cannot hold
    an ingest for hours. ``passed_over`` counts the scanned pages a loader then did not keep at all."""

    def __init__(self, seconds: float = math.inf) -> None:
        self.seconds = seconds
        self.spent = Stopwatch()
        self.passed_over = 0

    @property
    def left(self) -> bool:
        return self.spent.seconds < self.seconds


def _read(image: ExtractedImage, engine: OcrEngine, step: OcrStep, clock: OcrTime) -> None:
    """The image's text into ``ocr_text``, or why it cannot be read into ``ocr_failure``, read within a ``step``
    and on the file's OCR ``clock``; nothing once that is spent (``apply_ocr`` counts the image as unread)."""
    if not clock.left:
        return
    with step(), clock.spent.running():
        try:
            image.ocr_text = clean_text(engine.read(image.image))
        except OcrError as error:
            image.ocr_failure = str(error)


class PreparedAsKept:
    """Prepares each image a loader keeps as it keeps it (``Loader.load``'s ``on_kept``): the text of one OCR reads
    (with an ``engine``) is read at once, and the picture is then cut to preview size, all a document needs of it
    afterwards. A scan of hundreds of pages is thus read a page at a time, and a document's photographs wait for the
    encoder at preview size, within the document's image allowance, instead of every one waiting at full size; a
    ``text_only`` page keeps no picture once read. ``apply_ocr`` then inserts what was read (with the same
    ``clock``), and reports what could not be read. A scanned page is decoded within the step that reads it
    (``reading``)."""

    def __init__(self, engine: OcrEngine | None, *, embedded: bool = False, step: OcrStep = nullcontext,
                 clock: OcrTime | None = None) -> None:
        self.engine = engine
        self.embedded = embedded
        self.step = step
        self.clock = clock or OcrTime()
        self._in_step = False

    def __call__(self, image: ExtractedImage) -> None:
        if self.engine is not None and _wanted(image, self.embedded):
            _read(image, self.engine, nullcontext if self._in_step else self.step, self.clock)
        if image.text_only:
            image.image = None
        else:
            cut_to_preview(image)

    @property
    def reads_scans(self) -> bool:
        return self.engine is not None and self.clock.left

    def passed_over(self, count: int) -> None:
        if self.engine is not None:  # OCR is on: it would have read them, had its time not been spent
            self.clock.passed_over += count

    @contextmanager
    def reading(self, scanned_page: bool) -> Iterator[bool]:
        """One step for decoding a scanned page and reading it (see ``OnKept.reading``), on the file's OCR clock;
        none once that is spent (the page, if kept, is decoded on the document's image clock, and left unread)."""
        if not self.reads_scans or not scanned_page or self._in_step:
            yield False
            return
        with self.step(), self.clock.spent.running():
            self._in_step = True
            try:
                yield True
            finally:
                self._in_step = False


def apply_ocr(document: ExtractedDocument, engine: OcrEngine, *, embedded: bool = False,
              step: OcrStep = nullcontext, clock: OcrTime | None = None) -> int:
    """Read the text in the document's image file, scanned pages and, with ``embedded``, every other image, and
    insert it into ``document.text`` (see ``insert_text``); each image's span becomes its OCR text. Returns how many
    images were read; an image that cannot be read becomes a warning, and so do those left unread once the file's OCR
    ``clock`` is spent. What was read while loading (``PreparedAsKept``) is not read again; a ``text_only`` page
    leaves the document's images once its text is in. Each image is read within a ``step`` (one of the file's time
    budget)."""
    clock = clock or OcrTime()
    read = filled = unread_images = 0
    unread_pages = clock.passed_over
    for image in list(document.images):
        if not _wanted(image, embedded, document.file_type == "image"):
            continue
        if image.ocr_text is None and image.ocr_failure is None:
            _read(image, engine, step, clock)
        if image.ocr_text is None and image.ocr_failure is None:
            unread_pages += image.scanned_page
            unread_images += not image.scanned_page
            continue
        if image.ocr_failure is not None:
            document.warnings.append(f"{image.name}: {image.ocr_failure}")
            continue
        read += 1
        text, image.ocr_text = image.ocr_text, None  # the document holds it from here on
        if text:
            page = _page(document, image)
            offset = page.end if image.scanned_page and page is not None else image.end
            image.start, image.end = insert_text(document, offset, text, page)
            filled += image.scanned_page
    document.images = [image for image in document.images if not image.text_only]
    if filled:
        _note_scanned_pages(document, filled, unread_pages)
    if unread_pages or unread_images:
        left = " and ".join(f"{count} {what}" for count, what in ((unread_pages, "scanned page(s)"),
                                                                  (unread_images, "image(s)")) if count)
        document.warnings.append(f"{left} left unread: the file's {clock.seconds:g} s of OCR were spent "
                                 "(ocr_file_seconds)")
    return read


def _page(document: ExtractedDocument, image: ExtractedImage) -> Page | None:
    """The page the image lies on: its recorded page number, else the page holding its span's end."""
    number = image.page if image.page is not None else document.page_at(image.end)
    return next((page for page in document.pages if page.number == number), None)


def _note_scanned_pages(document: ExtractedDocument, filled: int, unread: int) -> None:
    """Replace the loader's "no text layer" warning with how many scanned pages OCR filled and how many stay empty
    though read (``unread`` pages were not)."""
    notes = [f"{filled} scanned page(s) read by OCR"]
    for index, warning in enumerate(document.warnings):
        match = _NO_TEXT_LAYER.match(warning)
        if match:
            blank, total = int(match.group(1)) - filled - unread, int(match.group(2))
            if blank > 0:
                notes.append(f"{blank} of {total} pages have no text layer and OCR found no text in them")
            document.warnings[index : index + 1] = notes
            return
    document.warnings.extend(notes)
