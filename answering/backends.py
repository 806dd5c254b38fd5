"""What computes the reader's start and end logits: the torch model (``reader_backend="torch"``), its graph
exported once to ONNX and run on ONNX Runtime or OpenVINO, in float32, bfloat16 or data-free int8, or the int8 graph
calibrated on data and kept in the model's folder (``openvino-int8-static``; see ``answering.int8``), all through
``kb.inference``. Windows, span search and citations are the reader's one code path whichever computes the
logits."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from answering.loading import load_question_answering, model_inputs
from kb.cards import Int8Scores, read_card
from kb.config import ReaderBackend, ReaderPrecision
from kb.encoders.fingerprint import VERSION, folder_fingerprint
from kb.encoders.hub import hub_reachable
from kb.errors import BackendUnavailableError
from kb.inference import STATIC, CompiledGraph, ExportCache, GraphBackend, GraphSpec, static_graph
from kb.inference.backends import float_backend, installed, int8_native, runs_on_cpu
from kb.inference.calibrated import FOLDER

log = logging.getLogger(__name__)

LOGITS = ("start_logits", "end_logits")
TRACE_EXAMPLE = (["What is traced?", "Which one?"],
                 ["An example passage, long enough to trace the model's windows.", "Another passage."])
INT8_F1_TOLERANCE = 0.5  # validation F1 points (plus a standard error) an int8 form may lose for auto


class Logits(Protocol):
    """Start and end logits (batch x tokens, float32) of a padded batch of windows given as named int64 arrays;
    ``input_names`` are the tokenizer outputs it reads, ``backend`` what computes them."""

    input_names: list[str]
    backend: str

    def __call__(self, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]: ...


class TorchLogits:
    """The transformers model itself, on its device and in its precision."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.input_names = model_inputs(model, tokenizer)
        self.backend = "torch"

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
        self.backend = graph.backend

    def __call__(self, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.graph.run(batch)
        return start, end


def chosen_backend(backend: ReaderBackend, device: str | None, precision: ReaderPrecision,
                   model: str = "") -> GraphBackend | Literal["torch"]:
    """``backend``, with ``auto`` made definite: on a CPU in float32, an int8 form of ``model`` whose training card
    shows it within ``INT8_F1_TOLERANCE`` validation F1 of float32 with one standard error to spare: the graph
    calibrated on data, else the data-free ``openvino-int8`` where the CPU multiplies int8 natively and the one
    that scored it did (where OpenVINO is installed); else :func:`float_backend` (OpenVINO in bfloat16 where the CPU
    does that natively: EM/F1 within 0.5 of torch's over 1,090 questions here); torch in another ``precision``."""
    if backend != "auto":
        return backend
    if precision != "float32":
        return "torch"
    if runs_on_cpu(device) and installed("openvino"):
        path = Path(model).expanduser()
        card = read_card(path) if model and path.is_dir() else None
        if card and within_tolerance(card.int8):
            return STATIC
        weights = card.int8_weights if card else None
        if weights and weights.int8_activations and installed("openvino-int8") and int8_native() and \
                within_tolerance(weights):
            return "openvino-int8"
    return float_backend(device)


def within_tolerance(scores: Int8Scores | None) -> bool:
    """Whether ``scores`` record an int8 form whose validation F1, less one standard error of the difference
    (where recorded), is at most ``INT8_F1_TOLERANCE`` below float32's."""
    return scores is not None and "f1" in scores.int8 and "f1" in scores.float32 and \
        scores.f1_loss_bound <= INT8_F1_TOLERANCE


def load_reader(name: str, *, backend: GraphBackend | Literal["torch"] = "torch", device: str | None = None,
                precision: ReaderPrecision = "float32", int8_float_layers: Sequence[str] = (),
                cache: ExportCache | None = None) -> tuple[Logits, Any]:
    """``(logits, tokenizer)`` for the question-answering model ``name`` on ``backend``: torch in ``precision``
    on ``device``; the float32 model exported once (cached by its fingerprint in ``cache``) and run on the CPU,
    quantised to int8 for the data-free int8 backends; or the graph calibrated to int8 in the model's folder,
    where one made from these weights loads (else the float32 export on OpenVINO, with a warning saying why)."""
    if backend == "torch":
        model, tokenizer = load_question_answering(name, device=device, precision=precision,
                                                   int8_float_layers=int8_float_layers)
        return TorchLogits(model, tokenizer), tokenizer
    model, tokenizer = load_question_answering(name, device="cpu")
    if backend == STATIC:
        try:
            return GraphLogits(calibrated_graph(name)), tokenizer
        except BackendUnavailableError as error:
            if not installed("openvino"):
                raise
            log.warning("reader %s: %s; reading with the float32 export on openvino instead", name, error)
            backend = "openvino"
    return GraphLogits(CompiledGraph(exported_graph(name, model, tokenizer, backend, cache), backend)), tokenizer


def calibrated_graph(name: str) -> CompiledGraph:
    """The int8 graph calibrated for the reader folder ``name``, compiled; a :class:`BackendUnavailableError`
    saying why when there is none, it was made from other weights, or it does not load."""
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise BackendUnavailableError(f"{STATIC} reads a graph kept in the model's folder, and {name!r} is not a "
                                      "local folder")
    path = static_graph(folder, model_fingerprint(name), model_fingerprint(name, version=1))
    try:
        return CompiledGraph(path, STATIC)
    except (RuntimeError, OSError, ValueError) as error:  # OpenVINO's parse and compile errors are RuntimeErrors
        raise BackendUnavailableError(f"the calibrated int8 graph {path} does not load ({error})") from error


def exported_graph(name: str, model: Any, tokenizer: Any, backend: GraphBackend,
                   cache: ExportCache | None = None) -> Path:
    """The file ``backend`` runs for the question-answering ``model`` (loaded from ``name``): its float32 ONNX
    export or a data-free int8 quantisation of it, made once and cached by the model's fingerprint."""
    names = model_inputs(model, tokenizer)
    sequence = {0: "batch", 1: "sequence"}
    spec = GraphSpec(name="question-answering", inputs=names, outputs=LOGITS,
                     dynamic={name: sequence for name in [*names, *LOGITS]})
    example = tokenizer(*TRACE_EXAMPLE, padding=True, return_tensors="pt")
    return (cache or ExportCache()).graph(model_fingerprint(name), spec, backend, lambda: _exportable(model, names),
                                          lambda: [example[name] for name in names])


def _exportable(model: Any, names: list[str]) -> Any:
    from kb.encoders.exportable import QuestionAnsweringLogits

    return QuestionAnsweringLogits(model, names)


def model_fingerprint(name: str, version: int = VERSION) -> str:
    """The fingerprint of the model's files (not its calibrated int8 graph): its folder, or its snapshot in the
    Hugging Face cache (where :func:`load_question_answering` has just found it)."""
    path = Path(name).expanduser()
    if not path.is_dir():
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id=name, local_files_only=not hub_reachable()))
    return folder_fingerprint(path, skip=(FOLDER,), version=version)
