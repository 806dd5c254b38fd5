"""Hostile files generated on the spot: each shape once cost minutes, gigabytes, a hang, or a read outside the folder."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from tests.documents import image_bytes, odf_bytes, pdf_from_objects

SECRET = "OUTSIDE-SECRET-5f3a"  # text that lives outside every source folder: it must never show up anywhere
SECRET_COLOUR = (13, 200, 77)


def outside(folder: Path) -> tuple[Path, Path]:
    """A folder beside the source holding a secret text file and a secret picture; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    text, picture = folder / "secret.txt", folder / "secret.png"
    text.write_text(f"{SECRET} the payroll password is hunter2", encoding="utf-8")
    picture.write_bytes(image_bytes("PNG", size=(120, 90), color=SECRET_COLOUR))
    return text, picture


def noise_png(side: int, seed: int = 0) -> bytes:
    """A PNG of random pixels: expensive to decode, and never equal to another one."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", compress_level=1)
    return out.getvalue()


def grey16_png(side: int) -> bytes:
    """A 16-bit greyscale PNG of side x side pixels that compresses to almost nothing (64 MP in about 140 KB)."""
    out = io.BytesIO()
    Image.new("I;16", (side, side), 1000).save(out, "PNG")
    return out.getvalue()


def many_scans_jpeg(side: int, copies: int) -> bytes:
    """A progressive grey JPEG of side x side pixels with its last scan repeated ``copies`` times: a few bytes a
    scan, each of which libjpeg decodes over every block of the image."""
    out = io.BytesIO()
    Image.new("L", (side, side), 128).save(out, "JPEG", progressive=True, quality=90)
    data = out.getvalue()
    last_scan = data[data.rindex(b"\xff\xda") : -2]  # up to the end-of-image marker
    return data[:-2] + last_scan * copies + data[-2:]


def front_matter_markdown(spaces: int = 200_000) -> bytes:
    """Markdown whose front matter title line is mostly spaces: a backtracking regex took minutes on it."""
    return ("---\ntitle: x" + " " * spaces + "y\n---\n\nThe body of the front matter note.\n").encode()


def nested_html(depth: int, image: str = "missing.png") -> bytes:
    """HTML nested ``depth`` blocks deep, an image in each: quadratic walks took minutes."""
    return ("<html><body>" + f"<div>level <img src='{image}' alt='a'>" * depth + "deep text"
            + "</div>" * depth + "</body></html>").encode()


def big_html(megabytes: float) -> bytes:
    """Simple HTML, many tiny elements: parsing it cost over a hundred times its size in memory."""
    return ("<html><body>" + "<p>x</p>" * int(megabytes * 2**20 / 8) + "</body></html>").encode()


def repeated_image_markdown(image: str, count: int) -> bytes:
    """Markdown showing the same image file ``count`` times: each reference was decoded again."""
    return ("# Gallery\n\n" + "".join(f"![view {n}]({image})\n\n" for n in range(count))).encode()


def docx_with_shared_picture(count: int, picture: bytes) -> bytes:
    """A DOCX whose ``count`` pictures all use one image part (python-docx shares identical images)."""
    from docx import Document
    from docx.shared import Inches

    document = Document()
    document.add_paragraph("Pictures that share one image part.")
    for _ in range(count):
        document.add_picture(io.BytesIO(picture), width=Inches(1))
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def docx_of_big_picture_and_broken_styles(megabytes: int) -> bytes:
    """A DOCX whose one picture part is ``megabytes`` of zeros and whose styles part is cut short: the repair of
    the styles ran while the failed first opening, with its copy of every part, was still held."""
    return deck_rewritten({"word/media/image1.png": lambda part: bytes(megabytes * 2**20),
                           "word/styles.xml": lambda part: part[:-30]}, deck=docx_with_shared_picture(1, noise_png(40)))


def docx_relating_many_parts(parts: int, repeats: int, chained: bool = False) -> bytes:
    """A DOCX whose document relates to ``parts`` parts of one byte, and to the last of them ``repeats`` times more;
    ``chained``: each part relates to the next instead. python-docx looked each part up in a list of those seen, and
    followed a chain by recursion."""
    from docx import Document

    plain = io.BytesIO()
    Document().save(plain)
    custom = f"{_RELATIONSHIPS}/customXml"
    listed = [_relationship(f"p{n}", "customXml", f"m/p{n}.bin") for n in range(1 if chained else parts)]
    listed += [_relationship(f"d{n}", "customXml", f"m/p{parts - 1}.bin") for n in range(repeats)]
    extra = {f"word/m/p{n}.bin": b"x" for n in range(parts)}
    if chained:
        extra |= {f"word/m/_rels/p{n}.bin.rels": _relationships(
            f'<Relationship Id="n" Type="{custom}" Target="p{n + 1}.bin"/>'.encode()) for n in range(parts - 1)}
    return deck_rewritten({"word/_rels/document.xml.rels": _added(b"Relationships", b"".join(listed)),
                           "[Content_Types].xml": _added(b"Types", b'<Default Extension="bin" '
                                                         b'ContentType="application/octet-stream"/>')},
                          extra=extra, deck=plain.getvalue())


def docx_of_nested_tables(depth: int, megabytes: int) -> bytes:
    """A DOCX of ``depth`` tables nested in each other's first cell around ``megabytes`` paragraphs of a megabyte
    of words each: every level joined the text of all those inside it again."""
    paragraph = '<w:p><w:r><w:t xml:space="preserve">' + "word " * (2**20 // 5) + "</w:t></w:r></w:p>"
    inner = paragraph * megabytes
    for _ in range(depth):
        inner = f"<w:tbl><w:tr><w:tc>{inner}</w:tc><w:tc><w:p><w:r><w:t>x</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"
    return docx_body(inner)


def docx_of_nested_drawings(depth: int, pictures: int) -> bytes:
    """A DOCX whose body nests ``depth`` drawings around ``pictures`` pictures of one image part: each picture was
    taken once for every drawing around it."""
    import re

    namespaces = 'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"'

    def nested(xml: bytes) -> bytes:
        picture = re.search(rb'r:embed="([^"]+)"', xml)
        assert picture is not None
        body = (f"<w:p><w:r><w:t>Nested drawings</w:t></w:r><w:r>{f'<w:drawing {namespaces}>' * depth}"
                + f'<a:blip r:embed="{picture.group(1).decode()}"/>' * pictures + "</w:drawing>" * depth
                + "</w:r></w:p>")
        return (xml.decode().split("<w:body>")[0] + f"<w:body>{body}</w:body></w:document>").encode()

    return deck_rewritten({"word/document.xml": nested}, deck=docx_with_shared_picture(1, noise_png(64)))


def _docx_with_document_xml(rewrite: Callable[[str], str], part: str = "document.xml") -> bytes:
    """A valid DOCX (made by python-docx) whose word/document.xml is ``rewrite`` of the original, stored as
    word/``part`` (the package's content types and relationships renamed with it)."""
    from docx import Document

    plain = io.BytesIO()
    Document().save(plain)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(plain.getvalue())) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "word/document.xml":
                data = rewrite(data.decode()).encode()
            elif item.filename in ("[Content_Types].xml", "_rels/.rels"):
                data = data.replace(b"word/document.xml", f"word/{part}".encode())
            target.writestr(item.filename.replace("document.xml", part), data)
    return out.getvalue()


