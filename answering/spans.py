"""Span probabilities with shared normalisation: one softmax over every candidate span of every window read.

Per-window softmax (what transformers' pipeline reports) makes every window's best span look confident, so
scores cannot be compared across passages. Here each valid span ``(s, e)`` of every window of every passage
gets the logit ``start[s] + end[e]``, the no-answer event gets ``start[CLS] + end[CLS]``, and one softmax runs
over all of them. The probabilities of all spans and of "no answer" sum to one whatever the number of passages,
so the same answer read in two passages can be summed, and a score means the same for k = 3 and k = 10. The
no-answer logit is that of the window most sure it holds an answer (the minimum over windows, as transformers'
pipeline does for SQuAD 2.0 models): one passage with the answer is enough. A token shared by two overlapping
windows starts spans only in the window where it has most context, so it is not counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    """A candidate answer: tokens ``[start, end]`` (inclusive) of ``window``, with its probability."""

    window: int
    start: int
    end: int
    probability: float


def _logsumexp(values: np.ndarray) -> float:
    top = float(values.max())
    return top + float(np.log(np.exp(values - top).sum())) if np.isfinite(top) else top


def _span_logits(start: np.ndarray, end: np.ndarray, context: np.ndarray, owned: np.ndarray,
                 width: int) -> np.ndarray:
    """``score[i, d] = start[i] + end[i + d]``: spans of ``d + 1`` tokens starting at ``i``; invalid ones -inf."""
    padded_end = np.concatenate([np.where(context, end, -np.inf), np.full(width, -np.inf)])
    ends = np.lib.stride_tricks.sliding_window_view(padded_end, width)[: len(start)]
    return np.where(owned[:, None], start[:, None] + ends, -np.inf)


def best_spans(start_logits: list[np.ndarray], end_logits: list[np.ndarray], context: list[np.ndarray],
               owned: list[np.ndarray], *, max_answer_tokens: int, top: int) -> tuple[list[Span], float]:
    """The ``top`` most probable spans over all windows, and the no-answer probability.

    A span starts on a token its window owns and ends on a context token of the same window, at most
    ``max_answer_tokens`` tokens long.
    """
    # A logit that is not a number (a broken model) makes no answer: it scored NaN, which comparisons took as sure.
    start_logits = [np.where(np.isnan(s), -np.inf, s) for s in start_logits]
    end_logits = [np.where(np.isnan(e), -np.inf, e) for e in end_logits]
    null_logit = min(float(s[0] + e[0]) for s, e in zip(start_logits, end_logits))
    scores = [_span_logits(s, e, c, o, min(max_answer_tokens, len(s)))
              for s, e, c, o in zip(start_logits, end_logits, context, owned)]
    log_z = _logsumexp(np.array([null_logit] + [_logsumexp(score.ravel()) for score in scores]))
    windows, starts, ends, values = [], [], [], []
    for window, score in enumerate(scores):
        flat = score.ravel()
        keep = min(top, int(np.isfinite(flat).sum()))
        if keep == 0:
            continue
        best = np.argpartition(-flat, keep - 1)[:keep]
        windows.append(np.full(keep, window))
        starts.append(best // score.shape[1])
        ends.append(best // score.shape[1] + best % score.shape[1])
        values.append(flat[best])
    if not np.isfinite(log_z):  # nothing the model scored is a number
        return [], 1.0
    null = float(np.exp(null_logit - log_z))
    if not values:
        return [], null
    window_of, start_of, end_of, value_of = (np.concatenate(part) for part in (windows, starts, ends, values))
    order = np.argsort(-value_of, kind="stable")[:top]
    return [Span(int(window_of[i]), int(start_of[i]), int(end_of[i]), float(np.exp(value_of[i] - log_z)))
            for i in order], null
