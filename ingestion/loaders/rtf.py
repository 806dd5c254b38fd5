"""Rich Text Format (.rtf) files as Word, WordPad, LibreOffice and pandoc write them: paragraphs, tables, pictures.

RTF is read by a tokenizer of its own that looks at each byte once: groups past ``_MAX_DEPTH`` are skipped, and
the tokens read are budgeted against the text they give, so that no file of control words can stall a run.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ingestion import encoding  # module import: ingestion.encoding itself imports this package
from ingestion.loaders.base import (
    NESTED_BLANKS,
    NESTED_CELL,
    NESTED_ROW,
    Limits,
    Loader,
    LoadError,
    OnKept,
    cell_text,
    clean_text,
)
from ingestion.loaders.images import EmbeddedImages, is_figure_caption, picture_span
from kb.types import ExtractedDocument, ExtractedImage

_MAX_DEPTH = 1000  # groups nest deeper than this only in a hostile file; their content is skipped
# Each token costs Python 1-2 us. Tokens giving no text: a million free (a header of fonts, styles and lists takes
# thousands), then up to 16 for each character read (a table of short numbers costs 10-12 a cell); and at most
# _MAX_TOKENS in all (10-25 s). A picture costs _PICTURE_TOKENS (hashing and opening one takes about 25 us).
_FREE_TOKENS = 1_000_000
_TOKENS_PER_CHAR = 16
_MAX_TOKENS = 10_000_000
_PICTURE_TOKENS = 50
_MAX_UNKNOWN_PAGES = 5  # named in the warning
_MAX_SKIPPED = 16  # characters a Unicode escape's fallback may have (\uc); Word writes 1 or 2
_MAX_PROPERTY = 2000  # characters of a title or a picture's description that are kept
_LINE_ENDS = b"\r\n"  # ignored in RTF: a writer breaks its lines anywhere
_HEX_SPACE = b"\r\n\t "

_CHARSETS = {0: 1252, 77: 10000, 128: 932, 129: 949, 130: 1361, 134: 936, 136: 950, 161: 1253, 162: 1254, 163: 1258,
             177: 1255, 178: 1256, 186: 1257, 204: 1251, 222: 874, 238: 1250, 254: 437, 255: 850}  # \fcharset -> page
_CHARACTERS = {b"tab": "\t", b"line": "\n", b"emdash": "\u2014", b"endash": "\u2013", b"bullet": "\u2022",
               b"lquote": "\u2018", b"rquote": "\u2019", b"ldblquote": "\u201c", b"rdblquote": "\u201d",
               b"emspace": "\u2003", b"enspace": "\u2002", b"qmspace": "\u2005", b"zwj": "\u200d",
               b"zwnj": "\u200c", b"zwbo": "\u200b"}
_SYMBOLS = {b"\\": "\\", b"{": "{", b"}": "}", b"~": "\xa0", b"_": "-", b"\t": "\t"}
_ESCAPED = frozenset({b"\\", b"{", b"}"})
_PARAGRAPH_ENDS = frozenset({b"par", b"sect", b"page", b"column", b"\n", b"\r"})
_SKIPPED = frozenset({b"colortbl", b"listtable", b"listoverridetable", b"revtbl", b"rsidtbl",
                      b"header", b"headerl", b"headerr", b"headerf", b"footer", b"footerl", b"footerr", b"footerf",
                      b"annotation", b"fldinst", b"nonshppict", b"shprslt", b"nonesttables", b"xe",
                      b"tc", b"tcn", b"pn", b"filetbl", b"pgdsctbl", b"themedata", b"colorschememapping",
                      b"latentstyles", b"datastore", b"xmlnstbl", b"generator", b"objdata", b"template",
                      b"userprops", b"docvar", b"txe", b"private", b"bkmkstart", b"bkmkend", b"listtext",
                      b"pntext", b"NeXTGraphic"})
# Destinations read even when marked ignorable (\*).
_READ = frozenset({b"shppict", b"shptxt", b"fldrslt", b"footnote", b"info", b"title", b"fonttbl", b"stylesheet",
                   b"pict", b"picprop", b"shpinst", b"sn", b"sv", b"upr", b"ud", b"nesttableprops"})
_FORMATS = {b"pngblip": "png", b"jpegblip": "jpeg"}
_UNREAD_FORMATS = {b"emfblip": "an EMF metafile", b"wmetafile": "a Windows metafile", b"macpict": "a QuickDraw picture",
                   b"pmmetafile": "an OS/2 metafile", b"dibitmap": "a device-independent bitmap",
                   b"wbitmap": "a device-dependent bitmap"}
_PROPERTIES = frozenset({b"cell", b"row", b"nestcell", b"nestrow", b"pard", b"intbl", b"itap", b"outlinelevel", b"f",
                         b"plain", b"v", b"deleted", b"uc", b"u", b"ansicpg", b"ansi", b"mac", b"pc", b"pca", b"deff",
                         b"s", b"fcharset", b"cpg", b"bin"})
_ACTED_ON = (_PROPERTIES | _CHARACTERS.keys() | _PARAGRAPH_ENDS | _SKIPPED | _READ | _FORMATS.keys()
             | _UNREAD_FORMATS.keys())
# One token: a run of control words the loader does not act on (formatting, which most of a file is), a control
# word with its parameter (a space after it belongs to it), a run of bytes in hex, a control symbol, a brace, a run
# of text, or a backslash that starts none of these.
_OTHER_WORD = rb"\\(?!(?:%s)(?![a-zA-Z]))[a-zA-Z]{1,32}(?:-?[0-9]{1,10})? ?" % b"|".join(
    sorted(word for word in _ACTED_ON if word.isalpha()))
_TOKEN = re.compile(rb"(?:%s){1,1000}|\\([a-zA-Z]{1,32})(-?[0-9]{1,10})? ?|((?:\\'[0-9a-fA-F]{2}){1,1000})|"
                    rb"\\([^a-zA-Z'])|([{}])|([^\\{}]+)|\\" % _OTHER_WORD, re.DOTALL)
_WORD, _PARAMETER, _HEX, _SYMBOL, _BRACE, _RUN = range(1, 7)
_HEADING_STYLES = ("heading", "title", "标题")  # names of paragraph styles whose paragraphs are headings
_DESCRIPTION = "wzDescription"  # the shape property holding a picture's alt text


class _Mode(Enum):
    TEXT = "text"  # the document's visible text
    HIDDEN = "hidden"  # not shown, but may hold pictures and shape text (shape instructions, document info)
    SKIP = "skip"  # nothing in it is read
    FONTS = "fonts"  # the font table: which code page each font's bytes are in
    STYLES = "styles"  # the style sheet: which paragraph styles are headings
    PICTURE = "picture"  # a picture's data, in hex or binary
    COLLECT = "collect"  # a property's value (a title, a shape property's name or value)
    NESTED_ROW = "nested row"  # a nested table's row properties: of all in it, only the row's end (\\nestrow) is read


_COLLECTING = frozenset({_Mode.COLLECT, _Mode.STYLES})


class _Value:
    """A property's value as it is collected: its first ``_MAX_PROPERTY`` characters."""

    def __init__(self) -> None:
        self.text = ""

    def add(self, text: str) -> None:
        if len(self.text) < _MAX_PROPERTY:
            self.text += text[:_MAX_PROPERTY - len(self.text)]


