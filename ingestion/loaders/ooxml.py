"""Checks of an Office package (DOCX, XLSX, PPTX, OpenDocument: a zip of XML parts) made before any library unpacks
or parses it (its size unpacked, the elements and text its XML holds, parts that cannot be unpacked), the one
safe way its XML parts are parsed, and a package opened despite parts whose XML is broken."""

from __future__ import annotations

import io
import posixpath
import re
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import TypeVar
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser
from lxml import etree

from ingestion.loaders.base import CappedWarnings, LoadError, OverBudget

MAX_EXPANDED_BYTES = 512 * 2**20
# Parsed XML costs memory per element (a few hundred bytes each, with python-docx's objects), not per byte: the
# parts are counted (by their "<", streamed) before anything parses them.
MAX_XML_TAGS = 2_000_000
# ... and per attribute (counted by their "="): 1.3 MB of elements with many attributes each parsed to 4.4 GB.
MAX_XML_ATTRIBUTES = 4_000_000
# ... and per byte of markup, as names are held too: 2 million elements of unique 80-character names, 476 MB of XML,
# parsed to 2.9 GB. An ordinary part takes 20 to 40 bytes an element.
MAX_XML_BYTES = 128 * 2**20
MAX_XML_DEPTH = 256  # lxml's own limit, kept by the parts parsed with the standard library too
# Text is parsed, then joined, whole before its length is checked: the text between tags is counted too (an entity
# as one byte; blanks between two tags only inside a text run, as indentation is not text). UTF-8 takes at most 4
# bytes a character, so more text bytes than 4 per allowed character cannot fit the allowance.
BYTES_PER_CHARACTER = 4
_TAG = re.compile(rb"<[^<>]*>")
_CDATA = re.compile(rb"<!\[CDATA\[.*?\]\]>", re.DOTALL)  # text, however it looks
_BLANKS = re.compile(rb"(<[^<>]*>)[\t\n\r ]+(?=<)")  # blanks between two tags
_RUN_BLANKS = re.compile(rb"(<(?:[^\s<>/:]+:)?t(?:[\t\n\r ][^<>]*)?>)[\t\n\r ]+(?=<)")  # ... inside a <w:t> run
_ENTITY = re.compile(rb"&#?[0-9A-Za-z]+;")
COUNT_CHUNK = 1 << 20
_XML_LEAD = b"\xef\xbb\xbf\xff\xfe \t\r\n\x00"  # byte-order marks and blanks before an XML part's first '<'
_ENCRYPTED = 0x1  # the zip flag bit of an encrypted part
# What Office and LibreOffice write; zipfile unpacks a whole bzip2 block before cutting it to the size a part
# declares, so a 2 KB part declared as 1,000 bytes held 2.5 GB.
_UNPACKED = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_UNSUPPORTED_FLAGS = 0x20 | 0x40  # patched data, strong encryption: zipfile raises NotImplementedError on them
# What reading a broken zip or part raises: zipfile's own errors, and the decompressors', and a negative offset's.
UNREADABLE = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError)
# How python-docx and python-pptx parse a part (no entities, no network), to tell a broken part as they would.
_LIBRARY_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_PACKAGE_PARTS = frozenset({"[Content_Types].xml", "_rels/.rels"})  # without which no part is found
_ROOT_REACH = 64 * 2**10  # bytes of a part read for its root's start tag
_FIRST_TAG = re.compile(rb"<([^\s<>/!?]+)([^<>]*)>")  # a part's first element's start tag, where a parser stops short
_ROOT_PIECE = 4096
_COPY_CHUNK = 2**20
Package = TypeVar("Package")


