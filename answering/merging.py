"""Merging candidate answers: the same answer read in several places becomes one answer with all its sources."""

from __future__ import annotations

from answering.squad_metrics import chinese_tokens, normalize_answer
from kb.language import HAN
from kb.types import Answer, Citation


def _key(text: str) -> str:
    """Readings with the same key are one answer: for Chinese, the text without punctuation of any script (so
    "蔡元培" and "蔡元培。" merge, as "Marxville" and "Marxville." do)."""
    if HAN.search(text):
        return " ".join(chinese_tokens(text)) or text.strip()
    return normalize_answer(text) or text.strip()


def _overlaps(sources: list[Citation], candidate: Citation) -> bool:
    return any(source.document_id == candidate.document_id and source.start < candidate.end
               and candidate.start < source.end for source in sources)


def merge_answers(candidates: list[tuple[str, Citation]], top: int) -> list[Answer]:
    """Answers from ``(text, citation)`` candidates, best first, at most ``top``.

    Candidates are taken in order of probability. One with the same normalised text as an existing answer is
    another reading of it: its probability adds to the answer's score and its citation joins the sources (unless
    those characters are already cited, as happens with overlapping chunks). One that overlaps an answer's cited
    characters without the same text ("1138" and "in 1138") adds its probability only. Otherwise it is a new
    answer. The answer keeps the text of its most probable reading. Scores are sums of disjoint span
    probabilities, so they stay in [0, 1].
    """
    answers: list[tuple[str, list[Citation], float]] = []
    for text, citation in sorted(candidates, key=lambda item: -item[1].score):
        for index, (answer_text, sources, score) in enumerate(answers):
            same_text = _key(text) == _key(answer_text)
            if same_text or _overlaps(sources, citation):
                if same_text and not _overlaps(sources, citation):
                    sources.append(citation)
                answers[index] = (answer_text, sources, score + citation.score)
                break
        else:
            answers.append((text, [citation], citation.score))
    ranked = sorted(answers, key=lambda answer: -answer[2])[:top]
    return [Answer(text=text, score=min(1.0, score), sources=sources) for text, sources, score in ranked]
