"""Hostile files: nothing outside the source folder is read, and no file costs more than its budget.

Every file is generated here. Each loader case runs in a fresh process (``tests.load_probe``) so that its peak
memory can be held to a bound; the bounds and times are wide (several times what is needed here) but far below
what these files cost before: minutes to hours, and gigabytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

import ingestion.pipeline
import ingestion.scan
from ingestion.isolation import FileBudget
from ingestion.loaders import images as image_module
from ingestion.loaders import loader_for
from ingestion.loaders.base import Limits, LoadError, OverBudget
from ingestion.loaders.markdown import MarkdownLoader
from kb.containment import REFUSED
from kb.errors import ModelNotFoundError
from kb.storage.models import Chunk, Document, StoredImage
from tests.documents import (
    chinese_font_pdf,
    compound_file,
    doc_bytes,
    email_bytes,
    epub_bytes,
    image_bytes,
    msg_streams,
    odf_bytes,
    pdf_bytes,
    ppt_bytes,
    ppt_record,
    ppt_shape,
    tnef_bytes,
)
from tests.hostile import (
    SECRET,
    SECRET_COLOUR,
    attribute_bomb_deck,
    big_html,
    deck_rewritten,
    doc_bins_naming_one_page,
    doc_marking_one_picture,
    doc_of_notes,
    doc_pieces_cycling_over_pages,
    docx_external_entity,
    docx_long_text,
    docx_naming_one_note,
    docx_of_big_picture_and_broken_styles,
    docx_of_nested_drawings,
    docx_of_nested_tables,
    docx_of_notes,
    docx_relating_many_parts,
    docx_with_shared_picture,
    docx_xml_bomb,
    far_cells_xlsx,
    form_tree_pdf,
    front_matter_markdown,
    grey16_png,
    inline_images_pdf,
    many_scans_jpeg,
    masked_pictures_pdf,
    mime_nested,
    nested_groups_deck,
    nested_html,
    noise_png,
    nul_in_error_pdf,
    office_external_entity,
    one_picture_shown_often_deck,
    outside,
    ppt_declaring_fat_sectors,
    ppt_edits_naming_one_directory,
    ppt_listing_one_slide,
    ppt_naming_its_root,
    ppt_nested_groups,
    ppt_of_chained_entries,
    ppt_slides_sharing_one_drawing,
    ppt_summary_looping,
    repeated_contents_pdf,
    repeated_image_markdown,
    shared_mask_pdf,
    shared_resources_pdf,
    shared_stream_pdf,
    slides_sharing_one_notes_deck,
    undrawable_scan_pdf,
    xls_of_numbers,
    xlsx_chart_sheet_showing_one_picture,
    xlsx_linking_one_book,
    xlsx_listing_one_sheet,
    xlsx_with_print_area,
    xlsx_with_sheet_rows,
)
from tests.test_knowledge_base import write_docs

REPO = Path(__file__).resolve().parent.parent


def probe(path: Path, root: Path) -> dict:
    """Read and load ``path`` (in source folder ``root``) in a fresh process: what it gave and what it cost."""
    done = subprocess.run([sys.executable, "-m", "tests.load_probe", str(path), str(root)], capture_output=True,
                          text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert SECRET not in done.stdout + done.stderr
    return result


def _outside_references(folder: Path) -> str:
    outside(folder.parent / "outside")
    (folder / "link.png").symlink_to(folder.parent / "outside" / "secret.png")
    (folder / "page.html").write_text(
        "<p>A page that points outside.</p><img src='../outside/secret.png' alt='one'>"
        "<img src='../outside/no-such.png' alt='two'><img src='../../../../../../../../proc/kmsg' alt='three'>"
        "<img src='link.png' alt='four'><img src='..%2Foutside%2Fsecret.png' alt='five'>", encoding="utf-8")
    return "page.html"


def _outside_markdown(folder: Path) -> str:
    outside(folder.parent / "outside")
    (folder / "notes.md").write_text("# Notes\n\n![one](../outside/secret.png) ![two](../outside/no-such.png)\n"
                                     "![three](<../outside/secret.png>)\n", encoding="utf-8")
    return "notes.md"


def _write(name: str, data: Callable[[], bytes]) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        (folder / name).write_bytes(data())
        return name
    return build


def _repeated_image(folder: Path) -> str:
    (folder / "photo.png").write_bytes(noise_png(2000))
    (folder / "gallery.md").write_bytes(repeated_image_markdown("photo.png", 40))
    return "gallery.md"


def _xhtml_entity(folder: Path) -> str:
    secret, _ = outside(folder.parent / "outside")
    (folder / "entity.xhtml").write_text(f'<?xml version="1.0"?><!DOCTYPE html [<!ENTITY leak SYSTEM '
                                         f'"file://{secret}">]><html><body><p>entity: &leak; end</p></body></html>',
                                         encoding="utf-8")
    return "entity.xhtml"


def _docx_entity(folder: Path) -> str:
    secret, _ = outside(folder.parent / "outside")
    (folder / "entity.docx").write_bytes(docx_external_entity(secret))
    return "entity.docx"


def _office_entity(kind: str) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        secret, _ = outside(folder.parent / "outside")
        (folder / f"entity.{kind}").write_bytes(office_external_entity(kind, secret))
        return f"entity.{kind}"
    return build


def _epub_entity(folder: Path) -> str:
    secret, picture = outside(folder.parent / "outside")
    chapter = (f'<!DOCTYPE html [<!ENTITY leak SYSTEM "file://{secret}">]><html><body><p>entity: &leak; end</p>'
               f'<img src="file://{picture}"/><img src="../../../outside/secret.png"/></body></html>')
    (folder / "entity.epub").write_bytes(epub_bytes({"a.xhtml": chapter}))
    return "entity.epub"


def _many_refused(folder: Path) -> str:
    (folder / "refs.html").write_text("<p>Many references.</p>" + "".join(
        f"<img src='../outside/x{number}.png'>" for number in range(5000)), encoding="utf-8")
    return "refs.html"


# (builder, reason expected or None for a file that loads, peak memory bound in MB, seconds bound)
CASES = {
    "html images outside the folder": (_outside_references, None, 400, 30),
    "markdown images outside the folder": (_outside_markdown, None, 400, 30),
    "markdown front matter of 200 KB": (_write("front.md", front_matter_markdown), None, 400, 30),
    "markdown of 2 MB of unclosed '!['": (_write("brackets.md", lambda: b"![" * 2**20), None, 400, 30),
    "html nested 3000 deep with images": (_write("deep.html", lambda: nested_html(3000)), None, 400, 30),
    "40 references to one large image": (_repeated_image, None, 500, 30),
    "docx with 40 pictures sharing one part": (
        _write("shared.docx", lambda: docx_with_shared_picture(40, noise_png(1500))), None, 500, 30),
    "docx whose xml expands to 50 MB": (_write("bomb.docx", lambda: docx_xml_bomb(50)), "XML bomb", 400, 30),
    "docx xml bomb in a part not named .xml": (
        _write("renamed.docx", lambda: docx_xml_bomb(50, "document.bin")), "XML bomb", 400, 30),
    "docx xml bomb behind 2 MB of blanks": (
        _write("blanks.docx", lambda: docx_xml_bomb(50, lead=2 * 2**20)), "XML bomb", 400, 30),
    "docx of 300 MB of text in runs of 1 MB": (
        _write("text.docx", lambda: docx_long_text(300)), "bytes of text", 400, 30),
    "xlsx of 300,000 rows each with a cell in the last column": (
        _write("far.xlsx", lambda: far_cells_xlsx(300_000)), None, 400, 30),
    "xlsx whose sheet holds 2.1 million empty rows": (
        _write("rows.xlsx", lambda: xlsx_with_sheet_rows(b"<row/>" * 2_100_000)), "XML bomb", 400, 30),
    "xlsx listing one link of 20,000 cells 300 times": (
        _write("links.xlsx", lambda: xlsx_linking_one_book(300, 20_000)), None, 400, 30),
    "xlsx whose print area is 250,000 letters": (
        _write("area.xlsx", lambda: xlsx_with_print_area(250_000)), None, 400, 30),
    "xlsx chart sheet drawing one 50 MB picture 30 times": (
        _write("chart.xlsx", lambda: xlsx_chart_sheet_showing_one_picture(30, 50)), None, 400, 30),
    "xlsx listing its sheet 600 times, with 20,000 relationships": (
        _write("listed.xlsx", lambda: xlsx_listing_one_sheet(600, 20_000)), None, 400, 30),
    "eml of multiparts nested 5000 deep": (_write("deep.eml", lambda: mime_nested(5000)), "MIME bomb", 400, 30),
    "eml attaching a docx whose xml expands to 50 MB": (_write("bomb.eml", lambda: email_bytes(attachments=[
        ("bomb.docx", docx_xml_bomb(50))])), None, 400, 30),
    "pptx of groups nested 3000 deep": (_write("deep.pptx", lambda: nested_groups_deck(3000)), None, 400, 30),
    "pptx with a part of 2.1 million elements": (_write("bomb.pptx", lambda: deck_rewritten(
        {}, {"ppt/notes.bin": b"<a/>" * 2_100_000})), "XML bomb", 400, 30),
    "pptx whose slide holds 4.2 million attributes": (_write("attributes.pptx", lambda: attribute_bomb_deck(
        4_200_000)), "attributes (an XML bomb?)", 400, 30),
    "pptx showing one picture part of 100 MB 1000 times": (_write("shown.pptx", lambda: one_picture_shown_often_deck(
        1000, 100)), None, 600, 30),
    "16-bit grey png of 64 megapixels": (_write("grey.png", lambda: grey16_png(8000)), None, 700, 60),
    "jpeg of 20,000 scans": (_write("scans.jpg", lambda: many_scans_jpeg(8000, 20_000)),
                             "JPEG of more than 100 scans", 400, 30),
    "20 MB of simple html": (_write("big.html", lambda: big_html(20)), "max_html_mb", 400, 30),
    "pdf of 2000 pages sharing a 1 MB stream": (
        _write("shared.pdf", lambda: shared_stream_pdf(2000, 1, text=True)), None, 500, 60),
    "pdf of a form naming itself 30 times (30^8 paths)": (_write("forms.pdf", lambda: form_tree_pdf(30)), None, 400,
                                                          30),
    "pdf of 2000 pages sharing resources of 20000 images": (
        _write("catalogue.pdf", lambda: shared_resources_pdf(2000, 20_000)), None, 500, 60),
    "pdf listing one 20 MB drawing 250 times": (
        _write("listed.pdf", lambda: repeated_contents_pdf(250, 20)), None, 500, 30),
    "pdf drawing 30 forms of 30 MB each": (_write("forms30.pdf", lambda: repeated_contents_pdf(30, 30, forms=True)),
                                           None, 500, 30),
    "pdf of 2000 pages in a Chinese font of 7000 characters": (
        _write("manual.pdf", lambda: chinese_font_pdf(2000, 7000)), None, 500, 30),
    "pdf of 30 pictures of 4,900 px pypdf cannot decode": (
        _write("failing.pdf", lambda: masked_pictures_pdf(30, 4900)), None, 500, 30),
    "pdf of 10 small pictures with soft masks of 6,000 px": (
        _write("masked.pdf", lambda: masked_pictures_pdf(10, 200, 6000)), None, 400, 30),
    "pdf of 12 small pictures with soft masks whose soft masks are 7,900 px": (
        _write("chained.pdf", lambda: masked_pictures_pdf(12, 200, (200, 7900))), None, 400, 30),
    "pdf of 300 icons sharing one soft mask of 70 MB": (
        _write("icons.pdf", lambda: shared_mask_pdf(300, 70)), None, 400, 30),
    "pdf of 20 pages each holding an inline image of 7,000 px": (
        _write("inline.pdf", lambda: inline_images_pdf(20, 7000)), None, 500, 60),
    **{f"pdf page pdfium would draw for minutes ({kind})": (_write(f"{kind}.pdf", lambda kind=kind: undrawable_scan_pdf(
        kind)), None, 400, 30) for kind in ("tiles", "scans", "jbig2", "softmask", "inline", "glued", "seen",
                                            "tinted")},
    "xhtml external entity": (_xhtml_entity, None, 400, 30),
    "docx external entity": (_docx_entity, None, 400, 30),
    "xlsx external entity": (_office_entity("xlsx"), "XLSX declares XML entities, which are refused", 400, 30),
    "pptx external entity": (_office_entity("pptx"), None, 400, 30),
    "odt external entity": (_office_entity("odt"), "ODT declares a DTD or XML entities, which are refused", 400, 30),
    "epub chapter naming files beyond the book, by entity and by image": (_epub_entity, None, 400, 30),
    "epub of 2000 chapters each showing one 40 MB picture part": (_write("shown.epub", lambda: epub_bytes(
        {f"c{number}.xhtml": '<p>Page</p><img src="p.png"/>' for number in range(2000)},
        files={"OEBPS/p.png": noise_png(1000) + bytes(40 * 2**20)})), None, 500, 30),
    "ods repeating one valued cell over 16,384 columns and a million rows": (_write("repeated.ods", lambda: odf_bytes(
        "ods", '<table:table><table:table-row table:number-rows-repeated="1048576"><table:table-cell '
        'table:number-columns-repeated="16384"><text:p>x</text:p></table:table-cell></table:table-row></table:table>'
    )), "max_document_chars", 400, 30),
    "5000 refused image references": (_many_refused, None, 400, 30),
    "xls of 2 million numbers": (_write("numbers.xls", lambda: xls_of_numbers(8000, 250)), "max_document_chars", 400,
                                 30),
    "csv of one row of 9.9 million empty values": (_write("commas.csv", lambda: b"," * 9_900_000), None, 400, 30),
    "csv of a quote never closed over 6 MB": (_write("quote.csv", lambda: b'id,note\n1,"' + b"x\n" * 3_000_000), None,
                                               400, 30),
    "doc of 300,000 pieces": (_write("pieces.doc", lambda: doc_bytes([("Piece\x07", True)] * 300_000)), None, 400, 30),
    "msg of 5,000 attachments": (_write("many.msg", lambda: compound_file(msg_streams("Many", attachments=[
        (f"note{number}.txt", b"note") for number in range(5000)]))), None, 400, 30),
    "doc whose summary holds a vector of 4 billion empty values": (_write("summary.doc", lambda: doc_bytes(
        [("Kept.\r", True)], title="退货政策").replace(struct.pack("<II", 30, 12), struct.pack("<II", 0x1000, 2**32 - 1))),
        None, 400, 30),
    "eml wrapping 100,000 files in winmail.dat": (_write("wrapped.eml", lambda: email_bytes(attachments=[
        ("winmail.dat", tnef_bytes([(f"f{number}.txt", b"x" * 50) for number in range(100_000)]))])), None, 400, 30),
    "mbox of 7 million messages of no header": (_write("empty.mbox", lambda: b"From x Mon 1\n" * (7 * 2**20)), None,
                                                400, 30),
    "doc whose 3 million picture characters name one picture": (_write("marks.doc", lambda: doc_marking_one_picture(
        3_000_000)), None, 400, 30),
    "doc whose 300,000 bin table entries all name one page": (_write("bins.doc", lambda: doc_bins_naming_one_page(
        300_000)), None, 400, 30),
    "doc whose 40 pieces come back to each of 5,000 formatting pages": (_write("cycling.doc", lambda: (
        doc_pieces_cycling_over_pages(5000, 40))), None, 400, 30),
    "notes: doc of 200,000 footnotes": (_write("notes.doc", lambda: doc_of_notes(200_000)), None, 400, 30),
    "notes: docx referencing one footnote of a million characters 100,000 times": (_write(
        "note.docx", lambda: docx_naming_one_note(100_000, 1_000_000)), None, 400, 30),
    "notes: docx naming its footnotes part 200 times, of 600,000 notes": (_write(
        "rels.docx", lambda: docx_of_notes(600_000, 200)), None, 600, 30),
    "notes: docx of 1,900,000 notes, one referenced": (_write("many.docx", lambda: docx_of_notes(1_900_000, 1)), None,
                                                       1200, 30),
    "notes: rtf of footnotes nested 900 deep around 5 million characters, then 200,000 more": (_write(
        "notes.rtf", lambda: b"{\\rtf1\\ansi Before" + b"{\\footnote inner " * 900 + b"x" * 5_000_000 + b"}" * 900 +
        b"{\\footnote n}" * 200_000 + b"\\par}"), None, 400, 30),
    "ppt listing one slide of a million characters 100,000 times": (_write("listed.ppt", lambda: ppt_listing_one_slide(
        100_000, 1_000_000)), None, 400, 30),
    "ppt of one text box of 3.3 million Chinese characters and a field": (_write("field.ppt", lambda: ppt_bytes([[
        ppt_shape("中" * 3_300_000, extra=ppt_record(0x0FD8, struct.pack("<I", 5)))]])), None, 400, 30),
    "ppt whose 20,000 earlier saves all name one 6 MB persist directory of zero words": (_write(
        "edits.ppt", lambda: ppt_edits_naming_one_directory(20_000, 6)), "its last save has no document", 400, 30),
    "ppt of 2,000 slides sharing one drawing of 250 shapes of 4,095 properties": (_write(
        "drawing.ppt", lambda: ppt_slides_sharing_one_drawing(2000, ppt_record(0xF004, ppt_record(
            0xF00B, struct.pack("<HI", 1, 0) * 4095, 4095), container=True) * 250)), None, 400, 30),
    "ppt of groups nested 800,000 deep": (_write("nested.ppt", lambda: ppt_nested_groups(800_000)), None, 400, 30),
    "ppt whose summary declares 300 MB on a sector chained to itself": (_write("looping.ppt", lambda: (
        ppt_summary_looping(300 * 2**20))), None, 400, 30),
    "ppt whose header declares 40,000 FAT sectors, its DIFAT naming itself": (_write("fat.ppt", lambda: (
        ppt_declaring_fat_sectors(40_000))), "declares 40,000 FAT sectors in a file of 5 sectors", 400, 30),
    "ppt of 1,500 streams chained as right siblings": (_write("chained.ppt", lambda: ppt_of_chained_entries(1500)),
                                                       None, 400, 30),
    "ppt whose stream names the root entry as its sibling": (_write("root.ppt", ppt_naming_its_root), None, 400, 30),
    "ppt of 100,000 pictures showing one": (_write("shown.ppt", lambda: ppt_bytes(
        [[ppt_shape(picture=1)] * 100_000], pictures=[image_bytes("PNG", (80, 60))])), None, 400, 30),
    "rtf of 60 MB of empty groups": (_write("groups.rtf", lambda: rb"{\rtf1 Start.\par " + b"{}" * (30 * 2**20) + b"}"),
                                     None, 400, 30),
    "rtf nested 20 million groups deep": (_write("deep.rtf", lambda: rb"{\rtf1 Top." + b"{" * (20 * 2**20)), None, 400,
                                          30),
    "rtf of a 60 MB binary picture and 8 MB of one hex picture": (_write("pictures.rtf", lambda: (
        rb"{\rtf1 {\pict\pngblip\bin62914560 " + bytes(60 * 2**20) + rb"}{\pict\jpegblip " + b"ff" * (4 * 2**20)
        + rb"} After.}")), None, 500, 30),
    "pptx of 20 slides sharing notes of 300,000 paragraphs": (
        _write("notes.pptx", lambda: slides_sharing_one_notes_deck(20, 300_000)), None, 400, 30),
    "docx of 250 drawings nested around 100,000 pictures": (
        _write("nested.docx", lambda: docx_of_nested_drawings(250, 100_000)), None, 400, 30),
    "docx of 83 tables nested around 37 MB of words": (
        _write("tables.docx", lambda: docx_of_nested_tables(83, 37)), "max_document_chars", 400, 30),
    "docx of a 300 MB picture part and a broken styles part": (
        _write("broken.docx", lambda: docx_of_big_picture_and_broken_styles(300)), None, 850, 30),
    "docx relating 20,000 parts and one of them 100,000 times more": (
        _write("related.docx", lambda: docx_relating_many_parts(20_000, 100_000)), None, 400, 30),
    "docx of a chain of 3,000 related parts": (
        _write("chain.docx", lambda: docx_relating_many_parts(3_000, 0, chained=True)), None, 400, 30),
}


@pytest.mark.parametrize("case", CASES)
def test_loaders_stay_in_the_folder_and_within_budget(case: str, tmp_path: Path) -> None:
    build, reason, max_mb, max_seconds = CASES[case]
    folder = tmp_path / "source"
    folder.mkdir()
    result = probe(folder / build(folder), folder)
    if reason is None:
        assert result["reason"] is None, result["reason"]
    else:
        assert reason in (result["reason"] or ""), result["reason"]
    assert result["max_rss_mb"] < max_mb, result["max_rss_mb"]
    assert result["seconds"] < max_seconds, result["seconds"]
    assert SECRET not in result["text"] and not any(SECRET in warning for warning in result["warnings"])
    if "outside" in case:
        refused = [warning for warning in result["warnings"] if warning.endswith(REFUSED)]
        assert result["images"] == [] and len(refused) == len(result["warnings"]) >= 2
        # An existing file and a missing one outside the folder are refused in the very same words.
        assert {warning.split(" skipped: ")[1] for warning in refused} == {REFUSED}
    if case in ("40 references to one large image", "docx with 40 pictures sharing one part",
                "16-bit grey png of 64 megapixels"):
        assert len(result["images"]) == 1
    if case == "pdf of 2000 pages sharing a 1 MB stream":
        assert result["text"].count("A page drawn from a shared stream") == 2000
    if case.startswith("pdf of 30 pictures"):
        assert result["text"].count("Masked page") == 30 and len(result["warnings"]) == 21
    if case.startswith("pdf of 12 small pictures"):
        assert result["text"].count("Masked page") == 12 and result["images"]
    if case.startswith("docx of 250 drawings nested"):  # each picture counted once, from its own drawing
        assert len(result["images"]) == 1 and result["warnings"] == [
            "99800 image(s) beyond the first 200 skipped (at most 200 images per document, repeats included)"]
    if case.startswith("pptx of 20 slides sharing notes"):  # read with the first slide, once
        assert result["text"].count("Shared note") == 1 and result["text"].count("Slide ") == 20
    if case == "pptx of groups nested 3000 deep":  # the slide too deep to parse is lost, not the deck
        assert "Sales by region" in result["text"] and "Excessive depth" in result["warnings"][0]
    if case.startswith("pdf of 20 pages each"):
        assert result["text"].count("Inline page") == 20
    if case.startswith("pdf of 10 small pictures"):
        assert result["text"].count("Masked page") == 10 and len(result["images"]) == 10
    if case.startswith("pdf page pdfium would draw"):
        assert result["text"] == "Hello text page one" and result["images"] == []
    if case.startswith("epub chapter naming"):
        assert result["images"] == [] and "entity: &leak; end" in result["text"] and len(result["warnings"]) == 2
    if case.startswith("csv of a quote"):  # the rest of the file is one value, not lost
        assert result["text"] == "id | note\nid: 1 | note: " + " ".join(["x"] * 3_000_000) and not result["warnings"]
    if case.startswith("epub of 2000"):
        assert result["text"].count("Page") == 2000 and len(result["images"]) == 1
    if case.startswith("eml attaching"):
        assert result["text"].endswith("Attachment: bomb.docx\n\n(not read)")
        assert result["warnings"][0].startswith("attachment bomb.docx skipped: over budget: DOCX XML holds more than")
    if case.startswith("doc of"):
        assert result["text"].count("Piece") == 300_000 and result["warnings"] == []
    if case.startswith("msg"):
        assert result["text"].count("Attachment: note") == 1000 and result["text"].count("(not read)") == 800
        assert result["warnings"][:1] == [
            "only the first 1000 of 5000 attachments were looked at"]
    if case.startswith("doc whose summary"):
        assert result["text"] == "Kept."
    if case.startswith("mbox"):
        assert result["text"] == "" and result["warnings"][-3:] == [
            "message 20 skipped: no header lines", "7,338,032 message(s) past the first 2000 pages not read "
            "(max_pages)", "1980 more part(s) of the message skipped"]
    if case.startswith("doc whose 3 million"):
        assert result["text"] == "Start  end." and len(result["images"]) == 1
        assert result["warnings"] == ["pictures past the first 10,000 were not looked at", "9800 image(s) beyond "
                                      "the first 200 skipped (at most 200 images per document, repeats included)"]
    if case.startswith("doc whose 40 pieces"):
        assert result["text"] == "" and result["warnings"] == []
    if case.startswith("doc whose 300,000"):
        assert (result["text"], len(result["images"]), result["warnings"]) == (
            "", 1, ["picture characters past the first 100,000 were not looked at"])
    if case.startswith("ppt listing"):
        assert result["text"] == "y" * 1_000_000 and result["warnings"] == [
            "only the first 2000 of 100001 slides were read (max_pages)"]
    if case.startswith("ppt of one text box"):
        assert result["text"] == "中" * 3_300_000 and result["warnings"] == []
    if case.startswith("ppt of 2,000 slides"):
        assert result["text"] == "" and result["warnings"] == [
            "slides 2 to 2000 not read: its records refer to each other more often than its size allows"]
    if case.startswith("ppt of groups"):
        assert result["text"] == "Top" and result["warnings"] == []
    if case.startswith("ppt of 100,000"):
        assert len(result["images"]) == 1 and result["warnings"] == [
            "99800 image(s) beyond the first 200 skipped (at most 200 images per document, repeats included)"]
    if case.startswith("rtf"):
        assert result["text"] in ("Start.", "Top.", "After."), result["text"][:100]
        reasons = {"rtf of 60 MB of empty groups": ["RTF with too many control words for its text"],
                   "rtf nested 20 million groups deep": ["RTF groups nested more than 1,000 deep",
                                                         "RTF with too many control words for its text"]}
        assert [warning.split(":")[0] for warning in result["warnings"]] == reasons.get(
            case, ["image picture 1 skipped", "image picture 2 skipped"]), result["warnings"]
    if case.startswith("notes: doc of"):
        assert result["text"].count("Note.") == 10_000
        assert result["warnings"] == ["notes past the first 10,000 of a kind were not read"]
    if case.startswith("notes: docx referencing"):
        assert result["text"] == "x" * 1_000_000
    if case.startswith(("notes: docx naming", "notes: docx of")):
        assert result["text"] == "Hello"
    if case.startswith("notes: rtf"):
        assert result["text"] == "Before" + " inner" * 900 + " " + "x" * 5_000_000 + " n" * 200_000
    if case == "5000 refused image references":
        assert len(result["warnings"]) == 21 and result["warnings"][-1] == "4980 more image(s) skipped"


def test_each_distinct_picture_is_decoded_once_and_repeats_count(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[str] = []
    original = image_module._decode

    def counting(image, data, name, *args, **kwargs):  # type: ignore[no-untyped-def]
        decoded.append(name)
        return original(image, data, name, *args, **kwargs)

    monkeypatch.setattr(image_module, "_decode", counting)
    picture = image_bytes("PNG", size=(200, 150), color=(10, 90, 200))
    (tmp_path / "p.png").write_bytes(picture)
    (tmp_path / "copy.png").write_bytes(picture)  # the same bytes under another name
    (tmp_path / "g.md").write_bytes(repeated_image_markdown("p.png", 20) + b"![copy](copy.png)\n")
    gallery = loader_for("g.md").load(tmp_path / "g.md", (tmp_path / "g.md").read_bytes(), Limits(max_images=5))
    assert decoded == ["p.png"] and len(gallery.images) == 1
    # The picture is shown 21 times: five count against max_images, the 16 after are dropped and said so.
    assert gallery.warnings == ["16 image(s) beyond the first 5 skipped (at most 5 images per document, repeats "
                                "included)"]
    decoded.clear()
    data = docx_with_shared_picture(30, picture)
    document = loader_for("s.docx").load(tmp_path / "s.docx", data)
    assert len(decoded) == 1 and len(document.images) == 1
    # Past the limit, a DOCX's pictures were passed over unsaid.
    capped = loader_for("s.docx").load(tmp_path / "s.docx", data, Limits(max_images=5))
    assert capped.warnings == ["25 image(s) beyond the first 5 skipped (at most 5 images per document, repeats "
                               "included)"]


_DEEP = "<a>" * 1200 + "</a>" * 1200
_CONTAINER = ('<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
              '<rootfiles>{}<rootfile full-path="OEBPS/content.opf"/></rootfiles></container>')


@pytest.mark.parametrize(("name", "build", "part"), [
    ("container.epub", lambda: epub_bytes({"a.xhtml": "<p>Deep.</p>"}, files={
        "META-INF/container.xml": _CONTAINER.format(_DEEP)}), "META-INF/container.xml"),
    ("package.epub", lambda: epub_bytes({"a.xhtml": "<p>Deep.</p>"}, title=_DEEP), "OEBPS/content.opf"),
    ("content.odt", lambda: odf_bytes("odt", f"<text:p>Deep.</text:p>{_DEEP}"), "content.xml"),
])
def test_xml_nested_past_256_levels_is_refused_as_corrupt(tmp_path: Path, name: str, build: Callable[[], bytes],
                                                         part: str) -> None:
    """1,200 levels in 1 KB: walking the tree the standard library's parser built raised a RecursionError, an
    unexpected failure, where lxml's parts were refused past 256 levels."""
    with pytest.raises(LoadError, match=f"{part} nests XML more than 256 deep"):
        loader_for(name).load(tmp_path / name, build())


