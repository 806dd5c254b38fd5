"""What computes the reader's start and end logits: the torch model (``reader_backend="torch"``), or its graph
exported once to ONNX and run on ONNX Runtime or OpenVINO, in float32 or int8 (``kb.inference``). Windows, span
search and citations are the reader's one code path whichever computes the logits."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from answering.loading import load_question_answering
from kb.config import ReaderBackend, ReaderPrecision
from kb.encoders.fingerprint import folder_fingerprint
from kb.encoders.hub import hub_reachable
from kb.inference import Backend, CompiledGraph, ExportCache, GraphSpec
from kb.inference.backends import installed, runs_on_cpu

TOKENIZER_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the tensors a transformer reads
LOGITS = ("start_logits", "end_logits")
FLOAT32_EXPORTS: tuple[Backend, ...] = ("openvino", "onnx")  # what ``auto`` reads on, the faster first
TRACE_EXAMPLE = (["What is traced?", "Which one?"],
                 ["An example passage, long enough to trace the model's windows.", "Another passage."])


class Logits(Protocol):
    """Start and end logits (batch x tokens, float32) of a padded batch of windows given as named int64 arrays;
    ``input_names`` are the tokenizer outputs it reads."""

    input_names: list[str]

    def __call__(self, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]: ...


class TorchLogits:
    """The transformers model itself, on its device and in its precision."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.input_names = accepted_inputs(model)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        device = next(self.model.parameters()).device
        with torch.inference_mode():
            output = self.model(**{name: torch.from_numpy(batch[name]).to(device) for name in self.input_names})
        return output.start_logits.float().cpu().numpy(), output.end_logits.float().cpu().numpy()


class GraphLogits:
    """The model's exported graph on ONNX Runtime or OpenVINO (CPU)."""

    def __init__(self, graph: CompiledGraph) -> None:
        self.graph = graph
        self.input_names = list(graph.inputs)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.graph.run(batch)
        return start, end


def accepted_inputs(model: Any) -> list[str]:
    """The tokenizer outputs ``model``'s forward takes (DistilBERT takes no ``token_type_ids``)."""
    accepted = set(inspect.signature(model.forward).parameters)
    return [name for name in TOKENIZER_OUTPUTS if name in accepted]


def chosen_backend(backend: ReaderBackend, device: str | None, precision: ReaderPrecision) -> Backend:
    """``backend``, with ``auto`` made definite: a float32 export gives torch's answers (every answer equal on
    300 questions) faster on a CPU, so it runs on OpenVINO, else ONNX Runtime, where the package (and ``onnx``, to
    export) is installed; torch on a GPU, in another ``precision``, or with neither installed."""
    if backend != "auto":
        return backend
    exported = next((name for name in FLOAT32_EXPORTS if installed(name)), None)
    if precision != "float32" or exported is None or not runs_on_cpu(device):
        return "torch"
    return exported


def load_reader(name: str, *, backend: Backend = "torch", device: str | None = None,
                precision: ReaderPrecision = "float32", int8_float_layers: Sequence[str] = (),
                cache: ExportCache | None = None) -> tuple[Logits, Any]:
    """``(logits, tokenizer)`` for the question-answering model ``name`` on ``backend``: torch in ``precision``
    on ``device``, or the float32 model exported once (cached by its fingerprint in ``cache``) and run on the CPU,
    quantised to int8 for the int8 backends."""
    if backend == "torch":
        model, tokenizer = load_question_answering(name, device=device, precision=precision,
                                                   int8_float_layers=int8_float_layers)
        return TorchLogits(model), tokenizer
    model, tokenizer = load_question_answering(name, device="cpu")
    names = accepted_inputs(model)
    sequence = {0: "batch", 1: "sequence"}
    spec = GraphSpec(name="question-answering", inputs=names, outputs=LOGITS,
                     dynamic={name: sequence for name in [*names, *LOGITS]})
    example = tokenizer(*TRACE_EXAMPLE, padding=True, return_tensors="pt")
    path = (cache or ExportCache()).graph(_fingerprint(name), spec, backend, lambda: _exportable(model, names),
                                          lambda: [example[name] for name in names])
    return GraphLogits(CompiledGraph(path, backend)), tokenizer


def _exportable(model: Any, names: list[str]) -> Any:
    from kb.encoders.exportable import QuestionAnsweringLogits

    return QuestionAnsweringLogits(model, names)


def _fingerprint(name: str) -> str:
    """The fingerprint of the model's files: its folder, or its snapshot in the Hugging Face cache (where
    :func:`load_question_answering` has just found it)."""
    path = Path(name).expanduser()
    if not path.is_dir():
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id=name, local_files_only=not hub_reachable()))
    return folder_fingerprint(path)
