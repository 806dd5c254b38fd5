"""Running torch models on faster CPU runtimes: export once to ONNX, cache by fingerprint, run on ONNX Runtime or
OpenVINO, in float32 or int8. Used by the text encoder, the CLIP towers and the extractive reader."""

from kb.inference.backends import BACKENDS, Backend
from kb.inference.export import ExportCache, GraphSpec
from kb.inference.graph import CompiledGraph

__all__ = ["BACKENDS", "Backend", "CompiledGraph", "ExportCache", "GraphSpec"]
