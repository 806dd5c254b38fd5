"""Calibration puts similarities from different spaces on one scale before they are fused."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.calibration import LARGE, MIN_SAMPLE, Typical, align, merge_by_standard_score


def test_an_equally_unusual_score_counts_the_same_on_the_target_scale() -> None:
    clip, text = Typical(mean=0.20, std=0.02), Typical(mean=0.10, std=0.10)
    aligned = dict(align([(1, 0.26), (2, 0.20), (3, 0.18)], clip, text))
    assert aligned[1] == pytest.approx(0.40)  # three deviations above typical, on either scale
    assert aligned[2] == pytest.approx(0.10) and aligned[3] == pytest.approx(0.0)


def test_lists_with_different_ranges_merge_by_standard_score() -> None:
    # Image-to-image similarities run high, image-to-text low: the better text match must not lose by default.
    merged = merge_by_standard_score([([(10, 0.80)], Typical(mean=0.75, std=0.05)),
                                      ([(20, 0.35)], Typical(mean=0.20, std=0.05))])
    assert merged == [(20, pytest.approx(3.0)), (10, pytest.approx(1.0))]


def test_without_a_background_scores_stay_cosines() -> None:
    text = Typical(mean=0.10, std=0.10)
    assert align([(1, 0.06), (2, 0.03)], None, text) == [(1, 0.06), (2, 0.03)]
    assert align([(1, 0.06)], Typical(mean=0.20, std=0.02), None) == [(1, 0.06)]
    # One list without a background: none is standardised, or a cosine would be ranked against standard scores.
    assert merge_by_standard_score([([(10, 0.95)], None), ([(20, 0.35)], Typical(mean=0.20, std=0.05))]) == \
        [(10, 0.95), (20, 0.35)]


def test_a_small_modality_has_no_background_of_its_own_or_borrowed(image_kb, tmp_path) -> None:
    from tests.test_multimodal import write_folder

    kb = image_kb()
    kb.ingest(write_folder(tmp_path / "docs"))
    space = next(space for space in kb.store.spaces() if space.name == "clip")
    query = np.ones(space.dimension, dtype=np.float32) / np.sqrt(space.dimension)
    backgrounds = kb.retriever.backgrounds
    with kb.store.read() as snapshot:
        images = backgrounds._sample(snapshot, space, "image")
        assert len(images) == 4 < MIN_SAMPLE  # four distinct pictures: too few to say what is typical
        # The texts beside them are no stand-in: CLIP's text tower puts them far from every picture.
        assert backgrounds.typical(snapshot, space, query, "image") is None


def _found_by_text(kb, query: str) -> tuple[list, dict[int, float]]:
    """The image hits of a dense text search for ``query``, and every image's raw CLIP cosine with it."""
    from kb.types import CLIP_SPACE

    retriever = kb.retriever
    vector = retriever.clip.encode([query])[0]
    space = kb.store.space(CLIP_SPACE, retriever.clip.identity(), create=False)
    with kb.store.read() as snapshot:
        cosines = dict(snapshot.dense_search(space, vector, 100, None, frozenset({"image"})))
    return kb.search(query, k=100, mode="dense", modalities={"image"}), cosines


@pytest.mark.parametrize(("pictures", "texts"), [(5, 40), (12, 0)], ids=["few-images-many-texts", "photos-only"])
def test_a_text_search_finds_a_small_collection_of_images(image_kb, tmp_path, pictures: int, texts: int) -> None:
    """A handful of photos beside many texts (no image background: it used to be borrowed from the texts' CLIP
    vectors, which made every photo score below zero), or a folder of photos alone (no text background: scores
    used to become standard scores, and every below-average photo was cut): every photo with a positive cosine is
    found, at that cosine."""
    from tests.test_multimodal import noise_image

    folder = tmp_path / "docs"
    folder.mkdir()
    for seed in range(pictures):
        noise_image(folder / f"photo{seed}.png", seed)
    for number in range(texts):
        (folder / f"note{number}.txt").write_text(f"Note {number} on topic {number}, with some words.\n",
                                                  encoding="utf-8")
    kb = image_kb()
    kb.ingest(folder)
    hits, cosines = _found_by_text(kb, "photo")
    positive = {chunk_id for chunk_id, cosine in cosines.items() if cosine > 0}
    assert positive and {hit.chunk_id for hit in hits} == positive
    assert all(hit.score == pytest.approx(cosines[hit.chunk_id], abs=1e-5) for hit in hits)


def test_repeated_pictures_count_once_in_the_background(image_kb, tmp_path) -> None:
    from tests.test_multimodal import noise_image

    folder = tmp_path / "docs"
    folder.mkdir()
    noise_image(folder / "logo.png", 5)
    for page in range(20):
        (folder / f"page{page}.md").write_text("![logo](logo.png)\n\nText.\n", encoding="utf-8")
    for seed in range(3):
        noise_image(folder / f"photo{seed}.png", seed)
    kb = image_kb()
    kb.ingest(folder)
    space = next(space for space in kb.store.spaces() if space.name == "clip")
    with kb.store.read() as snapshot:
        sample = kb.retriever.backgrounds._sample(snapshot, space, "image")
    assert len(sample) == 4  # the logo (21 image chunks share it) once, and the three photos


@pytest.mark.parametrize(("vectors", "redrawn"), [(LARGE, False), (100, True)])
def test_a_large_space_keeps_its_background_over_a_few_commits(tmp_path, vectors: int, redrawn: bool,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Redrawing a sample reads every vector id: searches during an ingest must not pay that after each commit
    when a few commits cannot change what a large space's sample looks like; a small space redraws at once."""
    from kb.config import Settings
    from kb.storage.reading import Snapshot
    from kb.storage.store import Store
    from retrieval.calibration import Backgrounds
    from tests.test_vector_indexes import add, unit_vectors

    store = Store(tmp_path, Settings())
    add(store, unit_vectors(vectors, seed=1), first=0)
    space = store.spaces()[0]
    backgrounds = Backgrounds()
    reads: list[int] = []
    vector_ids = Snapshot.vector_ids

    def counted(snapshot: Snapshot, *args: object, **kwargs: object) -> list[int]:
        reads.append(1)
        return vector_ids(snapshot, *args, **kwargs)

    monkeypatch.setattr(Snapshot, "vector_ids", counted)
    query = unit_vectors(1, seed=2)[0]
    with store.read() as snapshot:
        backgrounds.typical(snapshot, space, query)
    add(store, unit_vectors(1, seed=3), first=vectors)  # one commit later
    with store.read() as snapshot:
        backgrounds.typical(snapshot, space, query)
    assert len(reads) == (2 if redrawn else 1)
    store.close()
