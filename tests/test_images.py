"""Images: guarded decoding, image files, and the images embedded in PDF, DOCX, HTML and Markdown documents."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from docx import Document
from docx.oxml import parse_xml
from docx.oxml.ns import nsdecls, qn
from PIL import Image, PngImagePlugin
from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE
from pptx.util import Inches
from pypdf import PdfReader

from ingestion.loaders import LoadError, loader_for
from ingestion.loaders import images as image_module
from ingestion.loaders.base import Limits
from ingestion.loaders.images import EmbeddedImages, ImageError, decode_image, thumbnail_jpeg
from ingestion.loaders.pdf import PdfLoader
from ingestion.loaders.pdf_images import PageImages, _name
from ingestion.loaders.pdf_pages import PageDrawer
from ingestion.ocr import PreparedAsKept
from ingestion.pictures import describe
from kb.config import Settings
from kb.containment import REFUSED
from kb.types import ExtractedDocument, ExtractedImage, Page
from tests.documents import (
    bomb_png,
    deck_bytes,
    image_bytes,
    pdf_bytes,
    pdf_from_objects,
    shared_resources_pdf_bytes,
    striped_scan_pdf,
)
from tests.hostile import deck_rewritten, masked_pictures_pdf

RED, BLUE, WHITE = (220, 20, 20), (20, 20, 220), (255, 255, 255)


class SlowEngine:
    """OCR that takes ``seconds`` to read no text."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def read(self, image: Image.Image) -> str:
        time.sleep(self.seconds)
        return ""


def load(folder: Path, name: str, data: bytes, limits: Limits | None = None,
         root: Path | None = None) -> ExtractedDocument:
    """Write ``data`` as ``name`` and load it the way the pipeline does, in source folder ``root`` (default
    ``folder``)."""
    path = folder / name
    path.write_bytes(data)
    loader = loader_for(path)
    assert loader is not None, name
    return loader.load(path, path.read_bytes(), limits, root)


def near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def noise_png(size: int = 300) -> bytes:
    """A PNG that does not compress: cutting it anywhere cuts pixel data."""
    out = io.BytesIO()
    Image.effect_noise((size, size), 80).convert("RGB").save(out, "PNG")
    return out.getvalue()


def decode(data: bytes, notes: list[str] | None = None) -> Image.Image:
    return decode_image(data, "x", max_pixels=10_000_000, notes=notes).image


# --- image files -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, image_format", [("photo.JPG", "JPEG"), ("pic.png", "PNG"), ("a.webp", "WEBP"),
                                                 ("b.bmp", "BMP"), ("c.tiff", "TIFF"), ("d.gif", "GIF")])
def test_image_file_is_a_document_with_one_image(tmp_path: Path, name: str, image_format: str) -> None:
    data = image_bytes(image_format, size=(80, 50), color=RED)
    document = load(tmp_path, name, data)
    assert (document.text, document.file_type, document.title, document.warnings) == ("", "image", None, [])
    [image] = document.images
    assert (image.name, image.width, image.height, image.start, image.end) == (name, 80, 50, 0, 0)
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert image.image.mode == "RGB" and image.image.size == (80, 50)
    assert near(image.image.getpixel((40, 25)), RED)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    picture = Image.new("RGB", (60, 40), BLUE)
    picture.paste(RED, (0, 0, 30, 40))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: the left half ends up on top
    out = io.BytesIO()
    picture.save(out, "JPEG", exif=exif.tobytes(), quality=95)
    [image] = load(tmp_path, "rotated.jpg", out.getvalue()).images
    assert image.image.size == (40, 60) and (image.width, image.height) == (40, 60)
    assert near(image.image.getpixel((20, 10)), RED) and near(image.image.getpixel((20, 50)), BLUE)


def test_large_image_is_scaled_down_and_keeps_its_original_size() -> None:
    image = decode_image(image_bytes("PNG", size=(3000, 1000)), "wide.png", max_pixels=10_000_000)
    assert image.image.size == (2048, 683) and (image.width, image.height) == (3000, 1000)
    assert decode_image(image_bytes("JPEG", size=(4000, 400)), "j", max_pixels=10**8, max_side=500).image.size == \
        (500, 50)


@pytest.mark.parametrize("data, expected", [
    pytest.param(image_bytes("JPEG", mode="CMYK", color=(0, 255, 255, 0)), RED, id="cmyk-jpeg"),
    pytest.param(image_bytes("PNG", mode="I;16", color=65535), WHITE, id="16-bit-png"),
    pytest.param(image_bytes("TIFF", mode="I", color=70000), (0, 0, 0), id="32-bit-flat-tiff"),
    pytest.param(image_bytes("PNG", mode="1", color=0), (0, 0, 0), id="1-bit"),
    pytest.param(image_bytes("PNG", mode="RGBA", color=(255, 0, 0, 0)), WHITE, id="transparent-rgba"),
    pytest.param(image_bytes("PNG", mode="LA", color=(0, 128)), (127, 127, 127), id="half-transparent-la"),
    pytest.param(image_bytes("PNG", mode="P", color=0, transparency=0), WHITE, id="palette-transparency"),
    pytest.param(image_bytes("TIFF", mode="F", color=0.5), (0, 0, 0), id="float-tiff"),
])
def test_modes_become_rgb(data: bytes, expected: tuple[int, int, int]) -> None:
    image = decode(data)
    assert image.mode == "RGB"
    assert near(image.getpixel((3, 3)), expected), image.getpixel((3, 3))


def test_16_bit_grey_keeps_its_gradient() -> None:
    ramp = Image.new("I;16", (256, 1))
    ramp.putdata([value * 257 for value in range(256)])
    out = io.BytesIO()
    ramp.save(out, "PNG")
    image = decode(out.getvalue())
    assert [image.getpixel((x, 0))[0] for x in (0, 128, 255)] == [0, 128, 255]


def test_animated_gif_gives_its_first_frame_and_a_note(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (40, 40), colour) for colour in (RED, BLUE, WHITE)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    document = load(tmp_path, "anim.gif", out.getvalue())
    assert near(document.images[0].image.getpixel((20, 20)), RED)
    assert document.warnings == ["anim.gif: several frames; only the first is used"]  # (not counted: 4M took 9 s)
    out = io.BytesIO()
    frames[0].save(out, "GIF")
    broken = load(tmp_path, "broken.gif", out.getvalue()[:-1] + b"\x2c" + b"\xff" * 30 + b";")  # a frame of junk
    assert near(broken.images[0].image.getpixel((20, 20)), RED) and broken.warnings == [
        "broken.gif: frames after the first cannot be read (index out of range); only the first is used"]
    # A TIFF's pages are not counted: Pillow compares each one's place with all before it (100,000 took 50 s).
    out = io.BytesIO()
    frames[0].save(out, "TIFF", save_all=True, append_images=frames[1:])
    scan = load(tmp_path, "fax.tif", out.getvalue())
    assert near(scan.images[0].image.getpixel((20, 20)), RED) and scan.warnings == [
        "fax.tif: several pages; only the first is used"]


