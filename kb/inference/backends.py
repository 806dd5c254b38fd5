"""The inference backends a model can run on, and the one place their optional packages are imported."""

from __future__ import annotations

from types import ModuleType
from typing import Literal, get_args

from kb import optional
from kb.errors import BackendUnavailableError

Backend = Literal["torch", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8"]  # exported on first use
BACKENDS: tuple[Backend, ...] = get_args(Backend)
CalibratedBackend = Literal["openvino-int8-static"]  # a graph calibrated on data, kept in its model's folder
GraphBackend = Backend | CalibratedBackend
FLOAT32_EXPORTS: tuple[Backend, ...] = ("openvino", "onnx")  # what ``auto`` runs a float model on, the faster first
# The modules each backend needs: onnx to export the model (once), then the runtime (and nncf to compress weights).
NEEDS: dict[Backend, tuple[str, ...]] = {
    "torch": (),
    "onnx": ("onnx", "onnxruntime"),
    "onnx-int8": ("onnx", "onnxruntime"),
    "openvino": ("onnx", "openvino"),
    "openvino-bf16": ("onnx", "openvino"),
    "openvino-int8": ("onnx", "openvino", "nncf"),
}


def installed(backend: Backend) -> bool:
    """Whether every package ``backend`` needs is installed (found, not imported)."""
    return all(optional.installed(module) for module in NEEDS[backend])


def runs_on_cpu(device: str | None) -> bool:
    """Whether torch computes on the CPU: ``device`` says so, or none is named and no GPU is visible."""
    if device is not None:
        return device == "cpu"
    import torch

    return not torch.cuda.is_available()


def bfloat16_native() -> bool:
    """Whether OpenVINO computes bfloat16 natively on this CPU (AVX-512 BF16 or AMX); elsewhere it would emulate it
    slower than float32."""
    openvino = require("openvino", "openvino-bf16")
    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def runtime(backend: GraphBackend) -> str:
    """The runtime that executes ``backend``'s graphs: ``onnxruntime`` or ``openvino``."""
    return "openvino" if backend.startswith("openvino") else "onnxruntime"


def float_backend(device: str | None) -> Backend:
    """What ``auto`` runs a float32 model on: on a CPU, its export on OpenVINO, computed in bfloat16 where the CPU
    does that natively (about twice float32's speed), else on ONNX Runtime, where installed; else torch."""
    exported = next((name for name in FLOAT32_EXPORTS if installed(name)), None)
    if exported is None or not runs_on_cpu(device):
        return "torch"
    return "openvino-bf16" if exported == "openvino" and bfloat16_native() else exported


def require(module: str, backend: str) -> ModuleType:
    """Import an optional package a backend needs, or say how to install it."""
    return optional.require(module, f"backend {backend!r}", error=BackendUnavailableError,
                            instead="or set the setting that chose it (encoder_backend, clip_backend, reader_backend "
                                    "or reranker_backend) back to 'torch'")
