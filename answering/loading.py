"""Loading a transformers question-answering model and its fast tokenizer, by hub name or local folder."""

from __future__ import annotations

import inspect
import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kb.cards import refuse_unfinished
from kb.config import ReaderPrecision
from kb.encoders.hub import hub_reachable
from kb.encoders.quiet import quiet_model_loading
from kb.errors import ModelNotFoundError
from kb.inference.backends import torch_device

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
CAUSE_CHARACTERS = 300  # of a library's error, quoted in the one-line message


def load_question_answering(name: str, *, device: str | None = None, precision: ReaderPrecision = "float32",
                            int8_float_layers: Sequence[str] = ()) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for ``name``, in eval mode, in ``precision``: float32, bfloat16 weights and
    arithmetic, or int8 dynamic quantisation of the Linear layers (CPU only) except ``int8_float_layers``.

    Whatever stops the model from loading (no such model, no network, a truncated or corrupt file) raises
    :class:`ModelNotFoundError` quoting the library's error and saying where the model was looked for and how to
    provide one, so ``ask`` can fall back to its evidence. So does a model that would load but read nonsense: a
    slow (Python) tokenizer (citations need a fast one's character offsets), a folder without tokenizer files, or
    weights without a question-answering head. The tokenizer pads on the right, where the reader cuts each
    window's logits from its padded batch.
    """
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    path = Path(name).expanduser()
    if path.is_dir():
        refuse_unfinished(path, "reader model", "KB_READER_MODEL")
    online = not path.is_dir() and hub_reachable()  # a local folder needs no network, and must not wait for one
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
            model, loading = AutoModelForQuestionAnswering.from_pretrained(
                source, local_files_only=not online, trust_remote_code=False, output_loading_info=True)
    except Exception as error:  # offline, unknown repository, no weights, a truncated file: each library its own
        # Offline with no such folder, the library's error only repeats that the hub cannot be reached.
        quoted = " ".join(str(error).split())[:CAUSE_CHARACTERS].rstrip(".") or type(error).__name__
        cause = f": {quoted}" if online or path.is_dir() else ""
        raise ModelNotFoundError(
            f"reader model {name!r} could not be loaded (looked in: {where}){cause}; set KB_READER_MODEL to a "
            "local question-answering model folder (model and tokenizer saved with save_pretrained), or run once "
            "online to download it"
        ) from error
    if not getattr(tokenizer, "is_fast", False):
        raise ModelNotFoundError(f"reader model {name!r} has no fast tokenizer (tokenizer.json); the reader needs "
                                 "one for character offsets: save the model with a fast tokenizer")
    if len(tokenizer) <= len(tokenizer.all_special_tokens):  # transformers makes one from the config alone
        raise ModelNotFoundError(f"reader model {name!r} has no tokenizer files (looked in: {where}): its tokenizer "
                                 "would know only its special tokens; save the tokenizer with the model "
                                 "(tokenizer.save_pretrained into the same folder)")
    if missing := sorted(loading["missing_keys"]):  # transformers fills them with random numbers, and warns
        raise ModelNotFoundError(
            f"reader model {name!r} is not a question-answering model: its weights lack {', '.join(missing[:4])}"
            f"{' and more' if len(missing) > 4 else ''}, so it would answer at random; train a reader from it "
            f"with `kb train reader --base-model {name}`, or set KB_READER_MODEL to a question-answering model")
    rows = model.get_input_embeddings().num_embeddings
    if (largest := max(tokenizer.get_vocab().values(), default=0)) >= rows:  # a token added, the model not resized
        raise ModelNotFoundError(f"reader model {name!r} has a tokenizer whose token ids reach {largest:,}, past the "
                                 f"{rows:,} its model embeds: a text holding such a token could not be read; save the "
                                 "model and tokenizer together (resize_token_embeddings after adding tokens)")
    tokenizer.padding_side = "right"
    model.eval()
    if precision == "int8":  # int8 kernels exist for CPU only
        return quantize_int8(model, int8_float_layers), tokenizer
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    return model.to(device=torch_device(device), dtype=dtype), tokenizer


OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "longformer", "data2vec-text"}


def model_positions(model: str | Path) -> int | None:
    """The tokens ``model`` (a folder, or a hub name already in the cache) reads at most, from its config
    (RoBERTa-style models number positions after the padding index, so two of theirs are not usable); None when
    that cannot be told."""
    from transformers import AutoConfig

    folder = Path(model).expanduser()
    try:
        config = AutoConfig.from_pretrained(str(folder) if folder.is_dir() else str(model), trust_remote_code=False,
                                            local_files_only=True)
        most = int(config.max_position_embeddings)
    except Exception:  # noqa: BLE001 - no config, or no positions: the model's own load says what is wrong
        return None
    if getattr(config, "model_type", "") in OFFSET_POSITIONS:
        most -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return most


def model_inputs(model: Any, tokenizer: Any) -> list[str]:
    """The tensors to feed ``model``: the tokenizer outputs its forward takes (DistilBERT takes no
    ``token_type_ids``) and ``tokenizer`` produces (RoBERTa's and XLM-R's produce none, though the model's forward
    accepts them)."""
    accepted = set(inspect.signature(model.forward).parameters)
    return [name for name in TOKENIZER_OUTPUTS if name in accepted and name in tokenizer.model_input_names]
