"""``kb train``: fine-tune the reader, the retriever, a reranker and CLIP on a company's own data.

Importing this package is cheap; each trainer imports torch, transformers and the rest when it runs.

    from training import train_reader, TrainOptions
    card = train_reader(["qa/train.json"], TrainOptions(out="models/reader"))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kb.cards import TrainingCard
from training.dependencies import require_train_extra
from training.errors import OutputExistsError, TrainingDataError
from training.options import Distillation, TrainOptions

KINDS = ("reader", "retriever", "reranker", "clip")


def train_reader(data: Sequence[str | Path], options: TrainOptions, *, kb_dir: str | Path | None = None,
                 from_kb: bool = False, unanswerable_share: float | None = None,
                 distillation: Distillation | None = None) -> TrainingCard:
    """Fine-tune an extractive reader on SQuAD v1.1/v2.0 files and, with ``from_kb``, on cloze questions made from
    the knowledge base's own passages (see :mod:`training.reader`, :mod:`training.cloze`); its no-answer threshold
    is tuned for questions of which ``unanswerable_share`` have no answer in the knowledge base (default 0.2). With
    ``distillation``, trained readers sharing its vocabulary teach it too (:mod:`training.distillation`)."""
    require_train_extra()
    from training.reader import train_reader as run

    extra = {} if unanswerable_share is None else {"unanswerable_share": unanswerable_share}
    return run([Path(path) for path in data], options, kb_dir=Path(kb_dir) if kb_dir else None, from_kb=from_kb,
               distillation=distillation, **extra)


def train_retriever(data: Sequence[str | Path], options: TrainOptions, *, kb_dir: str | Path | None = None,
                    from_kb: bool = False, hard_negatives: int = 1,
                    mining_model: str | None = None) -> TrainingCard:
    """Fine-tune the text space's model on (question, passage) pairs (see :mod:`training.retriever`)."""
    require_train_extra()
    from training.retriever import train_retriever as run

    return run([Path(path) for path in data], options, kb_dir=Path(kb_dir) if kb_dir else None, from_kb=from_kb,
               hard_negatives=hard_negatives, mining_model=mining_model)


def train_reranker(data: Sequence[str | Path], options: TrainOptions, *, kb_dir: str | Path | None = None,
                   from_kb: bool = False, hard_negatives: int = 3,
                   mining_model: str | None = None) -> TrainingCard:
    """Train a cross-encoder reranker (see :mod:`training.reranker`)."""
    require_train_extra()
    from training.reranker import train_reranker as run

    return run([Path(path) for path in data], options, kb_dir=Path(kb_dir) if kb_dir else None, from_kb=from_kb,
               hard_negatives=hard_negatives, mining_model=mining_model)


def train_clip(data: Sequence[str | Path], options: TrainOptions, *, clip_pretrained: str | None = None,
               kb_dir: str | Path | None = None, from_kb: bool = False) -> TrainingCard:
    """Fine-tune an open_clip model on image-caption pairs (see :mod:`training.clip`)."""
    from training.clip import train_clip as run

    return run([Path(path) for path in data], options, clip_pretrained=clip_pretrained,
               kb_dir=Path(kb_dir) if kb_dir else None, from_kb=from_kb)


def train(kind: str, data: Sequence[str | Path], *, kb_dir: str | Path | None = None, from_kb: bool = False,
          hard_negatives: int | None = None, mining_model: str | None = None, clip_pretrained: str | None = None,
          unanswerable_share: float | None = None, distillation: Distillation | None = None,
          **options: Any) -> TrainingCard:
    """Train a model of ``kind`` (reader, retriever, reranker, clip); ``options`` are :class:`TrainOptions` fields
    (``None`` values mean the kind's default)."""
    settings = TrainOptions(**{name: value for name, value in options.items() if value is not None})
    if distillation is not None and kind != "reader":
        raise ValueError(f"distillation (--teacher) trains a reader, not a {kind}")
    if kind == "reader":
        return train_reader(data, settings, kb_dir=kb_dir, from_kb=from_kb, unanswerable_share=unanswerable_share,
                            distillation=distillation)
    if kind == "clip":
        return train_clip(data, settings, clip_pretrained=clip_pretrained, kb_dir=kb_dir, from_kb=from_kb)
    if kind in ("retriever", "reranker"):
        function = train_retriever if kind == "retriever" else train_reranker
        extra = {} if hard_negatives is None else {"hard_negatives": hard_negatives}
        return function(data, settings, kb_dir=kb_dir, from_kb=from_kb, mining_model=mining_model, **extra)
    raise ValueError(f"unknown model kind {kind!r}; use one of {', '.join(KINDS)}")


__all__ = ["KINDS", "Distillation", "OutputExistsError", "TrainOptions", "TrainingCard", "TrainingDataError", "train",
           "train_clip", "train_reader", "train_reranker", "train_retriever"]
