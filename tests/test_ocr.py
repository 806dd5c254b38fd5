"""OCR: reading rendered text, reading order, inserting OCR text into documents with every offset kept right."""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pytest
from docx import Document
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from ingestion import reading
from ingestion.layout import TextBox, page_orientation, reading_order, straightened
from ingestion.loaders import base as loader_base
from ingestion.loaders import images as image_module
from ingestion.loaders.base import Limits, clean_text, join_pages
from ingestion.loaders.pdf import PdfLoader
from ingestion.ocr import OcrError, PreparedAsKept, RapidOcrEngine, apply_ocr, insert_text, ocr_available
from ingestion.reading import FileJob, FileReader, Loaded, ReadSettings
from kb.errors import ModelNotFoundError
from kb.types import ExtractedDocument, ExtractedImage
from tests.documents import long_scan_pdf, striped_scan_pdf
from tests.rendering import LATIN_FONT, cjk_font, render_lines

needs_font = pytest.mark.skipif(not LATIN_FONT.is_file(), reason=f"no test font at {LATIN_FONT}")


@pytest.fixture(scope="module")
def engine() -> RapidOcrEngine:
    pytest.importorskip("rapidocr_onnxruntime", reason="OCR tests need rapidocr-onnxruntime (the ocr extra)")
    return RapidOcrEngine()


def _words(text: str) -> set[str]:
    return set(text.upper().split())


def _image(picture: Image.Image | None = None, *, page: int | None = None, start: int = 0, end: int = 0,
           scanned: bool = False, name: str = "image") -> ExtractedImage:
    picture = picture or Image.new("RGB", (64, 64), "white")
    return ExtractedImage(image=picture, sha256="0" * 64, name=name, width=picture.width, height=picture.height,
                          page=page, start=start, end=end, scanned_page=scanned)


class FixedEngine:
    """Reads the same text from every image (or the image's ``info["text"]``), or fails on the images named in
    ``fail``."""

    def __init__(self, text: str, fail: frozenset[str] = frozenset()) -> None:
        self.text, self.fail, self.seen = text, fail, []

    def read(self, image: Image.Image) -> str:
        self.seen.append(image)
        if any(getattr(image, "info", {}).get("name") == name for name in self.fail):
            raise OcrError("OCR failed: broken image")
        return getattr(image, "info", {}).get("text", self.text)


@needs_font
def test_reads_a_photographed_sign(engine: RapidOcrEngine) -> None:
    text = engine.read(render_lines(["LOADING DOCK 7", "FORKLIFTS ONLY"]))
    assert {"LOADING", "DOCK", "7", "FORKLIFTS", "ONLY"} <= _words(text)


@needs_font
def test_lines_come_top_to_bottom_and_words_left_to_right(engine: RapidOcrEngine) -> None:
    # Wide gaps make separate boxes on one line; the lower line is drawn first so drawing order cannot help.
    image = Image.new("RGB", (1200, 600), "white")
    from PIL import ImageDraw, ImageFont

    draw, face = ImageDraw.Draw(image), ImageFont.truetype(str(LATIN_FONT), 64)
    draw.text((60, 380), "SECOND", font=face, fill="black")
    draw.text((700, 390), "LINE", font=face, fill="black")
    draw.text((700, 120), "FIRST", font=face, fill="black")
    draw.text((60, 110), "TOP", font=face, fill="black")
    lines = engine.read(image).upper().split("\n")
    assert lines == ["TOP FIRST", "SECOND LINE"]


@pytest.mark.skipif(cjk_font() is None, reason="no font with Chinese glyphs (set TEST_CJK_FONT, or pip install "
                    "rinoh-typeface-notosanscjk)")
def test_reads_chinese_without_spaces_between_characters(engine: RapidOcrEngine) -> None:
    font = cjk_font()
    assert font is not None
    text = engine.read(render_lines(["七号装卸区", "仅限叉车通行"], font=font))
    assert "装卸" in text and "叉车" in text
    assert " " not in text


@needs_font
def test_a_page_in_two_columns_reads_a_column_at_a_time(engine: RapidOcrEngine) -> None:
    # A newsletter's layout: a title across the page, two columns of prose, a closing line across the page.
    from PIL import ImageDraw, ImageFont

    left = ["Returns are accepted for thirty", "days after delivery, for a full", "refund to the card that paid",
            "for the order, in every case."]
    right = ["Exchanges are free of charge at", "any branch of the company shop", "on showing the receipt of the",
             "purchase, within the same days."]
    image = Image.new("RGB", (1500, 900), "white")
    draw, face = ImageDraw.Draw(image), ImageFont.truetype(str(LATIN_FONT), 40)
    draw.text((60, 60), "Customer service policy", font=face, fill="black")
    for row, (first, second) in enumerate(zip(left, right)):
        draw.text((60, 200 + 60 * row), first, font=face, fill="black")
        draw.text((780, 200 + 60 * row), second, font=face, fill="black")
    draw.text((60, 640), "Questions go to the front desk of every branch, all week long.", font=face, fill="black")
    assert engine.read(image).split("\n") == ["Customer service policy", *left, *right,
                                              "Questions go to the front desk of every branch, all week long."]


