"""Snippets: the stretch of a hit that holds the query's terms, marked, in English and Chinese."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kb.keywords import keyword_tokenizer
from retrieval.snippets import snippet

FILLER = "Nothing of note happens in this sentence at all. "


def marked(text: str, query: str, tokenizer: str = "simple", width: int = 120) -> str:
    keywords = keyword_tokenizer(tokenizer)
    shown = snippet(text, set(keywords.tokenize_query(query)), keywords, width=width)
    return shown.render(mark=lambda term: f"[{term}]")


def test_the_window_with_the_most_query_terms_is_shown_with_them_marked() -> None:
    text = FILLER * 6 + "Employees receive 25 vacation days per year. " + FILLER * 6
    shown = marked(text, "How many vacation days do employees get?")
    assert "[Employees] receive 25 [vacation] [days] per year." in shown
    assert shown.startswith("…") and shown.endswith("…") and len(shown) <= 125


def test_more_distinct_terms_beat_more_repeats_of_one() -> None:
    text = "refund " * 10 + FILLER * 5 + "The refund policy allows returns within thirty days. " + FILLER * 5
    assert "[refund] [policy] allows [returns]" in marked(text, "refund policy returns")


def test_plural_and_case_meet_as_in_keyword_search() -> None:
    assert marked("Refunds are paid to the original card.", "refund card") == "[Refunds] are paid to the original [card]."


def test_without_a_matching_term_the_start_is_shown() -> None:
    text = "Alpha beta gamma. " * 20
    shown = marked(text, "unrelated words")
    assert shown.startswith("Alpha beta") and "[" not in shown and shown.endswith("…")


@pytest.mark.parametrize("tokenizer", ["simple", "jieba"])
def test_chinese_terms_are_found_without_spaces(tokenizer: str) -> None:
    text = "公司简介。" * 30 + "客户在收到商品后三十天内可以退货。" + "其他内容。" * 30
    shown = marked(text, "客户退货有多少天？", tokenizer, width=40)
    assert "[客户]" in shown and "[退货]" in shown and len(shown) <= 50


def test_a_chunk_matching_one_character_everywhere_is_windowed_in_linear_time() -> None:
    """Every span was scanned again for each one: a 6,400-character Chinese chunk matching its one character
    everywhere took 3.5 s a hit, for each hit shown."""
    jieba = keyword_tokenizer("jieba")
    text = "⼀" * 12_800
    started = time.perf_counter()
    shown = snippet(text, set(jieba.tokenize_query("⼀")), jieba)
    assert time.perf_counter() - started < 5
    assert shown.before is False and len(shown.marks) == len(shown.text) == 300


def test_the_terms_that_chose_the_window_are_all_shown() -> None:
    """The window was chosen for the terms within ``width`` after its first term but shown from a fifth of the width
    before it, so a term near its end was counted and then cut off."""
    text = FILLER * 20 + "The refund is paid by the finance team " + FILLER * 4 + "within thirty days. " + FILLER * 20
    shown = marked(text, "refund thirty", width=300)
    assert "[refund]" in shown and "[thirty]" in shown and len(shown) <= 305


@pytest.mark.parametrize("character", [
    pytest.param("\U0001F468\u200d\U0001F469\u200d\U0001F467", id="zwj-family"),
    pytest.param("\U0001F1E8\U0001F1F3", id="flag"),
    pytest.param("e\u0301", id="combining-accent"),
    pytest.param("\U0001F44D\U0001F3FD", id="skin-tone"),
    pytest.param("\u2764\ufe0f", id="variation-selector"),
])
@pytest.mark.parametrize("width", [299, 301, 303])
def test_text_without_spaces_is_cut_between_characters_as_a_reader_sees_them(character: str, width: int) -> None:
    """Without spaces to cut at, a window was cut at any code point: half a flag, an accent without its letter, a
    family emoji split at its joiner."""
    text = character * 150 + "退货政策" + character * 200
    keywords = keyword_tokenizer("simple")
    shown = snippet(text, set(keywords.tokenize_query("退货")), keywords, width=width)
    assert shown.before and shown.after and "退货政策" in shown.text
    assert shown.text.replace("退货政策", "").replace(character, "") == ""  # whole characters at both ends


def test_a_question_is_cut_into_terms_once_for_its_searches_and_all_its_snippets(
        kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Each printed hit's snippet cut the whole question into terms again, uncut (a 129 KB Chinese question: 8 s a
    hit, 75 s for ten), and ask cut it once for its passages and again for its images (seconds each for a long
    Chinese one). Now once per question, as far as the search reads it; jieba segments a long run in slices."""
    from kb.cli import main
    from kb.keywords import HAN_SLICE, JiebaTokenizer
    from retrieval.query import MAX_QUERY_CHARS
    from tests.test_knowledge_base import write_docs

    notes = {f"note{n}.txt": f"退货政策 第{n}条：客户可在三十天内退货。" for n in range(8)}
    folder = write_docs(tmp_path / "docs", notes)
    kb = kb_factory(keyword_tokenizer="jieba")
    kb.ingest(folder)
    kb.close()
    cut: list[int] = []
    tokenize = JiebaTokenizer.tokenize_query

    def counted(self: JiebaTokenizer, text: str) -> list[str]:
        if len(text) > 1000:  # the question's or its English gloss's (snippets look up a hit's words one by one)
            cut.append(len(text))
        return tokenize(self, text)

    monkeypatch.setattr(JiebaTokenizer, "tokenize_query", counted)
    question = "退货政策" + "客" * 40_000
    monkeypatch.setenv("KB_DEVICE", "cpu")
    assert main(["--kb", str(tmp_path / "kb"), "search", question, "-k", "8"]) == 0
    # The question's and its gloss's (its 客 read "guest ": once 557,032 characters), each cut as far as search reads
    assert capsys.readouterr().out.count("   退货政策 第") == 8 and cut == [MAX_QUERY_CHARS] * 3
    cut.clear()
    kb = kb_factory(keyword_tokenizer="jieba")
    kb.ask(question)
    assert cut == [MAX_QUERY_CHARS] * 2  # the question's, its gloss's: for passages and images alike
    jieba = JiebaTokenizer()
    run = "".join(f"退货政策第{n}条客户可在三十天内退货" for n in range(100))
    assert jieba.segment_question(run) == [word for start in range(0, len(run), HAN_SLICE)
                                           for word in jieba.segment(run[start : start + HAN_SLICE])]
    assert "中华人民共和国" in jieba.tokenize("客" * 510 + "中华人民共和国")  # a document's run: whole, as before
