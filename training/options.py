"""What a training run is asked to do: the options every ``kb train`` command shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

NO_VALIDATION = "none: every example trained on, the last step kept"


MAX_EPOCHS = 10_000  # more is no training anyone means, and its step count overflows what the trainers count in


class TrainOptions(BaseModel):
    """Options of one training run; ``None`` means the model kind's own default (see each trainer). Numbers must
    be finite: ``--epochs inf`` passes ``gt=0`` and would end in an OverflowError once the steps are counted."""

    model_config = ConfigDict(allow_inf_nan=False)

    out: Path = Field(description="folder the trained model and its training.json are written to")
    base_model: str | None = Field(default=None, description="model to start from: hub name or local folder")
    epochs: float | None = Field(default=None, gt=0, le=MAX_EPOCHS)
    max_seconds: float | None = Field(default=None, gt=0, description="stop (evaluate, keep the best) after this")
    batch_size: int | None = Field(default=None, ge=1)
    learning_rate: float | None = Field(default=None, gt=0)
    max_seq_length: int | None = Field(default=None, ge=16)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    seed: int = Field(default=0, ge=0, lt=2**32, description="seeds the validation split, the new layers' initial "
                      "weights and, unless data_seed is given, the order of the training examples")
    data_seed: int | None = Field(default=None, ge=0, lt=2**32, description="seeds the order the training examples "
                                  "come in (and the reader's, retriever's and reranker's dropout) alone: runs that "
                                  "differ only here start from the same weights and hold out the same validation "
                                  "split, so their weights can be averaged (a model soup)")
    validation: list[Path] = Field(default_factory=list, description="validation files; default: held out")
    validation_fraction: float = Field(default=0.1, gt=0, lt=1)
    use_validation: bool = Field(default=True, description="hold out a validation split (or read the validation "
                                 "files) and keep the best checkpoint; False trains on every example and keeps the "
                                 "last step, scoring and tuning nothing: for a recipe already chosen with validation")
    checkpoint_minutes: float = Field(default=10.0, gt=0, description="evaluate and save at least this often")
    overwrite: bool = False
    resume: bool = False
    device: str | None = Field(default=None, description="torch device; default: cuda when there is one")
    threads: int | None = Field(default=None, ge=1, description="CPU threads; default: every core (on cores busy "
                                "with other work, one thread can be faster: threads wait for each other)")

    @property
    def order_seed(self) -> int:
        """The seed of the training order: ``data_seed``, else ``seed``."""
        return self.seed if self.data_seed is None else self.data_seed

    def seeds(self) -> dict[str, int]:
        """The seeds for a training card: ``data_seed`` only when it differs from ``seed``, so cards (and
        ``--resume`` checks) of runs without it stay as they were, and a run resumed with or without an explicit
        ``--data-seed`` equal to ``--seed`` (the same training) is not refused as changed."""
        return {"seed": self.seed} | ({} if self.data_seed in (None, self.seed) else {"data_seed": self.data_seed})

    def validation_recorded(self) -> dict[str, bool]:
        """``no_validation`` for a card's hyper-parameters, only when set (older cards and resume checks stay)."""
        return {} if self.use_validation else {"no_validation": True}

    @model_validator(mode="after")
    def _validation_files_need_validation(self) -> TrainOptions:
        if self.validation and not self.use_validation:
            raise ValueError("validation files were given with no validation: give one or the other")
        return self


class Distillation(BaseModel):
    """What a reader is distilled from and how much the teachers count against the gold spans."""

    model_config = ConfigDict(allow_inf_nan=False)

    teachers: list[Path] = Field(min_length=1, description="trained reader folders; their logits are averaged")
    weight: float = Field(default=0.5, ge=0, le=1, description="share of the loss from the teachers' soft targets "
                          "(the rest from the gold span)")
    temperature: float = Field(default=2.0, gt=0, le=100, description="softens both distributions before they are "
                               "compared; the soft loss is scaled by its square, as Hinton et al. do")

    @model_validator(mode="after")
    def _teachers_once(self) -> Distillation:
        folders = [path.expanduser().resolve() for path in self.teachers]
        if len(set(folders)) < len(folders):
            raise ValueError("a teacher is given twice: each is averaged in once")
        return self

    def recorded(self) -> dict[str, Any]:
        """The card's record: each teacher with its fingerprint (in the order of their folders, which does not
        change what they teach), the weight and the temperature."""
        from kb.encoders.fingerprint import folder_fingerprint

        folders = sorted(path.expanduser().resolve() for path in self.teachers)
        return {"teachers": [{"model": str(path), "fingerprint": folder_fingerprint(path)} for path in folders],
                "distillation_weight": self.weight, "distillation_temperature": self.temperature}
