"""Encoders define the knowledge base's embedding spaces."""

from kb.encoders.base import EncoderIdentity, ModelNotFoundError, TextEncoder
from kb.encoders.clip import ClipEncoder
from kb.encoders.factory import clip_encoder, text_encoder

__all__ = ["ClipEncoder", "EncoderIdentity", "ModelNotFoundError", "TextEncoder", "clip_encoder", "text_encoder"]
