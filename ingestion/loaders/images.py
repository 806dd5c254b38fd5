"""Decoding images with Pillow, guarded: supported formats only, size checked from the header before decoding."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import posixpath
import re
import stat
import struct
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ingestion.loaders.base import CappedWarnings, Limits, LoadError, OnKept, Stopwatch
from ingestion.loaders.ooxml import UNREADABLE
from kb.containment import REFUSED, FileTooLargeError, RefusedFileError, inside, read_inside
from kb.types import ExtractedImage, ReferencedFile

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
_WHITE = (255, 255, 255)
# Scans of one JPEG: a progressive one has about ten, and libjpeg decodes each over the whole image (20,000 copies of
# one scan in 2 MB took 89 s).
MAX_JPEG_SCANS = 100
MAX_ROWS = 2**18  # Pillow keeps a pointer to each row of each copy: a 1x64,000,000 picture took 512 MB a copy
_MAX_RLE_PIXELS = 4_000_000  # Pillow decodes run-length BMPs in Python
_BMP_RUN_LENGTH = (1, 2)  # BI_RLE8, BI_RLE4
_TIFF_OFFSETS = (273, 324)  # StripOffsets, TileOffsets
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # markers without a length: TEM and the restart markers
_ORIENTATION = 0x0112
_TURNED = frozenset({5, 6, 7, 8})  # EXIF orientations that rotate by 90 degrees: width and height swap
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}  # what makes an image with this EXIF orientation upright
# A document's images are decoded for at most this long (OCR reading them apart), so that they leave the file's
# budget (file_timeout, 60 s) to the rest of its loading: the time a megapixel takes differs tenfold between formats.
IMAGE_SECONDS = 20.0
# A paragraph starting so, right after a picture, is its caption: "Figure", "Fig." or 图 and a number.
# A caption's label: "Figure 3", "Fig. 2", "FIGURE A.1", "Figure IV", "图 1" (not "Figures for Q3 are below").
_FIGURE_LABEL = re.compile(r"(?:figure|fig\.?)\s*(?:[0-9]|[a-z]\.?[0-9]|[ivxlc]+\b)|图\s*[0-9０-９一二三四五六七八九十]",
                           re.IGNORECASE)
Described = Callable[[], dict[str, Any]]  # the fields of an image that is kept, found only then
# A part a message's body names (its ``src``): a key telling it from the others, and a reader of its bytes given the
# most it may read; None for a name to pass over, ``ImageError`` for one to refuse.
PartReader = Callable[[str], tuple[str, Callable[[int], bytes]] | None]
_MAX_PATH_BYTES = 4096  # Linux's PATH_MAX: no file has a longer path
# A page's files recorded to read it again when one changes: 20,000 missing pictures named from a deep folder made a
# row of 76 MB, read at every run. Far more than the pictures a page keeps (max_images).
_MAX_REFERENCES = 1000
_MAX_REFERENCE_CHARS = 256 * 1024
# Resolving a path costs a system call per folder it names: 2,400 references of 2,040 folders each took 24 s.
_MAX_RESOLVED_CHARS = 2**20
_DATA_URI = re.compile(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,(.*)", re.DOTALL | re.IGNORECASE)


class ImageError(LoadError):
    """An image that cannot be used; the message is the reason a person reads."""


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT = (b"tEXt", b"zTXt", b"iTXt")
_STREAM_REPR = re.compile(r"file '<_io\.BytesIO object at 0x[0-9a-f]+>'")


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """``data`` opened lazily (nothing decoded yet), refused unless a supported format within ``max_pixels``."""
    if not data:
        raise ImageError("empty image")
    refuse_many_strips(data)
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own MAX_IMAGE_PIXELS; ours (max_pixels) is checked below instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(_without_refused_png_text(data)), formats=FORMATS)
    except Image.DecompressionBombError as error:  # far over Pillow's own limit, which it checks first
        raise ImageError(f"refused before decoding as a possible decompression bomb ({error})") from error
    except UnidentifiedImageError as error:
        raise ImageError(f"not an image in a supported format ({', '.join(FORMATS)})") from error
    except MemoryError:  # the file is over the memory budget: that is the reason
        raise
    except Exception as error:  # a header Pillow recognises but cannot parse
        raise ImageError(f"corrupt or truncated image: {describe_error(error)}") from error
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    limit = max_pixels // 2 if image.format == "WEBP" else max_pixels  # libwebp holds two canvases, Pillow a third
    if width * height > limit:
        raise ImageError(f"image is {width}x{height} = {width * height / 1e6:.0f} megapixels, over the limit of "
                         f"{limit / 1e6:g} (max_image_pixels{', halved for WebP' if limit < max_pixels else ''}); "
                         "refused before decoding as a possible decompression bomb")
    _refuse_tall(height)
    if image.format == "BMP" and image.info.get("compression") in _BMP_RUN_LENGTH and width * height > _MAX_RLE_PIXELS:
        raise ImageError(f"run-length BMP of {width * height / 1e6:.0f} megapixels, over {_MAX_RLE_PIXELS / 1e6:g}: "
                         "its decoder pads rows pixel by pixel (5 KB took 10 s); refused before decoding")
    if image.format in ("JPEG", "MPO"):
        refuse_many_scans(data)
    return image


def _refuse_tall(height: int) -> None:
    if height > MAX_ROWS:
        raise ImageError(f"image is {height:,} pixels tall, over {MAX_ROWS:,}: each row costs a pointer in every "
                         "copy of it (1x64,000,000 took 2 GB); refused before decoding")


def refuse_many_strips(data: bytes) -> None:
    """``ImageError`` for a TIFF whose first page lists more strips or tiles than its size can have (Pillow makes
    and decodes each one, wrapping past the last row: a 40x40 picture listing 5 million strips took 28 s and
    1.6 GB); read from its header before Pillow opens it. Other data, and a BigTIFF, as it is."""
    order = {b"II*\0": "<", b"MM\0*": ">"}.get(data[:4])
    if order is None or len(data) < 8:
        return
    at = int.from_bytes(data[4:8], "little" if order == "<" else "big")
    if at + 2 > len(data):
        return
    entries, tags = struct.unpack_from(f"{order}H", data, at)[0], {}
    for entry in range(at + 2, min(at + 2 + 12 * entries, len(data) - 11), 12):
        tag, kind, count = struct.unpack_from(f"{order}HHI", data, entry)
        value = struct.unpack_from(f"{order}H" if kind == 3 else f"{order}I", data, entry + 8)[0]
        tags[tag] = count if tag in _TIFF_OFFSETS else value
    width, height, samples = tags.get(256, 1), tags.get(257, 1), max(tags.get(277, 1), 1)
    _refuse_tall(height)  # before Pillow lists a strip a row: 1,000,000 of them took 45 s to open
    most = max(height, -(-width // 16) * -(-height // 16)) * samples  # a strip a row, or tiles of 16x16 at least
    listed = max((tags.get(tag, 0) for tag in _TIFF_OFFSETS), default=0)
    if listed > most:
        raise ImageError(f"TIFF lists {listed:,} strips or tiles, more than a {width}x{height} picture can have "
                         f"({most:,}); refused before decoding")


def _without_refused_png_text(data: bytes) -> bytes:
    """A PNG without the text chunks Pillow would refuse the whole picture for (compressed past its
    ``MAX_TEXT_CHUNK`` or in a way it lacks, or past its ``MAX_TEXT_MEMORY`` in all); the others, which Pillow reads
    (XMP holds a screenshot's orientation), kept. Other data, and a PNG without such chunks, as it is. No more than
    ``MAX_TEXT_MEMORY`` is inflated in all, refused chunks counted: 12 MB of small chunks each inflating past
    ``MAX_TEXT_CHUNK`` took 30 s; the compressed chunks past it are left out unread."""
    if not data.startswith(_PNG_SIGNATURE) or not any(kind in data for kind in _PNG_TEXT):
        return data
    pieces, position, text, inflated, refused = [data[:8]], 8, 0, 0, False
    while position + 8 <= len(data):
        length, kind = int.from_bytes(data[position:position + 4], "big"), data[position + 4:position + 8]
        end = position + 12 + length  # length, type, data, checksum
        if end > len(data):
            break
        size, spent = _png_text_size(kind, data[position + 8:end - 4], PngImagePlugin.MAX_TEXT_MEMORY - inflated) \
            if kind in _PNG_TEXT else (0, 0)
        inflated += spent
        if size is None or text + size > PngImagePlugin.MAX_TEXT_MEMORY:
            refused = True
        else:
            text += size
            pieces.append(data[position:end])
        position = end
    return b"".join([*pieces, data[position:]]) if refused else data


def _png_text_size(kind: bytes, chunk: bytes, allowance: int) -> tuple[int | None, int]:
    """The text a PNG text chunk holds, in bytes (read compressed within Pillow's ``MAX_TEXT_CHUNK`` and the
    ``allowance`` left to inflate), as Pillow counts it against ``MAX_TEXT_MEMORY`` (None for one Pillow refuses,
    or past the allowance), and the bytes inflated to tell."""
    _, _, text = chunk.partition(b"\0")
    if kind == b"zTXt":
        if text[:1] not in (b"", b"\0"):  # a compression method other than zlib's
            return None, 0
        text = text[1:]
    elif kind == b"iTXt":
        flags = text[:2]
        parts = text[2:].split(b"\0", 2)
        if flags[:1] in (b"", b"\0") or flags[1:2] != b"\0" or len(parts) < 3:
            return len(text), 0  # not compressed, or in a way Pillow passes over
        text = parts[2]
    else:
        return len(text), 0
    if allowance <= 0:
        return None, 0
    decompressor = zlib.decompressobj()
    try:
        plain = decompressor.decompress(text, min(PngImagePlugin.MAX_TEXT_CHUNK, allowance))
    except zlib.error:
        return 0, 0  # Pillow reads it as no text
    return None if decompressor.unconsumed_tail else len(plain), len(plain)


def refuse_many_scans(data: bytes) -> None:
    """``ImageError`` for JPEG ``data`` whose first picture has more than ``MAX_JPEG_SCANS`` scans."""
    if (scans := jpeg_scans(data)) > MAX_JPEG_SCANS:
        raise ImageError(f"JPEG of more than {MAX_JPEG_SCANS} scans ({scans:,} counted): each is decoded over the "
                         "whole image; refused before decoding")


def jpeg_scans(data: bytes) -> int:
    """The scans of the first picture in JPEG ``data``, found by walking its segments to its end-of-image marker
    (and no further than one past ``MAX_JPEG_SCANS``): what a segment holds (an EXIF thumbnail) and what follows
    the picture (a phone's motion-photo video, an MPO's other pictures) are not its scans. Stray bytes between
    segments are passed over, as decoders pass over them (one such byte hid 2,000 scans, decoded for 27 s)."""
    scans, at, end = 0, 2, len(data)
    while at + 1 < end and scans <= MAX_JPEG_SCANS:
        if data[at] != 0xFF:
            at = data.find(b"\xff", at)
            if at < 0:
                break
            continue
        marker = data[at + 1]
        if marker == 0xFF:  # a fill byte before a marker
            at += 1
        elif marker == 0x00:  # no marker: a stray 0xFF
            at += 2
        elif marker == 0xD9:  # end of image
            break
        elif marker in _STANDALONE:
            at += 2
        else:
            at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
            if marker == 0xDA:  # start of scan: its coded data runs to the next marker not stuffed or a restart
                scans += 1
                at = _next_marker(data, at)
    return scans


def _next_marker(data: bytes, at: int) -> int:
    """Where the marker after the coded data starting at ``at`` begins (the end of ``data`` if none)."""
    while (at := data.find(b"\xff", at)) >= 0 and at + 1 < len(data):
        following = data[at + 1]
        if following == 0xFF:  # fill bytes, then a marker
            at += 1
        elif following == 0 or 0xD0 <= following <= 0xD7:  # a stuffed 0xFF, a restart marker
            at += 2
        else:
            return at
    return len(data)


def decode_image(data: bytes, name: str, *, max_pixels: int, max_side: int = 2048,
                 notes: list[str] | None = None) -> ExtractedImage:
    """The image in ``data``: RGB, fully loaded, EXIF-rotated, longest side at most ``max_side``.

    ``width``/``height`` are the original's as displayed; what was simplified (an animation reduced to its
    first frame) is appended to ``notes``.
    """
    return _decode(open_image(data, max_pixels=max_pixels), data, name, max_side, notes)


def _decode(image: Image.Image, data: bytes, name: str, max_side: int, notes: list[str] | None,
            sha256: str | None = None) -> ExtractedImage:
    """Decode, make RGB within ``max_side`` (see ``small_rgb``) and upright."""
    width, height = image.size
    later = _later_frames(image, name)
    if later is not None and notes is not None:
        notes.append(later)
    image, turned = upright_rgb(image, max_side)
    if turned:
        width, height = height, width
    return ExtractedImage(image=image, sha256=sha256 or hashlib.sha256(data).hexdigest(), name=name, width=width,
                          height=height)


def _later_frames(image: Image.Image, name: str) -> str | None:
    """A note on the frames or pages past ``image``'s first, which are not used; None when it has none. A TIFF's
    pages and a GIF's frames are not counted (Pillow reads them all to count: 100,000 TIFF pages took 50 s, 4
    million GIF frames 9 s), and a broken later frame costs only itself (it failed the picture, and the document
    that held it)."""
    try:
        if image.format in ("TIFF", "GIF"):  # counted by reading them all (a GIF of 4 million frames took 9 s)
            several = getattr(image, "is_animated", False)
            return f"{name}: several {'pages' if image.format == 'TIFF' else 'frames'}; only the first is used" \
                if several else None
        frames = getattr(image, "n_frames", 1)
        return f"{name}: {frames} frames (animated or multi-page); only the first is used" if frames > 1 else None
    except MemoryError:  # the file is over the memory budget: that is the reason
        raise
    except Exception as error:  # Pillow reports a broken frame with many exception types
        try:
            image.seek(0)
        except Exception as again:
            raise ImageError(f"corrupt or truncated image: {describe_error(again)}") from again
        return f"{name}: frames after the first cannot be read ({describe_error(error)}); only the first is used"


def upright_rgb(image: Image.Image, max_side: int = 2048) -> tuple[Image.Image, bool]:
    """``image`` decoded, RGB within ``max_side`` (see ``small_rgb``) and turned upright by its EXIF orientation; and
    whether that turned it a quarter (its width and height as displayed swap)."""
    try:
        orientation = image.getexif().get(_ORIENTATION)
        if image.format == "JPEG":
            image.draft(None, (max_side, max_side))  # decode at a reduced scale: much faster for big photos
        image.load()
        image = small_rgb(image, max_side)
        if orientation in _TRANSPOSE:
            image = image.transpose(_TRANSPOSE[orientation])
    except MemoryError:  # the file is over the memory budget: that is the reason
        raise
    except Exception as error:  # Pillow reports truncated or corrupt data with OSError, SyntaxError, ValueError...
        raise ImageError(f"corrupt or truncated image: {describe_error(error)}") from error
    return image, orientation in _TURNED


def to_rgb(image: Image.Image) -> Image.Image:
    """An RGB image: transparency composited on white, 16-bit and float greys scaled into 8 bits."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _grey_to_8bit(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, _WHITE)
        image.paste(rgba, mask=rgba.getchannel("A"))
        return image
    return image if image.mode == "RGB" else image.convert("RGB")


