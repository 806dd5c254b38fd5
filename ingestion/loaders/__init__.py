"""Document loaders: one per format, each turning a file's bytes into an ``ExtractedDocument``."""

from ingestion.loaders.base import Loader, LoadError
from ingestion.loaders.factory import SUPPORTED_SUFFIXES, file_loader, loader_for

__all__ = ["SUPPORTED_SUFFIXES", "LoadError", "Loader", "file_loader", "loader_for"]