@pytest.mark.parametrize("name, data, reason", [
    pytest.param("cut.png", noise_png()[:5000], "truncated", id="truncated-png"),
    pytest.param("cut.jpg", image_bytes("JPEG", size=(300, 300))[:300], "truncated", id="truncated-jpeg"),
    pytest.param("notes.jpg", b"Just some text, saved with the wrong suffix.\n", "not an image", id="text-as-jpg"),
    pytest.param("vector.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not an image", id="svg-as-png"),
    pytest.param("empty.png", b"", "^empty file$", id="zero-bytes"),
])
def test_bad_image_files_fail_with_a_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    with pytest.raises(ImageError if data else LoadError, match=reason):
        load(tmp_path, name, data)


def test_a_png_s_text_chunks_cannot_cost_its_picture(tmp_path: Path) -> None:
    """Pillow decompresses a PNG's text as it reads it: one of over 1 MB, or compressed in a way it lacks, lost the
    whole picture, though its pixels were fine."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = image_bytes("PNG", size=(40, 30), color=RED)
    idat = png.index(b"IDAT") - 4
    bomb = chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"x" * 2**21))
    unknown = chunk(b"iTXt", b"XML\0\x01\x07en\0\0" + b"?" * 100)  # compression method 7
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    turned = chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp.encode())  # read: it turns a screenshot upright
    data = png[:idat] + bomb + turned + chunk(b"tEXt", b"Title\0Red") + png[idat:-12] + unknown + png[-12:]
    [image] = load(tmp_path, "texts.png", data).images
    assert image.sha256 == hashlib.sha256(data).hexdigest() and near(image.image.getpixel((15, 20)), RED)
    assert (image.width, image.height, image.image.size) == (30, 40, (30, 40))


def test_a_png_s_text_chunks_are_inflated_no_further_than_pillow_keeps(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of a PNG's small text chunks that inflates past ``MAX_TEXT_CHUNK`` was inflated that far to be left out,
    however many: 12 MB of them took 30 s. No more than ``MAX_TEXT_MEMORY`` is inflated in all."""
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 4 * PngImagePlugin.MAX_TEXT_CHUNK)
    inflated, measure = [], image_module._png_text_size

    def measured(*args: object) -> tuple[int | None, int]:
        found = measure(*args)  # type: ignore[arg-type]
        inflated.append(found[1])
        return found

    monkeypatch.setattr(image_module, "_png_text_size", measured)
    text = b"Comment\0\0" + zlib.compress(bytes(PngImagePlugin.MAX_TEXT_CHUNK + 1), 9)
    png = image_bytes("PNG", size=(40, 30), color=RED)
    idat = png.index(b"IDAT") - 4
    chunk = struct.pack(">I", len(text)) + b"zTXt" + text + struct.pack(">I", zlib.crc32(b"zTXt" + text))
    [image] = load(tmp_path, "texts.png", png[:idat] + chunk * 100 + png[idat:]).images
    assert near(image.image.getpixel((15, 20)), RED)
    assert len(inflated) == 100 and sum(inflated) <= PngImagePlugin.MAX_TEXT_MEMORY  # was 100 MB


def test_noise_png_is_refused_not_crashed() -> None:
    data = bytearray(noise_png())
    data[200:260] = b"\xff" * 60  # corrupt the compressed pixel data
    with pytest.raises(ImageError, match="corrupt|truncated"):
        decode(bytes(data))


@pytest.mark.filterwarnings("error")
def test_decompression_bomb_is_refused_from_the_header_quickly(tmp_path: Path) -> None:
    data = bomb_png(100_000, 100_000)
    assert len(data) < 200
    started = time.perf_counter()
    with pytest.raises(ImageError, match="decompression bomb"):
        load(tmp_path, "bomb.png", data)
    with pytest.raises(ImageError, match=r"10000x10000 = 100 megapixels, over the limit of 64 .*decompression bomb"):
        load(tmp_path, "big.png", bomb_png(10_000, 10_000))  # over Pillow's warning limit: the warning is not raised
    assert time.perf_counter() - started < 1
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's own setting is left as it was


def test_limits_follow_the_settings(tmp_path: Path) -> None:
    assert Limits() == Limits.from_settings(Settings())
    limits = Limits.from_settings(Settings(max_image_pixels=1000, min_image_side=8))
    assert (limits.max_pixels, limits.min_side) == (1000, 8)
    with pytest.raises(ImageError, match="over the limit"):
        load(tmp_path, "small.png", image_bytes("PNG", size=(50, 50)), limits)


def test_thumbnail_is_a_small_jpeg() -> None:
    preview = Image.open(io.BytesIO(thumbnail_jpeg(decode(image_bytes("PNG", size=(1000, 500))))))
    assert preview.format == "JPEG" and preview.size == (256, 128)


# --- pdf ---------------------------------------------------------------------------------------------------------

def test_pdf_images_have_pages_spans_and_scanned_flags(tmp_path: Path) -> None:
    red, blue = image_bytes("JPEG", color=RED), image_bytes("JPEG", color=BLUE)
    tiny = image_bytes("JPEG", size=(10, 10))
    document = load(tmp_path, "mixed.pdf", pdf_bytes([["Figure one shows red"], [], ["A tiny icon"], ["Again"]],
                                                     images=[red, blue, tiny, red]))
    assert [(i.name, i.page, i.scanned_page, i.width, i.height) for i in document.images] == [
        ("page 1 image 1", 1, False, 64, 48), ("page 2 image 1", 2, True, 64, 48)]
    first, scanned = document.images
    assert document.text[first.start:first.end] == "Figure one shows red"
    assert scanned.start == scanned.end == document.pages[1].start
    assert near(scanned.image.getpixel((30, 20)), BLUE)
    assert "1 image(s) smaller than 32 px on a side skipped (min_image_side)" in document.warnings


def test_pdf_pages_sharing_resources_keep_the_images_each_draws(tmp_path: Path) -> None:
    # A scanner's software often gives every page one resources dictionary naming all the pictures. The scanned
    # second page's picture was credited to the text page before it, so OCR never read it.
    red, blue, white = (image_bytes("JPEG", color=colour) for colour in (RED, BLUE, WHITE))
    data = shared_resources_pdf_bytes([("A cover letter", [0]), ("", [1]), ("Signed again", [0])], [red, blue, white])
    document = load(tmp_path, "scanned.pdf", data)
    assert [(i.name, i.page, i.scanned_page) for i in document.images] == [
        ("page 1 image 1", 1, False), ("page 2 image 1", 2, True)]  # the white one is named but never drawn
    assert near(document.images[0].image.getpixel((30, 20)), RED)
    assert near(document.images[1].image.getpixel((30, 20)), BLUE)


