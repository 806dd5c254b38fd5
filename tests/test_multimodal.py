"""Images in the knowledge base: ingested from files and documents, found by text and by image, kept consistent."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sqlalchemy import func, select

from kb.cli import main
from kb.errors import EncoderMismatchError, ImageSearchUnavailable
from kb.storage.models import SCHEMA_VERSION, Chunk, Space, StoredImage, Vector
from kb.types import CLIP_SPACE, TEXT_SPACE
from tests.databases import Database, back_to_version_4_keywords, execute_sql

pytestmark = pytest.mark.databases("sqlite", "pgvector")  # PostgreSQL with faiss: see test_knowledge_base


def noise_image(path: Path, seed: int, size: tuple[int, int] = (96, 64)) -> Path:
    """A distinct picture per seed: blocks of random colour."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST).save(path)
    return path


def write_folder(folder: Path) -> Path:
    """Three image files, a Markdown page embedding a fourth with alt text, and a plain text file."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(3):
        noise_image(folder / f"photo-{seed}.png", seed)
    (folder / "img").mkdir(exist_ok=True)
    noise_image(folder / "img" / "dock.png", 7)
    (folder / "warehouse.md").write_text(
        "# Warehouse\n\nThe east wing stores pallets.\n\n![forklift at the loading dock](img/dock.png)\n\n"
        "Only trained staff may drive there.\n", encoding="utf-8")
    (folder / "policy.txt").write_text("Customers may return unused items within 30 days for a refund.\n",
                                       encoding="utf-8")
    return folder


def counts(kb) -> dict[str, int]:
    """Vectors per space, image rows, and image chunks, as the database holds them."""
    with kb.store.sessions() as session:
        spaces = dict(session.execute(select(Space.name, func.count(Vector.chunk_id))
                                      .join(Vector, Vector.space_id == Space.id).group_by(Space.name)).all())
        images = session.scalar(select(func.count()).select_from(StoredImage)) or 0
        image_chunks = session.scalar(select(func.count()).where(Chunk.modality == "image")) or 0
    return {**spaces, "images": images, "image_chunks": image_chunks}


def test_images_are_ingested_into_both_spaces_and_found_by_themselves(image_kb, tmp_path: Path) -> None:
    kb = image_kb()
    folder = write_folder(tmp_path / "docs")
    report = kb.ingest(folder)
    assert not report.failed and not report.notices
    assert len(report.added) == 6  # three photos, img/dock.png, the Markdown page embedding it, the text file
    found = counts(kb)
    assert found["images"] == found["image_chunks"] == kb.stats().images == 5
    text_chunks = kb.stats().chunks - 5
    assert found[CLIP_SPACE] == text_chunks + 5  # every chunk: CLIP text embeddings and image embeddings
    assert found[TEXT_SPACE] == text_chunks + 1  # text chunks and the one described image

    for seed in range(3):
        best = kb.search(image=folder / f"photo-{seed}.png", k=3, modalities={"image"})[0]
        assert Path(best.path).name == f"photo-{seed}.png" and best.modality == "image"
        assert best.image is not None and (best.image.width, best.image.height) == (96, 64)
        assert best.clip_score == pytest.approx(1.0, abs=1e-3)
    mixed = kb.search(image=folder / "photo-1.png", k=10)
    assert {hit.modality for hit in mixed} == {"text", "image"}
    assert all(hit.modality == "text" for hit in kb.search("pallets", k=5, modalities={"text"}))


def test_an_embedded_image_carries_its_document_and_description(image_kb, tmp_path: Path) -> None:
    kb = image_kb()
    kb.ingest(write_folder(tmp_path / "docs"))
    hits = kb.search("forklift loading dock", k=3, mode="keyword", modalities={"image"})
    assert hits, "the alt text makes the embedded image searchable"
    dock = hits[0]
    assert dock.path.endswith("warehouse.md") and dock.image is not None and dock.image.name.endswith("dock.png")
    assert "forklift at the loading dock" in dock.text
    preview = Image.open(io.BytesIO(kb.image_preview(dock)))
    assert preview.format == "JPEG" and min(preview.size) <= 256
    near = kb.retriever.images_near([h.chunk_id for h in kb.search("trained staff drive", k=1, mode="keyword")])
    assert [hit.chunk_id for hit in near] == [dock.chunk_id]


def test_a_picture_alone_after_a_paragraph_is_linked_to_that_passage(image_kb, tmp_path: Path) -> None:
    """Its empty span stands where the paragraph ends, which is where the paragraph's chunk ends: no passage
    claimed it, so neither ``ask`` nor a search showed it with the text it illustrates."""
    from docx import Document

    folder = tmp_path / "docs"
    folder.mkdir()
    document = Document()
    document.add_paragraph("The harbour crane lifts containers from the ships.")
    picture = io.BytesIO()
    Image.new("RGB", (120, 90), (200, 40, 40)).save(picture, "PNG")
    document.add_paragraph().add_run().add_picture(picture)
    document.save(folder / "crane.docx")
    kb = image_kb()
    kb.ingest(folder)
    [passage] = kb.search("harbour crane", k=1, mode="keyword", modalities={"text"})
    [image] = kb.retriever.images_near([passage.chunk_id])
    assert (image.modality, image.start, image.end) == ("image", passage.end, passage.end)


def test_removing_an_image_file_removes_it_everywhere(image_kb, tmp_path: Path) -> None:
    kb = image_kb()
    folder = write_folder(tmp_path / "docs")
    kb.ingest(folder)
    before = counts(kb)
    (folder / "photo-0.png").unlink()
    report = kb.ingest(folder)
    assert [Path(p).name for p in report.removed] == ["photo-0.png"]
    after = counts(kb)
    assert after["images"] == before["images"] - 1 and after[CLIP_SPACE] == before[CLIP_SPACE] - 1
    for space in kb.store.spaces():
        index = kb.store.index(space)
        assert index.count == after[space.name]
    again = kb.ingest(folder)
    assert again.chunks_added == 0 and len(again.unchanged) == 5


def test_without_clip_weights_text_still_works_and_the_user_is_told(image_kb, kb_factory, tiny_clip,
                                                                    tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "docs")
    config, checkpoint = tiny_clip
    kb = image_kb(clip_pretrained=str(tmp_path / "missing.pt"))
    report = kb.ingest(folder)
    assert not report.failed and len(report.added) == 6
    assert [notice for notice in report.notices if "image space is off" in notice], report.notices
    assert any("missing.pt" in notice for notice in kb.stats().notices)  # the whole reason, kept
    noise_image(folder / "photo-9.png", 9)
    assert not kb.ingest(folder).notices  # said once per knowledge base, not on every run
    assert kb.search("refund", k=1)[0].path.endswith("policy.txt")
    assert kb.search("forklift", k=1, modalities={"image"})[0].path.endswith("warehouse.md")
    with pytest.raises(ImageSearchUnavailable, match="missing.pt"):
        kb.search(image=folder / "photo-0.png")
    kb.close()
    # With the weights back, doctor --repair embeds what the run could not, from the stored previews.
    repaired = image_kb(clip_pretrained=str(checkpoint))
    problems = repaired.doctor(repair=True).problems
    assert any(problem.kind == "missing vectors" for problem in problems)
    assert Path(repaired.search(image=folder / "photo-2.png", k=1)[0].path).name == "photo-2.png"
    assert not repaired.stats().notices  # the image space is on again


def test_a_different_clip_model_is_a_clear_error(image_kb, tiny_clip, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "docs")
    image_kb().ingest(folder)
    config, checkpoint = tiny_clip
    from tests.clip_model import save_random_checkpoint

    other = save_random_checkpoint(config, tmp_path / "other.pt", seed=1)
    kb = image_kb(clip_pretrained=str(other))
    assert kb.ingest(folder).unchanged  # nothing to embed, so no model is even loaded
    with pytest.raises(EncoderMismatchError, match="kb reembed"):
        kb.search(image=folder / "photo-1.png", k=1)
    (folder / "policy.txt").write_text("Customers may return unused items within 60 days.\n", encoding="utf-8")
    with pytest.raises(EncoderMismatchError, match="kb reembed"):
        kb.ingest(folder)
    assert kb.reembed() > 0
    assert Path(kb.search(image=folder / "photo-1.png", k=1)[0].path).name == "photo-1.png"


def test_bad_images_are_reported_and_the_rest_ingested(image_kb, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "docs")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not a picture", encoding="utf-8")
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), "red").save(buffer, "PNG")
    (folder / "truncated.png").write_bytes(buffer.getvalue()[:120])
    report = image_kb().ingest(folder)
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert set(failed) == {"empty.jpg", "notes.png", "truncated.png"}
    assert all(reason for reason in failed.values())
    assert len(report.added) == 6


def test_text_finds_images_by_what_they_show(kb_factory, trained_clip, tmp_path: Path) -> None:
    """A tiny CLIP trained on coloured shapes: captions find the matching pictures, which have no description."""
    from tests.clip_model import COLOURS, SHAPES, caption, draw

    config, checkpoint = trained_clip
    folder = tmp_path / "shapes"
    folder.mkdir()
    rng = random.Random(11)
    for colour in COLOURS:
        for shape in SHAPES:
            draw(colour, shape, rng).save(folder / f"{colour}-{shape}.png")
    kb = kb_factory(clip_model=str(config), clip_pretrained=str(checkpoint), ocr="off")
    kb.ingest(folder)
    top1 = [Path(kb.search(caption(c, s), k=1, modalities={"image"})[0].path).stem == f"{c}-{s}"
            for c in COLOURS for s in SHAPES]
    chance = 1 / (len(COLOURS) * len(SHAPES))
    assert np.mean(top1) >= 3 * chance, f"text-to-image R@1 {np.mean(top1):.2f}, chance {chance:.2f}"


def test_ocr_makes_text_in_images_searchable_and_linked(image_kb, tmp_path: Path) -> None:
    font = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not font.exists():
        pytest.skip("DejaVuSans.ttf is not installed")
    from PIL import ImageFont

    folder = tmp_path / "docs"
    folder.mkdir()
    sign = Image.new("RGB", (900, 300), "white")
    ImageDraw.Draw(sign).text((40, 100), "LOADING DOCK SEVEN", fill="black", font=ImageFont.truetype(str(font), 64))
    sign.save(folder / "sign.jpg")
    sign.save(folder / "scan.pdf", "PDF", resolution=100)  # an image-only PDF page: a scan
    kb = image_kb(ocr="on")
    report = kb.ingest(folder)
    assert not report.failed, report.failed
    hits = kb.search("loading dock", k=5, mode="keyword", modalities={"text"})
    assert {Path(hit.path).name for hit in hits} == {"sign.jpg", "scan.pdf"}
    scan_hit = next(hit for hit in hits if hit.path.endswith("scan.pdf"))
    assert scan_hit.page == 1 and "DOCK" in scan_hit.text.upper()
    linked = kb.retriever.images_near([hit.chunk_id for hit in hits])
    assert {Path(hit.path).name for hit in linked} == {"sign.jpg", "scan.pdf"}


def test_cli_searches_by_image_and_writes_previews(image_kb, tmp_path: Path, capsys) -> None:
    folder = write_folder(tmp_path / "docs")
    image_kb().close()
    home = str(tmp_path / "kb")
    assert main(["--kb", home, "ingest", str(folder)]) == 0
    capsys.readouterr()
    assert main(["--kb", home, "search", "--image", str(folder / "photo-2.png"), "--modality", "image", "-k", "1",
                 "--json"]) == 0
    import json

    hit = json.loads(capsys.readouterr().out)[0]
    assert hit["path"].endswith("photo-2.png") and hit["image"]["width"] == 96
    out = tmp_path / "preview.jpg"
    assert main(["--kb", home, "preview", str(hit["chunk_id"]), str(out)]) == 0
    assert Image.open(out).format == "JPEG"
    assert main(["--kb", home, "search"]) == 2


def test_a_version_2_database_gains_the_images_table(image_kb, database: Database, tmp_path: Path) -> None:
    kb = image_kb()
    kb.ingest(write_folder(tmp_path / "docs"))
    kb.close()
    images = "SELECT id FROM chunks WHERE modality = 'image'"
    execute_sql(kb.store.url, "DROP TABLE images",  # version 2 had no images: drop them with everything derived
                *(f"DELETE FROM {table} WHERE chunk_id IN ({images})" for table in ("vectors", "postings")),
                "DELETE FROM chunks WHERE modality = 'image'", *back_to_version_4_keywords(database.kind),
                "UPDATE meta SET value='2' WHERE key='schema_version'")
    migrated = image_kb()
    assert migrated.stats().schema_version == SCHEMA_VERSION
    assert migrated.search("refund", k=1)[0].path.endswith("policy.txt")


def test_answers_come_with_the_images_of_their_passages(image_kb, tiny_reader: Path, tmp_path: Path) -> None:
    from tests.qa_model import question

    folder = tmp_path / "docs"
    folder.mkdir()
    noise_image(folder / "badge.png", 3)
    (folder / "badges.md").write_text("![a staff badge](badge.png)\n\nThe code of alice is 4721. Parking is free "
                                      "for visitors.\n", encoding="utf-8")
    (folder / "other.md").write_text("The code of bruno is 815. Parking is free for visitors.\n", encoding="utf-8")
    kb = image_kb(reader_model=str(tiny_reader))
    kb.ingest(folder)
    answers = kb.ask(question("alice"), k=3)
    assert answers.status == "answered" and answers[0].text == "4721"
    linked = [hit for hit in answers[0].images if hit.path.endswith("badges.md")]
    assert linked and linked[0].image is not None and linked[0].image.name.endswith("badge.png")
    assert all(hit.modality == "text" for hit in answers.evidence if hit.chunk_id in
               {source.chunk_id for source in answers[0].sources})


@pytest.mark.parametrize("fusion", ["calibrated", "rrf", "relative"])
def test_a_strong_passage_is_not_outranked_by_unrelated_pictures(image_kb, tmp_path: Path, fusion: str) -> None:
    """CLIP matches join the dense list on its scale before fusion, whatever the fusion."""
    kb = image_kb(fusion=fusion)
    kb.ingest(write_folder(tmp_path / "docs"))
    best = kb.search("pallets in the east wing", k=3)[0]
    assert best.modality == "text" and best.path.endswith("warehouse.md")


def test_many_pictures_do_not_crowd_passages_out_of_ask(image_kb, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    noise_image(folder / "logo.png", 5)
    for page in range(12):
        (folder / f"page{page}.md").write_text(f"![company logo](logo.png)\n\nThis page is about subject {page}.\n",
                                               encoding="utf-8")
    kb = image_kb()
    kb.ingest(folder)
    result = kb.ask("Which page talks about subject 7?", k=3)  # no reader weights here: evidence only
    assert result.status == "reader_unavailable"
    assert [Path(hit.path).name for hit in result.evidence if hit.modality == "text"][0] == "page7.md"


def text_only_folder(tmp_path: Path) -> Path:
    """A source folder of one text file and no image."""
    folder = tmp_path / "text"
    folder.mkdir()
    (folder / "policy.txt").write_text("Customers may return unused items within 30 days.", encoding="utf-8")
    return folder


@pytest.mark.databases("sqlite", "postgresql")  # the FAISS index, whose filtered path is watched here
def test_a_text_only_search_filters_by_modality_only_where_other_modalities_exist(
        image_kb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ask searches its passages with modalities={"text"}: where no image is stored, nothing is left out, so the
    search takes the unfiltered paths (several times faster on a large index) and finds the same chunks."""
    from kb.storage import faiss_index

    asked: list[object] = []
    allowed = faiss_index.allowed_chunk_ids

    def recorded(session: object, filters: object, modalities: object = None) -> object:
        asked.append(modalities)
        return allowed(session, filters, modalities)

    monkeypatch.setattr(faiss_index, "allowed_chunk_ids", recorded)
    kb = image_kb()
    kb.ingest(text_only_folder(tmp_path))
    every = kb.search("return items", mode="dense", modalities={"text"})
    assert every and set(asked[-1]) == {"text", "image"}  # unrestricted: there is nothing else to leave out
    kb.ingest(write_folder(tmp_path / "docs"))  # now images too
    hits = kb.search("forklift at the loading dock", mode="hybrid", k=10, modalities={"text"})
    assert set(asked[-1]) == {"text"} and hits and all(hit.modality == "text" for hit in hits)


def test_ask_in_a_knowledge_base_without_images_encodes_its_question_for_no_image_search(
        image_kb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ask searches passages, then images: where no image is stored, its question was still encoded by CLIP (and
    cut into keyword terms) for a search that could find nothing; once images are stored, it is."""
    from kb.encoders.clip import ClipEncoder

    encoded: list[str] = []
    encode = ClipEncoder.encode

    def recorded(self: ClipEncoder, texts: list[str], *args: object, **kwargs: object) -> object:
        encoded.extend(texts)
        return encode(self, texts, *args, **kwargs)

    monkeypatch.setattr(ClipEncoder, "encode", recorded)
    kb = image_kb()
    kb.ingest(text_only_folder(tmp_path))
    encoded.clear()  # the ingest's passages (the CLIP space holds text too)
    result = kb.ask("How long may customers return items?")
    assert result.evidence and encoded == []
    kb.ingest(write_folder(tmp_path / "docs"))
    encoded.clear()
    kb.ask("a forklift at the loading dock")
    assert encoded == ["a forklift at the loading dock"]
