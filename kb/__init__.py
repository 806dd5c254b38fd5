"""A retrieval-augmented multimodal knowledge base: ingest a folder, search it, answer from it with citations."""

from kb.config import Settings
from kb.knowledge_base import KnowledgeBase
from kb.types import FailedFile, Filters, Hit, IngestReport, Stats

__all__ = ["FailedFile", "Filters", "Hit", "IngestReport", "KnowledgeBase", "Settings", "Stats"]
