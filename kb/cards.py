"""Training cards: ``training.json`` beside a trained model says how it was made and how to use it.

``kb train`` writes one into every model folder it produces; the reader reads the calibrated no-answer threshold
from it. The card is plain JSON, readable without this program.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from kb.atomic import write_atomic
from kb.errors import ModelNotFoundError

CARD_FILE = "training.json"
CHECKPOINTS = "checkpoints"  # a training run's checkpoints inside its --out, removed once it has finished
RUN_FILE = "run.json"  # what the interrupted run was training on, so --resume cannot mix two runs
ModelKind = Literal["reader", "retriever", "reranker", "clip"]
_finishing: set[Path] = set()  # output folders this process's own runs read before writing their cards


@contextmanager
def finishing(folder: Path) -> Iterator[None]:
    """While a run reads its own output before its card is written (a reader's threshold is tuned by reading as
    ``ask`` reads), that folder is not refused as unfinished."""
    real = folder.expanduser().resolve()
    _finishing.add(real)
    try:
        yield
    finally:
        _finishing.discard(real)


def unfinished_training(folder: Path) -> bool:
    """Whether ``folder`` is the output of a ``kb train`` run that has not finished (killed, failed, or still
    running): its checkpoints are there and its card is not, which a run writes last. Its weights, if any, may be
    any step's, untuned, or half written. A folder this process's own run is finishing is not."""
    return (folder / CHECKPOINTS / RUN_FILE).is_file() and not (folder / CARD_FILE).is_file() \
        and folder.expanduser().resolve() not in _finishing


def refuse_unfinished(folder: Path, role: str, setting: str) -> None:
    """``ModelNotFoundError`` for a model folder that an unfinished training run is writing."""
    if unfinished_training(folder):
        raise ModelNotFoundError(f"{role} {folder} is an unfinished `kb train` run (its checkpoints are there, its "
                                 f"training card is not): finish it by running the same command with --resume, or "
                                 f"set {setting} to another model")


class DataFile(BaseModel):
    """One training or validation input: where it came from, its hash, and what was used or skipped."""

    path: str
    sha256: str
    examples: int = Field(default=0, description="examples (questions, pairs, images) the file holds")


class Int8Scores(BaseModel):
    """An int8 form of a reader beside its float32 model: validation EM/F1 of both on the same questions through
    the same reader, which ``reader_backend=auto`` reads before choosing it. ``graph``: the calibrated graph's path
    in the model's folder, or the backend that makes it from the model (``openvino-int8``, needing no data)."""

    graph: str
    calibrated_on: str = Field(description="the questions whose windows set the activation ranges, if any did")
    validation: str = Field(description="the questions both were scored on")
    questions: int = 0
    float32: dict[str, float] = Field(default_factory=dict, description="exact and f1, in percent")
    int8: dict[str, float] = Field(default_factory=dict, description="exact and f1, in percent")
    f1_loss_se: float | None = Field(default=None, description=(
        "standard error of the F1 lost: the standard deviation of the per-question F1 differences over the square "
        "root of the questions (about 0.6 points on 1,000 questions here)"))
    changed: int | None = Field(default=None, description="questions whose int8 answer differs from float32's")
    accuracy_control: str | None = Field(default=None, description=(
        "how operations were chosen to stay in float, where they were (``--max-f1-drop``)"))
    int8_activations: bool = Field(default=True, description=(
        "whether the activations were int8 too when scored (the data-free export's are only on CPUs with VNNI or "
        "AMX): a score taken with them in float says nothing of a CPU that quantises them"))
    seconds: float = Field(default=0.0, description="calibrating and scoring both")

    @property
    def f1_loss(self) -> float:
        """Validation F1 points lost to int8 (negative when int8 scored higher)."""
        return self.float32["f1"] - self.int8["f1"]

    @property
    def f1_loss_bound(self) -> float:
        """The F1 lost plus one standard error (where recorded): what ``reader_backend=auto`` holds to its
        tolerance, so that a loss measured small only by chance does not pass."""
        return self.f1_loss + (self.f1_loss_se or 0.0)

    def against_float32(self) -> str:
        """Its validation F1 beside float32's, for the terminal."""
        return (f"validation F1 {self.int8['f1']:.2f} against float32's {self.float32['f1']:.2f} "
                f"({-self.f1_loss:+.2f}" + (f" ± {self.f1_loss_se:.2f}" if self.f1_loss_se is not None else "")
                + (f", {self.changed} of {self.questions} answers changed" if self.changed is not None else "") + ")")


