"""Rebuilding the keyword postings of every stored chunk with one tokenizer: ``reembed`` does it with the models,
and ``doctor --repair`` when the tokenizer recorded for the postings is not the configured one."""

from __future__ import annotations

from kb.keywords import KeywordTokenizer, term_bag
from kb.spaces import EMBED_BATCH
from kb.storage.writing import WriteUnit


def rebuild_postings(unit: WriteUnit, keywords: KeywordTokenizer, batch_size: int = EMBED_BATCH) -> int:
    """Tokenise every chunk's text with ``keywords`` inside ``unit``, a batch at a time, replacing all postings, and
    record the tokenizer, so keyword search reads terms made as its questions' are; returns the number of chunks."""
    rows = unit.read.chunk_texts()
    for start in range(0, max(len(rows), 1), batch_size):
        part = rows[start : start + batch_size]
        bags = [term_bag(keywords.tokenize(text)) for _, text in part]
        unit.replace_postings([chunk_id for chunk_id, _ in part], bags, first=start == 0)
    unit.record_keyword_tokenizer(keywords.scheme)
    return len(rows)
