"""Loading a transformers question-answering model and its fast tokenizer, by hub name or local folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kb.encoders.base import ModelNotFoundError


def load_question_answering(name: str, *, device: str | None = None, quantize: bool = False) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for ``name``, in eval mode; optionally int8-quantised (CPU only).

    A model that cannot be had raises :class:`ModelNotFoundError` saying where it was looked for and how to
    provide one. A slow (Python) tokenizer is refused: citations need its character offsets.
    """
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    path = Path(name).expanduser()
    where = f"local folder {path}" if path.is_dir() else f"local folder {path} (absent) and the Hugging Face hub/cache"
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path) if path.is_dir() else name, use_fast=True)
        model = AutoModelForQuestionAnswering.from_pretrained(str(path) if path.is_dir() else name)
    except (OSError, ValueError) as error:  # offline, unknown repository, folder without weights
        raise ModelNotFoundError(
            f"reader model {name!r} could not be loaded from {where} ({type(error).__name__}); set "
            "KB_READER_MODEL (or reader_model) to a local question-answering model folder, e.g. one saved with "
            "save_pretrained, or download the model while online"
        ) from error
    if not getattr(tokenizer, "is_fast", False):
        raise ModelNotFoundError(f"reader model {name!r} has no fast tokenizer (tokenizer.json); the reader needs "
                                 "one for character offsets: save the model with a fast tokenizer")
    model.eval()
    if quantize:  # int8 kernels exist for CPU only
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8), tokenizer
    return model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")), tokenizer
