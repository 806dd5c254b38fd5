"""Fingerprints of model folders, so a space can tell whether it is queried with the encoder that built it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".npz", ".model")  # .model: SentencePiece
CONFIG_NAMES = ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json", "vocab.txt")


SAMPLE_BYTES = 4 << 20


def folder_fingerprint(folder: Path, skip: Sequence[str] = ()) -> str:
    """SHA-256 over the folder's configuration files and weight files (names, sizes, contents), leaving out its
    subfolders named in ``skip`` (what was derived from the model, such as a reader's calibrated int8 graph).

    Weight files larger than 8 MiB contribute their size and their first and last 4 MiB: enough to tell two
    models apart, and cheap enough to compute whenever a model loads, even for gigabyte checkpoints.
    """
    digest = hashlib.sha256()
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name in CONFIG_NAMES)
        and p.relative_to(folder).parts[0] not in skip
    )
    for path in files:
        digest.update(f"{path.relative_to(folder)}:{path.stat().st_size}".encode())
        _update_with_file(digest, path)
    return digest.hexdigest()


def file_fingerprint(path: Path) -> str:
    """SHA-256 over one weight file's size and contents (sampled like ``folder_fingerprint`` above 8 MiB), so a
    checkpoint keeps its fingerprint when it is moved or renamed."""
    digest = hashlib.sha256(f"{path.stat().st_size}".encode())
    _update_with_file(digest, path)
    return digest.hexdigest()


def _update_with_file(digest: hashlib._Hash, path: Path) -> None:
    """Feed the file's contents to ``digest``: all of it up to 8 MiB, else its first and last 4 MiB."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= 2 * SAMPLE_BYTES:
            digest.update(handle.read())
        else:
            digest.update(handle.read(SAMPLE_BYTES))
            handle.seek(-SAMPLE_BYTES, 2)
            digest.update(handle.read(SAMPLE_BYTES))
