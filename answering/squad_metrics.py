"""SQuAD metrics with the official evaluation script's rules (v1.1 and v2.0).

Answers are compared after ``normalize_answer`` (lower case, no punctuation, no articles a/an/the, single
spaces). Exact match and token F1 take the maximum over the gold answers; a question without gold answers
(SQuAD 2.0 "impossible") counts as gold ``""``, so only an empty prediction scores 1 on it.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (the official script's function)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1; when either side has no tokens, 1 if both have none, else 0."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_scores(prediction: str, golds: list[str]) -> tuple[float, float]:
    """(exact match, F1) against the best of ``golds``; no non-empty gold answer means the gold is ``""``."""
    golds = [gold for gold in golds if normalize_answer(gold)] or [""]
    return max(exact_match(prediction, g) for g in golds), max(f1_score(prediction, g) for g in golds)