def xlsx_with_sheet_rows(rows: bytes, doctype: bytes = b"",
                         rewrite: dict[str, Callable[[bytes], bytes]] | None = None,
                         extra: dict[str, bytes] | None = None) -> bytes:
    """A workbook (made by openpyxl) whose one sheet's data is ``rows`` (``<row>`` elements), its declared size
    the whole of Excel's grid, its XML after ``doctype``; other parts rewritten by ``rewrite`` (name: function),
    and ``extra`` parts added."""
    from openpyxl import Workbook

    plain = io.BytesIO()
    Workbook().save(plain)
    sheet = (b'%s<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             b'<dimension ref="A1:XFD1048576"/><sheetData>%s</sheetData></worksheet>' % (doctype, rows))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(plain.getvalue())) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = sheet if item.filename == "xl/worksheets/sheet1.xml" else source.read(item.filename)
            target.writestr(item.filename, (rewrite or {}).get(item.filename, lambda part: part)(data))
        for name, data in (extra or {}).items():
            target.writestr(name, data)
    return out.getvalue()


_RELATIONSHIPS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_WORKBOOK_RELATIONSHIPS = "xl/_rels/workbook.xml.rels"


def _added(tag: bytes, xml: bytes) -> Callable[[bytes], bytes]:
    """A rewrite putting ``xml`` before the closing ``tag`` of a part."""
    return lambda part: part.replace(b"</%s>" % tag, xml + b"</%s>" % tag, 1)


def _relationship(identifier: str, kind: str, target: str) -> bytes:
    return f'<Relationship Id="{identifier}" Type="{_RELATIONSHIPS}/{kind}" Target="{target}"/>'.encode()


def _relationships(*relationships: bytes) -> bytes:
    return (b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            + b"".join(relationships) + b"</Relationships>")


def xlsx_linking_one_book(references: int, cells: int) -> bytes:
    """A workbook listing one external link part of ``cells`` cached cells ``references`` times: openpyxl parsed
    the part again for each and kept every copy."""
    link = (f'<externalLink xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            f'xmlns:r="{_RELATIONSHIPS}"><externalBook r:id="rId1"><sheetNames><sheetName val="S"/></sheetNames>'
            '<sheetDataSet><sheetData sheetId="0"><row r="1">'
            + "".join(f'<cell r="A{n}"><v>{n}</v></cell>' for n in range(1, cells + 1))
            + "</row></sheetData></sheetDataSet></externalBook></externalLink>").encode()
    listed = f'<externalReferences xmlns:r="{_RELATIONSHIPS}">'.encode() + \
        b'<externalReference r:id="rId9"/>' * references + b"</externalReferences>"
    return xlsx_with_sheet_rows(b'<row r="1"><c r="A1" t="inlineStr"><is><t>linked</t></is></c></row>', rewrite={
        "xl/workbook.xml": lambda part: part.replace(b"</sheets>", b"</sheets>" + listed),
        _WORKBOOK_RELATIONSHIPS: _added(b"Relationships",
                                        _relationship("rId9", "externalLink", "externalLinks/externalLink1.xml"))},
        extra={"xl/externalLinks/externalLink1.xml": link, "xl/externalLinks/_rels/externalLink1.xml.rels": _relationships(
            f'<Relationship Id="rId1" Type="{_RELATIONSHIPS}/externalLinkPath" Target="other.xlsx" '
            'TargetMode="External"/>'.encode())})


def xlsx_with_print_area(letters: int) -> bytes:
    """A workbook whose print area is ``letters`` letters: openpyxl matched it with a backtracking pattern."""
    name = b'<definedName name="_xlnm.Print_Area" localSheetId="0">%s</definedName>' % (b"a" * letters)
    return xlsx_with_sheet_rows(b'<row r="1"><c r="A1" t="inlineStr"><is><t>printed</t></is></c></row>', rewrite={
        "xl/workbook.xml": lambda part: part.replace(b"<definedNames/>", b"<definedNames>%s</definedNames>" % name)})


def xlsx_chart_sheet_showing_one_picture(times: int, megabytes: int) -> bytes:
    """A workbook whose second tab is a chart sheet drawing one picture part of ``megabytes`` ``times`` times:
    openpyxl read the part again for each and kept every copy."""
    anchor = ('<xdr:absoluteAnchor><xdr:pos x="0" y="0"/><xdr:ext cx="1" cy="1"/><xdr:pic><xdr:nvPicPr>'
              '<xdr:cNvPr id="1" name="P"/><xdr:cNvPicPr/></xdr:nvPicPr><xdr:blipFill><a:blip r:embed="rId1"/>'
              '</xdr:blipFill><xdr:spPr/></xdr:pic><xdr:clientData/></xdr:absoluteAnchor>')
    drawing = ('<xdr:wsDr xmlns:xdr="http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing" '
               f'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:r="{_RELATIONSHIPS}">'
               + anchor * times + "</xdr:wsDr>").encode()
    chart = (f'<chartsheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
             f'xmlns:r="{_RELATIONSHIPS}"><sheetViews><sheetView workbookViewId="0"/></sheetViews>'
             '<drawing r:id="rId1"/></chartsheet>').encode()
    tab = f'<sheet xmlns:r="{_RELATIONSHIPS}" name="Chart" sheetId="2" r:id="rId8"/>'.encode()
    return xlsx_with_sheet_rows(b'<row r="1"><c r="A1" t="inlineStr"><is><t>charted</t></is></c></row>', rewrite={
        "xl/workbook.xml": _added(b"sheets", tab),
        _WORKBOOK_RELATIONSHIPS: _added(b"Relationships", _relationship("rId8", "chartsheet", "chartsheets/sheet1.xml"))},
        extra={"xl/chartsheets/sheet1.xml": chart,
               "xl/chartsheets/_rels/sheet1.xml.rels": _relationships(
                   _relationship("rId1", "drawing", "../drawings/drawing1.xml")),
               "xl/drawings/drawing1.xml": drawing,
               "xl/drawings/_rels/drawing1.xml.rels": _relationships(
                   _relationship("rId1", "image", "../media/big.png")),
               "xl/media/big.png": noise_png(40) + bytes(megabytes * 2**20)})


def xlsx_listing_one_sheet(times: int, relationships: int) -> bytes:
    """A workbook listing its one sheet ``times`` times, the sheet with ``relationships`` hyperlinks: openpyxl read
    them all again for each listing."""
    tabs = b"".join(f'<sheet xmlns:r="{_RELATIONSHIPS}" name="S{n}" sheetId="{n}" r:id="rId1"/>'.encode()
                    for n in range(2, times + 1))
    links = _relationships(*(f'<Relationship Id="h{n}" Type="{_RELATIONSHIPS}/hyperlink" Target="http://x/{n}" '
                             'TargetMode="External"/>'.encode() for n in range(relationships)))
    return xlsx_with_sheet_rows(b'<row r="1"><c r="A1" t="inlineStr"><is><t>listed</t></is></c></row>', rewrite={
        "xl/workbook.xml": _added(b"sheets", tabs)}, extra={"xl/worksheets/_rels/sheet1.xml.rels": links})


def far_cells_xlsx(rows: int) -> bytes:
    """A workbook of ``rows`` rows, each with one number in Excel's last column (XFD): openpyxl fills each row out
    to its last cell, 16,384 of them, so a megabyte compressed was billions of cells to look at."""
    return xlsx_with_sheet_rows(b"".join(b'<row r="%d"><c r="XFD%d"><v>%d</v></c></row>' % (n, n, n)
                                         for n in range(1, rows + 1)))


def deck_rewritten(rewrite: dict[str, Callable[[bytes], bytes | None]], extra: dict[str, bytes] | None = None,
                   deck: bytes | None = None) -> bytes:
    """A deck (``tests.documents.deck_bytes``, or ``deck``) whose parts named in ``rewrite`` are rewritten by their
    function (None: the part is left out), with ``extra`` parts added."""
    from tests.documents import deck_bytes

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(deck or deck_bytes())) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = rewrite.get(item.filename, lambda part: part)(source.read(item.filename))
            if data is not None:
                target.writestr(item.filename, data)
        for name, data in (extra or {}).items():
            target.writestr(name, data)
    return out.getvalue()