def test_a_scanned_page_pypdf_cannot_decode_is_drawn_by_pdfium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pypdfium2", reason="drawing pages needs pypdfium2 (the ocr extra)")
    scan = Image.new("RGB", (600, 400), WHITE)
    scan.paste(BLUE, (100, 100, 500, 300))
    [page] = load(tmp_path, "strips.pdf", striped_scan_pdf(scan)).images  # 25 strips of 16 px: none a picture
    assert (page.name, page.page, page.scanned_page, page.width, page.height) == ("page 1", 1, True, 2048, 1366)
    blue_in_grey = (43, 43, 43)  # the strips are grey
    assert near(page.image.getpixel((1024, 682)), blue_in_grey) and near(page.image.getpixel((100, 100)), WHITE)
    # An image no decoder reads stays reported; a blank page is not a picture.
    garbled = load(tmp_path, "garbled.pdf", striped_scan_pdf(scan, garbled=True))
    assert garbled.images == [] and any("image page 1 image 1 skipped: cannot decode" in w for w in garbled.warnings)
    assert load(tmp_path, "blank.pdf", pdf_bytes([[], ["The end"]])).images == []
    monkeypatch.setattr("ingestion.loaders.pdf_pages.optional.installed", lambda module: False)
    assert load(tmp_path, "without.pdf", striped_scan_pdf(scan)).images == []  # as it was before pdfium


def _drawing_page_pdf(content: bytes, jpeg: bytes, form: bool = False, compressed: bool = False) -> bytes:
    """A one-page PDF whose resources name one JPEG /Im0 (and, with ``form``, a form /Fm0 without resources of its
    own that draws /Im0 from the page's), its content ``content`` (flate-compressed, or broken, with ``compressed``)."""
    width, height = Image.open(io.BytesIO(jpeg)).size
    xobjects = b"/Im0 5 0 R" + (b" /Fm0 6 0 R" if form else b"")
    filters = b" /Filter /FlateDecode" if compressed else b""
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << %s >> >> "
                  b"/Contents 4 0 R >>" % xobjects,
               4: b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(content), filters, content),
               5: b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8 "
                  b"/Filter /DCTDecode /Length %d >>\nstream\n%s\nendstream" % (width, height, len(jpeg), jpeg)}
    if form:
        drawing = b"q 100 0 0 100 0 0 cm /Im0 Do Q"
        objects[6] = (b"<< /Type /XObject /Subtype /Form /BBox [0 0 100 100] /Length %d >>\nstream\n%s\nendstream"
                      % (len(drawing), drawing))
    return pdf_from_objects(objects)


@pytest.mark.parametrize("content, form, drawable", [
    pytest.param(b"/Im0 Do", False, True, id="once"),
    pytest.param(b"/Im0 Do " * 5, False, False, id="five times"),
    pytest.param(b"/Fm0 Do /Fm0 Do /Fm0 Do", True, False, id="through a form drawn three times"),
])
def test_a_page_drawing_pictures_past_the_pixel_limit_again_and_again_is_not_drawn_whole(
        tmp_path: Path, content: bytes, form: bool, drawable: bool) -> None:
    # pdfium draws a picture as often as the content says: 150 draws of 64 megapixels would take minutes.
    picture = image_bytes("JPEG", size=(600, 400))  # 240,000 pixels, against a limit of 500,000 a page
    reader = PdfReader(io.BytesIO(_drawing_page_pdf(content, picture, form=form)))
    search = PageImages(EmbeddedImages(Limits(max_pixels=500_000), [], tmp_path))
    assert search.keep(reader.pages[0], Page(number=1, start=0, end=0), scanned=True).drawable is drawable


def _second_page_pdf(content: bytes, resources: bytes, image: bytes = b"", first: bytes = b"") -> bytes:
    """A text page (drawing ``first`` too, with the second page's resources), then a page without text drawing
    ``content`` with ``resources``; object 5 is a grey picture of 40 x 40 pixels (``image``: more of its entries),
    object 6 a form drawing /Im0 with resources of its own that name no picture, object 7 a Type3 font."""
    text, drawing = b"BT /F1 12 Tf 72 720 Td (Text page) Tj ET" + first, b"q 612 0 0 792 0 0 cm /Im0 Do Q"
    pixels = bytes(1600)
    return pdf_from_objects({
        1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 8 0 R >> %s >> "
           b"/Contents 9 0 R >>" % (resources if first else b""),
        4: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << %s >> /Contents 10 0 R >>" % resources,
        5: b"<< /Type /XObject /Subtype /Image /Width 40 /Height 40 /BitsPerComponent 8 %s /Length %d >>\n"
           b"stream\n%s\nendstream" % (image or b"/ColorSpace /DeviceGray", len(pixels), pixels),
        6: b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /ProcSet [/PDF] >> /Length %d >>\n"
           b"stream\n%s\nendstream" % (len(drawing), drawing),
        7: b"<< /Type /Font /Subtype /Type3 /FontBBox [0 0 1 1] /FontMatrix [1 0 0 1 0 0] /CharProcs << >> "
           b"/Encoding << /Differences [32 /space] >> /FirstChar 32 /LastChar 32 /Widths [1] >>",
        8: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        9: b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
        10: b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    })


@pytest.mark.parametrize("content, resources, image, drawable", [
    pytest.param(b"/Im0 Do", b"/XObject << /Im0 5 0 R >>", b"", True, id="a picture drawn once"),
    pytest.param(b"(Im0) Do", b"/XObject << /Im0 5 0 R >>", b"", False, id="a string naming it"),
    pytest.param(b"/Im#4g Do", b"/XObject << /Im@ 5 0 R >>", b"", False, id="a name pypdf reads otherwise"),
    pytest.param(b"/Im0 Do", b"/XObject << /Im0 5 0 R >> /ColorSpace << /CS0 [/DeviceN [/A] /DeviceGray 7 0 R] >>",
                 b"/ColorSpace /CS0", False, id="a colour space the resources name"),
    pytest.param(b"/Im0 Do", b"/XObject << /Im0 5 0 R >> /Font << /T3 7 0 R >>", b"", False, id="a Type3 font"),
    pytest.param(b"/Fm0 Do", b"/XObject << /Fm0 6 0 R /Im0 5 0 R >>", b"/ColorSpace [/Separation /A /DeviceGray 7 0 R]",
                 False, id="a form without XObjects drawing the page's"),
    pytest.param(b"/Im0 Do " * 1025, b"/XObject << /Im0 5 0 R >>", b"", False, id="a picture drawn 1,025 times"),
])
def test_a_page_is_drawn_whole_only_when_every_picture_it_draws_is_checked(
        tmp_path: Path, content: bytes, resources: bytes, image: bytes, drawable: bool) -> None:
    # Each way pdfium could still be handed an unchecked picture (a tint function run for each pixel: minutes).
    reader = PdfReader(io.BytesIO(_second_page_pdf(content, resources, image)))
    search = PageImages(EmbeddedImages(Limits(), [], tmp_path))
    search.keep(reader.pages[0], Page(number=1, start=0, end=10), scanned=False)
    assert search.keep(reader.pages[1], Page(number=2, start=10, end=10), scanned=True).drawable is drawable


def test_a_form_is_judged_on_what_it_draws_not_on_what_the_page_drew_before_it(tmp_path: Path) -> None:
    # A header form first met on a text page after its pictures' pixels passed the limit was taken for one over it,
    # and no scanned page drawing it afterwards was read.
    resources = b"/XObject << /Hd 6 0 R /Im0 5 0 R >>"
    reader = PdfReader(io.BytesIO(_second_page_pdf(b"/Hd Do", resources, first=b" /Im0 Do" * 700 + b" /Hd Do")))
    search = PageImages(EmbeddedImages(Limits(max_pixels=1_000_000), [], tmp_path))
    search.keep(reader.pages[0], Page(number=1, start=0, end=10), scanned=False)
    assert search.keep(reader.pages[1], Page(number=2, start=10, end=10), scanned=True).drawable is True


