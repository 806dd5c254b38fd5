"""Distillation for ``kb train reader --teacher``: trained readers' start and end logits on every training window
become soft targets the student learns beside the gold span (Hinton et al. 2015), so a small reader learns what a
larger reader, or several averaged, know beyond the one gold span each question has.

The teachers read the student's very windows (token ids and all), so they must share its vocabulary: a BERT-base
uncased reader can teach the packaged MiniLM, an MPNet or RoBERTa reader cannot.
"""

from __future__ import annotations

import hashlib
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from answering.loading import load_question_answering, model_inputs, model_positions
from kb.atomic import write_atomic
from kb.cards import refuse_unfinished
from kb.errors import InvalidRequestError, ModelNotFoundError
from training.callbacks import progress_bar
from training.options import Distillation

PADDING = -1e4  # the logit of a padding position in a teacher's target: no probability, and no NaN in the loss
TEACHER_KEYS = ("teacher_start", "teacher_end")
TEACHERS_FILE = "teachers.npz"  # in the run's checkpoints: what the teachers read, for --resume to read back


def _teacher(path: Path, tokenizer: Any, max_length: int, device: str | None) -> tuple[Any, Any]:
    """The teacher at ``path`` loaded as ``ask`` loads a reader, refused when it is no reader or cannot read the
    student's windows: another vocabulary, or fewer positions than a window holds."""
    path = path.expanduser()
    if not path.is_dir():
        raise InvalidRequestError(f"--teacher {path}: no such folder (give a trained reader's folder)")
    most = model_positions(path)
    if most is not None and most < max_length:
        raise InvalidRequestError(f"--teacher {path} reads at most {most} tokens, fewer than a window's {max_length} "
                                  "(--max-seq-length)")
    refuse_unfinished(path, "--teacher", "--teacher")
    try:
        model, teacher_tokenizer = load_question_answering(str(path), device=device)
    except ModelNotFoundError as error:  # not a reader, or a broken one: said as for ask's reader, named here
        raise InvalidRequestError(f"--teacher {path}: {error}") from error
    if teacher_tokenizer.get_vocab() != tokenizer.get_vocab() or any(
            getattr(teacher_tokenizer, name) != getattr(tokenizer, name) for name in ("cls_token", "sep_token")):
        raise InvalidRequestError(f"--teacher {path} does not share the student's vocabulary: a teacher reads the "
                                  "student's windows, so it must use the same tokenizer")
    return model, teacher_tokenizer


def check_teachers(distillation: Distillation, tokenizer: Any, max_length: int) -> set[str]:
    """Refuse, before anything is written, a teacher that cannot teach (see :func:`_teacher`); returns the inputs
    the teachers read, for the training windows to hold (a BERT teacher reads the token types a DistilBERT student
    does not)."""
    inputs: set[str] = set()
    for path in distillation.teachers:
        model, teacher_tokenizer = _teacher(path, tokenizer, max_length, "cpu")
        inputs.update(model_inputs(model, teacher_tokenizer))
    return inputs


def add_teacher_logits(features: list[dict[str, Any]], distillation: Distillation, tokenizer: Any, *,
                       max_length: int, device: str | None, batch_size: int, checkpoints: Path) -> None:
    """Give each training window the teachers' start and end logits, averaged (a product of their distributions,
    renormalised; float16, 1.5 KB a window of 384). The windows hold every input a teacher reads
    (:func:`check_teachers`).

    The teachers' pass takes minutes, so its logits are kept in ``checkpoints`` and a ``--resume`` reads them back
    (the run's record already refuses other teachers or data; the windows' digest is checked too)."""
    digest = _windows_digest(features)
    bounds = np.cumsum([len(feature["input_ids"]) for feature in features])
    logits = _kept_logits(checkpoints / TEACHERS_FILE, digest, int(bounds[-1]))
    if logits is None:
        logits = _teachers_read(features, distillation, tokenizer, max_length=max_length, device=device,
                                batch_size=batch_size)
        buffer = io.BytesIO()
        np.savez(buffer, digest=np.array(digest), start=logits[0], end=logits[1])
        write_atomic(checkpoints / TEACHERS_FILE, buffer.getvalue())
    else:
        print(f"the teachers' logits are read back from {checkpoints / TEACHERS_FILE}", file=sys.stderr)
    for side, key in enumerate(TEACHER_KEYS):
        for feature, row in zip(features, np.split(logits[side], bounds[:-1]), strict=True):
            feature[key] = row