@dataclass(slots=True)
class _Picture:
    """A picture being read: its format, its bytes in hex, and the shape properties that describe it."""

    number: int
    properties: dict[str, str]
    shape: dict[str, str]
    format: str | None = None
    unread: str | None = None  # what kind of picture it is, when it is one that is not read
    hex: list[bytes] = field(default_factory=list)
    binary: list[bytes] = field(default_factory=list)  # what \\bin gave, as it is
    size: int = 0  # bytes of picture data, held or not


@dataclass(slots=True)
class _State:
    """What a group sets and its nested groups inherit; ``closing`` is run when the group that set it ends."""

    mode: _Mode = _Mode.TEXT
    font: int | None = None
    skip_after_unicode: int = 1
    in_table: bool = False
    depth: int = 0  # how deep in tables its paragraphs are (\\itap): 2 in a table nested in a cell
    in_box: bool = False  # a text box's text: its paragraphs and cells run on in the paragraph holding it
    outline: bool = False
    hidden: bool = False
    ignorable: bool = False
    sink: _Value | None = None
    properties: dict[str, str] = field(default_factory=dict)
    picture: _Picture | None = None
    closing: Callable[[], None] | None = None

    def nested(self) -> _State:
        return _State(self.mode, self.font, self.skip_after_unicode, self.in_table, self.depth, self.in_box,
                      self.outline, self.hidden, False, self.sink, self.properties, self.picture)


