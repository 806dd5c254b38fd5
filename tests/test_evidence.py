"""One hit per piece of evidence: an image and the passage that is its own text are one hit; repeats are one hit."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.types import Hit, ImageInfo, Place
from retrieval.evidence import best_of_both, interleaved, one_hit_per_evidence
from tests.rendering import LATIN_FONT, render_lines


def hit(chunk_id: int, score: float, start: int, end: int, *, document: int = 1, text: str = "passage",
        picture: str | None = None) -> Hit:
    image = ImageInfo(name=f"{picture}.png", width=10, height=10, sha256=picture * 64, chunk_id=chunk_id) \
        if picture else None
    return Hit(path=f"/docs/{document}", page=None, start=start, end=end, text=text, score=score,
               modality="image" if picture else "text", chunk_id=chunk_id, document_id=document, image=image,
               clip_score=0.3 if picture else None)


def test_an_image_ranked_first_folds_into_its_passage_at_the_image_rank() -> None:
    hits = [hit(1, 0.9, 0, 40, picture="a"), hit(2, 0.8, 0, 40, document=2), hit(3, 0.7, 10, 60)]
    merged = one_hit_per_evidence(hits)
    assert [h.chunk_id for h in merged] == [3, 2]
    assert merged[0].modality == "text" and merged[0].image is not None and merged[0].image.chunk_id == 1
    assert merged[0].score == 0.9 and merged[0].clip_score == 0.3 and (merged[0].start, merged[0].end) == (10, 60)


def test_a_passage_carries_one_image_and_unrelated_images_stay() -> None:
    hits = [hit(1, 0.9, 0, 100), hit(2, 0.8, 20, 30, picture="a"), hit(3, 0.7, 50, 60, picture="b"),
            hit(4, 0.6, 200, 210, picture="c"), hit(5, 0.5, 0, 10, document=2, picture="d")]
    merged = one_hit_per_evidence(hits)
    assert [h.chunk_id for h in merged] == [1, 3, 4, 5]
    assert merged[0].image is not None and merged[0].image.name == "a.png"


def test_an_image_with_an_empty_span_belongs_with_the_passage_it_sits_in_or_ends_at() -> None:
    """A picture alone after a paragraph has an empty span where the paragraph ends, which is where its chunk ends
    too: it belonged to no passage (nor did one after a document's last words)."""
    assert len(one_hit_per_evidence([hit(1, 0.9, 0, 50), hit(2, 0.8, 51, 51, picture="a")])) == 2
    assert len(one_hit_per_evidence([hit(1, 0.9, 0, 50), hit(2, 0.8, 50, 50, picture="a")])) == 1
    assert len(one_hit_per_evidence([hit(1, 0.9, 0, 50), hit(2, 0.8, 49, 49, picture="a")])) == 1


def test_a_passage_repeated_where_a_picture_stands_is_one_hit_carrying_it() -> None:
    """The picture (slide 3) ranked first and the same text on slide 1 next: slide 3's text joined the picture, and
    the two passages of one text came back as two hits."""
    hits = [hit(3, 0.9, 300, 300, picture="chart"), hit(1, 0.8, 0, 20, text="Sales grew."),
            hit(2, 0.7, 280, 300, text="Sales grew.")]
    [merged] = one_hit_per_evidence(hits)
    assert (merged.chunk_id, merged.image.chunk_id if merged.image else None) == (2, 3)
    assert [place.chunk_id for place in merged.repeats] == [1]


def test_repeated_passages_and_pictures_of_one_document_are_one_hit() -> None:
    hits = [hit(1, 0.9, 0, 20, text="Terms apply."), hit(2, 0.8, 0, 20, document=2, text="Terms apply."),
            hit(3, 0.7, 300, 320, text="Terms apply."), hit(4, 0.6, 900, 900, picture="logo"),
            hit(5, 0.5, 1900, 1900, picture="logo")]
    merged = one_hit_per_evidence(hits)
    assert [h.chunk_id for h in merged] == [1, 2, 4]
    assert [(place.start, place.chunk_id) for place in merged[0].repeats] == [(300, 3)]
    assert [place.chunk_id for place in merged[2].repeats] == [5]



def test_folding_looks_up_the_earlier_hit_instead_of_comparing_with_every_one(monkeypatch) -> None:
    """Deep searches fold thousands of hits: each is compared only with the hits of its document whose spans may
    overlap, not with every hit kept before it (4,000 hits took 1.6 s, 8,000 took 6.9 s)."""
    from retrieval import evidence

    compared = []
    belong_together = evidence._belong_together
    monkeypatch.setattr(evidence, "_belong_together", lambda *pair: compared.append(1) or belong_together(*pair))
    hits = [hit(number, 1 - number / 4000, 100 * (number // 2), 100 * (number // 2) + 90, document=number % 50,
                text=f"passage {number}", picture=f"p{number}" if number % 2 else None) for number in range(4000)]
    merged = one_hit_per_evidence(hits)
    assert len(merged) == 4000  # neighbours alternate documents: nothing folds
    assert len(compared) < 2 * len(hits)  # the old loop: about 4000 ** 2 / (2 * 50) = 160,000
    paired = one_hit_per_evidence([hit(1, 0.9, 0, 90), hit(2, 0.8, 0, 90, picture="a")] * 1000)
    assert len(paired) == 1 and paired[0].image is not None and len(paired[0].repeats) == 1998


def test_two_searches_give_one_hit_per_piece_of_evidence_across_both() -> None:
    """A Chinese question and its English gloss are searched apart (cross_lingual): a passage found by one and its
    own photo by the other were two hits, and a passage one search found carrying its photo lost the photo when the
    other search scored the passage alone higher."""
    passage, photo = hit(1, 0.7, 0, 40), hit(2, 0.6, 0, 40, picture="a")
    [merged] = best_of_both([passage], [photo])
    assert merged.chunk_id == 1 and merged.image is not None and merged.image.chunk_id == 2

    carried = one_hit_per_evidence([passage, photo])[0].model_copy(
        update={"repeats": [Place(page=None, start=90, end=130, chunk_id=3)]})
    [merged] = best_of_both([carried], [hit(1, 0.9, 0, 40)])
    assert merged.score == 0.9 and merged.image is not None and merged.image.chunk_id == 2
    assert merged.clip_score == 0.3 and [place.chunk_id for place in merged.repeats] == [3]

    # A repeat that one search folded, found first by the other: one hit, at the better place, keeping the photo.
    repeat, other = hit(3, 0.8, 90, 130), hit(4, 0.5, 0, 40, document=2)
    for one, two in (([carried], [repeat, other]), ([repeat, other], [carried])):
        merged = best_of_both(one, two)
        assert [h.chunk_id for h in merged] == [3, 4] and merged[0].image is not None
        assert merged[0].image.chunk_id == 2 and [place.chunk_id for place in merged[0].repeats] == [1]

    # Two passages a photo overlaps, each found carrying it: the better keeps it, the other stays a hit of its own.
    first, second = hit(5, 0.9, 0, 30, text="Dock A"), hit(6, 0.8, 20, 60, text="Dock B")
    [with_photo], [also_with_photo] = (one_hit_per_evidence([passage, photo]) for passage in (first, second))
    merged = best_of_both([with_photo], [also_with_photo])
    assert [(h.chunk_id, h.image is not None) for h in merged] == [(5, True), (6, False)]

@pytest.mark.skipif(not LATIN_FONT.is_file(), reason=f"no test font at {LATIN_FONT}")
def test_a_photographed_sign_is_one_hit_that_carries_its_image(image_kb, tmp_path: Path) -> None:
    pytest.importorskip("rapidocr_onnxruntime", reason="needs OCR (the ocr extra)")
    folder = tmp_path / "docs"
    folder.mkdir()
    render_lines(["LOADING DOCK B", "DELIVERIES ACCEPTED", "MONDAY TO FRIDAY", "6 AM TO 2 PM"]).save(
        folder / "dock-sign.png")
    (folder / "returns.txt").write_text("Customers may return unused items within 30 days of delivery.\n",
                                        encoding="utf-8")
    (folder / "parking.txt").write_text("Visitors park in the north lot; deliveries use the east gate.\n",
                                        encoding="utf-8")
    kb = image_kb(ocr="on")
    report = kb.ingest(folder)
    assert not report.failed, report.failed
    with kb.store.sessions() as session:  # the sign is stored twice: its OCR text and its picture
        from sqlalchemy import select

        from kb.storage.models import Chunk, Document
        stored = session.execute(select(Chunk.modality).join(Document).where(Document.path.like("%dock-sign.png")))
        assert sorted(stored.scalars()) == ["image", "text"]
    for mode in ("hybrid", "keyword", "dense"):
        hits = kb.search("When does loading dock B accept deliveries?", k=3, mode=mode)
        names = [Path(h.path).name for h in hits]
        assert names.count("dock-sign.png") == 1, (mode, names)
        assert len(hits) == 3 and len(set(names)) == 3  # k distinct pieces of evidence
        sign = hits[names.index("dock-sign.png")]
        assert sign.modality == "text" and sign.image is not None and sign.image.name == "dock-sign.png"
        assert "DOCK" in sign.text.upper()
        assert kb.image_preview(sign)[:2] == b"\xff\xd8"  # the preview of the image it carries (a JPEG)


def test_reranked_passages_and_pictures_are_ranked_on_the_fused_scale_they_share() -> None:
    """A reranker rescales passages (a probability blend) but not pictures: a picture takes its place among the
    passages by the fused score, and the passages keep the reranked order in theirs."""
    passages = [hit(1, 0.004, 0, 40, document=1).model_copy(update={"fused_score": 0.5}),  # reranked first
                hit(2, 0.002, 0, 40, document=2).model_copy(update={"fused_score": 0.9})]
    pictures = [hit(3, 0.7, 0, 40, document=3, picture="c"), hit(4, 0.1, 0, 40, document=4, picture="d")]
    assert [h.chunk_id for h in interleaved(passages, pictures)] == [1, 3, 2, 4]
    plain = [hit(5, 0.8, 0, 40, document=5), hit(6, 0.6, 0, 40, document=6)]  # no reranker: scores are fused
    assert [h.chunk_id for h in interleaved(plain, pictures)] == [5, 3, 6, 4]


@pytest.mark.parametrize("mode", ["keyword", "hybrid", "dense"])
def test_repeats_that_fill_the_candidate_lists_do_not_cost_hits(kb_factory, tmp_path: Path, mode: str) -> None:
    """A blank page repeated more often than a search reads candidates filled every list and folded into one hit:
    k = 3 returned 1 although other files match. The search now looks deeper until k distinct hits are found."""
    from tests.documents import pdf_bytes

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "manual.pdf").write_bytes(pdf_bytes([["This page intentionally left blank."]] * 25))
    for number in range(4):
        (folder / f"form{number}.txt").write_text(f"Form {number}: leave the blank fields of page {number} empty.\n",
                                                  encoding="utf-8")
    kb = kb_factory(fusion_candidates=5)
    assert not kb.ingest(folder).failed
    hits = kb.search("blank page", k=3, mode=mode)
    names = [Path(h.path).name for h in hits]
    assert len(hits) == 3 and len(set(names)) == 3, names
