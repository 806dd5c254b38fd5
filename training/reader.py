"""``kb train reader``: fine-tune a transformers encoder into the extractive reader, on SQuAD v1.1/v2.0 files.

Training uses the reader's own windows (:mod:`training.reader_features`), transformers' ``Trainer`` (AdamW, linear
decay after a warm-up), evaluation with the reader's own decoding (shared normalisation over windows, the same
answer length limit) on a validation split held out by article, and keeps the checkpoint with the best validation
F1. Afterwards the no-answer threshold is tuned on the validation questions read as ``ask`` reads them (from a
knowledge base of their paragraphs: ``answering.squad_eval.tune_as_asked``) and stored in the model's training
card, where ``ask`` finds it; last, an int8 graph is calibrated on windows of the training
questions and scored with the data-free int8 export against float32 on the validation questions (``training.int8``),
recorded on the card too.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from answering.loading import model_inputs
from answering.spans import best_spans
from answering.squad_eval import SquadSet, squad_scores, tune_as_asked, tuning_description
from answering.threshold import DEFAULT_UNANSWERABLE_SHARE
from kb.atomic import write_atomic
from kb.cards import DataFile, TrainingCard, finishing
from kb.config import Settings
from kb.encoders.fingerprint import folder_fingerprint
from kb.encoders.sentence_transformer import resolve_model_folder
from training.cloze import cloze_questions, kb_passages
from training.distillation import Distillation, DistillationCollator, add_teacher_logits, check_teachers
from training.errors import TrainingDataError
from training.int8 import quantize_trained_reader
from training.options import NO_VALIDATION, TrainOptions
from training.output import finish_output, prepare_output, publish_model, read_json
from training.overlap import PassageOverlap
from training.reader_features import ReaderFeatures, reader_features
from training.runner import (
    best_evaluation,
    check_sequence_length,
    finish_card,
    library_versions,
    run_trainer,
    start_run,
    trainer_arguments,
    utc_now,
)
from training.squad_data import joined, load_squad_files, split_by_title, squad_sha256

DEFAULT_BASE = "sentence-transformers/all-MiniLM-L6-v2"  # the packaged MiniLM: a BERT whose QA head starts random
DEFAULTS = {"epochs": 2.0, "batch_size": 16, "learning_rate": 1e-4}


def decode(data: ReaderFeatures, start_logits: np.ndarray, end_logits: np.ndarray,
           max_answer_tokens: int) -> dict[str, str]:
    """Each question's prediction as the reader makes it: the most probable span over all its windows under
    shared normalisation, or ``""`` when "no answer" is more probable."""
    predictions = {}
    for number, question in enumerate(data.questions):
        windows, first = data.windows[number], data.first_feature[number]
        lengths = [len(feature["input_ids"]) for feature in windows.features]
        starts = [start_logits[first + w, :n].astype(np.float64) for w, n in enumerate(lengths)]
        ends = [end_logits[first + w, :n].astype(np.float64) for w, n in enumerate(lengths)]
        spans, null = best_spans(starts, ends, windows.context, windows.owned, max_answer_tokens=max_answer_tokens,
                                 top=1)
        text = ""
        if spans and spans[0].probability > null:
            offsets = windows.offsets[spans[0].window]
            text = data.contexts[number][offsets[spans[0].start][0] : offsets[spans[0].end][1]]
        predictions[question.id] = text
    return predictions


def _metrics(squad: SquadSet, data: ReaderFeatures, max_answer_tokens: int) -> Any:
    """A ``compute_metrics`` for the Trainer: EM/F1 (and HasAns/NoAns) in percent on the validation questions."""
    questions = squad.model_copy(update={"questions": data.questions})

    def compute(prediction: Any) -> dict[str, float]:
        start_logits, end_logits = prediction.predictions[:2]
        scores = squad_scores(questions, decode(data, start_logits, end_logits, max_answer_tokens))
        return {name: float(value) for name, value in scores.items() if isinstance(value, float)}

    return compute


def _validation(train: SquadSet, options: TrainOptions) -> tuple[SquadSet, SquadSet, str, list[DataFile]]:
    """(train, validation, how it was chosen, the validation files' records); with no validation, every question
    trains and the validation set is empty."""
    if not options.use_validation:
        return train, train.model_copy(update={"questions": []}), NO_VALIDATION, []
    if options.validation:
        validation, files = load_squad_files(options.validation)
        return train, validation, "given: " + ", ".join(map(str, options.validation)), files
    return (*split_by_title(train, options.validation_fraction, options.seed), [])


def _kb_cloze(kb_dir: Path | None, seed: int) -> tuple[SquadSet, Counter[str]]:
    """Cloze questions from the passages of the knowledge base at ``kb_dir`` (``--from-kb``)."""
    from kb.knowledge_base import KnowledgeBase

    if kb_dir is None or not (kb_dir / "kb.json").is_file():
        raise TrainingDataError(f"--from-kb: no knowledge base at {kb_dir}; give its folder with --kb")
    with KnowledgeBase.open(kb_dir) as knowledge_base:
        return cloze_questions(kb_passages(knowledge_base.store.documents()), seed=seed)


@dataclass
class ReaderData:
    """What a reader trains and is validated on, and the records of where it came from."""

    train: SquadSet
    validation: SquadSet
    split: str  # how the validation questions were chosen
    files: list[DataFile]
    validation_files: list[DataFile]
    cloze: SquadSet | None  # the knowledge base's cloze questions (``--from-kb``), all in ``train``
    cloze_skipped: Counter[str] = field(default_factory=Counter)  # passages that gave no question or were left out


def _reader_data(data: Sequence[Path], options: TrainOptions, kb_dir: Path | None, from_kb: bool) -> ReaderData:
    """The SQuAD files' questions plus, with ``from_kb``, the knowledge base's cloze questions. These all go to
    training when there are real questions to validate on: the checkpoint kept is the one that answers people
    best."""
    if not data and not from_kb:
        raise TrainingDataError("no training data: give SQuAD files, or --from-kb to make questions from --kb")
    squad, files = load_squad_files(data) if data else (joined([]), [])
    if not from_kb:
        train, validation, split, validation_files = _validation(squad, options)
        return ReaderData(train, validation, split, files, validation_files, None)
    cloze, skipped = _kb_cloze(kb_dir, options.seed)
    if not cloze.questions:
        raise TrainingDataError(f"--from-kb: the knowledge base at {kb_dir} has no passage with a date, number, "
                                "name or title to ask about")
    if squad.questions or options.validation:
        train, validation, split, validation_files = _validation(squad, options)
        cloze, repeated = _not_in_validation(cloze, validation)
        skipped += Counter({"passage shares text with a validation paragraph": repeated} if repeated else {})
        return ReaderData(joined([train, cloze]), validation, split, files, validation_files, cloze, skipped)
    train, validation, split, validation_files = _validation(cloze, options)
    return ReaderData(train, validation, split, files, validation_files, cloze, skipped)


def _not_in_validation(cloze: SquadSet, validation: SquadSet) -> tuple[SquadSet, int]:
    """``cloze`` without the questions whose passage shares text with a validation paragraph (a knowledge base often
    holds the documents its questions were written on), and how many were dropped."""
    overlaps = PassageOverlap(validation.paragraphs[question.paragraph][1] for question in validation.questions)
    kept = [question for question in cloze.questions if not overlaps(cloze.paragraphs[question.paragraph][1])]
    return cloze.model_copy(update={"questions": kept}), len(cloze.questions) - len(kept)


def _windows(max_length: int | None, stride: int | None, max_answer_tokens: int | None) -> tuple[int, int, int]:
    """Window length, stride and answer length: the reader's settings unless given (a shorter window scales the
    stride with it); checked the way the reader checks them."""
    defaults = Settings()
    max_length = max_length or defaults.reader.max_seq_length
    if stride is None:
        stride = round(defaults.reader.stride * max_length / defaults.reader.max_seq_length)
    max_answer_tokens = max_answer_tokens or defaults.reader.max_answer_tokens
    Settings(reader_max_seq_length=max_length, reader_stride=stride, reader_max_answer_tokens=max_answer_tokens)
    return max_length, stride, max_answer_tokens


def train_reader(data: Sequence[Path], options: TrainOptions, *, kb_dir: Path | None = None, from_kb: bool = False,
                 stride: int | None = None, max_answer_tokens: int | None = None,
                 unanswerable_share: float | None = None, distillation: Distillation | None = None) -> TrainingCard:
    """Fine-tune ``options.base_model`` (default: the packaged all-MiniLM-L6-v2) into a question-answering model on
    the SQuAD files ``data`` and, with ``from_kb``, cloze questions made from the passages of the knowledge base at
    ``kb_dir``; writes the model, its fast tokenizer and ``training.json`` to ``options.out``.

    Windows default to the reader's (``reader_max_seq_length`` 384, ``reader_stride`` 128); a shorter
    ``max_seq_length`` scales the stride with it. ``unanswerable_share`` (default 0.2) is what the no-answer
    threshold is tuned for, on validation questions: refused with none. With ``distillation``, the student also
    learns the teachers' start and end distributions on every training window (:mod:`training.distillation`).
    """
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, DataCollatorWithPadding, TrainingArguments

    from training.qa_trainer import QuestionAnsweringTrainer

    if unanswerable_share is not None and not options.use_validation:
        raise TrainingDataError("--unanswerable-share is what the no-answer threshold is tuned for on validation "
                                "questions; with no validation nothing is tuned (use kb eval squad --tune-threshold)")
    unanswerable_share = DEFAULT_UNANSWERABLE_SHARE if unanswerable_share is None else unanswerable_share
    started = time.monotonic()
    base = options.base_model or DEFAULT_BASE
    base_folder = resolve_model_folder(base, "base model", "--base-model")
    teachers = distillation.teachers if distillation else []
    start_run(options, data=[Path(path) for path in data], models=[base_folder, *teachers], kb_dir=kb_dir)
    base_fingerprint = folder_fingerprint(base_folder)  # of the model read, before anything is written
    max_length, stride, max_answer_tokens = _windows(options.max_seq_length, stride, max_answer_tokens)
    check_sequence_length(max_length, base_folder)
    epochs = options.epochs or DEFAULTS["epochs"]
    batch_size = options.batch_size or DEFAULTS["batch_size"]
    learning_rate = options.learning_rate or DEFAULTS["learning_rate"]

    started_at = utc_now()
    reader_data = _reader_data([Path(path) for path in data], options, kb_dir, from_kb)
    train_set, validation_set, split = reader_data.train, reader_data.validation, reader_data.split
    files = reader_data.files
    tokenizer = AutoTokenizer.from_pretrained(str(base_folder), use_fast=True)
    if not getattr(tokenizer, "is_fast", False):
        raise TrainingDataError(f"{base} has no fast tokenizer; the reader needs one for character offsets")
    model = AutoModelForQuestionAnswering.from_pretrained(str(base_folder))
    inputs = set(model_inputs(model, tokenizer))
    teacher_inputs = check_teachers(distillation, tokenizer, max_length) if distillation else set()
    window = {"max_length": max_length, "stride": stride}
    train_features = reader_features(train_set, tokenizer, for_training=True, input_names=inputs | teacher_inputs,
                                     **window)
    validation_features = reader_features(validation_set, tokenizer, for_training=False, input_names=inputs, **window)
    if not train_features.questions:
        reasons = ", ".join(f"{count} {reason}" for reason, count in train_features.skipped.items()) or "none given"
        raise TrainingDataError(f"no usable training question in {', '.join(map(str, data)) or kb_dir} ({reasons})")
    if options.use_validation and not validation_features.questions:
        raise TrainingDataError("no usable question in the --validation files" if options.validation else
                                "no validation question: give --validation FILE, or more than one article")
    if options.use_validation and all(q.answers for q in validation_features.questions) and \
            len({q.paragraph for q in validation_features.questions}) < 2:  # refused now, not after training
        raise TrainingDataError("the validation questions are all answerable and on one paragraph: the no-answer "
                                "threshold, tuned after training on questions asked elsewhere too, has nothing "
                                "to abstain on; give more validation paragraphs or unanswerable questions")
    if options.use_validation and not any(q.answers for q in validation_features.questions):
        raise TrainingDataError("the validation questions are all unanswerable: the no-answer threshold, tuned after "
                                "training, would always abstain; give validation questions with answers")
    hyperparameters = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                       "max_seq_length": max_length, "stride": stride, "max_answer_tokens": max_answer_tokens,
                       "warmup_ratio": options.warmup_ratio, "weight_decay": options.weight_decay,
                       **options.seeds(), **options.validation_recorded(), "scheduler": "linear"}
    if distillation is not None:
        hyperparameters |= distillation.recorded()
    if reader_data.cloze is not None:
        hyperparameters |= {"from_kb": True, "cloze_questions": len(reader_data.cloze.questions),
                            "cloze_sha256": squad_sha256(reader_data.cloze)}
    checkpoints = prepare_output(options.out, overwrite=options.overwrite, resume=options.resume,
                                 run={"kind": "reader", "base": base, "data": [f.sha256 for f in files],
                                      "validation": split,
                                      "validation_data": [f.sha256 for f in reader_data.validation_files],
                                      **hyperparameters})
    if distillation is not None:  # after a --resume with other teachers is refused: this pass takes minutes
        add_teacher_logits(train_features.features, distillation, tokenizer, max_length=max_length,
                           device=options.device, batch_size=batch_size * 2, checkpoints=checkpoints)
    arguments = TrainingArguments(**trainer_arguments(options, checkpoints, epochs=epochs, batch_size=batch_size,
                                                      learning_rate=learning_rate, metric="f1",
                                                      train_sampling_strategy="group_by_length",
                                                      remove_unused_columns=False))  # the collator picks them
    validating = options.use_validation
    trainer = QuestionAnsweringTrainer(
        model=model, args=arguments, train_dataset=train_features.features,
        eval_dataset=validation_features.features if validating else None,
        processing_class=tokenizer, data_collator=DistillationCollator(DataCollatorWithPadding(tokenizer), inputs),
        compute_metrics=_metrics(validation_set, validation_features, max_answer_tokens) if validating else None,
        distillation=distillation)
    before_file = checkpoints / "before.json"
    recorded = read_json(before_file) if options.use_validation and before_file.is_file() else None
    if not options.use_validation:
        before = {}
    elif isinstance(recorded, dict) and all(isinstance(value, (int, float)) for value in recorded.values()):
        before = recorded  # resumed: measured by the interrupted run (else measured again)
    else:
        before = _scores_of(trainer.evaluate())
        write_atomic(before_file, json.dumps(before).encode("utf-8"))  # whole or absent: --resume reads it
    run = run_trainer(trainer, options, checkpoints)
    after = _scores_of(best_evaluation(trainer.state) or trainer.evaluate()) if options.use_validation else {}
    out = options.out.expanduser()

    def save(folder: Path) -> None:
        trainer.model.save_pretrained(str(folder))  # the best checkpoint's weights, without the trainer's pickles
        tokenizer.save_pretrained(str(folder))

    publish_model(out, save)
    card = TrainingCard(
        kind="reader", base_model=base, base_fingerprint=base_fingerprint, data=files,
        validation_data=reader_data.validation_files, validation_split=split,
        examples=len(train_features.questions), skipped=dict(train_features.skipped + reader_data.cloze_skipped),
        hyperparameters=hyperparameters, started_at=started_at,
        validation_before=before, validation_after=after, libraries=library_versions("accelerate"))
    finish_card(card, trainer, run, started)
    settings = Settings(reader_model=str(out), reader_max_seq_length=max_length, reader_stride=stride,
                        reader_max_answer_tokens=max_answer_tokens, device=options.device)
    if not options.use_validation:  # nothing held out to tune or score on: kb eval squad --tune-threshold does it later
        finish_output(out, card)
        return card
    validated = validation_set.model_copy(update={"questions": validation_features.questions})
    with finishing(out):  # the run reads its own output, as ask will, before its card makes it a model
        card.no_answer_threshold = tune_as_asked(validated, settings, unanswerable_share)
    card.threshold_tuned_on = f"the validation questions ({split}), {tuning_description(unanswerable_share)}"
    finish_output(out, card)
    sources = [*data, *([kb_dir] if from_kb and kb_dir else [])]
    return quantize_trained_reader(settings, train_set, validated, sources, split) or card  # recorded on the card


def _scores_of(metrics: dict[str, float]) -> dict[str, float]:
    """The validation scores of a Trainer evaluation, without the ``eval_`` prefix and timing entries."""
    return {name[5:]: round(value, 3) for name, value in metrics.items()
            if name.startswith("eval_") and not name.endswith(("runtime", "per_second", "preparation_time"))}
