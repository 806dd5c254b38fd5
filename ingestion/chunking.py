"""Token-aware chunking: split a document's text into passages no longer than the encoder's token limit.

A chunk is a pair of character offsets into ``ExtractedDocument.text``; its text is always exactly that slice, so
citations can point back into the document. Chunks stay on one page, prefer to end at sentence and paragraph
boundaries, and overlap by a few whole sentences. A sentence longer than the limit (a table, a log line, Chinese
without punctuation, a base64 blob) is cut hard at token boundaries, so nothing ever exceeds the limit.

Token counts come from a ``TokenOffsets`` function: the encoder's own tokenizer via ``hf_token_offsets``, or the
dependency-free ``approximate_token_offsets``. Either is called once per page, never per sentence.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np

from kb.keywords import CJK_CHARS
from kb.types import ChunkSpan, ExtractedDocument

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase

TokenOffsets = Callable[[str], Sequence[int]]
"""Given a text, the start character offset of every token, ascending (repeats allowed for tokens sharing a start)."""

_APPROXIMATE_TOKEN = re.compile(rf"[^\W_{CJK_CHARS}]+|\S")
_WORD_CHARACTER = re.compile(rf"[^\W_{CJK_CHARS}]")
_CLOSERS = "\"'”’»›)\\]}）］｝】」』》〉〕〗〙〛"
# The lookbehind makes each run of terminators a single match attempt, which keeps a megabyte of "....." linear.
_SENTENCE_END = re.compile(rf"(?<![.!?])[.!?]+[{_CLOSERS}]*(?=\s)|[。！？；｡．]+[{_CLOSERS}]*")
_LINE_BREAK = re.compile(r"\n")
# Places a hard cut may follow: whitespace, clause punctuation and unambiguous closers (not ' or ", which also open).
_SOFT_BREAK = re.compile(r"[\s,;:，、；：)\]}）］｝】」』》〉〕〗〙〛”»]")
_TOKENIZER_PIECE_CHARS = 1 << 13
_TOKENIZER_BATCH_PIECES = 16


def approximate_token_offsets(text: str) -> array[int]:
    """Token starts without a tokenizer: a run of letters/digits is one token, as is every CJK, kana or hangul
    character and every other non-space character.

    Subword tokenizers split long or rare words further, so this undercounts them a little; use
    ``hf_token_offsets`` when the encoder's tokenizer is at hand.
    """
    return array("q", (match.start() for match in _APPROXIMATE_TOKEN.finditer(text)))


def hf_token_offsets(tokenizer: PreTrainedTokenizerBase | Tokenizer) -> TokenOffsets:
    """Token starts from a Hugging Face fast tokenizer (or a ``tokenizers.Tokenizer``), for texts of any length.

    Works on a private copy of the Rust tokenizer with truncation and padding off, so the caller's tokenizer is left
    untouched and no length warnings are raised. Long texts are encoded in 8k-character pieces, cut at whitespace
    where there is some, in parallel batches that bound memory.
    """
    from tokenizers import Tokenizer

    backend: Any = getattr(tokenizer, "backend_tokenizer", tokenizer)
    if not isinstance(backend, Tokenizer):
        raise TypeError(f"hf_token_offsets needs a fast (Rust-backed) tokenizer, got {type(tokenizer).__name__}")
    backend = Tokenizer.from_str(backend.to_str())
    backend.no_truncation()
    backend.no_padding()

    def offsets(text: str) -> array[int]:
        starts = array("q")
        pieces = _tokenizer_pieces(text)
        for first in range(0, len(pieces), _TOKENIZER_BATCH_PIECES):
            batch = pieces[first : first + _TOKENIZER_BATCH_PIECES]
            encodings = backend.encode_batch([text[start:end] for start, end in batch], add_special_tokens=False)
            for (piece_start, _), encoding in zip(batch, encodings, strict=True):
                starts.extend(piece_start + begin for begin, finish in encoding.offsets if finish > begin)
        values = np.frombuffer(starts, dtype=np.int64)
        return starts if bool(np.all(values[1:] >= values[:-1])) else array("q", np.sort(values).tobytes())

    return offsets


def _tokenizer_pieces(text: str) -> list[tuple[int, int]]:
    """Split ``text`` into pieces of about ``_TOKENIZER_PIECE_CHARS``, each later one starting at a whitespace
    character when one lies in the last 1024 characters before the cut, so no word is split in the common case."""
    pieces: list[tuple[int, int]] = []
    start = 0
    while len(text) - start > _TOKENIZER_PIECE_CHARS:
        cut = start + _TOKENIZER_PIECE_CHARS
        for candidate in range(cut, cut - 1024, -1):
            if text[candidate].isspace():
                cut = candidate
                break
        pieces.append((start, cut))
        start = cut
    pieces.append((start, len(text)))
    return pieces


class Chunker:
    """Splits an ``ExtractedDocument`` into ``ChunkSpan``s of at most ``max_tokens`` tokens.

    ``overlap_tokens`` bounds the trailing whole sentences a chunk repeats from the one before it (hard cuts of an
    over-long sentence overlap by that many tokens). ``max_token_chars`` caps how many characters one token may
    cover: a longer token (a 100k-letter line is one approximate token, and one ``[UNK]`` for WordPiece) counts as
    several and may be cut, so a chunk holds at most about ``max_tokens * max_token_chars`` non-space characters.
    """

    def __init__(
        self,
        max_tokens: int = 200,
        overlap_tokens: int = 32,
        token_offsets: TokenOffsets = approximate_token_offsets,
        max_token_chars: int = 32,
    ) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if not 0 <= overlap_tokens < max_tokens:
            raise ValueError(f"overlap_tokens must be in [0, max_tokens={max_tokens}), got {overlap_tokens}")
        if max_token_chars < 1:
            raise ValueError(f"max_token_chars must be at least 1, got {max_token_chars}")
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.token_offsets = token_offsets
        self.max_token_chars = max_token_chars
        # Paragraph breaks: a blank line, or a run of white space wider than a chunk's text may be, which no chunk
        # spans (10 million spaces between two words were one chunk, held in memory and embedded whole).
        self.widest_gap = max_tokens * max_token_chars
        self._breaks = re.compile(rf"\n[^\S\n]*\n|(?<!\s)\s{{{self.widest_gap + 1},}}")

    def chunk(self, document: ExtractedDocument) -> list[ChunkSpan]:
        """The document's chunks in text order; each page is chunked on its own when the document has pages."""
        text = document.text
        if not document.pages:
            return self._chunk_span(text, 0, len(text), None)
        chunks: list[ChunkSpan] = []
        for page in sorted(document.pages, key=lambda page: (page.start, page.number)):
            end = min(page.end, len(text))
            if page.start < end:
                chunks.extend(self._chunk_span(text, page.start, end, page.number))
        return chunks

    def _chunk_span(self, text: str, start: int, end: int, page: int | None) -> list[ChunkSpan]:
        # Token starts as 8-byte integers, shifted in place, not lists of Python ints: a 10 MB text of punctuation
        # has 10 million tokens.
        tokens = self.token_offsets(text[start:end])
        if not isinstance(tokens, array) or tokens.typecode != "q":
            tokens = array("q", tokens)
        if start and tokens:
            np.frombuffer(tokens, dtype=np.int64)[:] += start
        tokens = _split_long_tokens(text, tokens, end, self.max_token_chars)
        return _SpanPacker(self, text, tokens, page).pack(_sentences(text, start, end, self._breaks), end)


