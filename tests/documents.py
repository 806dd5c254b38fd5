"""Real documents generated for tests, so no fixture file needs to be shipped."""

from __future__ import annotations

import io
import itertools
import re
import struct
import zlib
from typing import Any

from PIL import Image, ImageDraw


def image_bytes(image_format: str = "PNG", size: tuple[int, int] = (64, 48), mode: str = "RGB",
                color: object = (200, 30, 30), **save: object) -> bytes:
    """A one-colour image encoded in ``image_format``; ``save`` goes to Pillow (exif, transparency, ...)."""
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, image_format, **save)  # type: ignore[arg-type]
    return out.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` grey pixels (its data is a few bytes)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def pdf_bytes(pages: list[list[str]], title: str | None = None, images: list[bytes | None] | None = None) -> bytes:
    """A minimal valid PDF: one Helvetica text line per string, pages in order, a correct xref table.

    ``images``, when given, holds per page a JPEG drawn below the text (or None for no image).
    """
    images = images or [None] * len(pages)
    page_ids = [5 + 3 * index for index in range(len(pages))]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{' '.join(f'{i} 0 R' for i in page_ids)}] /Count {len(pages)} >>".encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        4: f"<< /Title ({title or ''}) >>".encode(),
    }
    for page_id, lines, jpeg in zip(page_ids, pages, images, strict=True):
        shows = " ".join(f"({line}) Tj 0 -16 Td" for line in lines)
        stream = f"BT /F1 12 Tf 72 720 Td {shows} ET".encode() if lines else b""
        xobjects = b""
        if jpeg is not None:
            width, height = Image.open(io.BytesIO(jpeg)).size
            objects[page_id + 2] = b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB " \
                b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n%s\nendstream" % (
                    width, height, len(jpeg), jpeg)
            xobjects = b" /XObject << /Im1 %d 0 R >>" % (page_id + 2)
            stream += b" q 200 0 0 150 72 400 cm /Im1 Do Q"
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >>%s >> "
            b"/Contents %d 0 R >>" % (xobjects, page_id + 1)
        )
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    return pdf_from_objects(objects, info=4 if title else None)


def long_scan_pdf(pages: int, size: tuple[int, int] = (1600, 2048)) -> bytes:
    """A scanned PDF of ``pages`` pages without a text layer, each a distinct JPEG picture of ``size`` (a letter page
    scanned at 200 dpi and kept at 2,048 px is 3.3 MP) saying "Page N"."""
    jpegs = []
    for number in range(1, pages + 1):
        picture = Image.new("RGB", size, "white")
        ImageDraw.Draw(picture).text((size[0] // 4, size[1] // 4), f"Page {number}", fill="black")
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=60)
        jpegs.append(out.getvalue())
    return pdf_bytes([[] for _ in range(pages)], images=jpegs)


def shared_resources_pdf_bytes(pages: list[tuple[str, list[int]]], jpegs: list[bytes]) -> bytes:
    """A PDF whose pages share one resources dictionary naming every JPEG in ``jpegs`` (as /Im0, /Im1, ...); each
    page is (its text line or "" for none, the numbers of the JPEGs it draws), as a scanner's software writes."""
    first_page, first_image = 5, 5 + 2 * len(pages)
    kids = " ".join(f"{first_page + 2 * index} 0 R" for index in range(len(pages)))
    names = b" ".join(b"/Im%d %d 0 R" % (number, first_image + number) for number in range(len(jpegs)))
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        4: b"<< /Font << /F1 3 0 R >> /XObject << %s >> >>" % names,
    }
    for index, (line, drawn) in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({line}) Tj ET".encode() if line else b""
        stream += b"".join(b" q 200 0 0 150 72 400 cm /Im%d Do Q" % number for number in drawn)
        page_id = first_page + 2 * index
        objects[page_id] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources 4 0 R "
                            b"/Contents %d 0 R >>" % (page_id + 1))
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    for number, jpeg in enumerate(jpegs):
        width, height = Image.open(io.BytesIO(jpeg)).size
        objects[first_image + number] = (b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace "
                                         b"/DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n"
                                         b"%s\nendstream" % (width, height, len(jpeg), jpeg))
    return pdf_from_objects(objects)


def striped_scan_pdf(*scans: Image.Image, strip: int = 16, garbled: bool = False) -> bytes:
    """A PDF without a text layer, a page per scan, each scan cut into images ``strip`` pixels high (one point a
    pixel), as some scanners write it; ``garbled`` gives each page instead one image whose JBIG2 data no decoder
    reads."""
    objects: dict[int, bytes] = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    kids, number = [], 3
    for scan in scans:
        grey = scan.convert("L")
        width, height = grey.size
        page, contents = number, number + 1
        number += 2
        names, draws = [], []
        for top in [0] if garbled else range(0, height, strip):
            rows = height if garbled else min(strip, height - top)
            strip_pixels = grey.crop((0, top, width, top + rows)).tobytes()
            data = b"\x97JB2garbage" * 64 if garbled else zlib.compress(strip_pixels)
            codec = b"/JBIG2Decode /BitsPerComponent 1" if garbled else b"/FlateDecode /BitsPerComponent 8"
            objects[number] = (b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                               b"/Filter %s /Length %d >>\nstream\n%s\nendstream"
                               % (width, rows, codec, len(data), data))
            names.append(b"/S%d %d 0 R" % (number, number))
            draws.append(b"q %d 0 0 %d 0 %d cm /S%d Do Q" % (width, rows, height - top - rows, number))
            number += 1
        content = b"\n".join(draws)
        objects[page] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /XObject << %s >> >> "
                         b"/Contents %d 0 R >>" % (width, height, b" ".join(names), contents))
        objects[contents] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)
        kids.append(b"%d 0 R" % page)
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    return pdf_from_objects(objects)


def chinese_font_pdf(pages: int, characters: int) -> bytes:
    """A PDF of ``pages`` pages of Chinese text, 300 characters each, in one font whose ToUnicode map names
    ``characters`` characters (一 onwards), as a Chinese document's embedded font subset does."""
    blocks = []
    for start in range(0, characters, 100):  # a CMap block holds at most 100 entries
        entries = "".join(f"<{code + 1:04X}> <{0x4E00 + code:04X}>\n" for code in range(start, min(start + 100,
                                                                                                  characters)))
        blocks.append(f"{min(100, characters - start)} beginbfchar\n{entries}endbfchar\n")
    cmap = zlib.compress(("/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /K def "
                          "1 begincodespacerange <0000> <FFFF> endcodespacerange\n" + "".join(blocks)
                          + "endcmap CMapName currentdict /CMap defineresource pop end end").encode())
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        3: b"<< /Type /Font /Subtype /Type0 /BaseFont /SimSun /Encoding /Identity-H /DescendantFonts [4 0 R] "
           b"/ToUnicode 5 0 R >>",
        4: b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /SimSun /CIDSystemInfo << /Registry (Adobe) "
           b"/Ordering (Identity) /Supplement 0 >> /DW 1000 >>",
        5: b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(cmap), cmap),
        6: b"<< /Font << /F1 3 0 R >> >>",
    }
    for page in range(pages):
        codes = "".join(f"{(page * 37 + n) % characters + 1:04X}" for n in range(300))
        content = f"BT /F1 12 Tf 72 720 Td <{codes}> Tj ET".encode()
        objects[10 + 2 * page] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources 6 0 R "
                                  b"/Contents %d 0 R >>" % (11 + 2 * page))
        objects[11 + 2 * page] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)
    kids = " ".join(f"{10 + 2 * page} 0 R" for page in range(pages))
    objects[2] = f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode()
    return pdf_from_objects(objects)


def deck_bytes(picture: bytes | None = None, title: str | None = None) -> bytes:
    """A PowerPoint deck made by python-pptx: a title-and-content slide with a text box above its body and speaker
    notes; a slide with a table, a group holding a text box and, with ``picture``, that picture (alt text "A bar
    chart of sales"); and an empty slide."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    deck.core_properties.title = title or ""
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Quarterly results"
    body = first.placeholders[1].text_frame
    body.text = "Revenue grew 12%"
    body.add_paragraph().text = "Costs fell in the 华东 region"
    first.shapes.add_textbox(Inches(5), Inches(0.2), Inches(2), Inches(1)).text_frame.text = "Draft for the board"
    first.notes_slide.notes_text_frame.text = "Mention the new warehouse in Ningbo."
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "Sales by region"
    table = second.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(4), Inches(2)).table
    for row, values in enumerate([("Region", "Sales"), ("North", "1,200"), ("South", "900")]):
        for column, value in enumerate(values):
            table.cell(row, column).text = value
    group = second.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(6), Inches(3), Inches(1)).text_frame.text = "Source: sales ledger"
    if picture is not None:
        shown = second.shapes.add_picture(io.BytesIO(picture), Inches(5), Inches(4))
        shown._element._nvXxPr.cNvPr.set("descr", "A bar chart of sales")
    deck.slides.add_slide(deck.slide_layouts[6])
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def pdf_from_objects(objects: dict[int, bytes], info: int | None = None) -> bytes:
    """A PDF of ``objects`` (numbered from 1, the catalog first; gaps are free entries) with a correct xref table;
    ``info`` is the number of the document information dictionary, if any."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref, size = len(out), max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[n] if n in offsets else b"0000000000 65535 f \n"
                    for n in range(1, size))
    trailer_info = b" /Info %d 0 R" % info if info is not None else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (size, trailer_info, xref)
    return bytes(out)


def email_bytes(body: str = "Hello,\n\nThe harbour lamps ship on Monday.\n", html: str | None = None,
                attachments: list[tuple[str, bytes]] | None = None, subject: str = "Harbour lamps",
                forwarded: list[bytes] | None = None) -> bytes:
    """An e-mail message as a mail client writes it: a plain body (with an HTML alternative when ``html`` is given),
    then each (file name, bytes) attachment, then each forwarded message."""
    from email.message import EmailMessage
    from email.policy import SMTP
    from mimetypes import guess_type

    message = EmailMessage()
    message["From"] = "Li Wei <li.wei@example.com>"
    message["To"] = "sales@example.com"
    message["Date"] = "Fri, 16 Dec 2022 17:04:16 +0800"
    message["Subject"] = subject
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for name, data in attachments or []:
        kind = guess_type(name)[0] or "application/octet-stream"
        message.add_attachment(data, *kind.split("/"), filename=name)
    for attached in forwarded or []:
        from email import message_from_bytes
        message.add_attachment(message_from_bytes(attached))
    return message.as_bytes(policy=SMTP)


def tnef_bytes(files: list[tuple[str, bytes]], body: str | None = None, rtf: bytes | None = None,
               codepage: int = 1252) -> bytes:
    """A winmail.dat as Outlook writes one (MS-OXTNEF): its version and OEM code page, a plain body in that code
    page, MAPI properties holding an RTF body (stored uncompressed, as "MELA"), then each file: its rendering, 8.3
    title, data and properties (its long name, in UTF-16)."""
    def attribute(level: int, identifier: int, kind: int, value: bytes) -> bytes:
        return bytes([level]) + struct.pack("<HHI", identifier, kind, len(value)) + value + struct.pack(
            "<H", sum(value) & 0xFFFF)

    def properties(items: list[tuple[int, int, bytes]]) -> bytes:
        out = struct.pack("<I", len(items))
        for kind, identifier, value in items:
            out += struct.pack("<HHII", kind, identifier, 1, len(value)) + value + bytes(-len(value) % 4)
        return out

    out = bytearray(struct.pack("<IH", 0x223E9F78, 0x0100) + attribute(1, 0x9006, 8, struct.pack("<I", 0x10000)))
    out += attribute(1, 0x9007, 6, struct.pack("<II", codepage, 0))
    if body is not None:
        out += attribute(1, 0x800C, 2, body.encode(f"cp{codepage}"))
    if rtf is not None:
        stored = struct.pack("<IIII", len(rtf) + 12, len(rtf), 0x414C454D, 0) + rtf
        out += attribute(1, 0x9003, 6, properties([(0x0102, 0x1009, stored)]))
    for name, data in files:
        out += attribute(2, 0x9002, 6, struct.pack("<HiHHI", 1, -1, 0, 0, 0))
        out += attribute(2, 0x8010, 1, name.encode(f"cp{codepage}", "replace")[:12] + b"\0")
        out += attribute(2, 0x800F, 6, data)
        out += attribute(2, 0x9005, 6, properties([(0x001F, 0x3707, name.encode("utf-16-le") + bytes(2))]))
    return bytes(out)


def mbox_bytes(messages: list[bytes]) -> bytes:
    """A mailbox as Thunderbird and Google Takeout write one (mboxrd): each message after a "From " line, a body line
    beginning ">"s and "From " quoted with one ">" more, a blank line after each message."""
    import re

    return b"".join(b"From sender@example.com Fri Dec 16 17:04:16 2022\n"
                    + re.sub(rb"(?m)^(>*From )", rb">\1", message.replace(b"\r\n", b"\n")).rstrip(b"\n") + b"\n\n"
                    for message in messages)


def compound_file(streams: dict[str, bytes]) -> bytes:
    """An OLE compound file (version 3, 512-byte sectors; up to 7 MB) holding ``streams`` by path (``"a/b"`` is
    stream b in storage a), as Office 97-2003 and Outlook write their files: streams under 4,096 bytes in the mini
    stream, in 64-byte sectors."""
    free, end_of_chain, fat_sector = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
    tree: dict[str, Any] = {}
    for path, data in streams.items():
        *storages, name = path.split("/")
        folder = tree
        for storage in storages:
            folder = folder.setdefault(storage, {})
        folder[name] = data
    chains: list[int] = []  # the FAT: for each 512-byte sector, the next of its chain
    mini_chains: list[int] = []  # the mini FAT, for 64-byte sectors of the mini stream
    body, mini = bytearray(), bytearray()
    nodes: list[tuple[str, Any, int]] = []  # (name, stream bytes or storage dict, kind) in directory order
    children: dict[int, list[int]] = {}

    def allocate(name: str, node: Any, kind: int) -> int:
        at = len(nodes)
        nodes.append((name, node, kind))
        if not isinstance(node, bytes):
            children[at] = [allocate(child, node[child], 1)
                            for child in sorted(node, key=lambda child: (len(child), child.upper()))]
        return at

    siblings: dict[int, tuple[int, int]] = {}  # left and right of each entry: a balanced tree of its storage's

    def balance(entries: list[int]) -> int:
        if not entries:
            return free
        middle = len(entries) // 2
        siblings[entries[middle]] = (balance(entries[:middle]), balance(entries[middle + 1:]))
        return entries[middle]

    def place(data: bytes, sector: int, table: list[int], into: bytearray) -> int:
        """Appends ``data`` in sectors of ``sector`` bytes chained in ``table``; returns its first sector."""
        first, count = len(table), max(1, -(-len(data) // sector))
        table.extend([first + 1 + index for index in range(count - 1)] + [end_of_chain])
        into.extend(data.ljust(count * sector, b"\0"))
        return first

    allocate("Root Entry", tree, 5)
    entries = []
    for at, (name, node, kind) in enumerate(nodes):
        left, right = siblings.get(at, (free, free))
        if isinstance(node, bytes):
            small = len(node) < 4096
            child, start = free, place(node, 64, mini_chains, mini) if small else place(node, 512, chains, body)
            size = len(node)
        else:
            child, start, size = balance(children[at]), 0, 0
        encoded = name.encode("utf-16-le") + b"\0\0"
        entries.append(encoded.ljust(64, b"\0") + struct.pack("<HBBIII", len(encoded), 2 if isinstance(node, bytes)
                                                               else kind, 1, left, right, child)
                       + bytes(36) + struct.pack("<IQ", start, size))
    root_start = place(bytes(mini), 512, chains, body) if mini else end_of_chain
    entries[0] = entries[0][:116] + struct.pack("<IQ", root_start, len(mini))
    mini_fat = struct.pack(f"<{len(mini_chains)}I", *mini_chains) if mini_chains else b""
    mini_fat_start = place(mini_fat.ljust(-(-len(mini_fat) // 512) * 512, b"\xff"), 512, chains, body) \
        if mini_fat else end_of_chain
    directory_start = place(b"".join(entries), 512, chains, body)
    fat_sectors = 1
    while len(chains) + fat_sectors > 128 * fat_sectors:
        fat_sectors += 1
    assert fat_sectors <= 109, "a file over 7 MB needs DIFAT sectors, which this writer does not write"
    fat_start = len(chains)
    chains += [fat_sector] * fat_sectors
    fat = struct.pack(f"<{len(chains)}I", *chains).ljust(512 * fat_sectors, b"\xff")
    difat = [fat_start + index for index in range(fat_sectors)] + [free] * (109 - fat_sectors)
    header = (bytes.fromhex("d0cf11e0a1b11ae1") + bytes(16) + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + bytes(6)
              + struct.pack("<IIIIIIII", 0, fat_sectors, directory_start, 0, 4096, mini_fat_start,
                            -(-len(mini_fat) // 512), end_of_chain)
              + struct.pack("<I", 0) + struct.pack("<109I", *difat))
    return header + bytes(body) + fat


def msg_streams(subject: str, body: str | None = "Hello,\n\nThe harbour lamps ship on Monday.",
                html: bytes | None = None, attachments: list[tuple[str, bytes]] | None = None,
                attached: list[dict[str, bytes]] | None = None,
                sender: tuple[str, str] = ("Li Wei", "li.wei@example.com"), to: str = "Sales", level: int = 0,
                unicode: bool = True, codepage: int = 936,
                recipients: list[tuple[int, str, str]] | None = None,
                content_ids: dict[str, str] | None = None) -> dict[str, bytes]:
    """The streams of an Outlook message as Outlook writes them (MAPI properties: strings in ``__substg1.0_``
    streams, times and code pages in the property stream; ``level`` 1 for an attached message), its attachments
    and attached messages (others' streams) in storages of their own, and its ``recipients`` (type: 1 To, 2 Cc,
    3 Bcc; name; address) in the recipient table; ``content_ids``: an attachment's Content-ID, by its name."""
    import datetime

    kind = "001F" if unicode else "001E"

    def text(value: str) -> bytes:
        return value.encode("utf-16-le") if unicode else value.encode(f"cp{codepage}")

    sent = datetime.datetime(2022, 12, 16, 9, 4, 16, tzinfo=datetime.timezone.utc)
    ticks = int((sent - datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc)).total_seconds()) * 10_000_000
    properties = bytes(32 if level == 0 else 24) + struct.pack("<IIQ", 0x00390040, 6, ticks) + struct.pack(
        "<IIQ", 0x3FDE0003, 6, codepage) + struct.pack("<IIQ", 0x3FFD0003, 6, codepage)
    streams = {"__properties_version1.0": properties, f"__substg1.0_0037{kind}": text(subject),
               f"__substg1.0_0C1A{kind}": text(sender[0]), f"__substg1.0_5D01{kind}": text(sender[1]),
               f"__substg1.0_0E04{kind}": text(to)}
    if body is not None:
        streams[f"__substg1.0_1000{kind}"] = text(body)
    if html is not None:
        streams["__substg1.0_10130102"] = html
    for number, (recipient_type, name, address) in enumerate(recipients or []):
        storage = f"__recip_version1.0_#{number:08X}"
        streams.update({f"{storage}/__properties_version1.0": bytes(8) + struct.pack("<IIQ", 0x0C150003, 6,
                                                                                     recipient_type),
                        f"{storage}/__substg1.0_3001{kind}": text(name), f"{storage}/__substg1.0_39FE{kind}":
                        text(address)})
    for number, (name, data) in enumerate(attachments or []):
        storage = f"__attach_version1.0_#{number:08X}"
        streams.update({f"{storage}/__properties_version1.0": bytes(8), f"{storage}/__substg1.0_3707001F":
                        name.encode("utf-16-le"), f"{storage}/__substg1.0_37010102": data})
        if name in (content_ids or {}):
            streams[f"{storage}/__substg1.0_3712001F"] = content_ids[name].encode("utf-16-le")
    for number, message in enumerate(attached or [], len(attachments or [])):
        storage = f"__attach_version1.0_#{number:08X}"
        streams.update({f"{storage}/__substg1.0_3701000D/{name}": data for name, data in message.items()})
    return streams


def compressed_rtf(rtf: bytes) -> bytes:
    """``rtf`` as Outlook stores a rich-text body (MS-OXRTFCP, "LZFu"), every byte a literal, then the reference
    to the write position that ends it."""
    items = [bytes([byte]) for byte in rtf] + [struct.pack(">H", ((207 + len(rtf)) & 0xFFF) << 4)]
    body = bytearray()
    for first in range(0, len(items), 8):
        group = items[first:first + 8]
        body.append(sum(1 << bit for bit, item in enumerate(group) if len(item) == 2))
        body += b"".join(group)
    return struct.pack("<IIII", len(body) + 12, len(rtf), 0x75465A4C, 0) + bytes(body)


def summary_information(title: str, codepage: int = 936) -> bytes:
    """A ``\\x05SummaryInformation`` property set holding its code page and a title in it."""
    import struct

    value = title.encode(f"cp{codepage}") + b"\0"
    value += b"\0" * (-len(value) % 4)
    properties = [(1, struct.pack("<Ihxx", 2, codepage)), (2, struct.pack("<II", 30, len(value)) + value)]
    offset, table, values = 8 + 8 * len(properties), b"", b""
    for identifier, encoded in properties:
        table += struct.pack("<II", identifier, offset + len(values))
        values += encoded
    section = struct.pack("<II", 8 + len(table) + len(values), len(properties)) + table + values
    summary_format = bytes.fromhex("e0859ff2f94f6810ab9108002b27b3d9")
    return struct.pack("<HHI", 0xFFFE, 0, 0x00020006) + bytes(16) + struct.pack("<I", 1) + summary_format + \
        struct.pack("<I", 48) + section


def doc_bytes(pieces: list[tuple[str, bool]], main: int | None = None, title: str | None = None,
              flags: int = 0x0200, table: str | None = None, boxes: str | None = None,
              pictures: list[bytes | None] | None = None,
              floating: list[tuple[bytes | None, str | None]] | None = None,
              footnotes: list[tuple[int, str]] | None = None, endnotes: list[tuple[int, str]] | None = None) -> bytes:
    """A Word 97-2003 document whose text is ``pieces``, each (text, stored 8-bit in Windows-1252), of which the
    first ``main`` characters (default all) are the main document; its piece table in the 1Table stream. Or its
    text is ``table``, a UTF-16 piece with paragraph properties as Word writes a table's: ``\\x07`` ends a cell,
    ``\\x1d`` a row (written as a cell's mark) and ``\\x1c`` a paragraph inside a cell (written ``\\r``); in a
    table nested in a cell, ``\\x1a`` ends a cell and ``\\x1b`` a row (written ``\\r``, as Word writes them).
    ``boxes`` is the text boxes' story, after the main document. ``pictures`` is, for each ``\\x01`` of the text
    in order, the inline picture its character properties place in the Data stream (``doc_picture``), or None for
    a character that is no picture. ``floating`` is, for each ``\\x08`` in order, the floating shape anchored there:
    a picture (PNG or JPEG, kept after the text) with its alt text, or (None, None) for a text box. ``footnotes``
    and ``endnotes`` are each note's reference (its character position in the main document) and its text (as
    Word writes it: its own mark, ``\\x02``, first, a paragraph's end last), in their stories after the main
    document's, which end with a paragraph of their own."""
    text_at = 1024
    word = bytearray(text_at)
    if table is not None:
        pieces = [(re.sub("[\x1a\x1b\x1c]", "\r", table.replace("\x1d", "\x07")), False)]
    positions, descriptors, position = [0], [], 0
    marks: list[tuple[int, int]] = []  # each \x01's stream offset and width
    anchored: list[int] = []  # each \x08's character position

    def units(text: str, eight_bit: bool) -> int:  # character positions count UTF-16 units (an emoji is two)
        return len(text) if eight_bit else len(text.encode("utf-16-le")) // 2

    def found(character: str, text: str, eight_bit: bool) -> list[int]:  # where each ``character`` is, in units
        places, done, last = [], 0, 0
        for match in re.finditer(character, text):
            done, last = done + units(text[last:match.start()], eight_bit), match.start()
            places.append(done)
        return places

    stories = ["".join(text for _, text in notes) + "\r" if notes else "" for notes in (footnotes, endnotes)]
    for text, eight_bit in [*pieces, *((story, True) for story in [*stories, boxes] if story)]:
        where, width = len(word), 1 if eight_bit else 2
        marks += [(where + width * place, width) for place in found("\x01", text, eight_bit)]
        anchored += [position + place for place in found("\x08", text, eight_bit)]
        word += text.encode("cp1252") if eight_bit else text.encode("utf-16-le")
        descriptors.append(struct.pack("<HIH", 0, (where * 2) | 0x40000000 if eight_bit else where, 0))
        position += units(text, eight_bit)
        positions.append(position)
    stream = b"\x02" + struct.pack("<I", 4 * len(positions) + 8 * len(descriptors)) + struct.pack(
        f"<{len(positions)}I", *positions) + b"".join(descriptors)
    pairs = [0] * 186
    pairs[66:68] = [0, len(stream)]  # fcClx, lcbClx: the 34th pair
    if table is not None:  # one FKP page: a run for each paragraph, a PAPX for each paragraph in the table
        page_number = -(-len(word) // 512)
        word = word.ljust(512 * page_number, b"\0")
        starts, sprms = [text_at], []
        nested = {"\x1a": b"\x4b\x24\x01", "\x1b": b"\x4c\x24\x01"}  # sprmPFInnerTableCell, sprmPFInnerTtp
        for mark in re.finditer("[\r\x07\x1a-\x1d]", table):
            starts.append(text_at + 2 * (mark.end()))
            sprms.append(b"" if mark.group() == "\r" else b"\x16\x24\x01" + (b"\x17\x24\x01" if mark.group() ==
                                                                         "\x1d" else b"") + (
                b"\x49\x66" + struct.pack("<i", 2) + nested[mark.group()] if mark.group() in nested else b""))
        assert len(sprms) <= 29, "one FKP page holds 29 paragraphs"
        page = bytearray(512)
        struct.pack_into(f"<{len(starts)}I", page, 0, *starts)
        free_at = 511
        for run, grpprl in enumerate(sprms):
            if grpprl:
                papx = bytes([(len(grpprl) + 4) // 2]) + b"\0\0" + grpprl  # cb, istd 0, sprms: 2 cb - 1 bytes
                papx += b"\0" * (2 * papx[0] + 1 - len(papx))
                free_at = (free_at - len(papx)) // 2 * 2
                page[free_at:free_at + len(papx)] = papx
                page[4 * len(starts) + 13 * run] = free_at // 2
        page[511] = len(sprms)
        word += page
        index = struct.pack("<III", starts[0], starts[-1], page_number)
        pairs[26:28] = [len(stream), len(index)]  # fcPlcfBtePapx, lcbPlcfBtePapx: the 14th pair
        stream += index
    data = b""
    if pictures:  # one CHPX page: a run for each picture's character, its picture's location in the Data stream
        word = word.ljust(512 * -(-len(word) // 512), b"\0")
        page, runs, properties = bytearray(512), [text_at], []
        for (offset, width), picture in zip(marks, pictures, strict=True):
            if picture is not None:
                runs += [offset, offset + width]
                properties += [None, len(data)]
                data += picture
        runs.append(len(word))
        properties.append(None)
        assert len(properties) <= 101, "one CHPX page holds 101 runs"
        struct.pack_into(f"<{len(runs)}I", page, 0, *runs)
        free_at = 511
        for run, location in enumerate(properties):
            if location is not None:
                chpx = bytes([9]) + struct.pack("<HIHB", 0x6A03, location, 0x0855, 1)
                free_at = (free_at - len(chpx)) // 2 * 2
                page[free_at:free_at + len(chpx)] = chpx
                page[4 * len(runs) + run] = free_at // 2
        page[511] = len(properties)
        index = struct.pack("<III", text_at, runs[-1], len(word) // 512)
        word += page
        pairs[24:26] = [len(stream), len(index)]  # fcPlcfBteChpx, lcbPlcfBteChpx: the 13th pair
        stream += index
    if floating:  # the drawing layer's picture store (its images after the text), shapes and their anchors
        store, shapes, stored = b"", b"", 0
        for number, (image, alt) in enumerate(floating):
            if image is not None:
                stored += 1
                kind, instance = (0xF01E, 0x6E0) if image.startswith(b"\x89PNG") else (0xF01D, 0x46A)
                blip = ppt_record(kind, bytes(16) + b"\xff" + image, instance)
                store += ppt_record(0xF007, struct.pack("<BB16sHIIIBBBB", 6, 6, bytes(16), 0, len(blip), 1, len(word),
                                                        0, 0, 0, 0), 6)
                word += blip
            shapes += ppt_shape(None if image is not None else "A text box", picture=stored if image is not None
                                else None, alt=alt, shape_type=75, shape_id=2000 + number)
        patriarch = ppt_record(0xF004, ppt_record(0xF00A, struct.pack("<II", 1024, 5)), container=True)
        layer = ppt_record(0xF000, ppt_record(0xF001, store, stored, True), container=True) + b"\0" + \
            ppt_record(0xF002, ppt_record(0xF003, patriarch + shapes, container=True), container=True)
        plc = struct.pack(f"<{len(anchored) + 1}I", *anchored, position) + b"".join(
            struct.pack("<I4iHI", 2000 + number, 0, 0, 100, 100, 0, 0) for number in range(len(anchored)))
        pairs[80:82] = [len(stream), len(plc)]  # fcPlcSpaMom, lcbPlcSpaMom: the 41st pair
        stream += plc
        pairs[100:102] = [len(stream), len(layer)]  # fcDggInfo, lcbDggInfo: the 51st pair
        stream += layer
    characters = (position - len(boxes or "") - sum(map(len, stories))) if main is None else main
    for notes, at in zip((footnotes, endnotes), (4, 92), strict=True):  # fcPlcffndRef and fcPlcfendRef, their Txt
        if notes:
            references = struct.pack(f"<{len(notes) + 1}i", *(where for where, _ in notes), characters)
            starts = [0, *itertools.accumulate(len(text) for _, text in notes)]
            texts = struct.pack(f"<{len(notes) + 2}i", *starts, starts[-1] + 1)
            pairs[at:at + 4] = [len(stream), len(references) + 2 * len(notes), len(stream) + len(references) +
                                2 * len(notes), len(texts)]
            stream += references + b"\x01\x00" * len(notes) + texts
    fib = struct.pack("<HH", 0xA5EC, 0xC1).ljust(10, b"\0") + struct.pack("<H", flags)
    fib = fib.ljust(32, b"\0") + struct.pack("<H", 14) + bytes(28) + struct.pack("<H", 22)
    longs = [0] * 22
    longs[3] = characters
    longs[4], longs[8] = map(len, stories)  # ccpFtn, ccpEdn
    longs[9] = len(boxes or "")  # ccpTxbx
    fib += struct.pack("<22i", *longs) + struct.pack("<H", 93) + struct.pack("<186I", *pairs)
    word[:len(fib)] = fib
    streams = {"WordDocument": bytes(word), "1Table" if flags & 0x0200 else "0Table": stream}
    if data:
        streams["Data"] = data
    if title is not None:
        streams["\x05SummaryInformation"] = summary_information(title)
    return compound_file(streams)


def doc_picture(image: bytes, alt: str | None = None, mode: int = 0x64, shown: bool = True) -> bytes:
    """An inline picture as Word keeps it in the Data stream: a picture header (of this mapping mode), an
    OfficeArt shape showing the first picture of its store (with its alt text), and the store's entry holding the
    PNG or JPEG ``image``; with ``shown`` False, a drawn shape that shows no picture."""
    kind, instance = (0xF01E, 0x6E0) if image.startswith(b"\x89PNG") else (0xF01D, 0x46A)
    blip = ppt_record(kind, bytes(16) + b"\xff" + image, instance)
    entry = ppt_record(0xF007, struct.pack("<BB16sHIIIBBBB", 6, 6, bytes(16), 0, len(blip), 1, 0, 0, 0, 0, 0) + blip,
                       6)
    shape = ppt_shape(picture=1 if shown else None, alt=alt, shape_type=75)
    body = shape + entry
    return struct.pack("<IHH", 0x44 + len(body), 0x44, mode).ljust(0x44, b"\0") + body


def xls_bytes(sheets: dict[str, list[list[object]]], title: str | None = None) -> bytes:
    """An Excel 97-2003 workbook (BIFF8, written by xlwt) with a sheet of these rows for each name; a date is
    written with a date format (a time with a time format), a string starting "#" as that error; ``title`` puts
    summary information beside it."""
    import datetime
    import io

    import olefile
    import xlwt

    workbook = xlwt.Workbook(encoding="utf-8")
    dated, timed = xlwt.easyxf(num_format_str="YYYY-MM-DD"), xlwt.easyxf(num_format_str="h:mm")
    for name, rows in sheets.items():
        sheet = workbook.add_sheet(name)
        for row_number, row in enumerate(rows):
            for column, value in enumerate(row):
                if isinstance(value, str) and value.startswith("#"):
                    sheet.row(row_number).set_cell_error(column, value)
                elif isinstance(value, (datetime.date, datetime.time)):
                    sheet.write(row_number, column, value, timed if isinstance(value, datetime.time) else dated)
                elif value is not None:
                    sheet.write(row_number, column, value)
    written = io.BytesIO()
    workbook.save(written)
    if title is None:
        return written.getvalue()
    with olefile.OleFileIO(io.BytesIO(written.getvalue())) as package:
        stream = package.openstream("Workbook").read()
    return compound_file({"Workbook": stream, "\x05SummaryInformation": summary_information(title)})


def ppt_record(kind: int, body: bytes = b"", instance: int = 0, container: bool = False) -> bytes:
    """One PowerPoint (or OfficeArt) record: its header (version 0xF for a container), then ``body``."""
    return struct.pack("<HHI", instance << 4 | (0xF if container else 0), kind, len(body)) + body


def ppt_text(text: str, kind: int = 4, eight_bit: bool = False) -> bytes:
    """A text of a type (0 a title, 1 a body, 2 notes, 4 other): its header and its characters, 8-bit (the low
    byte of each) or UTF-16."""
    characters = ppt_record(0x0FA8, text.encode("latin-1")) if eight_bit else ppt_record(0x0FA0,
                                                                                         text.encode("utf-16-le"))
    return ppt_record(0x0F9F, struct.pack("<I", kind)) + characters


def ppt_shape(text: str | None = None, kind: int = 4, reference: int | None = None, picture: int | None = None,
              alt: str | None = None, anchor: tuple[int, int] | None = None, shape_type: int = 202,
              extra: bytes = b"", shape_id: int = 1024) -> bytes:
    """A shape: a text box holding ``text`` of a type, or referring to the ``reference``-th text its slide list
    keeps (as PowerPoint keeps placeholders' text); a picture frame showing the ``picture``-th picture of the store,
    with its alt text; ``anchor`` (left, top) places it in its group. ``extra`` is more records in its text box."""
    properties = [(0x4104, picture, b"")] if picture is not None else []
    if alt is not None:
        described = (alt + "\0").encode("utf-16-le")
        properties.append((0x8381, len(described), described))
    table = b"".join(struct.pack("<HI", identifier, value) for identifier, value, _ in properties)
    records = ppt_record(0xF00A, struct.pack("<II", shape_id, 0xA00), shape_type)
    records += ppt_record(0xF00B, table + b"".join(data for _, _, data in properties), len(properties))
    if anchor is not None:
        records += ppt_record(0xF00F, struct.pack("<4i", anchor[0], anchor[1], anchor[0] + 100, anchor[1] + 50))
    if text is not None or reference is not None or extra:
        inside = ppt_text(text, kind) if text is not None else b""
        inside += ppt_record(0x0F9E, struct.pack("<I", reference)) if reference is not None else b""
        records += ppt_record(0xF00D, inside + extra, container=True)
    return ppt_record(0xF004, records, container=True)


def ppt_group(shapes: list[bytes], table: bool = False) -> bytes:
    """A group of shapes (its own shape first); a table's group says so in its further properties."""
    own = ppt_record(0xF00A, struct.pack("<II", 1024, 0x201))
    if table:
        own += ppt_record(0xF122, struct.pack("<HI", 0x039F, 1), 1)
    return ppt_record(0xF003, ppt_record(0xF004, own, container=True) + b"".join(shapes), container=True)


def ppt_table(rows: list[list[str | None]]) -> bytes:
    """A table as PowerPoint draws one: a group of cells placed by their anchors (written column by column, as
    their order must not matter), and the lines of its borders. A place a merged cell covers is None."""
    cells = [ppt_shape(rows[row][column], anchor=(100 * column, 50 * row), shape_type=1)
             for column in range(len(rows[0])) for row in range(len(rows)) if rows[row][column] is not None]
    return ppt_group([*cells, ppt_shape(anchor=(0, 0), shape_type=20)], table=True)


def ppt_bytes(slides: list[list[bytes]], listed: list[list[tuple[int, str]]] | None = None,
              notes: list[str | None] | None = None, title: str | None = None, pictures: list[bytes] | None = None,
              stale: str | None = None, token: int = 0xE391C05F, footer: str | None = None,
              session: bool = False) -> bytes:
    """A PowerPoint 97-2003 deck of ``slides``, each the shapes of its drawing (``ppt_shape``, ``ppt_group``...).
    ``listed`` is, for each slide, the texts its slide list keeps (kind, text) that shapes refer to; ``notes`` its
    notes page's text; ``pictures`` the image files of the picture store (PNG, JPEG, or BMP kept as a bitmap).
    ``stale`` is an earlier save's first slide, which a fast save left in the stream and the last save's persist
    directory no longer names. ``token`` is the Current User header token (0xF3D1C4DF when encrypted); ``footer``
    the footer every slide shows (as the Header and Footer dialog sets it); ``session`` has the last save name an
    encryption session, as an encrypted deck's does."""
    listed = listed or [[] for _ in slides]
    notes = notes or [None] * len(slides)
    noted = [index for index, text in enumerate(notes) if text is not None]
    slide_ids, note_ids = {index: 2 + index for index in range(len(slides))}, {
        index: 2 + len(slides) + number for number, index in enumerate(noted)}
    blips, store = b"", b""
    for number, image in enumerate(pictures or []):
        kind, instance, data = {b"\x89P": (0xF01E, 0x6E0, image), b"\xff\xd8": (0xF01D, 0x46A, image),
                                b"BM": (0xF01F, 0x7A8, image[14:])}[image[:2]]
        store += ppt_record(0xF007, struct.pack("<BB16sHIIIBBBB", 6, 6, bytes(16), 0, len(data) + 25, 1, len(blips),
                                                0, 0, 0, 0), 6)
        blips += ppt_record(kind, bytes([number]) * 16 + b"\xff" + data, instance)
    slide_list = b"".join(ppt_record(0x03F3, struct.pack("<5I", slide_ids[index], 0, len(texts), 256 + index, 0)) +
                          b"".join(ppt_text(text, kind) for kind, text in texts)
                          for index, texts in enumerate(listed))
    notes_list = b"".join(ppt_record(0x03F3, struct.pack("<5I", note_ids[index], 0, 0, 512 + index, 0))
                          for index in noted)
    document = ppt_record(0x03E8, ppt_record(0x03E9, bytes(40), 1) + ppt_record(0x040B, ppt_record(
        0xF000, ppt_record(0xF001, store, len(pictures or []), True), container=True), container=True) +
        ppt_record(0x0FF0, slide_list, 0, True) + ppt_record(0x0FF0, notes_list, 2, True), container=True)

    def drawn(kind: int, atom: bytes, shapes: list[bytes]) -> bytes:
        patriarch = ppt_record(0xF004, ppt_record(0xF00A, struct.pack("<II", 1024, 5)), container=True)
        drawing = ppt_record(0xF002, ppt_record(0xF003, patriarch + b"".join(shapes), container=True), container=True)
        return ppt_record(kind, atom + ppt_record(0x040C, drawing, container=True), container=True)

    stream = bytearray(document)
    offsets = {1: 0}
    for index, shapes in enumerate(slides):
        offsets[slide_ids[index]] = len(stream)
        notes_id = 512 + index if notes[index] is not None else 0
        atoms = ppt_record(0x03EF, struct.pack("<I8sIIHH", 0, bytes(8), 0, notes_id, 0, 0), 0)
        if footer is not None:
            atoms += ppt_record(0x0FD9, ppt_record(0x0FDA, struct.pack("<HH", 0, 0x20)) + ppt_record(
                0x0FBA, footer.encode("utf-16-le"), 2), container=True)
        stream += drawn(0x03EE, atoms, shapes)
    for index in noted:
        offsets[note_ids[index]] = len(stream)
        stream += drawn(0x03F0, ppt_record(0x03F1, bytes(8)), [ppt_shape(notes[index], 2)])

    def save(entries: dict[int, int], previous: int, encrypted: bool = False) -> int:
        """A persist directory of ``entries`` (one run per id) and the edit record naming it; its offset."""
        if encrypted:
            entries = {**entries, max(entries) + 1: len(stream)}
            stream.extend(ppt_record(0x2F14, ppt_record(0x2F15, bytes(16)), container=True))
        directory = len(stream)
        stream.extend(ppt_record(0x1772, b"".join(struct.pack("<II", 1 << 20 | identifier, offset)
                                                  for identifier, offset in sorted(entries.items()))))
        edit = len(stream)
        stream.extend(ppt_record(0x0FF5, struct.pack("<IHBBIIIIHH", 256, 0, 0, 3, previous, directory, 1,
                                                     max(entries) + 1, 1, 0) + (struct.pack(
                                                         "<I", max(entries)) if encrypted else b"")))
        return edit

    edit = 0
    if stale is not None:
        first = {**offsets, slide_ids[0]: len(stream)}
        stream += drawn(0x03EE, ppt_record(0x03EF, bytes(24)), [ppt_shape(stale)])
        edit = save(first, 0)
    edit = save(offsets if stale is None else {slide_ids[0]: offsets[slide_ids[0]]}, edit, session)
    user = ppt_record(0x0FF6, struct.pack("<IIIHHBBH", 20, token, edit, 0, 0x03F4, 3, 0, 0))
    streams = {"PowerPoint Document": bytes(stream), "Current User": user}
    if pictures:
        streams["Pictures"] = blips
    if title is not None:
        streams["\x05SummaryInformation"] = summary_information(title)
    return compound_file(streams)


_ODF = "urn:oasis:names:tc:opendocument:xmlns"
ODF_NAMESPACES = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in {
    "office": f"{_ODF}:office:1.0", "text": f"{_ODF}:text:1.0", "table": f"{_ODF}:table:1.0",
    "draw": f"{_ODF}:drawing:1.0", "presentation": f"{_ODF}:presentation:1.0", "svg": f"{_ODF}:svg-compatible:1.0",
    "xlink": "http://www.w3.org/1999/xlink", "dc": "http://purl.org/dc/elements/1.1/"}.items())
_ODF_BODIES = {"odt": "text", "ods": "spreadsheet", "odp": "presentation"}


def odf_bytes(kind: str, body: str, pictures: dict[str, bytes] | None = None, title: str | None = None,
              prolog: str = "", meta: str | None = None) -> bytes:
    """An OpenDocument package as LibreOffice writes it: ``body`` inside the office:text, office:spreadsheet or
    office:presentation element of content.xml (``kind``: odt, ods, odp), pictures (and other parts) stored under
    their names; meta.xml gives ``title``, or is ``meta`` as written."""
    import zipfile

    content = (f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<office:document-content {ODF_NAMESPACES}>'
               f"<office:body><office:{_ODF_BODIES[kind]}>{body}</office:{_ODF_BODIES[kind]}></office:body>"
               "</office:document-content>")
    meta = meta if meta is not None else (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-meta {ODF_NAMESPACES}><office:meta>'
        f"<dc:title>{title or ''}</dc:title></office:meta></office:document-meta>")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        package.writestr("mimetype", f"application/vnd.oasis.opendocument.{_ODF_BODIES[kind]}")
        package.writestr("content.xml", content)
        package.writestr("meta.xml", meta)
        for name, data in (pictures or {}).items():
            package.writestr(name, data)
    return buffer.getvalue()


def epub_bytes(chapters: dict[str, str], spine: list[str] | None = None, title: str | None = None,
               files: dict[str, bytes] | None = None, opf_prolog: str = "", qualified: bool = True) -> bytes:
    """An EPUB book as e-book tools write it: each chapter (path inside OEBPS/ -> XHTML body, or a whole document
    when it starts with a declaration) listed in the manifest, read in ``spine`` order (default: as given), other
    ``files`` stored under their names; the package document in the OPF namespace unless not ``qualified``."""
    import zipfile

    names = list(chapters)
    manifest = "".join(f'<item id="c{index}" href="{name}" media-type="application/xhtml+xml"/>'
                       for index, name in enumerate(names))
    order = "".join(f'<itemref idref="c{names.index(name)}"/>' for name in (names if spine is None else spine))
    namespace = ' xmlns="http://www.idpf.org/2007/opf"' if qualified else ""
    opf = (f'<?xml version="1.0" encoding="UTF-8"?>{opf_prolog}<package{namespace} '
           'xmlns:dc="http://purl.org/dc/elements/1.1/" version="3.0"><metadata>'
           f"{f'<dc:title>{title}</dc:title>' if title else ''}</metadata><manifest>{manifest}</manifest>"
           f"<spine>{order}</spine></package>")
    parts: dict[str, str | bytes] = {
        "mimetype": "application/epub+zip",
        "META-INF/container.xml": '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:'
                                  'opendocument:xmlns:container"><rootfiles><rootfile full-path="OEBPS/content.opf" '
                                  'media-type="application/oebps-package+xml"/></rootfiles></container>',
        "OEBPS/content.opf": opf,
        **{f"OEBPS/{name}": body if body.startswith("<!") else (
            '<?xml version="1.0" encoding="UTF-8"?><html xmlns="http://www.w3.org/1999/xhtml"><head>'
            f"<title>{name}</title></head><body>{body}</body></html>") for name, body in chapters.items()},
        **(files or {}),  # these replace the parts above of the same name
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as book:
        for name, data in parts.items():
            book.writestr(name, data)
    return buffer.getvalue()


_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_NOTE_KINDS = {"footnote": "footnotes", "endnote": "endnotes"}


def docx_with_notes(body: str, footnotes: dict[int, str] | None = None, endnotes: dict[int, str] | None = None,
                    notes_xml: dict[str, str] | None = None, relationships: int = 1,
                    note_pictures: dict[str, bytes] | None = None) -> bytes:
    """A DOCX (made by python-docx) whose body is the XML ``body`` and whose footnotes and endnotes parts hold, as
    Word writes them, a separator and a continuation separator (ids -1 and 0), then each note (id -> the XML of its
    paragraphs) after its own mark. ``notes_xml`` replaces a part's XML whole ("footnotes" or "endnotes"); the
    document names each part ``relationships`` times. ``note_pictures`` (relationship id -> PNG) are pictures the
    footnotes part names, in ``word/media``."""
    import zipfile

    from docx import Document

    parts = {}
    for kind, notes in (("footnote", footnotes), ("endnote", endnotes)):
        if notes is None:
            continue
        written = "".join(f'<w:{kind} w:type="{separator}" w:id="{number}"><w:p><w:r><w:{separator}/></w:r></w:p>'
                          f"</w:{kind}>" for number, separator in ((-1, "separator"), (0, "continuationSeparator")))
        written += "".join(f'<w:{kind} w:id="{number}"><w:p><w:r><w:{kind}Ref/></w:r></w:p>{xml}</w:{kind}>'
                           for number, xml in notes.items())
        parts[_NOTE_KINDS[kind]] = f'<w:{_NOTE_KINDS[kind]} xmlns:w="{_W}">{written}</w:{_NOTE_KINDS[kind]}>'
    parts.update(notes_xml or {})
    plain, out = io.BytesIO(), io.BytesIO()
    Document().save(plain)
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith((".xml", ".rels")):
                data = _with_notes(item.filename, data.decode(), body, parts, relationships).encode()
            target.writestr(item.filename, data)
        for name, xml in parts.items():
            target.writestr(f"word/{name}.xml", xml)
        for number, (key, picture) in enumerate((note_pictures or {}).items()):
            target.writestr(f"word/media/note{number}.png", picture)
        if note_pictures:
            target.writestr("word/_rels/footnotes.xml.rels", _RELATIONSHIPS.format("".join(
                f'<Relationship Id="{key}" Type="{_IMAGE_RELATIONSHIP}" Target="media/note{number}.png"/>'
                for number, key in enumerate(note_pictures))))
    return out.getvalue()


_RELATIONSHIPS = '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{}</Relationships>'
_IMAGE_RELATIONSHIP = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/image"


def _with_notes(name: str, data: str, body: str, parts: dict[str, str], relationships: int) -> str:
    """A part of python-docx's blank document as ``docx_with_notes`` writes it: the body, and the notes' parts
    declared."""
    if name == "word/document.xml":
        return data.split("<w:body>")[0] + f"<w:body>{body}</w:body></w:document>"
    if name == "[Content_Types].xml":
        return data.replace("</Types>", '<Default Extension="png" ContentType="image/png"/>' * (
            'Extension="png"' not in data) + "".join(
            f'<Override PartName="/word/{part}.xml" ContentType="application/vnd.openxmlformats-officedocument.'
            f'wordprocessingml.{part}+xml"/>' for part in parts) + "</Types>")
    if name == "word/_rels/document.xml.rels":
        return data.replace("</Relationships>", "".join(
            f'<Relationship Id="rIdNotes{part}{number}" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            f'relationships/{part}" Target="{part}.xml"/>' for part in parts for number in range(relationships))
            + "</Relationships>")
    return data
