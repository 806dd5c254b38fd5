"""PDF pages drawn as pictures by pdfium (pypdfium2, in the ``ocr`` extra), for a scanned page whose picture pypdf
cannot decode (JBIG2 without the ``jbig2dec`` program, a page cut into strips, text drawn as outlines): OCR then
reads the page as it looks."""

from __future__ import annotations

import threading
import time
from typing import Any

from PIL import Image

from kb import optional

BLANK_RANGE = 16  # a drawing whose grey levels all lie within this range is a blank page: nothing to keep
DRAW_SECONDS = 20.0  # pages are drawn for at most this long a document, so that drawing leaves the file's
# budget (file_timeout, 60 s) to the rest of its loading
_LOCK = threading.Lock()  # pdfium is not thread-safe


class PageDrawer:
    """Draws pages of one PDF at ``max_side`` pixels on their longer side, for at most ``DRAW_SECONDS`` of drawing
    in all (the time OCR then takes to read a drawing is not drawing); the document
    is opened by pdfium on the first page asked for. Annotations and form fields are not drawn (their pictures were
    never checked). Does nothing without pypdfium2, or when pdfium counts the pages otherwise than pypdf (``pages``):
    a drawing would land on another page's text.

    Drawing gives up, keeping what was read, rather than failing the document: a page pdfium cannot draw, or
    that needs more memory than is left, stays as it was."""

    def __init__(self, data: bytes, pages: int, max_side: int) -> None:
        self.data = data
        self.pages = pages
        self.max_side = max_side
        self.stopped = not optional.installed("pypdfium2")
        self.spent = 0.0  # seconds spent opening the document and drawing, not reading what was drawn
        self._document: Any = None

    def draw(self, index: int) -> Image.Image | None:
        """Page ``index`` (from 0) as an RGB picture; None when it is blank, pdfium cannot draw it, drawing has
        stopped, or its time is spent."""
        if self.stopped or self.spent > DRAW_SECONDS:
            return None
        started = time.monotonic()
        with _LOCK:
            try:
                if self._document is None and not self._open():
                    return None
                page = self._document[index]
                try:
                    width, height = page.get_size()
                    picture = page.render(scale=self.max_side / max(width, height, 1), draw_annots=False,
                                          may_draw_forms=False).to_pil().convert("RGB")
                finally:
                    page.close()
                low, high = picture.convert("L").getextrema()
            except MemoryError:  # more than the budget leaves: the text and the pictures read are kept
                self.stopped = True
                return None
            except Exception:  # a page pdfium cannot draw stays as it was
                return None
            finally:
                self.spent += time.monotonic() - started
        return None if high - low < BLANK_RANGE else picture

    def _open(self) -> bool:
        """Open the document in pdfium; False (and no more drawing) when it refuses it or counts other pages."""
        self.stopped = True
        import pypdfium2  # imported on first use: most PDFs have a text layer

        try:
            self._document = pypdfium2.PdfDocument(self.data)
        except Exception:  # pdfium refuses a file that pypdf tolerated: its pages stay as they were
            return False
        if len(self._document) != self.pages:
            return False
        self.stopped = False
        return True

    def close(self) -> None:
        if self._document is not None:
            with _LOCK:
                self._document.close()
            self._document = None
