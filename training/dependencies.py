"""The ``train`` extra: checked once before training starts, with the command that installs it."""

from __future__ import annotations

from kb import optional

TRAIN_PACKAGES = ("accelerate", "datasets")


def require_train_extra() -> None:
    optional.require_installed(TRAIN_PACKAGES, "kb train")