def test_epub_chapters_that_do_not_start_as_xml_are_counted_against_the_book_s_budget(tmp_path: Path) -> None:
    """The package check passes over parts that do not start with '<' (pictures), and a chapter is read as HTML
    whatever it starts with: 100 chapters of 5 MB of hidden text after an "x" were read whole (77 s, 419 MB)."""
    hidden = b'x<html><body><p>Seen.</p><div style="display:none">' + b"word " * 1000 + b"</div></body></html>"
    names = [f"c{number}.xhtml" for number in range(3)]
    book = epub_bytes(dict.fromkeys(names, ""), files={f"OEBPS/{name}": hidden for name in names})
    assert loader_for("b.epub").load(tmp_path / "b.epub", book, Limits(max_chars=5000)).text.count("Seen.") == 3
    with pytest.raises(OverBudget, match="EPUB XML holds more than 4,000 bytes of text"):
        loader_for("b.epub").load(tmp_path / "b.epub", book, Limits(max_chars=1000))


def test_a_page_s_picture_paths_are_resolved_once_each_and_within_a_budget(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Each reference was resolved again, a system call per folder it names: 2,400 references of one picture
    through a link named 2,040 times took 24 s. A path is resolved once; past the budget, a picture is skipped."""
    resolved, realpath = [], os.path.realpath

    def counted(path: str, **options: bool) -> str:
        resolved.append(str(path))
        return realpath(path, **options)

    monkeypatch.setattr(os.path, "realpath", counted)
    monkeypatch.setattr(image_module, "_MAX_RESOLVED_CHARS", len(str(tmp_path / "p999.png")) * 5)
    (tmp_path / "p.png").write_bytes(image_bytes("PNG", size=(60, 40)))
    page = "".join(f"![a](p.png) ![b](p{number}.png)\n\n" for number in range(100)).encode()
    document = loader_for("g.md").load(tmp_path / "g.md", page, root=tmp_path)
    assert len(document.images) == 1 and resolved.count(str(tmp_path / "p.png")) <= 2  # was 100: once a reference
    assert any("names more than" in warning and "characters of file paths" in warning
               for warning in document.warnings), document.warnings


def _swap_after_scan(monkeypatch: pytest.MonkeyPatch, swaps: Callable[[], None]) -> None:
    """Make the ingest's scan run ``swaps`` right after listing the folder: between the scan and the reads."""
    scan = ingestion.pipeline.scan

    def scan_then_swap(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = scan(*args, **kwargs)
        swaps()
        return result

    monkeypatch.setattr(ingestion.pipeline, "scan", scan_then_swap)


def test_folders_nested_past_the_depth_limit_are_failed_not_walked(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each folder is opened name by name from the source's root, so a chain thousands of folders deep would cost
    the square of its depth: folders past ``MAX_DEPTH`` are failed, and what was indexed from them is kept."""
    monkeypatch.setattr(ingestion.scan, "MAX_DEPTH", 3)
    folder = tmp_path / "src" / "a" / "b" / "c"
    (folder / "d" / "e").mkdir(parents=True)
    (folder / "kept.txt").write_text("three deep", encoding="utf-8")
    (folder / "d" / "e" / "deep.txt").write_text("five deep", encoding="utf-8")
    found = ingestion.scan.scan(tmp_path / "src")
    assert [f.relpath for f in found.files] == ["a/b/c/kept.txt"]
    reason = "folder more than 3 levels deep (not read)"
    assert [(f.path, f.reason) for f in found.failed] == [(str(folder / "d"), reason)]
    assert not found.covers(str(folder / "d" / "e" / "deep.txt"))


@pytest.mark.parametrize("isolation", [True, False], ids=["worker", "in-process"])
def test_files_swapped_for_links_and_fifos_after_the_scan_are_refused(
        isolation: bool, kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_docs(tmp_path / "docs", {"good.txt": "An ordinary note about lighthouses.",
                                             "a.txt": "soon a link", "b.txt": "soon a fifo", "c.md": "soon a link",
                                             "d.txt": "soon replaced", "e.txt": "soon a device"})
    secret, _ = outside(tmp_path / "outside")
    os.mkfifo(tmp_path / "outside" / "fifo")

    def swaps() -> None:
        (folder / "a.txt").unlink()
        (folder / "a.txt").symlink_to(secret)
        (folder / "b.txt").unlink()
        os.mkfifo(folder / "b.txt")  # an open that blocked on it hung the run for good
        (folder / "c.md").unlink()
        (folder / "c.md").symlink_to(tmp_path / "outside" / "fifo")
        (folder / "d.new").write_text("a new file under the old name", encoding="utf-8")
        (folder / "d.new").replace(folder / "d.txt")  # another inode: not the file the scan saw
        (folder / "e.txt").unlink()
        (folder / "e.txt").symlink_to("/dev/zero")

    _swap_after_scan(monkeypatch, swaps)
    kb = kb_factory(file_isolation=isolation)
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the ingest hung on a swapped file"))
    signal.alarm(120)
    try:
        report = kb.ingest(folder)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert [Path(path).name for path in report.added] == ["good.txt"]
    assert {Path(f.path).name: f.reason for f in report.failed} == dict.fromkeys(
        ["a.txt", "b.txt", "c.md", "d.txt", "e.txt"], REFUSED)
    _assert_nothing_outside(kb)
    monkeypatch.undo()
    (folder / "b.txt").unlink()
    report = kb.ingest(folder)  # the next run sees the folder as it is now: links refused, the new file read
    assert [Path(path).name for path in report.added] == ["d.txt"] and not report.failed
    assert {Path(f.path).name: f.reason for f in report.skipped} == dict.fromkeys(["a.txt", "c.md", "e.txt"],
                                                                                 f"symlink: {REFUSED}")
    _assert_nothing_outside(kb)


def _assert_nothing_outside(kb) -> None:  # type: ignore[no-untyped-def]
    """No document, chunk, warning or stored picture of ``kb`` holds anything from outside its folders."""
    with kb.store.sessions() as session:
        texts = list(session.scalars(select(Chunk.text))) + list(session.scalars(select(Document.text)))
        warnings = [w for ws in session.scalars(select(Document.warnings)) for w in ws or []]
        errors = [e or "" for e in session.scalars(select(Document.error))]
        pictures = list(session.scalars(select(StoredImage.sha256)))
    assert not any(SECRET in text for text in texts + warnings + errors)
    secret_picture = image_bytes("PNG", size=(120, 90), color=SECRET_COLOUR)
    assert hashlib.sha256(secret_picture).hexdigest() not in pictures


@pytest.mark.databases("sqlite", "postgresql")
def test_a_failure_whose_reason_holds_a_nul_costs_only_its_file(kb_factory, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", {"a_first.txt": "The lantern room opens at dawn.",
                                          "z_last.txt": "The keeper logs every ship."})
    (docs / "report.pdf").write_bytes(pdf_bytes([["The harbour fee is twelve crowns."]]))
    kb = kb_factory()
    assert len(kb.ingest(docs).added) == 3
    (docs / "report.pdf").write_bytes(nul_in_error_pdf())  # a good document's file replaced: its content is kept
    (docs / "new.pdf").write_bytes(nul_in_error_pdf())
    (docs / "b_new.txt").write_text("The fog bell rings twice.", encoding="utf-8")
    report = kb.ingest(docs)
    assert [Path(path).name for path in report.added] == ["b_new.txt"]
    assert sorted(Path(f.path).name for f in report.failed) == ["new.pdf", "report.pdf"]
    stored = {Path(f.path).name: f.reason for f in kb.stats().failed}
    assert stored.keys() == {"new.pdf"} and "/A\ufffdB" in stored["new.pdf"]
    assert kb.search("harbour fee crowns", k=1)[0].path.endswith("report.pdf")
    assert [job.status for job in kb.jobs()] == ["ok", "ok"]
    assert {Path(f.path).name: f.reason for f in kb.jobs()[0].failures}["new.pdf"] == stored["new.pdf"]


@pytest.mark.databases("sqlite", "postgresql")
def test_a_file_dated_past_2262_or_with_a_path_too_long_to_store_costs_only_itself(
        kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Times are stored in 64-bit nanoseconds and PostgreSQL indexes paths of at most 2,704 bytes: such a file,
    loadable or not, ended the whole run with a traceback on every run (OverflowError on SQLite, DataError or
    "index row size" on PostgreSQL), so nothing beside it was ever ingested."""
    docs = write_docs(tmp_path / "docs", {"now.txt": "The lantern room opens at dawn.",
                                          "future.txt": "The archive was unpacked with a bogus date.",
                                          "future.pdf": "not a PDF at all"})
    deep = docs.joinpath(*["d" * 250] * 11)
    write_docs(deep, {"long.txt": "Too deep to be stored.", "long.pdf": "not a PDF either"})
    for name in ("future.txt", "future.pdf"):
        os.utime(docs / name, ns=(10**19, 10**19))  # the year 2286
    if (docs / "future.txt").stat().st_mtime_ns != 10**19:
        pytest.skip("this file system cannot hold a time past 2262")
    kb = kb_factory()
    report = kb.ingest(docs)
    assert sorted(Path(path).name for path in report.added) == ["future.txt", "now.txt"]
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert failed.keys() == {"future.pdf", "long.txt", "long.pdf"}
    assert failed["long.txt"] == failed["long.pdf"] == "path longer than 2,600 bytes (UTF-8), more than is stored"
    again = kb.ingest(docs)
    assert not again.added and not again.updated and len(again.unchanged) == 2  # the kept time still matches
    (docs / "future.txt").write_text("The archive was unpacked with a wrong date.", encoding="utf-8")  # same size
    os.utime(docs / "future.txt", ns=(10**19 + 1, 10**19 + 1))  # still past 2262: the time cannot show the edit
    assert [Path(path).name for path in kb.ingest(docs).updated] == ["future.txt"]
    monkeypatch.setattr(ingestion.scan, "MAX_PATH_BYTES", len(str(docs / "now.txt").encode()) - 1)
    shorter = kb.ingest(docs)  # stored before the limit came down (SQLite kept such paths): kept, not removed
    assert "now.txt" in {Path(f.path).name for f in shorter.failed} and not shorter.removed


def test_a_loader_bug_fails_only_its_file_without_file_isolation_too(kb_factory, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker fails a file whose loader raises anything; in-process only ``LoadError`` was caught, so one small
    file (a codec's LookupError, zipfile's RuntimeError) ended every run with a traceback."""
    folder = write_docs(tmp_path / "docs", {"good.txt": "An ordinary note about lighthouses.",
                                             "bad.md": "# A note its loader breaks on"})

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("File is encrypted, password required for extraction")

    monkeypatch.setattr(MarkdownLoader, "extract", broken)
    report = kb_factory(file_isolation=False).ingest(folder)
    assert [Path(path).name for path in report.added] == ["good.txt"]
    assert [(Path(f.path).name, f.reason) for f in report.failed] == [
        ("bad.md", "unexpected RuntimeError: File is encrypted, password required for extraction")]


def test_what_the_machine_lacks_ends_the_run_in_one_line_not_every_file(kb_factory, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing OCR model is no file's fault: failing each file for it would keep them failed (unchanged files
    are not tried again) after the install is fixed."""
    folder = write_docs(tmp_path / "docs", {"good.txt": "An ordinary note about lighthouses.",
                                             "scan.md": "# A note whose reading needs a model"})

    def missing(*args: object, **kwargs: object) -> None:
        raise ModelNotFoundError("rapidocr-onnxruntime could not load its models; reinstall it")

    monkeypatch.setattr(MarkdownLoader, "extract", missing)
    kb = kb_factory(file_isolation=False)
    with pytest.raises(ModelNotFoundError, match="reinstall"):
        kb.ingest(folder)
    assert kb.jobs()[0].status == "failed" and not kb.stats().documents


def test_a_file_over_its_time_budget_fails_and_the_run_goes_on(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs", {"good.txt": "An ordinary note about lighthouses."})
    (folder / "slow.pdf").write_bytes(shared_stream_pdf(1, 2, text=True))  # seconds of pypdf
    kb = kb_factory(file_timeout=1)
    report = kb.ingest(folder)
    assert [Path(path).name for path in report.added] == ["good.txt"]
    assert [(Path(f.path).name, f.reason) for f in report.failed] == [
        ("slow.pdf", "over budget: loading took more than 1 s (file_timeout)")]
    again = kb.ingest(folder)  # remembered: an unchanged file over budget is not tried again
    assert again.failed[0].reason.endswith("(unchanged since the last run)")


def test_reading_and_loading_share_one_budget_whose_clock_stops_while_ocr_reads_an_image() -> None:
    budget = FileBudget(60, now=0)
    assert (budget.deadline, budget.doing(False), budget.doing(True)) == (60, "reading", "loading")
    budget.ocr(True, now=20)  # 40 s of loading left; the image gets 60 of its own
    assert (budget.deadline, budget.doing(True)) == (80, "reading the text in an image")
    budget.ocr(False, now=70)  # loading goes on with what it had left
    assert (budget.deadline, budget.doing(True)) == (110, "loading")
    budget.ocr(True, now=100)
    budget.ocr(False, now=150)
    assert budget.deadline == 160  # 10 s of loading left, whatever the images took


def test_a_file_over_its_memory_budget_fails_and_the_next_file_loads(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs", {"z-good.txt": "An ordinary note about lighthouses."})
    (folder / "grey.png").write_bytes(grey16_png(8000))  # a few hundred megabytes to decode
    kb = kb_factory(worker_memory_mb=256, ocr="off")
    report = kb.ingest(folder)
    assert [Path(path).name for path in report.added] == ["z-good.txt"]
    assert [(Path(f.path).name, f.reason) for f in report.failed] == [
        ("grey.png", "over budget: loading needs more than 256 MB of memory (worker_memory_mb)")]


@pytest.mark.slow
def test_sigterm_stops_the_scheduler_while_a_file_is_being_loaded(tmp_path: Path, tiny_text_model: Path) -> None:
    folder = write_docs(tmp_path / "docs", {"b-good.txt": "An ordinary note about lighthouses."})
    (folder / "a-slow.pdf").write_bytes(shared_stream_pdf(1, 20, text=True))  # a minute of pypdf: mid-file
    env = {**os.environ, "KB_TEXT_MODEL": str(tiny_text_model), "KB_DEVICE": "cpu", "KB_HOME": str(tmp_path / "kb"),
           "KB_FILE_TIMEOUT": "600"}
    kb = [sys.executable, "-m", "kb.cli"]
    subprocess.run([*kb, "source", "add", str(folder), "--every", "1h"], env=env, check=True, capture_output=True,
                   cwd=REPO)
    process = subprocess.Popen([*kb, "scheduler", "--poll", "1"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _workers(process.pid):
            time.sleep(0.2)
        assert _workers(process.pid), "no file worker started"
        time.sleep(2)  # the slow file, first in the folder, is being read
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, err = process.communicate(timeout=60)
        stopped_after = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode == 0 and "scheduler stopped" in out, err[-2000:]
    # Not the minutes the file would take; the bound leaves room for a machine loaded with other work, where the
    # stopped run still commits, saves its indexes and records itself as interrupted.
    assert stopped_after < 45
    with sqlite3.connect(tmp_path / "kb" / "kb.sqlite") as connection:
        status, failures = connection.execute("SELECT status, failures FROM runs ORDER BY id DESC").fetchone()
        documents = connection.execute("SELECT count(*) FROM documents").fetchone()[0]
    assert status == "interrupted" and json.loads(failures) == [] and documents == 0


def _workers(pid: int) -> list[int]:
    """The file workers under process ``pid``: children of its children (the zygote forks them)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    children = {child for child, parent in parents.items() if parent == pid}
    return [child for child, parent in parents.items() if parent in children]