@pytest.mark.parametrize("content, form, compressed", [
    pytest.param(b"q 200 0 0 150 72 400 cm /Im0 % the photograph\nDo Q", False, False, id="comment before Do"),
    pytest.param(b"q 1 0 0 1 72 400 cm /Fm0 Do Q", True, False, id="form drawing from the page's resources"),
    pytest.param(b"not flate at all, /Im0 Do", False, True, id="content that decodes to nothing"),
])
def test_pdf_images_drawn_in_odd_ways_are_found(tmp_path: Path, content: bytes, form: bool, compressed: bool) -> None:
    document = load(tmp_path, "odd.pdf", _drawing_page_pdf(content, image_bytes("JPEG", color=RED), form, compressed))
    [image] = document.images
    assert image.page == 1 and near(image.image.getpixel((30, 20)), RED)


def test_scanned_pages_sharing_a_form_keep_its_picture_once_and_are_not_drawn(tmp_path: Path) -> None:
    # The second page's form had been searched already: it showed no picture, so pdfium drew the page again.
    jpeg = image_bytes("JPEG", size=(300, 300), color=BLUE)
    form = b"q 300 0 0 300 0 0 cm /Im0 Do Q"
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>",
               7: b"<< /Type /XObject /Subtype /Form /BBox [0 0 300 300] /Resources << /XObject << /Im0 8 0 R >> >> "
                  b"/Length %d >>\nstream\n%s\nendstream" % (len(form), form),
               8: b"<< /Type /XObject /Subtype /Image /Width 300 /Height 300 /ColorSpace /DeviceRGB "
                  b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n%s\nendstream" % (len(jpeg), jpeg)}
    for page, offset in ((3, 10), (4, 20)):
        content = b"q 1 0 0 1 %d %d cm /Fm1 Do Q" % (offset, offset)
        objects[page] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Fm1 7 0 R "
                         b">> >> /Contents %d 0 R >>" % (page + 2))
        objects[page + 2] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)
    document = load(tmp_path, "forms.pdf", pdf_from_objects(objects))
    assert [(image.name, image.page) for image in document.images] == [("page 1 image 1", 1)]


@pytest.mark.parametrize("allowance, drawn", [(0.5, [1, 2, 3]), (0.0, [1])])
def test_pdfium_s_drawing_allowance_counts_drawing_not_the_ocr_between(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allowance: float, drawn: list[int]) -> None:
    # OCR reads each page as it is kept, between drawings: counted from the opening of the document, the allowance
    # ran out after the first pages read, and the rest of a long scan stayed empty.
    pytest.importorskip("pypdfium2", reason="drawing pages needs pypdfium2 (the ocr extra)")
    monkeypatch.setattr("ingestion.loaders.pdf_pages.DRAW_SECONDS", allowance)
    scans = [Image.new("RGB", (600, 400), WHITE) for _ in range(3)]
    for number, scan in enumerate(scans):
        scan.paste(BLUE, (100 * number, 100, 500, 300))
    path = tmp_path / "strips.pdf"
    path.write_bytes(striped_scan_pdf(*scans))
    document = PdfLoader().load(path, path.read_bytes(), Limits(), tmp_path, PreparedAsKept(SlowEngine(0.6)))
    assert [image.page for image in document.images] == drawn


def test_pdfium_draws_nothing_when_it_counts_other_pages_than_pypdf() -> None:
    pytest.importorskip("pypdfium2", reason="drawing pages needs pypdfium2 (the ocr extra)")
    scan = Image.new("RGB", (600, 400), WHITE)
    scan.paste(BLUE, (100, 100, 500, 300))
    data = striped_scan_pdf(scan)
    assert PageDrawer(data, 1, 512).draw(0) is not None
    assert PageDrawer(data, 2, 512).draw(0) is None  # a drawing would land on another page's text


def test_a_drawn_name_pypdf_refuses_fails_only_that_page_s_images(tmp_path: Path) -> None:
    # A name over pypdf's 4096 bytes raised out of the loader: the whole file failed as "unexpected".
    content = "/".encode() + "图".encode() * 1400 + b" Do q 200 0 0 150 72 400 cm /Im0 Do Q"
    document = load(tmp_path, "long.pdf", _drawing_page_pdf(content, image_bytes("JPEG", color=RED)))
    assert document.images == [] and "image page 1 image 1 skipped: cannot decode" in document.warnings[-1]


def test_a_line_of_percent_signs_after_a_name_is_searched_in_no_time() -> None:
    # A comment that could end anywhere let "%%%%..." split 2^n ways: 40 of them, in a 597-byte PDF, never ended.
    search = "from ingestion.loaders.pdf_images import _DRAW; assert _DRAW.findall(b'/a ' + b'%' * 40) == []"
    subprocess.run([sys.executable, "-c", search], check=True, timeout=30, cwd=Path(__file__).resolve().parent.parent)


def test_pdf_drawn_names_are_read_as_pypdf_reads_resource_names() -> None:
    assert [_name(raw) for raw in (b"Im1", b"Im#31", "图一".encode(), b"Fig#20A")] == ["/Im1", "/Im1", "/图一", "/Fig A"]


def test_pillow_pdf_is_a_scanned_page(tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("RGB", (300, 400), RED).save(out, "PDF")
    document = load(tmp_path, "scan.pdf", out.getvalue())
    assert document.text == ""
    [image] = document.images
    assert (image.page, image.scanned_page, image.width, image.height) == (1, True, 300, 400)


@pytest.mark.parametrize("key, masks, refusal", [
    ("/SMask", (600,), "its soft mask of 600x600"),
    ("/SMask", (500, 600), "its soft mask of 600x600"),  # the soft mask's own soft mask, which pypdf decodes too
    ("/Mask", (600,), None),  # a stencil mask pypdf does not read: only pdfium would
])
def test_a_pdf_picture_whose_mask_is_over_the_pixel_limit_is_refused_and_its_page_not_drawn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, masks: tuple[int, ...], refusal: str | None) -> None:
    # pypdf decoded a soft mask of any size with its picture (and that mask's soft mask), and scaled it down to the
    # picture's 200 px.
    drawn: list[int] = []
    monkeypatch.setattr(PageDrawer, "draw", lambda self, index: drawn.append(index))
    limits = Limits(max_pixels=300_000)
    over = load(tmp_path, "masked.pdf", masked_pictures_pdf(2, 200, masks, key), limits)
    assert over.text.count("Masked page") == 2
    if refusal is None:
        assert [image.name for image in over.images] == ["page 1 image 1", "page 2 image 1"] and over.warnings == []
    else:
        assert over.images == [] and over.warnings == [
            f"image page {page} image 1 skipped: {refusal} is over the limit of 0.3 megapixels (max_image_pixels)"
            for page in (1, 2)]
    within = tuple(min(size, 500) for size in masks)
    kept = load(tmp_path, "small-mask.pdf", masked_pictures_pdf(2, 200, within, key), limits)
    assert [(image.name, image.width) for image in kept.images] == [("page 1 image 1", 200), ("page 2 image 1", 200)]
    # A scanned page whose only picture is too small to keep is drawn whole by pdfium, masks and all, unless one
    # is over the limit.
    load(tmp_path, "tiny.pdf", masked_pictures_pdf(1, 20, masks, key, text=False), limits)
    assert drawn == []
    load(tmp_path, "tiny-small-mask.pdf", masked_pictures_pdf(1, 20, within, key, text=False), limits)
    assert drawn == [0]


