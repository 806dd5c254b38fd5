"""A question as search reads it: refused in one line when it is no text, cut to a bounded prefix when it is longer
than any stage reads.

Every stage reads only the start of a question: the text encoder its first ``max_seq_length`` tokens (256 for the
default MiniLM; the longest sentence-transformers models take 8,192, about 32,000 characters of English), keyword
search its first ``MAX_QUERY_TERMS`` (1,024) distinct terms (reached within 16,000 to 25,000 characters of English
SQuAD paragraphs, 3,500 of Chinese ones: a Chinese term can be one character), the reranker and the reader 64
tokens. Their work on the whole of a pasted document was still linear in its length (a 10 MB question took 14 s and
1.4 GB to search, 34 s to ask; 1.5 MB of Chinese 42 s, jieba and the English gloss reading all of it), so the
question is cut first, once, at ``MAX_QUERY_CHARS``, past what any stage reads of real text in any language.
"""

from __future__ import annotations

from kb.errors import InvalidRequestError
from kb.text import NOT_TEXT, is_text

MAX_QUERY_CHARS = 32_768


def cut_query(query: str) -> str:
    """``query`` as far as any stage of a search reads it: its first ``MAX_QUERY_CHARS`` characters, leading blanks
    left out."""
    return query.lstrip()[:MAX_QUERY_CHARS]


def readable_query(query: object, name: str = "query") -> str:
    """``query`` as every stage of a search reads it: its first ``MAX_QUERY_CHARS`` characters, leading blanks
    left out; an ``InvalidRequestError`` when it is not a string, empty, or not text."""
    if not isinstance(query, str):
        raise InvalidRequestError(f"the {name} must be a string, not {type(query).__name__}")
    query = cut_query(query)
    if not query.strip():
        raise InvalidRequestError(f"the {name} is empty")
    if not is_text(query):
        raise InvalidRequestError(f"the {name} holds {NOT_TEXT}")
    return query
