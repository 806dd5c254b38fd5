"""Fingerprints of model folders, so a space can tell whether it is queried with the encoder that built it."""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx")
CONFIG_NAMES = ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json", "vocab.txt")


def folder_fingerprint(folder: Path) -> str:
    """SHA-256 over the folder's weight and configuration files (names and contents)."""
    digest = hashlib.sha256()
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name in CONFIG_NAMES)
    )
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