def _box(text: str, left: float, top: float) -> TextBox:
    """A box of ``text`` 20 px high, 10 px a character wide."""
    return TextBox(text, left, top, top + 20, left + 10 * len(text))


def test_columns_are_runs_of_lines_beside_a_gutter_and_a_table_still_reads_by_rows() -> None:
    title = _box("A title across the page, both columns wide", 0, 0)
    left = [_box(f"left column line number {n}", 0, 40 + 24 * n) for n in range(4)]
    right = [_box(f"right column line number {n}", 300, 40 + 24 * n) for n in range(3)]
    heading = _box("Next section", 0, 160)  # after a section's space, under the left column: not part of it
    footer = _box("A closing line as wide as the page itself, below", 0, 190)
    page = [title, *left, *right, heading, footer]
    assert reading_order(page).split("\n") == [title.text, *(box.text for box in left), *(box.text for box in right),
                                               heading.text, footer.text]
    # Short cells beside each other are a table: its rows stay rows.
    rows = [("Name", "Age", "Town"), ("Alice", "30", "Lyon"), ("Bob", "41", "Metz"), ("Chen", "28", "Nice")]
    table = [_box(cell, 100 * column, 24 * row) for row, cells in enumerate(rows) for column, cell in enumerate(cells)]
    assert reading_order(table).split("\n") == ["Name Age Town", "Alice 30 Lyon", "Bob 41 Metz", "Chen 28 Nice"]
    # Wide cells whose rows lie further apart than a column's lines (a troubleshooting table, a form) are rows.
    symptoms = [_box(f"symptom {n}: the printer shows a jam", 0, 60 * n) for n in range(4)]
    remedies = [_box(f"remedy {n}: open the rear tray and pull", 400, 60 * n) for n in range(4)]
    paired = [f"{symptom.text} {remedy.text}" for symptom, remedy in zip(symptoms, remedies)]
    assert reading_order([*symptoms, *remedies]).split("\n") == paired
    # Columns directly under such a table are still columns (the table's rows once decided the whole run).
    below = [_box(f"{side} column of prose, line {n}", 0 if side == "left" else 400, 300 + 24 * n)
             for side in ("left", "right") for n in range(5)]
    assert reading_order([*symptoms, *remedies, *below]).split("\n") == [*paired, *(box.text for box in below)]
    # Two columns side by side on fewer than three lines are not columns.
    assert reading_order([*left[:2], *right[:2]]).split("\n") == [
        f"{left[0].text} {right[0].text}", f"{left[1].text} {right[1].text}"]


def test_a_page_scanned_askew_is_straightened_before_its_lines_are_found() -> None:
    # Two columns turned 2.5 degrees: their lines slope into the next one and across the gutter.
    left = [_box(f"left column line number {n}", 0, 40 + 24 * n) for n in range(6)]
    right = [_box(f"right column line number {n}", 300, 40 + 24 * n) for n in range(6)]
    cos, sin = math.cos(math.radians(2.5)), math.sin(math.radians(2.5))

    def turned(box: TextBox) -> list[tuple[float, float]]:
        corners = [(box.left, box.top), (box.right, box.top), (box.right, box.bottom), (box.left, box.bottom)]
        return [(x * cos - y * sin, x * sin + y * cos) for x, y in corners]

    quads = [turned(box) for box in [*left, *right]]
    askew = [TextBox(box.text, min(x for x, _ in quad), min(y for _, y in quad), max(y for _, y in quad),
                     max(x for x, _ in quad)) for box, quad in zip([*left, *right], quads)]
    level = [TextBox(box.text, min(x for x, _ in quad), min(y for _, y in quad), max(y for _, y in quad),
                     max(x for x, _ in quad)) for box, quad in zip([*left, *right], straightened(quads))]
    expected = [box.text for box in [*left, *right]]
    assert reading_order(askew).split("\n") != expected
    assert reading_order(level).split("\n") == expected
    assert straightened([[(0, 0), (100, 0), (100, 20), (0, 20)]]) == [[(0, 0), (100, 0), (100, 20), (0, 20)]]


PAGE = [TextBox("world", 300, 12, 52, 420), TextBox("line", 200, 100, 140, 280), TextBox("hello", 10, 10, 50, 180),
        TextBox("second", 10, 104, 142, 190), TextBox("你好", 10, 200, 240, 90), TextBox("世界", 120, 202, 238, 200),
        TextBox("ok", 220, 199, 241, 260)]


@pytest.mark.skipif(cjk_font() is None, reason="no font with Chinese glyphs (set TEST_CJK_FONT, or pip install "
                    "rinoh-typeface-notosanscjk)")
