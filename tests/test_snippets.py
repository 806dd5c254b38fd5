"""Snippets: the stretch of a hit that holds the query's terms, marked, in English and Chinese."""

from __future__ import annotations

import pytest

from kb.keywords import keyword_tokenizer
from retrieval.snippets import snippet

FILLER = "Nothing of note happens in this sentence at all. "


def marked(text: str, query: str, tokenizer: str = "simple", width: int = 120) -> str:
    return snippet(text, query, keyword_tokenizer(tokenizer), width=width).render(mark=lambda term: f"[{term}]")


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
    shown = snippet(text, "退货", keyword_tokenizer("simple"), width=width)
    assert shown.before and shown.after and "退货政策" in shown.text
    assert shown.text.replace("退货政策", "").replace(character, "") == ""  # whole characters at both ends
