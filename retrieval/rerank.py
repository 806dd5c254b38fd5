"""The optional rerank stage: a cross-encoder reads the query with each of the best fused text hits, and its
probability blended with the fused score reorders them. Slower than fusion (one transformer pass per candidate),
so on a CPU it runs on an exported graph (see ``kb.inference``) unless ``reranker_backend`` says torch."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from kb.config import RerankerBackend
from kb.encoders.fingerprint import folder_fingerprint
from kb.encoders.quiet import quiet_model_loading
from kb.encoders.sentence_transformer import Loaded, exported_graph, resolve_model_folder, tokenize
from kb.errors import ModelNotFoundError
from kb.inference import Backend, ExportCache
from kb.inference.backends import checked_device, float_backend
from kb.types import Hit

OFF = {"", "none", "off"}
TRACE_EXAMPLE = [("What is traced?", "An example passage, long enough to trace the model."), ("Which?", "Another.")]


def reranker_enabled(name: str | None) -> bool:
    return name is not None and name.strip().lower() not in OFF


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder, loaded on first use on ``backend`` (``auto``: see
    :func:`float_backend`); scores are probabilities (sigmoid of its logit)."""

    def __init__(self, name: str, device: str | None = None, backend: RerankerBackend = "auto",
                 cache: ExportCache | None = None, batch_size: int = 32) -> None:
        self.name = name
        self.device = device
        self.backend: Backend = float_backend(device) if backend == "auto" else backend
        self.cache = cache or ExportCache()
        self.batch_size = batch_size
        self._loaded: Loaded | None = None
        self._lock = threading.Lock()

    def _load(self) -> Loaded:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._build()
        return self._loaded

    def _build(self) -> Loaded:
        folder = resolve_model_folder(self.name, "reranker model", "KB_RERANKER_MODEL")
        device = checked_device(self.device) if self.backend == "torch" else "cpu"  # its own error, not the model's
        with quiet_model_loading():
            from sentence_transformers.cross_encoder import CrossEncoder

            try:
                # A model named in kb.json is data, never code: no custom modelling code runs.
                model = CrossEncoder(str(folder), device=device, trust_remote_code=False)
            except (OSError, ValueError) as error:
                raise ModelNotFoundError(f"reranker model {self.name!r} could not be loaded from {folder} "
                                         f"({error}); set KB_RERANKER_MODEL to a cross-encoder folder (`kb "
                                         "train reranker` makes one) or to none") from error
        if self.backend == "torch":
            return Loaded(model, None)
        return Loaded(model, exported_graph(model, folder_fingerprint(folder), self.backend, self.cache,
                                             name="cross-encoder-scores", output="scores", example=TRACE_EXAMPLE))

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """The cross-encoder's probability that each of ``texts`` answers ``query``."""
        if not texts:
            return np.zeros(0)
        loaded = self._load()
        pairs = [(query, text) for text in texts]
        if loaded.graph is None:
            import torch

            return np.asarray(loaded.model.predict(pairs, batch_size=self.batch_size, activation_fn=torch.nn.Sigmoid(),
                                                   show_progress_bar=False), dtype=np.float64)
        logits = np.empty(len(pairs), dtype=np.float64)
        for first in range(0, len(pairs), self.batch_size):
            batch = pairs[first : first + self.batch_size]
            features = tokenize(loaded.model, batch)
            output = loaded.graph.run({name: features[name].numpy() for name in loaded.graph.inputs})[0]
            logits[first : first + len(batch)] = output.reshape(len(batch), -1)[:, 0]
        return 1.0 / (1.0 + np.exp(-logits))

    def rerank(self, query: str, hits: list[Hit], weight: float, candidates: int) -> list[Hit]:
        """``hits`` with the first ``candidates`` text hits reordered in the places they held (images keep theirs) by
        ``weight`` x the cross-encoder's probability + (1 - ``weight``) x the fused score, which becomes the hit's
        ``score``; both parts are kept. Text hits past the candidates are scored as if the cross-encoder gave them 0,
        so they stay below every reranked one in the fused order. A blend, not the cross-encoder alone: fusion knows
        the words the cross-encoder misses."""
        slots = [i for i, hit in enumerate(hits) if hit.modality == "text"]
        read, unread = slots[:candidates], slots[candidates:]
        probabilities = self.scores(query, [hits[i].text for i in read])
        blended = [weight * probability + (1 - weight) * hits[slot].score
                   for slot, probability in zip(read, probabilities)]
        order = sorted(range(len(read)), key=lambda j: (-blended[j], j))
        result = list(hits)
        for slot, j in zip(read, order):
            hit = hits[read[j]]
            result[slot] = hit.model_copy(update={"score": blended[j], "rerank_score": float(probabilities[j]),
                                                  "fused_score": hit.score})
        for slot in unread:
            result[slot] = hits[slot].model_copy(update={"score": (1 - weight) * hits[slot].score,
                                                         "fused_score": hits[slot].score})
        return result
