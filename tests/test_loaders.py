"""Document loaders: every input is generated here, so the tests run offline on a fresh clone."""

from __future__ import annotations

import base64
import io
import random
import re
import struct
import zipfile
from collections.abc import Callable
from datetime import date, datetime, time
from email.message import Message
from pathlib import Path

import olefile
import pytest
from docx import Document
from openpyxl import Workbook
from pypdf import PdfReader, PdfWriter

from ingestion.encoding import decode_text
from ingestion.loaders import SUPPORTED_SUFFIXES, LoadError, eml, epub, file_loader, loader_for, markdown, odf, rtf
from ingestion.loaders.base import Limits, clean_text
from ingestion.loaders.delimited import DelimitedLoader
from ingestion.loaders.ooxml import refuse_bombs
from ingestion.loaders.pdf import PdfLoader
from kb.types import FILE_TYPES, ExtractedDocument, Filters
from tests.documents import (
    chinese_font_pdf,
    compound_file,
    compressed_rtf,
    deck_bytes,
    doc_bytes,
    doc_picture,
    docx_with_notes,
    email_bytes,
    epub_bytes,
    image_bytes,
    mbox_bytes,
    msg_streams,
    odf_bytes,
    pdf_bytes,
    pdf_from_objects,
    ppt_bytes,
    ppt_group,
    ppt_record,
    ppt_shape,
    ppt_table,
    tnef_bytes,
    xls_bytes,
)
from tests.hostile import (
    deck_rewritten,
    docx_body,
    docx_with_unreadable_parts,
    far_cells_xlsx,
    lone_surrogate_pdf,
    mime_nested,
    nested_groups_deck,
    xlsx_with_sheet_rows,
)


def load(tmp_path: Path, name: str, data: bytes) -> ExtractedDocument:
    """Write ``data`` as ``name`` and load it the way the pipeline does: the loader for its suffix, bytes once."""
    path = tmp_path / name
    path.write_bytes(data)
    loader = loader_for(path)
    assert loader is not None, name
    return loader.load(path, path.read_bytes())


# --- text and encodings ---------------------------------------------------------------------------------------

ACCENTED = "Café crème brûlée, naïve façade, déjà vu, señor Müller’s “Straße”."
CHINESE = "知识库的文档加载器需要处理多种编码。中文文本没有空格，但仍然需要被正确地切分成段落。"


WESTERN_SAMPLES = {
    "utf8": ACCENTED.encode("utf-8"),
    "utf8-bom": b"\xef\xbb\xbf" + ACCENTED.encode("utf-8"),
    "utf16-bom": ACCENTED.encode("utf-16"),
    "utf16-be-bom": b"\xfe\xff" + ACCENTED.encode("utf-16-be"),
    "utf32-bom": ACCENTED.encode("utf-32"),
    "cp1252": ACCENTED.encode("cp1252"),
}


@pytest.mark.parametrize("name", list(WESTERN_SAMPLES))
def test_text_in_western_encodings(tmp_path: Path, name: str) -> None:
    document = load(tmp_path, f"{name}.txt", WESTERN_SAMPLES[name])
    assert document.text == ACCENTED
    assert document.file_type == "text"
    assert document.pages == []


EUROPEAN_SAMPLES = {  # short legacy text of one language: no byte-order mark, no declared charset
    "cs-cp1250": ("Žádost o dovolenou: zaměstnanec má nárok na čtyři týdny dovolené ročně.", "cp1250"),
    "cs-cp1250-2": ("Dobrý den, jak se máte? Řekněte mi, prosím, kde je nádraží.", "cp1250"),
    "hu-cp1250": ("Árvíztűrő tükörfúrógép. A szerződés szerint a bérlő köteles fizetni.", "cp1250"),
    "hr-cp1250": ("Čokolada je ukusna, ali šećer nije zdrav.", "cp1250"),
    "pl-cp1250": ("Zażółć gęślą jaźń. Pchnąć w tę łódź jeża.", "cp1250"),
    "pl-cp1250-2": ("Może też już", "cp1250"),  # in windows-1252 the letters are symbols: Mo¿e te¿ ju¿
    "pl-cp1250-3": ("Źródło", "cp1250"),  # Ź is a byte windows-1252 does not define
    "mixed-cp1252": ("Meeting notes: Ana Sánchez, Luis Martínez and Hélène Dubois agreed.", "cp1252"),
    "mixed-cp1252-2": ("Hotel Ibis Málaga – check-in à 14h, très calme.", "cp1252"),
    "it-cp1252": ("Ristorante Da Mimì: caffè e cornetto, 3 €. Olá!", "cp1252"),
    "es-cp1252": ("Mª José García vive en la calle Mayor nº 5.", "cp1252"),  # ordinals, not Romanian ş
    "fi-cp1252-2": ("Hyvää huomenta", "cp1252"),  # doubled vowels only
    "hu-cp1250-2": ("A számla 14 napon belül fizetendő.", "cp1250"),
    "cs-cp1250-3": ("Schůzka se koná v pondělí v 10 hodin.", "cp1250"),
    "fi-cp1252": ("Hyvää päivää!", "cp1252"),
    "et-cp1252": ("Tere hommikust, kõik on hästi.", "cp1252"),
    "da-cp1252": ("Ærø og Bornholm er øer i Danmark.", "cp1252"),
    "fr-cp1252": ("Crème brûlée", "cp1252"),
    "is-cp1252": ("Þú ert fæddur á Íslandi.", "cp1252"),
}


@pytest.mark.parametrize("name", list(EUROPEAN_SAMPLES))
def test_text_in_european_legacy_encodings(tmp_path: Path, name: str) -> None:
    """Czech in windows-1250 has the shape of Western text, and read as windows-1252 it was "zamìstnanec"; Finnish
    doubled vowels ("päivää") were taken for a multi-byte encoding; Western text naming people of several languages
    stays windows-1252 (each word is some Western language's)."""
    text, codec = EUROPEAN_SAMPLES[name]
    assert load(tmp_path, f"{name}.txt", text.encode(codec)).text == text


CJK_SAMPLES = {
    "gb18030": CHINESE,
    "gbk": CHINESE,
    "big5": "知識庫的文件載入器需要處理多種編碼。繁體中文的段落也必須正確地讀出來。",
    "shift_jis": "日本語のテキストです。文字コードはシフトJISですが、正しく読めるはずです。",
}


@pytest.mark.parametrize("codec", list(CJK_SAMPLES))
def test_text_in_cjk_legacy_encodings(tmp_path: Path, codec: str) -> None:
    text = CJK_SAMPLES[codec]
    assert load(tmp_path, f"{codec}.txt", text.encode(codec)).text == text


JAPANESE = "こんにちは、世界。請求書は月末に送ります。"
KOREAN = "안녕하세요, 세계. 청구서는 월말에 보내드립니다."
ISO2022_FILES = {  # name: (bytes, the text, a word of it)
    "mail.txt": (JAPANESE.encode("iso2022_jp"), JAPANESE, "請求書"),
    "page.html": (f'<html><head><meta charset="iso-2022-jp"><title>{JAPANESE[:5]}</title></head>'
                  f"<body><p>{JAPANESE}</p></body></html>".encode("iso2022_jp"), JAPANESE, "請求書"),
    "unlabelled.htm": (f"<p>{JAPANESE}</p>".encode("iso2022_jp"), JAPANESE, "請求書"),
    "korean.txt": (KOREAN.encode("iso2022_kr"), KOREAN, "청구서는"),
}


@pytest.mark.parametrize("name", list(ISO2022_FILES))
def test_iso2022_files_are_ingested_as_text_and_found_by_their_words(kb_factory, tmp_path: Path, name: str) -> None:
    """Every byte of ISO-2022 text is 7-bit, so it was read as UTF-8 with its escape sequences as text
    ("\\x1b$B$3$s$K$A$O\\x1b(B"), and no word of it could be found."""
    data, text, word = ISO2022_FILES[name]
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / name).write_bytes(data)
    kb = kb_factory(clip_model="none")
    assert not kb.ingest(folder).failed
    [hit] = kb.search(word, k=5, mode="keyword")
    assert (Path(hit.path).name, hit.text) == (name, text)


ISO2022_SUPERSETS = {
    "iso2022_jp_2": f"{JAPANESE}\n{KOREAN}",  # Korean inside Japanese mail
    "iso2022_jp_ext": "ｺﾝﾆﾁﾊ、世界。",  # half-width katakana
    "iso2022_jp_2004": "〝四季〟はヴィヴァルディの協奏曲です。",  # JIS X 0213
}


@pytest.mark.parametrize("codec", list(ISO2022_SUPERSETS))
def test_iso2022_supersets_are_read_by_their_escape_sequences(codec: str) -> None:
    text = ISO2022_SUPERSETS[codec]
    assert decode_text(text.encode(codec)) == text


def test_a_declared_iso2022_charset_is_used_only_when_the_bytes_decode_with_it() -> None:
    assert decode_text(KOREAN.encode("iso2022_kr"), declared="iso-2022-jp") == KOREAN  # mislabelled: detected
    assert decode_text(ACCENTED.encode("cp1252"), declared="iso-2022-jp") == ACCENTED  # 8-bit: not ISO-2022
    assert decode_text(CHINESE.encode("utf-8"), declared="csISO2022JP") == CHINESE


def _seven_bit(text: str) -> bytes:
    """GB 2312 text as ISO-2022-CN and HZ shift it: each byte less 0x80."""
    return bytes(byte - 0x80 for byte in text.encode("gb2312"))


def test_chinese_mail_in_iso2022_cn_and_hz_is_read() -> None:
    """Python has no ISO-2022-CN codec, and HZ, 7-bit, read as ASCII: both were read as their escapes."""
    first, second = CHINESE[:18], CHINESE[18:]
    iso2022_cn = (b"Subject: \x1b$)A\x0e" + _seven_bit(first) + b"\x0f ok\r\n\x0e" + _seven_bit(second) + b"\x0f\r\n")
    assert decode_text(iso2022_cn) == f"Subject: {first} ok\n{second}\n"
    hz = f"Re: {CHINESE} (~5%)\n".encode("hz")
    assert b"(~~5%)" in hz and decode_text(hz) == f"Re: {CHINESE} (~5%)\n"
    assert decode_text(hz, declared="hz-gb-2312") == f"Re: {CHINESE} (~5%)\n"
    assert decode_text(hz, declared="utf-8") == hz.decode("ascii")  # a page that says what it is, is that
    assert decode_text(hz, declared="x-unknown") == f"Re: {CHINESE} (~5%)\n"  # a label the loader ignores


def test_escape_sequences_that_no_codec_reads_are_read_as_before() -> None:
    """ISO-2022-CN's CNS 11643 sets have no codec here: such text, like a stray escape or ASCII with a "~{" that
    begins no HZ run, is read as ASCII."""
    cns = b"\x1b$)G\x0e" + _seven_bit(CHINESE) + b"\x0f"
    shifted_first = b"\x0e" + _seven_bit(CHINESE) + b"\x0f\x1b$)A"
    for data in (cns, shifted_first, b"Total \x1b$Z!! due\x1b(B today, as agreed with the supplier last week.",
                 b"\\newcommand~{\\bf x} and ~{ab~} in LaTeX", b"a ~{ brace ~} with spaces"):
        assert decode_text(data) == data.decode("ascii")


def test_utf16_without_bom_is_detected() -> None:
    text = "This file is UTF-16 little-endian text without a byte-order mark.\nSecond line."
    assert decode_text(text.encode("utf-16-le")) == text
    assert decode_text(text.encode("utf-16-be")) == text


def test_utf8_declared_charset_is_overruled_by_valid_utf8_and_used_otherwise() -> None:
    assert decode_text(CHINESE.encode("utf-8"), declared="gb2312") == CHINESE
    assert decode_text(CHINESE.encode("gbk"), declared="gb2312") == CHINESE
    assert decode_text(ACCENTED.encode("cp1252"), declared="iso-8859-1") == ACCENTED


def test_double_encoded_utf8_is_repaired() -> None:
    mojibake = "Youth career – 1986 Watford".encode().decode("latin-1").encode("utf-8")
    assert decode_text(mojibake) == "Youth career – 1986 Watford"


def test_newlines_are_normalised_and_decoding_is_deterministic() -> None:
    data = "a\r\nb\rc\n".encode("cp1252") + "é".encode("cp1252")
    assert decode_text(data) == "a\nb\nc\né"
    assert {decode_text(CHINESE.encode("gb18030")) for _ in range(3)} == {CHINESE}


def test_text_with_a_stray_nul_byte_is_read(tmp_path: Path) -> None:
    document = load(tmp_path, "log.txt", "Plain UTF-8 text, café,\x00 then more text.".encode())
    assert document.text == "Plain UTF-8 text, café, then more text."
    # In another encoding too (one NUL refused a whole Windows-1252 or GBK export), without it, and said
    for encoding, text in (("cp1252", f"name,note\n{ACCENTED}\n" * 20), ("gbk", f"名称,备注\n{CHINESE}\n" * 20)):
        document = load(tmp_path, "export.csv", text.encode(encoding).replace(b"\n", b"\x00\n", 1))
        assert document.text == load(tmp_path, "clean.csv", text.encode(encoding)).text
        assert document.warnings == ["1 NUL byte(s) left out"]


STRAY_BYTES = {  # name: (bytes with a stray byte or a character cut off, the text read, what the warning begins with)
    "notes.md": (f"# Notes\n\n{CHINESE}\n\n{ACCENTED} It".encode() + b"\x92s",
                 f"Notes\n\n{CHINESE}\n\n{ACCENTED} It\ufffds", "1 byte sequence(s) not valid UTF-8"),  # pasted
    "page.html": (b'<meta charset="gbk"><p>' + CHINESE.encode("gbk") + "中".encode("gbk")[:1],
                  f"{CHINESE}\ufffd", "1 byte sequence(s) not valid gbk"),  # cut mid-character
    "log.txt": (CHINESE.encode("utf-8") + b"\xff" + CHINESE.encode("utf-8"), f"{CHINESE}\ufffd{CHINESE}",
                "1 byte sequence(s) not valid UTF-8"),
    "latin.html": (b'<meta charset="windows-1252"><p>' + f"{ACCENTED} {ACCENTED}".encode("cp1252") + b"\x9d",
                   f"{ACCENTED} {ACCENTED}\ufffd", "1 byte sequence(s) not valid windows-1252"),  # undefined there
    "mail.eml": (b"Subject: hi\r\nContent-Type: text/plain; charset=gbk\r\n\r\n" + CHINESE.encode("gbk") + b"\xff",
                 f"Subject: hi\n\n{CHINESE}\ufffd", "a text/plain body: 1 byte sequence(s) not valid gbk"),
}


@pytest.mark.parametrize("name", list(STRAY_BYTES))
def test_text_with_a_stray_byte_is_read_as_browsers_read_it_with_a_warning(tmp_path: Path, name: str) -> None:
    """One stray byte refused a whole UTF-8 file ("not valid text in any known encoding"), or turned a GBK page
    into another encoding's mojibake; a browser shows the rest, and the bad byte as U+FFFD."""
    data, text, warning = STRAY_BYTES[name]
    document = load(tmp_path, name, data)
    assert document.text == text
    assert document.warnings == [f"{warning} (stray bytes, or a character cut off) read as \ufffd"]


def test_text_with_more_than_a_stray_few_bad_bytes_is_in_another_encoding() -> None:
    """Legacy text forms a UTF-8 sequence now and then by chance; it is still read in its own encoding."""
    lucky = CHINESE.encode("gbk") + "é".encode()  # a valid UTF-8 sequence among 80 bytes that are not UTF-8
    assert decode_text(lucky) == CHINESE + "é".encode().decode("gbk")
    assert decode_text(ACCENTED.encode("cp1252") + "ü".encode()) == ACCENTED + "Ã¼"
    # A declared multi-byte charset half reads another one: its bad sequences are no stray bytes
    assert decode_text(CHINESE.encode("gbk"), declared="shift_jis") == CHINESE
    assert decode_text(CJK_SAMPLES["shift_jis"].encode("euc_jp"), declared="shift_jis") == CJK_SAMPLES["shift_jis"]


def test_binary_data_is_refused(tmp_path: Path) -> None:
    noise = random.Random(7).randbytes(4096)
    with pytest.raises(LoadError, match="binary or undecodable"):
        load(tmp_path, "noise.txt", noise)
    with pytest.raises(LoadError, match="binary or undecodable"):
        load(tmp_path, "controls.md", bytes(range(1, 32)) * 50)


@pytest.mark.parametrize("name", ["empty.txt", "empty.md", "empty.html", "empty.pdf", "empty.docx", "empty.xlsx",
                                  "empty.pptx", "empty.eml", "empty.odt", "empty.epub", "empty.rtf", "empty.mbox",
                                  "empty.doc", "empty.xls", "empty.msg",
                                  "empty.png"])
def test_zero_bytes_is_an_empty_file_for_every_loader(tmp_path: Path, name: str) -> None:
    with pytest.raises(LoadError, match=r"^empty file$"):
        load(tmp_path, name, b"")


def test_whitespace_only_text_is_an_empty_document(tmp_path: Path) -> None:
    assert load(tmp_path, "blank.txt", b" \n\t\n ").text == ""


def test_clean_text_shapes_text_for_the_chunker() -> None:
    raw = "Cafe\u0301 \x00bell\x07 \r\nline two   \n\n\n\n\nnext\tpara\x0cpage\ufeff  \u2028ﬁne ﬂow"
    assert clean_text(raw) == "Café bell\nline two\n\nnext\tpara\npage\nfine flow"


def test_clean_text_joins_surrogate_pairs_and_replaces_lone_surrogates() -> None:
    assert clean_text("a\ud800b \ud83d\ude00 c\udc80") == "a\ufffdb \U0001f600 c\ufffd"


# --- factory ----------------------------------------------------------------------------------------------------

