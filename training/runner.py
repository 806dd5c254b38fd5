"""Running a transformers or sentence-transformers trainer the same way for every model kind: arguments from the
options, a time budget, a progress bar, resume from the last checkpoint, the card's common fields."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from answering.loading import model_positions
from kb.cards import TrainingCard
from kb.errors import InvalidRequestError
from kb.inference.backends import checked_device
from training.callbacks import ProgressBar, TimeBudget
from training.errors import TrainingDataError, unreadable_checkpoint
from training.options import TrainOptions
from training.output import check_apart, check_output, last_checkpoint

NEVER = 10**9  # evaluation and saving are triggered by TimeBudget, not by step counts
LOG_EVERY = 0.04  # the loss is logged 25 times per run (a fraction of the total steps)


def start_run(options: TrainOptions, *, data: Sequence[Path], models: Sequence[Path],
              kb_dir: Path | None = None) -> None:
    """First thing in a run: an ``--out`` it may not write refused before any data is read (see :func:`check_output`),
    as is one that is, holds or lies inside what the run reads (``models``, ``data``, the validation files, the
    knowledge base at ``kb_dir``), and a ``device`` this machine lacks; torch's intra-op threads
    (``options.threads``, else every core this process may run on: torch's default is the physical cores) and every
    random generator seeded, so a run does not depend on what the process did before it."""
    import random

    import numpy
    import torch

    inputs = [*(("the model", Path(model)) for model in models), *(("a data file", Path(file)) for file in data),
              *(("a validation file", Path(file)) for file in options.validation),
              *([("the knowledge base", Path(kb_dir))] if kb_dir is not None else [])]
    check_apart(options.out, inputs)
    _check_distinct(data, options.validation)
    check_output(options.out, overwrite=options.overwrite, resume=options.resume)
    checked_device(options.device, "--device")  # a device this machine lacks fails now, not after hours of training
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, options.threads or cores))
    random.seed(options.seed)
    numpy.random.seed(options.seed)
    torch.manual_seed(options.seed)


def _check_distinct(data: Sequence[Path], validation: Sequence[Path]) -> None:
    """Refuse a data file given twice (its examples would count twice, the split none the wiser) and one given both
    to train on and as ``--validation`` (validation would score the very questions trained on)."""
    seen: dict[Path, Path] = {}
    for path in data:
        key = Path(path).expanduser().resolve()
        if key in seen:
            raise TrainingDataError(f"{path} is given twice as training data (also as {seen[key]}): each example "
                                    "would count twice")
        seen[key] = Path(path)
    for path in validation:
        if Path(path).expanduser().resolve() in seen:
            raise TrainingDataError(f"{path} is given both as training data and as --validation: validation would "
                                    "score the examples trained on")


def check_sequence_length(length: int, model: Path) -> None:
    """Refuse a sequence length (``--max-seq-length``, or the trainer's default) longer than the base ``model`` has
    positions for, before any data is read: it failed at the first step with a tensor size error. RoBERTa-style
    models number positions after the padding index, so two of theirs are not usable."""
    most = model_positions(model)
    if most is not None and length > most:
        raise InvalidRequestError(f"a sequence length of {length} tokens (--max-seq-length) is longer than the base "
                                  f"model {model} reads ({most} tokens); give at most {most}")


def trainer_arguments(options: TrainOptions, checkpoints: Path, *, epochs: float, batch_size: int,
                      learning_rate: float, metric: str, greater_is_better: bool = True,
                      **extra: Any) -> dict[str, Any]:
    """Keyword arguments for ``TrainingArguments`` (or sentence-transformers' subclasses): linear decay after a
    warm-up, evaluation and checkpoints when :class:`TimeBudget` asks, the best checkpoint loaded at the end (with
    no validation: no evaluation, the last step kept)."""
    evaluation = dict(eval_strategy="steps", eval_steps=NEVER, load_best_model_at_end=True,
                      metric_for_best_model=metric, greater_is_better=greater_is_better)
    evaluation = evaluation if options.use_validation else {}
    return dict(
        output_dir=str(checkpoints), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size * 2, learning_rate=learning_rate, warmup_steps=options.warmup_ratio,
        weight_decay=options.weight_decay, lr_scheduler_type="linear", **evaluation,
        save_strategy="steps", save_steps=NEVER, save_total_limit=2, logging_steps=LOG_EVERY, report_to="none",
        disable_tqdm=True, seed=options.order_seed, data_seed=options.order_seed, dataloader_num_workers=0,
        dataloader_pin_memory=False, use_cpu=options.device == "cpu", **extra)


def run_trainer(trainer: Any, options: TrainOptions, checkpoints: Path) -> tuple[TimeBudget, str | None]:
    """Train with the shared callbacks, from the last checkpoint when resuming; returns the budget (did it stop
    the run early?) and the checkpoint resumed from."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    budget = TimeBudget(options.max_seconds, options.checkpoint_minutes * 60, evaluate=options.use_validation)
    trainer.add_callback(budget)
    trainer.add_callback(ProgressBar())
    resume_from = last_checkpoint(checkpoints) if options.resume else None
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    except Exception as error:
        if resume_from is None or budget.stepped:  # a failure of the training, not of reading the checkpoint back
            raise
        raise unreadable_checkpoint(f"the checkpoint {resume_from}", error) from error
    return budget, Path(resume_from).name if resume_from else None


def best_evaluation(state: Any) -> dict[str, float] | None:
    """The logged evaluation of the checkpoint that was kept (the model now loaded), so it need not run again."""
    found = [entry for entry in state.log_history
             if entry.get("step") == state.best_global_step and any(name.startswith("eval_") for name in entry)]
    return found[-1] if found and state.best_global_step else None


def library_versions(*names: str) -> dict[str, str]:
    found = {}
    for name in ("torch", "transformers", *names):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def finish_card(card: TrainingCard, trainer: Any, run: tuple[TimeBudget, str | None], started: float) -> TrainingCard:
    """Fill the card's run facts from the trainer's final state."""
    budget, card.resumed_from = run
    state = trainer.state
    card.training_loss = [(entry["step"], round(entry["loss"], 4)) for entry in state.log_history if "loss" in entry]
    card.finished_at = datetime.now(timezone.utc).replace(tzinfo=None)
    card.seconds = round(time.monotonic() - started, 1)
    card.steps, card.epochs = state.global_step, round(state.epoch or 0.0, 3)
    card.stopped_early = budget.stopped_early
    card.device = str(trainer.args.device)
    card.best_checkpoint = Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None
    return card


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
