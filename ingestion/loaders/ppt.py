"""PowerPoint 97-2003 presentations (.ppt, as PowerPoint, WPS and LibreOffice write them): each slide a page.

A .ppt keeps its slides as records (see ``office_art``) in its "PowerPoint Document" stream. The persist directory
of the last save, found through the "Current User" stream, says where each slide is, so that what an earlier fast
save left behind is not read. A slide's text is in its drawing's text boxes, in their order; PowerPoint keeps the
text of title and body placeholders in the document's list of slides instead, which the text box refers to.
Pictures are kept once, in the "Pictures" stream, and shapes name them by their place in the picture store.
"""

from __future__ import annotations

import itertools
import struct
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from ingestion.loaders import ole
from ingestion.loaders.base import (
    CappedWarnings,
    Limits,
    Loader,
    LoadError,
    OnKept,
    OverBudget,
    clean_text,
    join_pages,
)
from ingestion.loaders.images import EmbeddedImages, describe_error
from ingestion.loaders.office_art import (
    Exhausted,
    PictureFiles,
    Record,
    Records,
    shape_properties,
    shown_picture,
    stored_picture,
)
from kb.types import ExtractedDocument

_DOCUMENT_STREAM, _USER_STREAM, _PICTURES_STREAM = "PowerPoint Document", "Current User", "Pictures"
# Record types: the document and its lists of slides, a slide and a notes page, and where the last save put them.
_DOCUMENT, _SLIDE, _SLIDE_ATOM, _NOTES = 0x03E8, 0x03EE, 0x03EF, 0x03F0
_SLIDE_LIST, _SLIDE_PERSIST = 0x0FF0, 0x03F3
_USER_EDIT, _PERSIST_DIRECTORY, _CURRENT_USER = 0x0FF5, 0x1772, 0x0FF6
_CRYPT_SESSION = 0x2F14  # what an encrypted deck's last edit names (its encryption's parameters)
_TEXT_HEADER, _TEXT_CHARS, _TEXT_BYTES, _TEXT_REFERENCE = 0x0F9F, 0x0FA0, 0x0FA8, 0x0F9E
# Fields, each a '*' in its text: slide number, dates, header, footer, a formatted date.
_FIELDS = frozenset({0x0FD8, 0x0FF7, 0x0FF8, 0x0FF9, 0x0FFA, 0x1015})
_HEADERS_FOOTERS, _HEADERS_FOOTERS_ATOM, _STRING = 0x0FD9, 0x0FDA, 0x0FBA  # a slide's footer, its flags, its text
_HAS_FOOTER, _FOOTER = 0x20, 2  # the flag that a slide shows its footer; the instance of the footer's string
# The drawing: PowerPoint's record of it, then OfficeArt's drawing, groups, shapes and the picture store.
_DRAWING, _DRAWING_GROUP, _ART_DRAWING, _ART_DRAWING_GROUP = 0x040C, 0x040B, 0xF002, 0xF000
_GROUP, _SHAPE, _SHAPE_ATOM, _CHILD_ANCHOR, _TEXTBOX = 0xF003, 0xF004, 0xF00A, 0xF00F, 0xF00D
_PICTURE_STORE, _STORED_PICTURE = 0xF001, 0xF007
_TABLE = 0x039F  # the shape property of a table's group
_LINE = 20  # the shape type of a line (a table's borders)
_SLIDES, _NOTES_PAGES = 0, 2  # the instances of the document's slide lists
_TITLES, _NOTES_TEXT, _OTHER_TEXT = frozenset({0, 6}), 2, 4  # text types (a title, a centred title; notes; other)
_ENCRYPTED = 0xF3D1C4DF  # the Current User header token of an encrypted deck
_PERSIST_IDS, _UNSAVED = 1 << 20, 0xFFFFFFFF  # persist ids have 20 bits; an id no save placed
_MAX_DEPTH = 64  # groups within groups
_MAX_FIELDS = 1000  # fields in one text
_LINE_ENDS = str.maketrans({"\r": "\n", "\x0b": "\n"})  # a paragraph's end, and a line break within one