def test_loader_for_picks_by_lower_cased_suffix() -> None:
    # (.dot and .pot are also Graphviz and gettext's text files: not read as Office templates)
    assert {".txt", ".text", ".md", ".markdown", ".htm", ".html", ".xhtml", ".pdf", ".docx", ".pptx", ".xls", ".xlsx",
            ".xlsm",
            ".doc", ".ppt", ".pps", ".xlt", ".eml", ".mbox", ".msg", ".odt", ".ods", ".odp", ".epub", ".rtf",
            ".wps", ".wpt", ".et", ".ett", ".dps", ".dpt", ".csv", ".tsv", ".docm", ".dotx", ".dotm", ".pptm", ".ppsx",
            ".ppsm", ".potx", ".potm", ".xltx", ".xltm",
            ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"} == SUPPORTED_SUFFIXES
    names = ["REPORT.PDF", "notes.Markdown", "page.xhtml", "a.text", "w.Docx", "Prices.XLSM", "slides.PPTX", "old.doc",
             "old.xls", "old.ppt", "show.PPS", "template.xlt", "gettext.pot", "graph.dot", "README", "photo.JPG",
             "scan.tiff", "icon.svg", "Memo.RTF"]
    picked = {name: getattr(loader_for(Path(name)), "file_type", None) for name in names}
    assert picked == {"REPORT.PDF": "pdf", "notes.Markdown": "markdown", "page.xhtml": "html", "a.text": "text",
                      "w.Docx": "docx", "Prices.XLSM": "xlsx", "slides.PPTX": "pptx", "old.doc": "doc",
                      "old.xls": "xls", "old.ppt": "ppt", "show.PPS": "ppt", "template.xlt": "xls",
                      "gettext.pot": None, "graph.dot": None, "README": None, "photo.JPG": "image",
                      "scan.tiff": "image", "icon.svg": None, "Memo.RTF": "rtf"}


_OOXML = "application/vnd.openxmlformats-officedocument."


def _retyped(package: bytes, content_type: str, kind: str) -> bytes:
    """``package`` with its main part declared of ``kind`` (as Word, PowerPoint and Excel save macro-enabled
    files, shows and templates), in place of ``content_type``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "[Content_Types].xml":
                data = data.replace(content_type.encode(), kind.encode())
            target.writestr(item.filename, data)
    return out.getvalue()


def test_office_2007_macro_enabled_files_shows_and_templates_are_read(tmp_path: Path) -> None:
    # python-docx and python-pptx refused these content types; the files were not read at all.
    workbook = io.BytesIO()
    book = Workbook()
    book.active.append(["Lamp", 34.5])
    book.save(workbook)
    word = f"{_OOXML}wordprocessingml.document.main+xml"
    deck = f"{_OOXML}presentationml.presentation.main+xml"
    sheet = f"{_OOXML}spreadsheetml.sheet.main+xml"
    files = {
        "macros.docm": (docx_bytes(), word, "application/vnd.ms-word.document.macroEnabled.main+xml"),
        "letter.dotx": (docx_bytes(), word, f"{_OOXML}wordprocessingml.template.main+xml"),
        "letter.dotm": (docx_bytes(), word, "application/vnd.ms-word.template.macroEnabledTemplate.main+xml"),
        "show.ppsx": (deck_bytes(), deck, f"{_OOXML}presentationml.slideshow.main+xml"),
        "show.ppsm": (deck_bytes(), deck, "application/vnd.ms-powerpoint.slideshow.macroEnabled.main+xml"),
        "brand.potx": (deck_bytes(), deck, f"{_OOXML}presentationml.template.main+xml"),
        "brand.potm": (deck_bytes(), deck, "application/vnd.ms-powerpoint.template.macroEnabled.main+xml"),
        "macros.pptm": (deck_bytes(), deck, "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml"),
        "prices.xltx": (workbook.getvalue(), sheet, f"{_OOXML}spreadsheetml.template.main+xml"),
        "prices.xltm": (workbook.getvalue(), sheet, "application/vnd.ms-excel.template.macroEnabled.main+xml"),
    }
    for name, (package, content_type, kind) in files.items():
        document = load(tmp_path, name, _retyped(package, content_type, kind))
        expected = "Revenue grew in every region." if name.endswith(("docm", "dotx", "dotm")) else (
            "Lamp | 34.5" if name.endswith(("xltx", "xltm")) else "Costs fell in the 华东 region")
        assert expected in document.text, name


def test_every_suffix_read_names_a_file_type_a_filter_takes() -> None:
    # .csv was read but a filter on it was refused as an unknown file type.
    for suffix in SUPPORTED_SUFFIXES:
        loader = loader_for(f"a{suffix}")
        types = {loader.file_type, *(getattr(loader, kind).file_type for kind in ("native", "zipped")
                                     if hasattr(loader, kind))}
        assert types <= FILE_TYPES, suffix
        assert Filters(file_types=[suffix]).file_types, suffix


def test_wps_office_files_are_read_as_the_office_files_they_hold(tmp_path: Path) -> None:
    # WPS Office saves Word, Excel and PowerPoint 97-2003 files as .wps, .et and .dps (templates .wpt, .ett, .dpt),
    # and a newer one an Office 2007 file under the same names.
    document = doc_bytes([("合同编号 HT-2026-118\r交货地点：宁波仓库\r", False)])
    workbook = xls_bytes({"报价": [["型号", "单价"], ["LX-40", 128.5]]})
    deck = ppt_bytes([[ppt_shape("季度销售回顾")]])
    zipped = docx_with_notes("<w:p><w:r><w:t>交货日期 5 月 3 日</w:t></w:r></w:p>")
    files = {"合同.wps": document, "模板.wpt": document, "报价.et": workbook, "报价模板.ett": workbook,
             "汇报.dps": deck, "汇报模板.dpt": deck, "新合同.wps": zipped}
    read = {}
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        loaded = loader_for(path).load(path, data)
        read[name] = (loaded.file_type, " ".join(loaded.text.split()))
    assert read == {"合同.wps": ("doc", "合同编号 HT-2026-118 交货地点：宁波仓库"),
                    "模板.wpt": ("doc", "合同编号 HT-2026-118 交货地点：宁波仓库"),
                    "报价.et": ("xls", "报价 型号 | 单价 型号: LX-40 | 单价: 128.5"),
                    "报价模板.ett": ("xls", "报价 型号 | 单价 型号: LX-40 | 单价: 128.5"),
                    "汇报.dps": ("ppt", "季度销售回顾"), "汇报模板.dpt": ("ppt", "季度销售回顾"),
                    "新合同.wps": ("docx", "交货日期 5 月 3 日")}
    works = tmp_path / "letter.wps"  # Microsoft Works wrote .wps too: an OLE file of another kind
    works.write_bytes(compound_file({"CONTENTS": b"CHNKWKS" + bytes(200)}))
    with pytest.raises(LoadError, match="without a WordDocument stream .Microsoft Works saved its documents as .wps"):
        loader_for(works).load(works, works.read_bytes())


# --- markdown ---------------------------------------------------------------------------------------------------

MARKDOWN = """---
title: "Loader Guide"
tags: [secret-front-matter-value]
---

# Getting *started*

Read the [installation guide](https://example.com/install "Install") and
the [reference
manual](docs/ref.md) first. ![A diagram of the pipeline](img/pipeline.png)

<!-- editor note: do not index this
spanning two lines -->
Some **bold**, _emphasised_ and ~~struck~~ words, <span class="x">inline html</span>, 5 * 3 = 15,
snake_case_name and an escaped \\*star\\*.

- first item
- [x] done item
1. numbered item

> quoted line

| Name | Value |
|------|------:|
| alpha | 1 |

Setext heading
--------------

```python
x = "**not bold**"  # [not a link](http://x)
```

Inline `code with [brackets](kept)` stays. See <https://example.org>.

[ref]: https://example.com/hidden-reference-url
"""


def test_markdown_visible_text(tmp_path: Path) -> None:
    document = load(tmp_path, "guide.md", MARKDOWN.encode())
    text = document.text
    assert document.title == "Loader Guide"
    assert document.file_type == "markdown"
    for hidden in ("secret-front-matter-value", "https://example.com/install", "docs/ref.md", "img/pipeline.png",
                   "editor note", "<span", "#", "**bold**", "_emphasised_", "~~", "- first", "[x]", "> quoted",
                   "|---", "-----", "hidden-reference-url", "title:"):
        assert hidden not in text.replace('"**not bold**"', "").replace("# [not", ""), hidden
    for visible in ("Getting started", "installation guide", "the reference\nmanual first.",
                    "A diagram of the pipeline", "Some bold, emphasised and struck words, inline html, 5 * 3 = 15",
                    "snake_case_name and an escaped *star*.", "first item", "done item", "numbered item",
                    "quoted line", "Name | Value", "alpha | 1", "Setext heading",
                    'x = "**not bold**"  # [not a link](http://x)', "Inline code with [brackets](kept) stays.",
                    "See https://example.org."):
        assert visible in text, visible


def test_markdown_paragraphs_are_separated_by_blank_lines(tmp_path: Path) -> None:
    document = load(tmp_path, "notes.markdown", b"# Title\nFirst paragraph.\n\n\n\n## Next\nSecond.\n")
    assert document.text == "Title\n\nFirst paragraph.\n\nNext\n\nSecond."
    assert document.title == "Title"


def test_markdown_html_reads_as_an_html_page_does(tmp_path: Path) -> None:
    """HTML in Markdown was read as bare text nodes: cells, items and paragraphs ran together ("ApplesPears"), a
    <br> joined its lines, and hidden elements showed."""
    source = """# Product<br>sheet

<table><tr><th>Name</th><th>Price</th></tr><tr><td>Widget</td><td>42 EUR</td></tr></table>

<ul><li>Apples</li><li>Pears</li></ul>

<div><p>Para one.</p><p hidden>Hidden.</p><p>Para two.</p></div>

| Option | Meaning |
|---|---|
| --fast | Skips checks<br>Use with care |

Address: Main Street 1<br/>Springfield
"""
    document = load(tmp_path, "product.md", source.encode())
    assert document.title == "Product sheet"  # on one line
    assert document.text == (
        "Product\nsheet\n\nName | Price\nWidget | 42 EUR\n\nApples\nPears\n\nPara one.\n\nPara two.\n\n"
        "Option | Meaning\n--fast | Skips checks Use with care\n\nAddress: Main Street 1\nSpringfield")


def test_markdown_title_falls_back_to_first_heading(tmp_path: Path) -> None:
    document = load(tmp_path, "n.md", "Intro text.\n\n## Second level\n\n# Top level\n".encode("latin-1"))
    assert document.title == "Top level"
    assert load(tmp_path, "plain.md", b"just text").title is None


FRONT_MATTER = {
    "yaml": "---\n# draft\ntitle: 'Release notes'\ntags:\n- loaders\nauthor:\n  name: Ada\n---\n",
    "toml": '+++\ntitle = "Release notes"\naliases = [\n  "/old",\n]\n\n[params]\nauthor = "Ada"\n+++\n',
}


@pytest.mark.parametrize("kind", FRONT_MATTER)
def test_markdown_front_matter_gives_the_title_and_is_not_text(tmp_path: Path, kind: str) -> None:
    document = load(tmp_path, f"{kind}.md", (FRONT_MATTER[kind] + "Body text.\n").encode())
    assert (document.title, document.text) == ("Release notes", "Body text.")


@pytest.mark.parametrize("source", [
    "---\n\nMeeting notes.\n\n---\n\nSecond.\n",
    "---\n- Meeting notes.\n- Budget: agreed\n---\nSecond.\n",  # a list between rules has no key
    "+++\nMeeting notes.\n+++\n\nSecond.\n",
])
def test_markdown_opening_with_a_rule_keeps_the_text_between_rules(tmp_path: Path, source: str) -> None:
    document = load(tmp_path, "rules.md", source.encode())
    assert "Meeting notes." in document.text and document.text.endswith("Second.")
    assert document.title is None


def nested_list(depth: int) -> str:
    return "".join("  " * level + f"- level {level}\n" for level in range(depth))


def test_markdown_nested_deeper_than_the_parser_goes_loses_no_text(tmp_path: Path) -> None:
    ending = "\n# Next section\n\nImportant paragraph.\n"
    document = load(tmp_path, "deep.md", f"Intro.\n\n{nested_list(12)}{ending}".encode())
    assert document.text.endswith("level 10\nlevel 11\n\nNext section\n\nImportant paragraph.")
    assert document.warnings == []
    hostile = "---\ntitle: Deep\n---\n" + "> " * 60 + "deep quote\n\n" + nested_list(40) + ending
    document = load(tmp_path, "hostile.md", hostile.encode())
    assert "deep quote" in document.text and "level 39" in document.text
    assert document.text.endswith("Next section\n\nImportant paragraph.")
    assert [warning.split(": ")[0] for warning in document.warnings] == [
        "Markdown nested more than 50 levels deep at line 4", "Markdown nested more than 50 levels deep at line 30"]


def test_markdown_of_unclosed_brackets_reads_them_as_text_once_its_label_budget_is_spent(tmp_path: Path) -> None:
    """A run of unclosed ``![`` cost markdown-it 40 us a character in label scans (2 MB passed the file timeout):
    past a budget the scans stop, the links found before it stay links, and the rest is read as it is written."""
    (tmp_path / "photo.png").write_bytes(image_bytes())
    source = "Intro with ![a photo](photo.png).\n\n" + "![x " * 100_000 + "\n\nLast [link](https://example.com).\n"
    document = load(tmp_path, "brackets.md", source.encode())
    assert document.text.startswith("Intro with a photo.\n\n![x ![x ")
    assert document.text.count("![x") == 100_000 and document.text.endswith("Last [link](https://example.com).")
    assert [image.alt for image in document.images] == ["a photo"]
    assert document.warnings == ["Markdown with too many unclosed '[' to parse in time: links, images and footnotes "
                                 "after the first ones read as plain text"]
    ordinary = load(tmp_path, "links.md", ("See [the guide](guide.md) and [the faq](faq.md). " * 20_000).encode())
    assert ordinary.warnings == [] and "[" not in ordinary.text


def test_markdown_nesting_warnings_are_capped(tmp_path: Path) -> None:
    """Each block nested too deep gave a warning of its own: 1.4 MB of deep quotes stored 20,000 on the document."""
    document = load(tmp_path, "quotes.md", ("> " * 52 + "deep line\n\n").encode() * 30)
    assert document.text.count("deep line") == 30
    assert len(document.warnings) == 21
    assert document.warnings[19].startswith("Markdown nested more than 50 levels deep at line 39: ")
    assert document.warnings[-1] == "10 more block(s) nested more than 50 levels deep kept as plain text"


def test_markdown_over_the_text_limit_is_refused_before_it_is_parsed(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsing costs about 140 times the source in memory (33 MB took 106 s and 4.6 GB, then was refused)."""
    source = ("# Notes\n\n" + "Some *text* with `code` and a [link](http://x).\n\n" * 40).encode()
    path = tmp_path / "notes.md"
    loader = loader_for(path)
    assert loader is not None
    assert loader.load(path, source, Limits(max_chars=len(source))).text.startswith("Notes\n\nSome text")

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("an oversized source was parsed")

    monkeypatch.setattr(markdown._MARKDOWN, "parse", never)
    with pytest.raises(LoadError, match=r"^over budget: more than 1,000 characters of text \(max_document_chars\)$"):
        loader.load(path, source, Limits(max_chars=1000))


# --- html -------------------------------------------------------------------------------------------------------

HTML = """<!DOCTYPE html>
<html><head><title>  The   Page Title </title><style>.hidden-css-rule { color: red }</style>
<script>var trackingScriptCode = 1;</script></head>
<body>
<header><a href="/">Site banner text</a></header>
<nav><ul><li>Navigation link</li></ul></nav>
<div role="navigation">Role navigation text</div>
<main>
<article>
<header><h1>Article Heading</h1></header>
<p>First    paragraph
   of the <b>article</b> body.</p>
<p>Second paragraph.<br>After a break.</p>
<div hidden>Hidden attribute text</div>
<span style="display: none">Display none text</span>
<noscript>Enable JavaScript text</noscript>
<template>Template text</template>
<svg><text>SVG text</text></svg>
<form><label for="q">Form label text</label><input id="q"><select><option>Option text</option></select>
<button>Button text</button><textarea>Textarea text</textarea></form>
<form role="search">Search form text</form>
<ul><li>Item one</li><li>Item two</li></ul>
<table><tr><th>Name</th><th>Score</th></tr><tr><td>Alice</td><td> 42 </td></tr></table>
<pre>  indented
    code block</pre>
<p>Caf&eacute; &amp; entities</p>
<!-- an html comment -->
</article>
<aside>Aside sidebar text</aside>
</main>
<footer>Footer copyright text</footer>
<div role="contentinfo">Contentinfo text</div>
<script type="application/ld+json">{"jsonLd": true}</script>
</body></html>
"""


def test_html_visible_text_only(tmp_path: Path) -> None:
    document = load(tmp_path, "page.html", HTML.encode())
    text = document.text
    assert document.title == "The Page Title"
    assert document.file_type == "html"
    for hidden in ("hidden-css-rule", "trackingScriptCode", "Site banner text", "Navigation link",
                   "Role navigation text", "Hidden attribute text", "Display none text", "Enable JavaScript",
                   "Template text", "SVG text", "Form label text", "Option text", "Button text", "Textarea text",
                   "Search form text",
                   "Aside sidebar", "Footer copyright",
                   "Contentinfo text", "jsonLd", "an html comment", "The Page Title"):
        assert hidden not in text, hidden
    assert text == (
        "Article Heading\n\nFirst paragraph of the article body.\n\nSecond paragraph.\nAfter a break.\n\n"
        "Item one\nItem two\n\nName | Score\nAlice | 42\n\n  indented\n    code block\n\nCafé & entities"
    )


def test_html_page_inside_a_form_and_a_chapter_with_its_own_header_notes_and_footer_are_read(tmp_path: Path) -> None:
    """ASP.NET, SharePoint and Lotus Domino pages sit whole inside one <form>, and an EPUB 3 chapter keeps its title
    in its <section>'s <header> and its footnotes in asides: all of them read as nothing, without a warning. A
    search form, a form's controls, the page's banner (a heading in it or not) and a sidebar are still not read."""
    form = ('<html><body><form method="post" id="aspnetForm"><input type="hidden" name="__VIEWSTATE" value="x">'
            '<div><form role="search">Search the intranet</form><div class="title">Travel policy</div>'
            '<p>Book flights through the travel desk.</p><label for="lang">Language</label><select id="lang">'
            '<option>English</option></select><button>Save</button></div></form></body></html>')
    assert load(tmp_path, "policy.aspx.html", form.encode()).text == \
        "Travel policy\n\nBook flights through the travel desk."
    chapter = ('<html><body><header><h1>Site name</h1><p>Tagline</p></header><section epub:type="chapter">'
               '<header><hgroup><h2>Chapter I</h2><p>The Storm Breaks</p></hgroup></header>'
               '<p>It was a dark night.<a href="#n1">1</a></p><aside role="note">A sidebar</aside>'
               '<footer><aside id="n1" epub:type="footnote">Written in 1850.</aside></footer></section>'
               '<footer>Copyright</footer></body></html>')
    assert load(tmp_path, "chapter.xhtml.html", chapter.encode()).text == \
        "Chapter I\n\nThe Storm Breaks\n\nIt was a dark night.1\n\nWritten in 1850."


def test_html_table_text_outside_cells_and_cells_outside_rows_are_read_as_browsers_show_them(tmp_path: Path) -> None:
    page = ("<table><tr>Loose text<td>D</td><!-- a comment --></tr></table>"
            "<table><td>J</td><td>K</td></table>")
    assert load(tmp_path, "t.html", page.encode()).text == "Loose text | D\n\nJ | K"  # "D", then "JK"


def test_html_title_falls_back_to_first_h1(tmp_path: Path) -> None:
    document = load(tmp_path, "t.htm", b"<html><body><p>intro</p><h1>Main <i>Heading</i></h1></body></html>")
    assert document.title == "Main Heading"


def test_html_gbk_page_mislabelled_as_utf8(tmp_path: Path) -> None:
    page = f'<html><head><meta charset="utf-8"><title>新闻</title></head><body><p>{CHINESE}</p></body></html>'
    document = load(tmp_path, "news.html", page.encode("gbk"))
    assert CHINESE in document.text
    assert document.title == "新闻"
    assert "\ufffd" not in document.text


def test_html_utf8_page_labelled_gb2312_and_declared_legacy_charsets(tmp_path: Path) -> None:
    page = f'<html><head><meta http-equiv="Content-Type" content="text/html; charset=gb2312"></head>' \
           f'<body><p>{CHINESE}</p></body></html>'
    assert load(tmp_path, "utf8.html", page.encode("utf-8")).text == CHINESE
    assert load(tmp_path, "gbk.html", page.encode("gbk")).text == CHINESE
    western = f'<html><head><meta charset="windows-1252"></head><body><p>{ACCENTED}</p></body></html>'
    assert load(tmp_path, "w.html", western.encode("cp1252")).text == ACCENTED


def test_html_utf16_with_bom(tmp_path: Path) -> None:
    page = f"<html><body><p>{ACCENTED}</p><p>{CHINESE}</p></body></html>"
    assert load(tmp_path, "u16.xhtml", page.encode("utf-16")).text == f"{ACCENTED}\n\n{CHINESE}"


@pytest.mark.parametrize("label", ["unicode_escape", "raw_unicode_escape", "punycode", "idna", "utf-7", "rot13",
                                   "zlib_codec", "utf-16", "cp037", "no-such-charset"])
def test_html_declaring_a_charset_that_is_not_ascii_compatible_text_is_detected_instead(tmp_path: Path,
                                                                                       label: str) -> None:
    """A browser ignores such a label. rot13 and zlib_codec raised LookupError, and unicode_escape turned an escape
    in the title into a lone surrogate that lxml could not take (UnicodeEncodeError)."""
    page = f'<meta charset="{label}"><title>Café \\ud800 \\x41</title><p>{ACCENTED}</p>'
    document = load(tmp_path, "page.html", page.encode("cp1252"))
    assert (document.text, document.title) == (ACCENTED, "Café \\ud800 \\x41")


def test_html_deeply_nested_does_not_exhaust_the_stack(tmp_path: Path) -> None:
    page = "<html><body>" + "<span>" * 5000 + "deep text" + "</span>" * 5000 + "</body></html>"
    assert "deep text" in load(tmp_path, "deep.html", page.encode()).text


# --- pdf --------------------------------------------------------------------------------------------------------

def test_pdf_pages_are_located_in_the_text(tmp_path: Path) -> None:
    data = pdf_bytes([["Alpha beta gamma", "second line on page one"], ["Delta epsilon zeta"]], title="Two Pages")
    document = load(tmp_path, "two.pdf", data)
    assert document.file_type == "pdf"
    assert document.title == "Two Pages"
    assert [page.number for page in document.pages] == [1, 2]
    first, second = (document.text[page.start:page.end] for page in document.pages)
    assert "Alpha beta gamma" in first and "second line on page one" in first and "Delta" not in first
    assert "Delta epsilon zeta" in second and "Alpha" not in second
    assert document.text == first + "\n\n" + second
    assert document.page_at(document.text.index("Delta")) == 2
    assert document.warnings == []


def test_pdf_pages_without_text_are_kept_and_reported(tmp_path: Path) -> None:
    document = load(tmp_path, "mixed.pdf", pdf_bytes([["Only this page has words"], []]))
    assert document.text == "Only this page has words"
    assert [(page.number, page.start, page.end) for page in document.pages] == [(1, 0, 24), (2, 24, 24)]
    assert document.warnings == ["1 of 2 pages have no text layer (scanned?)"]


def test_pdf_without_any_text_is_still_a_document(tmp_path: Path) -> None:
    document = load(tmp_path, "scan.pdf", pdf_bytes([[], [], []]))
    assert document.text == ""
    assert len(document.pages) == 3
    assert document.warnings == ["3 of 3 pages have no text layer (scanned?)"]


def test_pdf_page_cap(tmp_path: Path) -> None:
    data = pdf_bytes([["page one"], ["page two"], ["page three"]])
    document = PdfLoader().load(tmp_path / "long.pdf", data, Limits(max_pages=2))
    assert [page.number for page in document.pages] == [1, 2]
    assert "page three" not in document.text
    assert document.warnings == ["only the first 2 of 3 pages were read (max_pages)"]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(pdf_bytes([["Alpha beta gamma"], ["Delta"]])[:150], id="truncated"),
        pytest.param(random.Random(3).randbytes(3000), id="random"),
        pytest.param(b"%PDF-1.4\n%%EOF\n", id="header-only"),
        pytest.param(b"<html><body>saved as pdf</body></html>", id="html-named-pdf"),
    ],
)
def test_broken_pdf_is_a_load_error(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(LoadError, match="PDF"):
        load(tmp_path, "broken.pdf", data)


def test_a_pdf_page_tree_naming_itself_loses_those_entries_not_the_file(tmp_path: Path) -> None:
    """pypdf refuses a page tree with a cycle whole ("Detected cyclic page references")."""
    def page(parent: int, content: int) -> bytes:
        return b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> " \
            b"/Contents %d 0 R >>" % (parent, content)

    def shown(text: bytes) -> bytes:
        stream = b"BT /F1 12 Tf 72 720 Td (%s) Tj ET" % text
        return b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [10 0 R 7 0 R 2 0 R] /Count 2 >>",
               10: b"<< /Type /Pages /Parent 2 0 R /Kids [5 0 R 2 0 R 10 0 R] /Count 1 >>",
               3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>", 5: page(10, 6), 6: shown(b"First page"),
               7: page(2, 8), 8: shown(b"Second page")}
    document = load(tmp_path, "cycle.pdf", pdf_from_objects(objects))
    assert document.text == "First page\n\nSecond page"
    assert document.warnings == ["3 entries of the page tree naming a list of pages it is in (a cycle) left out"]


def encrypt(data: bytes, user_password: str, owner_password: str) -> bytes:
    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_encrypted_pdf_needs_a_password(tmp_path: Path) -> None:
    data = encrypt(pdf_bytes([["Confidential words"]]), user_password="secret", owner_password="owner")
    with pytest.raises(LoadError, match="encrypted"):
        load(tmp_path, "locked.pdf", data)


def test_pdf_with_owner_password_only_opens(tmp_path: Path) -> None:
    data = encrypt(pdf_bytes([["Readable restricted words"]]), user_password="", owner_password="owner")
    assert load(tmp_path, "restricted.pdf", data).text == "Readable restricted words"


def test_pdf_lone_surrogate_from_a_tounicode_map_becomes_a_replacement_character(tmp_path: Path) -> None:
    """The tokenizers refuse a lone surrogate ("TextEncodeInput must be ..."): the whole PDF was lost."""
    assert load(tmp_path, "surrogate.pdf", lone_surrogate_pdf()).text == "Refund policy \ufffdB is here"


# --- docx -------------------------------------------------------------------------------------------------------

def docx_bytes(title: str | None = None) -> bytes:
    document = Document()
    if title is not None:
        document.core_properties.title = title
    document.sections[0].header.paragraphs[0].text = "Running header text"
    document.sections[0].footer.paragraphs[0].text = "Running footer text"
    document.add_paragraph("Opening paragraph before any heading.")
    document.add_heading("Quarterly Results", level=1)
    document.add_paragraph("Revenue grew in every region.")
    table = document.add_table(rows=3, cols=3)
    rows = [("Region", "Q1", "Q2"), ("North", "10", "12"), ("South", "", "9")]
    for row, values in zip(table.rows, rows, strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.add_paragraph("")
    document.add_paragraph("Closing paragraph after the table.\tTabbed.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_docx_text_order_and_tables(tmp_path: Path) -> None:
    document = load(tmp_path, "report.docx", docx_bytes())
    assert document.file_type == "docx"
    assert document.text == (
        "Opening paragraph before any heading.\n\nQuarterly Results\n\nRevenue grew in every region.\n\n"
        "Region | Q1 | Q2\nNorth | 10 | 12\nSouth | 9\n\nClosing paragraph after the table.\tTabbed."
    )
    assert "Running header" not in document.text and "Running footer" not in document.text
    assert document.title == "Quarterly Results"


def test_docx_title_from_core_properties(tmp_path: Path) -> None:
    assert load(tmp_path, "titled.docx", docx_bytes(title="Annual Report")).title == "Annual Report"


def _run(text: str) -> str:
    return f'<w:r><w:t xml:space="preserve">{text}</w:t></w:r>'


def _reference(kind: str, number: int) -> str:
    return f'<w:r><w:rPr><w:vertAlign w:val="superscript"/></w:rPr><w:{kind}Reference w:id="{number}"/></w:r>'


def test_docx_footnotes_and_endnotes_are_read_where_they_are_referenced(tmp_path: Path) -> None:
    """A note's text stands where its reference does, as an OpenDocument note's: in a paragraph, in a table's
    cell, after a mark of the writer's own; Word's separators (the rule above the notes) are not notes, and a note's
    own mark shows nothing."""
    body = (f'<w:p>{_run("Returns are accepted within 30 days.")}{_reference("footnote", 1)}'
            f'{_run(" Sale items are final.")}</w:p>'
            f'<w:tbl><w:tr><w:tc><w:p>{_run("Warranty")}{_reference("endnote", 1)}</w:p></w:tc>'
            f'<w:tc><w:p>{_run("2 years")}</w:p></w:tc></w:tr></w:tbl>'
            f'<w:p>{_run("See the terms")}{_reference("footnote", 2)}{_run(".")}</w:p>'
            f'<w:p>{_run("After a blank. ")}{_reference("endnote", 2)}{_run("Next.")}</w:p>'
            f'<w:p>{_run("Own mark")}<w:r><w:footnoteReference w:customMarkFollows="1" w:id="3"/><w:t>*</w:t></w:r>'
            f'{_run(" then text.")}</w:p>')
    data = docx_with_notes(body, footnotes={1: f"<w:p>{_run('Except opened software.')}</w:p>",
                                            3: f"<w:p>{_run('Marked note.')}</w:p>",
                                            2: f"<w:p>{_run('Terms of sale,')}</w:p><w:p>{_run('section 4.')}</w:p>"},
                           endnotes={1: f"<w:p>{_run('Parts and labour.')}</w:p>",
                                     2: f"<w:p>{_run(' One space. ')}</w:p>"})
    document = load(tmp_path, "policy.docx", data)
    assert document.text == ("Returns are accepted within 30 days. Except opened software. Sale items are final.\n\n"
                             "Warranty Parts and labour. | 2 years\n\nSee the terms Terms of sale, section 4..\n\n"
                             "After a blank. One space.Next.\n\nOwn mark* Marked note. then text.")
    assert document.warnings == []


def test_a_picture_in_a_docx_footnote_is_kept_where_the_note_is_referenced(tmp_path: Path) -> None:
    # The note's drawing names its picture among the footnotes part's relationships: it was lost before.
    namespaces = ('xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" '
                  'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
                  'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"')
    drawing = (f'<w:r><w:drawing><wp:inline {namespaces}><wp:docPr id="7" name="p" descr="Torque chart"/>'
               '<a:graphic><a:graphicData><a:blip r:embed="rIdChart"/></a:graphicData></a:graphic></wp:inline>'
               "</w:drawing></w:r>")
    body = (f"<w:p>{_run('Intro paragraph.')}</w:p>"
            f"<w:p>{_run('Tighten the bolts')}{_reference('footnote', 1)}{_run(' in order.')}</w:p>")
    data = docx_with_notes(body, footnotes={1: f"<w:p>{_run('See the chart.')}{drawing}</w:p>"},
                           note_pictures={"rIdChart": image_bytes(size=(80, 60))})
    document = load(tmp_path, "torque.docx", data)
    assert document.text == "Intro paragraph.\n\nTighten the bolts See the chart. in order."
    [picture] = document.images
    assert (picture.name, picture.alt, picture.image.size) == ("word/media/note0.png", "Torque chart", (80, 60))
    assert document.text[picture.start : picture.end] == "Tighten the bolts See the chart. in order."
    assert document.warnings == []


def test_docx_note_is_read_once_and_without_the_notes_it_names(tmp_path: Path) -> None:
    """A note referenced again is not repeated (only a hostile file references one twice: a 1 MB note named by
    every paragraph would otherwise be copied each time); a reference inside a note is not followed (a chain of
    notes naming notes would nest as deep as it is long); a reference to no note, or to a separator, shows
    nothing."""
    body = "".join(f"<w:p>{_run(f'Paragraph {number}.')}{_reference('footnote', 1)}</w:p>" for number in range(3))
    body += f"<w:p>{_run('Missing.')}{_reference('footnote', 5000)}{_reference('footnote', 0)}</w:p>"
    chain = {number: f"<w:p>{_run(f'Note {number}.')}{_reference('footnote', number + 1)}</w:p>"
             for number in range(1, 1001)}
    document = load(tmp_path, "chain.docx", docx_with_notes(body, footnotes=chain))
    assert document.text == "Paragraph 0. Note 1.\n\nParagraph 1.\n\nParagraph 2.\n\nMissing."


def test_docx_unreadable_notes_part_loses_its_notes_not_the_document(tmp_path: Path) -> None:
    body = f"<w:p>{_run('Kept.')}{_reference('footnote', 1)}</w:p>"
    document = load(tmp_path, "broken-notes.docx", docx_with_notes(body, notes_xml={"footnotes": "<w:footnotes"}))
    assert document.text == "Kept."
    assert len(document.warnings) == 1 and document.warnings[0].startswith("its notes (/word/footnotes.xml) were not")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(docx_bytes()[:2000], id="truncated"),
        pytest.param(b"PK\x03\x04" + random.Random(5).randbytes(500), id="zip-garbage"),
        pytest.param(b"plain text saved as docx", id="not-a-zip"),
    ],
)
def test_broken_docx_is_a_load_error(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(LoadError, match="corrupt DOCX"):
        load(tmp_path, "broken.docx", data)


@pytest.mark.parametrize(("data", "reason"), [
    pytest.param(docx_with_unreadable_parts(encrypted=True), "DOCX is encrypted: its part .* needs a password",
                 id="encrypted"),
    pytest.param(docx_with_unreadable_parts(method=9), r"uses an unsupported compression \(deflate64\)",
                 id="deflate64"),
    pytest.param(docx_with_unreadable_parts(flags=0x20), r"cannot be read \(patched data or strong encryption\)",
                 id="patched"),
    pytest.param(docx_with_unreadable_parts(version=100), "corrupt DOCX: zip file version 10.0", id="version"),
])
def test_docx_with_parts_zipfile_cannot_unpack_is_a_load_error(tmp_path: Path, data: bytes, reason: str) -> None:
    """zipfile raises RuntimeError (encrypted) or NotImplementedError (deflate64) for such parts: the reason was
    "unexpected RuntimeError: ...", or a traceback that ended the run without file isolation."""
    with pytest.raises(LoadError, match=reason):
        load(tmp_path, "locked.docx", data)


def test_docx_text_past_the_allowance_is_refused_before_parsing_but_chinese_within_it_loads(tmp_path: Path) -> None:
    """Before the XML is parsed, more text bytes than 4 per allowed character is refused (UTF-8 takes at most 4); a
    Chinese text (3 bytes a character) near the allowance still loads."""
    def docx_of(text: str) -> bytes:
        document, out = Document(), io.BytesIO()
        document.add_paragraph(text)
        document.save(out)
        return out.getvalue()

    path = tmp_path / "notes.docx"
    loader = loader_for(path)
    assert loader is not None
    chinese = CHINESE * (90_000 // len(CHINESE))  # 270 KB, and a blank document's styles hold 90 KB of blanks
    assert loader.load(path, docx_of(chinese), Limits(max_chars=100_000)).text == chinese
    with pytest.raises(LoadError, match="more than 400,000 bytes of text; max_document_chars allows 100,000 char"):
        loader.load(path, docx_of("a" * 500_000), Limits(max_chars=100_000))
    # Indentation between tags is not text, nor is an entity more than one character; blanks in a run are.
    indented = "".join(f"\n{' ' * 200}<w:p>\n{' ' * 400}<w:r><w:t>R&amp;D note {n}</w:t></w:r>\n{' ' * 200}</w:p>"
                       for n in range(1000))  # 600 KB of indentation
    assert loader.load(path, docx_body(indented), Limits(max_chars=100_000)).text.startswith("R&D note 0\n\nR&D")
    blanks = " " * 500_000
    for hidden in (f'<w:t xml:space="preserve">{blanks}.</w:t>', f'<w:t xml:space="preserve">&gt;>{blanks}</w:t>',
                   f"<w:t><![CDATA[{'a' * 500_000}]]></w:t>"):  # blanks, blanks after a ">" of text, CDATA
        with pytest.raises(LoadError, match="bytes of text"):
            loader.load(path, docx_body(f"<w:p><w:r>{hidden}</w:r></w:p>"), Limits(max_chars=100_000))


def test_a_pdf_font_is_read_once_for_all_its_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pypdf read a font's ToUnicode map again on every page: a Chinese font of 7,000 characters cost 30 ms a
    page. The text is what pypdf reads page by page."""
    from pypdf.generic import _font

    from ingestion.loaders.pdf_fonts import INSTALLED

    assert INSTALLED, "pypdf's font reader moved: fonts are read on every page again"
    data = chinese_font_pdf(20, 7000)
    expected = "\n\n".join(clean_text(page.extract_text()) for page in PdfReader(io.BytesIO(data)).pages)
    reads = []
    original = _font.get_encoding
    monkeypatch.setattr(_font, "get_encoding", lambda font: reads.append(font) or original(font))
    document = load(tmp_path, "manual.pdf", data)
    assert document.text == expected and document.text.startswith("一丁丂")
    assert len(reads) == 1


# --- xlsx -------------------------------------------------------------------------------------------------------

def workbook_bytes(build: Callable[[Workbook], None]) -> bytes:
    workbook = Workbook()
    build(workbook)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def test_xlsx_sheets_are_pages_and_rows_say_their_column_headers(tmp_path: Path) -> None:
    def build(workbook: Workbook) -> None:
        prices = workbook.active
        prices.title = "Prices"
        prices.append(["Product", "Price (EUR)", "Launched", "In stock"])
        prices.append(["Harbour lamp", 34.5, date(2021, 3, 4), True])
        prices.append([None, None, None, None])
        prices.append(["Tide clock", 120.0, datetime(2022, 7, 1, 9, 30), False])
        prices.append(["Total", "=SUM(B2:B4)"])  # never computed by a spreadsheet program: no value saved
        workbook.create_sheet("Empty")
        notes = workbook.create_sheet("备注")
        notes["B3"], notes["D3"] = "价格含税\n不含运费", 0.1 + 0.2
        workbook.properties.title = "Price list 2024"

    document = load(tmp_path, "prices.xlsx", workbook_bytes(build))
    assert document.file_type == "xlsx" and document.title == "Price list 2024" and document.warnings == []
    assert [document.text[page.start:page.end] for page in document.pages] == [
        "Prices\nProduct | Price (EUR) | Launched | In stock\n"
        "Product: Harbour lamp | Price (EUR): 34.5 | Launched: 2021-03-04 | In stock: TRUE\n"
        "Product: Tide clock | Price (EUR): 120 | Launched: 2022-07-01 09:30:00 | In stock: FALSE\n"
        "Product: Total",
        "",
        "备注\n价格含税 不含运费 | 0.3"]


def test_xlsx_reads_only_excel_s_grid_and_a_bounded_number_of_cells(tmp_path: Path) -> None:
    # openpyxl fills each row out to its last cell and each gap with empty rows: the size a file declares, its
    # rows past Excel's last, and far cells must not turn kilobytes into billions of cells to look at.
    far = load(tmp_path, "far.xlsx", xlsx_with_sheet_rows(
        b'<row r="1"><c r="A1" t="inlineStr"><is><t>Hello sheet</t></is></c></row>'
        b'<row r="4000000000"><c r="B4000000000" t="inlineStr"><is><t>Past the grid</t></is></c></row>'))
    assert far.text == "Sheet\nHello sheet"
    wide = load(tmp_path, "wide.xlsx", far_cells_xlsx(2000))
    assert wide.text.startswith("Sheet\n1\n2\n") and wide.text.endswith("\n1220")
    assert wide.warnings == ["sheet Sheet: only its first 1220 rows with values were read, and no later sheet (a "
                             "workbook's first 20,000,000 cells are read)"]


def test_xlsx_headers_are_text_above_numbers_or_labels_and_a_glossary_has_none(tmp_path: Path) -> None:
    def build(workbook: Workbook) -> None:
        report = workbook.active
        for row in (["Sales report 2024", "Confidential"], [], ["Region", "Sales"], ["North", 1200], ["South", 900]):
            report.append(row)
        glossary = workbook.create_sheet("Glossary")
        for row in (["apple", "a red fruit"], ["banana", "a yellow fruit"]):
            glossary.append(row)
        contacts = workbook.create_sheet("Contacts")  # text only, below a title: labels, unlike the values below
        for row in (["Contact list"], ["Name", "Phone"], ["Zhang Wei", "138-0000-1111"], ["Li Na", "139-0000-2222"]):
            contacts.append(row)

    document = load(tmp_path, "report.xlsx", workbook_bytes(build))
    assert document.text == ("Sheet\nSales report 2024 | Confidential\nRegion | Sales\nRegion: North | Sales: 1200\n"
                             "Region: South | Sales: 900\n\nGlossary\napple | a red fruit\nbanana | a yellow fruit\n\n"
                             "Contacts\nContact list\nName | Phone\nName: Zhang Wei | Phone: 138-0000-1111\n"
                             "Name: Li Na | Phone: 139-0000-2222")
    # A header is a short label: one of 10,000 characters was repeated before every value of its column.
    long_header = load(tmp_path, "long.xlsx", workbook_bytes(lambda workbook: [workbook.active.append(row) for row in (
        ["H" * 10_000, "Count"], ["x", 1])]))
    assert long_header.text.endswith(f"\n{'H' * 80}: x | Count: 1")
    # A row of details wider than the table above its headers is no header row: the row directly above the numbers is.
    detailed = load(tmp_path, "staff.xlsx", workbook_bytes(lambda workbook: [workbook.active.append(row) for row in (
        ["Department:", "Finance", "Prepared by:", "Jane"], ["Name", "Region", "Salary"], ["Alice", "North", 5000])]))
    assert detailed.text.endswith("\nName: Alice | Region: North | Salary: 5000")
    # Headers in the tenth row, and a first number past it, are still found (the search does not end at the tenth).
    tenth = load(tmp_path, "tenth.xlsx", workbook_bytes(lambda workbook: [workbook.active.append(row) for row in (
        *[[f"Report line {n}"] for n in range(9)], ["Region", "Revenue", "Cost"], *[["West", "n/a", "n/a"]] * 3,
        ["North", 100, 50])]))
    assert tenth.text.endswith("\nRegion | Revenue | Cost\nWest | n/a | n/a\nWest | n/a | n/a\nWest | n/a | n/a\n"
                               "Region: North | Revenue: 100 | Cost: 50")


def test_xlsx_sheets_listed_twice_broken_sheets_and_style_bombs(tmp_path: Path) -> None:
    row = b'<row r="1"><c r="A1" t="inlineStr"><is><t>Only once</t></is></c></row>'
    # A second sheet naming the first one's part (read 20 times, 140 s) is read once; its page stays, empty.
    again = load(tmp_path, "again.xlsx", xlsx_with_sheet_rows(row, rewrite={"xl/workbook.xml": lambda xml: re.sub(
        rb"(<sheet [^>]*?)name=\"Sheet\"([^>]*?)sheetId=\"1\"([^>]*/>)", rb'\g<0>\1name="Again"\2sheetId="2"\3', xml)}))
    assert again.text == "Sheet\nOnly once" and [(page.start, page.end) for page in again.pages] == [(0, 15), (15, 15)]
    # A cell naming a shared string that is not there, or a number or a date that is none, reads #VALUE! (it lost
    # the rest of its sheet); a row openpyxl cannot read loses the rest of its sheet, with the reason, not the workbook.
    bad = (b'<row r="2"><c r="A2" t="s"><v>99</v></c><c r="B2" t="n"><v>1,234</v></c><c t="d"><v>9999-99-99</v></c>'
           b'</row><row r="3"><c r="A3" t="inlineStr"><is><t>After</t></is></c></row>')
    broken = load(tmp_path, "broken.xlsx", xlsx_with_sheet_rows(row + bad + b'<row r="x"/>' + row.replace(b"1", b"5")))
    assert broken.text == "Sheet\nOnly once\n#VALUE! | #VALUE! | #VALUE!\nAfter"
    assert broken.warnings == [
        "sheet Sheet: 3 cell(s) that cannot be read (a shared string not there, a number or date that is none) read "
        "#VALUE!", "sheet Sheet cannot be read past row 3 with values: could not convert string to float: 'x'"]
    headed = (b'<row><c t="inlineStr"><is><t>Item</t></is></c><c t="inlineStr"><is><t>Price</t></is></c></row>'
              b'<row><c t="inlineStr"><is><t>Tea</t></is></c><c><v>3</v></c></row>'
              b'<row><c t="n"><v>n/a</v></c><c><v>4</v></c></row>')  # cells without their place written
    assert load(tmp_path, "headed.xlsx", xlsx_with_sheet_rows(headed)).text.endswith("\nItem: #VALUE! | Price: 4")
    # openpyxl matched each number format against a regular expression quadratic in its length, and made an object
    # of every style record: both are bounded before it parses them (blanks around "=" hide nothing).
    long_format = b'<numFmts count="1"><numFmt numFmtId="164" formatCode %s= "%s"/></numFmts>' % (
        b" " * 5000, b"[" * 300)
    with pytest.raises(LoadError, match="a number format longer than 255 characters"):
        load(tmp_path, "format.xlsx", xlsx_with_sheet_rows(row, rewrite={"xl/styles.xml": lambda xml: re.sub(
            rb"<numFmts[^>]*/>|(?=<fonts)", long_format, xml, count=1)}))
    for record, closing in ((b'<xf numFmtId="0"/>', b"</cellXfs>"), (b"<font/>", b"</fonts>")):
        with pytest.raises(LoadError, match="more than 100,000 style records"):
            load(tmp_path, "formats.xlsx", xlsx_with_sheet_rows(row, rewrite={"xl/styles.xml": lambda xml: xml.replace(
                closing, record * 100_001 + closing, 1)}))


@pytest.mark.parametrize("kind", ["xlsx", "pptx"])
@pytest.mark.parametrize("data, said", [
    pytest.param(b"PK\x03\x04" + random.Random(5).randbytes(500), {}, id="zip-garbage"),
    pytest.param(b"plain text saved as an Office file", {}, id="not-a-zip"),
    pytest.param(docx_bytes(), {"pptx": "not a PowerPoint presentation: its main part is .*wordprocessingml"},
                 id="a-word-document"),
])
def test_broken_workbooks_and_decks_are_load_errors(tmp_path: Path, data: bytes, said: dict[str, str],
                                                    kind: str) -> None:
    with pytest.raises(LoadError, match=said.get(kind, f"corrupt {kind.upper()}")):
        load(tmp_path, f"broken.{kind}", data)


def test_xlsx_text_past_the_allowance_is_refused(tmp_path: Path) -> None:
    def build(workbook: Workbook) -> None:
        for row in range(2000):
            workbook.active.append([f"row {row}", "x" * 100])

    path = tmp_path / "big.xlsx"
    loader = loader_for(path)
    assert loader is not None
    with pytest.raises(LoadError, match="more than 100,000 characters"):
        loader.load(path, workbook_bytes(build), Limits(max_chars=100_000))


# --- pptx -------------------------------------------------------------------------------------------------------

def test_pptx_slides_are_pages_in_their_reading_order_with_tables_groups_and_notes(tmp_path: Path) -> None:
    document = load(tmp_path, "results.pptx", deck_bytes())
    assert document.file_type == "pptx" and document.title == "Quarterly results" and document.warnings == []
    assert [document.text[page.start:page.end] for page in document.pages] == [
        "Quarterly results\n\nRevenue grew 12%\nCosts fell in the 华东 region\n\nDraft for the board\n\n"
        "Notes: Mention the new warehouse in Ningbo.",
        "Sales by region\n\nRegion | Sales\nNorth | 1,200\nSouth | 900\n\nSource: sales ledger",
        ""]
    assert load(tmp_path, "titled.pptx", deck_bytes(title="Board pack")).title == "Board pack"
    assert "Deep inside" in load(tmp_path, "groups.pptx", nested_groups_deck(100)).text  # 256 deep is refused


def test_an_office_part_whose_xml_is_broken_costs_only_what_it_holds(tmp_path: Path) -> None:
    # python-pptx and python-docx parse every part as they open a package: one broken slide lost the whole deck.
    whole = load(tmp_path, "whole.pptx", deck_bytes())
    broken = load(tmp_path, "broken.pptx", deck_rewritten({"ppt/slides/slide2.xml": lambda xml: xml.replace(
        b"</p:cSld>", b"</p:cSld><unclosed>", 1)}))
    assert [broken.text[page.start:page.end] for page in broken.pages] == [whole.text[:whole.pages[0].end], "", ""]
    assert broken.warnings[0].startswith("part ppt/slides/slide2.xml cannot be parsed (")
    assert broken.warnings[0].endswith("): read as empty") and broken.warnings[1].startswith("slide 2 cannot be read")
    with pytest.raises(LoadError, match="corrupt PPTX"):  # without its slide list, a deck has nothing to read
        load(tmp_path, "listless.pptx", deck_rewritten({"ppt/presentation.xml": lambda xml: xml + b"<unclosed>"}))
    whole_deck = deck_bytes()
    with zipfile.ZipFile(io.BytesIO(whole_deck)) as deck:  # the same, the main part named otherwise (_rels/.rels)
        presentation, listing = deck.read("ppt/presentation.xml"), deck.read("ppt/_rels/presentation.xml.rels")
    renamed = deck_rewritten(
        {"ppt/presentation.xml": lambda xml: None, "ppt/_rels/presentation.xml.rels": lambda xml: None,
         "_rels/.rels": lambda xml: xml.replace(b"ppt/presentation.xml", b"ppt/deck.xml"),
         "[Content_Types].xml": lambda xml: xml.replace(b"/ppt/presentation.xml", b"/ppt/deck.xml")},
        {"ppt/deck.xml": presentation + b"<unclosed>", "ppt/_rels/deck.xml.rels": listing}, deck=whole_deck)
    with pytest.raises(LoadError, match="corrupt PPTX"):
        load(tmp_path, "renamed.pptx", renamed)
    styled = load(tmp_path, "styled.docx", deck_rewritten({"word/styles.xml": lambda xml: xml[: len(xml) // 2]},
                                                          deck=docx_bytes(title="Returns")))
    assert styled.text == load(tmp_path, "plain.docx", docx_bytes(title="Returns")).text
    assert [warning[:34] for warning in styled.warnings] == ["part word/styles.xml cannot be par"]
    for broken_styles in (lambda xml: xml.replace(b"?>", b"?><!-- <w:style> --><!DOCTYPE w:styles>", 1)[:-200],
                          lambda xml: b"\n" + xml[:-200],  # (an XML declaration not first: no parser reads on)
                          lambda xml: xml[:-200].decode().replace("UTF-8", "UTF-16").encode("utf-16")):
        # the root found as the parser reads it, after a comment holding a tag, a DOCTYPE, or in UTF-16
        styled = load(tmp_path, "styled.docx", deck_rewritten({"word/styles.xml": broken_styles},
                                                              deck=docx_bytes(title="Returns")))
        assert styled.text == load(tmp_path, "plain.docx", docx_bytes(title="Returns")).text
    with pytest.raises(LoadError, match="corrupt DOCX"):
        load(tmp_path, "body.docx", deck_rewritten({"word/document.xml": lambda xml: xml[:-40]},
                                                   deck=docx_bytes()))
    # A picture the package names but lacks costs that picture only (python-docx lost the whole file).
    word = Document()
    word.add_paragraph("The chart:")
    word.add_picture(io.BytesIO(image_bytes(size=(60, 40))))
    word.add_paragraph("After it.")
    pictured = io.BytesIO()
    word.save(pictured)
    missing = load(tmp_path, "missing.docx", deck_rewritten({"word/media/image1.png": lambda png: None},
                                                            deck=pictured.getvalue()))
    assert missing.text == "The chart:\n\nAfter it." and missing.images == []
    assert missing.warnings == [
        "part word/_rels/document.xml.rels names 'media/image1.png', which the file does not hold: left out",
        "image in paragraph 2 skipped: linked, or missing: not in the file"]
    slashed = load(tmp_path, "slashed.docx", deck_rewritten({"word/_rels/document.xml.rels": lambda rels: rels.replace(
        b'Target="media/image1.png"', b'Target="//word/media/image1.png"')}, deck=pictured.getvalue()))
    assert slashed.text == "The chart:\n\nAfter it." and slashed.images == []  # resolved as python-docx does


def test_a_python_docx_without_the_walks_replaced_fails_at_import() -> None:
    """python-docx's package walks are replaced (theirs took 47 s on a hostile file); a version that renamed them
    must fail loudly, not be left silently with its own."""
    from ingestion.loaders.docx import _replace

    class Package:
        pass

    with pytest.raises(ImportError, match="no Package.iter_rels to replace: install python-docx 1.x"):
        _replace(Package, "iter_rels", lambda package: iter(()))


def test_pptx_slides_listed_twice_or_broken_cost_only_themselves(tmp_path: Path) -> None:
    whole = load(tmp_path, "whole.pptx", deck_bytes())
    first, second = (whole.text[page.start:page.end] for page in whole.pages[:2])
    # The first slide listed again (read again each time: 20 listings of 10,000 text boxes took 23 s) is read once,
    # and its second listing is an empty page, so that later slides keep their numbers.
    again = load(tmp_path, "again.pptx", deck_rewritten({"ppt/presentation.xml": lambda xml: xml.replace(
        b'<p:sldId id="257"', b'<p:sldId id="300" r:id="rId7"/><p:sldId id="257"', 1)}))
    assert [again.text[page.start:page.end] for page in again.pages] == [first, "", second, ""]
    # A slide without its layout is read (its shapes' positions are not looked up there); one that python-pptx
    # cannot list loses only itself, with the reason.
    unlaid = load(tmp_path, "unlaid.pptx", deck_rewritten({"ppt/slides/_rels/slide2.xml.rels": lambda xml: re.sub(
        rb"<Relationship [^>]*slideLayout[^>]*/>", b"", xml)}))
    assert unlaid.text == whole.text
    part = b'<p:contentPart xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" r:id="rId9"/>'
    broken = load(tmp_path, "broken.pptx", deck_rewritten({"ppt/slides/slide2.xml": lambda xml: xml.replace(
        b"</p:spTree>", part + b"</p:spTree>", 1)}))  # python-pptx cannot list a slide holding a content part
    assert [broken.text[page.start:page.end] for page in broken.pages] == [first, "", ""]
    assert len(broken.warnings) == 1 and broken.warnings[0].startswith("slide 2 cannot be read: ")
    # Broken notes (emptied by the repair) lost their slide's text; now only themselves.
    noteless = load(tmp_path, "noteless.pptx",
                    deck_rewritten({"ppt/notesSlides/notesSlide1.xml": lambda xml: xml[:-300]}))
    assert noteless.text == whole.text.replace("\n\nNotes: Mention the new warehouse in Ningbo.", "")
    assert noteless.warnings[1] == "slide 1: its notes cannot be read: required ``<p:cSld>`` child element not present"
    # Without core properties python-pptx makes up the title "PowerPoint Presentation": the first slide's is used.
    bare = load(tmp_path, "bare.pptx", deck_rewritten({"docProps/core.xml": lambda xml: None, "_rels/.rels": lambda
                                                        xml: re.sub(rb"<Relationship [^>]*core-properties[^>]*/>", b"",
                                                                    xml)}))
    assert bare.title == "Quarterly results"
    misplaced = load(tmp_path, "misplaced.pptx", deck_rewritten({"_rels/.rels": lambda xml: xml.replace(
        b'Target="docProps/core.xml"', b'Target="ppt/slides/slide1.xml"')}))  # not core properties: no title there
    assert misplaced.title == "Quarterly results"


def test_office_bomb_check_counts_elements_not_closing_tags() -> None:
    # 60,000 rows of 10 cells, an ordinary workbook, were refused as an XML bomb: each cell's closing tags counted.
    def package(xml: bytes) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("xl/worksheets/sheet1.xml", xml)
        return out.getvalue()

    refuse_bombs(package(b"<c><v>1</v></c>" * 900_000), 10**8, "XLSX")
    with pytest.raises(LoadError, match="more than 2,000,000 elements"):
        refuse_bombs(package(b"<c/>" * 2_000_001), 10**8, "XLSX")


def test_office_bomb_check_counts_the_parts_after_a_broken_one() -> None:
    """A part that could not be unpacked ended the whole count: a broken first part hid 20 million elements."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("first.xml"), b"<x>intact</x>")  # stored, so its bytes can be broken
        archive.writestr("content.xml", b"<c/>" * 2_000_001)
    with pytest.raises(LoadError, match="more than 2,000,000 elements"):
        refuse_bombs(out.getvalue().replace(b"intact", b"broken", 1), 10**8, "ODT")


# --- e-mail -----------------------------------------------------------------------------------------------------

def test_email_reads_its_headers_body_and_each_attachment_as_a_page(tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(image_bytes())
    report = pdf_bytes([["Quarterly revenue grew 12 percent."], ["Second page."]])
    notes = b"# Notes\n\nMarkdown note. ![plan](secret.png) ![inline](data:image/png;base64,AAAA)\n"
    forwarded = email_bytes("When do the lamps ship?", subject="Delivery question")
    message = email_bytes(html="<p>Hello <b>HTML</b> twin</p>", subject="Harbour lamps", forwarded=[forwarded],
                          attachments=[("report.pdf", report), ("photo.png", image_bytes(size=(80, 60))),
                                       ("notes.md", notes), ("archive.zip", b"PK\x03\x04"),
                                       ("broken.pdf", b"%PDF-1.4")])
    document = load(tmp_path, "mail.eml", message)
    assert document.title == "Harbour lamps"
    pages = [document.text[page.start:page.end] for page in document.pages]
    assert pages == [
        "From: Li Wei <li.wei@example.com>\nTo: sales@example.com\nDate: Fri, 16 Dec 2022 17:04:16 +0800\n"
        "Subject: Harbour lamps\n\nHello,\n\nThe harbour lamps ship on Monday.",  # the plain twin, not the HTML
        "Attachment: report.pdf\n\nQuarterly revenue grew 12 percent.\n\nSecond page.",
        "Attachment: photo.png",
        "Attachment: notes.md\n\nNotes\n\nMarkdown note. plan inline",
        "Attachment: archive.zip\n\n(not read)",
        "Attachment: broken.pdf\n\n(not read)",
        "From: Li Wei <li.wei@example.com>\nTo: sales@example.com\nDate: Fri, 16 Dec 2022 17:04:16 +0800\n"
        "Subject: Delivery question\n\nWhen do the lamps ship?"]
    [photo] = document.images
    assert (photo.name, photo.page, document.text[photo.start:photo.end]) == ("photo.png", 3, "Attachment: photo.png")
    assert document.warnings[0] == ("attachment notes.md: image secret.png skipped: names a file, and an attachment "
                                    "has no folder to read it from")
    assert document.warnings[2:] == [
        "attachment archive.zip skipped: application/zip is not a file type the knowledge base reads",
        "attachment broken.pdf skipped: corrupt PDF: Stream has ended unexpectedly"]


def test_email_in_chinese_decodes_encoded_words_raw_headers_and_declared_charsets(tmp_path: Path) -> None:
    encoded = email_bytes("货物周一发出。", subject="发货日期", attachments=[("报告.txt", "报告内容".encode())])
    document = load(tmp_path, "encoded.eml", encoded)
    assert b"=?utf-8?" in encoded and document.title == "发货日期"
    assert document.text.endswith("Subject: 发货日期\n\n货物周一发出。\n\nAttachment: 报告.txt\n\n报告内容")
    raw = ("Subject: 发货日期\nFrom: 李伟 <li@example.cn>\nContent-Type: text/plain; charset=gb2312\n\n"
           "货物周一发出。\n").encode("gbk")  # 8-bit headers, as some clients send them
    document = load(tmp_path, "raw.eml", raw)
    assert (document.title, document.text) == ("发货日期", "From: 李伟 <li@example.cn>\nSubject: 发货日期\n\n货物周一发出。")
    # Raw headers in the charset the text declares (EUC-KR was guessed as Chinese); an encoded word in "unknown-8bit".
    korean = ("Subject: 회의 일정\nContent-Type: text/plain; charset=euc-kr\n\n내일 회의는 10시입니다.\n").encode("euc-kr")
    assert load(tmp_path, "korean.eml", korean).title == "회의 일정"
    unknown = b"Subject: =?unknown-8bit?B?" + base64.b64encode("价格表".encode("gbk")) + b"?=\n\nbody\n"
    assert load(tmp_path, "unknown.eml", unknown).title == "价格表"


def test_email_without_a_plain_body_reads_its_html_and_refuses_what_is_not_a_message(tmp_path: Path) -> None:
    html_only = (b"Subject: Menu\nContent-Type: text/html; charset=utf-8\n\n<style>p{}</style><ul><li>Tea</li>"
                 b"<li>Coffee</li></ul>")
    assert load(tmp_path, "menu.eml", html_only).text == "Subject: Menu\n\nTea\nCoffee"
    with pytest.raises(LoadError, match="not an e-mail message"):
        load(tmp_path, "notes.eml", b"Just a note someone named .eml\n\nNo header lines at all.")


def test_email_keeps_the_message_when_a_part_is_odd(tmp_path: Path) -> None:
    """What mail clients really send: a forwarded message base64 encoded, parts without file names (read by their
    type), a truncated encoded word, an 8-bit part naming a charset Python cannot use, a bounce's report, a
    scan with no text, a byte-order mark. Each once lost the whole message or read as garbage."""
    inner = base64.b64encode(b"From: a@example.com\nSubject: Inner\n\nInner body text.\n")
    raw = (b"\xef\xbb\xbfSubject: =?utf-8?b?A?= outer\nContent-Type: multipart/mixed; boundary=z\n\n"
           b"--z\nContent-Type: text/plain\n\nOuter body.\n"
           b"--z\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n" + inner + b"\n"
           b"--z\nContent-Type: text/plain; charset=idna\nContent-Disposition: attachment\n"
           b"Content-Transfer-Encoding: 8bit\n\nAttached notes, caf\xc3\xa9.\n"
           b"--z\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n"
           + base64.b64encode(pdf_bytes([[]])) + b"\n"
           b"--z\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\n"
           b"Final-Recipient: rfc822; lost@example.com\nStatus: 5.1.1\n--z--\n")
    document = load(tmp_path, "odd.eml", raw)
    assert document.title == "=?utf-8?b?A?= outer"
    assert [document.text[page.start:page.end] for page in document.pages] == [
        "Subject: =?utf-8?b?A?= outer\n\nOuter body.\n\nReporting-MTA: dns; mx.example.com\n"
        "Final-Recipient: rfc822; lost@example.com\nStatus: 5.1.1",
        "From: a@example.com\nSubject: Inner\n\nInner body text.",
        "Attachment: part 3.txt\n\nAttached notes, café.",
        "Attachment: part 4.pdf"]  # a page without text: no blank lines after its heading
    assert document.warnings == ["attachment part 4.pdf: 1 of 1 pages have no text layer (scanned?)"]
    # A charset naming a NUL (RFC 2231 encodes it as "%00") is unknown, not an error that lost the whole message.
    nul = (b"Subject: caf\xe9 =?x\x00y?Q?abc?= s\nContent-Type: text/plain; charset*=utf-8''utf%008\n\n"
           b"Body, caf\xc3\xa9.\n")
    assert load(tmp_path, "nul.eml", nul).text == "Subject: café abc s\n\nBody, café."


def test_email_limits_hold_for_the_message_and_what_is_attached_to_it(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Each message attached base64 encoded was parsed with the whole allowance of lines again (six of 4 million
    lines took 47 s), and 2,000 small DOCX attachments took 72 s."""
    monkeypatch.setattr(eml, "_MAX_LINES", 70)
    monkeypatch.setattr(eml, "_MAX_READ_ATTACHMENTS", 2)
    raw = b"Subject: outer\nContent-Type: multipart/mixed; boundary=z\n\n--z\n\nBody.\n"
    for index in range(2):
        inner = f"Subject: F{index}\n\n" + "".join(f"line {number}\n" for number in range(25))
        raw += (b"--z\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
                + base64.encodebytes(inner.encode()))
    document = load(tmp_path, "lines.eml", raw + b"--z--\n")
    assert "Subject: F0" in document.text and "Subject: F1" not in document.text
    assert document.warnings == [
        "a forwarded message skipped: MIME bomb? more than 70 lines, with those of the messages attached"]
    notes = [(f"n{number}.txt", b"Note.") for number in range(3)]
    document = load(tmp_path, "notes.eml", email_bytes("Body.", attachments=notes))
    assert document.text.count("Attachment: n") == 3 and document.text.count("Note.") == 2
    assert document.warnings == ["attachment n2.txt skipped: past the first 2 attachments a message's loaders read"]
    blank = load(tmp_path, "blank.eml", b"To: x@example.com\nTo: \x01\nSubject: s\n\nbody")
    assert blank.text == "To: x@example.com\nSubject: s\n\nbody"


def test_email_warnings_of_attachments_are_capped(tmp_path: Path) -> None:
    notes = "".join(f"![figure](f{number}.png) " for number in range(30)).encode()
    message = email_bytes(attachments=[(f"n{number}.md", notes) for number in range(5)])
    document = load(tmp_path, "warned.eml", message)
    assert len(document.warnings) == 21 and document.warnings[-1] == "85 more warning(s) of attachments"


@pytest.mark.parametrize("bomb, reason", [
    (mime_nested(5000), "parts nested more than 20 levels deep"),
    (mime_nested(900, "boundary*=''b{}"), "parts nested more than 20 levels deep"),  # RFC 2231: a regex missed it
    (b"Content-Type: message/x\n\n" * 5000 + b"deep", "parts nested more than 20 levels deep"),
    (b"Subject: parts\nContent-Type: multipart/mixed; boundary=<z>\n\n" + b"--z\r\rx\r" * 10_001, "10,000 parts"),
    (b"Subject: lines\n\n" + b"a\n" * 4_000_001, "more than 4,000,000 lines"),
    (b"To: a@example.com\n" * 10_001 + b"\nbody", "a part of more than 10,000 header lines"),
])
def test_email_refuses_mime_bombs_as_the_parser_makes_their_parts(tmp_path: Path, bomb: bytes, reason: str) -> None:
    """Python's parser spent 10 s on 5,000 nested multiparts and then overflowed its stack; 300,000 parts took
    42 s; 25 million short lines held 2.2 GB: each is refused as soon as the parser (or a count of lines) meets
    it, however its boundaries are declared."""
    with pytest.raises(LoadError, match=reason):
        load(tmp_path, "bomb.eml", bomb)


def test_email_reads_what_a_bomb_check_must_not_refuse_and_bounds_what_it_reads(tmp_path: Path) -> None:
    """Twenty levels of multiparts, a thread quoting MIME headers, 101 forwarded messages side by side, a header
    of 300,000 parameters (Python's parser is quadratic in them: 99 s); attachments past ``max_pages`` counted."""
    assert load(tmp_path, "twenty.eml", mime_nested(20)).text == "Subject: deep\n\ndeep text"
    quoting = email_bytes('Our mails say: Content-Type: multipart/mixed; boundary="b1"\n' * 30)
    assert load(tmp_path, "quoting.eml", quoting).text.count('boundary="b1"') == 30
    forwards = email_bytes(subject="Forwards", forwarded=[email_bytes(f"Mail {number}.") for number in range(101)])
    assert len(load(tmp_path, "forwards.eml", forwards).pages) == 102
    parameters = b'Subject: p\nContent-Type: text/plain; x="' + b";" * 300_000 + b'"\n\nbody\n'
    assert load(tmp_path, "parameters.eml", parameters).text == "Subject: p\n\nbody"
    recipients = ", ".join(f"Person {number} <p{number}@example.com>" for number in range(200))
    assert load(tmp_path, "team.eml", f"To: {recipients}\nSubject: All\n\nHello.\n".encode()).text.startswith(
        f"To: {recipients}\n")  # 2,000 characters, as other headers, kept 56 of them
    many = email_bytes(attachments=[(f"note{number}.txt", f"note {number}".encode()) for number in range(30)])
    path = tmp_path / "many.eml"
    path.write_bytes(many)
    document = loader_for(path).load(path, many, Limits(max_pages=10))
    assert len(document.pages) == 10 and document.text.endswith("Attachment: note8.txt\n\nnote 8")
    assert document.warnings == ["21 attachment(s) or forwarded message(s) past the first 10 pages not read "
                                 "(max_pages)"]
    # Mailboxes attached one inside the other: each read by its own loader, which began again at depth 0 (150 of
    # them took 18 s and 1.7 GB from 5 MB); the depth is the file's now.
    inner = email_bytes("Level 30.")
    for level in range(29, -1, -1):
        inner = email_bytes(f"Level {level}.", attachments=[(f"box{level}.mbox", mbox_bytes([inner]))])
    nested = load(tmp_path, "nested.eml", inner)
    assert "Level 9." in nested.text and "Level 10." not in nested.text
    assert nested.warnings[0].endswith("message 1 skipped: MIME bomb? parts nested more than 20 levels deep")


def test_outlook_text_in_utf7_that_spells_a_lone_surrogate_costs_only_that_character(tmp_path: Path) -> None:
    """Code page 65000 is UTF-7, which can spell half a surrogate pair ("+2AA-"): written out, such a subject,
    body or attachment name failed the whole message ("'utf-8' codec can't encode"), and one in winmail.dat the
    e-mail holding it."""
    from email.message import EmailMessage
    from email.policy import SMTP

    utf7 = struct.pack("<IIQ", 0x3FDE0003, 6, 65000) + struct.pack("<IIQ", 0x3FFD0003, 6, 65000)
    streams = msg_streams("Notes +2AA-", body="The fine body +2AA- of a message read in UTF-7 all the same.",
                          unicode=False, codepage=1252, attachments=[("n.txt", b"Kept.")])
    streams["__properties_version1.0"] = streams["__properties_version1.0"].replace(
        struct.pack("<IIQ", 0x3FDE0003, 6, 1252) + struct.pack("<IIQ", 0x3FFD0003, 6, 1252), utf7)
    del streams["__attach_version1.0_#00000000/__substg1.0_3707001F"]
    streams["__attach_version1.0_#00000000/__substg1.0_3707001E"] = b"name+2AA-.txt"
    document = load(tmp_path, "utf7.msg", compound_file(streams))
    assert document.title == "Notes \ufffd" and "The fine body \ufffd of a message" in document.text
    assert document.text.endswith("Attachment: name\ufffd.txt\n\nKept.") and not document.warnings
    wrapped = tnef_bytes([("a.txt", b"Kept too.")], body="The wrapped body +2AA- of a message read in UTF-7 too.")
    message = EmailMessage()
    message["Subject"] = "Wrapped"
    message.add_attachment(wrapped.replace(struct.pack("<II", 1252, 0), struct.pack("<II", 65000, 0), 1),
                           "application", "ms-tnef", filename="winmail.dat")
    assert load(tmp_path, "utf7.eml", message.as_bytes(policy=SMTP)).text == (
        "Subject: Wrapped\n\nThe wrapped body \ufffd of a message read in UTF-7 too.\n\nAttachment: a.txt\n\nKept too.")


def test_email_reads_the_files_and_body_outlook_wraps_in_winmail_dat(tmp_path: Path) -> None:
    """Rich-text mail Outlook sends: its files inside winmail.dat (TNEF), and the body there too; read as
    attachments, the body only where the message has no text of its own. Were: "application/ms-tnef is not a file
    type the knowledge base reads"."""
    from email.message import EmailMessage
    from email.policy import SMTP

    wrapped = tnef_bytes([("report.txt", b"Quarterly revenue rose 8 percent."),
                          ("报价单.txt", "单价 34.5 元".encode("gbk"))], body="Please see the report.",
                         rtf=rb"{\rtf1\ansi The report is attached.\par}", codepage=936)
    message = EmailMessage()
    message["Subject"] = "Report"
    message.set_content("Please see the report.\n")
    message.add_attachment(wrapped, "application", "ms-tnef", filename="winmail.dat")
    document = load(tmp_path, "report.eml", message.as_bytes(policy=SMTP))
    assert [document.text[page.start:page.end] for page in document.pages] == [
        "Subject: Report\n\nPlease see the report.", "Attachment: report.txt\n\nQuarterly revenue rose 8 percent.",
        "Attachment: 报价单.txt\n\n单价 34.5 元"] and not document.warnings
    named = EmailMessage()
    named["Subject"] = "Paths"
    named.set_content("Files.\n")
    named.add_attachment(tnef_bytes([("C:\\Users\\li\\Desktop\\report.txt", b"Kept."), ("line\nbreak.txt", b"Too.")]),
                         "application", "ms-tnef", filename="winmail.dat")
    assert load(tmp_path, "named.eml", named.as_bytes(policy=SMTP)).text.endswith(
        "Attachment: report.txt\n\nKept.\n\nAttachment: line break.txt\n\nToo.")  # a label, never a path
    only = EmailMessage()
    only["Subject"] = "Shipment"
    only.add_attachment(tnef_bytes([], rtf=rb"{\rtf1\ansi The shipment leaves Monday.\par}"), "application",
                        "ms-tnef", filename="winmail.dat")
    assert load(tmp_path, "only.eml", only.as_bytes(policy=SMTP)).text == (
        "Subject: Shipment\n\nThe shipment leaves Monday.")
    # Counts and lengths it declares are checked against its bytes: 4 billion properties, a file cut short.
    hostile = tnef_bytes([("a.txt", b"Kept.")]) + bytes([1]) + struct.pack("<HHI", 0x9003, 6, 8) + struct.pack(
        "<II", 2**32 - 1, 0x0003) + b"\0\0" + bytes([2]) + struct.pack("<HHI", 0x800F, 6, 10**6) + b"short"
    broken = EmailMessage()
    broken["Subject"] = "Broken"
    broken.set_content("Body.\n")
    broken.add_attachment(hostile, "application", "ms-tnef", filename="winmail.dat")
    broken.add_attachment(b"not TNEF", "application", "ms-tnef", filename="other.dat")
    document = load(tmp_path, "broken.eml", broken.as_bytes(policy=SMTP))
    assert document.text.endswith("Attachment: a.txt\n\nKept.") and document.warnings == [
        "winmail.dat: it is cut short: what follows the cut is lost",
        "winmail.dat skipped: not TNEF: it does not begin with TNEF's signature"]


def test_compressed_rtf_copies_each_reference_as_byte_by_byte_copying_would() -> None:
    """A reference apart from where it is written is copied as one slice (3.7 times faster over 16 MB); one that
    overlaps it (a run) or wraps round the window must still read what it has just written, byte by byte."""
    from ingestion.loaders.compressed_rtf import _PRELUDE, decompress

    def byte_by_byte(body: bytes, limit: int) -> bytes:
        window, write, at, out = bytearray(4096), len(_PRELUDE), 0, bytearray()
        window[:write] = _PRELUDE
        while at < len(body) and len(out) < limit:
            control, at = body[at], at + 1
            for bit in range(8):
                if not control >> bit & 1:
                    if at >= len(body):
                        break
                    window[write], write, at = body[at], (write + 1) & 0xFFF, at + 1
                    out.append(body[at - 1])
                    continue
                if at + 2 > len(body):
                    break
                reference, at = body[at] << 8 | body[at + 1], at + 2
                if reference >> 4 == write:
                    return bytes(out[:limit])
                for index in range((reference & 0xF) + 2):
                    window[write] = window[((reference >> 4) + index) & 0xFFF]
                    out.append(window[write])
                    write = (write + 1) & 0xFFF
        return bytes(out[:limit])

    generator = random.Random(5)
    for _ in range(1000):
        body = bytes(generator.getrandbits(8) for _ in range(generator.randint(0, 400)))
        limit = generator.randint(0, 4000)
        data = struct.pack("<IIII", len(body) + 12, limit, 0x75465A4C, 0) + body
        assert decompress(data) == byte_by_byte(body, limit)


def test_outlook_message_is_read_as_the_email_it_holds(tmp_path: Path) -> None:
    terms = msg_streams("Re: terms", body="Payment within 45 days, as agreed.", level=1)
    streams = msg_streams("港口灯具", body="你好，\n\n灯具周一发货。", attached=[terms], attachments=[
        ("terms.pdf", pdf_bytes([["Payment within 45 days."]])), ("报价.txt", "单价 34.5 元".encode("gbk"))])
    document = load(tmp_path, "lamps.msg", compound_file(streams))
    assert [document.text[page.start:page.end] for page in document.pages] == [
        "From: Li Wei <li.wei@example.com>\nTo: Sales\nDate: Fri, 16 Dec 2022 09:04:16 +0000\nSubject: 港口灯具\n\n你好，\n\n"
        "灯具周一发货。", "Attachment: terms.pdf\n\nPayment within 45 days.", "Attachment: 报价.txt\n\n单价 34.5 元",
        "From: Li Wei <li.wei@example.com>\nTo: Sales\nDate: Fri, 16 Dec 2022 09:04:16 +0000\nSubject: Re: terms\n\n"
        "Payment within 45 days, as agreed."]
    assert (document.file_type, document.title, document.warnings) == ("msg", "港口灯具", [])
    # Strings in the message's code page (GBK), an Exchange sender address, a body in HTML only.
    older = msg_streams("报价", body=None, html="<p>单价 <b>34.5</b> 元</p>".encode("gbk"), unicode=False,
                        sender=("王芳", "/O=EXCHANGELABS/OU=EXCHANGE ADMINISTRATIVE GROUP/CN=RECIPIENTS/CN=WANG"))
    assert load(tmp_path, "older.msg", compound_file(older)).text.endswith(
        "From: 王芳\nTo: Sales\nDate: Fri, 16 Dec 2022 09:04:16 +0000\nSubject: 报价\n\n单价 34.5 元")
    polish = msg_streams("Oferta", body=None, html="<p>Zażółć gęślą jaźń</p>".encode("iso8859_2"), codepage=28592)
    assert load(tmp_path, "polish.msg", compound_file(polish)).text.endswith("Zażółć gęślą jaźń")
    embedded = msg_streams("Report", attachments=[("notes.txt", b"Kept.")])
    embedded["__attach_version1.0_#00000001/__substg1.0_3707001F"] = "report.doc".encode("utf-16-le")
    embedded["__attach_version1.0_#00000001/__substg1.0_3701000D/WordDocument"] = b"an embedded Word object"
    object_document = load(tmp_path, "object.msg", compound_file(embedded))
    assert object_document.text.endswith("Attachment: notes.txt\n\nKept.") and object_document.warnings == [
        "attachment report.doc skipped: an embedded object (OLE), not a file or a message"]
    rich = msg_streams("RTF", body=None)  # rich-text mail: the body only in compressed RTF
    rich["__substg1.0_10090102"] = compressed_rtf(rb"{\rtf1\ansi\ansicpg936 Rich \b text\b0 \'c4\'e3\'ba\'c3\par}")
    assert load(tmp_path, "rich.msg", compound_file(rich)).text.endswith("Subject: RTF\n\nRich text你好")
    body = b"\x21\x00\x04 Hi}\x0d\x90"  # "{\rtf1" taken from the window's prelude (offset 0, 6 bytes), " Hi}", end
    rich["__substg1.0_10090102"] = struct.pack("<IIII", len(body) + 12, 10, 0x75465A4C, 0) + body
    assert load(tmp_path, "referenced.msg", compound_file(rich)).text.endswith("Subject: RTF\n\nHi")
    rich["__substg1.0_10090102"] = b"LZFu but not"
    assert load(tmp_path, "broken.msg", compound_file(rich)).warnings == [
        "the body, in compressed RTF, cannot be read: a compressed RTF body of no header"]


def test_outlook_message_names_its_recipients_with_their_addresses(tmp_path: Path) -> None:
    """The display lines give names only ("Sales; Chen Jing"); the recipient table gives each one's address (an
    Exchange one left out); a blind copy is not shown."""
    streams = msg_streams("Lamps", to="Sales; Chen Jing", recipients=[
        (1, "Sales", "sales@example.com"), (1, "陈静", "chen.jing@example.cn"), (2, "Wang Fang", "/O=EXCHANGELABS/CN=W"),
        (0x10000002, "Zhao Lei", "zhao@example.com"), (3, "Hidden", "bcc@example.com"), (2, "Doe, John", "jd@x.org")])
    text = load(tmp_path, "recipients.msg", compound_file(streams)).text
    assert text.startswith("From: Li Wei <li.wei@example.com>\nTo: Sales <sales@example.com>, 陈静 "
                           '<chen.jing@example.cn>\nCc: Wang Fang, Zhao Lei <zhao@example.com>, "Doe, John" <jd@x.org>'
                           "\nDate:")
    assert "bcc@example.com" not in text


def test_outlook_message_nested_deep_or_not_a_message_costs_only_what_it_must(tmp_path: Path) -> None:
    nested = msg_streams("level 25", body="deepest", level=1)
    for level in range(24, -1, -1):
        nested = msg_streams(f"level {level}", body=f"text {level}", attached=[nested], level=1 if level else 0)
    document = load(tmp_path, "deep.msg", compound_file(nested))
    assert "text 9" in document.text and "text 10" not in document.text  # the e-mail reading's 20 MIME levels
    assert document.warnings[0] == "an attached message nested more than 20 deep is not read"
    with pytest.raises(LoadError, match="^not an Outlook message: an OLE file without MAPI properties$"):
        load(tmp_path, "word.msg", doc_bytes([("A Word file renamed.\r", True)]))
    with pytest.raises(LoadError, match="^corrupt MSG: "):
        load(tmp_path, "text.msg", b"From: a@example.com\nSubject: not Outlook\n\nbody\n")


def test_outlook_message_whose_attachments_share_one_stream_is_refused(tmp_path: Path) -> None:
    """olefile does not check that streams keep to their own sectors: 300 attachments pointing at one of 5 MB were
    read 300 times (6.7 MB of file, 2.2 GB)."""
    streams = msg_streams("Shared", attachments=[("big.bin", bytes(5 * 2**20))] + [
        (f"copy{number}.bin", bytes(4096)) for number in range(300)])
    data = bytearray(compound_file(streams))
    name = "__substg1.0_37010102".encode("utf-16-le")
    entries = [at for at in range(0, len(data), 128) if data.startswith(name, at)]  # its directory entries
    big = next(at for at in entries if struct.unpack_from("<Q", data, at + 120)[0] == 5 * 2**20)
    for at in entries:
        data[at + 116:at + 128] = data[big + 116:big + 128]
    with pytest.raises(LoadError, match=r"^MSG bomb\? its streams hold more bytes than the file"):
        load(tmp_path, "shared.msg", bytes(data))


def test_mailbox_reads_each_message_as_an_email_and_keeps_the_rest_when_one_fails(tmp_path: Path) -> None:
    terms = pdf_bytes([["Payment within 45 days."]])
    quoting = "From the harbour, lamps ship on Friday.\n>From here on, quoted.\n"
    messages = [email_bytes(subject="Lamps"), b"no header line here\n",
                email_bytes(quoting, subject="Terms", attachments=[("terms.pdf", terms)])]
    document = load(tmp_path, "Inbox.mbox", mbox_bytes(messages))
    assert document.file_type == "mbox" and document.title is None
    assert [document.text[page.start:page.end].split("\n")[-1] for page in document.pages] == [
        "The harbour lamps ship on Monday.", ">From here on, quoted.", "Payment within 45 days."]
    assert "Subject: Terms\n\nFrom the harbour, lamps ship on Friday.\n>From here" in document.text
    unquoted = (b"From - Fri Dec 16 17:04:16 2022\nSubject: Board\n\nHello team,\n\nFrom the board meeting we "
                b"learned two things.\n")  # a body line a writer did not quote: no date, so no message of its own
    assert load(tmp_path, "plain.mbox", unquoted).text.endswith("Hello team,\n\nFrom the board meeting we learned two "
                                                                 "things.")
    assert document.warnings == ["message 2 skipped: no header lines"]
    with pytest.raises(LoadError, match='^not a mailbox: it does not begin with a "From <sender> <date>" line$'):
        load(tmp_path, "renamed.mbox", email_bytes())
    # Mail programs' mailboxes without a suffix: Apple Mail's export (Inbox.mbox/mbox), Thunderbird's folders; not
    # an attachment so named, which is read by its declared type.
    for name in ("mbox", "Inbox", "Sent"):
        path = tmp_path / name
        path.write_bytes(mbox_bytes(messages))
        assert file_loader(path).load(path, path.read_bytes()).pages == document.pages
    assert file_loader("Projects") is None and loader_for("Inbox") is None  # a folder the user named; a bare name
    listed = email_bytes(attachments=[("Templates", b"Milk, eggs, bread.")]).replace(b"application/octet-stream",
                                                                                     b"text/plain")
    assert load(tmp_path, "list.eml", listed).text.endswith("Attachment: Templates\n\nMilk, eggs, bread.")
    path = tmp_path / "long.mbox"
    path.write_bytes(mbox_bytes([email_bytes(f"Mail {number}.") for number in range(5)]))
    short = loader_for(path).load(path, path.read_bytes(), Limits(max_pages=2))
    assert len(short.pages) == 2 and short.warnings == ["3 message(s) past the first 2 pages not read (max_pages)"]
    # Past the text allowance a mailbox keeps the messages before (a mailbox of 1,500 mails was refused whole).
    shortened = loader_for(path).load(path, path.read_bytes(), Limits(max_chars=330))
    assert len(shortened.pages) == 2 and shortened.text.endswith("Mail 1.") and shortened.warnings == [
        "3 message(s) from message 3 on not read: they would take the text past 330 characters (max_document_chars)"]
    # An attachment not read says so in its page, and that counts too: else the mailbox was refused whole at the end.
    invites = tmp_path / "invites.mbox"
    invites.write_bytes(mbox_bytes([email_bytes(f"Mail {number}.", attachments=[("invite.ics", b"BEGIN:VCALENDAR")])
                                    for number in range(20)]))
    for max_chars in range(1000, 1400, 13):
        cut = loader_for(invites).load(invites, invites.read_bytes(), Limits(max_chars=max_chars))
        assert len(cut.text) <= max_chars and "max_document_chars" in cut.warnings[-1]
    # Past half its time to be read (a mailbox over its 60 s was failed whole), the rest is left.
    hurried = loader_for(path).load(path, path.read_bytes(), Limits(seconds=0))
    assert len(hurried.pages) == 1 and hurried.warnings == [
        "4 message(s) from message 2 on not read: reading them would take the mailbox past its 0 s (file_timeout)"]


def test_a_mailbox_keeps_its_other_messages_when_one_fails_unexpectedly(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A message no reading foresaw (a charset holding a NUL raised ValueError) lost the whole mailbox."""
    read = eml._Reading.message

    def failing(reading: eml._Reading, message: Message, depth: int) -> None:
        read(reading, message, depth)
        if message["Subject"] == "Broken":
            raise ValueError("a failure no reading foresaw")
    monkeypatch.setattr(eml._Reading, "message", failing)
    document = load(tmp_path, "Inbox.mbox", mbox_bytes([email_bytes("First.", subject="One"),
                                                        email_bytes("Half read.", subject="Broken"),
                                                        email_bytes("Third.", subject="Three")]))
    assert [document.text[page.start:page.end].split("\n")[-3:] for page in document.pages] == [
        ["Subject: One", "", "First."], ["Subject: Three", "", "Third."]]
    assert document.warnings == ["message 2 skipped: unexpected ValueError: a failure no reading foresaw"]


def test_a_mailbox_s_messages_each_have_the_parts_a_message_may(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The parts a message may hold were the whole mailbox's: 1,900 mails of 6 parts lost their last 234 as "MIME
    bombs"."""
    monkeypatch.setattr(eml, "_MAX_PARTS", 4)
    path = tmp_path / "Inbox.mbox"
    path.write_bytes(mbox_bytes([email_bytes(f"Mail {number}.", html=f"<p>Mail {number}.</p>") for number in range(5)]))
    document = loader_for(path).load(path, path.read_bytes(), Limits())
    assert len(document.pages) == 5 and not document.warnings


def test_email_reads_the_files_placed_in_a_version_of_its_body_it_does_not_read(tmp_path: Path) -> None:
    """Apple Mail sends a file placed in a message, and a pasted picture, only in the HTML version of its body; a
    blank plain version gives way to the HTML one; an attachment named without a suffix is read by its type."""
    from email.message import EmailMessage
    from email.policy import SMTP

    message = EmailMessage()
    message["Subject"] = "Contract"
    message.set_content("See the contract.\n")
    rich = EmailMessage()
    rich.set_content("<p>See the contract.</p>", subtype="html")
    rich.add_attachment(b"Delivery within 30 days.", "text", "plain", filename="contract.txt")
    rich.add_attachment(image_bytes(), "image", "png", filename="screenshot.png")
    message.make_alternative()
    message.attach(rich)
    document = load(tmp_path, "apple.eml", message.as_bytes(policy=SMTP))
    assert document.text.endswith("See the contract.\n\nAttachment: contract.txt\n\nDelivery within 30 days."
                                  "\n\nAttachment: screenshot.png") and len(document.images) == 1
    invitation = EmailMessage()
    invitation["Subject"] = "Meeting"
    invitation.set_content("Meeting at 10.\n")
    invitation.add_alternative("<p>Meeting at 10.</p>", subtype="html")
    invitation.add_alternative("BEGIN:VCALENDAR\nEND:VCALENDAR\n", subtype="calendar")
    invited = load(tmp_path, "invite.eml", invitation.as_bytes(policy=SMTP))  # its calendar: the body again
    assert (invited.text, invited.warnings) == ("Subject: Meeting\n\nMeeting at 10.", [])
    blank = email_bytes("", html="<p>Quarterly revenue rose.</p>", attachments=[("README", b"Read me first.")])
    assert load(tmp_path, "blank.eml", blank.replace(b"application/octet-stream", b"text/plain")).text.endswith(
        "Quarterly revenue rose.\n\nAttachment: README\n\nRead me first.")


def test_email_pictures_stand_where_its_body_shows_them_not_on_pages_of_their_own(tmp_path: Path) -> None:
    """A picture an HTML body shows ("cid:", or a data: URI) spans its block there; one Outlook's plain text marks
    ("[cid:...]") spans the paragraph the marker ends, the marker left out; a picture beside the body that it does
    not show is still an attachment, and a file the body names is never read."""
    from email.message import EmailMessage
    from email.policy import SMTP

    (tmp_path / "secret.png").write_bytes(image_bytes(size=(90, 90)))
    chart, logo, stamp = image_bytes(size=(80, 60)), image_bytes(size=(70, 50)), image_bytes(size=(60, 40))
    html = EmailMessage()
    html["Subject"] = "Torque"
    html.set_content(f'<p>Intro.</p><p>The torque chart: <img src="cid:chart%40x"></p><p><img src="../secret.png">'
                     f'<img src="data:image/png;base64,{base64.b64encode(stamp).decode()}"> Stamped.</p>'
                     '<img src="https://tracker.example/pixel.gif">',
                     subtype="html")
    html.add_related(chart, "image", "png", cid="<chart@x>", filename="chart.png")
    html.add_related(logo, "image", "png", cid="<logo@x>", filename="logo.png")
    document = load(tmp_path, "html.eml", html.as_bytes(policy=SMTP))
    assert document.text == "Subject: Torque\n\nIntro.\n\nThe torque chart:\n\nStamped.\n\nAttachment: logo.png"
    spans = {image.name: (image.page, document.text[image.start : image.end]) for image in document.images}
    assert spans == {"chart.png": (1, "The torque chart:"), "image 3 (data URI)": (1, "Stamped."),
                     "logo.png": (2, "Attachment: logo.png")}
    assert document.warnings == ["image ../secret.png skipped: names a file, and an e-mail has no folder to read it "
                                 "from"]

    outlook = EmailMessage()
    outlook["Subject"] = "Error"
    outlook.set_content("Hello,\n\nThe error we get:\n[cid:image001.png@01DA2B3C.4D5E6F70]\n\nThanks\n")
    outlook.add_alternative('<p>The error we get:</p><img src="cid:image001.png@01DA2B3C.4D5E6F70"><p>Thanks</p>',
                            subtype="html")
    outlook.get_payload()[1].add_related(chart, "image", "png", cid="<image001.png@01DA2B3C.4D5E6F70>",
                                         filename="image001.png")
    document = load(tmp_path, "outlook.eml", outlook.as_bytes(policy=SMTP))
    assert document.text == "Subject: Error\n\nHello,\n\nThe error we get:\n\nThanks"  # the plain text, unmarked
    [picture] = document.images
    assert (picture.name, document.text[picture.start : picture.end]) == ("image001.png", "The error we get:")
    assert document.warnings == []
    gmail = EmailMessage()  # Gmail marks a picture by its name, and names every pasted one "image.png"
    gmail["Subject"] = "Screens"
    gmail.set_content("First:\n[image: image.png]\nSecond, with [image: image.png] in a line.\n\n"
                      "[image: Our logo]\n[image: image.png]\n")
    gmail.add_alternative('<p>First:</p><img src="cid:ii_1"><p>Second, with <img src="cid:ii_2"> in a line.</p>'
                          '<img src="cid:ii_3" alt="Our logo">', subtype="html")
    for number, picture in enumerate((chart, stamp, logo), start=1):
        gmail.get_payload()[1].add_related(picture, "image", "png", cid=f"<ii_{number}>" if number != 2 else "<//[x>",
                                           filename="logo.png" if number == 3 else "image.png")
    document = load(tmp_path, "gmail.eml", gmail.as_bytes(policy=SMTP))
    assert document.text == ("Subject: Screens\n\nFirst:\n\nSecond, with in a line.\n\n[image: Our logo]\n"
                             "[image: image.png]\n\nAttachment: logo.png")  # a marker of no picture left is text
    spans = [(image.name, document.text[image.start : image.end]) for image in document.images]
    assert spans == [("image.png", "First:"), ("image.png", "Second, with in a line."),
                     ("logo.png", "Attachment: logo.png")]
    saved = msg_streams("Error", body="The error we get:\n[cid:image001.png@01DA2B3C.4D5E6F70]\n\nThanks",
                        attachments=[("image001.png", chart), ("logo.png", logo)],
                        content_ids={"image001.png": "image001.png@01DA2B3C.4D5E6F70"})
    document = load(tmp_path, "outlook.msg", compound_file(saved))  # as Outlook saves it
    assert document.text.endswith("Subject: Error\n\nThe error we get:\n\nThanks\n\nAttachment: logo.png")
    spans = {image.name: document.text[image.start : image.end] for image in document.images}
    assert spans == {"image001.png": "The error we get:", "logo.png": "Attachment: logo.png"}


def test_email_pictures_of_many_messages_web_pages_and_repeats_are_each_kept_once(tmp_path: Path) -> None:
    """Each message's shown picture is its own (a freed part's id named a later message's picture, which was lost);
    a web page saved as one file (MHTML, as Word saves a .doc) names its pictures by Content-Location; a logo shown
    on every message of a thread does not take the attached photo's place in the allowance; a marker before any
    text leaves no blank line."""
    from email.message import EmailMessage
    from email.policy import SMTP

    outer = EmailMessage()
    outer["Subject"] = "Batch"
    outer.set_content("See attached.\n")
    for number in range(150):
        inner = EmailMessage()
        inner.set_content(f'<p>Picture {number}: <img src="cid:p{number}@x"></p>', subtype="html")
        inner.add_related(image_bytes(size=(40 + number % 50, 40), color=(number, 100, 200)), "image", "png",
                          cid=f"<p{number}@x>", filename=f"p{number}.png")
        outer.add_attachment(inner.as_bytes(policy=SMTP), "application", "octet-stream", filename=f"m{number}.eml")
    batch = load(tmp_path, "batch.eml", outer.as_bytes(policy=SMTP))
    assert sorted(image.name for image in batch.images) == sorted(f"p{number}.png" for number in range(150))

    page = ('<p>Revenue chart:</p><p><img src="report_files/image001.png"></p>'
            '<p>Map <img src="report_files/image002.png"></p>')
    saved = EmailMessage()
    saved.set_content(page, subtype="html")
    saved.replace_header("Content-Type", 'text/html; charset="us-ascii"')
    saved.add_related(image_bytes(size=(80, 60)), "image", "png")
    saved.add_related(image_bytes(size=(70, 50)), "image", "png")
    root, first, second = saved.get_payload()
    root["Content-Location"] = "file:///C:/D/report.htm"
    first["Content-Location"] = "file:///C:/D/report_files/image001.png"
    second["Content-Location"] = "file:///C:/D/report_files/image002.png"
    report = load(tmp_path, "report.doc", saved.as_bytes(policy=SMTP))
    assert report.text == "Revenue chart:\n\nMap" and report.warnings == []
    assert [(image.name, report.text[image.start : image.end]) for image in report.images] == [
        ("report_files/image001.png", ""), ("report_files/image002.png", "Map")]

    thread = EmailMessage()
    thread.set_content('<p>Hi <img src="cid:logo@x"></p>' * 250, subtype="html")
    thread.add_related(image_bytes(size=(50, 50)), "image", "png", cid="<logo@x>", filename="logo.png")
    thread.add_attachment(image_bytes(size=(90, 70)), "image", "png", filename="site.png")
    assert sorted(image.name for image in load(tmp_path, "thread.eml", thread.as_bytes(policy=SMTP)).images) == [
        "logo.png", "site.png"]

    marked = EmailMessage()
    marked.set_content("[cid:shot@x]\n\nThe screen after saving.\n")
    marked.add_alternative('<img src="cid:shot@x"><p>The screen after saving.</p>', subtype="html")
    marked.get_payload()[1].add_related(image_bytes(), "image", "png", cid="<shot@x>", filename="shot.png")
    document = load(tmp_path, "marked.eml", marked.as_bytes(policy=SMTP))
    [shot] = document.images
    assert document.text == "The screen after saving."
    assert (shot.name, document.text[shot.start : shot.end]) == ("shot.png", "The screen after saving.")


# --- opendocument -----------------------------------------------------------------------------------------------

FLOAT = 'office:value-type="float"'


def cell(text: str, attributes: str = "") -> str:
    return f"<table:table-cell {attributes}><text:p>{text}</text:p></table:table-cell>"


def test_odt_reads_paragraphs_lists_tables_and_footnotes_not_deletions_or_comments(tmp_path: Path) -> None:
    body = ("<text:tracked-changes><text:changed-region><text:deletion><text:p>Deleted draft</text:p></text:deletion>"
            "</text:changed-region></text:tracked-changes>"
            '<text:h text:outline-level="1">Shipping <text:span>policy</text:span></text:h>'
            '<text:p>Orders ship<text:s text:c="3"/>in two days.<text:tab/>Tabbed<text:line-break/>next line'
            "<office:annotation><text:p>A reviewer comment</text:p></office:annotation><text:note>"
            "<text:note-citation>1</text:note-citation><text:note-body><text:p> Weekdays</text:p><text:p>only. "
            "</text:p></text:note-body></text:note></text:p><text:list><text:list-item><text:p>First item</text:p>"
            "<text:list><text:list-item>"
            "<text:p>Nested item</text:p></text:list-item></text:list></text:list-item></text:list>"
            "<table:table><table:table-columns><table:table-column/></table:table-columns><table:table-header-rows>"
            f"<table:table-row>{cell('Region')}{cell('Days')}</table:table-row></table:table-header-rows>"
            f"<table:table-row>{cell('North')}{cell('2', FLOAT)}</table:table-row></table:table>"
            '<text:p>See the map <draw:frame><draw:image xlink:href="Pictures/map.png"/><svg:title>Delivery map'
            '</svg:title></draw:frame> here.</text:p><text:p>Linked <draw:frame>'
            '<draw:image xlink:href="../secret.png"/></draw:frame></text:p>')
    document = load(tmp_path, "policy.odt", odf_bytes("odt", body, {"Pictures/map.png": image_bytes()}))
    assert document.title == "Shipping policy" and document.pages == []
    assert document.text == ("Shipping policy\nOrders ship   in two days.\tTabbed\nnext line Weekdays only.\n"
                             "First item\nNested item\nRegion | Days\nNorth | 2\nSee the map  here.\nLinked")
    [picture] = document.images
    assert (picture.name, picture.alt, document.text[picture.start:picture.end]) == (
        "Pictures/map.png", "Delivery map", "See the map  here.")
    assert document.warnings == ["image ../secret.png skipped: linked, not stored in the file"]
    assert load(tmp_path, "titled.odt", odf_bytes("odt", body, title="Policy 2024")).title == "Policy 2024"
    spaced = load(tmp_path, "spaced.odt", odf_bytes("odt", f'<text:p>a<text:s text:c="{10**21}"/>b</text:p>'))
    assert spaced.text == "a" + " " * 1000 + "b"  # (a run of 10^21 spaces refused the document as over budget)


def test_ods_reads_sheets_as_pages_with_column_headers_and_repeats(tmp_path: Path) -> None:
    """LibreOffice writes a run of equal cells once with a repeat count, and pads each sheet with a million empty
    repeated rows: values repeat as often as they are written, empty cells cost nothing."""
    sheets = ('<table:table table:name="Prices"><table:table-row>' + cell("Product") + cell("Price")
              + '<table:table-cell table:number-columns-repeated="16000"/></table:table-row>'
              + '<table:table-row table:number-rows-repeated="2">' + cell("Lamp")
              + cell("34.5", 'office:value-type="float" office:value="34.5"') + "</table:table-row>"
              + "<table:table-row>" + cell("Desk", 'table:number-columns-repeated="2"') + cell("1")
              + "</table:table-row>"
              + '<table:table-row table:number-rows-repeated="1048000"><table:table-cell '
              'table:number-columns-repeated="1024"/></table:table-row></table:table><table:table table:name="Empty"/>'
              '<table:table table:name="Notes"><table:table-row>' + cell("Just text")
              + "</table:table-row></table:table>"
              '<table:table table:name="Staff"><table:table-row>' + cell("Name") + cell("Email") + "</table:table-row>"
              '<table:table-row table:number-rows-repeated="2">' + cell("Li Na") + cell("li@example.cn")
              + "</table:table-row><table:table-row>" + cell("Wang Wei") + cell("wang@example.cn")
              + "</table:table-row></table:table>")
    document = load(tmp_path, "prices.ods", odf_bytes("ods", sheets, title="Price list"))
    assert document.title == "Price list"
    # A sheet of text only has its headers once its rows are read: the rows read before, repeats too, get them.
    assert [document.text[page.start:page.end] for page in document.pages] == [
        "Prices\nProduct | Price\nProduct: Lamp | Price: 34.5\nProduct: Lamp | Price: 34.5\n"
        "Product: Desk | Price: Desk | 1", "", "Notes\nJust text",
        "Staff\nName | Email\nName: Li Na | Email: li@example.cn\nName: Li Na | Email: li@example.cn\n"
        "Name: Wang Wei | Email: wang@example.cn"]


def test_odp_reads_slides_as_pages_with_notes_tables_and_pictures(tmp_path: Path) -> None:
    """A slide's frames, then its notes (not the notes page's date, header, footer or number); a slide-number
    field, which Impress writes as "<number>", is left out."""
    slides = ('<draw:page><draw:frame presentation:class="title"><draw:text-box><text:p>Results 2024</text:p>'
              "</draw:text-box></draw:frame><draw:frame><draw:text-box><text:list><text:list-item>"
              "<text:p>Revenue up 12%</text:p></text:list-item></text:list></draw:text-box></draw:frame>"
              "<presentation:notes><draw:frame><draw:text-box><text:p>Mention Ningbo.</text:p></draw:text-box>"
              '</draw:frame><draw:frame presentation:class="date-time"><draw:text-box><text:p>2026-12-06</text:p>'
              "</draw:text-box></draw:frame></presentation:notes><draw:frame><draw:text-box><text:p>Slide "
              "<text:page-number>&lt;number&gt;</text:page-number></text:p></draw:text-box></draw:frame>"
              '</draw:page><draw:page><draw:frame><draw:image xlink:href="Pictures/chart.png"><text:p>Chart caption'
              "</text:p></draw:image><svg:desc>Sales chart</svg:desc></draw:frame><draw:frame><table:table>"
              f"<table:table-row>{cell('A')}{cell('B')}</table:table-row></table:table></draw:frame></draw:page>")
    document = load(tmp_path, "results.odp", odf_bytes("odp", slides, {"Pictures/chart.png": image_bytes()}))
    assert [document.text[page.start:page.end] for page in document.pages] == [
        "Results 2024\nRevenue up 12%\nSlide\nNotes: Mention Ningbo.", "Chart caption\nA | B"]
    [chart] = document.images
    assert (chart.alt, chart.page, document.text[chart.start:chart.end]) == ("Sales chart", 2, "Chart caption")


def test_odt_places_pictures_on_their_paragraph_and_skips_what_is_generated(tmp_path: Path) -> None:
    """A picture alone in its paragraph, one inside a link, an SVG with its PNG twin, a chart's rendering, a text
    box inside a span, a shape's text (after its paragraph, not run into it), a group's picture (on the paragraph
    anchoring the group), a table of contents, a numbered heading: as LibreOffice writes them."""
    frame = '<draw:frame><draw:image xlink:href="Pictures/{}"/>{}</draw:frame>'
    body = ('<text:table-of-content><text:index-body><text:p>Scope<text:tab/>1</text:p></text:index-body>'
            "</text:table-of-content><text:h><text:number>1.</text:number>Scope</text:h>"
            "<text:p>Before the map.</text:p>"
            f"<text:p>{frame.format('a.png', '')}</text:p><text:p>After.</text:p>"
            f"<text:p>Click <text:a>{frame.format('b.png', '')}</text:a> to open</text:p>"
            f"<text:p>Flow {frame.format('d.svg', '').replace('</draw:frame>', '')}"
            '<draw:image xlink:href="Pictures/c.png"/><svg:title>Flow chart</svg:title></draw:frame></text:p>'
            '<text:p>Chart<draw:frame><draw:object xlink:href="./Object 1"/><draw:image xlink:href="./Object 1.png"/>'
            "</draw:frame></text:p><text:p>Before <text:span>bold<draw:frame><draw:text-box><text:p>Box text</text:p>"
            "</draw:text-box></draw:frame></text:span> after.</text:p><text:p><draw:custom-shape><text:p>Shape text"
            "</text:p><draw:enhanced-geometry/></draw:custom-shape>Anchoring paragraph.</text:p>"
            f"<text:p>Grouped<draw:g>{frame.format('e.png', '')}</draw:g> on page "
            "<text:page-number>3</text:page-number></text:p>")
    pictures = {f"Pictures/{name}.png": image_bytes(size=(40 + index, 40)) for index, name in enumerate("abce")}
    pictures |= {"Pictures/d.svg": b"<svg/>", "Object 1.png": image_bytes(size=(50, 50))}
    document = load(tmp_path, "layout.odt", odf_bytes("odt", body, pictures))
    assert document.text == ("1. Scope\nBefore the map.\nAfter.\nClick  to open\nFlow\nChart\nBefore bold after.\n"
                             "Box text\nAnchoring paragraph.\nShape text\nGrouped on page 3")
    assert document.title == "1. Scope" and document.warnings == []
    assert [(image.name, image.alt, document.text[image.start:image.end]) for image in document.images] == [
        ("Pictures/a.png", None, ""), ("Pictures/b.png", None, "Click  to open"),
        ("Pictures/c.png", "Flow chart", "Flow"), ("Pictures/e.png", None, "Grouped on page 3")]
    assert document.images[0].start == document.text.index("After.")  # where it stands, between two paragraphs


def test_opendocument_refuses_entities_bombs_and_broken_packages(tmp_path: Path) -> None:
    entity = odf_bytes("odt", "<text:p>&x;</text:p>", prolog='<!DOCTYPE x [<!ENTITY x SYSTEM "file:///etc/passwd">]>')
    defaults = odf_bytes("odt", "<text:p>a<text:s/></text:p>", prolog="<!DOCTYPE x [<!ATTLIST text:s " + " ".join(
        f'a{number} CDATA "v"' for number in range(100)) + ">]>")  # every element given 100 attributes
    for name, data in (("entity.odt", entity), ("defaults.odt", defaults)):
        with pytest.raises(LoadError, match="ODT declares a DTD or XML entities, which are refused"):
            load(tmp_path, name, data)
    with pytest.raises(LoadError, match="is encrypted: it needs a password"):
        load(tmp_path, "locked.odt", odf_bytes("odt", "", {"META-INF/manifest.xml": b"<manifest:encryption-data/>"}))
    bzipped = io.BytesIO()
    with zipfile.ZipFile(bzipped, "w", zipfile.ZIP_BZIP2) as package:
        package.writestr("content.xml", "<a/>")
    with pytest.raises(LoadError, match=r"uses an unsupported compression \(bzip2\)"):
        load(tmp_path, "bzipped.odt", bzipped.getvalue())
    document = load(tmp_path, "meta.odt", odf_bytes("odt", "<text:h>Heading</text:h>", meta="<broken"))
    assert document.title == "Heading" and document.warnings[0].startswith("meta.xml not read: corrupt ODT")
    with pytest.raises(LoadError, match="corrupt ODS"):
        load(tmp_path, "broken.ods", b"PK\x03\x04 not a zip")
    deep = "<text:p>" + "<text:span>" * 200 + "deep" + "</text:span>" * 200 + "</text:p>"
    assert load(tmp_path, "deep.odt", odf_bytes("odt", deep)).text == "deep"
    deeper = "<text:p>" + "<text:span>" * 100_000 + "deep" + "</text:span>" * 100_000 + "</text:p>"
    with pytest.raises(LoadError, match="content.xml nests XML more than 256 deep"):  # as lxml refuses a DOCX's
        load(tmp_path, "deeper.odt", odf_bytes("odt", deeper))
    repeated = ('<table:table table:name="S"><table:table-row table:number-rows-repeated="1048576">'
                '<table:table-cell table:number-columns-repeated="16384"><text:p>x</text:p></table:table-cell>'
                "</table:table-row></table:table>")
    with pytest.raises(LoadError, match="more than 10,000,000 characters"):
        load(tmp_path, "repeated.ods", odf_bytes("ods", repeated))


def test_ods_stops_at_its_cells_with_a_picture_in_the_row_cut_short(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A picture in the row where the cells ran out kept a line number of its cell: IndexError, the file lost."""
    monkeypatch.setattr(odf, "MAX_CELLS", 5)
    picture = '<text:p><draw:frame><draw:image xlink:href="Pictures/p.png"/></draw:frame></text:p>'
    sheet = (f'<table:table table:name="S"><table:table-row>{cell("Head")}</table:table-row><table:table-row>'
             f'<table:table-cell table:number-columns-repeated="10"><text:p>a</text:p>{picture}</table:table-cell>'
             "</table:table-row></table:table><table:table table:name='T'>"
             f"<table:table-row>{cell('Later')}</table:table-row></table:table>")
    document = load(tmp_path, "cut.ods", odf_bytes("ods", sheet, {"Pictures/p.png": image_bytes()}))
    assert [document.text[page.start:page.end] for page in document.pages] == ["S\nHead", ""]
    [picture_kept] = document.images
    assert picture_kept.page == 1 and document.pages[0].start <= picture_kept.start <= document.pages[0].end
    assert document.warnings == ["sheet S: only its first 1 rows with values were read, and no later sheet (a "
                                 "spreadsheet's first 5 cells are read)"]


# --- epub -------------------------------------------------------------------------------------------------------

def test_epub_reads_chapters_in_reading_order_with_pictures_from_inside_the_book(tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(image_bytes(size=(90, 90)))  # beside the book on disk: never read
    chapters = {"text/two.xhtml": "<h1>Two</h1><p>Second chapter.</p>",
                "text/one.xhtml": '<h1>One</h1><figure><img src="../images/map.png" alt="Route map"/>'
                                  "<figcaption>The route</figcaption></figure><p>First chapter.</p>"
                                  '<img src="../../../secret.png"/><img src="https://example.com/x.png"/>'}
    book = epub_bytes(chapters, spine=["text/one.xhtml", "text/two.xhtml"], title="Alpine Guide",
                      files={"OEBPS/images/map.png": image_bytes(size=(80, 60))})
    document = load(tmp_path, "guide.epub", book)
    assert document.title == "Alpine Guide"
    assert [document.text[page.start:page.end] for page in document.pages] == [
        "One\n\nThe route\n\nFirst chapter.", "Two\n\nSecond chapter."]
    [route] = document.images
    assert (route.name, route.alt, route.caption, route.page, route.width) == (
        "../images/map.png", "Route map", "The route", 1, 80)
    assert document.text[route.start:route.end] == "The route"
    assert document.warnings == ["image ../../../secret.png skipped: not a file inside the book",
                                 "1 image(s) at web addresses not fetched (images are read from relative file paths "
                                 "and data: URIs only)"]


def test_an_epub_cover_drawn_in_svg_as_calibre_writes_it_is_kept(tmp_path: Path) -> None:
    """An SVG drawing was dropped whole, text and pictures: a book lost its cover."""
    cover = ('<div><svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" version="1.1" '
             'viewBox="0 0 80 60"><image width="80" height="60" xlink:href="cover.png"/><text>Drawn</text></svg></div>')
    hidden = ('<svg style="display: none"><image href="cover.png"/></svg><svg><defs><pattern id="p"><image '
              'href="cover.png"/></pattern></defs><g hidden=""><image href="cover.png"/></g></svg>')
    book = epub_bytes({"titlepage.xhtml": cover, "one.xhtml": f"<p>First chapter.</p>{hidden}"},
                      files={"OEBPS/cover.png": image_bytes(size=(80, 60))})
    document = load(tmp_path, "novel.epub", book)
    assert document.text == "First chapter."
    [picture] = document.images
    assert (picture.name, picture.page, picture.start, picture.end, picture.width) == ("cover.png", 1, 0, 0, 80)


def test_epub_reads_a_chapter_listed_again_once_and_keeps_its_pictures_when_attached(tmp_path: Path) -> None:
    """A spine listing one chapter 2,000 times had it parsed 2,000 times (an 8 KB book of one 4.7 MB chapter listed
    20 times took 306 s); a book attached to an e-mail lost its pictures (an attachment reads no folder, but a
    book's pictures are inside it)."""
    book = epub_bytes({"a.xhtml": '<p>Only chapter.</p><img src="p.png" alt="Plan"/>'}, spine=["a.xhtml"] * 2000,
                      files={"OEBPS/p.png": image_bytes()})
    document = load(tmp_path, "repeated.epub", book)
    assert document.text == "Only chapter." and len(document.pages) == 1
    mail = load(tmp_path, "mail.eml", email_bytes(attachments=[("book.epub", book)]))
    assert [image.alt for image in mail.images] == ["Plan"] and mail.warnings == []
    unqualified = epub_bytes({"a.xhtml": "<p>Only chapter.</p>"}, qualified=False)  # as some tools write EPUB 2
    assert load(tmp_path, "plain.epub", unqualified).text == "Only chapter."


def test_epub_reads_chapters_up_to_its_html_elements(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each HTML element costs BeautifulSoup about 15 us: three chapters of 700,000 empty elements took 43 s."""
    monkeypatch.setattr(epub, "_MAX_ELEMENTS", 20)  # its declaration, html, head, title, body: 5 a chapter, and <p>
    book = epub_bytes({f"c{number}.xhtml": "<p>Chapter.</p>" * (15 if number == 2 else 1) for number in range(4)})
    document = load(tmp_path, "long.epub", book)
    assert len(document.pages) == 2 and document.warnings == [
        "only the first 2 chapters were read: a book's first 20 HTML elements are read"]


def test_epub_skips_what_it_cannot_read_and_refuses_what_is_no_book(tmp_path: Path) -> None:
    encryption = ('<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" xmlns:enc="http://www.w3.org/'
                  '2001/04/xmlenc#"><enc:EncryptedData><enc:CipherData><enc:CipherReference URI="OEBPS/{}"/>'
                  "</enc:CipherData></enc:EncryptedData></encryption>")
    chapters = {"a.xhtml": "<p>Open chapter.</p>", "b.xhtml": "<p>Locked chapter.</p>"}
    partly = epub_bytes(chapters, files={"META-INF/encryption.xml": encryption.format("b.xhtml").encode()})
    document = load(tmp_path, "partly.epub", partly)
    assert document.text == "Open chapter." and document.warnings == [
        "chapter OEBPS/b.xhtml skipped: encrypted (DRM)"]
    locked = epub_bytes({"b.xhtml": "<p>x</p>"}, files={"META-INF/encryption.xml": encryption.format(
        "b.xhtml").encode()})
    with pytest.raises(LoadError, match=r"EPUB is encrypted \(DRM\)"):
        load(tmp_path, "locked.epub", locked)
    missing = load(tmp_path, "missing.epub", epub_bytes(chapters, spine=["a.xhtml"] + ["b.xhtml"] * 30,
                                                         files={"OEBPS/b.xhtml": b"\x00\x01" * 100}))
    assert missing.warnings[0].startswith("chapter OEBPS/b.xhtml skipped: binary or undecodable")
    with pytest.raises(LoadError, match=r"lists no chapter of text in its reading order \(spine\)"):
        load(tmp_path, "empty.epub", epub_bytes(chapters, spine=[]))
    with pytest.raises(LoadError, match="over budget: EPUB META-INF/container.xml holds"):
        load(tmp_path, "padded.epub", epub_bytes(chapters, files={"META-INF/container.xml": b" " * 2**21}))
    dtd = epub_bytes(chapters, opf_prolog='<!DOCTYPE package [<!ENTITY x "y">]>')
    with pytest.raises(LoadError, match="EPUB declares a DTD or XML entities"):
        load(tmp_path, "dtd.epub", dtd)
    with pytest.raises(LoadError, match="not an EPUB book: no META-INF/container.xml"):
        load(tmp_path, "bare.epub", odf_bytes("odt", "<text:p>x</text:p>"))
    path = tmp_path / "big.epub"
    path.write_bytes(epub_bytes({"big.xhtml": "<p>" + "word " * 300_000 + "</p>", "a.xhtml": "<p>Small.</p>"}))
    document = loader_for(path).load(path, path.read_bytes(), Limits(max_markup_bytes=2**20))
    assert document.text == "Small." and document.warnings == [
        "chapter OEBPS/big.xhtml skipped: 1.4 MB of HTML, over the 1 MB limit (max_html_mb)"]


# --- xls (Excel 97-2003) ----------------------------------------------------------------------------------------

def test_xls_sheets_are_pages_read_as_an_xlsx_workbook_s(tmp_path: Path) -> None:
    sheets = {"价格": [["产品", "价格", "日期"], ["键盘", 199.5, date(2026, 3, 1)], ["Mouse", 25, None, True],
                     ["#DIV/0!"]], "Empty": [], "Notes": [["Shipping from Ningbo", time(8, 30)]]}
    document = load(tmp_path, "prices.xls", xls_bytes(sheets, title="Prices 2026"))
    assert [document.text[page.start:page.end] for page in document.pages] == [
        "价格\n产品 | 价格 | 日期\n产品: 键盘 | 价格: 199.5 | 日期: 2026-03-01\n产品: Mouse | 价格: 25 | TRUE\n"
        "产品: #DIV/0!", "", "Notes\nShipping from Ningbo | 08:30:00"]
    assert (document.file_type, document.title, document.warnings) == ("xls", "Prices 2026", [])
    assert load(tmp_path, "untitled.xls", xls_bytes({"A": [["x"]]})).title is None


def test_xls_keeps_the_sheets_it_can_read_and_refuses_what_is_no_workbook(tmp_path: Path) -> None:
    workbook = xls_bytes({"Good": [["kept"]], "Bad": [["lost"]]})
    last = workbook.rindex(b"\x09\x08\x10\x00")  # the last sheet's BOF record
    document = load(tmp_path, "broken.xls", workbook[:last] + b"\x00\x00" + workbook[last + 2:])
    assert document.text == "Good\nkept" and [warning[:67] for warning in document.warnings] == [
        "sheet Bad cannot be read: Unsupported format, or corrupt file: Expe"]
    with pytest.raises(LoadError, match="^not an Excel workbook: an OLE file without a Workbook stream$"):
        load(tmp_path, "word.xls", doc_bytes([("Not a workbook.\r", True)]))
    with pytest.raises(LoadError, match="^corrupt XLS: "):
        load(tmp_path, "binary.xls", b"\x09\x00\x04\x00 not a workbook at all\x00")
    # Text is read as Excel opens it, as delimited text (one value a row here).
    assert load(tmp_path, "text.xls", b"Not a workbook at all.\n").text == "Not a workbook at all."
    stream = olefile.OleFileIO(io.BytesIO(workbook)).openstream("Workbook").read()
    filepass = b"\x2f\x00\x06\x00\x00\x00\x01\x00\x01\x00"  # after the first BOF: the workbook is encrypted
    with pytest.raises(LoadError, match=r"^encrypted XLS \(password-protected\)"):
        load(tmp_path, "locked.xls", compound_file({"Workbook": stream[:20] + filepass + stream[20:]}))
    formats = b"\xe0\x00\x14\x00" + bytes(20)  # a cell format record: xlrd makes an object of each
    with pytest.raises(LoadError, match=r"^XLS bomb\? more than 100,000 cell formats"):
        load(tmp_path, "formats.xls", compound_file({"Workbook": stream[:20] + formats * 100_001 + stream[20:]}))


def test_office_97_names_holding_another_format_are_read_as_what_they_are(tmp_path: Path) -> None:
    """Word saves RTF under .doc, and business systems export HTML tables or Office 2007 workbooks as .xls: Word
    and Excel open them (and PowerPoint a renamed .pptx), so the knowledge base reads them too, by their first
    bytes."""
    rtf = load(tmp_path, "letter.doc", rb"{\rtf1\ansi Dear customer,\par}")
    html = load(tmp_path, "export.xls", "<html><body><table><tr><td>产品</td><td>价格</td></tr><tr><td>键盘</td>"
                "<td>199</td></tr></table></body></html>".encode())
    workbook = Workbook()
    workbook.active.append(["Lamp", 34.5])
    saved = io.BytesIO()
    workbook.save(saved)
    xlsx = load(tmp_path, "renamed.xls", saved.getvalue())
    docx = load(tmp_path, "renamed.doc", docx_bytes())
    assert [(document.file_type, document.text.split("\n")[-1]) for document in (rtf, html, xlsx)] == [
        ("rtf", "Dear customer,"), ("html", "键盘 | 199"), ("xlsx", "Lamp | 34.5")]
    assert docx.file_type == "docx" and docx.text
    assert load(tmp_path, "renamed.ppt", deck_bytes()).file_type == "pptx"
    web_page = load(tmp_path, "web.xls", b'MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary="B"\r\n\r\n'
                    b"--B\r\nContent-Type: text/html\r\n\r\n<table><tr><td>Name</td><td>Qty</td></tr><tr><td>Lamp"
                    b"</td><td>3</td></tr></table>\r\n--B--\r\n")  # Excel's "Single File Web Page" (MHTML)
    assert (web_page.file_type, web_page.text) == ("eml", "Name | Qty\nLamp | 3")
    exported = load(tmp_path, "export.xls", "产品\t价格\n键盘\t199\n".encode("gbk"))  # as ERP systems export
    assert (exported.file_type, exported.text) == ("csv", "产品 | 价格\n产品: 键盘 | 价格: 199")
    wide = load(tmp_path, "unicode.xls", "\ufeff<html><table><tr><td>宁波</td></tr></table></html>".encode("utf-16-le"))
    assert (wide.file_type, wide.text) == ("html", "宁波")


@pytest.mark.parametrize("name, data, text", [
    # Excel on a Chinese Windows saves CSV in GBK; a quoted value holds the delimiter, an amount its thousands.
    ("报价.csv", "型号,名称,单价\r\nLX-40,\"落地灯, 黑色\",128.5\r\nLX-41,台灯,\"1,280.00\"\r\n".encode("gbk"),
     "型号 | 名称 | 单价\n型号: LX-40 | 名称: 落地灯, 黑色 | 单价: 128.5\n型号: LX-41 | 名称: 台灯 | 单价: 1,280.00"),
    # Where "," is the decimal comma Excel writes ";", and may name it on a first "sep=" line.
    ("preise.csv", "\ufeffArtikel;Preis\nLampe;12,50\n".encode(), "Artikel | Preis\nArtikel: Lampe | Preis: 12,50"),
    ("named.csv", b"sep=|\nOrder|Shipped\nA-7|2026-05-03\n", "Order | Shipped\nOrder: A-7 | Shipped: 2026-05-03"),
    # A quoted value over two lines is one value; in a file of text only, a first row that reads as labels of the
    # rows below (each lacks the digits and the spaces of its column's values) is its headers.
    ("notes.tsv", b'Ticket\tNote\n"T-1"\t"Call back\nafter 5 pm"\n',
     "Ticket | Note\nTicket: T-1 | Note: Call back after 5 pm"),
    ("联系人.csv", "姓名,邮箱,部门\n张伟,zhang@example.cn,销售部\n李娜,li@example.cn,财务部\n".encode(),
     "姓名 | 邮箱 | 部门\n姓名: 张伟 | 邮箱: zhang@example.cn | 部门: 销售部\n姓名: 李娜 | 邮箱: li@example.cn | 部门: 财务部"),
    # A first row like the rows below it is no headers: a contact list without them, a glossary.
    ("contacts.csv", b"Alice,alice@example.com,Berlin\nBob,bob@example.com,Paris\n",
     "Alice | alice@example.com | Berlin\nBob | bob@example.com | Paris"),
    ("glossary.csv", b"SKU,stock keeping unit\nERP,enterprise resource planning\n",
     "SKU | stock keeping unit\nERP | enterprise resource planning"),
    # Delimiters inside quotes do not count, and values that read as numbers tell "," the decimal comma from ";".
    ("sizes.csv", b'Item,Options,Price\nShirt,"Size: L; colour: red, blue",12.5\nCap,"one; size",8\n',
     "Item | Options | Price\nItem: Shirt | Options: Size: L; colour: red, blue | Price: 12.5\n"
     "Item: Cap | Options: one; size | Price: 8"),
    ("posten.csv", b"Lampe;12,50;3,00\nTisch;99,00;1,00\n", "Lampe | 12,50 | 3,00\nTisch | 99,00 | 1,00"),
    ("preis.csv", b"Lampe;12,50\nTisch;3,20\n", "Lampe | 12,50\nTisch | 3,20"),
    # A title of two values above the headers is not them: the wider row is.
    ("report.csv", b"Report,Monthly sales\nRegion,Product,Units\nNorth,Widget,12\n",
     "Report | Monthly sales\nRegion | Product | Units\nRegion: North | Product: Widget | Units: 12"),
    # A row missing its number is a row, not the headers, labelled once they are found; Excel's "Unicode text" is
    # tab-separated UTF-16.
    ("gaps.csv", "型号,名称,单价\nLX-40,落地灯,\nLX-41,台灯,128\n".encode(),
     "型号 | 名称 | 单价\n型号: LX-40 | 名称: 落地灯\n型号: LX-41 | 名称: 台灯 | 单价: 128"),
    ("unicode.xls", "产品\t价格\r\n键盘\t199\r\n".encode("utf-16"), "产品 | 价格\n产品: 键盘 | 价格: 199"),
])
def test_delimited_text_reads_a_line_per_row_with_its_column_headers(name: str, data: bytes, text: str,
                                                                     tmp_path: Path) -> None:
    document = load(tmp_path, name, data)
    assert (document.file_type, document.text, document.warnings) == (
        {".xls": "csv"}.get(Path(name).suffix, Path(name).suffix[1:]), text, [])


def test_a_table_whose_repeated_headers_would_overflow_keeps_its_values_without_them(tmp_path: Path) -> None:
    # An export of 110,000 rows of 5.9 million characters was refused whole: its headers made it 10 million.
    data = ("型号,单价\n" + "".join(f"LX-{n},{n}.5\n" for n in range(100))).encode("gbk")
    plain = "\n".join(f"LX-{n} | {n}.5" for n in range(100))
    path = tmp_path / "prices.csv"
    document = DelimitedLoader("csv").load(path, data, Limits(max_chars=len(plain) + 300))
    assert document.text == f"型号 | 单价\n{plain}"
    assert document.warnings == ["the column headers are not repeated before the values: they would take the text "
                                 f"past {len(plain) + 300:,} characters (max_document_chars)"]
    with pytest.raises(LoadError, match="max_document_chars"):  # the values alone are over: refused, as ever
        DelimitedLoader("csv").load(path, data, Limits(max_chars=len(plain)))
    # A table of text only gets its headers when its rows are read: past the allowance then, the same.
    contacts = ("Name,Email\n" + "".join(f"P {n},p{n}@x.cn\n" for n in range(5))).encode()
    document = DelimitedLoader("csv").load(path, contacts, Limits(max_chars=100))
    assert document.text == "Name | Email\n" + "\n".join(f"P {n} | p{n}@x.cn" for n in range(5))
    assert document.warnings[0].startswith("the column headers are not repeated")
    assert DelimitedLoader("csv").load(path, contacts, Limits()).text.endswith("\nName: P 4 | Email: p4@x.cn")
    book = workbook_bytes(lambda workbook: [workbook.active.append(row) for row in (
        ["型号", "单价"], *([f"LX-{n}", n + 0.5] for n in range(100)))])
    sheet = loader_for("prices.xlsx").load(tmp_path / "prices.xlsx", book, Limits(max_chars=len(plain) + 300))
    assert sheet.text == f"Sheet\n型号 | 单价\n{plain}" and len(sheet.warnings) == 1
    rows = "".join(f"<table:table-row><table:table-cell><text:p>LX-{n}</text:p></table:table-cell><table:table-cell "
                   f'office:value-type="float"><text:p>{n}.5</text:p></table:table-cell></table:table-row>'
                   for n in range(100))
    spreadsheet = odf_bytes("ods", '<table:table table:name="Sheet"><table:table-row><table:table-cell><text:p>型号'
                            "</text:p></table:table-cell><table:table-cell><text:p>单价</text:p></table:table-cell>"
                            f"</table:table-row>{rows}</table:table>")
    ods = loader_for("prices.ods").load(tmp_path / "prices.ods", spreadsheet, Limits(max_chars=len(plain) + 300))
    assert ods.text == f"Sheet\n型号 | 单价\n{plain}" and len(ods.warnings) == 1
    # A single column costs its line breaks, not a " | " before each value.
    column = "\n".join(f"item {n}" for n in range(100))
    assert DelimitedLoader("csv").load(path, column.encode(), Limits(max_chars=len(column) + 1)).text == column


def test_a_csv_value_past_the_csv_module_s_limit_and_a_quote_left_open_lose_nothing(tmp_path: Path) -> None:
    # Past the csv module's 131,072 characters a value ended the rows read: the rest of the file was lost.
    long = load(tmp_path, "dump.csv", b'id,note\n1,"' + b"x" * 200_000 + b'"\n2,after\n')
    assert long.text == f"id | note\nid: 1 | note: {'x' * 200_000}\nid: 2 | note: after" and not long.warnings
    opened = load(tmp_path, "open.csv", b'id,note\n1,"urgent\n2,after\n')
    assert opened.text == "id | note\nid: 1 | note: urgent 2,after"


def test_xls_listing_one_sheet_twice_reads_it_once(tmp_path: Path) -> None:
    """xlrd parses a sheet each time the workbook lists it (2,000 listings of one sheet: about 30 minutes)."""
    workbook = xls_bytes({"First": [["once"]], "Second": [["never"]]})
    stream = bytearray(olefile.OleFileIO(io.BytesIO(workbook)).openstream("Workbook").read())
    listings, at = [], 0
    while at + 4 <= len(stream):
        kind, size = struct.unpack_from("<HH", stream, at)
        if kind == 0x0085:  # a sheet's listing: where its records start, then its name
            listings.append(at + 4)
        at += 4 + size
    stream[listings[1]:listings[1] + 4] = stream[listings[0]:listings[0] + 4]
    document = load(tmp_path, "twice.xls", compound_file({"Workbook": bytes(stream)}))
    assert [document.text[page.start:page.end] for page in document.pages] == ["First\nonce", ""]
    # Past half its time, a workbook reads no more sheets, keeping those it read (sheets whose records begin one
    # after the other each read all the records after them: 400 took 40 s, and a workbook over its time was lost).
    path = tmp_path / "slow.xls"
    path.write_bytes(workbook)
    hurried = loader_for(path).load(path, workbook, Limits(seconds=0))
    assert hurried.text == "First\nonce" and hurried.warnings == [
        "sheets from Second on not read: reading them would take the workbook past its 0 s (file_timeout)"]


def test_an_xls_cell_naming_a_shared_string_not_there_reads_value_error(tmp_path: Path) -> None:
    """xlrd lost the whole sheet."""
    workbook = xls_bytes({"Prices": [["Item", "Price"], ["Tea", 3], ["Coffee", 4]]})
    stream = bytearray(olefile.OleFileIO(io.BytesIO(workbook)).openstream("Workbook").read())
    at = 0
    while at + 4 <= len(stream):
        kind, size = struct.unpack_from("<HH", stream, at)
        if kind == 0x00FD and struct.unpack_from("<HH", stream, at + 4) == (1, 0):  # "Tea": a shared string's index
            struct.pack_into("<I", stream, at + 10, 9999)
        at += 4 + size
    document = load(tmp_path, "strings.xls", compound_file({"Workbook": bytes(stream)}))
    assert document.text == "Prices\nItem | Price\nItem: #VALUE! | Price: 3\nItem: Coffee | Price: 4"
    assert document.warnings == ["1 cell(s) naming a shared string the workbook does not hold read #VALUE!"]


# --- doc (Word 97-2003) -----------------------------------------------------------------------------------------

def test_doc_reads_its_main_text_through_the_piece_table(tmp_path: Path) -> None:
    """Word stores ASCII-only runs 8-bit and the rest in UTF-16; the main document is the first ``ccpText``
    characters (footnotes and headers follow); a field shows its result, not its code."""
    main = ("Returns policy\r", "顾客可在购买后三十天内退货。\rItem\x07Price\x07\x07Keyboard\x07199\x07\x07See "
            '\x13 HYPERLINK "https://example.com" \x14the \x01returns page\x15.\x0bNext line\x0cAfter a break\r')
    pieces = [(main[0], True), (main[1], False), ("Footnote text.\r", True)]
    document = load(tmp_path, "policy.doc", doc_bytes(pieces, main=len(main[0]) + len(main[1]), title="退货政策"))
    assert document.text == ("Returns policy\n\n顾客可在购买后三十天内退货。\n\nItem | Price\nKeyboard | 199\n\nSee the "
                             "returns page.\nNext line\nAfter a break")
    assert (document.file_type, document.title, document.warnings) == ("doc", "退货政策", [])
    assert load(tmp_path, "table0.doc", doc_bytes([("Plain.\r", True)], flags=0)).text == "Plain."
    boxed = doc_bytes([("Body text.\r", True)], boxes="Text box one.\rText box two.\r\r")
    assert load(tmp_path, "boxes.doc", boxed).text == "Body text.\n\nText box one.\n\nText box two."


def test_doc_tables_are_read_by_their_paragraph_properties(tmp_path: Path) -> None:
    """An empty cell's mark and a row's mark are the same character: only the paragraph's properties tell them
    apart (an empty last cell once moved its table to the end of the document)."""
    table = ("Intro\rName\x07\x07Age\x07\x1dBob\x07\x07\x1dSmith\x07Line one\x1cline two\x0742\x07\x1d"
             "After the table.\r")
    assert load(tmp_path, "table.doc", doc_bytes([], table=table)).text == (
        "Intro\n\nName | Age\nBob\nSmith | Line one line two | 42\n\nAfter the table.")
    # A table nested in a cell reads as the DOCX loader reads one: its cells ' | ' (an empty one left out), its
    # rows a space apart, within the outer cell (Word ends a nested cell and row with a paragraph's mark).
    nested = "d\x07Before\x1ce\x1af\x1a\x1b\x1ah\x1a\x1b\x07i\x07\x1dAfter.\r"
    assert load(tmp_path, "nested.doc", doc_bytes([], table=nested)).text == "d | Before e | f h | i\n\nAfter."
    # A nested cell of only a picture is no cell (its picture goes with the row); a nested table's marks on a
    # paragraph in no cell, and the same characters in a file's own text, are blanks, not lost or cells.
    pictured = load(tmp_path, "pictured.doc", doc_bytes(
        [], table="Left\x07p\x1a\x01\x1aq\x1a\x1b\x07r\x07\x1dStray\x1amark and a\x1bcharacter.\r",
        pictures=[doc_picture(image_bytes("PNG", (80, 60)))]))
    assert pictured.text == "Left | p | q | r\n\nStray mark and a character."
    assert [pictured.text[image.start:image.end] for image in pictured.images] == ["Left | p | q | r"]
    for table in ("L\x07p\x1aq\x1a\x1b\x01\x1a\x01\x1a\x1b\x07r\x07\x1d", "L\x07\x01\x1cp\x1aq\x1a\x1b\x07r\x07\x1d"):
        spaced = load(tmp_path, "spaced.doc", doc_bytes([], table=table + "After.\r", pictures=[
            doc_picture(image_bytes("PNG", (80, 60)))] * table.count("\x01")))
        assert spaced.text == "L | p | q | r\n\nAfter."  # (no blank doubled where a picture stood)
        assert [spaced.text[image.start:image.end] for image in spaced.images] == ["L | p | q | r"]  # (one picture)


@pytest.mark.parametrize(("data", "reason"), [
    pytest.param(doc_bytes([("Secret.\r", True)], flags=0x0300), r"^encrypted DOC \(password-protected\)",
                 id="encrypted"),
    pytest.param(doc_bytes([("Old.\r", True)]).replace(b"\xec\xa5\xc1\x00", b"\xdc\xa5\x65\x00"),
                 r"^a Word 6 or 95 document \(or not a Word document\): version 0x65 is not read$", id="word6"),
    pytest.param(compound_file({"Workbook": b"x"}), "^not a Word document: an OLE file without a WordDocument stream$",
                 id="workbook"),
    pytest.param(doc_bytes([("a", True), ("b", True)]).replace(b"\x01\x00\x00\x00\x02\x00",
                                                              b"\x03\x00\x00\x00\x02\x00"),
                 "^corrupt DOC: its pieces are out of order$", id="pieces out of order"),
    pytest.param(doc_bytes([("Hello\r", True)]).replace(b"\x02\x10\x00\x00\x00", b"\x01\xfd\xff\x00\x00", 1),
                 "^corrupt DOC: a formatting record of negative size$", id="a Prc of size -3 looped forever"),
])
def test_doc_that_cannot_be_read_is_refused_with_its_reason(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(LoadError, match=reason):
        load(tmp_path, "refused.doc", data)


def test_doc_of_a_few_bytes_is_never_taken_for_a_file_name(tmp_path: Path) -> None:
    """olefile reads bytes shorter than 1,536 as the name of a file to open: a .doc holding a path would be the
    file it names, outside the folder."""
    secret = tmp_path / "outside" / "secret.doc"
    secret.parent.mkdir()
    secret.write_bytes(doc_bytes([("The vault code is 4711.\r", True)]))
    with pytest.raises(LoadError, match="^corrupt DOC: "):
        load(tmp_path, "trap.doc", str(secret).encode())


def test_doc_inline_pictures_come_with_alt_text_caption_and_span(tmp_path: Path) -> None:
    """An inline picture is a character whose properties say where it is in the Data stream; a drawn shape shows
    no picture (quietly), a Word 6 metafile is a warning, a mark that is no picture is left out."""
    text = ("Intro\r\x01\rFigure 1: The harbour lamp\rText with \x01 an inline picture, \x01 a mark and \x01 a "
            "shape.\r表\x01格\r")
    document = load(tmp_path, "pictures.doc", doc_bytes([(text, False)], pictures=[
        doc_picture(image_bytes("PNG", (80, 60)), alt="A red lamp"), doc_picture(image_bytes("JPEG", (90, 70))), None,
        doc_picture(b"", shown=False), doc_picture(image_bytes("PNG", (70, 50)), mode=8)]))
    assert document.text == ("Intro\n\nFigure 1: The harbour lamp\n\nText with  an inline picture,  a mark and  a "
                             "shape.\n\n表格")
    assert [(image.name, image.width, document.text[image.start:image.end], image.alt, image.caption)
            for image in document.images] == [
        ("picture 1", 80, "Figure 1: The harbour lamp", "A red lamp", "Figure 1: The harbour lamp"),
        ("picture 2", 90, "Text with  an inline picture,  a mark and  a shape.", None, None)]
    assert document.warnings == [
        "image picture 3 skipped: a metafile picture (as Word 6 and 95 kept pictures) is not read"]
    every = "".join(map(chr, range(0xE000, 0xF900)))  # (symbol fonts' characters): none is left for the pictures
    crowded = load(tmp_path, "crowded.doc", doc_bytes([(every + "\x01\r", False)], pictures=[doc_picture(
        image_bytes("PNG", (80, 60)))]))
    assert (crowded.text, crowded.images) == (every, [])
    assert crowded.warnings == ["its pictures were not read: its text uses every private-use character"]


def test_doc_pictures_after_emoji_in_cells_and_in_field_codes_keep_their_places(tmp_path: Path) -> None:
    """An emoji is one character of the text but two positions of the file; a cell holding only a picture is no
    cell of the row; a picture in a field's code is hidden with it, and the next picture is still its own."""
    red, blue = image_bytes("PNG", (80, 60)), image_bytes("JPEG", (90, 70))
    emoji = load(tmp_path, "emoji.doc", doc_bytes([("Smile 😀😀 then \x01.\r", False)], pictures=[doc_picture(red)]))
    assert [(image.width, emoji.text[image.start:image.end]) for image in emoji.images] == [(80, "Smile 😀😀 then .")]
    cell = load(tmp_path, "cell.doc", doc_bytes([], table="A\x07\x01\x07C\x07\x1d\x01\x1c\x01\x07D\x07\x1dAfter.\r",
                                                pictures=[doc_picture(red), doc_picture(blue), doc_picture(red)]))
    assert cell.text == "A | C\nD\n\nAfter."
    assert [cell.text[image.start:image.end] for image in cell.images] == ["A | C\nD", "A | C\nD"]
    field = load(tmp_path, "field.doc", doc_bytes([("Intro.\r\x13 SHAPE \x01 \x14result\x15\rSecond \x01 here.\r",
                                                    False)], pictures=[doc_picture(red, alt="hidden"),
                                                                        doc_picture(blue, alt="shown")]))
    assert field.text == "Intro.\n\nresult\n\nSecond  here."
    assert [(image.alt, image.width, field.text[image.start:image.end]) for image in field.images] == [
        ("shown", 90, "Second  here.")]


def test_doc_floating_pictures_are_read_from_the_drawing_layer_where_they_are_anchored(tmp_path: Path) -> None:
    """A floating picture is a shape of the drawing layer anchored at a character; its image is kept after the
    text, where the layer's picture store says. A floating text box shows no picture."""
    text = "Intro\rA floating \x08picture here.\rFigure 2: The quay\rA text box \x08 anchored.\rInline \x01.\r"
    document = load(tmp_path, "floating.doc", doc_bytes(
        [(text, False)], pictures=[doc_picture(image_bytes("PNG", (80, 60)), alt="Inline lamp")],
        floating=[(image_bytes("JPEG", (90, 70)), "The quay at night"), (None, None)]))
    assert document.text == ("Intro\n\nA floating picture here.\n\nFigure 2: The quay\n\nA text box  anchored.\n\n"
                             "Inline .")
    assert [(image.name, image.width, document.text[image.start:image.end], image.alt, image.caption)
            for image in document.images] == [
        ("picture 1", 90, "A floating picture here.\n\nFigure 2: The quay", "The quay at night", "Figure 2: The quay"),
        ("picture 2", 80, "Inline .", "Inline lamp", None)]
    assert document.warnings == []


def test_doc_footnotes_and_endnotes_are_read_where_their_references_stand(tmp_path: Path) -> None:
    """A note's reference is a character of the main document (Word's numbered mark, or one the writer chose, which
    its note repeats); its text, in the footnotes' or endnotes' story, is read there on one line, fields as their
    result. Positions count
    an emoji twice; a reference in a field's code is hidden with it; a picture after a note keeps its span."""
    main = "Returns within 30 days.\x02 Keep the 😀 receipt*.\rItem\x07Warranty\x02\x07\x07Intro \x01.\r"
    footnotes = [(23, "\x02 Except opened\rsoftware.\r"), (44, "* Or an \x13 REF x \x14e-mail\x15.\r")]
    document = load(tmp_path, "notes.doc", doc_bytes(
        [(main, False)], footnotes=footnotes, endnotes=[(60, "\x02Parts and labour.\r")],
        pictures=[doc_picture(image_bytes("PNG", (80, 60)))]))
    assert document.text == ("Returns within 30 days. Except opened software. Keep the 😀 receipt * Or an e-mail.."
                             "\n\nItem | Warranty Parts and labour.\n\nIntro .")
    assert [document.text[image.start:image.end] for image in document.images] == ["Intro ."]
    assert document.warnings == []
    hidden = "See \x13 REF note\x02 \x14here\x15\x02.\r"
    field = load(tmp_path, "field.doc", doc_bytes([(hidden, True)], footnotes=[(14, "\x02 Hidden.\r"),
                                                                               (22, "\x02 Shown.\r")]))
    assert field.text == "See here Shown.."


def test_doc_notes_read_are_bounded_by_their_story(tmp_path: Path) -> None:
    """Notes whose texts overlap, or run backwards or past their story (or the text allowance), are not read (each
    note's text follows the one before, so together they are never longer than their story); two notes at one place
    keep the first; a reference on a paragraph's or cell's mark is none."""
    notes = [(5, "\x02 One.\r"), (5, "\x02 Two.\r"), (11, "\x02 Three.\r")]
    data = doc_bytes([("First\x02 then\x02.\r", True)], footnotes=notes)
    assert load(tmp_path, "twice.doc", data).text == "First One. then Three.."
    backwards = data.replace(struct.pack("<5i", 0, 7, 14, 23, 24), struct.pack("<5i", 0, 7, 0, 23, 24))
    assert load(tmp_path, "backwards.doc", backwards).text == "First One. then."
    past = data.replace(struct.pack("<5i", 0, 7, 14, 23, 24), struct.pack("<5i", 0, 7, 14, 2**30, 24))
    assert load(tmp_path, "past.doc", past).text == "First One. then."
    on_a_mark = doc_bytes([("One.\rTwo\x07Cell\x07\x07\r", True)], footnotes=[(4, "\x02 N.\r"), (8, "\x02 M.\r")])
    assert load(tmp_path, "mark.doc", on_a_mark).text == "One.\n\nTwo | Cell"  # (marks are no references)
    path = tmp_path / "allowance.doc"
    path.write_bytes(doc_bytes([("First\x02.\r", True)], footnotes=[(5, "\x02 A long note.\r")]))
    cut = loader_for(path).load(path, path.read_bytes(), Limits(max_chars=20))
    assert (cut.text, cut.warnings) == ("First.", ["notes past the text allowance (max_document_chars) were not read"])


def test_doc_over_the_text_limit_is_refused_before_its_text_is_read(tmp_path: Path) -> None:
    path = tmp_path / "long.doc"
    with pytest.raises(LoadError, match="max_document_chars"):
        loader_for(path).load(path, doc_bytes([("x" * 50, True)], main=2_000_000_000), Limits(max_chars=100))


# --- ppt (PowerPoint 97-2003) -------------------------------------------------------------------------------------

def _ppt_deck() -> bytes:
    """A deck as PowerPoint writes one: placeholders' text kept in the slide list and referred to from the
    drawing, a text box of its own, a table, a group, pictures, a footer field and notes."""
    return ppt_bytes(
        [[ppt_shape(reference=0), ppt_shape(reference=1)],
         [ppt_shape("退货政策", 0), ppt_shape("Lamps ship on Monday\rReturns within 30 days\x0bsecond line"),
          ppt_table([["Item", "Price"], ["Desk lamp", "199"]]), ppt_group([ppt_group([ppt_shape("Grouped box")])]),
          ppt_shape(picture=1, alt="a red lamp"), ppt_shape(picture=2), ppt_shape(picture=3), ppt_shape(picture=1)],
         [ppt_shape("Page *", extra=ppt_record(0x0FD8, struct.pack("<I", 5))), ppt_shape(picture=9)]],
        listed=[[(0, "Harbour lamps"), (1, "Quarterly review\rFor the board")], [], [(1, "A body no shape shows")]],
        notes=["Speaker says hello", None, None], title="港口灯 deck",
        pictures=[image_bytes("PNG", (80, 60)), image_bytes("JPEG", (90, 60)), image_bytes("BMP", (70, 50))])


def test_ppt_slides_are_pages_read_as_a_pptx_deck_s(tmp_path: Path) -> None:
    document = load(tmp_path, "review.ppt", _ppt_deck())
    assert [document.text[page.start:page.end] for page in document.pages] == [
        "Harbour lamps\n\nQuarterly review\nFor the board\n\nNotes: Speaker says hello",
        "退货政策\n\nLamps ship on Monday\nReturns within 30 days\nsecond line\n\nItem | Price\nDesk lamp | 199\n\n"
        "Grouped box",
        "Page\n\nA body no shape shows"]
    assert (document.file_type, document.title) == ("ppt", "港口灯 deck")
    assert [(image.name, image.page, image.alt, image.width) for image in document.images] == [
        ("slide 2 image 1", 2, "a red lamp", 80), ("slide 2 image 2", 2, None, 90), ("slide 2 image 3", 2, None, 70)]
    assert document.warnings == ["image slide 3 image 1 skipped: its picture is missing from the deck's picture store"]
    untitled = load(tmp_path, "untitled.ppt", ppt_bytes([[ppt_shape("Centred title", 6), ppt_shape("Body", 1)]]))
    assert (untitled.title, untitled.text) == ("Centred title", "Centred title\n\nBody")


def test_ppt_reads_footers_merged_cells_and_fields_as_powerpoint_shows_them(tmp_path: Path) -> None:
    """A slide's footer is its own text (a master's placeholder draws it); a merged cell leaves the places it
    covers empty, as the PPTX loader reads them; a field's '*' is left out, a formatted date's too."""
    date = ppt_record(0x1015, struct.pack("<i", 8) + "dd/MM/yyyy".encode("utf-16-le").ljust(128, b"\0"))
    document = load(tmp_path, "footer.ppt", ppt_bytes([[ppt_shape("Sales", 0), ppt_table(
        [["Region", "Q1", "Q2"], ["North+South", "", "12"], [None, "7", "9"], ["Total", "merged total", None]]),
        ppt_shape("Updated *", extra=date), ppt_shape("A star * stays")]], footer="Confidential - Harbour Co"))
    assert document.text == ("Sales\n\nRegion | Q1 | Q2\nNorth+South |  | 12\n | 7 | 9\nTotal | merged total |\n\n"
                             "Updated\n\nA star * stays\n\nConfidential - Harbour Co")


def test_ppt_keeps_a_slide_whose_notes_page_or_picture_is_broken(tmp_path: Path) -> None:
    def lose_the_notes_page(stream: bytearray) -> None:
        at = stream.index(struct.pack("<5I", 3, 0, 0, 512, 0))
        stream[at:at + 4] = struct.pack("<I", 999)

    deck = _ppt_patched(ppt_bytes([[ppt_shape("Slide body")]], notes=["A note"]), lose_the_notes_page)
    document = load(tmp_path, "notes.ppt", deck)
    assert (document.text, document.warnings) == (
        "Slide body", ["slide 1: its notes page cannot be read: its record (persist id 999) is missing"])
    bitmap = b"BM" + bytes(12) + struct.pack("<I", 40) + bytes(16)  # a bitmap header cut short
    broken = load(tmp_path, "bitmap.ppt", ppt_bytes([[ppt_shape("Kept")], [ppt_shape(picture=1)]], pictures=[bitmap]))
    assert broken.text == "Kept" and broken.warnings[0].startswith("image slide 2 image 1 skipped: not an image")


def test_ppt_reads_the_last_save_only(tmp_path: Path) -> None:
    """A fast save appends the slides it changed and a persist directory naming them: the slide an earlier save
    left in the stream is not read. Without its Current User stream the last save is the stream's last edit."""
    assert load(tmp_path, "saved.ppt", ppt_bytes([[ppt_shape("Current text")], [ppt_shape("Second")]],
                                                 stale="Stale text")).text == "Current text\n\nSecond"
    with olefile.OleFileIO(io.BytesIO(ppt_bytes([[ppt_shape("Current text")]], stale="Stale text"))) as package:
        stream = package.openstream("PowerPoint Document").read()
    assert load(tmp_path, "userless.ppt", compound_file({"PowerPoint Document": stream})).text == "Current text"


@pytest.mark.parametrize(("data", "reason"), [
    pytest.param(ppt_bytes([[ppt_shape("Secret")]], token=0xF3D1C4DF), r"^encrypted PPT \(password-protected\)",
                 id="encrypted"),
    pytest.param(ppt_bytes([[ppt_shape("Secret")]], session=True), r"^encrypted PPT \(password-protected\)",
                 id="encryption session"),
    pytest.param(compound_file({"PP40": b"old"}), "^a PowerPoint 4 presentation: its format is not read$", id="pp4"),
    pytest.param(compound_file({"WordDocument": b"x"}), "^not a PowerPoint presentation: an OLE file without a "
                 "PowerPoint Document stream$", id="word"),
    pytest.param(compound_file({"PowerPoint Document": bytes(64)}), "^corrupt PPT: it says nowhere where its last "
                 "save is$", id="no edit"),
    pytest.param(ppt_bytes([[ppt_shape("Hi")]]).replace(struct.pack("<HHI", 0xF, 0x03E8, 0)[2:4], b"\x00\x00", 1),
                 r"^corrupt PPT \(or a PowerPoint 95 file, which is not read\): its last save has no document$",
                 id="no document"),
    pytest.param(b"\xd0\xcf\x11\xe0 not really", "^corrupt PPT: ", id="broken ole"),
])
def test_ppt_that_cannot_be_read_is_refused_with_its_reason(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(LoadError, match=reason):
        load(tmp_path, "refused.ppt", data)


def _ppt_patched(data: bytes, patch: Callable[[bytearray], None]) -> bytes:
    """The deck ``data`` with its PowerPoint Document stream changed by ``patch``."""
    with olefile.OleFileIO(io.BytesIO(data)) as package:
        streams = {"/".join(name): package.openstream(name).read() for name in package.listdir()}
    stream = bytearray(streams["PowerPoint Document"])
    patch(stream)
    return compound_file({**streams, "PowerPoint Document": bytes(stream)})


def test_ppt_reads_each_slide_and_listed_text_once_and_stops_at_deep_groups(tmp_path: Path) -> None:
    """Hostile decks: a slide list naming one slide twice, text boxes all referring to one long text, groups
    nested past any drawing's depth, and edits whose chain of earlier saves loops."""
    def name_slide_one_twice(stream: bytearray) -> None:
        at = stream.index(struct.pack("<5I", 3, 0, 0, 257, 0))
        stream[at:at + 4] = struct.pack("<I", 2)

    twice = load(tmp_path, "twice.ppt", _ppt_patched(ppt_bytes([[ppt_shape("One")], [ppt_shape("Two")]]),
                                                     name_slide_one_twice))
    assert [twice.text[page.start:page.end] for page in twice.pages] == ["One", ""]
    referring = ppt_bytes([[ppt_shape(reference=0)] * 2000], listed=[[(1, "x" * 5000)]])
    assert load(tmp_path, "referring.ppt", referring).text == "x" * 5000
    nested = ppt_shape("Deep")
    for _ in range(200):
        nested = ppt_group([nested])
    assert load(tmp_path, "nested.ppt", ppt_bytes([[ppt_shape("Top"), nested]])).text == "Top"

    def loop_the_edits(stream: bytearray) -> None:  # the first save's edit names the last as the one before it
        header = struct.pack("<HHI", 0, 0x0FF5, 28)
        first = stream.index(header)
        stream[first + 16:first + 20] = struct.pack("<I", stream.rindex(header))

    assert load(tmp_path, "looped.ppt", _ppt_patched(ppt_bytes([[ppt_shape("Looped")]], stale="Old"),
                                                     loop_the_edits)).text == "Looped"


@pytest.mark.parametrize("deck", [
    pytest.param(ppt_bytes([[ppt_shape("x" * 60)] * 2]), id="text boxes"),
    pytest.param(ppt_bytes([[]], listed=[[(1, "x" * 200)]]), id="a placeholder's text no shape shows"),
    pytest.param(ppt_bytes([[ppt_shape("中" * 200, extra=ppt_record(0x0FD8, struct.pack("<I", 5)))]]),
                 id="one long text with a field"),
])
def test_ppt_over_the_text_limit_is_refused(tmp_path: Path, deck: bytes) -> None:
    path = tmp_path / "long.ppt"
    with pytest.raises(LoadError, match="max_document_chars"):
        loader_for(path).load(path, deck, Limits(max_chars=100))


# --- rtf --------------------------------------------------------------------------------------------------------

# As Word writes it: a font table, a style sheet, document information, a header and footer, formatting runs, a
# footnote (read where its mark stands), hidden text, a hyperlink field, Unicode escapes with their GBK fallback, and
# a table of two rows.
WORD_RTF = rb"""{\rtf1\adeflang1025\ansi\ansicpg1252\uc1\adeff31507\deff0\stshfdbch31505
{\fonttbl{\f0\fbidi \froman\fcharset0\fprq2{\*\panose 02020603050405020304}Times New Roman;}
{\f13\fbidi \fnil\fcharset134\fprq2{\*\panose 02010600030101010101}SimSun{\*\falt \'cb\'ce\'cc\'e5};}}
{\colortbl;\red0\green0\blue0;}
{\stylesheet{\ql \li0\ri0\widctlpar\wrapdefault \fs24\lang1033 \snext0 Normal;}{\s1\ql \li0\ri0\sb240\sa60\keepn
\outlinelevel0 \b\fs32 \sbasedon0 \snext0 heading 1;}{\*\cs10 \additive Default Paragraph Font;}}
{\*\latentstyles\lsdstimax376\lsdlockeddef0 {\lsdlockedexcept \lsdqformat1 \lsdpriority0 \lsdlocked0 Normal;}}
INFO
{\*\xmlnstbl {\xmlns1 http://schemas.microsoft.com/office/word/2003/wordml}}
\paperw11906\paperh16838\margl1800\margr1800 \sectd \linex0\endnhere
{\header \pard\plain \ql \li0\ri0\widctlpar {\insrsid1 Confidential header}\par}
{\footer \pard\plain \ql {\insrsid1 Page footer}\par}
\pard\plain \ltrpar\s1\ql \li0\ri0\sb240\sa60\keepn \rtlch\fcs1 \ab\af0\afs32 \ltrch\fcs0 \b\fs32 {\rtlch\fcs1 \af0
\ltrch\fcs0 \insrsid1 Returns policy}{\rtlch\fcs1 \af0 \ltrch\fcs0 \insrsid1 \par }
\pard\plain \ltrpar\ql \li0\ri0\widctlpar {\insrsid1 Customers may return goods within 30 days\emdash with a rec
eipt.}{\super\chftn {\footnote \pard\plain {\super\chftn } Footnote text.\par}}{\v hidden note}{ See }{\field{\*\fldinst
 {HYPERLINK "https://example.com/returns"}}{\fldrslt {\ul the returns page}}}{.\par}
\pard\plain \ltrpar\ql {\f13\lang2052\langfe2052\loch\af13\hich\af13\dbch\f13 \uc2\u36864\'cd\'cb\u36135\'bb\'f5}
{\rquote s\tab fine\line next\par}
\trowd \irow0\irowband0\ts11\trgaph108\trleft-108\trbrdrt\brdrs\brdrw10 \cellx4153\cellx8306\pard\plain \ltrpar\ql \li0
\ri0\widctlpar\intbl\wrapdefault {\insrsid1 Item\cell Price\cell }\pard\plain \ltrpar\ql \li0\ri0\widctlpar\intbl
\wrapdefault {\trowd \irow0\irowband0\ts11\cellx4153\cellx8306\row }
\pard\plain \ltrpar\ql \li0\ri0\widctlpar\intbl {Keyboard\par wireless\cell 199\cell }\pard\plain \intbl {\trowd
\cellx4153\cellx8306\row }
\pard\plain \ltrpar\ql {After the table.\par}
{\*\themedata 504b030414000600080000002100e9de0fbfff0000001c020000130000005b436f6e74656e745f54797065735d2e786d6c}
{\*\datastore 0105000002000000}}"""


def test_rtf_reads_paragraphs_tables_and_headings_as_word_writes_them(tmp_path: Path) -> None:
    info = rb"{\info{\title Returns Handbook}{\author Mei}{\operator Mei}{\creatim\yr2026\mo3\dy1}}"
    document = load(tmp_path, "handbook.rtf", WORD_RTF.replace(b"INFO", info))
    assert document.text == ("Returns policy\n\nCustomers may return goods within 30 days\u2014with a receipt. "
                             "Footnote text. See the returns page.\n\n退货\u2019s\tfine\nnext\n\nItem | Price\n"
                             "Keyboard wireless | 199\n\nAfter the table.")
    assert (document.file_type, document.title, document.images, document.warnings) == (
        "rtf", "Returns Handbook", [], [])
    assert load(tmp_path, "untitled.rtf", WORD_RTF.replace(b"INFO", b"")).title == "Returns policy"  # heading 1
    # LibreOffice writes a title in the ANSI code page, then in Unicode ({\upr ... {\*\ud ...}}).
    both = rb"{\info{\upr{\title \'3f\'3f}{\*\ud{\title \u36864\'3f\u36135\'3f}}}}"
    assert load(tmp_path, "libreoffice.rtf", WORD_RTF.replace(b"INFO", both)).title == "退货"


def test_rtf_table_nested_in_a_cell_reads_as_the_docx_loader_reads_one(tmp_path: Path) -> None:
    """Word writes a nested table's cells ended by \\nestcell and each of its rows' end, \\nestrow, inside a hidden
    group of its properties (nothing else in which is read): its cells read ' | ' (an empty one left out), its rows a
    space apart, in the outer cell."""
    nested_row = rb"{\*\nesttableprops\trowd\cellx1518{\shptxt Hidden}\cellx3030\nestrow}{\nonesttables\par}"
    rtf = (rb"{\rtf1\ansi\trowd\cellx4000\cellx8000\pard\intbl d\cell\pard\intbl Before\par"
           rb"\pard\intbl\itap2 e\nestcell f\nestcell" + nested_row + rb"\pard\intbl\itap2 \nestcell h\nestcell" +
           nested_row + rb"\pard\intbl\itap1 \cell\row\pard After.\par}")
    assert load(tmp_path, "nested.rtf", rtf).text == "d | Before e | f h\n\nAfter."
    # A table three deep: its rows a space in the cell holding it; \\nestcell in no table, a text box or a title,
    # and the characters that mark a nested table's ends in a file's own text (\\'1a), are blanks.
    deeper = (rb"{\rtf1\ansi\trowd\cellx8000\pard\intbl\itap2 n1\par\pard\intbl\itap3 x\nestcell y\nestcell"
              rb"{\*\nesttableprops\trowd\nestrow}{\nonesttables\par}\pard\intbl\itap2 \nestcell n3\nestcell"
              rb"{\*\nesttableprops\trowd\nestrow}{\nonesttables\par}\pard\intbl\itap1 a\'1ab\cell\row"
              rb"\pard Hello\nestcell World\par{\info{\title Alpha\nestcell Beta}}{\intbl x\nestcell}y\par}")
    document = load(tmp_path, "deeper.rtf", deeper)
    assert (document.text, document.title) == ("n1 x | y | n3 a b\n\nHello World\n\nx y", "Alpha Beta")
    # Rows ending with nothing between them end once: each end would be a character of text, and a file of
    # millions of them ran to the 10-million-token cap instead of stopping at the budget for words giving no text.
    ends = rb"{\rtf1\ansi\trowd\pard\intbl\itap2 A{\*\nesttableprops" + rb"\nestrow" * 2_000_000 + rb"}B\nestcell}"
    assert load(tmp_path, "ends.rtf", ends).warnings[0].startswith("RTF with too many control words for its text")


def test_rtf_notes_are_read_on_one_line_where_their_mark_stands(tmp_path: Path) -> None:
    """A footnote's or endnote's paragraphs run on where its mark stands, blanks made one space; a note inside a
    note with it; a note in a header is not read, as the header is not."""
    rtf = (rb"{\rtf1\ansi Returns within 30 days.{\super\chftn}{\footnote \pard\plain {\super\chftn }  Opened"
           rb"\par software {\footnote nested\par}excepted.\par} Keep the receipt.\par "
           rb"Warranty {\footnote\ftnalt {\super\chftn} Parts and labour.}\par"
           rb"{\header Header{\footnote Header note.}}After{\shp{\*\shpinst{\shptxt Box{\footnote boxed}}}}.\par"
           rb"{\info{\title Policy{\footnote tn}}}{\pict\pngblip 89504e47{\footnote zz}}}")
    document = load(tmp_path, "notes.rtf", rtf)
    assert document.text == ("Returns within 30 days. Opened software nested excepted. Keep the receipt.\n\n"
                             "Warranty Parts and labour.\n\nAfterBox boxed.")
    assert document.title == "Policy"


def test_rtf_decodes_bytes_in_the_code_page_of_their_font(tmp_path: Path) -> None:
    """WordPad writes Chinese as GBK bytes in a font of charset 134; a Shift-JIS trail byte may be a plain
    character; a lead byte without its trail byte is U+FFFD, not a lost paragraph."""
    wordpad = (rb"{\rtf1\ansi\ansicpg936\deff0\nouicompat\deflang1033\deflangfe2052{\fonttbl{\f0\fnil\fcharset134 "
               rb"\'cb\'ce\'cc\'e5;}{\f1\fnil\fcharset128 MS Gothic;}{\f2\fnil\fcharset204 Arial;}{\f3\fnil\fcharset0"
               rb" Calibri;}}" b"\r\n" rb"{\*\generator Riched20 10.0.19041}\viewkind4\uc1 " b"\r\n"
               rb"\pard\sa200\sl276\slmult1\f0\fs22\lang2052 \'c4\'e3\'ba\'c3\'a3\'ac\'ca\'c0" b"\r\n" rb"\'bd\'e7\par"
               b"\r\n" rb"\f1 \'83e\'83X\'83g\par \f2 \'cf\'f0\'e8\'e2\'e5\'f2\par \f3 caf\'e9 \'80\par \f0 broken \'c4"
               rb"\par \f9 default font\'a3\'a1\par \uc2000000000\u65 BCDEFGHIJKLMNOPQRSTUVWXYZ\par}")
    assert load(tmp_path, "wordpad.rtf", wordpad).text == (  # a fallback is 16 characters at most
        "你好，世界\n\nテスト\n\nПривет\n\ncafé €\n\nbroken \ufffd\n\ndefault font！\n\nARSTUVWXYZ")
    unknown = load(tmp_path, "odd.rtf", rb"{\rtf1\ansi\ansicpg99999 na\'efve\par" + b"".join(
        b"\\ansicpg%d \\'e9" % page for page in range(50000, 50040)) + b"}")
    assert unknown.text == "naïve\n\n" + "é" * 40 and unknown.warnings == [
        "RTF code page(s) 99999, 50000, 50001, 50002, 50003 unknown: their bytes are read as windows-1252"]


def test_rtf_pictures_come_with_alt_text_caption_and_span(tmp_path: Path) -> None:
    png, jpeg = image_bytes(size=(64, 48)), image_bytes("JPEG", size=(80, 60))
    hex_lines = b"\r\n".join(png.hex().encode()[i:i + 128] for i in range(0, 2 * len(png), 128))
    source = (rb"{\rtf1\ansi \pard Intro paragraph.\par \pard {\*\shppict{\pict{\*\picprop\shplid1025{\sp{\sn "
              rb"shapeType}{\sv 75}}{\sp{\sn wzDescription}{\sv Harbour map \u-10179 ?\u-8704 ?}}}\picw64\pich48"
              rb"\pngblip" b"\r\n"
              + hex_lines + rb"}}{\nonshppict{\pict\wmetafile8\picw64 0100}}\par \pard Figure 1: The harbour.\par "
              + rb"\pard Text with{\pict\jpegblip\bin" + str(len(jpeg)).encode() + b" " + jpeg + rb"} inline.\par "
              + rb"\pard {\pict\emfblip 0100}{\pict\pngblip 0g}\par }")
    document = load(tmp_path, "pictures.rtf", source)
    assert document.text == "Intro paragraph.\n\nFigure 1: The harbour.\n\nText with inline."
    harbour, inline = document.images
    assert (harbour.name, harbour.alt, harbour.caption, harbour.width) == (
        "picture 1", "Harbour map \U0001f600", "Figure 1: The harbour.", 64)  # as Word writes an emoji
    assert document.text[harbour.start:harbour.end] == "Figure 1: The harbour."
    assert (inline.name, inline.alt, inline.caption, inline.width) == ("picture 2", None, None, 80)
    assert document.text[inline.start:inline.end] == "Text with inline."
    assert document.warnings == ["image picture 3 skipped: an EMF metafile is not read",
                                 "image picture 4 skipped: its PNG data is not hexadecimal"]


def test_an_rtf_picture_after_a_table_spans_its_own_paragraph_and_one_in_a_cell_the_table(tmp_path: Path) -> None:
    """A table is closed by the paragraph after it, and the pictures of that paragraph were given to the table."""
    def picture(colour: tuple[int, int, int]) -> bytes:
        return rb"{\pict\pngblip\picw64\pich48 " + image_bytes(size=(64, 48), color=colour).hex().encode() + b"}"

    row = rb"\trowd\cellx2000\cellx4000 \pard\intbl Alice\cell \pard\intbl " + picture((220, 20, 20)) + rb"\cell \row "
    source = (rb"{\rtf1\ansi \pard Staff list.\par \trowd\cellx2000\cellx4000 \pard\intbl Name\cell \pard\intbl "
              rb"Photo\cell \row " + row + rb"\pard " + picture((20, 20, 220)) + rb" Org chart after the table.\par "
              rb"\pard " + picture((20, 220, 20)) + rb"\par \pard Figure 2: the board\par }")
    document = load(tmp_path, "staff.rtf", source)
    assert document.text == ("Staff list.\n\nName | Photo\nAlice\n\nOrg chart after the table.\n\n"
                             "Figure 2: the board")
    assert [document.text[image.start:image.end] for image in document.images] == [
        "Name | Photo\nAlice", "Org chart after the table.", "Figure 2: the board"]


def test_rtf_reads_what_pandoc_textedit_and_japanese_word_write(tmp_path: Path) -> None:
    """pandoc's cells each a group with a paragraph inside; a text box inside a sentence; a tracked deletion; list
    bullets (left out, as the DOCX loader leaves them); Shift-JIS whose trail byte is a backslash or a brace."""
    pandoc = (rb"{\rtf1\ansi{\pard Before.\par}{\trowd\cellx4320\cellx8640\trkeep\intbl{{\intbl {\pard \ql Name\par}"
              rb"\cell}{\intbl {\pard \ql Value\par}\cell}}\intbl\row}{\trowd\cellx4320\cellx8640\trkeep\intbl{{\intbl "
              rb"{\pard Alpha\par}\cell}{\intbl {\pard 1\par}\cell}}\intbl\row}{\pard After.\par}}")
    assert load(tmp_path, "pandoc.rtf", pandoc).text == "Before.\n\nName | Value\nAlpha | 1\n\nAfter."
    box = (rb"{\rtf1\ansi \pard Returns are accepted {\shp{\*\shpinst{\sp{\sn shapeType}{\sv 202}}{\shptxt \pard"
           rb"\plain Note: keep receipts.\par}}{\shprslt {\*\do\dobxcolumn Note}}} within 30 days.\par {\listtext\pard"
           rb"\plain \u61623\'b7\tab}First item. Keep this. {\deleted\revauthdel1 Removed text. }Added.\par}")
    assert load(tmp_path, "box.rtf", box).text == (
        "Returns are accepted Note: keep receipts.  within 30 days.\n\nFirst item. Keep this. Added.")
    japanese = rb"{\rtf1\ansi\ansicpg932{\fonttbl{\f0\fnil\fcharset128 MS Mincho;}}\f0 "
    escaped = load(tmp_path, "escaped.rtf", japanese + rb"\'95\\\'8e\'a6 \'83\{\'83\}\par}")
    raw = load(tmp_path, "raw.rtf", japanese + "表示 ソフト".encode("cp932") + rb"\par}")
    assert (escaped.text, raw.text) == ("表示 ボマ", "表示 ソフト")


def test_rtf_of_too_many_control_words_or_groups_keeps_the_text_before_them(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Each token costs Python about a microsecond: 90 MB of empty groups read as text would take a minute."""
    monkeypatch.setattr(rtf, "_FREE_TOKENS", 100)  # and 16 for each of the 6 characters of "Start."
    source = rb"{\rtf1 Start.\par " + b"{}" * 1000 + rb" Lost.\par}"
    document = load(tmp_path, "groups.rtf", source)
    assert document.text == "Start." and document.warnings == [
        f"RTF with too many control words for its text: read up to byte 212 of {len(source):,}"]
    monkeypatch.setattr(rtf, "_MAX_DEPTH", 5)
    deep = load(tmp_path, "deep.rtf", rb"{\rtf1 Top{{{{{{{\b deep}}}}}}} after.\par}}}" + b"\r\n")
    assert deep.text == "Top after." and deep.warnings == [
        "RTF groups nested more than 5 deep: their text is skipped"]
    assert load(tmp_path, "unclosed.rtf", rb"{\rtf1 {\b Unclosed").text == "Unclosed"
    cut = load(tmp_path, "cut.rtf", rb"{\rtf1 Before\par{\pict\pngblip\bin9999999999 xx}After\par}")
    assert cut.text == "Before" and cut.warnings == [  # (binary data to the end: said, not silently)
        r"RTF binary data (\bin) of 9,999,999,999 bytes at byte 46 runs past the end of the file: nothing after it "
        "is read"]
    monkeypatch.setattr(rtf, "_MAX_DEPTH", 1000)
    row = rb"\trowd\cellx1000\cellx2000\pard\plain\intbl{\f0\fs20 7\cell}\pard\plain\intbl{\f0\fs20 9\cell}\row "
    table = load(tmp_path, "numbers.rtf", rb"{\rtf1 " + row * 200 + rb"\pard End.\par}")  # 11 tokens a number
    assert table.text.endswith("7 | 9\n7 | 9\n\nEnd.") and table.warnings == []


def test_rtf_that_is_not_rtf_or_over_the_text_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"^not RTF: the file does not begin with \{\\rtf$"):
        load(tmp_path, "renamed.rtf", docx_bytes())
    with pytest.raises(LoadError, match="max_document_chars"):
        rtf.RtfLoader().load(tmp_path / "long.rtf", rb"{\rtf1 " + rb"\tab" * 200 + b"}", Limits(max_chars=100))
