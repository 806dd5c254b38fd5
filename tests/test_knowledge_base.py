"""Ingest, incremental re-ingest, failures, filters, index rebuild and settings of a knowledge base."""

from __future__ import annotations

import json
import os
import shutil
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import event

from ingestion.scan import IN_SOURCE
from kb import Filters, KnowledgeBase
from kb.containment import REFUSED
from kb.errors import (
    EncoderMismatchError,
    InvalidRequestError,
    KbError,
    ModelNotFoundError,
    SchemaError,
    StorageError,
    WriterBusyError,
)
from kb.storage.database import default_url, open_database
from kb.storage.models import SCHEMA_VERSION, VERSION_TABLE
from tests.databases import Database, back_to_version_1, back_to_version_4_keywords, back_to_version_8, execute_sql
from tests.documents import (
    compound_file,
    deck_bytes,
    doc_bytes,
    email_bytes,
    epub_bytes,
    image_bytes,
    mbox_bytes,
    msg_streams,
    odf_bytes,
    pdf_bytes,
    ppt_bytes,
    ppt_shape,
    xls_bytes,
)

pytestmark = pytest.mark.databases()

DOCS = {
    "handbook/leave.txt": "Every employee receives twenty-five vacation days. Unused days expire in March.",
    "handbook/expenses.md": "# Expenses\n\nMeals on business trips are reimbursed up to forty-five euros per day.",
    "policies/returns.html": "<html><body><nav>Home</nav><p>Customers may return any item within thirty days "
    "for a refund.</p><script>trackingpixel()</script></body></html>",
    "history.txt": "The duchy was founded in 1138 by a margrave. Its castle overlooks the river Elbe.",
}


def write_docs(folder: Path, docs: dict[str, str] = DOCS) -> Path:
    for name, text in docs.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