def attribute_bomb_deck(attributes: int) -> bytes:
    """A deck whose first slide holds elements of 300 attributes each, ``attributes`` in all: 1.3 MB of them
    parsed to 4.4 GB, as the element count missed them."""
    names = b"".join(b' a%d="1"' % number for number in range(300))
    junk = b"<p:x%s/>" % names * (attributes // 300)
    return deck_rewritten({"ppt/slides/slide1.xml": lambda xml: xml.replace(b"</p:sld>", junk + b"</p:sld>")})


def one_picture_shown_often_deck(shown: int, megabytes: int) -> bytes:
    """A deck showing one picture part of ``megabytes`` (not an image a decoder reads) ``shown`` times: it was
    hashed again for each."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[6])
    for _ in range(shown):
        slide.shapes.add_picture(io.BytesIO(image_bytes("PNG", size=(40, 40))), Inches(1), Inches(1))
    out = io.BytesIO()
    deck.save(out)
    return deck_rewritten({"ppt/media/image1.png": lambda part: b"\0" * (megabytes * 2**20)}, deck=out.getvalue())


def slides_sharing_one_notes_deck(slides: int, paragraphs: int) -> bytes:
    """A deck of ``slides`` slides whose relationships all name the first one's notes, of ``paragraphs`` empty
    paragraphs before "Shared note": they were read again for each slide."""
    from pptx import Presentation

    deck = Presentation()
    for number in range(slides):
        deck.slides.add_slide(deck.slide_layouts[5]).shapes.title.text = f"Slide {number}"
    deck.slides[0].notes_slide.notes_text_frame.text = "Shared note"
    out = io.BytesIO()
    deck.save(out)
    notes = f'<Relationship Id="rId99" Type="{_RELATIONSHIPS}/notesSlide" Target="../notesSlides/notesSlide1.xml"/>'
    rewrite: dict[str, Callable[[bytes], bytes | None]] = {
        f"ppt/slides/_rels/slide{number}.xml.rels": _added(b"Relationships", notes.encode())
        for number in range(2, slides + 1)}
    rewrite["ppt/notesSlides/notesSlide1.xml"] = lambda part: part.replace(b"<a:p><a:r>", b"<a:p/>" * paragraphs
                                                                           + b"<a:p><a:r>", 1)
    return deck_rewritten(rewrite, deck=out.getvalue())


def nested_groups_deck(depth: int) -> bytes:
    """A deck whose first slide holds a group of a group ... ``depth`` deep, a text box at the bottom."""
    opening = (b'<p:grpSp><p:nvGrpSpPr><p:cNvPr id="%d" name="Group"/><p:cNvGrpSpPr/><p:nvPr/></p:nvGrpSpPr>'
               b'<p:grpSpPr/>')
    box = (b'<p:sp><p:nvSpPr><p:cNvPr id="9" name="Deep"/><p:cNvSpPr txBox="1"/><p:nvPr/></p:nvSpPr><p:spPr/>'
           b'<p:txBody><a:bodyPr/><a:p><a:r><a:t>Deep inside</a:t></a:r></a:p></p:txBody></p:sp>')
    nested = b"".join(opening % (1000 + level) for level in range(depth)) + box + b"</p:grpSp>" * depth
    return deck_rewritten({"ppt/slides/slide1.xml": lambda xml: xml.replace(b"</p:spTree>", nested + b"</p:spTree>",
                                                                           1)})


def docx_with_unreadable_parts(encrypted: bool = False, method: int | None = None, flags: int = 0,
                               version: int | None = None) -> bytes:
    """A DOCX whose zip directory marks every part ``encrypted``, or compressed with ``method`` (9: deflate64), or
    with other ``flags`` (0x20 patched data, 0x40 strong encryption), or needing zip ``version`` (100: 10.0):
    zipfile raises RuntimeError or NotImplementedError on such a part, not a zip error."""
    from docx import Document

    plain = io.BytesIO()
    Document().save(plain)
    data = bytearray(plain.getvalue())
    at = int.from_bytes(data[-6:-2], "little")  # the central directory's offset, in the end record (no comment)
    while data[at:at + 4] == b"PK\x01\x02":
        data[at + 8] |= encrypted | flags  # the flag bits; bit 0: encrypted
        if version is not None:
            data[at + 6] = version  # the version needed to extract
        if method is not None:
            data[at + 10:at + 12] = method.to_bytes(2, "little")
        at += 46 + sum(int.from_bytes(data[at + field:at + field + 2], "little") for field in (28, 30, 32))
    return bytes(data)


def docx_xml_bomb(megabytes: float, part: str = "document.xml", lead: int = 0) -> bytes:
    """A DOCX of well under a megabyte whose XML expands to ``megabytes`` of empty paragraphs (gigabytes parsed),
    its main part stored as word/``part``: a name not ending in .xml must not hide it from the bomb check, nor
    ``lead`` blanks before its XML (which then has no XML declaration, as one must come first)."""
    body = "<w:p/>" * int(megabytes * 2**20 / 6)

    def rewrite(xml: str) -> str:
        head = xml.split("<w:body>")[0]
        return (" " * lead + head.partition("?>")[2] if lead else head) + f"<w:body>{body}</w:body></w:document>"

    return _docx_with_document_xml(rewrite, part)


def docx_body(body: str) -> bytes:
    """A valid DOCX whose document body is the XML ``body`` (paragraphs, tables...)."""
    return _docx_with_document_xml(lambda xml: xml.split("<w:body>")[0] + f"<w:body>{body}</w:body></w:document>")


def docx_long_text(megabytes: float, character: str = "a") -> bytes:
    """A DOCX of well under a megabyte whose one paragraph holds ``megabytes`` of ``character`` in runs of a
    megabyte: few elements, so the element count passes it, but its text was parsed and joined whole (gigabytes)
    before being refused."""
    run = '<w:r><w:t xml:space="preserve">' + character * (2**20 // len(character.encode())) + "</w:t></w:r>"
    return docx_body(f"<w:p>{run * int(megabytes)}</w:p>")


def docx_external_entity(target: Path) -> bytes:
    """A DOCX whose XML declares an external entity naming ``target`` and uses it (XXE)."""
    def rewrite(xml: str) -> str:
        declaration, _, rest = xml.partition("?>")
        doctype = f'<!DOCTYPE w:document [<!ENTITY leak SYSTEM "file://{target}">]>'
        rest = rest.replace("<w:body>", "<w:body><w:p><w:r><w:t>entity: &leak; end</w:t></w:r></w:p>", 1)
        return declaration + "?>" + doctype + rest

    return _docx_with_document_xml(rewrite)


def office_external_entity(kind: str, target: Path) -> bytes:
    """A workbook (``kind`` "xlsx"), a deck ("pptx") or an OpenDocument text ("odt") whose XML declares an external
    entity naming ``target`` and uses it in a cell, on a slide or in a paragraph (XXE)."""
    doctype = b'<!DOCTYPE x [<!ENTITY leak SYSTEM "file://%s">]>' % str(target).encode()
    if kind == "xlsx":
        return xlsx_with_sheet_rows(b'<row r="1"><c r="A1" t="inlineStr"><is><t>entity: &leak; end</t></is></c></row>',
                                    doctype)
    if kind == "odt":
        return odf_bytes("odt", "<text:p>entity: &leak; end</text:p>", prolog=doctype.decode())
    return deck_rewritten({"ppt/slides/slide1.xml": lambda xml: xml.replace(b"?>", b"?>" + doctype, 1).replace(
        b"Revenue grew 12%", b"entity: &leak; end", 1)})


def shared_stream_pdf(pages: int, stream_megabytes: float, text: bool = False) -> bytes:
    """A PDF of ``pages`` pages that all draw one content stream of ``stream_megabytes`` (compressed to kilobytes).

    The stream is line drawing (``text`` adds a short line of text to it); each page parsed it again.
    """
    operation = b"10 10 m 20 20 l S\n"
    body = operation * int(stream_megabytes * 2**20 / len(operation))
    if text:
        body = b"BT /F1 12 Tf 72 720 Td (A page drawn from a shared stream) Tj ET\n" + body
    stream = zlib.compress(body, 9)
    kids = " ".join(f"{5 + index} 0 R" for index in range(pages))
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        4: b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
    }
    for index in range(pages):
        objects[5 + index] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                              b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>")
    return pdf_from_objects(objects)


def form_tree_pdf(fan_out: int) -> bytes:
    """A one-page PDF that draws ``fan_out`` names of one form, which draws itself as often: a valid file of a
    kilobyte whose tree of drawn forms has fan_out^8 paths to the loader's depth."""
    names = " ".join(f"/F{number} 5 0 R" for number in range(fan_out)).encode()
    draws = " ".join(f"/F{number} Do" for number in range(fan_out)).encode()
    content = b"BT /F1 12 Tf 72 720 Td (A page with a tree of forms) Tj ET " + draws
    drawing = b"0 0 m 1 1 l S " + draws
    return pdf_from_objects({
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        4: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> "
           b"/XObject << %s >> >> /Contents 6 0 R >>" % names,
        5: b"<< /Type /XObject /Subtype /Form /BBox [0 0 10 10] /Resources << /XObject << %s >> >> /Length %d >>\n"
           b"stream\n%s\nendstream" % (names, len(drawing), drawing),
        6: b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    })


def shared_resources_pdf(pages: int, images: int) -> bytes:
    """A PDF of ``pages`` pages sharing one resources dictionary that names ``images`` distinct 1x1 images, each
    page drawing its own share of them: each page's resources were searched for images again, after the
    document's allowance of images was full."""
    first_image, first_content, share = 5 + pages, 5 + pages + images, images // pages
    names = b" ".join(b"/I%d %d 0 R" % (number, first_image + number) for number in range(images))
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{' '.join(f'{5 + page} 0 R' for page in range(pages))}] /Count {pages} >>".encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        4: b"<< /Font << /F1 3 0 R >> /XObject << %s >> >>" % names,
    }
    for page in range(pages):
        draws = b" ".join(b"/I%d Do" % number for number in range(page * share, (page + 1) * share))
        content = b"BT /F1 12 Tf 72 720 Td (A page of a catalogue) Tj ET " + draws
        objects[5 + page] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources 4 0 R "
                             b"/Contents %d 0 R >>" % (first_content + page))
        objects[first_content + page] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)
    for number in range(images):
        objects[first_image + number] = (b"<< /Type /XObject /Subtype /Image /Width 1 /Height 1 /ColorSpace "
                                         b"/DeviceGray /BitsPerComponent 8 /Length 1 >>\nstream\n%c\nendstream"
                                         % (number % 256))
    return pdf_from_objects(objects)