class XmlBudget:
    """What the XML of one file may hold, counted piece by piece before any of it is parsed: ``MAX_XML_BYTES`` of
    markup, ``MAX_XML_TAGS`` elements, ``MAX_XML_ATTRIBUTES`` attributes and the text ``max_chars`` characters can
    take; past any, an ``OverBudget`` naming the file's ``kind``."""

    def __init__(self, max_chars: int, kind: str) -> None:
        self.max_chars, self.kind = max_chars, kind
        self.max_text = BYTES_PER_CHARACTER * max_chars
        self.tags = self.attributes = self.text = self.markup = 0

    def count(self, chunk: bytes) -> None:
        kind = self.kind
        self.markup += len(chunk)
        if self.markup > MAX_XML_BYTES:
            raise OverBudget(f"over budget: {kind} XML of more than {MAX_XML_BYTES / 2**20:.0f} MB (an XML bomb?)")
        self.tags += chunk.count(b"<") - chunk.count(b"</")  # elements: a closing tag is not one
        self.attributes += chunk.count(b"=")
        if self.attributes > MAX_XML_ATTRIBUTES:
            raise OverBudget(f"over budget: {kind} XML holds more than {MAX_XML_ATTRIBUTES:,} attributes (an XML "
                            "bomb?)")
        if self.tags > MAX_XML_TAGS:
            raise OverBudget(f"over budget: {kind} XML holds more than {MAX_XML_TAGS:,} elements (an XML bomb?)")
        self.text += _text_bytes(chunk)
        if self.text > self.max_text:
            raise OverBudget(f"over budget: {kind} XML holds more than {self.max_text:,} bytes of text; "
                            f"max_document_chars allows {self.max_chars:,} characters")


def refuse_bombs(data: bytes, max_chars: int, kind: str) -> XmlBudget:
    """An Office file (``kind``: DOCX, XLSX, PPTX, ODT, ODS, ODP, EPUB) is a zip of XML: refuse one that would
    inflate past ``MAX_EXPANDED_BYTES``, or whose XML parts are past the :class:`XmlBudget`, or with a part that
    cannot be unpacked, before anything unpacks or parses it. Returns the budget, for parts read as markup though
    they do not start as XML (an EPUB's chapters)."""
    budget = XmlBudget(max_chars, kind)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            expanded = sum(member.file_size for member in members)
            if expanded > MAX_EXPANDED_BYTES:
                raise LoadError(f"{kind} would expand to {expanded / 2**20:.0f} MB (a zip bomb?); the limit is "
                                f"{MAX_EXPANDED_BYTES / 2**20:.0f} MB")
            for member in members:
                _refuse_unreadable(member, kind)
                for chunk in _xml_chunks(archive, member):
                    budget.count(chunk)
    except UNREADABLE:
        pass  # not a readable zip: the loader's library reports it as corrupt
    return budget


def counted_as_xml(data: bytes) -> bool:
    """Whether :func:`refuse_bombs` counted a part of these bytes: one that starts as XML does (its first byte,
    after byte-order marks and blanks, a '<')."""
    return data.lstrip(_XML_LEAD).startswith(b"<")


def opened_despite_broken_parts(data: bytes, open_package: Callable[[bytes], Package], warnings: list[str]) -> Package:
    """``open_package(data)``; when a part's XML cannot be parsed, or a relationship names a part the package lacks
    (python-docx and python-pptx load every part as they open a package, so one broken slide, chart or header, or
    one picture missing, lost the whole file), again with the package repaired (``_repaired``), each repair said in
    ``warnings``. The repair runs after the failure is handled, its traceback dropped: inside the handler, the
    traceback kept the first attempt's parts alive (a 500 MB picture beside a broken part peaked at 1.6 GB)."""
    try:
        return open_package(data)
    except (etree.XMLSyntaxError, KeyError) as error:  # (KeyError: a part named that is not in the zip)
        failure = error.with_traceback(None)
    repaired = _repaired(data, warnings)
    if repaired is None:
        raise failure
    return open_package(repaired)


def _repaired(data: bytes, warnings: list[str]) -> bytes | None:
    """The package with each XML part that cannot be parsed replaced by its root element alone (but the package's
    own and its main part's, found by ``_rels/.rels`` as the libraries find it: a slide so emptied fails on its
    own), and each relationship to a part it lacks left out, the other parts copied a piece at a time; None when
    nothing needs repair, or a main part is broken, or a broken part's root cannot be told."""
    out = io.BytesIO()
    repairs: list[str] = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as copy:
        main, members = _main_parts(archive), set(archive.namelist())
        for member in archive.infolist():
            if not member.filename.endswith((".xml", ".rels")):  # a picture or other binary: never parsed
                with archive.open(member) as source, copy.open(member.filename, "w", force_zip64=True) as target:
                    shutil.copyfileobj(source, target, _COPY_CHUNK)
                continue
            part = archive.read(member)
            error = _xml_error(part)
            if error is not None:
                alone = _root_alone(part)
                if member.filename in main or alone is None:
                    return None
                repairs.append(f"part {member.filename[:200]} cannot be parsed ({error[:200]}): read as empty")
                part = alone
            elif member.filename.endswith(".rels"):
                part = _dangling_left_out(part, member.filename, members, repairs)
            copy.writestr(member.filename, part)
    if not repairs:
        return None
    said = CappedWarnings(warnings, "{} more broken or missing part(s)")
    for repair in repairs:
        said.add(repair)
    said.finish()
    return out.getvalue()


