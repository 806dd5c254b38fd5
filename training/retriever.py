"""``kb train retriever``: fine-tune the text space's sentence-transformers model on (question, passage) pairs.

sentence-transformers' own trainer and loss: MultipleNegativesRankingLoss, where every other passage of the batch
is a negative (batches never hold the same passage twice) and each question also brings hard negatives mined from
the knowledge base (:mod:`training.negatives`). The validation split is scored with the library's information
retrieval evaluator (nDCG@10 decides the best checkpoint; accuracy@1 is recall@1). The output is a
sentence-transformers folder: ``KB_TEXT_MODEL=DIR kb reembed`` puts it to use.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kb.cards import TrainingCard
from kb.config import DEFAULT_TEXT_MODEL
from kb.encoders.fingerprint import folder_fingerprint
from kb.encoders.sentence_transformer import resolve_model_folder
from training.errors import TrainingDataError
from training.negatives import checked_negatives, is_gold
from training.options import TrainOptions
from training.output import prepare_output
from training.pair_data import cut_to_model, prepare_pairs, train_and_save
from training.pairs import Pair
from training.runner import check_sequence_length, start_run, trainer_arguments, utc_now

DEFAULTS = {"epochs": 1.0, "batch_size": 32, "learning_rate": 2e-5}
EVALUATOR = "validation"
METRIC = f"eval_{EVALUATOR}_cosine_ndcg@10"
MAX_EXTRA_PASSAGES = 2000  # training passages added to the validation corpus as distractors


def retrieval_evaluator(validation: Sequence[Pair], extra_passages: Sequence[str]) -> Any:
    """The library's information-retrieval evaluator: each validation question against the validation passages
    plus up to ``MAX_EXTRA_PASSAGES`` other passages."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    passages = list(dict.fromkeys([p.positive for p in validation] + list(extra_passages)[:MAX_EXTRA_PASSAGES]))
    ids = {text: f"d{number}" for number, text in enumerate(passages)}
    queries = {f"q{number}": pair.query for number, pair in enumerate(validation)}
    relevant = {f"q{number}": {ids[pair.positive]} for number, pair in enumerate(validation)}
    return InformationRetrievalEvaluator(queries, {ids[text]: text for text in passages}, relevant, name=EVALUATOR,
                                         accuracy_at_k=[1, 5], precision_recall_at_k=[1, 5], map_at_k=[10],
                                         write_csv=False, batch_size=64)


def pair_columns(pairs: Sequence[Pair], negatives: int) -> dict[str, list[str]]:
    """(anchor, positive, negative_1..n) columns; a pair short of mined negatives borrows the passages of the pairs
    after it that are neither its own passage nor hold its answer."""
    filled = [_negatives_of(pairs, number, negatives) for number in range(len(pairs))]
    columns: dict[str, list[str]] = {"anchor": [p.query for p in pairs], "positive": [p.positive for p in pairs]}
    for n in range(negatives):
        columns[f"negative_{n + 1}"] = [chosen[n] for chosen in filled]
    return columns


def _negatives_of(pairs: Sequence[Pair], number: int, wanted: int) -> list[str]:
    pair = pairs[number]
    chosen = list(pair.negatives[:wanted])
    for offset in range(1, len(pairs)):
        if len(chosen) >= wanted:
            break
        passage = pairs[(number + offset) % len(pairs)].positive
        if passage not in chosen and not is_gold(passage, pair):
            chosen.append(passage)
    if len(chosen) < wanted:
        raise TrainingDataError(f"no passage to use as a negative for {pair.query!r}: every other passage is its "
                                "own or holds its answer; give more pairs, or a knowledge base to mine from (--kb)")
    return chosen


def scores_of(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    """Evaluator results without their prefix, rounded."""
    return {name.split(prefix, 1)[1]: round(float(value), 4) for name, value in metrics.items() if prefix in name}


def train_retriever(data: Sequence[Path], options: TrainOptions, *, kb_dir: Path | None = None,
                    from_kb: bool = False, hard_negatives: int = 1, mining_model: str | None = None) -> TrainingCard:
    """Fine-tune ``options.base_model`` (default: the text model, all-MiniLM-L6-v2) on ``data`` (SQuAD or JSONL
    pairs) and, with ``from_kb``, weak pairs from the knowledge base at ``kb_dir``; write the model and its
    ``training.json`` to ``options.out``. Without a knowledge base, negatives are mined with ``mining_model``
    (default: the base model itself)."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    started, started_at = time.monotonic(), utc_now()
    base = options.base_model or DEFAULT_TEXT_MODEL
    base_folder = resolve_model_folder(base, "base model", "--base-model")
    mining_folder = resolve_model_folder(mining_model, "mining model", "--mining-model") if mining_model \
        else base_folder
    checked_negatives(hard_negatives, least=0)
    start_run(options, data=data, models=[base_folder, mining_folder], kb_dir=kb_dir)  # before mining: it encodes
    if options.max_seq_length:  # else the model's own (sentence-transformers keeps it within its positions)
        check_sequence_length(options.max_seq_length, base_folder)
    base_fingerprint = folder_fingerprint(base_folder)
    prepared = prepare_pairs(data, options, text_model=str(mining_folder), kb_dir=kb_dir, from_kb=from_kb,
                             negatives=hard_negatives)
    epochs = options.epochs or DEFAULTS["epochs"]
    batch_size = options.batch_size or DEFAULTS["batch_size"]
    learning_rate = options.learning_rate or DEFAULTS["learning_rate"]
    hyperparameters = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                       "hard_negatives": hard_negatives, "loss": "MultipleNegativesRankingLoss",
                       "max_seq_length": options.max_seq_length, "warmup_ratio": options.warmup_ratio,
                       "weight_decay": options.weight_decay, **options.seeds(), **options.validation_recorded(),
                       "from_kb": from_kb}
    run = {"kind": "retriever", "base": base, "data": [f.sha256 for f in prepared.files], "pairs": prepared.sha256(),
           **hyperparameters}
    model = SentenceTransformer(str(base_folder), device=options.device)
    if options.max_seq_length:
        model.max_seq_length = options.max_seq_length
    cut_to_model(prepared.train + prepared.validation, model.tokenizer, model.max_seq_length)  # after the run's hash
    evaluator = retrieval_evaluator(prepared.validation, [p.positive for p in prepared.train]) \
        if options.use_validation else None
    columns = pair_columns(prepared.train, hard_negatives)  # (refused data leaves --out as it was)
    checkpoints = prepare_output(options.out, overwrite=options.overwrite, resume=options.resume, run=run)
    arguments = SentenceTransformerTrainingArguments(
        **trainer_arguments(options, checkpoints, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                            metric=METRIC), batch_sampler=BatchSamplers.NO_DUPLICATES)
    trainer = SentenceTransformerTrainer(model=model, args=arguments, train_dataset=Dataset.from_dict(columns),
                                         loss=MultipleNegativesRankingLoss(model), evaluator=evaluator)
    return train_and_save("retriever", trainer, evaluator, lambda metrics: scores_of(metrics, f"{EVALUATOR}_"),
                          options=options, checkpoints=checkpoints, prepared=prepared, base=base,
                          base_fingerprint=base_fingerprint, hyperparameters=hyperparameters, started=started,
                          started_at=started_at)
