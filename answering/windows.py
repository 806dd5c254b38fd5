"""Cutting passages into model windows: question + a stretch of passage, consecutive stretches sharing tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kb.config import Settings
from kb.errors import ModelNotFoundError

MAX_QUESTION_TOKENS = 64
CUT_MARGIN = 16  # tokens kept past the last one needed: cutting a word may change that word's own tokens
CHARACTERS_PER_TOKEN = 8  # the first guess of how much text holds a number of tokens (English averages 4-5)
MAX_CHARACTERS_PER_TOKEN = 128  # read no further than this a token (WordPiece makes a word of over 100 one token)
WORD_BREAKS = " \n\t\r\u3000"  # every tokenizer's pre-tokenizer splits words there


@dataclass
class Windows:
    """Tokenised windows of several passages, in passage order, unpadded.

    ``offsets[w][t]`` is token ``t``'s character range in its passage (meaningful for context tokens); ``context`` marks
    passage tokens; ``owned`` marks the context tokens this window is the best place to read (the window where
    the token has most context on both sides), so a token shared by two windows counts once.
    """

    features: list[dict[str, list[int]]]
    passage: np.ndarray
    offsets: list[list[tuple[int, int]]]
    context: list[np.ndarray]
    owned: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.features)


def reader_window(settings: Settings, positions: int | None) -> tuple[int, int]:
    """The window length and the tokens windows share, as ``settings`` ask, within the ``positions`` the model
    reads (a model of 128 positions failed at the first long passage): a shorter window shares proportionally
    fewer tokens."""
    length, stride = settings.reader.max_seq_length, settings.reader.stride
    if positions is None or positions >= length:
        return length, stride
    return positions, max(1, stride * positions // length)


def make_windows(tokenizer: Any, question: str, passages: list[str], *, max_length: int, stride: int,
                 max_windows: int, input_names: set[str]) -> Windows:
    """All windows of all ``passages`` for ``question``, at most ``max_windows`` (earlier passages first), each
    feature holding exactly the tokenizer outputs ``input_names`` (those the model reads and the tokenizer makes:
    ``answering.loading.model_inputs``)."""
    # A pasted paragraph as question must not starve the passage: each window keeps more than ``stride`` passage
    # tokens (the tokenizer requires it) beside the question and the special tokens (3 for BERT, 4 for RoBERTa).
    # Text such as "[CLS]" in a document or question is read as words, never as the model's own control tokens.
    special = tokenizer.num_special_tokens_to_add(pair=True)
    limit = min(MAX_QUESTION_TOKENS, max_length - stride - special - 1)
    if limit < 1:
        raise ModelNotFoundError(f"the reader's tokenizer adds {special} special tokens to a window of {max_length} "
                                 f"with {stride} shared: no room is left for a question; check its tokenizer.json, "
                                 "or set reader_max_seq_length higher and reader_stride lower")
    keep = limit
    question = token_prefix(tokenizer, question, limit + 1)  # enough to see it is too long, never all of a huge one
    # A window's stretch of passage starts at most max_length - stride tokens after the previous one's, so no window
    # reads past passage token max_windows x (max_length - stride) + stride, whatever the question.
    reach = max_windows * (max_length - stride) + stride
    passages = [token_prefix(tokenizer, passage, reach) for passage in passages]
    for attempt in range(4):  # decoding a cut question and encoding it again can give a token or two more
        question_ids = tokenizer(question, add_special_tokens=False, split_special_tokens=True,
                                 verbose=False)["input_ids"]  # no "longer than the model" warning: it is cut here
        if len(question_ids) <= limit:
            break
        if attempt:  # the cut question grew when encoded again: cut it shorter by as much
            keep = max(1, keep - (len(question_ids) - limit))
        question = tokenizer.decode(question_ids[:keep])
    encoding = tokenizer([question] * len(passages), passages, truncation="only_second", max_length=max_length,
                         stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True, padding=False,
                         split_special_tokens=True, return_token_type_ids="token_type_ids" in input_names,
                         return_attention_mask="attention_mask" in input_names)
    count = min(len(encoding["input_ids"]), max_windows)
    mapping = encoding["overflow_to_sample_mapping"]
    features, offsets, context, owned = [], [], [], []
    for window in range(count):
        features.append({name: encoding[name][window] for name in input_names})
        sequence = np.array([s == 1 for s in encoding.sequence_ids(window)])
        context.append(sequence)
        offsets.append([tuple(pair) for pair in encoding["offset_mapping"][window]])
    passage = np.asarray(mapping[:count], dtype=np.int64)
    centrality = [_centrality(offsets[window], context[window]) for window in range(count)]
    spans = [(min(start for start, _ in keys), max(end for _, end in keys)) if keys else (0, -1)
             for keys in (scores.keys() for scores in centrality)]  # each window's characters, first to last
    for window in range(count):
        owned.append(_max_context(window, passage, offsets, context, centrality, spans))
    return Windows(features, passage, offsets, context, owned)


def token_prefix(tokenizer: Any, text: str, tokens: int) -> str:
    """The start of ``text`` whose tokens begin with the first ``tokens`` tokens of all of ``text`` (all of it when
    it has not many more). Only a growing prefix is tokenised, about as much as those tokens need, cut between words
    (a word cut in two can read otherwise: a long one is a single unknown token whole, many pieces cut): a 20 MB
    paragraph tokenised whole to read its first windows took 8.8 GB and a minute a question."""
    if len(text) <= tokens + CUT_MARGIN:  # every token covers at least one character
        return text
    size, most = (tokens + CUT_MARGIN) * CHARACTERS_PER_TOKEN, (tokens + CUT_MARGIN) * MAX_CHARACTERS_PER_TOKEN
    while size < len(text):
        piece = text[:size]
        space = max(piece.rfind(blank) for blank in WORD_BREAKS)
        if space > size // 2:  # else (text without spaces, Chinese) the margin absorbs what the cut word changes
            piece = piece[:space]
        offsets = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True,
                            verbose=False)["offset_mapping"]
        if len(offsets) > tokens + CUT_MARGIN:
            return text[:offsets[tokens + CUT_MARGIN][0]]
        if size >= most:  # characters that make hardly a token (20 million zero-width spaces: 35 s, 4.3 GB)
            return piece
        size = min(size * 4, most)
    return text  # at most four times what was tokenised last, and no more than ``most``


def _centrality(offsets: list[tuple[int, int]], context: np.ndarray) -> dict[tuple[int, int], float]:
    """How much context each of a window's passage tokens (by its character range) has around it there."""
    positions = np.flatnonzero(context)
    if not len(positions):  # a passage of nothing but whitespace
        return {}
    first, last = positions[0], positions[-1]
    return {offsets[p]: min(p - first, last - p) + 0.01 * (last - first) for p in positions}