def repeated_contents_pdf(copies: int, stream_megabytes: float, forms: bool = False) -> bytes:
    """A one-page PDF whose content lists one stream of ``stream_megabytes`` of line drawing (compressed to
    kilobytes) ``copies`` times, or (``forms``) draws ``copies`` forms, each its own such stream: the images a page
    draws were looked for in all of it, decoded and joined (gigabytes)."""
    operation = b"10 10 m 20 20 l S\n"
    stream = zlib.compress(operation * int(stream_megabytes * 2**20 / len(operation)), 9)
    drawing = b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream)
    text = b"BT /F1 12 Tf 72 720 Td (A page of many drawings) Tj ET "
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               5: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"}
    if forms:
        names = b" ".join(b"/F%d %d 0 R" % (number, 10 + number) for number in range(copies))
        content = text + b" ".join(b"/F%d Do" % number for number in range(copies))
        objects[4] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)
        contents, resources = b"4 0 R", b"<< /Font << /F1 5 0 R >> /XObject << %s >> >>" % names
        for number in range(copies):
            objects[10 + number] = drawing.replace(b"<< /Length", b"<< /Type /XObject /Subtype /Form "
                                                                  b"/BBox [0 0 10 10] /Length", 1)
    else:
        objects[4], objects[6] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text), drawing
        contents, resources = b"[4 0 R %s]" % b" ".join([b"6 0 R"] * copies), b"<< /Font << /F1 5 0 R >> >>"
    objects[3] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources %s /Contents %s >>"
                  % (resources, contents))
    return pdf_from_objects(objects)