def test_pdf_image_count_is_capped(tmp_path: Path) -> None:
    pages = [[f"page {n}"] for n in range(4)]
    images = [image_bytes("JPEG", color=(60 * n, 0, 0)) for n in range(4)]
    document = load(tmp_path, "many.pdf", pdf_bytes(pages, images=images), Limits(max_images=2))
    assert [image.page for image in document.images] == [1, 2]
    assert document.warnings[-1].startswith("2 image(s) beyond the first 2 skipped")


@pytest.mark.parametrize("seconds, kept", [(0.0, ["0.png"]), (0.4, ["0.png", "1.png", "2.png"])])
def test_the_time_a_document_decodes_images_is_capped_though_each_is_held_at_preview_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float, kept: list[str]) -> None:
    # Once pictures were cut to preview size as they were kept, the 100 MP held no longer stopped a document of 40
    # pictures of 64 MP from decoding for over a minute and failing on its time budget, its text lost. OCR's time
    # (here a slow one) is not decoding's.
    monkeypatch.setattr("ingestion.loaders.images.IMAGE_SECONDS", seconds)
    for number in range(3):
        (tmp_path / f"{number}.png").write_bytes(image_bytes("PNG", size=(1000, 1000), color=(40 * number, 0, 0)))
    (tmp_path / "photos.md").write_text("".join(f"![photo {n}]({n}.png)\n\n" for n in range(3)), encoding="utf-8")
    path = tmp_path / "photos.md"
    document = loader_for(path).load(path, path.read_bytes(), Limits(), tmp_path,
                                     PreparedAsKept(SlowEngine(0.5), embedded=True))
    assert [image.name for image in document.images] == kept
    if seconds == 0:
        assert document.warnings == ["2 image(s) beyond the first 1 skipped (at most 0 s of decoding images per "
                                     "document)"]


# --- pptx --------------------------------------------------------------------------------------------------------

def test_pptx_pictures_have_their_slide_alt_text_and_span_and_a_missing_part_is_a_warning(tmp_path: Path) -> None:
    data = deck_bytes(picture=image_bytes("PNG", size=(200, 150), color=BLUE))
    document = load(tmp_path, "deck.pptx", data)
    [picture] = document.images
    assert (picture.name, picture.page, picture.alt, picture.width, picture.height) == (
        "slide 2 image 1", 2, "A bar chart of sales", 200, 150)
    slide = document.pages[1]
    assert (picture.start, picture.end) == (slide.start, slide.end) and near(picture.image.getpixel((100, 75)), BLUE)
    # A picture whose image part is missing loses only itself, with the reason.
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            part = source.read(item.filename)
            if item.filename == "ppt/slides/slide2.xml":
                part = re.sub(rb'r:embed="[^"]+"', b'r:embed="rId999"', part)
            target.writestr(item.filename, part)
    broken = load(tmp_path, "broken.pptx", out.getvalue())
    assert broken.images == [] and broken.text == document.text
    assert len(broken.warnings) == 1 and broken.warnings[0].startswith("slide 2: shape 'Picture ")
    # 25 such pictures: the warnings are capped (250,000 of them made 21 MB of warnings).
    many = deck_rewritten({"ppt/slides/slide2.xml": lambda xml: re.sub(
        rb"<p:pic>.*?</p:pic>", lambda found: re.sub(rb'r:embed="[^"]+"', b'r:embed="rId999"', found.group(0)) * 25,
        xml, flags=re.DOTALL)}, deck=data)
    assert load(tmp_path, "many.pptx", many).warnings[20:] == ["5 more slide(s) or shape(s) could not be read"]
    # A picture naming a part of the deck's XML (its bytes made again from the XML on each read: 2,000 such
    # pictures of a 30 MB part took 93 s) is refused.
    xml_picture = deck_rewritten({"ppt/slides/_rels/slide2.xml.rels": lambda rels: re.sub(
        rb'Target="../media/[^"]+"', b'Target="../slides/slide1.xml"', rels)}, deck=data)
    assert "it names a part of the deck's XML, not a picture" in load(tmp_path, "xml.pptx", xml_picture).warnings[0]


# --- docx --------------------------------------------------------------------------------------------------------

def test_docx_picture_with_alt_text_caption_and_span(tmp_path: Path) -> None:
    document = Document()
    document.add_paragraph("Introduction to the chart.")
    picture = document.add_paragraph().add_run().add_picture(io.BytesIO(image_bytes("PNG", size=(120, 90))))
    picture._inline.docPr.set("descr", "A bar chart of sales")
    document.add_paragraph("Figure 1: Sales by region", style="Caption")
    document.add_paragraph("Closing words.")
    inline_run = document.add_paragraph("Text with an ").add_run()
    inline_run.add_picture(io.BytesIO(image_bytes("PNG", size=(40, 40), color=BLUE)))
    document.add_paragraph("Figure out the budget first.")  # no caption: "Figure" without a number
    document.add_paragraph().add_run().add_picture(io.BytesIO(image_bytes("PNG", size=(8, 8))))
    out = io.BytesIO()
    document.save(out)
    loaded = load(tmp_path, "chart.docx", out.getvalue())
    assert loaded.text == ("Introduction to the chart.\n\nFigure 1: Sales by region\n\nClosing words.\n\nText with an"
                           "\n\nFigure out the budget first.")
    chart, inline = loaded.images
    assert (chart.alt, chart.caption, chart.width, chart.height) == ("A bar chart of sales",
                                                                     "Figure 1: Sales by region", 120, 90)
    assert loaded.text[chart.start:chart.end] == "Figure 1: Sales by region"
    assert chart.name.startswith("word/media/") and chart.page is None
    assert loaded.text[inline.start:inline.end] == "Text with an" and inline.caption is None
    assert loaded.warnings == ["1 image(s) smaller than 32 px on a side skipped (min_image_side)"]


def test_a_docx_picture_in_a_text_box_spans_the_text_box_not_its_anchor(tmp_path: Path) -> None:
    """The anchor paragraph's drawing (the text box) was searched for pictures down into the box: the picture took
    the anchor's span and the text box's alt text, and in its own paragraph it was only a repeat."""
    document = Document()
    document.add_paragraph("Intro.")
    anchor = document.add_paragraph("Anchor paragraph.")
    holder = document.add_paragraph()
    holder.add_run().add_picture(io.BytesIO(image_bytes("PNG", size=(64, 48))))._inline.docPr.set("descr", "Chart")
    caption = document.add_paragraph("Figure 1: Revenue by quarter")
    document.add_paragraph("Closing.")
    box = parse_xml(
        f'<w:r {nsdecls("w", "wp", "a")} xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape">'
        '<w:drawing><wp:anchor><wp:docPr id="9" name="Box" descr="text box"/><a:graphic><a:graphicData uri="http://'
        'schemas.microsoft.com/office/word/2010/wordprocessingShape"><wps:wsp><wps:txbx><w:txbxContent/></wps:txbx>'
        '</wps:wsp></a:graphicData></a:graphic></wp:anchor></w:drawing></w:r>')
    box.find(".//" + qn("w:txbxContent")).extend([holder._p, caption._p])  # moved into the box
    anchor._p.append(box)
    out = io.BytesIO()
    document.save(out)
    loaded = load(tmp_path, "boxed.docx", out.getvalue())
    assert loaded.text == "Intro.\n\nAnchor paragraph.\n\nFigure 1: Revenue by quarter\n\nClosing."
    [chart] = loaded.images
    assert (chart.alt, chart.caption) == ("Chart", "Figure 1: Revenue by quarter")
    assert loaded.text[chart.start:chart.end] == "Figure 1: Revenue by quarter"


