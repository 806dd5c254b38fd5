"""SQuAD questions into labelled reader windows: the very windows the reader reads at inference.

Each question is cut with :func:`answering.windows.make_windows` (same question truncation, window length and
stride). A window containing the whole answer is labelled with its first and last token; every other window, and
every window of an unanswerable question, is labelled with the no-answer position 0 (CLS), as in SQuAD 2.0
training. Questions whose answer cannot be used are skipped and counted by reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from answering.squad_eval import SquadQuestion, SquadSet
from answering.windows import Windows, make_windows

MAX_WINDOWS_PER_QUESTION = 64  # a 20,000-token paragraph; longer ones are cut (and counted)
# Windows without the answer a training question keeps, those nearest its answer: they teach "not here" as well as
# sixty would, and a long paragraph asked many questions would otherwise hold 64 windows for each (2 GB for 300).
TRAINING_WINDOWS_WITHOUT_ANSWER = 2
NOT_FOUND = "answer not found in its context"
TOO_LONG = "answer does not fit in one window"
CUT = "paragraph longer than 64 windows"
NO_TOKENS = "paragraph without a token (only invisible characters)"


@dataclass
class ReaderFeatures:
    """Model inputs with labels (``features``), and for evaluation each question's windows and gold answers."""

    features: list[dict[str, Any]] = field(default_factory=list)
    questions: list[SquadQuestion] = field(default_factory=list)
    windows: list[Windows] = field(default_factory=list)
    first_feature: list[int] = field(default_factory=list)
    contexts: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.features)


def locate_answer(context: str, text: str, start: int) -> tuple[int, int] | None:
    """The answer's character span in ``context``, without the spaces around it (an export's " Paris" or "Germany. "
    is still found, and labels the tokens of its words): at the given offset, moved past the leading spaces, when
    the text is there, else the occurrence nearest to it (hand-made files are often off by a few characters), else
    None."""
    core = text.strip()
    if not core:
        return None
    if start >= 0:
        start += len(text) - len(text.lstrip())
        if context[start : start + len(core)] == core:
            return start, start + len(core)
    before = context.rfind(core, 0, start + len(core) - 1) if start > 0 else -1  # the last one starting before
    after = context.find(core, max(start, 0))  # the first one from it on (two searches, however many there are)
    found = [at for at in (before, after) if at >= 0]
    nearest = min(found, key=lambda at: abs(at - start), default=None)  # the earlier of two as near
    return (nearest, nearest + len(core)) if nearest is not None else None


def _label(windows: Windows, window: int, first: int, last: int) -> tuple[int, int] | None:
    """First and last token of the answer ``[first, last)`` if window ``window`` holds all of it."""
    tokens = np.flatnonzero(windows.context[window])
    offsets = windows.offsets[window]
    if offsets[tokens[0]][0] > first or offsets[tokens[-1]][1] < last:
        return None
    inside = [t for t in tokens if offsets[t][0] < last and offsets[t][1] > first]
    return (int(inside[0]), int(inside[-1])) if inside else None


def reader_features(squad: SquadSet, tokenizer: Any, *, max_length: int, stride: int, input_names: set[str],
                    for_training: bool) -> ReaderFeatures:
    """Windows of every question of ``squad``, labelled with the first gold answer that can be placed. For training,
    questions whose answer cannot be used are skipped and counted; for evaluation every question is kept (its
    windows then labelled "no answer")."""
    out = ReaderFeatures()
    for question in squad.questions:
        context = squad.paragraphs[question.paragraph][1]
        windows = make_windows(tokenizer, question.question, [context], max_length=max_length,
                               stride=stride, max_windows=MAX_WINDOWS_PER_QUESTION, input_names=input_names)
        if not len(windows):
            out.skipped["empty context"] += 1
            continue
        if not windows.context[0].any():  # only invisible characters (zero-width spaces, soft hyphens)
            out.skipped[NO_TOKENS] += 1
            continue
        labels = [(0, 0)] * len(windows)
        if question.answers:
            spans = [span for text, start in
                     zip(question.answers, question.answer_starts or [-1] * len(question.answers))
                     if (span := locate_answer(context, text, start)) is not None]
            placed = [_label(windows, w, *spans[0]) for w in range(len(windows))] if spans else []
            if not any(placed) and for_training:
                reason = NOT_FOUND if not spans else CUT if len(windows) == MAX_WINDOWS_PER_QUESTION else TOO_LONG
                out.skipped[reason] += 1
                continue
            labels = [label or (0, 0) for label in placed] or labels
        out.first_feature.append(len(out.features))
        kept = _training_windows(labels) if for_training else range(len(labels))
        out.features += [{**windows.features[w], "start_positions": labels[w][0], "end_positions": labels[w][1]}
                         for w in kept]
        out.questions.append(question)
        if not for_training:  # what decoding a question's prediction needs; training reads only the features
            out.windows.append(windows)
            out.contexts.append(context)
    return out


def _training_windows(labels: list[tuple[int, int]]) -> list[int]:
    """The windows a training question keeps: those holding its answer, and the ``TRAINING_WINDOWS_WITHOUT_ANSWER``
    nearest them without it (the first ones of an unanswerable question)."""
    answered = [w for w, label in enumerate(labels) if label != (0, 0)]
    others = sorted((w for w, label in enumerate(labels) if label == (0, 0)),
                    key=lambda w: min((abs(w - a) for a in answered), default=w))
    return sorted(answered + others[:TRAINING_WINDOWS_WITHOUT_ANSWER])
