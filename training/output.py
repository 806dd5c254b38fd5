"""The output folder of a training run: never overwritten by accident, resumable after a kill."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kb.cards import CARD_FILE
from training.errors import OutputExistsError

CHECKPOINTS = "checkpoints"
RUN_FILE = "run.json"  # what the interrupted run was training on, so --resume cannot mix two runs


def check_output(out: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse an ``out`` this run may not write, before any data is read: a file; a folder holding anything, unless
    ``resume`` finds an interrupted run there or ``overwrite`` is given; and, even with ``overwrite``, a folder that
    no training run wrote (``--out qa --overwrite`` must not delete the questions in qa/, nor a knowledge base)."""
    out = out.expanduser()
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder; choose another --out")
    if not out.is_dir() or not any(out.iterdir()) or (resume and (out / CHECKPOINTS / RUN_FILE).is_file()):
        return
    if not overwrite:
        hint = " (it holds no checkpoint to resume from)" if resume else ""
        raise OutputExistsError(f"{out} is not empty{hint}; pass --overwrite to replace it, or --resume to "
                                "continue an interrupted run")
    if not (out / CARD_FILE).is_file() and not (out / CHECKPOINTS / RUN_FILE).is_file():
        raise OutputExistsError(f"{out} holds files that no training run wrote (no {CARD_FILE}); --overwrite "
                                "replaces only an earlier training output: choose another --out")


def prepare_output(out: Path, *, overwrite: bool, resume: bool, run: dict[str, Any]) -> Path:
    """The checkpoint folder inside ``out``, ready for this run.

    A folder holding anything is refused (see :func:`check_output`) unless ``overwrite`` (an earlier training
    output is removed) or ``resume`` (it must hold the checkpoints of an interrupted run on the same data and
    settings).
    """
    out = out.expanduser()
    check_output(out, overwrite=overwrite, resume=resume)
    checkpoints = out / CHECKPOINTS
    if resume and (checkpoints / RUN_FILE).is_file():
        recorded = json.loads((checkpoints / RUN_FILE).read_text(encoding="utf-8"))
        if recorded != json.loads(json.dumps(run, default=str)):
            changed = sorted(key for key in set(recorded) | set(run)
                             if recorded.get(key) != json.loads(json.dumps(run.get(key), default=str)))
            raise OutputExistsError(f"{out} holds an interrupted run with other data or settings ({', '.join(changed)})"
                                    "; resume with the same ones, or pass --overwrite to start again")
        return checkpoints
    if out.is_dir() and any(out.iterdir()):
        shutil.rmtree(out)
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / RUN_FILE).write_text(json.dumps(run, default=str, indent=2, sort_keys=True), encoding="utf-8")
    return checkpoints


def last_checkpoint(checkpoints: Path) -> str | None:
    """The newest complete Trainer checkpoint (``checkpoint-<step>`` with its trainer state), if any."""
    done = [path for path in checkpoints.glob("checkpoint-*")
            if path.name.split("-")[-1].isdigit() and (path / "trainer_state.json").is_file()]
    return str(max(done, key=lambda path: int(path.name.split("-")[-1]))) if done else None


def finish_output(checkpoints: Path) -> None:
    """Remove the checkpoints once the best model is saved beside them."""
    shutil.rmtree(checkpoints, ignore_errors=True)
