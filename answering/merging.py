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


def _overlaps(sources: list[Citation], candidate: Citation) -> bool:
    return any(source.document_id == candidate.document_id and source.start < candidate.end
               and candidate.start < source.end for source in sources)


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
    for text, citation in sorted(candidates, key=lambda item: -item[1].score):
        overlapped = [index for index, (_, sources, _) in enumerate(answers) if _overlaps(sources, citation)]
        same = [index for index, (answer_text, _, _) in enumerate(answers) if _key(answer_text) == _key(text)]
        if not overlapped and not same:
            answers.append((text, [citation], citation.score))
            continue
        index = (overlapped or same)[0]
        answer_text, sources, score = answers[index]
        answers[index] = (answer_text, sources if overlapped else [*sources, citation], score + citation.score)
    ranked = sorted(answers, key=lambda answer: -answer[2])[:top]
    return [Answer(text=text, score=min(1.0, score), sources=sources) for text, sources, score in ranked]
