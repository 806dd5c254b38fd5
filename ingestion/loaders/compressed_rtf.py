"""Compressed RTF (MS-OXRTFCP), the body of Outlook's rich-text mail in a ``.msg`` file and in ``winmail.dat``:
decompressed, then read by the RTF loader."""

from __future__ import annotations

import struct
from pathlib import Path

from ingestion.loaders.base import Limits, LoadError, OverBudget
from ingestion.loaders.rtf import RtfLoader

MAX_RTF = 16 * 2**20  # bytes of a compressed RTF body decompressed (about 0.3 us each)
_COMPRESSED, _UNCOMPRESSED = 0x75465A4C, 0x414C454D  # "LZFu", "MELA"
_PRELUDE = (rb"{\rtf1\ansi\mac\deff0\deftab720{\fonttbl;}{\f0\fnil \froman \fswiss \fmodern \fscript \fdecor MS "
            rb"Sans SerifSymbolArialTimes New RomanCourier{\colortbl\red0\green0\blue0" b"\r\n"
            rb"\par \pard\plain\f0\fs20\b\i\u\tab\tx")  # the window's first 207 bytes


def text_of(compressed: bytes, limits: Limits, notes: list[str]) -> str:
    """The text of a body kept in compressed RTF; "" with a note when it cannot be read."""
    try:
        return RtfLoader().load(Path("body.rtf"), decompress(compressed), limits).text
    except OverBudget:
        raise
    except LoadError as error:
        notes.append(f"the body, in compressed RTF, cannot be read: {error}")
        return ""


def decompress(data: bytes) -> bytes:
    """LZ77 over a 4,096-byte window that starts with a fixed RTF prelude, a control byte before each eight items, a
    set bit for a 2-byte reference (12 bits of window offset, 4 of length less 2), the reference to the current
    write position ending it; at most ``MAX_RTF`` bytes."""
    if len(data) < 16:
        raise LoadError("a compressed RTF body of no header")
    size, raw_size, kind, _ = struct.unpack_from("<IIII", data)
    body, limit = data[16:4 + size], min(raw_size, MAX_RTF)
    if kind == _UNCOMPRESSED:
        return body[:limit]
    if kind != _COMPRESSED:
        raise LoadError(f"a compressed RTF body of unknown kind {kind:#x}")
    window = bytearray(4096)
    window[:len(_PRELUDE)] = _PRELUDE
    write, at, out = len(_PRELUDE), 0, bytearray()
    while at < len(body) and len(out) < limit:
        control, at = body[at], at + 1
        for bit in range(8):
            if not control >> bit & 1:  # a literal byte
                if at >= len(body):
                    break
                window[write] = body[at]
                out.append(body[at])
                write, at = (write + 1) & 0xFFF, at + 1
                continue
            if at + 2 > len(body):
                break
            reference, at = body[at] << 8 | body[at + 1], at + 2
            offset = reference >> 4
            if offset == write:
                return bytes(out[:limit])
            length = (reference & 0xF) + 2
            if offset + length <= 4096 and write + length <= 4096 and (offset + length <= write
                                                                      or write + length <= offset):
                copied = window[offset:offset + length]  # apart from where it is written: one slice
                window[write:write + length] = copied
                out += copied
                write = (write + length) & 0xFFF
                continue
            for index in range(length):  # overlapping what it writes (a run), or wrapping round the window
                window[write] = window[(offset + index) & 0xFFF]
                out.append(window[write])
                write = (write + 1) & 0xFFF
    return bytes(out[:limit])
