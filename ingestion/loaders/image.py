"""Image files (JPEG, PNG, WebP, GIF, BMP, TIFF): no text of their own, one image."""

from __future__ import annotations

from pathlib import Path

from ingestion.loaders.base import Limits, Loader, OnKept
from ingestion.loaders.images import decode_image
from kb.types import ExtractedDocument


class ImageLoader(Loader):
    """The file's one image, decoded and guarded; a file that is not a usable image raises ``ImageError``.

    The text is empty: OCR, when on, fills it later.
    """

    file_type = "image"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        warnings: list[str] = []
        image = decode_image(data, path.name, max_pixels=limits.max_pixels, max_side=limits.max_side,
                             notes=warnings)
        return ExtractedDocument(text="", file_type=self.file_type, images=[image], warnings=warnings)
