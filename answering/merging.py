"""Merging candidate answers: the same answer read in several places becomes one answer with all its sources."""

from __future__ import annotations

import re

from kb.types import Answer, Citation

# Stripped from either end of an answer only: sentence punctuation, quotes and brackets of Latin and CJK text.
# Signs, currency and per cent ("-5", "C++", "50%") and punctuation inside ("3.5") tell answers apart.
_EDGES = ".,;:!?…'\"“”‘’«»()[]{}。，、；：！？（）「」『』《》【】 "
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the) ")


def _key(text: str) -> str:
    """Readings with the same key are one answer: compared without case, runs of whitespace, a leading article
    (a, an, the) or punctuation at either end, so "Marxville." and "marxville", "The 1138." and "1138", "蔡元培。"
    and "蔡元培" merge, while "-5 degrees" and "5 degrees", "3.5 million" and "35 million", "C++" and "C" do not
    (SQuAD's normalisation, which drops all punctuation, would merge them and sum their scores)."""
    key = " ".join(text.lower().split()).strip(_EDGES)
    return _LEADING_ARTICLE.sub("", key).strip(_EDGES) or text.strip()


def merge_answers(candidates: list[tuple[str, Citation]], top: int) -> list[Answer]:
    """Answers from ``(text, citation)`` candidates, best first, at most ``top``.

    Candidates are taken in order of probability. One that overlaps an answer's cited characters is that answer
    read with other bounds ("in 1138" for "1138", "5 degrees" inside "-5 degrees"): it adds its probability only,
    whatever other answer its text matches. Otherwise one with the same key (``_key``) as an existing answer is
    another reading of it: its probability adds to the answer's score and its citation joins the sources. Otherwise
    it is a new answer. The answer keeps the text of its most probable reading. Scores are sums of disjoint span
    probabilities, so they stay in [0, 1].
    """
    answers: list[tuple[str, list[Citation], float]] = []
    by_key: dict[str, int] = {}  # each answer's key, made once (10,000 answers asked for made 17 million: 18 s)
    cited: dict[int, list[tuple[int, int, int]]] = {}  # by document: (start, end, answer) of every source
    for text, citation in sorted(candidates, key=lambda item: -item[1].score):
        key = _key(text)
        overlapped = min((index for start, end, index in cited.get(citation.document_id, ())
                          if start < citation.end and citation.start < end), default=None)
        index = overlapped if overlapped is not None else by_key.get(key)
        if index is None:
            by_key[key] = len(answers)
            cited.setdefault(citation.document_id, []).append((citation.start, citation.end, len(answers)))
            answers.append((text, [citation], citation.score))
            continue
        answer_text, sources, score = answers[index]
        if overlapped is None:
            sources = [*sources, citation]
            cited.setdefault(citation.document_id, []).append((citation.start, citation.end, index))
        answers[index] = (answer_text, sources, score + citation.score)
    ranked = sorted(answers, key=lambda answer: -answer[2])[:top]
    return [Answer(text=text, score=min(1.0, score), sources=sources) for text, sources, score in ranked]
