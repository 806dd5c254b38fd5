"""``kb train reranker``: a cross-encoder that scores (question, passage) together, for the rerank stage.

sentence-transformers' ``CrossEncoderTrainer`` with binary cross-entropy over each question's gold passage
(label 1) and its hard negatives mined from the knowledge base (label 0, weighted so both sides count alike);
validation with the library's reranking evaluator (nDCG@10 over the gold passage and the mined negatives).
Default start: the packaged all-MiniLM-L6-v2 (a BERT; its scoring head starts random). Use it with the
``reranker_model`` setting (``KB_RERANKER_MODEL=DIR``).
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
from training.negatives import checked_negatives
from training.options import TrainOptions
from training.output import prepare_output
from training.pair_data import cut_to_model, prepare_pairs, train_and_save
from training.pairs import Pair
from training.retriever import scores_of
from training.runner import check_sequence_length, start_run, trainer_arguments, utc_now

DEFAULTS = {"epochs": 1.0, "batch_size": 16, "learning_rate": 5e-5, "max_seq_length": 256}
EVALUATOR = "validation"
METRIC = f"eval_{EVALUATOR}_ndcg@10"


def labelled_rows(pairs: Sequence[Pair]) -> dict[str, list[Any]]:
    """(query, passage, label) rows: each gold passage with label 1, each mined negative with label 0."""
    rows: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
    for pair in pairs:
        for passage, label in [(pair.positive, 1.0)] + [(negative, 0.0) for negative in pair.negatives]:
            rows["query"].append(pair.query)
            rows["passage"].append(passage)
            rows["label"].append(label)
    return rows


def reranking_evaluator(validation: Sequence[Pair]) -> Any:
    """The library's reranking evaluator over the validation questions that have a mined negative (a question
    alone with its gold passage has nothing to rank, and the library refuses it)."""
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    # The gold passage goes last: a model that cannot tell them apart must not win ties by position.
    samples = [{"query": p.query, "positive": [p.positive], "documents": [*p.negatives, p.positive]}
               for p in validation if p.negatives]
    if not samples:
        raise TrainingDataError("no validation question has a negative passage to rank against its gold one: give "
                                "more passages (a knowledge base with --kb) or a --validation file with negatives")
    return CrossEncoderRerankingEvaluator(samples, at_k=10, name=EVALUATOR, write_csv=False, batch_size=32)


def train_reranker(data: Sequence[Path], options: TrainOptions, *, kb_dir: Path | None = None,
                   from_kb: bool = False, hard_negatives: int = 3, mining_model: str | None = None) -> TrainingCard:
    """Train a cross-encoder from ``options.base_model`` (default: the packaged all-MiniLM-L6-v2) on ``data`` and,
    with ``from_kb``, weak pairs from the knowledge base at ``kb_dir``; write it and ``training.json`` to
    ``options.out``. Without a knowledge base, negatives are mined with the bi-encoder ``mining_model`` (default: the
    packaged all-MiniLM-L6-v2): a cross-encoder base cannot embed passages."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    started, started_at = time.monotonic(), utc_now()
    base = options.base_model or DEFAULT_TEXT_MODEL
    base_folder = resolve_model_folder(base, "base model", "--base-model")
    mining_folder = resolve_model_folder(mining_model or DEFAULT_TEXT_MODEL, "mining model", "--mining-model")
    checked_negatives(hard_negatives, least=1)
    start_run(options, data=data, models=[base_folder, mining_folder], kb_dir=kb_dir)  # before mining: it encodes
    check_sequence_length(options.max_seq_length or DEFAULTS["max_seq_length"], base_folder)
    base_fingerprint = folder_fingerprint(base_folder)
    prepared = prepare_pairs(data, options, text_model=str(mining_folder), kb_dir=kb_dir, from_kb=from_kb,
                             negatives=hard_negatives)
    epochs = options.epochs or DEFAULTS["epochs"]
    batch_size = options.batch_size or DEFAULTS["batch_size"]
    learning_rate = options.learning_rate or DEFAULTS["learning_rate"]
    max_length = options.max_seq_length or DEFAULTS["max_seq_length"]
    positives, negatives = len(prepared.train), sum(len(pair.negatives) for pair in prepared.train)
    if not negatives:
        raise TrainingDataError("no negative passage was found for any training question (every pair has the same "
                                "passage?): a cross-encoder learns nothing from positives alone; give more passages")
    hyperparameters = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                       "hard_negatives": hard_negatives, "loss": "BinaryCrossEntropyLoss",
                       "max_seq_length": max_length, "warmup_ratio": options.warmup_ratio,
                       "weight_decay": options.weight_decay, **options.seeds(), **options.validation_recorded(),
                       "from_kb": from_kb}
    checkpoints = prepare_output(options.out, overwrite=options.overwrite, resume=options.resume,
                                 run={"kind": "reranker", "base": base, "data": [f.sha256 for f in prepared.files],
                                      "pairs": prepared.sha256(), **hyperparameters})
    model = CrossEncoder(str(base_folder), num_labels=1, max_length=max_length, device=options.device)
    cut_to_model(prepared.train + prepared.validation, model.tokenizer, 2 * max_length)  # after the run's hash
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(negatives / positives))
    evaluator = reranking_evaluator(prepared.validation) if options.use_validation else None
    arguments = CrossEncoderTrainingArguments(**trainer_arguments(options, checkpoints, epochs=epochs,
                                                                  batch_size=batch_size, learning_rate=learning_rate,
                                                                  metric=METRIC))
    trainer = CrossEncoderTrainer(model=model, args=arguments, loss=loss, evaluator=evaluator,
                                  train_dataset=Dataset.from_dict(labelled_rows(prepared.train)))
    return train_and_save("reranker", trainer, evaluator, _scores, options=options,
                          checkpoints=checkpoints, prepared=prepared, base=base, base_fingerprint=base_fingerprint,
                          hyperparameters=hyperparameters, started=started, started_at=started_at)


def _scores(metrics: dict[str, float]) -> dict[str, float]:
    """The reranker's own scores (the evaluator also reports the candidates' given order as ``base_*``)."""
    return {name: value for name, value in scores_of(metrics, f"{EVALUATOR}_").items() if not name.startswith("base")}
