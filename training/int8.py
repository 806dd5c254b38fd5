"""``kb train quantize-reader``: calibrate a reader's int8 graph on training data and score it against float32 on
validation data (``answering.int8``); ``kb train reader`` does the same for the model it has just trained.

Calibration and validation questions never overlap: validation is the files given with ``--validation``, else
articles held out from the data as ``kb train reader`` holds them out; with no data given, a reader trained here
reuses its card's training files and the same split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from answering.int8 import CALIBRATION_WINDOWS, calibrate_reader
from answering.squad_eval import SquadSet
from kb.cards import DataFile, TrainingCard, read_card, unfinished_training
from kb.config import Settings
from kb.errors import InvalidRequestError
from kb.optional import installed
from training.errors import TrainingDataError
from training.options import TrainOptions
from training.squad_data import load_squad_files, split_by_title

log = logging.getLogger(__name__)
PACKAGES = ("onnx", "openvino", "nncf")  # to export, quantise and run the graph


def quantize_reader(model: Path, data: Sequence[Path] = (), validation: Sequence[Path] = (), *,
                    windows: int = CALIBRATION_WINDOWS, float_operations: Sequence[str] = (),
                    max_f1_drop: float | None = None) -> TrainingCard:
    """Calibrate the int8 graph of the reader folder ``model`` on windows of ``data`` (default: its card's
    training files), the graph operations matching ``float_operations`` left in float (and with ``max_f1_drop``
    those whose int8 costs most, until F1 on training questions is within that of float32's), and record its
    validation EM/F1 and the data-free int8 export's beside float32's on the card, which is returned."""
    folder = model.expanduser()
    if not folder.is_dir():
        raise InvalidRequestError(f"{model} is not a folder: give the folder of a reader, where its int8 graph is kept")
    if unfinished_training(folder):  # the reader's loader would say to set KB_READER_MODEL, which this never reads
        raise InvalidRequestError(f"{model} is an unfinished `kb train` run (its checkpoints are there, its training "
                                  "card is not): finish it by running the same command with --resume first")
    card = read_card(folder)
    files = list(data) or ([Path(file.path) for file in card.data] if card else [])
    if not data and not validation and card:
        validation = [Path(file.path) for file in card.validation_data]  # the files it was validated on, if any
    if not files:
        raise TrainingDataError(f"{model} has no training card naming its data: give SQuAD files to calibrate on")
    squad, read = load_squad_files(files)
    if not data and card:
        _check_unchanged(card.data, read)
    hyperparameters = card.hyperparameters if card else {}
    if not validation and hyperparameters.get("no_validation"):
        raise TrainingDataError(f"{model} was trained on every question of its data (no validation): give "
                                "--validation files it never saw to score the int8 graph on")
    if validation:
        held_out, _ = load_squad_files(validation)
        calibration, described = squad, "given: " + ", ".join(map(str, validation))
    else:
        fraction = TrainOptions.model_fields["validation_fraction"].default
        calibration, held_out, described = split_by_title(squad, fraction, hyperparameters.get("seed", 0))
    overrides = {name: hyperparameters[key] for name, key in (("reader_max_seq_length", "max_seq_length"),
                                                                ("reader_stride", "stride")) if key in hyperparameters}
    settings = Settings(reader_model=str(folder), device="cpu", **overrides)
    return calibrate_reader(settings, calibration, held_out, calibrated_on=_described(calibration, files),
                            validated_on=described, windows=windows, ignored=float_operations,
                            max_f1_drop=max_f1_drop)


def _check_unchanged(recorded: Sequence[DataFile], read: Sequence[DataFile]) -> None:
    """The card's training files as they were when the reader trained: changed, the split taken from them again
    would no longer be the one the reader was validated on (its "held out" questions may have been trained on)."""
    for was, now in zip(recorded, read, strict=True):
        if was.sha256 != now.sha256:
            raise TrainingDataError(f"{was.path} changed since the reader was trained (its SHA-256 is not the card's): "
                                    "its validation split would not be held out; give the SQuAD files to calibrate "
                                    "on, and --validation files the reader never saw")


def quantize_trained_reader(settings: Settings, train: SquadSet, validation: SquadSet, files: Sequence[Path],
                            validated_on: str) -> TrainingCard | None:
    """After ``kb train reader``: the new reader's card with its int8 forms scored, or None (with the reason in the
    log) where the packages are missing or calibration fails: the trained model is saved already and stays
    usable."""
    missing = [package for package in PACKAGES if not installed(package)]
    if missing:
        log.info("no calibrated int8 graph: %s not installed (pip install 'multimodal-kb[onnx,openvino]')",
                 " and ".join(missing))
        return None
    try:
        return calibrate_reader(settings, train, validation, calibrated_on=_described(train, files),
                                validated_on=validated_on)
    except Exception as error:  # noqa: BLE001 - NNCF and OpenVINO raise many types; the reader is saved already
        log.warning("the reader is trained, but calibrating its int8 graph failed (%s: %s); retry with "
                    "kb train quantize-reader %s", type(error).__name__, error, settings.reader.model)
        return None


def _described(squad: SquadSet, files: Sequence[Path]) -> str:
    return f"{len(squad.questions)} training questions of {', '.join(str(file) for file in files)}"
