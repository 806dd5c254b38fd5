"""TNEF (``winmail.dat``, ``application/ms-tnef``): the wrapping Outlook puts around a rich-text message's body and
attachments when it sends one, decoded into the body and files it holds for the e-mail reader (MS-OXTNEF). Every
count and length it declares is checked against the bytes that are there."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ingestion import encoding  # module import: ingestion.encoding itself imports this package
from ingestion.loaders.base import LoadError

_SIGNATURE = 0x223E9F78
_ATTACHMENT_LEVEL = 2
# Attributes read: of the message, then of an attachment (one begins with its rendering data).
_OEM_CODEPAGE, _BODY, _PROPERTIES = 0x9007, 0x800C, 0x9003
_RENDERING, _TITLE, _DATA, _ATTACHMENT = 0x9002, 0x8010, 0x800F, 0x9005
# MAPI properties read: the message's bodies and Internet code page; an attachment's names, type and data object.
_PR_BODY, _PR_HTML, _PR_RTF, _PR_INTERNET_CPID = 0x1000, 0x1013, 0x1009, 0x3FDE
_PR_LONG_NAME, _PR_DISPLAY_NAME, _PR_MIME, _PR_DATA = 0x3707, 0x3001, 0x370E, 0x3701
_STRING8, _UNICODE, _BINARY, _OBJECT, _LONG = 0x001E, 0x001F, 0x0102, 0x000D, 0x0003
_VARIABLE = (_STRING8, _UNICODE, _BINARY, _OBJECT)  # each value: its length, its bytes, padding to 4
_FIXED = {0x0001: 4, 0x0002: 4, 0x0003: 4, 0x0004: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8, 0x000A: 4, 0x000B: 4,
          0x0014: 8, 0x0040: 8, 0x0048: 16}  # bytes of each value of a fixed-size type, padding included
_MULTIPLE = 0x1000  # a type flag: the property holds a count of values
_MAX_FILES = 1000  # attachments kept (the e-mail reading reads 200 of them)
_MAX_NAME = 255  # characters of a file name kept


@dataclass
class TnefFile:
    """A file Outlook wrapped: its name, bytes and declared MIME type."""

    name: str
    data: bytes
    kind: str = "application/octet-stream"


@dataclass
class Tnef:
    """What a ``winmail.dat`` holds: the body as plain text, HTML (in ``html_charset``, when known) or compressed
    RTF, as Outlook kept it, and the files; ``notes`` say what was not read."""

    body: str | None = None
    html: bytes | None = None
    html_charset: str | None = None
    rtf: bytes | None = None
    files: list[TnefFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _File:
    """An attachment as its attributes arrive: its 8.3 title, data and properties."""

    title: str = ""
    data: bytes = b""
    properties: dict[int, tuple[int, list[bytes]]] = field(default_factory=dict)


def read_tnef(data: bytes) -> Tnef:
    """The body and files of a TNEF stream; a stream cut short keeps what came before the cut, with a note."""
    if len(data) < 6 or struct.unpack_from("<I", data)[0] != _SIGNATURE:
        raise LoadError("not TNEF: it does not begin with TNEF's signature")
    tnef, codepage, at, beyond = Tnef(), 1252, 6, 0
    files: list[_File] = []
    current: _File | None = None
    while at + 9 <= len(data):
        level, attribute, length = data[at], struct.unpack_from("<H", data, at + 1)[0], \
            struct.unpack_from("<I", data, at + 5)[0]
        value, at = data[at + 9:at + 9 + length], at + 9 + length + 2  # then its checksum
        if len(value) < length:
            tnef.notes.append("it is cut short: what follows the cut is lost")
            break
        if level == _ATTACHMENT_LEVEL:
            if attribute == _RENDERING or not (files or beyond):
                if len(files) < _MAX_FILES:
                    current = _File()
                    files.append(current)
                else:  # counted, not kept
                    current, beyond = None, beyond + 1
            if current is not None:
                _attachment(current, attribute, value, codepage, tnef.notes)
        elif attribute == _OEM_CODEPAGE and len(value) >= 4:
            codepage = struct.unpack_from("<I", value)[0]
        elif attribute == _BODY:
            tnef.body = _string(value, _STRING8, codepage)
        elif attribute == _PROPERTIES:
            _bodies(tnef, _properties(value, tnef.notes), codepage)
    if beyond:
        tnef.notes.append(f"only the first {_MAX_FILES} of its {_MAX_FILES + beyond} attachments were read")
    tnef.files = [found for file in files if (found := _finished(file, codepage, tnef.notes))]
    return tnef


def _attachment(file: _File, attribute: int, value: bytes, codepage: int, notes: list[str]) -> None:
    """Notes one attribute of an attachment."""
    if attribute == _TITLE:
        file.title = _string(value, _STRING8, codepage)
    elif attribute == _DATA:
        file.data = value
    elif attribute == _ATTACHMENT:
        file.properties = _properties(value, notes)


def _finished(file: _File, codepage: int, notes: list[str]) -> TnefFile | None:
    """An attachment's name (its long one, else its title), bytes and type; None for an attached Outlook item or
    an embedded object, which are not read (with a note), or one holding nothing."""
    def text(identifier: int) -> str:
        kind, values = file.properties.get(identifier, (0, []))
        return _string(values[0], kind, codepage) if values and kind in (_STRING8, _UNICODE) else ""

    name = (text(_PR_LONG_NAME) or file.title or text(_PR_DISPLAY_NAME) or "attachment")[:_MAX_NAME]
    if not file.data and file.properties.get(_PR_DATA, (0, []))[0] == _OBJECT:
        notes.append(f"{name}: an attached Outlook item or embedded object, not read")
        return None
    return TnefFile(name, file.data, text(_PR_MIME) or "application/octet-stream") if file.data else None


def _bodies(tnef: Tnef, properties: dict[int, tuple[int, list[bytes]]], codepage: int) -> None:
    """Notes the message's bodies among its MAPI properties: HTML as bytes with their charset (the Internet code
    page's, for HTML kept as bytes)."""
    def first(identifier: int) -> tuple[int, bytes | None]:
        kind, values = properties.get(identifier, (0, []))
        return kind, values[0] if values else None

    kind, body = first(_PR_BODY)
    if body is not None and kind in (_STRING8, _UNICODE):
        tnef.body = _string(body, kind, codepage)
    kind, html = first(_PR_HTML)
    if html is not None and kind == _BINARY:
        cpid_kind, cpid = first(_PR_INTERNET_CPID)
        tnef.html = html
        tnef.html_charset = encoding.windows_codec(struct.unpack_from("<I", cpid)[0]) if (
            cpid_kind == _LONG and cpid is not None and len(cpid) >= 4) else None
    elif html is not None and kind in (_STRING8, _UNICODE):
        tnef.html, tnef.html_charset = _string(html, kind, codepage).encode(), "utf-8"
    kind, rtf = first(_PR_RTF)
    if rtf is not None and kind == _BINARY:
        tnef.rtf = rtf


