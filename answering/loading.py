"""Loading a transformers question-answering model and its fast tokenizer, by hub name or local folder."""

from __future__ import annotations

import inspect
import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kb.config import ReaderPrecision
from kb.encoders.hub import hub_reachable
from kb.encoders.quiet import quiet_model_loading
from kb.errors import ModelNotFoundError

log = logging.getLogger(__name__)


def quantize_int8(model: Any, float_layers: Sequence[str] = ()) -> Any:
    """``model`` with torch's dynamic int8 quantisation of its Linear layers, except those whose names match one
    of the ``float_layers`` regular expressions (left in float32: the layers whose error costs most answers)."""
    import torch

    patterns = [re.compile(pattern) for pattern in float_layers]
    chosen = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
              and not any(pattern.search(name) for pattern in patterns)}
    with warnings.catch_warnings():  # torch marks eager quantisation deprecated in favour of torchao; it works
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, chosen, dtype=torch.qint8)


TOKENIZER_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the tensors a transformer reads


def load_question_answering(name: str, *, device: str | None = None, precision: ReaderPrecision = "float32",
                            int8_float_layers: Sequence[str] = ()) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for ``name``, in eval mode, in ``precision``: float32, bfloat16 weights and
    arithmetic, or int8 dynamic quantisation of the Linear layers (CPU only) except ``int8_float_layers``.

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
            # A model named in kb.json is data, never code: no custom modelling code runs, whatever its config asks.
            tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, local_files_only=not online,
                                                      trust_remote_code=False)
            model = AutoModelForQuestionAnswering.from_pretrained(source, local_files_only=not online,
                                                                  trust_remote_code=False)
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
        return quantize_int8(model, int8_float_layers), tokenizer
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    return model.to(device=device or ("cuda" if torch.cuda.is_available() else "cpu"), dtype=dtype), tokenizer


def model_inputs(model: Any, tokenizer: Any) -> list[str]:
    """The tensors to feed ``model``: the tokenizer outputs its forward takes (DistilBERT takes no
    ``token_type_ids``) and ``tokenizer`` produces (RoBERTa's and XLM-R's produce none, though the model's forward
    accepts them)."""
    accepted = set(inspect.signature(model.forward).parameters)
    return [name for name in TOKENIZER_OUTPUTS if name in accepted and name in tokenizer.model_input_names]