def _dangling_left_out(relationships: bytes, name: str, members: set[str], repairs: list[str]) -> bytes:
    """A relationships part (``name``, well-formed) without the relationships to parts not in the package
    (``members``), each said in ``repairs``; as it was when it names none. Targets are resolved as the libraries
    resolve them: relative to the folder of the part the relationships are of, or from the package's root."""
    tree = etree.fromstring(relationships, _LIBRARY_PARSER)
    folder = posixpath.dirname(posixpath.dirname(name))  # word/_rels/document.xml.rels: word
    dangling = []
    for relationship in tree.iter("{*}Relationship"):
        if relationship.get("TargetMode") == "External":
            continue
        target = str(relationship.get("Target", ""))
        resolved = posixpath.abspath(posixpath.join("/" + folder, target))[1:]  # ("//x" stays "/x", no member)
        if resolved not in members:
            dangling.append(relationship)
            repairs.append(f"part {name[:200]} names {target[:200]!r}, which the file does not hold: left out")
    if not dangling:
        return relationships
    for relationship in dangling:
        relationship.getparent().remove(relationship)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8", standalone=True)


def _main_parts(archive: zipfile.ZipFile) -> set[str]:
    """The parts without which nothing of the package can be read: [Content_Types].xml, _rels/.rels, the main part
    it names (officeDocument) and that part's relationships; only the first two when it names none."""
    main = set(_PACKAGE_PARTS)
    try:
        relationships = etree.fromstring(archive.read("_rels/.rels"), _LIBRARY_PARSER)
    except (KeyError, etree.XMLSyntaxError, *UNREADABLE):
        return main
    for relationship in relationships.iter("{*}Relationship"):
        if str(relationship.get("Type", "")).endswith("/officeDocument"):
            target = posixpath.normpath(str(relationship.get("Target", "")).lstrip("/"))
            folder, name = posixpath.split(target)
            main |= {target, posixpath.join(folder, "_rels", f"{name}.rels")}
    return main


def _root_alone(part: bytes) -> bytes | None:
    """A broken part's root element, its attributes and namespaces, with nothing in it, as the parser reads its
    start tag (after a declaration, a DOCTYPE or a comment, in any encoding); else its first start tag's, where
    the part breaks before it (blanks or a second byte-order mark before its declaration); None when neither is
    an element."""
    parser = etree.XMLPullParser(events=("start",), resolve_entities=False, no_network=True, load_dtd=False)
    root = None
    for offset in range(0, min(len(part), _ROOT_REACH), _ROOT_PIECE):
        try:
            parser.feed(part[offset:offset + _ROOT_PIECE])
            broken = False
        except etree.XMLSyntaxError:
            broken = True  # what was read before the error is still in the events; after it, the parser reads junk
        root = next((element for _, element in parser.read_events()), None)
        if root is not None or broken:
            break
    if root is not None:
        try:
            return etree.tostring(etree.Element(root.tag, dict(root.attrib), nsmap=root.nsmap))
        except ValueError:  # a name no element can have
            return None
    found = _FIRST_TAG.search(part, 0, _ROOT_REACH)
    alone = b"<%s%s/>" % (found.group(1), found.group(2).rstrip(b"/")) if found is not None else b""
    return alone if _xml_error(alone) is None else None


def _xml_error(xml: bytes) -> str | None:
    """Why python-docx's and python-pptx's parser cannot parse ``xml`` (not well-formed, nested too deep); None
    when it can."""
    try:
        etree.fromstring(xml, _LIBRARY_PARSER)
    except etree.XMLSyntaxError as error:
        return str(error) or "not well-formed"
    return None


