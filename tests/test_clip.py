"""The CLIP encoder with a tiny open_clip model: loading, vectors, identity, missing weights, and learning."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from kb.config import Settings
from kb.encoders import ClipEncoder, clip_encoder
from kb.errors import ModelNotFoundError
from tests.clip_model import CLASSES, caption, shape_images


def test_nothing_loads_before_first_use(tiny_clip: tuple[Path, Path]) -> None:
    config, checkpoint = tiny_clip
    encoder = ClipEncoder(str(config), str(checkpoint), device="cpu")
    assert encoder._model is None
    assert encoder.tokenizer is None and encoder._model is None
    encoder.encode(["a red circle"])
    assert encoder._model is not None


def test_vectors_are_normalised_float32_of_the_model_dimension(tiny_clip: tuple[Path, Path]) -> None:
    config, checkpoint = tiny_clip
    encoder = ClipEncoder(str(config), str(checkpoint), device="cpu", batch_size=4)
    images = [image for image, _ in shape_images(1, seed=1)]
    texts = encoder.encode(["a red circle", "a blue square", "word " * 500])  # the last is cut at 77 tokens
    vectors = encoder.encode_images(images)
    identity = encoder.identity()
    assert identity.model == f"tiny-clip/{checkpoint.name}" and identity.dimension == 32 and identity.normalized
    assert encoder.context_length == 77
    for array, rows in ((texts, 3), (vectors, len(images))):
        assert array.shape == (rows, 32) and array.dtype == np.float32
        assert np.allclose(np.linalg.norm(array, axis=1), 1, atol=1e-5)
    assert encoder.encode([]).shape == (0, 32) and encoder.encode_images([]).shape == (0, 32)
    again = encoder.encode_images(images)  # batches of 4 give the same vectors
    assert np.allclose(again, vectors, atol=1e-5)
    assert (again @ vectors.T).argmax(axis=1).tolist() == list(range(len(images)))


def test_identity_follows_the_checkpoint_contents(tiny_clip: tuple[Path, Path], tmp_path: Path) -> None:
    from tests.clip_model import save_random_checkpoint

    config, checkpoint = tiny_clip
    moved = shutil.copy(checkpoint, tmp_path / "copy.pt")
    other = save_random_checkpoint(config, tmp_path / "other.pt", seed=1)
    first, copy, second = (ClipEncoder(str(config), str(path), device="cpu").identity()
                           for path in (checkpoint, moved, other))
    assert first.fingerprint == copy.fingerprint
    assert first.fingerprint != second.fingerprint


def test_missing_checkpoint_file_says_what_to_do(tiny_clip: tuple[Path, Path], tmp_path: Path) -> None:
    config, _ = tiny_clip
    with pytest.raises(ModelNotFoundError, match="KB_CLIP_PRETRAINED") as caught:
        ClipEncoder(str(config), str(tmp_path / "missing.pt")).identity()
    assert "missing.pt" in str(caught.value) and "KB_CLIP_MODEL=none" in str(caught.value)


def test_uncached_tag_fails_fast_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # weights cached on this machine stay unseen
    started = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="ViT-B-32/laion2b_s34b_b79k") as caught:
        ClipEncoder("ViT-B-32", "laion2b_s34b_b79k").identity()
    assert time.perf_counter() - started < 5
    assert str(tmp_path) in str(caught.value) and "offline" in str(caught.value)
    with pytest.raises(ModelNotFoundError, match="laion2b_s34b_b79k"):  # the known tags are listed
        ClipEncoder("ViT-B-32", "no-such-tag").identity()
    with pytest.raises(ModelNotFoundError, match="architecture"):
        ClipEncoder("ViT-Nope", "openai").identity()


def test_factory_turns_the_image_space_off_with_none(tiny_clip: tuple[Path, Path]) -> None:
    assert clip_encoder(Settings(clip_model="None")) is None
    config, checkpoint = tiny_clip
    encoder = clip_encoder(Settings(clip_model=str(config), clip_pretrained=str(checkpoint), batch_size=8))
    assert isinstance(encoder, ClipEncoder) and encoder.batch_size == 8 and encoder._model is None


def test_trained_tiny_clip_finds_held_out_images_from_their_captions(trained_clip: tuple[Path, Path]) -> None:
    """Text-to-image R@1 over fresh shape images: chance is 1/12 (a hit is an image of the caption's class)."""
    config, checkpoint = trained_clip
    encoder = ClipEncoder(str(config), str(checkpoint), device="cpu")
    pairs = shape_images(4, seed=12345)
    images = encoder.encode_images([image for image, _ in pairs])
    queries = [caption(colour, shape) for colour, shape in CLASSES]
    best = (encoder.encode(queries) @ images.T).argmax(axis=1)
    recall = float(np.mean([pairs[index][1] == query for index, query in zip(best, queries, strict=True)]))
    print(f"tiny CLIP text-to-image R@1 = {recall:.2f} (chance {1 / len(CLASSES):.2f})")
    assert recall >= 3 / len(CLASSES)
