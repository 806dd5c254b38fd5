"""One exported graph, compiled on ONNX Runtime or OpenVINO, run on numpy inputs."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kb.inference.backends import GraphBackend, bfloat16_native, require, runtime

log = logging.getLogger(__name__)

LENGTH_MULTIPLE = 32  # OpenVINO token inputs are padded to a multiple of this: few shapes, each compiled once


def cpu_threads() -> int:
    """Threads to compute with: torch's setting when torch is loaded (so every runtime obeys one knob), else the
    CPUs this process may use."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class CompiledGraph:
    """An ONNX file (or OpenVINO IR) ready to run; ``run`` feeds named numpy arrays and returns the outputs.

    OpenVINO runs float32 graphs at float32 precision (``INFERENCE_PRECISION_HINT``), not the bfloat16 it picks by
    default on CPUs that have it: float32 backends must give torch's vectors. ``openvino-bf16`` asks for bfloat16
    (about twice float32's speed where the CPU computes it natively, as AVX-512 BF16 and AMX CPUs do; float32
    elsewhere, with a warning). ``openvino-int8`` keeps OpenVINO's defaults: int8 activations in its matrix products
    where the CPU has VNNI or AMX, bfloat16 where native; its vectors differ from torch's anyway, and either makes
    it about 2.5x the float32 graph's speed here (both 2.2x; neither 1.4x). ``openvino-int8-static`` computes its
    matrix products in int8 whatever the hint, and what is left (softmax, normalisation, GELU) in float32: bfloat16
    there was no faster here, and the calibrated graph was scored that way.
    """

    def __init__(self, path: Path, backend: GraphBackend, threads: int | None = None, *, compiled: Any = None) -> None:
        """``compiled``: an OpenVINO model compiled already (NNCF compiles each graph it tries), run as it is, with
        the precision and threads it was compiled for (``path`` then only names it)."""
        self.path = path
        self.backend = backend
        threads = threads or cpu_threads()
        if runtime(backend) == "openvino":
            openvino = require("openvino", backend)
            config = {"INFERENCE_NUM_THREADS": threads}
            if backend in ("openvino", "openvino-int8-static"):
                config["INFERENCE_PRECISION_HINT"] = "f32"
            elif backend == "openvino-bf16":
                native = bfloat16_native()
                config["INFERENCE_PRECISION_HINT"] = "bf16" if native else "f32"
                if not native:
                    log.warning("%s: this CPU has no native bfloat16; computing in float32", path.name)
            if compiled is None:
                compiled = openvino.Core().compile_model(str(path), "CPU", config)
            self._compiled = compiled
            self.inputs = [port.get_any_name() for port in self._compiled.inputs]
            self._lock = threading.Lock()  # one infer request at a time per compiled model
        else:
            onnxruntime = require("onnxruntime", backend)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.inputs = [node.name for node in self._session.get_inputs()]

    def run(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs for ``feed``, in order (extra entries, such as a tokenizer's bookkeeping, are
        ignored). On OpenVINO a tokenised batch is padded first (see :func:`padded_tokens`), so outputs along the
        token axis may come back longer than the input: their first tokens are the input's."""
        inputs = {name: np.ascontiguousarray(feed[name]) for name in self.inputs}
        if runtime(self.backend) == "openvino":
            inputs = padded_tokens(inputs, LENGTH_MULTIPLE)
            with self._lock:
                results = self._compiled(inputs)
                return [np.asarray(results[port]) for port in self._compiled.outputs]
        return [np.asarray(output) for output in self._session.run(None, inputs)]


def padded_tokens(inputs: dict[str, np.ndarray], multiple: int) -> dict[str, np.ndarray]:
    """A tokenised batch (an ``attention_mask`` and token arrays of its shape) with zeros appended to its length,
    up to a multiple of ``multiple``, masked out; other inputs (an image batch) as they are. OpenVINO compiles
    its CPU kernels for each new input shape, which made the first call at a new length about twice as slow
    as the next; rounding lengths keeps the shapes few, so a reader's varied windows reuse them."""
    mask = inputs.get("attention_mask")
    if mask is None or mask.ndim != 2 or mask.shape[1] % multiple == 0:
        return inputs
    extra = multiple - mask.shape[1] % multiple
    return {name: np.pad(array, ((0, 0), (0, extra))) if array.shape == mask.shape else array
            for name, array in inputs.items()}
