"""The reader's int8 forms: the graph calibrated on windows of real questions cut and tokenised exactly as the
reader cuts them, and the data-free ``openvino-int8`` export; each scored against float32 on validation questions
through the reader itself and recorded on the model's training card, where ``reader_backend=auto`` looks before
choosing one (``answering.backends``)."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from answering.backends import STATIC, GraphLogits, calibrated_graph, exported_graph, model_fingerprint
from answering.loading import load_question_answering, model_inputs
from answering.reader import ExtractiveReader, Readers
from answering.squad_eval import SquadQuestion, SquadSet, at_threshold, read_from_paragraph, read_scored, squad_scores
from answering.squad_metrics import best_scores
from answering.windows import make_windows
from kb.cards import Int8Scores, TrainingCard, read_card, write_card
from kb.config import Settings
from kb.encoders.factory import export_cache
from kb.errors import InvalidRequestError
from kb.inference import AccuracyControl, CompiledGraph, quantize_static
from kb.inference.backends import int8_native
from kb.inference.calibrated import GRAPH, calibration_record

WEIGHTS = "openvino-int8"  # the data-free int8 export: int8 weights, activations quantised as it runs
log = logging.getLogger(__name__)
CALIBRATION_WINDOWS = 300  # NNCF's default subset: ranges settle well before
CONTROL_QUESTIONS = 500  # read again after each operation put back in float: a steadier F1 than 300, still minutes
T = TypeVar("T")


def calibration_windows(tokenizer: Any, squad: SquadSet, settings: Settings, input_names: Sequence[str],
                        count: int = CALIBRATION_WINDOWS) -> list[dict[str, np.ndarray]]:
    """Up to ``count`` windows of ``squad``'s questions against their own paragraphs, cut and tokenised as the
    reader cuts them (its window settings), each a batch of one (no padding); from ``count`` questions evenly
    spaced over the set, their windows then evenly thinned to ``count``, so every article contributes, the last
    ones too."""
    samples: list[dict[str, np.ndarray]] = []
    for question in evenly_spaced(squad.questions, count):
        windows = make_windows(tokenizer, question.question, [squad.paragraphs[question.paragraph][1]],
                               max_length=settings.reader.max_seq_length, stride=settings.reader.stride,
                               max_windows=settings.reader.max_windows, input_names=set(input_names))
        samples += [{name: np.asarray([feature[name]], dtype=np.int64) for name in input_names}
                    for feature in windows.features]
    return evenly_spaced(samples, count)


def evenly_spaced(items: Sequence[T], count: int) -> list[T]:
    """Up to ``count`` of ``items``, evenly spaced over all of them (the middle of each of ``count`` equal parts)."""
    total, taken = len(items), min(count, len(items))
    return [items[int((index + 0.5) * total / taken)] for index in range(taken)]


def control_questions(squad: SquadSet, count: int = CONTROL_QUESTIONS) -> list[SquadQuestion]:
    """Up to ``count`` questions of ``squad`` evenly spaced over it (every article contributes), for accuracy
    control."""
    return evenly_spaced(squad.questions, count)


def accuracy_control(settings: Settings, tokenizer: Any, squad: SquadSet, max_f1_drop: float) -> AccuracyControl:
    """NNCF's accuracy control for the reader of ``settings``: F1 (points) over :func:`control_questions` of
    ``squad``, each read from its paragraph by the reader's own code at its no-answer threshold, on the graph
    being tried."""
    questions = control_questions(squad)
    threshold = ExtractiveReader(settings).threshold

    def f1(compiled: Any, items: Iterable[SquadQuestion]) -> tuple[float, list[float]]:
        reader = ExtractiveReader.on_logits(settings, GraphLogits(CompiledGraph(Path(), STATIC, compiled=compiled)),
                                            tokenizer)
        items = list(items)
        answers = at_threshold({question.id: read_from_paragraph(reader, squad, question) for question in items},
                               threshold)
        values = question_f1(items, answers)
        return (sum(values) / len(values) if values else 0.0), values

    return AccuracyControl(items=questions, metric=f1, max_drop=max_f1_drop,
                           described=f"F1 over {len(questions)} of the calibration questions")


def calibrate_reader(settings: Settings, calibration: SquadSet, validation: SquadSet, *, calibrated_on: str,
                     validated_on: str, windows: int = CALIBRATION_WINDOWS, ignored: Sequence[str] = (),
                     max_f1_drop: float | None = None) -> TrainingCard:
    """Calibrate the int8 graph of the reader folder ``settings.reader.model`` on windows of ``calibration``
    (``kb.inference.quantize_static``; operations matching ``ignored`` left in float; with ``max_f1_drop``, those
    whose int8 costs most put back in float until F1 on calibration questions is within that many points of
    float32's), score it, the data-free ``openvino-int8`` export and float32 on ``validation`` (each question on
    its own paragraph, at the reader's no-answer threshold: questions accuracy control never read), and record
    both int8 forms on the folder's training card (one is started for a reader trained elsewhere), which is
    returned."""
    started = time.monotonic()
    name = settings.reader.model
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise InvalidRequestError(f"a calibrated int8 graph is kept in the reader's folder; {name!r} is not a folder")
    if not calibration.questions or not validation.questions:
        raise InvalidRequestError("calibrating int8 needs calibration and validation questions")
    settings = settings.model_copy(update={"device": "cpu"})
    model, tokenizer = load_question_answering(name, device="cpu")
    source = exported_graph(name, model, tokenizer, "onnx", export_cache(settings))
    samples = calibration_windows(tokenizer, calibration, settings, model_inputs(model, tokenizer), windows)
    if not samples:
        raise InvalidRequestError("no calibration window: ask for at least one (--windows)")
    control = None if max_f1_drop is None else accuracy_control(settings, tokenizer, calibration, max_f1_drop)
    quantize_static(source, folder, samples, fingerprint=model_fingerprint(name),
                    calibrated_on={"questions": calibrated_on, "windows": len(samples),
                                   "max_seq_length": settings.reader.max_seq_length,
                                   "stride": settings.reader.stride},
                    ignored=ignored, control=control)
    calibrated_graph(name)  # it loads, or the error says why, before anything is recorded
    float_answers = _answers(settings.model_copy(update={"reader_backend": "openvino"}), validation)
    card = read_card(folder) or TrainingCard(kind="reader", base_model=name)
    card.int8 = _compared(validation, validated_on, float_answers, _answers(
        settings.model_copy(update={"reader_backend": STATIC}), validation), graph=GRAPH,
        calibrated_on=f"{len(samples)} windows of {calibrated_on}", accuracy_control=_controlled(folder),
        seconds=time.monotonic() - started)
    write_card(folder, card)  # kept whatever befalls the next step
    try:
        card.int8_weights = _weights_scored(settings, validation, validated_on, float_answers)
    except Exception as error:  # noqa: BLE001 - NNCF and OpenVINO raise many types; the graph is recorded already
        log.warning("the data-free int8 export of %s could not be scored (%s: %s)", name, type(error).__name__, error)
    else:
        write_card(folder, card)
    return card


def _weights_scored(settings: Settings, validation: SquadSet, validated_on: str,
                    float_answers: dict[str, str]) -> Int8Scores:
    """The data-free ``openvino-int8`` export of the reader scored against float32's ``float_answers``; whether
    this CPU quantised its activations too (VNNI or AMX) is recorded, since elsewhere it computes otherwise."""
    started = time.monotonic()
    native = int8_native()
    answers = _answers(settings.model_copy(update={"reader_backend": WEIGHTS}), validation)
    activations = "activations per group of 32 values as it runs" if native else \
        "activations in float (this CPU has no VNNI or AMX)"
    return _compared(validation, validated_on, float_answers, answers, graph=WEIGHTS,
                     calibrated_on=f"none: weights per output channel, {activations}", int8_activations=native,
                     seconds=time.monotonic() - started)


def _compared(validation: SquadSet, validated_on: str, float_answers: dict[str, str], int8_answers: dict[str, str], *,
              graph: str, calibrated_on: str, seconds: float, accuracy_control: str | None = None,
              int8_activations: bool = True) -> Int8Scores:
    """An int8 form's answers to ``validation`` against float32's, as the card records them."""
    return Int8Scores(graph=graph, calibrated_on=calibrated_on, validation=validated_on,
                      questions=len(validation.questions), float32=_scores(validation, float_answers),
                      int8=_scores(validation, int8_answers),
                      f1_loss_se=round(paired_standard_error(validation, float_answers, int8_answers), 3),
                      changed=sum(float_answers[key] != int8_answers[key] for key in float_answers),
                      accuracy_control=accuracy_control, int8_activations=int8_activations,
                      seconds=round(seconds, 1))


def _controlled(folder: Path) -> str | None:
    """What accuracy control asked for and reached, from the graph's record, for the card."""
    control = (calibration_record(folder) or {}).get("accuracy_control")
    if not control:
        return None
    return (f"{control['measures']}: float32 {control['float']:.2f}, int8 {control['int8']:.2f} (asked for at most "
            f"{control['max_drop']:g} below)")


def _answers(settings: Settings, validation: SquadSet) -> dict[str, str]:
    """The answers of the reader of ``settings`` to ``validation``, at its no-answer threshold."""
    readers = Readers(settings)
    return at_threshold(read_scored(validation, readers), readers.for_question("").threshold)


def _scores(validation: SquadSet, answers: dict[str, str]) -> dict[str, float]:
    """EM and F1 (percent) of ``answers`` to ``validation``."""
    figures = squad_scores(validation, answers)
    return {"exact": round(figures["exact"], 3), "f1": round(figures["f1"], 3)}


def question_f1(questions: Sequence[SquadQuestion], answers: dict[str, str]) -> list[float]:
    """Each question's F1 (points) for its answer in ``answers``."""
    return [100.0 * best_scores(answers[question.id], question.answers)[1] for question in questions]


def paired_standard_error(squad: SquadSet, first: dict[str, str], second: dict[str, str]) -> float:
    """The standard error (F1 points) of the difference between two readers' F1 on the same questions: the
    per-question differences' standard deviation over the square root of their number (0 for one question)."""
    differences = [one - other for one, other in zip(question_f1(squad.questions, first),
                                                     question_f1(squad.questions, second), strict=True)]
    return statistics.stdev(differences) / len(differences) ** 0.5 if len(differences) > 1 else 0.0