class _TooDeep(Exception):
    """Raised by :class:`ShallowTreeBuilder` past ``MAX_XML_DEPTH``; ``parse_part`` says which part."""


class ShallowTreeBuilder(TreeBuilder):
    """Builds a tree at most ``MAX_XML_DEPTH`` deep, as lxml's parser refuses deeper: walking the tree recurses
    once a level, and 1,200 levels of a 1 KB part raised a RecursionError."""

    depth = 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        self.depth += 1
        if self.depth > MAX_XML_DEPTH:
            raise _TooDeep
        return super().start(tag, attrs)

    def end(self, tag: str) -> Element:
        self.depth -= 1
        return super().end(tag)


def parse_part(package: zipfile.ZipFile, name: str, kind: str, target: ShallowTreeBuilder | None = None) -> Element:
    """A part of the package (which holds it) parsed with no DTD (a DTD's default attributes multiply every
    element's: 6 KB took 2.7 GB), no entities, no external references and at most ``MAX_XML_DEPTH`` levels;
    ``target`` builds the tree."""
    parser = DefusedXMLParser(target=target or ShallowTreeBuilder(), forbid_dtd=True)
    try:
        parser.feed(package.read(name))
        return parser.close()
    except DefusedXmlException as error:
        raise LoadError(f"{kind} declares a DTD or XML entities, which are refused") from error
    except _TooDeep:
        raise LoadError(f"corrupt {kind}: {name[:200]} nests XML more than {MAX_XML_DEPTH} deep") from None
    except (ParseError, ValueError, LookupError) as error:  # an encoding expat lacks is a ValueError or LookupError
        raise LoadError(f"corrupt {kind}: {name[:200]} is not well-formed XML ({error})") from error


def _xml_chunks(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> Iterator[bytes]:
    """A part's XML in pieces; nothing for an image or other binary part (it cannot parse as XML, whatever its
    name). A part that turns out broken ends its pieces, and the parts after it are still counted (returning
    from the whole check let a broken first part hide a bomb behind it)."""
    try:
        with archive.open(member) as part:
            chunk = part.read(COUNT_CHUNK)
            while chunk and not chunk.lstrip(_XML_LEAD):  # blanks, however many, before the first '<'
                chunk = part.read(COUNT_CHUNK)
            if not chunk.lstrip(_XML_LEAD).startswith(b"<"):
                return
            while chunk:
                yield chunk
                chunk = part.read(COUNT_CHUNK)
    except UNREADABLE:
        return  # its own reader reports it, if the loader reads it at all


def _text_bytes(xml: bytes) -> int:
    """The bytes of text in a piece of XML, an entity counted as one, a CDATA section as its length; blanks between
    two tags only in a text run. A tag cut by the piece's end counts as text: a few bytes."""
    outside = _CDATA.sub(b"<>", xml)
    cdata = len(xml) - len(outside)  # the sections' text, and 10 bytes of markup each: a few bytes
    blanks = len(outside) - len(_BLANKS.sub(rb"\1", outside))
    run_blanks = len(outside) - len(_RUN_BLANKS.sub(rb"\1", outside))
    text = _TAG.sub(b"", outside)
    return cdata + len(_ENTITY.sub(b"&", text)) - blanks + run_blanks


def _refuse_unreadable(member: zipfile.ZipInfo, kind: str) -> None:
    """Refuse a part that zipfile cannot unpack: an encrypted one (a password-protected package) or one compressed
    with a method Office and LibreOffice never use (deflate64 or bzip2, from some zip tools: they store or deflate)."""
    name = member.filename[:200]
    if member.flag_bits & _ENCRYPTED:
        raise LoadError(f"{kind} is encrypted: its part {name} needs a password")
    if member.compress_type not in _UNPACKED:
        method = zipfile.compressor_names.get(member.compress_type, f"method {member.compress_type}")
        raise LoadError(f"{kind} part {name} uses an unsupported compression ({method})")
    if member.flag_bits & _UNSUPPORTED_FLAGS:
        raise LoadError(f"{kind} part {name} uses a zip feature that cannot be read (patched data or strong "
                        "encryption)")
