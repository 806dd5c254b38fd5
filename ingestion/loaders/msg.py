"""Outlook messages (.msg: an OLE compound file of MAPI properties), turned into the e-mail message they hold and
read as an ``.eml`` file is: sender, recipients, date and subject, the body, each attachment a page, an attached
message read as a forwarded one."""

from __future__ import annotations

import struct
from datetime import datetime, timedelta, timezone
from email.message import Message
from email.utils import format_datetime
from pathlib import Path

import olefile

from ingestion import encoding  # module import: ingestion.encoding itself imports this package
from ingestion.loaders import compressed_rtf, eml, ole
from ingestion.loaders.base import Limits, Loader, LoadError, OnKept
from ingestion.loaders.images import describe_error
from kb.types import ExtractedDocument

_PROPERTIES = "__properties_version1.0"
_ATTACHMENT, _RECIPIENT = "__attach_version1.0_#", "__recip_version1.0_#"
_SUBJECT, _SENT_REPRESENTING, _SENDER_NAME = 0x0037, 0x0042, 0x0C1A
# The sender's address: of the one the message was sent for (on behalf of), then of the one who sent it; SMTP first.
_SENDER_ADDRESSES = (0x5D02, 0x0065, 0x5D01, 0x0C1F)
_TO, _CC, _BODY, _HTML, _RTF = 0x0E04, 0x0E03, 0x1000, 0x1013, 0x1009
# A recipient's type (1 To, 2 Cc) and its addresses: SMTP first, then its e-mail address (unless an X.500 one).
_RECIPIENT_TYPE, _RECIPIENT_ADDRESSES = 0x0C15, (0x39FE, 0x3003)
_RECIPIENT_HEADERS = {1: "To", 2: "Cc"}
_SUBMITTED, _DELIVERED = 0x0039, 0x0E06  # the times it was sent and received
_INTERNET_CODEPAGE, _MESSAGE_CODEPAGE = 0x3FDE, 0x3FFD
_DATA, _LONG_NAME, _NAME, _DISPLAY_NAME, _MIME = 0x3701, 0x3707, 0x3704, 0x3001, 0x370E
_CONTENT_ID = 0x3712  # an attachment's Content-ID: a picture the body shows names it ("cid:", "[cid:...]")
_UNICODE, _STRING8, _BINARY, _OBJECT = 0x001F, 0x001E, 0x0102, 0x000D
_SYSTIME, _LONG = 0x0040, 0x0003
# The property stream's header: a message file's, an attached message's, a recipient's or an attachment's.
_HEADER_SIZES = {0: 32, 1: 24, 2: 8}
_FILETIME_ORIGIN = datetime(1601, 1, 1, tzinfo=timezone.utc)
_MAX_DEPTH = 20  # attached messages nested deeper are not read
_MAX_ATTACHMENTS = 1000  # attachment storages looked at per message (the e-mail reading reads 200 of them)
_MAX_RECIPIENTS = 1000  # recipient storages looked at per message
_MAX_STRING = 2000  # characters of a string property other than a body (a name, a subject) that are kept
_MAX_PROPERTIES = 2**20  # bytes of a property stream read: its fixed-size properties are 16 bytes each


class MsgLoader(Loader):
    """An Outlook message read as the ``.eml`` file it would be: its From, To, Cc, Date and Subject lines, its
    plain text body (else its HTML's visible text), then each attachment as a page read by the loader for its name,
    an attached Outlook item as a forwarded message. A body kept only in compressed RTF (rich-text mail) is
    decompressed and read by the RTF loader."""

    file_type = "msg"

    def __init__(self, loader_for: eml.LoaderFor) -> None:
        self.loader_for = loader_for

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        with ole.open_package(data, "MSG") as package:
            if not package.exists(_PROPERTIES):
                raise LoadError("not an Outlook message: an OLE file without MAPI properties")
            notes: list[str] = []
            try:
                message = _Item(package, notes, len(data), limits).message("", 0)
            except (LoadError, MemoryError):
                raise
            except Exception as error:  # olefile reports a broken stream with many exception types
                raise LoadError(f"corrupt MSG: {describe_error(error)}") from error
        document = eml.message_document(message, self.file_type, limits, root, on_kept, self.loader_for)
        document.warnings[:0] = notes
        return document