class PptLoader(Loader):
    """Each slide is a page, numbered as the deck's slides, read as the PPTX loader reads one: its title first,
    then its shapes' text in the slide's order (a group's where the group is; a table a row per line, cells
    ' | '), its footer, then its speaker notes after "Notes:". PNG, JPEG, TIFF and bitmap pictures come with their alt text
    and the span of their slide; a metafile (WMF, EMF) is a warning. The title is the summary information's, else
    the first slide's. Masters, charts and embedded objects are not read; encrypted decks and PowerPoint 4 and 95
    files are refused with the reason."""

    file_type = "ppt"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        try:
            with ole.open_package(data, "PPT") as package:
                if package.exists("PP40"):
                    raise LoadError("a PowerPoint 4 presentation: its format is not read")
                if not package.exists(_DOCUMENT_STREAM):
                    raise LoadError("not a PowerPoint presentation: an OLE file without a PowerPoint Document stream")
                if package.exists("EncryptedSummary"):
                    raise LoadError("encrypted PPT (password-protected): it cannot be read without its password")
                stream = package.openstream(_DOCUMENT_STREAM).read()
                user = package.openstream(_USER_STREAM).read(4096) if package.exists(_USER_STREAM) else b""
                store = package.openstream(_PICTURES_STREAM).read() if package.exists(_PICTURES_STREAM) else b""
                title = ole.summary_title(package)
        except (LoadError, MemoryError):
            raise
        except Exception as error:  # olefile reports a broken file with many exception types
            raise LoadError(f"corrupt PPT: {describe_error(error)}") from error
        try:
            deck = _Deck(Records(stream), user, limits)
        except Exhausted as error:
            raise LoadError(f"corrupt PPT: {error}") from error
        warnings: list[str] = []
        if deck.slide_count > limits.max_pages:
            warnings.append(f"only the first {limits.max_pages} of {deck.slide_count} slides were read (max_pages)")
        read = _read_slides(deck, deck.slides, warnings)
        text, pages = join_pages([slide.text for slide in read])
        images = EmbeddedImages(limits, warnings, root, on_kept)
        pictures = _Pictures(deck, Records(store))
        for page, slide in zip(pages, read, strict=True):
            for number, (index, alt) in enumerate(slide.pictures, 1):
                name = f"slide {page.number} image {number}"
                if images.full:
                    images.beyond_limits(1)
                    continue
                found, sha256, reason = pictures.file(index)
                if found is None:
                    images.skip(name, reason)
                else:
                    images.add_bytes(found, name, sha256=sha256, page=page.number, start=page.start, end=page.end,
                                     alt=alt)
        title = title or next((slide.title for slide in read if slide.title), None)
        return ExtractedDocument(text=text, file_type=self.file_type, title=title, pages=pages,
                                 images=images.finish(), warnings=warnings)


class _Text(NamedTuple):
    """One text box's text and its type (title, body, notes...)."""

    kind: int
    text: str


class _Listed(NamedTuple):
    """An entry of one of the document's slide lists: where the slide is kept (its persist id), its identifier,
    and the text of its placeholders that PowerPoint keeps in the list."""

    persist: int
    identifier: int
    texts: list[_Text]


class _Slide(NamedTuple):
    """What a slide holds: its text in reading order, its title, its pictures (their place in the picture store,
    and their alt text), and what could not be read of it."""

    text: str
    title: str | None
    pictures: list[tuple[int, str | None]]
    failures: list[str]


_EMPTY = _Slide("", None, [], [])


