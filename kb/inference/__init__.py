"""Running torch models on faster CPU runtimes: export once to ONNX, cache by fingerprint, run on ONNX Runtime or
OpenVINO, in float32 or int8 (data-free, or calibrated on data: :mod:`kb.inference.calibrated`). Used by the text
encoder, the CLIP towers and the extractive reader."""

from kb.inference.backends import BACKENDS, Backend, CalibratedBackend, GraphBackend
from kb.inference.calibrated import STATIC, AccuracyControl, CalibratedGraphError, quantize_static, static_graph
from kb.inference.export import ExportCache, GraphSpec
from kb.inference.graph import CompiledGraph

__all__ = ["BACKENDS", "STATIC", "AccuracyControl", "Backend", "CalibratedBackend", "CalibratedGraphError",
           "CompiledGraph", "ExportCache", "GraphBackend", "GraphSpec", "quantize_static", "static_graph"]
