"""A retrieval-augmented multimodal knowledge base: ingest a folder, search it, answer from it with citations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kb.config import Settings
from kb.errors import (
    BackendUnavailableError,
    ConfigurationError,
    EncoderMismatchError,
    ImageSearchUnavailable,
    InvalidRequestError,
    KbError,
    ModelNotFoundError,
    NotAnImageError,
    ScheduleError,
    SchemaError,
    SourceNotFoundError,
    SourceUnavailableError,
    WriterBusyError,
)
from kb.types import Answer, AskResult, Citation, FailedFile, Filters, Hit, IngestProgress, IngestReport, Stats

if TYPE_CHECKING:
    from kb.knowledge_base import KnowledgeBase

__all__ = ["Answer", "AskResult", "BackendUnavailableError", "Citation", "ConfigurationError", "EncoderMismatchError", "FailedFile", "Filters",
           "Hit", "ImageSearchUnavailable", "IngestProgress", "IngestReport", "InvalidRequestError", "KbError",
           "KnowledgeBase", "ModelNotFoundError", "NotAnImageError", "ScheduleError", "SchemaError", "Settings",
           "SourceNotFoundError", "SourceUnavailableError", "Stats", "WriterBusyError"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: KnowledgeBase pulls in the pipelines, which themselves import kb's storage and types.
    if name == "KnowledgeBase":
        from kb.knowledge_base import KnowledgeBase

        return KnowledgeBase
    raise AttributeError(f"module 'kb' has no attribute {name!r}")