class RtfLoader(Loader):
    """Paragraphs as blank-line-separated blocks; a table row per line, cells ' | '; pictures (PNG and JPEG) with
    their alt text, the span of their paragraph and a caption that follows them.

    Headers, footers, footnotes, comments, field codes and hidden text are left out. Bytes are decoded in the code
    page of their font (``\\fcharset``), else the document's (``\\ansicpg``), as WordPad writes Chinese; Unicode
    escapes (``\\u``) as Word writes it. The title is the document information's, else the first heading.
    """

    file_type = "rtf"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        if not data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{\\rtf"):
            raise LoadError("not RTF: the file does not begin with {\\rtf")
        warnings: list[str] = []
        reading = _Reading(limits, EmbeddedImages(limits, warnings, root, on_kept), warnings)
        reading.read(data)
        text, spans = reading.blocks.joined()
        images = reading.blocks.placed(spans, reading.images.finish())
        return ExtractedDocument(text=text, file_type=self.file_type, title=reading.title or reading.blocks.heading,
                                 images=images, warnings=warnings)


class _Blocks:
    """The text as it is read: paragraphs, and tables of rows of cells, each a cleaned block; and on which block
    each picture kept stands (or, for a picture alone in its paragraph, which blocks it stands between)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.blocks: list[str] = []
        self.written = 0  # characters given, to budget tokens and refuse a text over max_chars early
        self.heading: str | None = None
        self._paragraph = io.StringIO()
        self._cell: list[str] = []
        self._cells: list[str] = []
        self._rows: list[str] = []
        self._waiting: list[int] = []  # kept pictures whose block is being read
        self._in_rows: list[int] = []  # kept pictures in the rows of the table being read
        self._held: dict[int, int] = {}  # kept picture -> the block holding it
        self._alone: dict[int, int] = {}  # kept picture alone in its paragraph -> the number of blocks before it

    def write(self, text: str) -> None:
        self._paragraph.write(text)
        self.written += len(text)
        self.limits.check_chars(self.written)

    def tell(self) -> int:
        """Where the paragraph being read has got to."""
        return self._paragraph.tell()

    def end_note(self, start: int) -> None:
        """Puts the note written since ``start`` on one line, after a space (only its own text is read again: a
        paragraph of many notes is not)."""
        self._paragraph.seek(max(start - 1, 0))
        spaced = start == 0 or self._paragraph.read(1).isspace()
        note = " ".join(self._paragraph.read().split())
        self._paragraph.seek(start)
        self._paragraph.truncate()
        self._paragraph.write(note if spaced or not note else " " + note)

    def end_paragraph(self, in_table: bool, heading: bool) -> None:
        text, self._paragraph = self._paragraph.getvalue(), io.StringIO()
        if in_table:
            self._cell.append(text)
            return
        self._close_table()
        self._add(text.translate(NESTED_BLANKS) if NESTED_CELL in text or NESTED_ROW in text else text)
        if heading and self.heading is None:
            self.heading = " ".join(text.split()) or None

    def end_cell(self) -> None:
        self._cell.append(self._paragraph.getvalue())
        self._paragraph = io.StringIO()
        self._cells.append(cell_text(" ".join(self._cell)))
        self._cell = []

    def end_row(self) -> None:
        if self._paragraph.tell() or self._cell:
            self.end_cell()
        if line := " | ".join(cell for cell in self._cells if cell):
            self._rows.append(line)
        self._cells = []
        self._in_rows += self._waiting
        self._waiting = []

    def picture(self, index: int) -> None:
        """Picture ``index`` of those kept stands in the block being read."""
        self._waiting.append(index)

    def finish(self) -> None:
        if self._paragraph.tell():
            self.end_paragraph(False, False)
        self._close_table()
        self._add("")

    def _close_table(self) -> None:
        if self._cells or self._cell:
            self.end_row()
        rows, self._rows = self._rows, []
        after, self._waiting, self._in_rows = self._waiting, self._in_rows, []  # those after it: the next block's
        self._add("\n".join(rows))
        self._waiting = after

    def _add(self, text: str) -> None:
        cleaned = clean_text(text)
        if cleaned:
            self._held.update((index, len(self.blocks)) for index in self._waiting)
            self.blocks.append(cleaned)
        else:
            self._alone.update((index, len(self.blocks)) for index in self._waiting)
        self._waiting = []

    def joined(self) -> tuple[str, list[tuple[int, int]]]:
        """The text, blocks separated by a blank line, and each block's span in it."""
        spans: list[tuple[int, int]] = []
        offset = 0
        for block in self.blocks:
            spans.append((offset, offset + len(block)))
            offset += len(block) + 2
        return "\n\n".join(self.blocks), spans

    def placed(self, spans: list[tuple[int, int]], images: list[ExtractedImage]) -> list[ExtractedImage]:
        """The pictures kept with their spans, each through the caption that follows it."""
        placed: list[ExtractedImage] = []
        alone_before = set(self._alone.values())  # blocks that a picture alone in its paragraph stands before
        for index, image in enumerate(images):
            held = self._held.get(index)
            following = held + 1 if held is not None else self._alone.get(index, len(self.blocks))
            caption = self.blocks[following] if following < len(self.blocks) else None
            if caption is not None and (not is_figure_caption(caption) or held is not None and following in
                                        alone_before):  # the caption of the picture between them
                caption = None
            before = spans[following - 1] if held is None and following > 0 else None
            start, end = picture_span(None if held is None else spans[held], spans[following] if caption else None,
                                      before)
            placed.append(image.model_copy(update={"start": start, "end": end,
                                                   "caption": caption and " ".join(caption.split())}))
        return placed


class _Reading:
    """One pass over the tokens of a file, with a stack of group states."""

    def __init__(self, limits: Limits, images: EmbeddedImages, warnings: list[str]) -> None:
        self.limits = limits
        self.images = images
        self.warnings = warnings
        self.blocks = _Blocks(limits)
        self.title: str | None = None
        self.state = _State()
        self.stack: list[_State] = []
        self.fonts: dict[int, int] = {}  # font number -> code page
        self.default_font: int | None = None
        self.codepage = 1252
        self.defining: int | None = None  # the font the font table is describing
        self.skipping = 0  # the characters of a Unicode escape's fallback still to skip
        self.too_deep = 0  # groups open beyond _MAX_DEPTH
        self.pictures = 0
        self.tokens = 0  # read so far, a picture counting as _PICTURE_TOKENS
        self.decoders: dict[str, codecs.IncrementalDecoder] = {}  # by codec: a font switch makes none anew
        self.unknown_pages: list[int] = []  # the first few code pages Python has no codec for
        self.headings: set[int] = set()  # paragraph styles that are headings
        self.row_written = -1  # characters written when a nested table's row last ended
        self._decoder_page: int | None = None
        self._decoder: codecs.IncrementalDecoder | None = None
        self._lead_byte = False  # the decoder holds a double-byte character's first byte

    def read(self, data: bytes) -> None:
        position, end, idle = 0, len(data), 0
        blocks = self.blocks
        while position < end:
            if self.tokens > _MAX_TOKENS or (idle > _FREE_TOKENS and idle > _FREE_TOKENS
                                             + _TOKENS_PER_CHAR * blocks.written):
                self.warnings.append(f"RTF with too many control words for its text: read up to byte {position:,} of "
                                     f"{end:,}")
                break
            self.tokens += 1
            token = _TOKEN.match(data, position)
            assert token is not None  # the last alternative matches any byte left
            position = token.end()
            written = blocks.written
            kind = token.lastindex
            if kind == _BRACE:
                self._brace(data[position - 1])
            elif kind == _WORD or kind == _PARAMETER:
                word, parameter = token.group(_WORD, _PARAMETER)
                if word == b"bin":  # binary data, skipped in any group
                    position = self._binary(data, position, int(parameter or 0))
                elif not self.too_deep and self.state.mode is not _Mode.SKIP:
                    self._word(word, None if parameter is None else int(parameter))
            elif self.too_deep or self.state.mode is _Mode.SKIP:
                pass
            elif kind == _RUN:
                self._run(token.group(_RUN))
            elif kind is None:
                self._other_words(token.group())
            elif kind == _HEX:
                self._bytes(token.group(_HEX))
            else:
                self._symbol(token.group(_SYMBOL))
            idle += blocks.written == written
        self._flush()
        self.blocks.finish()
        if self.unknown_pages:
            self.warnings.append(f"RTF code page(s) {', '.join(map(str, self.unknown_pages))} unknown: their bytes "
                                 "are read as windows-1252")

    def _brace(self, brace: int) -> None:
        self._flush()
        self.skipping = 0
        if brace == ord("{"):
            if self.too_deep or len(self.stack) >= _MAX_DEPTH:
                if not self.too_deep:
                    self.warnings.append(f"RTF groups nested more than {_MAX_DEPTH:,} deep: their text is skipped")
                self.too_deep += 1
            else:
                self.stack.append(self.state)
                self.state = self.state.nested()
        elif self.too_deep:
            self.too_deep -= 1
        elif self.stack:  # a brace closing more groups than were opened ends nothing
            closing = self.state.closing
            self.state = self.stack.pop()
            if closing is not None:
                closing()

    def _run(self, run: bytes) -> None:
        if b"\r" in run or b"\n" in run:
            run = run.translate(None, _LINE_ENDS)
        if self.skipping:
            skipped = min(self.skipping, len(run))
            run, self.skipping = run[skipped:], self.skipping - skipped
        if not run:
            return
        state = self.state
        if state.mode is _Mode.PICTURE and state.picture is not None:
            self._picture_data(state.picture, run.translate(None, _HEX_SPACE))
        elif run.isascii() and not self._lead_byte:
            self._text(run.decode("ascii"))
        else:
            self._text(self._decode(run))

    def _bytes(self, escapes: bytes) -> None:
        """A run of ``\\'hh`` escapes: bytes in the current font's code page, the first of them a Unicode escape's
        fallback while it is being skipped."""
        data = bytes.fromhex(escapes.replace(b"\\'", b"").decode("ascii"))
        if self.skipping:
            skipped = min(self.skipping, len(data))
            data, self.skipping = data[skipped:], self.skipping - skipped
        if data:
            self._text(self._decode(data))

    def _symbol(self, symbol: bytes) -> None:
        if self.skipping:
            self.skipping -= 1
        elif self._lead_byte and symbol in _ESCAPED:  # a double-byte character's trail byte: \\, \{ or \}
            self._text(self._decode(symbol))
        elif self._lead_byte:  # a trail byte 0x5C written raw, then the byte after it
            self._text(self._decode(b"\\" + symbol))
        elif symbol == b"*":
            self.state.ignorable = True
        elif symbol in _PARAGRAPH_ENDS:
            self._end_paragraph()
        elif symbol in _SYMBOLS:
            self._text(_SYMBOLS[symbol])

    def _binary(self, data: bytes, position: int, length: int) -> int:
        """Takes the ``length`` bytes ``\\bin`` announces (a picture's, or skipped); returns where reading goes on."""
        picture = self.state.picture if self.state.mode is _Mode.PICTURE and not self.too_deep else None
        length = max(length, 0)
        if position + length > len(data):
            self.warnings.append(f"RTF binary data (\\bin) of {length:,} bytes at byte {position:,} runs past the "
                                 "end of the file: nothing after it is read")
        if picture is not None:
            if picture.size + length <= self.limits.max_bytes:
                picture.binary.append(data[position:position + length])
            picture.size += length
        return position + length

    def _other_words(self, words: bytes) -> None:
        """Control words the loader does not act on: formatting, or (after ``\\*``) a destination it does not know."""
        if self.state.ignorable and len(words) > 1:
            self._destination(words, self.state)
        elif self.skipping:
            self.skipping = max(self.skipping - words.count(b"\\"), 0)

    def _word(self, word: bytes, parameter: int | None) -> None:
        """Acts on a control word."""
        self._flush()
        state = self.state
        if self.skipping:
            self.skipping -= 1
        elif state.mode is _Mode.NESTED_ROW:
            if word == b"nestrow":
                self._nested_end(NESTED_ROW)
        elif state.ignorable or word in _READ or word in _SKIPPED:
            self._destination(word, state)
        elif word == b"u" and parameter is not None:
            self._text(_unicode(parameter))
            self.skipping = state.skip_after_unicode
        elif state.mode is _Mode.FONTS:
            self._font_entry(word, parameter)
        elif state.mode is _Mode.STYLES:
            if word == b"s" and parameter is not None:
                number = parameter
                self._collect(state, lambda name: self._style(number, name), _Mode.STYLES)
        elif state.mode is _Mode.PICTURE and state.picture is not None:
            state.picture.format = state.picture.format or _FORMATS.get(word)
            state.picture.unread = state.picture.unread or _UNREAD_FORMATS.get(word)
        else:
            self._property(word, parameter, state)

    def _property(self, word: bytes, parameter: int | None, state: _State) -> None:
        if word in _CHARACTERS:
            self._text(_CHARACTERS[word])
        elif word in _PARAGRAPH_ENDS:
            self._end_paragraph()
        elif word == b"cell":
            self._table(self.blocks.end_cell)
        elif word == b"row":
            self._table(self.blocks.end_row)
        elif word in (b"nestcell", b"nestrow"):  # (\\nestrow stands in a nested table's hidden properties group)
            self._nested_end(NESTED_CELL if word == b"nestcell" else NESTED_ROW)
        elif word == b"pard":  # a paragraph inside a cell's group (as pandoc writes them) stays in its table
            state.in_table, state.outline = bool(self.stack) and self.stack[-1].in_table, False
            state.depth = self.stack[-1].depth if self.stack else 0
        elif word == b"s" and parameter is not None:
            state.outline = parameter in self.headings
        elif word == b"intbl":
            state.in_table = True
        elif word == b"itap":
            state.in_table, state.depth = bool(parameter), parameter or 0
        elif word == b"outlinelevel":
            state.outline = parameter is not None and 0 <= parameter < 9
        elif word == b"f" and parameter is not None:
            state.font = parameter
        elif word == b"plain":
            state.font, state.hidden = None, False
        elif word in (b"v", b"deleted"):  # hidden text, a tracked deletion
            state.hidden = parameter != 0
        elif word == b"uc" and parameter is not None:
            state.skip_after_unicode = min(max(parameter, 0), _MAX_SKIPPED)
        elif word == b"ansicpg" and parameter is not None:
            self.codepage = parameter
        elif word in (b"ansi", b"mac", b"pc", b"pca"):
            self.codepage = {b"ansi": 1252, b"mac": 10000, b"pc": 437, b"pca": 850}[word]
        elif word == b"deff":
            self.default_font = parameter

    def _destination(self, word: bytes, state: _State) -> None:
        """A group that is a destination: read as its kind, skipped, or (ignorable and unknown) skipped."""
        state.ignorable = False
        if word in _SKIPPED or word not in _READ:
            state.mode = _Mode.SKIP
        elif word == b"fonttbl":
            state.mode = _Mode.FONTS
        elif word == b"stylesheet":
            state.mode = _Mode.STYLES
        elif word == b"nesttableprops":
            state.mode = _Mode.NESTED_ROW if state.mode is _Mode.TEXT else _Mode.SKIP
        elif word in (b"info", b"shpinst", b"picprop"):
            state.mode = _Mode.HIDDEN
            if word == b"shpinst":
                state.properties = {}
        elif word in (b"shppict", b"shptxt", b"fldrslt"):
            state.mode = _Mode.TEXT
            state.in_box = state.in_box or word == b"shptxt"
        elif word == b"footnote":  # a footnote or endnote (\ftnalt): its text where its mark stands, on one line
            if state.mode is not _Mode.TEXT:  # (one in a title, a picture or a property is no text of theirs)
                state.mode = _Mode.SKIP
            elif state.in_box:  # in a text box or a note: put on its line with it
                self._text(" ")
            else:
                start = self.blocks.tell()
                state.closing = lambda: self.blocks.end_note(start)
            state.in_box = True
        elif word == b"pict":
            self.pictures += 1
            picture = _Picture(self.pictures, {}, state.properties)
            state.mode, state.picture, state.properties = _Mode.PICTURE, picture, picture.properties
            state.closing = lambda: self._keep_picture(picture)
        elif word == b"title" and state.mode is _Mode.HIDDEN:
            self._collect(state, lambda value: setattr(self, "title", value))
        elif word == b"sn":
            properties = state.properties
            self._collect(state, lambda value: properties.__setitem__("", value))
        elif word == b"sv":
            properties = state.properties
            self._collect(state, lambda value: _set_property(properties, value))

    def _collect(self, state: _State, done: Callable[[str], None], mode: _Mode = _Mode.COLLECT) -> None:
        """The group's text is a value, given to ``done`` when it ends."""
        sink = _Value()
        state.mode, state.sink = mode, sink
        state.closing = lambda: done(clean_text(" ".join(sink.text.split())))

    def _style(self, number: int, name: str) -> None:
        if name.split(";")[0].strip().lower().startswith(_HEADING_STYLES):
            self.headings.add(number)

    def _font_entry(self, word: bytes, parameter: int | None) -> None:
        if word == b"f":
            self.defining = parameter
        elif self.defining is not None and parameter is not None and word == b"fcharset":
            if parameter in _CHARSETS:  # a \cpg of the same font wins, before or after it
                self.fonts.setdefault(self.defining, _CHARSETS[parameter])
        elif self.defining is not None and parameter is not None and word == b"cpg":
            self.fonts[self.defining] = parameter

    def _end_paragraph(self) -> None:
        state = self.state
        if state.mode is _Mode.TEXT and not state.in_box:
            self.blocks.end_paragraph(state.in_table, state.outline)
        else:
            self._text(" ")

    def _nested_end(self, mark: str) -> None:
        """A nested table's cell or row end: marked in the text of an outer table's cell (a row of a table nested
        deeper is a space there), else a space (one in a text box or a note, or in no table at all)."""
        state = self.state
        if state.in_table and not state.in_box and state.mode in (_Mode.TEXT, _Mode.NESTED_ROW):
            if mark == NESTED_CELL or state.depth > 2:
                self.blocks.write(mark if mark == NESTED_CELL else " ")
            elif self.blocks.written != self.row_written:  # (rows ending with nothing between them: one end)
                self.blocks.write(NESTED_ROW)
                self.row_written = self.blocks.written
        else:
            self._text(" ")

    def _table(self, end: Callable[[], None]) -> None:
        if self.state.mode is _Mode.TEXT and not self.state.in_box:
            end()
        else:
            self._text(" ")

    def _text(self, text: str) -> None:
        state = self.state
        if state.mode is _Mode.TEXT and not state.hidden:  # (the marks of a nested table's ends are not text's)
            self.blocks.write(text.translate(NESTED_BLANKS) if NESTED_CELL in text or NESTED_ROW in text else text)
        elif state.mode in _COLLECTING and state.sink is not None:
            state.sink.add(text)

    def _picture_data(self, picture: _Picture, hex_digits: bytes) -> None:
        if picture.size + len(hex_digits) // 2 <= self.limits.max_bytes:
            picture.hex.append(hex_digits)
        picture.size += len(hex_digits) // 2

    def _keep_picture(self, picture: _Picture) -> None:
        name = f"picture {picture.number}"
        self.tokens += _PICTURE_TOKENS
        if self.images.full:
            self.images.beyond_limits(1)
        elif picture.format is None:
            self.images.skip(name, f"{picture.unread or 'a picture of no known format'} is not read")
        elif picture.size > self.limits.max_bytes:
            self.images.skip(name, f"over {self.limits.max_bytes / 2**20:g} MB")
        else:
            try:
                data = bytes.fromhex(b"".join(picture.hex).decode("ascii")) + b"".join(picture.binary)
            except ValueError:
                self.images.skip(name, f"its {picture.format.upper()} data is not hexadecimal")
                return
            kept = len(self.images.images)
            alt = picture.properties.get(_DESCRIPTION) or picture.shape.get(_DESCRIPTION)
            self.images.add_bytes(data, name, alt=alt or None)
            if len(self.images.images) > kept:
                self.blocks.picture(kept)

    def _codec(self) -> int:
        font = self.state.font if self.state.font is not None else self.default_font
        return self.fonts.get(font, self.codepage) if font is not None else self.codepage

    def _decode(self, data: bytes) -> str:
        """Bytes in the current font's code page; a double-byte character's lead byte waits for its trail byte."""
        page = self._codec()
        if self._decoder is None or page != self._decoder_page:
            self._flush()
            name = encoding.windows_codec(page)
            if name is None and page not in self.unknown_pages and len(self.unknown_pages) < _MAX_UNKNOWN_PAGES:
                self.unknown_pages.append(page)
            if (name := name or "cp1252") not in self.decoders:
                self.decoders[name] = codecs.getincrementaldecoder(name)(errors="replace")
            self._decoder_page, self._decoder = page, self.decoders[name]
        text = self._decoder.decode(data)
        self._lead_byte = bool(self._decoder.getstate()[0])
        return text

    def _flush(self) -> None:
        """Ends a run of bytes: a lead byte left waiting becomes U+FFFD."""
        if self._lead_byte and self._decoder is not None:
            self._lead_byte = False
            self._text(self._decoder.decode(b"", final=True))
            self._decoder.reset()


def _unicode(parameter: int) -> str:
    """The character of a ``\\u`` escape: a signed 16-bit number (surrogate pairs join when the text is cleaned)."""
    code = parameter + 65536 if parameter < 0 else parameter
    return chr(code) if 0 < code < 0x110000 else "\ufffd"


def _set_property(properties: dict[str, str], value: str) -> None:
    """A shape property's value, kept when its name (read just before) is one the loader uses."""
    if properties.pop("", None) == _DESCRIPTION:
        properties[_DESCRIPTION] = value