class _Item:
    """Reads the messages of one file: each storage's properties, its attachments' storages under it. The bytes
    read count against the file's size: streams may share sectors, so that one picture listed 300 times would be
    read 300 times."""

    def __init__(self, package: olefile.OleFileIO, notes: list[str], size: int, limits: Limits) -> None:
        self.package = package
        self.limits = limits
        self.notes = notes
        self.bytes_left = size
        self.children: dict[tuple[str, ...], list[str]] = {}
        for entry in package.listdir(streams=False, storages=True):
            self.children.setdefault(tuple(entry[:-1]), []).append(entry[-1])

    def message(self, storage: str, depth: int) -> Message:
        """The e-mail message the properties under ``storage`` ("" for the file's own) describe: strings in its
        code page, its HTML in the Internet code page."""
        fixed = self._fixed(storage, 0 if not storage else 1)
        codepage = fixed.get(_MESSAGE_CODEPAGE) or fixed.get(_INTERNET_CODEPAGE) or 1252
        message = eml.new_message()
        sender = self._text(storage, _SENT_REPRESENTING, codepage) or self._text(storage, _SENDER_NAME, codepage)
        addresses = (self._text(storage, identifier, codepage) for identifier in _SENDER_ADDRESSES)
        address = next((found for found in addresses if found and not found.startswith("/")), None)  # not X.500
        sender = _mailbox(sender, address)
        sent = fixed.get(_SUBMITTED) or fixed.get(_DELIVERED)
        recipients = self._recipients(storage, codepage)
        for name, value in (("From", sender), ("To", recipients.get("To") or self._text(storage, _TO, codepage)),
                            ("Cc", recipients.get("Cc") or self._text(storage, _CC, codepage)),
                            ("Date", format_datetime(sent) if isinstance(sent, datetime) else None),
                            ("Subject", self._text(storage, _SUBJECT, codepage))):
            if value:
                message[name] = " ".join(value.split())
        parts: list[Message] = []
        body = self._text(storage, _BODY, codepage, whole=True)
        if body:
            parts.append(eml.mime_part("text/plain; charset=utf-8", body.encode()))
        elif html := self._binary(storage, _HTML):
            charset = encoding.windows_codec(fixed.get(_INTERNET_CODEPAGE) or codepage) or "cp1252"
            parts.append(eml.mime_part(f"text/html; charset={charset}", html))
        elif html_text := self._text(storage, _HTML, codepage, whole=True):
            parts.append(eml.mime_part("text/html; charset=utf-8", html_text.encode()))
        elif (compressed := self._binary(storage, _RTF)) is not None:
            parts.extend(self._rtf_body(compressed))
        parts.extend(part for attachment in self._attachments(storage)
                     if (part := self._attachment(attachment, depth, codepage)) is not None)
        if not parts:  # headers only: an empty plain body, not a multipart of nothing
            message.set_payload("")
            return message
        # Pictures the body names (Content-ID) make a multipart/related, so that they stand where the body shows them.
        message.set_type("multipart/related" if any("Content-ID" in part for part in parts) else "multipart/mixed")
        for part in parts:
            message.attach(part)
        return message

    def _rtf_body(self, compressed: bytes) -> list[Message]:
        """A body kept only in compressed RTF (rich-text mail), decompressed and read by the RTF loader."""
        text = compressed_rtf.text_of(compressed, self.limits, self.notes)
        return [eml.mime_part("text/plain; charset=utf-8", text.encode())] if text else []

    def _attachments(self, storage: str) -> list[str]:
        return self._storages(storage, _ATTACHMENT, _MAX_ATTACHMENTS, "attachments")

    def _storages(self, storage: str, prefix: str, most: int, kind: str) -> list[str]:
        """The first ``most`` storages under ``storage`` whose names start with ``prefix``, in order."""
        parent = tuple(part for part in storage.split("/") if part)
        found = [name for name in self.children.get(parent, []) if name.startswith(prefix)]
        if len(found) > most:
            self.notes.append(f"only the first {most} of {len(found)} {kind} were looked at")
        return ["/".join((*parent, name)) for name in sorted(found)[:most]]

    def _recipients(self, storage: str, codepage: int) -> dict[str, str]:
        """The To and Cc lines the recipient table makes: each recipient's name and address (``Name <address>``),
        where the display lines (``_TO``, ``_CC``) give only names."""
        lines: dict[str, list[str]] = {}
        for recipient in self._storages(storage, _RECIPIENT, _MAX_RECIPIENTS, "recipients"):
            kind = self._fixed(recipient, 2).get(_RECIPIENT_TYPE)
            header = _RECIPIENT_HEADERS.get(kind & 0xFF) if isinstance(kind, int) else None  # (high bits: flags)
            if header is None:  # a blind copy, or a recipient of no known type
                continue
            name = self._text(recipient, _DISPLAY_NAME, codepage)
            addresses = (self._text(recipient, identifier, codepage) for identifier in _RECIPIENT_ADDRESSES)
            address = next((found for found in addresses if found and not found.startswith("/")), None)
            if shown := _mailbox(name, address):
                lines.setdefault(header, []).append(shown)
        return {header: ", ".join(names) for header, names in lines.items()}

    def _attachment(self, storage: str, depth: int, codepage: int) -> Message | None:
        """An attachment as a MIME part: a file's bytes with its name, or an attached Outlook item as a message
        (None past ``_MAX_DEPTH``, or for an embedded object, which is not read)."""
        name = (self._text(storage, _LONG_NAME, codepage) or self._text(storage, _NAME, codepage)
                or self._text(storage, _DISPLAY_NAME, codepage) or "attachment")
        embedded = f"{storage}/__substg1.0_{_DATA:04X}{_OBJECT:04X}"
        if self.package.exists(embedded) and not self.package.exists(f"{embedded}/{_PROPERTIES}"):
            self.notes.append(f"attachment {name[:200]} skipped: an embedded object (OLE), not a file or a message")
            return None
        if self.package.exists(embedded) and depth >= _MAX_DEPTH:
            self.notes.append(f"an attached message nested more than {_MAX_DEPTH} deep is not read")
            return None
        if self.package.exists(embedded):
            part = eml.new_message()
            part.set_type("message/rfc822")
            part.attach(self.message(embedded, depth + 1))
            return part
        kind = self._text(storage, _MIME, codepage) or "application/octet-stream"
        part = eml.mime_part(kind if "/" in kind else "application/octet-stream", self._binary(storage, _DATA) or b"",
                             name=name)
        if content_id := self._text(storage, _CONTENT_ID, codepage):
            part["Content-ID"] = f"<{content_id}>"
        return part

    def _stream(self, storage: str, identifier: int, kind: int) -> str:
        return "/".join(filter(None, (storage, f"__substg1.0_{identifier:04X}{kind:04X}")))

    def _exists(self, storage: str, identifier: int, kind: int) -> bool:
        return bool(self.package.exists(self._stream(storage, identifier, kind)))

    def _read(self, path: str) -> bytes:
        """A stream's bytes, counted against the file's size."""
        data = self.package.openstream(path).read()
        self.bytes_left -= len(data)
        if self.bytes_left < 0:
            raise LoadError("MSG bomb? its streams hold more bytes than the file (they share sectors)")
        return bytes(data)

    def _binary(self, storage: str, identifier: int) -> bytes | None:
        if not self._exists(storage, identifier, _BINARY):
            return None
        return self._read(self._stream(storage, identifier, _BINARY))

    def _text(self, storage: str, identifier: int, codepage: int, whole: bool = False) -> str | None:
        """A string property: UTF-16, else 8-bit in the message's code page, cut to ``_MAX_STRING`` characters
        unless ``whole`` (a body); None when absent or blank."""
        if self._exists(storage, identifier, _UNICODE):
            text = self._read(self._stream(storage, identifier, _UNICODE)).decode("utf-16-le", "replace")
        elif self._exists(storage, identifier, _STRING8):
            raw = self._read(self._stream(storage, identifier, _STRING8))
            text = encoding.windows_text(raw, codepage)
        else:
            return None
        text = text.split("\x00", 1)[0]
        return (text if whole else text[:_MAX_STRING]).strip() or None

    def _fixed(self, storage: str, level: int) -> dict[int, object]:
        """The fixed-size properties this loader reads (times, code pages) from the storage's property stream."""
        path = "/".join(filter(None, (storage, _PROPERTIES)))
        if not self.package.exists(path):
            return {}
        data = self._read(path)[:_MAX_PROPERTIES]
        found: dict[int, object] = {}
        for at in range(_HEADER_SIZES[level], len(data) - 15, 16):
            tag, _, value = struct.unpack_from("<IIQ", data, at)
            identifier, kind = tag >> 16, tag & 0xFFFF
            if kind == _SYSTIME and identifier in (_SUBMITTED, _DELIVERED) and value:
                try:
                    found[identifier] = _FILETIME_ORIGIN + timedelta(microseconds=value // 10)
                except OverflowError:
                    continue
            elif kind == _LONG and identifier in (_INTERNET_CODEPAGE, _MESSAGE_CODEPAGE, _RECIPIENT_TYPE):
                found[identifier] = value & 0xFFFFFFFF
        return found


def _mailbox(name: str | None, address: str | None) -> str | None:
    """A name and an address as a mail header shows them, ``Name <address>``: the name quoted when it holds a
    character that would split it (``Doe, John`` is one person)."""
    if not (name and address) or name == address:
        return name or address
    if any(character in name for character in ',;:<>"@'):
        name = '"' + name.replace('"', "") + '"'
    return f"{name} <{address}>"


