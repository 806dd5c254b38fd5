"""The inference backends a model can run on, and the one place their optional packages are imported."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Literal, get_args

from kb import optional
from kb.errors import BackendUnavailableError, ConfigurationError

# A torch device as torch names one (whether this machine has it is checked where a model is put on it, so that
# reading the settings imports no torch).
DEVICE_PATTERN = r"(cpu|cuda|mps|xpu|hpu|npu|mtia)(:[0-9]{1,4})?"

Backend = Literal["torch", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8"]  # exported on first use
BACKENDS: tuple[Backend, ...] = get_args(Backend)
CalibratedBackend = Literal["openvino-int8-static"]  # a graph calibrated on data, kept in its model's folder
GraphBackend = Backend | CalibratedBackend
FLOAT32_EXPORTS: tuple[Backend, ...] = ("onnx", "openvino")  # what ``auto`` runs a float model on, the faster first
# x86 CPU flags (Linux names) of native bfloat16 arithmetic, which OpenVINO uses for float graphs where present.
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# x86 CPU flags of native int8 dot products (VNNI, AMX): with them OpenVINO quantises the activations of a layer
# whose weights are int8 as it runs, and multiplies in int8.
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
CPU_INFO = Path("/proc/cpuinfo")
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


def checked_device(device: str | None, setting: str = "KB_DEVICE") -> str | None:
    """``device`` if this machine has it (None stays None: the library then chooses, as sentence-transformers does
    among cuda, mps, xpu...). One it lacks (``cuda:99``, ``cuda`` without a GPU, a backend torch was built without)
    is a ``ConfigurationError`` naming the setting, not torch's error from deep inside a model load (search on ONNX
    Runtime worked while ask died). ``setting`` is where the name came from, for the message."""
    if device is None:
        return None
    if not re.fullmatch(DEVICE_PATTERN, device):  # "meta" would pass torch's check and hold no weights
        raise ConfigurationError(f"device {device!r} is not a torch device ({setting}: cpu, cuda, cuda:1, mps...)")
    import torch

    try:
        torch.empty(0, device=device)
    except Exception as error:  # noqa: BLE001 - CUDA asserts, an ordinal raises, hpu without its module fails import
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigurationError(f"device {device!r} ({setting}) is not on this machine: {reason}") from error
    return device


def torch_device(device: str | None) -> str:
    """The torch device a model is put on: ``device`` (checked, see :func:`checked_device`), else ``cuda`` where a
    GPU is visible, else ``cpu``."""
    import torch

    return checked_device(device) or ("cuda" if torch.cuda.is_available() else "cpu")


@cache
def cpu_flags() -> frozenset[str] | None:
    """The CPU's flags as Linux lists them, or None where it lists none (another system)."""
    if not CPU_INFO.is_file():
        return None
    flags = next((line.split(":", 1)[1].split() for line in CPU_INFO.read_text(errors="replace").splitlines()
                  if line.startswith("flags")), None)
    return None if flags is None else frozenset(flags)


@cache
def bfloat16_native() -> bool:
    """Whether OpenVINO computes bfloat16 natively on this CPU (AVX-512 BF16 or AMX); elsewhere it would emulate it
    slower than float32. Read from the CPU's flags where Linux lists them (importing OpenVINO takes half a second),
    else asked of OpenVINO."""
    flags = cpu_flags()
    if flags is not None:
        return not BFLOAT16_FLAGS.isdisjoint(flags)
    openvino = require("openvino", "openvino-bf16")
    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def int8_native() -> bool:
    """Whether this CPU multiplies int8 natively (VNNI or AMX), where ``openvino-int8`` runs its matrix products in
    int8, its activations quantised per group of 32 values as it runs (OpenVINO's dynamic quantisation): twice the
    float32 export's speed for a reader here. Elsewhere its int8 weights are only turned back into float. Where
    Linux lists no CPU flags, taken as no."""
    return not INT8_FLAGS.isdisjoint(cpu_flags() or ())


def encoder_backend(device: str | None) -> Backend:
    """What ``encoder_backend=auto`` computes a text encoder on: the fastest backend installed whose recall stays
    within half a point of torch's (docs/asking.md, Encoder backends). On a CPU with native bfloat16 that is
    ``openvino-int8``; elsewhere OpenVINO computes in float32 and its int8 weights only add decompression (no
    faster than torch there), and ONNX Runtime's int8 lost 0.6 points of recall, so ONNX Runtime in float32 (torch's
    vectors). On a GPU, torch."""
    if installed("openvino-int8") and runs_on_cpu(device) and bfloat16_native():
        return "openvino-int8"
    return "onnx" if installed("onnx") and runs_on_cpu(device) else "torch"


def runtime(backend: GraphBackend) -> str:
    """The runtime that executes ``backend``'s graphs: ``onnxruntime`` or ``openvino``."""
    return "openvino" if backend.startswith("openvino") else "onnxruntime"


def float_backend(device: str | None) -> Backend:
    """What ``auto`` runs a float32 model on: on a CPU, its export on OpenVINO computed in bfloat16 where the CPU
    does that natively (about twice float32's speed), else on ONNX Runtime in float32 (faster than OpenVINO's
    float32 without native bfloat16: the reader 1.20x torch against 1.05x on an AVX2 CPU), where installed; else
    torch."""
    exported = next((name for name in FLOAT32_EXPORTS if installed(name)), None)
    if exported is None or not runs_on_cpu(device):
        return "torch"
    return "openvino-bf16" if installed("openvino-bf16") and bfloat16_native() else exported


def require(module: str, backend: str) -> ModuleType:
    """Import an optional package a backend needs, or say how to install it."""
    return optional.require(module, f"backend {backend!r}", error=BackendUnavailableError,
                            instead="or set the setting that chose it (encoder_backend, clip_backend, reader_backend "
                                    "or reranker_backend) back to 'torch'")
