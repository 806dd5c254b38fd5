"""Trainer callbacks shared by every model kind: a time budget with regular checkpoints, and a progress bar."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


class TimeBudget(TrainerCallback):
    """Save a checkpoint at least every ``checkpoint_seconds``, so a killed run resumes close to where it was;
    evaluate and save at the end of every epoch and when training ends (the Trainer ends an epoch then too), so the
    best checkpoint is known (unless ``evaluate`` is off: a run with no validation); stop after ``max_seconds``.
    ``stepped`` says whether a training step began (a resumed run reads its checkpoint back before its first)."""

    def __init__(self, max_seconds: float | None, checkpoint_seconds: float, *, evaluate: bool = True) -> None:
        self.max_seconds = max_seconds
        self.checkpoint_seconds = checkpoint_seconds
        self.evaluate = evaluate
        self.stopped_early = False
        self._started = self._saved = time.monotonic()
        self._evaluated_step = self._saved_step = -1
        self.stepped = False

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      **kwargs: Any) -> None:
        self.stepped = True

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self._started = self._saved = time.monotonic()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        now = time.monotonic()
        if self.max_seconds is not None and now - self._started >= self.max_seconds and \
                state.global_step < state.max_steps:
            self.stopped_early = True
            control.should_training_stop = True
        if now - self._saved >= self.checkpoint_seconds:
            control.should_save = True

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        # the Trainer evaluates and saves at its last step itself: a second validation pass would only cost time
        control.should_evaluate = self.evaluate and state.global_step != self._evaluated_step
        control.should_save = state.global_step != self._saved_step

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        self._evaluated_step = state.global_step

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._saved = time.monotonic()
        self._saved_step = state.global_step


def progress_bar(total: int, description: str, unit: str, initial: int = 0) -> tqdm:
    """A bar on stderr with tqdm's ETA: on a terminal it redraws every second, in a log file every 30 seconds."""
    return tqdm(total=total, initial=initial, unit=unit, file=sys.stderr, dynamic_ncols=True,
                mininterval=1.0 if sys.stderr.isatty() else 30.0, desc=description)


class ProgressBar(TrainerCallback):
    """One bar over the training steps with the running loss and tqdm's ETA; evaluation results as lines. On a
    terminal it redraws every second; in a log file it writes a line every 30 seconds."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self.bar = progress_bar(state.max_steps, "training", "step", initial=state.global_step)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        if self.bar is not None and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.3f}", epoch=f"{state.epoch or 0:.2f}", refresh=False)
        scores = {name[5:]: value for name, value in logs.items()
                  if name.startswith("eval_") and isinstance(value, float) and "runtime" not in name
                  and "per_second" not in name and "preparation_time" not in name}
        if scores:
            line = ", ".join(f"{name} {value:.4g}" for name, value in sorted(scores.items()))
            (self.bar.write if self.bar is not None else print)(f"step {state.global_step}: validation {line}",
                                                                 file=sys.stderr)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
