"""The largest picture a JBIG2 stream (as a PDF embeds it: segments without a file header) declares, read from its
segment headers before anything decodes it: a PDF may declare an image 100 pixels wide whose JBIG2 data says
60,000, which pdfium then decodes."""

from __future__ import annotations

import struct

_PAGE_INFORMATION = 48
_END_OF_FILE = 51
# Region segments (text, halftone, generic and generic refinement; intermediate, immediate and lossless) open with
# the region's width and height.
_REGIONS = frozenset({4, 6, 7, 20, 22, 23, 36, 38, 39, 40, 42, 43})
_UNKNOWN_LENGTH = 0xFFFFFFFF
MAX_SEGMENTS = 100_000  # more are not read: the stream is then taken as too large


def jbig2_pixels(data: bytes) -> int | None:
    """The most pixels a page or region of the stream declares; None when its segments cannot be read to the end
    (a length left unknown, or a header cut short), which a caller takes as refusal."""
    largest = at = 0
    for _ in range(MAX_SEGMENTS):
        if at >= len(data):
            return largest
        header = _segment_header(data, at)
        if header is None:
            return None
        kind, start, length = header
        if kind in _REGIONS or kind == _PAGE_INFORMATION:
            if start + 8 > len(data):
                return None
            width, height = struct.unpack_from(">II", data, start)
            largest = max(largest, width * height)
        if kind == _END_OF_FILE:
            return largest
        if length == _UNKNOWN_LENGTH:
            return None
        at = start + length
    return None


def _segment_header(data: bytes, at: int) -> tuple[int, int, int] | None:
    """(type, where its data starts, data length) of the segment header at ``at`` (T.88 7.2); None if cut short."""
    try:
        number, flags, count_byte = struct.unpack_from(">IBB", data, at)
        at += 6
        count = count_byte >> 5
        if count == 7:  # the long form: a 29-bit count, then one retention bit per segment and one for this one
            (long_count,) = struct.unpack_from(">I", data, at - 1)
            count = long_count & 0x1FFFFFFF
            at += 3 + (count + 8) // 8
        at += count * (1 if number <= 256 else 2 if number <= 65536 else 4)  # the numbers of the segments referred to
        at += 4 if flags & 0x40 else 1  # the page it belongs to
        (length,) = struct.unpack_from(">I", data, at)
    except struct.error:
        return None
    return flags & 0x3F, at + 4, length
