"""The SQuAD metrics against values worked out by the official evaluation script's rules."""

from __future__ import annotations

import pytest

from answering.squad_metrics import best_scores, exact_match, f1_score, normalize_answer


@pytest.mark.parametrize(("text", "normalised"), [
    ("The  Quick, brown fox!", "quick brown fox"),
    ("Levi's Stadium", "levis stadium"),
    ("an apple a day", "apple day"),
    ("theater", "theater"),  # articles only as whole words
    ("  ", ""),
])
def test_normalize_answer(text: str, normalised: str) -> None:
    assert normalize_answer(text) == normalised


def test_exact_match_and_f1() -> None:
    assert exact_match("the Denver Broncos", "Denver Broncos") == 1.0
    assert exact_match("Denver Broncos won", "Denver Broncos") == 0.0
    assert f1_score("Denver Broncos won", "Denver Broncos") == pytest.approx(0.8)
    # SQuAD dev question 56be4db0acb8001400a502ee: precision 1, recall 3/11.
    assert f1_score("Santa Clara, California",
                    "Levi's Stadium in the San Francisco Bay Area at Santa Clara, California") == pytest.approx(6 / 14)
    assert f1_score("a cat", "the dog") == 0.0
    assert f1_score("cat cat", "cat") == pytest.approx(2 * 0.5 * 1 / 1.5)  # repeated tokens count once each


def test_best_over_gold_answers_and_no_answer() -> None:
    assert best_scores("an apple", ["apple pie", "Apple"]) == (1.0, 1.0)
    assert best_scores("apple", ["apple pie", "pear"]) == (0.0, pytest.approx(2 / 3))
    # SQuAD 2.0: no gold answer counts as gold "" — only abstaining scores.
    assert best_scores("", []) == (1.0, 1.0)
    assert best_scores("something", []) == (0.0, 0.0)
    assert best_scores("", ["Denver"]) == (0.0, 0.0)
    assert best_scores("x", ["the", "x"]) == (1.0, 1.0)  # gold answers that normalise to nothing are dropped


def test_chinese_answers_are_scored_by_character_like_cmrc_2018() -> None:
    from answering.squad_metrics import chinese_tokens

    assert chinese_tokens("iPhone 7于2016年发布，售价649美元。") == [
        "iphone", "7", "于", "2016", "年", "发", "布", "售", "价", "649", "美", "元"]
    assert best_scores("三十天。", ["三十天"]) == (1.0, 1.0)  # Chinese punctuation is no part of the answer
    assert best_scores("三十天", ["三十天内"]) == (0.0, pytest.approx(2 * 3 / 7))  # whitespace tokens: F1 0
    assert f1_score("2016年", "2016年9月") == pytest.approx(2 * 2 / 6)  # a common run of 2 of 2 and 4 tokens
    assert f1_score("发布售价", "售价发布") == pytest.approx(2 * 2 / 8)  # the longest common run, not the bag
    assert best_scores("", ["三十天"]) == (0.0, 0.0) and best_scores("三十天", []) == (0.0, 0.0)


def test_chinese_scoring_differs_from_cmrc_2018s_script_where_the_docstring_says() -> None:
    """The module claimed CMRC 2018's rules; its punctuation and whitespace rules are its own, and these are the
    documented cases where CMRC's cmrc2018_evaluate.py (a fixed list of marks, whitespace kept) scores otherwise."""
    import answering.squad_metrics as metrics

    documented = " ".join((metrics.__doc__ or "").split())
    for prediction, gold, here in [("约50", "约50%", 1.0), ("北京大学", "北京 大学", 1.0), ("C语言", "C++语言", 0.0)]:
        assert exact_match(prediction, gold) == here
        assert f'"{gold}" and "{prediction}"' in documented or f'"{prediction}" and "{gold}"' in documented
    assert "match here and not there" in documented and "there and not here" in documented