def test_a_docx_picture_in_a_table_spans_its_row(tmp_path: Path) -> None:
    """Each picture in a table spanned the whole table, so two staff photos could not be told apart."""
    document = Document()
    document.add_paragraph("Staff list.")
    table = document.add_table(rows=4, cols=2)
    for row, (name, colour) in zip(table.rows[1:], (("Alice", RED), ("", None), ("Bob", BLUE)), strict=True):
        row.cells[0].text = name
        if colour is not None:
            photo = image_bytes("PNG", size=(60, 40), color=colour)
            row.cells[1].paragraphs[0].add_run().add_picture(io.BytesIO(photo))
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Name", "Photo"
    out = io.BytesIO()
    document.save(out)
    loaded = load(tmp_path, "staff.docx", out.getvalue())
    assert loaded.text == "Staff list.\n\nName | Photo\nAlice\nBob"
    assert [loaded.text[image.start:image.end] for image in loaded.images] == ["Alice", "Bob"]


def test_docx_pictures_in_vml_as_word_2003_writes_them_are_read(tmp_path: Path) -> None:
    """Only DrawingML pictures were read: a document saved in compatibility mode lost its pictures silently."""
    document = Document()
    document.add_paragraph("Before.")
    holder = document.add_paragraph("Our logo: ")
    drawing = holder.add_run().add_picture(io.BytesIO(image_bytes("PNG", size=(64, 48))))._inline.getparent()
    part_id = drawing.find(".//" + qn("a:blip")).get(qn("r:embed"))
    drawing.addnext(parse_xml(
        f'<w:pict {nsdecls("w", "r")} xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:'
        f'office:office"><v:shape alt="Company logo" style="width:48pt;height:36pt"><v:imagedata r:id="{part_id}" '
        'o:title="logo.png"/></v:shape></w:pict>'))
    drawing.getparent().remove(drawing)
    out = io.BytesIO()
    document.save(out)
    loaded = load(tmp_path, "old.docx", out.getvalue())
    [logo] = loaded.images
    assert (logo.alt, loaded.text[logo.start:logo.end], logo.width) == ("Company logo", "Our logo:", 64)


def test_a_pptx_photo_cropped_to_a_shape_is_read_as_a_picture(tmp_path: Path) -> None:
    """A shape filled with a picture (PowerPoint's Crop to Shape, a team page's round photos) was not read."""
    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Our team"
    placed = slide.shapes.add_picture(io.BytesIO(image_bytes("PNG", size=(64, 48))), Inches(1), Inches(1))
    oval = slide.shapes.add_shape(MSO_SHAPE.OVAL, Inches(4), Inches(1), Inches(2), Inches(2))
    oval.text_frame.text = "Alice, CEO"
    oval._element._nvXxPr.cNvPr.set("descr", "Portrait of Alice")
    oval._element.spPr.find(qn("a:prstGeom")).addnext(parse_xml(
        f'<a:blipFill {nsdecls("a", "r")}><a:blip r:embed="{placed._element.blip_rId}"/></a:blipFill>'))
    for fill in ('<a:blip r:link="rId42"/>', f'<a:blip r:embed="{placed._element.blip_rId}"/><a:tile/>'):
        textured = slide.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(1), Inches(4), Inches(2), Inches(1))
        textured._element.spPr.find(qn("a:prstGeom")).addnext(parse_xml(
            f'<a:blipFill {nsdecls("a", "r")}>{fill}</a:blipFill>'))  # a linked picture, a tiled texture: no photo
    placed._element.getparent().remove(placed._element)
    out = io.BytesIO()
    deck.save(out)
    loaded = load(tmp_path, "team.pptx", out.getvalue())
    assert loaded.text == "Our team\n\nAlice, CEO" and loaded.warnings == []
    [portrait] = loaded.images
    assert (portrait.alt, portrait.page, portrait.width) == ("Portrait of Alice", 1, 64)


# --- html and markdown -------------------------------------------------------------------------------------------

def test_html_images_local_data_uri_and_figcaption(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "chart.png").write_bytes(image_bytes("PNG", size=(100, 80)))
    inline = base64.b64encode(image_bytes("JPEG", size=(50, 50), color=BLUE)).decode()
    garbage = base64.b64encode(b"not really an image").decode()
    page = f"""<html><body><nav><img src="img/chart.png" alt="nav logo"></nav>
    <p>Intro paragraph.</p>
    <figure><img src="img/chart.png" alt="Sales chart"><figcaption>Figure 2. Sales</figcaption></figure>
    <p>Logo:<img src="data:image/jpeg;base64,{inline}" title="Company logo"> in a line.</p>
    <p><img src="https://example.com/remote.png"><img src="img/missing.png"><img src="file:///etc/x.png">
    <img src="http://[x/no-url-can-have-this-host.png">
    <img src="data:image/png;base64,{garbage}"></p></body></html>"""
    document = load(tmp_path, "page.html", page.encode())
    assert document.text == "Intro paragraph.\n\nFigure 2. Sales\n\nLogo: in a line."
    chart, logo = document.images
    assert (chart.name, chart.alt, chart.caption) == ("img/chart.png", "Sales chart", "Figure 2. Sales")
    assert document.text[chart.start:chart.end] == "Figure 2. Sales"
    assert (logo.name, logo.alt, logo.width) == ("image 3 (data URI)", "Company logo", 50)
    assert document.text[logo.start:logo.end] == "Logo: in a line."
    assert document.warnings == [
        f"image img/missing.png skipped: {REFUSED}",
        "image file:///etc/x.png skipped: not a local file (file URL), not fetched",
        "image image 8 (data URI) skipped: not an image in a supported format (JPEG, PNG, WEBP, GIF, BMP, TIFF)",
        "2 image(s) at web addresses not fetched (images are read from relative file paths and data: URIs only)"]


