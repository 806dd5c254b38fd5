"""Static int8: a float32 graph with weights and activations quantised to int8 at ranges measured on calibration
inputs (NNCF post-training quantisation), kept in the model's own folder beside the weights it came from.

Unlike the data-free int8 backends (made on first use in the export cache), a calibrated graph needs data that
looks like what the model will read, so it is made on purpose (after training, or by a command) and stored in
``<model folder>/int8/``: ``openvino_model.xml`` and ``.bin`` (plain OpenVINO IR, which
``openvino.Core().read_model`` reads without this program) and ``calibration.json`` (the fingerprint of the
weights it was made from, how, and on what). A graph whose source weights have changed since is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from kb.errors import BackendUnavailableError
from kb.inference.backends import require
from kb.inference.export import make_atomically, quiet

STATIC = "openvino-int8-static"
FOLDER = "int8"
GRAPH = f"{FOLDER}/openvino_model.xml"
RECORD = f"{FOLDER}/calibration.json"


class CalibratedGraphError(BackendUnavailableError):
    """A model folder has no usable calibrated graph: none was made, or it was made from other weights."""


@dataclass(frozen=True)
class AccuracyControl:
    """Quantisation with accuracy control (NNCF): the quantised operations whose int8 costs ``metric`` most are put
    back in float, one by one, until ``metric`` on ``items`` is at most ``max_drop`` below the float graph's.
    ``metric(compiled_model, items)`` returns the mean and each item's value (higher is better); operations are
    ranked on the ``ranked_on`` items int8 changes most; ``described`` says what the metric measures, for the
    record."""

    items: Sequence[Any]
    metric: Callable[[Any, Iterable[Any]], tuple[float, list[float]]]
    max_drop: float
    described: str
    ranked_on: int = 300  # NNCF's default ranking subset


def quantize_static(source: Path, model_folder: Path, samples: Sequence[Mapping[str, np.ndarray]], *,
                    fingerprint: str, calibrated_on: Mapping[str, Any], ignored: Sequence[str] = (),
                    control: AccuracyControl | None = None) -> Path:
    """Quantise the float32 ONNX graph ``source`` (exported from the weights whose fingerprint is
    ``fingerprint``) to static int8, with activation ranges measured on ``samples`` (named input arrays, as the
    model is fed), into ``model_folder``; ``calibrated_on`` describes the samples for the record. Returns the
    graph's path.

    NNCF's transformer scheme: int8 matrix products with per-channel symmetric weights and per-tensor asymmetric
    activations (the ``MIXED`` preset) and bias correction, without SmoothQuant (which moves activation outliers
    into the weights: on the trained MiniLM reader it cost 0.93 validation F1 where plain ranges cost 0.23);
    operations whose names contain a match of a regular expression of ``ignored`` (ONNX names such as
    ``/model/bert/encoder/layer.0/output/dense/MatMul``) stay in float, and with ``control`` so do those it puts
    back.
    """
    openvino = require("openvino", STATIC)
    nncf = require("nncf", STATIC)
    advanced = nncf.AdvancedQuantizationParameters(smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=-1))
    scope = nncf.IgnoredScope(patterns=[f".*(?:{pattern})" for pattern in ignored], validate=False) \
        if ignored else None  # NNCF matches from the start of the name
    target = model_folder / GRAPH
    target.parent.mkdir(parents=True, exist_ok=True)

    def write(path: Path) -> None:
        model = openvino.Core().read_model(source)
        common = {"model_type": nncf.ModelType.TRANSFORMER, "preset": nncf.QuantizationPreset.MIXED,
                  "subset_size": len(samples), "ignored_scope": scope}
        method = "NNCF post-training static quantisation, transformer scheme (MIXED preset), SmoothQuant off"
        if control is None:
            quantized = nncf.quantize(model, nncf.Dataset(list(samples)), advanced_parameters=advanced, **common)
        else:
            restorer = nncf.AdvancedAccuracyRestorerParameters(  # one worker: others only compile more models
                ranking_subset_size=min(control.ranked_on, len(control.items)), num_ranking_workers=1)
            quantized = nncf.quantize_with_accuracy_control(
                model, nncf.Dataset(list(samples)), nncf.Dataset(list(control.items)), control.metric,
                max_drop=control.max_drop, drop_type=nncf.DropType.ABSOLUTE, advanced_quantization_parameters=advanced,
                advanced_accuracy_restorer_parameters=restorer, **common)
            method += f", with accuracy control: {control.described}, asked for at most {control.max_drop:g} below " \
                "float"
        openvino.save_model(quantized, path, compress_to_fp16=False)
        record = {"source_fingerprint": fingerprint, "created_at": datetime.now(timezone.utc).isoformat(),
                  "method": method, "nncf": nncf.__version__, "openvino": openvino.__version__,
                  "ignored": list(ignored), "quantizers": quantizers(quantized), "samples": len(samples),
                  "calibrated_on": dict(calibrated_on)}
        if control is not None:  # what it reached: NNCF returns without a word when it cannot reach the limit
            record["accuracy_control"] = {"measures": control.described, "max_drop": control.max_drop} | {
                name: round(control.metric(_compiled(openvino, graph), control.items)[0], 3)
                for name, graph in (("float", model), ("int8", quantized))}
        (path.parent / Path(RECORD).name).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    with quiet():
        make_atomically(target, write)
    return target


def _compiled(openvino: Any, model: Any) -> Any:
    """``model`` compiled for the CPU in float32 precision, as the calibrated graph is read."""
    return openvino.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def quantizers(model: Any) -> int:
    """The int8 quantisation points (FakeQuantize operations) of an OpenVINO model: fewer where operations were
    left in float."""
    return sum(operation.get_type_name() == "FakeQuantize" for operation in model.get_ops())


def calibration_record(model_folder: Path) -> dict[str, Any] | None:
    """What ``model_folder``'s calibrated graph was made from and on (``int8/calibration.json``), or None."""
    path = model_folder / RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def static_graph(model_folder: Path, fingerprint: str, previous_fingerprint: str | None = None) -> Path:
    """The calibrated graph of the model in ``model_folder`` whose weights have ``fingerprint`` (or, for a graph
    calibrated before fingerprint version 2, ``previous_fingerprint``: see ``kb.encoders.fingerprint``); a
    :class:`CalibratedGraphError` saying why when there is none to trust."""
    target = model_folder / GRAPH
    record = calibration_record(model_folder)
    if record is None or not target.is_file() or not target.with_suffix(".bin").is_file():
        raise CalibratedGraphError(f"{model_folder} has no complete calibrated int8 graph ({GRAPH}, .bin and "
                                   f"{Path(RECORD).name})")
    if record.get("source_fingerprint") not in {fingerprint, previous_fingerprint} - {None}:
        raise CalibratedGraphError(f"the calibrated int8 graph in {model_folder / FOLDER} was made from other "
                                   "weights than the model's now")
    return target
