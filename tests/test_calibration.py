"""Calibration puts similarities from different spaces on one scale before they are fused."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.calibration import LARGE, MIN_SAMPLE, Typical, align, standardise


def test_an_equally_unusual_score_counts_the_same_on_the_target_scale() -> None:
    clip, text = Typical(mean=0.20, std=0.02), Typical(mean=0.10, std=0.10)
    aligned = dict(align([(1, 0.26), (2, 0.20), (3, 0.18)], clip, text))
    assert aligned[1] == pytest.approx(0.40)  # three deviations above typical, on either scale
    assert aligned[2] == pytest.approx(0.10) and aligned[3] == pytest.approx(0.0)


def test_lists_with_different_ranges_merge_by_standard_score() -> None:
    # Image-to-image similarities run high, image-to-text low: the better text match must not lose by default.
    images = standardise([(10, 0.80)], Typical(mean=0.75, std=0.05))
    texts = standardise([(20, 0.35)], Typical(mean=0.20, std=0.05))
    merged = sorted(images + texts, key=lambda pair: -pair[1])
    assert [item for item, _ in merged] == [20, 10]


def test_a_small_modality_borrows_the_whole_space_as_background(image_kb, tmp_path) -> None:
    from tests.test_multimodal import write_folder

    kb = image_kb()
    kb.ingest(write_folder(tmp_path / "docs"))
    space = next(space for space in kb.store.spaces() if space.name == "clip")
    query = np.ones(space.dimension, dtype=np.float32) / np.sqrt(space.dimension)
    backgrounds = kb.retriever.backgrounds
    with kb.store.read() as snapshot:
        images = backgrounds._sample(snapshot, space, "image")
        everything = backgrounds._sample(snapshot, space, None)
        typical = backgrounds.typical(snapshot, space, query, "image")
    assert len(images) == 4 < MIN_SAMPLE and len(everything) == 6  # four distinct pictures: too few to say
    assert typical.mean == pytest.approx(float((everything @ query).mean()), abs=1e-5)
    assert typical.std == pytest.approx(float((everything @ query).std()), abs=1e-5)


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
