"""Encoders define the knowledge base's embedding spaces."""

from kb.encoders.base import EncoderIdentity, ModelNotFoundError, TextEncoder
from kb.encoders.factory import text_encoder

__all__ = ["EncoderIdentity", "ModelNotFoundError", "TextEncoder", "text_encoder"]