@dataclass
class _Sentences:
    """A span's sentences as arrays, not a record each (ten megabytes of "a. " are 3.3 million sentences: 400 MB as
    records): where each starts and ends, and whether it ends its paragraph."""

    starts: array[int] = field(default_factory=lambda: array("q"))
    ends: array[int] = field(default_factory=lambda: array("q"))
    paragraph_ends: bytearray = field(default_factory=bytearray)

    def __len__(self) -> int:
        return len(self.starts)


def _split_long_tokens(text: str, tokens: array[int], end: int, max_chars: int) -> array[int]:
    """Add token starts every ``max_chars`` characters inside any longer token (trailing whitespace excluded)."""
    starts = np.frombuffer(tokens, dtype=np.int64)
    long = np.flatnonzero(np.diff(np.append(starts, end)) > max_chars)
    if not len(long):
        return tokens
    split = array("q")
    previous = 0
    for index in long.tolist():
        before = int(starts[index])
        after = int(starts[index + 1]) if index + 1 < len(starts) else end
        split.frombytes(starts[previous : index + 1].tobytes())
        split.extend(range(before + max_chars, before + len(text[before:after].rstrip()), max_chars))
        previous = index + 1
    split.frombytes(starts[previous:].tobytes())
    return split


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """Offsets of ``text[start:end]`` without its leading and trailing whitespace (equal when all whitespace)."""
    piece = text[start:end]
    stripped = piece.lstrip()
    start += len(piece) - len(stripped)
    return start, start + len(stripped.rstrip())


