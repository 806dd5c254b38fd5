"""Loading a transformers question-answering model and its fast tokenizer, by hub name or local folder."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from kb.config import ReaderPrecision
from kb.encoders.hub import hub_reachable
from kb.encoders.quiet import quiet_model_loading
from kb.errors import ModelNotFoundError

log = logging.getLogger(__name__)


def load_question_answering(name: str, *, device: str | None = None,
                            precision: ReaderPrecision = "float32") -> tuple[Any, Any]:
    """``(model, tokenizer)`` for ``name``, in eval mode, in ``precision``: float32, bfloat16 weights and
    arithmetic, or int8 dynamic quantisation of the Linear layers (CPU only).

    A model that cannot be had raises :class:`ModelNotFoundError` saying where it was looked for and how to
    provide one. A slow (Python) tokenizer is refused: citations need its character offsets.
    """
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    path = Path(name).expanduser()
    online = hub_reachable()
    where = f"the folder {path}" if path.is_dir() else (
        f"no folder {path}; the Hugging Face {'hub and ' if online else ''}cache"
        + ("" if online else " (the hub is not reachable from here)"))
    source = str(path) if path.is_dir() else name
    log.info("loading reader model %s", name)
    try:
        with quiet_model_loading():
            tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, local_files_only=not online)
            model = AutoModelForQuestionAnswering.from_pretrained(source, local_files_only=not online)
    except (OSError, ValueError) as error:  # offline, unknown repository, folder without weights
        raise ModelNotFoundError(
            f"reader model {name!r} could not be loaded (looked in: {where}); set KB_READER_MODEL to a local "
            "question-answering model folder (model and tokenizer saved with save_pretrained), or run once online "
            "to download it"
        ) from error
    if not getattr(tokenizer, "is_fast", False):
        raise ModelNotFoundError(f"reader model {name!r} has no fast tokenizer (tokenizer.json); the reader needs "
                                 "one for character offsets: save the model with a fast tokenizer")
    model.eval()
    if precision == "int8":  # int8 kernels exist for CPU only
        with warnings.catch_warnings():  # torch marks eager quantisation deprecated in favour of torchao; it works
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8), tokenizer
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    return model.to(device=device or ("cuda" if torch.cuda.is_available() else "cpu"), dtype=dtype), tokenizer