def masked_pictures_pdf(pages: int, side: int, mask: int | tuple[int, ...] = 0, key: str = "/SMask",
                        text: bool = True) -> bytes:
    """A PDF of ``pages`` pages (with a line of text unless not ``text``), each drawing its own RGB picture of
    ``side`` pixels square, with a grey soft mask (or, ``key="/Mask"``, a stencil mask) of ``mask`` pixels square
    when ``mask`` is given (several sizes: a chain, each mask the soft mask of the one before): all compressed to
    kilobytes. pypdf kept every picture and mask decoded for the document's life (2.2 GB for 30 of 4,900 px)."""
    sizes = (mask,) if isinstance(mask, int) else mask
    sizes = sizes if any(sizes) else ()
    kids = " ".join(f"{10 * (page + 1)} 0 R" for page in range(pages))
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               2: f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode()}
    for page in range(pages):
        first = 10 * (page + 1)
        line = b"BT /F1 12 Tf 72 720 Td (Masked page %d) Tj ET " % page if text else b""
        content = line + b"q 200 0 0 200 72 400 cm /Im1 Do Q"
        objects[first] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                          b"/Resources << /Font << /F1 3 0 R >> /XObject << /Im1 %d 0 R >> >> /Contents %d 0 R >>"
                          % (first + 2, first + 1))
        objects[first + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)
        pixels = zlib.compress(bytes([page % 256, 40, 90]) * side * side)
        entries = b"/Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8" % (side, side)
        for level, size in enumerate((0, *sizes)):
            number = first + 2 + level
            if level < len(sizes):
                entries += b" %s %d 0 R" % (key.encode() if level == 0 else b"/SMask", number + 1)
            objects[number] = (b"<< /Type /XObject /Subtype /Image %s /Filter /FlateDecode /Length %d >>\n"
                               b"stream\n%s\nendstream" % (entries, len(pixels), pixels))
            if level < len(sizes):
                stencil = key == "/Mask" and level == 0
                entries = b"/Width %d /Height %d %s" % (sizes[level], sizes[level], b"/ImageMask true" if stencil
                                                        else b"/ColorSpace /DeviceGray /BitsPerComponent 8")
                row = (sizes[level] + 7) // 8 if stencil else sizes[level]
                pixels = zlib.compress(b"\x80" * row * sizes[level], 9)
    return pdf_from_objects(objects)


def shared_mask_pdf(pictures: int, megabytes: float) -> bytes:
    """A one-page PDF drawing ``pictures`` pictures of 16 px (decoration) that all name one soft mask: a JPEG
    behind a flate filter of ``megabytes`` (compressed to kilobytes). The mask was inflated again for each one."""
    mask = zlib.compress(b"\x00" * int(megabytes * 2**20), 9)
    names = b" ".join(b"/I%d %d 0 R" % (number, 100 + number) for number in range(pictures))
    content = b"BT /F1 12 Tf 72 720 Td (A page of icons) Tj ET " + b" ".join(b"/I%d Do" % n for n in range(pictures))
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> "
                  b"/XObject << %s >> >> /Contents 5 0 R >>" % names,
               4: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               5: b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
               6: b"<< /Type /XObject /Subtype /Image /Width 100 /Height 100 /ColorSpace /DeviceGray "
                  b"/BitsPerComponent 8 /Filter [/FlateDecode /DCTDecode] /Length %d >>\nstream\n%s\nendstream"
                  % (len(mask), mask)}
    for number in range(pictures):
        objects[100 + number] = (b"<< /Type /XObject /Subtype /Image /Width 16 /Height 16 /ColorSpace /DeviceGray "
                                 b"/BitsPerComponent 8 /SMask 6 0 R /Length 256 >>\nstream\n%s\nendstream"
                                 % (bytes([number % 256]) * 256))
    return pdf_from_objects(objects)


def inline_images_pdf(pages: int, side: int) -> bytes:
    """A PDF of ``pages`` text pages, each content stream holding an inline grey image of ``side`` pixels square
    (compressed to kilobytes): pypdf kept every page's content decoded after reading its text."""
    kids = " ".join(f"{10 + 2 * page} 0 R" for page in range(pages))
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               2: f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode()}
    for page in range(pages):
        body = zlib.compress(b"BT /F1 12 Tf 72 720 Td (Inline page %d) Tj ET q 100 0 0 100 0 0 cm BI /W %d /H %d "
                             b"/CS /G /BPC 8 ID %s\nEI Q\n" % (page, side, side, bytes([page % 256]) * side * side), 9)
        objects[10 + 2 * page] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font "
                                  b"<< /F1 3 0 R >> >> /Contents %d 0 R >>" % (11 + 2 * page))
        objects[11 + 2 * page] = b"<< /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (len(body), body)
    return pdf_from_objects(objects)


