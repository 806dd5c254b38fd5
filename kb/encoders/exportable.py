"""Models' forward passes as torch modules from positional tensors to plain tensors, the shape
``torch.onnx.export`` traces: an encoder's embedding, a cross-encoder's scores, a reader's start and end logits.

Imported only when a model is exported (it imports torch); see ``kb.inference``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class SentenceTransformersOutput(torch.nn.Module):
    """A sentence-transformers model (a bi-encoder or a cross-encoder) from tokenizer tensors (``names``, in order)
    to one of its outputs (``sentence_embedding``; a cross-encoder's ``scores``): every module of the model
    (transformer, pooling, dense, normalisation) is in the graph."""

    def __init__(self, model: Any, names: Sequence[str], output: str) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self.output = output

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.names, tensors)))[self.output]


class ClipTower(torch.nn.Module):
    """One tower of an open_clip model: ``image`` (pixels to normalised embedding) or ``text`` (tokens to it)."""

    def __init__(self, model: Any, tower: str) -> None:
        super().__init__()
        self.model = model
        self.tower = tower

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.tower == "image":
            return self.model.encode_image(inputs, normalize=True)
        return self.model.encode_text(inputs, normalize=True)


class QuestionAnsweringLogits(torch.nn.Module):
    """A transformers question-answering model from tokenizer tensors (``names``, in order) to its start and end
    logits, the two outputs the reader's span search consumes."""

    def __init__(self, model: Any, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(**dict(zip(self.names, tensors)))
        return output.start_logits, output.end_logits
