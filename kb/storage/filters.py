"""Typed filters turned into SQL conditions on documents, shared by dense and keyword search (and pgvector)."""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, String, false, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from kb.storage.models import INGESTED, Chunk, Document, as_utc
from kb.types import MODALITIES, Filters, Modality

SQLITE_LOWER = "kb_lower"  # SQLite's lower() folds ASCII only: this one, registered on each connection, Unicode


def unicode_lower(value: str | None) -> str | None:
    """``SQLITE_LOWER``: Unicode lower case ("ÉTÉ" is "été"), NULL kept, one letter at a time as PostgreSQL's
    ``lower()`` folds: Python's own would make "İ" two letters and a word's last "Σ" a "ς", not a "σ"."""
    if value is None:
        return None
    text = str(value)
    return text.lower() if text.isascii() else "".join("i" if char == "\u0130" else char.lower() for char in text)


class UnicodeLower(FunctionElement[str]):
    """Unicode lower case in SQL: PostgreSQL's ``lower()``, on SQLite the function ``SQLITE_LOWER`` (its own
    ``lower()`` leaves non-ASCII letters as they are), so path filters match the same paths on both."""

    type = String()
    inherit_cache = True


@compiles(UnicodeLower)
def _lower(element: UnicodeLower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(UnicodeLower, "sqlite")
def _lower_sqlite(element: UnicodeLower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{SQLITE_LOWER}({compiler.process(element.clauses, **kw)})"


def glob_to_like(pattern: str) -> str:
    """Shell glob to a SQL LIKE pattern (escape character ``\\``): ``*`` → ``%``, ``?`` → ``_``."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def chunk_conditions(filters: Filters | None, modalities: frozenset[Modality] | None = None
                     ) -> list[ColumnElement[bool]]:
    """SQL conditions on ``chunks`` joined with ``documents`` for ``filters`` and ``modalities`` (always restricted
    to successfully ingested documents)."""
    conditions: list[ColumnElement[bool]] = [Document.status.in_(INGESTED)]
    if modalities is not None and set(modalities) != set(MODALITIES):
        conditions.append(Chunk.modality.in_(sorted(modalities)))
    if filters is None:
        return conditions
    if filters.path_glob is not None:
        globs = [filters.path_glob] if isinstance(filters.path_glob, str) else filters.path_glob
        matches = []
        # A name from a Mac is stored with its accents apart ("e" + U+0301), as it was written: a glob matches
        # it in either form. Both sides go through the same lower(), so they fold case the same way.
        for glob in dict.fromkeys(unicodedata.normalize(form, glob) for glob in globs for form in ("NFC", "NFD")):
            like = UnicodeLower(glob_to_like(glob))
            matches += [UnicodeLower(Document.relpath).like(like, escape="\\"),
                        UnicodeLower(Document.path).like(like, escape="\\")]
        conditions.append(or_(false(), *matches))  # an empty list matches nothing, as file_types=[] does
    if filters.file_types is not None:
        conditions.append(Document.file_type.in_(filters.file_types))
    if filters.modified_after is not None:
        conditions.append(Document.modified_at >= as_utc(filters.modified_after))
    if filters.modified_before is not None:
        conditions.append(Document.modified_at < as_utc(filters.modified_before))
    if filters.ingested_after is not None:
        conditions.append(Document.ingested_at >= as_utc(filters.ingested_after))
    if filters.ingested_before is not None:
        conditions.append(Document.ingested_at < as_utc(filters.ingested_before))
    return conditions


def allowed_chunk_ids(session: Session, filters: Filters | None,
                      modalities: frozenset[Modality] | None = None) -> np.ndarray | None:
    """Chunk ids that pass ``filters`` and ``modalities``, or None when every chunk is allowed."""
    if (filters is None or filters.is_empty()) and (modalities is None or set(modalities) == set(MODALITIES)):
        return None
    query = select(Chunk.id).join(Document, Document.id == Chunk.document_id)
    query = query.where(*chunk_conditions(filters, modalities))
    return np.fromiter(session.scalars(query), dtype=np.int64)


def passing_chunks(session: Session, conditions: list[ColumnElement[bool]], cap: int) -> int:
    """How many chunks pass ``conditions`` (from ``chunk_conditions``), counted up to ``cap`` only."""
    passing = select(Chunk.id).join(Document, Document.id == Chunk.document_id).where(*conditions).limit(cap)
    return session.scalar(select(func.count()).select_from(passing.subquery())) or 0
