"""PDF pages drawn as pictures by pdfium (pypdfium2, in the ``ocr`` extra), for a scanned page whose picture pypdf
cannot decode (JBIG2 without the ``jbig2dec`` program, a page cut into strips, text drawn as outlines): OCR then
reads the page as it looks."""

from __future__ import annotations

import threading
from typing import Any

from PIL import Image

from kb import optional

BLANK_RANGE = 16  # a drawing whose grey levels all lie within this range is a blank page: nothing to keep
_LOCK = threading.Lock()  # pdfium is not thread-safe


class PageDrawer:
    """Draws pages of one PDF at ``max_side`` pixels on their longer side, at most ``max_pages`` of them; the
    document is opened by pdfium on the first page asked for. Does nothing without pypdfium2."""

    def __init__(self, data: bytes, max_side: int, max_pages: int) -> None:
        self.data = data
        self.max_side = max_side
        self.left = max_pages if optional.installed("pypdfium2") else 0
        self._document: Any = None

    def draw(self, index: int) -> Image.Image | None:
        """Page ``index`` (from 0) as an RGB picture; None when it is blank, pdfium cannot draw it, or the
        allowance of pages is spent."""
        if self.left <= 0:
            return None
        self.left -= 1
        with _LOCK:
            try:
                if self._document is None:
                    import pypdfium2  # imported on first use: most PDFs have a text layer

                    self._document = pypdfium2.PdfDocument(self.data)
            except MemoryError:  # the file is over the memory budget: that is the reason
                raise
            except Exception:  # pdfium refuses a file that pypdf tolerated: its pages stay as they were
                self.left = 0
                return None
            try:
                page = self._document[index]
                try:
                    width, height = page.get_size()
                    picture = page.render(scale=self.max_side / max(width, height, 1)).to_pil().convert("RGB")
                finally:
                    page.close()
            except MemoryError:
                raise
            except Exception:  # a page pdfium cannot draw stays as it was
                return None
        low, high = picture.convert("L").getextrema()
        return None if high - low < BLANK_RANGE else picture

    def close(self) -> None:
        if self._document is not None:
            with _LOCK:
                self._document.close()
            self._document = None