def _max_context(window: int, passage: np.ndarray, offsets: list[list[tuple[int, int]]],
                 context: list[np.ndarray], centrality: list[dict[tuple[int, int], float]],
                 spans: list[tuple[int, int]]) -> np.ndarray:
    """Context tokens of ``window`` that have more surrounding context here than in the passage's other windows
    (only windows sharing tokens with it can: with 64 windows of a long paragraph, comparing every pair cost
    seconds a question)."""
    def beaten(key: tuple[int, int], mine: float, earlier: bool, theirs: dict[tuple[int, int], float]) -> bool:
        other = theirs.get(key)
        return other is not None and (other > mine or (other == mine and earlier))  # ties go to the earlier

    mine, (first, last) = centrality[window], spans[window]
    others = [(w < window, centrality[w]) for w in np.flatnonzero(passage == passage[window])
              if w != window and spans[w][0] <= last and spans[w][1] >= first]
    mask = np.zeros_like(context[window])
    for position in np.flatnonzero(context[window]):
        key = offsets[window][position]
        mask[position] = not any(beaten(key, mine[key], earlier, theirs) for earlier, theirs in others)
    return mask


def length_batches(lengths: list[int], max_size: int, max_padding: float = 0.1) -> list[list[int]]:
    """Window indices grouped into batches of similar lengths: shortest first, a batch closes when it holds
    ``max_size`` windows or when padding its windows to the longest would add more than ``max_padding`` of its
    tokens. On a CPU a padded token costs as much as a real one, so this batches without paying for padding."""
    batches: list[list[int]] = []
    tokens = 0
    for window in sorted(range(len(lengths)), key=lengths.__getitem__):
        batch = batches[-1] if batches else None
        if batch and len(batch) < max_size and \
                (len(batch) + 1) * lengths[window] <= (tokens + lengths[window]) * (1 + max_padding):
            batch.append(window)
            tokens += lengths[window]
        else:
            batches.append([window])
            tokens = lengths[window]
    return batches