class CountingEncoder:
    """Wraps an encoder and counts the texts it embeds."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.texts = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def encode(self, texts):  # type: ignore[no-untyped-def]
        self.texts += len(texts)
        return self.inner.encode(texts)


def counting(knowledge_base: KnowledgeBase) -> CountingEncoder:
    encoder = CountingEncoder(knowledge_base.encoder)
    knowledge_base.encoder = encoder  # type: ignore[assignment]
    knowledge_base.retriever.encoder = encoder  # type: ignore[assignment]
    return encoder


def vector_counts(knowledge_base: KnowledgeBase) -> tuple[int, int]:
    """(vectors in the database, vectors in the FAISS index) of the text space."""
    space = knowledge_base.stats().spaces[0]
    index = knowledge_base.store.index(knowledge_base.store.spaces()[0])
    return space.vectors, index.count


def test_ingest_and_search_cite_exact_text(kb_factory, tmp_path: Path) -> None:
    kb = kb_factory()
    report = kb.ingest(write_docs(tmp_path / "docs"))
    assert len(report.added) == 4 and not report.failed
    hits = kb.search("duchy founded margrave", k=3, mode="keyword")
    assert hits[0].path.endswith("history.txt")
    with kb.store.sessions() as session:
        from kb.storage.models import Document

        text = session.get(Document, hits[0].document_id).text
    assert text[hits[0].start : hits[0].end] == hits[0].text
    returns = kb.search("refund within thirty days", k=4)
    assert returns[0].path.endswith("returns.html")
    assert "trackingpixel" not in returns[0].text and "Home" not in returns[0].text
    stats = kb.stats()
    assert stats.documents == 4 and stats.chunks >= 4
    assert stats.spaces[0].vectors == stats.chunks


def test_office_files_and_emails_are_ingested_and_cited_by_sheet_slide_and_attachment(kb_factory,
                                                                                     tmp_path: Path) -> None:
    from openpyxl import Workbook

    folder = tmp_path / "office"
    folder.mkdir()
    workbook = Workbook()
    workbook.active.append(["Summary"])
    prices = workbook.create_sheet("Prices")
    prices.append(["Product", "Price (EUR)"])
    prices.append(["Harbour lamp", 34.5])
    workbook.save(folder / "prices.xlsx")
    (folder / "results.pptx").write_bytes(deck_bytes())
    terms_pdf = pdf_bytes([["Payment within 45 days."]])
    (folder / "order.eml").write_bytes(email_bytes(attachments=[("terms.pdf", terms_pdf)]))
    (folder / "plan.ods").write_bytes(odf_bytes("ods", '<table:table table:name="Summary"/><table:table '
                                                'table:name="Budget"><table:table-row><table:table-cell><text:p>'
                                                "Marketing budget tripled</text:p></table:table-cell></table:table-row>"
                                                "</table:table>"))
    (folder / "guide.epub").write_bytes(epub_bytes({"a.xhtml": "<p>Preface.</p>", "b.xhtml": "<p>Glacier trails.</p>"}))
    policy = "顾客可在购买后三十天内退货，需出示收据。".encode("gbk")  # as WordPad writes Chinese: GBK bytes in hex
    (folder / "policy.rtf").write_bytes(rb"{\rtf1\ansi\ansicpg936{\fonttbl{\f0\fnil\fcharset134 SimSun;}}"
                                        rb"{\info{\title Returns}}\pard\f0 " + b"".join(
                                            b"\\'%02x" % byte for byte in policy) + rb"\par}")
    (folder / "minutes.doc").write_bytes(doc_bytes([("Board minutes\r", True), ("会议决定：仓库搬到宁波。\r", False)],
                                                   title="Minutes"))
    (folder / "stock.xls").write_bytes(xls_bytes({"Summary": [], "Stock": [["Item", "Count"], ["Anchor chain", 12]]}))
    lamps = msg_streams("Lamps", attachments=[("note.txt", b"Glass from Xiamen.")])
    (folder / "lamps.msg").write_bytes(compound_file(lamps))
    (folder / "archive.mbox").write_bytes(mbox_bytes([email_bytes(subject="Old"), email_bytes(
        "The spare keys are with Chen.", subject="Keys")]))
    (folder / "review.ppt").write_bytes(ppt_bytes([[ppt_shape("Quarterly review", 0)], [ppt_shape(
        "Warranty", 0), ppt_shape("Lamps carry a two-year warranty.", 1)]], notes=[None, "Mention the 港口 lamps."]))
    kb = kb_factory()
    report = kb.ingest(folder)
    assert sorted(Path(path).name for path in report.added) == [
        "archive.mbox", "guide.epub", "lamps.msg", "minutes.doc", "order.eml", "plan.ods", "policy.rtf", "prices.xlsx",
        "results.pptx", "review.ppt", "stock.xls"]
    assert not report.failed
    [minutes] = kb.search("仓库搬到宁波", k=1, mode="keyword", filters=Filters(file_types=["doc"]))
    assert (Path(minutes.path).name, minutes.title) == ("minutes.doc", "Minutes")
    assert minutes.text == "Board minutes\n\n会议决定：仓库搬到宁波。"
    [warranty] = kb.search("two-year warranty", k=1, mode="keyword", filters=Filters(file_types=["ppt"]))
    assert (Path(warranty.path).name, warranty.page, warranty.title) == ("review.ppt", 2, "Quarterly review")
    assert warranty.text == "Warranty\n\nLamps carry a two-year warranty.\n\nNotes: Mention the 港口 lamps."
    [stock] = kb.search("anchor chain", k=1, mode="keyword", filters=Filters(file_types=["xls"]))
    assert (Path(stock.path).name, stock.page, stock.text) == (
        "stock.xls", 2, "Stock\nItem | Count\nItem: Anchor chain | Count: 12")
    [glass] = kb.search("glass from Xiamen", k=1, mode="keyword", filters=Filters(file_types=["msg"]))
    assert (Path(glass.path).name, glass.page, glass.title) == ("lamps.msg", 2, "Lamps")
    [keys] = kb.search("spare keys", k=1, mode="keyword", filters=Filters(file_types=["mbox"]))
    assert (Path(keys.path).name, keys.page) == ("archive.mbox", 2)
    [returns] = kb.search("三十天内退货", k=1, mode="keyword", filters=Filters(file_types=["rtf"]))
    assert (Path(returns.path).name, returns.title, returns.text) == ("policy.rtf", "Returns",
                                                                       "顾客可在购买后三十天内退货，需出示收据。")
    [terms] = kb.search("Payment within 45 days", k=1, mode="keyword", filters=Filters(file_types=["eml"]))
    assert (Path(terms.path).name, terms.page, terms.title) == ("order.eml", 2, "Harbour lamps")
    [budget] = kb.search("marketing budget", k=1, mode="keyword", filters=Filters(file_types=["ods"]))
    assert (Path(budget.path).name, budget.page) == ("plan.ods", 2)
    [trails] = kb.search("glacier trails", k=1, mode="keyword", filters=Filters(file_types=["epub"]))
    assert (Path(trails.path).name, trails.page) == ("guide.epub", 2)
    [lamp] = kb.search("Harbour lamp", k=1, mode="keyword")
    assert (Path(lamp.path).name, lamp.page) == ("prices.xlsx", 2)
    assert "Product: Harbour lamp | Price (EUR): 34.5" in lamp.text
    [warehouse] = kb.search("warehouse Ningbo", k=1, mode="keyword", filters=Filters(file_types=["pptx"]))
    assert (Path(warehouse.path).name, warehouse.page) == ("results.pptx", 1)
    assert not kb.search("warehouse Ningbo", mode="keyword", filters=Filters(file_types=["xlsm"]))


def test_reingest_unchanged_folder_embeds_nothing(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.ingest(folder)
    encoder = counting(kb)
    report = kb.ingest(folder)
    assert len(report.unchanged) == 4 and not (report.added or report.updated or report.removed)
    assert encoder.texts == 0
    # A touched file with the same bytes is confirmed by hash, not re-embedded.
    os.utime(folder / "history.txt", ns=(1_000_000_000, 1_000_000_000))
    report = kb.ingest(folder)
    assert len(report.unchanged) == 4 and encoder.texts == 0


def test_a_knowledge_base_inside_its_source_folder_is_not_read_as_documents(kb_factory, tmp_path: Path) -> None:
    """Its database, indexes and lock live in the folder it indexes: they are neither documents nor skipped files,
    and a second run finds nothing new (they change at every run)."""
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory("docs/kb")
    first = kb.ingest(folder)
    second = kb.ingest(folder)
    seen = [*first.added, *(failure.path for failure in [*first.skipped, *first.failed, *second.skipped])]
    assert len(first.added) == 4 and not [path for path in seen if "/kb/" in path]
    assert len(second.unchanged) == 4 and not (second.added or second.updated or second.removed)


def test_changed_file_is_replaced_and_removed_file_disappears(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.ingest(folder)
    before = vector_counts(kb)
    (folder / "history.txt").write_text("The abbey brewery produces a dark beer called Zwielicht.", encoding="utf-8")
    (folder / "handbook" / "expenses.md").unlink()
    report = kb.ingest(folder)
    assert report.updated == [str((folder / "history.txt").resolve())]
    assert report.removed == [str((folder / "handbook" / "expenses.md").resolve())]
    assert not kb.search("margrave", mode="keyword")
    assert kb.search("Zwielicht", mode="keyword")[0].path.endswith("history.txt")
    assert not kb.search("reimbursed euros", mode="keyword")
    assert all("expenses" not in hit.path for hit in kb.search("meals business trips", k=10, mode="dense"))
    db_count, index_count = vector_counts(kb)
    assert db_count == index_count == before[0] - 1
    with kb.store.sessions() as session:
        from sqlalchemy import text

        orphans = session.execute(text(
            "SELECT count(*) FROM postings WHERE chunk_id NOT IN (SELECT id FROM chunks)")).scalar()
    assert orphans == 0


def test_bad_files_are_reported_and_the_rest_ingested(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog")
    (folder / "binary.txt").write_bytes(os.urandom(4096).replace(b"\xff\xfe", b"ab").replace(b"\xfe\xff", b"ab"))
    (folder / "archive.zip").write_bytes(b"PK\x03\x04")
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the folder")
    (folder / "secret-link.txt").symlink_to(outside)
    kb = kb_factory()
    report = kb.ingest(folder)
    reasons = {Path(f.path).name: f.reason for f in report.failed}
    skipped = {Path(f.path).name: f.reason for f in report.skipped}
    assert len(report.added) == 4
    assert "empty" in reasons["empty.txt"]
    assert "PDF" in reasons["broken.pdf"]
    assert "binary.txt" in reasons
    assert skipped["loop"] == IN_SOURCE  # its target, the folder, is read under its own name
    assert "unsupported" in skipped["archive.zip"]
    assert skipped["secret-link.txt"] == f"symlink: {REFUSED}"
    assert kb.stats().failed_documents == 3
    # Failures are remembered: an unchanged bad file is reported again without being re-read.
    again = kb.ingest(folder)
    assert {Path(f.path).name for f in again.failed} >= {"empty.txt", "broken.pdf", "binary.txt"}


def test_reread_reads_again_the_unchanged_files_that_failed_or_were_read_in_part(kb_factory, tmp_path: Path) -> None:
    """An unchanged file is never read again, so one refused over a limit, or read only in part, stayed so after the
    limit was raised (or OCR installed); ``reread`` reads those again, and only those."""
    folder = write_docs(tmp_path / "docs", {**DOCS, "big.txt": "A long note about the lighthouse keeper. " * 100})
    (folder / "notes.md").write_text("# Notes\n\n![map](missing.png)\n\nThe harbour map.\n", encoding="utf-8")
    assert [Path(f.path).name for f in kb_factory(max_file_mb=0.001).ingest(folder).failed] == ["big.txt"]
    kb = kb_factory(max_file_mb=1)
    assert [Path(f.path).name for f in kb.ingest(folder).failed] == ["big.txt"]  # unchanged: not read again
    report = kb.ingest(folder, reread=True)
    assert [Path(path).name for path in report.added] == ["big.txt"]  # failed before: added now
    assert [Path(path).name for path in report.updated] == ["notes.md"]  # read with a warning: read again
    assert len(report.unchanged) == len(DOCS) and not report.failed
    assert kb.search("lighthouse keeper", k=1, mode="keyword")[0].path.endswith("big.txt")


def test_a_page_is_read_again_when_a_picture_it_shows_changes_or_comes(kb_factory, tmp_path: Path) -> None:
    """A page's pictures are read with it, but only its own bytes were compared: a picture replaced left the page
    showing the old one, and one missing when the page was read never came."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "pictures").mkdir()
    (folder / "pictures" / "map.png").write_bytes(image_bytes(size=(60, 40), color=(200, 30, 30)))
    (folder / "notes.md").write_text("Ferry notes.\n\n![Harbour map](pictures/map.png)\n\n![Tide table](tide.png)\n",
                                     encoding="utf-8")
    kb = kb_factory(clip_model="none")

    def shown() -> dict[str, str]:
        hits = kb.search("harbour map tide table", k=10, mode="keyword", modalities={"image"})
        return {hit.image.name: hit.image.sha256 for hit in hits if hit.path.endswith("notes.md") and hit.image}

    kb.ingest(folder)
    before = shown()
    assert list(before) == ["pictures/map.png"]
    assert kb.ingest(folder).unchanged == [str(folder / "notes.md"), str(folder / "pictures" / "map.png")]
    (folder / "pictures" / "map.png").write_bytes(image_bytes(size=(80, 60), color=(30, 30, 200)))
    report = kb.ingest(folder)
    assert sorted(Path(path).name for path in report.updated) == ["map.png", "notes.md"]
    after = shown()
    assert list(after) == ["pictures/map.png"] and after["pictures/map.png"] != before["pictures/map.png"]
    (folder / "tide.png").write_bytes(image_bytes(size=(60, 40), color=(30, 200, 30)))
    report = kb.ingest(folder)
    assert [Path(path).name for path in report.updated] == ["notes.md"] and sorted(shown()) == [
        "pictures/map.png", "tide.png"]
    (folder / "sub").mkdir()  # moved where its pictures' paths lead nowhere: moved, and read again there
    (folder / "notes.md").rename(folder / "sub" / "notes.md")
    report = kb.ingest(folder)
    assert report.moved == {str(folder / "notes.md"): str(folder / "sub" / "notes.md")}
    assert report.updated == [str(folder / "sub" / "notes.md")] and shown() == {}
    assert len(report.warnings[str(folder / "sub" / "notes.md")]) == 2