def _windows_digest(features: Sequence[dict[str, Any]]) -> str:
    """A digest of every window's tokens, in order: kept logits belong to these windows only."""
    hashed = hashlib.sha256()
    for feature in features:
        tokens = np.asarray(feature["input_ids"], np.int64)
        hashed.update(len(tokens).to_bytes(4, "little"))
        hashed.update(tokens.tobytes())
    return hashed.hexdigest()


def _kept_logits(path: Path, digest: str, tokens: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The logits an interrupted run kept for the windows of ``digest`` (``tokens`` in all); None when there are
    none, or the file is damaged or for other windows (read again, then)."""
    try:
        with np.load(path, allow_pickle=False) as kept:
            if str(kept["digest"]) != digest:
                return None
            start, end = kept["start"], kept["end"]
    except Exception:  # noqa: BLE001 - whatever a damaged file raises (a zip's flipped byte: NotImplementedError)
        return None
    if start.dtype != np.float16 or start.shape != (tokens,) or end.shape != (tokens,):
        return None
    return start, end


def _teachers_read(features: Sequence[dict[str, Any]], distillation: Distillation, tokenizer: Any, *,
                   max_length: int, device: str | None, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The teachers' start and end logits averaged over teachers, every window's after the last's (float16)."""
    import torch
    from transformers import DataCollatorWithPadding

    lengths = [len(feature["input_ids"]) for feature in features]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    sums = np.zeros((2, int(offsets[-1])), np.float32)
    order = sorted(range(len(features)), key=lambda n: lengths[n])  # batches of like lengths
    for number, path in enumerate(distillation.teachers, 1):
        model, teacher_tokenizer = _teacher(path, tokenizer, max_length, device)
        names = model_inputs(model, teacher_tokenizer)
        collate = DataCollatorWithPadding(teacher_tokenizer)
        description = f"teacher {number} of {len(distillation.teachers)} reads the training windows"
        with torch.inference_mode(), progress_bar(len(features), description, "window") as bar:
            for first in range(0, len(order), batch_size):
                batch = order[first : first + batch_size]
                inputs = collate([{name: features[n][name] for name in names} for n in batch])
                output = model(**{name: tensor.to(model.device) for name, tensor in inputs.items()})
                for side, logits in enumerate((output.start_logits, output.end_logits)):
                    for row, n in enumerate(batch):
                        sums[side, offsets[n] : offsets[n + 1]] += logits[row, : lengths[n]].float().cpu().numpy()
                bar.update(len(batch))
    averaged = (sums / len(distillation.teachers)).astype(np.float16)
    return averaged[0], averaged[1]


class DistillationCollator:
    """Pads a batch as ``collate`` does, with only the ``inputs`` the student reads (a window holds the teachers'
    too) and its labels, and each teacher's logits to the batch's length with :data:`PADDING`."""

    def __init__(self, collate: Any, inputs: set[str]) -> None:
        self.collate = collate
        self.kept = inputs | {"start_positions", "end_positions"}

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        teachers = {key: [feature[key] for feature in features] for key in TEACHER_KEYS if key in features[0]}
        batch = self.collate([{k: v for k, v in feature.items() if k in self.kept} for feature in features])
        length = batch["input_ids"].shape[1]
        for key, rows in teachers.items():
            padded = np.full((len(rows), length), PADDING, np.float32)
            for row, logits in enumerate(rows):
                padded[row, : len(logits)] = logits
            batch[key] = torch.from_numpy(padded)
        return batch


def soft_target_loss(start_logits: Any, end_logits: Any, teacher_start: Any, teacher_end: Any,
                     temperature: float) -> Any:
    """The mean over start and end of KL(teacher || student) at ``temperature``, times its square (so that the
    soft loss's gradients keep their size whatever the temperature), over each window's real tokens (the padding
    is where the collator put :data:`PADDING`)."""
    import torch.nn.functional as functional

    padding = teacher_start <= PADDING / 2
    losses = []
    for student, teacher in ((start_logits, teacher_start), (end_logits, teacher_end)):
        student = student.float().masked_fill(padding, PADDING) / temperature
        teacher = teacher.masked_fill(padding, PADDING) / temperature
        losses.append(functional.kl_div(functional.log_softmax(student, dim=-1), functional.log_softmax(teacher, -1),
                                        log_target=True, reduction="batchmean"))
    return (losses[0] + losses[1]) / 2 * temperature**2