def _properties(data: bytes, notes: list[str]) -> dict[int, tuple[int, list[bytes]]]:
    """A list of MAPI properties: each one's type and values by identifier. Each property takes 8 bytes or more, and
    each value 4 or more, so no count it declares costs more than its bytes; a type of no known size ends the list
    (the properties after it cannot be told apart), with a note."""
    found: dict[int, tuple[int, list[bytes]]] = {}
    try:
        count, at = struct.unpack_from("<I", data)[0], 4
        for _ in range(min(count, len(data) // 8)):
            kind, identifier = struct.unpack_from("<HH", data, at)
            at += 4
            if identifier >= 0x8000:  # a named property: its set's GUID, then a number or a name
                named = struct.unpack_from("<I", data, at + 16)[0]
                at += 24 if named == 0 else 24 + _padded(struct.unpack_from("<I", data, at + 20)[0])
            base = kind & ~_MULTIPLE
            if base not in _FIXED and base not in _VARIABLE:
                notes.append(f"a property of unknown type {kind:#06x}: the properties after it are not read")
                break
            values_count = 1
            if kind & _MULTIPLE or base in _VARIABLE:
                values_count, at = struct.unpack_from("<I", data, at)[0], at + 4
            values = []
            for _ in range(min(values_count, (len(data) - at) // 4)):
                size = _FIXED.get(base)
                if size is None:  # a length, then the bytes, padded to 4
                    size, at = struct.unpack_from("<I", data, at)[0], at + 4
                values.append(data[at:at + size][16:] if base == _OBJECT else data[at:at + size])  # past its IID
                at += _padded(size)
            if at > len(data):
                notes.append("a property list is cut short")
                break
            found[identifier] = (base, values)
    except struct.error:
        notes.append("a property list is cut short")
    return found


def _padded(size: int) -> int:
    return size + -size % 4


def _string(value: bytes, kind: int, codepage: int) -> str:
    """A string property's text, to its first NUL: UTF-16 for a Unicode one, else in ``codepage``."""
    if kind == _UNICODE:
        return value.decode("utf-16-le", "replace").split("\0", 1)[0]
    text = value.split(b"\0", 1)[0]
    return encoding.windows_text(text, codepage)