def test_a_picture_named_through_a_folder_linked_out_of_the_source_tells_nothing_of_what_lies_there(
        kb_factory, tmp_path: Path) -> None:
    """The page named "out/map.png" with "out" a link to a folder outside: the picture was refused, but its size
    and time were recorded and looked at on every run, so the page was read again whenever the outside file came,
    changed or went, which told whether it exists."""
    folder, elsewhere = tmp_path / "docs", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "out").symlink_to(elsewhere)
    (folder / "notes.md").write_text("Ferry notes.\n\n![Harbour map](out/map.png)\n", encoding="utf-8")
    kb = kb_factory(clip_model="none")
    assert [Path(path).name for path in kb.ingest(folder).added] == ["notes.md"]
    (elsewhere / "map.png").write_bytes(image_bytes(size=(60, 40), color=(200, 30, 30)))
    assert kb.ingest(folder).unchanged == [str(folder / "notes.md")]
    (elsewhere / "map.png").write_bytes(image_bytes(size=(80, 60), color=(30, 30, 200)))
    assert kb.ingest(folder).unchanged == [str(folder / "notes.md")]


def test_a_page_follows_its_picture_s_link_and_a_page_read_before_version_9_is_read_once(
        kb_factory, tmp_path: Path, database: Database) -> None:
    """The picture was recorded where its link led, so a link pointed elsewhere changed nothing; a page read
    before pictures were recorded would never have been read again for them. A folder named as a picture is no
    picture: files added to it read nothing again."""
    folder = tmp_path / "docs"
    (folder / "drafts").mkdir(parents=True)
    (folder / "red.png").write_bytes(image_bytes(size=(60, 40), color=(200, 30, 30)))
    (folder / "blue.png").write_bytes(image_bytes(size=(80, 60), color=(30, 30, 200)))
    (folder / "map.png").symlink_to("red.png")
    (folder / "notes.md").write_text("Ferry notes.\n\n![Harbour map](map.png)\n\n![Drafts](drafts)\n", encoding="utf-8")
    kb = kb_factory(clip_model="none")

    def width() -> set[int]:
        return {hit.image.width for hit in kb.search("harbour map", k=10, mode="keyword", modalities={"image"})
                if hit.path.endswith("notes.md") and hit.image}

    kb.ingest(folder)
    assert width() == {60}
    (folder / "drafts" / "plan.txt").write_text("A plan.", encoding="utf-8")
    assert Path(kb.ingest(folder).added[0]).name == "plan.txt"  # and notes.md unchanged
    (folder / "map.png").unlink()
    (folder / "map.png").symlink_to("blue.png")
    assert [Path(path).name for path in kb.ingest(folder).updated] == ["notes.md"] and width() == {80}
    kb.close()
    execute_sql(database.url("kb") or default_url(tmp_path / "kb"), *back_to_version_8(),
                f"UPDATE {VERSION_TABLE} SET version_num = '8'",
                "UPDATE meta SET value = '8' WHERE key = 'schema_version'")
    kb = kb_factory(clip_model="none")
    assert [Path(path).name for path in kb.ingest(folder).updated] == ["notes.md"]  # once, to record its pictures
    assert str(folder / "notes.md") in kb.ingest(folder).unchanged
    (folder / "drafts" / "plan.txt").rename(folder / "plan.txt")  # read before version 9 too, but shows nothing
    report = kb.ingest(folder)
    assert report.moved == {str(folder / "drafts" / "plan.txt"): str(folder / "plan.txt")} and not report.updated


