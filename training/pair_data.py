"""Training pairs for the retriever and the reranker, ready to train on: read, split, hard negatives mined."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kb.cards import DataFile, ModelKind, TrainingCard
from training.errors import TrainingDataError
from training.files import in_validation
from training.negatives import mine_negatives, passages_knowledge_base
from training.options import NO_VALIDATION, TrainOptions
from training.output import finish_output, publish_model
from training.overlap import PassageOverlap
from training.pairs import Pair, file_pairs, split_pairs, weak_pairs
from training.runner import best_evaluation, finish_card, library_versions, run_trainer


@dataclass
class PreparedPairs:
    train: list[Pair]
    validation: list[Pair]
    files: list[DataFile]
    validation_files: list[DataFile]
    split: str
    skipped: Counter[str] = field(default_factory=Counter)
    mined: Counter[str] = field(default_factory=Counter)
    mined_with: str = ""  # the text model whose dense neighbours were mined

    def sha256(self) -> str:
        """A hash of every (query, passage, negatives) example, so a resumed run checks it trains on the same ones:
        weak pairs and mined negatives come from a knowledge base and a mining model, which no file hash covers."""
        digest = hashlib.sha256()
        for pair in self.train + self.validation:
            digest.update(json.dumps([pair.query, pair.positive, pair.negatives]).encode())
        return digest.hexdigest()


PREFIX_CHARS_PER_TOKEN = 8  # a first guess at the characters that hold a token: the prefix grows when it falls short
SPARE_TOKENS = 8  # kept past what the model reads: byte-level BPE gives a character's several tokens one offset


def readable_part(text: str, tokenizer: Any, max_tokens: int) -> str:
    """The start of ``text`` that holds what a model reading ``max_tokens`` tokens of it sees, and a few tokens
    more; found by tokenising a prefix that grows until it holds more than that."""
    keep = max_tokens + SPARE_TOKENS
    size = keep * PREFIX_CHARS_PER_TOKEN
    while True:
        offsets = tokenizer(text[:size], add_special_tokens=False, return_offsets_mapping=True,
                            verbose=False)["offset_mapping"]  # (no warning that the prefix is longer than the model)
        if len(offsets) > keep:
            return text[: offsets[keep][0]]
        if size >= len(text):
            return text
        size *= 4


def cut_to_model(pairs: Sequence[Pair], tokenizer: Any, max_tokens: int | None) -> None:
    """Cut the passages of ``pairs`` (positives, negatives) to what the model reads of them (``max_tokens`` of
    each; a cross-encoder reading query and passage together asks for twice its length, so that truncating the
    pair takes from a long query as before), each distinct text once. The trainers tokenise every text whole
    before truncating it. A slow tokenizer has no offsets, and a model with no length reads everything: their texts
    stay whole."""
    if not max_tokens or not getattr(tokenizer, "is_fast", False):
        return
    cut: dict[str, str] = {}

    def part(text: str) -> str:
        if text not in cut:
            cut[text] = readable_part(text, tokenizer, max_tokens)
        return cut[text]

    for pair in pairs:
        pair.positive, pair.negatives = part(pair.positive), [part(text) for text in pair.negatives]


def prepare_pairs(data: Sequence[Path], options: TrainOptions, *, text_model: str, kb_dir: Path | None,
                  from_kb: bool, negatives: int) -> PreparedPairs:
    """Pairs from ``data`` (SQuAD or JSONL files) and, with ``from_kb``, weak pairs from the knowledge base at
    ``kb_dir``; validation held out by group (article, document) unless given; ``negatives`` hard negatives per
    pair mined from the knowledge base at ``kb_dir`` when there is one, else from the pairs' own passages
    embedded with ``text_model``."""
    from kb.knowledge_base import KnowledgeBase

    pair_set = file_pairs(list(data)) if data else None
    pairs = list(pair_set.pairs) if pair_set else []
    files = list(pair_set.files) if pair_set else []
    skipped = Counter(pair_set.skipped) if pair_set else Counter()
    with ExitStack() as stack:
        knowledge_base = None
        if kb_dir is not None and (kb_dir / "kb.json").is_file():
            knowledge_base = stack.enter_context(KnowledgeBase.open(kb_dir))
        if from_kb:
            if knowledge_base is None:
                raise TrainingDataError(f"--from-kb: no knowledge base at {kb_dir}; give its folder with --kb")
            weak = weak_pairs(knowledge_base.store.documents())
            pairs += weak.pairs
            skipped += weak.skipped
        if not pairs:
            reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.items()) or "no example given"
            raise TrainingDataError(f"no usable (query, passage) pair ({reasons})")
        if options.validation:
            validation_set = file_pairs(options.validation)
            skipped += in_validation(validation_set.skipped)
            train, validation = pairs, validation_set.pairs
            validation_files, split = validation_set.files, "given: " + ", ".join(map(str, options.validation))
            if not validation:
                raise TrainingDataError("no usable (query, passage) pair in the --validation files")
        elif not options.use_validation:
            train, validation, validation_files, split = pairs, [], [], NO_VALIDATION
        else:
            train, validation = split_pairs(pairs, options.validation_fraction, options.seed)
            validation_files = []
            split = f"{len(validation)} pairs of {len({p.group for p in validation})} groups (articles, documents) " \
                    "held out from the training data"
        if not train or (options.use_validation and not validation):
            raise TrainingDataError("too few groups (articles, documents) to hold out a validation split: give "
                                    "--validation FILE, or more data")
        if knowledge_base is None:
            knowledge_base = stack.enter_context(
                passages_knowledge_base([p.positive for p in train + validation], text_model))
        # A validation passage is never a training negative: training would have seen it.
        mined = mine_negatives(train, knowledge_base, negatives,
                               excluded=PassageOverlap(p.positive for p in validation))
        mined += mine_negatives(validation, knowledge_base, negatives)
        mined_with = knowledge_base.settings.text_encoder.model
    return PreparedPairs(train, validation, files, validation_files, split, skipped, mined, mined_with)


def train_and_save(kind: ModelKind, trainer: Any, evaluator: Callable[[Any], dict[str, float]] | None,
                   scores: Callable[[dict[str, float]], dict[str, float]], *, options: TrainOptions,
                   checkpoints: Path, prepared: PreparedPairs, base: str, base_fingerprint: str,
                   hyperparameters: dict[str, Any], started: float, started_at: datetime) -> TrainingCard:
    """Score the model on validation (``scores`` of the ``evaluator``'s metrics), train, score the best checkpoint
    (from the trainer's log when it was evaluated there: a validation pass takes minutes), save the model and card;
    with no ``evaluator`` (no validation) nothing is scored."""
    model = trainer.model
    before = scores(evaluator(model)) if evaluator else {}
    run = run_trainer(trainer, options, checkpoints)
    after = scores(best_evaluation(trainer.state) or evaluator(model)) if evaluator else {}
    out = options.out.expanduser()
    publish_model(out, lambda folder: model.save(str(folder)))
    card = TrainingCard(kind=kind, base_model=base, base_fingerprint=base_fingerprint,
                        data=prepared.files, validation_data=prepared.validation_files, validation_split=prepared.split,
                        examples=len(prepared.train), skipped=dict(prepared.skipped),
                        hyperparameters=hyperparameters | {"negatives_mined": dict(prepared.mined),
                                                           "negatives_mined_with": prepared.mined_with},
                        started_at=started_at, validation_before=before, validation_after=after,
                        libraries=library_versions("sentence-transformers", "datasets"))
    finish_output(out, finish_card(card, trainer, run, started))
    return card
