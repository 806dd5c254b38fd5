"""Each font of a PDF read once: pypdf reads a font's encoding and ToUnicode map again on every page that uses it,
and a Chinese font's map of thousands of entries costs about 30 ms a page (a 2,000-page file: a minute)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import pypdf.generic  # noqa: F401 (it loads pypdf.generic._font, where pypdf 6 and later keep Font)

_FONTS: ContextVar[dict[tuple[int, int], Any] | None] = ContextVar("pdf_fonts", default=None)


def _read_once(read: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """pypdf's ``Font.from_font_resource`` answering from the current document's fonts when there is one."""
    def from_font_resource(cls: Any, font: Any) -> Any:
        fonts, reference = _FONTS.get(), getattr(font, "indirect_reference", None)
        if fonts is None or reference is None:  # outside a load, or a font written inside its page's resources
            return read(cls, font)
        key = (reference.idnum, reference.generation)
        if key not in fonts:
            fonts[key] = read(cls, font)
        return fonts[key]

    from_font_resource.reads_once = True  # type: ignore[attr-defined]
    return from_font_resource


def _install() -> bool:
    """Wrap pypdf's font reader (pypdf 6 and later; older ones read fonts as before). True when it is wrapped."""
    font = getattr(sys.modules.get("pypdf.generic._font"), "Font", None)
    current = vars(font).get("from_font_resource") if font is not None else None
    if not isinstance(current, classmethod):
        return False
    if not getattr(current.__func__, "reads_once", False):
        font.from_font_resource = classmethod(_read_once(current.__func__))
    return True


INSTALLED = _install()


@contextmanager
def fonts_read_once() -> Iterator[None]:
    """Within it, each font of the document being read is read once (its pages share the result)."""
    token = _FONTS.set({})
    try:
        yield
    finally:
        _FONTS.reset(token)