def _grey_to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float grey image as 8-bit grey: 16-bit divided down, others stretched to their range."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scaled = values / 257.0
    else:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def small_rgb(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` as RGB within ``max_side``, scaled down before any conversion, so that converting costs
    preview-size memory, not full-size (palette and 1-bit images are scaled once their colours are real ones)."""
    if image.mode not in ("P", "PA", "1"):  # (Pillow scales a PA image without its palette: black)
        image = bounded(image, max_side)
    return bounded(to_rgb(image), max_side)


def bounded(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` scaled down (never up) so that its longest side is at most ``max_side``.

    16-bit greys, which Pillow's Lanczos filter does not take, are averaged down by boxes.
    """
    if max(image.size) > max_side:
        if image.mode.startswith("I;16"):
            scale = max_side / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            return image.resize(size, Image.Resampling.BOX)
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def thumbnail_jpeg(image: Image.Image, max_side: int = 256, quality: int = 80) -> bytes:
    """JPEG bytes of a small preview of ``image``, stored so a person can see an embedded image."""
    preview = to_rgb(image).copy()
    preview.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    preview.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def describe_error(error: BaseException) -> str:
    """An error's message on one line (lxml's may hold line breaks), or its type's name when it has none; the
    in-memory stream a library names ("file '<_io.BytesIO object at 0x...>'") becomes "the file"."""
    return _STREAM_REPR.sub("the file", " ".join(str(error).split())) or type(error).__name__


class EmbeddedImages:
    """Collects the images embedded in one document within ``limits``; an image that is skipped never fails the
    document, it becomes a warning (tiny decorations and repeats are skipped quietly, and counted).

    Each distinct picture is decoded once: its bytes are hashed first, and a repeat only counts against
    ``max_images``. Referenced files are read under the containment rule, inside ``root``, each file once. Each
    image kept is given to ``on_kept`` at once; its pixels count against ``max_total_pixels`` at the size it leaves
    it. No image is decoded once ``IMAGE_SECONDS`` have passed since the first was, the time ``on_kept`` took apart
    (and the decoding of a scanned page it reads, see ``decoding``). Past those limits a scanned page that
    ``on_kept`` reads is still kept, ``text_only``: its text is what a scan is read for, and it costs no picture.
    """

    def __init__(self, limits: Limits, warnings: list[str], root: Path, on_kept: OnKept | None = None,
                 package: zipfile.ZipFile | None = None, parts: PartReader | None = None) -> None:
        self.limits = limits
        self.warnings = warnings
        self.root = root
        self.on_kept = on_kept
        self.package = package  # a zipped book whose pages name its own files (an EPUB): read from it, not disk
        self.parts = parts  # an e-mail, whose body names its own parts ("cid:"): read from them, never from disk
        self.images: list[ExtractedImage] = []
        self._kept: set[str] = set()  # hashes of the pictures kept
        self._seen: set[str] = set()  # hashes of every picture looked at, kept or not
        self._files: dict[str, str | ImageError] = {}  # referenced files by real path: their hash, or the refusal
        self._references: dict[str, ReferencedFile] = {}  # those in the source folder, as they were when read
        self._real_root: str | None = None  # the source folder's real path, found once
        self._real_paths: dict[str, str] = {}  # paths the document names, resolved (each once)
        self._resolved_chars = 0
        self._reference_chars = 0
        self._bytes_read = 0
        self._shown = 0  # references counted against max_images: pictures kept, and their repeats
        self._pixels = 0  # of the pictures held
        self._began: float | None = None  # when the first image was to be decoded
        self._off_clock = Stopwatch()  # on_kept (OCR) and reading steps: off the image clock
        self._tiny = 0
        self._dropped = 0
        self._text_only = 0
        self._remote = 0
        self._skipped = CappedWarnings(warnings, "{} more image(s) skipped")

    def _note_reference(self, named: str, real: str) -> None:
        """Record the file a page names, as named (a link, retargeted or replaced, changes it) and as what it
        resolves to, where each lies in the source folder, before it is read (a change while it is read is seen by
        the next run); at most ``_MAX_REFERENCES`` of them, and ``_MAX_REFERENCE_CHARS`` of their paths."""
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        for path in dict.fromkeys((named, real)):
            if path in self._references or not inside(path, self._real_root):
                continue
            if path == named and not inside(self._real_path(os.path.dirname(named)), self._real_root):
                continue  # its folder is a link out of the source: its size and time are not the folder's to tell
            if len(self._references) >= _MAX_REFERENCES or self._reference_chars + len(path) > _MAX_REFERENCE_CHARS:
                return
            self._reference_chars += len(path)
            self._references[path] = referenced_file(path)

    def _real_path(self, path: str) -> str:
        """``os.path.realpath(path)``, each path once, within ``_MAX_RESOLVED_CHARS`` of paths per document."""
        found = self._real_paths.get(path)
        if found is None:
            self._resolved_chars += len(path)
            if self._resolved_chars > _MAX_RESOLVED_CHARS:
                raise ImageError(f"the document names more than {_MAX_RESOLVED_CHARS:,} characters of file paths")
            found = self._real_paths[path] = os.path.realpath(path)
        return found

    @property
    def references(self) -> list[ReferencedFile]:
        """The files of the source folder the document named, read or not (one not there yet may come)."""
        return list(self._references.values())

    @property
    def full(self) -> bool:
        return self._limit() is not None

    def takes(self, scanned_page: bool = False) -> bool:
        """Whether an image would be kept now: within the document's limits, or a scanned page ``on_kept`` reads,
        for its text only."""
        return not self.full or (scanned_page and self.on_kept is not None and self.on_kept.reads_scans)

    def _decoding_seconds(self) -> float:
        """The time on the image clock: since the first image was to be decoded, less what was held off it."""
        return time.monotonic() - self._began - self._off_clock.seconds if self._began is not None else 0.0

    def _limit(self) -> str | None:
        """The document's limit on images that is reached, if one is."""
        if self._shown >= self.limits.max_images:
            return f"at most {self.limits.max_images} images per document, repeats included"
        if self._pixels >= self.limits.max_total_pixels:
            return f"at most {self.limits.max_total_pixels / 1e6:g} megapixels of pictures held per document"
        if self._decoding_seconds() > IMAGE_SECONDS:
            return f"at most {IMAGE_SECONDS:g} s of decoding images per document"
        return None

    def wants(self, name: str, width: int, height: int, scanned_page: bool = False) -> bool:
        """Whether an image of this (header) size is worth decoding (see ``takes``); says why when it is not."""
        if not self.takes(scanned_page):
            self.beyond_limits(1, scanned_page)
            return False
        if min(width, height) < self.limits.min_side:
            self._tiny += 1
            return False
        if width * height > self.limits.max_pixels:
            self.skip(name, f"{width}x{height} is over the limit of {self.limits.max_pixels / 1e6:g} megapixels "
                      "(max_image_pixels)")
            return False
        if self._began is None:
            self._began = time.monotonic()
        return True

    def _repeat(self, sha256: str) -> bool:
        """True when a picture with these bytes was already looked at; a repeat of a kept one counts as shown."""
        if sha256 not in self._seen:
            self._seen.add(sha256)
            return False
        if sha256 in self._kept:
            if self.full:
                self._dropped += 1
            else:
                self._shown += 1
        return True

    def add_bytes(self, data: bytes, name: str, sha256: str | None = None, described: Described | None = None,
                  **fields: Any) -> None:
        """Decode an embedded image file's bytes and keep it, unless it is a repeat or is skipped (with a warning).

        ``sha256`` spares hashing bytes whose hash the caller already has; ``described`` gives more fields, called
        only for an image that is kept (finding its span in the text costs more than refusing it).
        """
        sha256 = sha256 or hashlib.sha256(data).hexdigest()
        if self._repeat(sha256):
            return
        try:
            image = open_image(data, max_pixels=self.limits.max_pixels)
            if self.wants(name, *image.size):
                decoded = _decode(image, data, name, self.limits.max_side, self.warnings, sha256)
                self.keep(decoded, **fields, **(described() if described else {}))
        except ImageError as error:
            self.skip(name, str(error))

    def add_decoded(self, image: Image.Image, data: bytes, name: str, **fields: Any) -> None:
        """Keep an image another library already decoded (a PDF's); ``data`` are the bytes it came from."""
        width, height = image.size  # before ``bounded``, which may scale ``image`` itself down
        try:
            rgb = small_rgb(image, self.limits.max_side)
        except MemoryError:  # the file is over the memory budget: that is the reason
            raise
        except Exception as error:  # odd modes or broken pixel data from the PDF
            self.skip(name, f"cannot convert to RGB: {describe_error(error)}")
            return
        self.keep(ExtractedImage(image=rgb, sha256=hashlib.sha256(data).hexdigest(), name=name, width=width,
                                 height=height), **fields)

    def add_reference(self, src: str, folder: PurePath, name: str, described: Described | None = None,
                      **fields: Any) -> None:
        """Keep the image an HTML ``src`` or a Markdown link names (see ``read_reference``); an empty ``src`` is
        ignored, and images on other sites are only counted: nothing is fetched. ``described``: see ``add_bytes``."""
        src = src.strip()
        if not src:
            return
        if _is_remote(src):
            self._remote += 1
            return
        if self.full:
            self._dropped += 1
            return
        try:
            data = self._read(src, folder)
        except ImageError as error:
            self.skip(name, str(error))
            return
        if data is not None:
            self.add_bytes(data, name, described=described, **fields)

    def _read(self, src: str, folder: PurePath) -> bytes | None:
        """The bytes ``src`` names, each file read once per document, all of them within ``max_total_bytes``;
        None for a file met before (a repeat is counted; a refusal was reported once). In a package, ``folder``
        is the page's folder inside it, and only its own files are read."""
        if src.lower().startswith("data:"):
            return _data_uri(src, self.limits)
        if self.parts is not None:
            part = self.parts(src)
            if part is None:
                return None
            key, read = part
        elif self.package is None and not self.limits.references:
            raise ImageError("names a file, and an attachment has no folder to read it from")
        elif self.package is not None:
            key = _package_member(self.package, src, folder)
            package = self.package

            def read(limit: int) -> bytes:
                if package.getinfo(key).file_size > limit:
                    raise ImageError(f"over {limit / 2**20:g} MB")
                try:
                    return package.read(key)
                except UNREADABLE as error:
                    raise ImageError(f"cannot be unpacked: {describe_error(error)}") from error
        else:
            path = local_path(src, Path(folder))
            key = self._real_path(str(path))

            def read(limit: int) -> bytes:
                return read_reference(path, self.root, limit)
        if key in self._files:
            found = self._files[key]
            if isinstance(found, str) and self.parts is None:  # (a message's part shown again is not counted:
                self._repeat(found)  # a logo in every message of a thread took the allowance from the attachments)
            return None
        if self.package is None and self.parts is None:
            self._note_reference(os.path.normpath(path), key)
        left = self.limits.max_total_bytes - self._bytes_read
        try:
            data = read(min(self.limits.max_bytes, left))
        except ImageError as error:
            if left < self.limits.max_bytes and str(error) != REFUSED:
                error = ImageError(f"over the {self.limits.max_total_bytes / 2**20:g} MB of image files one "
                                   "document may reference")
            self._files[key] = error
            raise error from None
        self._bytes_read += len(data)
        self._files[key] = hashlib.sha256(data).hexdigest()
        return data

    def keep(self, image: ExtractedImage, **fields: Any) -> None:
        self._seen.add(image.sha256)
        if image.sha256 in self._kept:
            return  # the same picture again (a logo on every page): kept once, where it first appears
        self._kept.add(image.sha256)
        kept = image.model_copy(update=fields)
        kept.text_only = kept.scanned_page and self.full and self.takes(scanned_page=True)  # past them, but read
        if kept.text_only:
            self._text_only += 1
        else:
            self._shown += 1
        if self.on_kept is not None:
            with self._off_clock.running():
                self.on_kept(kept)  # which may read its text and cut it down
        if not kept.text_only:
            self._pixels += kept.image.width * kept.image.height
        self.images.append(kept)

    @contextmanager
    def decoding(self, scanned_page: bool) -> Iterator[None]:
        """Holds decoding a picture another library decodes (a PDF's) and keeping it: a scanned page that
        ``on_kept`` reads is decoded within its reading step, off the image clock (a long scan at 300 dpi spent the
        document's 20 s of decoding by page 95, and the rest of it went unread)."""
        if self.on_kept is None:
            yield
            return
        with self.on_kept.reading(scanned_page) as step, self._off_clock.running() if step else nullcontext():
            yield

    def beyond_limits(self, count: int, scanned_page: bool = False) -> None:
        """Count ``count`` images met once the document's limits were reached, unlooked at (see ``finish``); a
        scanned page's are told to ``on_kept`` too, as pages its OCR passed over."""
        self._dropped += count
        if scanned_page and self.on_kept is not None:
            self.on_kept.passed_over(count)

    def skip(self, name: str, reason: str) -> None:
        self._skipped.add(f"image {name[:200]} skipped: {reason}")

    def finish(self) -> list[ExtractedImage]:
        """The images kept, after adding the summary warnings."""
        self._skipped.finish()
        if self._tiny:
            self.warnings.append(f"{self._tiny} image(s) smaller than {self.limits.min_side} px on a side skipped "
                                 "(min_image_side)")
        if self._dropped:
            self.warnings.append(f"{self._dropped} image(s) beyond the first {self._shown} skipped ({self._limit()})")
        if self._text_only:
            self.warnings.append(f"{self._text_only} scanned page(s) beyond the first {self._shown} images kept for "
                                 f"their text only, without their pictures ({self._limit()})")
        if self._remote and self.parts is None:  # (an e-mail's: tracking pixels and logos, which mail clients block)
            self.warnings.append(f"{self._remote} image(s) at web addresses not fetched (images are read from "
                                 "relative file paths and data: URIs only)")
        return self.images