class _Deck:
    """The records of the last save: the document, its slides and notes pages in order, and what it has read so
    far (its characters, counted against ``limits.max_chars``; the slides it read, each read once)."""

    def __init__(self, records: Records, user: bytes, limits: Limits) -> None:
        self.records = records
        self.limits = limits
        self.length = self.characters = 0
        self.read: set[int] = set()  # offsets of the slide and notes records read
        self.offsets, document, session = self._directory(self._last_edit(user))
        if session is not None and (encrypted := self.persisted(session)) is not None and \
                encrypted.kind == _CRYPT_SESSION:
            raise LoadError("encrypted PPT (password-protected): it cannot be read without its password")
        found = self.persisted(document)
        if found is None or found.kind != _DOCUMENT:
            raise LoadError("corrupt PPT (or a PowerPoint 95 file, which is not read): its last save has no document")
        self.document = found
        lists: dict[int, Record] = {}
        for child in records.children(found):
            if child.kind == _SLIDE_LIST:
                lists.setdefault(child.instance, child)
        self.slides, self.slide_count = self._listed(lists.get(_SLIDES))
        self.notes = {entry.identifier: entry for entry in self._listed(lists.get(_NOTES_PAGES))[0]}

    def persisted(self, persist: int) -> Record | None:
        """The record the last save keeps under ``persist``."""
        offset = self.offsets[persist] if 0 <= persist < len(self.offsets) else _UNSAVED
        return None if offset == _UNSAVED else self.records.at(offset)

    def counted(self, text: str) -> str:
        """``text``, its length counted against ``limits.max_chars`` with all the deck's text read so far."""
        self.length += len(text) + 2
        self.limits.check_chars(self.length)
        return text

    def decoded(self, characters: int) -> None:
        """Count ``characters`` about to be decoded against ``limits.max_chars``, with all decoded before them
        (the slide list's texts are decoded before any slide is read)."""
        self.characters += characters
        self.limits.check_chars(self.characters)

    def _last_edit(self, user: bytes) -> int:
        """Where the last save's edit record is: as the Current User stream says, else the stream's last one."""
        data = self.records.data
        if len(user) >= 20 and struct.unpack_from("<H", user, 2)[0] == _CURRENT_USER:
            token, offset = struct.unpack_from("<II", user, 12)
            if token == _ENCRYPTED:
                raise LoadError("encrypted PPT (password-protected): it cannot be read without its password")
            kind, length = struct.unpack_from("<HI", data, offset + 2) if offset + 8 <= len(data) else (0, 0)
            if kind == _USER_EDIT and length >= 20:
                return offset
        last, offset = None, 0
        while (record := self.records.at(offset)) is not None:
            if record.kind == _USER_EDIT:
                last = offset
            offset = record.end
        if last is None:
            raise LoadError("corrupt PPT: it says nowhere where its last save is")
        return last

    def _directory(self, edit_at: int) -> tuple[array[int], int, int | None]:
        """Where each persisted record is (by persist id, ``_UNSAVED`` for none), the document's persist id and
        the encryption's (when the last save names one), from the last save's edit back to the first (a later
        save's entry wins). Persist ids have 20 bits: the table takes 4 MB, however many entries a hostile
        directory repeats."""
        data = self.records.data
        offsets = array("I", [_UNSAVED]) * _PERSIST_IDS
        document: int | None = None
        session: int | None = None
        seen: set[int] = set()  # edits and directories read (each once: many edits may name one directory)
        while edit_at not in seen:
            seen.add(edit_at)
            edit = self.records.at(edit_at)
            if edit is None or edit.kind != _USER_EDIT or edit.end - edit.start < 20:
                break
            last, directory, reference = struct.unpack_from("<III", data, edit.start + 8)
            if document is None:
                document = reference
                session = struct.unpack_from("<I", data, edit.start + 28)[0] if edit.end - edit.start >= 32 else None
            found = self.records.at(directory) if directory not in seen else None
            seen.add(directory)
            if found is not None and found.kind == _PERSIST_DIRECTORY:
                self._entries(found, offsets)
            if not last:
                break
            edit_at = last
        if document is None:
            raise LoadError("corrupt PPT: its last save's edit record is missing")
        return offsets, document, session

    def _entries(self, directory: Record, offsets: array[int]) -> None:
        """Add a persist directory's entries (runs of ids, each with their offsets) to ``offsets``."""
        data, at = self.records.data, directory.start
        while at + 4 <= directory.end:
            word = struct.unpack_from("<I", data, at)[0]
            count = min(word >> 20, (directory.end - at - 4) // 4)
            self.records.spend(1 + count)
            first = word & 0xFFFFF
            for index, (offset,) in enumerate(struct.iter_unpack("<I", data[at + 4:at + 4 + 4 * count])):
                if first + index < _PERSIST_IDS and offsets[first + index] == _UNSAVED:
                    offsets[first + index] = offset
            at += 4 + 4 * count

    def _listed(self, slide_list: Record | None) -> tuple[list[_Listed], int]:
        """A slide list's first ``max_pages`` entries, each with the text of the records that follow it, and how
        many entries it has."""
        entries: list[tuple[int, int, _Texts]] = []
        count = 0
        for child in self.records.children(slide_list) if slide_list is not None else ():
            if child.kind == _SLIDE_PERSIST and child.end - child.start >= 16:
                count += 1
                if count <= self.limits.max_pages:
                    persist, _, _, identifier = struct.unpack_from("<4I", self.records.data, child.start)
                    entries.append((persist, identifier, _Texts(self)))
            elif entries and count <= self.limits.max_pages:
                entries[-1][2].add(child)
        return [_Listed(persist, identifier, texts.finish()) for persist, identifier, texts in entries], count


def _read_slides(deck: _Deck, listed: list[_Listed], warnings: list[str]) -> list[_Slide]:
    """What each slide holds; a slide that cannot be read loses only itself, and once the deck's records were
    walked as often as its size allows the rest are empty pages (with a warning)."""
    read: list[_Slide] = []
    unreadable = CappedWarnings(warnings, "{} more slide(s) or notes page(s) could not be read")
    for number, entry in enumerate(listed, 1):
        try:
            read.append(_SlideReader(deck, entry).slide())
            for failure in read[-1].failures:
                unreadable.add(f"slide {number}: {failure}")
        except OverBudget:  # the deck's text is over the allowance: the whole file is refused
            raise
        except Exhausted as error:
            warnings.append(f"slides {number} to {len(listed)} not read: {error}")
            read.extend(_EMPTY for _ in listed[number - 1:])
            break
        except (LoadError, struct.error) as error:
            unreadable.add(f"slide {number} cannot be read: {describe_error(error)}")
            read.append(_EMPTY)
    unreadable.finish()
    return read


class _SlideReader:
    """Reads one slide: its drawing's shapes in order, its placeholders' text the list keeps and no shape refers
    to, then its notes page's text."""

    def __init__(self, deck: _Deck, listed: _Listed) -> None:
        self.deck = deck
        self.records = deck.records
        self.listed = listed
        self.referred: set[int] = set()  # the listed texts a text box referred to (each is read once)
        self.texts: list[_Text] = []
        self.pictures: list[tuple[int, str | None]] = []
        self.failures: list[str] = []

    def slide(self) -> _Slide:
        container = self._container(self.listed, _SLIDE)
        if container is None:
            return _EMPTY
        self._drawing(container)
        texts = self.texts + [text for index, text in enumerate(self.listed.texts) if index not in self.referred]
        heading = next((text for text in texts if text.kind in _TITLES and text.text.strip()), None)
        title = " ".join(heading.text.split()) if heading is not None else None
        blocks = [title] if title else []
        blocks += [text.text for text in texts if text is not heading]
        blocks.append(self._footer(container))
        try:
            if notes := self._notes(container):
                blocks.append("Notes: " + notes)
        except LoadError as error:  # the slide keeps its own text
            self.failures.append(f"its notes page cannot be read: {error}")
        return _Slide(clean_text("\n\n".join(block for block in blocks if block.strip())), title, self.pictures,
                      self.failures)

    def _footer(self, slide: Record) -> str:
        """The footer the slide shows (its text is the slide's, not a shape's: a footer placeholder on the master
        draws it)."""
        found = self.records.first(slide, _HEADERS_FOOTERS)
        if found is None:
            return ""
        atom = self.records.first(found, _HEADERS_FOOTERS_ATOM)
        flags = struct.unpack_from("<H", self.records.data, atom.start + 2)[0] \
            if atom is not None and atom.end - atom.start >= 4 else 0
        footer = next((child for child in self.records.children(found)
                       if child.kind == _STRING and child.instance == _FOOTER), None)
        if footer is None or not flags & _HAS_FOOTER:
            return ""
        self.deck.decoded((footer.end - footer.start) // 2)
        return self.deck.counted(self.records.body(footer).decode("utf-16-le", "replace"))

    def _container(self, listed: _Listed, kind: int) -> Record | None:
        """The slide or notes page a list entry names; None when another entry named it already (it is read
        once), a ``LoadError`` when it is missing."""
        found = self.deck.persisted(listed.persist)
        if found is None or found.kind != kind:
            raise LoadError(f"its record (persist id {listed.persist}) is missing")
        if found.start in self.deck.read:
            return None
        self.deck.read.add(found.start)
        return found

    def _notes(self, slide: Record) -> str:
        """The text of the slide's notes page (its notes placeholder's), or ""."""
        atom = self.records.first(slide, _SLIDE_ATOM)
        if atom is None or atom.end - atom.start < 20:
            return ""
        listed = self.deck.notes.get(struct.unpack_from("<I", self.records.data, atom.start + 16)[0])
        if listed is None or (container := self._container(listed, _NOTES)) is None:
            return ""
        reader = _SlideReader(self.deck, listed)
        reader._drawing(container)
        texts = reader.texts + [text for index, text in enumerate(listed.texts) if index not in reader.referred]
        return "\n".join(text.text for text in texts if text.kind == _NOTES_TEXT and text.text.strip())

    def _drawing(self, container: Record) -> None:
        drawing = self.records.first(container, _DRAWING)
        art = self.records.first(drawing, _ART_DRAWING) if drawing is not None else None
        group = self.records.first(art, _GROUP) if art is not None else None
        if group is not None:
            self._group(group, 0)

    def _group(self, group: Record, depth: int) -> None:
        """A group's shapes in order (the first is the group's own); a table's cells as its rows."""
        if depth > _MAX_DEPTH:
            return
        shapes = (child for child in self.records.children(group) if child.kind in (_GROUP, _SHAPE))
        own = next(shapes, None)
        if own is not None and own.kind == _SHAPE and _TABLE in shape_properties(self.records, own):
            self.texts.append(self._table(shapes))
            return
        for shape in itertools.chain([own] if own is not None else [], shapes):
            if shape.kind == _GROUP:
                self._group(shape, depth + 1)
            else:
                self._shape(shape)

    def _shape(self, shape: Record) -> None:
        """A shape's picture and its text box's text."""
        if (picture := shown_picture(shape_properties(self.records, shape))) is not None:
            self.pictures.append(picture)
        if (box := self.records.first(shape, _TEXTBOX)) is not None:
            self.texts.extend(self._box(box))

    def _box(self, box: Record) -> list[_Text]:
        """A text box's text: its own, or the listed text it refers to."""
        reference = self.records.first(box, _TEXT_REFERENCE)  # (looked for first: then its own text is not read)
        if reference is None:
            own = _Texts(self.deck)
            for child in self.records.children(box):
                own.add(child)
            return [_Text(text.kind, self.deck.counted(text.text)) for text in own.finish()]
        if reference.end - reference.start < 4:
            return []
        index = struct.unpack_from("<I", self.records.data, reference.start)[0]
        if index >= len(self.listed.texts) or index in self.referred:
            return []
        self.referred.add(index)
        return [self.listed.texts[index]._replace(text=self.deck.counted(self.listed.texts[index].text))]

    def _table(self, shapes: Iterable[Record]) -> _Text:
        """A table's cells (the rectangles of its group, placed by their anchors; its lines are its borders) as
        rows, one per line, cells ' | ' (see ``_rows``)."""
        cells: list[tuple[int, int, str]] = []
        for shape in shapes:
            atom = self.records.first(shape, _SHAPE_ATOM) if shape.kind == _SHAPE else None
            anchor = self.records.first(shape, _CHILD_ANCHOR) if atom is not None and atom.instance != _LINE else None
            if anchor is None or anchor.end - anchor.start < 8:
                continue
            left, top = struct.unpack_from("<ii", self.records.data, anchor.start)
            box = self.records.first(shape, _TEXTBOX)
            text = " ".join(" ".join(part.text.split()) for part in self._box(box)) if box is not None else ""
            cells.append((top, left, text))
        return _Text(_OTHER_TEXT, _rows(cells))


def _rows(cells: list[tuple[int, int, str]]) -> str:
    """A table's cells (top, left, text) as rows a line each: on the grid of their rows and columns, a place a
    merged cell covers empty (as the PPTX loader reads a merged cell's others); cells that make no grid (more
    than four places a cell), row by row as they stand."""
    tops, lefts = sorted({top for top, _, _ in cells}), sorted({left for _, left, _ in cells})
    if len(tops) * len(lefts) > 4 * len(cells) + 64:
        rows = itertools.groupby(sorted(cells), key=lambda cell: cell[0])
        return "\n".join(" | ".join(text for _, _, text in row) for _, row in rows)
    placed = {(top, left): text for top, left, text in cells}
    return "\n".join(" | ".join(placed.get((top, left), "") for left in lefts) for top in tops)


class _Pictures:
    """The deck's picture store: a shape's picture by its place in it (from 1)."""

    def __init__(self, deck: _Deck, store: Records) -> None:
        self.records = deck.records
        self.store = store
        self.document = deck.document
        self.entries: list[Record] | None = None  # (listed when a shape first shows a picture)
        self.files = PictureFiles(deck.limits)

    def file(self, index: int) -> tuple[bytes | None, str, str]:
        """The image file of the picture at ``index``, its hash, and the reason when there is none."""
        try:
            return self.files.file(self._find(index))
        except Exhausted as error:
            return None, "", str(error)

    def _find(self, index: int) -> tuple[Records, Record] | str:
        if self.entries is None:
            group = self.records.first(self.document, _DRAWING_GROUP)
            art = self.records.first(group, _ART_DRAWING_GROUP) if group is not None else None
            store = self.records.first(art, _PICTURE_STORE) if art is not None else None
            self.entries = [] if store is None else [
                child for child in self.records.children(store) if child.kind == _STORED_PICTURE]
        if not 1 <= index <= len(self.entries):
            return "its picture is missing from the deck's picture store"
        return stored_picture(self.records, self.entries[index - 1], self.store)


class _Texts:
    """The texts in a run of records, added one by one: each text header begins one (of its type), which the
    characters after it fill; a field's '*' (a date or slide number PowerPoint draws) is left out."""

    def __init__(self, deck: _Deck) -> None:
        self.deck = deck
        self.records = deck.records
        self.texts: list[_Text] = []
        self.kind: int | None = None
        self.parts: list[str] = []
        self.fields: list[int] = []  # where the current text's fields are (at most _MAX_FIELDS)

    def add(self, record: Record) -> None:
        data = self.records.data
        if record.kind == _TEXT_HEADER and record.end - record.start >= 4:
            self._end()
            self.kind = struct.unpack_from("<I", data, record.start)[0]
        elif record.kind in (_TEXT_CHARS, _TEXT_BYTES):
            self.kind = _OTHER_TEXT if self.kind is None else self.kind
            self.deck.decoded((record.end - record.start) // (2 if record.kind == _TEXT_CHARS else 1))
            body = self.records.body(record)
            self.parts.append(body.decode("utf-16-le", "replace") if record.kind == _TEXT_CHARS else
                              body.decode("latin-1"))
        elif record.kind in _FIELDS and record.end - record.start >= 4 and len(self.fields) < _MAX_FIELDS:
            self.fields.append(struct.unpack_from("<i", data, record.start)[0])

    def finish(self) -> list[_Text]:
        self._end()
        return self.texts

    def _end(self) -> None:
        if self.kind is not None:
            self.texts.append(_Text(self.kind, _without_fields("".join(self.parts), self.fields)))
        self.kind, self.parts, self.fields = None, [], []


def _without_fields(text: str, fields: list[int]) -> str:
    """``text`` without the '*' that stands for each field, paragraph ends and line breaks as new lines."""
    parts, last = [], 0
    for position in sorted({position for position in fields if 0 <= position < len(text) and text[position] == "*"}):
        parts.append(text[last:position])
        last = position + 1
    parts.append(text[last:])
    return "".join(parts).translate(_LINE_ENDS)