def undrawable_scan_pdf(kind: str) -> bytes:
    """A PDF of a text page and a page without text that costs pdfium minutes or gigabytes to draw: ``tiles`` (a
    pattern of tiles a hundredth of a point apart over the page), ``scans`` (a JPEG of 20,000 scans declared 16
    pixels square, which pypdf passes over as decoration), ``jbig2`` (JBIG2 declared 100 pixels square whose own
    page and region segments say 60,000 x 35,000, which pypdf cannot decode without jbig2dec), ``softmask`` (the
    page fills a rectangle through a graphics state's soft mask, a form drawing that JPEG of 20,000 scans: no
    resource of the page names an image), ``inline`` (that JPEG inside the page's content), ``glued`` (the same,
    its "BI" written without white space: "()BI/W 16/H 16..."), ``seen`` (a form drawing that inline JPEG, drawn
    first by the text page, then by the page without text), ``tinted`` (a strip of 16,000 x 31 pixels, too thin to be
    a picture, in a DeviceN colour space whose tint transform is a PostScript program of 10,000 operators, run for
    each pixel)."""
    def segment(number: int, kind: int, data: bytes) -> bytes:
        return struct.pack(">IBBBI", number, kind, 0, 1, len(data)) + data

    image = (b"", b"")  # the image's dictionary entries and data
    if kind in ("scans", "softmask", "inline", "glued", "seen"):
        image = b"/Width 16 /Height 16 /ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /DCTDecode", \
            many_scans_jpeg(4000, 20_000)
    elif kind == "tinted":
        image = (b"/Width 16000 /Height 31 /ColorSpace [/DeviceN [/A /B] /DeviceGray 11 0 R] /BitsPerComponent 8 "
                 b"/Filter /FlateDecode", zlib.compress(bytes(range(256)) * (16000 * 31 * 2 // 256 + 1), 9))
    elif kind == "jbig2":
        region = struct.pack(">IIIIBB", 60000, 35000, 0, 0, 0, 0) + bytes([3, 0xFF, 0xFD, 0xFF, 2, 0xFE, 0xFE, 0xFE])
        image = b"/Width 100 /Height 100 /ColorSpace /DeviceGray /BitsPerComponent 1 /Filter /JBIG2Decode", (
            segment(0, 48, struct.pack(">IIIIBH", 60000, 35000, 0, 0, 0, 0))
            + segment(1, 38, region + bytes(range(256)) * 4000))
    form = b"/XObject << /Fm 10 0 R >>" if kind == "seen" else b""
    text = b"BT /F1 12 Tf 72 720 Td (Hello text page one) Tj ET" + b" q 0.01 0 0 0.01 0 0 cm /Fm Do Q" * bool(form)
    drawing = b"q 612 0 0 792 0 0 cm /J Do Q"
    inline = b"q 612 0 0 792 0 0 cm BI /W 16 /H 16 /CS /G /BPC 8 /F /DCT ID %s EI Q" % image[1]
    scan, resources = {"tiles": (b"/Pattern cs /P1 scn 0 0 612 792 re f", b"/Pattern << /P1 8 0 R >>"),
                       "inline": (inline, b""), "seen": (b"/Fm Do", form),
                       "glued": (inline.replace(b" BI /W 16 /H 16 /CS /G /BPC 8 /F /DCT",
                                                b" ()BI/W 16/H 16/CS/G/BPC 8/F/DCT", 1), b""),
                       "softmask": (b"q /GS1 gs 0 0 612 792 re f Q",
                                    b"/ExtGState << /GS1 << /SMask << /S /Luminosity /G 9 0 R >> >> >>")}.get(
        kind, (drawing, b"/XObject << /J 8 0 R >>"))
    tile = b"0 0 0.5 0.5 re f"
    tint = b"{ " + b"dup pop " * 10_000 + b"pop pop }"
    return pdf_from_objects({
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 7 0 R >> %s >> "
           b"/Contents 5 0 R >>" % form,
        4: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << %s >> /Contents 6 0 R >>"
           % resources,
        5: b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
        6: b"<< /Length %d >>\nstream\n%s\nendstream" % (len(scan), scan),
        7: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        8: (b"<< /Type /Pattern /PatternType 1 /PaintType 1 /TilingType 1 /BBox [0 0 1 1] /XStep 0.01 /YStep 0.01 "
            b"/Resources << >> /Length %d >>\nstream\n%s\nendstream" % (len(tile), tile)) if kind == "tiles" else
           b"<< /Type /XObject /Subtype /Image %s /Length %d >>\nstream\n%s\nendstream"
           % (image[0], len(image[1]), image[1]),
        9: b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Group << /S /Transparency /CS /DeviceGray >> "
           b"/Resources << /XObject << /J 8 0 R >> >> /Length %d >>\nstream\n%s\nendstream" % (len(drawing), drawing),
        10: b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Length %d >>\nstream\n%s\nendstream"
            % (len(inline), inline),
        11: b"<< /FunctionType 4 /Domain [0 1 0 1] /Range [0 1] /Length %d >>\nstream\n%s\nendstream"
            % (len(tint), tint),
    })


def lone_surrogate_pdf() -> bytes:
    """A one-page PDF whose font maps "A" to a lone UTF-16 surrogate (D800) in its ToUnicode map: such text failed
    the tokenizers ("TextEncodeInput must be ...") and lost the whole file."""
    cmap = (b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /X def 1 begincodespacerange "
            b"<00> <FF> endcodespacerange 2 beginbfchar <41> <D800> <42> <0042> endbfchar endcmap CMapName "
            b"currentdict /CMap defineresource pop end end")
    content = b"BT /F1 12 Tf 72 720 Td (Refund policy AB is here) Tj ET"
    return pdf_from_objects({
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
        4: b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        5: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
           b"/Contents 4 0 R >>",
        6: b"<< /Length %d >>\nstream\n%s\nendstream" % (len(cmap), cmap),
    })


def nul_in_error_pdf() -> bytes:
    """A PDF encrypted with a crypt filter named /A#00B: pypdf's error names it, NUL and all, and PostgreSQL's text
    refused that reason, ending every run of the folder with a DataError and storing nothing of it."""
    encrypt = (b"<< /Filter /Standard /V 4 /R 4 /Length 128 /CF << >> /StmF /A#00B /StrF /Identity "
               b"/O (0123456789abcdef0123456789abcdef) /U (0123456789abcdef0123456789abcdef) /P -4 >>")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>", encrypt]
    out, offsets = bytearray(b"%PDF-1.6\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 5\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += (b"trailer\n<< /Size 5 /Root 1 0 R /Encrypt 4 0 R /ID [<00112233445566778899aabbccddeeff> "
            b"<00112233445566778899aabbccddeeff>] >>\nstartxref\n%d\n%%%%EOF\n" % xref)
    return bytes(out)


def mime_nested(depth: int, boundary: str = 'boundary="b{}"') -> bytes:
    """A message of multiparts each inside the last, ``depth`` deep, with a line of text at the bottom; each
    declares its boundary ``b<level>`` as ``boundary`` writes it."""
    opening = b"".join(f"Content-Type: multipart/mixed; {boundary.format(level)}\n\n--b{level}\n".encode()
                       for level in range(depth))
    closing = b"".join(b"\n--b%d--\n" % level for level in reversed(range(depth)))
    return b"Subject: deep\n" + opening + b"Content-Type: text/plain\n\ndeep text\n" + closing


def xls_of_numbers(rows: int, columns: int) -> bytes:
    """An Excel 97-2003 workbook of one sheet holding a number in each of ``rows`` x ``columns`` cells."""
    import io

    import xlwt

    workbook = xlwt.Workbook()
    sheet = workbook.add_sheet("Numbers")
    for row_number in range(rows):
        row = sheet.row(row_number)
        for column in range(columns):
            row.set_cell_number(column, row_number * columns + column)
        if row_number % 1000 == 999:
            sheet.flush_row_data()
    written = io.BytesIO()
    workbook.save(written)
    return written.getvalue()


def ppt_listing_one_slide(times: int, characters: int) -> bytes:
    """A deck whose slide list names its one slide (of ``characters`` of text) ``times`` times more."""
    import olefile

    from tests.documents import compound_file, ppt_bytes, ppt_record, ppt_shape

    reserved = 28 * times + 8  # a listed text as long as the entries and a filler record, overwritten below
    deck = ppt_bytes([[ppt_shape("y" * characters)]], listed=[[(4, "z" * ((reserved - 20) // 2))]])
    with olefile.OleFileIO(io.BytesIO(deck)) as package:
        streams = {"/".join(name): package.openstream(name).read() for name in package.listdir()}
    stream = bytearray(streams["PowerPoint Document"])
    at, length = stream.index(struct.pack("<HHI", 0, 0x0F9F, 4)), 20 + 2 * ((reserved - 20) // 2)
    entries = ppt_record(0x03F3, struct.pack("<5I", 2, 0, 0, 256, 0)) * times
    stream[at:at + length] = entries + ppt_record(0, bytes(length - len(entries) - 8))
    return compound_file({**streams, "PowerPoint Document": bytes(stream)})


def ppt_nested_groups(depth: int) -> bytes:
    """A deck whose slide holds a text box, then groups nested ``depth`` deep around another."""
    from tests.documents import ppt_bytes, ppt_shape

    inner = ppt_shape("Deep")
    headers = b"".join(struct.pack("<HHI", 0xF, 0xF003, (depth - level - 1) * 8 + len(inner)) for level in range(depth))
    return ppt_bytes([[ppt_shape("Top"), headers + inner]])


def doc_marking_one_picture(marks: int) -> bytes:
    """A Word 97-2003 document of ``marks`` picture characters whose properties all name one inline picture."""
    import olefile

    from tests.documents import compound_file, doc_bytes, doc_picture

    document = doc_bytes([("Start \x01" + "\x01" * marks + " end.\r", False)],
                         pictures=[doc_picture(image_bytes("PNG", (80, 60)))] + [None] * marks)
    with olefile.OleFileIO(io.BytesIO(document)) as package:
        streams = {"/".join(name): package.openstream(name).read() for name in package.listdir()}
    word = bytearray(streams["WordDocument"])
    page = len(word) - 512  # the character properties' page: its picture's run widened over every mark
    struct.pack_into("<I", word, page + 8, struct.unpack_from("<I", word, page + 8)[0] + 2 * marks)
    return compound_file({**streams, "WordDocument": bytes(word)})


def _ppt_stream(stream: bytes, edit: int) -> bytes:
    """A deck of this PowerPoint Document stream whose Current User stream names the edit record at ``edit``."""
    from tests.documents import compound_file, ppt_record

    user = ppt_record(0x0FF6, struct.pack("<IIIHHBBH", 20, 0xE391C05F, edit, 0, 0x03F4, 3, 0, 0))
    return compound_file({"PowerPoint Document": stream, "Current User": user})


def _ppt_edit(previous: int, directory: int) -> bytes:
    from tests.documents import ppt_record

    return ppt_record(0x0FF5, struct.pack("<IHBBIIIIHH", 256, 0, 0, 3, previous, directory, 1, 2, 1, 0))


def ppt_edits_naming_one_directory(edits: int, megabytes: float) -> bytes:
    """A deck whose chain of ``edits`` earlier saves all name one persist directory of zero words."""
    from tests.documents import ppt_record

    stream = bytearray(ppt_record(0x1772, bytes(int(megabytes * 2**20))))
    previous = 0
    for _ in range(edits):
        previous, stream = len(stream), stream + _ppt_edit(previous, 0)
    return _ppt_stream(bytes(stream), previous)


def ppt_slides_sharing_one_drawing(slides: int, shapes: bytes) -> bytes:
    """A deck of ``slides`` slide records nested so that each has one drawing of ``shapes`` as its child: slide
    k's header at 16 k, then an atom over the headers after it, ending where the drawing starts."""
    from tests.documents import ppt_record

    patriarch = ppt_record(0xF004, ppt_record(0xF00A, struct.pack("<II", 1024, 5)), container=True)
    drawing = ppt_record(0x040C, ppt_record(0xF002, ppt_record(0xF003, patriarch + shapes, container=True),
                                            container=True), container=True)
    stream = bytearray()
    for slide in range(slides):
        stream += struct.pack("<HHI", 0xF, 0x03EE, 16 * slides + len(drawing) - 16 * slide - 8)
        stream += struct.pack("<HHI", 0, 0x0001, 16 * slides - 16 * slide - 16)
    stream += drawing
    document = len(stream)
    stream += ppt_record(0x03E8, ppt_record(0x0FF0, b"".join(ppt_record(0x03F3, struct.pack(
        "<5I", 2 + slide, 0, 0, 256 + slide, 0)) for slide in range(slides)), 0, True), container=True)
    directory = len(stream)
    stream += ppt_record(0x1772, struct.pack("<II", 1 << 20 | 1, document) + struct.pack("<I", slides << 20 | 2) +
                         b"".join(struct.pack("<I", 16 * slide) for slide in range(slides)))
    edit = len(stream)
    return _ppt_stream(bytes(stream + _ppt_edit(0, directory)), edit)


def doc_bins_naming_one_page(characters: int) -> bytes:
    """A Word 97-2003 document of ``characters`` 8-bit picture characters (the first an inline picture) whose
    character properties' bin table gives each its own entry, all naming one page."""
    import olefile

    from tests.documents import compound_file, doc_bytes, doc_picture

    document = doc_bytes([("\x01" * characters + "\r", True)],
                         pictures=[doc_picture(image_bytes("PNG", (80, 60)))] + [None] * (characters - 1))
    with olefile.OleFileIO(io.BytesIO(document)) as package:
        streams = {"/".join(name): package.openstream(name).read() for name in package.listdir()}
    word, table = bytearray(streams["WordDocument"]), streams["1Table"]
    pair = 154 + 8 * 12  # fcPlcfBteChpx, after the FIB's fixed part, its 14 shorts and 22 longs
    offset, length = struct.unpack_from("<II", word, pair)
    first, _, page = struct.unpack_from("<III", table, offset)
    index = struct.pack(f"<{characters + 1}I", *range(first, first + characters + 1)) + struct.pack(
        "<I", page) * characters
    struct.pack_into("<II", word, pair, len(table), len(index))
    return compound_file({**streams, "WordDocument": bytes(word), "1Table": table + index})


def doc_pieces_cycling_over_pages(pages: int, pieces: int) -> bytes:
    """A Word 97-2003 document of ``pieces`` pieces that all hold the same ``pages`` paragraph marks, each mark's
    properties on a page of its own: reading the text comes back to every page once per piece."""
    from tests.documents import compound_file

    word = bytearray(1024) + b"\r" * pages
    word = word.ljust(-(-len(word) // 512) * 512, b"\0")
    first = len(word) // 512
    for page_number in range(pages):  # runs from the page's own mark on, sharing one PAPX: "in a table"
        page = bytearray(512)
        struct.pack_into("<11I", page, 0, *range(1024 + page_number, 1024 + page_number + 11))
        at = 4 * 11 + 13 * 10
        papx = bytes([4]) + b"\0\0" + b"\x16\x24\x01" * 2
        page[at:at + len(papx)] = papx
        for run in range(10):
            page[4 * 11 + 13 * run] = at // 2
        page[511] = 10
        word += page
    index = struct.pack(f"<{pages + 1}I", *range(1024, 1025 + pages)) + struct.pack(
        f"<{pages}I", *range(first, first + pages))
    positions = struct.pack(f"<{pieces + 1}I", *range(0, pages * (pieces + 1), pages))
    clx = b"\x02" + struct.pack("<I", len(positions) + 8 * pieces) + positions + struct.pack(
        "<HIH", 0, 2048 | 0x40000000, 0) * pieces
    pairs = [0] * 186
    pairs[66:68], pairs[26:28] = [0, len(clx)], [len(clx), len(index)]  # the piece table, the PAPX bin table
    longs = [0] * 22
    longs[3] = pages * pieces
    fib = struct.pack("<HH", 0xA5EC, 0xC1).ljust(10, b"\0") + struct.pack("<H", 0x200)
    fib = fib.ljust(32, b"\0") + struct.pack("<H", 14) + bytes(28) + struct.pack("<H", 22) + struct.pack(
        "<22i", *longs) + struct.pack("<H", 93) + struct.pack("<186I", *pairs)
    word[:len(fib)] = fib
    return compound_file({"WordDocument": bytes(word), "1Table": clx + index})


_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def doc_of_notes(count: int) -> bytes:
    """A Word 97-2003 document of ``count`` footnotes, each referenced from its own character of the main text."""
    from tests.documents import doc_bytes

    return doc_bytes([("\x02" * count + "\r", True)], footnotes=[(number, "\x02 Note.\r") for number in range(count)])


def docx_of_notes(notes: int, relationships: int) -> bytes:
    """A DOCX whose footnotes part, named by ``relationships`` relationships, holds ``notes`` empty notes, one of
    them referenced."""
    from tests.documents import docx_with_notes

    xml = "".join(f'<w:footnote w:id="{number}"/>' for number in range(notes))
    return docx_with_notes('<w:p><w:r><w:t>Hello</w:t></w:r><w:r><w:footnoteReference w:id="1"/></w:r></w:p>',
                           notes_xml={"footnotes": f'<w:footnotes xmlns:w="{_W}">{xml}</w:footnotes>'},
                           relationships=relationships)


def docx_naming_one_note(references: int, characters: int) -> bytes:
    """A DOCX whose one paragraph references one footnote of ``characters`` characters ``references`` times."""
    from tests.documents import docx_with_notes

    reference = '<w:r><w:footnoteReference w:id="1"/></w:r>'
    return docx_with_notes(f"<w:p>{reference * references}</w:p>",
                           footnotes={1: f'<w:p><w:r><w:t>{"x" * characters}</w:t></w:r></w:p>'})


def _ole_streams(deck: bytes) -> dict[str, bytes]:
    """The streams of a compound file by path, to write again with more."""
    import olefile

    with olefile.OleFileIO(io.BytesIO(deck)) as package:
        return {"/".join(path): package.openstream(path).read() for path in package.listdir()}


def ppt_summary_looping(declared: int) -> bytes:
    """A deck whose summary information (a title, padded past the mini stream's 4 KB) declares ``declared`` bytes
    on a first sector the FAT chains to itself: olefile read the same sector until that much was read."""
    from tests.documents import compound_file, ppt_bytes, ppt_shape, summary_information

    streams = _ole_streams(ppt_bytes([[ppt_shape("Hello slide")]]))
    streams["\x05SummaryInformation"] = summary_information("Looping", codepage=1252).ljust(5000, b"\0")
    data = bytearray(compound_file(streams))
    entry = _ole_entries(data)["\x05SummaryInformation"]
    start = struct.unpack_from("<I", data, entry + 116)[0]
    struct.pack_into("<IQ", data, entry + 116, start, declared)
    struct.pack_into("<I", data, 512 + 512 * struct.unpack_from("<I", data, 0x4C)[0] + 4 * start, start)
    return bytes(data)


def ppt_declaring_fat_sectors(count: int) -> bytes:
    """A deck whose header declares ``count`` FAT sectors, listed by a DIFAT sector that names itself as the next:
    olefile copied the whole FAT once for each sector it added (time the square of ``count``)."""
    from tests.documents import ppt_bytes, ppt_shape

    data = bytearray(ppt_bytes([[ppt_shape("Hello slide")]]))
    fat, difat = struct.unpack_from("<I", data, 0x4C)[0], (len(data) - 512) // 512  # one sector appended
    struct.pack_into("<I", data, 0x2C, count)
    struct.pack_into("<II", data, 0x44, difat, (count - 109 + 126) // 127)
    struct.pack_into("<109I", data, 0x4C, *[fat] * 109)
    return bytes(data + struct.pack("<128I", *[fat] * 127, difat))


def ppt_of_chained_entries(streams: int) -> bytes:
    """A deck of ``streams`` more streams, its entries chained as right siblings rather than a balanced tree, as a
    writer that never balances leaves them: olefile walked the chain recursively."""
    from tests.documents import compound_file, ppt_bytes, ppt_shape

    extra = {f"Pad{number:05}": b"x" for number in range(streams)}
    data = bytearray(compound_file(_ole_streams(ppt_bytes([[ppt_shape("Hello slide")]])) | extra))
    entries = sorted(_ole_entries(data).values())
    struct.pack_into("<I", data, entries[0] + 76, 1)  # the root's first entry
    for number, entry in enumerate(entries[1:], 1):
        struct.pack_into("<II", data, entry + 68, 0xFFFFFFFF, number + 1 if number < len(entries) - 1 else 0xFFFFFFFF)
    return bytes(data)


def _ole_entries(data: bytearray) -> dict[str, int]:
    """Where each directory entry of a file ``compound_file`` wrote starts, by name (its directory is one run of
    sectors)."""
    directory = 512 + 512 * struct.unpack_from("<I", data, 0x30)[0]
    found = {}
    for entry in range(directory, len(data) - 127, 128):
        size = struct.unpack_from("<H", data, entry + 64)[0]
        if not 2 <= size <= 64 or data[entry + 66] not in (1, 2, 5):
            break
        found[bytes(data[entry:entry + size - 2]).decode("utf-16-le")] = entry
    return found


def ppt_naming_its_root() -> bytes:
    """A deck whose first stream's entry names the root entry as its right sibling: a directory tree that would be
    a cycle, were the root placed again."""
    from tests.documents import ppt_bytes, ppt_shape

    data = bytearray(ppt_bytes([[ppt_shape("Hello slide")]]))
    entry = _ole_entries(data)["Current User"]
    struct.pack_into("<I", data, entry + 72, 0)
    return bytes(data)


def tiff_listing_strips(width: int, height: int, strips: int) -> bytes:
    """An uncompressed grey TIFF whose first page lists ``strips`` strips of one row each, all of the same bytes."""
    entries = [(256, 4, 1, struct.pack("<I", width)), (257, 4, 1, struct.pack("<I", height)),
               (258, 3, 1, struct.pack("<HH", 8, 0)), (259, 3, 1, struct.pack("<HH", 1, 0)),
               (262, 3, 1, struct.pack("<HH", 1, 0)), (277, 3, 1, struct.pack("<HH", 1, 0)),
               (278, 4, 1, struct.pack("<I", 1)), (273, 4, strips, None), (279, 4, strips, None)]
    directory = 8 + 2 + 12 * len(entries) + 4
    pixels = directory + 8 * strips
    values = {273: struct.pack("<I", pixels) * strips, 279: struct.pack("<I", width) * strips}
    out, extra = bytearray(b"II*\0" + struct.pack("<IH", 8, len(entries))), bytearray()
    for tag, kind, count, value in entries:
        if value is None:
            value, extra = struct.pack("<I", directory + len(extra)), extra + values[tag]
        out += struct.pack("<HHI", tag, kind, count) + value
    return bytes(out + struct.pack("<I", 0) + extra + bytes(range(width)))


def run_length_bmp(width: int, height: int) -> bytes:
    """An 8-bit run-length (BI_RLE8) BMP whose every row is one pixel, then the end of the line: a few bytes a
    row, whatever its width."""
    rows = b"\x01\x01\x00\x00" * height + b"\x00\x01"  # a run of one pixel, end of line; end of bitmap
    palette = bytes([0, 0, 0, 0, 255, 255, 255, 0]) + bytes(4 * 254)
    offset = 14 + 40 + len(palette)
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + header + palette + rows