def test_chinese_written_in_columns_reads_column_by_column_right_to_left(engine: RapidOcrEngine) -> None:
    from PIL import ImageDraw, ImageFont

    columns = ["七号装卸区", "仅限叉车通行", "请勿停车"]
    image = Image.new("RGB", (700, 900), "white")
    draw, face = ImageDraw.Draw(image), ImageFont.truetype(str(cjk_font()), 80)
    for number, column in enumerate(columns):  # the first column on the right
        for place, character in enumerate(column):
            draw.text((560 - number * 200, 60 + place * 100), character, font=face, fill="black")
    assert engine.read(image).split("\n") == columns  # was one line, the last column first


def test_reading_order_groups_boxes_into_lines_by_vertical_overlap() -> None:
    assert reading_order(PAGE) == "hello world\nsecond line\n你好世界 ok"
    assert page_orientation(PAGE) == 0
    assert page_orientation([replace(box, upside_down=True) for box in PAGE]) == 180
    digits = [TextBox(str(n), 40 * n, 300, 340, 40 * n + 12) for n in range(1, 10)]  # a form's lone digits: tall
    assert page_orientation([*digits, PAGE[0]]) == 0


def test_a_chart_s_turned_labels_do_not_turn_the_page() -> None:
    """Category names written up the page under a chart's bars are tall, and rapidocr reads them upside down once
    it has turned them: neither the page nor its upright title is turned for them, unless they are nearly all
    its text."""
    labels = [TextBox(name, 100 + 200 * n, 700, 1000, 140 + 200 * n, upside_down=True)
              for n, name in enumerate(["North America", "South America", "Western Europe", "Eastern Europe"])]
    title = TextBox("Sales by region 2023", 400, 30, 80, 900)
    ticks = [TextBox(str(100 * n), 40, 600 - 120 * n, 640 - 120 * n, 110) for n in range(1, 5)]
    assert page_orientation([title, *ticks, *labels]) == 0
    assert page_orientation(labels) == 90  # nearly all its text: a page turned sideways


def _scanned(box: TextBox, degrees: int, width: float = 500, height: float = 300) -> TextBox:
    """Where ``box`` of an upright page lies once the page is turned ``degrees`` counter-clockwise (as PIL's
    ``rotate(degrees, expand=True)`` turns it), worked out from its corners."""
    corners = [(box.left, box.top), (box.right, box.bottom)]
    if degrees == 90:
        corners = [(y, width - x) for x, y in corners]
    elif degrees == 180:
        corners = [(width - x, height - y) for x, y in corners]
    elif degrees == 270:
        corners = [(height - y, x) for x, y in corners]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    return replace(box, left=min(xs), top=min(ys), bottom=max(ys), right=max(xs))


@pytest.mark.parametrize("degrees, flipped", [(90, True), (180, True), (270, False)])
def test_a_page_scanned_sideways_or_upside_down_reads_in_its_own_order(degrees: int, flipped: bool) -> None:
    """Lines run up or down a sideways page (each read by rapidocr turning it; the line classifier says which way
    by finding the turned lines upside down or not) or right to left on an upside-down one: the boxes are put back
    upright before lines are formed."""
    scanned = [replace(_scanned(box, degrees), upside_down=flipped) for box in PAGE]
    assert page_orientation(scanned) == degrees
    assert reading_order(scanned, degrees) == reading_order(PAGE)
    assert reading_order(scanned) != reading_order(PAGE)  # as it was read before


@needs_font
@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_a_scan_turned_any_quarter_reads_top_to_bottom(engine: RapidOcrEngine, degrees: int) -> None:
    lines = ["Quarterly report of the harbour", "Shipments rose in March", "The crane was repaired",
             "Invoices are due in May"]
    text = engine.read(render_lines(lines, size=(1300, 700)).rotate(degrees, expand=True))
    assert [line.split()[0] for line in text.split("\n")] == ["Quarterly", "Shipments", "The", "Invoices"]


def test_engine_gets_bgr_pixels_at_most_max_side_and_errors_become_ocr_errors() -> None:
    seen: list[np.ndarray] = []

    def fake(pixels: np.ndarray) -> tuple[list, list]:
        seen.append(pixels)
        boxes = [[[0, 0], [10, 0], [10, 10], [0, 10]], [[0, 20], [9, 20], [9, 30], [0, 30]]]
        return [[boxes[0], "RED", 0.9], [boxes[1], "x", 0.1]], []

    ocr = RapidOcrEngine(max_side=2000)
    ocr._engine = fake
    assert ocr.read(Image.new("RGB", (5000, 1000), (255, 0, 0))) == "RED"  # the 0.1-confidence piece is dropped
    assert seen[0].shape == (400, 2000, 3) and seen[0].flags.c_contiguous
    assert seen[0][0, 0].tolist() == [0, 0, 255]

    def broken(pixels: np.ndarray) -> None:
        raise ValueError("bad input")

    ocr._engine = broken
    with pytest.raises(OcrError, match="bad input"):
        ocr.read(Image.new("L", (50, 50)))


