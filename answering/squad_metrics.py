"""SQuAD metrics with the official evaluation script's rules (v1.1 and v2.0), and for Chinese a segmentation
modelled on CMRC 2018's evaluation (not identical to it: see below).

Answers are compared after ``normalize_answer`` (lower case, no punctuation, no articles a/an/the, single
spaces). Exact match and token F1 take the maximum over the gold answers; a question without gold answers
(SQuAD 2.0 "impossible") counts as gold ``""``, so only an empty prediction scores 1 on it.

Chinese has no spaces, so whitespace tokens would make F1 equal exact match. Where the prediction or the gold
answer holds a Chinese character, both are cut by ``chinese_tokens`` instead: every Chinese character is a token,
runs of other characters are words split at whitespace and at punctuation, every Unicode punctuation character
(category P: "%", ".", "(" and "，" included) is dropped and symbols ("+", "=") are kept; exact match compares the
token lists (so whitespace never matters) and F1 comes from the longest common run of tokens, as CMRC's does.
CMRC 2018's official script (cmrc2018_evaluate.py) differs: it drops only its fixed list of marks (ASCII
``- : _ * ^ / \\ ~ ` + =`` and full-width ones such as "，。：？！“”；’《》·、「」（）－～『』"), compares exact
match on the text with its inner whitespace, and splits other runs with nltk's ``word_tokenize`` for F1. So "约50%"
and "约50", or "北京 大学" and "北京大学", match here and not there; "C++语言" and "C语言" match there and not here.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

from kb.language import HAN

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (the official script's function)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _chinese(*texts: str) -> bool:
    return any(HAN.search(text) for text in texts)


def chinese_tokens(text: str) -> list[str]:
    """Lower-case tokens of ``text``: each Chinese character one, other runs words split at whitespace and at
    punctuation; every Unicode punctuation character dropped (a segmentation modelled on CMRC 2018's, whose own
    drops only a fixed list of marks: see the module's docstring)."""
    tokens: list[str] = []
    word = ""
    for char in text.lower():
        if HAN.match(char) or char.isspace() or unicodedata.category(char).startswith("P"):
            tokens += [word] if word else []
            word = ""
            tokens += [char] if HAN.match(char) else []
        else:
            word += char
    return tokens + ([word] if word else [])


def _longest_common_run(first: list[str], second: list[str]) -> int:
    best, previous = 0, [0] * (len(second) + 1)
    for token in first:
        current = [0] * (len(second) + 1)
        for position, other in enumerate(second, 1):
            if token == other:
                current[position] = previous[position - 1] + 1
                best = max(best, current[position])
        previous = current
    return best


def exact_match(prediction: str, gold: str) -> float:
    if _chinese(prediction, gold):
        return float(chinese_tokens(prediction) == chinese_tokens(gold))
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 (for Chinese, the longest common run of ``chinese_tokens``, as CMRC 2018 scores it); when
    either side has no tokens, 1 if both have none, else 0."""
    if _chinese(prediction, gold):
        predicted, expected = chinese_tokens(prediction), chinese_tokens(gold)
        if not predicted or not expected:
            return float(predicted == expected)
        common = _longest_common_run(predicted, expected)
        return 0.0 if common == 0 else 2 * common / (len(predicted) + len(expected))
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
