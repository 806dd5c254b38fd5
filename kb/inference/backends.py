"""The inference backends a model can run on, and the one place their optional packages are imported."""

from __future__ import annotations

from types import ModuleType
from typing import Literal, get_args

from kb.errors import BackendUnavailableError

Backend = Literal["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
INSTALL_HINTS = {
    "onnxruntime": "pip install 'multimodal-kb[onnx]'",
    "onnx": "pip install 'multimodal-kb[onnx]'",
    "openvino": "pip install 'multimodal-kb[openvino]'",
    "nncf": "pip install 'multimodal-kb[openvino]'",
}


def runtime(backend: Backend) -> str:
    """The runtime that executes ``backend``'s graphs: ``onnxruntime`` or ``openvino``."""
    return "openvino" if backend.startswith("openvino") else "onnxruntime"


def require(module: str, backend: str) -> ModuleType:
    """Import an optional package a backend needs, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        raise BackendUnavailableError(f"backend {backend!r} needs the package {package!r}: {INSTALL_HINTS[package]}, "
                                      "or set the setting that chose it (encoder_backend, clip_backend or "
                                      "reader_backend) back to 'torch'") from error
