"""Exporting a torch module to an ONNX graph once, quantising it once per int8 backend, and caching both.

The cache is a folder (``model_cache``, by default ``~/.cache/multimodal-kb``) holding ``exports/<key>/`` per
graph, where the key is the model's fingerprint (the SHA-256 its encoder identity carries) and the graph's name:
the same model exported for several knowledge bases is exported once, and a changed model gets a new key. Each
entry holds ``float32.onnx`` (the export), ``onnx-int8.onnx`` (ONNX Runtime's dynamic quantisation) and
``openvino-int8.xml``/``.bin`` (OpenVINO IR with int8 weights), each made when first needed, under a lock (two
processes never export the same graph at once) and moved into place only when complete. Scratch folders
(``.partial-*``) that a killed export left behind are removed under that lock before the next export.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kb.inference.backends import Backend, require
from kb.storage.lock import WriterLock

log = logging.getLogger(__name__)
OPSET = 17


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/multimodal-kb`` or ``~/.cache/multimodal-kb``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "multimodal-kb"


@dataclass(frozen=True)
class GraphSpec:
    """How to export one graph: a torch module taking ``inputs`` (names, in its forward's order) and returning the
    tensors named ``outputs`` (one, or a tuple: a reader's start and end logits); ``dynamic`` names the axes of
    each input and output that vary (batch, sequence)."""

    name: str
    inputs: Sequence[str]
    outputs: Sequence[str]
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)


class ExportCache:
    """Exported graphs of models, keyed by model fingerprint and graph name, made once."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_cache()).expanduser() / "exports"

    def graph(self, fingerprint: str, spec: GraphSpec, backend: Backend,
              module: Callable[[], Any], example: Callable[[], Sequence[Any]]) -> Path:
        """The file ``backend`` runs for this graph: exported from ``module()`` with ``example()`` inputs (both
        called only when the export is not cached yet), quantised for int8 backends."""
        folder = self.root / f"{fingerprint[:32]}-{spec.name}"
        target = folder / _file_name(backend)
        if target.exists():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(folder / "export.lock")
        lock.acquire(wait=True)
        try:
            _remove_scratch(folder)
            source = folder / _file_name("onnx")
            if not source.exists():
                log.info("exporting %s (%s) to ONNX, once, into %s", spec.name, fingerprint[:12], folder)
                with quiet():
                    make_atomically(source, lambda path: _export(module(), example(), spec, path))
                (folder / "graph.json").write_text(json.dumps({"fingerprint": fingerprint, "graph": spec.name,
                                                               "inputs": list(spec.inputs),
                                                               "outputs": list(spec.outputs)}))
            if not target.exists():
                log.info("quantising %s for %s, once", spec.name, backend)
                with quiet():
                    make_atomically(target, lambda path: _quantise(source, path, backend))
        finally:
            lock.release()
        return target


@contextmanager
def quiet() -> Iterator[None]:
    """Exporters and quantisers talk: tracer warnings, NNCF's statistics table and progress bar (printed), ONNX
    Runtime's advice on the root logger. While they run, what they print goes to this module's debug log and their
    loggers say only errors."""
    loggers = [logging.getLogger(name) for name in ("nncf", "torch", "onnxruntime")] + [logging.getLogger()]
    levels = [logger.level for logger in loggers]
    printed = io.StringIO()
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), redirect_stdout(printed), redirect_stderr(printed):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if printed.getvalue().strip():
            log.debug("export output: %s", printed.getvalue().strip())


def _file_name(backend: Backend) -> str:
    """float32 backends share the exported graph; each int8 backend has its own quantised file."""
    if backend == "onnx-int8":
        return "onnx-int8.onnx"
    if backend == "openvino-int8":
        return "openvino-int8.xml"
    return "float32.onnx"


def _remove_scratch(folder: Path) -> None:
    """Remove the scratch folders of ``make_atomically`` in ``folder``: the caller holds its export lock, so any
    there belong to an export that was killed before it could clean up."""
    for scratch in folder.glob(".partial-*"):
        shutil.rmtree(scratch, ignore_errors=True)


def make_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write ``target`` (and its companion files) in a temporary folder beside it, then move them into place, the
    named file last, so a crash leaves no half-written graph under a name the cache trusts."""
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
    try:
        write(scratch / target.name)
        for path in sorted(scratch.iterdir(), key=lambda p: p.name == target.name):
            os.replace(path, target.parent / path.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _export(module: Any, example: Sequence[Any], spec: GraphSpec, path: Path) -> None:
    """``torch.onnx.export`` with the TorchScript exporter: it traces any module (the dynamo exporter refuses some
    of what sentence-transformers and open_clip do) and needs only the ``onnx`` package. Attention's fused fast
    path (``_native_multi_head_attention``, which open_clip's towers take in eval mode) has no ONNX form, so it is
    off while tracing."""
    import torch

    require("onnx", "onnx")
    module.eval()
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(module, tuple(example), str(path), input_names=list(spec.inputs),
                              output_names=list(spec.outputs), dynamic_axes=dict(spec.dynamic), opset_version=OPSET,
                              dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)


def _quantise(source: Path, target: Path, backend: Backend) -> None:
    """int8 weights: ONNX Runtime's dynamic quantisation of matrix products (int8 weights, activations quantised
    per batch, per-channel scales), or OpenVINO's data-free int8 weight compression (NNCF)."""
    if backend == "onnx-int8":
        quantization = require("onnxruntime.quantization", backend)
        quantization.quantize_dynamic(source, target, weight_type=quantization.QuantType.QInt8, per_channel=True,
                                      op_types_to_quantize=["MatMul", "Gemm"])
    elif backend == "openvino-int8":
        openvino = require("openvino", backend)
        nncf = require("nncf", backend)
        openvino.save_model(nncf.compress_weights(openvino.Core().read_model(source)), target, compress_to_fp16=False)
    else:
        raise ValueError(f"{backend} has no quantised graph")
