"""Test helper: text rendered into images with real fonts, for OCR and image-loader tests."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
# Fonts with Chinese glyphs: an explicit TEST_CJK_FONT, common system paths, then font packages from PyPI.
_CJK_SYSTEM_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)
_CJK_FONT_PACKAGES = {
    "rinoh_typeface_notosanscjk": "notosanscjkjp-regular.otf",
    "paperang_p2_fonts_cjk": "fonts/wqy-microhei.ttc",
    "noto_cjk_sans_otc": "NotoSansCJK-Regular.ttc",
}


def cjk_font() -> Path | None:
    """A font file that has Chinese glyphs, or None; packages are located without being imported."""
    candidates = [os.environ.get("TEST_CJK_FONT", ""), *_CJK_SYSTEM_FONTS]
    for package, file in _CJK_FONT_PACKAGES.items():
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            candidates.extend(str(Path(folder) / file) for folder in spec.submodule_search_locations)
    return next((Path(candidate) for candidate in candidates if candidate and Path(candidate).is_file()), None)


def render_lines(lines: list[str], font: Path = LATIN_FONT, size: tuple[int, int] = (1000, 700),
                 font_size: int = 72) -> Image.Image:
    """Black lines of text on a white RGB image, left-aligned and spread down the middle, like a photographed sign."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    face = ImageFont.truetype(str(font), font_size)
    step = int(font_size * 2.2)
    top = (size[1] - step * (len(lines) - 1) - font_size) // 2
    for index, line in enumerate(lines):
        draw.text((font_size, top + index * step), line, font=face, fill="black")
    return image
