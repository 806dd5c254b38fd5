"""Encoders define the knowledge base's embedding spaces."""

from kb.encoders.base import EncoderIdentity, TextEncoder
from kb.encoders.clip import ClipEncoder
from kb.encoders.factory import clip_encoder, text_encoder
from kb.errors import ModelNotFoundError

__all__ = ["ClipEncoder", "EncoderIdentity", "ModelNotFoundError", "TextEncoder", "clip_encoder", "text_encoder"]
