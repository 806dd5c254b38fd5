"""Merging candidate answers: the same answer read in several places becomes one answer with all its sources."""

from __future__ import annotations

import bisect
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


class _Spans:
    """The cited character spans of one document, which never overlap one another (a candidate overlapping one
    joins its answer without adding a source), kept sorted: so their ends are sorted too, and the spans a candidate
    overlaps are found by two binary searches (a scan of all of them took 8 s for 100,000 candidates)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.answers: list[int] = []

    def first_overlapping(self, start: int, end: int) -> int | None:
        """The lowest answer index among the spans overlapping ``[start, end)``, if any."""
        return min(self.answers[bisect.bisect_right(self.ends, start):bisect.bisect_left(self.starts, end)],
                   default=None)

    def add(self, start: int, end: int, answer: int) -> None:
        at = bisect.bisect_left(self.starts, start)
        self.starts.insert(at, start)
        self.ends.insert(at, end)
        self.answers.insert(at, answer)


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
    cited: dict[int, _Spans] = {}  # by document, every source's characters and answer
    for text, citation in sorted(candidates, key=lambda item: -item[1].score):
        spans = cited.setdefault(citation.document_id, _Spans())
        overlapped = spans.first_overlapping(citation.start, citation.end)
        index = overlapped if overlapped is not None else by_key.setdefault(_key(text), len(answers))
        if index == len(answers):
            answers.append((text, [], 0.0))
        answer_text, sources, score = answers[index]
        if overlapped is None:
            sources = [*sources, citation]
            spans.add(citation.start, citation.end, index)
        answers[index] = (answer_text, sources, score + citation.score)
    ranked = sorted(answers, key=lambda answer: -answer[2])[:top]
    return [Answer(text=text, score=min(1.0, score), sources=sources) for text, sources, score in ranked]