def _sentences(text: str, start: int, end: int, breaks: re.Pattern[str]) -> _Sentences:
    """Whitespace-stripped, non-empty sentences of ``text[start:end]``, marking each paragraph's last one (a
    paragraph ends where ``breaks`` matches)."""
    sentences = _Sentences()
    paragraph_start = start
    for paragraph_end in chain((match.start() for match in breaks.finditer(text, start, end)), (end,)):
        before = len(sentences)
        sentence_start = paragraph_start
        ends = [match.end() for match in _SENTENCE_END.finditer(text, paragraph_start, paragraph_end)]
        for sentence_end in [*ends, paragraph_end]:
            left, right = _strip(text, sentence_start, sentence_end)
            if left < right:
                sentences.starts.append(left)
                sentences.ends.append(right)
                sentences.paragraph_ends.append(0)
            sentence_start = sentence_end
        if len(sentences) > before:
            sentences.paragraph_ends[-1] = 1
        paragraph_start = paragraph_end
    return sentences


class _SpanPacker:
    """Packs the sentences of one page (or page-less text) into chunks, given that span's token starts."""

    def __init__(self, chunker: Chunker, text: str, tokens: array[int], page: int | None) -> None:
        self.max = chunker.max_tokens
        self.overlap = chunker.overlap_tokens
        self.widest_gap = chunker.widest_gap
        self.text = text
        self.tokens = tokens
        self.page = page
        self.chunks: list[ChunkSpan] = []

    def count(self, start: int, end: int) -> int:
        """Tokens starting in ``[start, end)``."""
        return bisect_left(self.tokens, end) - bisect_left(self.tokens, start)

    def emit(self, start: int, end: int) -> None:
        start, end = _strip(self.text, start, end)
        if start < end:
            tokens = self.count(start, end)
            text = self.text[start:end]
            self.chunks.append(ChunkSpan(start=start, end=end, text=text, page=self.page, tokens=tokens))

    def pack(self, sentences: _Sentences, span_end: int) -> list[ChunkSpan]:
        """Greedy packing of whole sentences; over-long sentences are cut hard."""
        # A sentence's count includes any token starting in the whitespace after it, so a chunk's sum bounds its count.
        starts, ends, paragraph_ends = sentences.starts, sentences.ends, sentences.paragraph_ends
        begins = np.frombuffer(starts, dtype=np.int64)
        nexts = np.append(begins[1:], span_end)[: len(begins)]
        tokens_at = np.frombuffer(self.tokens, dtype=np.int64)
        counts = (np.searchsorted(tokens_at, nexts) - np.searchsorted(tokens_at, begins)).tolist()
        wide = nexts - np.frombuffer(ends, dtype=np.int64) > self.widest_gap
        first: int | None = None  # index of the current chunk's first sentence
        total = 0
        for index, tokens in enumerate(counts):
            if tokens > self.max:
                if first is not None:
                    self.emit(starts[first], ends[index - 1])
                    first, total = None, 0
                self.cut_hard(starts[index], ends[index])
                continue
            if first is not None and total + tokens > self.max:
                self.emit(starts[first], ends[index - 1])
                first, total = self.overlap_start(paragraph_ends, counts, first, index)
            if first is None:
                first = index
            total += tokens
            if paragraph_ends[index] and (2 * total >= self.max or wide[index]):  # no chunk spans a wide gap
                self.emit(starts[first], ends[index])
                first, total = None, 0
        if first is not None:
            self.emit(starts[first], ends[-1])
        return self.chunks

    def overlap_start(self, paragraph_ends: bytearray, counts: list[int], first: int, index: int
                      ) -> tuple[int | None, int]:
        """Where the chunk after sentences ``first`` to ``index`` (not included) starts so that it repeats the
        trailing sentences of the same paragraph worth at most ``overlap`` tokens and still has room for sentence
        ``index``."""
        start, repeated = index, 0
        while (
            start - 1 > first
            and not paragraph_ends[start - 1]
            and repeated + counts[start - 1] <= self.overlap
            and repeated + counts[start - 1] + counts[index] <= self.max
        ):
            start -= 1
            repeated += counts[start]
        return (start if start < index else None), repeated

    def cut_hard(self, start: int, end: int) -> None:
        """Chunk one over-long sentence at token boundaries; consecutive pieces overlap by up to ``overlap`` tokens.

        Within the second half of each window a cut goes, in order of preference, after the last line break, after
        the last space or clause punctuation, at the last place not inside a word, or anywhere.
        """
        tokens = self.tokens
        line_breaks = [match.start() for match in _LINE_BREAK.finditer(self.text, start, end)]
        soft_breaks = [match.start() for match in _SOFT_BREAK.finditer(self.text, start, end)]
        piece = bisect_left(tokens, start)
        last = bisect_left(tokens, end)
        while last - piece > self.max:
            cut = self.best_cut(piece, last, line_breaks, soft_breaks)
            if cut == last:
                break
            self.emit(start, tokens[cut])
            piece = self.overlap_token(piece, cut)
            start = tokens[piece]
        self.emit(start, end)

    def best_cut(self, piece: int, last: int, line_breaks: list[int], soft_breaks: list[int]) -> int:
        """The token index to end a hard-cut piece starting at token ``piece``, given that more than ``max`` tokens
        remain before token ``last``; ``last`` itself when no token after ``piece`` has a start of its own."""
        low, high = piece + self.max // 2 + 1, piece + self.max
        for breaks in (line_breaks, soft_breaks):
            index = self.token_after_last_break(breaks, low, high)
            if index is not None:
                return index
        for index in range(high, low - 1, -1):
            if self.is_boundary(index) and not self.inside_word(index):
                return index
        for index in range(high, piece, -1):
            if self.is_boundary(index):
                return index
        # Every token in the window shares its start with the one before (many tokens from one character).
        return next((index for index in range(high + 1, last) if self.is_boundary(index)), last)

    def token_after_last_break(self, breaks: list[int], low: int, high: int) -> int | None:
        """The first token after the last break character whose following token index lies in ``[low, high]``."""
        tokens = self.tokens
        position = bisect_left(breaks, tokens[high]) - 1
        if position >= 0 and breaks[position] >= tokens[low - 1]:
            return bisect_right(tokens, breaks[position])
        return None

    def is_boundary(self, index: int) -> bool:
        """Whether a chunk may start at token ``index``: it must not share its start with the previous token."""
        return index == 0 or self.tokens[index] > self.tokens[index - 1]

    def inside_word(self, index: int) -> bool:
        """Whether token ``index`` starts between two letters or digits of one (non-CJK) word."""
        offset = self.tokens[index]
        if offset == 0:
            return False
        return bool(_WORD_CHARACTER.match(self.text, offset - 1) and _WORD_CHARACTER.match(self.text, offset))

    def overlap_token(self, piece: int, cut: int) -> int:
        """The first token of the piece after the cut at ``cut``: up to ``overlap`` tokens back, preferring a start
        that is not inside a word, and always past the middle of the previous piece so cutting makes progress."""
        fallback = cut
        for index in range(max(cut - self.overlap, piece + (cut - piece + 1) // 2), cut):
            if self.is_boundary(index):
                if not self.inside_word(index):
                    return index
                fallback = min(fallback, index)
        return fallback