def test_ocr_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ocr_available("off") is False
    with pytest.raises(ValueError):
        ocr_available("sometimes")
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # makes the import fail
    assert ocr_available("auto") is False
    with pytest.raises(ModelNotFoundError, match=r"multimodal-kb\[ocr\].*KB_OCR=off"):
        ocr_available("on")
    monkeypatch.undo()
    pytest.importorskip("rapidocr_onnxruntime")
    assert ocr_available("auto") is True and ocr_available("on") is True


@needs_font
def test_image_file_text_becomes_the_document_text(engine: RapidOcrEngine) -> None:
    document = ExtractedDocument(text="", file_type="image",
                                 images=[_image(render_lines(["EMERGENCY EXIT", "KEEP CLEAR"]))])
    assert apply_ocr(document, engine) == 1
    image = document.images[0]
    # The PP-OCRv4 (Chinese+English) recogniser sometimes drops the space between English words ("KEEPCLEAR").
    squashed = "".join(document.text.upper().split())
    assert "EMERGENCYEXIT" in squashed and "KEEPCLEAR" in squashed
    assert (image.start, image.end) == (0, len(document.text))


def _three_pages(scanned: Image.Image) -> ExtractedDocument:
    """A PDF-like document whose middle page has no text layer, with an image on every page."""
    text, pages = join_pages(["Page one. See the figure.", "", "Page three has a chart."])
    images = [_image(page=1, start=10, end=25, name="page 1 image 1"),
              _image(scanned, page=2, start=pages[1].start, end=pages[1].end, scanned=True, name="page 2"),
              _image(page=3, start=pages[2].start + 11, end=pages[2].end, name="page 3 image 1")]
    return ExtractedDocument(text=text, file_type="pdf", pages=pages, images=images,
                             warnings=["1 of 3 pages have no text layer (scanned?)"])


@needs_font
def test_scanned_page_is_filled_and_every_offset_shifts(engine: RapidOcrEngine) -> None:
    document = _three_pages(render_lines(["LOADING DOCK 7", "FORKLIFTS ONLY"]))
    quotes = [document.text[image.start : image.end] for image in document.images]
    assert apply_ocr(document, engine) == 1  # only the scanned page is read by default
    text, (one, two, three) = document.text, document.pages
    assert text[one.start : one.end] == "Page one. See the figure."
    assert {"LOADING", "DOCK", "FORKLIFTS", "ONLY"} <= _words(text[two.start : two.end])
    assert text[three.start : three.end] == "Page three has a chart."
    assert (text[one.end : two.start], text[two.end : three.start]) == ("\n\n", "\n\n")
    first, scanned, last = document.images
    assert (scanned.start, scanned.end) == (two.start, two.end)
    assert [text[first.start : first.end], text[last.start : last.end]] == [quotes[0], quotes[2]]
    assert document.page_at(scanned.start) == 2 and document.page_at(last.start) == 3
    assert document.warnings == ["1 scanned page(s) read by OCR"]


@needs_font
def test_a_scan_cut_in_strips_is_drawn_whole_and_read(engine: RapidOcrEngine, tmp_path: Path) -> None:
    # Each strip is under min_image_side, so the page had no picture and stayed empty; pdfium draws it whole.
    pytest.importorskip("pypdfium2", reason="drawing pages needs pypdfium2 (the ocr extra)")
    path = tmp_path / "striped.pdf"
    path.write_bytes(striped_scan_pdf(render_lines(["LOADING DOCK 7", "FORKLIFTS ONLY"])))
    document = PdfLoader().load(path, path.read_bytes(), Limits(), tmp_path)
    [page] = document.images
    assert (page.name, page.page, page.scanned_page, max(page.width, page.height)) == ("page 1", 1, True, 2048)
    assert apply_ocr(document, engine) == 1
    assert {"LOADING", "DOCK", "FORKLIFTS", "ONLY"} <= _words(document.text)


class SizeEngine:
    """Reads "Page N" in the Nth picture it is given, and notes each picture's size."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def read(self, image: Image.Image) -> str:
        self.sizes.append(image.size)
        return f"Page {len(self.sizes)}"


def _load(path: Path, settings: ReadSettings, on_ocr: Callable[[bool], None] = lambda reading: None) -> Loaded:
    """``path`` read and loaded as an ingest's worker does (OCR by whatever engine the test put in place)."""
    reader = FileReader(settings, on_ocr=on_ocr)
    job = FileJob(path.parent, path, (path.stat().st_dev, path.stat().st_ino))
    reader.read(job)
    return reader.load(job)


