"""The output folder of a training run: never overwritten by accident, resumable after a kill."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kb.atomic import write_atomic
from kb.cards import CARD_FILE, CHECKPOINTS, RUN_FILE, TrainingCard, read_card, write_card
from kb.errors import ModelNotFoundError
from training.errors import OutputExistsError

KEPT_FILE = "kept.json"  # the entries of the output folder that were there before the run: not its own
WRITTEN_FILE = "written.json"  # the entries the run placed (or was about to place) in its output: its own
STAGED = "staged"  # inside the checkpoints: where the model is saved before its entries are recorded and moved


def check_output(out: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse an ``out`` this run may not write, before any data is read: a file; a folder holding anything, unless
    ``resume`` finds an interrupted run there or ``overwrite`` is given; and, even with ``overwrite``, a folder that
    no training run wrote (``--out qa --overwrite`` must not delete the questions in qa/, nor a knowledge base)."""
    out = out.expanduser()
    if (out.exists() or out.is_symlink()) and not out.is_dir():  # a symlink to nothing: not a folder to write
        raise OutputExistsError(f"{out} exists and is not a folder; choose another --out")
    dangling = next((folder for folder in out.parents if folder.is_symlink() and not folder.exists()), None)
    if dangling is not None:  # the run would fail at its first mkdir, after mining
        raise OutputExistsError(f"{dangling}, on the way to {out}, is a symlink to nothing; choose another --out")
    if not out.is_dir() or not any(out.iterdir()) or (resume and (out / CHECKPOINTS / RUN_FILE).is_file()):
        return
    if not overwrite:
        hint = " (it holds no checkpoint to resume from)" if resume else ""
        raise OutputExistsError(f"{out} is not empty{hint}; pass --overwrite to replace it, or --resume to "
                                "continue an interrupted run")
    if run_entries(out) is None:
        raise OutputExistsError(f"{out} holds files that no training run wrote (no training card in {CARD_FILE}, "
                                "no run's checkpoints), or a card too old to list the files its run wrote; "
                                "--overwrite replaces only an earlier training output: choose another --out")


def check_apart(out: Path, inputs: Iterable[tuple[str, Path]]) -> None:
    """Refuse an ``out`` that is, holds or lies inside one of the run's ``inputs`` ((what, path): the base model,
    a data file, the knowledge base), before anything is touched: writing there, or ``--overwrite``, would change
    or delete what the run is about to read."""
    target = out.expanduser().resolve()
    for what, path in inputs:
        source = path.expanduser().resolve()
        if target == source or target.is_relative_to(source) or source.is_relative_to(target):
            raise OutputExistsError(f"--out {out} is, holds or lies inside {what} ({path}); the run reads it: "
                                    "choose another --out")


def _card(out: Path) -> TrainingCard | None:
    """The training card in ``out``, or None when there is none or its ``training.json`` is not one (a user's own
    file of that name)."""
    try:
        return read_card(out)
    except ModelNotFoundError:  # not JSON, not UTF-8, nested too deep, or not a card's fields
        return None


def run_entries(out: Path) -> list[str] | None:
    """The entries of ``out`` that earlier training runs wrote, or None when no run wrote there (or its card is too
    old to say which files are its own): what ``--overwrite`` may remove, and nothing else."""
    card = _card(out)
    if card is not None and card.files is None:
        return None
    entries = [CHECKPOINTS, *_written(out / CHECKPOINTS)] if (out / CHECKPOINTS / RUN_FILE).is_file() else []
    if card is not None:
        entries += [CARD_FILE, *card.files, *([Path(card.int8.graph).parts[0]] if card.int8 else [])]
    return [name for name in dict.fromkeys(entries) if _plain_name(name)] or None


def _plain_name(name: str) -> bool:
    """A name inside the folder itself: a card's list cannot point removal elsewhere."""
    return name not in ("", ".", "..") and Path(name).name == name


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _entries(out: Path) -> set[str]:
    return {path.name for path in out.iterdir()}


def _names(path: Path) -> list[str] | None:
    """The names listed in a run's JSON record (``kept.json``, ``written.json``), or None when there is no such
    file (checkpoints of an older version) or it is not a list (a FIFO is not read: it would block)."""
    names = read_json(path) if path.is_file() else None
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else None


def _written(checkpoints: Path) -> list[str]:
    """The entries an unfinished run recorded as its own (none for a run of a version that did not record them)."""
    return _names(checkpoints / WRITTEN_FILE) or []