def test_a_file_that_turns_corrupt_keeps_its_previous_version(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.ingest(folder)
    (folder / "history.txt").write_bytes(b"")
    report = kb.ingest(folder)
    assert [Path(f.path).name for f in report.failed] == ["history.txt"]
    assert kb.search("margrave", mode="keyword")[0].path.endswith("history.txt")


def test_filters_are_applied_and_unknown_filters_rejected(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    os.utime(folder / "history.txt", (1_500_000_000, 1_500_000_000))  # 2017
    kb = kb_factory()
    kb.ingest(folder)
    for mode in ("dense", "keyword", "hybrid"):
        hits = kb.search("days", k=10, mode=mode, filters={"path_glob": "handbook/*"})
        assert hits and all("/handbook/" in h.path for h in hits), mode
        hits = kb.search("refund days", k=10, mode=mode, filters=Filters(file_types=[".HTML"]))
        assert hits and all(h.path.endswith(".html") for h in hits), mode
        hits = kb.search("duchy founded", k=10, mode=mode, filters={"modified_before": "2020-01-01T00:00:00"})
        assert [Path(h.path).name for h in hits] == ["history.txt"], mode
        assert not kb.search("duchy", k=10, mode=mode, filters={"path_glob": "nothing/*"})
        for nothing in ({"path_glob": []}, {"file_types": []}):  # an empty list allows nothing, not everything
            assert not kb.search("duchy", k=10, mode=mode, filters=nothing), (mode, nothing)
    with pytest.raises(InvalidRequestError, match="^invalid filters: author: Extra inputs are not permitted$"):
        kb.search("days", filters={"author": "someone"})
    for glob in ("*\x00*", ["handbook/*", "a\x00b"]):  # SQLite silently matched nothing, PostgreSQL raised its own
        with pytest.raises(InvalidRequestError, match="NUL character"):
            kb.search("days", filters={"path_glob": glob})
    for odd in ("*.txt", [1], {1: 2}):  # an AttributeError or TypeError deep inside (a web page passes JSON on)
        with pytest.raises(InvalidRequestError, match="filters"):
            kb.ask("days", filters=odd)  # type: ignore[arg-type]
    for odd_modalities in (5, [["text"]]):
        with pytest.raises(InvalidRequestError, match="^modalities must be names"):
            kb.search("days", modalities=odd_modalities)  # type: ignore[arg-type]
    many = kb.search("duchy founded", k=10, filters={"file_types": ["txt"] * 300_000})  # each type one SQL parameter
    assert many == kb.search("duchy founded", k=10, filters={"file_types": ["txt"]})  # (too many: SQLite, PostgreSQL)


def test_path_globs_fold_case_beyond_ascii_on_every_database(kb_factory, tmp_path: Path) -> None:
    """"*été*" finds "ÉTÉ_report.txt" and "*ÉTÉ*" finds "été_notes.txt" on SQLite as on PostgreSQL (SQLite's own
    lower() folds ASCII letters only)."""
    folder = write_docs(tmp_path / "docs", {"ÉTÉ_report.txt": "Copper prices rose in summer.",
                                            "été_notes.txt": "Copper notes for the summer.",
                                            "winter.txt": "Copper in winter."})
    kb = kb_factory()
    kb.ingest(folder)
    for mode in ("dense", "keyword"):
        for glob in ("*été*", "*ÉTÉ*", "*Été_*"):
            hits = kb.search("copper", k=10, mode=mode, filters={"path_glob": glob})
            assert sorted(Path(h.path).name for h in hits) == ["ÉTÉ_report.txt", "été_notes.txt"], (mode, glob)
    write_docs(folder, {"İSTANBUL.txt": "Copper from the Bosporus.", "ΟΔΟΣ 1.txt": "Copper street."})
    kb.ingest(folder)
    for glob, name in (("istanbul*", "İSTANBUL.txt"), ("*οδοσ*", "ΟΔΟΣ 1.txt"), ("*ΟΔΟΣ*", "ΟΔΟΣ 1.txt")):
        hits = kb.search("copper", k=10, mode="keyword", filters={"path_glob": glob})
        assert [Path(h.path).name for h in hits] == [name], glob  # letters folded one by one, as PostgreSQL does


def test_path_globs_match_accents_composed_or_apart(kb_factory, tmp_path: Path) -> None:
    """A Mac writes "é" as "e" and a combining accent (NFD); a glob typed elsewhere has it composed (NFC), or the
    other way round: either finds the file."""
    apart, composed = unicodedata.normalize("NFD", "résumé"), unicodedata.normalize("NFC", "café")
    folder = write_docs(tmp_path / "docs", {f"{apart}.txt": "Copper trader for ten years.",
                                            f"{composed}.txt": "Copper kettles in the kitchen.",
                                            "winter.txt": "Copper in winter."})
    kb = kb_factory()
    kb.ingest(folder)
    for glob, name in (("résumé*", f"{apart}.txt"), ("CAFE\u0301*", f"{composed}.txt")):
        for form in ("NFC", "NFD"):
            hits = kb.search("copper", k=10, filters={"path_glob": unicodedata.normalize(form, glob)})
            assert [Path(hit.path).name for hit in hits] == [name], (glob, form)


@pytest.mark.databases("sqlite", "postgresql")  # the faiss index
def test_index_cache_missing_or_corrupt_is_rebuilt_without_reembedding(kb_factory, tmp_path: Path) -> None:
    kb = kb_factory()
    kb.ingest(write_docs(tmp_path / "docs"))
    expected = [(h.chunk_id, round(h.score, 5)) for h in kb.search("vacation days", k=4, mode="dense")]
    kb.close()
    index_file = tmp_path / "kb" / "indexes" / "text.faiss"
    for damage in ("delete", "corrupt", "stale"):
        if damage == "delete":
            index_file.unlink()
        elif damage == "corrupt":
            index_file.write_bytes(index_file.read_bytes()[:100])
        else:
            meta_file = index_file.with_suffix(".json")
            meta = json.loads(meta_file.read_text())
            meta["generation"] -= 1
            meta_file.write_text(json.dumps(meta))
        reopened = kb_factory()
        encoder = counting(reopened)
        got = [(h.chunk_id, round(h.score, 5)) for h in reopened.search("vacation days", k=4, mode="dense")]
        assert got == expected, damage
        assert encoder.texts == 1  # the query only: nothing was re-embedded
        assert index_file.exists()
        reopened.close()


def test_settings_are_recorded_and_reopened(kb_factory, tmp_path: Path, monkeypatch) -> None:
    kb = kb_factory(chunk_tokens=64, fusion="relative")
    kb.close()
    recorded = json.loads((tmp_path / "kb" / "kb.json").read_text())
    assert recorded["chunk_tokens"] == 64
    reopened = KnowledgeBase.open(tmp_path / "kb")
    assert reopened.settings.chunking.tokens == 64 and reopened.settings.fusion.method == "relative"
    reopened.close()
    monkeypatch.setenv("KB_CHUNK_TOKENS", "100")
    from_env = KnowledgeBase.open(tmp_path / "kb")
    assert from_env.settings.chunking.tokens == 100
    from_env.close()
    with pytest.raises(ValidationError):
        KnowledgeBase.open(tmp_path / "other", no_such_setting=1)


def test_a_batch_is_written_once_it_holds_as_much_text_as_one_document_may(kb_factory, tmp_path: Path) -> None:
    """Chunks alone do not bound what a batch holds (one chunk may span a long run of spaces): it is also written
    once its documents' text reaches max_document_chars, each write a generation of the text space."""
    folder = write_docs(tmp_path / "docs", {f"note{n}.txt": f"Harbour note {n}. " + "x" * 500 for n in range(6)})
    kb = kb_factory(max_document_chars=1000)
    assert len(kb.ingest(folder).added) == 6
    assert kb.stats().spaces[0].generation == 3  # two documents of about 520 characters a batch


def test_different_encoder_is_a_clear_error_until_reembedded(kb_factory, tmp_path: Path) -> None:
    from tests.conftest import minilm_path

    kb = kb_factory()
    kb.ingest(write_docs(tmp_path / "docs"))
    kb.close()
    other = kb_factory(text_model=str(minilm_path()))
    with pytest.raises(EncoderMismatchError, match="kb reembed"):
        other.search("vacation", mode="dense")
    assert other.reembed() == other.stats().chunks
    assert other.search("vacation days per year", k=1, mode="dense")[0].path.endswith("leave.txt")
    assert other.stats().spaces[0].dimension == 384


def _opened_with_a_copy_of_the_model(kb_factory, tiny_text_model: Path,  # type: ignore[no-untyped-def]
                                     tmp_path: Path) -> tuple[KnowledgeBase, Path]:
    """A knowledge base built with the tiny model, opened again naming a copy of it (a new model to reembed with)."""
    kb = kb_factory()
    kb.ingest(write_docs(tmp_path / "docs"))
    kb.close()
    other_model = tmp_path / "other-model"
    shutil.copytree(tiny_text_model, other_model)
    return kb_factory(text_model=str(other_model)), other_model


def test_a_reembed_stopped_while_its_indexes_rebuild_keeps_the_new_model(kb_factory, tiny_text_model: Path,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The new spaces are committed before the indexes are rebuilt: a kill then must not leave kb.json naming the
    old model (every command would then ask for a reembed back to it)."""
    other, other_model = _opened_with_a_copy_of_the_model(kb_factory, tiny_text_model, tmp_path)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(other.store, "index", killed)
        with pytest.raises(KeyboardInterrupt):
            other.reembed()
    assert json.loads((tmp_path / "kb" / "kb.json").read_text(encoding="utf-8"))["text_model"] == str(other_model)
    assert other.search("vacation days per year", k=1, mode="dense")  # its index is built at the next search


def test_a_reembed_whose_models_cannot_be_recorded_changes_nothing(kb_factory, tiny_text_model: Path,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """kb.json cannot be written (a full disk): the new vectors are not committed either, so the knowledge base
    still searches with the model kb.json names (the vectors committed first left every search and ingest asking
    for a reembed, and `kb doctor --repair` undid the user's by re-embedding back to the old model)."""
    other, other_model = _opened_with_a_copy_of_the_model(kb_factory, tiny_text_model, tmp_path)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise StorageError("cannot write kb.json: No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr("kb.knowledge_base.save_settings", disk_full)
        with pytest.raises(StorageError, match="No space left"):
            other.reembed()
    other.close()
    again = kb_factory()
    assert len(again.search("vacation days per year", k=4, mode="dense")) == 4  # no mismatch: the old vectors
    assert again.stats().spaces[0].model.startswith(str(tiny_text_model)) and not again.doctor().problems


def test_a_fingerprint_reads_every_byte_of_what_the_model_loads_and_nothing_else(tmp_path: Path) -> None:
    """Weights changed in the middle of a large file, and tokenizer or prompt settings, change the fingerprint;
    ONNX and OpenVINO variants a hub snapshot gains beside the weights do not."""
    from kb.encoders.fingerprint import folder_fingerprint

    folder = tmp_path / "model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    weights = bytearray(os.urandom(10 << 20))
    (folder / "model.safetensors").write_bytes(weights)
    seen = {folder_fingerprint(folder)}
    weights[5 << 20] ^= 0xFF  # retrained in place: same size, same first and last 4 MiB
    (folder / "model.safetensors").write_bytes(weights)
    seen.add(folder_fingerprint(folder))
    for name in ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
                 "merges.txt", "config_sentence_transformers.json"):
        (folder / name).write_text('{"max_seq_length": 16}')
        seen.add(folder_fingerprint(folder))
    assert len(seen) == 8
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert folder_fingerprint(folder) not in seen
    before = folder_fingerprint(folder)
    for variant in ("onnx/model.onnx", "onnx/model_quantized.onnx", "openvino/openvino_model.bin"):
        (folder / variant).parent.mkdir(exist_ok=True)
        (folder / variant).write_bytes(b"an exported variant")
    assert folder_fingerprint(folder) == before


def test_a_space_with_a_version_1_fingerprint_of_its_model_opens_and_is_upgraded(kb_factory, tiny_text_model: Path,
                                                                                 tmp_path: Path) -> None:
    """A knowledge base built before fingerprint version 2 recorded its model's version 1 fingerprint: opened with
    the same files it searches without a reembed and records the new fingerprint; with changed files it is
    refused as before."""
    from kb.encoders.fingerprint import folder_fingerprint

    model = tmp_path / "model"
    shutil.copytree(tiny_text_model, model)
    kb = kb_factory(text_model=str(model), encoder_backend="torch")  # float32: the fingerprint is the folder's
    kb.ingest(write_docs(tmp_path / "docs"))
    kb.close()
    execute_sql(kb.store.url, f"UPDATE spaces SET fingerprint = '{folder_fingerprint(model, version=1)}'")
    reopened = kb_factory(text_model=str(model))
    encoder = counting(reopened)
    assert reopened.search("vacation days per year", k=1, mode="dense")  # a random tiny model: any hit
    assert encoder.texts == 1  # the question only: nothing re-embedded
    assert [space.fingerprint for space in reopened.store.spaces()] == [folder_fingerprint(model)]
    reopened.close()

    execute_sql(kb.store.url, f"UPDATE spaces SET fingerprint = '{folder_fingerprint(model, version=1)}'")
    (model / "modules.json").write_text((model / "modules.json").read_text() + "\n")  # files both versions read
    changed = kb_factory(text_model=str(model))
    with pytest.raises(EncoderMismatchError, match="kb reembed"):
        changed.search("vacation", mode="dense")


def test_newer_schema_is_refused(kb_factory, tmp_path: Path) -> None:
    kb = kb_factory()
    kb.close()
    execute_sql(kb.store.url, "UPDATE meta SET value='999' WHERE key='schema_version'")
    with pytest.raises(SchemaError, match="newer"):
        kb_factory()


def errors_at_once(action: Callable[[], object], count: int) -> list[BaseException]:
    """``count`` threads run ``action`` at the same moment; what any of them raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def at_once() -> None:
        barrier.wait()
        try:
            action()
        except BaseException as error:  # noqa: BLE001 - collected for the caller's assertion
            errors.append(error)

    threads = [threading.Thread(target=at_once) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_processes_opening_a_new_knowledge_base_at_once_all_succeed(kb_factory) -> None:
    """A scheduler and a search started together on a fresh database: the schema is made once, by whichever
    comes first, and every opener sees it complete."""
    assert errors_at_once(lambda: kb_factory().stats(), 4) == []
    assert kb_factory().stats().schema_version == SCHEMA_VERSION


def test_training_material_pairs_each_text_with_its_own_chunks(kb_factory, tmp_path: Path) -> None:
    """A re-ingest that commits while a batch of training documents is half read (between the documents and
    their chunks) never pairs a document's old text with its new chunks: every chunk is a span of its text."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("Original short text about copper.", encoding="utf-8")
    reader, writer = kb_factory(), kb_factory()
    reader.ingest(folder)
    reingested: list[list[str]] = []

    def reingest_before_the_chunks_are_read(_connection, _cursor, statement: str, *_rest: object) -> None:
        if not reingested and "FROM chunks" in statement:
            (folder / "a.txt").write_text("A different, longer text about harbour lanterns. " * 3, encoding="utf-8")
            reingested.append(writer.ingest(folder).updated)

    event.listen(reader.store.sessions.kw["bind"], "before_cursor_execute", reingest_before_the_chunks_are_read)
    documents = list(reader.store.documents())
    assert reingested == [[str(folder / "a.txt")]]
    assert [chunk.text for document in documents for chunk in document.chunks] == \
        [document.text[chunk.start:chunk.end] for document in documents for chunk in document.chunks]


def test_first_keyword_searches_at_once_all_succeed(kb_factory) -> None:
    """Searches whose first keyword query on a fresh knowledge base comes at the same moment each record the
    keyword tokenizer; none fails on the row another just added (on PostgreSQL 10 trials of 10 did)."""
    searchers = [kb_factory() for _ in range(6)]
    assert errors_at_once(lambda: searchers.pop().search("anything", mode="keyword"), 6) == []


def test_a_write_waits_for_the_one_in_progress(kb_factory) -> None:
    """Write units take turns on every database (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL), so
    one that reads, then inserts never acts on a state another is about to change."""
    first, second = kb_factory().store, kb_factory().store
    with first.write() as unit:
        unit.set_meta("notice:first", "written first")
        waiting = threading.Thread(target=second.record_notice, args=("second", "written after the first"))
        waiting.start()
        waiting.join(1.0)
        assert waiting.is_alive()
    waiting.join(30)
    assert first.notices() == ["written first", "written after the first"]


def test_a_write_waiting_too_long_fails_with_a_storage_error(kb_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small write (a search recording its keyword tokenizer) behind a long one (a re-embed) gives up after the
    busy timeout on every database, instead of hanging as long as the other runs."""
    monkeypatch.setattr("kb.storage.database.BUSY_TIMEOUT_S", 0.5)
    first, second = kb_factory().store, kb_factory().store
    with first.write() as unit:
        unit.set_meta("notice:first", "written first")
        with pytest.raises(StorageError, match="cannot be written"):
            second.record_notice("second", "never written")
    assert first.notices() == ["written first"]


@pytest.mark.databases("sqlite")
def test_connections_opening_new_sqlite_files_together_never_meet_a_lock(tmp_path: Path) -> None:
    """Switching a new file to WAL while another connection does is answered "database is locked" at once, without
    the busy timeout; many rounds make the race near certain (3 runs of this test out of 3 failed before the retry)."""
    errors: list[BaseException] = []
    for round_ in range(60):
        (tmp_path / str(round_)).mkdir()
        url = default_url(tmp_path / str(round_))
        errors += errors_at_once(lambda url=url: open_database(url).kw["bind"].dispose(), 4)
    assert errors == []


def test_processes_opening_an_old_knowledge_base_at_once_all_succeed(kb_factory, database, tmp_path: Path) -> None:
    """Two programs upgraded together open a version 4 database at the same moment: one migrates it, the other
    waits for the lock and finds it done; the keyword figures are counted once."""
    kb = kb_factory()
    kb.ingest(write_docs(tmp_path / "docs"))
    kb.close()
    execute_sql(kb.store.url, *back_to_version_4_keywords(database.kind),
                "UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    assert errors_at_once(lambda: kb_factory().stats(), 4) == []
    migrated = kb_factory()
    assert migrated.stats().schema_version == SCHEMA_VERSION
    assert migrated.search("margrave", mode="keyword")[0].path.endswith("history.txt")
    assert migrated.doctor().problems == []


def test_one_writer_at_a_time(kb_factory, tmp_path: Path) -> None:
    kb = kb_factory()
    other = kb_factory()
    with kb.store.writer_lock:
        with pytest.raises(WriterBusyError):
            other.ingest(write_docs(tmp_path / "docs"))
    assert other.ingest(tmp_path / "docs").added


def test_pdf_hits_cite_their_page(kb_factory, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "manual.pdf").write_bytes(pdf_bytes([["Chapter one covers assembly of the frame."],
                                                   ["Chapter two explains the hydraulic pump maintenance."]]))
    kb = kb_factory()
    kb.ingest(folder)
    hit = kb.search("hydraulic pump", k=1, mode="keyword")[0]
    assert hit.page == 2 and "hydraulic pump" in hit.text
    assert kb.search("frame assembly", k=1, mode="keyword")[0].page == 1


def test_a_file_that_vanishes_between_scan_and_read_is_reported(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    victim = folder / "policies" / "returns.html"

    def delete_victim(done: int, total: int, relpath: str) -> None:
        if done == 1:
            victim.unlink()

    report = kb_factory().ingest(folder, progress=delete_victim)
    failures = [(Path(f.path).name, f.reason) for f in report.failed]
    assert failures == [("returns.html", "vanished before it could be read")]
    assert len(report.added) == 3


def test_a_missing_model_is_one_clear_error(kb_factory, tmp_path: Path) -> None:

    kb = kb_factory(text_model=str(tmp_path / "no-such-model"))
    with pytest.raises(ModelNotFoundError, match="looked in"):
        kb.ingest(write_docs(tmp_path / "docs"))
    assert kb.stats().failed_documents == 0
    assert kb.search("anything", mode="keyword") == []
    # Each model's error names it and the setting that gives another (a reranker's once named the text model's).
    kb = kb_factory("reranked", reranker_model=str(tmp_path / "no-such-reranker"))
    kb.ingest(write_docs(tmp_path / "docs"))
    with pytest.raises(ModelNotFoundError, match=r"^reranker model '.*no-such-reranker' could not be loaded; looked "
                                                 r"in: .*Give KB_RERANKER_MODEL a local"):
        kb.search("days")


def test_nested_sources_share_documents(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.ingest(folder)
    report = kb.ingest(folder / "handbook")
    assert len(report.unchanged) == 2 and not report.added
    (folder / "handbook" / "leave.txt").unlink()
    assert [Path(p).name for p in kb.ingest(folder / "handbook").removed] == ["leave.txt"]
    assert len(kb.ingest(folder).unchanged) == 3


def test_folders_differing_only_in_case_stay_apart(kb_factory, tmp_path: Path) -> None:
    upper = write_docs(tmp_path / "Docs", {"a.txt": "alpha paragraph"})
    lower = write_docs(tmp_path / "docs", {"b.txt": "beta paragraph"})
    kb = kb_factory()
    kb.ingest(upper)
    assert not kb.ingest(lower).removed
    assert kb.stats().documents == 2


def test_a_file_name_that_is_not_utf8_costs_only_that_file(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    with open(os.path.join(os.fsencode(folder), b"bad\xff.txt"), "wb") as handle:
        handle.write(b"some text")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not a PDF")
    kb = kb_factory()
    report = kb.ingest(folder)
    assert len(report.added) == 4
    assert {Path(f.path).name: f.reason for f in report.failed}["bad\\udcff.txt"] == "file name is not valid UTF-8"
    stats = kb.stats()  # the refused name is counted beside the failed document, though it never became one
    assert stats.failed_documents == 1 and [f.path for f in stats.failed] == [str(folder / "broken.pdf")]
    assert [(Path(f.path).name, f.reason) for f in stats.unread] == [("bad\\udcff.txt", "file name is not valid UTF-8")]
    os.rename(os.path.join(os.fsencode(folder), b"bad\xff.txt"), folder / "renamed.txt")
    kb.ingest(folder)
    assert kb.stats().unread == [] and kb.stats().documents == 5


@pytest.mark.databases("sqlite", "postgresql")  # the faiss index
def test_index_types_that_need_training_and_factory_changes(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory(index_factory="IVF4,Flat")  # 4 vectors cannot train 4 centroids well: exact search meanwhile
    kb.ingest(folder)
    assert kb.search("duchy margrave castle", k=1, mode="dense")
    kb.close()
    hnsw = kb_factory(index_factory="HNSW16")
    hnsw.search("duchy", k=1, mode="dense")
    index = hnsw.store.index(hnsw.store.spaces()[0])
    import faiss

    assert "HNSW" in type(faiss.downcast_index(index.index.index)).__name__ and index.count == hnsw.stats().chunks
    (folder / "history.txt").unlink()  # HNSW cannot remove in place: the index is rebuilt from the database
    hnsw.ingest(folder)
    db_count, index_count = vector_counts(hnsw)
    assert db_count == index_count == hnsw.stats().chunks


def test_unknown_modes_and_file_types_are_errors(kb_factory, tmp_path: Path) -> None:
    kb = kb_factory()
    kb.ingest(write_docs(tmp_path / "docs"))
    with pytest.raises(ValueError, match="unknown search mode"):
        kb.search("days", mode="bm25")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown file types"):
        kb.search("days", filters={"file_types": ["key"]})


def test_keyword_tokenizer_is_recorded_and_checked(kb_factory, tmp_path: Path) -> None:
    kb = kb_factory(keyword_tokenizer="simple")
    kb.ingest(write_docs(tmp_path / "docs"))
    kb.close()
    other = kb_factory(keyword_tokenizer="jieba")
    with pytest.raises(EncoderMismatchError, match="kb reembed"):
        other.search("days", mode="keyword")
    other.reembed()
    assert other.search("margrave", mode="keyword")[0].path.endswith("history.txt")


def test_machine_settings_are_not_recorded(kb_factory, tmp_path: Path) -> None:
    kb_factory(batch_size=8).close()
    recorded = json.loads((tmp_path / "kb" / "kb.json").read_text())
    assert "device" not in recorded and "batch_size" not in recorded and recorded["text_model"]


def test_a_killed_run_is_recorded_as_interrupted(kb_factory, tmp_path: Path) -> None:
    from kb.storage.models import Run

    kb = kb_factory()
    with kb.store.sessions.begin() as session:
        session.add(Run(status="running"))  # what a killed process leaves behind
    kb.ingest(write_docs(tmp_path / "docs"))
    with kb.store.sessions() as session:
        statuses = [run.status for run in session.query(Run).order_by(Run.id)]
    assert statuses == ["interrupted", "ok"]


def test_a_document_the_database_rejects_costs_only_that_file(kb_factory, tmp_path: Path, monkeypatch) -> None:
    from ingestion.reading import FileJob, FileReader, Loaded

    original = FileReader.load

    def load(self: FileReader, job: FileJob) -> Loaded:
        loaded = original(self, job)
        if job.path.name == "poison.txt":  # a lone surrogate in the title (past the loaders, which replace one)
            loaded.document.title = "broken \ud800 title"  # no database can store it as text
        return loaded

    monkeypatch.setattr(FileReader, "load", load)
    folder = write_docs(tmp_path / "docs", {**DOCS, "poison.txt": "anything"})
    kb = kb_factory(file_isolation=False)  # the patched loader runs in this process
    report = kb.ingest(folder)
    assert sorted(Path(p).name for p in report.added) == ["expenses.md", "history.txt", "leave.txt", "returns.html"]
    assert [Path(f.path).name for f in report.failed] == ["poison.txt"]
    assert "could not be stored" in report.failed[0].reason
    db_count, index_count = vector_counts(kb)
    assert db_count == index_count == kb.stats().chunks


def test_moved_files_and_identical_text_are_not_embedded_again(kb_factory, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    kb = kb_factory()
    kb.ingest(folder)
    chunk_ids = {h.chunk_id for h in kb.search("margrave", mode="keyword")}
    encoder = counting(kb)
    (folder / "history.txt").rename(folder / "archive-history.txt")
    (folder / "copy-of-leave.txt").write_text(DOCS["handbook/leave.txt"], encoding="utf-8")
    report = kb.ingest(folder)
    assert report.moved == {str((folder / "history.txt").resolve()): str((folder / "archive-history.txt").resolve())}
    assert not report.removed and report.added == [str((folder / "copy-of-leave.txt").resolve())]
    assert encoder.texts == 0  # the move kept its vectors; the copy reused the original's
    hit = kb.search("margrave", mode="keyword")[0]
    assert hit.path.endswith("archive-history.txt") and hit.chunk_id in chunk_ids
    copies = [h.path for h in kb.search("twenty-five vacation days", k=10, mode="keyword") if "twenty-five" in h.text]
    assert sorted(Path(p).name for p in copies) == ["copy-of-leave.txt", "leave.txt"]
    db_count, index_count = vector_counts(kb)
    assert db_count == index_count == kb.stats().chunks


def test_a_folder_of_many_files_renamed_is_moved_without_loading_them(kb_factory, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Past 256 files gone, none of their hashes went with each new file, so each was loaded again (OCR'd again,
    for scans) only to be found a move: those of its type and size go now."""
    import ingestion.pipeline
    from ingestion.reading import FileReader

    monkeypatch.setattr(ingestion.pipeline, "_SKIP_SENT", 2)
    folder = write_docs(tmp_path / "docs", {f"old/note{n}.txt": f"Note {n}: the harbour." + "!" * n for n in range(5)})
    kb = kb_factory(file_isolation=False)  # loads counted in this process
    kb.ingest(folder)
    loads = []
    original = FileReader.load
    monkeypatch.setattr(FileReader, "load", lambda reader, job: loads.append(job.path) or original(reader, job))
    (folder / "old").rename(folder / "new")
    report = kb.ingest(folder)
    assert len(report.moved) == 5 and not report.added and not loads


def test_a_rename_to_another_format_is_read_again_not_moved(kb_factory, tmp_path: Path) -> None:
    """page.txt renamed page.html holds the same bytes, but they are markup now: moved as they were, its script
    text stayed searchable and it was filed as text."""
    page = "<html><head><title>Lantern guide</title><script>var secretToken = 1;</script></head>" \
           "<body><p>Trim the wick of the brass lantern.</p></body></html>"
    folder = write_docs(tmp_path / "docs", {"page.txt": page})
    kb = kb_factory()
    kb.ingest(folder)
    (folder / "page.txt").rename(folder / "page.html")
    report = kb.ingest(folder)
    assert not report.moved and report.added == [str(folder.resolve() / "page.html")]
    assert report.removed == [str(folder.resolve() / "page.txt")]
    assert not kb.search("secretToken", mode="keyword")
    [hit] = kb.search("brass lantern wick", k=1, mode="keyword", filters={"file_types": ["html"]})
    assert hit.path.endswith("page.html") and hit.title == "Lantern guide"


@pytest.mark.databases("sqlite")  # no PostgreSQL knowledge base was ever at version 1
def test_a_version_1_database_is_migrated_to_the_current_schema(kb_factory, tmp_path: Path) -> None:
    kb = kb_factory()
    kb.ingest(write_docs(tmp_path / "docs"))
    kb.close()
    execute_sql(kb.store.url, *back_to_version_1("sqlite"))
    migrated = kb_factory()
    assert migrated.stats().schema_version == SCHEMA_VERSION
    with migrated.store.sessions() as session:
        from sqlalchemy import text

        assert session.execute(text("SELECT count(*) FROM chunks WHERE text_hash = ''")).scalar() == 0
    assert migrated.search("margrave", mode="keyword")


def test_settings_file_comes_first_and_is_private(kb_factory, tmp_path: Path, monkeypatch) -> None:
    import kb.knowledge_base as facade

    def crash(*_args: object) -> None:
        raise KeyboardInterrupt  # killed after the settings were written, before the database exists

    monkeypatch.setattr(facade.Store, "__init__", crash)
    with pytest.raises(KeyboardInterrupt):
        kb_factory("killed")
    assert (tmp_path / "killed" / "kb.json").exists() and not (tmp_path / "killed" / "kb.sqlite").exists()
    monkeypatch.undo()
    kb = kb_factory("fresh")
    assert (kb.directory / "kb.json").stat().st_mode & 0o777 == 0o600
    assert not list(kb.directory.glob("*.tmp"))


def test_empty_documents_are_a_status_of_their_own(kb_factory, tmp_path: Path) -> None:
    from tests.documents import pdf_bytes

    folder = write_docs(tmp_path / "docs")
    (folder / "scan.pdf").write_bytes(pdf_bytes([[], []]))  # pages without a text layer
    kb = kb_factory(ocr="off")
    report = kb.ingest(folder)
    scan = str((folder / "scan.pdf").resolve())
    assert report.empty == [scan] and scan in report.added and "no text layer" in report.warnings[scan][0]
    assert "1 empty, 1 with warnings" in report.summary()
    stats = kb.stats()
    assert stats.documents == 5 and stats.empty == [scan] and list(stats.warnings) == [scan]
    assert any("hold no text" in note for note in kb.doctor().notes)
    assert kb.ingest(folder).unchanged  # an empty document is not read again until it changes
    assert scan in kb.ingest(folder).unchanged


@pytest.mark.parametrize(("call", "refused"), [
    (lambda kb: kb.search("days", k=5.5), "k must be between 1 and 10,000, a whole number (got 5.5)"),
    (lambda kb: kb.search("days", k=True), "k must be between 1 and 10,000, a whole number (got True)"),
    (lambda kb: kb.search("days", k="5"), "k must be between 1 and 10,000"),
    (lambda kb: kb.ask("days?", k=2.5), "k must be between 1 and 10,000"),
    (lambda kb: kb.ask("days?", top_k=2.5), "the number of answers (top_k, --answers) must be between 1 and 10,000"),
    (lambda kb: kb.ask("days?", top_k=float("nan")), "the number of answers (top_k, --answers) must be between"),
    (lambda kb: kb.ask("days?", threshold=float("nan")), "threshold must be a number from 0 to 1 (got nan)"),
    (lambda kb: kb.ask("days?", threshold=float("-inf")), "threshold must be a number from 0 to 1 (got -inf)"),
    (lambda kb: kb.ask("days?", threshold=1.5), "threshold must be a number from 0 to 1"),
    (lambda kb: kb.jobs(limit=2**70), "the number of runs shown (limit, --limit) must be between 1 and 1,000,000"),
    (lambda kb: kb.jobs(limit=2.0), "the number of runs shown (limit, --limit) must be between"),
    (lambda kb: kb.search("\ud800"), "the query holds a lone UTF-16 surrogate"),
    (lambda kb: kb.ask("refund \ud800?"), "the question holds a lone UTF-16 surrogate"),
    (lambda kb: kb.search("days", filters={"path_glob": ["*.txt"] * 100_000}), "100,000 globs; at most 100"),
    (lambda kb: kb.search("days", filters={"path_glob": "*" * 60_000}), "longer than any path (4,096 characters)"),
    (lambda kb: kb.search("days", filters={"path_glob": "\ud800*"}), "path_glob holds a lone UTF-16 surrogate"),
    (lambda kb: kb.image_preview(2**70), "chunk 1180591620717411303424 is not an image"),
    (lambda kb: kb.image_preview(2**31), "chunk 2147483648 is not an image"),  # past PostgreSQL's INTEGER
    (lambda kb: kb.ingest("docs\0"), "holds a NUL character"),
    (lambda kb: kb.add_source("docs\0"), "holds a NUL character"),
    (lambda kb: kb.remove_source("docs\0"), "holds a NUL character"),
])
def test_arguments_of_the_wrong_kind_or_past_their_bounds_are_refused_in_one_line(kb_factory, call, refused) -> None:
    """Each once failed deep inside (a TypeError from the tokenizer or torch, an OverflowError or a 'pattern too
    complex' from SQL after 35 s), or was taken silently (``k=True`` as 1, ``threshold=nan`` as never answering)."""
    with pytest.raises((KbError, ValidationError)) as raised:
        call(kb_factory())
    assert refused in str(raised.value) and (isinstance(raised.value, KbError) or "path_glob" in str(raised.value))


def test_a_question_finds_another_form_of_its_words_once_doctor_rebuilds_a_version_two_index(kb_factory,
                                                                                             tmp_path: Path) -> None:
    """Keyword search matches English words by their stem ("invented" finds "invention"); a knowledge base indexed
    by version 2 (plurals only) reads with it, as before, until ``kb doctor --repair`` rebuilds the postings."""
    from kb.keywords import keyword_tokenizer
    from kb.postings import rebuild_postings

    folder = write_docs(tmp_path / "docs", {"phone.txt": "The invention of the telephone changed offices.",
                                            "radio.txt": "Radio sets were sold in shops."})
    built = kb_factory(clip_model="none")
    built.ingest(folder)
    with built.store.write() as unit:
        rebuild_postings(unit, keyword_tokenizer(built.keywords.name, version=2))
    built.close()
    kb = kb_factory(clip_model="none")
    name = kb.keywords.name  # the default tokenizer
    assert kb.keywords.scheme == f"{name}/2"
    assert kb.search("Who invented the telephone?", k=1, mode="keyword")[0].path.endswith("phone.txt")  # by "telephone"
    assert kb.search("invented", k=1, mode="keyword") == []
    (found,) = [p for p in kb.doctor().problems if p.kind == "keyword tokenizer"]
    assert f"version 2 of the {name!r} tokenizer" in found.detail and "one stem" in found.detail
    assert [p.repaired for p in kb.doctor(repair=True).problems if p.kind == "keyword tokenizer"] == [True]
    assert kb.keywords.scheme == f"{name}/3" and not kb.doctor().problems
    assert [hit.path.rsplit("/", 1)[-1] for hit in kb.search("invented", k=2, mode="keyword")] == ["phone.txt"]


def test_a_search_for_images_in_a_knowledge_base_of_text_reads_no_index(kb_factory, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``ask`` searches for images beside its passages; where none is stored, that search is answered at once
    (it took a third of a search's time, reading the indexes for nothing)."""
    from kb.storage.reading import Snapshot

    kb = kb_factory(clip_model="none")
    kb.ingest(write_docs(tmp_path / "docs"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an index was read")

    monkeypatch.setattr(Snapshot, "dense_search", refuse)
    monkeypatch.setattr(Snapshot, "bm25", refuse)
    for mode in ("dense", "keyword", "hybrid"):
        assert kb.search("vacation days", k=3, mode=mode, modalities={"image"}) == []
    monkeypatch.undo()
    assert kb.search("vacation days", k=1, modalities={"text"})[0].path.endswith("leave.txt")


def test_keyword_postings_sent_in_parts_score_as_when_sent_at_once(
        kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's postings go to SQLite in parts (9 MB of Chinese made millions of rows at once, 4.7 GB) and are
    made with each chunk's length once (it was once per row); every part lands, with the same BM25 scores."""
    from kb.storage import writing

    folder = write_docs(tmp_path / "docs")
    whole = kb_factory("whole")
    whole.ingest(folder)
    monkeypatch.setattr(writing, "POSTINGS_PER_INSERT", 3)
    parts = kb_factory("parts")
    parts.ingest(folder)
    for query in ("vacation days expire", "meals reimbursed per day", "return an item for a refund", "castle"):
        expected = [(hit.path, round(hit.score, 6)) for hit in whole.search(query, k=4, mode="keyword")]
        assert expected == [(hit.path, round(hit.score, 6)) for hit in parts.search(query, k=4, mode="keyword")]
        assert expected
