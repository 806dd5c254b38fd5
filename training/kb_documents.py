"""A knowledge base's documents as training material, named the same wherever its folder is mounted."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import PurePath
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store (SQLAlchemy, FAISS) is imported only where a knowledge base is read
    from kb.storage.store import StoredDocument


def named_documents(documents: Iterable[StoredDocument]) -> list[tuple[str, StoredDocument]]:
    """(name, document) in path order, each named by its path under the folder that holds them all: what is made
    from them, and which documents a validation split holds out, then depend neither on the order they were
    ingested in nor on where the folder is mounted."""
    ordered = sorted(documents, key=lambda document: document.path)
    root = os.path.commonpath([os.path.dirname(document.path) for document in ordered]) if ordered else ""
    return [(PurePath(document.path).relative_to(root).as_posix() if root else document.path, document)
            for document in ordered]