class TrainingCard(BaseModel):
    """How a model was trained and what it scored, before and after."""

    kind: ModelKind
    base_model: str
    base_fingerprint: str | None = None
    data: list[DataFile] = Field(default_factory=list)
    validation_data: list[DataFile] = Field(default_factory=list)
    validation_split: str = Field(default="", description="how the validation examples were chosen")
    examples: int = Field(default=0, description="training examples used")
    skipped: dict[str, int] = Field(default_factory=dict, description="training examples left out, by reason")
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float = 0.0
    steps: int = 0
    epochs: float = 0.0
    stopped_early: bool = Field(default=False, description="the time budget ended training before its epochs")
    device: str = "cpu"
    validation_before: dict[str, float] = Field(default_factory=dict)
    validation_after: dict[str, float] = Field(default_factory=dict)
    best_checkpoint: str | None = None
    resumed_from: str | None = Field(default=None, description="the checkpoint an interrupted run continued from")
    training_loss: list[tuple[int, float]] = Field(default_factory=list, description="(step, mean loss) as logged")
    no_answer_threshold: float | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False,
        description="reader: answers scoring below are dropped; chosen to maximise F1 on validation")
    threshold_tuned_on: str | None = None
    int8: Int8Scores | None = Field(default=None, description="reader: its calibrated int8 graph, if one was made")
    int8_weights: Int8Scores | None = Field(default=None, description=(
        "reader: its data-free int8 export (``openvino-int8``: int8 weights, activations quantised as it runs), "
        "scored the same way"))
    libraries: dict[str, str] = Field(default_factory=dict)
    files: list[str] | None = Field(
        default=None, description="the entries of the model folder the run wrote (None: not recorded, an older "
        "card), the only ones --overwrite removes beside the card, the checkpoints and the int8 graph")


def card_path(folder: str | Path) -> Path:
    return Path(folder) / CARD_FILE


MAX_CARD_BYTES = 16 * 2**20  # a card holds its run's facts and logged losses: a few KB


def read_card(folder: str | Path) -> TrainingCard | None:
    """The card in a model folder, or None when the folder has none (a model not trained here, a hub name); one
    that is not a card (damaged, someone else's file of that name, a threshold outside 0 to 1) is a
    ``ModelNotFoundError`` naming it: a reader read with it answered nothing, or everything, or failed deep
    inside."""
    path = card_path(Path(folder).expanduser())
    if not path.is_file():
        return None
    try:
        with path.open("rb") as handle:  # (a link is followed: model folders are often links into a cache)
            data = handle.read(MAX_CARD_BYTES + 1)
        if len(data) > MAX_CARD_BYTES:
            raise ValueError(f"over {MAX_CARD_BYTES // 2**20} MB")
        return TrainingCard.model_validate_json(data)
    except (OSError, ValueError) as error:  # unreadable, over the size, not JSON, not a card's fields
        reason = " ".join(str(error).split())[:300]
        raise ModelNotFoundError(f"{path} is not a training card kb can read ({reason}); move it away, or train the "
                                 "model again") from error


def write_card(folder: str | Path, card: TrainingCard) -> Path:
    """Write the card atomically into ``folder``."""
    path = card_path(folder)
    write_atomic(path, (card.model_dump_json(indent=2) + "\n").encode("utf-8"))
    return path


USAGE = {
    "reader": "KB_READER_MODEL={out} kb ask ...  (or kb eval squad FILE)",
    "retriever": "KB_TEXT_MODEL={out} kb reembed",
    "reranker": "KB_RERANKER_MODEL={out} kb search ...",
    "clip": "KB_CLIP_MODEL=<architecture or config .json> KB_CLIP_PRETRAINED={out}/model.pt kb reembed",
}


def summarise(card: TrainingCard, out: str | Path) -> str:
    """A few lines for the terminal: what was trained on what, validation before and after, how to use it."""
    def scores(values: dict[str, float]) -> str:
        return ", ".join(f"{name} {value:.4g}" for name, value in values.items() if name != "loss") or "-"

    skipped = ", ".join(f"{count} {reason}" for reason, count in card.skipped.items()) or "none"
    lines = [f"trained a {card.kind} from {card.base_model} on {card.examples} examples (skipped: {skipped})",
             f"  {card.steps} steps, {card.epochs:g} epochs, {card.seconds:.0f} s on {card.device}"
             + (" (stopped by the time budget)" if card.stopped_early else ""),
             f"  validation ({card.validation_split})" + (":" if card.validation_after else "")]
    if card.validation_after:
        lines += [f"    before  {scores(card.validation_before)}", f"    after   {scores(card.validation_after)}"]
    if card.no_answer_threshold is not None:
        lines.append(f"  no-answer threshold {card.no_answer_threshold:.3f} (tuned on the validation questions)")
    if card.int8 is not None:
        lines.append(f"  calibrated int8 graph ({card.int8.graph}): {card.int8.against_float32()}")
    if card.int8_weights is not None:
        lines.append(f"  data-free int8 ({card.int8_weights.graph}): {card.int8_weights.against_float32()}")
    lines += [f"  written to {out} (training card: {card_path(out)})", f"  use it: {USAGE[card.kind].format(out=out)}"]
    return "\n".join(lines)
