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