def is_figure_caption(text: str) -> bool:
    """Whether a paragraph right after a picture is its caption, by its label ("Figure 3", "Fig. 2", "图 1")."""
    return _FIGURE_LABEL.match(text.strip()) is not None


def picture_span(held: tuple[int, int] | None, captioned: tuple[int, int] | None,
                 before: tuple[int, int] | None) -> tuple[int, int]:
    """The span of the block holding a picture (``held``) through its caption; for a picture alone in its
    paragraph and without caption, the empty span after ``before``, the last block with text before it."""
    if held is None and captioned is None:
        end = before[1] if before is not None else 0
        return end, end
    return (held or captioned)[0], (captioned or held)[1]  # type: ignore[index]


def _is_remote(src: str) -> bool:
    """A URL on a network, or a path from a web site's root: pages link to these, but they are not local files."""
    try:
        parts = urlsplit(src)
    except ValueError:  # a host no URL can have ("http://[x/a.png" lost the whole page): on a network all the same
        return True
    return bool(parts.netloc) or parts.scheme.lower() in ("http", "https", "ftp") or src.startswith("/")


def referenced_file(path: str) -> ReferencedFile:
    """The file at ``path`` as it is now (its link, if it is one, not followed): size and modification time; -1
    where there is none, or where it is no file (a folder's time changes with every file added to it)."""
    try:
        status = os.lstat(path)
    except (OSError, ValueError):
        return ReferencedFile(path=path)
    if not (stat.S_ISREG(status.st_mode) or stat.S_ISLNK(status.st_mode)):
        return ReferencedFile(path=path)
    return ReferencedFile(path=path, size=status.st_size, mtime_ns=status.st_mtime_ns)