def test_a_long_scan_is_read_whole_a_page_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 40 pages of 3.3 MP are over the 100 MP a document's images may hold: each page is read as it is kept, and
    # then only its preview is held. Before, 31 pages were read and the other 9 were skipped, unread.
    engine, steps = SizeEngine(), []
    monkeypatch.setattr(reading, "RapidOcrEngine", lambda: engine)
    path = tmp_path / "contract.pdf"
    path.write_bytes(long_scan_pdf(40))
    loaded = _load(path, ReadSettings(limits=Limits(), max_bytes=2**30, ocr=True), steps.append)
    document = loaded.document
    assert engine.sizes == [(1600, 2048)] * 40  # each page read at full size
    assert steps == [True, False] * 40  # each in a step of the file's time budget of its own
    assert [document.text[page.start : page.end] for page in document.pages] == [f"Page {n}" for n in range(1, 41)]
    assert document.warnings == ["40 scanned page(s) read by OCR"]
    assert [picture.image.page for picture in loaded.pictures] == list(range(1, 41))
    # Straight out of the loader, every page is already cut to preview size, its text read.
    kept = PdfLoader().load(path, path.read_bytes(), Limits(), tmp_path, PreparedAsKept(SizeEngine())).images
    assert [(image.image.size, image.ocr_text) for image in kept] == [((256, 328), f"Page {n}") for n in range(1, 41)]


@pytest.mark.parametrize("drawn", [False, True])
def test_a_scan_longer_than_the_pictures_a_document_keeps_is_read_to_its_last_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drawn: bool) -> None:
    # Pages past the document's 200 pictures (3 here) were not read: a scanned book lost its text from page 201 on.
    # They are read for their text only, their pictures dropped once read; drawn by pdfium too (a scan in strips).
    if drawn:
        pytest.importorskip("pypdfium2", reason="drawing pages needs pypdfium2 (the ocr extra)")
    engine = SizeEngine()
    monkeypatch.setattr(reading, "RapidOcrEngine", lambda: engine)
    path = tmp_path / "book.pdf"
    path.write_bytes(striped_scan_pdf(*[_lettered(page) for page in range(6)]) if drawn
                     else long_scan_pdf(6, size=(400, 500)))
    loaded = _load(path, ReadSettings(limits=Limits(max_images=3), max_bytes=2**30, ocr=True))
    document = loaded.document
    assert [document.text[page.start : page.end] for page in document.pages] == [f"Page {n}" for n in range(1, 7)]
    assert [picture.image.page for picture in loaded.pictures] == [1, 2, 3]
    assert [image.page for image in document.images] == [1, 2, 3]
    assert document.warnings[0] == "6 scanned page(s) read by OCR"  # (and, drawn, the strips skipped as decoration)
    assert document.warnings[-1] == ("3 scanned page(s) beyond the first 3 images kept for their text only, without "
                                     "their pictures (at most 3 images per document, repeats included)")


def test_without_ocr_a_scan_keeps_no_page_past_the_pictures_a_document_keeps(tmp_path: Path) -> None:
    path = tmp_path / "book.pdf"
    path.write_bytes(long_scan_pdf(6, size=(400, 500)))
    loaded = _load(path, ReadSettings(limits=Limits(max_images=3), max_bytes=2**30, ocr_wanted=True))
    assert [picture.image.page for picture in loaded.pictures] == [1, 2, 3]
    assert "3 image(s) beyond the first 3 skipped (at most 3 images per document, repeats included)" in (
        loaded.document.warnings)


def _lettered(number: int) -> Image.Image:
    picture = Image.new("L", (200, 260), "white")
    ImageDraw.Draw(picture).text((40, 60), f"Page {number}", fill="black")
    return picture