def test_markdown_images_span_their_own_place_not_the_same_words_earlier(tmp_path: Path) -> None:
    """An image's span was the first occurrence of its alt text after the image before: here the heading."""
    (tmp_path / "chart.png").write_bytes(image_bytes("PNG", size=(64, 64)))
    (tmp_path / "photo.png").write_bytes(image_bytes("PNG", size=(64, 64), color=BLUE))
    source = ("# Sales chart\n\nThe sales chart shows growth.\n\n| Photo | Note |\n|---|---|\n| Team photo | x |\n\n"
              '![Sales chart](chart.png)\n\n<p>Team photo: <img src="photo.png" alt="Team photo"></p>\n')
    document = load(tmp_path, "report.md", source.encode())
    assert document.text == ("Sales chart\n\nThe sales chart shows growth.\n\nPhoto | Note\nTeam photo | x\n\n"
                             "Sales chart\n\nTeam photo: Team photo")
    assert document.title == "Sales chart"
    chart, photo = document.images
    assert (chart.start, chart.end) == (document.text.rindex("Sales chart"), len(document.text) - 24)
    assert (photo.start, photo.end) == (len(document.text) - 10, len(document.text))


def test_html_images_span_their_own_block_not_the_same_words_earlier(tmp_path: Path) -> None:
    """An image's block was looked for by its words after the last block found: the photo's span was the heading
    above it, and the next images' spans were empty there. Each block's place is now marked as it is rendered."""
    for name, colour in (("a.png", RED), ("b.png", BLUE), ("c.png", WHITE)):
        (tmp_path / name).write_bytes(image_bytes("PNG", size=(60, 40), color=colour))
    page = ("<h2>Team photo</h2><p>Team photo <img src='a.png'></p>"
            "<table><tr><td>Logo</td><td>Logo<br>new <img src='b.png'></td></tr></table>"
            "<p>Last \ufffc0\ufffc</p><div><img src='c.png'></div><p>End</p>")
    document = load(tmp_path, "page.html", page.encode())
    assert document.text == "Team photo\n\nTeam photo\n\nLogo | Logo new\n\nLast \ufffc0\ufffc\n\nEnd"
    photo, logo, empty = document.images
    assert (photo.start, photo.end) == (12, 22)  # the paragraph, not the heading
    assert document.text[logo.start:logo.end] == "Logo new" and logo.start == 31  # its cell, not the one before
    assert (empty.start, empty.end) == (51, 51)  # a block with no text: where the text after it begins


@pytest.mark.parametrize("page, span", [
    ("<table><tr><td>a</td><td>&nbsp;<img src='a.png'></td><td>b</td></tr></table>", ""),  # a spacer in a cell
    ("<table><tr><td>a</td><td>&nbsp;<img src='a.png'> foo</td></tr></table>", "foo"),
    ("<p>&nbsp;<img src='b.png'></p>" * 10 + "<p>Target <img src='a.png'></p>", "Target"),  # lines of a lone space
    ("<p>&nbsp;<img src='a.png'> Photo of the staff</p>", "Photo of the staff"),
    ("<p>前文</p><p>\u3000写真<img src='a.png'>です</p>", "写真です"),  # indented with an ideographic space
    ("<p>x</p><pre>    def f():\n        return 1<img src='a.png'></pre>", "def f():\n        return 1"),
    ("<p>e<img src='a.png'>\u0301 accent</p>", "\u00e9 accent"),  # a combining character after the image
    ("<p>Last words <img src='a.png'></p>\n\n", "Last words"),
])
def test_html_image_marks_change_no_text_and_spans_start_at_the_block(tmp_path: Path, page: str, span: str) -> None:
    """The marks were written before a block's leading spaces (a no-break space kept them from being cleaned away,
    so a spacer cell became a cell, and the places after drifted) and before combining characters."""
    (tmp_path / "a.png").write_bytes(image_bytes("PNG", size=(60, 40)))
    (tmp_path / "b.png").write_bytes(image_bytes("PNG", size=(60, 40), color=BLUE))
    document = load(tmp_path, "page.html", page.encode())
    assert document.text == load(tmp_path, "bare.html", re.sub("<img[^>]*>", "", page).encode()).text
    [image] = [image for image in document.images if image.name == "a.png"]
    assert document.text[image.start:image.end] == span


def test_markdown_images_without_alt_text_stand_where_they_are_shown(tmp_path: Path) -> None:
    """Only an image with alt text had a place: one without stood where the image before it did, at the start of the
    document when none did, and came with the first passage."""
    for name, colour in (("a.png", RED), ("b.png", BLUE), ("c.png", WHITE)):
        (tmp_path / name).write_bytes(image_bytes("PNG", size=(60, 40), color=colour))
    source = ("# Alpha\n\nalpha text.\n\n![](b.png)\n\nbravo text.\n\n<img src='a.png'>\n\n"
              "| x |\n|---|\n| ![](c.png) |\n")
    document = load(tmp_path, "notes.md", source.encode())
    assert document.text == "Alpha\n\nalpha text.\n\nbravo text.\n\nx"
    assert [(image.name, image.start, image.end) for image in document.images] == [
        ("b.png", 20, 20), ("a.png", 33, 33), ("c.png", 34, 34)]  # the text after each, or where the text ends
    for source, text, place in (("Intro.\n\n![](a.png)\n\n\x01 Caption\n", "Intro.\n\n Caption", 9),
                                ("Intro.\n\n![](a.png)\n\n\ufeff\n", "Intro.", 6)):  # what cleaning drops
        document = load(tmp_path, "notes.md", source.encode())
        assert (document.text, document.images[0].start) == (text, place)


def test_markdown_image_places_hold_in_table_cells_and_cannot_be_forged(tmp_path: Path) -> None:
    (tmp_path / "c.png").write_bytes(image_bytes("PNG", size=(64, 64)))
    cell = load(tmp_path, "cell.md", b"| Chart |\n|---|\n| ![Revenue  by region](c.png) |\n")
    assert cell.text == "Chart\nRevenue  by region"
    assert cell.text[cell.images[0].start:cell.images[0].end] == "Revenue  by region"
    # U+FFFC written by character references is the file's own text, not a mark of the rendering
    forged = load(tmp_path, "forged.md", b"![Chart](c.png)\n\nNote &#xfffc;0&#xfffc;x and Chart again.\n")
    assert forged.text == "Chart\n\nNote \ufffc0\ufffcx and Chart again."
    assert (forged.images[0].start, forged.images[0].end) == (0, 5)


def test_an_image_path_longer_than_any_file_path_is_refused_before_it_is_resolved(tmp_path: Path) -> None:
    """Resolving a path takes time quadratic in its length: a 500 KB ``src`` of "a/a/..." took 16 s, and one of a
    few MB would have failed its page on time."""
    src = "a/" * 10_000 + "x.png"
    for name, source in (("page.html", f'<p>Text.</p><img src="{src}" alt="x">'), ("notes.md", f"Text.\n\n![]({src})")):
        document = load(tmp_path, name, source.encode())
        assert document.text == "Text." and not document.images
        [warning] = document.warnings
        assert warning.endswith("skipped: a path of 20,005 characters, longer than a file's path can be")


def test_markdown_images_relative_html_and_missing(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "shot.png").write_bytes(image_bytes("PNG", size=(90, 60)))
    source = """# Guide

See the screen ![The main screen](../img/shot.png "Main window") below.

```markdown
![In a code block](../img/code.png)
```

<img src="../img/shot.png" alt="again"> and ![Gone](missing.png)
"""
    document = load(tmp_path / "docs", "guide.md", source.encode(), root=tmp_path)
    [shot] = document.images  # the <img> shows the same picture again: kept once
    assert (shot.name, shot.alt, shot.caption, shot.width) == ("../img/shot.png", "The main screen", "Main window", 90)
    assert document.text[shot.start:shot.end] == "The main screen"
    assert document.warnings == [f"image missing.png skipped: {REFUSED}"]
    outside = load(tmp_path / "docs", "guide.md", source.encode())  # a source folder of docs/ alone
    assert outside.images == [] and outside.warnings == [f"image ../img/shot.png skipped: {REFUSED}",
                                                          f"image missing.png skipped: {REFUSED}"]


