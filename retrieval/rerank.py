"""The optional rerank stage: a cross-encoder reads the query with each of the best fused text hits and reorders
them. Slower than fusion (one transformer pass per candidate) and usually more precise at the top."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from kb.encoders.sentence_transformer import resolve_model_folder
from kb.errors import ModelNotFoundError
from kb.types import Hit

OFF = {"", "none", "off"}


def reranker_enabled(name: str | None) -> bool:
    return name is not None and name.strip().lower() not in OFF


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder, loaded on first use; scores are probabilities (sigmoid)."""

    def __init__(self, name: str, device: str | None = None, batch_size: int = 32) -> None:
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                from sentence_transformers.cross_encoder import CrossEncoder

                folder = resolve_model_folder(self.name)
                try:
                    self._model = CrossEncoder(str(folder), device=self.device, trust_remote_code=False)
                except (OSError, ValueError) as error:
                    raise ModelNotFoundError(f"reranker model {self.name!r} could not be loaded from {folder} "
                                             f"({error}); set KB_RERANKER_MODEL to a cross-encoder folder (`kb "
                                             "train reranker` makes one) or to none") from error
        return self._model

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        model = self._load()
        import torch

        return np.asarray(model.predict([(query, text) for text in texts], batch_size=self.batch_size,
                                        activation_fn=torch.nn.Sigmoid(), show_progress_bar=False), dtype=np.float64)

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """``hits`` with the text hits reordered by the cross-encoder in the places text hits held (images keep
        theirs); a reranked hit's ``score`` is the cross-encoder's probability, its fused score is kept."""
        slots = [i for i, hit in enumerate(hits) if hit.modality == "text"]
        scores = self.scores(query, [hits[i].text for i in slots])
        order = sorted(range(len(slots)), key=lambda j: (-scores[j], j))
        result = list(hits)
        for slot, j in zip(slots, order):
            hit = hits[slots[j]]
            result[slot] = hit.model_copy(update={"score": float(scores[j]), "rerank_score": float(scores[j]),
                                                  "fused_score": hit.score})
        return result