class TickingEngine(SizeEngine):
    """``SizeEngine`` on a clock of its own, which each page it reads moves on by 10 s."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def read(self, image: Image.Image) -> str:
        self.now += 10
        return super().read(image)


@pytest.mark.parametrize("max_images", [2, 200])
def test_a_file_s_ocr_stops_when_its_time_is_spent_and_says_what_is_left_unread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_images: int) -> None:
    # Each page is read within a step of its own, so a scan of thousands of pages could hold an ingest for hours.
    engine = TickingEngine()
    monkeypatch.setattr(reading, "RapidOcrEngine", lambda: engine)
    monkeypatch.setattr(loader_base, "time", engine)
    path = tmp_path / "book.pdf"
    path.write_bytes(long_scan_pdf(6, size=(400, 500)))
    limits = Limits(max_images=max_images)
    loaded = _load(path, ReadSettings(limits=limits, max_bytes=2**30, ocr=True, ocr_seconds=25))
    document = loaded.document
    assert len(engine.sizes) == 3  # 10 s, 20 s, 30 s: over the 25 s, nothing more is read
    assert [document.text[page.start : page.end] for page in document.pages] == ["Page 1", "Page 2", "Page 3"] + [
        ""] * 3
    beyond = ["3 image(s) beyond the first 2 skipped (at most 2 images per document, repeats included)",
              "1 scanned page(s) beyond the first 2 images kept for their text only, without their pictures (at "
              "most 2 images per document, repeats included)"]
    # With 2 pictures kept, page 3 is read for its text only; with 200, pages 4 to 6 are kept as pictures, unread.
    assert [picture.image.page for picture in loaded.pictures] == ([1, 2] if max_images == 2 else list(range(1, 7)))
    assert document.warnings == ["3 scanned page(s) read by OCR", *(beyond if max_images == 2 else []),
                                 "3 scanned page(s) left unread: the file's 25 s of OCR were spent "
                                 "(ocr_file_seconds)"]


def test_a_scanned_page_s_decoding_counts_on_the_file_s_ocr_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the reading counted: thousands of pages past the pictures kept, decoded in their steps, were on no clock.
    engine = TickingEngine()
    monkeypatch.setattr(reading, "RapidOcrEngine", lambda: engine)
    monkeypatch.setattr(loader_base, "time", engine)
    original = image_module.small_rgb

    def decoded_in_5_s(*args: object) -> Image.Image:
        engine.now += 5
        return original(*args)

    monkeypatch.setattr(image_module, "small_rgb", decoded_in_5_s)
    path = tmp_path / "book.pdf"
    path.write_bytes(long_scan_pdf(3, size=(400, 500)))
    settings = ReadSettings(limits=Limits(max_images=1), max_bytes=2**30, ocr=True, ocr_seconds=25)
    document = _load(path, settings).document
    assert len(engine.sizes) == 2  # 15 s, then 30 s: page 3 is not decoded, nor read
    assert [document.text[page.start : page.end] for page in document.pages] == ["Page 1", "Page 2", ""]
    assert document.warnings[-1] == ("1 scanned page(s) left unread: the file's 25 s of OCR were spent "
                                     "(ocr_file_seconds)")


def test_a_scanned_attachment_read_past_the_pictures_kept_leaves_the_next_attachment_its_allowance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The pages read for their text only hold no picture: counting them, the next attachment failed on it.
    monkeypatch.setattr(reading, "RapidOcrEngine", SizeEngine)
    message = EmailMessage()
    message["Subject"] = "Scanned contract"
    message.set_content("The contract is attached.")
    message.add_attachment(long_scan_pdf(4, size=(400, 500)), maintype="application", subtype="pdf",
                           filename="contract.pdf")
    message.add_attachment(b"Countersigned on 3 May.", maintype="text", subtype="plain", filename="notes.txt")
    path = tmp_path / "mail.eml"
    path.write_bytes(bytes(message))
    loaded = _load(path, ReadSettings(limits=Limits(max_images=2), max_bytes=2**30, ocr=True))
    assert all(f"Page {n}" in loaded.document.text for n in range(1, 5))
    assert "Countersigned on 3 May." in loaded.document.text
    assert [picture.image.name for picture in loaded.pictures] == ["page 1 image 1", "page 2 image 1"]


def test_an_ingest_holds_a_file_s_ocr_to_its_seconds_and_finds_the_pages_read(
        kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = TickingEngine()
    monkeypatch.setattr(reading, "RapidOcrEngine", lambda: engine)
    monkeypatch.setattr(loader_base, "time", engine)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "book.pdf").write_bytes(long_scan_pdf(4, size=(400, 500)))
    kb = kb_factory(file_isolation=False, ocr="on", ocr_file_seconds=15, clip_model="none")  # patched in-process
    report = kb.ingest(folder)
    [path] = report.added
    assert len(engine.sizes) == 2
    assert report.warnings[path][-1] == ("2 scanned page(s) left unread: the file's 15 s of OCR were spent "
                                         "(ocr_file_seconds)")
    assert sorted((hit.page, hit.text) for hit in kb.search("page", mode="keyword")) == [(1, "Page 1"), (2, "Page 2")]


@needs_font
def test_an_image_read_before_ocr_was_installed_is_read_again_by_reread(
        kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An image file read without OCR was stored as empty with no warning, so not "read in part", and --reread, which
    # the docs offer for exactly this, passed it over once OCR was installed.
    folder = tmp_path / "docs"
    folder.mkdir()
    render_lines(["LOADING DOCK 7"]).save(folder / "sign.png")
    kb = kb_factory(clip_model="none")
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # not installed
    report = kb.ingest(folder)
    [path] = report.added
    assert report.warnings == {path: ["the text in this image was not read: OCR is not installed"]}
    assert any(notice.startswith("OCR is not installed, so the text in 1 image file(s)") for notice in report.notices)
    monkeypatch.undo()  # installed now
    assert kb.ingest(folder).unchanged == [path]
    report = kb.ingest(folder, reread=True)
    assert report.updated == [path] and not report.warnings and not report.notices
    assert [hit.path for hit in kb.search("loading dock", mode="keyword")] == [path]


@pytest.mark.parametrize("ocr, pages", [(True, 5), (False, 1)])
def test_a_scanned_page_is_decoded_in_the_step_that_reads_it_off_the_image_clock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ocr: bool, pages: int) -> None:
    # A scan at 300 dpi takes about 0.2 s a page to decode: counted on the document's 20 s of decoding images, it
    # stopped a long scan at about page 95, the rest unread. Here each page takes 0.3 s against a clock of 0.2 s.
    engine, steps = SizeEngine(), []
    monkeypatch.setattr(reading, "RapidOcrEngine", lambda: engine)
    monkeypatch.setattr("ingestion.loaders.images.IMAGE_SECONDS", 0.2)
    original = image_module.small_rgb
    monkeypatch.setattr(image_module, "small_rgb", lambda *args: time.sleep(0.3) or original(*args))
    path = tmp_path / "contract.pdf"
    path.write_bytes(long_scan_pdf(5))
    loaded = _load(path, ReadSettings(limits=Limits(), max_bytes=2**30, ocr=ocr), steps.append)
    assert [picture.image.page for picture in loaded.pictures] == list(range(1, pages + 1))
    assert steps == [True, False] * (5 if ocr else 0)  # decoding and reading each page: one step
    if not ocr:
        assert "4 image(s) beyond the first 1 skipped (at most 0.2 s of decoding images per document)" in (
            loaded.document.warnings)


def test_without_ocr_a_long_scan_keeps_every_page_picture_at_preview_size(tmp_path: Path) -> None:
    # Each picture is cut to preview size as it is kept, so the 100 MP allowance no longer stops at page 31.
    path = tmp_path / "contract.pdf"
    path.write_bytes(long_scan_pdf(40))
    loaded = _load(path, ReadSettings(limits=Limits(), max_bytes=2**30, ocr_wanted=True))
    assert loaded.unread_images and loaded.document.warnings == ["40 of 40 pages have no text layer (scanned?)"]
    assert [(picture.image.page, picture.image.image.size) for picture in loaded.pictures] == [
        (page, (256, 328)) for page in range(1, 41)]


def test_a_page_ocr_fails_on_while_loading_is_not_read_again_and_its_reason_is_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FailingOnPage2(SizeEngine):
        def read(self, image: Image.Image) -> str:
            text = super().read(image)
            if len(self.sizes) == 2:
                raise OcrError("OCR failed: broken image")
            return text

    engine = FailingOnPage2()
    monkeypatch.setattr(reading, "RapidOcrEngine", lambda: engine)
    path = tmp_path / "scan.pdf"
    path.write_bytes(long_scan_pdf(3, size=(400, 500)))
    document = _load(path, ReadSettings(limits=Limits(), max_bytes=2**30, ocr=True)).document
    assert engine.sizes == [(400, 500)] * 3  # each page read once: a failure costs one step, not two
    assert [document.text[page.start : page.end] for page in document.pages] == ["Page 1", "", "Page 3"]
    assert document.warnings == ["2 scanned page(s) read by OCR",
                                 "1 of 3 pages have no text layer and OCR found no text in them",
                                 "page 2 image 1: OCR failed: broken image"]


def test_ocr_of_a_docx_s_pictures_while_loading_lands_after_their_paragraphs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = SizeEngine()
    monkeypatch.setattr(reading, "RapidOcrEngine", lambda: engine)
    document = Document()
    for words, colour in (("The first chart.", "red"), ("The second chart.", "blue")):
        document.add_paragraph(words)
        picture = io.BytesIO()
        Image.new("RGB", (1200, 800), colour).save(picture, "PNG")
        document.add_picture(picture)
    document.add_paragraph("The end.")
    path = tmp_path / "charts.docx"
    document.save(str(path))
    settings = ReadSettings(limits=Limits(), max_bytes=2**30, ocr=True, ocr_embedded_images=True)
    loaded = _load(path, settings).document
    assert loaded.text == "The first chart.\n\nPage 1\n\nThe second chart.\n\nPage 2\n\nThe end."
    assert [loaded.text[image.start : image.end] for image in loaded.images] == ["Page 1", "Page 2"]
    assert engine.sizes == [(1200, 800)] * 2  # read at full size, then cut to preview size
    assert [image.image.size for image in loaded.images] == [(384, 256)] * 2


def test_embedded_images_become_paragraphs_after_their_caption() -> None:
    document = _three_pages(Image.new("RGB", (64, 64), "white"))
    assert apply_ocr(document, FixedEngine("Sales 2024"), embedded=True) == 3
    text = document.text
    assert text == ("Page one. See the figure.\n\nSales 2024\n\nSales 2024\n\n"
                    "Page three has a chart.\n\nSales 2024")
    assert [text[page.start : page.end] for page in document.pages] == [
        "Page one. See the figure.\n\nSales 2024", "Sales 2024", "Page three has a chart.\n\nSales 2024"]
    assert all(text[image.start : image.end] == "Sales 2024" for image in document.images)


def test_failures_become_warnings_and_empty_pages_stay_reported() -> None:
    document = _three_pages(Image.new("RGB", (64, 64), "white"))
    document.images[1].image.info["name"] = "bad"
    before = document.model_copy(deep=True)
    assert apply_ocr(document, FixedEngine("x", fail=frozenset({"bad"}))) == 0
    assert (document.text, document.pages) == (before.text, before.pages)
    assert document.warnings == ["1 of 3 pages have no text layer (scanned?)", "page 2: OCR failed: broken image"]
    assert apply_ocr(before, FixedEngine("")) == 1  # read, but nothing found: the page stays empty
    assert before.text == document.text and before.warnings == ["1 of 3 pages have no text layer (scanned?)"]


@pytest.mark.parametrize("found", [("", "Invoice 42"), ("Invoice 42", "")])
def test_a_scanned_page_holds_all_its_images_when_ocr_reads_text_in_only_one(found: tuple[str, str]) -> None:
    text, pages = join_pages(["Cover page.", "", "Last page."])
    images = [_image(page=2, start=pages[1].start, end=pages[1].end, scanned=True, name=f"scan {n}") for n in (1, 2)]
    for image, words in zip(images, found, strict=True):
        image.image.info["text"] = words
    document = ExtractedDocument(text=text, file_type="pdf", pages=pages, images=images)
    assert apply_ocr(document, FixedEngine("")) == 2
    text, page = document.text, document.pages[1]
    assert text == "Cover page.\n\nInvoice 42\n\nLast page." and text[page.start : page.end] == "Invoice 42"
    assert [text[image.start : image.end] for image in images] == list(found)
    assert all(_on_its_page(document, image) for image in images)


page_texts = st.lists(st.text(alphabet="ab .\n汉", max_size=10).map(clean_text), min_size=1, max_size=5)
ocr_texts = st.text(alphabet="XY 字\n", min_size=1, max_size=8).map(clean_text).filter(bool)


@st.composite
def documents(draw: st.DrawFn) -> tuple[list[str], ExtractedDocument]:
    """Pages joined the PDF loader's way, with images whose spans lie inside their pages (some empty)."""
    texts = draw(page_texts)
    text, pages = join_pages(texts)
    images = []
    for _ in range(draw(st.integers(0, 4))):
        page = draw(st.sampled_from(pages))
        start = draw(st.integers(page.start, page.end))
        images.append(_image(page=page.number, start=start, end=draw(st.integers(start, page.end))))
    return texts, ExtractedDocument(text=text, file_type="pdf", pages=pages, images=images)


