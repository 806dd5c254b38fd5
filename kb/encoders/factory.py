"""Builds the encoder a setting names."""

from __future__ import annotations

from kb.config import Settings
from kb.encoders.base import TextEncoder
from kb.encoders.sentence_transformer import SentenceTransformerEncoder


def text_encoder(settings: Settings) -> TextEncoder:
    """The text-space encoder for ``settings.text_model`` (a sentence-transformers name or folder)."""
    return SentenceTransformerEncoder(settings.text_model, device=settings.device, batch_size=settings.batch_size)