def publish_model(out: Path, save: Callable[[Path], None]) -> None:
    """Have ``save`` write the model into a staging folder among the checkpoints, record its entries as this run's,
    then move them into ``out`` (replacing entries of those names). A run killed at any point has recorded every
    entry it placed in ``out``, so ``--overwrite`` removes exactly those, and never a file the user added after
    the kill. An entry of the user's, there before the run, is never replaced: the run stops, its model kept
    among the checkpoints for ``--resume`` once the user has moved that entry."""
    checkpoints = out / CHECKPOINTS
    staged = checkpoints / STAGED
    _remove(staged)  # left by a run killed while saving
    staged.mkdir()
    save(staged)
    names = sorted(_entries(staged))
    theirs = set(_names(checkpoints / KEPT_FILE) or []) & _entries(out) - set(_written(checkpoints))
    if clash := theirs & set(names):  # (once this run has replaced an entry, on --resume, it is the run's)
        raise OutputExistsError(f"{out} holds {', '.join(sorted(clash))} of yours, which the trained model would "
                                "replace: move it elsewhere, then run the same command with --resume to finish")
    write_atomic(checkpoints / WRITTEN_FILE, json.dumps(sorted({*_written(checkpoints), *names})).encode("utf-8"))
    for name in names:
        _remove(out / name)  # a folder of that name cannot be replaced in one step; a symlink is replaced, not followed
        shutil.move(staged / name, out / name)  # a rename, or a copy where the checkpoints are another filesystem
    staged.rmdir()


def _remove_run(out: Path, entries: list[str]) -> None:
    """Remove an earlier run's ``entries`` from ``out``, its records last (the card, then the checkpoints' run
    file): a kill midway leaves the rest still recorded as that run's, for the next ``--overwrite``."""
    for name in sorted(entries, key=lambda name: (name == CHECKPOINTS, name == CARD_FILE)):
        if name != CHECKPOINTS:
            _remove(out / name)
        elif (out / name).is_dir() and not (out / name).is_symlink():
            for entry in (out / name).iterdir():
                if entry.name != RUN_FILE:
                    _remove(entry)
            _remove(out / name / RUN_FILE)
            (out / name).rmdir()
        else:
            _remove(out / name)


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
        recorded = read_json(checkpoints / RUN_FILE)
        if not isinstance(recorded, dict):
            raise OutputExistsError(f"{checkpoints / RUN_FILE} is not a run's record (damaged?); pass --overwrite "
                                    "to start again")
        if recorded != json.loads(json.dumps(run, default=str)):
            changed = sorted(key for key in set(recorded) | set(run)
                             if recorded.get(key) != json.loads(json.dumps(run.get(key), default=str)))
            raise OutputExistsError(f"{out} holds an interrupted run with other data or settings ({', '.join(changed)})"
                                    "; resume with the same ones, or pass --overwrite to start again")
        return checkpoints
    if out.is_dir():
        _remove_run(out, run_entries(out) or [])  # only an earlier run's own files: check_output refused the rest
    checkpoints.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all: a run killed (or a disk filled) mid-write must not leave a half file that
    # --resume or the card's file list then cannot read.
    write_atomic(checkpoints / KEPT_FILE, json.dumps(sorted(_entries(out) - {CHECKPOINTS})).encode("utf-8"))
    write_atomic(checkpoints / RUN_FILE, json.dumps(run, default=str, indent=2, sort_keys=True).encode("utf-8"))
    return checkpoints


def last_checkpoint(checkpoints: Path) -> str | None:
    """The newest complete Trainer checkpoint (``checkpoint-<step>`` whose trainer state, written last, is a JSON
    record of its step: one cut short by a kill or a full disk is passed over for the one before), if any."""
    done = [path for path in checkpoints.glob("checkpoint-*")
            if path.name.split("-")[-1].isdigit() and _is_state(read_json(path / "trainer_state.json"))]
    return str(max(done, key=lambda path: int(path.name.split("-")[-1]))) if done else None


def _is_state(state: Any) -> bool:
    """Whether parsed JSON is a trainer state a run can continue from: its step a count."""
    step = state.get("global_step") if isinstance(state, dict) else None
    return isinstance(step, int) and not isinstance(step, bool) and step >= 0


def finish_output(out: Path, card: TrainingCard) -> None:
    """Once the best model is saved in ``out``: write its card, listing the entries this run wrote, and remove the
    checkpoints."""
    checkpoints = out / CHECKPOINTS
    entries, written = _entries(out), _names(checkpoints / WRITTEN_FILE)
    # What the run recorded as it wrote; checkpoints of an older version record nothing: then what was not kept.
    own = entries & set(written) if written is not None else entries - set(_names(checkpoints / KEPT_FILE) or [])
    card.files = sorted(own - {CHECKPOINTS, CARD_FILE})
    write_card(out, card)
    shutil.rmtree(checkpoints, ignore_errors=True)


def read_json(path: Path) -> Any:
    """``path`` parsed as JSON; None when it cannot be read or parsed (cut short, not UTF-8, nested too deep)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