def local_path(src: str, folder: Path) -> Path:
    """The file an HTML ``src`` or Markdown image link names, relative to the document's ``folder``.

    Nothing is ever fetched from a network: URLs with a scheme and absolute paths are refused.
    """
    parts = urlsplit(src)
    if parts.scheme or parts.netloc:
        raise ImageError(f"not a local file ({parts.scheme or 'network'} URL), not fetched")
    relative = unquote(parts.path)
    if not relative or Path(relative).is_absolute() or "\0" in relative:
        raise ImageError("absolute paths are not followed; use a path relative to the document")
    if len(relative.encode(errors="replace")) > _MAX_PATH_BYTES:  # resolving it would take time quadratic in it
        raise ImageError(f"a path of {len(relative):,} characters, longer than a file's path can be")
    return folder / relative


def _package_member(package: zipfile.ZipFile, src: str, folder: PurePath) -> str:
    """The member of a zipped book a page's ``src`` names, relative to the page's ``folder`` inside it; one outside
    the book or not in it is refused."""
    parts = urlsplit(src)
    if parts.scheme or parts.netloc:
        raise ImageError(f"not in the file ({parts.scheme or 'network'} URL), not fetched")
    name = posixpath.normpath(posixpath.join(folder.as_posix(), unquote(parts.path)))
    try:
        package.getinfo(name)
    except KeyError:
        raise ImageError("not a file inside the book") from None
    return name


def read_reference(path: Path, root: Path, max_bytes: int) -> bytes:
    """The bytes of a referenced image file under the containment rule: inside ``root``, a regular file, opened
    without following a symlink; every refusal gives the same reason, whatever the file is or whether it exists."""
    try:
        return read_inside(root, path, max_bytes)
    except RefusedFileError as error:
        raise ImageError(REFUSED) from error
    except FileTooLargeError as error:
        raise ImageError(str(error)) from error


def _data_uri(src: str, limits: Limits) -> bytes:
    found = _DATA_URI.match(src.strip())
    if found is None or not found.group(3):
        raise ImageError("data URI is not base64-encoded image data")
    payload = re.sub(r"\s+", "", unquote(found.group(4)))
    if len(payload) * 3 // 4 > limits.max_bytes:
        raise ImageError(f"data URI holds over {limits.max_bytes / 2**20:g} MB")
    try:
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ImageError("data URI has invalid base64") from error