def test_symlink_loop_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    document = load(tmp_path, "page.md", b"![loop](loop.png)\n")
    assert document.text == "loop" and document.images == []
    assert document.warnings == [f"image loop.png skipped: {REFUSED}"]


def test_images_beside_repeated_text_each_point_at_their_own_place(tmp_path: Path) -> None:
    colours = {"a.png": RED, "b.png": BLUE, "c.png": WHITE, "d.png": (20, 200, 20)}
    for name, colour in colours.items():
        (tmp_path / name).write_bytes(image_bytes("PNG", size=(60, 40), color=colour))
    markdown = load(tmp_path, "steps.md", b"Step one.\n\n![Screenshot](a.png)\n\nStep two.\n\n![Screenshot](b.png)\n")
    html = load(tmp_path, "steps.html", b"<p>Intro.</p><p>Photo: <img src='a.png'> <img src='b.png'></p>"
                                        b"<div>Photo: <img src='c.png'><p>Nested photo: <img src='d.png'></p></div>")
    document = Document()
    document.add_paragraph("Intro.")
    for colour in colours.values():
        document.add_paragraph("Photo: ").add_run().add_picture(io.BytesIO(image_bytes("PNG", size=(60, 40), color=colour)))
    out = io.BytesIO()
    document.save(out)
    docx = load(tmp_path, "steps.docx", out.getvalue())

    def spans(loaded: ExtractedDocument) -> list[tuple[str, int]]:
        """Each image's text and where it starts."""
        return [(loaded.text[image.start:image.end], image.start) for image in loaded.images]

    assert markdown.text == "Step one.\n\nScreenshot\n\nStep two.\n\nScreenshot"
    assert spans(markdown) == [("Screenshot", 11), ("Screenshot", 34)]
    # Two images in one paragraph share its span; an image in a block nested in the last one lands inside it.
    assert html.text == "Intro.\n\nPhoto:\n\nPhoto:\n\nNested photo:"
    assert spans(html) == [("Photo:", 8), ("Photo:", 8), ("Photo:\n\nNested photo:", 16), ("Nested photo:", 24)]
    assert docx.text == "Intro.\n\nPhoto:\n\nPhoto:\n\nPhoto:\n\nPhoto:"
    assert spans(docx) == [("Photo:", 8), ("Photo:", 16), ("Photo:", 24), ("Photo:", 32)]


def test_a_jpeg_of_too_many_scans_is_refused_in_a_file_or_a_pdf_and_a_motion_photo_is_not(tmp_path: Path) -> None:
    """libjpeg decodes each scan over the whole image (20,000 of them took 89 s); a PDF's JPEG is decoded by pypdf,
    which skipped the check. Only the first picture's scans count: a phone's motion photo carries megabytes of video
    after its end-of-image marker, where the two bytes of a scan marker occur by chance."""
    from tests.hostile import many_scans_jpeg

    bomb = many_scans_jpeg(64, 300)
    with pytest.raises(ImageError, match="more than 100 scans"):
        decode_image(bomb, "bomb.jpg", max_pixels=10**7)
    app0 = 4 + int.from_bytes(bomb[4:6], "big")  # a stray byte after the first segment, which decoders pass over,
    with pytest.raises(ImageError, match="more than 100 scans"):  # hid every scan from the count
        decode_image(bomb[:app0] + b"\x00" + bomb[app0:], "junk.jpg", max_pixels=10**7)
    video = np.random.default_rng(0).integers(0, 256, 7_000_000, dtype=np.uint8).tobytes()
    assert video.count(b"\xff\xda") > 100
    assert decode_image(image_bytes("JPEG") + video, "motion.jpg", max_pixels=10**7).image.size == (64, 48)
    document = load(tmp_path, "scans.pdf", pdf_bytes([["A page with a picture"]], images=[bomb]))
    assert document.images == [] and any("more than 100 scans" in warning for warning in document.warnings)


def test_images_pillow_would_decode_at_a_cost_out_of_all_proportion_are_refused_from_their_headers() -> None:
    """A 40x40 TIFF listing 5 million strips (28 s, 1.6 GB), a 1x64,000,000 palette PNG (2 GB: a pointer a row in
    each copy), a 5 KB run-length BMP of 64 megapixels (10 s of Pillow's Python decoder), and a WebP at the full
    pixel limit (libwebp holds two canvases: 1.1 GB for 64 megapixels) were each decoded."""
    from tests.hostile import run_length_bmp, tiff_listing_strips

    with pytest.raises(ImageError, match="TIFF lists 100,000 strips or tiles, more than a 40x40 picture can have"):
        decode_image(tiff_listing_strips(40, 40, 100_000), "strips.tif", max_pixels=10**7)
    assert decode_image(tiff_listing_strips(40, 40, 40), "rows.tif", max_pixels=10**7).image.size == (40, 40)
    tall = io.BytesIO()
    Image.new("P", (1, 300_000)).save(tall, "PNG")
    with pytest.raises(ImageError, match="300,000 pixels tall, over 262,144"):
        decode_image(tall.getvalue(), "tall.png", max_pixels=10**7)
    with pytest.raises(ImageError, match="run-length BMP of 6 megapixels, over 4"):
        decode_image(run_length_bmp(3000, 2000), "runs.bmp", max_pixels=10**7)
    assert decode_image(run_length_bmp(300, 200), "small.bmp", max_pixels=10**7).image.size == (300, 200)
    with pytest.raises(ImageError, match="over the limit of 0.0005 .*halved for WebP"):
        decode_image(image_bytes("WEBP", size=(30, 30)), "photo.webp", max_pixels=1000)
    assert decode_image(image_bytes("PNG", size=(30, 30)), "photo.png", max_pixels=1000).image.size == (30, 30)


def test_a_palette_image_with_alpha_keeps_its_colours_when_scaled() -> None:
    """Pillow scales a PA image without its palette: a 3,000 px wide one came out black."""
    stripes = Image.new("P", (3000, 100))
    stripes.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    stripes.paste(1, (1500, 0, 3000, 100))
    out = io.BytesIO()
    stripes.convert("PA").save(out, "TIFF")
    image = decode(out.getvalue())
    assert near(image.getpixel((10, 10)), RED) and near(image.getpixel((image.width - 10, 10)), BLUE)


def test_an_image_description_is_clean_text_whatever_its_loader_left_in_it() -> None:
    """Lone surrogates or NULs in alt text reached the tokenizer (and the database) and ended the whole run."""
    image = ExtractedImage(image=None, sha256="0", name="map", width=1, height=1, start=0, end=5,
                           alt="Map \ud83d\ude00 \ud800\x00", caption="Harbour\x07")
    assert describe(image, "Quay.") == "Map \U0001f600 \ufffd\nHarbour\nQuay."
