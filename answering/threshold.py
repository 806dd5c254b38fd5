"""The no-answer threshold chosen from data: the score below which answers are dropped, to maximise F1.

The reader's best answer to each question gets a score (its probability after merging, what ``ask`` compares with
the threshold); an unanswerable question is answered right only by abstaining. Every threshold between two
consecutive scores gives the same predictions, so the candidates are the midpoints, and the one with the highest
F1 wins (the lowest on a tie: abstain no more than needed).

F1 is weighed by how often questions have no answer where they are asked: tuning data holds as many unanswerable
questions as it was built with (one copy per answerable question), while a knowledge base is mostly asked what it
holds. ``unanswerable_share`` is the share of questions assumed to have none; the two groups' mean F1s are mixed in
that proportion, so the threshold does not depend on how many unanswerable examples the tuning data happens to hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from answering.squad_metrics import best_scores
from kb.cards import CARD_FILE, TrainingCard, read_card, write_card

DEFAULT_THRESHOLD = 0.1  # for readers without a tuned threshold: a conservative guess
# Questions a knowledge base cannot answer, as a share of those it is asked, when tuning assumes nothing better.
DEFAULT_UNANSWERABLE_SHARE = 0.2


class ScoredAnswer(BaseModel):
    """The reader's best answer to one question at threshold 0 (``""`` with score 0 when "no answer" won)."""

    text: str
    score: float


def tune_threshold(scored: Sequence[ScoredAnswer], golds: Sequence[list[str]],
                   unanswerable_share: float = DEFAULT_UNANSWERABLE_SHARE) -> float:
    """The threshold in [0, 1] that maximises F1 of ``scored`` against ``golds`` (answers kept when their score
    reaches it; an empty gold list means unanswerable), the unanswerable questions weighing ``unanswerable_share``
    of the whole (their actual share when one of the two groups is empty)."""
    unanswerable = sum(1 for gold in golds if not gold)
    answerable = len(golds) - unanswerable
    weights = {True: unanswerable_share / unanswerable, False: (1 - unanswerable_share) / answerable} \
        if unanswerable and answerable else {True: 1.0, False: 1.0}
    rows = []
    for answer, gold in zip(scored, golds):
        weight = weights[not gold]
        rows.append((answer.score, weight * best_scores(answer.text, gold)[1], weight * best_scores("", gold)[1]))
    rows.sort(key=lambda row: row[0])
    total = sum(kept for _, kept, _ in rows)  # threshold 0: every answer kept
    best_total, best_threshold = total, 0.0
    for index, (score, kept, dropped) in enumerate(rows):
        total += dropped - kept  # now rows[: index + 1] abstain
        following = rows[index + 1][0] if index + 1 < len(rows) else 1.0
        if following > score and total > best_total + 1e-9:
            best_total, best_threshold = total, min(1.0, (score + following) / 2)
    return best_threshold


def card_stamp(model: str) -> tuple[int, int, int] | None:
    """Which version of the reader folder ``model``'s training card is there (None without one): a card written
    since, by ``kb eval squad --tune-threshold`` or a new training, has another."""
    try:
        stat = (Path(model).expanduser() / CARD_FILE).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def model_threshold(model: str) -> float:
    """The threshold recorded in the training card of the reader model folder ``model``, else the default."""
    path = Path(model).expanduser()
    card = read_card(path) if path.is_dir() else None
    return card.no_answer_threshold if card and card.no_answer_threshold is not None else DEFAULT_THRESHOLD


def record_threshold(model: str, threshold: float, tuned_on: str) -> str | None:
    """Write ``threshold`` into the training card of the reader model folder ``model`` (a card is started for a
    model trained elsewhere); returns the card's path, or None when ``model`` is not a local folder."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return None
    card = read_card(folder) or TrainingCard(kind="reader", base_model=model)
    card.no_answer_threshold, card.threshold_tuned_on = threshold, tuned_on
    return str(write_card(folder, card))