@settings(max_examples=300, deadline=None)
@given(documents(), st.data(), ocr_texts)
def test_filling_a_page_is_what_the_loader_would_have_joined(
    drawn: tuple[list[str], ExtractedDocument], data: st.DataObject, ocr: str
) -> None:
    texts, document = drawn
    index = data.draw(st.integers(0, len(texts) - 1))
    page = document.pages[index]
    quotes = [document.text[image.start : image.end] for image in document.images]
    start, end = insert_text(document, page.end, ocr, page)
    texts[index] = f"{texts[index]}\n\n{ocr}" if texts[index] else ocr
    assert (document.text, document.pages) == join_pages(texts)
    assert document.text[start:end] == ocr
    assert [document.text[image.start : image.end] for image in document.images] == quotes
    assert all(_on_its_page(document, image) for image in document.images)


@settings(max_examples=300, deadline=None)
@given(documents(), st.data(), ocr_texts)
def test_inserting_anywhere_in_a_page_keeps_every_other_span(
    drawn: tuple[list[str], ExtractedDocument], data: st.DataObject, ocr: str
) -> None:
    _, document = drawn
    old_text = document.text
    page = data.draw(st.sampled_from(document.pages))
    offset = data.draw(st.integers(page.start, page.end))
    old_pages = [old_text[other.start : other.end] for other in document.pages]
    old_spans = [(image.start, image.end, old_text[image.start : image.end]) for image in document.images]

    start, end = insert_text(document, offset, ocr, page)
    text, grown = document.text, len(document.text) - len(old_text)
    assert text[:offset] == old_text[:offset] and text[offset + grown :] == old_text[offset:]
    assert text[start:end] == ocr and offset <= start and end <= offset + grown
    assert start == 0 or text[:start].endswith("\n\n")
    assert end == len(text) or text[end:].startswith("\n\n")
    for before, after in zip(document.pages, document.pages[1:]):
        assert before.start <= before.end <= after.start <= after.end <= len(text)
    for other, old in zip(document.pages, old_pages, strict=True):
        if other.number == page.number:
            assert other.start <= start and end <= other.end
            assert text[other.start : offset] + text[offset + grown : other.end] == old
        else:
            assert text[other.start : other.end] == old
    for image, (old_start, old_end, quote) in zip(document.images, old_spans, strict=True):
        if old_start < offset < old_end:  # the insertion landed inside this span, which grows around it
            inserted = text[offset : offset + grown]
            assert text[image.start : image.end] == old_text[old_start:offset] + inserted + old_text[offset:old_end]
        else:
            assert text[image.start : image.end] == quote
        assert _on_its_page(document, image)


def _on_its_page(document: ExtractedDocument, image: ExtractedImage) -> bool:
    """Whether the image's span lies inside the span of the page it is on."""
    page = next(page for page in document.pages if page.number == image.page)
    return page.start <= image.start <= image.end <= page.end
